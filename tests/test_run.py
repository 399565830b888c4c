"""`granite-batch run` end to end through the real CLI: moto S3 in, Ray Data, vLLM's CPU build with
the tiny model in two engine pools, Parquet out; then a re-run, and a run killed and resumed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from unittest.mock import ANY

import duckdb
import pyarrow.dataset as ds
import pytest
import yaml

from pipeline.commands.plan import run_plan
from pipeline.config import load_config
from pipeline.errors import KINDS
from pipeline.records.results import RECORDINGS, SEGMENTS
from tests.conftest import upload_tree
from tests.invariants import check_segments
from tests.services.pushgateway import sample, start_pushgateway
from tests.services.s3 import free_port

BUCKET, PREFIX = "callcenter", "calls/2026-11-25"
KEY = ["recording_id", "channel", "segment_index", "start_s", "end_s"]


@pytest.fixture(scope="module")
def inputs(moto, corpus) -> dict[str, Path]:
    files = {
        "tel-0001.wav": corpus.telephone,  # stereo 8 kHz mu-law: agent / customer
        "call-0002.mp3": corpus.formats["mp3"],
        "call-0003.opus": corpus.formats["opus"],
        "call-0004.flac": corpus.formats["flac"],
        "voicemail-0005.mp3": corpus.misnamed["speech.mp3"],  # Opus under .mp3
        "quiet-0006.wav": corpus.silence,  # ok, no segments
        "bad-truncated.wav": corpus.bad["truncated.wav"],
        "bad-garbage.mp3": corpus.bad["garbage.mp3"],
        "bad-empty.wav": corpus.bad["empty.wav"],
    }
    upload_tree(moto, BUCKET, PREFIX, files)
    kw = corpus.root / "kw.txt"
    kw.write_text("Granite\nwatsonx\n")
    upload_tree(moto, BUCKET, PREFIX, {"call-0002.mp3.keywords.txt": kw})
    return files


def write_job(path: Path, model: Path, moto, **extra) -> Path:
    job = {
        "input": {"uri": f"s3://{BUCKET}/{PREFIX}", "endpoint_url": moto.endpoint_url},
        "channels": {"labels": {0: "agent", 1: "customer"}},
        "model": {"id": str(model)},
        "prompt": {"keywords": ["Acme"]},
        # Dispatch batches of 8 go out in engine calls of 2, one slot per engine: each dispatcher
        # needs several slots per batch (this deadlocked while dispatchers held finished slots).
        "engine": {
            "dtype": "float32",
            "batch_blocks": 8,
            "pools": [
                {"name": "a", "device": "cpu", "replicas": 1, "cpus": 0.5, "slots": 1, "batch_blocks": 2},
                {"name": "b", "device": "cpu", "replicas": 1, "cpus": 0.5, "slots": 1, "batch_blocks": 2},
            ],
        },
        "output": {"commit_every_s": 0.5},
        "run": {"object_store_gib": 0.3, "num_cpus": 2, "progress_every_s": 1},
    }
    for dotted, v in extra.items():
        *parents, leaf = dotted.split("__")
        node = job
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    path.write_text(yaml.safe_dump(job))
    return path


def granite(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    env = dict(env or os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kw,
    )


def finish(p: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def read(out: Path, dataset: str):
    return ds.dataset(out / dataset, format="parquet", partitioning="hive").to_table()


@pytest.fixture(scope="module")
def pushgw():
    with start_pushgateway() as gw:
        yield gw


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, tiny_model, moto, inputs, pushgw):
    tmp = tmp_path_factory.mktemp("run")
    # with compliance on: random weights say nothing it finds, but every commit carries its `scans` row
    compliance = {"terms": [{"phrase": "off the record", "category": "conduct"}], "redact": ["credit_card", "email"]}
    metrics = {"pushgateway_url": pushgw.url, "push_every_s": 0.5}
    job = write_job(tmp / "job.yaml", tiny_model, moto, compliance=compliance, metrics=metrics)
    rc, out, err = finish(granite("run", "--config", str(job), "--output", str(tmp / "out")))
    assert rc == 1, err[-3000:]  # 1: some recordings failed (the bad ones), each with a row
    return tmp, job, out, err


def test_every_input_has_exactly_one_recordings_row(clean_run, inputs):
    tmp, _, out, err = clean_run
    rec = read(tmp / "out", "recordings").to_pylist()
    assert sorted(r["source_uri"].rsplit("/", 1)[1] for r in rec) == sorted(inputs)
    assert len({r["run_id"] for r in rec}) == 1
    by = {r["source_uri"].rsplit("/", 1)[1]: r for r in rec}
    for name, r in by.items():
        assert r["status"] == ("failed" if name.startswith("bad-") else "ok"), r
        assert (r["error"] is None) == (r["status"] == "ok") == (r["error_kind"] is None)
    assert "truncated" in by["bad-truncated.wav"]["error"] and by["bad-truncated.wav"]["error_kind"] == "truncated"
    assert by["bad-empty.wav"]["error_kind"] == "empty" and by["bad-garbage.mp3"]["error_kind"] in KINDS
    assert by["quiet-0006.wav"]["segments"] == 0
    assert by["tel-0001.wav"]["channels"] == 2 and by["tel-0001.wav"]["sample_rate"] == 8000
    assert "manifest:" in out and "3 failed" in err
    assert "Token authentication" not in err  # embedded Ray: auth on (Ray's default), without its notice


def test_segments_are_one_per_block_sorted_and_inside_the_recording(clean_run, moto):
    tmp, job, _, _ = clean_run
    seg = read(tmp / "out", "segments")
    assert [(f.name, f.type) for f in seg.drop_columns(["date"]).schema] == [(f.name, f.type) for f in SEGMENTS]
    rows = seg.to_pylist()
    check_segments(rows)
    rec = {r["recording_id"]: r for r in read(tmp / "out", "recordings").to_pylist()}
    # Exactly the blocks `plan` cuts: one segment per non-silent block, same times.
    cfg = load_config(job, {"input.endpoint_url": moto.endpoint_url})
    run_plan(cfg, tmp / "plan", workers=1)
    blocks = ds.dataset(tmp / "plan" / "blocks.parquet").to_table().to_pylist()
    assert sorted(
        (b["recording_id"], b["channel"], b["block_index"], b["start_s"], b["end_s"]) for b in blocks
    ) == sorted(tuple(r[k] for k in KEY) for r in rows)
    last: dict[tuple[str, int], float] = {}
    for r in sorted(rows, key=lambda r: (r["recording_id"], r["channel"], r["segment_index"])):
        assert 0 <= r["start_s"] < r["end_s"] <= rec[r["recording_id"]]["duration_s"] + 1e-6
        assert r["start_s"] >= last.get((r["recording_id"], r["channel"]), 0.0)
        last[(r["recording_id"], r["channel"])] = r["end_s"]
        assert r["model_revision"].startswith("local:") and r["keywords"][0] == "Acme"
    tel = [r for r in rows if r["source_uri"].endswith("tel-0001.wav")]
    assert {r["channel_label"] for r in tel} == {"agent", "customer"}
    assert any("Granite" in r["keywords"] for r in rows if r["source_uri"].endswith("call-0002.mp3"))


def test_both_engine_pools_produce_rows(clean_run):
    tmp, *_ = clean_run
    engines = set(read(tmp / "out", "segments").column("engine").to_pylist())
    assert engines == {"a", "b"}


def test_output_reads_in_duckdb_with_the_declared_types(clean_run):
    tmp, *_ = clean_run
    out = tmp / "out"
    q = duckdb.sql(
        f"SELECT s.channel_label, count(*) AS n, sum(s.end_s - s.start_s) AS speech_s, any_value(s.date) AS d "
        f"FROM read_parquet('{out}/segments/*/*.parquet', hive_partitioning = true) s "
        f"JOIN read_parquet('{out}/recordings/*/*.parquet', hive_partitioning = true) r USING (recording_id) "
        f"WHERE r.status = 'ok' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert {row[0] for row in q} >= {"agent", "customer", "mono"}
    types = dict(
        duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{out}/segments/*/*.parquet')").fetchall()[i][:2]
        for i in range(len(SEGMENTS))
    )
    assert types["start_s"] == "DOUBLE" and types["keywords"] == "VARCHAR[]" and types["channel"] == "INTEGER"
    rtypes = dict(
        r[:2] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{out}/recordings/*/*.parquet')").fetchall()
    )
    assert rtypes["processed_at"] == "TIMESTAMP WITH TIME ZONE" and rtypes["date"] == "DATE"  # the hive partition
    assert set(rtypes) == set(RECORDINGS.names) | {"date"}


def test_the_docs_query_finds_the_second_a_word_was_said(clean_run):
    """docs/output.md's query, as printed, on this run's output."""
    tmp, *_ = clean_run
    out = tmp / "out"
    doc = (Path(__file__).resolve().parents[1] / "docs" / "output.md").read_text()
    query = doc.split("-- the second at which a word was said")[1].split("\n", 1)[1].split(";")[0]
    rows = read(out, "segments").to_pylist()
    word = next(w for r in rows for w in r["words"] if w["start_s"] is not None)
    said = duckdb.execute(query.replace("OUTPUT", str(out)).replace("'refund'", "?"), [word["word"]]).fetchall()
    assert said and all(row[2] == word["word"] for row in said)
    assert (word["start_s"], word["end_s"]) in [(row[3], row[4]) for row in said]


def test_the_run_manifest(clean_run):

    tmp, *_ = clean_run
    (path,) = (tmp / "out" / "runs").iterdir()
    m = json.loads(path.read_text())
    assert m["recordings"] == {"listed": 9, "ok": 6, "failed": 3, "skipped": 0}
    assert (
        m["failures_by_reason"]
        and m["audio_hours"] > 0
        and m["engine_workers"] == {"ready": {"a": 1, "b": 1}, "failed": {}, "first_ready_s": ANY}
    )
    # the start-up before the first engine was ready: Ray, listing, model load, within the run's wall
    assert 0 < m["engine_workers"]["first_ready_s"] < m["wall_s"]
    assert m["versions"]["ray"] and m["config"]["input"]["uri"].startswith("s3://")
    assert m["model"]["revisions"][0].startswith("local:")
    # compliance searched every segments file as it was committed: `scan` with these rules has nothing to do
    files = sorted(str(p.relative_to(tmp / "out")) for p in (tmp / "out" / "segments").rglob("*.parquet"))
    scans = read(tmp / "out", "scans").to_pylist()
    assert sorted(r["segments_file"] for r in scans) == files and {r["scan_id"] for r in scans} == {m["run_id"]}


def test_the_runs_metrics_are_in_a_real_pushgateway(clean_run, pushgw):
    """Pushed during the run and at its end, to the group of its job file; the figures equal the
    manifest's. Exit code 1 (some recordings failed): no `last_success` is pushed."""
    tmp, *_ = clean_run
    (path,) = (tmp / "out" / "runs").iterdir()
    m = json.loads(path.read_text())
    got = pushgw.metrics()

    def val(name: str, **labels: str) -> float:
        return sample(got, name, "job", **labels)

    rec = m["recordings"]
    for status in ("ok", "failed", "skipped"):
        assert val("granite_batch_recordings_total", status=status) == rec[status]
    assert val("granite_batch_recordings_listed_total") == rec["listed"]
    assert val("granite_batch_audio_seconds_total") == pytest.approx(m["audio_hours"] * 3600)
    assert val("granite_batch_speech_seconds_total") == pytest.approx(m["speech_hours"] * 3600)
    for path_, n in m["decoded_by"].items():
        assert val("granite_batch_segments_total", decoded_by=path_) == n
    kinds = m["failures_by_reason"]  # a fixed set (errors.KINDS): the free text can name an object
    assert kinds and set(kinds) <= set(KINDS)
    assert all(val("granite_batch_failures_total", reason=k) == n for k, n in kinds.items())
    labels = {v for k in got for name, v in k[1] if name == "reason"}
    assert labels == set(kinds)
    assert val("granite_batch_engine_workers", pool="a", state="ready") == 1
    assert val("granite_batch_engine_workers", pool="b", state="failed") == 0
    assert val("granite_batch_exit_code") == 1 and val("granite_batch_run_finished") == 1
    assert val("granite_batch_run_info", run_id=m["run_id"]) == 1
    assert val("granite_batch_rtfx") == pytest.approx(m["rtfx"], rel=0.05)
    assert 0 < val("granite_batch_engine_first_ready_seconds") < val("granite_batch_run_wall_seconds")
    assert not [k for k in got if k[0] == "granite_batch_last_success_timestamp_seconds"]


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is installed by tests/run.sh")
def test_a_real_prometheus_fires_the_charts_alert_on_the_runs_metrics(clean_run, pushgw, tmp_path):
    """Run -> Pushgateway -> Prometheus (Debian's, scraping it with honor_labels) -> the chart's
    rules: 3 of the 9 recordings failed, over the 5% threshold, so that alert fires; the run
    itself did not fail (exit code 1) and both pools had a worker, so those stay quiet."""
    chart = Path(__file__).resolve().parents[1] / "helm" / "granite-batch"
    sets = ["metrics.prometheusRule.enabled=true", "job.metrics.grouping.job_file=job"]
    r = subprocess.run(
        ["helm", "template", "rel", str(chart), *[a for x in sets for a in ("--set", x)]],
        capture_output=True,
        text=True,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/gb-helm", "HELM_CONFIG_HOME": "/tmp/gb-helm"},
    )
    assert r.returncode == 0, r.stderr
    (rule,) = [d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "PrometheusRule"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    gw = pushgw.url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [{"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": [gw]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
            + [f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        firing: dict[str, dict] = {}
        deadline = time.monotonic() + 60
        while "GraniteBatchFailedRecordings" not in firing and time.monotonic() < deadline:
            time.sleep(1)
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=2).read()
            except OSError:
                continue
            alerts = json.loads(body)["data"]["alerts"]
            firing = {a["labels"]["alertname"]: a for a in alerts if a["state"] == "firing"}
        assert "GraniteBatchFailedRecordings" in firing, (tmp_path / "prometheus.log").read_text()[-3000:]
        a = firing["GraniteBatchFailedRecordings"]
        assert a["labels"]["job_file"] == "job" and float(a["value"]) == pytest.approx(3 / 9)
        assert "33.33%" in a["annotations"]["summary"]
        assert not {"GraniteBatchRunFailed", "GraniteBatchEnginePoolDown"} & set(firing)
    finally:
        prom.terminate()
        prom.wait(10)


def test_a_rerun_does_no_new_work(clean_run, inputs, pushgw):
    tmp, job, _, _ = clean_run
    before = sorted(p.name for p in (tmp / "out" / "segments").rglob("*.parquet"))
    t0 = time.monotonic()
    rc, out, err = finish(granite("run", "--config", str(job), "--output", str(tmp / "out")))
    assert rc == 0, err[-2000:]
    assert sorted(p.name for p in (tmp / "out" / "segments").rglob("*.parquet")) == before
    assert "EngineWorker" not in err and time.monotonic() - t0 < 60  # no engine was started
    # no row per skipped recording (a nightly run over millions would write millions): counted instead
    rec = read(tmp / "out", "recordings").to_pylist()
    first = {r["run_id"] for r in rec}
    assert len(first) == 1 and f"{len(inputs)} skipped (done before)" in err
    manifests = sorted((tmp / "out" / "runs").glob("*.json"))
    assert json.loads(manifests[-1].read_text())["recordings"]["skipped"] == len(inputs)
    # a run that ended with 0 replaced the first run's figures, and set the time of its success
    got = pushgw.metrics()
    assert sample(got, "granite_batch_exit_code", "job") == 0
    assert sample(got, "granite_batch_recordings_total", "job", status="skipped") == len(inputs)
    success = sample(got, "granite_batch_last_success_timestamp_seconds", "job", outcome="success")
    assert abs(success - time.time()) < 120
    # run.skipped_rows: true restores a row for each, naming the run that did it
    env = dict(os.environ, GRANITE_BATCH_RUN__SKIPPED_ROWS="true")
    rc, out, err = finish(granite("run", "--config", str(job), "--output", str(tmp / "out"), env=env))
    assert rc == 0, err[-2000:]
    rec = read(tmp / "out", "recordings").to_pylist()
    third = [r for r in rec if r["run_id"] not in first]
    assert len(third) == len(inputs) and {r["status"] for r in third} == {"skipped"}
    assert {r["previous_run_id"] for r in third} == first


def _kill_midway(clean_run, tmp_path, moto, out: Path, committed, sig=signal.SIGKILL, **extra) -> tuple[int, Path]:
    """Start a run on `out`, send its driver `sig` once `committed()` (work pending: one file's GETs
    are held at a proxy), after checking that a second live run is refused. Returns the killed pid
    and a job for the re-run; the driver's exit status is in `_kill_midway.rc`."""
    from tests.services.fault_proxy import FaultProxy

    tmp, job, _, _ = clean_run
    model = Path(load_config(job).model.id)
    host, port = moto.endpoint_url.split("://")[1].split(":")
    # On a fast machine the whole run once fitted in its first commit. Two decode slots: the held
    # file takes one, the rest flow through the other.
    with FaultProxy(upstream=(host, int(port)), slowdown=0, reset=0, cut=0, hold="voicemail-0005.mp3") as proxy:
        held = write_job(
            tmp_path / "held.yaml",
            model,
            _Endpoint(proxy.endpoint_url),
            output__commit_every_s=0.01,
            run__decode_cpus=0.5,
            **extra,
        )
        p = granite("run", "--config", str(held), "--output", str(out))
        deadline = time.monotonic() + 240
        while not committed():
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1][-3000:]
            time.sleep(0.05)
        job2 = write_job(tmp_path / "job.yaml", model, moto, output__commit_every_s=0.01, **extra)
        rc, _, err = finish(granite("run", "--config", str(job2), "--output", str(out)))
        assert rc == 3 and "is writing to" in err and f"pid {p.pid})" in err  # two live runs: one is refused
        os.kill(p.pid, sig)
        _kill_midway.rc = p.wait(120)
        with contextlib.suppress(ProcessLookupError):  # none left after a SIGTERM: the driver ended them
            os.killpg(p.pid, signal.SIGKILL)  # Ray's processes die with the driver; make sure for CI
        assert proxy.injected["held"]
    return p.pid, job2


def _resume_at_once(job: Path, out: Path, pid: int) -> None:
    # the dead driver's lease is fresh, but its process is gone: taken over, no wait
    rc, _, err = finish(granite("run", "--config", str(job), "--output", str(out)))
    assert rc in (0, 1), err[-3000:]  # 0 when the bad files had been settled before the kill
    assert f"its process {pid} on this machine has ended" in err


def _same_as_clean(clean_run, seg: list[dict], rec: list[dict], inputs) -> None:
    tmp = clean_run[0]
    settled = [r for r in rec if r["status"] != "skipped"]
    assert sorted(r["source_uri"] for r in settled) == sorted(f"s3://{BUCKET}/{PREFIX}/{n}" for n in inputs)
    check_segments(seg)
    keys = [tuple(r[k] for k in KEY) for r in seg]
    assert len(keys) == len(set(keys)), "duplicate segment rows"
    clean = read(tmp / "out", "segments").to_pylist()
    assert sorted(keys) == sorted(tuple(r[k] for k in KEY) for r in clean)
    texts = {tuple(r[k] for k in KEY): (r["text"], r["decoded_by"], _times(r)) for r in clean}
    # vLLM greedy, batch-independent blocks: the same text, path and word times as the clean run
    assert {tuple(r[k] for k in KEY): (r["text"], r["decoded_by"], _times(r)) for r in seg} == texts


def test_a_killed_run_resumes_without_duplicates_or_losses(clean_run, tmp_path, moto, inputs):
    out = tmp_path / "out"
    pid, job = _kill_midway(clean_run, tmp_path, moto, out, lambda: list((out / "segments").rglob("*.parquet")))
    first = read(out, "recordings").to_pylist()
    assert 0 < len(first) < len(inputs)
    assert "voicemail-0005.mp3" not in {r["source_uri"].rsplit("/", 1)[1] for r in first}
    _resume_at_once(job, out, pid)
    _same_as_clean(clean_run, read(out, "segments").to_pylist(), read(out, "recordings").to_pylist(), inputs)


def test_a_sigterm_ends_the_run_like_ctrl_c(clean_run, tmp_path, moto, inputs, pushgw):
    """Kubernetes stops a pod with SIGTERM: the run commits what is settled, releases the output's
    lock and pushes exit code 143, so the next run starts at once, without a takeover."""
    out = tmp_path / "out"
    metrics = {"pushgateway_url": pushgw.url, "grouping": {"job_file": "sigterm"}}
    committed = lambda: list((out / "segments").rglob("*.parquet"))  # noqa: E731
    _, job = _kill_midway(clean_run, tmp_path, moto, out, committed, sig=signal.SIGTERM, metrics=metrics)
    assert _kill_midway.rc == 143
    assert sample(pushgw.metrics(), "granite_batch_exit_code", "sigterm") == 143
    rc, _, err = finish(granite("run", "--config", str(job), "--output", str(out)))
    assert rc in (0, 1) and "has ended" not in err, err[-3000:]  # the lock was released, not taken over
    _same_as_clean(clean_run, read(out, "segments").to_pylist(), read(out, "recordings").to_pylist(), inputs)


def test_a_killed_delta_run_resumes_with_one_version_per_commit(clean_run, tmp_path, moto, inputs):
    """output.format: delta, killed after its first commit and resumed at once: the clean run's rows,
    each batch one Delta version per table (application transactions: run id and sequence)."""
    from deltalake import DeltaTable

    out = tmp_path / "out"
    pid, job = _kill_midway(
        clean_run, tmp_path, moto, out, lambda: (out / "recordings" / "_delta_log").exists(), output__format="delta"
    )
    _resume_at_once(job, out, pid)
    seg, rec = (DeltaTable(str(out / t)).to_pyarrow_table().to_pylist() for t in ("segments", "recordings"))
    _same_as_clean(clean_run, seg, rec, inputs)
    manifests = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert manifests[-1]["output"]["format"] == "delta"
    for table in ("segments", "recordings"):
        dt = DeltaTable(str(out / table))
        batches = [(c["granite_run_id"], c["granite_commit"]) for c in dt.history() if "granite_run_id" in c]
        assert len(batches) == len(set(batches))  # each batch once: no commit repeated
        undone = [c for c in dt.history() if "granite_undo" in c]
        assert dt.version() + 1 == len(batches) + len(undone)  # every version is a batch (or its undoing)
        # time travel: the table as the re-run left it, by the version its manifest records
        version = manifests[-1]["output"]["delta_versions"][table]
        assert DeltaTable(str(out / table), version=version).to_pyarrow_table().num_rows == len(
            seg if table == "segments" else rec
        )


def _times(row) -> tuple:
    return tuple((w["word"], w["start_s"], w["end_s"]) for w in row["words"])


class _Endpoint:
    def __init__(self, url: str | None) -> None:
        self.endpoint_url = url


def test_run_joins_an_existing_ray_cluster(tmp_path, tiny_model, moto, inputs):
    """`--address`: what a KubeRay job does. A head started with `ray start`, the driver joins it."""
    from tests.services.s3 import free_port

    port = free_port()
    # Token auth off on both sides, as on a KubeRay cluster without authOptions.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    subprocess.run(
        [
            "ray",
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--object-store-memory=300000000",
            "--include-dashboard=false",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    try:
        job = write_job(
            tmp_path / "job.yaml",
            tiny_model,
            moto,
            input__include=["call-0002.mp3", "bad-empty.wav"],
            engine__pools=[{"name": "cpu", "device": "cpu", "replicas": 1, "cpus": 1}],
        )
        rc, _, err = finish(
            granite(
                "run",
                "--config",
                str(job),
                "--output",
                str(tmp_path / "out"),
                "--address",
                f"127.0.0.1:{port}",
                env=env,
            )
        )
        assert rc == 1 and "1 failed" in err, err[-3000:]
        rec = {r["source_uri"].rsplit("/", 1)[1]: r["status"] for r in read(tmp_path / "out", "recordings").to_pylist()}
        assert rec == {"call-0002.mp3": "ok", "bad-empty.wav": "failed"}
        check_segments(read(tmp_path / "out", "segments").to_pylist())
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, env=env)


def test_a_pool_that_never_gets_its_node_does_not_block_the_run(tmp_path, tiny_model, moto, inputs):
    """Pool `b` asks for a Ray resource no node has (a GPU pool on a cluster still scaling up):
    the run goes ahead on pool `a`. Every block is taken from CTC here (a threshold no block
    misses): through Ray and into the lake, none of them reaches the LLM."""
    import json

    job = write_job(
        tmp_path / "job.yaml",
        tiny_model,
        moto,
        input__include=["call-0002.mp3"],
        engine__pools=[
            {"name": "a", "device": "cpu", "replicas": 1, "cpus": 1},
            {"name": "b", "device": "cpu", "replicas": 1, "cpus": 1, "resources": {"vllm_cpu": 1}},
        ],
        decoding__ctc_threshold=1e9,
        metrics__pushgateway_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )
    rc, out, err = finish(granite("run", "--config", str(job), "--output", str(tmp_path / "out")))
    assert rc == 0, err[-3000:]
    # a Pushgateway that is down costs one warning, never the run
    assert err.count("metrics: could not push to the Pushgateway") == 1, err[-3000:]
    seg = read(tmp_path / "out", "segments").to_pylist()
    check_segments(seg)
    assert {r["engine"] for r in seg} == {"a"} and {r["decoded_by"] for r in seg} == {"ctc"}
    (m,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").iterdir()]
    assert m["engine_workers"]["ready"] == {"a": 1, "b": 0}
    assert m["decoded_by"] == {"ctc": len(seg), "verified": 0, "llm": 0}
    assert f"{len(seg)} segments from CTC as is" in err


def test_a_model_that_cannot_load_fails_the_run_clearly(tmp_path, moto, inputs, pushgw):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    job = write_job(
        tmp_path / "job.yaml",
        bad,
        moto,
        input__include=["call-0002.mp3"],
        engine__pools=[{"name": "a", "device": "cpu", "replicas": 1, "cpus": 1}],
        metrics__pushgateway_url=pushgw.url,
        metrics__grouping={"job_file": "broken-model"},
    )
    rc, _, err = finish(granite("run", "--config", str(job), "--output", str(tmp_path / "out")))
    assert rc == 3 and "run failed: engine worker a-0 failed to start" in err, err[-3000:]
    # the failed night reaches the metrics: its exit code (3: the run itself failed)
    got = pushgw.metrics()
    assert sample(got, "granite_batch_exit_code", "broken-model") == 3
    assert sample(got, "granite_batch_run_finished", "broken-model") == 1
    assert not [
        k
        for k in got
        if k[0] == "granite_batch_last_success_timestamp_seconds" and ("job_file", "broken-model") in k[1]
    ]
    assert "granite-batch doctor" in err  # a start-up failure points to the check
    assert not list((tmp_path / "out").glob("segments/*/*.parquet"))


def test_s3_faults_are_retried_and_the_output_matches_a_clean_run(clean_run, moto, tmp_path, inputs):
    """Throttling (503 SlowDown), connection resets and bodies cut mid-transfer on a share of all
    S3 requests, input and output: the result must equal the clean run's."""
    import pyarrow.fs as pafs

    from tests.services.fault_proxy import FaultProxy

    tmp, job, _, _ = clean_run
    host, port = moto.endpoint_url.split("://")[1].split(":")
    upload_tree(moto, "faulted", "keep", {})
    with FaultProxy(upstream=(host, int(port))) as proxy:
        faulty = write_job(tmp_path / "job.yaml", Path(load_config(job).model.id), _Endpoint(proxy.endpoint_url))
        rc, _, err = finish(granite("run", "--config", str(faulty), "--output", "s3://faulted/out"))
    assert rc == 1 and "3 failed" in err, err[-3000:]  # the three bad files, nothing else
    assert proxy.injected["slowdown"] and proxy.injected["reset"] and proxy.injected["cut"], proxy.injected
    fs = pafs.S3FileSystem(
        endpoint_override=f"{host}:{port}",
        scheme="http",
        access_key=moto.access_key,
        secret_key=moto.secret_key,
        region=moto.region,
    )
    seg = ds.dataset("faulted/out/segments", filesystem=fs, partitioning="hive").to_table().to_pylist()
    check_segments(seg)
    clean = read(tmp / "out", "segments").to_pylist()
    assert {tuple(r[k] for k in KEY): r["text"] for r in seg} == {tuple(r[k] for k in KEY): r["text"] for r in clean}
    assert len(seg) == len(clean)


def test_a_manifest_run_into_delta_carries_each_rows_columns(tmp_path, tiny_model, moto, inputs, corpus):
    """jobs/data-lake-enrichment.yaml's shape: a CSV manifest on S3 naming objects in two buckets
    (and two bad rows) in, Delta tables out; the rows' own columns come back in recordings.meta."""
    from deltalake import DeltaTable

    upload_tree(moto, "archive-2", "old", {"call.flac": corpus.formats["flac"]})
    manifest = tmp_path / "nightly.csv"
    manifest.write_text(
        "uri,crm_id,language,channel_labels,keywords\n"
        f's3://{BUCKET}/{PREFIX}/tel-0001.wav,00123,fr,"caller,advisor",\n'
        f's3://{BUCKET}/{PREFIX}/call-0004.flac,00124,,,"Acme, escrow"\n'
        "s3://archive-2/old/call.flac,00125,,,\n"
        f"s3://{BUCKET}/{PREFIX}/gone.wav,00126,,,\n"
        "calls/relative.wav,00127,,,\n"
    )
    upload_tree(moto, "catalog", "exports", {"nightly.csv": manifest})
    job = write_job(tmp_path / "job.yaml", tiny_model, moto, output__format="delta")
    out = tmp_path / "out"
    rc, _, err = finish(
        granite("run", "--config", str(job), "--input", "s3://catalog/exports/nightly.csv", "--output", str(out))
    )
    assert rc == 1, err[-3000:]  # 1: the two bad rows failed, each with its row
    rec = {dict(r["meta"])["crm_id"]: r for r in DeltaTable(str(out / "recordings")).to_pyarrow_table().to_pylist()}
    assert sorted(rec) == ["00123", "00124", "00125", "00126", "00127"]
    assert [rec[k]["status"] for k in ("00123", "00124", "00125")] == ["ok"] * 3
    assert rec["00126"]["error"] == "manifest row 4: no such object" and rec["00126"]["error_kind"] == "no_such_object"
    assert rec["00127"]["error"] == "manifest row 5: not an s3:// URI or an absolute path"
    assert rec["00127"]["error_kind"] == "bad_manifest_row"
    assert rec["00123"]["language"] == "fr" and rec["00125"]["source_uri"] == "s3://archive-2/old/call.flac"
    seg = DeltaTable(str(out / "segments")).to_pyarrow_table().to_pylist()
    tel = [s for s in seg if s["recording_id"] == rec["00123"]["recording_id"]]
    assert tel and {s["channel_label"] for s in tel} <= {"caller", "advisor"} and {s["language"] for s in tel} == {"fr"}
    flac = [s for s in seg if s["recording_id"] == rec["00124"]["recording_id"]]
    assert flac and {"Acme", "escrow"} <= set(flac[0]["keywords"])
