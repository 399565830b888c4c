"""Blocking: the pure cut rule on crafted input, and invariants on real recorded speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.blocks import ENERGY_HOP, ChannelBlocker, Span, choose_block
from pipeline.audio.cut import cut_recording, drain
from pipeline.config import BlocksConfig, InputConfig, JobConfig
from pipeline.records.audio import SAMPLE_RATE, Block
from pipeline.sources.local import LocalSource

CFG = BlocksConfig()
S = SAMPLE_RATE


def cut_file(path: Path, **blocks: float) -> tuple[list[Block], object]:
    cfg = JobConfig(input=InputConfig(uri=str(path)), blocks=BlocksConfig(**blocks))
    src = LocalSource(cfg.input, cfg.filters)
    (rec,) = list(src.recordings())
    out: list[Block] = []
    outcome = drain(cut_recording(rec, src, cfg), out.append)
    return out, outcome


def check_invariants(blocks: list[Block], duration_s: float, max_s: float) -> None:
    by_channel: dict[int, list[Block]] = {}
    for b in blocks:
        by_channel.setdefault(b.channel, []).append(b)
        assert 0 < b.duration_s <= max_s + 1e-9
        assert 0 <= b.start_s and b.end_s <= duration_s + 1e-9
        # Sample-exact: times are whole 16 kHz sample offsets, and the samples fill the span.
        assert round(b.start_s * S) / S == b.start_s and round(b.end_s * S) / S == b.end_s
        assert b.samples.size == round(b.duration_s * S)
    for ch, bs in by_channel.items():
        assert [b.index for b in bs] == list(range(len(bs)))
        for a, b in zip(bs, bs[1:]):
            assert a.end_s <= b.start_s, f"overlap on channel {ch}"


def speech_cores(call, channel: int) -> list[tuple[float, float]]:
    """10 ms frames of each utterance within 20 dB of its loudest frame: certainly speech."""
    cores = []
    for ch, start, end in call.speech:
        if ch != channel:
            continue
        x = call.samples[ch, int(start * call.rate) : int(end * call.rate)]
        hop = call.rate // 100
        e = (x[: x.size // hop * hop].reshape(-1, hop) ** 2).mean(axis=1)
        for k in np.flatnonzero(e > e.max() / 100):
            cores.append((start + k / 100, start + (k + 1) / 100))
    return cores


def coverage(cores: list[tuple[float, float]], blocks: list[Block]) -> float:
    inside = sum(any(b.start_s <= a and z <= b.end_s for b in blocks) for a, z in cores)
    return inside / len(cores)


# --- the cut rule, on crafted spans and energy ---------------------------------------------


def _energy(n_s: float, quiet: dict[float, float] | None = None) -> np.ndarray:
    e = np.ones(int(n_s * 100), np.float32)
    for t, v in (quiet or {}).items():
        e[int(t * 100)] = v
    return e


def test_natural_end_at_a_long_pause():
    spans = [Span(0, 2 * S), Span(5 * S, 7 * S)]
    cut = choose_block(0, spans, _energy(20), 20 * S, False, CFG)
    assert cut.kind == "end" and cut.end == 2 * S + int(CFG.pad_s * S) and cut.next_start is None


def test_short_pauses_stay_inside_a_block():
    spans = [Span(0, 1 * S), Span(int(1.5 * S), int(3 * S))]
    cut = choose_block(0, spans, _energy(20), 20 * S, False, CFG)
    assert cut.kind == "end" and cut.end == 3 * S + int(CFG.pad_s * S)


def test_cut_at_the_quietest_point_of_a_pause_in_the_search_window():
    # speech runs past 4 s with pauses at 3.0-3.3 s and 3.5-3.7 s; the quieter is 3.6 s.
    spans = [Span(0, 3 * S), Span(int(3.3 * S), int(3.5 * S)), Span(int(3.7 * S), 9 * S)]
    energy = _energy(20, {3.1: 0.01, 3.6: 0.001})
    cut = choose_block(0, spans, energy, 20 * S, False, CFG)
    assert cut.kind == "pause"
    assert cut.end == int(3.6 * S) + ENERGY_HOP // 2 == cut.next_start


def test_an_earlier_pause_beats_a_hard_cut():
    spans = [Span(0, 2 * S), Span(int(2.2 * S), 9 * S)]  # only pause: 2.0-2.2 s, before the window
    cut = choose_block(0, spans, _energy(20), 20 * S, False, CFG)
    assert cut.kind == "pause" and 2 * S <= cut.end <= int(2.2 * S)


def test_hard_cut_only_without_any_pause_at_the_quietest_frame():
    spans = [Span(0, 9 * S)]
    cut = choose_block(0, spans, _energy(20, {3.0: 0.5, 3.4: 0.1}), 20 * S, False, CFG)
    assert cut.kind == "hard" and cut.end == int(3.4 * S) + ENERGY_HOP // 2 == cut.next_start


def test_speech_ending_within_two_blocks_is_cut_near_its_middle():
    # 7 s of speech without a pause: the old rule cut at the quietest point of 2.5-4 s (2.7 s here)
    # and left 4.3 s, hence a third block of 0.3 s; a cut near the middle leaves two blocks.
    spans = [Span(0, 7 * S)]
    cut = choose_block(0, spans, _energy(20, {2.7: 0.01, 3.5: 0.1}), 20 * S, False, CFG)
    assert cut.kind == "hard" and cut.end == int(3.5 * S) + ENERGY_HOP // 2
    rest = choose_block(cut.end, spans, _energy(20), 20 * S, False, CFG)
    assert rest.kind == "end" and rest.end == 7 * S + int(CFG.pad_s * S)
    # With a pause where both pieces fit, the cut goes there.
    spans = [Span(0, int(3.4 * S)), Span(int(3.6 * S), 7 * S)]
    cut = choose_block(0, spans, _energy(20, {2.7: 0.01}), 20 * S, False, CFG)
    assert cut.kind == "pause" and int(3.4 * S) <= cut.end <= int(3.6 * S)


def test_no_scrap_is_left_at_the_end_of_long_speech():
    # Speech of 4.3-7.9 s, with or without pauses: every piece is at least a quarter of it.
    for length in (4.3, 5.0, 6.1, 7.06, 7.9):
        spans, start, pieces = [Span(0, int(length * S))], 0, []
        while True:
            cut = choose_block(start, spans, _energy(20, {1.2: 0.01, 3.9: 0.01}), 20 * S, False, CFG)
            pieces.append((cut.end - start) / S)
            if cut.kind == "end":
                break
            start = cut.next_start
        assert len(pieces) == 2 and min(pieces) >= (length + CFG.pad_s) / 4 - 0.01, (length, pieces)


def test_waits_until_enough_audio_is_known():
    spans = [Span(0, 3 * S)]
    assert choose_block(0, spans, _energy(3), 3 * S, False, CFG) is None
    assert choose_block(0, spans, _energy(3), 3 * S, True, CFG).end == 3 * S


# --- real recorded speech ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav_s16", "mp3", "opus", "m4a", "webm", "ogg_vorbis"])
def test_blocks_cover_speech_and_keep_invariants(corpus, fmt):
    blocks, outcome = cut_file(corpus.formats[fmt])
    assert outcome.status == "ok", outcome.error
    check_invariants(blocks, outcome.info.duration_s, CFG.max_s)
    for ch in (0, 1):
        chan = [b for b in blocks if b.channel == ch]
        assert coverage(speech_cores(corpus.call, ch), chan) >= 0.98
        # Stereo channels stay distinct: every block sits on an utterance of its own channel.
        own = [(s, e) for c, s, e in corpus.call.speech if c == ch]
        assert all(any(b.start_s < e and s < b.end_s for s, e in own) for b in chan)


def test_telephone_call_channels_are_cut_separately(corpus):
    blocks, outcome = cut_file(corpus.telephone)
    assert outcome.status == "ok" and outcome.info.sample_rate == 8000
    check_invariants(blocks, outcome.info.duration_s, CFG.max_s)
    assert {b.channel for b in blocks} == {0, 1}
    for ch in (0, 1):
        assert coverage(speech_cores(corpus.telephone_call, ch), [b for b in blocks if b.channel == ch]) >= 0.98


def test_block_samples_are_the_source_samples(corpus):
    blocks, _ = cut_file(corpus.formats["wav_f32"])
    for b in blocks:
        src = corpus.call.samples[b.channel, round(b.start_s * S) : round(b.end_s * S)]
        np.testing.assert_allclose(b.samples, src, atol=1e-4)


@pytest.mark.parametrize("max_s", [2.5, 4.0, 8.0])
def test_block_limit_is_configurable(corpus, max_s):
    blocks, outcome = cut_file(corpus.formats["flac"], max_s=max_s)
    check_invariants(blocks, outcome.info.duration_s, max_s)


def test_silence_and_noise_floor_yield_no_blocks(corpus):
    for path in (corpus.silence, corpus.noise_floor):
        blocks, outcome = cut_file(path)
        assert outcome.status == "ok" and blocks == []
        (stats,) = outcome.channels
        assert stats.blocks == 0 and stats.dropped_s == pytest.approx(20.0) and stats.dropped_spans == 1


def test_speech_and_dropped_time_add_up(corpus):
    _, outcome = cut_file(corpus.formats["wav_s16"])
    for c in outcome.channels:
        assert c.speech_s + c.dropped_s == pytest.approx(outcome.info.duration_s, abs=1e-6)
        assert c.dropped_spans >= 1 and c.label == f"ch{c.channel}"
    blocks, outcome = cut_file(corpus.misnamed["speech.wav"])
    assert {b.channel_label for b in blocks} == {"mono"} and outcome.channels[0].label == "mono"


def _stream(x: np.ndarray, step: int) -> list[tuple[float, float]]:
    b = ChannelBlocker("r", 0, "ch0", CFG)
    out = [blk for i in range(0, x.size, step) for blk in b.push(x[i : i + step])]
    return [(blk.start_s, blk.end_s) for blk in out + list(b.finish())]


def test_streaming_gives_the_same_blocks_whatever_the_chunking(corpus):
    x = corpus.call.samples[0]
    reference = _stream(x, x.size)
    assert reference
    for step in (777, 16_000, 100_003):
        assert _stream(x, step) == reference


def test_buffer_stays_bounded_on_long_audio(corpus):
    # 10 minutes of continuous speech: the blocker holds a few seconds, never the stream.
    x = np.tile(corpus.call.samples[0], int(600 / corpus.call.duration_s) + 1)
    b = ChannelBlocker("r", 0, "ch0", CFG)
    peak, step = 0, 2 * S
    for i in range(0, x.size, step):
        for _ in b.push(x[i : i + step]):
            pass
        peak = max(peak, b._buf.size)
    list(b.finish())
    assert peak <= 12 * S, peak / S


@pytest.mark.parametrize("lang", ["en", "fr", "de", "es", "pt", "ja"])
def test_espeak_speech_in_six_languages_is_covered(tmp_path, lang):
    from tests import corpus as C

    lines = {
        "en": ["please hold while I transfer your call", "thank you for waiting"],
        "fr": ["merci de patienter un instant", "votre appel est important pour nous"],
        "de": ["bitte bleiben Sie am Apparat", "vielen Dank für Ihre Geduld"],
        "es": ["por favor espere un momento", "gracias por su paciencia"],
        "pt": ["por favor aguarde um momento", "obrigado pela sua paciência"],
        "ja": ["しょうしょう おまちください", "ありがとう ございます"],
    }[lang]
    call = C.make_call([C.espeak(t, lang) for t in lines], [0.7, 1.5, 0.9], channels=1, rate=16000)
    path = C.encode(call.samples, call.rate, "mp3", tmp_path / f"{lang}.mp3")
    blocks, outcome = cut_file(path)
    assert outcome.status == "ok"
    check_invariants(blocks, outcome.info.duration_s, CFG.max_s)
    assert coverage(speech_cores(call, 0), blocks) >= 0.98


def test_no_blocks_cut_through_silence_after_speech(corpus):
    # Speech that ends just before the 4 s limit, then 20 s of line noise: the block must end
    # with the speech, whatever the chunking (a regression: it used to cut silence into blocks).
    from tests import corpus as C

    speech = C.speech_utterances()[5].samples[: int(3.95 * S)]
    x = np.concatenate(
        [
            C.silence(1.0, noise_dbfs=-60),
            speech,
            C.silence(20.0, noise_dbfs=-60, seed=1),
            C.utterance("goforward").samples,
        ]
    ).astype(np.float32)
    reference = _stream(x, x.size)
    assert _stream(x, 2 * S) == reference
    assert len(reference) == 2 and reference[1][0] > 24.0
