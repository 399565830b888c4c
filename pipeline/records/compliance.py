"""Compliance's rows (docs/compliance.md): OUTPUT/hits/, OUTPUT/pii/ and OUTPUT/scans/, committed
with the segments they were found in (a run), or on their own (`granite-batch scan`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from .rows import Row, column

_FOUND_WHERE = [
    column("recording_id", pa.string(), "See recordings."),
    column("source_uri", pa.string(), "See recordings."),
    column("channel", pa.int32(), "Source channel index (0 when channels are mixed)."),
    column("channel_label", pa.string(), "As in segments: who spoke (`agent`, `customer`, `mono`...)."),
    column("segment_index", pa.int32(), "The segment of its first word."),
    column("start_s", pa.float64(), "Start of its first word on the source timeline, seconds."),
    column("end_s", pa.float64(), "End of its last word on the source timeline, seconds."),
    column(
        "times_from",
        pa.string(),
        "`words` (the CTC head's word times) or `segments` (a word without a time takes its segment's).",
    ),
]
_FOUND_BY = [
    column("scan_id", pa.string(), "The run (its run_id) or `granite-batch scan` (scan-...) that found it."),
    column("rules", pa.string(), "Fingerprint of the terms and PII types searched for (equal rules, equal value)."),
]
HITS = pa.schema(
    [
        *_FOUND_WHERE[:5],
        column("phrase", pa.string(), "The term as configured (compliance.terms[].phrase)."),
        column("category", pa.string(), "Its category (compliance.terms[].category)."),
        column("matched", pa.string(), "The words of the transcript that matched (PII in them redacted)."),
        *_FOUND_WHERE[5:],
        column("context", pa.string(), "compliance.context_words words either side (PII redacted)."),
        *_FOUND_BY,
    ]
)
PII = pa.schema(
    [
        *_FOUND_WHERE[:5],
        column("entity_type", pa.string(), "compliance.redact type: credit_card, email, phone_number, ..."),
        *_FOUND_WHERE[5:],
        column("score", pa.float64(), "presidio's confidence (after its checksum, e.g. Luhn, where the type has one)."),
        column("redacted", pa.bool_(), "Replaced in segments' text and words (false: found by a later scan)."),
        *_FOUND_BY,
    ]
)
SCANS = pa.schema(
    [
        column("segments_file", pa.string(), "A segments file, relative to the output (segments/date=.../x.parquet)."),
        *_FOUND_BY,
        column("recordings", pa.int32(), "Recordings in it."),
        column("hits", pa.int32(), "hits rows found in it."),
        column("pii", pa.int32(), "pii rows found in it."),
        column("scanned_at", pa.timestamp("us", tz="UTC"), "When."),
    ]
)


@dataclass(frozen=True)
class Hit(Row):
    """One row of OUTPUT/hits: a configured phrase said on one channel, with its seconds."""

    recording_id: str
    source_uri: str
    channel: int
    channel_label: str
    segment_index: int
    phrase: str
    category: str
    matched: str
    start_s: float
    end_s: float
    times_from: str
    context: str
    scan_id: str
    rules: str


@dataclass(frozen=True)
class PiiSpan(Row):
    """One row of OUTPUT/pii: where an entity was said. Never its value."""

    recording_id: str
    source_uri: str
    channel: int
    channel_label: str
    segment_index: int
    entity_type: str
    start_s: float
    end_s: float
    times_from: str
    score: float
    redacted: bool
    scan_id: str
    rules: str


@dataclass(frozen=True)
class Scanned(Row):
    """One row of OUTPUT/scans: a segments file searched with one set of rules (scan's bookkeeping)."""

    segments_file: str
    scan_id: str
    rules: str
    recordings: int
    hits: int
    pii: int
    scanned_at: datetime
