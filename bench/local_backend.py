"""A `job.Backend` without Ray: recordings cut in this process and their blocks handed to any
engine with our interface that needs no prompt. It lets the quality and compliance harnesses run the real driver
(`run_job`: assembly, compliance, commits, manifest) with moonshine (bench/moonshine_engine.py),
which has no place in the product's engine workers."""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.audio.cut import cut_recording, drain
from pipeline.config import JobConfig
from pipeline.engines.base import EngineRequest
from pipeline.records.audio import Block, CutOutcome, Recording
from pipeline.records.results import BlockResult
from pipeline.records.transport import Item
from pipeline.sources import open_source


class LocalBackend:
    def __init__(self, cfg: JobConfig, engine) -> None:  # noqa: ANN001 - any engine with transcribe()
        self.cfg, self.engine = cfg, engine
        self.source = open_source(cfg.input, cfg.filters)
        self.pools = {"local": 1}
        self.failed_engines: dict[str, str] = {}
        self.model_revisions = ["local"]
        self.first_ready_at: float | None = None  # the engine was loaded before the run

    def transcribe(self, recordings: list[Recording]) -> Iterator[Item]:
        for rec in recordings:
            blocks: list[Block] = []
            outcome = drain(cut_recording(rec, self.source, self.cfg), blocks.append)
            if outcome.status == "ok" and blocks:
                requests = [EngineRequest(b.block_id, b.samples, "", "transcribe", (), 0) for b in blocks]
                results = self.engine.transcribe(requests)  # moonshine takes no prompt
                for b, r in zip(blocks, results):
                    yield BlockResult.of(
                        b, r.text, r.keywords, "local", "local", r.finish_reason, r.output_tokens, r.words, "llm"
                    )
            yield CutOutcome(outcome, len(blocks) if outcome.status == "ok" else 0)

    def close(self) -> None:
        pass
