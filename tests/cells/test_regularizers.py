"""Variational dropout, zoneout and DropConnect wrappers against naive loops.

Evaluation mode must equal the unwrapped cell (zoneout: its expectation);
training mode must match a naive loop that applies the wrapper's own masks
(so the masks are the same at every step where the paper says so); gradients
pass ``gradcheck`` in float64 with a fixed mask.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.autograd import gradcheck

import memnets
from memnets.cells import DropConnect, VariationalDropout, Zoneout, regularize

H_IN, H = 3, 5
CELLS = {
    "elman": {},
    "lstm": {"proj_size": 2},
    "gru": {},
    "jordan": {"output_size": 4},
    "scrn": {"context_size": 2},
    "indrnn": {},
}


def make(name: str, dtype=torch.float64):
    torch.manual_seed(0)
    cell = memnets.make_cell(name, input_size=H_IN, hidden_size=H, **CELLS[name])
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return cell.to(dtype)


def data(N=3, L=6):
    torch.manual_seed(1)
    return torch.randn(L, N, H_IN, dtype=torch.float64), [6, 2, 4][:N]


def naive_run(cell, x, lengths, *, input_mask=None, state_masks=None, zoneout=None):
    """Per-sequence loop over ``x`` with the given masks; zoneout (eval) as expectation."""
    outs, finals = [], []
    for n, length in enumerate(lengths):
        state = cell.init_state(1, dtype=x.dtype)
        ys = []
        for t in range(length):
            x_t = x[t, n : n + 1]
            if input_mask is not None:
                x_t = x_t * input_mask[n : n + 1]
            fed = state
            if state_masks:
                fed = state._replace(
                    **{f: getattr(state, f) * m[n : n + 1] for f, m in state_masks.items()}
                )
            y, new = cell(x_t, fed)
            if zoneout:
                mixed = {f: z * getattr(state, f) + (1 - z) * getattr(new, f)
                         for f, z in zoneout.items()}
                if any(y is getattr(new, f) for f in mixed):
                    y = mixed[next(f for f in mixed if y is getattr(new, f))]
                new = new._replace(**mixed)
            state = new
            ys.append(y)
        out = torch.cat(ys)
        out = torch.cat([out, out.new_zeros(x.shape[0] - length, out.shape[1])])
        outs.append(out)
        finals.append(state)
    return torch.stack(outs, 1), finals


def assert_matches(out, final, ref_out, ref_finals):
    torch.testing.assert_close(out, ref_out)
    for n, ref in enumerate(ref_finals):
        for got, want in zip(final, ref):
            torch.testing.assert_close(got[n : n + 1], want)


WRAPPERS = {
    "variational": lambda c: VariationalDropout(c, input_dropout=0.3, state_dropout=0.4),
    "dropconnect": lambda c: DropConnect(c, 0.5, weights=_recurrent_weights(c)),
}


def _recurrent_weights(cell):
    return {"jordan": ("weight_yh",), "scrn": ("weight_hh", "weight_sh")}.get(
        type(cell).__name__.removesuffix("Cell").lower(), ("weight_hh",)
    )


# --- evaluation mode ------------------------------------------------------------------


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
@pytest.mark.parametrize("name", sorted(CELLS))
def test_eval_mode_equals_the_plain_cell(name, wrapper):
    cell = make(name)
    wrapped = WRAPPERS[wrapper](copy.deepcopy(cell)).eval()
    x, lengths = data()
    out, final = memnets.Recurrent(wrapped)(x, lengths=lengths)
    ref_out, ref_final = memnets.Recurrent(cell)(x, lengths=lengths)
    torch.testing.assert_close(out, ref_out)
    for got, want in zip(final, ref_final):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_zoneout_eval_is_the_expectation(name):
    cell = make(name)
    fields = type(cell.init_state(1, device="meta"))._fields
    rates = {f: 0.1 + 0.3 * k for k, f in enumerate(fields)}
    wrapped = Zoneout(copy.deepcopy(cell), rates).eval()
    x, lengths = data()
    out, final = memnets.Recurrent(wrapped)(x, lengths=lengths)
    ref_out, ref_finals = naive_run(cell, x, lengths, zoneout=rates)
    assert_matches(out, final, ref_out, ref_finals)


# --- training mode: the masks, against a naive loop --------------------------------


@pytest.mark.parametrize("name", sorted(CELLS))
def test_variational_dropout_uses_one_mask_per_sequence(name):
    cell = make(name)
    wrapped = VariationalDropout(copy.deepcopy(cell), 0.3, 0.4).train()
    x, lengths = data()
    out, final = memnets.Recurrent(wrapped)(x, lengths=lengths)
    masks = wrapped.masks
    field = wrapped.state_fields[0]
    assert set(masks) == {"input", f"state.{field}"}
    # the same masks at every step reproduce the whole run
    ref_out, ref_finals = naive_run(
        cell, x, lengths, input_mask=masks["input"], state_masks={field: masks[f"state.{field}"]}
    )
    assert_matches(out, final, ref_out, ref_finals)
    # a new forward pass draws new masks
    memnets.Recurrent(wrapped)(x, lengths=lengths)
    assert not torch.equal(wrapped.masks["input"], masks["input"])


def test_variational_dropout_mask_is_constant_over_time():
    # Elman with identity input weights and no recurrence: y_t = relu(m * x_t)
    cell = memnets.ElmanCell(50, 50, nonlinearity="relu")
    with torch.no_grad():
        cell.weight_ih.copy_(torch.eye(50))
        cell.weight_hh.zero_()
    wrapped = VariationalDropout(cell, input_dropout=0.5).train()
    out, _ = memnets.Recurrent(wrapped)(torch.ones(7, 4, 50))
    dropped = out == 0  # (L, N, H)
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))
    assert 0.2 < dropped.float().mean() < 0.8
    kept = out[~dropped]
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0))  # 1 / (1 - p)
    # examples get their own masks
    assert not torch.equal(dropped[0, 0], dropped[0, 1])


@pytest.mark.parametrize("name", sorted(CELLS))
def test_dropconnect_uses_one_weight_mask_per_forward(name):
    cell = make(name)
    wrapped = DropConnect(copy.deepcopy(cell), 0.5, weights=_recurrent_weights(cell)).train()
    x, lengths = data()
    out, final = memnets.Recurrent(wrapped)(x, lengths=lengths)
    masked = copy.deepcopy(cell)
    with torch.no_grad():
        for n, m in wrapped.masks.items():
            w = getattr(masked, n)
            assert m.shape == w.shape  # shared by every example and step
            assert set(m.unique().tolist()) <= {0.0, 2.0}
            w.mul_(m)
    ref_out, ref_finals = naive_run(masked, x, lengths)
    assert_matches(out, final, ref_out, ref_finals)
    # the wrapped cell's own weights are untouched
    for (n, p), q in zip(cell.named_parameters(), wrapped.cell.parameters()):
        torch.testing.assert_close(p, q, msg=n)


def test_dropconnect_trains_the_underlying_weights():
    cell = make("lstm", torch.float32)
    wrapped = DropConnect(cell, 0.5).train()
    out, _ = memnets.Recurrent(wrapped)(torch.randn(4, 2, H_IN))
    out.sum().backward()
    g = cell.weight_hh.grad
    assert g is not None
    # dropped weights get no gradient
    assert torch.all(g[wrapped.masks["weight_hh"] == 0] == 0)


def test_wrappers_copy_and_pickle_after_a_training_step():
    cell = regularize(make("lstm"), weight_dropout=0.5, state_dropout=0.3, zoneout=0.2).train()
    x, lengths = data()
    out, _ = memnets.Recurrent(cell)(x, lengths=lengths)
    out.sum().backward()
    twin = copy.deepcopy(cell)  # e.g. keeping the best model during training
    assert sorted(twin.state_dict()) == sorted(cell.state_dict())
    assert all(k.startswith("cell.cell.cell.") for k in cell.state_dict())
    torch.manual_seed(5)
    a, _ = memnets.Recurrent(cell)(x, lengths=lengths)
    torch.manual_seed(5)
    b, _ = memnets.Recurrent(twin)(x, lengths=lengths)
    torch.testing.assert_close(a, b)
    # the copy's DropConnect drives the copy's weights, not the original's
    dc = twin.cell.cell
    assert dc._call.cell is dc.cell and dc.cell is not cell.cell.cell.cell


@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_single_steps_reuse_the_current_masks(name):
    for wrapper in (
        VariationalDropout(make(name), 0.3, 0.4),
        DropConnect(make(name), 0.5),
    ):
        wrapper.train()
        x, _ = data()
        out, _ = memnets.Recurrent(wrapper)(x)
        masks = wrapper.masks
        state, ys = None, []
        for x_t in x:  # masks kept: same batch size, no sample_masks()
            y, state = wrapper(x_t, state)
            ys.append(y)
        assert wrapper.masks is masks
        torch.testing.assert_close(torch.stack(ys), out)
        new = wrapper.sample_masks(x.shape[1])
        assert new is wrapper.masks and new is not masks


def test_zoneout_training_keeps_old_or_new_per_unit_and_step():
    cell = make("gru")
    wrapped = Zoneout(copy.deepcopy(cell), 0.5).train()
    torch.manual_seed(3)
    x = torch.randn(20, 8, H_IN, dtype=torch.float64)
    out, _ = memnets.Recurrent(wrapped)(x)
    h_prev = torch.zeros(8, H, dtype=torch.float64)
    kept = []
    for t in range(20):
        candidate, _ = cell(x[t], memnets.GRUState(h_prev))
        is_old = torch.isclose(out[t], h_prev)
        is_new = torch.isclose(out[t], candidate)
        assert torch.all(is_old | is_new)
        kept.append(is_old & ~is_new)
        h_prev = out[t]
    kept = torch.stack(kept)  # (L, N, H)
    assert 0.3 < kept.float().mean() < 0.7
    # a fresh mask at every step (unlike variational dropout)
    assert not all(torch.equal(kept[t], kept[0]) for t in range(1, 20))


def test_zoneout_lstm_separate_rates_and_output():
    cell = make("lstm")
    wrapped = Zoneout(copy.deepcopy(cell), {"c": 1.0 - 1e-9, "h": 0.0}).train()
    x, _ = data()
    out, final = memnets.Recurrent(wrapped)(x)
    # c is (almost surely) never updated; h still is
    assert torch.all(final.c == 0)
    assert wrapped.rates == {"c": 1.0 - 1e-9}
    assert not torch.all(out == 0)


# --- gradients with a fixed mask ----------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        lambda c: VariationalDropout(c, 0.3, 0.4),
        lambda c: Zoneout(c, {"h": 0.3, "c": 0.5}),
        lambda c: DropConnect(c, 0.5),
        lambda c: regularize(c, input_dropout=0.2, state_dropout=0.2, zoneout=0.2,
                             weight_dropout=0.3),
    ],
    ids=["variational", "zoneout", "dropconnect", "all"],
)
def test_gradcheck_with_fixed_mask(wrap):
    cell = make("lstm")
    wrapped = wrap(cell).train()
    layer = memnets.Recurrent(wrapped)
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(3, 2, H_IN, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        torch.manual_seed(0)  # the same masks at every evaluation
        out, final = torch.func.functional_call(
            layer, dict(zip(names, ps)), (x,), {"lengths": [3, 2]}
        )
        return (out,) + tuple(final)

    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())
    assert gradcheck(f, (x,) + params, eps=1e-6, atol=1e-5)


# --- construction --------------------------------------------------------------------


def test_make_cell_options_wrap_any_cell():
    cell = memnets.make_cell("gru", input_size=3, hidden_size=4, zoneout=0.1, weight_dropout=0.2)
    assert isinstance(cell, Zoneout) and isinstance(cell.cell, DropConnect)
    assert isinstance(cell.cell.cell, memnets.GRUCell)
    assert (cell.input_size, cell.hidden_size, cell.output_size) == (3, 4, 4)
    plain = memnets.make_cell("gru", input_size=3, hidden_size=4, zoneout=0.0)
    assert isinstance(plain, memnets.GRUCell)
    cell = memnets.make_cell("scrn", input_size=3, hidden_size=4, state_dropout=0.5,
                             context_size=2)
    assert isinstance(cell, VariationalDropout) and cell.output_size == 6


def test_bad_options_raise_clear_errors():
    cell = memnets.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"input_dropout in \[0, 1\), got 1.5"):
        VariationalDropout(cell, input_dropout=1.5)
    with pytest.raises(ValueError, match="state fields"):
        VariationalDropout(cell, state_dropout=0.1, state_fields=["z"])
    with pytest.raises(ValueError, match="zoneout fields"):
        Zoneout(cell, {"q": 0.1})
    with pytest.raises(ValueError, match="weight_hx"):
        DropConnect(cell, 0.5, weights=["weight_hx"])
    with pytest.raises(ValueError, match="RecurrentCell"):
        Zoneout(torch.nn.Linear(3, 4), 0.1)


def test_wrappers_run_bidirectional_and_stacked_smoke():
    fwd = regularize(memnets.LSTMCell(3, 4), input_dropout=0.2, zoneout=0.1)
    bwd = regularize(memnets.LSTMCell(3, 4), weight_dropout=0.3, state_dropout=0.2)
    net = memnets.Stacked([memnets.Bidirectional(fwd, bwd)])
    out, _ = net(torch.randn(5, 2, 3), lengths=[5, 3])
    assert out.shape == (5, 2, 8) and torch.all(out[3:, 1] == 0)


def test_zoneout_rate_skips_masks_and_growing_tapes():
    torch.manual_seed(0)
    cell = memnets.make_cell("lstmn", input_size=3, hidden_size=4, zoneout=0.3)
    x = torch.randn(5, 2, 3)
    out, _ = memnets.Recurrent(cell)(x)  # the tape fields grow and the mask is bool: skipped
    assert out.shape == (5, 2, 4) and torch.isfinite(out).all()
    named = memnets.make_cell("lstmn", input_size=3, hidden_size=4, zoneout={"mask": 0.3})
    with pytest.raises(ValueError, match="field 'mask' of LSTMNCell cannot be zoned out"):
        memnets.Recurrent(named)(x)
