"""The output tables: every output record with the schema its rows are written with, the datasets
a run's commit holds (in the order they are committed), and the schemas' Markdown for the docs."""

from __future__ import annotations

import pyarrow as pa

from .compliance import HITS, PII, SCANS, Hit, PiiSpan, Scanned
from .plan import PLAN_BLOCKS, PLAN_RECORDINGS, PlanBlock, PlanRecording
from .results import RECORDINGS, SEGMENTS, RecordingStatus, Segment

# Each output record and the schema its rows are written with.
OUTPUTS: dict[type, pa.Schema] = {
    Segment: SEGMENTS,
    RecordingStatus: RECORDINGS,
    PlanRecording: PLAN_RECORDINGS,
    PlanBlock: PLAN_BLOCKS,
    Hit: HITS,
    PiiSpan: PII,
    Scanned: SCANS,
}
# The datasets of a run's output (OUTPUT/<name>/), in the order a commit writes them:
# `recordings`, the settlement, last (lake/). `scans` is Parquet-only bookkeeping of `granite-batch scan`.
DATASETS: dict[str, pa.Schema] = {
    "segments": SEGMENTS,
    "hits": HITS,
    "pii": PII,
    "scans": SCANS,
    "recordings": RECORDINGS,
}
DELTA_TABLES = tuple(name for name in DATASETS if name != "scans")
# What docs/output.md documents, by name.
SCHEMAS: dict[str, pa.Schema] = {
    "plan/recordings.parquet": PLAN_RECORDINGS,
    "plan/blocks.parquet": PLAN_BLOCKS,
    "run/segments": SEGMENTS,
    "run/recordings": RECORDINGS,
    "run/hits": HITS,
    "run/pii": PII,
    "run/scans": SCANS,
}


def markdown_table(schema: pa.Schema) -> str:
    """The schema as the Markdown table docs/output.md shows (a test keeps them equal)."""
    rows = ["| column | type | null | meaning |", "| --- | --- | --- | --- |"]
    for f in schema:
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        rows.append(f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | {doc} |")
    return "\n".join(rows)
