"""Output schemas, defined once: the writers, the tests and docs/output.md all use these.

Types are chosen so DuckDB, Polars, Spark and Athena read them without casts: plain strings,
int32/int64, float64, no unsigned ints, no dictionaries.
"""

from __future__ import annotations

import pyarrow as pa


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
        _f("output_tokens", pa.int32(), "Tokens the model produced."),
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
        _f("run_id", pa.string(), "This run."),
        _f("processed_at", pa.timestamp("us", tz="UTC"), "When this run settled the recording."),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "plan/recordings.parquet": PLAN_RECORDINGS,
    "plan/blocks.parquet": PLAN_BLOCKS,
    "run/segments": SEGMENTS,
    "run/recordings": RECORDINGS,
}


def markdown_table(schema: pa.Schema) -> str:
    """The schema as the Markdown table docs/output.md shows (a test keeps them equal)."""
    rows = ["| column | type | null | meaning |", "| --- | --- | --- | --- |"]
    for f in schema:
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        rows.append(f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | {doc} |")
    return "\n".join(rows)
