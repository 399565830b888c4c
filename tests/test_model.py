"""The data model (model.py): records and their Arrow schemas agree, and every record that crosses
a process boundary comes back equal through Arrow."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from pipeline import model as m

REC = m.Recording("s3://calls/a.wav", 1234, "etag", datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc), "v7")
INFO = m.AudioInfo("wav", "pcm_mulaw", 8000, 2, 12.5)
STATS = (m.ChannelStats(0, "agent", 4.0, 2, 1, 0.5, 0), m.ChannelStats(1, "customer", 3.0, 1, 2, 1.5, 1))


@pytest.mark.parametrize("record", list(m.OUTPUTS), ids=lambda t: t.__name__)
def test_every_output_column_has_a_field_that_fills_it(record):
    """An output record's fields are its schema's columns, in order: a column cannot be added
    without the record (and so the code that builds it) knowing."""
    assert [f.name for f in fields(record)] == m.OUTPUTS[record].names


def test_the_transport_types_follow_the_records():
    assert [f.name for f in fields(m.BlockResult)] == [f.name for f in m.BLOCK_RESULT_TYPE]
    assert [f.name for f in fields(m.Block)] == [f.name for f in m.BLOCK_TYPE]
    assert [f.name for f in fields(m.Prompt)] == [f.name for f in m.PROMPT_TYPE]


def _through_arrow(rows: list[dict], schema: pa.Schema) -> list[dict]:
    return pa.Table.from_pylist(rows, schema).to_pylist()


def test_cut_rows_come_back_equal():
    block = m.Block(REC.recording_id, 1, "customer", 3, 4.25, 8.0, np.linspace(-1, 1, 160, dtype=np.float32))
    prompt = m.Prompt("translate", "French", ("Acme", "Zorblax"))
    ok = m.CutOutcome(m.Outcome(REC, "ok", None, INFO, STATS), 3)
    failed = m.CutOutcome(m.Outcome(m.Recording("s3://calls/b.wav", 0, "e"), "failed", "empty object (0 bytes)"), 0)
    back = [
        m.cut_from_row(r) for r in _through_arrow([m.cut_row((block, prompt)), m.cut_row(ok), m.cut_row(failed)], m.CUT)
    ]
    (b, p), ok_back, failed_back = back
    assert b == block and np.array_equal(b.samples, block.samples) and b.samples.dtype == np.float32
    assert p == prompt and ok_back == ok and failed_back == failed


def test_result_rows_come_back_equal():
    words = (m.Word("hello", 1.2, 1.6, 0.75), m.Word("東京", None, None, None))
    done = m.BlockResult(
        REC.recording_id, 0, "agent", 2, 1.0, 4.5, "hello 東京", ("Acme",), "gpu", "rev", "stop", 7, words, "verified"
    )
    block = m.Block(REC.recording_id, 0, "agent", 3, 4.5, 6.0, np.zeros(16, np.float32))
    failed = m.BlockResult.failed(block, "cpu-0", "ActorDiedError: gone")
    outcome = m.CutOutcome(m.Outcome(REC, "ok", None, INFO, STATS), 4)
    rows = _through_arrow([m.result_row(done), m.result_row(failed), m.result_row(outcome)], m.RESULT)
    assert [m.result_from_row(r) for r in rows] == [done, failed, outcome]
    assert failed.error and not failed.text and failed.engine == "cpu-0"


def test_output_records_write_with_their_schemas():
    status = m.RecordingStatus.of(REC, "run1", "ok", INFO, speech_s=7.0, segments=1, language="en")
    segment = m.Segment(
        REC.recording_id,
        REC.source_uri,
        0,
        "agent",
        0,
        1.0,
        4.5,
        "hi",
        (m.Word("hi", 1.5, 1.75, 0.5),),
        "en",
        ("Acme",),
        "granite",
        "rev",
        "run1",
        "gpu",
        "stop",
        3,
        "ctc",
    )
    plan = m.PlanRecording.of(m.Outcome(REC, "ok", None, INFO, STATS), 0.5)
    tables = {
        m.RECORDINGS: m.to_table([status], m.RECORDINGS),
        m.SEGMENTS: m.to_table([segment], m.SEGMENTS),
        m.PLAN_RECORDINGS: m.to_table([plan], m.PLAN_RECORDINGS),
    }
    for schema, table in tables.items():
        assert table.schema == schema and table.num_rows == 1
    row = tables[m.RECORDINGS].to_pylist()[0]
    assert (row["duration_s"], row["channels"], row["format"], row["speech_s"]) == (12.5, 2, "wav", 7.0)
    seg = tables[m.SEGMENTS].to_pylist()[0]
    assert seg["keywords"] == ["Acme"] and seg["decoded_by"] == "ctc"
    assert seg["words"] == [{"word": "hi", "start_s": 1.5, "end_s": 1.75, "score": 0.5}]
    assert (plan.blocks, plan.speech_s) == (3, 7.0)
