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
    GRUCell,
    IndRNNCell,
    IndRNNState,
    IRNNCell,
    JordanCell,
    JordanState,
    LSTMCell,
    SCRNCell,
    SCRNState,
    constrain_all_,
)

H_IN, H = 3, 4

# test id -> (registry name, options); every cell and option family is listed here
ZOO = {
    "elman": ("elman", {}),
    "elman_relu_nobias": ("elman", {"nonlinearity": "relu", "bias": False}),
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
    "lstm": ("lstm", {}),
    "lstm_proj_nobias": ("lstm", {"proj_size": 2, "bias": False}),
    "lstm_peephole": ("lstm", {"peephole": True}),
    "lstm_coupled": ("lstm", {"coupled": True}),
    "lstm_coupled_peephole": ("lstm", {"coupled": True, "peephole": True}),
    "lstm_layer_norm": ("lstm", {"layer_norm": True}),
    "lstm_activations": (
        "lstm",
        {"gate_activation": "hard_sigmoid", "input_activation": "softsign",
         "output_activation": "identity"},
    ),
    "lstm_everything": (
        "lstm",
        {"peephole": True, "coupled": True, "layer_norm": True, "proj_size": 3,
         "forget_bias": 2.0, "output_activation": "relu"},
    ),
    "gru": ("gru", {}),
    "gru_paper": ("gru", {"reset_after": False}),
    "gru_paper_nobias": ("gru", {"reset_after": False, "bias": False}),
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


def naive_elman(cell):
    # Elman 1990: h_t = sigma(W x_t + U h_{t-1} + b)
    act = torch.tanh if cell.nonlinearity == "tanh" else (lambda a: torch.clamp(a, min=0))
    b = 0 if cell.bias_ih is None else cell.bias_ih + cell.bias_hh

    def step(x, s):
        (h,) = s
        h = act(x @ cell.weight_ih.T + h @ cell.weight_hh.T + b)
        return h, (h,)

    return step


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


ACT = {
    "sigmoid": lambda a: 1 / (1 + torch.exp(-a)),
    "tanh": torch.tanh,
    "relu": lambda a: torch.clamp(a, min=0),
    "identity": lambda a: a,
    "hard_sigmoid": lambda a: torch.clamp(a / 6 + 0.5, 0, 1),
    "softsign": lambda a: a / (1 + a.abs()),
}


def layer_norm(a, ln):
    # Ba et al. 2016: (a - mean) / std over the features, then gain and shift
    mu = a.mean(-1, keepdim=True)
    var = ((a - mu) ** 2).mean(-1, keepdim=True)
    return (a - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def naive_lstm(cell):
    Hc = cell.hidden_size
    f_, g_, h_ = (ACT[cell.gate_activation], ACT[cell.input_activation],
                  ACT[cell.output_activation])
    names = "fgo" if cell.coupled else "ifgo"
    W = dict(zip(names, cell.weight_ih.split(Hc)))
    U = dict(zip(names, cell.weight_hh.split(Hc)))
    zero = torch.zeros(len(names) * Hc, dtype=cell.weight_ih.dtype)
    b_all = (cell.bias_ih + cell.bias_hh) if cell.bias_ih is not None else zero
    b = dict(zip(names, b_all.split(Hc)))
    peep = {k: getattr(cell, "weight_c" + k) for k in "ifo"}

    def step(x, st):
        h, c = st
        if cell.layer_norm:
            # LN over all gates together, input and recurrent parts separately
            ax = dict(zip(names, layer_norm(x @ cell.weight_ih.T, cell.ln_ih).split(Hc, -1)))
            ah = dict(zip(names, layer_norm(h @ cell.weight_hh.T, cell.ln_hh).split(Hc, -1)))
        else:
            ax = {k: x @ W[k].T for k in names}
            ah = {k: h @ U[k].T for k in names}
        a = {k: ax[k] + ah[k] + b[k] for k in names}
        for k in "if":
            if k in names and peep[k] is not None:
                a[k] = a[k] + peep[k] * c  # peep at c_{t-1}
        f = f_(a["f"])
        i = 1 - f if cell.coupled else f_(a["i"])
        c = f * c + i * g_(a["g"])
        if peep["o"] is not None:
            a["o"] = a["o"] + peep["o"] * c  # peep at c_t
        o = f_(a["o"])
        h = o * h_(layer_norm(c, cell.ln_c) if cell.layer_norm else c)
        if cell.weight_hr is not None:
            h = h @ cell.weight_hr.T
        return h, (h, c)

    return step


def naive_gru(cell):
    Hc = cell.hidden_size
    Wr, Wz, Wn = cell.weight_ih.split(Hc)
    Ur, Uz, Un = cell.weight_hh.split(Hc)
    if cell.bias_ih is None:
        bi = bh = [0, 0, 0]
    else:
        bi, bh = cell.bias_ih.split(Hc), cell.bias_hh.split(Hc)
    sig = ACT["sigmoid"]

    def step(x, st):
        (h,) = st
        r = sig(x @ Wr.T + bi[0] + h @ Ur.T + bh[0])
        z = sig(x @ Wz.T + bi[1] + h @ Uz.T + bh[1])
        if cell.reset_after:
            n = torch.tanh(x @ Wn.T + bi[2] + r * (h @ Un.T + bh[2]))
        else:  # Cho et al. 2014: reset applied to h before the product
            n = torch.tanh(x @ Wn.T + bi[2] + (r * h) @ Un.T + bh[2])
        h = (1 - z) * n + z * h
        return h, (h,)

    return step


NAIVE = {
    "elman": naive_elman,
    "irnn": naive_irnn,
    "jordan": naive_jordan,
    "scrn": naive_scrn,
    "indrnn": naive_indrnn,
    "lstm": naive_lstm,
    "gru": naive_gru,
}


def paper_param_count(key: str) -> int:
    name, opts = ZOO[key]
    bias = opts.get("bias", True)
    if name == "elman":
        # paper: one bias; torch.nn.RNNCell's layout has two
        return H * H_IN + H * H + (2 * H if bias else 0)
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
    if name == "lstm":
        G = 3 if opts.get("coupled") else 4  # gate blocks
        H_out = opts.get("proj_size") or H
        n = G * H * (H_IN + H_out) + (2 * G * H if bias else 0)
        n += H_out * H if opts.get("proj_size") else 0
        n += (G - 1) * H if opts.get("peephole") else 0  # one diagonal per gate
        n += 2 * (2 * G * H) + 2 * H if opts.get("layer_norm") else 0  # gains and shifts
        return n
    if name == "gru":
        return 3 * H * (H_IN + H) + (6 * H if bias else 0)
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


# --- LSTM options ------------------------------------------------------------------


def test_lstm_defaults_keep_torch_layout_and_values():
    cell = LSTMCell(3, 5)
    ref = torch.nn.LSTMCell(3, 5)
    assert {k: v.shape for k, v in cell.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    assert cell.is_standard()
    torch.testing.assert_close(cell.bias_ih[5:10], torch.ones(5))
    assert torch.all(cell.bias_ih[:5] == 0) and torch.all(cell.bias_hh == 0)
    ref.load_state_dict(cell.state_dict())
    x, h, c = torch.randn(2, 3), torch.randn(2, 5), torch.randn(2, 5)
    y, state = cell(x, memnets.LSTMState(h, c))
    h_ref, c_ref = ref(x, (h, c))
    torch.testing.assert_close(y, h_ref)
    torch.testing.assert_close(state.c, c_ref)


@pytest.mark.parametrize(
    "options",
    [{"peephole": True}, {"coupled": True}, {"layer_norm": True},
     {"gate_activation": "hard_sigmoid"}, {"input_activation": "relu"},
     {"output_activation": "identity"}],
)
def test_lstm_is_standard_only_at_defaults(options):
    assert not LSTMCell(3, 4, **options).is_standard()
    assert LSTMCell(3, 4, proj_size=2, forget_bias=0.0).is_standard()


@pytest.mark.parametrize("coupled", [False, True])
def test_lstm_forget_bias_goes_to_the_forget_block(coupled):
    cell = LSTMCell(3, 4, forget_bias=2.5, coupled=coupled)
    k = 0 if coupled else 1
    torch.testing.assert_close(cell.bias_ih[4 * k : 4 * k + 4], torch.full((4,), 2.5))
    assert float(cell.bias_ih.detach().sum()) == 10.0 and torch.all(cell.bias_hh == 0)


def test_lstm_coupled_layout_and_peepholes():
    cell = LSTMCell(3, 4, coupled=True, peephole=True)
    shapes = {k: tuple(v.shape) for k, v in cell.named_parameters()}
    assert shapes == {
        "weight_ih": (12, 3), "weight_hh": (12, 4), "bias_ih": (12,), "bias_hh": (12,),
        "weight_cf": (4,), "weight_co": (4,),
    }
    # peepholes start at zero: the peephole cell starts as the plain cell
    plain = LSTMCell(3, 4)
    peep = LSTMCell(3, 4, peephole=True)
    peep.load_state_dict({**peep.state_dict(), **plain.state_dict()})
    x = torch.randn(2, 3)
    torch.testing.assert_close(peep(x)[0], plain(x)[0])


def test_lstm_rejects_unknown_activation():
    with pytest.raises(ValueError, match="gate_activation"):
        LSTMCell(3, 4, gate_activation="swish")


# --- GRU ---------------------------------------------------------------------------


def test_gru_default_is_reset_after_and_matches_torch():
    cell = GRUCell(3, 5)
    assert cell.reset_after
    ref = torch.nn.GRUCell(3, 5)
    ref.load_state_dict(cell.state_dict())
    x, h = torch.randn(2, 3), torch.randn(2, 5)
    torch.testing.assert_close(cell(x, memnets.GRUState(h))[0], ref(x, h))


def test_gru_two_forms_differ():
    torch.manual_seed(0)
    after = GRUCell(3, 5)
    before = GRUCell(3, 5, reset_after=False)
    before.load_state_dict(after.state_dict())
    with torch.no_grad():
        after.bias_hh.normal_()
        before.bias_hh.copy_(after.bias_hh)
    x, h = torch.randn(2, 3), torch.randn(2, 5)
    assert not torch.allclose(after(x, memnets.GRUState(h))[0], before(x, memnets.GRUState(h))[0])
