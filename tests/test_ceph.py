"""The real-S3 tier: the same plan over Ceph RGW (a real S3 implementation, started once)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from pipeline.config import FiltersConfig, InputConfig
from pipeline.errors import SourceError
from pipeline.sources import open_source
from tests.conftest import upload_tree
from tests.invariants import check_segments
from tests.test_plan import plan

pytestmark = pytest.mark.ceph


@pytest.fixture(scope="module")
def store(ceph, corpus):
    files = {
        f"2026-11-25/{p.name}": p
        for f, p in corpus.formats.items()
        if f in ("wav_mulaw", "mp3", "opus", "m4a_moov_end", "webm")
    }
    files |= {
        "2026-11-25/telephone.wav": corpus.telephone,
        "2026-11-25/truncated.wav": corpus.bad["truncated.wav"],
        "2026-11-25/page.mp3": corpus.bad["page.mp3"],
        "2026-11-25/empty.wav": corpus.bad["empty.wav"],
    }
    upload_tree(ceph, "archive", "calls", files)
    return files


def test_plan_over_ceph_rgw(ceph, store, tmp_path):
    r = plan(
        "--input",
        "s3://archive/calls/",
        "--endpoint-url",
        ceph.endpoint_url,
        "--output",
        str(tmp_path),
        "--workers",
        "2",
    )
    assert r.returncode == 0, r.stderr
    rows = {x["source_uri"].rsplit("/", 1)[1]: x for x in pq.read_table(tmp_path / "recordings.parquet").to_pylist()}
    assert set(rows) == {k.rsplit("/", 1)[1] for k in store}
    for name in ("truncated.wav", "page.mp3", "empty.wav"):
        assert rows.pop(name)["status"] == "failed"
    assert all(x["status"] == "ok" and x["blocks"] > 0 for x in rows.values())
    # M4A with its index at the end needs a seek to the tail: ranged GETs served it.
    assert rows["call_m4a_moov_end.m4a"]["codec"] == "aac"
    assert rows["telephone.wav"]["sample_rate"] == 8000


def test_ceph_changed_object_is_refused(ceph, store):
    s3 = ceph.client()
    s3.put_object(Bucket="archive", Key="volatile/x.wav", Body=b"one")
    src = open_source(InputConfig(uri="s3://archive/volatile/", endpoint_url=ceph.endpoint_url), FiltersConfig())
    (rec,) = list(src.recordings())
    s3.put_object(Bucket="archive", Key="volatile/x.wav", Body=b"two!")
    with pytest.raises(SourceError, match="changed since it was listed"):
        src.open(rec).read(2)


def test_run_from_ceph_to_ceph(ceph, store, tiny_model, tmp_path):
    """`granite-batch run` with input and output on Ceph RGW (output through pyarrow's S3
    filesystem), then a re-run that skips everything."""
    import duckdb
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    from tests.test_run import KEY, finish, granite, write_job

    upload_tree(ceph, "lake", "keep", {})  # the output bucket
    job = write_job(
        tmp_path / "job.yaml",
        tiny_model,
        ceph,
        input__uri="s3://archive/calls/",
        engine__pools=[{"name": "cpu", "device": "cpu", "replicas": 1, "cpus": 1}],
    )
    out = "s3://lake/transcripts"
    rc, _, err = finish(granite("run", "--config", str(job), "--output", out))
    assert rc == 1, err[-3000:]  # three bad files
    fs = pafs.S3FileSystem(
        endpoint_override=ceph.endpoint_url.split("://")[1],
        scheme="http",
        access_key=ceph.access_key,
        secret_key=ceph.secret_key,
        region=ceph.region,
    )
    rec = ds.dataset("lake/transcripts/recordings", filesystem=fs, partitioning="hive").to_table().to_pylist()
    assert sorted(r["source_uri"].rsplit("/", 1)[1] for r in rec) == sorted(k.rsplit("/", 1)[1] for k in store)
    assert sorted(r["status"] for r in rec).count("failed") == 3
    seg = ds.dataset("lake/transcripts/segments", filesystem=fs, partitioning="hive").to_table()
    check_segments(seg.to_pylist())
    keys = [tuple(r[k] for k in KEY) for r in seg.to_pylist()]
    assert keys and len(keys) == len(set(keys))
    ok = {r["recording_id"] for r in rec if r["status"] == "ok"}
    assert set(seg.column("recording_id").to_pylist()) == ok
    assert duckdb.sql("SELECT count(*) FROM seg WHERE end_s > start_s").fetchall()[0][0] == len(keys)
    assert not fs.get_file_info(pafs.FileSelector("lake/transcripts/_staging", allow_not_found=True))
    rc, _, err = finish(granite("run", "--config", str(job), "--output", out))
    assert rc == 0, err[-3000:]
    again = ds.dataset("lake/transcripts/recordings", filesystem=fs, partitioning="hive").to_table().to_pylist()
    by_id = lambda rows: sorted(rows, key=lambda r: r["recording_id"])  # noqa: E731
    assert by_id(again) == by_id(rec)  # nothing redone, and no row per skipped recording
