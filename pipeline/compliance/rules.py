"""What a compliance scan looks for: the configured terms (inline and `terms_file`) and PII types,
loaded once per run or scan, with a fingerprint that is equal exactly when the rules are."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from ..config import ComplianceConfig, TermConfig
from ..errors import ConfigError

ReadUri = Callable[[str], bytes]  # reads an s3:// object
RULES_VERSION = 1  # bump when normalization or matching changes what the same rules find


@dataclass(frozen=True)
class Term:
    phrase: str
    category: str


@dataclass(frozen=True)
class Rules:
    terms: tuple[Term, ...]
    redact: tuple[str, ...]
    min_score: float
    context_words: int

    @property
    def fingerprint(self) -> str:
        spec = {
            "version": RULES_VERSION,
            "terms": sorted((t.phrase, t.category) for t in self.terms),
            "redact": sorted(self.redact),
            "min_score": self.min_score,
        }
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]

    @property
    def empty(self) -> bool:
        return not self.terms and not self.redact


def load_rules(cfg: ComplianceConfig, read_uri: ReadUri | None = None) -> Rules:
    """The rules of `cfg`; `read_uri(uri) -> bytes` reads an s3:// terms file. Raises ConfigError."""
    terms = [Term(t.phrase, t.category) for t in cfg.terms]
    if cfg.terms_file:
        terms += _terms_file(cfg.terms_file, read_uri)
    seen: dict[str, Term] = {}
    for t in terms:
        seen.setdefault(" ".join(t.phrase.casefold().split()), t)  # the same phrase twice: the first
    return Rules(tuple(seen.values()), tuple(cfg.redact), cfg.min_score, cfg.context_words)


def _terms_file(uri: str, read_uri: ReadUri | None) -> list[Term]:
    where = f"compliance.terms_file {uri}"
    try:
        if uri.startswith("s3://"):
            if read_uri is None:
                raise ConfigError(f"{where}: no S3 access configured to read it")
            data = read_uri(uri)
        else:
            data = Path(uri).expanduser().read_bytes()
    except OSError as err:
        raise ConfigError(f"{where}: cannot read it: {getattr(err, 'strerror', None) or err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    rows = _csv_rows(text, where) if uri.lower().endswith(".csv") else _yaml_rows(text, where)
    terms = []
    for n, row in enumerate(rows, 1):
        try:
            t = TermConfig.model_validate(row)
        except ValidationError as err:
            e = err.errors()[0]
            key = ".".join(str(p) for p in e["loc"]) or "entry"
            raise ConfigError(f"{where}: entry {n}: {key}: {e['msg']} (got {row!r})") from None
        terms.append(Term(t.phrase, t.category))
    if not terms:
        raise ConfigError(f"{where}: holds no terms")
    return terms


def _yaml_rows(text: str, where: str) -> list[object]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(err).split())}") from None
    if isinstance(data, dict) and "terms" in data:
        data = data["terms"]
    if not isinstance(data, list):
        raise ConfigError(f"{where}: must be a list of {{phrase, category}} (or `terms:` holding one)")
    return [{"phrase": r} if isinstance(r, str) else r for r in data]


def _csv_rows(text: str, where: str) -> list[object]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].lstrip().startswith("#")]
    if rows and [c.strip().lower() for c in rows[0][:2]] in (["phrase", "category"], ["phrase"]):
        rows = rows[1:]
    out: list[object] = []
    for n, r in enumerate(rows, 1):
        if len(r) > 2:
            raise ConfigError(f"{where}: line {n}: expected `phrase,category`, got {len(r)} fields")
        out.append({"phrase": r[0].strip(), "category": r[1].strip() if len(r) > 1 else ""})
    return out
