"""RTFx of Granite 4.0 1B Speech through vLLM on one GPU, against transformers, for 4-second blocks.

One command, meant to finish in under 8 minutes on one H200 including building the full-size
model with random weights (bf16, about 80 s). Blocks are 4 s of distinct low-level noise (random
weights make content irrelevant; distinct audio keeps vLLM's multimodal cache from short-cutting
the encoder), and every block is forced to 16 output tokens (4 per audio second, a realistic
transcript length). RTFx = audio seconds / wall seconds of one `generate`, after a warm-up.

`--engine vllm` (the default) measures both engines in one call, each in a process of its own
(this script again, with the hidden `--role`), one after the other, so that vLLM has given its GPU
memory back before transformers loads:
- vLLM (`LLM`, bf16, max_num_seqs = the largest batch, the rest vLLM's defaults: on an H200
  max_num_batched_tokens 16384, CUDA graphs): a warm-up `generate` of the largest batch, then one
  `generate` per batch (default 256 and 1024), then one `generate` of `--sched-blocks` blocks
  (default 4x the largest batch) that vLLM's scheduler runs itself, admitting up to max_num_seqs
  blocks at a time and mixing new blocks' prefill with running decodes, as the pipeline's engine
  does with a whole pass. Each block goes in as audio, so vLLM's time includes its feature
  extraction and multimodal hashing on the CPU.
- transformers (`generate`, bf16, left padding) on the same batch sizes, the baseline: its inputs
  are prepared before the clock starts, and each batch is timed after a warm-up at that size.
The figures per pass of each engine come first; the last line is
  gpu_rtfx=<best vLLM RTFx> vllm_over_transformers=<best vLLM / best transformers> gpu=<name>
Target: gpu_rtfx >= 3000 on one H200, and vllm_over_transformers >= 1.5.
Not yet run on a GPU with vLLM: the device image has no vLLM, and no device was lent in the
session that wrote this. bench/gpu_check.sh is the prepared device run (vLLM 0.26.0 from the
bundle that ../shared/tools/vllm-gpu-bundle/ builds; its header gives the exact call). The vLLM
calls keep to what both 0.26 and the project's 0.32 accept. On a machine without CUDA it runs on
the CPU build (the tiny model is a smoke test of this script, tests/test_gpu_rtfx.py).

Needs on the GPU machine: torch with CUDA, transformers >= 5, tokenizers, safetensors, vllm.
Usage: python bench/gpu_rtfx.py [--model DIR] [--engine vllm|transformers|ctc] [--batches 256,1024]
  [--sched-blocks N] [--block-s 4] [--role-timeout S]
`--engine transformers`: transformers alone, in this process (default batches 64,256,1024).
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
and its CUDA wheel is far over what a device call can carry; bench/gpu_check.sh brings a slim
vLLM 0.26.0 bundle instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKENS_PER_S = 4  # forced output: a realistic transcript length
PROMPT = "USER: <|audio|>can you transcribe the speech into a written format?\n ASSISTANT:"
DEFAULT_BATCHES = {"vllm": "256,1024", "transformers": "64,256,1024", "ctc": "64,256,1024"}
EXIT_GRACE_S = 60  # after a role has printed its figures: then its process group is killed


def blocks(n: int, block_s: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(int(block_s * 16000), dtype=np.float32) * np.float32(0.05) for _ in range(n)]


def run_vllm(model: Path, batches: list[int], block_s: float, sched_blocks: int) -> dict[str, float]:
    """RTFx per pass: "batch <b>" (one `generate` of b blocks) and "sched <n>" (one `generate` of
    n blocks that vLLM schedules itself, up to max_num_seqs at a time)."""
    from pipeline import cpu_torch

    cpu_torch.install()  # CPU smoke test only (pipeline/cpu_torch.py); on a GPU image nothing changes
    # Through NVML, not the CUDA runtime: a CUDA driver initialized here would break the processes
    # that vLLM forks (its engine core and worker) when they use the GPU.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    cpu = not torch.cuda.is_available()
    if cpu:  # the CPU build, as pipeline/engines/vllm.py configures it: a smoke test on the tiny model
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    # Only arguments that vLLM 0.26 (the GPU bundle) and 0.32 (the CPU build) both take.
    kwargs = dict(
        model=str(model),
        dtype="bfloat16",
        max_model_len=4096,
        max_num_seqs=max(batches),
        seed=0,
        limit_mm_per_prompt={"audio": {"count": 1, "length": int(block_s * 16000)}},
        enforce_eager=cpu,
    )
    if cpu:
        kwargs["max_num_batched_tokens"] = 2048
    else:
        kwargs["gpu_memory_utilization"] = 0.85
    t0 = time.perf_counter()
    llm = LLM(**kwargs)
    print(f"vllm: engine up in {time.perf_counter() - t0:.0f} s", flush=True)
    try:
        sched = llm.llm_engine.vllm_config.scheduler_config
        print(f"vllm: max_num_seqs {sched.max_num_seqs}, max_num_batched_tokens {sched.max_num_batched_tokens}")
    except AttributeError:
        pass
    tokens = int(TOKENS_PER_S * block_s)
    params = SamplingParams(temperature=0.0, max_tokens=tokens, min_tokens=tokens, ignore_eos=True)

    def prompts(n: int, seed: int) -> list[dict]:  # distinct audio per pass: no multimodal cache hits
        return [{"prompt": PROMPT, "multi_modal_data": {"audio": (a, 16000)}} for a in blocks(n, block_s, seed)]

    llm.generate(prompts(max(batches), 1), params, use_tqdm=False)  # warm-up
    passes = [(f"batch {b}", b) for b in batches] + ([(f"sched {sched_blocks}", sched_blocks)] if sched_blocks else [])
    out: dict[str, float] = {}
    for i, (name, n) in enumerate(passes):
        batch = prompts(n, 2 + i)
        t0 = time.perf_counter()
        done = llm.generate(batch, params, use_tqdm=False)
        out[name] = n * block_s / (time.perf_counter() - t0)
        assert all(len(o.outputs[0].token_ids) == tokens for o in done), "forced length not met"
        print(f"vllm {name}: RTFx {out[name]:8.0f}", flush=True)
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


def run_transformers(model: Path, batches: list[int], block_s: float) -> dict[str, float]:
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
        out[f"batch {b}"] = b * block_s / (time.perf_counter() - t0)
        print(f"transformers batch {b}: RTFx {out[f'batch {b}']:8.0f}", flush=True)
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


def gpu_name() -> str:
    import torch

    # Without a GPU (a smoke test of this script on the tiny model) it reports "cpu".
    return torch.cuda.get_device_name(0).replace(" ", "_") if torch.cuda.is_available() else "cpu"


def role_main(args: argparse.Namespace, batches: list[int]) -> None:
    """One engine in this process; its figures as JSON on the last stdout line."""
    if args.role == "vllm":
        rtfx = run_vllm(args.model, batches, args.block_s, args.sched_blocks)
    else:
        rtfx = run_transformers(args.model, batches, args.block_s)
    import torch
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    if args.role == "vllm":
        import vllm

        versions["vllm"] = vllm.__version__
    print(json.dumps({"role": args.role, "gpu": gpu_name(), "rtfx": rtfx, "versions": versions}), flush=True)


def run_role(role: str, model: Path, args: argparse.Namespace, batches: list[int]) -> dict | None:
    """This script with `--role`, in its own session (process group), its output passed through;
    its JSON result, or None if it failed or ran past `--role-timeout`. The whole group is killed
    at the end, so no engine process of vLLM's outlives it holding GPU memory."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--model", str(model)]
    cmd += ["--batches", ",".join(map(str, batches)), "--block-s", str(args.block_s)]
    cmd += ["--sched-blocks", str(args.sched_blocks)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
    result: list[dict] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and obj.get("role") == role:
                result.append(obj)
                done.set()
            else:
                print(line, end="", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.monotonic()
    limit = args.role_timeout or float("inf")
    while proc.poll() is None:
        if done.wait(0.5):
            try:  # figures in: give it EXIT_GRACE_S to shut down
                proc.wait(EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                print(f"{role}: no exit {EXIT_GRACE_S} s after its figures; killed", flush=True)
            break
        if time.monotonic() - t0 > limit:
            print(f"{role}: over --role-timeout {args.role_timeout:g} s; killed", flush=True)
            break
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    reader.join(5)
    print(f"{role}: {time.monotonic() - t0:.0f} s in all, exit {proc.returncode}", flush=True)
    return result[0] if result else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="full-size model folder (default: build one)")
    p.add_argument("--batches", help="comma-separated batch sizes (default: vllm 256,1024; others 64,256,1024)")
    p.add_argument("--engine", choices=["vllm", "transformers", "ctc"], default="vllm")
    p.add_argument("--block-s", type=float, default=4.0, help="block length (blocks.max_s); 4 tokens per second")
    p.add_argument(
        "--sched-blocks",
        type=int,
        help="vllm: blocks in the pass that vLLM schedules itself (default 4x the largest batch; 0: none)",
    )
    p.add_argument("--role-timeout", type=float, default=0, help="vllm: seconds per engine process (0: no limit)")
    p.add_argument("--role", choices=["vllm", "transformers"], help=argparse.SUPPRESS)
    args = p.parse_args()
    batches = [int(b) for b in (args.batches or DEFAULT_BATCHES[args.role or args.engine]).split(",")]
    if args.sched_blocks is None:
        args.sched_blocks = 4 * max(batches)
    if args.role:
        role_main(args, batches)
        return
    with tempfile.TemporaryDirectory() as tmp:
        from bench.common import full_size_model

        model = Path(full_size_model(str(args.model) if args.model else None, tmp))
        if args.engine == "vllm":
            compare(model, args, batches)
            return
        gpu = gpu_name()
        if args.engine == "ctc":
            c = run_ctc(model, batches, args.block_s)  # the last (largest) batch
            print(
                f"gpu_rtfx={c['gen']:.0f} ctc_speedup_at_50={c['s50']:.2f} ctc_speedup_at_100={c['s100']:.2f} "
                f"ctc_pass_share={c['share']:.3f} ctc_peak_gib={c['peak']:.2f} gpu={gpu}"
            )
            return
        rtfx = run_transformers(model, batches, args.block_s)
    print(f"gpu_rtfx={max(rtfx.values()):.0f} gpu={gpu}")


def compare(model: Path, args: argparse.Namespace, batches: list[int]) -> None:
    """vLLM, then transformers on the same batches, each in a process of its own; the summary."""
    results = {role: run_role(role, model, args, batches) for role in ("vllm", "transformers")}
    for role, res in results.items():
        if res is None:
            print(f"{role}: FAILED (no figures)")
            continue
        print(f"{role}: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))
        for name, rtfx in res["rtfx"].items():
            print(f"{role:12s} {name:12s} RTFx {rtfx:8.0f}")
    vl, tf = results["vllm"], results["transformers"]
    if vl is None or tf is None:
        sys.exit("gpu_rtfx: " + " and ".join(r for r, res in results.items() if res is None) + " failed")
    best_v, best_t = max(vl["rtfx"].values()), max(tf["rtfx"].values())
    print(f"gpu_rtfx={best_v:.0f} vllm_over_transformers={best_v / best_t:.2f} gpu={vl['gpu']}")


if __name__ == "__main__":
    main()
