"""One recording in, its blocks out: open from the store, decode, and cut every channel.

`cut_recording` is a generator: it yields `Block`s as they are cut (constant memory on multi-hour
files) and *returns* the recording's `Outcome`. Blocks of a recording whose outcome is `failed`
(e.g. truncation found at the end of the stream) must be discarded by the consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator

from ..config import JobConfig
from ..errors import DecodeError, Failure, LimitExceeded, SourceError
from ..records.audio import Block, Outcome, Recording
from ..sources import Source
from .blocks import ChannelBlocker
from .decode import AudioDecoder
from .limits import Budget

log = logging.getLogger(__name__)


def cut_recording(
    rec: Recording, source: Source, cfg: JobConfig, worker_memory_gib: float | None = None
) -> Generator[Block, None, Outcome]:
    """`worker_memory_gib`: the resident-memory ceiling of a process that only decodes (a Ray decode
    task, a `plan` worker); not for processes that also hold an engine (`transcribe`)."""
    limit = cfg.filters.max_size_bytes
    if limit is not None and rec.size_bytes > limit:
        return Outcome.failed(
            rec, Failure("too_large", f"too large: {rec.size_bytes} bytes, over filters.max_size_bytes={limit}")
        )
    budget = Budget(cfg.filters.decode_timeout_s, worker_memory_gib)
    try:
        with source.open(rec) as f:
            dec = AudioDecoder(f, rec.size_bytes, cfg.channels.policy, cfg.filters.max_duration_s)
            streams = 1 if cfg.channels.policy == "mix" else dec.channels
            blockers = [
                ChannelBlocker(rec.recording_id, c, cfg.channels.label(c, dec.channels, rec.channel_labels), cfg.blocks)
                for c in range(streams)
            ]
            for chunk in dec.chunks():
                budget.check()
                for blocker, samples in zip(blockers, chunk):
                    yield from _handed_on(blocker.push(samples), budget)
            for blocker in blockers:
                yield from _handed_on(blocker.finish(), budget)
    except (DecodeError, SourceError, LimitExceeded) as err:
        return Outcome.failed(rec, err.failure)
    except Exception as err:  # a bug or a codec corner case: one recording fails, the run goes on
        log.exception("unexpected error on %s", rec.source_uri)
        return Outcome.failed(rec, Failure("internal_error", f"internal error: {type(err).__name__}: {err}"))
    return Outcome(rec, "ok", None, dec.info, tuple(b.stats() for b in blockers))


def _handed_on(blocks: Iterable[Block], budget: Budget) -> Iterator[Block]:
    for b in blocks:
        with budget.paused():
            yield b


def drain(gen: Generator[Block, None, Outcome], on_block: Callable[[Block], None]) -> Outcome:
    """Run `cut_recording` to the end, handing each block to `on_block`; return the outcome."""
    while True:
        try:
            on_block(next(gen))
        except StopIteration as stop:
            return stop.value
