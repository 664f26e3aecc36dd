"""WER, CER and sentence error rate against hand-worked cases, a recursive edit
distance written from its definition, and jiwer when it is installed."""

from __future__ import annotations

import functools
import random

import pytest

from memnets.metrics.asr import (
    ErrorCounts,
    align,
    cer,
    char_errors,
    edit_distance,
    sentence_error_rate,
    wer,
    word_errors,
)

try:
    import jiwer
except ImportError:  # pragma: no cover - optional (pip install memnets[speech])
    jiwer = None


def reference_distance(a, b) -> int:
    @functools.cache
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_hand_worked_alignments():
    got = align("the cat sat on the mat".split(), "the cat sit on mat today".split())
    assert (got.substitutions, got.deletions, got.insertions, got.hits) == (1, 1, 1, 4)
    assert got.errors == 3 and got.units == 6
    assert edit_distance("kitten", "sitting") == 3
    assert align("abc", "") == ErrorCounts(0, 3, 0, 0)
    assert align("", "ab") == ErrorCounts(0, 0, 2, 0)
    assert align("abc", "abc") == ErrorCounts(0, 0, 0, 3)


def test_corpus_rates_sum_errors_before_dividing():
    refs = ["yes no yes", "no"]
    hyps = ["yes yes", "no no"]
    # "yes no yes" -> "yes yes": 1 deletion; "no" -> "no no": 1 insertion
    assert wer(refs, hyps) == pytest.approx(2 / 4)
    assert word_errors(refs, hyps) == ErrorCounts(0, 1, 1, 3)
    assert cer("ab cd", "abcd") == pytest.approx(1 / 5)  # the space is a character
    assert char_errors(["ab  cd "], ["ab cd"]).errors == 0  # blanks normalised first
    assert sentence_error_rate(refs, hyps) == 1.0
    assert sentence_error_rate(["a b", "c"], ["a  b", "d"]) == 0.5
    assert wer("", "") == 0.0 and wer("", "a") == float("inf")
    assert wer([], []) == 0.0 and sentence_error_rate([], []) == 0.0
    with pytest.raises(ValueError, match="as many hypotheses as references"):
        wer(["a", "b"], ["a"])


def test_edit_distance_equals_the_recursive_definition_and_splits_consistently():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
        b = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
        got = align(a, b)
        assert got.errors == reference_distance(tuple(a), tuple(b))
        assert got.substitutions + got.deletions + got.hits == len(a)
        assert got.substitutions + got.insertions + got.hits == len(b)


@pytest.mark.skipif(jiwer is None, reason="jiwer is not installed")
def test_rates_equal_jiwer_on_random_transcripts():
    rng = random.Random(1)
    vocab = ["one", "two", "three", "yes", "no", "a"]
    refs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 8))) for _ in range(60)]
    hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 8))) for _ in range(60)]
    assert wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    nonempty = [(r, h) for r, h in zip(refs, hyps) if h]
    r2, h2 = [r for r, _ in nonempty], [h for _, h in nonempty]
    assert cer(r2, h2) == pytest.approx(jiwer.cer(r2, h2), abs=1e-12)
    out = jiwer.process_words(refs, hyps)
    ours = word_errors(refs, hyps)
    # the same distance; of the minimal alignments ours keeps the most hits, jiwer may not
    assert ours.errors == out.substitutions + out.deletions + out.insertions
    assert ours.hits >= out.hits
