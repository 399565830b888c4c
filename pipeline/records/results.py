"""What the engines and the assembly make of blocks: a `BlockResult` per block (its text and
`Word`s on the source timeline), then per recording its `Segment`s and one `RecordingStatus`: the
rows of OUTPUT/segments and OUTPUT/recordings, each beside its schema.

Output types are chosen so DuckDB, Polars, Spark and Athena read them without casts: plain
strings, int32/int64, float64, no unsigned ints, no dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import pyarrow as pa

from ..errors import Failure, Kind
from .audio import PLACE, AudioInfo, Block, Recording
from .rows import Row, column


@dataclass(frozen=True)
class Word(Row):
    """One word of a segment with its time from Granite's CTC head (engines/ctc/align.py). Times
    are null where the head cannot spell the word (e.g. Japanese) or the text could not be aligned."""

    word: str
    start_s: float | None
    end_s: float | None
    score: float | None  # mean CTC probability of its characters' frames

    def on_source(self, start_s: float, end_s: float) -> Word:
        """From block time to the source timeline of a block [start_s, end_s] (float sums may
        overshoot its end by an ulp)."""
        if self.start_s is None or self.end_s is None:
            return self
        return Word(self.word, min(start_s + self.start_s, end_s), min(start_s + self.end_s, end_s), self.score)


def word_key(word: str) -> str:
    """A word as compared: no case, no surrounding punctuation (repetition guards, the words a
    cut went through, compliance matching)."""
    return word.strip(".,;:!?\"'()[]-…").casefold()


DecodedBy = Literal["ctc", "verified", "llm"]  # which path produced a block's text (engines/ctc/speculative.py)


@dataclass(frozen=True)
class BlockResult(Row):
    """One block after the engine: where it is, what was said, and who said it."""

    recording_id: str
    channel: int
    channel_label: str
    index: int
    start_s: float
    end_s: float
    text: str
    keywords: tuple[str, ...]
    engine: str  # pool name
    model_revision: str
    finish_reason: str
    output_tokens: int
    words: tuple[Word, ...]  # on the source timeline
    decoded_by: str  # DecodedBy; "" when the engine call failed
    error: str | None = None  # the engine call failed (after retries)

    @classmethod
    def of(
        cls,
        block: Block,
        text: str,
        keywords: tuple[str, ...],
        engine: str,
        model_revision: str,
        finish_reason: str,
        output_tokens: int,
        words: tuple[Word, ...] = (),
        decoded_by: str = "",
        error: str | None = None,
    ) -> BlockResult:
        """`words`: times from the start of the block, as the aligner gives them."""
        b = block
        return cls(
            b.recording_id,
            b.channel,
            b.channel_label,
            b.index,
            b.start_s,
            b.end_s,
            text,
            tuple(keywords),
            engine,
            model_revision,
            finish_reason,
            output_tokens,
            tuple(w.on_source(b.start_s, b.end_s) for w in words),
            decoded_by,
            error,
        )

    @classmethod
    def failed(cls, block: Block, engine: str, error: str) -> BlockResult:
        """A block whose engine call failed: no text, and the reason."""
        return cls.of(block, "", (), engine, "", "", 0, error=error)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BlockResult:
        r = dict(row)
        words = tuple(Word(**w) for w in r["words"] or ())
        return cls(**{**r, "keywords": tuple(r["keywords"] or ()), "words": words})


WORDS_TYPE = pa.list_(
    pa.struct([("word", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("score", pa.float32())])
)
BLOCK_RESULT_TYPE = pa.struct(
    [
        *PLACE,
        ("text", pa.string()),
        ("keywords", pa.list_(pa.string())),
        ("engine", pa.string()),
        ("model_revision", pa.string()),
        ("finish_reason", pa.string()),
        ("output_tokens", pa.int32()),
        ("words", WORDS_TYPE),
        ("decoded_by", pa.string()),
        ("error", pa.string()),
    ]
)


# `granite-batch run`: OUTPUT/segments/date=YYYY-MM-DD/*.parquet and OUTPUT/recordings/date=.../*.parquet.
# `date` (the run's UTC date) is a hive partition: in the path, not in the files.
SEGMENTS = pa.schema(
    [
        column("recording_id", pa.string(), "See recordings."),
        column("source_uri", pa.string(), "See recordings."),
        column("channel", pa.int32(), "Source channel index (0 when channels are mixed)."),
        column("channel_label", pa.string(), "As in plan's blocks: `agent`, `ch1`, `mono`, `mix`..."),
        column("segment_index", pa.int32(), "Position within its channel, from 0 (one segment per block with speech)."),
        column("start_s", pa.float64(), "Start on the source timeline, seconds."),
        column("end_s", pa.float64(), "End on the source timeline, seconds."),
        column("text", pa.string(), "Transcript (or translation) of the segment; may be empty."),
        column(
            "words",
            WORDS_TYPE,
            "One entry per word of `text`: start_s/end_s on the source timeline from Granite's CTC head "
            "(null where the head cannot spell the word, or with decoding.word_times off), score: "
            "mean CTC probability of its characters.",
        ),
        column(
            "language",
            pa.string(),
            "prompt.language if set, else detected per recording from its transcript.",
            nullable=True,
        ),
        column("keywords", pa.list_(pa.string()), "Keywords the prompt carried (job + sidecar)."),
        column("model", pa.string(), "model.id as configured."),
        column(
            "model_revision", pa.string(), "Hub commit, mirror manifest sha256, or local:<hash of the model files>."
        ),
        column("run_id", pa.string(), "The run that wrote the row (see runs/<run_id>.json)."),
        column("engine", pa.string(), "Engine pool that transcribed it (e.g. `gpu`, `cpu`)."),
        column("finish_reason", pa.string(), "stop; length (hit the output cap); guard (a repetition loop was cut)."),
        column("output_tokens", pa.int32(), "Tokens the model produced (0 when the CTC text was taken as is)."),
        column(
            "decoded_by",
            pa.string(),
            "ctc (CTC text taken as is), verified (CTC text confirmed by one LLM pass) or llm (generated).",
        ),
    ]
)

RECORDINGS = pa.schema(
    [
        column(
            "recording_id",
            pa.string(),
            "sha256(source_uri + etag)[:24]; stable across runs, new when the object changes.",
        ),
        column("source_uri", pa.string(), "Object URI (s3://bucket/key) or absolute local path."),
        column("source_etag", pa.string(), "ETag as listed (local files: size-mtime)."),
        column("size_bytes", pa.int64(), "Object size as listed."),
        column("duration_s", pa.float64(), "True duration (decoded samples / sample rate).", nullable=True),
        column("sample_rate", pa.int32(), "Source sample rate in Hz.", nullable=True),
        column("channels", pa.int32(), "Source channel count.", nullable=True),
        column("speech_s", pa.float64(), "Seconds sent to the model, summed over channels.", nullable=True),
        column("segments", pa.int32(), "Segment rows written for it by this run.", nullable=True),
        column(
            "status", pa.string(), "`ok`, `failed` (see error_kind and error) or `skipped` (done by an earlier run)."
        ),
        column(
            "error_kind",
            pa.string(),
            "When failed: why, one of a fixed set (empty, truncated, not_audio, ...; docs/operations.md).",
            nullable=True,
        ),
        column("error", pa.string(), "When failed: the one-line detail.", nullable=True),
        column("format", pa.string(), "Container detected from content.", nullable=True),
        column("codec", pa.string(), "Audio codec detected from content.", nullable=True),
        column("language", pa.string(), "As in segments.", nullable=True),
        column("previous_run_id", pa.string(), "When skipped: the run that processed it.", nullable=True),
        column(
            "meta",
            pa.map_(pa.string(), pa.string()),
            "An input manifest row's own columns (all but uri, keywords, language, channel_labels), as text.",
            nullable=True,
        ),
        column("run_id", pa.string(), "This run."),
        column("processed_at", pa.timestamp("us", tz="UTC"), "When this run settled the recording."),
    ]
)


@dataclass(frozen=True)
class Segment(Row):
    """One row of OUTPUT/segments: one block with speech, on the source timeline."""

    recording_id: str
    source_uri: str
    channel: int
    channel_label: str
    segment_index: int
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...]
    language: str | None
    keywords: tuple[str, ...]
    model: str
    model_revision: str
    run_id: str
    engine: str
    finish_reason: str
    output_tokens: int
    decoded_by: str

    @classmethod
    def of(
        cls,
        b: BlockResult,
        source_uri: str,
        text: str,
        words: tuple[Word, ...],
        language: str | None,
        model: str,
        run_id: str,
    ) -> Segment:
        """A transcribed block as a segment (`text`, `words`: after the cut-edge clean-up)."""
        return cls(
            b.recording_id,
            source_uri,
            b.channel,
            b.channel_label,
            b.index,
            b.start_s,
            b.end_s,
            text,
            words,
            language,
            b.keywords,
            model,
            b.model_revision,
            run_id,
            b.engine,
            b.finish_reason,
            b.output_tokens,
            b.decoded_by,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Segment:
        words = tuple(Word(**w) for w in row["words"] or ())
        return cls(**{**row, "words": words, "keywords": tuple(row["keywords"] or ())})


@dataclass(frozen=True)
class RecordingStatus(Row):
    """One row of OUTPUT/recordings: what one run did with one recording (ok, failed, skipped)."""

    recording_id: str
    source_uri: str
    source_etag: str
    size_bytes: int
    duration_s: float | None
    sample_rate: int | None
    channels: int | None
    speech_s: float | None
    segments: int | None
    status: Literal["ok", "failed", "skipped"]
    error_kind: Kind | None
    error: str | None
    format: str | None
    codec: str | None
    language: str | None
    previous_run_id: str | None
    meta: tuple[tuple[str, str], ...] | None
    run_id: str
    processed_at: datetime

    @classmethod
    def of(
        cls,
        rec: Recording,
        run_id: str,
        status: Literal["ok", "failed", "skipped"],
        info: AudioInfo | None = None,
        *,
        speech_s: float | None = None,
        segments: int | None = None,
        error: Failure | None = None,
        language: str | None = None,
        previous_run_id: str | None = None,
    ) -> RecordingStatus:
        return cls(
            rec.recording_id,
            rec.source_uri,
            rec.etag,
            rec.size_bytes,
            info.duration_s if info else None,
            info.sample_rate if info else None,
            info.channels if info else None,
            speech_s,
            segments,
            status,
            error.kind if error else None,
            error.detail if error else None,
            info.format if info else None,
            info.codec if info else None,
            language,
            previous_run_id,
            rec.meta or None,
            run_id,
            datetime.now(timezone.utc),
        )
