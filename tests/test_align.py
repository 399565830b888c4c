"""Word times from CTC posteriors (engines/ctc/align.py) and the greedy CTC rule (engines/ctc/head.py: greedy), on
posteriors built with known character timings."""

from __future__ import annotations

import math

import numpy as np

from pipeline.engines.ctc.align import FRAME_S, align_words, viterbi
from pipeline.engines.ctc.head import greedy
from tests.ctc_posteriors import CLASSES, SENTENCES, alignment_errors_ms, constructed


def test_word_times_are_within_one_frame_of_the_truth():
    errors = alignment_errors_ms(n=120, seed=1)
    assert len(errors) > 500
    assert max(errors) <= FRAME_S * 1000 + 1e-6, max(errors)
    # A third of the frames with a wrong class on top: the path through the text still holds.
    noisy = alignment_errors_ms(n=120, seed=2, noise=0.3)
    assert max(noisy) <= FRAME_S * 1000 + 1e-6, max(noisy)


def test_words_are_one_per_word_inside_the_block_and_never_go_back():
    rng = np.random.default_rng(2)
    for text in SENTENCES:
        log_probs, _ = constructed(text, rng)
        duration = log_probs.shape[0] * FRAME_S - 0.05  # the block ends inside its last frame
        words = align_words(text, log_probs, duration)
        assert [w.word for w in words] == text.split()
        starts = [w.start_s for w in words]
        assert starts == sorted(starts)
        for w in words:
            assert 0 <= w.start_s <= w.end_s <= duration and 0 < w.score <= 1


def test_words_the_head_cannot_spell_get_no_times_and_the_rest_keep_theirs():
    rng = np.random.default_rng(3)
    log_probs, truth = constructed("meet in tokyo today", rng)
    words = align_words("meet in 東京 tokyo today", log_probs, 10.0)
    assert (words[2].start_s, words[2].end_s, words[2].score) == (None, None, None)
    timed = [w for w in words if w.start_s is not None]
    assert [w.word for w in timed] == ["meet", "in", "tokyo", "today"]
    for w, (start, end) in zip(timed, truth):
        assert abs(w.start_s - start) <= FRAME_S + 1e-9 and abs(w.end_s - end) <= FRAME_S + 1e-9
    # Japanese text is one run of kanji and kana: no times at all, and no guessed ones.
    assert all(w.start_s is None for w in align_words("今日は 晴れ", log_probs, 10.0))


def test_text_longer_than_the_frames_can_hold_gets_no_times():
    log_probs, _ = constructed("hi", np.random.default_rng(4))
    words = align_words("a much longer sentence than two letters " * 3, log_probs, 1.0)
    assert words and all(w.start_s is None for w in words)
    assert align_words("", log_probs, 1.0) == ()


def test_viterbi_needs_a_blank_between_equal_letters():
    lp = np.log(np.full((3, CLASSES), 1 / CLASSES))
    assert viterbi(lp, [ord("l"), ord("l")]) == [(0, 0), (2, 2)]  # the only path: l, blank, l
    assert viterbi(lp[:2], [ord("l"), ord("l")]) is None  # two frames cannot hold l, blank, l
    assert viterbi(lp[:2], [ord("l"), ord("o")]) is not None


def test_greedy_ctc_text_and_confidence():
    rng = np.random.default_rng(5)
    log_probs, _ = constructed("hello world", rng)
    out = greedy(log_probs)
    assert out.text == "hello world"
    p = np.exp(log_probs.astype(np.float64))
    assert math.isclose(out.confidence, float((-(p * np.log(p)).sum(axis=1)).max()), rel_tol=1e-4)
    sure = np.log(np.where(np.eye(CLASSES)[np.argmax(log_probs, axis=1)] > 0, 0.999, 0.001 / (CLASSES - 1)))
    assert greedy(sure).confidence < 0.1 < out.confidence
    blank = np.log(np.eye(CLASSES)[np.zeros(20, int)] * 0.99 + 0.01 / CLASSES)
    assert greedy(blank).text == "" and greedy(blank).confidence == math.inf
    kana = log_probs.copy()
    kana[3, :] = np.log(1e-6)
    kana[3, 300] = 0.0  # a Katakana class: the text cannot be spelled, so no CTC text
    assert greedy(kana).text == "" and greedy(kana).confidence == math.inf
