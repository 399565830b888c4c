"""The data model: what flows between stages. Frozen, with deterministic ids.

Time is float seconds on the source timeline. Blocks carry 16 kHz samples, and their times are
derived from integer sample offsets at that rate, so block time maps back to the source exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

SAMPLE_RATE = 16_000  # what Granite's feature extractor expects


def samples_to_s(n: int) -> float:
    """The one place where 16 kHz sample offsets become seconds."""
    return n / SAMPLE_RATE


@dataclass(frozen=True)
class Recording:
    """One object in the input store, as listed (nothing fetched yet)."""

    source_uri: str
    size_bytes: int
    etag: str
    last_modified: datetime | None = None
    version_id: str | None = None

    @property
    def recording_id(self) -> str:
        # URI + etag: a changed object is a new recording; the same object keeps its id across runs.
        return hashlib.sha256(f"{self.source_uri}\n{self.etag}".encode()).hexdigest()[:24]


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
