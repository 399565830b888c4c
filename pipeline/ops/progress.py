"""Live progress of a run and its closing summary: recordings and audio hours done, RTFx, ETA,
failures so far (`Progress`: pure counters and text), and the `Printer` that shows it: a live line
on a terminal, a plain line now and then in a job's log."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from ..records.compliance import Hit, PiiSpan
from ..records.results import RecordingStatus, Segment
from ..sources.scope import ListingStats


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.3f} h"


def clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class Progress:
    started: float = field(default_factory=time.monotonic)
    listed: int = 0
    listed_bytes: int = 0
    listing_done: bool = False
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    settled_bytes: int = 0  # of ok + failed: what the ETA extrapolates from
    audio_s: float = 0.0  # decoded duration of ok recordings
    speech_s: float = 0.0
    segments: int = 0
    decoded_by: Counter[str] = field(default_factory=Counter)  # segments by the path that produced them
    hits: Counter[str] = field(default_factory=Counter)  # compliance: term hits by category
    pii: Counter[str] = field(default_factory=Counter)  # PII redacted, by entity type
    failures: Counter[str] = field(default_factory=Counter)  # by kind (errors.KINDS)
    examples: list[tuple[str, str]] = field(default_factory=list)  # (uri, error), the first few
    not_listed: ListingStats = field(default_factory=ListingStats)  # objects out of scope, counted

    def listed_one(self, size: int) -> None:
        self.listed += 1
        self.listed_bytes += size

    def found(self, hits: list[Hit], pii: list[PiiSpan]) -> None:
        self.hits.update(h.category or "(none)" for h in hits)
        self.pii.update(p.entity_type for p in pii)

    def skip(self, size: int) -> None:
        """A recording an earlier run settled."""
        self.skipped += 1
        self.listed_bytes -= size  # no work: out of the ETA

    def add(self, row: RecordingStatus, size: int, segments: list[Segment] | None = None) -> None:
        if row.status == "skipped":
            self.skip(size)
            return
        self.settled_bytes += size
        if row.status == "ok":
            self.ok += 1
            self.audio_s += row.duration_s or 0.0
            self.speech_s += row.speech_s or 0.0
            self.segments += row.segments or 0
            self.decoded_by.update(s.decoded_by for s in segments or ())
        else:
            self.failed += 1
            self.failures[row.error_kind or "internal_error"] += 1
            if len(self.examples) < 20:
                self.examples.append((row.source_uri, row.error or ""))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rtfx(self) -> float:
        return self.audio_s / self.elapsed if self.elapsed > 0 else 0.0

    def eta(self) -> str:
        if not self.listing_done:
            return "listing..."
        left = self.listed_bytes - self.settled_bytes
        if left <= 0:
            return "0:00:00"
        if not self.settled_bytes:
            return "?"
        return clock(self.elapsed * left / self.settled_bytes)

    def line(self) -> str:
        done = self.ok + self.failed + self.skipped
        listed = f"{self.listed}" + ("" if self.listing_done else "+")
        return (
            f"[{clock(self.elapsed)}] recordings {done}/{listed} ({self.ok} ok, {self.failed} failed, "
            f"{self.skipped} skipped) | audio {hours(self.audio_s)} | RTFx {self.rtfx:.1f} | ETA {self.eta()}"
        )

    def summary(self, run_id: str, output: str) -> str:
        lines = [
            f"run {run_id}: {output}",
            f"  recordings  {self.listed} listed: {self.ok} ok, {self.failed} failed, {self.skipped} skipped (done before)",
            f"  audio       {hours(self.audio_s)} transcribed; {hours(self.speech_s)} of speech in {self.segments} segments",
            f"  time        {clock(self.elapsed)} wall, RTFx {self.rtfx:.1f} (audio seconds per wall second)",
        ]
        if self.segments:
            d = self.decoded_by
            lines.append(
                f"  decoding    {d['ctc']} segments from CTC as is, {d['verified']} verified, {d['llm']} generated"
            )
        if self.hits or self.pii:
            lines.append(
                f"  compliance  {sum(self.hits.values())} term hits ({counts(self.hits)}); "
                f"{sum(self.pii.values())} PII spans redacted ({counts(self.pii)})"
            )
        n = self.not_listed
        if n.excluded_by_glob or n.excluded_by_modified_since or n.folder_markers or n.duplicate_rows:
            lines.append(
                f"  not listed  {n.excluded_by_glob} excluded by glob, {n.excluded_by_modified_since} by "
                f"modified-since, {n.folder_markers} empty folder markers"
                + (f", {n.duplicate_rows} manifest rows naming an object again" if n.duplicate_rows else "")
            )
        if self.failures:
            lines.append("  failures    " + ", ".join(f"{k} {v}" for k, v in self.failures.most_common()))
            lines += [f"    {uri}: {err}" for uri, err in self.examples[:10]]
            if self.failed > 10:
                lines.append(f"    ... see {output}/recordings (status = 'failed')")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recordings": {"listed": self.listed, "ok": self.ok, "failed": self.failed, "skipped": self.skipped},
            "audio_hours": round(self.audio_s / 3600, 6),
            "speech_hours": round(self.speech_s / 3600, 6),
            "segments": self.segments,
            "decoded_by": {k: self.decoded_by[k] for k in ("ctc", "verified", "llm")},
            "hits_by_category": dict(self.hits),
            "pii_by_type": dict(self.pii),
            "wall_s": round(self.elapsed, 3),
            "rtfx": round(self.rtfx, 3),
            "failures_by_reason": dict(self.failures),
            "not_listed": asdict(self.not_listed),
        }


def counts(c: Counter[str]) -> str:
    """`a 3, b 1` (most first), or `none`."""
    return ", ".join(f"{k} {v}" for k, v in c.most_common()) or "none"


class Printer:
    """A live line on a terminal; a plain line every `every_s` otherwise (job logs)."""

    def __init__(self, progress: Progress, out: TextIO, every_s: float) -> None:
        self.progress, self.out = progress, out
        self.tty = out.isatty()
        self.every_s = 1.0 if self.tty else every_s
        self.last = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            end = "\r" if self.tty else "\n"
            print(self.progress.line(), end=end, file=self.out, flush=True)

    def final(self) -> None:
        print(self.progress.line(), file=self.out, flush=True)
