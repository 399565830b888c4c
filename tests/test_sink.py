"""The output commit protocol (lake/parquet.py), on a local folder and on real S3 (moto) through pyarrow's
S3 filesystem: a batch is visible whole or not at all, and a run killed at any step of a commit
is finished or cleaned up by the next run."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pyarrow.dataset as ds
import pytest

from pipeline.errors import OutputError
from pipeline.lake.parquet import ParquetStore
from pipeline.records.settled import Batch
from tests.outputs import DATE, count, files, sample_rows, store_for


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ParquetStore:
    return store_for(request, tmp_path, ParquetStore, "sink")


def _commit(store: ParquetStore, run: str, segs: list, recs: list, **more: list) -> None:
    store.commit(run, store.file_name(run, 0), DATE, Batch(segments=segs, recordings=recs, **more))


def test_commit_publishes_both_datasets_and_history_reads_them(store):
    assert store.prepare("r1") == (0, 0)
    segs, recs = sample_rows("r1", 3)
    _commit(store, "r1", segs, recs)
    assert count(store, "segments") == 3 and count(store, "recordings") == 3
    assert all(f"/date={DATE}/" in p for p in files(store, "segments"))
    assert not files(store, "_staging") and not files(store, "_commits")
    hist = store.history()
    assert {hist.get(r.recording_id).status for r in recs} == {"ok"} and len(hist) == 3


def test_killed_before_the_marker_leaves_nothing_visible_and_is_cleaned(store, monkeypatch):
    store.prepare("r1")
    segs, recs = sample_rows("r1", 2)
    # The driver dies after the staging files are written, before the commit marker.
    monkeypatch.setattr(store, "_mark", _raise(SystemExit))
    with pytest.raises(SystemExit):
        _commit(store, "r1", segs, recs)
    monkeypatch.undo()
    assert len(files(store, "_staging")) == 2 and count(store, "segments") == 0
    assert store.prepare("r2") == (0, 2)  # orphans removed
    assert not files(store, "_staging") and len(store.history()) == 0


def test_killed_after_the_marker_is_finished_by_the_next_run(store, monkeypatch):
    store.prepare("r1")
    segs, recs = sample_rows("r1", 2)
    # The driver dies after the marker (the commit point), before moving the files.
    monkeypatch.setattr(store, "_finish", _raise(SystemExit))
    with pytest.raises(SystemExit):
        _commit(store, "r1", segs, recs)
    monkeypatch.undo()
    assert count(store, "segments") == 0 and len(files(store, "_commits")) == 1
    assert store.prepare("r2") == (1, 0)
    assert count(store, "segments") == 2 and count(store, "recordings") == 2
    assert store.prepare("r3") == (0, 0)  # idempotent


def test_killed_halfway_through_the_moves_is_finished_without_duplicates(store):
    store.prepare("r1")
    segs, recs = sample_rows("r1", 2)
    _commit(store, "r1", segs, recs)
    # Replay a marker whose first move already happened (the file is final, its staging gone).
    final = [p for p in files(store, "segments")][0]
    marker = f"{store.root}/_commits/r1-00000.json"
    with store.fs.open_output_stream(marker) as f:
        f.write(
            json.dumps({"run_id": "r1", "moves": [{"staging": f"{store.root}/_staging/gone", "final": final}]}).encode()
        )
    assert store.prepare("r2") == (1, 0)
    assert count(store, "segments") == 2


def test_a_torn_marker_commits_nothing(store):
    store.prepare("r1")
    store.fs.create_dir(f"{store.root}/_commits")
    with store.fs.open_output_stream(f"{store.root}/_commits/r1-00000.json") as f:
        f.write(b'{"run_id": "r1", "mov')
    assert store.prepare("r2") == (1, 0)
    assert not files(store, "_commits") and count(store, "segments") == 0


def test_a_later_settlement_wins_in_history(store):
    store.prepare("r1")
    segs, recs = sample_rows("r1", 1, status="failed")
    _commit(store, "r1", [], recs)
    later = [replace(r, status="ok", run_id="r2", processed_at=datetime.now(timezone.utc)) for r in recs]
    store.prepare("r2")
    _commit(store, "r2", segs, later)
    skipped = [replace(r, status="skipped", run_id="r3", processed_at=datetime.now(timezone.utc)) for r in recs]
    store.prepare("r3")
    _commit(store, "r3", [], skipped)
    hist = store.history()
    assert len(hist) == 1
    done = hist.get(recs[0].recording_id)
    assert (done.status, done.run_id) == ("ok", "r2")


def test_an_unusable_output_fails_loudly(moto, tmp_path):
    with pytest.raises(OutputError, match="not usable"):
        ParquetStore("s3://no-such-bucket-here/out", moto.endpoint_url).prepare("r1")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        ParquetStore(str(blocker / "out")).prepare("r1")


def _raise(exc: type[BaseException]):
    def f(*a, **k):
        raise exc()

    return f


def test_one_run_per_output_at_a_time(store):
    store.prepare("r1")
    store.lock_stale_s = 600
    with pytest.raises(OutputError, match=r"run r1 \(host .*, pid \d+\) is writing to .*granite-batch unlock"):
        store.prepare("r2")
    store.lock_stale_s = 0.01  # r1 died: its lock goes stale and is taken over
    import time

    time.sleep(0.05)
    assert store.prepare("r2") == (0, 0)
    store.release("r2")
    store.lock_stale_s = 600
    assert store.prepare("r3") == (0, 0)  # released: free at once


def test_unredacted_segments_commit_with_the_redacted_ones(tmp_path, monkeypatch):
    """compliance.keep_unredacted_uri: a second store gets the unredacted segments in the same
    commit; a run killed after the commit point is finished in both stores, one killed before it
    leaves nothing in either."""
    raw = ParquetStore(str(tmp_path / "raw"))
    store = ParquetStore(str(tmp_path / "out"), lock_stale_s=0, unredacted=raw)
    store.prepare("r1")
    segs, recs = sample_rows("r1", 2)
    redacted = [replace(s, text="[EMAIL]", words=()) for s in segs]
    monkeypatch.setattr(store, "_finish", _raise(SystemExit))
    with pytest.raises(SystemExit):
        store.commit("r1", "r1-00000", DATE, Batch(segments=redacted, recordings=recs, unredacted=segs))
    monkeypatch.undo()
    assert count(raw, "segments") == 0 and count(store, "segments") == 0
    assert store.prepare("r2") == (1, 0)
    assert count(store, "segments") == 2 and count(raw, "segments") == 2
    texts = {
        d: ds.dataset(f"{s.root}/segments", filesystem=s.fs).to_table()["text"].to_pylist()
        for d, s in (("out", store), ("raw", raw))
    }
    assert texts == {"out": ["[EMAIL]"] * 2, "raw": ["hello"] * 2}

    segs, recs = sample_rows("r2", 1)
    monkeypatch.setattr(store, "_mark", _raise(SystemExit))
    with pytest.raises(SystemExit):
        store.commit("r2", "r2-00000", DATE, Batch(segments=segs, recordings=recs, unredacted=segs))
    monkeypatch.undo()
    assert files(raw, f"_staging/{store.namespace}")
    assert store.prepare("r3") == (0, 3)  # two staged here, one in the companion
    assert not files(raw, "_staging") and count(raw, "segments") == 2


def test_scanned_and_segment_files_read_back(store):
    from pipeline.records.compliance import Scanned

    store.prepare("r1")
    segs, recs = sample_rows("r1", 2)
    path = store.relpath("segments", DATE, "r1-00000")
    row = Scanned(path, "r1", "rulesA", 2, 0, 0, datetime.now(timezone.utc))
    _commit(store, "r1", segs, recs, scans=[row])
    assert store.segment_files() == [path]
    assert store.read_segments(path) == segs
    assert store.scanned("rulesA") == {path} and store.scanned("rulesB") == set()
