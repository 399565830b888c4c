"""The `transformers` engine: batched greedy `generate`, the CPU fallback and the reference.

Left padding for the batch (the processor pads on the right by default, which breaks batched
generation); requests with different `max_tokens` share one `generate` call and each output is
cut at its own cap afterwards, which is exact for greedy decoding.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import cpu_torch
from ..records.audio import SAMPLE_RATE
from .base import EngineRequest, EngineResult, drafts_of, in_length_groups, make_result


class TransformersEngine:
    name = "transformers"
    takes_prompt_embeds = True  # from the CTC stage, which runs this model's own encoder

    def __init__(self, model_dir: Path, dtype: str = "float32", batch_size: int = 16) -> None:
        cpu_torch.install()
        import torch
        from transformers import AutoProcessor, GraniteSpeechForConditionalGeneration

        self._torch = torch
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.model = GraniteSpeechForConditionalGeneration.from_pretrained(
            model_dir, dtype=getattr(torch, dtype), trust_remote_code=False
        ).eval()
        self.eos_ids = set(
            np.atleast_1d(self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id).tolist()
        )
        self.batch_size = batch_size

    def transcribe(self, requests: list[EngineRequest]) -> list[EngineResult]:
        return in_length_groups(requests, self._batch, self.batch_size)

    def verify(self, requests: list[EngineRequest], drafts: list[list[int]]) -> list[list[float]]:
        return in_length_groups(requests, lambda rs: self._verify(rs, drafts_of(requests, drafts, rs)), self.batch_size)

    def _verify(self, reqs: list[EngineRequest], drafts: list[list[int]]) -> list[list[float]]:
        """One forward pass over [prompt, audio, draft], right-padded (so positions need no
        shifting); the draft's k-th token is scored by the logits one position before it."""
        torch = self._torch
        inputs = self._from_audio(reqs)
        rows = [ids[m.bool()].tolist() + d for ids, m, d in zip(inputs["input_ids"], inputs["attention_mask"], drafts)]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        with self._torch.inference_mode():
            logits = self.model(
                input_ids=ids,
                attention_mask=mask,
                input_features=inputs["input_features"],
                input_features_mask=inputs.get("input_features_mask"),
            ).logits.float()
        # GraniteSpeech's forward leaves out the LM's logits scaling (argmax does not care);
        # probabilities do, and IBM's verify and vLLM both apply it.
        logits = logits / getattr(self.model.config.text_config, "logits_scaling", 1.0)
        probs = []
        for i, (row, d) in enumerate(zip(rows, drafts)):
            start = len(row) - len(d)
            p = torch.softmax(logits[i, start - 1 : len(row) - 1], dim=-1)
            probs.append(p[torch.arange(len(d)), torch.tensor(d, dtype=torch.long)].tolist() if d else [])
        return probs

    def _from_audio(self, reqs: list[EngineRequest]):
        """Prompt ids (left-padded, audio placeholder expanded) and audio features for a batch."""
        return self.processor(
            text=[r.prompt for r in reqs],
            audio=[r.audio for r in reqs],
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            padding=True,
        )

    def _inputs(self, reqs: list[EngineRequest]) -> tuple[dict, int]:
        """generate's inputs, left-padded, and where the new tokens start in its output: from the
        audio, or from the CTC stage's prompt embeddings (then the output holds new tokens only)."""
        torch = self._torch
        if any(r.prompt_embeds is None for r in reqs):
            inputs = self._from_audio(reqs)
            return dict(inputs), inputs["input_ids"].shape[1]
        width = max(len(r.prompt_embeds) for r in reqs)
        first = reqs[0].prompt_embeds
        embeds = torch.zeros((len(reqs), width, first.shape[1]), dtype=self.model.dtype)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for i, r in enumerate(reqs):
            n = len(r.prompt_embeds)
            embeds[i, width - n :], mask[i, width - n :] = r.prompt_embeds, 1
        return {"inputs_embeds": embeds, "attention_mask": mask}, 0

    def _batch(self, reqs: list[EngineRequest]) -> list[EngineResult]:
        t0 = time.perf_counter()
        inputs, prompt_len = self._inputs(reqs)
        with self._torch.inference_mode():
            out = self.model.generate(
                **inputs,
                do_sample=False,
                num_beams=1,
                max_new_tokens=max(r.max_tokens for r in reqs),
                min_new_tokens=max(r.min_tokens for r in reqs),
                pad_token_id=self.tokenizer.pad_token_id,
            )
        elapsed = time.perf_counter() - t0
        results = []
        for row, r in enumerate(reqs):
            prompt_tokens = int(inputs["attention_mask"][row].sum())
            ids: list[int] = []
            finish = "length"
            for t in out[row, prompt_len:].tolist()[: r.max_tokens]:
                if t in self.eos_ids and len(ids) >= r.min_tokens:
                    finish = "stop"
                    break
                ids.append(t)
            results.append(
                make_result(
                    r,
                    self.tokenizer.decode(ids, skip_special_tokens=True),
                    ids,
                    prompt_tokens,
                    finish,
                    elapsed,
                    len(reqs),
                )
            )
        return results
