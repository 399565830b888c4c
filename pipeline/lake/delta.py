"""`output.format: delta`: the datasets as Delta Lake tables (delta-rs, no JVM), one commit per table
and settle batch.

Layout (docs/lake.md):
    OUTPUT/segments/, OUTPUT/recordings/, OUTPUT/hits/, OUTPUT/pii/   Delta tables, partitioned by `date`
    OUTPUT/runs/<run_id>.json   the run's manifest, with the table versions it wrote
    OUTPUT/_lock.json           one run per output at a time (lock.py), as with Parquet

Exactly once without staging files or markers of our own: every write carries a Delta
application transaction (app id = the run's id, version = its commit sequence), so a commit
retried after an error is a no-op in each table it already reached. A batch reaches its tables one
after another, `recordings` last: a recordings row is the settlement, and a batch whose
recordings commit never landed (the run was killed between tables) is undone at the next run's
start, in every table it reached, by removing the files it added. So a recording is in exactly
one committed batch or redone, as with Parquet; a reader of `segments` alone may glimpse a
killed batch's rows until the next run (joining on `recordings` never does).

Delta's own commits (`_delta_log/N.json`) must be created only if absent. Local disks do that;
on S3, delta-rs sends `If-None-Match: *`. A store that ignores the header would let two commits
overwrite each other, so the run first checks that the store refuses a second create, and stops
with an error if it does not.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import OutputError
from ..records.rows import to_table
from ..records.settled import Batch
from ..records.tables import DATASETS, DELTA_TABLES
from .history import HISTORY_COLUMNS, History
from .lock import REFUSED
from .store import OutputStore

T = TypeVar("T")

log = logging.getLogger(__name__)

# The tables of a batch, in the order they are written: recordings, the settlement, last.
TABLES: dict[str, pa.Schema] = {name: DATASETS[name] for name in DELTA_TABLES}
DATE = pa.field("date", pa.string(), nullable=False, metadata={"doc": "The run's UTC date (the partition)."})
# Keys of our commits' metadata (commitInfo), found again when undoing a killed batch.
RUN, SEQ, OUTPUT, UNDO = "granite_run_id", "granite_commit", "granite_output", "granite_undo"


def delta_schema(schema: pa.Schema) -> pa.Schema:
    return schema.append(DATE)


class DeltaStore(OutputStore):
    """An output whose datasets are Delta tables; the lock, manifests and retries are OutputStore's
    (store.py)."""

    format = "delta"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.versions: dict[str, int] = {}  # table -> the last version this run wrote (for the manifest)
        # Tables by URI, kept between commits: brought up to date by reading only the log entries
        # since (we are the only writer), instead of loading the table again for every batch.
        self._open: dict[str, Any] = {}

    def refresh(self) -> None:
        super().refresh()
        self._open.clear()

    # -- where the tables are -------------------------------------------------------------------
    def table_uri(self, name: str) -> str:
        return f"{self.uri}/{name}" if self.uri.startswith("s3://") else self.path(name)

    def storage_options(self) -> dict[str, str]:
        endpoint, region = self.endpoint_url, self.region
        opts = {"AWS_REGION": region} if region else {}
        if endpoint:
            opts |= {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": region or "us-east-1"}
            if endpoint.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        return opts

    def table(self, name: str, store: OutputStore | None = None) -> Any:
        """The Delta table `name` of this store (or of `store`: the unredacted companion); None if
        no run has written it yet."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        s = store or self
        uri = s.table_uri(name)
        if uri in self._open:
            delta_call(self._open[uri].update_incremental)
            return self._open[uri]
        try:
            table = delta_call(lambda: DeltaTable(uri, storage_options=s.storage_options()))
        except TableNotFoundError:
            return None
        self._open[uri] = table
        return table

    def _tables(self) -> Iterator[tuple[str, OutputStore, Any]]:
        """(name, store, table) of every table a batch writes but recordings."""
        for name in TABLES:
            if name != "recordings":
                yield name, self, self.table(name)
        if self.unredacted is not None:
            yield "segments", self.unredacted, self.table("segments", self.unredacted)

    # -- start of a run -------------------------------------------------------------------------
    def recover(self, run_id: str) -> tuple[int, int]:
        """Check the store refuses a second create, and undo the batches a killed run left
        unsettled: (0, files removed)."""
        if not self.holds_delta() and self.fs.get_file_info(self.path("recordings")).type != pafs.FileType.NotFound:
            raise OutputError(f"{self.uri} holds Parquet datasets: output.format: delta needs an output of its own")
        self.take_lock(run_id)  # also proves the store is writable
        self._check_conditional_creates(run_id)
        recordings = self.table("recordings")
        undone = 0
        for name, store, table in self._tables():
            if table is not None:
                undone += self._undo_unsettled(name, store, table, recordings)
        return 0, undone

    def _check_conditional_creates(self, run_id: str) -> None:
        if not self.uri.startswith("s3://"):
            return  # local: delta-rs creates commits with a hard link, which fails if the name exists
        s3 = self.lock().s3
        bucket, _, prefix = self.root.partition("/")
        probe = {"Bucket": bucket, "Key": "/".join(p for p in (prefix, "_delta_probe", run_id) if p)}
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            s3.put_object(**probe, Body=b"", IfNoneMatch="*")
            s3.put_object(**probe, Body=b"", IfNoneMatch="*")
            answer = "accepted"
        except ClientError as err:
            answer = str(err.response.get("Error", {}).get("Code"))
        except BotoCoreError as err:
            raise OSError(f"cannot probe {self.uri}: {err}") from None
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):
                s3.delete_object(**probe)
        if answer not in REFUSED:
            raise OutputError(
                f"output {self.uri} does not refuse a second create of one object (If-None-Match: *; it answered "
                f"{answer}): two Delta commits could overwrite each other and tear a table. Use output.format: "
                "parquet on this store (docs/lake.md#stores)."
            )

    def _undo_unsettled(self, name: str, store: OutputStore, table: Any, recordings: Any) -> int:
        """Remove the files of this output's batches that reached `table` but not `recordings`."""
        from deltalake.transaction import CommitProperties, RemoveAction

        undone, seen = 0, set()
        for commit in _newest_first(table):
            run, seq = commit.get(RUN), commit.get(SEQ)
            if UNDO in commit:
                seen.add(commit[UNDO])
            if run is None or commit.get(OUTPUT) != self.namespace or f"{run}-{seq}" in seen:
                continue
            settled = recordings.transaction_version(run) if recordings is not None else None
            if settled is not None and settled >= int(seq):
                break  # this batch and the ones before it are settled
            version = int(commit["version"])
            before = _files_at(table, version - 1)
            added = {p: f for p, f in _files_at(table, version).items() if p not in before}
            log.warning("undoing batch %s-%s in %s/%s: killed before it settled", run, seq, store.uri, name)
            now = int(time.time() * 1000)
            removes = [RemoveAction(path, True, now, size, parts) for path, (size, parts) in added.items()]
            delta_call(
                lambda: table.create_write_transaction(
                    removes,
                    "append",
                    table.schema(),
                    ["date"],
                    commit_properties=CommitProperties(custom_metadata={UNDO: f"{run}-{seq}"}),
                )
            )
            delta_call(table.update_incremental)
            undone += len(removes)
        return undone

    # -- during a run ---------------------------------------------------------------------------
    def commit(self, run_id: str, name: str, date: str, batch: Batch) -> None:
        """Each table's rows in a transaction of its own, recordings last (`scans` is Parquet's
        bookkeeping: a Delta output keeps none)."""
        seq = int(name.rsplit("-", 1)[1])
        writes: list[tuple[str, OutputStore, Sequence[Any]]] = [(t, self, getattr(batch, t)) for t in TABLES]
        if batch.unredacted and self.unredacted is not None:
            writes.insert(-1, ("segments", self.unredacted, batch.unredacted))

        def write() -> None:
            for table, store, records in writes:
                if records:
                    self._write(table, store, records, run_id, seq, date)

        self.committing(run_id, write)

    def _write(self, name: str, store: OutputStore, records: Sequence[Any], run_id: str, seq: int, date: str) -> None:
        from deltalake import write_deltalake
        from deltalake.transaction import CommitProperties, Transaction

        existing = self.table(name, store)
        done = existing.transaction_version(run_id) if existing is not None else None
        if done is not None and done >= seq:
            return  # a retry: this table has the batch already
        data = to_table(records, TABLES[name])
        data = data.append_column(DATE, pa.array([date] * len(data), pa.string()))
        props = CommitProperties(
            app_transactions=[Transaction(run_id, seq)],
            custom_metadata={RUN: run_id, SEQ: seq, OUTPUT: self.namespace},
        )
        delta_call(
            lambda: write_deltalake(
                existing if existing is not None else store.table_uri(name),
                data,
                partition_by=["date"],
                mode="append",
                # a table an earlier release wrote gains the columns added since (recordings.error_kind)
                schema_mode="merge" if existing is not None else None,
                storage_options=store.storage_options(),
                commit_properties=props,
            )
        )
        if store is self:
            written = existing if existing is not None else self.table(name)  # a written table is up to date
            self.versions[name] = written.version()

    def manifest_extra(self) -> dict[str, Any]:
        return {"format": "delta", "delta_versions": dict(self.versions)}

    # -- reading ----------------------------------------------------------------------------------
    def settlements(self) -> History:
        table = self.table("recordings")
        if table is None:
            return History.from_batches([])
        dataset = delta_call(lambda: table.to_pyarrow_dataset())
        batches = dataset.to_batches(columns=HISTORY_COLUMNS, batch_size=1 << 16, use_threads=False)
        return History.from_batches(batches, dataset.count_rows())


def _files_at(table: Any, version: int) -> dict[str, tuple[int, dict[str, str | None]]]:
    """The data files of `table` at `version`: path -> (size, partition values)."""
    if version < 0:
        return {}
    from deltalake import DeltaTable

    old = delta_call(lambda: DeltaTable(table.table_uri, version=version, storage_options=table._storage_options))
    actions = pa.table(old.get_add_actions(flatten=True))
    parts = [c for c in actions.column_names if c.startswith("partition.")]
    return {
        row["path"]: (row["size_bytes"], {c.removeprefix("partition."): row[c] for c in parts})
        for row in actions.select(["path", "size_bytes", *parts]).to_pylist()
    }


def _newest_first(table: Any) -> Iterator[dict[str, Any]]:
    """The table's commits, newest first, read a page at a time (a companion table shared by
    several outputs may hold many commits of others since ours)."""
    limit, done = 64, 0
    while True:
        page = delta_call(lambda: table.history(limit))
        yield from page[done:]
        if len(page) < limit:
            return
        done, limit = len(page), limit * 4


def delta_call(op: Callable[[], T]) -> T:
    """delta-rs's errors as OSError (what the store's retry and error reporting handle); a missing
    table passes through."""
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        return op()
    except TableNotFoundError:
        raise
    except DeltaError as err:
        raise OSError(f"Delta: {err}") from None
