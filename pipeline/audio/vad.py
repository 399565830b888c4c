"""Speech probability per 32 ms frame, from Silero VAD (16 kHz), the model of the `silero-vad` package.

We run a *sequence* ONNX export (many frames per call) through onnxruntime and carry its LSTM
state across calls, so a channel streams through in constant memory. The export is ours,
`pipeline/data/silero_vad_16k_gemm.onnx` (made by `pipeline/audio/vad_export.py` from the package's
weights): the package's own sequence export computes the same probabilities ~3x slower, and the
VAD is most of audio-in's CPU (docs/architecture.md#audio-in-cpu). The package's Python helpers
import torch; the model files do not need it, so we never import the package.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
_CONTEXT = 64  # trailing samples of the previous frame the model sees
_MAX_FRAMES_PER_CALL = 512
# Near-silent stretches are not run through the model (a third of audio-in CPU even so; in a
# split stereo call each channel is quiet about half the time). Only the inside of a run of at
# least _GATE_RUN quiet frames is skipped; the last _WARMUP frames still go through the model,
# which restarts from a zero state as at the start of a file.
_GATE_RUN = 16  # 0.5 s
_WARMUP = 4
# Frames are processed in groups aligned to the start of the stream, so the result does not
# depend on how the caller sliced the samples (the gate looks at one group at a time).
_GROUP = 64


MODEL = Path(__file__).parents[1] / "data" / "silero_vad_16k_gemm.onnx"  # pipeline/data/


def package_model(name: str = "silero_vad_16k_sequence.onnx") -> Path:
    """A model file the silero-vad package ships (what ours is checked against)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the silero-vad package is not installed (pip install silero-vad)")
    return Path(spec.submodule_search_locations[0]) / "data" / name


def load_model() -> None:
    """Load the VAD now (once per process) rather than inside the first recording's cut."""
    _session(MODEL)


@functools.cache
def _session(model: Path):  # one per process: the session is thread-safe and costs ~10 MB
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # One thread: parallelism comes from running many recordings at once, not from inside one.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])


class StreamingVad:
    """Feed 16 kHz float32 samples in any chunk sizes; get one probability per completed frame."""

    def __init__(self, gate_dbfs: float | None = -50.0) -> None:
        self._session = _session(MODEL)
        self._reset()
        self._pending = np.zeros(0, np.float32)
        # mean square per frame below which a frame counts as quiet (dBFS of a full-scale sine = 0)
        self._gate = None if gate_dbfs is None else 0.5 * 10 ** (gate_dbfs / 10)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities for the frames completed so far (held back in groups of 2 s)."""
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        whole = data.size - data.size % (FRAME * _GROUP)
        self._pending = data[whole:].copy()
        return self._run(data[:whole])

    def flush(self) -> np.ndarray:
        """Probabilities of the frames still held back, the last one zero-padded."""
        if not self._pending.size:
            return np.zeros(0, np.float32)
        tail = np.zeros(-(-self._pending.size // FRAME) * FRAME, np.float32)
        tail[: self._pending.size] = self._pending
        self._pending = np.zeros(0, np.float32)
        return self._run(tail)

    def _run(self, audio: np.ndarray) -> np.ndarray:
        frames = audio.reshape(-1, FRAME).astype(np.float32, copy=False)
        probs = np.zeros(len(frames), np.float32)
        for g in range(0, len(frames), _GROUP):
            group, pos = frames[g : g + _GROUP], 0
            for a, b in self._quiet_runs(group):
                if a > pos:
                    probs[g + pos : g + a] = self._model(group[pos:a])
                self._reset()
                pos = b
            if pos < len(group):
                probs[g + pos : g + len(group)] = self._model(group[pos:])
        return probs

    def _quiet_runs(self, frames: np.ndarray) -> list[tuple[int, int]]:
        """[a, b) frame ranges to skip: the inside of long quiet runs, minus the warm-up."""
        if self._gate is None or not len(frames):
            return []
        quiet = np.einsum("ij,ij->i", frames, frames) / FRAME < self._gate
        edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
        return [(int(a), int(b) - _WARMUP) for a, b in zip(edges[::2], edges[1::2]) if b - a >= _GATE_RUN]

    def _reset(self) -> None:
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)

    def _model(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(frames), _MAX_FRAMES_PER_CALL):
            chunk = frames[i : i + _MAX_FRAMES_PER_CALL]
            contexts = np.empty((len(chunk), _CONTEXT), np.float32)
            contexts[0] = self._context
            contexts[1:] = chunk[:-1, -_CONTEXT:]
            self._context = chunk[-1, -_CONTEXT:].copy()
            probs, self._h, self._c = self._session.run(
                ["speech_probs", "hn", "cn"],
                {"input": np.concatenate([contexts, chunk], axis=1), "h": self._h, "c": self._c},
            )
            out.append(probs.reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)
