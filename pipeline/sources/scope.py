"""Which listed objects are in scope: globs and modified-since, shared by every source."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timezone

from ..config import FiltersConfig, InputConfig


@dataclass
class ListingStats:
    """What the listing saw besides the recordings it yielded (reported, never silently lost)."""

    excluded_by_glob: int = 0
    excluded_by_modified_since: int = 0
    folder_markers: int = 0  # empty objects whose key ends in "/" (a console's "folder")
    duplicate_rows: int = 0  # a manifest naming an object again (done once)


def in_scope(
    rel_key: str, size: int, modified: datetime | None, inp: InputConfig, filters: FiltersConfig, stats: ListingStats
) -> bool:
    """True when the object is a recording to process; otherwise counts why not. A key ending in
    "/" that holds bytes is a recording like any other (it gets a row); an empty one is a marker."""
    if not rel_key or (rel_key.endswith("/") and size == 0):
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
