"""The sequence-level path (memnets.layers.time_loop) against the step loop under autograd.

Every cell with a sequence form, every option that keeps it, both directions,
variable lengths and given states: outputs, final states and every gradient
equal in float64; ``gradcheck`` through the path; the path is taken exactly
when it should be, and a user's own cell can opt in.
"""

from typing import NamedTuple

import pytest
import torch
from torch import nn

import memnets
from memnets.cells.base import SequenceForm, register_state, sequence_form_of
from memnets.layers import recurrent
from memnets.layers.time_loop import sequence_level

H_IN, H = 3, 4
LENGTHS = [5, 2, 4, 1]
L, N = max(LENGTHS), len(LENGTHS)

OPTED_IN = [
    ("lstm", {}), ("lstm", {"bias": False}), ("lstm", {"forget_bias": 0.3}),
    ("gru", {}), ("gru", {"bias": False}),
    ("elman", {}), ("elman", {"nonlinearity": "relu"}), ("elman", {"bias": False}),
    ("irnn", {}),
]


@register_state
class LeakyState(NamedTuple):
    h: torch.Tensor


class LeakyCell(memnets.RecurrentCell):
    """A user's cell: h_t = (1 - a) h_{t-1} + a tanh(W x_t + U h_{t-1} + b), with a learned
    per-unit rate ``a`` read by the pointwise step (a parameter of the form)."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.weight_ih = nn.Parameter(torch.randn(hidden_size, input_size) / 2)
        self.weight_hh = nn.Parameter(torch.randn(hidden_size, hidden_size) / 2)
        self.bias = nn.Parameter(torch.randn(hidden_size) / 2)
        self.rate = nn.Parameter(torch.rand(hidden_size))

    def init_state(self, batch_size, *, device=None, dtype=None):
        dtype = dtype or self.weight_ih.dtype
        return LeakyState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))

    def project_input(self, x):
        return x @ self.weight_ih.t()

    def recur(self, u_t, state):
        g = torch.tanh(u_t + state.h @ self.weight_hh.t() + self.bias)
        h = state.h + self.rate * (g - state.h)
        return h, LeakyState(h)

    def sequence_form(self):
        return SequenceForm(self.weight_hh, self.bias, params=(self.rate,))

    def pointwise_forward(self, u_t, v_t, state, params):
        (rate,) = params
        g = torch.tanh(u_t + v_t)
        h = state.h + rate * (g - state.h)
        return h, LeakyState(h), (g, state.h)

    def pointwise_backward(self, saved, dy, dstate, params):
        (rate,), (g, h_prev) = params, saved
        dh = dy + dstate.h
        da = dh * rate * (1 - g * g)
        return da, da, (dh * (1 - rate),), ((dh * (g - h_prev)).sum(0),)


def _cell(name, options, seed=0):
    torch.manual_seed(seed)
    if name == "leaky":
        return LeakyCell(H_IN, H).double()
    return memnets.make_cell(name, input_size=H_IN, hidden_size=H, **options).double()


def _inputs(cell, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(L, N, H_IN, generator=g, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(t.shape, generator=g, dtype=torch.float64).requires_grad_()
                  for t in cell.init_state(N, dtype=torch.float64))
    return x, state


def _run(layer, x, state, lengths, sequence, weights=None):
    with sequence_level(sequence):
        out, final = layer(x, state, lengths=lengths)
    g = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for s in final:
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    leaves = [x, *state, *layer.parameters()]
    return out, final, torch.autograd.grad(loss, leaves)


CASES = OPTED_IN + [("leaky", {})]


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "varlen"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{o or ''}" for n, o in CASES])
def test_sequence_level_equals_the_step_loop(name, options, reverse, lengths, monkeypatch):
    cell = _cell(name, options)
    assert sequence_form_of(cell) is not None
    layer = memnets.Recurrent(cell, reverse=reverse)
    x, state = _inputs(cell)
    calls = []
    run = recurrent.run_sequence_form
    monkeypatch.setattr(recurrent, "run_sequence_form", lambda *a: calls.append(1) or run(*a))
    a_out, a_final, a_grads = _run(layer, x, state, lengths, True)
    assert calls == [1]  # the first run took the path
    b_out, b_final, b_grads = _run(layer, x, state, lengths, False)
    assert calls == [1]
    torch.testing.assert_close(a_out, b_out, atol=1e-12, rtol=0)
    for a, b in zip(a_final, b_final):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    for a, b in zip(a_grads, b_grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman", "leaky"])
def test_gradcheck_through_the_sequence_level_path(name):
    cell = _cell(name, {})
    layer = memnets.Recurrent(cell)
    x, state = _inputs(cell)
    params = list(cell.parameters())

    names = [n for n, _ in layer.named_parameters()]

    def f(x, *rest):
        st, ps = rest[: len(state)], rest[len(state):]
        out, final = torch.func.functional_call(
            layer, dict(zip(names, ps)), (x, tuple(st)), {"lengths": LENGTHS})
        return (out, *final)

    ps = [p.detach().clone().requires_grad_() for p in params]
    with sequence_level(True):
        assert torch.autograd.gradcheck(f, (x, *state, *ps))


def test_only_the_final_state_or_only_the_outputs_carry_gradient():
    cell = _cell("lstm", {})
    layer = memnets.Recurrent(cell)
    x, state = _inputs(cell)
    for pick in (lambda out, fin: fin.c.sum(), lambda out, fin: out.sum()):
        grads = []
        for flag in (True, False):
            with sequence_level(flag):
                out, fin = layer(x, state, lengths=LENGTHS)
            grads.append(torch.autograd.grad(pick(out, fin), [x, cell.weight_hh]))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_the_path_is_taken_only_in_training_and_only_for_its_own_step():
    layer = memnets.Recurrent(_cell("gru", {}))
    x = torch.randn(L, N, H_IN, dtype=torch.float64)
    assert type(layer(x)[0].grad_fn).__name__ == "TimeLoopBackward"
    with sequence_level(False):
        assert type(layer(x)[0].grad_fn).__name__ == "StackBackward0"
    with torch.no_grad():
        assert layer(x)[0].grad_fn is None
    layer.requires_grad_(False)
    assert layer(x)[0].grad_fn is None  # nothing needs a gradient: the plain loop

    class Doubled(memnets.GRUCell):  # a changed step must not be bypassed
        def recur(self, u_t, state):
            y, s = super().recur(u_t, state)
            return 2 * y, s

    cell = Doubled(H_IN, H).double()
    assert sequence_form_of(cell) is None
    out, _ = memnets.Recurrent(cell)(x)
    with torch.no_grad():
        step = cell.recur(cell.project_input(x[0]), cell.init_state(N, dtype=x.dtype))[0]
    torch.testing.assert_close(out[0], step)


@pytest.mark.parametrize("name,options", [
    ("lstm", {"peephole": True}), ("lstm", {"proj_size": 2}), ("lstm", {"layer_norm": True}),
    ("lstm", {"coupled": True}), ("gru", {"reset_after": False}),
])
def test_options_outside_the_form_keep_the_autograd_path(name, options):
    cell = _cell(name, options)
    assert sequence_form_of(cell) is None
    x = torch.randn(L, N, H_IN, dtype=torch.float64)
    assert type(memnets.Recurrent(cell)(x)[0].grad_fn).__name__ != "TimeLoopBackward"


def test_wrapped_cells_keep_their_regulariser():
    """A dropout wrapper has no form of its own: its masks still apply, step by step."""
    cell = memnets.VariationalDropout(_cell("lstm", {}), state_dropout=0.5)
    assert sequence_form_of(cell) is None
