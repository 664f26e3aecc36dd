"""CTC decoding against hand-worked cases and brute force: every alignment of tiny
inputs enumerated, summed per labelling, constrained and scored in plain Python,
and the trimming-versus-blank demonstration over every frame sequence."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from memnets.models.ctc_decoding import (
    Lexicon,
    NGramLM,
    beam_decode,
    collapse,
    greedy_decode,
    prefix_beam_search,
    trim,
)


def reference_collapse(path, blank=0):
    return tuple(s for s, _ in itertools.groupby(path) if s != blank)


def labelling_log_probs(log_probs: torch.Tensor, blank=0) -> dict[tuple, float]:
    """log p(labelling | x) for every labelling, by summing every path in float64."""
    T, V = log_probs.shape
    lp = log_probs.double().tolist()
    sums: dict[tuple, float] = {}
    for path in itertools.product(range(V), repeat=T):
        score = math.exp(sum(lp[t][s] for t, s in enumerate(path)))
        key = reference_collapse(path, blank)
        sums[key] = sums.get(key, 0.0) + score
    return {k: math.log(v) for k, v in sums.items()}


def random_log_probs(T, V, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(T, V, generator=g) * 1.5, -1)


# ---------------------------------------------------------------------- the two maps


def test_trimming_cannot_write_a_repeated_token_and_the_blank_can():
    good, great, blank = "好", "棒", "-"
    assert "".join(trim("好好好棒棒棒棒棒")) == "好棒"
    trimmed = {"".join(trim(f)) for f in itertools.product(good + great, repeat=6)}
    assert "好棒棒" not in trimmed and "好棒" in trimmed  # nothing trims to 好棒棒
    assert all(a != b for t in trimmed for a, b in zip(t, t[1:]))  # no token twice in a row
    collapsed = {"".join(collapse(f, blank)) for f in
                 itertools.product(good + great + blank, repeat=6)}
    assert "好棒棒" in collapsed and "".join(collapse("好好-棒棒-棒", blank)) == "好棒棒"
    # with the blank, six frames write every sequence that needs at most six frames
    for n in range(1, 4):
        for seq in itertools.product(good + great, repeat=n):
            need = n + sum(a == b for a, b in zip(seq, seq[1:]))
            assert ("".join(seq) in collapsed) == (need <= 6)


# ---------------------------------------------------------------------- greedy


def test_greedy_is_the_best_path_collapsed():
    best = [1, 1, 0, 1, 2, 2, 0]
    lp = torch.full((7, 3), -5.0)
    lp[torch.arange(7), torch.tensor(best)] = -0.1
    assert greedy_decode(lp) == [[1, 1, 2]]
    batch = torch.stack([lp, lp.roll(1, 0)])
    assert greedy_decode(batch, torch.tensor([7, 3])) == [[1, 1, 2], [1]]  # lengths honoured


def test_best_path_is_not_the_best_labelling_and_the_beam_finds_the_labelling():
    # two frames, p(blank) = 0.6, p(a) = 0.4: the best path is blank blank (0.36) -> "",
    # but p("a") = 0.4 * 0.4 + 0.4 * 0.6 + 0.6 * 0.4 = 0.64
    lp = torch.log(torch.tensor([[0.6, 0.4], [0.6, 0.4]], dtype=torch.float64))
    assert greedy_decode(lp) == [[]]
    found = prefix_beam_search(lp, beam_size=4)
    assert found[0][0] == [1] and math.isclose(found[0][1], math.log(0.64))
    assert found[1][0] == [] and math.isclose(found[1][1], math.log(0.36))


# ---------------------------------------------------------------------- beam search


@pytest.mark.parametrize("T, V, seed", [(3, 3, 0), (4, 3, 1), (5, 3, 2), (4, 4, 3), (6, 2, 4)])
def test_unpruned_beam_search_gives_every_labelling_its_exact_probability(T, V, seed):
    lp = random_log_probs(T, V, seed)
    exact = labelling_log_probs(lp)
    found = prefix_beam_search(lp, beam_size=10**6)
    got = {tuple(p): s for p, s in found}
    assert set(got) == set(exact)
    for k, v in exact.items():
        assert math.isclose(got[k], v, abs_tol=1e-9), k
    assert tuple(found[0][0]) == max(exact, key=exact.get)
    assert [s for _, s in found] == sorted(got.values(), reverse=True)


@pytest.mark.parametrize("seed", range(6))
def test_a_small_beam_finds_the_best_labelling_on_peaked_outputs(seed):
    lp = random_log_probs(6, 3, seed + 10) * 2  # sharper, as trained outputs are
    lp = torch.log_softmax(lp, -1)
    exact = labelling_log_probs(lp)
    assert tuple(prefix_beam_search(lp, beam_size=4)[0][0]) == max(exact, key=exact.get)
    assert prefix_beam_search(lp, beam_size=4, top_k=3) == prefix_beam_search(lp, beam_size=4)


def split_words(labelling, delimiter):
    words, cur = [], []
    for s in labelling:
        if s == delimiter:
            if cur:
                words.append(tuple(cur))
            cur = []
        else:
            cur.append(s)
    if cur:
        words.append(tuple(cur))
    return words


def reference_lm(sentences, order):
    """Witten-Bell by its recursion, written out again over explicit n-gram tables."""
    vocab = {w for s in sentences for w in s}
    seqs = [["<s>"] * (order - 1) + list(s) + ["</s>"] for s in sentences]

    def p(w, h):  # h: the last len(h) words before w
        lower = 1.0 / (len(vocab) + 2) if not h else p(w, h[1:])  # words, </s>, unknown
        follow = [s[i] for s in seqs for i in range(order - 1, len(s))
                  if tuple(s[i - len(h):i]) == h]
        if not follow:
            return lower
        types = len(set(follow))
        return (follow.count(w) + types * lower) / (len(follow) + types)

    def log_p(w, history):
        h = tuple((["<s>"] * (order - 1) + list(history))[-(order - 1):]) if order > 1 else ()
        return math.log(p(w, h))

    return log_p


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("with_lm", [False, True])
def test_lexicon_and_lm_beam_equals_brute_force_over_characters(seed, with_lm):
    a, b, space = 1, 2, 3  # 0 is the blank
    lp = random_log_probs(5, 4, 100 + seed)
    lexicon = Lexicon([(a,), (a, b), (b, b)])
    sentences = [[(a,), (a, b)], [(b, b)], [(a,)]]
    lm = NGramLM(sentences, order=2) if with_lm else None
    ref_lm = reference_lm(sentences, 2)
    alpha, beta = 0.7, 0.3
    scores = {}
    for labelling, ctc in labelling_log_probs(lp).items():
        ws = split_words(labelling, space)
        if any(w not in lexicon for w in ws):
            continue
        s = ctc + beta * len(ws)
        if with_lm:
            s += alpha * sum(ref_lm(w, ws[:i]) for i, w in enumerate(ws))
            s += alpha * ref_lm("</s>", ws)
        scores[labelling] = s
    found = prefix_beam_search(lp, beam_size=10**6, word_delimiter=space, lexicon=lexicon,
                               lm=lm, lm_weight=alpha, word_bonus=beta)
    got = {tuple(p): s for p, s in found}
    assert set(got) == set(scores)
    for k, v in scores.items():
        assert math.isclose(got[k], v, abs_tol=1e-9), k
    assert tuple(found[0][0]) == max(scores, key=scores.get)


def test_word_tokens_with_a_bigram_lm_equal_brute_force():
    lp = random_log_probs(4, 3, 7)  # blank, "yes" = 1, "no" = 2
    sentences = [[1, 1, 2], [2, 1], [1]]
    lm = NGramLM(sentences, order=2)
    ref = reference_lm(sentences, 2)
    scores = {}
    for labelling, ctc in labelling_log_probs(lp).items():
        ws = list(labelling)
        scores[labelling] = ctc + 0.5 * (sum(ref(w, ws[:i]) for i, w in enumerate(ws))
                                         + ref("</s>", ws))
    found = prefix_beam_search(lp, beam_size=10**6, lm=lm, lm_weight=0.5)
    got = {tuple(p): s for p, s in found}
    assert set(got) == set(scores)
    assert all(math.isclose(got[k], v, abs_tol=1e-9) for k, v in scores.items())


def test_a_lexicon_no_prefix_can_meet_leaves_only_transcripts_without_words():
    lp = torch.log_softmax(torch.zeros(2, 3, dtype=torch.float64), -1)  # blank, a, space
    found = prefix_beam_search(lp, word_delimiter=2, lexicon=Lexicon([(1, 1, 1)]))
    # two frames cannot spell "aaa": what is left holds no word (all blank, or a space)
    assert [p for p, _ in found] == [[2], []]
    assert [math.exp(s) for _, s in found] == pytest.approx([3 / 9, 1 / 9])
    assert beam_decode(lp[None], word_delimiter=2, lexicon=Lexicon([(1, 1, 1)])) == [[2]]
    # word tokens: a lexicon without token 1 leaves only the empty transcript (blank: 1/3)
    assert prefix_beam_search(lp[:1], lexicon=Lexicon([(3,)])) == [([], math.log(1 / 3))]


def test_beam_decode_honours_lengths():
    lp = torch.stack([random_log_probs(5, 3, 1), random_log_probs(5, 3, 2)])
    got = beam_decode(lp, torch.tensor([5, 3]), beam_size=8)
    assert got == [prefix_beam_search(lp[0], beam_size=8)[0][0],
                   prefix_beam_search(lp[1, :3], beam_size=8)[0][0]]
    with pytest.raises(ValueError, match="beam_size >= 1"):
        prefix_beam_search(lp[0], beam_size=0)
    with pytest.raises(ValueError, match=r"shape \(T, V\)"):
        prefix_beam_search(lp)


# ---------------------------------------------------------------------- the n-gram model


def test_witten_bell_values_worked_by_hand():
    lm = NGramLM([["a", "b"], ["a", "a"]], order=2)
    # unigram: a 3, b 1, </s> 2 of 6 events, 3 types, uniform 1/4 (a, b, </s>, unknown)
    p1 = {"a": (3 + 0.75) / 9, "b": (1 + 0.75) / 9, "</s>": (2 + 0.75) / 9, "zzz": 0.75 / 9}
    assert math.isclose(lm.prob("b", ["a"]), (1 + 3 * p1["b"]) / 6)  # after a: b, a, </s>
    assert math.isclose(lm.prob("a"), (2 + 1 * p1["a"]) / 3)  # after <s>: a, a
    assert math.isclose(lm.prob("zzz", ["b"]), (0 + 1 * p1["zzz"]) / 2)  # after b: </s>
    assert math.isclose(NGramLM([["a", "b"], ["a", "a"]], order=1).prob("a"), p1["a"])


@pytest.mark.parametrize("order", [1, 2, 3])
def test_lm_probabilities_sum_to_one(order):
    sentences = [["x", "y", "z"], ["y", "y"], ["z", "x", "x", "y"]]
    lm = NGramLM(sentences, order=order)
    for history in ([], ["x"], ["y", "y"], ["never", "seen"]):
        total = sum(lm.prob(w, history) for w in ["x", "y", "z", "</s>"])
        total += lm.prob("an unknown word", history)
        assert math.isclose(total, 1.0), history
    with pytest.raises(ValueError, match="order >= 1"):
        NGramLM(sentences, order=0)
