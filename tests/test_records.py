"""The records (pipeline/records/): records and their Arrow schemas agree, and every record that
crosses a process boundary comes back equal through Arrow."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from pipeline.errors import Failure
from pipeline.records import audio as a
from pipeline.records import plan as p
from pipeline.records import results as res
from pipeline.records import tables as t
from pipeline.records import transport as x
from pipeline.records.prompt import PROMPT_TYPE, Prompt
from pipeline.records.rows import to_table
from pipeline.records.settled import Batch

REC = a.Recording("s3://calls/a.wav", 1234, "etag", datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc), "v7")
INFO = a.AudioInfo("wav", "pcm_mulaw", 8000, 2, 12.5)
STATS = (a.ChannelStats(0, "agent", 4.0, 2, 1, 0.5, 0), a.ChannelStats(1, "customer", 3.0, 1, 2, 1.5, 1))


@pytest.mark.parametrize("record", list(t.OUTPUTS), ids=lambda t: t.__name__)
def test_every_output_column_has_a_field_that_fills_it(record):
    """An output record's fields are its schema's columns, in order: a column cannot be added
    without the record (and so the code that builds it) knowing."""
    assert [f.name for f in fields(record)] == t.OUTPUTS[record].names


def test_a_commit_batch_has_a_field_per_dataset_in_commit_order():
    assert [f.name for f in fields(Batch)] == [*t.DATASETS, "unredacted"]
    assert set(t.DELTA_TABLES) | {"scans"} == set(t.DATASETS) and t.DELTA_TABLES[-1] == "recordings"


def test_the_transport_types_follow_the_records():
    assert [f.name for f in fields(res.BlockResult)] == [f.name for f in res.BLOCK_RESULT_TYPE]
    assert [f.name for f in fields(a.Block)] == [f.name for f in a.BLOCK_TYPE]
    assert [f.name for f in fields(Prompt)] == [f.name for f in PROMPT_TYPE]


def _through_arrow(rows: list[dict], schema: pa.Schema) -> list[dict]:
    return pa.Table.from_pylist(rows, schema).to_pylist()


def test_cut_rows_come_back_equal():
    block = a.Block(REC.recording_id, 1, "customer", 3, 4.25, 8.0, np.linspace(-1, 1, 160, dtype=np.float32))
    prompt = Prompt("translate", "French", ("Acme", "Zorblax"))
    ok = a.CutOutcome(a.Outcome(REC, "ok", None, INFO, STATS), 3)
    failed = a.CutOutcome(
        a.Outcome(a.Recording("s3://calls/b.wav", 0, "e"), "failed", Failure("empty", "empty object (0 bytes)")), 0
    )
    back = [
        x.from_block_row(r)
        for r in _through_arrow([x.block_row((block, prompt)), x.block_row(ok), x.block_row(failed)], x.BLOCK_ROWS)
    ]
    (b, p), ok_back, failed_back = back
    assert b == block and np.array_equal(b.samples, block.samples) and b.samples.dtype == np.float32
    assert p == prompt and ok_back == ok and failed_back == failed


def test_result_rows_come_back_equal():
    words = (res.Word("hello", 1.2, 1.6, 0.75), res.Word("東京", None, None, None))
    done = res.BlockResult(
        REC.recording_id, 0, "agent", 2, 1.0, 4.5, "hello 東京", ("Acme",), "gpu", "rev", "stop", 7, words, "verified"
    )
    block = a.Block(REC.recording_id, 0, "agent", 3, 4.5, 6.0, np.zeros(16, np.float32))
    failed = res.BlockResult.failed(block, "cpu-0", "ActorDiedError: gone")
    outcome = a.CutOutcome(a.Outcome(REC, "ok", None, INFO, STATS), 4)
    rows = _through_arrow([x.result_row(done), x.result_row(failed), x.result_row(outcome)], x.RESULT_ROWS)
    assert [x.from_result_row(r) for r in rows] == [done, failed, outcome]
    assert failed.error and not failed.text and failed.engine == "cpu-0"


def test_output_records_write_with_their_schemas():
    status = res.RecordingStatus.of(REC, "run1", "ok", INFO, speech_s=7.0, segments=1, language="en")
    segment = res.Segment(
        REC.recording_id,
        REC.source_uri,
        0,
        "agent",
        0,
        1.0,
        4.5,
        "hi",
        (res.Word("hi", 1.5, 1.75, 0.5),),
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
    plan = p.PlanRecording.of(a.Outcome(REC, "ok", None, INFO, STATS), 0.5)
    tables = {
        res.RECORDINGS: to_table([status], res.RECORDINGS),
        res.SEGMENTS: to_table([segment], res.SEGMENTS),
        p.PLAN_RECORDINGS: to_table([plan], p.PLAN_RECORDINGS),
    }
    for schema, table in tables.items():
        assert table.schema == schema and table.num_rows == 1
    row = tables[res.RECORDINGS].to_pylist()[0]
    assert (row["duration_s"], row["channels"], row["format"], row["speech_s"]) == (12.5, 2, "wav", 7.0)
    seg = tables[res.SEGMENTS].to_pylist()[0]
    assert seg["keywords"] == ["Acme"] and seg["decoded_by"] == "ctc"
    assert seg["words"] == [{"word": "hi", "start_s": 1.5, "end_s": 1.75, "score": 0.5}]
    assert (plan.blocks, plan.speech_s) == (3, 7.0)
