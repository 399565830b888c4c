"""`granite-batch optimize --output URI`: merge the small files a commit every few seconds leaves,
and drop what no reader needs any more. Under the output's lock, so never beside a run.

Parquet: in each dataset and date, files smaller than the target are merged, in name order, into
files of about the target size: one commit each through the output's commit protocol (the merged
file is staged, a marker names it and the files it replaces, then it is moved in and they are
deleted), so a crash leaves either the old files or the new one. `scans` rows move with their
segments: a merged segments file counts as searched with the rules that searched all its parts.
A reader listing the folder during the move may see a batch twice or not at all; Delta has no such
moment.

Delta: each table is compacted (delta-rs `optimize.compact`, one transaction), then vacuumed
(files no version within `output.vacuum_retain_hours` needs), checkpointed, and its expired log
entries removed. Time travel reaches back as far as the retention.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..config import JobConfig
from ..errors import OutputError
from ..ops.runinfo import new_run_id
from ..records.compliance import SCANS, Scanned
from ..records.rows import to_table
from ..records.tables import DATASETS
from . import output_format, output_store
from .delta import TABLES, DeltaStore, delta_call
from .parquet import ParquetStore
from .store import Heartbeat, OutputStore


@dataclass
class OptimizeReport:
    optimize_id: str
    format: str
    # table or dataset -> (files before, files after)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    vacuumed: int = 0  # Delta: files deleted by vacuum

    def summary(self, uri: str) -> str:
        lines = [f"optimize {uri} ({self.format}): {self.optimize_id}"]
        for name, (before, after) in self.files.items():
            lines.append(f"  {name:<11} {before} -> {after} files")
        if self.format == "delta":
            lines.append(f"  vacuum      {self.vacuumed} unreferenced files deleted")
        return "\n".join(lines)


def run_optimize(cfg: JobConfig) -> OptimizeReport:
    if not cfg.output.uri:
        raise OutputError("optimize needs an output: `--output URI`")
    if output_format(cfg) == "delta":  # whatever the job file says: optimize what is there
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"format": "delta"})})
    store = output_store(cfg, cfg.output.uri)
    optimize_id = f"optimize-{new_run_id(datetime.now(timezone.utc))}"
    store.prepare(optimize_id)  # the lock, and interrupted commits finished or undone first
    heartbeat = Heartbeat(store, optimize_id)
    try:
        target = int(cfg.output.compact_target_mb * (1 << 20))
        if store.format == "delta":
            report = _optimize_delta(store, optimize_id, target, cfg.output.vacuum_retain_hours)
        else:
            report = _optimize_parquet(store, optimize_id, target)
    except (OSError, pa.ArrowInvalid) as err:
        raise OutputError(f"cannot optimize {store.uri}: {err}") from None
    finally:
        heartbeat.stop()
        store.release(optimize_id)
    return report


def _optimize_delta(store: DeltaStore, optimize_id: str, target: int, retain_hours: float) -> OptimizeReport:
    report = OptimizeReport(optimize_id, "delta")
    for name in TABLES:
        table = store.table(name)
        if table is None:
            continue
        before = len(delta_call(table.file_uris))
        store.heartbeat(optimize_id)  # still ours
        delta_call(lambda: table.optimize.compact(target_size=target))
        deleted = delta_call(
            lambda: table.vacuum(
                retention_hours=math.ceil(retain_hours), enforce_retention_duration=False, dry_run=False, full=True
            )
        )
        delta_call(table.create_checkpoint)
        delta_call(table.cleanup_metadata)
        report.files[name] = (before, len(delta_call(table.file_uris)))
        report.vacuumed += len(deleted)
    return report


def _optimize_parquet(store: ParquetStore, optimize_id: str, target: int) -> OptimizeReport:
    report = OptimizeReport(optimize_id, "parquet")
    seq = 0
    for dataset, schema in DATASETS.items():
        files = _files(store, dataset)
        before = sum(len(v) for v in files.values())
        after = before
        searched = _searched(store) if dataset == "segments" else {}
        for date, infos in sorted(files.items()):
            for group in _groups(infos, target):
                name = store.file_name(optimize_id, seq)
                seq += 1
                table = pa.concat_tables(
                    pq.read_table(i.path, filesystem=store.fs, schema=schema) for i in group
                ).combine_chunks()
                rows: dict[str, Any] = {dataset: table}
                if dataset == "segments":
                    rows["scans"] = _scans_of(
                        store, group, searched, store.relpath("segments", date, name), optimize_id
                    )
                store.replace(optimize_id, name, date, rows, [i.path for i in group])
                after -= len(group) - 1
        report.files[dataset] = (before, after)
    return report


def _files(store: ParquetStore, dataset: str) -> dict[str, list[pafs.FileInfo]]:
    """date -> its committed files, in name order (commit order within a run)."""
    sel = pafs.FileSelector(store.path(dataset), allow_not_found=True, recursive=True)
    by_date: dict[str, list[pafs.FileInfo]] = defaultdict(list)
    for info in store.fs.get_file_info(sel):
        parent = info.path.rsplit("/", 2)[-2] if info.is_file else ""
        if info.is_file and info.path.endswith(".parquet") and parent.startswith("date="):
            by_date[parent.removeprefix("date=")].append(info)
    return {d: sorted(v, key=lambda i: i.path) for d, v in by_date.items()}


def _groups(infos: list[pafs.FileInfo], target: int) -> list[list[pafs.FileInfo]]:
    """Runs of consecutive small files of about `target` bytes together; only runs of two or more."""
    groups: list[list[pafs.FileInfo]] = []
    current: list[pafs.FileInfo] = []
    size = 0
    for info in infos:
        if info.size >= target // 2 or size + info.size > target:
            if len(current) > 1:
                groups.append(current)
            current, size = [], 0
            if info.size >= target // 2:
                continue  # big enough on its own
        current.append(info)
        size += info.size
    if len(current) > 1:
        groups.append(current)
    return groups


def _searched(store: OutputStore) -> dict[str, dict[str, dict[str, Any]]]:
    """rules -> segments file -> its scans row (counts), from every scans row."""
    if store.fs.get_file_info(store.path("scans")).type == pafs.FileType.NotFound:
        return {}
    rows = ds.dataset(store.path("scans"), filesystem=store.fs, format="parquet", partitioning="hive").to_table()
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows.to_pylist():
        out[r["rules"]][r["segments_file"]] = r
    return out


def _scans_of(
    store: OutputStore, group: list[pafs.FileInfo], searched: dict[str, dict[str, dict[str, Any]]], merged: str, by: str
) -> pa.Table:
    """The merged file's scans rows: searched with a set of rules when all its parts were."""
    parts = [i.path[len(store.root) + 1 :] for i in group]
    rows = []
    for rules, files in searched.items():
        if all(p in files for p in parts):
            found = [files[p] for p in parts]
            rows.append(
                Scanned(
                    merged,
                    by,
                    rules,
                    sum(f["recordings"] for f in found),
                    sum(f["hits"] for f in found),
                    sum(f["pii"] for f in found),
                    max(f["scanned_at"] for f in found),
                )
            )
            files[merged] = rows[-1].to_row()
    return to_table(rows, SCANS)
