"""Word times from Granite's CTC head: the final text of a block, forced-aligned (Viterbi) to the
head's per-frame log-probabilities, whichever path produced the text. Pure numpy.

The head has one frame per 20 ms and emits characters: id 0 is the blank, ids below 256 are
Latin-1 characters (`chr(id)`), 256..347 Katakana whose mapping is not published. So words in
Latin script (English, French, German, Spanish, Portuguese) get times; a word with any other
letter (kanji, kana, Cyrillic...) gets none (null), never a guessed one.

No maintained aligner fits here: torchaudio's `forced_align` needs its compiled extension (absent
next to a CPU torch), and `ctc-forced-aligner` is a source-only package that compiles C++ at
install and imports onnxruntime and librosa. The Viterbi is ~30 lines and tested against
posteriors whose timings are known (tests/test_align.py).
"""

from __future__ import annotations

import numpy as np

from ...records.results import Word

FRAME_S = 0.02  # one CTC frame: the encoder's 50 frames per second
BLANK = 0
SPACE = ord(" ")


def char_id(c: str) -> int | None:
    """The head's class for one character; None when it has none (outside Latin-1)."""
    i = ord(c.lower())
    return i if 0 < i < 256 else None


def _word_targets(word: str) -> list[int] | None:
    """Class ids of a word's letters and digits (punctuation is skipped: the model writes none and
    the head is not trained on it); None when a letter has no class or nothing is left."""
    ids: list[int] = []
    for c in word:
        if c.isalnum() or c == "'":
            i = char_id(c)
            if i is None:
                return None
            ids.append(i)
    return ids or None


def viterbi(log_probs: np.ndarray, targets: list[int]) -> list[tuple[int, int]] | None:
    """CTC forced alignment: for each target, the first and last frame it occupies on the best
    path (blank between targets optional, required between equal neighbours). None when the
    frames cannot hold the targets."""
    T, L = log_probs.shape[0], len(targets)
    if L == 0 or T < L + sum(a == b for a, b in zip(targets, targets[1:])):
        return None
    labels = np.full(2 * L + 1, BLANK, dtype=np.int64)
    labels[1::2] = targets
    S = labels.size
    emit = log_probs[:, labels]  # (T, S)
    # A skip over a blank is allowed into a label that differs from the label two states back.
    skip = np.zeros(S, dtype=bool)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    score = np.full(S, -np.inf)
    score[:2] = emit[0, :2]
    back = np.zeros((T, S), dtype=np.int8)  # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, T):
        stay, step = score, np.concatenate(([-np.inf], score[:-1]))
        jump = np.where(skip, np.concatenate(([-np.inf, -np.inf], score[:-2])), -np.inf)
        choices = np.stack([stay, step, jump])
        back[t] = choices.argmax(axis=0)
        score = choices.max(axis=0) + emit[t]
    s = S - 1 if score[S - 1] >= score[S - 2] else S - 2
    if not np.isfinite(score[s]):
        return None
    spans: list[list[int]] = [[-1, -1] for _ in range(L)]
    for t in range(T - 1, -1, -1):
        if s % 2:
            k = s // 2
            spans[k][0] = t
            if spans[k][1] < 0:
                spans[k][1] = t
        s -= int(back[t, s])
    return [(a, b) for a, b in spans]


def align_words(text: str, log_probs: np.ndarray, duration_s: float) -> tuple[Word, ...]:
    """One Word per whitespace-separated word of `text`, with times in seconds from the start of
    the block (within [0, duration_s], starts never decreasing) and the mean probability of its
    characters' frames; words the head cannot spell keep null times."""
    words = text.split()
    targets: list[int] = []
    where: list[tuple[int, int] | None] = []  # each word's slice of `targets`
    for w in words:
        ids = _word_targets(w)
        if ids is None:
            where.append(None)
            continue
        if targets:
            targets.append(SPACE)
        where.append((len(targets), len(targets) + len(ids)))
        targets += ids
    spans = viterbi(log_probs, targets) if targets else None
    if spans is None:
        return tuple(Word(w, None, None, None) for w in words)
    probs = np.exp(log_probs)
    out = []
    for w, span in zip(words, where):
        if span is None:
            out.append(Word(w, None, None, None))
            continue
        chars = spans[span[0] : span[1]]
        first, last = chars[0][0], chars[-1][1]
        score = float(np.mean([probs[a : b + 1, targets[span[0] + i]].mean() for i, (a, b) in enumerate(chars)]))
        start = min(first * FRAME_S, duration_s)
        out.append(Word(w, start, min((last + 1) * FRAME_S, duration_s), score))
    return tuple(out)
