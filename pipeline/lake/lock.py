"""One run per output at a time: `OUTPUT/_lock.json`, a lease the holder renews as it works.

Two runs on one output would delete each other's staging files and transcribe the same recordings
twice (a schedule whose runs overlap). So a run takes the lock before it touches the output,
renews it (the driver's heartbeat, every lease/4) and checks it before every commit; a lease not
renewed for `output.lock_stale_s` belongs to a dead run and is taken over.

A dead holder is often known at once, without waiting out its lease: the lock names its host,
boot and process (pid and start time), so a run on the same machine sees that the process is gone
(the run SIGKILLed a moment ago, a container restarted in place) and takes over immediately.
Elsewhere (a pod rescheduled to another node) the short lease decides.

The lock is created with a conditional write, so two runs that both find it free cannot both
take it: `O_EXCL` on local paths, `If-None-Match: *` on S3 (AWS, moto, Ceph RGW; a store that rejects the
header falls back to write-then-read-back, which narrows the race but cannot close it).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
# The heartbeat thread and the main thread (a commit) both renew: one read-modify-write at a time.
_MUTEX = threading.RLock()


def _serialized(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with _MUTEX:
            return method(*args, **kwargs)

    return wrapper


class LockHeld(Exception):
    """Another live run holds the output."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    heartbeat: float  # time.time() of the last renewal
    host: str
    boot_id: str  # this host's boot: pids start again after a reboot
    pid: int
    pid_start: int | None  # the process's start time (clock ticks after boot): pids are reused
    pod: str | None  # namespace/name on Kubernetes, for the operator reading the message

    @classmethod
    def me(cls, run_id: str) -> Holder:
        pid = os.getpid()
        ns = os.environ.get("POD_NAMESPACE")
        pod = os.environ.get("POD_NAME") or (
            socket.gethostname() if os.environ.get("KUBERNETES_SERVICE_HOST") else None
        )
        return cls(
            run_id,
            time.time(),
            socket.gethostname(),
            _boot_id(),
            pid,
            _start_of(pid),
            f"{ns}/{pod}" if ns and pod else pod,
        )

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            d = json.loads(data)
            return cls(
                str(d["run_id"]), float(d.get("heartbeat", 0)), str(d.get("host", "")), str(d.get("boot_id", "")),
                int(d.get("pid", 0)), d.get("pid_start"), d.get("pod"),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):  # torn by a killed writer: no run holds it
            return None

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    def gone(self) -> str | None:
        """Why this holder is known to be dead (a process of this machine that no longer runs); None: unknown."""
        if self.host != socket.gethostname() or not self.pid:
            return None
        if self.boot_id and self.boot_id != _boot_id():
            return "its machine has rebooted since"
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return f"its process {self.pid} on this machine has ended"
        except PermissionError:
            pass  # alive, another user's
        if self.pid_start is not None and _start_of(self.pid) not in (None, self.pid_start):
            return f"its process {self.pid} on this machine has ended (the pid is another process's now)"
        return None

    def describe(self) -> str:
        where = f"pod {self.pod}" if self.pod else f"host {self.host}, pid {self.pid}"
        return f"run {self.run_id} ({where})"


class OutputLock:
    """`path`: the lock's local path, or `bucket/key` with `s3` (a boto3 client) on S3.

    On S3 every operation is one plain request (GET, single-part PUT, DELETE) through boto3,
    never a multipart upload: a multipart completion answered with an error inside a 200 OK (a
    throttling store) may still be completing when its retry runs, so the lock could reappear
    after its holder deleted it."""

    def __init__(self, path: str, uri: str, lease_s: float, s3: Any = None) -> None:
        self.path, self.uri, self.lease_s, self.s3 = path, uri, lease_s, s3
        bucket, _, key = path.partition("/")
        self._at = {"Bucket": bucket, "Key": key}

    def read(self) -> Holder | None:
        data = self._get()
        return None if data is None else Holder.parse(data)

    @_serialized
    def take(self, run_id: str) -> str | None:
        """Take the lock for `run_id`; returns why an earlier holder's lock was taken over (None: it
        was free or ours). Raises LockHeld while another live run holds it."""
        held = self.read()
        why = None
        if held is not None and held.run_id != run_id:
            age = time.time() - held.heartbeat
            why = held.gone() or (f"no heartbeat for {age:.0f} s" if age >= self.lease_s else None)
            if why is None:
                raise LockHeld(
                    f"{held.describe()} is writing to {self.uri} (last heartbeat {age:.0f} s ago); one run per output "
                    f"at a time. If it died, this lock expires {self.lease_s - age:.0f} s from now, or clear it with "
                    f"`granite-batch unlock --output {self.uri}`."
                )
            log.warning("taking over the lock of %s on %s: %s", held.describe(), self.uri, why)
            self._delete()
            held = None
        if held is None:
            if not self._create(Holder.me(run_id)):
                now = self.read()
                raise LockHeld(f"{now.describe() if now else 'another run'} took the lock of {self.uri} first")
        else:
            self.renew(run_id)
        return why

    @_serialized
    def renew(self, run_id: str) -> None:
        """The heartbeat: refresh our lease; raises LockHeld if another run has taken it over (it
        judged us dead, or an operator ran `unlock`): we must stop writing."""
        held = self.read()
        if held is not None and held.run_id != run_id:
            raise LockHeld(f"{held.describe()} has taken over the lock of {self.uri}; this run stops")
        if held is None:  # cleared by `unlock`, nobody took it: ours again
            if not self._create(Holder.me(run_id)):
                raise LockHeld(f"another run has taken over the lock of {self.uri}; this run stops")
            return
        self._put(Holder.me(run_id).encode())

    @_serialized
    def release(self, run_id: str) -> None:
        held = self.read()
        if held is not None and held.run_id == run_id:
            self._delete()

    @_serialized
    def clear(self) -> Holder | None:
        """`granite-batch unlock`: remove whatever lock there is (torn ones too); returns its holder."""
        held = self.read()
        self._delete()
        return held

    def _create(self, me: Holder) -> bool:
        """Create the lock only if it does not exist; False if another run created it first."""
        data = me.encode()
        if self.s3 is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        _, code = self._s3(
            "create", lambda: self.s3.put_object(**self._at, Body=data, IfNoneMatch="*"), REFUSED | _UNSUPPORTED
        )
        if code is None:
            return True
        if code in REFUSED:  # another run's, or ours: the SDK retried a create whose answer was lost
            return self.read() == me
        log.warning(
            "%s does not take conditional writes (If-None-Match); the lock falls back to write-then-read", self.uri
        )
        if self.read() is not None:
            return False
        self._put(data)
        return self.read() == me  # narrows the race; cannot close it

    def _get(self) -> bytes | None:
        if self.s3 is None:
            try:
                with open(self.path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        data, _ = self._s3("read", lambda: self.s3.get_object(**self._at)["Body"].read(), {"NoSuchKey", "404"})
        return data

    def _put(self, data: bytes) -> None:
        if self.s3 is None:
            fd, tmp = tempfile.mkstemp(prefix="_lock.", suffix=".tmp", dir=os.path.dirname(self.path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)  # a reader never sees it half written
            return
        self._s3("write", lambda: self.s3.put_object(**self._at, Body=data))

    def _delete(self) -> None:
        if self.s3 is None:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            return
        self._s3("remove", lambda: self.s3.delete_object(**self._at))

    def _s3(self, what: str, call: Callable[[], T], ok: frozenset[str] = frozenset()) -> tuple[T | None, str | None]:
        """One request on the lock's object (the SDK retries throttling and resets): its result, or
        the error code when that is one of `ok`; OSError on any other failure (so the commit's
        retry with a fresh client applies)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call(), None
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ok:
                return None, code
            raise OSError(f"cannot {what} {self.uri}/_lock.json: {err}") from None
        except BotoCoreError as err:  # connection lost, body cut short
            raise OSError(f"cannot {what} {self.uri}/_lock.json: {err}") from None


REFUSED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_UNSUPPORTED = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest"})


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, after the command in parentheses
    except (OSError, ValueError, IndexError):
        return None
