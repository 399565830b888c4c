"""CTC posteriors whose character timings are known: what the aligner is measured against
(tests/test_align.py, bench/ctc.py). Each character holds 1-4 frames, blanks of 0-3 frames lie
between (at least one between equal neighbours, as CTC needs), and every frame's probability mass
is spread: the true class gets 0.5-0.9 (so it is the most likely), the blank and a few random classes share the rest."""

from __future__ import annotations

import numpy as np

from pipeline.engines.ctc.align import BLANK, FRAME_S, SPACE, char_id

CLASSES = 348


def constructed(
    text: str, rng: np.random.Generator, noise: float = 0.0
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Log-probabilities (frames, 348) for `text` (Latin-1 words) and each word's true (start_s, end_s).
    `noise`: the share of frames where a wrong class outranks the true one (0.45 against 0.3)."""
    frames: list[int] = list(np.full(rng.integers(1, 8), BLANK))
    truth: list[tuple[float, float]] = []
    for w, word in enumerate(text.split()):
        if w:
            frames += [SPACE] * int(rng.integers(1, 3)) + [BLANK] * int(rng.integers(0, 2))
        start, prev = -1, None
        for c in word:
            cid = char_id(c)
            assert cid is not None
            if cid == prev or rng.random() < 0.5:
                frames += [BLANK] * int(rng.integers(1, 4))
            start = len(frames) if start < 0 else start
            frames += [cid] * int(rng.integers(1, 5))
            prev = cid
        end = len(frames)
        truth.append((start * FRAME_S, end * FRAME_S))
        frames += [BLANK] * int(rng.integers(0, 3))
    frames += [BLANK] * int(rng.integers(1, 8))
    probs = np.full((len(frames), CLASSES), 1e-4)
    for t, cid in enumerate(frames):
        others = rng.choice(CLASSES, size=3, replace=False)
        if rng.random() < noise:
            probs[t, cid] += 0.3
            probs[t, others[1] if others[1] != cid else others[2]] += 0.45
            probs[t] += 0.25 / CLASSES
            continue
        own = rng.uniform(0.5, 0.9)
        probs[t, cid] += own
        share = rng.dirichlet(np.ones(4)) * (1 - own)
        probs[t, BLANK if cid != BLANK else others[0]] += share[0]
        probs[t, others] += share[1:]
    probs /= probs.sum(axis=1, keepdims=True)
    return np.log(probs).astype(np.float32), truth


SENTENCES = [
    "hello world",
    "the committee will meet again tomorrow morning",
    "a bookkeeper all agreed",
    "it's eleven o'clock in zürich",
    "balloon coffee moon",
    "sí señor ça va très bien",
]


def alignment_errors_ms(n: int = 200, seed: int = 0, noise: float = 0.0) -> list[float]:
    """|aligned - true| of every word start and end, in ms, over `n` constructed sentences."""
    from pipeline.engines.ctc.align import align_words

    rng = np.random.default_rng(seed)
    errors: list[float] = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        log_probs, truth = constructed(text, rng, noise)
        words = align_words(text, log_probs, log_probs.shape[0] * FRAME_S)
        for w, (start, end) in zip(words, truth):
            assert w.start_s is not None and w.end_s is not None
            errors += [abs(w.start_s - start) * 1000, abs(w.end_s - end) * 1000]
    return errors
