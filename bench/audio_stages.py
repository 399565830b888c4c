"""Where audio-in CPU goes: fetch, decode, resample, VAD, cutter, timed inside one process.

`stage_clock()` wraps the pipeline's own functions (nothing is re-implemented) so that each
stage's time is exclusive: the store reads FFmpeg makes while decoding count as fetch, the VAD
calls the cutter makes count as VAD. What no stage claims (listing, Python glue, the plan's
bookkeeping) is "other". CPU time of this thread, so a shared machine's waits do not count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator

STAGES = ("fetch", "decode", "resample", "vad", "cutter", "other")


class _Clock:
    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._stack: list[str] = ["other"]
        self._since = time.thread_time()

    def _switch(self) -> None:
        now = time.thread_time()
        self.seconds[self._stack[-1]] += now - self._since
        self._since = now

    @contextlib.contextmanager
    def on(self, stage: str) -> Iterator[None]:
        self._switch()
        self._stack.append(stage)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def call(self, stage: str, fn: Callable) -> Callable:
        def timed(*a, **kw):
            with self.on(stage):
                return fn(*a, **kw)

        return timed

    def gen(self, stage: str, fn: Callable[..., Generator]) -> Callable[..., Generator]:
        """Each step of the generator `fn` returns is timed (its return value passed on)."""

        def timed(*a, **kw):
            g = fn(*a, **kw)
            while True:
                with self.on(stage):
                    try:
                        item = next(g)
                    except StopIteration as stop:
                        return stop.value
                yield item

        return timed

    def close(self) -> dict[str, float]:
        self._switch()
        return dict(self.seconds)


class _TimedFile:
    def __init__(self, f, clock: _Clock) -> None:
        self._f, self._clock = f, clock

    def read(self, *a):
        with self._clock.on("fetch"):
            return self._f.read(*a)

    def seek(self, *a):
        with self._clock.on("fetch"):
            return self._f.seek(*a)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


@contextlib.contextmanager
def stage_clock() -> Iterator[_Clock]:
    """Patch the audio-in stages for the duration; read `clock.close()` at the end."""
    from pipeline.audio import blocks, cut, decode, vad
    from pipeline.commands import plan

    clock = _Clock()
    patches = [
        (decode.AudioDecoder, "chunks", clock.gen("decode", decode.AudioDecoder.chunks)),
        (decode.AudioDecoder, "_resample", clock.call("resample", decode.AudioDecoder._resample)),
        (vad.StreamingVad, "push", clock.call("vad", vad.StreamingVad.push)),
        (vad.StreamingVad, "flush", clock.call("vad", vad.StreamingVad.flush)),
        (blocks.ChannelBlocker, "push", clock.gen("cutter", blocks.ChannelBlocker.push)),
        (blocks.ChannelBlocker, "finish", clock.gen("cutter", blocks.ChannelBlocker.finish)),
    ]
    real_cut = cut.cut_recording

    def timed_cut(rec, source, *a, **kw):
        class Timed:
            def __getattr__(self, name):
                return getattr(source, name)

            def open(self, r):
                with clock.on("fetch"):
                    return _TimedFile(source.open(r), clock)

        return real_cut(rec, Timed(), *a, **kw)

    patches.append((plan, "cut_recording", timed_cut))  # plan_one calls it by this name
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, fn in patches:
            setattr(obj, name, fn)
        yield clock
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
