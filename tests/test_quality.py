"""The quality harness (bench/quality.py) on one call per variant: a real recognizer
(moonshine-cpp) behind our engine interface, through our decode, blocks and assembly. It runs in
a subprocess: moonshine's onnxruntime keeps GBs after it is done, which the tests after this one
need. The figures are the benchmark's (docs/quality.md); these bounds are loose on purpose."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("moonshine_cpp", reason="the bench extra: pip install -e '.[bench]'")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def figures() -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality.py"), "--calls", "1"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = dict(re.findall(r"(\w+)=([\d.]+)", r.stdout.strip().splitlines()[-1]))
    for variant, whole, blocks, fixed in re.findall(
        r"^(\w+)\s+WER whole ([\d.]+)\s+blocks ([\d.]+)\s+fixed ([\d.]+)", r.stdout, re.M
    ):
        out |= {f"{variant}_whole": whole, f"{variant}_blocks": blocks, f"{variant}_fixed": fixed}
    return {k: float(v) for k, v in out.items()}


def test_blocks_cut_at_pauses_beat_fixed_cuts(figures):
    for variant in ("clean", "telephone", "noisy"):
        assert figures[f"{variant}_blocks"] < figures[f"{variant}_fixed"] / 1.5, figures
    assert figures["clean_blocks"] < 0.15 and figures["clean_whole"] < 0.15, figures  # the recognizer hears the speech


def test_timestamps_and_silence(figures):
    assert figures["ts_median_err_s"] <= 0.2
    assert figures["silence_words"] == 0
