"""Engine results back into recordings: collect each recording's blocks, then settle it into one
`recordings` row and its `segments` rows (records/results.py: RecordingStatus, Segment).

Blocks arrive in any order, from any engine, possibly twice (a retried task): they are keyed by
(channel, index). A recording is settled once its cut outcome and every block it emitted are in.
Its segments are all-or-nothing: a recording with a failed block is `failed` with no segments,
so the output never holds half a transcript.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..errors import Failure
from ..records.audio import CutOutcome, Outcome
from ..records.results import BlockResult, RecordingStatus, Segment, Word, word_key
from ..records.settled import Settled
from .language import detect_language


@dataclass
class _Pending:
    outcome: Outcome | None = None
    emitted: int = -1  # blocks the cut emitted (known with the outcome)
    blocks: dict[tuple[int, int], BlockResult] = field(default_factory=dict)


class Assembler:
    def __init__(self, run_id: str, model: str, language_hint: str | None) -> None:
        self.run_id, self.model, self.language_hint = run_id, model, language_hint
        self._pending: dict[str, _Pending] = {}
        self._settled: set[str] = set()  # this window's: a retried cut task may send a recording again

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def drop_all(self) -> None:
        """End of a window: anything still pending is accounted for by the caller."""
        self._pending.clear()
        self._settled.clear()

    def add(self, item: CutOutcome | BlockResult) -> Settled | None:
        """A cut's outcome or one block's result; the recording's settlement once all are in."""
        return self.outcome(item.outcome, item.emitted) if isinstance(item, CutOutcome) else self.block(item)

    def outcome(self, outcome: Outcome, emitted: int) -> Settled | None:
        if outcome.recording.recording_id in self._settled:
            return None
        p = self._pending.setdefault(outcome.recording.recording_id, _Pending())
        p.outcome, p.emitted = outcome, emitted
        return self._settle_if_done(outcome.recording.recording_id, p)

    def block(self, r: BlockResult) -> Settled | None:
        if r.recording_id in self._settled:
            return None
        p = self._pending.setdefault(r.recording_id, _Pending())
        p.blocks[(r.channel, r.index)] = r
        return self._settle_if_done(r.recording_id, p)

    def _settle_if_done(self, rid: str, p: _Pending) -> Settled | None:
        if p.outcome is None or len(p.blocks) < p.emitted:
            return None
        del self._pending[rid]
        self._settled.add(rid)
        return self._settle(p.outcome, sorted(p.blocks.values(), key=lambda b: (b.channel, b.index)))

    def _settle(self, o: Outcome, blocks: list[BlockResult]) -> Settled:
        if o.status != "ok":
            return Settled(
                RecordingStatus.of(o.recording, self.run_id, "failed", o.info, error=o.error, segments=0), []
            )
        failed = [b for b in blocks if b.error is not None]
        if failed:
            reasons = Counter(b.error for b in failed).most_common(1)[0][0]
            error = Failure("engine_failed", f"engine failed on {len(failed)} of {len(blocks)} blocks: {reasons}")
            return Settled(RecordingStatus.of(o.recording, self.run_id, "failed", o.info, error=error, segments=0), [])
        texts = _once_across_cuts(blocks)
        language = o.recording.language or self.language_hint or detect_language(" ".join(t for t, _ in texts))
        segments = [
            Segment.of(b, o.recording.source_uri, text, words, language, self.model, self.run_id)
            for b, (text, words) in zip(blocks, texts)
        ]
        status = RecordingStatus.of(
            o.recording, self.run_id, "ok", o.info, speech_s=o.speech_s, segments=len(segments), language=language
        )
        return Settled(status, segments)


def _once_across_cuts(blocks: list[BlockResult]) -> list[tuple[str, tuple[Word, ...]]]:
    """Block texts, with a word heard on both sides of a cut inside speech kept once (in the
    earlier block): where two blocks of a channel abut, the model often hears the word the cut
    went through twice ("...had then leisure to. | To consider..."). Blocks separated by dropped
    silence are left alone; a word the speaker really said twice, right at a cut, is kept once
    (rarer than the double hearing: bench/quality.py measures the net effect). A dropped word
    takes its entry in `words` with it."""
    texts = [(b.text, b.words) for b in blocks]
    for i in range(1, len(blocks)):
        prev, b = blocks[i - 1], blocks[i]
        if prev.channel != b.channel or abs(prev.end_s - b.start_s) > 1e-6:
            continue
        before, after = texts[i - 1][0].split(), texts[i][0].split()
        if before and after and word_key(before[-1]) == word_key(after[0]):
            texts[i] = (" ".join(after[1:]), texts[i][1][1:])
    return texts
