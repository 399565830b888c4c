"""What every engine takes and gives back. Engines batch; these records are per block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

FinishReason = Literal["stop", "length", "guard"]


@dataclass(frozen=True)
class EngineRequest:
    block_id: str
    audio: np.ndarray = field(repr=False, compare=False)  # 16 kHz float32 mono
    prompt: str  # the full prompt text, chat template applied (see prompts.py)
    prompt_variant: str  # "transcribe", "transcribe+keywords", "translate:English", ...
    keywords: tuple[str, ...]
    max_tokens: int  # from the block's duration (guards.max_tokens)
    min_tokens: int = 0  # > 0 only for benchmarks that force an output length


@dataclass(frozen=True)
class EngineResult:
    block_id: str
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    output_tokens: int
    finish_reason: FinishReason  # stop: end of sequence; length: hit max_tokens; guard: a guard changed it
    prompt_variant: str
    keywords: tuple[str, ...]
    batch_s: float  # wall time of the engine call this block was part of
    batch_size: int


def by_length(requests: list[EngineRequest]) -> list[list[int]]:
    """Indices of requests grouped by audio length, for engines that pad within a batch."""
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.audio.size, []).append(i)
    return list(groups.values())


class Engine(Protocol):
    name: str
    tokenizer: Any  # the model's transformers tokenizer (chat template for prompts)

    def transcribe(self, requests: list[EngineRequest]) -> list[EngineResult]:
        """Results in request order; one per request."""
        ...
