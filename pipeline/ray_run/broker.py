"""The broker: free engine slots, earliest pool first. Each engine worker has `pool.slots` of
them; a dispatcher takes one per batch and the engine gives it back when it has answered, so a
faster engine gets more batches (docs/architecture.md#engine-pools)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace


@dataclass(frozen=True, order=True)
class Slot:
    """One batch's place at an engine. Ordered: earlier pools first, then first freed."""

    priority: int  # the pool's position in engine.pools
    seq: int  # when it was freed
    engine: str  # the engine worker's key ("cpu-0")


class Broker:
    """An async Ray actor: `acquire` waits without a thread. Slots are added as engine workers
    become ready (nodes of an autoscaling cluster come later), and removed when an engine has
    died for good."""

    def __init__(self) -> None:
        self._free: asyncio.PriorityQueue[Slot] | None = None
        self._seq = 0
        self._retired: set[str] = set()
        self._starved = False  # an acquire timed out: no engine left; fail fast until one is added

    def _queue(self) -> asyncio.PriorityQueue[Slot]:
        if self._free is None:  # created inside the actor's event loop
            self._free = asyncio.PriorityQueue()
        return self._free

    async def add(self, slots: list[Slot]) -> None:
        self._starved = False
        for slot in slots:
            await self.release(slot)

    async def acquire(self, timeout_s: float) -> Slot | None:
        """A free slot, or None when none came within `timeout_s` (every engine dead or gone)."""
        q = self._queue()
        if self._starved and q.empty():
            return None
        try:
            return await asyncio.wait_for(q.get(), timeout_s)
        except asyncio.TimeoutError:
            self._starved = True
            return None

    async def release(self, slot: Slot) -> None:
        if slot.engine in self._retired:
            return
        self._seq += 1
        self._queue().put_nowait(replace(slot, seq=self._seq))

    async def retire(self, engine: str) -> None:
        """The engine died for good: its queued slots must not send more batches to it."""
        self._retired.add(engine)
        q = self._queue()
        kept = [q.get_nowait() for _ in range(q.qsize())]
        for slot in kept:
            if slot.engine != engine:
                q.put_nowait(slot)
