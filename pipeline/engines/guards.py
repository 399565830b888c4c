"""Guards against what users report from Granite on long or odd audio: runaway generation,
repetition loops, and text on silence.

- `max_tokens`: output is capped by the block's duration (about 16 tokens per second of speech
  plus a margin), so a runaway cannot cost more than a normal block.
- `collapse_repetitions`: a phrase of 2-8 words repeated 4 or more times in a row, or a single
  word 8 or more times, is collapsed to one occurrence. Real speech repeats too ("nine nine nine
  one", "bye bye bye"), so only runs longer than people say are touched. Words compare without
  case and punctuation ("Ten of clubs ten of clubs..." is a loop). When the text runs faster than
  anyone speaks (over `MAX_WORDS_PER_S` words per second of the block's audio), shorter runs are
  loops too: a phrase said twice, a word three times (a 3.8 s block that came back as one clause
  said three times, 24 words, was seen in bench/quality.py).
- A block that hits the cap without end-of-sequence is reported as `length`, so it can be
  flagged or retried; empty text is a valid answer (silence is not transcribed into words).
"""

from __future__ import annotations

import math

from ..records.results import word_key

TOKENS_PER_S = 16.0
MARGIN_TOKENS = 16


def max_tokens(duration_s: float, tokens_per_s: float = TOKENS_PER_S, margin: int = MARGIN_TOKENS) -> int:
    return math.ceil(duration_s * tokens_per_s) + margin


PHRASE_REPEATS = 4  # a 2-8 word phrase this many times in a row is a loop
WORD_REPEATS = 8  # a single word needs a longer run ("no no no no" is speech)
MAX_WORDS_PER_S = 5.0  # 300 words a minute: faster than conversation, so text beyond it is padded by a loop


def collapse_repetitions(text: str, max_phrase_words: int = 8, duration_s: float | None = None) -> tuple[str, bool]:
    """Collapse looping phrases to one occurrence; (text, whether changed). With the audio's
    `duration_s`, text too fast to be speech has its shorter repeats collapsed too."""
    original = text.split()
    words = [word_key(w) for w in original]
    word_reps, phrase_reps = WORD_REPEATS, PHRASE_REPEATS
    if duration_s is not None and len(words) > MAX_WORDS_PER_S * max(duration_s, 0.5):
        word_reps, phrase_reps = 3, 2
    changed = False
    i = 0
    out: list[str] = []
    while i < len(words):
        best_n, best_reps = 0, 1
        for n in range(1, max_phrase_words + 1):
            phrase = words[i : i + n]
            if len(phrase) < n:
                break
            reps = 1
            while words[i + reps * n : i + (reps + 1) * n] == phrase:
                reps += 1
            if reps >= (word_reps if n == 1 else phrase_reps) and reps * n > best_reps * best_n:
                best_n, best_reps = n, reps
        if best_n:
            out += original[i : i + best_n]
            i += best_n * best_reps
            changed = True
        else:
            out.append(original[i])
            i += 1
    return (" ".join(out) if changed else text), changed
