"""What earlier runs settled, in bounded memory: the latest `ok`/`failed` row of every recording in
OUTPUT/recordings/, held as sorted numpy arrays instead of a Python dict.

A recording id is 24 hex digits (records.audio.Recording.recording_id), so it packs into 12 bytes; with a
status byte and a run index, a recording costs 17 bytes here (10 million: ~170 MB) where a dict
of strings cost ~250. The rows are read batch by batch, so the table is never whole in memory,
and a listing window is looked up at once with one `searchsorted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HISTORY_COLUMNS = ["recording_id", "status", "run_id", "processed_at"]  # of recordings: what is read
_ID_CHARS = 24
_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_STATUS = ("failed", "ok")


@dataclass(frozen=True)
class Done:
    """What an earlier run settled for a recording."""

    status: str
    run_id: str


class History:
    def __init__(self, ids: np.ndarray, status: np.ndarray, run: np.ndarray, runs: list[str]) -> None:
        self._ids, self._status, self._run, self._runs = ids, status, run, runs

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def nbytes(self) -> int:
        return self._ids.nbytes + self._status.nbytes + self._run.nbytes

    def get(self, recording_id: str) -> Done | None:
        return self.lookup([recording_id])[0]

    def lookup(self, recording_ids: Sequence[str]) -> list[Done | None]:
        """The latest settlement of each id (None: never settled)."""
        found, ok, run = self.find(recording_ids)
        return [
            Done(_STATUS[k], self._runs[r]) if f else None for f, k, r in zip(found.tolist(), ok.tolist(), run.tolist())
        ]

    def find(self, recording_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a whole listing window at once, without an object per id: (settled before?, was it
        ok?, index of the run that did it; see `run_id`)."""
        n = len(recording_ids)
        if not len(self._ids) or not n:
            return np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.int32)
        keys = keys_of(pa.array(recording_ids, pa.string()))
        at = np.minimum(np.searchsorted(self._ids, keys), len(self._ids) - 1)
        return self._ids[at] == keys, self._status[at] == 1, self._run[at]

    def run_id(self, index: int) -> str:
        return self._runs[index]

    @classmethod
    def from_batches(cls, batches: Iterable[pa.RecordBatch], rows: int | None = None) -> History:
        """From record batches of HISTORY_COLUMNS (`skipped` rows are left out: they settle
        nothing); a later settlement (a retried failure) wins. `rows`: their number, if
        known, so the arrays are filled in place rather than concatenated (half the peak memory)."""
        run_index: dict[str, int] = {}
        cap = rows if rows is not None else 0
        ids, status, run, ts = (
            np.zeros(cap, "S12"),
            np.zeros(cap, np.int8),
            np.zeros(cap, np.int32),
            np.zeros(cap, np.int64),
        )
        n = 0
        for b in batches:
            b = b.filter(pc.not_equal(b.column("status"), "skipped"))
            if not b.num_rows:
                continue
            m = b.num_rows
            if n + m > len(ids):  # more rows than announced (or none announced): grow
                grow = max(n + m, 2 * len(ids))
                ids, status, run, ts = (np.resize(a, grow) for a in (ids, status, run, ts))
            enc = pc.dictionary_encode(b.column("run_id"))
            local = np.array([run_index.setdefault(r, len(run_index)) for r in enc.dictionary.to_pylist()], np.int32)
            run[n : n + m] = local[enc.indices.to_numpy(zero_copy_only=False)]
            status[n : n + m] = pc.equal(b.column("status"), "ok").to_numpy(zero_copy_only=False)
            ts[n : n + m] = pc.cast(b.column("processed_at"), pa.int64()).to_numpy(zero_copy_only=False)
            ids[n : n + m] = keys_of(b.column("recording_id"))
            n += m
        return cls(*_latest(ids[:n], status[:n], run[:n], ts[:n]), list(run_index))


def _latest(
    ids: np.ndarray, status: np.ndarray, run: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted by id, one row per id: its latest. Most ids were settled once, so rows are sorted by
    id alone (each array replaced as soon as its sorted copy exists: the peak stays near twice
    the history's size) and only the ids settled more than once are ordered by time."""
    if not len(ids):
        return ids, status, run
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    dup = ids[1:] == ids[:-1]
    if dup.any():
        # within each run of equal ids, put the latest last (a stable sort by time, then by id)
        idx = np.flatnonzero(np.append(dup, False) | np.insert(dup, 0, False))
        sub = order[idx]
        order[idx] = sub[np.lexsort((ts[sub], ids[idx]))]
    del ts
    status, run = status[order], run[order]
    del order
    if not dup.any():
        return ids, status, run
    last = np.append(~dup, True)
    return ids[last], status[last], run[last]


def keys_of(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Recording ids (24 lower-case hex digits) as 12-byte keys, without a Python object per id."""
    if isinstance(ids, pa.ChunkedArray):
        ids = pa.concat_arrays(ids.chunks) if ids.num_chunks != 1 else ids.chunk(0)
    n = len(ids)
    if not n:
        return np.zeros(0, "S12")
    offsets = np.frombuffer(ids.buffers()[1], np.int32)[ids.offset : ids.offset + n + 1]
    if ids.null_count or not (np.diff(offsets) == _ID_CHARS).all():
        raise ValueError("recordings.recording_id: not all ids are 24 hex digits (a foreign row in recordings/?)")
    chars = np.frombuffer(ids.buffers()[2], np.uint8)[offsets[0] : offsets[0] + n * _ID_CHARS].reshape(n, _ID_CHARS)
    nibbles = _HEX[chars]
    if (nibbles == 255).any():
        raise ValueError("recordings.recording_id: not all ids are 24 hex digits (a foreign row in recordings/?)")
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    return np.ascontiguousarray(packed).view("S12").ravel()
