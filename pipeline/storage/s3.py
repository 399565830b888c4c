"""Talking to S3 and S3-compatible stores (MinIO, Ceph RGW): the one boto3 client configuration,
retries, `s3://` URIs, and a seekable file over ranged GETs. Every reader of a store uses these:
the input (sources/), the model mirror, the output's lock and Delta's probe, and `doctor`.

Retries (throttling, 5xx, connection resets) are botocore's standard retry mode, plus `retrying`
for what botocore does not retry: a response body cut mid-transfer (object data, and also the
small bodies of listings and error answers, which botocore reads outside its retry loop). Every
ranged GET carries `If-Match: <etag>`, so an object replaced after listing fails loudly instead
of mixing two versions.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as TransportError

from ..errors import Failure, SourceError

T = TypeVar("T")
_BODY_ATTEMPTS = 4


def retrying(call: Callable[[], T], what: str, attempts: int = _BODY_ATTEMPTS) -> T:
    """`call()`, again on a transport error botocore let through (a body cut mid-transfer);
    S3's own answers (ClientError: 403, 404, 412...) are final."""
    for attempt in range(attempts):
        try:
            return call()
        except (BotoCoreError, TransportError) as err:
            if attempt + 1 == attempts:
                raise SourceError(
                    "unreadable", f"{what} failed {attempts} times: {type(err).__name__}: {err}"
                ) from None
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise SourceError("unreadable", f"not an s3://bucket/prefix URI: {uri}")
    return bucket, key


def s3_client(endpoint_url: str | None, region: str | None = None, max_attempts: int = 8) -> Any:
    cfg = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=32,
        # S3-compatible stores (MinIO, Ceph) have no wildcard DNS and vary in checksum support.
        s3={"addressing_style": "path"} if endpoint_url else None,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=cfg)


class RangeReader(io.RawIOBase):
    """A seekable read-only file over one S3 object, fetched in `chunk`-sized ranged GETs."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str, chunk: int) -> None:
        self._client, self._bucket, self._key, self._etag = client, bucket, key, etag
        self._size, self._chunk = size, chunk
        self._pos = 0
        self._buf, self._buf_at = b"", 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, b: Any) -> int:
        if self._pos >= self._size:
            return 0
        if not (self._buf_at <= self._pos < self._buf_at + len(self._buf)):
            self._fetch(self._pos)
        start = self._pos - self._buf_at
        n = min(len(b), len(self._buf) - start)
        b[:n] = self._buf[start : start + n]
        self._pos += n
        return n

    def _fetch(self, pos: int) -> None:
        end = min(pos + self._chunk, self._size) - 1

        def get() -> bytes:
            self.requests += 1
            resp = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={pos}-{end}", IfMatch=self._etag
            )
            return resp["Body"].read()

        try:
            self._buf = retrying(get, "read")
        except ClientError as err:  # botocore has already retried throttling and 5xx
            raise SourceError.of(read_failure(err)) from None
        self._buf_at = pos
        if len(self._buf) != end - pos + 1:
            raise SourceError("unreadable", f"short read: asked bytes {pos}-{end}, got {len(self._buf)} bytes")


def read_failure(err: ClientError) -> Failure:
    """A listed object's read that S3 answered with an error, by its code (never its message)."""
    code = err.response.get("Error", {}).get("Code", "")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("PreconditionFailed", "412") or status == 412:
        return Failure("object_changed", "object changed since it was listed (etag mismatch)")
    if code in ("NoSuchKey", "404") or status == 404:
        return Failure("no_such_object", "object vanished since it was listed")
    if code in ("AccessDenied", "403") or status == 403:
        return Failure("access_denied", "access denied reading the object")
    message = err.response.get("Error", {}).get("Message", "")
    return Failure("unreadable", f"read failed: {code or status}: {message}".strip())
