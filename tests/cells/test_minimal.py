"""minGRU and minLSTM against naive loops of the paper's equations, and their two modes
against each other.

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?", 2024.
Every variant (cell, log space or not, bias or not) is checked: against a naive
per-step loop of the paper's equations written here with the cell's parameters;
the parallel mode (one scan) against the step mode in float64 to 1e-10 for
outputs, final states and every gradient, with variable lengths, in both
directions, through ``Bidirectional`` and from a non-zero initial state;
``gradcheck`` in float64 in both modes; the paper's parameter counts; a
step-mode state_dict loading into a parallel-mode cell.
"""

from __future__ import annotations

import doctest

import pytest
import torch
from torch.autograd import gradcheck

import memnets
import memnets.cells.minimal
from memnets.cells import MinGRUCell, MinGRUState, MinLSTMCell, MinLSTMState

F64 = torch.float64
H_IN, H = 3, 4
LENGTHS = [6, 2, 5, 1]
L, N = max(LENGTHS), len(LENGTHS)

# test id -> (registry name, options)
VARIANTS = {
    "mingru": ("mingru", {}),
    "mingru_plain": ("mingru", {"log_space": False}),
    "mingru_nobias": ("mingru", {"bias": False}),
    "minlstm": ("minlstm", {}),
    "minlstm_plain": ("minlstm", {"log_space": False}),
    "minlstm_plain_nobias": ("minlstm", {"log_space": False, "bias": False}),
    "mingru_heinsen": ("mingru", {"scan_method": "heinsen"}),
    "minlstm_heinsen": ("minlstm", {"scan_method": "heinsen"}),
}
STATE = {"mingru": MinGRUState, "minlstm": MinLSTMState}


def build(key, mode="parallel", seed=0):
    name, opts = VARIANTS[key]
    torch.manual_seed(seed)
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, mode=mode, **opts).double()
    # re-draw every parameter, so that the zero biases do not hide mistakes
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn_like(p) * 0.7)
    return cell


def pair(key, seed=0):
    """A parallel-mode cell and a step-mode cell with the same parameters."""
    par = build(key, "parallel", seed)
    step = build(key, "step", seed + 1)
    step.load_state_dict(par.state_dict())
    return par, step


def _x(seed=1, length=L, batch=N):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(length, batch, H_IN, generator=g, dtype=F64)


def _h0(seed=2, batch=N):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, H, generator=g, dtype=F64)


# --- the paper's equations, written out apart from the library -------------------------


def sigmoid(a):
    return 1 / (1 + torch.exp(-a))


def g(a):
    # the paper's positive activation for the log-space candidate
    return torch.where(a >= 0, a + 0.5, sigmoid(a))


def naive_step(cell):
    """One step of the paper's equations with ``cell``'s parameters: ``(x_t, h) -> h``."""
    blocks = cell.weight_ih.split(cell.hidden_size)
    zero = torch.zeros(len(blocks) * cell.hidden_size, dtype=cell.weight_ih.dtype)
    biases = (cell.bias_ih if cell.bias_ih is not None else zero).split(cell.hidden_size)
    candidate = g if cell.log_space else (lambda a: a)
    if isinstance(cell, MinGRUCell):
        (W_z, W_h), (b_z, b_h) = blocks, biases

        def step(x, h):
            z = sigmoid(x @ W_z.T + b_z)
            h_tilde = candidate(x @ W_h.T + b_h)
            return (1 - z) * h + z * h_tilde

        return step
    (W_f, W_i, W_h), (b_f, b_i, b_h) = blocks, biases

    def step(x, h):
        f = sigmoid(x @ W_f.T + b_f)
        i = sigmoid(x @ W_i.T + b_i)
        f_n, i_n = f / (f + i), i / (f + i)  # the length-independence scaling
        h_tilde = candidate(x @ W_h.T + b_h)
        return f_n * h + i_n * h_tilde

    return step


def naive_run(cell, x, h0, lengths, reverse=False):
    """Each sequence alone, for its own length (read backwards with ``reverse``)."""
    step = naive_step(cell)
    out = torch.zeros(x.shape[0], x.shape[1], cell.hidden_size, dtype=x.dtype)
    finals = []
    for n, length in enumerate(lengths):
        h, ys = h0[n : n + 1], []
        seq = x[:length, n : n + 1]
        for x_t in (seq.flip(0) if reverse else seq):
            h = step(x_t, h)
            ys.append(h)
        ys = torch.cat(ys)
        out[:length, n] = ys.flip(0) if reverse else ys
        finals.append(h)
    return out, torch.cat(finals)


# --- against the equations -----------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode", ["parallel", "step"])
@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_matches_the_papers_equations(key, mode, reverse):
    cell = build(key, mode)
    x, h0 = _x(), _h0()
    out, final = memnets.Recurrent(cell, reverse=reverse)(x, STATE[VARIANTS[key][0]](h0),
                                                          lengths=LENGTHS)
    ref_out, ref_final = naive_run(cell, x, h0, LENGTHS, reverse)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(final.h, ref_final, atol=1e-12, rtol=0)
    # the single-step contract agrees with the layer
    y0, _ = cell(x[0], STATE[VARIANTS[key][0]](h0))
    torch.testing.assert_close(y0, naive_step(cell)(x[0], h0), atol=1e-12, rtol=0)


# --- parallel mode == step mode --------------------------------------------------------


def _outputs_and_grads(layer, x, state, lengths):
    """Outputs, final states and the gradients of a fixed weighted loss w.r.t. the
    parameters, the input and the initial state."""
    x = x.detach().clone().requires_grad_(True)
    leaves = [s.detach().clone().requires_grad_(True) for s in state]
    out, final = layer(x, type(state)(*leaves), lengths=lengths)
    wg = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=wg, dtype=F64)).sum()
    loss = loss + (final.h * torch.randn(final.h.shape, generator=wg, dtype=F64)).sum()
    params = dict(layer.named_parameters())
    grads = torch.autograd.grad(loss, [x, *leaves, *params.values()])
    return out, final, dict(zip(["x", "h0", *params], grads))


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_parallel_equals_step_with_every_gradient(key, reverse, lengths):
    par, step = pair(key)
    state = STATE[VARIANTS[key][0]](_h0())  # a non-zero initial state
    x = _x()
    out_p, fin_p, grads_p = _outputs_and_grads(memnets.Recurrent(par, reverse=reverse), x,
                                               state, lengths)
    out_s, fin_s, grads_s = _outputs_and_grads(memnets.Recurrent(step, reverse=reverse), x,
                                               state, lengths)
    torch.testing.assert_close(out_p, out_s, atol=1e-10, rtol=0)
    torch.testing.assert_close(fin_p.h, fin_s.h, atol=1e-10, rtol=0)
    assert grads_p.keys() == grads_s.keys() and {"x", "h0", "cell.weight_ih"} <= grads_p.keys()
    for name in grads_p:
        torch.testing.assert_close(grads_p[name], grads_s[name], atol=1e-10, rtol=0, msg=name)


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_parallel_equals_step_through_bidirectional(key):
    (fp, fs), (bp, bs) = pair(key, seed=0), pair(key, seed=10)
    x = _x()
    S = STATE[VARIANTS[key][0]]
    h0f, h0b = _h0(2), _h0(3)

    def run(fwd, bwd):
        xi = x.clone().requires_grad_(True)
        s0 = (h0f.clone().requires_grad_(True), h0b.clone().requires_grad_(True))
        layer = memnets.Bidirectional(fwd, bwd, batch_first=False)
        out, final = layer(xi, memnets.BidirectionalState(S(s0[0]), S(s0[1])), lengths=LENGTHS)
        wg = torch.Generator().manual_seed(5)
        loss = (out * torch.randn(out.shape, generator=wg, dtype=F64)).sum()
        loss = loss + (final.forward.h * 2 - final.backward.h).sum()
        params = dict(layer.named_parameters())
        grads = torch.autograd.grad(loss, [xi, *s0, *params.values()])
        return out, final, dict(zip(["x", "h0_f", "h0_b", *params], grads))

    out_p, fin_p, g_p = run(fp, bp)
    out_s, fin_s, g_s = run(fs, bs)
    torch.testing.assert_close(out_p, out_s, atol=1e-10, rtol=0)
    torch.testing.assert_close(fin_p.forward.h, fin_s.forward.h, atol=1e-10, rtol=0)
    torch.testing.assert_close(fin_p.backward.h, fin_s.backward.h, atol=1e-10, rtol=0)
    assert g_p.keys() == g_s.keys()
    for name in g_p:
        torch.testing.assert_close(g_p[name], g_s[name], atol=1e-10, rtol=0, msg=name)


def test_parallel_mode_runs_one_scan_and_no_steps(monkeypatch):
    cell = build("mingru")
    monkeypatch.setattr(cell, "recur", lambda *a: pytest.fail("recur called in parallel mode"))
    calls = []
    scan = cell.scan
    monkeypatch.setattr(cell, "scan", lambda *a: calls.append(1) or scan(*a))
    memnets.Recurrent(cell)(_x(), lengths=LENGTHS)
    assert calls == [1]


# --- gradcheck, parameters, state_dict ---------------------------------------------------


@pytest.mark.parametrize("mode", ["parallel", "step"])
@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_gradcheck(key, mode):
    cell = build(key, mode)
    layer = memnets.Recurrent(cell)
    S = STATE[VARIANTS[key][0]]
    names = [n for n, _ in layer.named_parameters()]

    def f(x, h0, *ps):
        out, final = torch.func.functional_call(layer, dict(zip(names, ps)), (x, S(h0)),
                                                {"lengths": [3, 2]})
        return out, final.h

    inputs = (_x(3, 3, 2).requires_grad_(True), _h0(4, 2).requires_grad_(True),
              *(p.detach().clone().requires_grad_(True) for p in layer.parameters()))
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_parameter_count_matches_the_paper(key):
    name, opts = VARIANTS[key]
    cell = memnets.make_cell(name, input_size=7, hidden_size=5, **opts)
    G = 2 if name == "mingru" else 3  # minGRU: O(2 d_h d_x); minLSTM: O(3 d_h d_x)
    d_h, d_x = 5, 7
    expected = G * d_h * d_x + (G * d_h if opts.get("bias", True) else 0)
    assert sum(p.numel() for p in cell.parameters()) == expected


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_step_state_dict_loads_into_parallel(key):
    name, opts = VARIANTS[key]
    step = memnets.make_cell(name, input_size=H_IN, hidden_size=H, mode="step", **opts).double()
    par = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **opts).double()
    assert par.parallel and not step.parallel and par.mode == "parallel"
    par.load_state_dict(step.state_dict())  # strict: the same names and shapes
    assert step.state_dict().keys() == par.state_dict().keys()
    x = _x()
    out_s, fin_s = memnets.Recurrent(step)(x, lengths=LENGTHS)
    out_p, fin_p = memnets.Recurrent(par)(x, lengths=LENGTHS)
    torch.testing.assert_close(out_p, out_s, atol=1e-12, rtol=0)
    torch.testing.assert_close(fin_p.h, fin_s.h, atol=1e-12, rtol=0)


def test_initialisation_and_layout():
    torch.manual_seed(0)
    for cls, blocks in [(MinGRUCell, 2), (MinLSTMCell, 3)]:
        cell = cls(40, 30)
        assert cell.weight_ih.shape == (blocks * 30, 40) and cell.bias_ih.shape == (blocks * 30,)
        assert torch.all(cell.bias_ih == 0)
        bound = (6 / (40 + 30)) ** 0.5  # Xavier-uniform per block
        assert cell.weight_ih.abs().max() <= bound
        assert cell.weight_ih[:30].abs().max() > 0.9 * bound
        assert cell.parallel and cell.log_space and cell.mode == "parallel"
        assert cls(4, 3, bias=False).bias_ih is None
        assert repr(cls(4, 3, mode="step", log_space=False)).endswith(
            "(4, 3, mode='step', log_space=False)")


def test_log_space_keeps_the_state_positive_and_the_plain_form_does_not():
    x = _x(seed=4, length=20)
    for name in ("mingru", "minlstm"):
        cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H)
        out, _ = memnets.Recurrent(cell)(x.float())
        assert (out > 0).all()
        plain = memnets.make_cell(name, input_size=H_IN, hidden_size=H, log_space=False)
        assert (memnets.Recurrent(plain)(x.float())[0] < 0).any()


def test_long_sequence_in_float32_stays_finite_and_close_to_float64():
    # saturated forget gates: the product of decays underflows long before the end
    torch.manual_seed(0)
    for name in ("mingru", "minlstm"):
        cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H)
        with torch.no_grad():
            cell.weight_ih.mul_(4)
        x = torch.randn(2000, 2, H_IN)
        out32, _ = memnets.Recurrent(cell)(x)
        cell64 = memnets.make_cell(name, input_size=H_IN, hidden_size=H, mode="step").double()
        cell64.load_state_dict(cell.state_dict())
        out64, _ = memnets.Recurrent(cell64)(x.double())
        assert torch.isfinite(out32).all()
        torch.testing.assert_close(out32.double(), out64, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_bf16_autocast_scans_in_the_states_float32_as_the_step_does(key):
    par, step = (build(key, mode).float() for mode in ("parallel", "step"))
    x = _x().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_p, fin_p = memnets.Recurrent(par)(x, lengths=LENGTHS)
        out_s, fin_s = memnets.Recurrent(step)(x, lengths=LENGTHS)
    assert out_p.dtype == out_s.dtype == fin_p.h.dtype == torch.float32
    # the same bfloat16 coefficients, accumulated in float32 both ways
    torch.testing.assert_close(out_p, out_s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fin_p.h, fin_s.h, atol=1e-5, rtol=1e-5)


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match=r"expected mode 'parallel' or 'step', got 'fast'"):
        MinGRUCell(3, 4, mode="fast")
    with pytest.raises(ValueError, match=r"expected hidden_size >= 1, got 0"):
        MinLSTMCell(3, 0)


def test_switching_mode_keeps_results():
    cell = build("minlstm")
    x = _x()
    par, _ = memnets.Recurrent(cell)(x, lengths=LENGTHS)
    cell.parallel = False
    assert cell.mode == "step"
    step, _ = memnets.Recurrent(cell)(x, lengths=LENGTHS)
    torch.testing.assert_close(par, step, atol=1e-12, rtol=0)


def test_docstring_examples_run():
    failures, tried = doctest.testmod(memnets.cells.minimal, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
