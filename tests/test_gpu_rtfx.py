"""bench/gpu_rtfx.py --engine vllm on CPU with the tiny model: a smoke test of the GPU benchmark
(vLLM's CPU build, then transformers, each in a process of its own, and the summary line)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_vllm_against_transformers_smoke(tiny_model: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_rtfx.py"), "--engine", "vllm", "--model", str(tiny_model)]
    cmd += ["--batches", "2,4", "--sched-blocks", "8", "--role-timeout", "240"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    lines = r.stdout.strip().splitlines()
    m = re.fullmatch(r"gpu_rtfx=(\d+) vllm_over_transformers=(\d+\.\d\d) gpu=(\S+)", lines[-1])
    assert m, lines[-1]
    assert int(m[1]) > 0 and float(m[2]) > 0 and m[3] == "cpu"
    for role, passes in (("vllm", ("batch 2", "batch 4", "sched 8")), ("transformers", ("batch 2", "batch 4"))):
        for name in passes:
            row = [ln for ln in lines if re.fullmatch(rf"{role}\s+{name}\s+RTFx\s+\S+", ln)]
            assert len(row) == 1 and float(row[0].split()[-1]) > 0, (role, name, row)
