"""bench/audio_stages.py: the per-stage CPU of audio-in adds up, and every stage is seen."""

from __future__ import annotations

import time

from bench.audio_stages import STAGES, stage_clock
from pipeline.audio import decode, vad
from pipeline.commands.plan import run_plan
from pipeline.config import load_config


def test_stages_add_up_to_the_run(corpus):
    cfg = load_config(None, {"input.uri": str(corpus.root / "formats")})
    with stage_clock() as clock:
        t = time.thread_time()
        summary = run_plan(cfg, None, workers=1)
        total = time.thread_time() - t
    seconds = clock.close()
    assert set(seconds) == set(STAGES) and summary.failed == 0 and summary.blocks > 0
    assert abs(sum(seconds.values()) - total) < 0.05 * total + 0.01
    for stage in ("fetch", "decode", "resample", "vad", "cutter"):
        assert seconds[stage] > 0, stage
    # The patches are gone afterwards.
    assert decode.AudioDecoder.chunks.__qualname__ == "AudioDecoder.chunks"
    assert vad.StreamingVad.push.__qualname__ == "StreamingVad.push"
