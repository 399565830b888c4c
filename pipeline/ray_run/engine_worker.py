"""Stage 2: one engine (one model copy) as a Ray actor. A call hands it block rows (`BLOCK_ROWS`,
Arrow) and gets `RESULT_ROWS` back; calls that wait here are merged into one engine pass, and each
gives its broker slot back when its results are ready."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

import pyarrow as pa

from ..config import JobConfig, PoolConfig
from ..records.results import BlockResult
from ..records.transport import RESULT_ROWS, from_block_row, result_row
from .broker import Slot


class EngineWorker:
    """One engine (one model copy) as a Ray actor."""

    def __init__(self, cfg: JobConfig, pool: PoolConfig, broker: Any) -> None:
        from ..engines.factory import make_engine
        from ..engines.model_source import resolve_model_revision

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
        self.passes: deque[tuple[float, float, int]] = deque(maxlen=10_000)  # (start, end wall time, blocks)
        folder, self.revision = resolve_model_revision(cfg.model, cfg.input.endpoint_url)
        self.engine = make_engine(cfg.engine.kind, folder, cfg, device="cuda" if pool.device == "gpu" else "cpu")
        self._waiting: list[tuple[pa.Table, Future[pa.Table]]] = []
        self._wake = threading.Condition()
        # One thread runs the engine (vLLM's LLM is not thread-safe); calls only queue work.
        threading.Thread(target=self._serve, daemon=True, name="engine").start()

    def ready(self) -> str:
        return self.revision

    def transcribe(self, rows: pa.Table, slot: Slot | None = None) -> pa.Table:
        """Results (`RESULT_ROWS`) for `rows` (`BLOCK_ROWS` of blocks with their prompts), in order;
        gives `slot` back to the broker when done. The engine, not the
        dispatcher, releases it: a dispatcher waiting for its next slot must not hold finished
        ones (that deadlocks), and the slots of an engine that died for good are gone with it.

        Calls waiting here (up to `pool.slots`: the actor is threaded) are merged into one engine
        pass: partial batches from several dispatchers become one larger batch, as vLLM prefers."""
        done: Future[pa.Table] = Future()
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
            t0, wall0, rows_in = time.perf_counter(), time.time(), pa.concat_tables([rows for rows, _ in work])
            try:
                results = self._transcribe(rows_in)
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
                self.passes.append((wall0, time.time(), rows_in.num_rows))
            i = 0
            for rows, done in work:
                done.set_result(results.slice(i, rows.num_rows))
                i += rows.num_rows

    def stats(self, timeline: bool = False) -> dict[str, Any]:
        """Seconds spent transcribing and engine passes made (how busy the pipeline kept this engine);
        with `timeline`, the last passes' (start and end wall time, blocks) too (bench/pipeline.py's steady rate)."""
        out: dict[str, Any] = {"busy_s": self.busy_s, "calls": self.calls}
        if timeline:
            out["passes"] = list(self.passes)
        return out

    def _transcribe(self, table: pa.Table) -> pa.Table:
        from ..engines.requests import requests_for

        rows = [from_block_row(r) for r in table.to_pylist()]  # blocks with their prompts, no outcomes
        prompts = {b.recording_id: p for b, p in rows}  # type: ignore[misc]
        blocks = [b for b, _ in rows]  # type: ignore[misc]
        requests = requests_for(blocks, prompts, self.engine.tokenizer, self.cfg)
        results = [
            BlockResult.of(
                b, r.text, r.keywords, self.pool, self.revision, r.finish_reason, r.output_tokens, r.words, r.decoded_by
            )
            for b, r in zip(blocks, self.engine.transcribe(requests))
        ]
        return pa.Table.from_pylist([result_row(r) for r in results], RESULT_ROWS)
