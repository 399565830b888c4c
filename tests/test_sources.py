"""Listing and reading recordings from a local folder and from a real S3 server (moto)."""

from __future__ import annotations

import io
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.config import FiltersConfig, InputConfig
from pipeline.errors import SourceError
from pipeline.records.audio import Recording
from pipeline.sources import open_source
from pipeline.storage.s3 import RangeReader


def _listing(uri: str, **kw):
    filters = FiltersConfig(**kw.pop("filters", {}))
    src = open_source(InputConfig(uri=uri, **kw), filters)
    return src, list(src.recordings())


def test_local_listing_globs_and_markers(tmp_path):
    for rel in ["2026-11-24/a.wav", "2026-11-25/b.mp3", "2026-11-25/b.mp3.keywords.txt", "notes/readme.md"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x" * 10)
    src, recs = _listing(str(tmp_path), include=["2026-*"], exclude=["*.txt"])
    assert [os.path.relpath(r.source_uri, tmp_path) for r in recs] == ["2026-11-24/a.wav", "2026-11-25/b.mp3"]
    assert src.stats.excluded_by_glob == 2
    assert all(r.size_bytes == 10 and r.etag for r in recs)


def test_local_modified_since(tmp_path):
    old, new = tmp_path / "old.wav", tmp_path / "new.wav"
    old.write_bytes(b"1")
    new.write_bytes(b"2")
    past = time.time() - 3 * 86400
    os.utime(old, (past, past))
    src, recs = _listing(str(tmp_path), filters={"modified_since": datetime.now(timezone.utc) - timedelta(days=1)})
    assert [r.source_uri for r in recs] == [str(new)] and src.stats.excluded_by_modified_since == 1


def test_local_change_after_listing_is_refused(tmp_path):
    f = tmp_path / "a.wav"
    f.write_bytes(b"1234")
    src, (rec,) = _listing(str(tmp_path))
    f.write_bytes(b"123456")
    with pytest.raises(SourceError, match="changed since it was listed"):
        src.open(rec)


def test_recording_id_is_deterministic():
    a = Recording("s3://b/k.wav", 10, "etag1")
    assert a.recording_id == Recording("s3://b/k.wav", 99, "etag1").recording_id
    assert a.recording_id != Recording("s3://b/k.wav", 10, "etag2").recording_id
    with pytest.raises(AttributeError):
        a.etag = "x"  # type: ignore[misc]


@pytest.fixture(scope="module")
def bucket(moto):
    s3 = moto.client()
    s3.create_bucket(Bucket="src")
    # 1,050 keys: more than one list page (1,000), so pagination is exercised for real.
    for i in range(1050):
        s3.put_object(Bucket="src", Key=f"calls/2026-11-25/{i:04d}.wav", Body=b"x")
    s3.put_object(Bucket="src", Key="calls/2026-11-25/", Body=b"")  # a "folder" marker
    s3.put_object(Bucket="src", Key="calls/odd/", Body=b"audio?")  # ends in "/" but holds bytes: a recording
    s3.put_object(Bucket="src", Key="calls/other/skip.json", Body=b"{}")
    s3.put_object(Bucket="src", Key="blob/data.bin", Body=bytes(range(256)) * 4000)
    return moto


def test_s3_paginated_listing(bucket):
    src, recs = _listing("s3://src/calls/", endpoint_url=bucket.endpoint_url)
    assert len(recs) == 1051 and recs[0].source_uri == "s3://src/calls/2026-11-25/0000.wav"
    assert recs[-1].source_uri == "s3://src/calls/odd/"
    assert src.stats.folder_markers == 1 and src.stats.excluded_by_glob == 1
    _, some = _listing("s3://src/calls/", endpoint_url=bucket.endpoint_url, include=["*/10??.wav"])
    assert len(some) == 50


def test_s3_listing_is_lazy(bucket):
    src = open_source(InputConfig(uri="s3://src/calls/", endpoint_url=bucket.endpoint_url), FiltersConfig())
    it = src.recordings()
    first = next(it)  # one page fetched, not the whole prefix
    assert first.source_uri.endswith("0000.wav")


def test_range_reader_reads_and_seeks_exactly(bucket):
    src, (rec,) = _listing("s3://src/blob/", endpoint_url=bucket.endpoint_url, exclude=[])
    data = bytes(range(256)) * 4000
    r = src.open(rec)
    assert isinstance(r, RangeReader)
    r._chunk = 100_000  # several ranged GETs for this 1 MB object
    buf = io.BufferedReader(r, 8192)
    assert buf.read(1000) == data[:1000]
    buf.seek(500_000)
    assert buf.read(300_000) == data[500_000:800_000]
    buf.seek(-10, io.SEEK_END)
    assert buf.read() == data[-10:]
    assert r.requests >= 4


def test_s3_object_replaced_or_deleted_after_listing(bucket):
    s3 = bucket.client()
    s3.put_object(Bucket="src", Key="volatile/a.wav", Body=b"first version")
    s3.put_object(Bucket="src", Key="volatile/b.wav", Body=b"first version")
    src, (a, b) = _listing("s3://src/volatile/", endpoint_url=bucket.endpoint_url)
    s3.put_object(Bucket="src", Key="volatile/a.wav", Body=b"second version!")
    s3.delete_object(Bucket="src", Key="volatile/b.wav")
    with pytest.raises(SourceError, match="changed since it was listed"):
        src.open(a).read(4)
    with pytest.raises(SourceError, match="vanished"):
        src.open(b).read(4)


def test_missing_bucket_is_a_clear_error(moto):
    src = open_source(InputConfig(uri="s3://no-such-bucket/x/", endpoint_url=moto.endpoint_url), FiltersConfig())
    with pytest.raises(SourceError, match="cannot list s3://no-such-bucket/x/"):
        list(src.recordings())


def test_local_dangling_symlink_is_listed_and_fails_on_open(tmp_path):
    (tmp_path / "gone.wav").symlink_to(tmp_path / "missing.wav")
    src, (rec,) = _listing(str(tmp_path))
    with pytest.raises(SourceError, match="cannot open"):
        src.open(rec)


def test_s3_prefix_without_slash_means_the_folder(bucket):
    s3 = bucket.client()
    s3.put_object(Bucket="src", Key="tree/a.wav", Body=b"1")
    s3.put_object(Bucket="src", Key="tree-archive/b.wav", Body=b"2")
    _, recs = _listing("s3://src/tree", endpoint_url=bucket.endpoint_url)
    assert [r.source_uri for r in recs] == ["s3://src/tree/a.wav"]
    _, (one,) = _listing("s3://src/tree/a.wav", endpoint_url=bucket.endpoint_url)  # a single object
    assert one.source_uri == "s3://src/tree/a.wav"


def test_range_reader_rejects_negative_seek(bucket):
    src, (rec,) = _listing("s3://src/blob/", endpoint_url=bucket.endpoint_url, exclude=[])
    with pytest.raises(OSError):
        src.open(rec).seek(-5)


def test_keyword_sidecars_local_and_s3(bucket, tmp_path):
    from pipeline.config import load_config
    from pipeline.prompt import prompt_for
    from pipeline.sources import sidecar_keywords

    s3 = bucket.client()
    s3.put_object(Bucket="src", Key="kw/call.wav", Body=b"x")
    s3.put_object(Bucket="src", Key="kw/call.wav.keywords.txt", Body=b"Zorblax\nAcme # dup of the job list\n")
    s3.put_object(Bucket="src", Key="kw/other.wav", Body=b"x")
    cfg = load_config(
        None, {"input.uri": "s3://src/kw/", "input.endpoint_url": bucket.endpoint_url, "prompt.keywords": ["ACME"]}
    )
    src, recs = _listing("s3://src/kw/", endpoint_url=bucket.endpoint_url)
    assert len(recs) == 2  # the sidecar is not a recording
    specs = {
        r.source_uri.rsplit("/", 1)[1]: prompt_for(
            r, sidecar_keywords(src, r, cfg.prompt), cfg, list(cfg.prompt.keywords)
        )
        for r in recs
    }
    assert specs["call.wav"].keywords == ("ACME", "Zorblax") and specs["other.wav"].keywords == ("ACME",)
    (tmp_path / "a.wav").write_bytes(b"1")
    (tmp_path / "a.wav.keywords.txt").write_text("Widget Pro, Gizmo\n")
    lsrc, (rec,) = _listing(str(tmp_path))
    assert prompt_for(rec, sidecar_keywords(lsrc, rec, cfg.prompt), cfg, []).keywords == ("Widget Pro", "Gizmo")


def test_bodies_cut_mid_transfer_are_fetched_again(bucket):
    """botocore retries a request, but not a body cut mid-transfer, nor the small bodies of
    listings and error answers (read outside its retry loop): `retrying` covers all three."""
    from tests.services.fault_proxy import FaultProxy

    host, port = bucket.endpoint_url.split("://")[1].split(":")
    with FaultProxy(upstream=(host, int(port)), slowdown=0, reset=0, cut=0.2, seed=3) as proxy:
        src, recs = _listing("s3://src/calls/", endpoint_url=proxy.endpoint_url)  # two listing pages
        assert len(recs) == 1051
        assert all(src.sidecar(r, ".keywords.txt") is None for r in recs[:30])  # 404 answers
        _, (blob,) = _listing("s3://src/blob/", endpoint_url=proxy.endpoint_url, exclude=[], read_chunk_bytes=64 << 10)
        data = (
            open_source(
                InputConfig(
                    uri="s3://src/blob/", endpoint_url=proxy.endpoint_url, exclude=[], read_chunk_bytes=64 << 10
                ),
                FiltersConfig(),
            )
            .open(blob)
            .read()
        )
    assert data == bytes(range(256)) * 4000
    assert proxy.injected["cut"] >= 5, proxy.injected
