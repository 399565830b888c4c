"""Helpers for the output-store tests (test_sink, test_lake, test_optimize): rows to commit, the
stores under test, and what a store holds."""

from __future__ import annotations

from typing import TypeVar

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from pipeline.lake.store import OutputStore
from pipeline.records.audio import AudioInfo, Recording
from pipeline.records.results import RecordingStatus, Segment, Word
from tests.conftest import upload_tree

S = TypeVar("S", bound=OutputStore)

DATE = "2026-11-26"


def sample_rows(run_id: str, n: int, status: str = "ok") -> tuple[list[Segment], list[RecordingStatus]]:
    recs, segs = [], []
    info = AudioInfo("wav", "pcm_s16le", 16000, 1, 2.0)
    for i in range(n):
        rec = Recording(f"s3://in/calls/{run_id}-{i}.wav", 1000 + i, f"etag{i}")
        recs.append(RecordingStatus.of(rec, run_id, status, info, segments=1))
        segs.append(
            Segment(
                rec.recording_id,
                rec.source_uri,
                0,
                "mono",
                0,
                0.5,
                1.5,
                "hello",
                (Word("hello", 0.6, 0.9, 0.5),),
                "en",
                (),
                "m",
                "r",
                run_id,
                "cpu",
                "stop",
                3,
                "llm",
            )
        )
    return segs, recs


def store_for(request, tmp_path, kind: type[S], bucket_prefix: str) -> S:
    """An empty output of `kind` on a local folder (`request.param` "local") or a fresh moto
    bucket. lock_stale_s=0: these tests play several runs in a row, each "killed" (the lock has
    its own test)."""
    if request.param == "local":
        return kind(str(tmp_path / "out"), lock_stale_s=0)
    svc = request.getfixturevalue("moto")
    bucket = f"{bucket_prefix}-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    upload_tree(svc, bucket, "x", {})
    return kind(f"s3://{bucket}/lake/transcripts", svc.endpoint_url, lock_stale_s=0)


def count(store: OutputStore, dataset: str) -> int:
    path = f"{store.root}/{dataset}"
    if store.fs.get_file_info(path).type == pafs.FileType.NotFound:
        return 0
    return ds.dataset(path, filesystem=store.fs, format="parquet", partitioning="hive").count_rows()


def files(store: OutputStore, folder: str) -> list[str]:
    sel = pafs.FileSelector(f"{store.root}/{folder}", allow_not_found=True, recursive=True)
    return [i.path for i in store.fs.get_file_info(sel) if i.is_file]
