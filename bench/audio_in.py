"""Audio-in throughput: list, fetch, decode, resample, VAD and blocking, ours against our previous
path and a naive loader, with the CPU of each stage.

Builds >= 1 hour of mixed-format recordings from real speech (pocketsphinx-testdata), serves them
from a moto S3 server, and runs in separate processes, one core each:
  ours:     `pipeline.plan.run_plan` (ranged GETs, PyAV + soxr streaming, Silero VAD, blocker);
  baseline: the same with the path of 2026-11-30 (commit a93358d): Silero through the
            silero-vad package's sequence export, and FFmpeg's sample-format converter on
            every frame;
  naive:    GET the whole object, soundfile.read, downmix, soxr HQ to 16 kHz (what librosa.load
            does), fixed 4 s cuts. soundfile cannot read M4A or WebM: those count as its failures.
Ours and baseline run twice, alternating (best of two), each stage timed (bench/audio_stages.py).
It then runs ours on one 10-minute and one 2-hour file to compare peak RSS (flat memory).

Last line: audio_in_x_realtime_per_core=<float> vs_naive=<ratio> speedup_vs_baseline=<ratio> peak_rss_mb=<int>
Tried on: 2-core x86_64 VM, no GPU.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import peak_rss_mb  # noqa: E402

# (format, channels, rate): call-center stereo telephony plus the usual compressed formats.
MIX = [
    ("wav_mulaw", 2, 8000),
    ("mp3", 1, 16000),
    ("opus", 2, 16000),
    ("m4a", 1, 16000),
    ("flac", 2, 16000),
    ("ogg_vorbis", 1, 16000),
    ("webm", 1, 16000),
    ("wav_s16", 2, 8000),
]


def _long_call(minutes: float, channels: int, rate: int, seed: int):
    from tests import corpus as C

    utts = C.speech_utterances()
    rng = np.random.default_rng(seed)
    picked, total = [], 0.0
    while total < minutes * 60:
        u = utts[int(rng.integers(len(utts)))]
        picked.append(u)
        total += u.duration_s + 1.0
    gaps = list(rng.uniform(0.3, 2.0, len(picked) + 1))
    return C.make_call(picked, gaps, channels=channels, rate=rate, seed=seed)


def build(work: Path, svc, hours: float) -> dict[str, str]:
    from tests import corpus as C
    from tests.conftest import upload_tree

    files: dict[str, Path] = {}
    per_file_min = 5.0
    n = int(np.ceil(hours * 60 / per_file_min))
    for i in range(n):
        fmt, ch, rate = MIX[i % len(MIX)]
        call = _long_call(per_file_min, ch, rate, seed=i)
        files[f"mixed/{i:03d}.{C.FORMAT_EXT[fmt]}"] = C.encode(
            call.samples, rate, fmt, work / f"{i:03d}.{C.FORMAT_EXT[fmt]}"
        )
    for name, minutes in (("10min", 10.0), ("2h", 120.0)):
        one = _long_call(10.0, 1, 16000, seed=99)
        reps = int(np.ceil(minutes / (one.duration_s / 60)))
        x = np.tile(one.samples, (1, reps))[:, : int(minutes * 60 * 16000)]
        files[f"{name}/call.mp3"] = C.encode(x, 16000, "mp3", work / f"{name}.mp3")
    upload_tree(svc, "bench", "audio", files)
    return {k: str(v) for k, v in files.items()}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def role_ours(uri: str, endpoint: str, baseline: bool = False) -> dict:
    from bench.audio_stages import stage_clock
    from pipeline.audio import decode, vad
    from pipeline.commands.plan import run_plan
    from pipeline.config import load_config

    if baseline:
        vad.MODEL = vad.package_model()  # the same probabilities (tests/test_vad.py), ~3x the CPU
        decode._SCALE = {}  # no format is converted in numpy: FFmpeg's converter takes every frame
    cfg = load_config(None, {"input.uri": uri, "input.endpoint_url": endpoint})
    with stage_clock() as clock:
        t0, c0 = time.perf_counter(), _cpu_s()
        s = run_plan(cfg, None, workers=1)
        cpu_s, wall_s = _cpu_s() - c0, time.perf_counter() - t0
    return {
        "audio_s": s.audio_s,
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "files": s.recordings,
        "failed": s.failed,
        "blocks": s.blocks,
        "speech_s": s.speech_s,
        "stages": clock.close(),
    }


def role_naive(uri: str, endpoint: str) -> dict:
    import boto3
    import soundfile as sf
    import soxr

    s3 = boto3.client("s3", endpoint_url=endpoint)
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    t0, c0 = time.perf_counter(), _cpu_s()
    audio_s, files, failed, blocks = 0.0, 0, [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            files += 1
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()  # download first
            try:
                x, sr = sf.read(io.BytesIO(body), dtype="float32", always_2d=True)
            except Exception:
                failed.append(obj["Key"].rsplit(".", 1)[-1])
                continue
            y = soxr.resample(x.mean(axis=1), sr, 16000, quality="HQ")
            blocks += len([y[i : i + 64000] for i in range(0, y.size, 64000)])
            audio_s += x.shape[0] / sr
    return {
        "audio_s": audio_s,
        "cpu_s": _cpu_s() - c0,
        "wall_s": time.perf_counter() - t0,
        "files": files,
        "failed": len(failed),
        "failed_formats": sorted(set(failed)),
        "blocks": blocks,
    }


def _run_role(role: str, uri: str, endpoint: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--role", role, "--uri", uri, "--endpoint", endpoint],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=1.0, help="mixed-format audio to generate (default 1)")
    p.add_argument("--role", choices=["ours", "baseline", "naive"], help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        if args.role == "naive":
            result = role_naive(args.uri, args.endpoint)
        else:
            result = role_ours(args.uri, args.endpoint, baseline=args.role == "baseline")
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    import os

    from tests.services.moto_s3 import start_moto

    with start_moto() as svc, tempfile.TemporaryDirectory() as work:
        t = time.perf_counter()
        build(Path(work), svc, args.hours)
        print(f"built and uploaded corpus in {time.perf_counter() - t:.0f} s")
        env = {**os.environ, **svc.env(endpoint=False), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        runs: dict[tuple[str, str], dict] = {}
        for role, prefix in (
            ("ours", "audio/mixed/"),
            ("baseline", "audio/mixed/"),
            ("ours", "audio/mixed/"),
            ("baseline", "audio/mixed/"),
            ("naive", "audio/mixed/"),
            ("ours", "audio/10min/"),
            ("ours", "audio/2h/"),
        ):
            r = _run_role(role, f"s3://bench/{prefix}", svc.endpoint_url, env)
            _print_run(role, prefix, r)
            best = runs.get((role, prefix))
            runs[(role, prefix)] = r if best is None or r["cpu_s"] < best["cpu_s"] else best
    ours, base = runs[("ours", "audio/mixed/")], runs[("baseline", "audio/mixed/")]
    naive = runs[("naive", "audio/mixed/")]
    print(_stage_table(base, ours))
    ours_x, naive_x = ours["audio_s"] / ours["cpu_s"], naive["audio_s"] / naive["cpu_s"]
    speedup = base["cpu_s"] / ours["cpu_s"]
    print(
        f"speech to the model: baseline {base['speech_s']:.1f} s, ours {ours['speech_s']:.1f} s (blocks {base['blocks']} / {ours['blocks']})"
    )
    rss_ratio = runs[("ours", "audio/2h/")]["peak_rss_mb"] / runs[("ours", "audio/10min/")]["peak_rss_mb"]
    print(f"peak RSS 2 h file / 10 min file: {rss_ratio:.2f} (target <= 1.5)")
    print(
        f"audio_in_x_realtime_per_core={ours_x:.1f} vs_naive={ours_x / naive_x:.2f} "
        f"speedup_vs_baseline={speedup:.2f} peak_rss_mb={ours['peak_rss_mb']:.0f}"
    )


def _print_run(role: str, prefix: str, r: dict) -> None:
    xrt = r["audio_s"] / r["cpu_s"]
    failed = f" {','.join(r['failed_formats'])}" if r.get("failed_formats") else ""
    print(
        f"{role:8s} {prefix:14s} audio {r['audio_s'] / 3600:6.3f} h  cpu {r['cpu_s']:7.1f} s  "
        f"{xrt:6.0f}x realtime/core  files {r['files']} (failed {r['failed']}{failed})  "
        f"blocks {r['blocks']}  peak RSS {r['peak_rss_mb']:.0f} MB"
    )


def _stage_table(base: dict, ours: dict) -> str:
    """Markdown: CPU-seconds per stage and per audio hour, baseline against ours."""
    per_h = 3600 / ours["audio_s"]
    lines = [
        "| stage | baseline CPU-s per audio hour | ours | speedup | ours' share |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    total_b, total_o = sum(base["stages"].values()), sum(ours["stages"].values())
    for stage in ours["stages"]:
        b, o = base["stages"][stage], ours["stages"][stage]
        lines.append(
            f"| {stage} | {b * per_h:.1f} | {o * per_h:.1f} | {b / o if o else float('nan'):.2f} | {o / total_o:.0%} |"
        )
    lines.append(f"| **all** | **{total_b * per_h:.1f}** | **{total_o * per_h:.1f}** | **{total_b / total_o:.2f}** | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
