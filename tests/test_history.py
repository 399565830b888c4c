"""Earlier runs' settlements in bounded memory (pipeline/lake/history.py): the latest row of each
recording wins, lookups by window, 17 bytes per recording, and foreign ids refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from pipeline.lake.history import History, keys_of
from pipeline.records.audio import Recording

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _batch(rows: list[tuple[str, str, str, int]]) -> pa.RecordBatch:
    rid, status, run, minutes = zip(*rows)
    return pa.RecordBatch.from_pydict(
        {
            "recording_id": list(rid),
            "status": list(status),
            "run_id": list(run),
            "processed_at": pa.array([T0 + timedelta(minutes=m) for m in minutes], pa.timestamp("us", tz="UTC")),
        }
    )


def test_the_latest_settlement_wins_across_batches():
    a, b, c = (Recording(f"s3://x/{n}.wav", 1, "e").recording_id for n in "abc")
    h = History.from_batches(
        [_batch([(a, "failed", "r1", 0), (b, "ok", "r1", 1)]), _batch([(a, "ok", "r2", 5), (c, "failed", "r2", 6)])]
    )
    assert len(h) == 3
    got = h.lookup([a, b, c, Recording("s3://x/new.wav", 1, "e").recording_id])
    assert [(d.status, d.run_id) if d else None for d in got] == [("ok", "r2"), ("ok", "r1"), ("failed", "r2"), None]
    # a batch read later may hold an older row: time decides, not order
    h = History.from_batches([_batch([(a, "ok", "r2", 5)]), _batch([(a, "failed", "r1", 0)])])
    assert h.get(a).run_id == "r2"


def test_empty_history_and_memory_per_recording():
    assert History.from_batches([]).get("0" * 24) is None
    ids = [f"{i:024x}" for i in range(10_000)]
    h = History.from_batches([_batch([(r, "ok", "r1", 0) for r in ids])])
    assert h.nbytes / len(h) == 17
    assert all(d is not None for d in h.lookup(ids[::97]))


def test_keys_pack_hex_ids_and_refuse_foreign_ones():
    rid = Recording("s3://x/a.wav", 1, "e").recording_id
    assert keys_of(pa.array([rid]))[0] == bytes.fromhex(rid)
    sliced = pa.array(["x" * 24, rid, rid])[1:]  # an offset into the buffers
    assert (keys_of(sliced) == np.array([bytes.fromhex(rid)] * 2, "S12")).all()
    for bad in (["abc"], ["z" * 24], ["A" * 24]):
        with pytest.raises(ValueError, match="not all ids are 24 hex digits"):
            keys_of(pa.array(bad))
