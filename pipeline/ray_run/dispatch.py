"""Stage 2's feeder: a Ray Data actor (0 CPUs) that hands each batch's blocks to engines through
the broker, and passes each recording's cut outcome on. `model.CUT` rows in, `model.RESULT_ROWS` out."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..records.audio import Block
from ..records.prompt import Prompt
from ..records.results import BlockResult
from ..records.transport import RESULT_ROWS, from_block_row, result_row


class Dispatch:
    def __init__(self, broker: Any, engines: dict[str, tuple[Any, int]], wait_s: float) -> None:
        self.broker, self.engines, self.wait_s = broker, engines, wait_s  # engines: key -> (actor, blocks per call)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        rows = batch.to_pylist()
        out = [{"result": None, "outcome": r["outcome"], "emitted": r["emitted"]} for r in rows if r["block"] is None]
        blocks: list[tuple[Block, Prompt]] = [from_block_row(r) for r in rows if r["block"] is not None]  # type: ignore[misc]
        pending: dict[Any, tuple[str, list[tuple[Block, Prompt]]]] = {}
        i = 0
        while i < len(blocks):
            slot = ray.get(self.broker.acquire.remote(self.wait_s))
            if slot is None:  # no engine left: these blocks fail (their recordings get a reason), the run ends
                error = f"no engine worker available for {self.wait_s:g} s (all failed or never started)"
                out.extend(result_row(BlockResult.failed(b, "", error)) for b, _ in blocks[i:])
                break
            handle, size = self.engines[slot.engine]
            chunk, i = blocks[i : i + size], i + size
            pending[handle.transcribe.remote(chunk, slot)] = (slot.engine, chunk)
        for ref, (engine, chunk) in pending.items():
            try:
                out.extend(result_row(r) for r in ray.get(ref))
            except Exception as err:  # the engine died and its retries ran out: failed, not lost
                if isinstance(err, ray.exceptions.ActorDiedError):
                    ray.get(self.broker.retire.remote(engine))
                msg = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
                out.extend(result_row(BlockResult.failed(b, engine, msg)) for b, _ in chunk)
        return pa.Table.from_pylist(out, RESULT_ROWS)
