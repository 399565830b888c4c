"""Audio-in's records: what is listed (`Recording`), what decoding found (`AudioInfo`), what is cut
(`Block`, `ChannelStats`) and how cutting a recording ended (`Outcome`, `CutOutcome`), with the
Arrow types they travel in between the Ray stages (records/transport.py).

Time is float seconds on the source timeline. Blocks carry 16 kHz samples, and their times are
derived from integer sample offsets at that rate (`samples_to_s`), so block time maps back to the
source exactly.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from ..errors import Failure
from .rows import Row

SAMPLE_RATE = 16_000  # what Granite's feature extractor expects


def samples_to_s(n: int) -> float:
    """The one place where 16 kHz sample offsets become seconds."""
    return n / SAMPLE_RATE


@dataclass(frozen=True)
class Recording(Row):
    """One object in the input store, as listed (nothing fetched yet)."""

    source_uri: str
    size_bytes: int
    etag: str
    last_modified: datetime | None = None
    version_id: str | None = None
    # From an input manifest's row (sources/manifest.py):
    keywords: tuple[str, ...] = ()  # added to the prompt's
    language: str | None = None  # the spoken language: the `language` columns, instead of detection
    channel_labels: tuple[str, ...] = ()  # label of channel 0, 1, ... (instead of channels.labels)
    meta: tuple[tuple[str, str], ...] = ()  # the row's other columns: recordings.meta
    error: Failure | None = None  # the row names no readable object: the recording fails with this

    @functools.cached_property
    def recording_id(self) -> str:
        # URI + etag: a changed object is a new recording; the same object keeps its id across runs.
        return hashlib.sha256(f"{self.source_uri}\n{self.etag}".encode()).hexdigest()[:24]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Recording:
        return cls(
            row["source_uri"],
            int(row["size_bytes"]),
            row["etag"],
            row["last_modified"],
            row["version_id"],
            tuple(row.get("keywords") or ()),
            row.get("language"),
            tuple(row.get("channel_labels") or ()),
            tuple((k, v) for k, v in row.get("meta") or ()),
            failure_from_row(row.get("error")),
        )


@dataclass(frozen=True)
class AudioInfo:
    """What decoding found out about a recording (true values, not header claims)."""

    format: str  # container as detected from content, e.g. "wav", "mp3", "ogg", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str
    sample_rate: int
    channels: int
    duration_s: float


@dataclass(frozen=True)
class Block:
    """A piece of one channel, at most `blocks.max_s` long, that contains speech."""

    recording_id: str
    channel: int  # source channel index; 0 when channels are mixed
    channel_label: str  # e.g. "agent"; see ChannelsConfig.label
    index: int  # position within the channel, from 0
    start_s: float
    end_s: float
    samples: np.ndarray = field(repr=False, compare=False)  # float32, 16 kHz, mono

    @property
    def block_id(self) -> str:
        return f"{self.recording_id}-{self.channel}-{self.index}"

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "samples"}
        return row | {"samples": np.ascontiguousarray(self.samples, np.float32).tobytes()}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Block:
        return cls(**row | {"samples": np.frombuffer(row["samples"], np.float32)})


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel outcome of blocking: what goes to the model and what does not."""

    channel: int
    label: str
    speech_s: float  # audio seconds inside blocks (what the model will see)
    blocks: int
    dropped_spans: int  # stretches without speech, never sent to the model
    dropped_s: float
    hard_cuts: int  # cuts made inside speech because no pause was found in the search window


@dataclass(frozen=True)
class Outcome(Row):
    """What cutting one recording came to: ok (its blocks were emitted), or failed, and why."""

    recording: Recording
    status: Literal["ok", "failed"]
    error: Failure | None = None
    info: AudioInfo | None = None
    channels: tuple[ChannelStats, ...] = ()

    @property
    def speech_s(self) -> float:
        return sum(c.speech_s for c in self.channels)

    @property
    def blocks(self) -> int:
        return sum(c.blocks for c in self.channels)

    @classmethod
    def failed(cls, recording: Recording, failure: Failure) -> Outcome:
        return cls(recording, "failed", failure)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Outcome:
        info = row["info"]
        return cls(
            Recording.from_row(row["recording"]),
            row["status"],
            failure_from_row(row["error"]),
            AudioInfo(**info) if info else None,
            tuple(ChannelStats(**c) for c in row["channels"] or ()),
        )


@dataclass(frozen=True)
class CutOutcome:
    """The last item a cut task sends for a recording: its outcome and how many blocks it sent."""

    outcome: Outcome
    emitted: int


def failure_from_row(row: dict[str, Any] | None) -> Failure | None:
    return Failure(row["kind"], row["detail"]) if row else None


# -- their Arrow types (fields in the records' order; tests/test_records.py holds them equal) ------
FAILURE_TYPE = pa.struct([("kind", pa.string()), ("detail", pa.string())])
RECORDING_TYPE = pa.struct(
    [
        ("source_uri", pa.string()),
        ("size_bytes", pa.int64()),
        ("etag", pa.string()),
        ("last_modified", pa.timestamp("us", tz="UTC")),
        ("version_id", pa.string()),
        ("keywords", pa.list_(pa.string())),
        ("language", pa.string()),
        ("channel_labels", pa.list_(pa.string())),
        ("meta", pa.map_(pa.string(), pa.string())),
        ("error", FAILURE_TYPE),
    ]
)
AUDIO_INFO_TYPE = pa.struct(
    [
        ("format", pa.string()),
        ("codec", pa.string()),
        ("sample_rate", pa.int32()),
        ("channels", pa.int32()),
        ("duration_s", pa.float64()),
    ]
)
CHANNEL_STATS_TYPE = pa.struct(
    [
        ("channel", pa.int32()),
        ("label", pa.string()),
        ("speech_s", pa.float64()),
        ("blocks", pa.int32()),
        ("dropped_spans", pa.int32()),
        ("dropped_s", pa.float64()),
        ("hard_cuts", pa.int32()),
    ]
)
OUTCOME_TYPE = pa.struct(
    [
        ("recording", RECORDING_TYPE),
        ("status", pa.string()),
        ("error", FAILURE_TYPE),
        ("info", AUDIO_INFO_TYPE),
        ("channels", pa.list_(CHANNEL_STATS_TYPE)),
    ]
)
# Where a block is: the fields Block and BlockResult (records/results.py) share, in their order.
PLACE = [
    ("recording_id", pa.string()),
    ("channel", pa.int32()),
    ("channel_label", pa.string()),
    ("index", pa.int32()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
]
BLOCK_TYPE = pa.struct([*PLACE, ("samples", pa.binary())])  # samples: float32, 16 kHz
