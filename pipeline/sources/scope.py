"""Which listed objects are in scope: globs and modified-since, shared by every source."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timezone

from ..config import FiltersConfig, InputConfig


class SourceError(Exception):
    """An object could not be read from the store; str() is the one-line reason."""


@dataclass
class ListingStats:
    """What the listing saw besides the recordings it yielded (reported, never silently lost)."""

    excluded_by_glob: int = 0
    excluded_by_modified_since: int = 0
    folder_markers: int = 0


def in_scope(rel_key: str, modified: datetime | None, inp: InputConfig, filters: FiltersConfig, stats: ListingStats) -> bool:
    """True when the object is a recording to process; otherwise counts why not."""
    if rel_key.endswith("/") or not rel_key:
        stats.folder_markers += 1
        return False
    if not any(fnmatch.fnmatchcase(rel_key, g) for g in inp.include) or any(
        fnmatch.fnmatchcase(rel_key, g) for g in inp.exclude
    ):
        stats.excluded_by_glob += 1
        return False
    since = filters.modified_since
    if since is not None and modified is not None:
        since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        if modified < since:
            stats.excluded_by_modified_since += 1
            return False
    return True
