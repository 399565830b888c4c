"""Granite behind one interface: `vllm` (GPU, and vLLM's CPU build) and `transformers` (CPU fallback,
reference). `make_engine` builds one behind the CTC stage (speculative.py); `requests_for` turns
blocks into engine requests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import JobConfig
from ..records.audio import SAMPLE_RATE, Block
from ..records.prompt import Prompt
from .base import Engine, EngineRequest, EngineResult, EngineStartError
from .guards import max_tokens
from .prompts import render
from .speculative import CtcDecoder


def make_engine(kind: str, model_dir: Path, cfg: JobConfig, device: str | None = None) -> CtcDecoder:
    """The engine behind the CTC stage, which runs on `device` (`cuda` or `cpu`; None: a GPU if
    there is one). The CTC head is checked before the engine loads: a folder without it fails fast."""
    d = cfg.decoding
    head = None
    if d.needs_ctc:
        from ..ctc_head import CtcHead, check_head

        check_head(model_dir)
        device = device or _default_device()
        if device != "cpu":
            check_gpu_split(cfg)
    engine = _make_engine(kind, model_dir, cfg)
    if d.needs_ctc and kind == "transformers":
        head = CtcHead.sharing(engine.model, engine.processor.audio_processor, d.ctc_batch_blocks)  # type: ignore[attr-defined]
    elif d.needs_ctc:
        head = CtcHead(
            model_dir,
            device=device or "cpu",
            dtype=cfg.engine.dtype,
            batch_blocks=d.ctc_batch_blocks,
            embeds=getattr(engine, "takes_prompt_embeds", False),
        )
    return CtcDecoder(engine, head, d, device or "cpu")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_gpu_split(cfg: JobConfig) -> None:
    """The CTC stage lives on the card beside vLLM: its budget must fit in what vLLM leaves, and
    one batch must fit in its budget."""
    import torch

    from ..ctc_head import memory_gib

    d = cfg.decoding
    need = memory_gib(d.ctc_batch_blocks, cfg.blocks.max_s, embeds=cfg.engine.kind == "vllm")
    if need > d.ctc_gpu_memory_gib:
        raise EngineStartError(
            f"the CTC stage needs about {need:.1f} GiB at decoding.ctc_batch_blocks={d.ctc_batch_blocks}, over "
            f"decoding.ctc_gpu_memory_gib={d.ctc_gpu_memory_gib:g}: lower the batch or raise the budget"
        )
    total = torch.cuda.get_device_properties(0).total_memory / (1 << 30)
    left = total * (1 - cfg.engine.gpu_memory_utilization)
    if cfg.engine.kind == "vllm" and cfg.decoding.ctc_gpu_memory_gib > left:
        raise EngineStartError(
            f"decoding.ctc_gpu_memory_gib={cfg.decoding.ctc_gpu_memory_gib:g} does not fit beside vLLM: "
            f"engine.gpu_memory_utilization={cfg.engine.gpu_memory_utilization:g} of {total:.0f} GiB leaves {left:.1f} GiB"
        )


def _make_engine(kind: str, model_dir: Path, cfg: JobConfig) -> Engine:
    e = cfg.engine
    if kind == "vllm":
        from .vllm import VllmEngine

        bucket = e.pad_bucket_s
        longest = math.ceil(cfg.blocks.max_s / bucket) * bucket if bucket else cfg.blocks.max_s
        return VllmEngine(
            model_dir,
            dtype=e.dtype,
            max_audio_s=longest,
            max_num_seqs=e.max_num_seqs,
            gpu_memory_utilization=e.gpu_memory_utilization,
            cpu_kvcache_gib=e.cpu_kvcache_gib,
            enforce_eager=e.enforce_eager,
        )
    if kind == "transformers":
        from .hf import TransformersEngine

        return TransformersEngine(
            model_dir, dtype="float32" if e.dtype == "auto" else e.dtype, batch_size=e.batch_blocks
        )
    raise ValueError(f"unknown engine {kind!r}")


MIN_AUDIO = SAMPLE_RATE // 10  # the feature extractor fails below ~20 ms; 0.1 s is safe


def engine_audio(samples: np.ndarray, cfg: JobConfig) -> np.ndarray:
    """What the model hears. Both engines pad a batch's audio to its longest member without
    masking, so a short block's text would depend on what it was batched with. Blocks are padded
    with silence up to a multiple of `engine.pad_bucket_s`, and engines batch equal lengths only
    (`base.in_length_groups`): the same block gives the same text in any batch, and padding stays under a
    bucket (vs. up to the whole block limit)."""
    bucket = cfg.engine.pad_bucket_s
    if not bucket:
        return np.pad(samples, (0, max(0, MIN_AUDIO - samples.size)))
    step = int(round(bucket * SAMPLE_RATE))
    return np.pad(samples, (0, -samples.size % step))


def requests_for(
    blocks: Sequence[Block], prompt_of: dict[str, Prompt], tokenizer: object, cfg: JobConfig
) -> list[EngineRequest]:
    """One request per block; `prompt_of` maps recording_id to its prompt (keywords differ per recording).
    `engine.force_tokens_per_s` (benchmarks on random weights) makes every output exactly that long,
    in `run`, `transcribe` and the benches alike."""
    rendered: dict[Prompt, str] = {}
    reqs = []
    for b in blocks:
        prompt = prompt_of[b.recording_id]
        if prompt not in rendered:
            rendered[prompt] = render(tokenizer, prompt)
        cap = max_tokens(b.duration_s, cfg.engine.tokens_per_s, cfg.engine.margin_tokens)
        forced = 0
        if cfg.engine.force_tokens_per_s:
            cap = forced = max(1, round(b.duration_s * cfg.engine.force_tokens_per_s))
        reqs.append(
            EngineRequest(
                b.block_id,
                engine_audio(b.samples, cfg),
                rendered[prompt],
                prompt.variant,
                prompt.keywords,
                cap,
                forced,
                b.duration_s,
            )
        )
    return reqs


__all__ = [
    "CtcDecoder",
    "Engine",
    "EngineRequest",
    "EngineResult",
    "Prompt",
    "engine_audio",
    "make_engine",
    "requests_for",
]
