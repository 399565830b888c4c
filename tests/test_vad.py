"""The VAD: our matrix-product export of Silero (pipeline/audio/vad_export.py) against the package's own models."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from pipeline.audio import vad
from pipeline.audio.blocks import ChannelBlocker
from pipeline.config import BlocksConfig
from tests import corpus as C


def _call() -> np.ndarray:
    # Real recorded speech with pauses, plus 10 dB SNR noise on a copy: both sides of the thresholds.
    x = C.make_call(C.speech_utterances()[:6], [0.6, 1.2, 0.5, 2.0, 0.8, 1.5, 1.0]).samples[0]
    noise = np.random.default_rng(0).standard_normal(x.size).astype(np.float32) * np.sqrt(np.mean(x**2) / 10)
    return np.concatenate([x, x + noise])


def _frames(x: np.ndarray) -> np.ndarray:
    f = x[: x.size // 512 * 512].reshape(-1, 512)
    ctx = np.zeros((len(f), 64), np.float32)
    ctx[1:] = f[:-1, -64:]
    return np.concatenate([ctx, f], axis=1)


def _sequence(model, frames: np.ndarray, per_call: int = 64) -> np.ndarray:
    s, h, out = vad._session(model), np.zeros((1, 1, 128), np.float32), []
    c = h
    for i in range(0, len(frames), per_call):
        p, h, c = s.run(None, {"input": frames[i : i + per_call], "h": h, "c": c})
        out.append(p)
    return np.concatenate(out)


def _stock_frame_by_frame(frames: np.ndarray) -> np.ndarray:
    """The package's stock ONNX model, one 32 ms frame per call, as silero-vad's own wrapper runs it."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    s = ort.InferenceSession(str(vad.package_model("silero_vad.onnx")), opts, providers=["CPUExecutionProvider"])
    state, out, sr = np.zeros((2, 1, 128), np.float32), [], np.array(16000)
    for frame in frames:
        p, state = s.run(None, {"input": frame[None], "state": state, "sr": sr})
        out.append(p[0, 0])
    return np.array(out, np.float32)


def test_our_export_computes_silero_probabilities():
    # pipeline/data's file is derived from the installed package's weights: an upgrade of
    # silero-vad that changes them fails here until `python -m pipeline.audio.vad_export` is run again.
    frames = _frames(_call())
    ours = _sequence(vad.MODEL, frames)
    theirs = _sequence(vad.package_model(), frames)
    stock = _stock_frame_by_frame(frames)
    np.testing.assert_array_equal(theirs, stock)  # the package's sequence export is exact
    assert np.abs(ours - stock).max() < 2e-5
    for threshold in (0.5, 0.35):  # the tracker's speech-on and speech-off thresholds
        assert ((ours >= threshold) == (stock >= threshold)).all()
    assert 0.2 < (stock >= 0.5).mean() < 0.8  # both speech and pauses were heard
    # Frames per call do not change the result (the LSTM state is carried).
    np.testing.assert_allclose(_sequence(vad.MODEL, frames, per_call=7), ours, atol=2e-6)


def test_blocks_are_the_same_with_the_package_model(monkeypatch):
    x = _call()

    def blocks() -> list[tuple[float, float]]:
        b = ChannelBlocker("r", 0, "mono", BlocksConfig())
        return [(k.start_s, k.end_s) for k in [*b.push(x), *b.finish()]]

    ours = blocks()
    monkeypatch.setattr(vad, "MODEL", vad.package_model())
    assert blocks() == ours and len(ours) > 10
