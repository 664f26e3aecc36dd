"""Linear-chain CRF: partition function, path score and Viterbi against brute-force
enumeration of every tag sequence on tiny cases; gradcheck in float64."""

import itertools

import pytest
import torch

from memnets.models.crf import LinearChainCRF, bio_constraints


def _random_crf(T, seed=0, **kw):
    torch.manual_seed(seed)
    crf = LinearChainCRF(T, **kw).double()
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
        crf.end.normal_()
    return crf


def _path_score(crf, em, path):
    """s(y) written out term by term for one sequence em (n, T)."""
    A = crf.transitions + crf.transition_penalty
    pi = crf.start + crf.start_penalty
    s = pi[path[0]] + em[0, path[0]]
    for t in range(1, len(path)):
        s = s + A[path[t - 1], path[t]] + em[t, path[t]]
    return s + crf.end[path[-1]]


def _brute(crf, em, n):
    paths = list(itertools.product(range(crf.num_tags), repeat=n))
    scores = torch.stack([_path_score(crf, em[:n], p) for p in paths])
    return torch.logsumexp(scores, 0), list(paths[int(scores.argmax())]), scores, paths


def test_partition_score_and_viterbi_against_enumeration():
    T, L = 3, 4
    crf = _random_crf(T)
    em = torch.randn(3, L, T, dtype=torch.float64)
    lengths = torch.tensor([4, 2, 1])
    tags = torch.randint(0, T, (3, L))
    logz = crf.log_partition(em, lengths)
    score = crf.score(em, tags, lengths)
    best = crf.decode(em, lengths)
    for i, n in enumerate(lengths.tolist()):
        ref_logz, ref_best, _, _ = _brute(crf, em[i], n)
        assert torch.allclose(logz[i], ref_logz, atol=1e-10)
        assert torch.allclose(score[i], _path_score(crf, em[i], tags[i, :n].tolist()),
                              atol=1e-12)
        assert best[i] == ref_best
    nll = crf.nll(em, tags, lengths)
    assert torch.all(nll > 0)  # a probability below 1


def test_padding_is_ignored():
    crf = _random_crf(4, seed=1)
    em = torch.randn(1, 3, 4, dtype=torch.float64)
    padded = torch.cat([em, torch.randn(1, 5, 4, dtype=torch.float64) * 100], dim=1)
    tags = torch.tensor([[1, 2, 3]])
    tags_p = torch.cat([tags, torch.full((1, 5), -100)], dim=1)
    assert torch.allclose(crf.log_partition(em), crf.log_partition(padded, [3]))
    assert torch.allclose(crf.score(em, tags), crf.score(padded, tags_p, [3]))
    assert crf.decode(em) == crf.decode(padded, [3])


def test_probabilities_sum_to_one():
    crf = _random_crf(2, seed=2)
    em = torch.randn(1, 5, 2, dtype=torch.float64)
    total = sum(
        torch.exp(-crf.nll(em, torch.tensor([list(p)])))
        for p in itertools.product(range(2), repeat=5)
    )
    assert torch.allclose(total, torch.ones(1, dtype=torch.float64))


def test_gradcheck_float64():
    torch.manual_seed(3)
    em = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    A = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    s = torch.randn(3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    tags = torch.tensor([[0, 2, 1, 1], [1, 0, -100, -100]])
    lengths = torch.tensor([4, 2])
    assert torch.autograd.gradcheck(
        lambda e, A, s, w: _nll_functional(e, A, s, w, tags, lengths), (em, A, s, w)
    )


def _nll_functional(e, A, s, w, tags, lengths):
    """The CRF's NLL as a function of its parameters (swapped in as plain tensors)."""
    crf = LinearChainCRF(3).double()
    del crf.transitions, crf.start, crf.end
    crf.transitions, crf.start, crf.end = A, s, w
    return crf.nll(e, tags, lengths).sum()


def test_bio_constraints_and_constrained_viterbi():
    tags = ["O", "B-x", "I-x", "B-y.z", "I-y.z"]
    allowed, allowed_start = bio_constraints(tags)
    assert allowed_start.tolist() == [True, True, False, True, False]
    assert allowed[tags.index("B-x"), tags.index("I-x")]
    assert allowed[tags.index("I-x"), tags.index("I-x")]
    assert not allowed[tags.index("O"), tags.index("I-x")]
    assert not allowed[tags.index("B-y.z"), tags.index("I-x")]
    assert allowed[tags.index("I-x"), tags.index("B-y.z")]
    # emissions that favour an ill-formed "O I-x": the constrained CRF never outputs it
    crf = LinearChainCRF(5, allowed=allowed, allowed_start=allowed_start).double()
    em = torch.full((1, 2, 5), -5.0, dtype=torch.float64)
    em[0, 0, 0] = 5.0
    em[0, 1, 2] = 5.0
    path = crf.decode(em)[0]
    assert [tags[i] for i in path] != ["O", "I-x"]
    _, ref_best, scores, paths = _brute(crf, em[0], 2)
    assert path == ref_best
    assert torch.allclose(crf.log_partition(em)[0], torch.logsumexp(scores, 0))


def test_bad_shapes_are_named():
    crf = LinearChainCRF(3)
    with pytest.raises(ValueError, match=r"expected emissions of shape \(N, L, 3\)"):
        crf.log_partition(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"expected every length in \[1, 4\]"):
        crf.log_partition(torch.randn(2, 4, 3), [5, 1])
    with pytest.raises(ValueError, match="expected allowed of shape"):
        LinearChainCRF(3, allowed=torch.ones(2, 2, dtype=torch.bool))
