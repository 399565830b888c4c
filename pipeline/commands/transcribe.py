"""`granite-batch transcribe FILE...`: local files cut into blocks, through one engine in this
process, out as one JSON line per block. No Ray and no output store: a check of an engine, a model
and the prompts on a few files. It holds one recording's blocks at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from ..audio.cut import cut_recording, drain
from ..config import InputConfig, JobConfig
from ..engines.base import Engine, EngineResult
from ..engines.requests import requests_for
from ..errors import Failure, SourceError
from ..prompt import prompt_for
from ..records.audio import Block, Recording
from ..sources import sidecar_keywords
from ..sources.local import LocalSource


def transcribe_files(files: Iterable[str], cfg: JobConfig, engine: Engine, job_words: list[str], out: TextIO) -> int:
    """Print one JSON line per block (or per failed input); returns the number of failures.
    A FILE that is a folder is listed with the configured include/exclude globs."""
    failures = 0
    for f in files:
        path = Path(f)
        globs = {} if path.is_dir() else {"include": ["*"], "exclude": []}
        try:
            src = LocalSource(InputConfig(uri=f, **globs), cfg.filters)
        except SourceError as err:
            failures += 1
            out.write(json.dumps(_failed(f, err.failure)) + "\n")
            continue
        for rec in src.recordings():
            blocks: list[Block] = []
            try:
                prompt = prompt_for(rec, sidecar_keywords(src, rec, cfg.prompt), cfg, job_words)
            except SourceError as err:
                failure: Failure | None = err.failure
            else:
                failure = drain(cut_recording(rec, src, cfg), blocks.append).error
            if failure is not None:
                failures += 1
                out.write(json.dumps(_failed(rec.source_uri, failure)) + "\n")
                continue
            for i in range(0, len(blocks), cfg.engine.batch_blocks):
                batch = blocks[i : i + cfg.engine.batch_blocks]
                results = engine.transcribe(requests_for(batch, {rec.recording_id: prompt}, engine.tokenizer, cfg))
                for b, r in zip(batch, results):
                    out.write(json.dumps(_line(rec, b, r, engine.name), ensure_ascii=False) + "\n")
            out.flush()
    return failures


def _failed(source_uri: str, failure: Failure) -> dict[str, Any]:
    return {"source_uri": source_uri, "status": "failed", "error_kind": failure.kind, "error": failure.detail}


def _line(rec: Recording, b: Block, r: EngineResult, engine: str) -> dict[str, Any]:
    """One JSON line: where the block is, and what the engine made of it."""
    return {
        "source_uri": rec.source_uri,
        "recording_id": rec.recording_id,
        "channel": b.channel,
        "channel_label": b.channel_label,
        "block_index": b.index,
        "start_s": b.start_s,
        "end_s": b.end_s,
        "text": r.text,
        "words": [w.on_source(b.start_s, b.end_s).to_row() for w in r.words],
        "decoded_by": r.decoded_by,
        "finish_reason": r.finish_reason,
        "prompt_tokens": r.prompt_tokens,
        "output_tokens": r.output_tokens,
        "prompt_variant": r.prompt_variant,
        "keywords": list(r.keywords),
        "engine": engine,
        "batch_s": round(r.batch_s, 4),
        "batch_size": r.batch_size,
    }
