"""What the run driver hands the lake: a settled recording (its rows, all or nothing), and a batch
of them as one commit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .compliance import Hit, PiiSpan, Scanned
from .results import RecordingStatus, Segment


@dataclass(frozen=True)
class Settled:
    recording: RecordingStatus
    segments: list[Segment]  # sorted by (channel, segment_index)
    hits: list[Hit] = field(default_factory=list)  # compliance (compliance/apply.py)
    pii: list[PiiSpan] = field(default_factory=list)
    unredacted: list[Segment] = field(default_factory=list)  # for compliance.keep_unredacted_uri


@dataclass(frozen=True)
class Batch:
    """One commit's rows: a field per dataset of the output (OUTPUT/<name>/), in the order of
    records/tables.DATASETS (a test holds them equal), then the unredacted segments that go to the
    companion store (compliance.keep_unredacted_uri) in the same commit."""

    segments: Sequence[Segment] = ()
    hits: Sequence[Hit] = ()
    pii: Sequence[PiiSpan] = ()
    scans: Sequence[Scanned] = ()
    recordings: Sequence[RecordingStatus] = ()
    unredacted: Sequence[Segment] = ()

    def datasets(self) -> Iterator[tuple[str, Sequence[Any]]]:
        """(dataset, rows) of every dataset this batch has rows for, in commit order."""
        for f in fields(self):
            rows = getattr(self, f.name)
            if f.name != "unredacted" and rows:
                yield f.name, rows
