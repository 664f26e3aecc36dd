"""The scan primitives of ``memnets.cells.scan`` against naive step loops (float64).

``linear_scan`` for every length up to a few powers of two, any sign, trailing
dimensions and complex values, with its gradients; ``log_linear_scan`` against a
step loop in log space, including logarithms so large that the products and
sums of the linear form under- and overflow; ``carry_padded`` makes padded
steps carry the state, so the last row is each sequence's final state.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from memnets.cells.scan import carry_padded, linear_scan, log_linear_scan

F64 = torch.float64
LENGTHS = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33]


def naive_linear(a, b, h0):
    """h_t = a_t h_{t-1} + b_t, step by step."""
    h, out = h0, []
    for a_t, b_t in zip(a, b):
        h = a_t * h + b_t
        out.append(h)
    return torch.stack(out)


def naive_log(log_a, log_b, log_h0):
    """log h_t = logaddexp(log a_t + log h_{t-1}, log b_t), step by step: exact in log space."""
    lh, out = log_h0, []
    for la, lb in zip(log_a, log_b):
        lh = torch.logaddexp(la + lh, lb)
        out.append(lh)
    return torch.stack(out)


def _rand(*shape, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# --- linear_scan ----------------------------------------------------------------------


@pytest.mark.parametrize("T", LENGTHS)
def test_linear_scan_matches_the_loop_for_any_sign(T):
    a, b, h0 = _rand(T, 3, 4, seed=T), _rand(T, 3, 4, seed=100 + T), _rand(3, 4, seed=200 + T)
    assert (a < 0).any() and (b < 0).any() and (h0 < 0).any()
    torch.testing.assert_close(linear_scan(a, b, h0), naive_linear(a, b, h0), atol=1e-12, rtol=0)
    torch.testing.assert_close(linear_scan(a, b), naive_linear(a, b, torch.zeros(3, 4, dtype=F64)),
                               atol=1e-12, rtol=0)


def test_linear_scan_trailing_dimensions_and_complex():
    a, b, h0 = _rand(9, 2, 3, 5, seed=1), _rand(9, 2, 3, 5, seed=2), _rand(2, 3, 5, seed=3)
    torch.testing.assert_close(linear_scan(a, b, h0), naive_linear(a, b, h0), atol=1e-12, rtol=0)
    # an LRU-style complex decay inside the unit circle
    lam = torch.polar(torch.rand(6, 2, 3, dtype=F64), 6.3 * torch.rand(6, 2, 3, dtype=F64))
    bc = torch.complex(_rand(6, 2, 3, seed=4), _rand(6, 2, 3, seed=5))
    h0c = torch.complex(_rand(2, 3, seed=6), _rand(2, 3, seed=7))
    torch.testing.assert_close(linear_scan(lam, bc, h0c), naive_linear(lam, bc, h0c),
                               atol=1e-12, rtol=0)
    # one step only, and no steps
    torch.testing.assert_close(linear_scan(a[:1], b[:1], h0), naive_linear(a[:1], b[:1], h0))
    assert linear_scan(a[:0], b[:0], h0).shape == (0, 2, 3, 5)


@pytest.mark.parametrize("dtype", [F64, torch.complex128], ids=["real", "complex"])
@pytest.mark.parametrize("T", [1, 2, 5, 8, 13])
def test_linear_scan_gradients_match_the_loop(T, dtype):
    # the backward is the adjoint recurrence run as a second scan, not autograd of the first
    a, b, w = (_rand(T, 2, 3, seed=s).to(dtype) for s in (1, 2, 9))
    if dtype.is_complex:
        a, b = a * torch.exp(1j * _rand(T, 2, 3, seed=4)), b + 1j * _rand(T, 2, 3, seed=5)
    h0 = _rand(2, 3, seed=3).to(dtype)
    a, b, h0 = (t.requires_grad_(True) for t in (a, b, h0))
    for start in (h0, None):
        inputs = (a, b) + ((h0,) if start is not None else ())
        grads = torch.autograd.grad((linear_scan(a, b, start) * w).abs().sum(), inputs)
        zero = torch.zeros(2, 3, dtype=dtype)
        want = torch.autograd.grad(
            (naive_linear(a, b, zero if start is None else h0) * w).abs().sum(), inputs)
        for g, r in zip(grads, want):
            torch.testing.assert_close(g, r, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [F64, torch.complex128], ids=["real", "complex"])
def test_linear_scan_gradcheck(dtype):
    a, b = _rand(7, 2, 2, seed=1).to(dtype), _rand(7, 2, 2, seed=2).to(dtype)
    h0 = _rand(2, 2, seed=3).to(dtype)
    inputs = tuple(t.requires_grad_(True) for t in (a, b, h0))
    assert gradcheck(linear_scan, inputs)
    assert gradcheck(lambda a, b: linear_scan(a, b), inputs[:2])
    # only some inputs need a gradient
    assert gradcheck(lambda b: linear_scan(a.detach(), b, h0.detach()), (inputs[1],))


def test_linear_scan_refuses_mismatched_shapes():
    a = torch.zeros(4, 2, 3)
    with pytest.raises(ValueError, match=r"expected a and b of the same shape \(T, N, \*\), "
                                         r"got \(4, 2, 3\) and \(4, 2, 2\)"):
        linear_scan(a, torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match=r"expected h0 of shape \(2, 3\).*got \(3,\)"):
        linear_scan(a, a, torch.zeros(3))


# --- log_linear_scan ------------------------------------------------------------------


@pytest.mark.parametrize("T", LENGTHS)
def test_log_linear_scan_matches_the_loop(T):
    log_a = -torch.rand(T, 3, 4, dtype=F64) * 3  # 0 < a <= 1
    log_b = _rand(T, 3, 4, seed=T)
    log_h0 = _rand(3, 4, seed=50 + T)
    torch.testing.assert_close(log_linear_scan(log_a, log_b, log_h0),
                               naive_log(log_a, log_b, log_h0), atol=1e-12, rtol=0)
    no_h0 = torch.full((3, 4), float("-inf"), dtype=F64)
    torch.testing.assert_close(log_linear_scan(log_a, log_b), naive_log(log_a, log_b, no_h0),
                               atol=1e-12, rtol=0)
    # and the linear form of the same recurrence, where it is representable
    torch.testing.assert_close(
        log_linear_scan(log_a, log_b, log_h0).exp(),
        naive_linear(log_a.exp(), log_b.exp(), log_h0.exp()), atol=1e-12, rtol=1e-12)


def test_log_linear_scan_is_stable_where_the_linear_form_fails():
    T = 64
    torch.manual_seed(0)
    log_a = -30.0 - torch.rand(T, 2, 3, dtype=F64)  # a* reaches about -2000
    log_b = torch.where(torch.rand(T, 2, 3) < 0.5, -700.0, 750.0).to(F64) + torch.rand(T, 2, 3)
    log_h0 = torch.full((2, 3), 720.0, dtype=F64)
    # the naive product of decays underflows and exp(log b) overflows in float64
    assert torch.cumsum(log_a, 0).exp()[-1].eq(0).all() and log_b.exp().isinf().any()
    got = log_linear_scan(log_a, log_b, log_h0)
    assert torch.isfinite(got).all()
    want = naive_log(log_a, log_b, log_h0)
    # the cancellation in a* + logcumsumexp: about |a*| eps absolute
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    log_a.requires_grad_(True)
    log_b.requires_grad_(True)
    grads = torch.autograd.grad(log_linear_scan(log_a, log_b, log_h0).sum(), (log_a, log_b))
    assert all(torch.isfinite(g).all() for g in grads)


def test_log_linear_scan_gradients_match_the_loop_and_gradcheck():
    T = 9
    log_a = (-torch.rand(T, 2, 3, dtype=F64)).requires_grad_(True)
    log_b = _rand(T, 2, 3, seed=1).requires_grad_(True)
    log_h0 = _rand(2, 3, seed=2).requires_grad_(True)
    w = _rand(T, 2, 3, seed=3)
    got = torch.autograd.grad((log_linear_scan(log_a, log_b, log_h0) * w).sum(),
                              (log_a, log_b, log_h0))
    want = torch.autograd.grad((naive_log(log_a, log_b, log_h0) * w).sum(),
                               (log_a, log_b, log_h0))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-12, rtol=0)
    assert gradcheck(log_linear_scan, (log_a, log_b, log_h0))
    assert gradcheck(lambda la, lb: log_linear_scan(la, lb), (log_a, log_b))


def test_log_linear_scan_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected log_a and log_b of the same shape"):
        log_linear_scan(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"expected log_h0 of shape \(2,\)"):
        log_linear_scan(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3))


# --- carry_padded ---------------------------------------------------------------------


@pytest.mark.parametrize("log_space", [False, True], ids=["linear", "log"])
def test_carry_padded_holds_each_final_state(log_space):
    lengths = [6, 1, 4]
    T, N = max(lengths), len(lengths)
    valid = torch.arange(T).unsqueeze(1) < torch.tensor(lengths)  # (T, N)
    a = -torch.rand(T, N, 2, dtype=F64) if log_space else _rand(T, N, 2, seed=1)
    b = _rand(T, N, 2, seed=2)
    h0 = _rand(N, 2, seed=3)
    a.requires_grad_(True)
    b.requires_grad_(True)
    am, bm = carry_padded(a, b, valid, log_space=log_space)
    h = log_linear_scan(am, bm, h0) if log_space else linear_scan(am, bm, h0)
    for n, length in enumerate(lengths):
        alone = (naive_log if log_space else naive_linear)(a[:length, n], b[:length, n], h0[n])
        torch.testing.assert_close(h[:length, n], alone, atol=1e-12, rtol=0)
        # after the last valid step every row holds the final state
        torch.testing.assert_close(h[length:, n], alone[-1:].expand(T - length, 2),
                                   atol=1e-12, rtol=0)
    ga, gb = torch.autograd.grad(h[-1].sum(), (a, b))
    assert torch.isfinite(ga).all() and torch.isfinite(gb).all()
    assert ga[~valid].eq(0).all() and gb[~valid].eq(0).all()  # padded steps take no gradient
    assert carry_padded(a, b, None) == (a, b)


def test_carry_padded_refuses_a_bad_mask():
    a = torch.zeros(4, 2, 3)
    with pytest.raises(ValueError, match=r"expected valid to be a bool mask of shape \(4, 2\)"):
        carry_padded(a, a, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"bool mask.*got torch.int64"):
        carry_padded(a, a, torch.ones(4, 2, dtype=torch.long))
