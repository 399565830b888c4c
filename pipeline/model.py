"""The data model: every record that crosses a stage, process or storage boundary, as a frozen
dataclass, with its one Arrow schema beside it.

What crosses where (docs/architecture.md):

    listing  --Recording-->  cut (a Ray task)  --CUT rows: a Block with its Prompt, or last the CutOutcome-->
    engines  --RESULT rows: a BlockResult, or the CutOutcome passed through-->  the driver
    assemble --RecordingStatus + Segments-->  sink (OUTPUT/recordings/, OUTPUT/segments/)
    plan:      Recording -> cut -> PlanRecording + PlanBlocks -> Parquet

Time is float seconds on the source timeline. Blocks carry 16 kHz samples, and their times are
derived from integer sample offsets at that rate, so block time maps back to the source exactly.
Output types are chosen so DuckDB, Polars, Spark and Athena read them without casts: plain
strings, int32/int64, float64, no unsigned ints, no dictionaries. The output records' fields are
their schemas' columns, in order (a test holds them equal), so adding a column is three edits: the
record, its schema entry, and the code that fills it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pyarrow as pa

SAMPLE_RATE = 16_000  # what Granite's feature extractor expects


def samples_to_s(n: int) -> float:
    """The one place where 16 kHz sample offsets become seconds."""
    return n / SAMPLE_RATE


class _Row:
    """Records written as Arrow rows: their fields by name, tuples as lists."""

    def to_row(self) -> dict[str, Any]:
        return _row(self)


def _row(record: Any) -> dict[str, Any]:
    return {f.name: _value(getattr(record, f.name)) for f in fields(record)}


def _value(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_row(x) if isinstance(x, _Row) else x for x in v]
    return v


@dataclass(frozen=True)
class Recording(_Row):
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
    error: str | None = None  # the row names no readable object: the recording fails with this

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
            row.get("error"),
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


# -- the cut's outcome ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What cutting one recording came to: ok (its blocks were emitted), or failed with a reason."""

    recording: Recording
    status: Literal["ok", "failed"]
    error: str | None = None
    info: AudioInfo | None = None
    channels: tuple[ChannelStats, ...] = ()

    @property
    def speech_s(self) -> float:
        return sum(c.speech_s for c in self.channels)

    @property
    def blocks(self) -> int:
        return sum(c.blocks for c in self.channels)


@dataclass(frozen=True)
class CutOutcome:
    """The last item a cut task sends for a recording: its outcome and how many blocks it sent."""

    outcome: Outcome
    emitted: int


@dataclass(frozen=True)
class Word(_Row):
    """One word of a segment with its time from Granite's CTC head (align.py). Times are null where
    the head cannot spell the word (e.g. Japanese) or the text could not be aligned."""

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


Decoder = Literal["ctc", "verified", "llm"]  # which path produced a block's text (speculative.py)


@dataclass(frozen=True)
class BlockResult:
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
    decoded_by: str  # Decoder; "" when the engine call failed
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


# -- between the Ray stages (ray_run/): cut tasks -> engines -> the driver ------------------------
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
        ("error", pa.string()),
    ]
)
OUTCOME_TYPE = pa.struct(
    [
        ("recording", RECORDING_TYPE),
        ("status", pa.string()),
        ("error", pa.string()),
        (
            "info",
            pa.struct(
                [
                    ("format", pa.string()),
                    ("codec", pa.string()),
                    ("sample_rate", pa.int32()),
                    ("channels", pa.int32()),
                    ("duration_s", pa.float64()),
                ]
            ),
        ),
        (
            "channels",
            pa.list_(
                pa.struct(
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
            ),
        ),
    ]
)
# Where a block is: the fields Block and BlockResult share, in their order.
_PLACE = [
    ("recording_id", pa.string()),
    ("channel", pa.int32()),
    ("channel_label", pa.string()),
    ("index", pa.int32()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
]
BLOCK_TYPE = pa.struct([*_PLACE, ("samples", pa.binary())])  # samples: float32, 16 kHz
WORDS_TYPE = pa.list_(
    pa.struct([("word", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("score", pa.float32())])
)
PROMPT_TYPE = pa.struct([("task", pa.string()), ("language", pa.string()), ("keywords", pa.list_(pa.string()))])
BLOCK_RESULT_TYPE = pa.struct(
    [
        *_PLACE,
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
# A cut task's rows: a block with its recording's prompt, or, last, the recording's outcome.
CUT = pa.schema([("block", BLOCK_TYPE), ("prompt", PROMPT_TYPE), ("outcome", OUTCOME_TYPE), ("emitted", pa.int32())])
# What the engines hand on: a block's result, or a recording's outcome passed through.
RESULT = pa.schema([("result", BLOCK_RESULT_TYPE), ("outcome", OUTCOME_TYPE), ("emitted", pa.int32())])


@dataclass(frozen=True)
class Prompt:
    """A recording's prompt settings as they travel with its blocks (engines/prompts.PromptSpec)."""

    task: str
    language: str
    keywords: tuple[str, ...]


def outcome_to_row(o: Outcome) -> dict[str, Any]:
    return {
        "recording": o.recording.to_row(),
        "status": o.status,
        "error": o.error,
        "info": _row(o.info) if o.info else None,
        "channels": [_row(c) for c in o.channels],
    }


def outcome_from_row(row: dict[str, Any]) -> Outcome:
    info = row["info"]
    return Outcome(
        Recording.from_row(row["recording"]),
        row["status"],
        row["error"],
        AudioInfo(**info) if info else None,
        tuple(ChannelStats(**c) for c in row["channels"] or ()),
    )


def cut_row(item: tuple[Block, Prompt] | CutOutcome) -> dict[str, Any]:
    if isinstance(item, CutOutcome):
        return {"block": None, "prompt": None, "outcome": outcome_to_row(item.outcome), "emitted": item.emitted}
    b, prompt = item
    block = {f.name: getattr(b, f.name) for f in fields(b) if f.name != "samples"}
    block["samples"] = np.ascontiguousarray(b.samples, np.float32).tobytes()
    return {"block": block, "prompt": _row(prompt), "outcome": None, "emitted": None}


def cut_from_row(row: dict[str, Any]) -> tuple[Block, Prompt] | CutOutcome:
    if row["block"] is None:
        return CutOutcome(outcome_from_row(row["outcome"]), int(row["emitted"]))
    b, p = dict(row["block"]), row["prompt"]
    samples = np.frombuffer(b.pop("samples"), np.float32)
    return Block(**b, samples=samples), Prompt(p["task"], p["language"], tuple(p["keywords"] or ()))


def result_row(item: BlockResult | CutOutcome) -> dict[str, Any]:
    if isinstance(item, CutOutcome):
        return {"result": None, "outcome": outcome_to_row(item.outcome), "emitted": item.emitted}
    return {"result": _row(item), "outcome": None, "emitted": None}


def result_from_row(row: dict[str, Any]) -> BlockResult | CutOutcome:
    if row["result"] is None:
        return CutOutcome(outcome_from_row(row["outcome"]), int(row["emitted"]))
    r = dict(row["result"])
    words = tuple(Word(**w) for w in r["words"] or ())
    return BlockResult(**{**r, "keywords": tuple(r["keywords"] or ()), "words": words})


# -- output schemas and rows ---------------------------------------------------------------------
def _f(name: str, type_: pa.DataType, doc: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


PLAN_RECORDINGS = pa.schema(
    [
        _f("source_uri", pa.string(), "Object URI (s3://bucket/key) or absolute local path."),
        _f("recording_id", pa.string(), "sha256(source_uri + etag)[:24]; stable across runs."),
        _f("source_etag", pa.string(), "ETag as listed (local files: size-mtime)."),
        _f("size_bytes", pa.int64(), "Object size as listed."),
        _f("status", pa.string(), "`ok` or `failed`."),
        _f("error", pa.string(), "One-line reason when failed.", nullable=True),
        _f("format", pa.string(), "Container detected from content.", nullable=True),
        _f("codec", pa.string(), "Audio codec detected from content.", nullable=True),
        _f("duration_s", pa.float64(), "True duration (decoded samples / sample rate).", nullable=True),
        _f("sample_rate", pa.int32(), "Source sample rate in Hz.", nullable=True),
        _f("channels", pa.int32(), "Source channel count.", nullable=True),
        _f(
            "speech_s",
            pa.float64(),
            "Seconds inside blocks, summed over channels (what the model sees).",
            nullable=True,
        ),
        _f("blocks", pa.int32(), "Blocks over all channels.", nullable=True),
        _f(
            "audio_in_cpu_s",
            pa.float64(),
            "CPU seconds plan spent fetching, decoding and cutting it; null where its worker died.",
            nullable=True,
        ),
    ]
)

PLAN_BLOCKS = pa.schema(
    [
        _f("recording_id", pa.string(), "See recordings."),
        _f("source_uri", pa.string(), "See recordings."),
        _f("channel", pa.int32(), "Source channel index (0 when channels are mixed)."),
        _f(
            "channel_label",
            pa.string(),
            "`channels.labels[i]` else `ch<i>`; `channels.mono_label` for mono sources; `mix` when mixed.",
        ),
        _f("block_index", pa.int32(), "Position of the block within its channel, from 0."),
        _f("start_s", pa.float64(), "Start on the source timeline, seconds."),
        _f("end_s", pa.float64(), "End on the source timeline, seconds (end - start <= blocks.max_s)."),
    ]
)

# `granite-batch run`: OUTPUT/segments/date=YYYY-MM-DD/*.parquet and OUTPUT/recordings/date=.../*.parquet.
# `date` (the run's UTC date) is a hive partition: in the path, not in the files.
SEGMENTS = pa.schema(
    [
        _f("recording_id", pa.string(), "See recordings."),
        _f("source_uri", pa.string(), "See recordings."),
        _f("channel", pa.int32(), "Source channel index (0 when channels are mixed)."),
        _f("channel_label", pa.string(), "As in plan's blocks: `agent`, `ch1`, `mono`, `mix`..."),
        _f("segment_index", pa.int32(), "Position within its channel, from 0 (one segment per block with speech)."),
        _f("start_s", pa.float64(), "Start on the source timeline, seconds."),
        _f("end_s", pa.float64(), "End on the source timeline, seconds."),
        _f("text", pa.string(), "Transcript (or translation) of the segment; may be empty."),
        _f(
            "words",
            WORDS_TYPE,
            "One entry per word of `text`: start_s/end_s on the source timeline from Granite's CTC head "
            "(null where the head cannot spell the word, or with decoding.word_times off), score: "
            "mean CTC probability of its characters.",
        ),
        _f(
            "language",
            pa.string(),
            "prompt.language if set, else detected per recording from its transcript.",
            nullable=True,
        ),
        _f("keywords", pa.list_(pa.string()), "Keywords the prompt carried (job + sidecar)."),
        _f("model", pa.string(), "model.id as configured."),
        _f("model_revision", pa.string(), "Hub commit, mirror manifest sha256, or local:<hash of the model files>."),
        _f("run_id", pa.string(), "The run that wrote the row (see runs/<run_id>.json)."),
        _f("engine", pa.string(), "Engine pool that transcribed it (e.g. `gpu`, `cpu`)."),
        _f("finish_reason", pa.string(), "stop; length (hit the output cap); guard (a repetition loop was cut)."),
        _f("output_tokens", pa.int32(), "Tokens the model produced (0 when the CTC text was taken as is)."),
        _f(
            "decoded_by",
            pa.string(),
            "ctc (CTC text taken as is), verified (CTC text confirmed by one LLM pass) or llm (generated).",
        ),
    ]
)

RECORDINGS = pa.schema(
    [
        _f(
            "recording_id",
            pa.string(),
            "sha256(source_uri + etag)[:24]; stable across runs, new when the object changes.",
        ),
        _f("source_uri", pa.string(), "Object URI (s3://bucket/key) or absolute local path."),
        _f("source_etag", pa.string(), "ETag as listed (local files: size-mtime)."),
        _f("size_bytes", pa.int64(), "Object size as listed."),
        _f("duration_s", pa.float64(), "True duration (decoded samples / sample rate).", nullable=True),
        _f("sample_rate", pa.int32(), "Source sample rate in Hz.", nullable=True),
        _f("channels", pa.int32(), "Source channel count.", nullable=True),
        _f("speech_s", pa.float64(), "Seconds sent to the model, summed over channels.", nullable=True),
        _f("segments", pa.int32(), "Segment rows written for it by this run.", nullable=True),
        _f("status", pa.string(), "`ok`, `failed` (see error) or `skipped` (done by an earlier run)."),
        _f("error", pa.string(), "One-line reason when failed.", nullable=True),
        _f("format", pa.string(), "Container detected from content.", nullable=True),
        _f("codec", pa.string(), "Audio codec detected from content.", nullable=True),
        _f("language", pa.string(), "As in segments.", nullable=True),
        _f("previous_run_id", pa.string(), "When skipped: the run that processed it.", nullable=True),
        _f(
            "meta",
            pa.map_(pa.string(), pa.string()),
            "An input manifest row's own columns (all but uri, keywords, language, channel_labels), as text.",
            nullable=True,
        ),
        _f("run_id", pa.string(), "This run."),
        _f("processed_at", pa.timestamp("us", tz="UTC"), "When this run settled the recording."),
    ]
)


@dataclass(frozen=True)
class Segment(_Row):
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
class RecordingStatus(_Row):
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
        error: str | None = None,
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
            error,
            info.format if info else None,
            info.codec if info else None,
            language,
            previous_run_id,
            rec.meta or None,
            run_id,
            datetime.now(timezone.utc),
        )


# `compliance:` (compliance/): OUTPUT/hits/, OUTPUT/pii/ and OUTPUT/scans/, committed with the
# segments they were found in (a run), or on their own (`granite-batch scan`).
_FOUND_WHERE = [
    _f("recording_id", pa.string(), "See recordings."),
    _f("source_uri", pa.string(), "See recordings."),
    _f("channel", pa.int32(), "Source channel index (0 when channels are mixed)."),
    _f("channel_label", pa.string(), "As in segments: who spoke (`agent`, `customer`, `mono`...)."),
    _f("segment_index", pa.int32(), "The segment of its first word."),
    _f("start_s", pa.float64(), "Start of its first word on the source timeline, seconds."),
    _f("end_s", pa.float64(), "End of its last word on the source timeline, seconds."),
    _f(
        "times_from",
        pa.string(),
        "`words` (the CTC head's word times) or `segments` (a word without a time takes its segment's).",
    ),
]
_FOUND_BY = [
    _f("scan_id", pa.string(), "The run (its run_id) or `granite-batch scan` (scan-...) that found it."),
    _f("rules", pa.string(), "Fingerprint of the terms and PII types searched for (equal rules, equal value)."),
]
HITS = pa.schema(
    [
        *_FOUND_WHERE[:5],
        _f("phrase", pa.string(), "The term as configured (compliance.terms[].phrase)."),
        _f("category", pa.string(), "Its category (compliance.terms[].category)."),
        _f("matched", pa.string(), "The words of the transcript that matched (PII in them redacted)."),
        *_FOUND_WHERE[5:],
        _f("context", pa.string(), "compliance.context_words words either side (PII redacted)."),
        *_FOUND_BY,
    ]
)
PII = pa.schema(
    [
        *_FOUND_WHERE[:5],
        _f("entity_type", pa.string(), "compliance.redact type: credit_card, email, phone_number, ..."),
        *_FOUND_WHERE[5:],
        _f("score", pa.float64(), "presidio's confidence (after its checksum, e.g. Luhn, where the type has one)."),
        _f("redacted", pa.bool_(), "Replaced in segments' text and words (false: found by a later scan)."),
        *_FOUND_BY,
    ]
)
SCANS = pa.schema(
    [
        _f("segments_file", pa.string(), "A segments file, relative to the output (segments/date=.../x.parquet)."),
        *_FOUND_BY,
        _f("recordings", pa.int32(), "Recordings in it."),
        _f("hits", pa.int32(), "hits rows found in it."),
        _f("pii", pa.int32(), "pii rows found in it."),
        _f("scanned_at", pa.timestamp("us", tz="UTC"), "When."),
    ]
)


@dataclass(frozen=True)
class Hit(_Row):
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
class PiiSpan(_Row):
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
class Scanned(_Row):
    """One row of OUTPUT/scans: a segments file searched with one set of rules (scan's bookkeeping)."""

    segments_file: str
    scan_id: str
    rules: str
    recordings: int
    hits: int
    pii: int
    scanned_at: datetime


@dataclass(frozen=True)
class PlanRecording(_Row):
    """One row of plan's recordings.parquet."""

    source_uri: str
    recording_id: str
    source_etag: str
    size_bytes: int
    status: Literal["ok", "failed"]
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
            o.error,
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
class PlanBlock(_Row):
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


def to_table(records: list[Any], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema)


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
