"""The reliability scenario: every bad-input kind (bad_inputs.py) and good calls in one real S3
store, a clean run, then a faulted sequence of runs through a fault-injecting proxy, checked
against the clean run. tests/test_reliability.py asserts on its report; bench/reliability.py
writes it to docs/reliability.md.

The faulted sequence, all into one output, every S3 request (input and output) through the proxy
(503 SlowDown, resets, bodies cut mid-transfer on a share of requests):
  A  the driver is SIGKILLed after its first commit (the 6-hour file's GETs are held: work is pending);
  O  the output store is down from the start: the run must fail loudly and write nothing;
  B  resumes; the output goes down after its first commit: it must fail loudly, losing nothing;
  C  resumes; one decode worker and one engine worker are SIGKILLed mid-task (Ray retries them);
     the race kinds are armed here (deleted / overwritten between list and get);
  D  a re-run: only the overwritten object's new version is new work.
A and B leave the race kinds out (`input.exclude`): an object deleted while a killed run had it
in flight would otherwise vanish from every later listing with no row, by design.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import yaml

from pipeline.config import InputConfig
from tests import corpus as C
from tests.bad_inputs import KINDS, Kind, write_kinds
from tests.invariants import check_segments
from tests.services.fault_proxy import FaultProxy
from tests.services.s3 import S3Service

BUCKET, PREFIX, LAKE, MODELS = "reliability", "archive/2026-11-25", "lake", "models"
GOOD = ("mp3", "flac", "opus", "m4a_moov_end", "ogg_vorbis", "wav_mulaw")  # the stereo call in these formats
SEGMENT_KEY = ("channel", "segment_index", "start_s", "end_s", "text")


@dataclass
class RunLog:
    name: str
    rc: int
    wall_s: float
    stderr_tail: str


@dataclass
class Report:
    kinds: int
    inputs: int  # recordings in: the start listing plus objects new by the end (an overwrite)
    accounted: int  # of those, recordings with exactly one settled (ok/failed) row in the faulted output
    duplicate_rows: int  # settled recordings rows beyond one per recording + segment rows beyond one per key
    diff_vs_clean: int  # segment rows (or statuses) that differ from the clean run
    faults: Counter[str]
    runs: list[RunLog]
    problems: list[str] = field(default_factory=list)  # kinds or checks not as expected
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> its final row
    leaks: list[str] = field(default_factory=list)  # where a credential was found
    escaped: list[str] = field(default_factory=list)  # objects written outside the output prefixes
    clean_s: float = 0.0

    @property
    def fault_total(self) -> int:
        return sum(self.faults.values())

    def last_line(self) -> str:
        return (
            f"accounted={self.accounted}/{self.inputs} duplicates={self.duplicate_rows} "
            f"diff_vs_clean={self.diff_vs_clean} faults={self.fault_total}"
        )


def run_scenario(svc: S3Service, tiny_model: Path, work: Path, log=print) -> Report:
    """The whole scenario; `work` should be a short path (Ray's socket paths live under it)."""
    work.mkdir(parents=True, exist_ok=True)
    s3 = svc.client()
    kinds = write_kinds(work / "kinds")
    good = _good_calls(work / "good")
    _upload(s3, kinds, good)
    model_uri = _mirror_model(svc, tiny_model, work)
    sentinel = work / "remote-code-ran"
    start_listing = _listing(s3)
    before_runs = _everything(s3)
    host, port = svc.endpoint_url.split("://")[1].split(":")
    runs: list[RunLog] = []
    env = _env(
        svc,
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        RAY_TMPDIR=str(work / "ray"),
        GRANITE_REMOTE_CODE_SENTINEL=str(sentinel),
    )
    (work / "ray").mkdir(exist_ok=True)

    def job(name: str, endpoint: str, **extra: Any) -> Path:
        cfg = {
            "input": {"uri": f"s3://{BUCKET}/{PREFIX}/", "endpoint_url": endpoint},
            "model": {"id": model_uri, "endpoint_url": svc.endpoint_url, "cache_dir": str(work / "model-cache")},
            "engine": {
                "dtype": "float32",
                "batch_blocks": 8,
                "pools": [{"name": "cpu", "device": "cpu", "replicas": 1, "cpus": 1, "slots": 2}],
            },
            "output": {"endpoint_url": endpoint, "commit_every_s": 0.5, "lock_stale_s": 5},
            "run": {"num_cpus": 2, "decode_cpus": 0.5, "object_store_gib": 0.3, "progress_every_s": 5},
        }
        for dotted, v in extra.items():
            *parents, leaf = dotted.split("__")
            node = cfg
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = v
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def start(name: str, cfg: Path, output: str) -> tuple[subprocess.Popen[bytes], float]:
        log(f"run {name} ...")
        out, err = open(work / f"{name}.out", "wb"), open(work / f"{name}.err", "wb")
        p = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", "--config", str(cfg), "--output", output],
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        return p, time.monotonic()

    def finish(name: str, p: subprocess.Popen[bytes], t0: float, timeout: float = 600) -> RunLog:
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait()
        _reap(p)
        r = RunLog(name, rc, time.monotonic() - t0, (work / f"{name}.err").read_text(errors="replace")[-3000:])
        log(f"run {name}: exit {rc} in {r.wall_s:.0f} s")
        runs.append(r)
        return r

    # The clean run: straight to the store, no faults.
    t0 = time.monotonic()
    finish("clean", *start("clean", job("clean", svc.endpoint_url), f"s3://{LAKE}/clean"))
    clean_s = time.monotonic() - t0

    faults: Counter[str] = Counter()
    out_uri, out_prefix = f"s3://{LAKE}/faulted", "faulted/"
    six_hours = _quoted_path(next(k for k in KINDS if k.name == "six-hours"))
    with FaultProxy(upstream=(host, int(port))) as proxy:
        early = job(
            "early", proxy.endpoint_url, input__exclude=[*InputConfig.model_fields["exclude"].default, "race/*"]
        )
        # A: killed after its first commit, the 6-hour file held in flight.
        proxy.hold = six_hours
        p, t = start("A", early, out_uri)
        # (Ray Data holds back a window's last rows until its slowest task ends, so the first
        # commit may carry only failed recordings: those settle without an engine.)
        _wait_for(lambda: _objects(s3, LAKE, out_prefix + "recordings/"), p, 300)
        os.killpg(p.pid, signal.SIGKILL)
        faults["driver killed"] += 1
        finish("A", p, t)
        proxy.release()
        time.sleep(5.5)  # A's lock goes stale (output.lock_stale_s=5)
        # O: the output store is unreachable from the start.
        before = _objects(s3, LAKE, out_prefix)
        proxy.down = f"/{LAKE}/"
        finish("O", *start("O", early, out_uri))
        proxy.down = None
        if _objects(s3, LAKE, out_prefix) != before:
            runs[-1].stderr_tail += "\n[harness] run O changed the output"
        # B: resumes; the output goes down after its first commit.
        proxy.hold = six_hours
        seen = _run_ids(s3, out_prefix)  # A's, including its interrupted commit (B finishes that first)
        p, t = start("B", early, out_uri)
        _wait_for(lambda: _run_ids(s3, out_prefix + "recordings/") - seen, p, 300)  # B's own first commit
        proxy.down = f"/{LAKE}/"
        proxy.release()
        finish("B", p, t)
        proxy.down = None
        time.sleep(5.5)
        # C: resumes with the race kinds armed, and worker kills.
        _arm_races(proxy, svc)
        p, t = start("C", job("C", proxy.endpoint_url), out_uri)
        titles: set[str] = set()
        killer = threading.Thread(target=_kill_workers, args=(p, faults, titles), daemon=True)
        killer.start()
        finish("C", p, t)
        killer.join(timeout=5)
        log(f"Ray process titles seen in run C: {sorted(titles)}")
        # D: a re-run.
        finish("D", *start("D", job("D", proxy.endpoint_url), out_uri))
        for what in ("slowdown", "reset", "cut", "down", "changed"):
            faults[
                {
                    "slowdown": "S3 503 SlowDown",
                    "reset": "S3 connection reset",
                    "cut": "S3 body cut mid-transfer",
                    "down": "output store unreachable (requests refused)",
                    "changed": "object deleted or overwritten after listing",
                }[what]
            ] += proxy.injected[what]

    report = _check(svc, s3, start_listing, runs, faults, clean_s)
    report.leaks = _leaks(svc, work)
    report.escaped = _escaped(s3, before_runs)
    if sentinel.exists():
        report.problems.append("the model's remote code ran (trust_remote_code must stay off)")
    return report


# -- setup -----------------------------------------------------------------------------------------
def _good_calls(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    call = C.make_call(C.speech_utterances()[:4], [0.6, 1.0, 0.5, 1.2, 0.8], channels=2)
    return {
        key: C.encode(call.samples, call.rate, fmt, root / key.replace("/", "-"))
        for fmt, key in zip(GOOD, _good_keys())
    }


def _upload(s3: Any, kinds: dict[str, Path], good: dict[str, Path]) -> None:
    for b in (BUCKET, LAKE, MODELS):
        s3.create_bucket(Bucket=b)
    for k in KINDS:
        s3.upload_file(str(kinds[k.name]), BUCKET, f"{PREFIX}/{k.key}")
    for key, path in good.items():
        s3.upload_file(str(path), BUCKET, f"{PREFIX}/{key}")
    denied = [k for k in KINDS if k.race == "deny"]
    s3.put_bucket_policy(
        Bucket=BUCKET,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": [f"arn:aws:s3:::{BUCKET}/{PREFIX}/{k.key}" for k in denied],
                    }
                ],
            }
        ),
    )


def _mirror_model(svc: S3Service, tiny: Path, work: Path) -> str:
    """The tiny model, mirrored to S3 (verified by sha256 when a worker fetches it), carrying an
    `auto_map` to custom code that would leave a sentinel file if it were ever executed."""
    model = work / "model"
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(tiny, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["auto_map"] = {
        "AutoConfig": "remote_code.Config",
        "AutoModel": "remote_code.Model",
        "AutoModelForSpeechSeq2Seq": "remote_code.Model",
    }
    (model / "config.json").write_text(json.dumps(cfg))
    (model / "remote_code.py").write_text(
        "import os, pathlib\npathlib.Path(os.environ['GRANITE_REMOTE_CODE_SENTINEL']).write_text('ran')\n"
        "raise SystemExit('remote code executed')\n"
    )
    uri = f"s3://{MODELS}/granite-tiny"
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "mirror-model", str(model), uri, "--endpoint-url", svc.endpoint_url],
        capture_output=True,
        text=True,
        env=_env(svc),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return uri


def _env(svc: S3Service, **extra: str) -> dict[str, str]:
    """This store's credentials, whatever other S3 services of the session left in os.environ."""
    return {**os.environ, **svc.env(endpoint=False), **extra}


def _arm_races(proxy: FaultProxy, svc: S3Service) -> None:
    s3 = svc.client()
    for k in KINDS:
        key = f"{PREFIX}/{k.key}"
        if k.race == "delete":
            proxy.before_first_get[_quoted_path(k)] = lambda key=key: s3.delete_object(Bucket=BUCKET, Key=key)
        elif k.race == "replace":
            proxy.before_first_get[_quoted_path(k)] = lambda key=key: s3.put_object(
                Bucket=BUCKET,
                Key=key,
                Body=s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/good/call-mp3.mp3")["Body"].read(),
            )


def _quoted_path(k: Kind) -> str:
    from urllib.parse import quote

    return f"/{BUCKET}/{quote(f'{PREFIX}/{k.key}', safe='/~')}"


# -- faults ----------------------------------------------------------------------------------------
def _kill_workers(driver: subprocess.Popen[bytes], faults: Counter[str], titles: set[str]) -> None:
    """SIGKILL one decode task's worker and one engine worker of this run, each mid-task."""
    wanted = {
        "decode worker killed mid-task": "cut_batches",
        "engine worker killed mid-call": "EngineWorker.transcribe",
    }
    deadline = time.monotonic() + 300
    while wanted and driver.poll() is None and time.monotonic() < deadline:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            title = " ".join(proc.info["cmdline"] or [])
            if title.startswith("ray::"):
                titles.add(title[:60])
            for what, marker in list(wanted.items()):
                if title.startswith("ray::") and marker in title and _in_session(proc.info["pid"], driver.pid):
                    try:
                        os.kill(proc.info["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    faults[what] += 1
                    del wanted[what]
        time.sleep(0.05)


def _in_session(pid: int, leader: int) -> bool:
    try:
        return os.getsid(pid) == leader
    except OSError:
        return False


def _wait_for(cond, p: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if p.poll() is not None or time.monotonic() > deadline:
            return  # the run's exit code and stderr tell the story
        time.sleep(0.1)


def _reap(p: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)  # Ray's processes end with the driver; make sure
    except ProcessLookupError:
        pass


# -- checks ----------------------------------------------------------------------------------------
def _listing(s3: Any) -> dict[tuple[str, str], int]:
    """(key, etag) -> size of every recording under the input prefix (empty folder markers aside)."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX + "/"):
        for o in page.get("Contents", []):
            if not (o["Key"].endswith("/") and o["Size"] == 0):
                out[(o["Key"], o["ETag"].strip('"'))] = o["Size"]
    return out


def _objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def _run_ids(s3: Any, prefix: str) -> set[str]:
    """Run ids in the names of files under `prefix` (`<run_id>-<seq>.parquet`, staging and markers alike)."""
    return {k.rsplit("/", 1)[-1][:23] for k in _objects(s3, LAKE, prefix) if k.endswith((".parquet", ".json"))}


def _table(svc: S3Service, path: str) -> list[dict[str, Any]]:
    host = svc.endpoint_url.split("://")[1]
    fs = pafs.S3FileSystem(
        endpoint_override=host, scheme="http", access_key=svc.access_key, secret_key=svc.secret_key, region=svc.region
    )
    try:
        return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table().to_pylist()
    except FileNotFoundError:
        return []


def _check(
    svc: S3Service, s3: Any, start: dict[tuple[str, str], int], runs: list[RunLog], faults: Counter[str], clean_s: float
) -> Report:
    problems: list[str] = []
    end = _listing(s3)
    inputs = {**start, **end}
    rows = _table(svc, f"{LAKE}/faulted/recordings")
    settled: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] != "skipped":
            settled.setdefault((r["source_uri"].split("/", 3)[3], r["source_etag"]), []).append(r)
    accounted = sum(1 for k in inputs if len(settled.get(k, [])) == 1)
    problems += [f"no row for {k[0]}" for k in inputs if k not in settled]
    dup_rec = sum(len(v) - 1 for v in settled.values())
    segs = _table(svc, f"{LAKE}/faulted/segments")
    try:
        check_segments(segs)
    except AssertionError as err:
        problems.append(f"a segment row breaks the words/decoded_by invariants: {str(err)[:300]}")
    keys = Counter((s["recording_id"], s["channel"], s["segment_index"]) for s in segs)
    duplicates = dup_rec + sum(n - 1 for n in keys.values())

    # Against the clean run: the same statuses, and the same segments for every ok recording.
    clean = {(r["source_uri"].split("/", 3)[3], r["source_etag"]): r for r in _table(svc, f"{LAKE}/clean/recordings")}
    clean_segs = _segments_by_recording(_table(svc, f"{LAKE}/clean/segments"))
    faulted_segs = _segments_by_recording(segs)
    race_keys = {f"{PREFIX}/{k.key}" for k in KINDS if k.race in ("delete", "replace")}
    diff = 0
    for key, c in clean.items():
        if key[0] in race_keys or key not in settled:
            continue
        f = settled[key][0]
        if f["status"] != c["status"]:
            diff += 1
            problems.append(f"{key[0]}: {f['status']} here, {c['status']} in the clean run ({f['error']})")
        elif c["status"] == "ok":
            diff += len(clean_segs.get(c["recording_id"], set()) ^ faulted_segs.get(f["recording_id"], set()))

    by_kind = {}
    for k in KINDS:
        key = f"{PREFIX}/{k.key}"
        got = [r for (uri, etag), rs in settled.items() if uri == key and (uri, etag) in start for r in rs]
        row = got[0] if got else None
        by_kind[k.name] = row or {}
        if k.expect == "not listed":
            if row is not None:
                problems.append(f"{k.name}: an empty folder marker got a row")
            continue
        if row is None:
            continue  # already reported as "no row"
        ok = row["status"] == k.expect and (row["error"] or "").startswith(k.reason)
        ok = ok and row.get("error_kind") == (k.error_kind or None)
        if ok and k.expect == "ok":
            ok = (row["segments"] > 0) == k.speech
        if not ok:
            problems.append(
                f"{k.name}: expected {k.expect} {k.error_kind or ''} {k.reason!r} (speech={k.speech}), got "
                f"{row['status']} {row.get('error_kind')} {row['error']!r} with {row['segments']} segments"
            )
    for key in (k for k in inputs if k[0].startswith(f"{PREFIX}/good/")):
        if settled.get(key, [{}])[0].get("status") != "ok":
            problems.append(f"good file {key[0]} not ok")
    expected_rc = {"clean": 1, "A": -signal.SIGKILL, "O": 3, "B": 3, "C": 1, "D": 0}
    for r in runs:
        if r.rc != expected_rc[r.name]:
            problems.append(f"run {r.name}: exit {r.rc}, expected {expected_rc[r.name]}:\n{r.stderr_tail}")
    for name, needle in (("O", "is not usable"), ("B", "cannot commit")):
        r = next(x for x in runs if x.name == name)
        if needle not in r.stderr_tail:
            problems.append(f"run {name} did not say {needle!r}:\n{r.stderr_tail}")
    return Report(
        len(KINDS), len(inputs), accounted, duplicates, diff, faults, runs, problems, by_kind, clean_s=clean_s
    )


def _segments_by_recording(segs: list[dict[str, Any]]) -> dict[str, set[tuple[Any, ...]]]:
    out: dict[str, set[tuple[Any, ...]]] = {}
    for s in segs:
        out.setdefault(s["recording_id"], set()).add(tuple(s[k] for k in SEGMENT_KEY))
    return out


def _leaks(svc: S3Service, work: Path) -> list[str]:
    """Every place a credential could end up: run output and logs, Ray's logs, the output store."""
    secrets = [svc.secret_key.encode()]
    found = []
    for path in [*work.glob("*.out"), *work.glob("*.err"), *(work / "ray").rglob("*")]:
        if path.is_file() and any(s in path.read_bytes() for s in secrets):
            found.append(str(path))
    s3 = svc.client()
    for key in _objects(s3, LAKE, ""):
        body = s3.get_object(Bucket=LAKE, Key=key)["Body"].read()
        text = repr(_table(svc, f"{LAKE}/{key}")).encode() if key.endswith(".parquet") else body
        if any(s in body or s in text for s in secrets):
            found.append(f"s3://{LAKE}/{key}")
    return found


def _everything(s3: Any) -> set[str]:
    return {f"s3://{b['Name']}/{k}" for b in s3.list_buckets()["Buckets"] for k in _objects(s3, b["Name"], "")}


def _escaped(s3: Any, before: set[str]) -> list[str]:
    """Objects the runs wrote anywhere in the store but under their output prefixes (keys with
    ../ must not lead anywhere). The store may be shared with other tests: only new objects count."""
    outputs = (f"s3://{LAKE}/clean/", f"s3://{LAKE}/faulted/")
    return sorted(k for k in _everything(s3) - before if not k.startswith(outputs))


def _good_keys() -> list[str]:
    return [f"good/call-{fmt}.{C.FORMAT_EXT[fmt]}" for fmt in GOOD]
