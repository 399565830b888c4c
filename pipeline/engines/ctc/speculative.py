"""The CTC stage in front of an engine: IBM's self-speculative decoding, then word times.

For each batch of blocks (open_asr_leaderboard, granite/run_eval_speculative.py):
1. the CTC head gives each block its greedy text and confidence (head.py);
2. a block whose largest per-frame entropy is at most `ctc_threshold`, with non-empty text, takes
   the CTC text as is (`decoded_by = ctc`): it never reaches the LLM;
3. the others with a CTC text send it as a draft to the engine's `verify`: one forward pass over
   [prompt, audio, draft]; when every draft token has probability >= `confidence_threshold` the
   draft is the text (`verified`). `decoding.verify: auto` skips this step on CPUs (`verifies`);
4. the rest are generated as usual (`llm`).
Then, with `word_times`, every block's final text is aligned to its CTC frames (align.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from ...config import DecodingConfig
from ...records.results import Word
from ..base import EngineRequest, EngineResult, make_result
from .align import align_words
from .head import CtcFrames, CtcHead

Route = Literal["ctc", "verify", "llm"]


def route(frames: CtcFrames, cfg: DecodingConfig, verify: bool = True) -> Route:
    """Where IBM's rule sends a block, from its CTC frames alone (`verify` False: no verify pass)."""
    if cfg.speculative == "off":
        return "llm"
    if frames.text and frames.confidence <= cfg.ctc_threshold:
        return "ctc"
    return "verify" if frames.text and verify else "llm"


def verifies(cfg: DecodingConfig, device: str) -> bool:
    """`decoding.verify` on this device: auto verifies on GPUs only. On CPUs generation is bound by
    its prefill, and the verify pass is a prefill too: bench/ctc.py measured it at 1476 ms per block
    against 1482 ms for generating the block outright, so a rejected draft costs a block twice."""
    return cfg.verify == "on" or (cfg.verify == "auto" and device != "cpu")


def verified(token_probs: Sequence[float], cfg: DecodingConfig) -> bool:
    """A draft passes when every token's LLM probability reaches `confidence_threshold`."""
    return bool(token_probs) and min(token_probs) >= cfg.confidence_threshold


class CtcStage:
    """An Engine: the wrapped engine behind the CTC stage (`head` None: the stage is off, every
    block is generated and words carry no times). `calls` counts what each path cost (tests and
    bench/ctc.py read it): engine generate calls and blocks, verify calls and blocks."""

    def __init__(self, engine: Any, head: CtcHead | None, cfg: DecodingConfig, device: str = "cpu") -> None:
        self.engine, self.head, self.cfg, self.device = engine, head, cfg, device
        self.name, self.tokenizer = engine.name, engine.tokenizer
        self.calls = {"generate": 0, "generate_blocks": 0, "verify": 0, "verify_blocks": 0}
        self._prompt_ids: dict[str, list[int]] = {}  # a job has a few prompts (keywords differ per recording)

    def transcribe(self, requests: list[EngineRequest]) -> list[EngineResult]:
        frames: list[CtcFrames | None] = (
            list(self.head.run([r.audio for r in requests])) if self.head else [None] * len(requests)
        )
        results: list[EngineResult | None] = [None] * len(requests)
        verify = verifies(self.cfg, self.device)
        routes = [route(f, self.cfg, verify) if f else "llm" for f in frames]
        for i, r in enumerate(requests):
            if routes[i] == "ctc":
                results[i] = self._taken(r, frames[i].text, (), "ctc")  # type: ignore[union-attr]
        to_verify = [i for i, how in enumerate(routes) if how == "verify"]
        if to_verify:
            drafts = [self._draft_ids(frames[i].text) for i in to_verify]  # type: ignore[union-attr]
            probs = self.engine.verify([requests[i] for i in to_verify], drafts)
            self.calls["verify"] += 1
            self.calls["verify_blocks"] += len(to_verify)
            for i, ids, p in zip(to_verify, drafts, probs):
                if verified(p, self.cfg):
                    results[i] = self._taken(requests[i], frames[i].text, ids, "verified")  # type: ignore[union-attr]
        rest = [i for i, res in enumerate(results) if res is None]
        if rest:
            self.calls["generate"] += 1
            self.calls["generate_blocks"] += len(rest)
            for i, res in zip(rest, self.engine.transcribe([self._embedded(requests[i], frames[i]) for i in rest])):
                results[i] = dataclasses.replace(res, decoded_by="llm")
        return [self._with_words(r, res, f) for r, res, f in zip(requests, results, frames)]  # type: ignore[arg-type]

    def _embedded(self, r: EngineRequest, frames: CtcFrames | None) -> EngineRequest:
        """The request with its prompt embeddings from the CTC stage's encoder pass, when the
        engine takes them (vLLM): the block is not encoded a second time."""
        if frames is None or frames.audio_embeds is None or not getattr(self.engine, "takes_prompt_embeds", False):
            return r
        if r.prompt not in self._prompt_ids:
            if len(self._prompt_ids) >= 1024:  # sidecar keywords can make every recording's prompt its own
                self._prompt_ids.clear()
            self._prompt_ids[r.prompt] = self.tokenizer(r.prompt).input_ids
        embeds = self.head.prompt_embeds(self._prompt_ids[r.prompt], frames.audio_embeds)  # type: ignore[union-attr]
        return dataclasses.replace(r, prompt_embeds=embeds)

    def _draft_ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _taken(self, r: EngineRequest, text: str, ids: Sequence[int], how: str) -> EngineResult:
        res = make_result(r, text, list(ids), 0, "stop", 0.0, 0)
        return dataclasses.replace(res, decoded_by=how)

    def _with_words(self, r: EngineRequest, res: EngineResult, frames: CtcFrames | None) -> EngineResult:
        duration = r.block_s
        if frames is not None and self.cfg.word_times:
            words = align_words(res.text, frames.log_probs, duration)
        else:
            words = tuple(Word(w, None, None, None) for w in res.text.split())
        return dataclasses.replace(res, words=words)
