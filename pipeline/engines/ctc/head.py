"""The CTC stage: Granite's speech encoder and its character CTC head (`encoder.out`), run by us in
torch on batches of blocks, because vLLM exposes neither.

The encoder's weights are loaded from the same folder vLLM loads (440 M parameters at full size).
For each block it gives the head's log-probabilities per 20 ms frame, the greedy CTC text and
IBM's confidence (the largest per-frame entropy, in nats: low is sure). vLLM accepts no
precomputed audio embeddings, but it accepts prompt embeddings: `prompt_embeds` builds them from
this pass, so a block that goes on to the LLM is not encoded again (bench/ctc.py: `ctc_pass_share`).
The transformers engine takes them too (`inputs_embeds`), and there the stage runs that engine's
own modules.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ... import cpu_torch
from ...errors import CtcHeadMissing

HEAD = "encoder.out.weight"  # the CTC head; saved checkpoints name encoder weights `encoder.*`
_EMBED = "language_model.model.embed_tokens."
_PREFIXES = ("encoder.", "model.encoder.")


# Granite 4.0 1B Speech's encoder and head at full size (bench/ctc.py prints it), for estimates.
FULL_ENCODER_PARAMS = 440e6
FULL_EMBEDS_PARAMS = 35.7e6 + 100_353 * 2048  # projector + the LLM's token embeddings (prompt embeddings for vLLM)
_HIDDEN, _FF_MULT, _HEADS, _CONTEXT, _CLASSES = 1024, 4, 8, 200, 348


def memory_gib(batch_blocks: int, block_s: float, embeds: bool = True, bytes_per_weight: int = 2) -> float:
    """The CTC stage's memory at full size: bf16 weights (with `embeds`, those that build vLLM's
    prompt embeddings too) plus the largest live tensors of one batch (feed-forward intermediates,
    block attention scores, the head's float32 outputs)."""
    frames = batch_blocks * 50 * block_s
    feed_forward = frames * _HIDDEN * _FF_MULT * bytes_per_weight * 4
    attention = batch_blocks * math.ceil(50 * block_s / _CONTEXT) * _HEADS * _CONTEXT**2 * 4 * 3
    head = frames * _CLASSES * 4 * 3
    weights = (FULL_ENCODER_PARAMS + (FULL_EMBEDS_PARAMS if embeds else 0)) * bytes_per_weight
    return (weights + feed_forward + attention + head) / (1 << 30)


@dataclass(frozen=True)
class CtcFrames:
    """One block through the CTC head."""

    log_probs: np.ndarray = field(repr=False, compare=False)  # (frames, classes) float32, natural log
    text: str  # greedy CTC text: argmax per frame, repeats collapsed, blanks dropped
    confidence: float  # max per-frame entropy (nats); inf when the text is empty
    audio_embeds: Any = field(default=None, repr=False, compare=False)  # projector output (torch), when asked


def greedy(log_probs: np.ndarray) -> CtcFrames:
    """IBM's rule (open_asr_leaderboard granite/run_eval_speculative.py): argmax per frame,
    collapse repeats, drop blanks (0); ids below 256 are Latin-1. Ids 256..347 are Katakana whose
    mapping is not published: a block with any has no CTC text (never taken as is, nor verified)."""
    ids = log_probs.argmax(axis=-1)
    kept = ids[np.concatenate(([True], ids[1:] != ids[:-1])) & (ids > 0)]
    text = "" if (kept >= 256).any() else "".join(chr(int(i)) for i in kept).strip()
    p = np.exp(log_probs)
    entropy = float((-(p * log_probs).sum(axis=-1)).max()) if text else math.inf
    return CtcFrames(log_probs, " ".join(text.split()), entropy)


def weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / s for s in shards]
    return sorted(model_dir.glob("*.safetensors"))


def check_head(model_dir: Path) -> None:
    """Fail at start, with the remedy, when the folder's weights lack the CTC head."""
    from safetensors import safe_open

    for f in weight_files(model_dir):
        with safe_open(str(f), "np") as st:
            if any(p + "out.weight" in st.keys() for p in _PREFIXES):
                return
    raise CtcHeadMissing(str(model_dir), HEAD)


class CtcHead:
    """Encoder + CTC head in torch; `run` takes blocks' audio (16 kHz float32), at most
    `batch_blocks` through the encoder at once (its memory is bounded per batch).

    With `embeds` it also loads the projector and the LLM's token embeddings (0.4 GiB at full
    size), so that a block going on to vLLM is handed over as prompt embeddings built from this
    encoder pass: vLLM then runs only the LLM, and the block is encoded once. Beside the
    transformers engine it loads nothing: `sharing` uses that model's own modules."""

    @classmethod
    def sharing(cls, model: Any, features: Any, batch_blocks: int = 32) -> CtcHead:
        """The stage on a loaded `GraniteSpeechForConditionalGeneration` (the transformers engine's):
        its encoder, projector and token embeddings, no second copy of any weight."""
        import torch

        head = cls.__new__(cls)
        inner = model.model
        head._torch, head.device, head.batch_blocks, head.dtype = torch, str(model.device), batch_blocks, model.dtype
        head.encoder, head.projector, head.features = inner.encoder, inner.projector, features
        head.embed_tokens = inner.get_input_embeddings().weight
        head.audio_token_id = model.config.audio_token_id
        head.parameters = sum(p.numel() for p in inner.encoder.parameters())
        return head

    def __init__(
        self, model_dir: Path, device: str = "cpu", dtype: str = "auto", batch_blocks: int = 32, embeds: bool = False
    ) -> None:
        """`dtype`: engine.dtype (`auto`: the checkpoint's). `engines.factory.make_engine` has checked
        for the head (`check_head`) before anything loads."""
        cpu_torch.install()
        import torch
        from safetensors import safe_open
        from transformers import AutoFeatureExtractor, GraniteSpeechConfig
        from transformers.models.granite_speech.modeling_granite_speech import (
            GraniteSpeechCTCEncoder,
            GraniteSpeechEncoderProjector,
        )

        self._torch, self.device, self.batch_blocks = torch, device, batch_blocks
        config = GraniteSpeechConfig.from_pretrained(model_dir)
        # `auto`: the checkpoint's dtype, as the engines load it (bf16 for Granite: on a 2-core
        # avx512_bf16 CPU the full-size encoder took 583 ms per 4 s block against 1075 in float32).
        stored = getattr(config, "dtype", None) or torch.float32
        self.dtype = (
            getattr(torch, dtype) if dtype != "auto" else getattr(torch, stored) if isinstance(stored, str) else stored
        )
        wanted = {"encoder": _PREFIXES}
        if embeds:
            wanted |= {"projector": ("projector.", "model.projector."), "embed": (_EMBED,)}
        state: dict[str, dict[str, Any]] = {part: {} for part in wanted}
        for f in weight_files(model_dir):
            with safe_open(str(f), "pt") as st:
                for k in st.keys():
                    for part, prefixes in wanted.items():
                        p = next((p for p in prefixes if k.startswith(p)), None)
                        if p is not None:
                            state[part][k[len(p) :]] = st.get_tensor(k)
        encoder = GraniteSpeechCTCEncoder(config.encoder_config)
        encoder.load_state_dict(state["encoder"], strict=True)
        self.encoder = encoder.to(device=device, dtype=self.dtype).eval()
        self.features = AutoFeatureExtractor.from_pretrained(model_dir)
        self.parameters = sum(p.numel() for p in encoder.parameters())
        self.projector = self.embed_tokens = None
        if embeds:
            projector = GraniteSpeechEncoderProjector(config)
            projector.load_state_dict(state["projector"], strict=True)
            self.projector = projector.to(device=device, dtype=self.dtype).eval()
            self.embed_tokens = state["embed"]["weight"].to(device=device, dtype=self.dtype)
            self.audio_token_id = config.audio_token_id

    def run(self, audios: list[np.ndarray]) -> list[CtcFrames]:
        """One CtcFrames per audio, in order. Audio of equal length is batched (the encoder has no
        padding mask, so mixing lengths would let padding change a block's frames)."""
        out: list[CtcFrames | None] = [None] * len(audios)
        groups: dict[int, list[int]] = {}
        for i, a in enumerate(audios):
            groups.setdefault(a.size, []).append(i)
        for idx in groups.values():
            for k in range(0, len(idx), self.batch_blocks):
                part = idx[k : k + self.batch_blocks]
                log_probs, embeds = self._encode([audios[i] for i in part])
                for k, i in enumerate(part):
                    out[i] = replace(greedy(log_probs[k]), audio_embeds=None if embeds is None else embeds[k])
        return out  # type: ignore[return-value]

    def _encode(self, audios: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        torch = self._torch
        feats = self.features(audios, device=self.device)["input_features"].to(self.dtype)
        with torch.inference_mode():
            hidden = self.encoder(feats).last_hidden_state
            logits = self.encoder.out(hidden).float()
            embeds = self.projector(hidden) if self.projector is not None else None
        return torch.log_softmax(logits, dim=-1).cpu().numpy(), embeds

    def prompt_embeds(self, prompt_ids: list[int], audio_embeds: Any) -> Any:
        """The LLM's input for one block, as vLLM takes it (`prompt_embeds`): the prompt's token
        embeddings with the audio placeholder replaced by this block's projected audio, exactly
        what the model builds itself (tests/test_ctc.py holds vLLM's output equal both ways)."""
        torch = self._torch
        ids = torch.tensor(prompt_ids, device=self.embed_tokens.device)
        at = int((ids == self.audio_token_id).nonzero()[0, 0])
        with torch.inference_mode():
            text = self.embed_tokens[ids]
            return torch.cat([text[:at], audio_embeds.to(text.dtype), text[at + 1 :]]).cpu()
