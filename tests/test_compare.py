"""bench/compare.py on the tiny model: a smoke test of the side-by-side benchmark (ours through
`granite-batch run`, `vllm serve` with its client, IBM's granite-speech from PyPI) and its line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compare_runs_all_three_and_prints_its_line(tiny_model: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "compare.py"), "--model", str(tiny_model), "--audio-s", "30"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"ours_over_vllm_server=\d+\.\d\d ours_over_granite_speech=\d+\.\d\d", lines[-1]), lines[-1]
    rows = {ln.split()[0]: ln for ln in lines if re.match(r"(ours|vllm-server|granite-speech) +wall", ln)}
    assert set(rows) == {"ours", "vllm-server", "granite-speech"}, lines
    budget = int(re.search(r"(\d+) files, (\d+) s of speech", r.stdout)[2]) * 4
    for name, row in rows.items():
        tokens = int(re.search(r"(\d+) tokens", row)[1])
        # held to the budget: the others write it exactly (up to rounding per file); ours only for the speech
        assert 0 < tokens <= budget + 8 and (name == "ours" or tokens >= budget - 8), row
