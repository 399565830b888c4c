"""The backend the driver uses (run/driver.py: `Backend`): Ray started or joined, the engine workers of every
pool started and admitted as they become ready, and one Ray Data pipeline per window."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from ..config import JobConfig
from ..errors import EngineStartError, exit_on_sigterm
from ..prompt import job_keywords
from ..records.audio import Recording
from ..records.transport import Item, from_result_row
from .broker import Broker, Slot
from .cut import cut_batches, recording_items
from .dispatch import Dispatch
from .engine_worker import EngineWorker

log = logging.getLogger(__name__)


def _gib(gib: float | None) -> int | None:
    return None if gib is None else int(gib * (1 << 30))


class _AuthOnNotice(logging.Filter):
    """Drops Ray's notice that it turned token auth on by default, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


# -- the backend the driver uses -------------------------------------------------------------------
def init_ray(cfg: JobConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    if cfg.run.address:
        ray.init(address=cfg.run.address, logging_level=logging.WARNING)
    else:
        # Ray 2.60 turns token auth on for a new local cluster (the token generated into ~/.ray)
        # and says so at every start: keep it on, without the notice.
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_AuthOnNotice())
        ray.init(
            num_cpus=cfg.run.num_cpus or len(os.sched_getaffinity(0)),
            object_store_memory=int(cfg.run.object_store_gib * (1 << 30)),
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    exit_on_sigterm()  # again: ray.init put its own in
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver prints our own progress
    ctx.print_on_execution_start = False
    ctx.max_errored_blocks = -1  # a lost block is accounted by the driver as a failed recording, not a crash
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
        self.first_ready_at: float | None = None
        self.handles: dict[str, tuple[Any, int]] = {}
        slots: dict[str, list[Slot]] = {}
        self.pool_of: dict[str, str] = {}  # engine worker key -> its pool
        gpus = ray.cluster_resources().get("GPU", 0)
        self.broker = ray.remote(Broker).options(num_cpus=0).remote()
        for prio, pool in enumerate(cfg.engine.pools):
            n = pool.replicas
            if n == "auto":
                n = int(gpus // pool.gpus) if pool.device == "gpu" and pool.gpus else (1 if pool.device == "cpu" else 0)
            if n:  # a pool sized to nothing (no GPUs here) is not a pool that failed to come up
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
                slots[key] = [Slot(prio, 0, key)] * pool.slots
                self.pool_of[key] = pool.name
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

    def _admit(self, pending: dict[Any, str], slots: dict[str, list[Slot]], first: bool = False) -> None:
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
            self.pools[self.pool_of[key]] += 1
            self.first_ready_at = self.first_ready_at or time.monotonic()
            ray.get(self.broker.add.remote(slots[key]))
            if first:
                return

    def transcribe(self, recordings: list[Recording]) -> Iterator[Item]:
        import ray

        cfg, words = self.cfg, self.job_words
        ds = ray.data.from_items(recording_items(recordings), override_num_blocks=len(recordings))
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
            yield from_result_row(row)
