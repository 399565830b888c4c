"""RTFx of Granite 4.0 1B Speech through vLLM on one GPU, for 4-second blocks at large batch sizes.

One command, meant to finish in under 8 minutes on one H100 including building the full-size
model with random weights (bf16). Blocks are 4 s of distinct low-level noise (random weights make
content irrelevant; distinct audio keeps vLLM's multimodal cache from short-cutting the encoder),
and every block is forced to 16 output tokens (4 per audio second, a realistic transcript length).
RTFx = audio seconds / wall seconds of `generate`, after a warm-up, at each batch size.

Needs on the GPU machine: torch with CUDA, transformers >= 5, tokenizers, safetensors, vllm.
Usage: python bench/gpu_rtfx.py [--model DIR] [--batches 64,256,1024] [--engine vllm|transformers|ctc] [--block-s 4]
Last line: gpu_rtfx=<float> gpu=<name>

`--engine ctc` is the GPU variant of bench/ctc.py, in transformers (the device image has no
vLLM): per batch, the CTC pass (encoder + CTC head + IBM's greedy rule), one verify forward over
[prompt, audio, 16-token draft], and generation; then RTFx with 0% / 50% / 100% of the blocks
taken from CTC (the rest verified and generated, each from the audio: this script encodes again
where the pipeline hands over prompt embeddings) against generation alone, and the CTC pass's
peak GPU memory. Smoke-tested on CPU with the tiny model. Last line: gpu_rtfx=<generation alone> ctc_speedup_at_50=<x> ctc_speedup_at_100=<x>
ctc_pass_share=<x> ctc_peak_gib=<x> gpu=<name>. Not yet run on a GPU (no device was lent in the
session that wrote it).
Measured 2026-11-26 on one H200 (torch 2.11.0+cu130, transformers 5.17.0), `--engine transformers`:
RTFx 119 / 582 / 1317 / 2014 at batch 16 / 64 / 256 / 1024 (build 82 s); in a second run, 4 s blocks
1186 / 1891 at batch 256 / 1024 against 8 s blocks (`--block-s 8`) 851 / 1365 at batch 128 / 512
(the same audio per batch) and 2153 at batch 1024. vLLM is not on that image
and its CUDA wheel is far over what a device call can carry, so the vLLM figure is not yet measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKENS_PER_S = 4  # forced output: a realistic transcript length
PROMPT = "USER: <|audio|>can you transcribe the speech into a written format?\n ASSISTANT:"


def blocks(n: int, block_s: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(int(block_s * 16000)) * 0.05).astype(np.float32) for _ in range(n)]


def run_vllm(model: Path, batches: list[int], block_s: float) -> dict[int, float]:
    from pipeline import cpu_torch

    cpu_torch.install()  # CPU smoke test only (pipeline/cpu_torch.py); on a GPU image nothing changes
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(model),
        dtype="bfloat16",
        max_model_len=4096,
        max_num_seqs=max(batches),
        seed=0,
        limit_mm_per_prompt={"audio": {"count": 1, "length": int(block_s * 16000)}},
        gpu_memory_utilization=0.85,
    )
    tokens = int(TOKENS_PER_S * block_s)
    params = SamplingParams(temperature=0.0, max_tokens=tokens, min_tokens=tokens, ignore_eos=True)
    out: dict[int, float] = {}
    audio = blocks(max(batches) * 2 + 8, block_s)
    llm.generate(
        [{"prompt": PROMPT, "multi_modal_data": {"audio": (a, 16000)}} for a in audio[:8]], params, use_tqdm=False
    )
    used = 8
    for b in batches:
        batch = audio[used : used + b]
        used += b
        t0 = time.perf_counter()
        llm.generate(
            [{"prompt": PROMPT, "multi_modal_data": {"audio": (a, 16000)}} for a in batch], params, use_tqdm=False
        )
        out[b] = b * block_s / (time.perf_counter() - t0)
        print(f"vllm batch {b:5d}: RTFx {out[b]:8.0f}", flush=True)
    return out


def load_transformers(model: Path):
    """Processor (left padding), bf16 model on the GPU (CPU: a smoke test of this script), device, sync."""
    from pipeline import cpu_torch

    cpu_torch.install()  # CPU smoke test only; on a GPU image nothing changes
    import torch
    from transformers import AutoProcessor, GraniteSpeechForConditionalGeneration

    proc = AutoProcessor.from_pretrained(model)
    proc.tokenizer.padding_side = "left"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    net = GraniteSpeechForConditionalGeneration.from_pretrained(model, dtype=torch.bfloat16).to(dev).eval()
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    return proc, net, dev, sync


def batch_inputs(proc, b: int, block_s: float, dev: str):
    import torch

    inputs = proc(
        text=[PROMPT] * b, audio=blocks(b, block_s), sampling_rate=16000, return_tensors="pt", padding=True
    ).to(dev)
    inputs["input_features"] = inputs["input_features"].to(torch.bfloat16)
    return inputs


def run_transformers(model: Path, batches: list[int], block_s: float) -> dict[int, float]:
    import torch

    proc, net, dev, sync = load_transformers(model)
    tokens = int(TOKENS_PER_S * block_s)
    out: dict[int, float] = {}
    for b in batches:
        inputs = batch_inputs(proc, b, block_s, dev)
        with torch.inference_mode():
            net.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)  # warm-up
            sync()
            t0 = time.perf_counter()
            net.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
            sync()
        out[b] = b * block_s / (time.perf_counter() - t0)
        print(f"transformers batch {b:5d}: RTFx {out[b]:8.0f}", flush=True)
    return out


def run_ctc(model: Path, batches: list[int], block_s: float) -> dict[str, float]:
    import torch

    proc, net, dev, sync = load_transformers(model)
    tokens = int(TOKENS_PER_S * block_s)
    scale = getattr(net.config.text_config, "logits_scaling", 1.0)

    def ctc_pass(feats):
        hidden = net.model.encoder(feats).last_hidden_state
        probs = torch.softmax(net.model.encoder.out(hidden).float(), dim=-1)
        entropy = -(probs * torch.log(probs + 1e-10)).sum(-1).amax(-1)
        return probs.argmax(-1).cpu(), entropy.cpu()  # greedy ids and confidence per block

    text = proc.tokenizer.encode("the quick brown fox jumps over the lazy dog " * 8, add_special_tokens=False)

    def verify(inputs, n):
        draft = torch.tensor([text[:tokens]] * n, device=dev)  # a 16-token draft per block
        ids = torch.cat([inputs["input_ids"][:n], draft], dim=1)
        mask = torch.cat([inputs["attention_mask"][:n], torch.ones_like(draft)], dim=1)
        logits = net(input_ids=ids, attention_mask=mask, input_features=inputs["input_features"][:n]).logits
        return torch.softmax(logits[:, -tokens - 1 : -1].float() / scale, -1).gather(-1, draft[..., None]).amin()

    def generate(inputs, n):
        sub = {k: v[:n] for k, v in inputs.items()}
        net.generate(**sub, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)

    out: dict[str, float] = {}
    for b in batches:
        inputs = batch_inputs(proc, b, block_s, dev)
        feats = inputs["input_features"]

        def timed(fn):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            return time.perf_counter() - t0

        with torch.inference_mode():
            generate(inputs, b), ctc_pass(feats), verify(inputs, b)  # warm-up
            if dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            ctc_s = timed(lambda: ctc_pass(feats))
            peak = (torch.cuda.max_memory_allocated() - base) / (1 << 30) if dev == "cuda" else 0.0
            verify_s = timed(lambda: verify(inputs, b))
            gen_s = timed(lambda: generate(inputs, b))
            half = b // 2
            walls = {
                "100%": ctc_s,
                "50%": ctc_s + timed(lambda: verify(inputs, half)) + timed(lambda: generate(inputs, half)),
                "0%": ctc_s + verify_s + gen_s,
            }
        audio = b * block_s
        print(
            f"ctc batch {b:5d}: per block CTC {1000 * ctc_s / b:.2f} ms, verify {1000 * verify_s / b:.2f} ms, "
            f"generation {1000 * gen_s / b:.2f} ms; RTFx generation {audio / gen_s:.0f}, "
            + ", ".join(f"{k} from CTC {audio / w:.0f}" for k, w in walls.items())
            + f"; CTC pass peak {peak:.2f} GiB",
            flush=True,
        )
        out = {
            "gen": audio / gen_s,
            "s50": gen_s / walls["50%"],
            "s100": gen_s / walls["100%"],
            "share": ctc_s / gen_s,
            "peak": peak,
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="full-size model folder (default: build one)")
    p.add_argument("--batches", default="64,256,1024")
    p.add_argument("--engine", choices=["vllm", "transformers", "ctc"], default="vllm")
    p.add_argument("--block-s", type=float, default=4.0, help="block length (blocks.max_s); 4 tokens per second")
    args = p.parse_args()
    import torch

    # Without a GPU (a smoke test of this script on the tiny model) it reports "cpu".
    gpu = torch.cuda.get_device_name(0).replace(" ", "_") if torch.cuda.is_available() else "cpu"
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        from bench.common import full_size_model

        model = Path(full_size_model(str(args.model) if args.model else None, tmp))
        if args.engine == "ctc":
            c = run_ctc(model, batches, args.block_s)  # the last (largest) batch
            print(
                f"gpu_rtfx={c['gen']:.0f} ctc_speedup_at_50={c['s50']:.2f} ctc_speedup_at_100={c['s100']:.2f} "
                f"ctc_pass_share={c['share']:.3f} ctc_peak_gib={c['peak']:.2f} gpu={gpu}"
            )
            return
        rtfx = (run_vllm if args.engine == "vllm" else run_transformers)(model, batches, args.block_s)
    print(f"gpu_rtfx={max(rtfx.values()):.0f} gpu={gpu}")


if __name__ == "__main__":
    main()
