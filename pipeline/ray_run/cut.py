"""Stage 1: cut tasks (CPU). Each recording becomes `records.transport.BLOCK_ROWS` rows: its blocks,
each with its recording's prompt, and last its `CutOutcome` (how many blocks were sent, and ok or
why not)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..audio.cut import cut_recording
from ..config import JobConfig
from ..errors import SourceError
from ..prompt import prompt_for
from ..records.audio import CutOutcome, Outcome, Recording
from ..records.transport import BLOCK_ROWS, block_row
from ..sources import cached_source, sidecar_keywords

ROWS_PER_CUT_BATCH = 32  # blocks per table a cut task yields (~8 MB of audio): streams long files


def recording_items(recs: list[Recording]) -> list[dict[str, Any]]:
    return [r.to_row() for r in recs]


def cut_batches(batch: pa.Table, cfg: JobConfig, job_words: list[str]) -> Iterator[pa.Table]:
    source = cached_source(cfg.input, cfg.filters)
    for item in batch.to_pylist():
        rec = Recording.from_row(item)
        rows: list[dict[str, Any]] = []
        emitted = 0
        try:
            prompt = prompt_for(rec, sidecar_keywords(source, rec, cfg.prompt), cfg, job_words)
            gen = cut_recording(rec, source, cfg, cfg.run.decode_memory_gib)
            while True:
                try:
                    b = next(gen)
                except StopIteration as stop:
                    outcome: Outcome = stop.value
                    break
                emitted += 1
                rows.append(block_row((b, prompt)))
                if len(rows) >= ROWS_PER_CUT_BATCH:
                    yield pa.Table.from_pylist(rows, BLOCK_ROWS)
                    rows = []
        except SourceError as err:  # the keywords sidecar could not be read
            outcome = Outcome.failed(rec, err.failure)
        rows.append(block_row(CutOutcome(outcome, emitted)))
        yield pa.Table.from_pylist(rows, BLOCK_ROWS)
