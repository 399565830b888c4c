"""Spoken forms to written ones, keeping where each came from: Granite writes "four one one one"
and "john dot smith at example dot com", and PII patterns and terms are matched on "4111" and
"john.smith@example.com". Each token remembers the transcript words it stands for, so a match on
tokens is a span of words (their times; what to redact).

Numbers go through text2num's `alpha2digit` (en, fr, es, pt, de, it, nl); other languages keep
their words. Runs of digit groups are then joined ("2 02 4 5 6" -> "202456"): spoken digits are
said one by one or in pairs, and a card or phone number must be one string for its pattern; so are
codes spelled out letter by letter among digits (an IBAN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from text_to_num import alpha2digit

from ..records.results import word_key
from .pii import is_domain

NUMBER_LANGUAGES = {"en", "fr", "es", "pt", "de", "it", "nl"}
_CHUNK_WORDS = 300  # alpha2digit and the alignment run on pieces of the word stream this long
_DIGITS = re.compile(r"\d[\d-]*")
_SPELLED_MIN = 6
# Spoken e-mail parts, in the languages text2num covers.
_AT = {"at", "@", "arobase", "arroba", "chiocciola", "apenstaartje", "klammeraffe"}
_DOT = {"dot", "point", "punkt", "punto", "ponto", "punt"}
_JOINERS = {"underscore": "_", "dash": "-", "hyphen": "-"}


@dataclass(frozen=True)
class Token:
    text: str
    lo: int  # the transcript words it stands for: [lo, hi)
    hi: int


def normalize(words: list[str], language: str | None) -> list[Token]:
    """The words (a channel's, in time order) as tokens: casefolded, surrounding punctuation
    removed, spoken numbers as digits, digit runs joined, spoken e-mail addresses written."""
    keys = [(i, k) for i, w in enumerate(words) if (k := word_key(w))]
    tokens: list[Token] = []
    for at in range(0, len(keys), _CHUNK_WORDS):
        tokens += _numbers(keys[at : at + _CHUNK_WORDS], language)
    return _emails(_join_digits(tokens))


def _numbers(keys: list[tuple[int, str]], language: str | None) -> list[Token]:
    plain = [Token(k, i, i + 1) for i, k in keys]
    lang = (language or "en").split("-")[0].lower()
    if lang not in NUMBER_LANGUAGES or not keys:
        return plain
    src = [k for _, k in keys]
    out = alpha2digit(" ".join(src), lang).split()
    if out == src:
        return plain
    tokens: list[Token] = []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, src, out, autojunk=False).get_opcodes():
        if op == "equal" or (op == "replace" and i2 - i1 == j2 - j1):
            tokens += [Token(out[j1 + n], keys[i1 + n][0], keys[i1 + n][0] + 1) for n in range(j2 - j1)]
        elif j2 > j1:  # n words became m tokens ("twenty five" -> "25"): each stands for all n
            if i2 > i1:
                lo, hi = keys[i1][0], keys[i2 - 1][0] + 1
            else:  # inserted: it stands for the word it follows
                lo = keys[min(i1, len(keys)) - 1][0] if i1 else keys[0][0]
                hi = lo + 1
            tokens += [Token(t, lo, hi) for t in out[j1:j2]]
    return tokens


def _join_digits(tokens: list[Token]) -> list[Token]:
    out: list[Token] = []
    for t in tokens:
        prev = out[-1] if out else None
        if prev is not None and _DIGITS.fullmatch(prev.text) and _DIGITS.fullmatch(t.text):
            out[-1] = Token(prev.text + t.text, prev.lo, t.hi)
        else:
            out.append(t)
    return _join_spelled(out)


def _join_spelled(tokens: list[Token]) -> list[Token]:
    """Codes spelled letter by letter among digits ("g b 82 w e s t 1234...", an IBAN) as one
    upper-case token: a run of at least `_SPELLED_MIN` single letters and digit groups, with both."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and _spellable(tokens[j].text):
            j += 1
        run = tokens[i:j]
        if len(run) >= _SPELLED_MIN and any(t.text.isalpha() for t in run) and any(t.text[0].isdigit() for t in run):
            out.append(Token("".join(t.text for t in run).replace("-", "").upper(), run[0].lo, run[-1].hi))
            i = j
        else:
            out.append(tokens[i])
            i += 1
    return out


def _spellable(text: str) -> bool:
    return len(text) == 1 and text.isalpha() or _DIGITS.fullmatch(text) is not None


def _emails(tokens: list[Token]) -> list[Token]:
    """`name [dot name]... at domain dot tld` (or `domain.tld`) as one token."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        found = _email_at(tokens, i, out)
        if found is None:
            out.append(tokens[i])
            i += 1
            continue
        local_start, end, text = found
        lo = out[local_start].lo
        del out[local_start:]
        out.append(Token(text, lo, tokens[end - 1].hi))
        i = end
    return out


def _email_at(tokens: list[Token], i: int, before: list[Token]) -> tuple[int, int, str] | None:
    """An address whose `at` is tokens[i]: (where its local part starts in `before`, the token
    after the domain, the address)."""
    if tokens[i].text not in _AT or not before:
        return None
    # local part: the word before, with `dot`/`underscore` joined words before that
    k = len(before) - 1
    local = _part(before[k].text)
    while k >= 2 and (before[k - 1].text in _DOT or before[k - 1].text in _JOINERS):
        sep = "." if before[k - 1].text in _DOT else _JOINERS[before[k - 1].text]
        local = _part(before[k - 2].text) + sep + local
        k -= 2
    # domain: word (dot word)+, or a word that already has a dot in it
    j, domain = i + 1, ""
    if j < len(tokens):
        domain = _part(tokens[j].text)
        j += 1
        while j + 1 < len(tokens) and tokens[j].text in _DOT:
            domain += "." + _part(tokens[j + 1].text)
            j += 2
    if not local or not is_domain(domain):  # "me at john dot smith at example dot com": not this `at`
        return None
    return k, j, f"{local}@{domain}"


def _part(word: str) -> str:
    return word if re.fullmatch(r"[\w.+-]+", word) else ""
