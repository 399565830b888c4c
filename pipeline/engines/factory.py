"""Builds an engine: `vllm` (GPU, and vLLM's CPU build) or `transformers` (CPU fallback,
reference), behind the CTC stage (ctc/speculative.py), with the checks that must pass before
anything loads (the CTC head is there; on a GPU, the CTC stage fits beside vLLM)."""

from __future__ import annotations

import math
from pathlib import Path

from ..config import JobConfig
from ..errors import EngineStartError
from .base import Engine
from .ctc.speculative import CtcStage


def make_engine(kind: str, model_dir: Path, cfg: JobConfig, device: str | None = None) -> CtcStage:
    """The engine behind the CTC stage, which runs on `device` (`cuda` or `cpu`; None: a GPU if
    there is one). The CTC head is checked before the engine loads: a folder without it fails fast."""
    d = cfg.decoding
    head = None
    if d.needs_ctc:
        from .ctc.head import CtcHead, check_head

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
    return CtcStage(engine, head, d, device or "cpu")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_gpu_split(cfg: JobConfig) -> None:
    """The CTC stage lives on the card beside vLLM: its budget must fit in what vLLM leaves, and
    one batch must fit in its budget."""
    import torch

    from .ctc.head import memory_gib

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
