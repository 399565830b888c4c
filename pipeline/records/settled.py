"""A settled recording: what the run driver commits for one recording, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from .compliance import Hit, PiiSpan
from .results import RecordingStatus, Segment


@dataclass(frozen=True)
class Settled:
    recording: RecordingStatus
    segments: list[Segment]  # sorted by (channel, segment_index)
    hits: list[Hit] = field(default_factory=list)  # compliance (compliance/apply.py)
    pii: list[PiiSpan] = field(default_factory=list)
    unredacted: list[Segment] = field(default_factory=list)  # for compliance.keep_unredacted_uri
