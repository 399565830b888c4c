"""Delta Lake output (lake/delta.py) on a local folder, moto and Ceph RGW: one Delta version per
table and batch, a retried batch is a no-op, a batch killed between tables is undone at the next
start, and the readers lake users have (Polars, pyarrow, DuckDB, time travel) read it."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipeline.errors import OutputError
from pipeline.lake.delta import DATE as DATE_FIELD
from pipeline.lake.delta import DeltaStore
from pipeline.records.compliance import Hit
from pipeline.records.results import RECORDINGS
from pipeline.records.rows import to_table
from pipeline.records.settled import Batch
from tests.conftest import upload_tree
from tests.outputs import DATE, sample_rows, store_for


@pytest.fixture(params=["local", "moto"])
def store(request, tmp_path) -> DeltaStore:
    return store_for(request, tmp_path, DeltaStore, "delta")


def _read(store: DeltaStore, name: str, version: int | None = None) -> list[dict]:
    dt = DeltaTable(store.table_uri(name), version=version, storage_options=store.storage_options())
    return dt.to_pyarrow_table().to_pylist()


def _killed_before_recordings(store: DeltaStore, monkeypatch) -> None:
    """The driver dies after a batch reached its other tables, before recordings."""
    real = store._write

    def killed(name, *args):
        if name == "recordings":
            raise SystemExit("killed")
        return real(name, *args)

    monkeypatch.setattr(store, "_write", killed)


def _hit(seg) -> Hit:
    return Hit(
        seg.recording_id,
        seg.source_uri,
        0,
        "mono",
        0,
        "pay",
        "money",
        "pay",
        0.5,
        0.9,
        "words",
        "pay now",
        seg.run_id,
        "rules",
    )


def test_each_batch_is_one_version_per_table_and_a_retry_is_a_no_op(store):
    store.prepare("r1")
    for seq in range(3):
        segs, recs = sample_rows(f"r1x{seq}", 2)
        rows = Batch(segments=segs, recordings=recs, hits=[_hit(segs[0])])
        store.commit("r1", store.file_name("r1", seq), DATE, rows)
        store.commit("r1", store.file_name("r1", seq), DATE, rows)  # retried after an error: no-op
    for name in ("segments", "recordings", "hits"):
        dt = DeltaTable(store.table_uri(name), storage_options=store.storage_options())
        assert dt.version() == 2 and dt.transaction_version("r1") == 2
        assert [c["granite_commit"] for c in dt.history() if "granite_commit" in c] == [2, 1, 0]
    assert len(_read(store, "segments")) == 6 and len(_read(store, "hits")) == 3
    assert {r["date"] for r in _read(store, "recordings")} == {DATE}
    assert store.manifest_extra() == {"format": "delta", "delta_versions": {"segments": 2, "hits": 2, "recordings": 2}}
    assert len(store.history()) == 6
    store.release("r1")


def test_a_batch_killed_between_tables_is_undone_at_the_next_start(store, monkeypatch):
    store.prepare("r1")
    segs, recs = sample_rows("a", 2)
    store.commit("r1", store.file_name("r1", 0), DATE, Batch(segments=segs, recordings=recs))
    segs2, recs2 = sample_rows("b", 3)
    _killed_before_recordings(store, monkeypatch)
    with pytest.raises(SystemExit):
        store.commit("r1", store.file_name("r1", 1), DATE, Batch(segments=segs2, recordings=recs2))
    monkeypatch.undo()
    assert len(_read(store, "segments")) == 5  # the killed batch's rows are visible in segments alone
    assert store.prepare("r2") == (0, 1)  # one file undone
    assert sorted(r["recording_id"] for r in _read(store, "segments")) == sorted(s.recording_id for s in segs)
    assert store.prepare("r3") == (0, 0)  # undone once
    history = store.history()
    assert len(history) == 2 and all(history.get(r.recording_id) for r in recs)
    assert not any(history.get(r.recording_id) for r in recs2)  # redone by the next run


def test_readers_polars_pyarrow_duckdb_and_time_travel(tmp_path):
    store = DeltaStore(str(tmp_path / "out"))
    store.prepare("r1")
    for seq, tag in enumerate(("a", "b")):
        segs, recs = sample_rows(tag, 2)
        store.commit("r1", store.file_name("r1", seq), DATE, Batch(segments=segs, recordings=recs))
    first = store.manifest_extra()["delta_versions"]["segments"]
    segs, recs = sample_rows("c", 4)
    recs = [replace(r, meta=(("crm_id", f"0012{i + 3}"),)) for i, r in enumerate(recs)]
    store.commit("r1", store.file_name("r1", 2), DATE, Batch(segments=segs, recordings=recs))
    uri = store.table_uri("segments")
    assert pl.read_delta(uri).height == 8
    assert pl.read_delta(uri, version=first).height == 4  # what the run had written at that version
    dataset = DeltaTable(uri).to_pyarrow_dataset()
    assert dataset.count_rows() == 8
    # DuckDB over that dataset (its own delta extension is downloaded on first use: not air-gapped)
    query = "select count(*), min(w.start_s) from (select unnest(words) as w from dataset) where w.word = 'hello'"
    assert duckdb.sql(query).fetchall() == [(8, 0.6)]
    # docs/lake.md's join back on the lake's own ids (recordings.meta from a manifest)
    segments = dataset  # noqa: F841 (DuckDB finds it by name)
    recordings = DeltaTable(store.table_uri("recordings")).to_pyarrow_dataset()  # noqa: F841
    joined = duckdb.sql(
        "select r.meta['crm_id'] as crm_id, s.start_s, s.text from segments s join recordings r using (recording_id) "
        "where r.status = 'ok' order by crm_id"
    ).fetchall()
    assert joined[0] == ("00123", 0.5, "hello") and len(joined) == 8


@pytest.mark.ceph
def test_ceph_rgw_takes_delta_commits(ceph, monkeypatch, tmp_path):
    for k, v in ceph.env(endpoint=False).items():
        monkeypatch.setenv(k, v)
    upload_tree(ceph, "deltalake", "x", {})
    store = DeltaStore("s3://deltalake/out", ceph.endpoint_url)
    store.prepare("r1")  # RGW refuses a second If-None-Match create: Delta's commits are safe there
    segs, recs = sample_rows("a", 2)
    store.commit("r1", store.file_name("r1", 0), DATE, Batch(segments=segs, recordings=recs))
    assert len(_read(store, "segments")) == 2 and len(store.history()) == 2
    store.release("r1")


def test_a_store_that_ignores_conditional_writes_is_refused(moto, tmp_path):
    from tests.services.fault_proxy import FaultProxy

    upload_tree(moto, "unsafe", "x", {})
    host, port = moto.endpoint_url.split("://")[1].split(":")
    with FaultProxy(upstream=(host, int(port)), slowdown=0, reset=0, cut=0, strip=(b"if-none-match",)) as proxy:
        store = DeltaStore("s3://unsafe/out", proxy.endpoint_url)
        with pytest.raises(OutputError, match="does not refuse a second create"):
            store.prepare("r1")


def test_unredacted_segments_go_to_the_companion_table_and_are_undone_with_the_batch(tmp_path, monkeypatch):
    companion = DeltaStore(str(tmp_path / "restricted"))
    store = DeltaStore(str(tmp_path / "out"), lock_stale_s=0, unredacted=companion)
    store.prepare("r1")
    segs, recs = sample_rows("a", 2)
    store.commit("r1", store.file_name("r1", 0), DATE, Batch(segments=segs, recordings=recs, unredacted=segs))
    assert len(_read(companion, "segments")) == 2
    _killed_before_recordings(store, monkeypatch)
    segs2, recs2 = sample_rows("b", 3)
    with pytest.raises(SystemExit):
        store.commit("r1", store.file_name("r1", 1), DATE, Batch(segments=segs2, recordings=recs2, unredacted=segs2))
    monkeypatch.undo()
    assert len(_read(companion, "segments")) == 5
    assert store.prepare("r2") == (0, 2)  # one file in segments, one in the companion
    assert len(_read(companion, "segments")) == 2 and len(_read(store, "segments")) == 2


def test_a_parquet_output_and_a_delta_output_do_not_mix(tmp_path):
    from pipeline.lake.parquet import ParquetStore

    out = str(tmp_path / "out")
    store = DeltaStore(out)
    store.prepare("r1")
    segs, recs = sample_rows("a", 1)
    store.commit("r1", store.file_name("r1", 0), DATE, Batch(segments=segs, recordings=recs))
    store.release("r1")
    with pytest.raises(OutputError, match="holds Delta tables"):
        ParquetStore(out).prepare("r2")
    parquet = ParquetStore(str(tmp_path / "pq"))
    parquet.prepare("r1")
    parquet.commit("r1", parquet.file_name("r1", 0), DATE, Batch(segments=segs, recordings=recs))
    parquet.release("r1")
    with pytest.raises(OutputError, match="holds Parquet datasets"):
        DeltaStore(str(tmp_path / "pq")).prepare("r2")


def test_a_companion_shared_with_a_busy_output_is_still_undone(tmp_path, monkeypatch):
    """The killed batch lies behind many commits of another output in the shared companion table."""
    companion = DeltaStore(str(tmp_path / "restricted"))
    store = DeltaStore(str(tmp_path / "x"), lock_stale_s=0, unredacted=companion)
    other = DeltaStore(str(tmp_path / "y"), unredacted=DeltaStore(str(tmp_path / "restricted")))
    store.prepare("x1")
    _killed_before_recordings(store, monkeypatch)
    segs, recs = sample_rows("x", 2)
    with pytest.raises(SystemExit):
        store.commit("x1", store.file_name("x1", 0), DATE, Batch(segments=segs, recordings=recs, unredacted=segs))
    monkeypatch.undo()
    other.prepare("y1")
    for seq in range(70):
        s2, r2 = sample_rows(f"y{seq}", 1)
        other.commit("y1", other.file_name("y1", seq), DATE, Batch(segments=s2, recordings=r2, unredacted=s2))
    assert len(_read(companion, "segments")) == 72
    assert store.prepare("x2") == (0, 2)
    assert len(_read(companion, "segments")) == 70


def test_a_table_an_earlier_release_wrote_gains_error_kind(tmp_path):
    """recordings.error_kind came on 2026-12-08: a Delta output written before it takes the new
    column on the next commit, and its old rows read as null."""
    store = DeltaStore(str(tmp_path / "out"))
    segs, recs = sample_rows("old", 2, status="failed")
    old = to_table(recs, RECORDINGS).drop_columns(["error_kind"])
    old = old.append_column(DATE_FIELD, pa.array([DATE] * len(old), pa.string()))
    write_deltalake(store.table_uri("recordings"), old, partition_by=["date"])
    store.prepare("r1")
    _, new = sample_rows("new", 1, status="failed")
    store.commit("r1", store.file_name("r1", 0), DATE, Batch(recordings=[replace(new[0], error_kind="truncated")]))
    rows = {r["source_uri"]: r["error_kind"] for r in _read(store, "recordings")}
    assert sorted(rows.values(), key=str) == [None, None, "truncated"]
    assert len(store.history()) == 3  # the old rows and the new, read through the one schema
