"""Per-recording limits (audio/limits.py) on real files: each stops one recording with a reason that
names its setting, and time spent waiting for the consumer does not count against the timeout."""

from __future__ import annotations

import time

from pipeline.audio.cut import cut_recording, drain
from pipeline.audio.limits import Budget, rss_bytes
from pipeline.config import JobConfig
from pipeline.sources import open_source


def cut(path, memory_gib: float | None = None, **settings):
    cfg = JobConfig.model_validate({"input": {"uri": str(path)}, **settings})
    src = open_source(cfg.input, cfg.filters)
    (rec,) = list(src.recordings())
    return cut_recording(rec, src, cfg, memory_gib)


def test_decode_timeout_fails_the_recording_with_its_setting(corpus):
    outcome = drain(cut(corpus.formats["flac"], filters={"decode_timeout_s": 1e-6}), lambda b: None)
    assert outcome.status == "failed" and outcome.error.kind == "timeout"
    assert outcome.error.detail.startswith("decode timeout:")
    assert "filters.decode_timeout_s=1e-06" in outcome.error.detail


def test_time_the_consumer_holds_a_block_is_not_decode_time(corpus):
    # 24 s of audio in several blocks; the consumer sleeps 0.6 s on each, far past the 1.5 s limit
    # in total, yet decoding alone stays well inside it.
    outcome = drain(cut(corpus.formats["wav_s16"], filters={"decode_timeout_s": 1.5}), lambda b: time.sleep(0.6))
    assert outcome.status == "ok", outcome.error
    assert outcome.blocks >= 4


def test_memory_limit_fails_the_recording_with_its_setting(corpus):
    held = rss_bytes() / (1 << 30)  # this process holds whatever earlier tests loaded
    assert held > 0.01
    outcome = drain(cut(corpus.formats["mp3"], memory_gib=held / 2), lambda b: None)
    assert outcome.status == "failed" and outcome.error.kind == "out_of_memory"
    assert outcome.error.detail.startswith("out of memory: the decode worker holds")
    assert f"run.decode_memory_gib={held / 2:g}" in outcome.error.detail
    assert drain(cut(corpus.formats["mp3"], memory_gib=held + 2), lambda b: None).status == "ok"


def test_budget_counts_only_unpaused_time():
    b = Budget(timeout_s=None, memory_gib=None)
    with b.paused():
        time.sleep(0.2)
    assert b.spent_s < 0.1
    b.check()  # no limits: never raises
