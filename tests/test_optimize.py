"""`granite-batch optimize` (lake/optimize.py): small files merged, nothing lost or doubled, on Parquet
(with its commit protocol, a crash mid-way included) and Delta (local and moto); refused while a
run holds the output."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow.fs as pafs
import pytest
from deltalake import DeltaTable

from pipeline.cli import main
from pipeline.lake.delta import DeltaStore
from pipeline.lake.parquet import ParquetStore
from pipeline.records.compliance import Scanned
from pipeline.records.settled import Batch
from tests.conftest import upload_tree
from tests.outputs import DATE, count, files, sample_rows


def _fill(store: ParquetStore, n: int, scans: bool = False) -> list[str]:
    """n commits of one run; returns the recording ids."""
    store.prepare("r1")
    ids = []
    for seq in range(n):
        segs, recs = sample_rows(f"b{seq}", 3)
        name = store.file_name("r1", seq)
        scanned = [Scanned(store.relpath("segments", DATE, name), "r1", "rulesA", 3, 1, 0, datetime.now(timezone.utc))]
        store.commit("r1", name, DATE, Batch(segments=segs, recordings=recs, scans=scanned if scans else ()))
        ids += [r.recording_id for r in recs]
    store.release("r1")
    return ids


def test_parquet_small_files_are_merged_and_scans_follow(tmp_path, capsys):
    store = ParquetStore(str(tmp_path / "out"))
    ids = _fill(store, 5, scans=True)
    assert len(files(store, "segments")) == 5
    assert main(["optimize", "--output", store.uri]) == 0
    assert "segments    5 -> 1 files" in capsys.readouterr().out
    assert len(files(store, "segments")) == 1 and len(files(store, "recordings")) == 1
    assert count(store, "segments") == 15 and all(store.history().lookup(ids)) and len(store.history()) == 15
    # the merged file counts as searched with rulesA: `scan` with those rules has nothing to do
    assert set(store.segment_files()) <= store.scanned("rulesA")
    assert not files(store, "_staging") and not files(store, "_commits") and not files(store, "_lock.json")


def test_parquet_optimize_killed_after_its_marker_is_finished_by_the_next_start(tmp_path, monkeypatch):
    store = ParquetStore(str(tmp_path / "out"), lock_stale_s=0)
    _fill(store, 4)
    real = ParquetStore._finish
    monkeypatch.setattr(ParquetStore, "_finish", lambda self, marker: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        main(["optimize", "--output", store.uri])
    monkeypatch.setattr(ParquetStore, "_finish", real)
    assert count(store, "segments") == 12  # the old files are still all there; the merged one staged
    store.prepare("r2")  # finishes the merge: moved in, old files deleted
    assert count(store, "segments") == 12 and len(files(store, "segments")) == 1


@pytest.mark.parametrize("where", ["local", "moto"])
def test_delta_tables_are_compacted_and_time_travel_still_works(where, tmp_path, request):
    if where == "local":
        store = DeltaStore(str(tmp_path / "out"))
        extra = []
    else:
        svc = request.getfixturevalue("moto")
        upload_tree(svc, "optimize", "x", {})
        store = DeltaStore("s3://optimize/out", svc.endpoint_url)
        extra = ["--endpoint-url", svc.endpoint_url]
    ids = _fill(store, 5)
    seg = DeltaTable(store.table_uri("segments"), storage_options=store.storage_options())
    assert len(seg.file_uris()) == 5
    version = seg.version()
    assert main(["optimize", "--output", store.uri, *extra]) == 0
    seg = DeltaTable(store.table_uri("segments"), storage_options=store.storage_options())
    assert len(seg.file_uris()) == 1 and seg.to_pyarrow_table().num_rows == 15
    assert seg.history(1)[0]["operation"] in ("OPTIMIZE", "VACUUM END")
    old = DeltaTable(store.table_uri("segments"), version=version, storage_options=store.storage_options())
    assert len(old.file_uris()) == 5 and old.to_pyarrow_table().num_rows == 15  # within the retention
    assert all(store.history().lookup(ids))


def test_optimize_is_refused_while_a_run_holds_the_output(tmp_path, capsys):
    store = DeltaStore(str(tmp_path / "out"))
    _fill(store, 2)
    store.prepare("live-run")  # this process is alive: its lock is not stale
    assert main(["optimize", "--output", store.uri]) == 3
    assert "is writing to" in capsys.readouterr().err
    assert isinstance(store.fs, pafs.LocalFileSystem)
