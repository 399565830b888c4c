"""Per-recording limits enforced while a recording is cut: decode time and worker memory.

Both are checked between decoded chunks (about every 2 s of audio), so a recording over a limit
stops within a chunk and fails with a reason naming the setting. Time spent waiting for the
pipeline to take blocks (backpressure) does not count: only fetching, decoding and cutting do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import LimitExceeded

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident memory now (Linux), not its peak: a worker is reused across recordings."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class Budget:
    def __init__(self, timeout_s: float | None, memory_gib: float | None) -> None:
        self.timeout_s, self.memory_gib = timeout_s, memory_gib
        self._spent, self._since = 0.0, time.monotonic()

    @property
    def spent_s(self) -> float:
        return self._spent + time.monotonic() - self._since

    def check(self) -> None:
        if self.timeout_s is not None and self.spent_s > self.timeout_s:
            raise LimitExceeded(
                "timeout",
                f"decode timeout: still decoding after {self.spent_s:.0f} s, "
                f"over filters.decode_timeout_s={self.timeout_s:g}",
            )
        if self.memory_gib is not None:
            rss = rss_bytes()
            if rss > self.memory_gib * (1 << 30):
                raise LimitExceeded(
                    "out_of_memory",
                    f"out of memory: the decode worker holds {rss / (1 << 30):.2f} GiB, "
                    f"over run.decode_memory_gib={self.memory_gib:g}",
                )

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Around a `yield` to the consumer: its time is not ours."""
        self._spent += time.monotonic() - self._since
        try:
            yield
        finally:
            self._since = time.monotonic()
