"""A run's commits: settled recordings buffered and committed as one batch every
`output.commit_every_s` or `output.commit_rows`, whichever comes first (lake/: all or nothing)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

from ..lake.store import OutputStore
from ..records.compliance import Hit, PiiSpan, Scanned
from ..records.results import RecordingStatus, Segment
from ..records.settled import Batch, Settled


class Committer:
    """Buffers settled rows; commits them as one batch when old or big enough. With compliance
    (`rules`: its fingerprint), a batch also holds its hits, pii rows and the `scans` row that
    tells `granite-batch scan` these segments were searched with these rules."""

    def __init__(
        self, store: OutputStore, run_id: str, date: str, every_s: float, max_rows: int, rules: str | None = None
    ) -> None:
        self.store, self.run_id, self.date, self.every_s, self.max_rows = store, run_id, date, every_s, max_rows
        self.rules, self.seq = rules, 0
        self._clear()

    def _clear(self) -> None:
        self.recordings: list[RecordingStatus] = []
        self.segments: list[Segment] = []
        self.hits: list[Hit] = []
        self.pii: list[PiiSpan] = []
        self.unredacted: list[Segment] = []
        self.since = time.monotonic()

    def add(self, settled: Settled) -> None:
        self.recordings.append(settled.recording)
        self.segments.extend(settled.segments)
        self.hits.extend(settled.hits)
        self.pii.extend(settled.pii)
        self.unredacted.extend(settled.unredacted)
        if len(self.segments) >= self.max_rows or len(self.recordings) >= self.max_rows:
            self.flush()

    def tick(self) -> None:
        if self.recordings and time.monotonic() - self.since >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.recordings:
            name = self.store.file_name(self.run_id, self.seq)
            batch = Batch(segments=self.segments, recordings=self.recordings, unredacted=self.unredacted)
            if self.rules is not None and self.segments:
                batch = replace(batch, hits=self.hits, pii=self.pii, scans=[self._scanned(name)])
            self.store.commit(self.run_id, name, self.date, batch)
            self.seq += 1
        self._clear()

    def _scanned(self, name: str) -> Scanned:
        assert self.rules is not None
        recordings = len({s.recording_id for s in self.segments})
        return Scanned(
            self.store.relpath("segments", self.date, name),
            self.run_id,
            self.rules,
            recordings,
            len(self.hits),
            len(self.pii),
            datetime.now(timezone.utc),
        )
