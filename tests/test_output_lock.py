"""The output's lock (pipeline/lake/lock.py): a dead holder on this machine is taken over at
once, a live one refuses, another machine's waits out its lease, creates are conditional on local
disk and on S3 (moto), a run whose lock was taken over stops, and `unlock` clears it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pipeline.cli import main
from pipeline.errors import OutputError
from pipeline.lake.lock import Holder, LockHeld, OutputLock
from pipeline.lake.parquet import ParquetStore
from pipeline.records.settled import Batch
from tests.conftest import upload_tree


def _lock(tmp_path, lease_s: float = 60.0) -> OutputLock:
    return OutputLock(str(tmp_path / "_lock.json"), str(tmp_path), lease_s)


def _hold(lock: OutputLock, **fields) -> None:
    me = Holder.me("r1").__dict__ | fields
    with open(lock.path, "w") as f:
        json.dump(me, f)


def test_a_dead_process_on_this_machine_is_taken_over_at_once(tmp_path):
    lock = _lock(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    _hold(lock, pid=p.pid, pid_start=None)  # heartbeat now: its lease is fresh
    assert lock.take("r2") == f"its process {p.pid} on this machine has ended"
    assert lock.read().run_id == "r2"


def test_a_reused_pid_is_not_the_holder(tmp_path):
    lock = _lock(tmp_path)
    _hold(lock, pid_start=1)  # our pid, but a process that started at another time
    assert "the pid is another process's now" in lock.take("r2")


def test_a_live_holder_refuses_and_says_who_and_how_long(tmp_path):
    lock = _lock(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _hold(lock, pid=p.pid, pid_start=None)
        with pytest.raises(LockHeld, match=rf"run r1 \(host .*, pid {p.pid}\) is writing to .* expires 60 s from now"):
            lock.take("r2")
    finally:
        p.kill()
        p.wait()


def test_another_machines_holder_waits_out_its_lease(tmp_path):
    lock = _lock(tmp_path, lease_s=0.5)
    _hold(lock, host="elsewhere", pod="audit/granite-batch-head-x")
    with pytest.raises(LockHeld, match="run r1 \\(pod audit/granite-batch-head-x\\)"):
        lock.take("r2")
    time.sleep(0.6)
    assert lock.take("r2") == "no heartbeat for 1 s"


def test_a_run_taken_over_stops_and_unlock_frees_the_output(tmp_path, capsys):
    out = tmp_path / "out"
    store = ParquetStore(str(out))
    store.prepare("r1")
    _hold(store.lock(), run_id="r2", host="elsewhere")  # r2 judged r1 dead and took over
    with pytest.raises(OutputError, match="has taken over the lock .* this run stops"):
        store.heartbeat("r1")
    with pytest.raises(OutputError, match="run r2"):
        store.commit("r1", "r1-00000", "2026-11-30", Batch())
    assert main(["unlock", "--output", str(out)]) == 0
    assert "removed the lock of run r2 (host elsewhere" in capsys.readouterr().err
    assert not os.path.exists(out / "_lock.json")
    store.heartbeat("r1")  # cleared and nobody took it: r1 may carry on
    assert store.lock().read().run_id == "r1"
    assert main(["unlock", "--output", str(out)]) == 0 and main(["unlock", "--output", str(out)]) == 0
    assert capsys.readouterr().out.endswith("no lock\n")


def test_creates_are_conditional_locally_and_on_s3(tmp_path, moto):
    lock = _lock(tmp_path)
    assert lock._create(Holder.me("a")) and not lock._create(Holder.me("b"))
    upload_tree(moto, "locks", "x", {})
    store = ParquetStore("s3://locks/out", moto.endpoint_url)
    s3lock = store.lock()
    assert s3lock.s3 is not None
    a = Holder.me("a")
    assert s3lock._create(a) and not s3lock._create(Holder.me("b"))
    assert s3lock._create(a)  # a create retried by the SDK after its answer was lost: ours after all
    assert s3lock.read().run_id == "a"
    store.release("b")  # not b's: kept
    assert s3lock.read().run_id == "a"


@pytest.mark.ceph
def test_ceph_rgw_takes_conditional_creates(ceph, monkeypatch):
    for k, v in ceph.env(endpoint=False).items():  # moto's credentials may be the session's last set
        monkeypatch.setenv(k, v)
    upload_tree(ceph, "locks", "x", {})
    lock = ParquetStore("s3://locks/out", ceph.endpoint_url).lock()
    assert lock._create(Holder.me("a")) and not lock._create(Holder.me("b"))
    assert lock.s3 is not None and lock.read().run_id == "a"  # no fallback: RGW refused the second with 412


def test_a_run_that_fails_releases_its_lock(tmp_path, capsys):
    """A run that stops on an error (here: its input does not exist) leaves the output free at once."""
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "missing"), "--output", str(out)]) == 2
    assert f"input {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert not (out / "_lock.json").exists()


def test_renewals_from_two_threads_never_tear_the_lock(tmp_path):
    """The heartbeat thread and a commit renew at once (one process): the file stays whole and ours."""
    import threading

    lock = _lock(tmp_path)
    lock.take("r1")
    errors = []

    def renew() -> None:
        try:
            for _ in range(300):
                lock.renew("r1")
        except Exception as err:  # noqa: BLE001 (collected for the assertion)
            errors.append(err)

    threads = [threading.Thread(target=renew) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and lock.read().run_id == "r1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_lock.json"]  # no temporary file left
