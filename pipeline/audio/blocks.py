"""Cut one 16 kHz channel into blocks of at most `blocks.max_s` that contain speech.

Three small pieces, all pure (numpy only) and streaming, so a multi-hour file is cut in constant
memory:

- `SpeechTracker` turns VAD frame probabilities into speech spans (hysteresis as in Silero's
  own `get_speech_timestamps`: start at `vad_threshold`, end after `min_silence_s` below
  `vad_threshold - 0.15`; spans shorter than `min_speech_s` are noise).
- `choose_block` decides where the next block ends, given the spans and frame energies:
  1. at a natural end: the speech is followed by a pause longer than `merge_gap_s`;
  2. when the speech reaches its natural end within `2 x max_s`: inside the pause that leaves
     both pieces at most `max_s` long (so no short tail is left over: a recognizer loses words
     on a 0.5 s scrap that it gets right inside a longer block; see docs/quality.md);
  3. else at the quietest 10 ms inside a pause that falls in the search window
     `[max_s - search_s, max_s]`; else inside the latest earlier pause;
  4. only when there is no pause at all: a hard cut at the quietest 10 ms of the window.
  Blocks keep `pad_s` of audio around speech; longer silences are dropped and counted.
- `ChannelBlocker` feeds samples through VAD, tracker and `choose_block` and yields `Block`s.

All positions are integer sample offsets at 16 kHz; seconds appear only in `Block`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..config import BlocksConfig
from ..records.audio import SAMPLE_RATE, Block, ChannelStats, samples_to_s
from .vad import FRAME, StreamingVad

ENERGY_HOP = 160  # 10 ms: the resolution of cut points


def _n(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


@dataclass(frozen=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True)
class Cut:
    end: int  # where this block ends
    next_start: int | None  # where the next block resumes after a cut inside speech; None: at the next speech
    kind: str  # "end" (natural end of speech), "pause", or "hard"


class SpeechTracker:
    """VAD probabilities (one per 512-sample frame) -> closed speech spans, streaming."""

    def __init__(self, cfg: BlocksConfig) -> None:
        self._on = cfg.vad_threshold
        self._off = max(cfg.vad_threshold - 0.15, 0.01)
        self._min_silence = _n(cfg.min_silence_s)
        self._min_speech = _n(cfg.min_speech_s)
        self._frames = 0
        self.open_start: int | None = None  # start of the span in progress
        self._silence_start: int | None = None

    def push(self, probs: np.ndarray) -> list[Span]:
        closed: list[Span] = []
        for p in probs.tolist():
            pos = self._frames * FRAME
            self._frames += 1
            if self.open_start is None:
                if p >= self._on:
                    self.open_start, self._silence_start = pos, None
                continue
            if p >= self._on:
                self._silence_start = None
            elif p < self._off:
                if self._silence_start is None:
                    self._silence_start = pos
                if pos + FRAME - self._silence_start >= self._min_silence:
                    self._close(self._silence_start, closed)
        return closed

    @property
    def position(self) -> int:
        """Samples covered by the probabilities seen so far."""
        return self._frames * FRAME

    @property
    def open_span_end(self) -> int | None:
        """Where the open span's speech stopped, if it is in a (not yet confirmed) pause."""
        return self._silence_start

    def finish(self, total: int) -> list[Span]:
        closed: list[Span] = []
        if self.open_start is not None:
            self._close(min(self._silence_start or total, total), closed)
        return closed

    def _close(self, end: int, closed: list[Span]) -> None:
        assert self.open_start is not None
        if end - self.open_start >= self._min_speech:
            closed.append(Span(self.open_start, end))
        self.open_start, self._silence_start = None, None


def frame_energy(samples: np.ndarray) -> np.ndarray:
    """Mean square per 10 ms frame (complete frames only)."""
    whole = samples.size - samples.size % ENERGY_HOP
    frames = samples[:whole].reshape(-1, ENERGY_HOP)
    return np.einsum("ij,ij->i", frames, frames) / ENERGY_HOP


def _quietest(energy: np.ndarray, lo: int, hi: int) -> int | None:
    """Sample offset of the middle of the quietest whole 10 ms frame inside [lo, hi)."""
    first = -(-lo // ENERGY_HOP)
    last = min(hi // ENERGY_HOP, energy.size)
    if last <= first:
        return None
    k = first + int(np.argmin(energy[first:last]))
    return k * ENERGY_HOP + ENERGY_HOP // 2


def choose_block(
    start: int, spans: Sequence[Span], energy: np.ndarray, known: int, final: bool, cfg: BlocksConfig
) -> Cut | None:
    """Where the block that starts at `start` ends, or None until enough audio is known.

    `spans` are the speech spans that end after `start`, in order (an open span is passed with
    end = `known`); `energy` covers samples [0, known). Decides only once everything up to
    `start + 2 x max_s + merge_gap_s + pad_s + min_silence_s + min_speech_s` is known (or at the
    end of the stream): by then every span that can matter (for this block, and for whether the
    speech ends within the next one) has either closed or outlived `min_speech_s`, so a streaming
    caller gets the same blocks as an offline one.
    """
    max_n, pad, gap_n = _n(cfg.max_s), _n(cfg.pad_s), _n(cfg.merge_gap_s)
    if not final and known < start + 2 * max_n + gap_n + pad + _n(cfg.min_silence_s) + _n(cfg.min_speech_s):
        return None
    limit = min(start + max_n, known)

    # 1. Natural end: the first pause longer than merge_gap_s (or the end of the stream).
    run_end: int | None = None  # where the speech from `start` ends naturally (with its padding)
    for i, span in enumerate(spans):
        nxt = spans[i + 1].start if i + 1 < len(spans) else None
        if nxt is None or nxt - span.end > gap_n:
            # The pause after this span is long: the block ends here, its padding capped by the
            # limit (never a cut through the silence that follows).
            run_end = min(span.end + pad, known if nxt is None else nxt)
            if span.end < limit:
                return Cut(min(run_end, limit), None, "end")
            break
    if known <= limit:  # the stream ends inside this block
        return Cut(known, None, "end")

    earliest = start + _n(cfg.min_s)
    pauses = [Span(a.end, b.start) for a, b in zip(spans, spans[1:]) if a.end < limit and b.start > earliest]

    # 2. The speech ends within two blocks: cut where both pieces fit, never leaving a scrap.
    window_lo = max(earliest, limit - _n(cfg.search_s))
    hard_window = (window_lo, limit)
    if run_end is not None and run_end - start <= 2 * max_n:
        lo = max(earliest, run_end - max_n)  # both pieces at most max_s
        mid, quarter = (start + run_end) // 2, (run_end - start) // 4
        middle = (max(lo, mid - quarter), min(limit, mid + quarter))
        for a, b in (middle, (lo, limit)):  # near the middle first
            found = _quietest_pause(pauses, energy, a, b, pad)
            if found is not None:
                return found
        hard_window = middle  # a hard cut, if it comes to that, near the middle too

    # 3. A pause: in the search window first, else the latest one before it.
    found = _quietest_pause([p for p in pauses if p.end > window_lo], energy, window_lo, limit, pad)
    if found is not None:
        return found
    for p in reversed(pauses):
        found = _quietest_pause([p], energy, earliest, limit, pad)
        if found is not None:
            return found

    # 4. No pause anywhere: cut where it is quietest in the window.
    at = _quietest(energy, *hard_window)
    at = hard_window[1] if at is None else at
    return Cut(at, at, "hard")


def _quietest_pause(pauses: Sequence[Span], energy: np.ndarray, lo: int, hi: int, pad: int) -> Cut | None:
    """A cut at the quietest 10 ms of those `pauses` that lie within [lo, hi), keeping `pad_s`
    of the pause on each side of the cut where the pause is long enough."""
    best: tuple[float, int, Span] | None = None
    for p in pauses:
        at = _quietest(energy, max(p.start, lo), min(p.end, hi))
        if at is not None and (best is None or energy[at // ENERGY_HOP] < best[0]):
            best = (float(energy[at // ENERGY_HOP]), at, p)
    if best is None:
        return None
    _, at, p = best
    return Cut(min(at, p.start + pad), max(at, p.end - pad), "pause")


class ChannelBlocker:
    """Streams one channel's 16 kHz samples into `Block`s, keeping only a few seconds buffered."""

    def __init__(self, recording_id: str, channel: int, label: str, cfg: BlocksConfig) -> None:
        self.recording_id, self.channel, self.label, self.cfg = recording_id, channel, label, cfg
        self._vad = StreamingVad(cfg.vad_gate_dbfs)
        self._tracker = SpeechTracker(cfg)
        self._spans: list[Span] = []
        self._energy = np.zeros(1 << 16, np.float32)  # grows by doubling
        self._energy_n = 0
        self._energy_tail = np.zeros(0, np.float32)
        self._buf = np.zeros(0, np.float32)
        self._buf_at = 0  # sample offset of _buf[0]
        self._known = 0  # samples seen
        self._continue_at: int | None = None  # where a block cut inside speech resumes
        self._last_end = 0
        self._index = 0
        self._speech = self._dropped = self._dropped_spans = self._hard = 0

    def push(self, samples: np.ndarray) -> Iterator[Block]:
        self._known += samples.size
        self._buf = np.concatenate([self._buf, samples])
        tail = np.concatenate([self._energy_tail, samples])
        whole = tail.size - tail.size % ENERGY_HOP
        self._append_energy(frame_energy(tail[:whole]))
        self._energy_tail = tail[whole:]
        self._spans += self._tracker.push(self._vad.push(samples))
        yield from self._emit(final=False)

    def finish(self) -> Iterator[Block]:
        self._spans += self._tracker.push(self._vad.flush())
        self._spans += self._tracker.finish(self._known)
        yield from self._emit(final=True)
        self._count_drop(self._known)

    def stats(self) -> ChannelStats:
        return ChannelStats(
            channel=self.channel,
            label=self.label,
            speech_s=samples_to_s(self._speech),
            blocks=self._index,
            dropped_spans=self._dropped_spans,
            dropped_s=samples_to_s(self._dropped),
            hard_cuts=self._hard,
        )

    def _emit(self, final: bool) -> Iterator[Block]:
        pad = _n(self.cfg.pad_s)
        energy = self._energy[: self._energy_n]
        # Decide on what the VAD has seen, which lags the samples pushed by up to a group.
        known = self._known if final else min(self._known, self._tracker.position)
        while True:
            spans = list(self._spans)
            if self._tracker.open_start is not None:
                end = self._tracker.open_span_end
                spans.append(Span(self._tracker.open_start, known if end is None else end))
            # A span can close behind a cut already made through it (the tracker confirms a
            # pause late): only what lies after the last block still counts.
            floor = self._last_end
            spans = [Span(max(s.start, floor), s.end) for s in spans if s.end > floor]
            # A block continues where a cut inside speech left off; otherwise it starts at the
            # first speech still known, re-derived each time since an open span may yet turn
            # out to be noise (shorter than min_speech_s) and vanish.
            if self._continue_at is not None:
                start = self._continue_at
            elif spans:
                start = max(spans[0].start - pad, self._last_end)
            else:
                break
            cut = choose_block(start, spans, energy, known, final, self.cfg)
            if cut is None:
                break
            yield self._block(start, cut.end)
            self._hard += cut.kind == "hard"
            self._continue_at = cut.next_start
            done = cut.end if self._continue_at is None else self._continue_at
            self._spans = [s for s in self._spans if s.end > done]
        self._trim(pad, known)

    def _append_energy(self, values: np.ndarray) -> None:
        need = self._energy_n + values.size
        if need > self._energy.size:
            self._energy = np.resize(self._energy, max(need, 2 * self._energy.size))
        self._energy[self._energy_n : need] = values
        self._energy_n = need

    def _block(self, start: int, end: int) -> Block:
        assert self._last_end <= start < end <= start + _n(self.cfg.max_s), (self._last_end, start, end)
        self._count_drop(start)
        samples = self._buf[start - self._buf_at : end - self._buf_at].copy()
        block = Block(
            self.recording_id, self.channel, self.label, self._index, samples_to_s(start), samples_to_s(end), samples
        )
        self._index += 1
        self._speech += end - start
        self._last_end = end
        return block

    def _count_drop(self, upto: int) -> None:
        if upto > self._last_end:
            self._dropped += upto - self._last_end
            self._dropped_spans += 1
            self._last_end = upto

    def _trim(self, pad: int, known: int) -> None:
        # Keep what a future block may still need: from the block in progress, else `pad` back.
        keep = self._continue_at if self._continue_at is not None else max(self._last_end, known - pad - FRAME)
        if self._tracker.open_start is not None:
            keep = min(keep, max(self._tracker.open_start - pad, self._last_end))
        for s in self._spans:
            keep = min(keep, max(s.start - pad, self._last_end))
        drop = keep - self._buf_at
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_at = keep
