"""Masked pooling: each mode against a hand computation, whatever the padding holds."""

from __future__ import annotations

import math

import pytest
import torch

from memnets.layers.pooling import POOLINGS, attention_scorer, attention_weights, pool

LENGTHS = [5, 2, 4]


def _batch(F: int = 4):
    """Outputs ``(N, L, F)`` in float64 whose padded steps hold garbage (NaN, huge)."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 5, F, generator=g, dtype=torch.float64)
    h[1, 2:] = float("nan")
    h[2, 4:] = 1e6
    return h, torch.tensor(LENGTHS)


def test_last_is_the_last_valid_step():
    h, lengths = _batch()
    out = pool(h, lengths, "last")
    for i, n in enumerate(LENGTHS):
        assert torch.equal(out[i], h[i, n - 1])


def test_last_bidirectional_joins_forward_last_and_backward_first():
    h, lengths = _batch(F=6)
    out = pool(h, lengths, "last", bidirectional=True)
    for i, n in enumerate(LENGTHS):
        assert torch.equal(out[i], torch.cat([h[i, n - 1, :3], h[i, 0, 3:]]))


def test_mean_and_max_over_the_valid_steps():
    h, lengths = _batch()
    mean, top = pool(h, lengths, "mean"), pool(h, lengths, "max")
    for i, n in enumerate(LENGTHS):
        ref_mean = [sum(h[i, t, f].item() for t in range(n)) / n for f in range(4)]
        ref_max = [max(h[i, t, f].item() for t in range(n)) for f in range(4)]
        assert mean[i].tolist() == pytest.approx(ref_mean, abs=1e-12)
        assert top[i].tolist() == ref_max


@pytest.mark.parametrize("heads", [1, 3])
def test_attention_is_a_softmax_over_the_valid_steps_per_head(heads):
    torch.manual_seed(1)
    h, lengths = _batch()
    scorer = attention_scorer(4, heads).double()
    W, b, V = scorer[0].weight, scorer[0].bias, scorer[2].weight  # V: (heads, F)
    out = pool(h, lengths, "attention", scorer=scorer)
    assert out.shape == (3, heads * 4)
    alpha = attention_weights(scorer(torch.nan_to_num(h)), lengths)  # (N, L, heads)
    for i, n in enumerate(LENGTHS):
        for k in range(heads):
            with torch.no_grad():
                s = [float(V[k] @ torch.tanh(W @ h[i, t] + b)) for t in range(n)]
            z = sum(math.exp(v) for v in s)
            a = [math.exp(v) / z for v in s]
            ref = [sum(a[t] * h[i, t, f].item() for t in range(n)) for f in range(4)]
            assert out[i, 4 * k:4 * (k + 1)].tolist() == pytest.approx(ref, abs=1e-12)
            assert alpha[i, :n, k].tolist() == pytest.approx(a, abs=1e-12)
            assert not alpha[i, n:, k].any()


def test_layout_of_the_input_does_not_matter():
    """A time-major layer's outputs arrive as a transposed view; same results."""
    h, lengths = _batch()
    h = h.nan_to_num()
    view = h.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    scorer = attention_scorer(4).double()
    for how in POOLINGS:
        a = pool(h, lengths, how, scorer=scorer)
        b = pool(view, lengths, how, scorer=scorer)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_gradients_reach_the_valid_steps_only():
    h, lengths = _batch()
    h = h.nan_to_num().requires_grad_()
    for how in ("last", "mean", "max"):
        h.grad = None
        pool(h, lengths, how).sum().backward()
        for i, n in enumerate(LENGTHS):
            assert not h.grad[i, n:].any()


def test_bad_arguments_are_named():
    h, lengths = _batch()
    with pytest.raises(ValueError, match=r"expected pooling one of \('last', 'mean', 'max', "
                                         r"'attention'\), got 'sum'"):
        pool(h, lengths, "sum")
    with pytest.raises(ValueError, match="expected a scorer for attention pooling"):
        pool(h, lengths, "attention")
