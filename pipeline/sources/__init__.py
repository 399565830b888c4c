"""Where recordings come from: a local folder, an S3(-compatible) prefix, or a manifest naming them.

A source lists `Recording`s lazily (a million keys never sit in memory) and opens one as a
seekable binary stream that reads from the store on demand: nothing is downloaded first. scope.py
decides what is in scope (and counts what is not); local.py, s3.py and manifest.py are the three
kinds of source.

May import: records, prompt, storage, config, errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol

from ..config import FiltersConfig, InputConfig, PromptConfig
from ..prompt import KEYWORDS_SUFFIX
from ..records.audio import Recording
from .scope import ListingStats


class Source(Protocol):
    stats: ListingStats

    def recordings(self) -> Iterator[Recording]: ...

    def open(self, recording: Recording) -> BinaryIO: ...

    def sidecar(self, recording: Recording, suffix: str) -> str | None:
        """Text of the object `<recording><suffix>` next to the recording (e.g. keywords), if any."""
        ...


def open_source(inp: InputConfig, filters: FiltersConfig) -> Source:
    from .manifest import ManifestSource, is_manifest

    if is_manifest(inp.uri):
        return ManifestSource(inp, filters)
    if inp.uri.startswith("s3://"):
        from .s3 import S3Source

        return S3Source(inp, filters)
    from .local import LocalSource

    return LocalSource(inp, filters)


_CACHED: dict[str, Source] = {}


def cached_source(inp: InputConfig, filters: FiltersConfig) -> Source:
    """One source (one S3 client and its connection pool) per worker process, reused across recordings."""
    key = inp.model_dump_json() + filters.model_dump_json()
    if key not in _CACHED:
        _CACHED[key] = open_source(inp, filters)
    return _CACHED[key]


def sidecar_keywords(source: Source, rec: Recording, prompt: PromptConfig) -> str | None:
    """The text of the recording's keywords sidecar (`<recording>.keywords.txt`), where
    `prompt.sidecar_keywords` is on: what prompt.prompt_for adds to its prompt."""
    return source.sidecar(rec, KEYWORDS_SUFFIX) if prompt.sidecar_keywords else None


__all__ = ["Source", "cached_source", "open_source", "sidecar_keywords"]
