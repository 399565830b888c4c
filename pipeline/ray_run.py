"""All of the Ray glue of `granite-batch run` (docs/run.md). The stages themselves are Ray-free.

Per window of recordings, one Ray Data pipeline:

    from_items(recordings) -> map_batches(cut)      CPU tasks: fetch, decode, VAD, blocks
                           -> map_batches(Dispatch)  0-CPU actors: hand batches to engines
                           -> iter_rows() in the driver (job.py: assemble, commit)

Engines are long-lived actors outside Ray Data, one group per `engine.pools` entry (GPU workers
with CUDA vLLM, CPU workers with vLLM's CPU build). Ray Data's actor pools are homogeneous, and
`streaming_split(equal=False)` divided work evenly in our tests (a slow consumer throttled the
fast one), so a broker actor hands out engine *slots* instead: each engine has `pool.slots`
slots, a dispatcher takes a free one (earlier pools first) for every batch and gives it back
when the engine answers. A faster engine frees its slots sooner and so gets more batches: the
split follows measured speed, not a ratio.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import pyarrow as pa

from .assemble import BlockResult
from .config import JobConfig, PoolConfig
from .engines.base import EngineStartError
from .job import Item
from .prepare import Outcome, cut_recording
from .records import Block, Recording
from .sources import SourceError, cached_source
from .engines.prompts import job_keywords, prompt_for

log = logging.getLogger(__name__)

ROWS_PER_CUT_BATCH = 32  # blocks per table a cut task yields (~8 MB of audio): streams long files

CUT = pa.schema(
    [
        ("kind", pa.string()),
        ("recording_id", pa.string()),
        ("channel", pa.int32()),
        ("channel_label", pa.string()),
        ("index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("audio", pa.binary()),  # float32 16 kHz samples (blocks)
        ("prompt", pa.string()),  # JSON PromptSpec fields (blocks)
        ("outcome", pa.binary()),  # pickled prepare.Outcome (outcome rows; index = blocks emitted)
    ]
)
RESULT = pa.schema(
    [
        ("kind", pa.string()),
        ("recording_id", pa.string()),
        ("channel", pa.int32()),
        ("channel_label", pa.string()),
        ("index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("outcome", pa.binary()),
        ("text", pa.string()),
        ("keywords", pa.list_(pa.string())),
        ("engine", pa.string()),
        ("model_revision", pa.string()),
        ("finish_reason", pa.string()),
        ("output_tokens", pa.int32()),
        ("error", pa.string()),
    ]
)


# -- stage 1: cut (CPU tasks) ------------------------------------------------------------------
def _recording_items(recs: list[Recording]) -> list[dict[str, Any]]:
    return [
        {"source_uri": r.source_uri, "size_bytes": r.size_bytes, "etag": r.etag, "version_id": r.version_id or ""}
        for r in recs
    ]


def cut_batches(batch: pa.Table, cfg: JobConfig, job_words: list[str]) -> Iterator[pa.Table]:
    source = cached_source(cfg.input, cfg.filters)
    for item in batch.to_pylist():
        rec = Recording(item["source_uri"], item["size_bytes"], item["etag"], version_id=item["version_id"] or None)
        rows: list[dict[str, Any]] = []
        emitted = 0
        try:
            spec = prompt_for(rec, source, cfg, job_words)
            prompt = json.dumps({"task": spec.task, "language": spec.language, "keywords": list(spec.keywords)})
            gen = cut_recording(rec, source, cfg, cfg.run.decode_memory_gib)
            while True:
                try:
                    b = next(gen)
                except StopIteration as stop:
                    outcome: Outcome = stop.value
                    break
                emitted += 1
                rows.append(
                    {
                        "kind": "block",
                        "recording_id": b.recording_id,
                        "channel": b.channel,
                        "channel_label": b.channel_label,
                        "index": b.index,
                        "start_s": b.start_s,
                        "end_s": b.end_s,
                        "audio": np.ascontiguousarray(b.samples, np.float32).tobytes(),
                        "prompt": prompt,
                    }
                )
                if len(rows) >= ROWS_PER_CUT_BATCH:
                    yield pa.Table.from_pylist(rows, CUT)
                    rows = []
        except SourceError as err:  # the keywords sidecar could not be read
            outcome = Outcome(rec, "failed", str(err))
        rows.append(
            {
                "kind": "outcome",
                "recording_id": rec.recording_id,
                "channel": -1,
                "index": emitted,
                "outcome": pickle.dumps(outcome),
            }
        )
        yield pa.Table.from_pylist(rows, CUT)


# -- stage 2: engines, broker, dispatch ----------------------------------------------------------
class EngineWorker:
    """One engine (one model copy) as a Ray actor."""

    def __init__(self, cfg: JobConfig, pool: PoolConfig, broker: Any) -> None:
        from .engines import make_engine
        from .engines.model_source import resolve_model_revision

        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # start failures still raise, and reach the driver
        if pool.device == "cpu":
            # vLLM's CPU build binds its threads to every core of the node by default; Ray gave
            # this worker `pool.cpus` of them.
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
            import torch

            torch.set_num_threads(max(1, int(pool.cpus)))
        self.cfg, self.pool, self.broker = cfg, pool.name, broker
        self.slots, self.gather_s = pool.slots, pool.gather_s
        self.busy_s, self.calls = 0.0, 0
        folder, self.revision = resolve_model_revision(cfg.model, cfg.input.endpoint_url)
        self.engine = make_engine(cfg.engine.kind, folder, cfg)
        self._waiting: list[tuple[list[dict[str, Any]], Future[list[dict[str, Any]]]]] = []
        self._wake = threading.Condition()
        # One thread runs the engine (vLLM's LLM is not thread-safe); calls only queue work.
        threading.Thread(target=self._serve, daemon=True, name="engine").start()

    def ready(self) -> str:
        return self.revision

    def transcribe(self, rows: list[dict[str, Any]], slot: tuple[int, int, str] | None = None) -> list[dict[str, Any]]:
        """Results for `rows`; gives `slot` back to the broker when done. The engine, not the
        dispatcher, releases it: a dispatcher waiting for its next slot must not hold finished
        ones (that deadlocks), and the slots of an engine that died for good are gone with it.

        Calls waiting here (up to `pool.slots`: the actor is threaded) are merged into one engine
        pass: partial batches from several dispatchers become one larger batch, as vLLM prefers."""
        done: Future[list[dict[str, Any]]] = Future()
        with self._wake:
            self._waiting.append((rows, done))
            self._wake.notify()
        try:
            return done.result()
        finally:
            if slot is not None:
                self.broker.release.remote(slot)

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._waiting:
                    self._wake.wait()
                # A thin queue (the run is filling up): give other calls `gather_s` to join this pass.
                deadline = time.monotonic() + self.gather_s
                while len(self._waiting) < self.slots and time.monotonic() < deadline:
                    self._wake.wait(deadline - time.monotonic())
                work, self._waiting = self._waiting, []
            t0 = time.perf_counter()
            try:
                results = self._transcribe([r for rows, _ in work for r in rows])
            except Exception as err:
                if len(work) == 1:
                    work[0][1].set_exception(err)
                    continue
                # One caller's bad input must not fail the others merged with it: each alone.
                for rows, done in work:
                    try:
                        done.set_result(self._transcribe(rows))
                    except Exception as one:
                        done.set_exception(one)
                continue
            finally:
                self.busy_s += time.perf_counter() - t0
                self.calls += 1
            i = 0
            for rows, done in work:
                done.set_result(results[i : i + len(rows)])
                i += len(rows)

    def stats(self) -> dict[str, float]:
        """Seconds spent transcribing and engine passes made (how busy the pipeline kept this engine)."""
        return {"busy_s": self.busy_s, "calls": self.calls}

    def _transcribe(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from .engines import PromptSpec, requests_for

        blocks, specs = [], {}
        for r in rows:
            blocks.append(
                Block(
                    r["recording_id"],
                    r["channel"],
                    r["channel_label"],
                    r["index"],
                    r["start_s"],
                    r["end_s"],
                    np.frombuffer(r["audio"], np.float32),
                )
            )
            p = json.loads(r["prompt"])
            specs[r["recording_id"]] = PromptSpec(p["task"], p["language"], tuple(p["keywords"]))
        requests = requests_for(blocks, specs, self.engine.tokenizer, self.cfg)
        out = []
        for r, res in zip(rows, self.engine.transcribe(requests)):
            out.append(
                _result_row(
                    r,
                    text=res.text,
                    keywords=list(res.keywords),
                    engine=self.pool,
                    model_revision=self.revision,
                    finish_reason=res.finish_reason,
                    output_tokens=res.output_tokens,
                    error="",
                )
            )
        return out


def _no_text(r: dict[str, Any], engine: str = "", error: str = "") -> dict[str, Any]:
    """A result row without a transcript: an outcome passing through, or a block whose engine failed."""
    return _result_row(
        r, text="", keywords=[], engine=engine, model_revision="", finish_reason="", output_tokens=0, error=error
    )


def _result_row(r: dict[str, Any], **values: Any) -> dict[str, Any]:
    row = {
        k: r.get(k)
        for k in ("kind", "recording_id", "channel", "channel_label", "index", "start_s", "end_s", "outcome")
    }
    row.update(values)
    return row


class Broker:
    """Free engine slots, earliest pool first. An async actor: `acquire` waits without a thread.
    Slots are added as engine workers become ready (nodes of an autoscaling cluster come later),
    and removed when an engine has died for good."""

    def __init__(self) -> None:
        self._free: asyncio.PriorityQueue[tuple[int, int, str]] | None = None
        self._seq = 0
        self._retired: set[str] = set()
        self._starved = False  # an acquire timed out: no engine left; fail fast until one is added

    def _queue(self) -> asyncio.PriorityQueue[tuple[int, int, str]]:
        if self._free is None:  # created inside the actor's event loop
            self._free = asyncio.PriorityQueue()
        return self._free

    async def add(self, slots: list[tuple[int, str]]) -> None:
        self._starved = False
        for prio, key in slots:
            await self.release((prio, 0, key))

    async def acquire(self, timeout_s: float) -> tuple[int, int, str] | None:
        """A free slot, or None when none came within `timeout_s` (every engine dead or gone)."""
        q = self._queue()
        if self._starved and q.empty():
            return None
        try:
            return await asyncio.wait_for(q.get(), timeout_s)
        except asyncio.TimeoutError:
            self._starved = True
            return None

    async def release(self, slot: tuple[int, int, str]) -> None:
        if slot[2] in self._retired:
            return
        self._seq += 1
        self._queue().put_nowait((slot[0], self._seq, slot[2]))

    async def retire(self, key: str) -> None:
        """The engine died for good: its queued slots must not send more batches to it."""
        self._retired.add(key)
        q = self._queue()
        kept = [q.get_nowait() for _ in range(q.qsize())]
        for slot in kept:
            if slot[2] != key:
                q.put_nowait(slot)


class Dispatch:
    """Ray Data actor (0 CPUs): sends each batch's blocks to engines through the broker."""

    def __init__(self, broker: Any, engines: dict[str, tuple[Any, int]], wait_s: float) -> None:
        self.broker, self.engines, self.wait_s = broker, engines, wait_s

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        rows = batch.to_pylist()
        out = [_no_text(r) for r in rows if r["kind"] != "block"]
        blocks = [r for r in rows if r["kind"] == "block"]
        pending: dict[Any, tuple[str, list[dict[str, Any]]]] = {}
        i = 0
        while i < len(blocks):
            slot = ray.get(self.broker.acquire.remote(self.wait_s))
            if slot is None:  # no engine left: these blocks fail (their recordings get a reason), the run ends
                error = f"no engine worker available for {self.wait_s:g} s (all failed or never started)"
                out.extend(_no_text(r, error=error) for r in blocks[i:])
                break
            handle, size = self.engines[slot[2]]
            chunk, i = blocks[i : i + size], i + size
            pending[handle.transcribe.remote(chunk, slot)] = (slot[2], chunk)
        for ref, (engine, chunk) in pending.items():
            try:
                out.extend(ray.get(ref))
            except Exception as err:  # the engine died and its retries ran out: failed, not lost
                if isinstance(err, ray.exceptions.ActorDiedError):
                    ray.get(self.broker.retire.remote(engine))
                msg = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
                out.extend(_no_text(r, engine, msg) for r in chunk)
        return pa.Table.from_pylist(out, RESULT)


def _gib(gib: float | None) -> int | None:
    return None if gib is None else int(gib * (1 << 30))


# -- the backend the driver uses -------------------------------------------------------------------
def init_ray(cfg: JobConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    if cfg.run.address:
        ray.init(address=cfg.run.address, logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=cfg.run.num_cpus or len(os.sched_getaffinity(0)),
            object_store_memory=int(cfg.run.object_store_gib * (1 << 30)),
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # job.py prints our own progress
    ctx.print_on_execution_start = False
    ctx.max_errored_blocks = -1  # a lost block is accounted by job.py as a failed recording, not a crash
    ctx.target_max_block_size = 32 << 20
    logging.getLogger("ray.data").setLevel(logging.WARNING)


class RayBackend:
    """Engine workers for the whole run, and one Ray Data pipeline per window of recordings."""

    def __init__(self, cfg: JobConfig) -> None:
        import ray

        init_ray(cfg)
        self.cfg, self.job_words = cfg, job_keywords(cfg)
        self.pools: dict[str, int] = {}  # engine workers ready, per pool
        self.failed_engines: dict[str, str] = {}
        self.model_revisions: list[str] = []
        self.handles: dict[str, tuple[Any, int]] = {}
        slots: dict[str, list[tuple[int, str]]] = {}
        gpus = ray.cluster_resources().get("GPU", 0)
        self.broker = ray.remote(Broker).options(num_cpus=0).remote()
        for prio, pool in enumerate(cfg.engine.pools):
            n = pool.replicas
            if n == "auto":
                n = int(gpus // pool.gpus) if pool.device == "gpu" and pool.gpus else (1 if pool.device == "cpu" else 0)
            self.pools[pool.name] = 0
            actor = ray.remote(EngineWorker).options(
                num_cpus=pool.cpus,
                num_gpus=pool.gpus if pool.device == "gpu" else 0,
                resources=pool.resources or None,
                memory=_gib(pool.memory_gib),
                max_restarts=2,
                max_task_retries=2,
                max_concurrency=pool.slots + 2,  # + ready/stats
            )
            for k in range(n):
                key = f"{pool.name}-{k}"
                self.handles[key] = (actor.remote(cfg, pool, self.broker), pool.batch_blocks or cfg.engine.batch_blocks)
                slots[key] = [(prio, key)] * pool.slots
        if not self.handles:
            raise EngineStartError("no engine workers: every pool has 0 replicas (no GPUs found? enable a cpu pool)")
        self.concurrency = sum(len(v) for v in slots.values())
        pending = {h.ready.remote(): key for key, (h, _) in self.handles.items()}
        self._stop = threading.Event()
        self._admitter: threading.Thread | None = None
        self._admit(pending, slots, first=True)  # the run starts with the first engine ready...
        if pending:  # ...and the others join as their nodes come up and their models load
            self._admitter = threading.Thread(target=self._admit, args=(pending, slots), daemon=True)
            self._admitter.start()

    def close(self) -> None:
        """Stop waiting for engines that never came (before Ray shuts down under the thread)."""
        self._stop.set()
        if self._admitter is not None:
            self._admitter.join(timeout=5)

    def _admit(self, pending: dict[Any, str], slots: dict[str, list[tuple[int, str]]], first: bool = False) -> None:
        import ray

        deadline = time.monotonic() + self.cfg.run.engine_start_timeout_s
        while pending and not self._stop.is_set():
            left = deadline - time.monotonic()
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, min(1.0, left)))
            if not ready and left > 1.0:
                continue
            if not ready:
                waiting = ", ".join(sorted(pending.values()))
                if first:
                    raise EngineStartError(
                        f"no engine worker became ready within run.engine_start_timeout_s "
                        f"({self.cfg.run.engine_start_timeout_s:g} s); waiting: {waiting}"
                    )
                log.warning("engine workers never became ready, giving up on them: %s", waiting)
                for key in pending.values():  # or the autoscaler keeps their (GPU) nodes for the whole run
                    ray.kill(self.handles[key][0])
                return
            key = pending.pop(ready[0])
            try:
                revision = ray.get(ready[0])
            except Exception as err:
                self.failed_engines[key] = f"{type(err).__name__}: {err}"[:2000]
                log.warning("engine worker %s failed to start: %s", key, self.failed_engines[key])
                if first and not pending:
                    raise EngineStartError(f"engine worker {key} failed to start: {err}") from None
                continue
            if revision not in self.model_revisions:
                self.model_revisions.append(revision)
            self.pools[key.rsplit("-", 1)[0]] += 1
            ray.get(self.broker.add.remote(slots[key]))
            if first:
                return

    def transcribe(self, recordings: list[Recording]) -> Iterator[Item]:
        import ray

        cfg, words = self.cfg, self.job_words
        ds = ray.data.from_items(_recording_items(recordings), override_num_blocks=len(recordings))
        with warnings.catch_warnings():
            # Ray Data retries failed map tasks forever by default; a file that kills its worker
            # every time (the OOM killer) must end as a failed row instead. `max_retries` has no
            # named parameter yet (ray_remote_args is deprecated for 2.64).
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(
                cut_batches,
                batch_size=1,
                batch_format="pyarrow",
                fn_kwargs={"cfg": cfg, "job_words": words},
                num_cpus=cfg.run.decode_cpus,
                max_retries=2,
                memory=_gib(cfg.run.decode_memory_gib),
            )
        ds = ds.map_batches(
            Dispatch,
            batch_size=cfg.engine.batch_blocks,
            batch_format="pyarrow",
            num_cpus=0,
            fn_constructor_kwargs={
                "broker": self.broker,
                "engines": self.handles,
                "wait_s": cfg.run.engine_start_timeout_s,
            },
            compute=ray.data.ActorPoolStrategy(size=min(self.concurrency, len(recordings))),
        )
        for row in ds.iter_rows():
            if row["kind"] == "outcome":
                yield pickle.loads(row["outcome"]), int(row["index"])
                continue
            yield BlockResult(
                recording_id=row["recording_id"],
                channel=int(row["channel"]),
                channel_label=row["channel_label"],
                index=int(row["index"]),
                start_s=float(row["start_s"]),
                end_s=float(row["end_s"]),
                text=row["text"],
                keywords=tuple(row["keywords"] or ()),
                engine=row["engine"],
                model_revision=row["model_revision"],
                finish_reason=row["finish_reason"],
                output_tokens=int(row["output_tokens"]),
                error=row["error"] or None,
            )
