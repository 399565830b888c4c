"""Compliance in a run or a scan: the rules loaded (terms files from S3 too), each settled
recording searched and redacted (scan.py), and its redacted audio copy written where configured."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..config import JobConfig
from ..errors import ConfigError, DecodeError, SourceError
from ..lake import output_where
from ..records.audio import Recording
from ..records.compliance import PiiSpan
from ..records.results import RecordingStatus
from ..records.settled import Settled
from ..sources import cached_source
from ..storage.fs import open_filesystem
from .audio import spans_of, write_to
from .rules import Rules, load_rules
from .scan import Scanner

log = logging.getLogger(__name__)


def rules_of(cfg: JobConfig) -> Rules:
    """The job's rules; a terms file that cannot be read or parsed is a ConfigError."""

    def read(uri: str) -> bytes:
        fs, path = open_filesystem(uri, *output_where(cfg))
        with fs.open_input_stream(path) as f:
            return f.read()

    return load_rules(cfg.compliance, read)


class Compliance:
    def __init__(self, cfg: JobConfig, scan_id: str, rules: Rules | None = None) -> None:
        self.cfg, self.rules = cfg, rules or rules_of(cfg)
        if self.rules.empty:
            raise ConfigError("compliance: no terms and no PII types to redact; set compliance.terms or .redact")
        self.scanner = Scanner(self.rules, scan_id)
        self.keep = cfg.compliance.keep_unredacted_uri is not None
        audio = cfg.compliance.redacted_audio_uri
        self.audio = open_filesystem(audio, *output_where(cfg)) if audio else None

    def apply(self, s: Settled) -> Settled:
        """A settled recording searched and redacted. A failure here fails the recording (no
        segments written unredacted by mistake); its error names no value from the transcript."""
        if s.recording.status != "ok" or not s.segments:
            return s
        try:
            found = self.scanner.scan(s.segments)
            if found.pii and self.audio is not None:
                self.write_audio(_recording(s.recording), found.pii)
        except (DecodeError, SourceError, OSError) as err:
            return _failed(s, f"compliance: redacted audio not written: {err}")
        except Exception as err:  # a bug: fail the recording, never leak its text into the error
            log.error("compliance failed on %s: %s", s.recording.source_uri, type(err).__name__)
            return _failed(s, f"compliance: internal error ({type(err).__name__})")
        return Settled(s.recording, found.segments, found.hits, found.pii, s.segments if self.keep else [])

    def write_audio(self, rec: Recording, pii: list[PiiSpan]) -> None:
        assert self.audio is not None
        fs, root = self.audio
        spans = spans_of(pii, self.cfg.channels.policy == "mix", self.cfg.compliance.audio_pad_s)
        with cached_source(self.cfg.input, self.cfg.filters).open(rec) as src:
            write_to(fs, f"{root}/{rec.recording_id}.flac", src, spans)


def _recording(r: RecordingStatus) -> Recording:
    return Recording(r.source_uri, r.size_bytes, r.source_etag)


def _failed(s: Settled, detail: str) -> Settled:
    row = replace(
        s.recording,
        status="failed",
        error_kind="compliance_failed",
        error=detail,
        segments=0,
        language=None,
        speech_s=None,
    )
    return Settled(row, [])
