"""Export Silero VAD (16 kHz) as an ONNX graph of matrix products: `pipeline/data/silero_vad_16k_gemm.onnx`.

The `silero-vad` package ships a *sequence* export (many 32 ms frames per call, the LSTM state
carried across calls; snakers4/silero-vad#784, #795). Its convolutions see each frame as one item
of a batch, and ONNX Runtime runs a convolution item by item: for Silero's short frames (4 STFT
columns) that is hundreds of tiny products per call, and the VAD was most of audio-in's CPU.
This export computes the same network with each convolution written as one matrix product over
all the frames of a call (the STFT's 4 windows and each layer's 3 taps gathered first), which runs
about 3x faster per frame on one core. Same weights (the package's TorchScript file), same inputs
and outputs as the package's sequence model; probabilities agree within 2e-5, which
`tests/test_vad.py` checks against the package's own models.

Not used at run time. Regenerate after upgrading silero-vad (needs torch and onnx):
    python -m pipeline.audio.vad_export
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .vad import FRAME, MODEL, package_model

CONTEXT, HOP, BINS, STATE = 64, 128, 129, 128


def _source_weights() -> dict:
    import torch

    jit = torch.jit.load(str(package_model("silero_vad.jit")), "cpu")
    weights = {k.removeprefix("_model."): v.float() for k, v in jit.state_dict().items() if k.startswith("_model.")}
    expect = {"stft.forward_basis_buffer": (2 * BINS, 1, 2 * HOP), "decoder.rnn.weight_ih": (4 * STATE, STATE)}
    expect |= {
        f"encoder.{i}.reparam_conv.weight": s
        for i, s in enumerate([(128, 129, 3), (64, 128, 3), (64, 64, 3), (128, 64, 3)])
    }
    for name, shape in expect.items():
        if name not in weights or tuple(weights[name].shape) != shape:
            raise RuntimeError(f"silero-vad's 16 kHz model changed ({name}): update pipeline/audio/vad_export.py")
    return weights


def _build(w: dict):
    import torch
    import torch.nn.functional as F
    from torch import nn

    def taps(conv):  # Conv1d weight (out, in, k) -> (k * in, out): the 3 taps side by side
        return conv.permute(2, 1, 0).reshape(-1, conv.shape[0]).contiguous()

    class GemmVad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            enc = [w[f"encoder.{i}.reparam_conv.weight"] for i in range(4)]
            self.register_buffer("basis", w["stft.forward_basis_buffer"][:, 0, :].T.contiguous())  # (256, 258)
            for i in range(3):
                self.register_buffer(f"w{i}", taps(enc[i]))
                self.register_buffer(f"b{i}", w[f"encoder.{i}.reparam_conv.bias"])
            # The last layer sees one column padded by zeros on both sides: only its middle tap counts.
            self.register_buffer("w3", enc[3][:, :, 1].T.contiguous())
            self.register_buffer("b3", w["encoder.3.reparam_conv.bias"])
            self.rnn = nn.LSTM(STATE, STATE)
            self.rnn.load_state_dict(
                {f"{k}_l0": w[f"decoder.rnn.{k}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            )
            self.register_buffer("wo", w["decoder.decoder.2.weight"][:, :, 0].T.contiguous())
            self.register_buffer("bo", w["decoder.decoder.2.bias"])

        def forward(self, x, h, c):  # x: (n, 64 + 512) = previous frame's tail + this frame
            n = x.shape[0]
            # STFT: reflect-pad 64 on the right (as Silero does), then 4 windows of 256 at hop 128.
            v = torch.cat([x, torch.flip(x[:, -CONTEXT - 1 : -1], [1])], 1).reshape(n, 5, HOP)
            spec = torch.cat([v[:, :4], v[:, 1:]], 2) @ self.basis  # (n, 4, 258)
            e = torch.sqrt(spec[..., :BINS].pow(2) + spec[..., BINS:].pow(2))  # (n, 4, 129)
            z = F.pad(e, (0, 0, 1, 1))  # conv 0: kernel 3, padding 1, stride 1
            e = F.relu(torch.cat([z[:, 0:4], z[:, 1:5], z[:, 2:6]], 2) @ self.w0 + self.b0)  # (n, 4, 128)
            z = F.pad(e, (0, 0, 1, 0))  # conv 1: kernel 3, padding 1, stride 2
            e = F.relu(torch.cat([z[:, 0:3:2], z[:, 1:4:2], z[:, 2:5:2]], 2) @ self.w1 + self.b1)  # (n, 2, 64)
            z = F.pad(e, (0, 0, 1, 0))  # conv 2: the same, down to one column
            e = F.relu(torch.cat([z[:, 0], z[:, 1], z[:, 2]], 1) @ self.w2 + self.b2)  # (n, 64)
            e = F.relu(e @ self.w3 + self.b3)  # (n, 128)
            # Rows are consecutive 32 ms frames of one stream, not a batch.
            y, (h, c) = self.rnn(e.unsqueeze(1), (h, c))
            return torch.sigmoid(F.relu(y[:, 0]) @ self.wo + self.bo).reshape(-1), h, c

    return GemmVad().eval()


def export(output: Path = MODEL) -> Path:
    import onnx
    import torch

    model = _build(_source_weights())
    frames, zero = torch.zeros(10, CONTEXT + FRAME), torch.zeros(1, 1, STATE)
    output.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(
            model,
            (frames, zero, zero.clone()),
            str(output),
            input_names=["input", "h", "c"],
            output_names=["speech_probs", "hn", "cn"],
            dynamic_axes={"input": {0: "sequence_length"}, "speech_probs": {0: "sequence_length"}},
            opset_version=16,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(output)))
    return output


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, default=MODEL)
    print(f"exported {export(p.parse_args().output)}")
