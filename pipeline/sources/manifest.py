"""Recordings named by a manifest: a CSV, Parquet or JSON-lines file (local or s3://) with a `uri`
column, instead of a listing. Lake teams drive work from their own catalogs this way.

Per row: `uri` (s3://bucket/key in any bucket of the input's endpoint, or a local path), and
optionally `keywords` (a list, or a string split like a keywords file), `language` (the spoken
language: fills the `language` columns instead of detection) and `channel_labels` (a list, or a
string split on commas: the label of channel 0, 1, ...). Every other column is carried into
`recordings.meta` as strings, so users can join back on their own ids.

A row that names no readable object (no such object, a bad URI, a value of the wrong type, a line
that is not JSON) becomes a recording that fails with the reason: every row gets a status row.
Rows are read one at a time (CSV and JSON lines as text, so "00123" stays "00123"), and each
object is looked up with one HEAD request as its row is reached, 16 at a time.
"""

from __future__ import annotations

import codecs
import csv
import errno
import hashlib
import io
import itertools
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from ..config import FiltersConfig, InputConfig
from ..errors import Failure, Kind, SourceError
from ..prompt import parse_keywords_text
from ..records.audio import Recording
from ..storage.s3 import RangeReader, read_failure, retrying, s3_client, split_s3_uri
from .local import local_etag, local_sidecar, open_local
from .s3 import open_s3, s3_sidecar
from .scope import ListingStats, in_scope

SUFFIXES = (".csv", ".parquet", ".jsonl", ".ndjson")
OWN = ("uri", "keywords", "language", "channel_labels")
LOOKUPS = 16  # HEAD requests in flight
# A row's object that its store, or the local disk, will not give: the row's failure kind.
_LOOKUP: dict[int | None, tuple[Kind, str]] = {
    404: ("no_such_object", "no such object"),
    403: ("access_denied", "access denied"),
}
_ERRNO: dict[int, Kind] = {errno.ENOENT: "no_such_object", errno.EACCES: "access_denied"}


def is_manifest(uri: str) -> bool:
    return uri.lower().endswith(SUFFIXES)


class ManifestSource:
    def __init__(self, inp: InputConfig, filters: FiltersConfig) -> None:
        self.inp, self.filters = inp, filters
        self.client = s3_client(inp.endpoint_url, inp.region, inp.max_attempts)
        self.stats = ListingStats()

    # -- the listing ------------------------------------------------------------------------------
    def recordings(self) -> Iterator[Recording]:
        seen: set[int] = set()  # a 64-bit hash per URI, to find repeats (about 60 MB a million rows)
        rows = enumerate(self._rows(), start=1)
        with ThreadPoolExecutor(LOOKUPS) as pool:  # HEADs in parallel, rows kept in order
            while chunk := list(itertools.islice(rows, 4 * LOOKUPS)):
                for rec, rel in pool.map(lambda item: self._recording(*item), chunk):
                    if rec.error is None and not in_scope(
                        rel, rec.size_bytes, rec.last_modified, self.inp, self.filters, self.stats
                    ):
                        continue
                    key = int.from_bytes(hashlib.blake2b(rec.source_uri.encode(), digest_size=8).digest(), "little")
                    if key in seen:  # the same object twice would be transcribed twice
                        self.stats.duplicate_rows += 1
                        continue
                    seen.add(key)
                    yield rec

    def _rows(self) -> Iterator[dict[str, Any] | str]:
        """The manifest's rows as dicts, or a reason string for a row that cannot be read."""
        uri, kind = self.inp.uri, self.inp.uri.lower().rsplit(".", 1)[1]
        with self._open(uri) as f:
            if kind == "parquet":
                pf = pq.ParquetFile(f)
                if "uri" not in pf.schema_arrow.names:
                    raise SourceError("bad_manifest_row", f"input manifest {uri} has no `uri` column")
                for batch in pf.iter_batches(batch_size=4096):
                    yield from batch.to_pylist()
                return
            text = codecs.getreader("utf-8-sig")(f, errors="replace")  # -sig: a spreadsheet's byte-order mark
            if kind == "csv":
                reader = csv.DictReader(text)
                if "uri" not in (reader.fieldnames or []):
                    raise SourceError("bad_manifest_row", f"input manifest {uri} has no `uri` column")
                yield from reader
                return
            for line in text:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    yield "not a JSON object"
                    continue
                yield row if isinstance(row, dict) else "not a JSON object"

    def _open(self, uri: str) -> BinaryIO:
        """The manifest itself (read by the driver only: workers open recordings, not the manifest)."""
        if not uri.startswith("s3://"):
            try:
                return open(Path(uri).expanduser(), "rb")
            except OSError as err:
                raise SourceError("unreadable", f"cannot read the input manifest {uri}: {err.strerror}") from None
        bucket, key = split_s3_uri(uri)
        try:
            head = retrying(lambda: self.client.head_object(Bucket=bucket, Key=key), f"reading {uri}")
        except ClientError as err:
            raise SourceError(read_failure(err).kind, f"cannot read the input manifest {uri}: {err}") from None
        raw = RangeReader(self.client, bucket, key, head["ContentLength"], head["ETag"].strip('"'), 8 << 20)
        return io.BufferedReader(raw, 1 << 20)  # type: ignore[return-value]

    def _recording(self, n: int, row: dict[str, Any] | str) -> tuple[Recording, str]:
        """The row's recording (failing with the reason when the row names no readable object),
        and the key or name that `input.include`/`exclude` see."""
        where = f"{self.inp.uri}#row={n}"

        def failed(uri: str, kind: Kind, why: str, **fields: Any) -> tuple[Recording, str]:
            return Recording(uri, 0, "", error=Failure(kind, f"manifest row {n}: {why}"), **fields), ""

        if isinstance(row, str):
            return failed(where, "bad_manifest_row", row)
        uri = row.get("uri")
        try:
            fields = _fields(row)
        except ValueError as err:
            return failed(uri if isinstance(uri, str) and uri else where, "bad_manifest_row", str(err))
        if not isinstance(uri, str) or not uri.strip():
            return failed(where, "bad_manifest_row", "no uri", **fields)
        uri = uri.strip()
        if uri.startswith("s3://"):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            if not bucket or not key or key.endswith("/"):
                return failed(uri, "bad_manifest_row", "not an object URI", **fields)
            try:
                head = retrying(lambda: self.client.head_object(Bucket=bucket, Key=key), f"looking up {uri}")
            except ClientError as err:
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                kind, why = _LOOKUP.get(status, ("unreadable", f"cannot look it up ({status})"))
                return failed(uri, kind, why, **fields)
            except SourceError as err:  # the store did not answer, after retries: this row fails, the run goes on
                return failed(uri, err.kind, str(err), **fields)
            rec = Recording(uri, head["ContentLength"], head["ETag"].strip('"'), head.get("LastModified"), **fields)
            return rec, key
        if "://" in uri or not os.path.isabs(os.path.expanduser(uri)):
            return failed(uri, "bad_manifest_row", "not an s3:// URI or an absolute path", **fields)
        path = Path(uri).expanduser()
        try:
            st = path.stat()
        except OSError as err:
            return failed(str(path), _ERRNO.get(err.errno or 0, "unreadable"), str(err.strerror), **fields)
        modified = datetime.fromtimestamp(st.st_mtime, timezone.utc)
        return Recording(str(path), st.st_size, local_etag(st), modified, **fields), path.name

    # -- reading a recording ----------------------------------------------------------------------
    def open(self, recording: Recording) -> BinaryIO:
        if recording.error:
            raise SourceError.of(recording.error)
        if recording.source_uri.startswith("s3://"):
            return open_s3(self.client, recording, self.inp.read_chunk_bytes)
        return open_local(recording)

    def sidecar(self, recording: Recording, suffix: str) -> str | None:
        if recording.error:
            return None
        if recording.source_uri.startswith("s3://"):
            return s3_sidecar(self.client, recording, suffix)
        return local_sidecar(recording, suffix)


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    """A row's own columns as Recording fields; ValueError names a value of the wrong type."""
    out: dict[str, Any] = {}
    if (kw := row.get("keywords")) not in (None, ""):
        out["keywords"] = tuple(_strings("keywords", kw, parse_keywords_text))
    if (lang := row.get("language")) not in (None, ""):
        if not isinstance(lang, str):
            raise ValueError(f"language: expected a string, got {type(lang).__name__}")
        out["language"] = lang.strip()
    if (labels := row.get("channel_labels")) not in (None, ""):
        out["channel_labels"] = tuple(_strings("channel_labels", labels, lambda s: [x.strip() for x in s.split(",")]))
    meta = tuple((str(k), _text(v)) for k, v in row.items() if k not in OWN and v is not None and k is not None)
    if meta:
        out["meta"] = meta
    return out


def _strings(name: str, value: Any, split) -> list[str]:
    if isinstance(value, str):
        return split(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError(f"{name}: expected a list of strings or a string, got {type(value).__name__}")


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, default=str) if isinstance(v, (bool, int, float, list, dict)) else str(v)
