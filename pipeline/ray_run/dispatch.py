"""Stage 2's feeder: a Ray Data actor (0 CPUs) that hands each batch's blocks to engines through
the broker, and passes each recording's cut outcome on. `BLOCK_ROWS` in, `RESULT_ROWS` out
(records/transport.py); what goes to an engine worker is a slice of the same Arrow rows, and what
comes back is `RESULT_ROWS`: the rows are decoded only where they are used."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..records.results import BLOCK_RESULT_TYPE, BlockResult
from ..records.transport import BLOCK_ROWS, RESULT_ROWS, from_block_row, result_row


class Dispatch:
    def __init__(self, broker: Any, engines: dict[str, tuple[Any, int]], wait_s: float) -> None:
        self.broker, self.engines, self.wait_s = broker, engines, wait_s  # engines: key -> (actor, blocks per call)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        if batch.schema != BLOCK_ROWS:  # engine workers merge their callers' rows: one schema
            batch = batch.cast(BLOCK_ROWS)
        is_block = pc.is_valid(batch.column("block"))
        outcomes = batch.filter(pc.invert(is_block))
        blocks = batch.filter(is_block)
        out = [
            pa.Table.from_arrays(
                [pa.nulls(outcomes.num_rows, BLOCK_RESULT_TYPE), outcomes["outcome"], outcomes["emitted"]],
                schema=RESULT_ROWS,
            )
        ]
        pending: dict[Any, tuple[str, pa.Table]] = {}
        i = 0
        while i < blocks.num_rows:
            slot = ray.get(self.broker.acquire.remote(self.wait_s))
            if slot is None:  # no engine left: these blocks fail (their recordings get a reason), the run ends
                error = f"no engine worker available for {self.wait_s:g} s (all failed or never started)"
                out.append(_failed(blocks.slice(i), "", error))
                break
            handle, size = self.engines[slot.engine]
            chunk, i = blocks.slice(i, size), i + size
            pending[handle.transcribe.remote(chunk, slot)] = (slot.engine, chunk)
        for ref, (engine, chunk) in pending.items():
            try:
                out.append(ray.get(ref))
            except Exception as err:  # the engine died and its retries ran out: failed, not lost
                if isinstance(err, ray.exceptions.ActorDiedError):
                    ray.get(self.broker.retire.remote(engine))
                msg = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
                out.append(_failed(chunk, engine, msg))
        return pa.concat_tables(out)


def _failed(rows: pa.Table, engine: str, error: str) -> pa.Table:
    """RESULT_ROWS for block rows whose engine call failed: each block with no text and the reason."""
    failed = [BlockResult.failed(from_block_row(r)[0], engine, error) for r in rows.to_pylist()]  # type: ignore[index]
    return pa.Table.from_pylist([result_row(f) for f in failed], RESULT_ROWS)
