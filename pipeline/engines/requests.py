"""Blocks into engine requests: what the model hears (padded to length buckets, so a block's text
does not depend on its batch), its rendered prompt and its output cap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import JobConfig
from ..records.audio import SAMPLE_RATE, Block
from ..records.prompt import Prompt
from .base import EngineRequest
from .guards import max_tokens
from .prompts import render

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
