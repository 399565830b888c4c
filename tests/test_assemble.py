"""Settling recordings from engine results (run/assemble.py), the manifest's redaction (ops/runinfo.py)
and progress figures (ops/progress.py): the pure parts of `granite-batch run`."""

from __future__ import annotations

from pipeline.errors import Failure
from pipeline.ops.progress import Progress
from pipeline.ops.runinfo import REDACTED, new_run_id, redact
from pipeline.records.audio import AudioInfo, ChannelStats, Outcome, Recording
from pipeline.records.results import BlockResult, RecordingStatus, Word
from pipeline.run.assemble import Assembler
from pipeline.run.language import detect_language

REC = Recording("s3://calls/a.wav", 1234, "etag-1")
INFO = AudioInfo("wav", "pcm_mulaw", 8000, 2, 30.0)
STATS = (ChannelStats(0, "agent", 6.0, 2, 1, 3.0, 0), ChannelStats(1, "customer", 3.5, 1, 1, 2.0, 0))


def block(
    channel: int, index: int, text: str = "hello there how are you today", error: str | None = None
) -> BlockResult:
    start = 4.0 * index + channel
    return BlockResult(
        REC.recording_id,
        channel,
        ["agent", "customer"][channel],
        index,
        start,
        start + 3.0,
        text,
        ("Acme",),
        "gpu",
        "rev",
        "stop",
        7,
        tuple(Word(w, start + 0.1 * i, start + 0.1 * i + 0.05, 0.5) for i, w in enumerate(text.split())),
        "llm",
        error,
    )


def test_a_recording_settles_when_its_outcome_and_every_block_are_in_whatever_the_order():
    a = Assembler("run1", "granite", None)
    assert a.block(block(1, 0)) is None
    assert a.outcome(Outcome(REC, "ok", None, INFO, STATS), emitted=3) is None
    assert a.block(block(0, 1)) is None
    assert a.block(block(0, 1)) is None  # a retried task delivers a block twice: counted once
    s = a.block(block(0, 0))
    assert s is not None and a.in_flight == 0
    assert [(x.channel, x.segment_index) for x in s.segments] == [(0, 0), (0, 1), (1, 0)]
    r = s.recording
    assert (r.status, r.segments, r.speech_s, r.channels, r.language) == ("ok", 3, 9.5, 2, "en")
    assert s.segments[0].keywords == ("Acme",) and s.segments[0].run_id == "run1"


def test_a_settled_recording_is_never_settled_again_in_its_window():
    # A cut task killed after its last row is retried by Ray: its rows arrive a second time.
    a = Assembler("run1", "granite", None)
    a.outcome(Outcome(REC, "ok", None, INFO, STATS[:1]), emitted=1)
    assert a.block(block(0, 0)) is not None
    assert a.block(block(0, 0)) is None and a.outcome(Outcome(REC, "ok", None, INFO, STATS[:1]), emitted=1) is None
    empty = Recording("s3://calls/empty.wav", 0, "e")
    assert a.outcome(Outcome.failed(empty, Failure("empty", "empty object (0 bytes)")), emitted=0) is not None
    assert a.outcome(Outcome.failed(empty, Failure("empty", "empty object (0 bytes)")), emitted=0) is None
    assert a.in_flight == 0


def test_a_word_heard_on_both_sides_of_a_cut_inside_speech_is_kept_once():
    a = Assembler("run1", "granite", "en")
    a.outcome(Outcome(REC, "ok", None, INFO, STATS[:1]), emitted=3)

    def at(i: int, start: float, end: float, text: str) -> BlockResult:
        words = tuple(Word(w, start + 0.1 * k, start + 0.1 * k + 0.05, 0.5) for k, w in enumerate(text.split()))
        return BlockResult(REC.recording_id, 0, "agent", i, start, end, text, (), "gpu", "rev", "stop", 5, words, "ctc")

    a.block(at(0, 0.5, 4.5, "had then leisure to."))
    a.block(at(1, 4.5, 8.0, "To consider how much"))  # abuts: the cut went through "to"
    s = a.block(at(2, 9.0, 11.0, "much more"))  # after dropped silence: a real repeat stays
    assert [x.text for x in s.segments] == ["had then leisure to.", "consider how much", "much more"]
    # The dropped word takes its time with it: words stay one per word of the text.
    assert [[w.word for w in x.words] for x in s.segments] == [t.split() for t in (x.text for x in s.segments)]
    assert s.segments[1].words[0].start_s == 4.6


def test_one_failed_block_fails_the_recording_with_no_segments():
    a = Assembler("run1", "granite", "fr")
    a.outcome(Outcome(REC, "ok", None, INFO, STATS), emitted=2)
    a.block(block(0, 0))
    s = a.block(block(0, 1, error="RayActorError: the actor died"))
    assert s is not None and s.segments == []
    assert s.recording.status == "failed" and "engine failed on 1 of 2 blocks: RayActorError" in s.recording.error
    assert s.recording.error_kind == "engine_failed"


def test_blocks_of_a_recording_that_failed_late_are_dropped():
    # Truncation is found at the end of the stream, after blocks were already emitted.
    a = Assembler("run1", "granite", None)
    a.block(block(0, 0))
    assert a.outcome(Outcome.failed(REC, Failure("truncated", "truncated: ...")), emitted=2) is None
    s = a.block(block(0, 1))
    assert (
        s is not None
        and s.segments == []
        and s.recording.error == "truncated: ..."
        and s.recording.error_kind == "truncated"
    )


def test_the_language_hint_wins_and_detection_refuses_to_guess():
    a = Assembler("run1", "granite", "de")
    a.outcome(Outcome(REC, "ok", None, INFO, STATS[:1]), emitted=1)
    assert a.block(block(0, 0)).recording.language == "de"
    assert detect_language("Bonjour, je voudrais parler à un conseiller s'il vous plaît") == "fr"
    assert detect_language("ok") is None and detect_language("") is None


def test_the_manifest_redacts_secrets():
    cfg = {
        "model": {"id": "s3://mirror/granite", "hf_token": "hf_abc"},
        "input": {"endpoint_url": "https://AKIA123:s3cr3t@minio.local:9000", "uri": "s3://b/p"},
    }
    out = redact(cfg)
    assert out["model"]["hf_token"] == REDACTED and "s3cr3t" not in str(out) and "AKIA123" not in str(out)
    assert out["input"]["uri"] == "s3://b/p" and out["model"]["id"] == "s3://mirror/granite"
    assert new_run_id() != new_run_id()


def test_progress_counts_and_groups_failures():
    p = Progress()
    for size in (100, 100, 100):
        p.listed_one(size)
    p.listing_done = True
    info = AudioInfo("wav", "pcm_s16le", 16000, 1, 60.0)
    p.add(RecordingStatus.of(Recording("a", 100, "e"), "r", "ok", info, speech_s=30.0, segments=8), 100)
    p.add(
        RecordingStatus.of(
            Recording("b", 100, "e"),
            "r",
            "failed",
            error=Failure("truncated", "truncated: WAV header declares 9 bytes"),
        ),
        100,
    )
    p.add(RecordingStatus.of(Recording("c", 100, "e"), "r", "skipped"), 100)
    assert (p.ok, p.failed, p.skipped, p.segments) == (1, 1, 1, 8)
    assert p.failures == {"truncated": 1} and p.eta() == "0:00:00"
    assert "3/3 (1 ok, 1 failed, 1 skipped)" in p.line()
    assert p.examples == [("b", "truncated: WAV header declares 9 bytes")]
