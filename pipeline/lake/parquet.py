"""`output.format: parquet`: hive-partitioned Parquet datasets at a local folder or `s3://` prefix,
committed atomically by a protocol of our own (staging files and commit markers).

Layout (docs/output.md):
    OUTPUT/segments/date=YYYY-MM-DD/<run_id>-<seq>.parquet
    OUTPUT/recordings/date=YYYY-MM-DD/<run_id>-<seq>.parquet
    OUTPUT/hits/, OUTPUT/pii/, OUTPUT/scans/   (compliance, same layout; docs/compliance.md)
    OUTPUT/runs/<run_id>.json
    OUTPUT/_staging/, OUTPUT/_commits/   (in-flight commits; `_` hides them from lake readers)

Commit protocol, per batch of settled recordings (docs/run.md#commits):
1. write every dataset's file under `_staging/` (an S3 upload appears whole or not at all), and
   the unredacted segments under the companion store's `_staging/<this store's hash>/`;
2. write `_commits/<run_id>-<seq>.json` naming each staging file and its final path. This is the
   commit point: a marker that exists and parses means the batch is done;
3. move the files to their final paths (rename locally; copy then delete on S3), then delete the marker.
A run first finishes every marker it finds (step 3 is idempotent) and deletes staging files that
no marker names (a run killed before step 2). So readers of `segments/` only ever see whole
files of committed batches, and a recording is either in exactly one committed batch or redone.
One run per output prefix at a time, enforced by `_lock.json` (lock.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import OutputError
from ..records.results import SEGMENTS, Segment
from ..records.rows import to_table
from ..records.settled import Batch
from ..records.tables import DATASETS
from .history import HISTORY_COLUMNS, History
from .store import OutputStore


class ParquetStore(OutputStore):
    format = "parquet"

    # -- start of a run -------------------------------------------------------------------------
    def recover(self, run_id: str) -> tuple[int, int]:
        """Finish interrupted commits, drop uncommitted files: (commits finished, orphans removed)."""
        if self.holds_delta():
            raise OutputError(f"{self.uri} holds Delta tables: set output.format: delta to write there")
        self.fs.create_dir(self.path("_staging"))
        self.take_lock(run_id)  # also proves the store is writable
        finished = 0
        for marker in self.list_files("_commits", ".json"):
            self._finish(marker)
            finished += 1
        orphans = self.list_files("_staging", "")
        for path in orphans:
            self.fs.delete_file(path)
        if self.unredacted is not None:
            u = self.unredacted
            u.fs.create_dir(u.path("_staging", self.namespace))
            theirs = u.list_files(f"_staging/{self.namespace}", "")
            for path in theirs:
                u.fs.delete_file(path)
            orphans += theirs
        return finished, len(orphans)

    def settlements(self) -> History:
        if self.fs.get_file_info(self.path("recordings")).type == pafs.FileType.NotFound:
            return History.from_batches([])
        dataset = ds.dataset(
            self.path("recordings"),
            filesystem=self.fs,
            format="parquet",
            partitioning="hive",
            exclude_invalid_files=False,
        )

        def batches() -> Iterator[pa.RecordBatch]:
            # file by file, a few thousand rows at a time: a dataset scan decodes whole row groups
            # several at once, which doubled the driver's peak memory on a big history
            for fragment in dataset.get_fragments():
                with self.fs.open_input_file(fragment.path) as f:
                    pf = pq.ParquetFile(f)
                    yield from pf.iter_batches(batch_size=1 << 16, columns=HISTORY_COLUMNS, use_threads=False)

        return History.from_batches(batches(), dataset.count_rows())  # footers only: an upper bound

    # -- during a run -----------------------------------------------------------------------------
    def commit(self, run_id: str, name: str, date: str, batch: Batch) -> None:
        """Commit `batch` as one: all its files or none."""

        def write() -> None:
            moves = [
                self._staged(name, dataset, date, to_table(rows, DATASETS[dataset]))
                for dataset, rows in batch.datasets()
            ]
            if batch.unredacted and self.unredacted is not None:
                table = to_table(batch.unredacted, SEGMENTS)
                moves.append(self.unredacted._staged(name, "segments", date, table, self.namespace))
            if moves:
                self._finish(self._mark(name, run_id, moves))

        self.committing(run_id, write)

    def replace(self, by: str, name: str, date: str, tables: dict[str, pa.Table], replaced: list[str]) -> None:
        """Commit `tables` (dataset -> rows) in place of the files `replaced` (`optimize`): all or nothing."""

        def write() -> None:
            moves = [self._staged(name, d, date, t) for d, t in tables.items() if t.num_rows]
            self._finish(self._mark(name, by, moves, replaced))

        self.committing(by, write)

    def manifest_extra(self) -> dict[str, Any]:
        return {"format": "parquet"}

    def _staged(self, name: str, dataset: str, date: str, table: pa.Table, companion: str = "") -> dict[str, str]:
        """`table` written under `_staging/` (this store is the companion of the store named
        `companion`: under `_staging/<companion>/`); the move that commits it."""
        folder = ("_staging", companion) if companion else ("_staging",)
        staging = self.path(*folder, f"{name}.{dataset}.parquet")
        pq.write_table(table, staging, filesystem=self.fs, compression="zstd")
        move = {"staging": staging, "final": self.path(self.relpath(dataset, date, name))}
        return move | {"store": "unredacted"} if companion else move

    def _mark(self, name: str, run_id: str, moves: list[dict[str, str]], deletes: list[str] = ()) -> str:
        """`deletes`: files the commit replaces (`optimize` merging small files), removed after the moves."""
        marker = self.path("_commits", f"{name}.json")
        self.fs.create_dir(self.path("_commits"))
        with self.fs.open_output_stream(marker) as f:
            f.write(json.dumps({"run_id": run_id, "moves": moves, "deletes": list(deletes)}).encode())
        return marker

    def _finish(self, marker: str) -> None:
        try:
            with self.fs.open_input_stream(marker) as f:
                done = json.loads(f.read())
                moves, deletes = done["moves"], done.get("deletes", [])
        except (ValueError, KeyError):
            # Cut off while being written: nothing was committed; its staging files are orphans.
            self.fs.delete_file(marker)
            return
        for m in moves:
            fs = self.fs
            if m.get("store") == "unredacted":
                if self.unredacted is None:
                    raise OSError(
                        f"commit {marker} has unredacted segments, but compliance.keep_unredacted_uri is unset"
                    )
                fs = self.unredacted.fs
            if fs.get_file_info(m["final"]).type == pafs.FileType.File:
                if fs.get_file_info(m["staging"]).type == pafs.FileType.File:
                    fs.delete_file(m["staging"])
                continue
            fs.create_dir(m["final"].rsplit("/", 1)[0])
            fs.move(m["staging"], m["final"])
        for path in deletes:
            if self.fs.get_file_info(path).type == pafs.FileType.File:
                self.fs.delete_file(path)
        self.fs.delete_file(marker)

    # -- reading committed files (granite-batch scan) ---------------------------------------------
    def segment_files(self) -> list[str]:
        """Every committed segments file, relative to the output, oldest date first."""
        sel = pafs.FileSelector(self.path("segments"), allow_not_found=True, recursive=True)
        infos = self.again(lambda: self.fs.get_file_info(sel))
        cut = len(self.root) + 1
        return sorted(i.path[cut:] for i in infos if i.is_file and i.path.endswith(".parquet"))

    def read_segments(self, relpath: str) -> list[Segment]:
        table = self.again(lambda: pq.read_table(self.path(relpath), filesystem=self.fs, schema=SEGMENTS))
        return [Segment.from_row(r) for r in table.to_pylist()]

    def scanned(self, rules: str) -> set[str]:
        """The segments files already searched with these rules (by a run or a scan)."""

        def read() -> pa.Table | None:
            if self.fs.get_file_info(self.path("scans")).type == pafs.FileType.NotFound:
                return None
            dataset = ds.dataset(self.path("scans"), filesystem=self.fs, format="parquet", partitioning="hive")
            return dataset.to_table(columns=["segments_file"], filter=ds.field("rules") == rules)

        table = self.again(read)
        return set(table["segments_file"].to_pylist()) if table is not None else set()
