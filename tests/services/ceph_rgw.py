"""Throwaway single-node Ceph (mon + memstore OSD + radosgw/beast) on 127.0.0.1.

Everything lives under ``workdir``; nothing is read from or written to /etc/ceph or
/var/lib/ceph, so this runs as a plain CI step on a fresh machine with the Debian
packages ceph-mon, ceph-osd and radosgw installed. Tested with Ceph 16.2 (pacific).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import cast

from botocore.exceptions import BotoCoreError, ClientError

from tests.services.s3 import S3Service, free_port, smoke_test

START_TIMEOUT_S = 90.0
ACCESS_KEY = "granitetestaccesskey"
SECRET_KEY = "granitetestsecretkey0123456789abcdefghij"
_log = logging.getLogger(__name__)
BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin")

# Auth is off inside the cluster (S3 auth in radosgw is separate and still enforced);
# one replica, few PGs and few threads keep it small; paths keep it inside workdir.
CONF = """\
[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
# v2 protocol only (the monmap lists v2 only); halves the OSD's listening sockets.
ms_bind_msgr1 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# radosgw defaults to a "secure" (encrypted) mon session, impossible without cephx.
ms_mon_client_mode = crc
keyring = {w}/keyring
run_dir = {w}/run
crash_dir = {w}/crash
mon_data = {w}/mon/$cluster-$id
osd_data = {w}/osd/$cluster-$id
rgw_data = {w}/rgw/$cluster-$id
mon_cluster_log_file = {w}/log/$cluster.$channel.log
# Only the daemons log to files (set per section); CLI tools stay quiet.
log_to_file = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
# Each pool create/setting is a paxos commit; the 1 s default batching makes
# radosgw's first start (about 7 pools) take ~15 s.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
# CI disks are often nearly full; don't let the mon shut itself down over it.
mon_data_avail_crit = 0
mon_data_avail_warn = 0

[mon]
log_to_file = true
log_file = {w}/log/$cluster-$name.log
admin_socket = $run_dir/$cluster-$name.asok
pid_file = $run_dir/$name.pid

[osd]
log_to_file = true
log_file = {w}/log/$cluster-$name.log
admin_socket = $run_dir/$cluster-$name.asok
pid_file = $run_dir/$name.pid
osd_objectstore = memstore
# Logical size reported to the cluster; data only uses RAM as it is written.
memstore_device_bytes = {memstore_bytes}
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[client.rgw.a]
log_to_file = true
log_file = {w}/log/$cluster-$name.log
admin_socket = $run_dir/$cluster-$name.asok
pid_file = $run_dir/$name.pid
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_thread_pool_size = 32
rgw_dynamic_resharding = false
rgw_enable_usage_log = false
"""


def _tail(paths: list[Path], lines: int = 20) -> str:
    out = []
    for p in paths:
        if p.is_file() and not p.name.endswith(".audit.log"):
            text = p.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {p} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(out)


def start_ceph_rgw(workdir: Path, timeout_s: float = START_TIMEOUT_S, memstore_bytes: int = 2 << 30) -> S3Service:
    """Bootstrap the cluster under ``workdir`` and return once radosgw answers S3 requests.

    ``workdir`` is left in place after ``stop()`` (logs under ``workdir/log``); the caller owns it.
    ``memstore_bytes`` is the OSD's advertised capacity; RAM is only used as data is written.
    """
    missing = [b for b in BINARIES if not shutil.which(b)]
    if missing:
        raise RuntimeError(f"Ceph binaries not found: {missing}; apt-get install ceph-mon ceph-osd radosgw")
    w = Path(workdir).resolve()
    for d in ("run", "crash", "log", "mon", "osd", "rgw"):
        (w / d).mkdir(parents=True, exist_ok=True)
    conf, log = w / "ceph.conf", w / "log"
    fsid, mon_port, rgw_port = str(uuid.uuid4()), free_port(), free_port()
    while rgw_port == mon_port:
        rgw_port = free_port()
    conf.write_text(CONF.format(fsid=fsid, w=w, mon_port=mon_port, rgw_port=rgw_port, memstore_bytes=memstore_bytes))
    env = {**os.environ, "CEPH_CONF": str(conf)}
    t0 = deadline = time.monotonic()
    deadline += timeout_s
    procs: list[subprocess.Popen[bytes]] = []

    def kill() -> None:
        # term_grace_s=0: SIGKILL, so the memstore OSD doesn't dump its RAM to disk on the way out.
        S3Service("", "", "", procs=tuple(procs), term_grace_s=0).stop()

    def log_step(what: str) -> None:
        _log.info("%5.1fs %s", time.monotonic() - t0, what)

    def run(*cmd: str) -> str:
        r = subprocess.run(
            [*cmd, "-c", str(conf)],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(1.0, deadline - time.monotonic()),
        )
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
        log_step(cmd[0] + (f" {cmd[1]}" if cmd[0] in ("ceph", "radosgw-admin") else ""))
        return r.stdout

    def daemon(name: str, *cmd: str) -> None:
        with open(log / f"{name}.out", "ab") as out:  # crash dumps land here, not in the log file
            procs.append(
                subprocess.Popen(
                    [*cmd, "-f", "-c", str(conf)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    try:
        # 1. monitor
        monmap = str(w / "monmap")
        run("monmaptool", "--create", "--clobber", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", monmap)
        run("ceph-mon", "--mkfs", "-i", "a", "--monmap", monmap)
        daemon("mon.a", "ceph-mon", "-i", "a")
        # 2. OSD: register an id with the mon (the CLI waits for quorum), mkfs, run.
        osd_uuid = str(uuid.uuid4())
        osd_id = run("ceph", "osd", "new", osd_uuid).strip()
        (w / "osd" / f"ceph-{osd_id}").mkdir(exist_ok=True)
        run("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        daemon(f"osd.{osd_id}", "ceph-osd", "-i", osd_id)
        # 3. S3 user. Blocks until the OSD is up and the pools it creates are active;
        #    runs before radosgw so the two don't race creating the default zone.
        user = ["--uid=test", "--display-name=test", f"--access-key={ACCESS_KEY}", f"--secret={SECRET_KEY}"]
        run("radosgw-admin", "user", "create", *user)
        daemon("rgw.a", "radosgw", "-n", "client.rgw.a")
        svc = S3Service(f"http://127.0.0.1:{rgw_port}", ACCESS_KEY, SECRET_KEY, procs=tuple(procs), term_grace_s=0)
        # 4. Poll until beast listens and the S3 auth path works end to end.
        s3 = svc.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
        while True:
            if dead := [_name(p) for p in procs if p.poll() is not None]:
                raise RuntimeError(f"{dead} exited")
            try:
                s3.list_buckets()
                log_step("S3 list_buckets ok")
                return svc
            except (BotoCoreError, ClientError) as e:  # connection refused until beast listens
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no S3 answer on {svc.endpoint_url} after {timeout_s:.0f}s: {e!r}") from None
                time.sleep(0.2)
    except Exception as e:
        kill()
        raise RuntimeError(f"Ceph RGW failed to start under {w}: {e}\n{_tail(sorted(log.glob('*')))}") from e
    except BaseException:  # KeyboardInterrupt etc.: still leave no daemons behind
        kill()
        raise


def _name(p: subprocess.Popen[bytes]) -> str:
    return str(cast(list[str], p.args)[0])


def _rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="ceph-rgw-") as tmp:
        t0 = time.monotonic()
        svc = start_ceph_rgw(Path(tmp))
        print(f"ceph rgw up at {svc.endpoint_url} in {time.monotonic() - t0:.1f}s")
        try:
            for step, secs in smoke_test(svc).items():
                print(f"  {step}: {secs * 1000:.0f} ms")
            for p in svc.procs:
                rss, peak = _rss_kib(p.pid)
                print(f"  {_name(p):9} pid {p.pid}: rss {rss // 1024} MiB, peak {peak // 1024} MiB")
        finally:
            svc.stop()
    print(f"total {time.monotonic() - t0:.1f}s")
