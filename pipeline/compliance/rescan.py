"""`granite-batch scan`: terms and PII searched again over the segments earlier runs wrote, with
today's rules, without transcribing again (auditors add terms after the fact).

Each committed segments file is searched once per set of rules: its hits, pii rows and a `scans`
row naming it are committed together (the output's commit: lake/), so a re-scan with the same
rules does nothing, an interrupted one carries on where it stopped, and no file is counted twice.
The run wrote `scans` rows for what it searched as it went, so a scan with the run's own rules
has nothing to do. A scan reports; it does not rewrite segments (their files are immutable):
PII it finds in them is listed with `redacted` false.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TextIO

from ..config import JobConfig
from ..errors import ConfigError
from ..lake import output_store
from ..ops.progress import Progress, counts
from ..ops.runinfo import new_run_id, redact, versions
from ..records.compliance import Scanned
from ..records.results import Segment
from ..records.settled import Batch
from .apply import rules_of
from .scan import Scanner


@dataclass(frozen=True)
class ScanReport:
    scan_id: str
    files: int  # segments files searched now
    already: int  # ...and skipped: searched before with these rules
    recordings: int
    progress: Progress  # its hits and pii counters


def run_scan(cfg: JobConfig, err: TextIO | None = None) -> ScanReport:
    err = err or sys.stderr
    if not cfg.output.uri:
        raise ConfigError("scan needs the output to search: `--output` or `output.uri` in the job file")
    if cfg.output.format == "delta":
        raise ConfigError("scan reads Parquet outputs (output.format: parquet); Delta outputs are not supported yet")
    rules = rules_of(cfg)
    if rules.empty:
        raise ConfigError("scan: no terms and no PII types; set compliance.terms, .terms_file or .redact")
    started = datetime.now(timezone.utc)
    scan_id = f"scan-{new_run_id(started)}"
    store = output_store(cfg, cfg.output.uri)
    store.prepare(scan_id)  # the output's lock: no run or other scan writes meanwhile
    scanner = Scanner(rules, scan_id, redacts=False)
    progress, date = Progress(), started.strftime("%Y-%m-%d")
    files = store.segment_files()
    done = store.scanned(rules.fingerprint)
    todo = [f for f in files if f not in done]
    recordings = 0
    try:
        for seq, path in enumerate(todo):
            by_recording: dict[str, list[Segment]] = defaultdict(list)
            for s in store.read_segments(path):
                by_recording[s.recording_id].append(s)
            hits, pii = [], []
            for segments in by_recording.values():
                found = scanner.scan(segments)
                hits += found.hits
                pii += found.pii
            row = Scanned(path, scan_id, rules.fingerprint, len(by_recording), len(hits), len(pii), started)
            # (a commit renews the lock first: a scan taken over stops here)
            store.commit(scan_id, store.file_name(scan_id, seq), date, Batch(hits=hits, pii=pii, scans=[row]))
            progress.found(hits, pii)
            recordings += len(by_recording)
            print(f"  {path}: {len(hits)} hits, {len(pii)} pii", file=err)
        report = ScanReport(scan_id, len(todo), len(files) - len(todo), recordings, progress)
        store.write_manifest(
            scan_id,
            {
                "scan_id": scan_id,
                "started_at": started.isoformat(),
                "finished_at": datetime.now(timezone.utc).isoformat(),
                "rules": rules.fingerprint,
                "compliance": redact(cfg.compliance.model_dump(mode="json")),
                "versions": versions(),
                "segments_files": {"searched": report.files, "already_searched": report.already},
                "recordings": recordings,
                "hits_by_category": dict(progress.hits),
                "pii_by_type": dict(progress.pii),
            },
        )
    finally:
        store.release(scan_id)
    return report


def summary(r: ScanReport, output: str) -> str:
    p = r.progress
    return "\n".join(
        [
            f"scan {r.scan_id}: {output}",
            f"  segments files  {r.files} searched, {r.already} already searched with these rules",
            f"  recordings      {r.recordings}",
            f"  hits            {sum(p.hits.values())} ({counts(p.hits)})",
            f"  pii             {sum(p.pii.values())} ({counts(p.pii)})",
        ]
    )
