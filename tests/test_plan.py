"""`granite-batch plan` end to end, through the real CLI, against a real S3 server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.records.plan import PLAN_BLOCKS, PLAN_RECORDINGS
from tests.conftest import upload_tree

PREFIX = "archive/2026-11-25"


def plan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "plan", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.fixture(scope="module")
def archive(moto, corpus):
    files = {f"formats/{p.name}": p for p in corpus.formats.values()}
    files |= {f"bad/{n}": p for n, p in corpus.bad.items()}
    files |= {f"misnamed/{n}": p for n, p in corpus.misnamed.items()}
    files |= {"telephone/call.wav": corpus.telephone, "quiet/silence.wav": corpus.silence}
    upload_tree(moto, "calls", PREFIX, files)
    return files


def test_plan_over_s3_accounts_for_every_object(moto, corpus, archive, tmp_path):
    out = tmp_path / "plan"
    r = plan(
        "--input", f"s3://calls/{PREFIX}/", "--endpoint-url", moto.endpoint_url, "--output", str(out), "--workers", "2"
    )
    assert r.returncode == 0, r.stderr
    recs = pq.read_table(out / "recordings.parquet")
    blocks = pq.read_table(out / "blocks.parquet")
    assert recs.schema == PLAN_RECORDINGS and blocks.schema == PLAN_BLOCKS

    rows = {row["source_uri"].removeprefix(f"s3://calls/{PREFIX}/"): row for row in recs.to_pylist()}
    assert set(rows) == set(archive)  # every object has exactly one row
    for name in archive:
        expect = "failed" if name.startswith("bad/") else "ok"
        assert rows[name]["status"] == expect, (name, rows[name]["error"])
    for name, row in rows.items():
        if row["status"] == "failed":
            assert row["error"] and "\n" not in row["error"]
    assert rows["bad/empty.wav"]["error"] == "empty object (0 bytes)"
    assert rows["telephone/call.wav"]["sample_rate"] == 8000 and rows["telephone/call.wav"]["channels"] == 2
    assert rows["quiet/silence.wav"]["blocks"] == 0

    # blocks.parquet agrees with the per-recording counts and the invariants.
    per_rec: dict[str, int] = {}
    for b in blocks.to_pylist():
        per_rec[b["recording_id"]] = per_rec.get(b["recording_id"], 0) + 1
        assert 0 <= b["start_s"] < b["end_s"] <= b["start_s"] + 4.0 + 1e-9
    for row in rows.values():
        assert per_rec.get(row["recording_id"], 0) == (row["blocks"] or 0)
        if row["status"] == "ok" and row["blocks"]:
            assert row["speech_s"] > 0

    text = r.stdout
    n_bad = len(corpus.bad)
    assert f"recordings  {len(archive)} ({len(archive) - n_bad} ok, {n_bad} failed)" in text
    assert "GPU-hours at RTFx 280" in text and "ch0" in text and "ch1" in text
    # The card's split between vLLM and the CTC stage, with the stage's estimated need.
    assert "gpu memory  vLLM 85% of each card; CTC stage 4 GiB beside it (needs ~1.6 GiB" in text
    assert f"s3://calls/{PREFIX}/bad/truncated.wav: truncated:" in text
    # Audio-in's CPU, measured in the workers per recording, and the cores one GPU needs of it.
    cpu = sum(row["audio_in_cpu_s"] for row in rows.values())
    assert all(row["audio_in_cpu_s"] >= 0 for row in rows.values()) and cpu > 0
    assert re.search(
        r"audio-in    [\d.]+ CPU-s to fetch, decode and cut \(\d+x real time per core\); "
        r"a GPU at RTFx 280 needs ~[\d.]+ such cores",
        text,
    ), text


def test_plan_limits_config_file_env_and_labels(moto, archive, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(
        f"""
input:
  uri: s3://calls/{PREFIX}/
  include: ["formats/*", "telephone/*"]
channels:
  labels: {{0: agent, 1: customer}}
filters:
  max_size_bytes: 1000000
engine:
  gpu_hour_price: 2.5
"""
    )
    out = tmp_path / "plan"
    env = {"GRANITE_BATCH_FILTERS__MAX_DURATION_S": "20", "GRANITE_BATCH_INPUT__ENDPOINT_URL": moto.endpoint_url}
    r = plan("--config", str(job), "--output", str(out), "--workers", "1", env=env)
    assert r.returncode == 0, r.stderr
    rows = pq.read_table(out / "recordings.parquet").to_pylist()
    assert rows and all("/formats/" in x["source_uri"] or "/telephone/" in x["source_uri"] for x in rows)
    errors = {x["source_uri"].rsplit("/", 1)[1]: x["error"] for x in rows}
    # The stereo call is 24.4 s (over the env's 20 s); 32-bit WAVs are also over 1 MB; the
    # 15.3 s telephone call passes both limits.
    assert errors["call_wav_s32.wav"].startswith("too large: 3")
    assert errors["call_mp3.mp3"].startswith("too long")
    assert errors["call.wav"] is None
    labels = {b["channel_label"] for b in pq.read_table(out / "blocks.parquet").to_pylist()}
    assert labels == {"agent", "customer"}
    assert "agent" in r.stdout and "at 2.5/GPU-h" in r.stdout


def test_plan_reports_config_errors_clearly(tmp_path):
    r = plan("--input", str(tmp_path), env={"GRANITE_BATCH_BLOCKS__MAX_S": "forty"})
    assert r.returncode == 2
    assert "blocks.max_s" in r.stderr and "GRANITE_BATCH_BLOCKS__MAX_S" in r.stderr
    r = plan()
    assert r.returncode == 2 and "input.uri: Field required; set it with `--input`" in r.stderr
    r = plan("--input", str(tmp_path / "nope"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_plan_local_folder_without_output(corpus):
    r = plan("--input", str(corpus.root / "formats"), "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert f"recordings  {len(corpus.formats)} ({len(corpus.formats)} ok, 0 failed)" in r.stdout


def test_plan_survives_a_killed_worker(corpus, tmp_path):
    """SIGKILL one decode worker mid-run: every recording still gets exactly one row, all ok."""
    import time

    import psutil

    from tests import corpus as C

    src = tmp_path / "in"
    src.mkdir()
    long_call = np.tile(corpus.call.samples, (1, 8))  # ~3 minutes each
    for i in range(10):
        C.encode(long_call, 16000, "flac", src / f"{i:02d}.flac")
    out = tmp_path / "plan"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "plan", "--input", str(src), "--output", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        kids = psutil.Process(proc.pid).children(recursive=True)
        busy = [k for k in kids if "spawn_main" in " ".join(k.cmdline()) and k.cpu_percent(interval=0.2) > 20]
        if busy:
            victim = busy[0]
            victim.kill()
    stdout, stderr = proc.communicate(timeout=300)
    assert victim is not None, "no busy worker seen"
    assert proc.returncode == 0, stderr
    rows = pq.read_table(out / "recordings.parquet").to_pylist()
    assert sorted(Path(r["source_uri"]).name for r in rows) == [f"{i:02d}.flac" for i in range(10)]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
