"""The xLSTM cells (sLSTM, mLSTM) against naive loops of the paper's equations,
and mLSTM's parallel and chunkwise forms against its recurrent step.

The naive loops below are the unstabilised equations of Beck et al., "xLSTM:
Extended Long Short-Term Memory", 2024 (exp(i~) and the plain normaliser), written
here apart from the library, with the cell's parameters copied in.  The cells keep
their memory divided by exp(m) (the stabiliser), so a state is compared in the
paper's units: c * exp(m).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

import memnets
from memnets.cells import MLSTMCell, MLSTMState, SLSTMCell, SLSTMState
from memnets.errors import ConfigError

H_IN, H, HEADS = 3, 6, 2  # head_dim 3
F64 = torch.float64


def build(name, dtype=F64, seed=0, scale=0.5, **opts):
    """A cell with every parameter re-drawn, so that zero initialisations hide nothing."""
    torch.manual_seed(seed)
    opts.setdefault("num_heads", HEADS)
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **opts)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return cell.to(dtype)


def rand_state(cell, N, dtype=F64, seed=5):
    """A non-zero stabilised state (normalisers positive for the sLSTM, as any state it
    reaches has them)."""
    g = torch.Generator().manual_seed(seed)
    zero = cell.init_state(N, dtype=dtype)
    fields = [torch.randn(z.shape, generator=g, dtype=dtype) * 0.5 for z in zero]
    if isinstance(cell, SLSTMCell):
        fields[2] = fields[2].abs() + 0.5
    return type(zero)(*fields)


def sigmoid(a):
    return 1 / (1 + torch.exp(-a))


def forget(a, kind):
    return sigmoid(a) if kind == "sigmoid" else torch.exp(a)


# --- naive equations (unstabilised) -----------------------------------------------------


def naive_slstm(cell, x, h, c, n):
    """Beck et al. 2024, sLSTM: c_t = f c + i z, n_t = f n + i, h_t = o c_t / n_t with
    i = exp(i~), z = tanh(z~), o = sigma(o~), pre-activations W x + R h + b, R
    block-diagonal over the heads.  ``c``, ``n`` in the paper's units."""
    Hc, K = cell.hidden_size, cell.num_heads
    d = Hc // K
    R = torch.cat([
        torch.block_diag(*[cell.weight_hh[g * Hc + k * d : g * Hc + (k + 1) * d]
                           for k in range(K)])
        for g in range(4)
    ])  # (4H, H)
    ys = []
    for x_t in x:
        a = x_t @ cell.weight_ih.T + h @ R.T + cell.bias
        a_i, a_f, a_z, a_o = a.split(Hc, -1)
        i, f = torch.exp(a_i), forget(a_f, cell.forget_gate)
        c = f * c + i * torch.tanh(a_z)
        n = f * n + i
        h = sigmoid(a_o) * c / n
        ys.append(h)
    return torch.stack(ys), (h, c, n)


def naive_mlstm(cell, x, C, n):
    """Beck et al. 2024, mLSTM per head: C_t = f C + i v k^T, n_t = f n + i k,
    h~ = C q / max(|n^T q|, 1), h = o * h~; q = W_q x + b_q, k = W_k x / sqrt(d) + b_k,
    v = W_v x + b_v, o = sigma(W_o x + b_o), i = exp(w_i x + b_i), f = sigma or exp of
    w_f x + b_f.  ``C`` (N, K, d, d), ``n`` (N, K, d) in the paper's units."""
    Hc, K = cell.hidden_size, cell.num_heads
    d = Hc // K
    Wq, Wk, Wv, Wo, wi, wf = cell.weight_ih.split([Hc, Hc, Hc, Hc, K, K])
    bq, bk, bv, bo, bi, bf = cell.bias.split([Hc, Hc, Hc, Hc, K, K])
    ys = []
    for x_t in x:
        N = x_t.shape[0]
        q = (x_t @ Wq.T + bq).view(N, K, d)
        k = (x_t @ Wk.T / math.sqrt(d) + bk).view(N, K, d)
        v = (x_t @ Wv.T + bv).view(N, K, d)
        o = sigmoid(x_t @ Wo.T + bo)
        i = torch.exp(x_t @ wi.T + bi)  # (N, K)
        f = forget(x_t @ wf.T + bf, cell.forget_gate)
        C = f[..., None, None] * C + i[..., None, None] * torch.einsum("nka,nkb->nkab", v, k)
        n = f[..., None] * n + i[..., None] * k
        num = torch.einsum("nkab,nkb->nka", C, q)
        den = torch.clamp((n * q).sum(-1).abs(), min=1.0)
        ys.append(o * (num / den[..., None]).reshape(N, Hc))
    return torch.stack(ys), (C, n)


def in_paper_units(state):
    """A stabilised state's memory fields times exp(m)."""
    if isinstance(state, SLSTMState):
        scale = torch.exp(state.m)
        return state.h, state.c * scale, state.n * scale
    return state.C * torch.exp(state.m)[..., None, None], state.n * torch.exp(state.m)[..., None]


# --- against the paper's equations ----------------------------------------------------


@pytest.mark.parametrize("heads", [1, HEADS])
@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("initial", ["zero", "given"])
def test_slstm_matches_naive_equations(heads, forget_gate, initial):
    cell = build("slstm", num_heads=heads, forget_gate=forget_gate)
    torch.manual_seed(1)
    x = torch.randn(6, 2, H_IN, dtype=F64)
    state = cell.init_state(2) if initial == "zero" else rand_state(cell, 2)
    out, final = memnets.Recurrent(cell)(x, state)
    ref_out, ref_final = naive_slstm(cell, x, *in_paper_units(state))
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-10)
    for got, want in zip(in_paper_units(final), ref_final):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    y0, _ = cell(x[0], state)  # the single-step contract agrees with the layer
    torch.testing.assert_close(y0, out[0])


@pytest.mark.parametrize("heads", [1, HEADS])
@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("mode", ["parallel", "step"])
@pytest.mark.parametrize("initial", ["zero", "given"])
def test_mlstm_matches_naive_equations(heads, forget_gate, mode, initial):
    cell = build("mlstm", num_heads=heads, forget_gate=forget_gate, mode=mode)
    torch.manual_seed(1)
    x = torch.randn(6, 2, H_IN, dtype=F64)
    state = cell.init_state(2) if initial == "zero" else rand_state(cell, 2)
    out, final = memnets.Recurrent(cell)(x, state)
    ref_out, ref_final = naive_mlstm(cell, x, *in_paper_units(state))
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-10)
    for got, want in zip(in_paper_units(final), ref_final):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    y0, _ = cell(x[0], state)
    torch.testing.assert_close(y0, out[0])


def test_mlstm_normaliser_floor_of_one_is_used():
    """With tiny keys |n^T q| < 1, so the paper's max(., 1) is what divides; the cells
    agree with the naive loop there too (a regime the random draws may miss)."""
    cell = build("mlstm", scale=0.05)
    x = torch.randn(4, 2, H_IN, dtype=F64)
    C0, n0 = in_paper_units(cell.init_state(2))
    _, (_, n_ref) = naive_mlstm(cell, x[:1], C0, n0)  # n_1, (N, K, d)
    q = (x[0] @ cell.weight_ih[:H].T + cell.bias[:H]).view(2, HEADS, -1)
    assert torch.all((n_ref * q).sum(-1).abs() < 1)
    out, _ = memnets.Recurrent(cell)(x)
    torch.testing.assert_close(out, naive_mlstm(cell, x, C0, n0)[0], atol=1e-12, rtol=1e-10)


# --- mLSTM: the parallel and chunkwise forms equal the recurrent step ---------------------

LENGTHS = [7, 3, 5, 1]


def _flat_state(state):
    if isinstance(state, memnets.BidirectionalState):
        return [*state.forward, *state.backward]
    return list(state)


def _run_and_grads(layer, x, state, lengths):
    """Outputs, final state and the gradients of one scalar (outputs and every final
    state field, weighted at random) w.r.t. x, the initial state and every parameter."""
    x = x.clone().requires_grad_(True)
    leaves = [s.clone().requires_grad_(True) for s in _flat_state(state)]
    if isinstance(state, memnets.BidirectionalState):
        k = len(state.forward)
        init = memnets.BidirectionalState(type(state.forward)(*leaves[:k]),
                                          type(state.backward)(*leaves[k:]))
    else:
        init = type(state)(*leaves)
    layer.zero_grad()
    out, final = layer(x, init, lengths=lengths)
    g = torch.Generator().manual_seed(11)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for s in _flat_state(final):
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    loss.backward()
    grads = {"x": x.grad} | {f"state{i}": s.grad for i, s in enumerate(leaves)}
    grads |= {n: p.grad for n, p in layer.named_parameters()}
    return out.detach(), [s.detach() for s in _flat_state(final)], grads


def _assert_same(a, b, atol=1e-10):
    out_a, final_a, grads_a = a
    out_b, final_b, grads_b = b
    torch.testing.assert_close(out_a, out_b, atol=atol, rtol=0)
    for sa, sb in zip(final_a, final_b, strict=True):
        torch.testing.assert_close(sa, sb, atol=atol, rtol=0)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert grads_a[name] is not None and torch.isfinite(grads_a[name]).all(), name
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=atol, rtol=0, msg=name)


def _mlstm_pair(forget_gate="sigmoid", heads=HEADS, seed=0, chunk_size=None):
    par = build("mlstm", seed=seed, forget_gate=forget_gate, num_heads=heads,
                chunk_size=chunk_size)
    step = build("mlstm", seed=seed, forget_gate=forget_gate, num_heads=heads, mode="step")
    step.load_state_dict(par.state_dict())  # the same parameter layout
    assert par.parallel and not step.parallel
    return par, step


def _x(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(max(LENGTHS), len(LENGTHS), H_IN, generator=g, dtype=F64)


@pytest.mark.parametrize("chunk_size", [None, 1, 3], ids=lambda c: f"chunk{c}")
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_mlstm_parallel_equals_step(chunk_size, reverse, forget_gate, lengths):
    par, step = _mlstm_pair(forget_gate, chunk_size=chunk_size)
    x = _x()
    state = rand_state(par, x.shape[1])
    runs = [_run_and_grads(memnets.Recurrent(cell, reverse=reverse), x, state, lengths)
            for cell in (par, step)]
    _assert_same(*runs)


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_mlstm_parallel_equals_step_through_bidirectional(chunk_size):
    fwd_par, fwd_step = _mlstm_pair(seed=0, chunk_size=chunk_size)
    bwd_par, bwd_step = _mlstm_pair(seed=1, chunk_size=chunk_size, heads=1)
    x = _x()
    state = memnets.BidirectionalState(rand_state(fwd_par, x.shape[1], seed=6),
                                       rand_state(bwd_par, x.shape[1], seed=7))
    runs = [_run_and_grads(memnets.Bidirectional(f, b), x, state, LENGTHS)
            for f, b in ((fwd_par, bwd_par), (fwd_step, bwd_step))]
    _assert_same(*runs)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 6, 7, 50])
def test_mlstm_chunkwise_equals_parallel(chunk_size):
    whole = build("mlstm")
    chunked = build("mlstm", chunk_size=chunk_size)
    x = _x()
    state = rand_state(whole, x.shape[1])
    runs = [_run_and_grads(memnets.Recurrent(cell), x, state, LENGTHS)
            for cell in (whole, chunked)]
    _assert_same(*runs)


def test_mlstm_parallel_gives_padded_steps_no_weight_and_no_nan():
    """Padding filled with values that would overflow exp() if it entered the gate matrix:
    the outputs, final states and gradients equal those with zero padding, and padded
    inputs get exactly zero gradient."""
    cell = build("mlstm")
    x = _x()
    noisy = x.clone()
    for n, length in enumerate(LENGTHS):
        noisy[length:, n] = 1e3
    state = cell.init_state(x.shape[1])
    clean_run = _run_and_grads(memnets.Recurrent(cell), x, state, LENGTHS)
    noisy_run = _run_and_grads(memnets.Recurrent(cell), noisy, state, LENGTHS)
    _assert_same(clean_run, noisy_run)
    for n, length in enumerate(LENGTHS):
        assert torch.all(noisy_run[2]["x"][length:, n] == 0)


def test_mlstm_modes_share_state_dict_and_outputs():
    par, step = MLSTMCell(4, 6, num_heads=3), MLSTMCell(4, 6, num_heads=3, mode="step",
                                                        chunk_size=2)
    assert {k: v.shape for k, v in par.state_dict().items()} == {
        k: v.shape for k, v in step.state_dict().items()}
    step.load_state_dict(par.state_dict())
    x = torch.randn(5, 2, 4)
    torch.testing.assert_close(memnets.Recurrent(par)(x)[0], memnets.Recurrent(step)(x)[0])


# --- gradcheck ---------------------------------------------------------------------------


GRADCHECK = {
    "slstm_sigmoid": ("slstm", {}),
    "slstm_exp": ("slstm", {"forget_gate": "exp"}),
    "mlstm_step": ("mlstm", {"mode": "step"}),
    "mlstm_parallel": ("mlstm", {}),
    "mlstm_chunked_exp": ("mlstm", {"chunk_size": 2, "forget_gate": "exp"}),
}


@pytest.mark.parametrize("key", sorted(GRADCHECK))
def test_gradcheck(key):
    name, opts = GRADCHECK[key]
    cell = build(name, **opts)
    layer = memnets.Recurrent(cell)
    torch.manual_seed(3)
    x = torch.randn(3, 2, H_IN, dtype=F64, requires_grad=True)
    state = [s.requires_grad_(True) for s in rand_state(cell, 2)]
    names = [n for n, _ in cell.named_parameters()]
    kind = type(cell.init_state(1))

    def f(x, *rest):
        init, ps = kind(*rest[: len(state)]), rest[len(state):]
        out, final = torch.func.functional_call(
            layer, {f"cell.{n}": p for n, p in zip(names, ps)}, (x, init), {"lengths": [3, 2]}
        )
        return (out,) + tuple(final)

    params = tuple(p.detach().clone().requires_grad_(True) for p in cell.parameters())
    assert gradcheck(f, (x, *state, *params), eps=1e-6, atol=1e-5)


# --- parameter counts (the paper's definitions) -----------------------------------------


@pytest.mark.parametrize("heads", [1, 2, 3, 6])
def test_parameter_counts(heads):
    d = H // heads
    # sLSTM: W_z, W_i, W_f, W_o (H x H_in), block-diagonal R_z, R_i, R_f, R_o (heads
    # blocks of d x d), biases b_z, b_i, b_f, b_o (H)
    slstm = SLSTMCell(H_IN, H, num_heads=heads)
    assert sum(p.numel() for p in slstm.parameters()) == 4 * (H * H_IN + heads * d * d + H)
    # mLSTM: W_q, W_k, W_v, W_o (H x H_in) and b_q, b_k, b_v, b_o (H); per head an input
    # and a forget gate, each a weight vector w (H_in) and a scalar bias
    mlstm = MLSTMCell(H_IN, H, num_heads=heads)
    assert sum(p.numel() for p in mlstm.parameters()) == 4 * (H * H_IN + H) + 2 * heads * (
        H_IN + 1)


# --- the stabiliser changes nothing but the range ---------------------------------------


def _shift_input_gates(cell, amount):
    """Add ``amount`` to every input-gate pre-activation (through the bias)."""
    Hc, K = cell.hidden_size, cell.num_heads
    with torch.no_grad():
        if isinstance(cell, SLSTMCell):
            cell.bias[:Hc] += amount
        else:
            cell.bias[4 * Hc : 4 * Hc + K] += amount


@pytest.mark.parametrize("key", ["slstm_sigmoid", "slstm_exp", "mlstm_step", "mlstm_parallel",
                                 "mlstm_chunked_exp"])
def test_stabiliser_keeps_float32_finite_where_unstabilised_overflows(key):
    """Input gates near exp(100) (and exponential forget gates whose product reaches
    about exp(150)) overflow float32 in the paper's plain equations; the float32 cell
    stays finite and equals the float64 plain equations, which do not overflow."""
    name, opts = GRADCHECK[key]
    cell64 = build(name, **opts)
    _shift_input_gates(cell64, 100.0)
    if cell64.forget_gate == "exp":
        Hc, K = cell64.hidden_size, cell64.num_heads
        with torch.no_grad():
            (cell64.bias[Hc : 2 * Hc] if name == "slstm" else cell64.bias[4 * Hc + K :]).add_(25)
    cell32 = build(name, dtype=torch.float32, **opts)
    cell32.load_state_dict(cell64.state_dict())
    torch.manual_seed(4)
    x = torch.randn(6, 2, H_IN, dtype=F64)
    naive = naive_slstm if name == "slstm" else naive_mlstm
    ref, _ = naive(cell64, x, *in_paper_units(cell64.init_state(2)))
    assert torch.isfinite(ref).all()
    plain32, _ = naive(cell32, x.float(), *in_paper_units(cell32.init_state(2)))
    assert not torch.isfinite(plain32).all(), "the plain equations should overflow in float32"
    x32 = x.float().requires_grad_(True)
    out, final = memnets.Recurrent(cell32)(x32)
    assert torch.isfinite(out).all() and all(torch.isfinite(s).all() for s in final)
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)
    out.sum().backward()
    assert torch.isfinite(x32.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in cell32.parameters())


@pytest.mark.parametrize("key", ["slstm_sigmoid", "mlstm_step", "mlstm_parallel"])
def test_stabiliser_keeps_float64_finite_far_beyond_overflow(key):
    """Input gates near exp(1000) and exp(2000) overflow even float64's plain equations.
    The outputs do not depend on such a shift (sLSTM: h = o c/n is a ratio in which
    exp(shift) cancels; mLSTM: |n^T q| >> 1, so the floor of 1 is not reached), and the
    stabilised cell gives the same finite values for both shifts, in both mLSTM modes."""
    name, opts = GRADCHECK[key]
    torch.manual_seed(4)
    x = torch.randn(6, 2, H_IN, dtype=F64)
    outs = []
    for shift in (1000.0, 2000.0):
        cell = build(name, **opts)
        _shift_input_gates(cell, shift)
        out, final = memnets.Recurrent(cell)(x)
        assert torch.isfinite(out).all() and all(torch.isfinite(s).all() for s in final)
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-10, rtol=1e-8)
    plain, _ = (naive_slstm if name == "slstm" else naive_mlstm)(
        cell, x, *in_paper_units(cell.init_state(2)))
    assert not torch.isfinite(plain).all()
    if name == "slstm":  # exactly shift-invariant: equal to the unshifted cell as well
        torch.testing.assert_close(outs[0], memnets.Recurrent(build(name, **opts))(x)[0],
                                   atol=1e-10, rtol=1e-8)


# --- construction, registry, initialisation -----------------------------------------------


def test_registry_and_parallel_flags():
    assert {"slstm", "mlstm"} <= set(memnets.cell_names())
    s = memnets.make_cell("slstm", input_size=3, hidden_size=8, num_heads=4)
    m = memnets.make_cell("mlstm", input_size=3, hidden_size=8, num_heads=2)
    assert isinstance(s, SLSTMCell) and not s.parallel
    assert isinstance(m, MLSTMCell) and m.parallel and m.head_dim == 4
    assert not MLSTMCell(3, 8, mode="step").parallel
    assert s.output_size == m.output_size == 8
    state = m.init_state(5)
    assert isinstance(state, MLSTMState)
    assert [tuple(t.shape) for t in state] == [(5, 2, 4, 4), (5, 2, 4), (5, 2)]
    assert [tuple(t.shape) for t in s.init_state(5)] == [(5, 8)] * 4


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match=r"hidden_size divisible by num_heads.*"
                                          r"hidden_size=6 and num_heads=4"):
        SLSTMCell(3, 6, num_heads=4)
    with pytest.raises(ConfigError, match=r"expected num_heads >= 1, got 0"):
        MLSTMCell(3, 6, num_heads=0)
    with pytest.raises(ValueError, match=r"forget_gate one of \['sigmoid', 'exp'\], got 'tanh'"):
        SLSTMCell(3, 6, forget_gate="tanh")
    with pytest.raises(ValueError, match=r"mode one of \['parallel', 'step'\], got 'scan'"):
        MLSTMCell(3, 6, mode="scan")
    with pytest.raises(ConfigError, match=r"expected chunk_size >= 1, got 0"):
        MLSTMCell(3, 6, chunk_size=0)
    with pytest.raises(ValueError, match=r"forget_bias a float or a \(low, high\) pair"):
        MLSTMCell(3, 6, forget_bias=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"expected a state of 3 tensors"):
        memnets.Recurrent(MLSTMCell(3, 6))(torch.randn(2, 1, 3), SLSTMCell(3, 6).init_state(1))


def test_initialisation():
    torch.manual_seed(0)
    s = SLSTMCell(5, 8, num_heads=2)
    torch.testing.assert_close(s.bias[8:16], torch.linspace(3.0, 6.0, 8))  # forget block open
    assert torch.all(s.bias[:8] == 0) and torch.all(s.bias[16:] == 0)
    R = s.weight_hh.detach().view(4, 2, 4, 4)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(4).expand(4, 2, 4, 4))
    assert torch.all(SLSTMCell(5, 8, forget_gate="exp").bias[8:16] == 0)  # f = 1
    assert torch.all(SLSTMCell(5, 8, forget_bias=2.0).bias[8:16] == 2.0)

    m = MLSTMCell(5, 8, num_heads=4)
    torch.testing.assert_close(m.bias[32 + 4 :], torch.linspace(3.0, 6.0, 4))
    assert torch.all(m.bias[:36] == 0)
    assert torch.all(m.weight_ih[32:] == 0)  # the gates start input-independent
    assert torch.all(m.weight_ih[:32] != 0)
    assert torch.all(MLSTMCell(5, 8, forget_gate="exp", num_heads=2).bias[34:] == 0)
    p = MLSTMCell(5, 8, forget_bias=(1.0, 2.0), num_heads=2)
    torch.testing.assert_close(p.bias[34:], torch.tensor([1.0, 2.0]))


def test_cells_build_on_meta_and_repr():
    for cell in (SLSTMCell(3, 4, device="meta"), MLSTMCell(3, 4, device="meta")):
        assert all(p.device.type == "meta" for p in cell.parameters())
    assert "num_heads=2" in repr(SLSTMCell(3, 4, num_heads=2))
    assert "mode='step'" in repr(MLSTMCell(3, 4, mode="step"))
