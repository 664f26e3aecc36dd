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
from memnets.cells import IRNNCell

H_IN, H = 3, 4

# name -> options used for the generic tests (every cell listed here)
ZOO = {
    "irnn": {},
    "irnn_scaled": {"identity_scale": 0.5, "input_std": 0.3},
}


def build(key: str, dtype=torch.float32, **extra):
    name = key.split("_")[0]
    torch.manual_seed(0)
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **ZOO[key], **extra)
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


NAIVE = {"irnn": naive_irnn}


def paper_param_count(key: str) -> int:
    opts = ZOO[key]
    name = key.split("_")[0]
    if name == "irnn":
        # paper: W (H x H_in), U (H x H), one bias H; torch layout adds a second bias
        return H * H_IN + H * H + H + H
    raise KeyError(opts)


# --- generic tests -------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(ZOO))
def test_builds_from_registry(key):
    name = key.split("_")[0]
    assert name in memnets.cell_names()
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **ZOO[key])
    assert isinstance(cell, memnets.RecurrentCell)
    assert cell.input_size == H_IN and cell.hidden_size == H


@pytest.mark.parametrize("key", sorted(ZOO))
def test_matches_naive_equations(key):
    cell = build(key, torch.float64)
    torch.manual_seed(1)
    x = torch.randn(6, 2, H_IN, dtype=torch.float64)
    out, final = memnets.Recurrent(cell)(x)
    state0 = tuple(cell.init_state(2, dtype=torch.float64))
    ref_out, ref_final = naive_run(NAIVE[key.split("_")[0]](cell), x, state0)
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
    cell = memnets.make_cell(key.split("_")[0], input_size=H_IN, hidden_size=H, **ZOO[key])
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
