"""Stores as pyarrow filesystems (local folders and `s3://` prefixes), for what is written and read
with pyarrow: the output datasets, terms files, redacted audio copies, doctor's probe."""

from __future__ import annotations

import os
from typing import Any

import pyarrow.fs as pafs


def open_filesystem(uri: str, endpoint_url: str | None, region: str | None) -> tuple[pafs.FileSystem, str]:
    if uri.startswith("s3://"):
        # Ceph RGW and others reject the SDK's default CRC checksums on PUT.
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
        kwargs: dict[str, Any] = dict(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=8))
        if endpoint_url:
            scheme, _, host = endpoint_url.partition("://")
            kwargs.update(
                endpoint_override=host or scheme,
                scheme=scheme if host else "https",
                force_virtual_addressing=False,
                region=region or "us-east-1",
            )
        elif region:
            kwargs["region"] = region
        return pafs.S3FileSystem(**kwargs), uri.removeprefix("s3://").rstrip("/")
    path = os.path.abspath(os.path.expanduser(uri))
    return pafs.LocalFileSystem(), path
