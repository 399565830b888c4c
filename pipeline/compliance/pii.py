"""PII detection with presidio-analyzer's pattern recognizers: regular expressions plus each
type's checksum (Luhn for cards, mod-97 for IBANs, libphonenumber for phones). They need no NLP
model (presidio's AnalyzerEngine would load spaCy's), so they work air-gapped.

presidio's e-mail check asks tldextract whether the domain has a public suffix; tldextract's default
fetches the suffix list from the internet. Here it reads the snapshot in its wheel, never the net.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

# The types `compliance.redact` takes, and presidio's recognizer for each (class name, module-level).
RECOGNIZERS = {
    "credit_card": "CreditCardRecognizer",
    "email": "EmailRecognizer",
    "phone_number": "PhoneRecognizer",
    "us_ssn": "UsSsnRecognizer",
    "iban": "IbanRecognizer",
    "ip_address": "IpRecognizer",
    "us_bank_number": "UsBankRecognizer",
    "uk_nhs": "NhsRecognizer",
}


@dataclass(frozen=True)
class Found:
    entity_type: str  # our name (`credit_card`)
    start: int  # character offsets in the analysed text
    end: int
    score: float


@functools.cache
def _recognizer(entity_type: str) -> Any:
    from presidio_analyzer import predefined_recognizers as pr

    cls = getattr(pr, RECOGNIZERS[entity_type])
    if entity_type == "email":
        return _offline_email(cls)()
    return cls()


@functools.cache
def _suffixes() -> Any:
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the snapshot in its wheel


def is_domain(name: str) -> bool:
    """`name` ends in a public suffix (example.com, bbc.co.uk), offline."""
    return _suffixes()(name).fqdn != ""


def _offline_email(base: type) -> type:
    class OfflineEmailRecognizer(base):  # type: ignore[misc, valid-type]
        def validate_result(self, pattern_text: str) -> bool:
            return is_domain(pattern_text.rsplit("@", 1)[-1])

    return OfflineEmailRecognizer


def detect(text: str, types: tuple[str, ...], min_score: float) -> list[Found]:
    """Every entity of `types` in `text`; where two overlap, the higher score wins."""
    found: list[Found] = []
    for t in types:
        r = _recognizer(t)
        for res in r.analyze(text, r.supported_entities, None):
            if res.score >= min_score and res.score > 0:
                found.append(Found(t, res.start, res.end, float(res.score)))
    kept: list[Found] = []
    for f in sorted(found, key=lambda f: (-f.score, f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)
