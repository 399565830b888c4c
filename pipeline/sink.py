"""The output store: Parquet datasets at a local folder or `s3://` prefix, committed atomically.

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
One run per output prefix at a time, enforced by `_lock.json` (output_lock.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .config import JobConfig
from .history import History
from .output_lock import LockHeld, OutputLock
from .records.compliance import HITS, PII, SCANS
from .records.results import RECORDINGS, SEGMENTS, Segment
from .records.rows import to_table
from .storage.fs import open_filesystem

_HISTORY = ["recording_id", "status", "run_id", "processed_at"]
# The datasets a commit may hold, in the order they are written.
DATASETS: dict[str, pa.Schema] = {
    "segments": SEGMENTS,
    "recordings": RECORDINGS,
    "hits": HITS,
    "pii": PII,
    "scans": SCANS,
}

T = TypeVar("T")

log = logging.getLogger(__name__)


class OutputError(Exception):
    """The output store cannot be read or written; the run stops and commits nothing more."""


def output_where(cfg: JobConfig) -> tuple[str | None, str | None]:
    """Endpoint and region of everything the job writes or reads besides its input (outputs, terms
    files, audio copies): the output's, else the input's."""
    return cfg.output.endpoint_url or cfg.input.endpoint_url, cfg.output.region or cfg.input.region


def output_format(cfg: JobConfig) -> str:
    """What the output holds already (else output.format): `optimize` needs no job file."""
    endpoint, region = output_where(cfg)
    return "delta" if OutputStore(cfg.output.uri or "", endpoint, region).holds_delta() else cfg.output.format


def output_store(cfg: JobConfig, uri: str) -> OutputStore:
    """The job's output store at `uri`, with its unredacted companion when compliance keeps one."""
    endpoint, region = output_where(cfg)
    keep = cfg.compliance.keep_unredacted_uri
    kind = OutputStore
    if cfg.output.format == "delta":
        from .delta_store import DeltaStore

        kind = DeltaStore
    unredacted = kind(keep, endpoint, region) if keep else None
    return kind(uri, endpoint, region, cfg.output.lock_stale_s, unredacted)


class Heartbeat:
    """Keeps the output's lock fresh (every quarter of its lease, at most a minute) while a run,
    scan or optimize lives; engine start-up included."""

    def __init__(self, store: OutputStore, owner: str) -> None:
        self._stopped = threading.Event()
        every_s = min(60.0, store.lock_stale_s / 4)
        self._thread = threading.Thread(target=self._beat, args=(store, owner, every_s), daemon=True)
        self._thread.start()

    def _beat(self, store: OutputStore, owner: str, every_s: float) -> None:
        while not self._stopped.wait(every_s):
            try:
                store.heartbeat(owner)
            except (OSError, OutputError) as err:  # the next commit fails loudly: store gone, or lock taken over
                print(f"warning: cannot refresh the output lock: {err}", file=sys.stderr)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


class OutputStore:
    """`unredacted`: the store (compliance.keep_unredacted_uri) that receives the unredacted
    segments, in the same commits as this one's."""

    format = "parquet"

    def __init__(
        self,
        uri: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        lock_stale_s: float = 60.0,
        unredacted: OutputStore | None = None,
    ) -> None:
        self.uri, self.lock_stale_s, self.unredacted = uri.rstrip("/"), lock_stale_s, unredacted
        self._where = (endpoint_url, region)
        self.fs, self.root = open_filesystem(uri, endpoint_url, region)
        self._s3: Any = None  # the lock's boto3 client on S3, made when first needed
        # This store's staging folder in a companion shared by several outputs.
        self.namespace = hashlib.sha256(self.uri.encode()).hexdigest()[:12]

    def _again(self, op: Callable[[], T], tries: int = 3) -> T:
        """`op()`, again with a fresh S3 client if it fails (`tries` in all). The SDK's standard
        retry strategy (which also retries bodies cut mid-transfer) keeps a retry quota per client;
        under sustained throttling the quota runs dry and it then retries nothing, which failed a
        long run's commit. A multipart completion answered with an error inside a 200 OK may still
        be completing when the SDK retries it (Ceph: "already in progress"): the pause lets it
        settle. Every operation passed here is idempotent (fixed names; finishing a commit twice
        is a no-op)."""
        for attempt in range(1, tries):
            try:
                return op()
            except OSError as err:
                if not self.uri.startswith("s3://"):
                    raise
                log.warning("output %s: %s; retrying with a fresh client", self.uri, err)
                time.sleep(float(attempt))
                self._fresh_clients()
        return op()

    def _fresh_clients(self) -> None:
        self.fs, _ = open_filesystem(self.uri, *self._where)
        self._s3 = None  # the lock's client too

    def _p(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def path(self, dataset: str) -> str:
        """A dataset's folder on `self.fs`."""
        return self._p(dataset)

    def holds_delta(self) -> bool:
        """Delta tables here (a companion store has segments only; a killed first run may lack recordings)."""
        logs = [self._p(t, "_delta_log") for t in ("recordings", "segments", "hits", "pii")]
        return any(i.type == pafs.FileType.Directory for i in self.fs.get_file_info(logs))

    # -- start of a run ---------------------------------------------------------------------
    def prepare(self, run_id: str) -> tuple[int, int]:
        """Check the store is writable, finish interrupted commits, drop uncommitted files.
        Returns (commits finished, orphan files removed)."""
        try:
            return self._again(lambda: self._prepare(run_id))
        except OSError as err:
            raise OutputError(f"output {self.uri} is not usable: {err}") from None

    def _prepare(self, run_id: str) -> tuple[int, int]:
        if self.holds_delta():
            raise OutputError(f"{self.uri} holds Delta tables: set output.format: delta to write there")
        self.fs.create_dir(self._p("_staging"))
        self._take_lock(run_id)  # also proves the store is writable
        finished = 0
        for marker in self._list("_commits", ".json"):
            self._finish(marker)
            finished += 1
        orphans = self._list("_staging", "")
        for path in orphans:
            self.fs.delete_file(path)
        if self.unredacted is not None:
            u = self.unredacted
            u.fs.create_dir(u._p("_staging", self.namespace))
            theirs = u._list(f"_staging/{self.namespace}", "")
            for path in theirs:
                u.fs.delete_file(path)
            orphans += theirs
        return finished, len(orphans)

    # -- one run per output at a time (output_lock.py) ---------------------------------------
    def lock(self) -> OutputLock:
        s3 = self._s3  # read once: the heartbeat's retry may reset it meanwhile
        if self.uri.startswith("s3://") and s3 is None:
            from .storage.s3 import s3_client

            s3 = self._s3 = s3_client(*self._where)
        return OutputLock(self._p("_lock.json"), self.uri, self.lock_stale_s, s3)

    def _take_lock(self, run_id: str) -> None:
        try:
            self.lock().take(run_id)  # also proves the store is writable
        except LockHeld as err:
            raise OutputError(str(err)) from None

    def heartbeat(self, run_id: str) -> None:
        """Renew this run's lease; OutputError if another run has taken the output over, or the
        store cannot be written."""
        try:
            self._again(lambda: self.lock().renew(run_id))
        except LockHeld as err:
            raise OutputError(str(err)) from None
        except OSError as err:
            raise OutputError(f"cannot refresh the lock of {self.uri}: {err}") from None

    def release(self, run_id: str) -> None:
        try:
            self.lock().release(run_id)
        except OSError as err:
            log.warning("could not remove %s/_lock.json: %s", self.uri, err)

    def history(self) -> History:
        """The latest ok/failed settlement of every recording by earlier runs, read in batches
        (history.py: bounded memory for millions of recordings)."""
        try:
            return self._again(self._settlements)
        except (OSError, pa.ArrowInvalid, ValueError) as err:
            raise OutputError(f"cannot read earlier runs from {self.uri}/recordings: {err}") from None

    def _settlements(self) -> History:
        if self.fs.get_file_info(self._p("recordings")).type == pafs.FileType.NotFound:
            return History.from_batches([])
        dataset = ds.dataset(
            self._p("recordings"),
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
                    for b in pq.ParquetFile(f).iter_batches(batch_size=1 << 16, columns=_HISTORY, use_threads=False):
                        yield b.filter(pc.not_equal(b.column("status"), "skipped"))

        return History.from_batches(batches(), dataset.count_rows())  # footers only: an upper bound

    # -- during a run -------------------------------------------------------------------------
    @staticmethod
    def file_name(run_id: str, seq: int) -> str:
        return f"{run_id}-{seq:05d}"

    @staticmethod
    def relpath(dataset: str, date: str, name: str) -> str:
        """A committed file's path below the output (what `scans.segments_file` holds)."""
        return f"{dataset}/date={date}/{name}.parquet"

    def commit(
        self, run_id: str, name: str, date: str, rows: dict[str, list[Any]], unredacted: list[Segment] | None = None
    ) -> None:
        """Commit `rows` (dataset -> records, see DATASETS) as one batch: all files or none."""

        def write() -> None:
            moves = self._stage(name, date, rows, unredacted or [])
            if moves:
                self._finish(self._mark(name, run_id, moves))

        self._committing(run_id, write)

    def _committing(self, run_id: str, write: Callable[[], None]) -> None:
        """`write()` a batch (idempotent), with the store's retries, while the lock is still ours."""

        def attempt() -> None:
            self.lock().renew(run_id)  # still ours: a run taken over (judged dead, or unlocked) stops here
            write()

        try:
            self._again(attempt)
        except LockHeld as err:
            raise OutputError(str(err)) from None
        except OSError as err:
            raise OutputError(f"cannot commit to {self.uri}: {err}") from None

    def _stage(
        self, name: str, date: str, rows: dict[str, list[Any]], unredacted: list[Segment]
    ) -> list[dict[str, str]]:
        moves = []
        for dataset, schema in DATASETS.items():
            if rows.get(dataset):
                staging = self._p("_staging", f"{name}.{dataset}.parquet")
                pq.write_table(to_table(rows[dataset], schema), staging, filesystem=self.fs, compression="zstd")
                moves.append({"staging": staging, "final": self._p(self.relpath(dataset, date, name))})
        if unredacted and self.unredacted is not None:
            u = self.unredacted
            staging = u._p("_staging", self.namespace, f"{name}.segments.parquet")
            pq.write_table(to_table(unredacted, SEGMENTS), staging, filesystem=u.fs, compression="zstd")
            final = u._p(self.relpath("segments", date, name))
            moves.append({"staging": staging, "final": final, "store": "unredacted"})
        return moves

    def _mark(self, name: str, run_id: str, moves: list[dict[str, str]], deletes: list[str] = ()) -> str:
        """`deletes`: files the commit replaces (`optimize` merging small files), removed after the moves."""
        marker = self._p("_commits", f"{name}.json")
        self.fs.create_dir(self._p("_commits"))
        with self.fs.open_output_stream(marker) as f:
            f.write(json.dumps({"run_id": run_id, "moves": moves, "deletes": list(deletes)}).encode())
        return marker

    def replace(self, by: str, name: str, date: str, tables: dict[str, pa.Table], replaced: list[str]) -> None:
        """Commit `tables` (dataset -> rows) in place of the files `replaced` (`optimize`): all or nothing."""

        def write() -> None:
            moves = []
            for dataset, table in tables.items():
                if table.num_rows:
                    staging = self._p("_staging", f"{name}.{dataset}.parquet")
                    pq.write_table(table, staging, filesystem=self.fs, compression="zstd")
                    moves.append({"staging": staging, "final": self._p(self.relpath(dataset, date, name))})
            self._finish(self._mark(name, by, moves, replaced))

        self._committing(by, write)

    def manifest_extra(self) -> dict[str, Any]:
        """What the run manifest says about this store's format (Delta: the table versions written)."""
        return {"format": "parquet"}

    def write_manifest(self, run_id: str, manifest: dict[str, Any]) -> str:
        path = self._p("runs", f"{run_id}.json")

        def write() -> None:
            self.fs.create_dir(self._p("runs"))
            with self.fs.open_output_stream(path) as f:
                f.write(json.dumps(manifest, indent=2, default=str).encode())

        try:
            self._again(write)
        except OSError as err:
            raise OutputError(f"cannot write the run manifest to {self.uri}: {err}") from None
        return f"{self.uri}/runs/{run_id}.json"

    # -- internals ----------------------------------------------------------------------------
    def _list(self, folder: str, suffix: str) -> list[str]:
        sel = pafs.FileSelector(self._p(folder), allow_not_found=True)
        return sorted(i.path for i in self.fs.get_file_info(sel) if i.is_file and i.path.endswith(suffix))

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

    # -- reading committed files (granite-batch scan) ------------------------------------------
    def segment_files(self) -> list[str]:
        """Every committed segments file, relative to the output, oldest date first."""
        sel = pafs.FileSelector(self._p("segments"), allow_not_found=True, recursive=True)
        infos = self._again(lambda: self.fs.get_file_info(sel))
        cut = len(self.root) + 1
        return sorted(i.path[cut:] for i in infos if i.is_file and i.path.endswith(".parquet"))

    def read_segments(self, relpath: str) -> list[Segment]:
        table = self._again(lambda: pq.read_table(self._p(relpath), filesystem=self.fs, schema=SEGMENTS))
        return [Segment.from_row(r) for r in table.to_pylist()]

    def scanned(self, rules: str) -> set[str]:
        """The segments files already searched with these rules (by a run or a scan)."""

        def read() -> pa.Table | None:
            if self.fs.get_file_info(self._p("scans")).type == pafs.FileType.NotFound:
                return None
            dataset = ds.dataset(self._p("scans"), filesystem=self.fs, format="parquet", partitioning="hive")
            return dataset.to_table(columns=["segments_file"], filter=ds.field("rules") == rules)

        table = self._again(read)
        return set(table["segments_file"].to_pylist()) if table is not None else set()
