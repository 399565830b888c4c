"""Two-channel calls in which the customer says a card number, an e-mail address, a phone number
and a social security number, and the agent says two regulated phrases, one of them across a
pause where the blocker cuts. Spoken by espeak-ng; what was planted, where, is known exactly.
Used by tests/test_compliance_run.py (variant 0) and bench/compliance.py (all variants)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.compliance.normalize import normalize
from tests import corpus as C

RATE = 16_000
TERMS = [
    {"phrase": "guaranteed returns", "category": "mis-selling"},
    {"phrase": "off the record", "category": "conduct"},
]
REDACT = ["credit_card", "email", "phone_number", "us_ssn", "iban"]
PAUSE_IN_PHRASE_S = 0.6  # inside "off | the record": long enough for the blocker to cut there
WPM = 150  # espeak-ng a little slower than its default: the recognizer hears it better
_DIGIT = "zero one two three four five six seven eight nine".split()

# Values per variant: Luhn-valid test cards, addresses, US phones, SSN-shaped numbers, IBANs.
CARDS = ["4532015112830366", "4716108999716531", "5425233430109903", "6011000990139424"]
EMAILS = [
    ("john", "smith", "gmail"),
    ("maria", "lopez", "yahoo"),
    ("peter", "jones", "outlook"),
    ("anna", "berg", "hotmail"),
]
PHONES = ["2024561111", "3125550199", "4155552671", "6175551234"]
SSNS = ["536221439", "412567890", "654123987", "301456782"]
IBANS = ["GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606", "NL91ABNA0417164300"]


@dataclass(frozen=True)
class Planted:
    kind: str  # "pii" or "term"
    what: str  # the entity type or the term's phrase
    utterance: int  # index into the call's speech
    raw: tuple[str, ...]  # the value, written (see leaked()): it must appear nowhere after redaction


def _spell(digits: str, group: int) -> str:
    """Digits as said: in groups, a comma (a short pause) between them."""
    words = [_DIGIT[int(d)] if d.isdigit() else d.lower() for d in digits]
    return ", ".join(" ".join(words[i : i + group]) for i in range(0, len(words), group))


def script(variant: int = 0, iban: bool = False) -> list[tuple[str | tuple[str, str], Planted | None]]:
    """The call's utterances (even positions: agent, odd: customer) and what each plants."""
    v = variant % len(CARDS)
    card, (first, last, host), phone, ssn = CARDS[v], EMAILS[v], PHONES[v], SSNS[v]
    lines: list[tuple[str | tuple[str, str], Planted | None]] = [
        ("thank you for calling, how can I help you today", None),
        (f"my card number is {_spell(card, 4)}", Planted("pii", "credit_card", 1, (card,))),
        ("we offer guaranteed returns on this fund", Planted("term", "guaranteed returns", 2, ())),
        (
            f"you can email me at {first} dot {last} at {host} dot com",
            Planted("pii", "email", 3, (f"{first}.{last}@{host}.com", last)),
        ),
        (("so we can keep this off", "the record, okay?"), Planted("term", "off the record", 4, ())),
        (
            f"call me back on {_spell(phone[:3], 3)}, {_spell(phone[3:6], 3)}, {_spell(phone[6:], 4)}",
            Planted("pii", "phone_number", 5, (phone,)),
        ),
        ("I will note that down for you", None),
        (
            f"my social security number is {_spell(ssn[:3], 3)}, {_spell(ssn[3:5], 2)}, {_spell(ssn[5:], 4)}",
            Planted("pii", "us_ssn", 7, (ssn,)),
        ),
    ]
    if iban:
        code = IBANS[v]
        lines += [
            ("and your account details please", None),
            (f"my iban is {_spell(code, 4)}", Planted("pii", "iban", 9, (code,))),
        ]
    return lines


def _spoken(text: str | tuple[str, str]) -> np.ndarray:
    if isinstance(text, str):
        return C.espeak(text, "en", WPM)
    a, b = text
    pause = np.zeros(int(PAUSE_IN_PHRASE_S * RATE), np.float32)
    return np.concatenate([C.espeak(a, "en", WPM), pause, C.espeak(b, "en", WPM)])


def write_call(path: Path, variant: int = 0, iban: bool = False) -> C.Call:
    """The call as a stereo 16 kHz WAV at `path` (agent left, customer right)."""
    clips = [_spoken(t) for t, _ in script(variant, iban)]
    call = C.make_call(clips, [0.8] * (len(clips) + 1), channels=2)
    C.encode(call.samples, call.rate, "wav_s16", path)
    return call


def planted(variant: int = 0, iban: bool = False) -> list[Planted]:
    return [p for _, p in script(variant, iban) if p is not None]


def leaked(text: str, variant: int = 0, iban: bool = False) -> list[str]:
    """The planted values found in `text` in any form a transcript may give them: spoken or
    written digits, in one piece or several ("four five three two" "0151" "one two..."), with or
    without hyphens, and spoken or written addresses."""
    tokens = " ".join(t.text.replace("-", "") for t in normalize(text.split(), "en"))
    return [raw for p in planted(variant, iban) for raw in p.raw if raw in tokens]
