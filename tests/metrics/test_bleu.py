"""BLEU and chrF (memnets.metrics.bleu) against implementations of the papers'
formulas written out here: corpus n-gram counts with clipping and the brevity
penalty (Papineni et al. 2002), character n-gram precision and recall (Popović
2015); the two tokenisation conventions and their signatures."""

from __future__ import annotations

import math
from collections import Counter

import pytest

pytest.importorskip("sacrebleu")

from memnets.metrics.bleu import chrf, corpus_bleu, sacre_bleu, tokenized_bleu  # noqa: E402


def ngrams(words, n):
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def reference_bleu(hyps, refs):
    """Corpus BLEU-4 over whitespace tokens, one reference, no smoothing needed."""
    match, total = [0] * 4, [0] * 4
    H = R = 0
    for h, r in zip(hyps, refs):
        hw, rw = h.split(), r.split()
        H, R = H + len(hw), R + len(rw)
        for n in range(1, 5):
            hc, rc = ngrams(hw, n), ngrams(rw, n)
            match[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            total[n - 1] += max(len(hw) - n + 1, 0)
    bp = 1.0 if H > R else math.exp(1 - R / H)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(match, total)) / 4)


HYPS = ["a man is riding a bike down the street .",
        "two dogs play in the green grass together",
        "a woman in a red dress is singing on a stage"]
REFS = ["a man rides a bike down the street .",
        "two dogs are playing in the grass together",
        "a woman in a red dress sings on the stage ."]


def test_tokenized_bleu_equals_the_formula():
    s = tokenized_bleu(HYPS, REFS)
    assert s.score == pytest.approx(reference_bleu(HYPS, REFS), abs=1e-9)
    assert "tok:none" in s.signature and "case:mixed" in s.signature
    assert s.details["hyp_len"] == sum(len(h.split()) for h in HYPS)
    # shorter hypotheses pay the brevity penalty
    short = [" ".join(h.split()[:-2]) for h in HYPS]
    assert tokenized_bleu(short, REFS).details["bp"] < 1.0
    assert tokenized_bleu(short, REFS).score == pytest.approx(reference_bleu(short, REFS))


def test_tokenize_none_keeps_the_tokens_13a_splits_punctuation():
    # joined punctuation is one token for "none" and split off by 13a
    hyp, ref = ["a man's dog runs fast."], ["a man 's dog runs fast ."]
    assert tokenized_bleu(hyp, ref).score < 50
    assert sacre_bleu(hyp, ["a man's dog runs fast."]).score == pytest.approx(100.0)
    s = sacre_bleu(["A Man's dog runs fast."], ["a man's dog runs fast."], lowercase=True)
    assert s.score == pytest.approx(100.0) and "case:lc" in s.signature and "tok:13a" in \
        s.signature
    assert corpus_bleu(hyp, ref, tokenize="none").score == tokenized_bleu(hyp, ref).score


def reference_chrf(hyps, refs, order=6, beta=2.0):
    """chrF: character n-grams (spaces removed) counted over the corpus, precision and
    recall averaged over n = 1..order, then the F-beta of the averages."""
    stats = []
    for n in range(1, order + 1):
        m = th = tr = 0
        for h, r in zip(hyps, refs):
            hc, rc = ngrams(list("".join(h.split())), n), ngrams(list("".join(r.split())), n)
            m += sum(min(c, rc[g]) for g, c in hc.items())
            th, tr = th + sum(hc.values()), tr + sum(rc.values())
        stats.append((m / th, m / tr))
    p = sum(s[0] for s in stats) / order
    r = sum(s[1] for s in stats) / order
    return 100 * (1 + beta ** 2) * p * r / (beta ** 2 * p + r)


def test_chrf_equals_the_formula():
    s = chrf(HYPS, REFS)
    assert s.name == "chrF2" and "nc:6" in s.signature
    assert s.score == pytest.approx(reference_chrf(HYPS, REFS), abs=1e-6)
    assert chrf(["same text"], ["same text"]).score == pytest.approx(100.0)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        tokenized_bleu(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="as a string"):
        tokenized_bleu([["a"]], ["a"])
