"""What every output store is, whatever its format: a place (a local folder or `s3://` prefix, as
a pyarrow filesystem) that one run at a time writes to, under its lock (lock.py), with retries
that start a fresh client, and the runs' manifests (OUTPUT/runs/<run_id>.json). The formats
(parquet.py, delta.py) add how a batch of rows is committed, recovered and read back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import OutputError
from ..records.settled import Batch
from ..records.tables import DELTA_TABLES
from ..storage.fs import open_filesystem
from .history import History
from .lock import LockHeld, OutputLock

T = TypeVar("T")

log = logging.getLogger(__name__)


class OutputStore:
    """`unredacted`: the store (compliance.keep_unredacted_uri) that receives the unredacted
    segments, in the same commits as this one's (a store of the same format)."""

    format: str

    def __init__(
        self,
        uri: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        lock_stale_s: float = 60.0,
        unredacted: OutputStore | None = None,
    ) -> None:
        self.uri, self.lock_stale_s, self.unredacted = uri.rstrip("/"), lock_stale_s, unredacted
        self.endpoint_url, self.region = endpoint_url, region
        self.fs, self.root = open_filesystem(uri, endpoint_url, region)
        self._s3: Any = None  # the lock's boto3 client on S3, made when first needed
        # This store's staging folder (Parquet) or commits (Delta) in a companion shared by several outputs.
        self.namespace = hashlib.sha256(self.uri.encode()).hexdigest()[:12]

    # -- start of a run -----------------------------------------------------------------------
    def prepare(self, run_id: str) -> tuple[int, int]:
        """Take the lock (which proves the store writable) and finish or undo what an interrupted
        run left (`recover`, with the store's retries). Returns (commits finished, files removed)."""
        return self.guarded(lambda: self.recover(run_id), f"output {self.uri} is not usable")

    def history(self) -> History:
        """The latest ok/failed settlement of every recording by earlier runs, read in batches
        (`settlements`; history.py: bounded memory for millions of recordings)."""
        return self.guarded(
            self.settlements,
            f"cannot read earlier runs from {self.uri}/recordings",
            (OSError, pa.ArrowInvalid, ValueError),
        )

    # -- what each format does ------------------------------------------------------------------
    def recover(self, run_id: str) -> tuple[int, int]:
        """`prepare`'s work, once: may raise OSError (retried) or OutputError."""
        raise NotImplementedError

    def settlements(self) -> History:
        """`history`'s read, once: the recordings dataset's HISTORY_COLUMNS."""
        raise NotImplementedError

    def commit(self, run_id: str, name: str, date: str, batch: Batch) -> None:
        """Commit `batch` as one unit, named `name` (`file_name(run_id, seq)`): all of it or none."""
        raise NotImplementedError

    def manifest_extra(self) -> dict[str, Any]:
        """What the run manifest says about this store's format."""
        raise NotImplementedError

    # -- the place --------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """A path below the output on `self.fs` (a dataset's folder, a marker, the lock...)."""
        return "/".join((self.root, *parts))

    def holds_delta(self) -> bool:
        """Delta tables here (a companion store has segments only; a killed first run may lack recordings)."""
        logs = [self.path(t, "_delta_log") for t in DELTA_TABLES]
        return any(i.type == pafs.FileType.Directory for i in self.fs.get_file_info(logs))

    def again(self, op: Callable[[], T], tries: int = 3) -> T:
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
                self.refresh()
        return op()

    def refresh(self) -> None:
        """Fresh clients (`again`); a format that keeps clients of its own extends this."""
        self.fs, _ = open_filesystem(self.uri, self.endpoint_url, self.region)
        self._s3 = None  # the lock's client too

    def list_files(self, folder: str, suffix: str) -> list[str]:
        sel = pafs.FileSelector(self.path(folder), allow_not_found=True)
        return sorted(i.path for i in self.fs.get_file_info(sel) if i.is_file and i.path.endswith(suffix))

    @staticmethod
    def file_name(run_id: str, seq: int) -> str:
        return f"{run_id}-{seq:05d}"

    @staticmethod
    def relpath(dataset: str, date: str, name: str) -> str:
        """A committed file's path below the output (what `scans.segments_file` holds)."""
        return f"{dataset}/date={date}/{name}.parquet"

    # -- one run per output at a time (lock.py) ----------------------------------------------------
    def lock(self) -> OutputLock:
        s3 = self._s3  # read once: the heartbeat's retry may reset it meanwhile
        if self.uri.startswith("s3://") and s3 is None:
            from ..storage.s3 import s3_client

            s3 = self._s3 = s3_client(self.endpoint_url, self.region)
        return OutputLock(self.path("_lock.json"), self.uri, self.lock_stale_s, s3)

    def take_lock(self, run_id: str) -> None:
        try:
            self.lock().take(run_id)  # also proves the store is writable
        except LockHeld as err:
            raise OutputError(str(err)) from None

    def heartbeat(self, run_id: str) -> None:
        """Renew this run's lease; OutputError if another run has taken the output over, or the
        store cannot be written."""
        try:
            self.again(lambda: self.lock().renew(run_id))
        except LockHeld as err:
            raise OutputError(str(err)) from None
        except OSError as err:
            raise OutputError(f"cannot refresh the lock of {self.uri}: {err}") from None

    def release(self, run_id: str) -> None:
        try:
            self.lock().release(run_id)
        except OSError as err:
            log.warning("could not remove %s/_lock.json: %s", self.uri, err)

    def committing(self, run_id: str, write: Callable[[], None]) -> None:
        """`write()` a batch (idempotent), with the store's retries, while the lock is still ours."""

        def attempt() -> None:
            self.lock().renew(run_id)  # still ours: a run taken over (judged dead, or unlocked) stops here
            write()

        try:
            self.again(attempt)
        except LockHeld as err:
            raise OutputError(str(err)) from None
        except OSError as err:
            raise OutputError(f"cannot commit to {self.uri}: {err}") from None

    def guarded(self, op: Callable[[], T], failing: str, errors: tuple[type[Exception], ...] = (OSError,)) -> T:
        """`op()` with the store's retries; what still fails is an OutputError saying `failing`."""
        try:
            return self.again(op)
        except errors as err:
            raise OutputError(f"{failing}: {err}") from None

    # -- the runs' manifests ----------------------------------------------------------------------
    def write_manifest(self, run_id: str, manifest: dict[str, Any]) -> str:
        path = self.path("runs", f"{run_id}.json")

        def write() -> None:
            self.fs.create_dir(self.path("runs"))
            with self.fs.open_output_stream(path) as f:
                f.write(json.dumps(manifest, indent=2, default=str).encode())

        self.guarded(write, f"cannot write the run manifest to {self.uri}")
        return f"{self.uri}/runs/{run_id}.json"


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
