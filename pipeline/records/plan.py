"""`granite-batch plan`'s rows: recordings.parquet (what cutting each recording came to, and its
audio-in CPU) and blocks.parquet (every block's place, without samples)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from ..errors import Kind
from .audio import Block, Outcome
from .rows import Row, column

PLAN_RECORDINGS = pa.schema(
    [
        column("source_uri", pa.string(), "Object URI (s3://bucket/key) or absolute local path."),
        column("recording_id", pa.string(), "sha256(source_uri + etag)[:24]; stable across runs."),
        column("source_etag", pa.string(), "ETag as listed (local files: size-mtime)."),
        column("size_bytes", pa.int64(), "Object size as listed."),
        column("status", pa.string(), "`ok` or `failed`."),
        column("error_kind", pa.string(), "When failed: why, as in a run's recordings.", nullable=True),
        column("error", pa.string(), "When failed: the one-line detail.", nullable=True),
        column("format", pa.string(), "Container detected from content.", nullable=True),
        column("codec", pa.string(), "Audio codec detected from content.", nullable=True),
        column("duration_s", pa.float64(), "True duration (decoded samples / sample rate).", nullable=True),
        column("sample_rate", pa.int32(), "Source sample rate in Hz.", nullable=True),
        column("channels", pa.int32(), "Source channel count.", nullable=True),
        column(
            "speech_s", pa.float64(), "Seconds in blocks, summed over channels (what the model sees).", nullable=True
        ),
        column("blocks", pa.int32(), "Blocks over all channels.", nullable=True),
        column(
            "audio_in_cpu_s",
            pa.float64(),
            "CPU seconds plan spent fetching, decoding and cutting it; null where its worker died.",
            nullable=True,
        ),
    ]
)

PLAN_BLOCKS = pa.schema(
    [
        column("recording_id", pa.string(), "See recordings."),
        column("source_uri", pa.string(), "See recordings."),
        column("channel", pa.int32(), "Source channel index (0 when channels are mixed)."),
        column(
            "channel_label",
            pa.string(),
            "`channels.labels[i]` else `ch<i>`; `channels.mono_label` for mono sources; `mix` when mixed.",
        ),
        column("block_index", pa.int32(), "Position of the block within its channel, from 0."),
        column("start_s", pa.float64(), "Start on the source timeline, seconds."),
        column("end_s", pa.float64(), "End on the source timeline, seconds (end - start <= blocks.max_s)."),
    ]
)


@dataclass(frozen=True)
class PlanRecording(Row):
    """One row of plan's recordings.parquet."""

    source_uri: str
    recording_id: str
    source_etag: str
    size_bytes: int
    status: Literal["ok", "failed"]
    error_kind: Kind | None
    error: str | None
    format: str | None
    codec: str | None
    duration_s: float | None
    sample_rate: int | None
    channels: int | None
    speech_s: float | None
    blocks: int | None
    audio_in_cpu_s: float | None

    @classmethod
    def of(cls, o: Outcome, cpu_s: float | None) -> PlanRecording:
        i, ok = o.info, o.status == "ok"
        return cls(
            o.recording.source_uri,
            o.recording.recording_id,
            o.recording.etag,
            o.recording.size_bytes,
            o.status,
            o.error.kind if o.error else None,
            o.error.detail if o.error else None,
            i.format if i else None,
            i.codec if i else None,
            i.duration_s if i else None,
            i.sample_rate if i else None,
            i.channels if i else None,
            o.speech_s if ok else None,
            o.blocks if ok else None,
            cpu_s,
        )


@dataclass(frozen=True)
class PlanBlock(Row):
    """One row of plan's blocks.parquet: a block's place, without its samples."""

    recording_id: str
    source_uri: str
    channel: int
    channel_label: str
    block_index: int
    start_s: float
    end_s: float

    @classmethod
    def of(cls, b: Block, source_uri: str) -> PlanBlock:
        return cls(b.recording_id, source_uri, b.channel, b.channel_label, b.index, b.start_s, b.end_s)
