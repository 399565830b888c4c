"""What every engine takes and gives back. Engines batch; these records are per block."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from ..records.audio import SAMPLE_RATE
from ..records.results import Word
from .guards import collapse_repetitions

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
    duration_s: float = 0.0  # the block's own length, before padding (0: the audio's)
    # The LLM's input built from the CTC stage's encoder pass (ctc/head.py: prompt_embeds); engines
    # with `takes_prompt_embeds` use it instead of encoding the audio again.
    prompt_embeds: Any = field(default=None, repr=False, compare=False)

    @property
    def block_s(self) -> float:
        """The block's own length: what the guards and the aligner measure by (its audio may be
        padded to a length bucket: requests.engine_audio)."""
        return self.duration_s or self.audio.size / SAMPLE_RATE


@dataclass(frozen=True)
class EngineResult:
    block_id: str
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    output_tokens: int
    finish_reason: (
        FinishReason  # stop: end of sequence; length: hit max_tokens; guard: stopped, but a guard changed the text
    )
    prompt_variant: str
    keywords: tuple[str, ...]
    batch_s: float  # wall time of the engine call this block was part of
    batch_size: int
    decoded_by: str = "llm"  # ctc | verified | llm (ctc/speculative.py)
    words: tuple[Word, ...] = ()  # times from the start of the block (ctc/align.py)


T = TypeVar("T")


def in_length_groups(
    requests: list[EngineRequest],
    run: Callable[[list[EngineRequest]], list[T]],
    batch_size: int | None = None,
) -> list[T]:
    """Run `run` on batches of equal audio length (both engines pad a batch's audio to its longest
    member without masking), at most `batch_size` each; results in request order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(requests):  # min_tokens too: transformers applies one per batch
        groups.setdefault((r.audio.size, r.min_tokens), []).append(i)
    results: list[T | None] = [None] * len(requests)
    for group in groups.values():
        step = batch_size or len(group)
        for k in range(0, len(group), step):
            idx = group[k : k + step]
            for j, res in zip(idx, run([requests[j] for j in idx])):
                results[j] = res
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def drafts_of(requests: list[EngineRequest], drafts: list[list[int]], part: list[EngineRequest]) -> list[list[int]]:
    """The drafts of `part`, a group that `in_length_groups` took out of `requests`."""
    by_request = {id(r): d for r, d in zip(requests, drafts)}
    return [by_request[id(r)] for r in part]


def make_result(
    r: EngineRequest, text: str, ids: list[int], prompt_tokens: int, finish: str, batch_s: float, n: int
) -> EngineResult:
    """Apply the text guards and package one result (both engines)."""
    text, collapsed = collapse_repetitions(text.strip(), duration_s=r.block_s)
    return EngineResult(
        block_id=r.block_id,
        text=text,
        token_ids=tuple(ids),
        prompt_tokens=prompt_tokens,
        output_tokens=len(ids),
        # A loop that ran into the cap stays `length` (no end of sequence: the stronger flag).
        finish_reason="guard" if collapsed and finish == "stop" else finish,  # type: ignore[arg-type]
        prompt_variant=r.prompt_variant,
        keywords=r.keywords,
        batch_s=batch_s,
        batch_size=n,
    )


class Engine(Protocol):
    name: str
    tokenizer: Any  # the model's transformers tokenizer (chat template for prompts)

    def transcribe(self, requests: list[EngineRequest]) -> list[EngineResult]:
        """Results in request order; one per request."""
        ...

    def verify(self, requests: list[EngineRequest], drafts: list[list[int]]) -> list[list[float]]:
        """For each request, the probability of each draft token given [prompt, audio, the draft
        before it]: one forward pass, no decoding (ctc/speculative.py)."""
        ...
