"""`granite-batch run`, the driver's side: decide what to do, settle what comes back, commit it.

No Ray here: `Backend` (ray_run/) turns a window of recordings into a stream of cut outcomes
and block results; this module lists, skips what earlier runs did, assembles, commits every
`output.commit_every_s`, shows progress and writes the run manifest. Every recording the run
settles gets exactly one `recordings` row: ok or failed (with the reason); the ones earlier runs
did are counted as skipped (a row each only with `run.skipped_rows`).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, TextIO

from ..compliance.apply import Compliance
from ..config import JobConfig
from ..errors import ConfigError, Failure, code_of
from ..lake import output_store
from ..lake.store import Heartbeat, OutputStore
from ..ops.metrics import Pusher
from ..ops.progress import Printer, Progress
from ..ops.runinfo import manifest, new_run_id
from ..records.audio import Recording
from ..records.results import RecordingStatus
from ..records.settled import Settled
from ..records.transport import Item
from ..sources import open_source
from .assemble import Assembler
from .commits import Committer


class Backend(Protocol):
    pools: dict[str, int]  # pool name -> engine workers ready
    failed_engines: dict[str, str]  # engine worker -> why it did not start
    model_revisions: list[str]
    first_ready_at: float | None  # time.monotonic() when the first engine worker was ready

    def transcribe(self, recordings: list[Recording]) -> Iterator[Item]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunReport:
    run_id: str
    manifest_uri: str
    progress: Progress

    @property
    def exit_code(self) -> int:
        return 0 if not self.progress.failed else 1


def windows(items: Iterable[Recording], size: int) -> Iterator[list[Recording]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def run_job(cfg: JobConfig, start_backend: Callable[[JobConfig], Backend], err: TextIO = sys.stderr) -> RunReport:
    if not cfg.output.uri:
        raise ConfigError("run needs an output: `--output` or `output.uri` in the job file")
    started_at, t0 = datetime.now(timezone.utc), time.monotonic()
    cfg = cfg.for_run(started_at)
    run_id = new_run_id(started_at)
    live = _Live(Progress(started=t0), t0)
    pusher = Pusher(cfg.metrics, run_id, started_at.timestamp(), live.snapshot) if cfg.metrics.pushgateway_url else None
    try:
        report = _run_job(cfg, start_backend, err, run_id, started_at, live)
    except BaseException as failure:  # every way out pushes its exit code: the alerts read it
        if pusher is not None:
            pusher.final(code_of(failure))
        raise
    if pusher is not None:
        pusher.final(report.exit_code)
    return report


@dataclass
class _Live:
    """What the metrics read while the run goes on: its progress and, once started, its backend."""

    progress: Progress
    t0: float
    backend: Backend | None = None

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.progress.as_dict(), _engines(self.backend, self.t0)


def _run_job(
    cfg: JobConfig,
    start_backend: Callable[[JobConfig], Backend],
    err: TextIO,
    run_id: str,
    started_at: datetime,
    live: _Live,
) -> RunReport:
    compliance = Compliance(cfg, run_id) if cfg.compliance.enabled else None  # a bad terms file stops here
    store = output_store(cfg, cfg.output.uri)
    recovered = store.prepare(run_id)
    run = _Run(cfg, run_id, store, started_at.strftime("%Y-%m-%d"), err, compliance, live.progress)
    heartbeat = Heartbeat(store, run_id)
    try:
        source = open_source(cfg.input, cfg.filters)
        run.progress.not_listed = source.stats  # filled in as the listing is consumed
        listing = _counted(source.recordings(), run.progress)
        for window in windows(listing, cfg.run.window_recordings):
            todo = run.skip_done(window)
            if todo:
                # started at the first recording with work: a re-run with none starts nothing
                live.backend = live.backend or start_backend(cfg)
                run.transcribe(live.backend, todo)
    except BaseException:
        with contextlib.suppress(Exception):
            run.committer.flush()  # what is settled is complete: keep it, so a re-run does less
        with contextlib.suppress(Exception):
            store.release(run_id)  # this run is over: the next may start at once
        raise
    finally:
        if live.backend is not None:
            live.backend.close()
        heartbeat.stop()
    run.committer.flush()
    run.printer.final()
    backend = live.backend
    figures = run.progress.as_dict()
    engines = _engines(backend, live.t0)
    info = manifest(cfg, run_id, started_at, backend.model_revisions if backend else [], engines, figures, recovered)
    uri = store.write_manifest(run_id, info | {"output": store.manifest_extra()})
    store.release(run_id)
    print(run.progress.summary(run_id, cfg.output.uri), file=err)
    return RunReport(run_id, uri, run.progress)


def _engines(backend: Backend | None, t0: float) -> dict[str, Any]:
    """The manifest's `engine_workers`: ready per pool, failed per worker, and the start-up."""
    if backend is None:
        return {}
    out: dict[str, Any] = {"ready": dict(backend.pools), "failed": dict(backend.failed_engines)}
    if backend.first_ready_at is not None:  # the run's start-up: Ray, listing, model load
        out["first_ready_s"] = round(backend.first_ready_at - t0, 2)
    return out


class _Run:
    """One run's state: what earlier runs settled, what is in flight, progress and commits."""

    def __init__(
        self,
        cfg: JobConfig,
        run_id: str,
        store: OutputStore,
        date: str,
        err: TextIO,
        compliance: Compliance | None,
        progress: Progress,
    ) -> None:
        self.cfg, self.run_id, self.compliance = cfg, run_id, compliance
        self.history = store.history()
        self.progress = progress
        rules = compliance.rules.fingerprint if compliance else None
        self.committer = Committer(store, run_id, date, cfg.output.commit_every_s, cfg.output.commit_rows, rules)
        self.assembler = Assembler(run_id, cfg.model.id, cfg.prompt.language)
        self.printer = Printer(self.progress, err, cfg.run.progress_every_s)
        self.size_of: dict[str, int] = {}  # recordings in flight

    def skip_done(self, window: list[Recording]) -> list[Recording]:
        """Count as skipped what earlier runs did (and with `run.skipped_rows`, write a row for
        each); return the rest."""
        todo = []
        found, ok, runs = self.history.find([r.recording_id for r in window])
        skip = found & (ok | (not self.cfg.run.retry_failed))
        for rec, skipped, run in zip(window, skip.tolist(), runs.tolist()):
            if skipped:
                self.progress.skip(rec.size_bytes)
                if self.cfg.run.skipped_rows:
                    prev = self.history.run_id(run)
                    self.committer.add(
                        Settled(RecordingStatus.of(rec, self.run_id, "skipped", previous_run_id=prev), [])
                    )
            elif rec.error:  # a manifest row that names no readable object: settled here
                self._settle(Settled(RecordingStatus.of(rec, self.run_id, "failed", segments=0, error=rec.error), []))
            else:
                todo.append(rec)
                self.size_of[rec.recording_id] = rec.size_bytes
        return todo

    def transcribe(self, backend: Backend, todo: list[Recording]) -> None:
        for item in backend.transcribe(todo):
            settled = self.assembler.add(item)
            if settled is not None:
                self._settle(settled)
            self.committer.tick()
            self.printer.tick()
        # Whatever the backend lost (a decode worker that died on every retry) is failed, not missing.
        for rec in todo:
            if rec.recording_id in self.size_of:
                error = Failure("worker_lost", "lost in the pipeline: no result after retries (see the Ray logs)")
                self._settle(Settled(RecordingStatus.of(rec, self.run_id, "failed", segments=0, error=error), []))
        self.assembler.drop_all()
        self.committer.tick()

    def _settle(self, s: Settled) -> None:
        if self.compliance is not None:
            s = self.compliance.apply(s)
            self.progress.found(s.hits, s.pii)
        self.committer.add(s)
        self.progress.add(s.recording, self.size_of.pop(s.recording.recording_id, 0), s.segments)


def _counted(recs: Iterable[Recording], progress: Progress) -> Iterator[Recording]:
    """The listing, counted as it is consumed (the total is known only at its end)."""
    for rec in recs:
        progress.listed_one(rec.size_bytes)
        yield rec
    progress.listing_done = True
