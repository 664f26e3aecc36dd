"""The multi-layer cells (designs that span layers) against naive loops of their papers' equations.

Each naive reference runs one sequence with Python lists for the layers and
reads the parameters block by block, independently of the vectorised cells.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from memnets import (
    Bidirectional,
    Recurrent,
    Stacked,
    cell_names,
    make_cell,
    make_stack,
    stack_names,
)
from memnets.cells import (
    DepthGatedLSTMCell,
    DepthGatedState,
    GatedFeedbackCell,
    GatedFeedbackLSTMState,
    GatedFeedbackState,
    GridLSTMCell,
)
from memnets.errors import ConfigError

D = torch.float64
sig, tanh = torch.sigmoid, torch.tanh

# (registry name, cell class, options) for every design and flag combination
CASES = [
    ("gated_feedback", GatedFeedbackCell, {"unit": "tanh"}),
    ("gated_feedback", GatedFeedbackCell, {"unit": "gru"}),
    ("gated_feedback", GatedFeedbackCell, {"unit": "lstm"}),
    ("gated_feedback", GatedFeedbackCell, {"unit": "lstm", "bias": False}),
    ("depth_gated", DepthGatedLSTMCell, {}),
    ("depth_gated", DepthGatedLSTMCell, {"peepholes": False}),
    ("depth_gated", DepthGatedLSTMCell, {"bias": False}),
    ("grid_lstm", GridLSTMCell, {}),
    ("grid_lstm", GridLSTMCell, {"tied": True}),
    ("grid_lstm", GridLSTMCell, {"bias": False}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for n, _, o in CASES]


def _build(name, options, H_in=3, H=4, K=3, seed=0, **layer_options):
    torch.manual_seed(seed)
    layer = make_stack(name, input_size=H_in, hidden_size=H, num_layers=K, **options,
                       **layer_options).double()
    with torch.no_grad():  # non-trivial values everywhere (peepholes start at zero)
        for p in layer.parameters():
            p.uniform_(-0.7, 0.7)
    return layer


def _blocks(w, H):
    return [w[k * H : (k + 1) * H] for k in range(w.shape[0] // H)]


# --- naive references, one sequence xs (L, H_in) at a time --------------------------


def naive_gated_feedback(cell: GatedFeedbackCell, xs, h0=None):
    K, H, unit = cell.num_layers, cell.hidden_size, cell.unit
    h = list(h0) if h0 is not None else [torch.zeros(H, dtype=D) for _ in range(K)]
    c = [torch.zeros(H, dtype=D) for _ in range(K)]
    outs = []
    for x in xs:
        h_star = torch.cat(h)  # h*_{t-1}
        new_h, new_c, below = [], [], x
        for j in range(K):
            W = _blocks(cell.weight_ih[j], H)
            b = _blocks(cell.bias[j], H) if cell.bias is not None else [0.0] * len(W)
            # global reset gates g^{i->j}, one scalar each, and the gated feedback sum
            R = torch.zeros(H, dtype=D)
            for i in range(K):
                g = sig(cell.gate_ih[j][i] @ below + cell.gate_hh[j, i] @ h_star)
                R = R + g * (cell.weight_feedback[j, i] @ h[i])
            if unit == "tanh":
                hj = tanh(W[0] @ below + b[0] + R)
            elif unit == "gru":
                Ur, Uz = _blocks(cell.weight_hh[j], H)
                r = sig(W[0] @ below + Ur @ h[j] + b[0])
                z = sig(W[1] @ below + Uz @ h[j] + b[1])
                h_cand = tanh(W[2] @ below + b[2] + r * R)
                hj = (1 - z) * h[j] + z * h_cand
            else:
                Ui, Uf, Uo = _blocks(cell.weight_hh[j], H)
                i_ = sig(W[0] @ below + Ui @ h[j] + b[0])
                f_ = sig(W[1] @ below + Uf @ h[j] + b[1])
                o_ = sig(W[2] @ below + Uo @ h[j] + b[2])
                c_cand = tanh(W[3] @ below + b[3] + R)
                cj = f_ * c[j] + i_ * c_cand
                hj = o_ * tanh(cj)
                new_c.append(cj)
            new_h.append(hj)
            below = hj
        h = new_h
        c = new_c or c
        outs.append(h[-1])
    return torch.stack(outs), torch.stack(h), torch.stack(c)


def naive_depth_gated(cell: DepthGatedLSTMCell, xs):
    K, H = cell.num_layers, cell.hidden_size
    h = [torch.zeros(H, dtype=D) for _ in range(K)]
    c = [torch.zeros(H, dtype=D) for _ in range(K)]
    zero = torch.zeros(H, dtype=D)
    outs = []
    for x in xs:
        new_h, new_c = [], []
        x_l = x  # x_t^{l+1} = h_t^l
        for j in range(K):
            Wx = _blocks(cell.weight_ih[j], H)  # i, f, g, o (, d)
            Wh = _blocks(cell.weight_hh[j], H)
            b = _blocks(cell.bias[j], H) if cell.bias is not None else [zero] * 5
            w_ci, w_cf, w_co = cell.peephole[j] if cell.peephole is not None else [zero] * 3
            i_ = sig(Wx[0] @ x_l + Wh[0] @ h[j] + w_ci * c[j] + b[0])
            f_ = sig(Wx[1] @ x_l + Wh[1] @ h[j] + w_cf * c[j] + b[1])
            cj = f_ * c[j] + i_ * tanh(Wx[2] @ x_l + Wh[2] @ h[j] + b[2])
            if j > 0:
                c_low = new_c[j - 1]
                d_ = sig(b[4] + Wx[4] @ x_l + cell.depth_weight_c[j - 1] * c[j]
                         + cell.depth_weight_l[j - 1] * c_low)
                cj = d_ * c_low + cj
            o_ = sig(Wx[3] @ x_l + Wh[3] @ h[j] + w_co * cj + b[3])
            hj = o_ * tanh(cj)
            new_h.append(hj)
            new_c.append(cj)
            x_l = hj
        h, c = new_h, new_c
        outs.append(h[-1])
    return torch.stack(outs), torch.stack(h), torch.stack(c)


def naive_grid_lstm(cell: GridLSTMCell, xs):
    K, H = cell.num_layers, cell.hidden_size

    def lstm(Hvec, m, W, b):  # the paper's LSTM(H, m, W)
        Wu, Wf, Wc, Wo = _blocks(W, H)
        bu, bf, bc, bo = _blocks(b, H) if b is not None else [0.0] * 4
        gu, gf = sig(Wu @ Hvec + bu), sig(Wf @ Hvec + bf)
        go, gc = sig(Wo @ Hvec + bo), tanh(Wc @ Hvec + bc)
        m_new = gf * m + gu * gc
        return tanh(go * m_new), m_new

    h_time = [torch.zeros(H, dtype=D) for _ in range(K)]
    m_time = [torch.zeros(H, dtype=D) for _ in range(K)]
    outs = []
    for x in xs:
        h_depth, m_depth = cell.weight_in @ x, torch.zeros(H, dtype=D)
        for k in range(K):
            blk = 0 if cell.tied else k
            w = torch.cat([cell.weight_from_time[blk], cell.weight_from_depth[blk]], dim=1)
            b = None if cell.bias is None else cell.bias[blk]
            Hvec = torch.cat([h_time[k], h_depth])
            ht, mt = lstm(Hvec, m_time[k], w[: 4 * H], None if b is None else b[: 4 * H])
            h_depth, m_depth = lstm(Hvec, m_depth, w[4 * H :], None if b is None else b[4 * H :])
            h_time[k], m_time[k] = ht, mt
        outs.append(h_depth)
    return torch.stack(outs), torch.stack(h_time), torch.stack(m_time)


NAIVE = {
    GatedFeedbackCell: naive_gated_feedback,
    DepthGatedLSTMCell: naive_depth_gated,
    GridLSTMCell: naive_grid_lstm,
}


# --- tests ----------------------------------------------------------------------------


def test_registry_lists_every_design():
    assert {"gated_feedback", "depth_gated", "grid_lstm"} <= set(stack_names())
    with pytest.raises(ValueError, match="unknown stack 'nope'"):
        make_stack("nope", input_size=2, hidden_size=2, num_layers=2)


def test_multi_layer_cells_are_cells_of_the_one_registry():
    one, multi = set(cell_names()), set(cell_names(layers=True))
    assert multi == set(stack_names()) and not one & multi
    assert set(cell_names(layers=None)) == one | multi
    with pytest.raises(ConfigError, match=r"expected num_layers to be an int >= 1, got None"):
        make_cell("grid_lstm", input_size=3, hidden_size=4)  # a multi-layer cell needs K
    with pytest.raises(ValueError, match=r"cell 'lstm' is one layer; expected no num_layers"):
        make_cell("lstm", input_size=3, hidden_size=4, num_layers=2)
    with pytest.raises(ValueError, match=r"unknown stack 'lstm'; expected one of depth_gated"):
        make_stack("lstm", input_size=3, hidden_size=4, num_layers=2)
    with pytest.raises(ValueError, match=r"unknown cell 'nope'.*with num_layers, depth_gated"):
        make_cell("nope", input_size=3, hidden_size=4)


@pytest.mark.parametrize("name,cls,options", CASES, ids=IDS)
def test_make_cell_builds_the_cell_that_make_stack_runs(name, cls, options):
    torch.manual_seed(0)
    cell = make_cell(name, input_size=3, hidden_size=4, num_layers=2, **options)
    torch.manual_seed(0)
    layer = make_stack(name, input_size=3, hidden_size=4, num_layers=2, **options)
    assert type(cell) is cls and type(layer.cell) is cls
    a, b = cell.state_dict(), layer.cell.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name,cls,options", CASES, ids=IDS)
def test_builds_from_registry(name, cls, options):
    layer = make_stack(name, input_size=5, hidden_size=6, num_layers=2, batch_first=True,
                       **options)
    assert isinstance(layer, Recurrent) and isinstance(layer.cell, cls)
    assert layer.batch_first and (layer.input_size, layer.output_size) == (5, 6)
    assert layer.cell.num_layers == 2
    if "unit" in options:
        assert layer.cell.unit == options["unit"]
    if "tied" in options:
        assert layer.cell.tied == options["tied"]
    if options.get("bias", True) is False:
        assert layer.cell.bias is None
    if options.get("peepholes", True) is False:
        assert layer.cell.peephole is None


@pytest.mark.parametrize("name,cls,options", CASES, ids=IDS)
def test_matches_naive_equations(name, cls, options):
    layer = _build(name, options)
    torch.manual_seed(1)
    x = torch.randn(5, 3, 3, dtype=D)  # (L, N, H_in)
    out, final = layer(x)
    for n in range(3):
        ref_out, ref_h, ref_c = NAIVE[cls](layer.cell, x[:, n])
        torch.testing.assert_close(out[:, n], ref_out)
        torch.testing.assert_close(final[0][n], ref_h)
        if len(final) > 1:
            torch.testing.assert_close(final[1][n], ref_c)


@pytest.mark.parametrize("name,cls,options", CASES, ids=IDS)
def test_variable_lengths_equal_each_sequence_alone(name, cls, options):
    layer = _build(name, options, batch_first=True)
    lengths = [4, 1, 3]
    torch.manual_seed(2)
    x = torch.randn(3, 4, 3, dtype=D)  # (N, L, H_in)
    out, final = layer(x, lengths=lengths)
    for n, T in enumerate(lengths):
        assert bool((out[n, T:] == 0).all())
        alone, fin = layer(x[n : n + 1, :T])
        torch.testing.assert_close(out[n : n + 1, :T], alone)
        for got, want in zip(final, fin):
            torch.testing.assert_close(got[n : n + 1], want)


@pytest.mark.parametrize("name", ["gated_feedback", "depth_gated", "grid_lstm"])
def test_runs_in_bidirectional_and_stacked(name):
    fwd = _build(name, {}, seed=3).cell
    bwd = _build(name, {}, seed=4).cell
    bi = Bidirectional(fwd, bwd)
    torch.manual_seed(5)
    x = torch.randn(4, 2, 3, dtype=D)
    lengths = [4, 2]
    out, state = bi(x, lengths=lengths)
    for n, T in enumerate(lengths):
        rev, _ = Recurrent(bwd)(x[:T, n : n + 1].flip(0))
        torch.testing.assert_close(out[:T, n, 4:], rev.flip(0)[:, 0])
        assert bool((out[T:, n] == 0).all())
    assert state.forward.h.shape == (2, 3, 4)
    top = _build(name, {}, H_in=8, seed=6).cell
    deep = Stacked([bi, top])
    y, _ = deep(x, lengths=lengths)
    torch.testing.assert_close(y, Recurrent(top)(out, lengths=lengths)[0])


def test_state_shapes_are_checked():
    layer = _build("gated_feedback", {"unit": "lstm"})
    x = torch.randn(4, 2, 3, dtype=D)
    bad = GatedFeedbackLSTMState(torch.zeros(2, 2, 4, dtype=D), torch.zeros(2, 3, 4, dtype=D))
    with pytest.raises(ValueError, match=r"state field 'h' of shape \(2, 3, 4\).*got \(2, 2, 4\)"):
        layer(x, bad)
    with pytest.raises(ValueError, match="expected unit 'tanh', 'gru' or 'lstm'"):
        GatedFeedbackCell(3, 4, 2, unit="relu")
    with pytest.raises(ValueError, match="num_layers >= 1"):
        DepthGatedLSTMCell(3, 4, 0)
    h0 = torch.randn(2, 3, 4, dtype=D)  # a given initial state is used
    g = _build("gated_feedback", {"unit": "tanh"})
    out, _ = g(x, GatedFeedbackState(h0))
    ref, _, _ = naive_gated_feedback(g.cell, x[:, 0], h0[0])
    torch.testing.assert_close(out[:, 0], ref)


def test_single_layer_depth_gated_without_peepholes_is_torch_lstm():
    torch.manual_seed(7)
    ref = nn.LSTM(3, 4, dtype=D)
    cell = DepthGatedLSTMCell(3, 4, 1, peepholes=False, dtype=D)
    with torch.no_grad():
        cell.weight_ih[0].copy_(ref.weight_ih_l0)
        cell.weight_hh[0].copy_(ref.weight_hh_l0)
        cell.bias[0].copy_(ref.bias_ih_l0 + ref.bias_hh_l0)
    x = torch.randn(5, 2, 3, dtype=D)
    want, (h, c) = ref(x)
    got, state = Recurrent(cell)(x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(state.h[:, 0], h[0])
    torch.testing.assert_close(state.c[:, 0], c[0])
    assert isinstance(state, DepthGatedState)


@pytest.mark.parametrize("name,cls,options", CASES, ids=IDS)
def test_gradcheck_float64(name, cls, options):
    layer = _build(name, options, H_in=2, H=2, K=2)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    torch.manual_seed(8)
    x = torch.randn(3, 2, 2, dtype=D, requires_grad=True)

    def f(x, *ps):
        out, final = functional_call(layer, dict(zip(names, ps)), (x,), {"lengths": [3, 2]})
        return (out, *final)

    assert torch.autograd.gradcheck(f, (x, *params))


def _paper_count(name, options, H_in, H, K):
    bias = options.get("bias", True)
    if name == "gated_feedback":
        G = {"tanh": 1, "gru": 3, "lstm": 4}[options.get("unit", "tanh")]
        total = 0
        for j in range(K):
            d = H_in if j == 0 else H
            total += G * H * d  # W^{j-1->j} (all blocks)
            total += (G - 1) * H * H  # U_r, U_z or U_i, U_f, U_o of the same layer
            total += K * H * H  # U^{i->j}, i = 1..K
            total += K * d + K * K * H  # w_g^{i->j} and u_g^{i->j}
            total += G * H if bias else 0
        return total
    if name == "depth_gated":
        peep = 3 * H if options.get("peepholes", True) else 0
        first = 4 * H * H_in + 4 * H * H + peep + (4 * H if bias else 0)
        above = 5 * H * H + 4 * H * H + peep + 2 * H + (5 * H if bias else 0)
        return first + (K - 1) * above
    blocks = 1 if options.get("tied", False) else K
    per_block = 2 * (4 * H * 2 * H + (4 * H if bias else 0))  # W^time and W^depth over [h; h]
    return H * H_in + blocks * per_block


@pytest.mark.parametrize("name,cls,options", CASES, ids=IDS)
def test_parameter_count_matches_paper(name, cls, options):
    H_in, H, K = 7, 5, 3
    layer = make_stack(name, input_size=H_in, hidden_size=H, num_layers=K, **options)
    assert sum(p.numel() for p in layer.parameters()) == _paper_count(name, options, H_in, H, K)


def test_stacked_dropout_between_designs_is_on_in_training_only():
    """``Stacked(..., dropout=)`` over two designs: eval mode is deterministic and equals
    the stack without dropout; training mode draws a new mask at each call."""

    def build(dropout):
        torch.manual_seed(0)
        return Stacked([make_stack("depth_gated", input_size=3, hidden_size=4, num_layers=2),
                        make_stack("grid_lstm", input_size=4, hidden_size=4, num_layers=2)],
                       dropout=dropout).double()

    stack, plain = build(0.5), build(0.0)
    plain.load_state_dict(stack.state_dict())
    x = torch.randn(6, 2, 3, dtype=D)
    lengths = [6, 4]
    stack.eval()
    a, _ = stack(x, lengths=lengths)
    b, _ = stack(x, lengths=lengths)
    ref, _ = plain.eval()(x, lengths=lengths)
    torch.testing.assert_close(a, ref, rtol=0, atol=0)
    torch.testing.assert_close(b, ref, rtol=0, atol=0)
    stack.train()
    torch.manual_seed(1)
    c, _ = stack(x, lengths=lengths)
    d, _ = stack(x, lengths=lengths)
    assert not torch.allclose(c, ref) and not torch.allclose(c, d)
    assert (c[4:, 1] == 0).all()  # padding stays zero with dropout on
