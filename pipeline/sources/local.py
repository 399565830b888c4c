"""Recordings in a local folder (or a single local file)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from ..config import FiltersConfig, InputConfig
from ..errors import SourceError
from ..records.audio import Recording
from .scope import ListingStats, in_scope


class LocalSource:
    def __init__(self, inp: InputConfig, filters: FiltersConfig) -> None:
        self.root = Path(inp.uri.removeprefix("file://")).expanduser().resolve()
        if not self.root.exists():
            raise SourceError("no_such_object", f"input {inp.uri} does not exist")
        self.inp, self.filters = inp, filters
        self.stats = ListingStats()

    def recordings(self) -> Iterator[Recording]:
        if self.root.is_file():
            yield from self._recording(self.root, self.root.name)
            return
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()  # deterministic order, one folder's names in memory at a time
            for name in sorted(files):
                path = Path(folder, name)
                yield from self._recording(path, path.relative_to(self.root).as_posix())

    def _recording(self, path: Path, rel: str) -> Iterator[Recording]:
        try:
            st = path.stat()
        except OSError:  # e.g. a dangling symlink: listed, so it gets a failed row when opened
            if in_scope(rel, 0, None, self.inp, self.filters, self.stats):
                yield Recording(str(path), 0, "unreadable")
            return
        modified = datetime.fromtimestamp(st.st_mtime, timezone.utc)
        if in_scope(rel, st.st_size, modified, self.inp, self.filters, self.stats):
            yield Recording(str(path), st.st_size, local_etag(st), modified)

    def sidecar(self, recording: Recording, suffix: str) -> str | None:
        return local_sidecar(recording, suffix)

    def open(self, recording: Recording) -> BinaryIO:
        return open_local(recording)


def local_etag(st: os.stat_result) -> str:
    # size + mtime stand in for an etag: a rewritten file is a new recording.
    return f"{st.st_size:x}-{st.st_mtime_ns:x}"


def local_sidecar(recording: Recording, suffix: str) -> str | None:
    path = Path(recording.source_uri + suffix)
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise SourceError("unreadable", f"cannot read {path.name}: {err.strerror}") from None


def open_local(recording: Recording) -> BinaryIO:
    try:
        f = open(recording.source_uri, "rb")
        st = os.fstat(f.fileno())
    except OSError as err:
        raise SourceError("unreadable", f"cannot open: {err.strerror}") from None
    if local_etag(st) != recording.etag:
        f.close()
        raise SourceError("object_changed", "object changed since it was listed")
    return f
