"""Recordings under an S3 or S3-compatible (MinIO, Ceph RGW) prefix: listed a page at a time,
read with ranged GETs (storage/s3.py: the client, its retries and the ranged reader)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from ..config import FiltersConfig, InputConfig
from ..errors import SourceError
from ..records.audio import Recording
from ..storage.s3 import RangeReader, read_failure, retrying, s3_client, split_s3_uri
from .scope import ListingStats, in_scope


def _under(key: str, prefix: str) -> bool:
    """`s3://b/calls` means the object `calls` or the folder `calls/`, not `calls-archive/`."""
    return not prefix or prefix.endswith("/") or key == prefix or key.startswith(prefix + "/")


class S3Source:
    def __init__(self, inp: InputConfig, filters: FiltersConfig) -> None:
        self.bucket, self.prefix = split_s3_uri(inp.uri)
        self.inp, self.filters = inp, filters
        self.client = s3_client(inp.endpoint_url, inp.region, inp.max_attempts)
        self.stats = ListingStats()

    def _pages(self) -> Iterator[dict[str, Any]]:
        """One listing page (<= 1000 keys) in memory at a time; a page cut mid-transfer is fetched again."""
        token: dict[str, str] = {}
        while True:
            page = retrying(
                lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, **token),
                f"listing {self.inp.uri}",
            )
            yield page
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def recordings(self) -> Iterator[Recording]:
        try:
            for page in self._pages():
                for obj in page.get("Contents", []):
                    if not _under(obj["Key"], self.prefix):
                        continue
                    # Globs see the key below the prefix (the name itself for a single object).
                    rel = obj["Key"][len(self.prefix) :].lstrip("/") or obj["Key"].rsplit("/", 1)[-1]
                    if in_scope(rel, obj["Size"], obj.get("LastModified"), self.inp, self.filters, self.stats):
                        yield Recording(
                            f"s3://{self.bucket}/{obj['Key']}",
                            obj["Size"],
                            obj["ETag"].strip('"'),
                            obj.get("LastModified"),
                        )
        except ClientError as err:
            raise SourceError(read_failure(err).kind, f"cannot list {self.inp.uri}: {err}") from None

    def sidecar(self, recording: Recording, suffix: str) -> str | None:
        return s3_sidecar(self.client, recording, suffix)

    def open(self, recording: Recording) -> BinaryIO:
        return open_s3(self.client, recording, self.inp.read_chunk_bytes)


def s3_sidecar(client: Any, recording: Recording, suffix: str) -> str | None:
    bucket, key = split_s3_uri(recording.source_uri)
    try:
        body = retrying(
            lambda: client.get_object(Bucket=bucket, Key=key + suffix)["Body"].read(), f"reading {key + suffix}"
        )
    except ClientError as err:
        if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        failure = read_failure(err)
        raise SourceError(failure.kind, f"cannot read {key + suffix}: {failure.detail}") from None
    return bytes(body).decode("utf-8", errors="replace")


def open_s3(client: Any, recording: Recording, chunk: int) -> BinaryIO:
    bucket, key = split_s3_uri(recording.source_uri)
    return RangeReader(client, bucket, key, recording.size_bytes, recording.etag, chunk)  # type: ignore[return-value]
