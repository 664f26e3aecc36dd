"""The single-layer cell zoo against naive loops of the papers' equations.

Every cell is checked the same way: it builds from the registry; runs through
``Recurrent`` with ``lengths`` (padded outputs zero, each sequence equal to
itself run alone); matches a naive per-step implementation of its paper's
equations written here, separately from the library, with the cell's
parameters copied in; passes ``gradcheck`` in float64; and has the parameter
count of its paper's formula.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import memnets
from memnets.cells import (
    IndRNNCell,
    IndRNNState,
    IRNNCell,
    JordanCell,
    JordanState,
    SCRNCell,
    SCRNState,
    constrain_all_,
)

H_IN, H = 3, 4

# test id -> (registry name, options); every cell and option family is listed here
ZOO = {
    "irnn": ("irnn", {}),
    "irnn_scaled": ("irnn", {"identity_scale": 0.5, "input_std": 0.3}),
    "jordan": ("jordan", {"output_size": 5}),
    "jordan_tanh_mu": (
        "jordan",
        {"output_size": 2, "nonlinearity": "tanh", "output_activation": "identity",
         "self_connection": 0.5},
    ),
    "jordan_nobias": ("jordan", {"bias": False, "output_activation": "sigmoid"}),
    "scrn": ("scrn", {"context_size": 2}),
    "scrn_paper": ("scrn", {"bias": False, "alpha": 0.7}),
    "scrn_tanh": ("scrn", {"context_size": 5, "nonlinearity": "tanh"}),
    "indrnn": ("indrnn", {}),
    "indrnn_tanh_nobias": ("indrnn", {"nonlinearity": "tanh", "bias": False}),
}


def build(key: str, dtype=torch.float32, **extra):
    name, opts = ZOO[key]
    torch.manual_seed(0)
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **opts, **extra)
    # Exercise every parameter: re-draw them so that zero or identity
    # initialisations do not hide mistakes in the equations.
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return cell.to(dtype)


def naive_run(step, x, state):
    """Loop ``step(x_t, state) -> (y_t, state)`` over ``x`` ``(L, N, H_in)``."""
    ys = []
    for x_t in x:
        y, state = step(x_t, state)
        ys.append(y)
    return torch.stack(ys), state


# --- naive implementations of the papers' equations -------------------------------


def naive_irnn(cell):
    W, U = cell.weight_ih, cell.weight_hh
    b = cell.bias_ih + cell.bias_hh

    def step(x, s):
        (h,) = s
        h = torch.relu(x @ W.T + h @ U.T + b)
        return h, (h,)

    return step


def naive_jordan(cell):
    # Mesnil et al. 2013: h(t) = f(U x(t) + V y(t-1)), y(t) = g(W h(t)); Jordan's
    # context units s(t) = mu s(t-1) + y(t)
    f = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[cell.nonlinearity]
    g = {
        "softmax": lambda a: torch.exp(a) / torch.exp(a).sum(-1, keepdim=True),
        "sigmoid": lambda a: 1 / (1 + torch.exp(-a)),
        "identity": lambda a: a,
        "tanh": torch.tanh,
    }[cell.output_activation]
    mu = cell.self_connection
    b_h = 0 if cell.bias_h is None else cell.bias_h
    b_y = 0 if cell.bias_y is None else cell.bias_y

    def step(x, st):
        (s,) = st
        h = f(x @ cell.weight_ih.T + s @ cell.weight_yh.T + b_h)
        y = g(h @ cell.weight_hy.T + b_y)
        return y, (mu * s + y,)

    return step


def naive_scrn(cell):
    # Mikolov et al. 2015, eq. for the context units and the hidden layer:
    # s_t = (1 - a) B x_t + a s_{t-1};  h_t = sigma(P s_t + A x_t + R h_{t-1})
    a = cell.alpha
    B, A, P, R = cell.weight_xs, cell.weight_xh, cell.weight_sh, cell.weight_hh
    b = 0 if cell.bias is None else cell.bias
    sigma = (lambda z: 1 / (1 + torch.exp(-z))) if cell.nonlinearity == "sigmoid" else torch.tanh

    def step(x, st):
        h, s = st
        s = (1 - a) * (x @ B.T) + a * s
        h = sigma(s @ P.T + x @ A.T + h @ R.T + b)
        return torch.cat([h, s], 1), (h, s)

    return step


def naive_indrnn(cell):
    # Li et al. 2018: h_t = sigma(W x_t + u * h_{t-1} + b), unit by unit
    act = torch.relu if cell.nonlinearity == "relu" else torch.tanh
    b = cell.bias if cell.bias is not None else torch.zeros(H, dtype=cell.weight_ih.dtype)

    def step(x, st):
        (h,) = st
        new = []
        for n in range(cell.hidden_size):
            new.append(act(x @ cell.weight_ih[n] + cell.weight_hh[n] * h[:, n] + b[n]))
        h = torch.stack(new, 1)
        return h, (h,)

    return step


NAIVE = {"irnn": naive_irnn, "jordan": naive_jordan, "scrn": naive_scrn, "indrnn": naive_indrnn}


def paper_param_count(key: str) -> int:
    name, opts = ZOO[key]
    bias = opts.get("bias", True)
    if name == "irnn":
        # paper: W (H x H_in), U (H x H), one bias H; torch layout adds a second bias
        return H * H_IN + H * H + H + H
    if name == "jordan":
        O = opts.get("output_size", H)
        return H * H_IN + H * O + O * H + (H + O if bias else 0)
    if name == "scrn":
        S = opts.get("context_size", H)
        return S * H_IN + H * H_IN + H * S + H * H + (H if bias else 0)
    if name == "indrnn":
        return H * H_IN + H + (H if bias else 0)
    raise KeyError(name)


# --- generic tests -------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(ZOO))
def test_builds_from_registry(key):
    name, opts = ZOO[key]
    assert name in memnets.cell_names()
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **opts)
    assert isinstance(cell, memnets.RecurrentCell)
    assert cell.input_size == H_IN and cell.hidden_size == H


@pytest.mark.parametrize("key", sorted(ZOO))
def test_matches_naive_equations(key):
    cell = build(key, torch.float64)
    torch.manual_seed(1)
    x = torch.randn(6, 2, H_IN, dtype=torch.float64)
    out, final = memnets.Recurrent(cell)(x)
    state0 = tuple(cell.init_state(2, dtype=torch.float64))
    ref_out, ref_final = naive_run(NAIVE[ZOO[key][0]](cell), x, state0)
    torch.testing.assert_close(out, ref_out)
    for got, want in zip(final, ref_final):
        torch.testing.assert_close(got, want)
    # the single-step contract agrees with the layer
    y0, _ = cell(x[0])
    torch.testing.assert_close(y0, out[0])


@pytest.mark.parametrize("key", sorted(ZOO))
def test_lengths_padding_zero_and_each_alone(key):
    cell = build(key, torch.float64)
    layer = memnets.Recurrent(cell, batch_first=True)
    torch.manual_seed(2)
    lengths = [5, 2, 4]
    x = torch.randn(3, 5, H_IN, dtype=torch.float64)
    out, final = layer(x, lengths=lengths)
    for n, length in enumerate(lengths):
        assert torch.all(out[n, length:] == 0)
        alone, alone_final = layer(x[n : n + 1, :length])
        torch.testing.assert_close(out[n : n + 1, :length], alone)
        for got, want in zip(final, alone_final):
            torch.testing.assert_close(got[n : n + 1], want)


@pytest.mark.parametrize("key", sorted(ZOO))
def test_gradcheck_through_recurrent(key):
    cell = build(key, torch.float64)
    layer = memnets.Recurrent(cell)
    torch.manual_seed(3)
    x = torch.randn(3, 2, H_IN, dtype=torch.float64, requires_grad=True)
    params = [p for p in cell.parameters()]
    names = [n for n, _ in cell.named_parameters()]

    def f(x, *ps):
        out, final = torch.func.functional_call(
            layer, {f"cell.{n}": p for n, p in zip(names, ps)}, (x,), {"lengths": [3, 2]}
        )
        return (out,) + tuple(final)

    inputs = (x,) + tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("key", sorted(ZOO))
def test_parameter_count_matches_paper(key):
    name, opts = ZOO[key]
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **opts)
    assert sum(p.numel() for p in cell.parameters()) == paper_param_count(key)


# --- cell-specific tests -------------------------------------------------------------


def test_irnn_initialisation():
    torch.manual_seed(0)
    cell = IRNNCell(200, 50, identity_scale=0.3)
    torch.testing.assert_close(cell.weight_hh, 0.3 * torch.eye(50))
    assert torch.all(cell.bias_ih == 0) and torch.all(cell.bias_hh == 0)
    assert abs(cell.weight_ih.std().item() - 1e-3) < 1e-4
    assert cell.nonlinearity == "relu"
    # identity recurrence and zero input: a positive state is carried unchanged
    unit = IRNNCell(2, 3)
    h0 = memnets.ElmanState(torch.tensor([[1.0, 2.0, 3.0]]))
    y, _ = unit(torch.zeros(1, 2), h0)
    torch.testing.assert_close(y, h0.h)


def test_irnn_loads_into_relu_rnn():
    cell = IRNNCell(3, 4)
    rnn = torch.nn.RNNCell(3, 4, nonlinearity="relu")
    rnn.load_state_dict(cell.state_dict())
    x = torch.randn(2, 3)
    h = torch.randn(2, 4)
    torch.testing.assert_close(cell(x, memnets.ElmanState(h))[0], rnn(x, h))


def test_irnn_rejects_negative_std():
    with pytest.raises(ValueError, match="input_std"):
        IRNNCell(3, 4, input_std=-1.0)


def test_jordan_feeds_back_the_output_not_the_hidden_state():
    cell = JordanCell(2, 3, output_size=2, output_activation="identity")
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hy.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
        cell.weight_yh.copy_(torch.ones(3, 2))
    # the previous output enters the hidden layer through weight_yh
    y, state = cell(torch.zeros(1, 2), JordanState(torch.tensor([[1.0, 1.0]])))
    torch.testing.assert_close(y, torch.tensor([[torch.sigmoid(torch.tensor(2.0)).item(), 0.0]]))
    torch.testing.assert_close(state.y, y)
    assert cell.output_size == 2


def test_jordan_softmax_output_is_a_distribution():
    cell = JordanCell(3, 4, output_size=6)
    out, _ = memnets.Recurrent(cell)(torch.randn(5, 2, 3))
    torch.testing.assert_close(out.sum(-1), torch.ones(5, 2))


def test_jordan_rejects_unknown_activation():
    with pytest.raises(ValueError, match="output_activation"):
        JordanCell(3, 4, output_activation="softplus")
    with pytest.raises(ValueError, match="nonlinearity"):
        JordanCell(3, 4, nonlinearity="gelu")


def test_scrn_context_units_are_a_fixed_exponential_average():
    cell = SCRNCell(1, 2, context_size=1, alpha=0.9)
    with torch.no_grad():
        cell.weight_xs.fill_(1.0)
    x = torch.ones(30, 1, 1)
    out, state = memnets.Recurrent(cell)(x)
    # s_t = 0.1 * sum_k 0.9^k = 1 - 0.9^t for a constant input of 1
    t = torch.arange(1, 31, dtype=torch.float32)
    torch.testing.assert_close(out[:, 0, 2], 1 - 0.9**t)
    assert isinstance(state, SCRNState) and cell.output_size == 3
    # alpha is a constant, not a parameter
    assert "alpha" not in dict(cell.named_parameters())


def test_scrn_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        SCRNCell(2, 3, alpha=1.5)


def test_indrnn_constraint_clips_magnitudes_keeping_signs():
    cell = IndRNNCell(2, 6, recurrent_max=0.5, recurrent_min=0.1)
    assert cell.weight_hh.abs().max() <= 0.5
    with torch.no_grad():
        cell.weight_hh.copy_(torch.tensor([2.0, -3.0, 0.05, -0.01, 0.3, -0.2]))
    model = torch.nn.Sequential(memnets.Recurrent(cell))
    constrain_all_(model)
    torch.testing.assert_close(cell.weight_hh, torch.tensor([0.5, -0.5, 0.1, -0.1, 0.3, -0.2]))
    # the paper's bound 2^(1/T): over T steps a unit's recurrent product is at most 2
    T = 100
    cell = IndRNNCell(2, 6, recurrent_max=2 ** (1 / T))
    assert float(cell.weight_hh.detach().abs().max() ** T) <= 2 + 1e-5


def test_indrnn_units_are_independent_over_time():
    cell = IndRNNCell(2, 3)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.copy_(torch.tensor([0.5, 1.0, 0.0]))
    y, _ = cell(torch.zeros(1, 2), IndRNNState(torch.tensor([[2.0, 3.0, 4.0]])))
    torch.testing.assert_close(y, torch.tensor([[1.0, 3.0, 0.0]]))


def test_indrnn_rejects_bad_bounds():
    with pytest.raises(ValueError, match="recurrent_min"):
        IndRNNCell(2, 3, recurrent_max=0.5, recurrent_min=0.9)
