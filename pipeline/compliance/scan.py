"""The pure core of compliance: one recording's segments in; redacted segments, term hits and PII
spans out. No I/O, no Ray: the run (run/driver.py, through apply.py) calls it as recordings settle, `granite-batch scan`
(rescan.py) over segments already written.

Each channel is searched as one word stream in time order, so a phrase or a card number that a
block cut split is found once. Times are the words' (the CTC head's) where they have them, else
their segment's.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ..records.compliance import Hit, PiiSpan
from ..records.results import Segment, Word
from .normalize import Token, normalize
from .pii import detect
from .rules import Rules

_Row = TypeVar("_Row", Hit, PiiSpan)


@dataclass(frozen=True)
class ScanResult:
    segments: list[Segment]  # redacted (the input's order)
    hits: list[Hit]
    pii: list[PiiSpan]


@dataclass(frozen=True)
class _At:
    """A word of a channel's stream: where it is and its time (its segment's if it has none)."""

    segment: int  # index into the recording's segments
    word: int  # index into that segment's words
    start_s: float
    end_s: float
    timed: bool


class Scanner:
    """`redacts`: the segments it returns are the ones written (a run); a scan of written segments
    only reports (its pii rows say `redacted` false)."""

    def __init__(self, rules: Rules, scan_id: str, redacts: bool = True) -> None:
        self.rules, self.scan_id, self.fingerprint, self.redacts = rules, scan_id, rules.fingerprint, redacts
        self._term_tokens: dict[str | None, list[tuple[tuple[str, ...], int]]] = {}

    def scan(self, segments: list[Segment]) -> ScanResult:
        """One recording's segments (any order)."""
        words = [list(_words_of(s)) for s in segments]
        touched: set[int] = set()  # segments with a word redacted
        hits: list[Hit] = []
        pii: list[PiiSpan] = []
        order = sorted(range(len(segments)), key=lambda k: (segments[k].channel, segments[k].segment_index))
        for _, group in itertools.groupby(order, key=lambda k: segments[k].channel):
            idx = list(group)
            at = [_At(k, j, *_time(w, segments[k])) for k in idx for j, w in enumerate(words[k])]
            stream = [words[a.segment][a.word].word for a in at]
            language = segments[idx[0]].language
            tokens = normalize(stream, language)
            redacted = self._redact(tokens, at, segments, words, pii, touched)
            hits += self._hits(tokens, redacted, stream, at, segments, language)
        out = [_rebuilt(s, words[k]) if k in touched else s for k, s in enumerate(segments)]
        return ScanResult(out, hits, pii)

    # -- PII ----------------------------------------------------------------------------------------
    def _redact(
        self,
        tokens: list[Token],
        at: list[_At],
        segments: list[Segment],
        words: list[list[Word]],
        pii: list[PiiSpan],
        touched: set[int],
    ) -> dict[int, str]:
        """Find PII in the channel's tokens, replace its words in `words` (adding their segments to
        `touched`), add its `pii` rows; returns the stream positions redacted: the first of a span
        -> its `[TYPE]`, the rest -> ""."""
        redacted: dict[int, str] = {}
        if not self.rules.redact or not tokens:
            return redacted
        text, starts = _joined(tokens)
        for f in detect(text, self.rules.redact, self.rules.min_score):
            # the tokens the finding overlaps: found by bisection, not by a pass over the channel per finding
            a, b = max(bisect.bisect_right(starts, f.start) - 1, 0), bisect.bisect_left(starts, f.end)
            inside = [t for t, s in zip(tokens[a:b], starts[a:b]) if s + len(t.text) > f.start]
            lo, hi = min(t.lo for t in inside), max(t.hi for t in inside)
            pii.append(self._span(PiiSpan, at, segments, lo, hi, entity_type=f.entity_type, score=f.score))
            placeholder = f"[{f.entity_type.upper()}]"
            redacted.update({p: "" for p in range(lo, hi)} | {lo: placeholder})
            for seg, run in itertools.groupby(range(lo, hi), key=lambda p: at[p].segment):
                touched.add(seg)
                pos = [at[p].word for p in run]
                first, last = words[seg][pos[0]], words[seg][pos[-1]]
                timed = first.start_s is not None and last.end_s is not None
                words[seg][pos[0]] = Word(
                    placeholder, first.start_s if timed else None, last.end_s if timed else None, None
                )
                for j in pos[1:]:
                    words[seg][j] = _GONE
        for seg in touched:
            words[seg][:] = [x for x in words[seg] if x is not _GONE]
        return redacted

    # -- terms --------------------------------------------------------------------------------------
    def _hits(
        self,
        tokens: list[Token],
        redacted: dict[int, str],
        stream: list[str],
        at: list[_At],
        segments: list[Segment],
        language: str | None,
    ) -> list[Hit]:
        if not self.rules.terms:
            return []
        terms = self._terms_in(language)
        shown = [redacted.get(p, w) for p, w in enumerate(stream)]  # as written to hits: no PII
        texts = [t.text for t in tokens]
        hits = []
        for i in range(len(tokens)):
            for phrase, n in terms.get(texts[i], ()):
                if tuple(texts[i : i + len(phrase)]) != phrase:
                    continue
                lo, hi = tokens[i].lo, tokens[i + len(phrase) - 1].hi
                if any(p in redacted for p in range(lo, hi)):
                    continue
                term = self.rules.terms[n]
                hits.append(
                    self._span(
                        Hit,
                        at,
                        segments,
                        lo,
                        hi,
                        phrase=term.phrase,
                        category=term.category,
                        matched=" ".join(x for x in shown[lo:hi] if x),
                        context=_around(shown, lo, hi, self.rules.context_words),
                    )
                )
        return hits

    def _terms_in(self, language: str | None) -> dict[str, list[tuple[tuple[str, ...], int]]]:
        """First token -> (the phrase's tokens, term index), normalized as transcripts in `language` are."""
        if language not in self._term_tokens:
            by_first: dict[str, list[tuple[tuple[str, ...], int]]] = {}
            for n, t in enumerate(self.rules.terms):
                toks = tuple(x.text for x in normalize(t.phrase.split(), language))
                if toks:
                    by_first.setdefault(toks[0], []).append((toks, n))
            self._term_tokens[language] = by_first
        return self._term_tokens[language]

    # -- rows ---------------------------------------------------------------------------------------
    def _span(self, kind: type[_Row], at: list[_At], segments: list[Segment], lo: int, hi: int, **cols: Any) -> _Row:
        first, last = at[lo], at[hi - 1]
        s = segments[first.segment]
        return kind(
            recording_id=s.recording_id,
            source_uri=s.source_uri,
            channel=s.channel,
            channel_label=s.channel_label,
            segment_index=s.segment_index,
            start_s=float(first.start_s),
            end_s=float(max(last.end_s, first.start_s)),
            times_from="words" if all(a.timed for a in at[lo:hi]) else "segments",
            scan_id=self.scan_id,
            rules=self.fingerprint,
            **({"redacted": self.redacts} if kind is PiiSpan else {}),
            **cols,
        )


_GONE = Word("", None, None, None)  # a redacted word merged into the placeholder before it


def _words_of(s: Segment) -> tuple[Word, ...]:
    """A segment's words; from its text, untimed, when the run kept no word times."""
    if s.words:
        return s.words
    return tuple(Word(w, None, None, None) for w in s.text.split())


def _time(w: Word, s: Segment) -> tuple[float, float, bool]:
    if w.start_s is None or w.end_s is None:
        return s.start_s, s.end_s, False
    return w.start_s, w.end_s, True


def _joined(tokens: list[Token]) -> tuple[str, list[int]]:
    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t.text) + 1
    return " ".join(t.text for t in tokens), starts


def _around(shown: list[str], lo: int, hi: int, n: int) -> str:
    """Words [lo, hi) with `n` shown words either side (a redacted span counts as one)."""
    before = list(itertools.islice((shown[i] for i in range(lo - 1, -1, -1) if shown[i]), n))[::-1]
    after = list(itertools.islice((shown[i] for i in range(hi, len(shown)) if shown[i]), n))
    return " ".join(before + [w for w in shown[lo:hi] if w] + after)


def _rebuilt(s: Segment, words: list[Word]) -> Segment:
    """A segment with redacted words; text is its words again (one entry per word of text)."""
    text = " ".join(w.word for w in words)
    return replace(s, text=text, words=tuple(words) if s.words else ())
