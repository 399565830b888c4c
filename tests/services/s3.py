"""Shared handle for a locally started S3-compatible service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Self


def free_port() -> int:
    """Ask the kernel for an unused loopback port (tiny race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class S3Service:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    # Child processes, each the leader of its own session/process group.
    procs: tuple[subprocess.Popen[bytes], ...] = field(default=(), repr=False, compare=False)
    # Seconds to wait after SIGTERM before SIGKILL; 0 = SIGKILL at once (throwaway data).
    term_grace_s: float = 5.0
    # Only the process that started the service may stop it: forked children inherit
    # this object (and any atexit hook) but must not tear the server down on exit.
    owner_pid: int = field(default_factory=os.getpid, repr=False, compare=False)

    def stop(self) -> None:
        if os.getpid() != self.owner_pid:
            return
        # Stop in reverse start order (e.g. radosgw before the OSD before the mon).
        for sig in (signal.SIGTERM, signal.SIGKILL) if self.term_grace_s > 0 else (signal.SIGKILL,):
            live = [p for p in reversed(self.procs) if p.poll() is None]
            for p in live:
                try:
                    os.killpg(p.pid, sig)  # whole group: catches helpers the daemon forked
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + (self.term_grace_s if sig == signal.SIGTERM else 10.0)
            for p in live:
                try:
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass

    def env(self, endpoint: bool = True) -> dict[str, str]:
        """AWS_* variables for this service. boto3/aws-cli honour AWS_ENDPOINT_URL_S3;
        pyarrow 26 does not (pass ``endpoint_override=endpoint_url``), it only takes keys/region.
        ``endpoint=False`` leaves it out: credentials only, as a user of an S3-compatible store
        passes the endpoint explicitly (--endpoint-url, input.endpoint_url)."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            # boto3 >= 1.36 adds CRC checksums by default; RGW/older stores reject or mangle them.
            "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED",
            # No instance-metadata probing (slow timeouts on CI machines).
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if not endpoint:
            del env["AWS_ENDPOINT_URL_S3"]
        return env

    def client(self, **config: Any) -> Any:
        """boto3 S3 client for this service; path-style because there is no wildcard DNS."""
        import boto3
        from botocore.config import Config

        cfg = Config(
            **{
                "s3": {"addressing_style": "path"},
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
                "retries": {"max_attempts": 3, "mode": "standard"},
                **config,
            }
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=cfg,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def smoke_test(svc: S3Service, bucket: str = "smoke") -> dict[str, float]:
    """Bucket create, put, ranged get, paginated list; returns per-step seconds."""
    timings: dict[str, float] = {}
    t = time.monotonic()

    def lap(name: str) -> None:
        nonlocal t
        now = time.monotonic()
        timings[name] = now - t
        t = now

    s3 = svc.client()
    s3.create_bucket(Bucket=bucket)
    lap("create_bucket")
    s3.put_object(Bucket=bucket, Key="obj", Body=b"0123456789abcdef")
    lap("put_object")
    body = s3.get_object(Bucket=bucket, Key="obj", Range="bytes=5-9")["Body"].read()
    assert body == b"56789", body
    lap("range_get")
    for i in range(7):
        s3.put_object(Bucket=bucket, Key=f"page/{i:02d}", Body=b"x")
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="page/", PaginationConfig={"PageSize": 3})
    )
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert keys == [f"page/{i:02d}" for i in range(7)] and len(pages) == 3, (keys, len(pages))
    lap("paginated_list")
    return timings
