"""`granite-batch plan`: list, fetch, decode and cut everything, and say what a run would cost.

Recordings are cut in a pool of worker processes with a bounded number in flight, so memory stays
flat whatever the size of the listing. Rows stream into Parquet as results arrive.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..audio.cut import cut_recording, drain
from ..audio.vad import load_model
from ..config import JobConfig
from ..errors import Failure
from ..ops.progress import hours
from ..records.audio import Outcome, Recording
from ..records.plan import PLAN_BLOCKS, PLAN_RECORDINGS, PlanBlock, PlanRecording
from ..records.rows import to_table
from ..sources import cached_source, open_source
from ..sources.scope import ListingStats

Result = tuple[Outcome, list[PlanBlock], float | None]  # and the recording's audio-in CPU seconds


def plan_one(rec: Recording, cfg: JobConfig, memory_gib: float | None = None) -> Result:
    """Cut one recording; its block rows (without samples), or none if it failed, and the CPU
    seconds it took. `memory_gib`: the ceiling of a worker process (not of an in-process run,
    whose caller may hold much more)."""
    rows: list[PlanBlock] = []
    source = cached_source(cfg.input, cfg.filters)
    load_model()  # once per process: start-up is not a recording's cost
    cpu = time.thread_time()  # audio-in runs in this thread (the VAD's onnxruntime too, 1 thread)
    outcome = drain(
        cut_recording(rec, source, cfg, memory_gib),
        lambda b: rows.append(PlanBlock.of(b, rec.source_uri)),
    )
    return outcome, rows if outcome.status == "ok" else [], time.thread_time() - cpu


@dataclass
class PlanSummary:
    listing: ListingStats
    recordings: int = 0
    failed: int = 0
    audio_s: float = 0.0
    speech_s_by_label: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    blocks: int = 0
    hard_cuts: int = 0
    dropped_s: float = 0.0
    formats: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source_uri, reason)
    cpu_s: float = 0.0  # audio-in: fetch, decode and cut, summed over recordings (failed ones too)

    def add(self, o: Outcome, cpu_s: float | None = None) -> None:
        self.recordings += 1
        self.cpu_s += cpu_s or 0.0
        if o.status != "ok":
            self.failed += 1
            self.failures.append((o.recording.source_uri, o.error.detail if o.error else ""))
            return
        assert o.info is not None
        self.audio_s += o.info.duration_s
        self.formats[f"{o.info.format.split(',')[0]}/{o.info.codec}"] += 1
        for c in o.channels:
            self.speech_s_by_label[c.label] += c.speech_s
            self.blocks += c.blocks
            self.hard_cuts += c.hard_cuts
            self.dropped_s += c.dropped_s

    @property
    def speech_s(self) -> float:
        return sum(self.speech_s_by_label.values())


class _ParquetStream:
    """Append rows to one Parquet file in row groups; the file appears complete or not at all."""

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int = 50_000) -> None:
        self.path, self.schema, self.batch_rows = path, schema, batch_rows
        self._tmp = path.with_name(f".{path.name}.partial")
        self._writer = pq.ParquetWriter(self._tmp, schema)
        self._rows: list[PlanRecording | PlanBlock] = []

    def extend(self, rows: Iterable[PlanRecording | PlanBlock]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(to_table(self._rows, self.schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self._tmp, self.path)


def run_plan(
    cfg: JobConfig, out_dir: Path | None, workers: int, on_outcome: Callable[[Outcome], None] = lambda o: None
) -> PlanSummary:
    cfg = cfg.for_run(datetime.now(timezone.utc))
    source = open_source(cfg.input, cfg.filters)
    summary = PlanSummary(source.stats)
    sinks: tuple[_ParquetStream, _ParquetStream] | None = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        sinks = (
            _ParquetStream(out_dir / "recordings.parquet", PLAN_RECORDINGS),
            _ParquetStream(out_dir / "blocks.parquet", PLAN_BLOCKS),
        )
    for outcome, rows, cpu_s in _map(cfg, source.recordings(), workers):
        summary.add(outcome, cpu_s)
        on_outcome(outcome)
        if sinks:
            sinks[0].extend([PlanRecording.of(outcome, cpu_s)])
            sinks[1].extend(rows)
    if sinks:
        for s in sinks:
            s.close()
    return summary


def _map(cfg: JobConfig, recs: Iterator[Recording], workers: int) -> Iterator[Result]:
    if workers <= 1:
        for rec in recs:
            yield plan_one(rec, cfg)
        return
    pool = _Pool(cfg, workers)
    try:
        for rec in recs:
            pool.submit(rec)
            while pool.in_flight >= 2 * workers:  # bounded: a million keys never queue up at once
                yield from pool.collect()
        while pool.in_flight:
            yield from pool.collect()
    finally:
        pool.close()


class _Pool:
    """A process pool that survives a worker dying (e.g. a codec crash or the OOM killer).

    When a worker dies every in-flight future fails, so each of those recordings is retried
    once in a fresh pool; one that breaks the pool twice gets a `failed` row.
    """

    def __init__(self, cfg: JobConfig, workers: int) -> None:
        self.cfg, self.workers = cfg, workers
        self.pending: dict[Future[Result], tuple[Recording, int]] = {}
        # spawn, not fork: the parent holds boto3 and onnxruntime state that must not be shared.
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def submit(self, rec: Recording, attempt: int = 1) -> None:
        call = (plan_one, rec, self.cfg, self.cfg.run.decode_memory_gib)
        try:
            future = self.pool.submit(*call)
        except BrokenProcessPool:
            self._renew()
            future = self.pool.submit(*call)
        self.pending[future] = (rec, attempt)

    def collect(self) -> Iterator[Result]:
        done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
        for f in done:
            rec, attempt = self.pending.pop(f)
            try:
                yield f.result()
            except BrokenProcessPool:
                if attempt >= 2:
                    died = Failure("worker_lost", "worker process died twice while decoding this recording")
                    yield Outcome.failed(rec, died), [], None
                else:
                    self.submit(rec, attempt + 1)
            except Exception as err:  # e.g. a result that cannot be pickled: failed, not lost
                yield (
                    Outcome.failed(rec, Failure("worker_lost", f"worker failed: {type(err).__name__}: {err}")),
                    [],
                    None,
                )

    def _renew(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _gpu_memory(cfg: JobConfig) -> list[str]:
    """How each GPU is shared: vLLM's share, and the CTC stage's budget and estimated need."""
    from ..engines.ctc.head import memory_gib

    vllm = f"  gpu memory  vLLM {cfg.engine.gpu_memory_utilization:.0%} of each card"
    d = cfg.decoding
    if not d.needs_ctc:
        return [vllm + "; CTC stage off"]
    need = memory_gib(d.ctc_batch_blocks, cfg.blocks.max_s, embeds=cfg.engine.kind == "vllm")
    warn = "  TOO SMALL: lower decoding.ctc_batch_blocks" if need > d.ctc_gpu_memory_gib else ""
    return [
        f"{vllm}; CTC stage {d.ctc_gpu_memory_gib:g} GiB beside it (needs ~{need:.1f} GiB: "
        f"weights + batches of {d.ctc_batch_blocks} blocks){warn}"
    ]


def _audio_in(cfg: JobConfig, s: PlanSummary) -> str:
    """Audio-in's measured CPU, and the cores one GPU needs so it is never starved: the GPU takes
    `expected_rtfx` speech-seconds per second, and each cost `cpu_s / speech_s` CPU-seconds here."""
    line = f"  audio-in    {s.cpu_s:.2f} CPU-s to fetch, decode and cut"
    if s.cpu_s > 0 and s.audio_s > 0:
        line += f" ({s.audio_s / s.cpu_s:.0f}x real time per core)"
    if s.cpu_s > 0 and s.speech_s > 0:
        line += f"; a GPU at RTFx {cfg.engine.expected_rtfx:g} needs ~{s.cpu_s * cfg.engine.expected_rtfx / s.speech_s:.1f} such cores"
    return line


def render_summary(cfg: JobConfig, s: PlanSummary) -> str:
    ls = s.listing
    gpu_h = s.speech_s / cfg.engine.expected_rtfx / 3600
    cost = (
        f", about {gpu_h * cfg.engine.gpu_hour_price:.2f} at {cfg.engine.gpu_hour_price:g}/GPU-h"
        if cfg.engine.gpu_hour_price
        else ""
    )
    by_label = ", ".join(f"{k} {hours(v)}" for k, v in sorted(s.speech_s_by_label.items())) or "none"
    hard = f" ({100 * s.hard_cuts / s.blocks:.1f}% of blocks)" if s.blocks else ""
    lines = [
        f"plan: {cfg.input.uri}",
        f"  recordings  {s.recordings} ({s.recordings - s.failed} ok, {s.failed} failed)",
        f"  excluded    {ls.excluded_by_glob} by glob, {ls.excluded_by_modified_since} by modified-since, "
        f"{ls.folder_markers} folder markers, {ls.duplicate_rows} repeated manifest rows",
        f"  audio       {hours(s.audio_s)}  formats: {', '.join(f'{k} {v}' for k, v in s.formats.most_common()) or 'none'}",
        f"  speech      {hours(s.speech_s)} to the model in {s.blocks} blocks of <= {cfg.blocks.max_s:g} s  ({by_label})",
        f"  dropped     {hours(s.dropped_s)} without speech; {s.hard_cuts} cuts inside speech where no pause was found{hard}",
        f"  estimate    {gpu_h:.4f} GPU-hours at RTFx {cfg.engine.expected_rtfx:g}{cost}",
        _audio_in(cfg, s),
        *_gpu_memory(cfg),
        f"  unreadable  {s.failed}",
    ]
    lines += [f"    {uri}: {reason}" for uri, reason in s.failures[:50]]
    if len(s.failures) > 50:
        lines.append(f"    ... and {len(s.failures) - 50} more (see recordings.parquet)")
    return "\n".join(lines)
