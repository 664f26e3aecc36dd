"""Parity of the drop-in memnets.RNN/LSTM/GRU with torch.nn after copying weights.

Every combination of bias x batch_first x bidirectional x num_layers x proj_size
(LSTM) x input kind (equal lengths, padded with lengths, packed), for the
generic path (cells + Recurrent + Stacked + Bidirectional) and for the fused
dispatch: outputs, final states, input gradients and every parameter gradient.
"""

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import memnets

H_IN, H, PROJ = 3, 4, 2
LENGTHS = [5, 2, 4]  # unsorted on purpose
L, N = max(LENGTHS), len(LENGTHS)

MODES = {
    "rnn_tanh": (torch.nn.RNN, memnets.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, memnets.RNN, {"nonlinearity": "relu"}),
    "gru": (torch.nn.GRU, memnets.GRU, {}),
    "lstm": (torch.nn.LSTM, memnets.LSTM, {}),
}


def _cases():
    for mode in MODES:
        projs = (0, PROJ) if mode == "lstm" else (0,)
        for bias, bf, bi, layers, proj, kind in itertools.product(
            (True, False), (False, True), (False, True), (1, 2, 3), projs,
            ("equal", "lengths", "packed"),
        ):
            yield mode, bias, bf, bi, layers, proj, kind


def _pair(mode, bias, bf, bi, layers, proj, dtype, fused):
    torch_cls, ours_cls, extra = MODES[mode]
    kw = dict(num_layers=layers, bias=bias, batch_first=bf, bidirectional=bi, **extra)
    if proj:
        kw["proj_size"] = proj
    ref = torch_cls(H_IN, H, **kw).to(dtype)
    ours = ours_cls(H_IN, H, fused=fused, **kw).to(dtype)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _hx(mode, layers, bi, proj, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    D = 2 if bi else 1
    h = torch.randn(D * layers, N, proj or H, generator=g, dtype=dtype)
    if mode == "lstm":
        return (h, torch.randn(D * layers, N, H, generator=g, dtype=dtype))
    return h


def _run(model, x, kind, bf, hx):
    """Forward then backward of a fixed random functional; returns the pieces to compare."""
    x = x.clone().requires_grad_(True)
    if kind == "packed":
        inp = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=bf, enforce_sorted=False)
        out, state = model(inp, hx)
        out, _ = pad_packed_sequence(out, batch_first=bf)
    elif kind == "lengths" and isinstance(model, torch.nn.RNNBase):
        # torch.nn has no lengths= argument: its reference is the packed batch
        inp = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=bf, enforce_sorted=False)
        out, state = model(inp, hx)
        out, _ = pad_packed_sequence(out, batch_first=bf, total_length=L)
    elif kind == "lengths":
        out, state = model(x, hx, lengths=LENGTHS)
    else:
        out, state = model(x, hx)
    states = list(state) if isinstance(state, tuple) else [state]
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for s in states:
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    model.zero_grad()
    loss.backward()
    # torch.nn's parameter names; memnets answers them by attribute too
    grads = {n: getattr(model, n).grad.clone() for n in model.state_dict()}
    return out.detach(), [s.detach() for s in states], x.grad.clone(), grads


def _inputs(bf, dtype, with_hx, mode, layers, bi, proj):
    g = torch.Generator().manual_seed(0)
    shape = (N, L, H_IN) if bf else (L, N, H_IN)
    x = torch.randn(shape, generator=g, dtype=dtype)
    hx = _hx(mode, layers, bi, proj, dtype, 2) if with_hx else None
    return x, hx


@pytest.mark.parametrize("fused", [False, True], ids=["generic", "fused"])
@pytest.mark.parametrize("mode,bias,bf,bi,layers,proj,kind", list(_cases()))
def test_parity_float64(mode, bias, bf, bi, layers, proj, kind, fused):
    torch.manual_seed(0)
    ref, ours = _pair(mode, bias, bf, bi, layers, proj, torch.float64, fused)
    x, hx = _inputs(bf, torch.float64, kind != "equal", mode, layers, bi, proj)
    r = _run(ref, x, kind, bf, hx)
    o = _run(ours, x, kind, bf, hx)
    _assert_same(r, o, atol=1e-10)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", ["equal", "packed"])
def test_parity_float32_generic(mode, kind):
    torch.manual_seed(0)
    proj = PROJ if mode == "lstm" else 0
    ref, ours = _pair(mode, True, False, True, 2, proj, torch.float32, fused=False)
    x, hx = _inputs(False, torch.float32, True, mode, 2, True, proj)
    _assert_same(_run(ref, x, kind, False, hx), _run(ours, x, kind, False, hx), atol=1e-5)


def _assert_same(r, o, atol):
    (out_r, st_r, gx_r, gp_r), (out_o, st_o, gx_o, gp_o) = r, o
    torch.testing.assert_close(out_o, out_r, atol=atol, rtol=0)
    assert len(st_o) == len(st_r)
    for a, b in zip(st_o, st_r):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    torch.testing.assert_close(gx_o, gx_r, atol=atol, rtol=0)
    assert gp_o.keys() == gp_r.keys()
    for name in gp_r:
        torch.testing.assert_close(gp_o[name], gp_r[name], atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("bi", [False, True])
def test_unbatched_input_matches_torch(mode, bi):
    ref, ours = _pair(mode, True, False, bi, 2, 0, torch.float64, fused=False)
    x = torch.randn(L, H_IN, dtype=torch.float64)
    D = 2 if bi else 1
    h = torch.randn(D * 2, H, dtype=torch.float64)
    hx = (h, torch.randn(D * 2, H, dtype=torch.float64)) if mode == "lstm" else h
    out_r, st_r = ref(x, hx)
    out_o, st_o = ours(x, hx)
    torch.testing.assert_close(out_o, out_r, atol=1e-10, rtol=0)
    for a, b in zip(st_o if mode == "lstm" else [st_o], st_r if mode == "lstm" else [st_r]):
        assert a.shape == b.shape == (D * 2, H)
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", list(MODES))
def test_state_dict_round_trips_both_ways(mode):
    torch_cls, ours_cls, extra = MODES[mode]
    kw = dict(num_layers=2, bidirectional=True, **extra)
    if mode == "lstm":
        kw["proj_size"] = PROJ
    ref = torch_cls(H_IN, H, **kw)
    ours = ours_cls(H_IN, H, **kw)
    assert list(ours.state_dict().keys()) == list(ref.state_dict().keys())
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert a.shape == b.shape, k
    # torch.nn -> memnets
    ours.load_state_dict(ref.state_dict(), strict=True)
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v)
    # memnets -> torch.nn
    fresh = ours_cls(H_IN, H, **kw)
    ref.load_state_dict(fresh.state_dict(), strict=True)
    x = torch.randn(L, N, H_IN)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[0], ref(x)[0])
    # attribute access by torch.nn's names
    assert fresh.weight_hh_l1_reverse is fresh.get_parameter(
        fresh._flat_names["weight_hh_l1_reverse"]
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_default_initialisation_is_torchs(mode):
    torch_cls, ours_cls, extra = MODES[mode]
    ours = ours_cls(H_IN, 25, num_layers=2, **extra)
    bound = 1 / 25**0.5
    for name, p in ours.state_dict().items():
        assert float(p.abs().max()) <= bound, name
        assert float(p.abs().max()) > 0.5 * bound, name  # uniform, not zeros or tiny


@pytest.mark.parametrize(("mode", "proj"), [(m, 0) for m in MODES] + [("lstm", PROJ)])
def test_initialised_once_with_torch_nn_weights_under_the_same_seed(mode, proj):
    """The cells are built without values and each parameter is drawn once, in
    torch.nn's order: the same seed gives torch.nn's very weights, and the random
    stream afterwards is where torch.nn leaves it."""
    torch_cls, ours_cls, extra = MODES[mode]
    kw = dict(num_layers=2, bidirectional=True, **extra, **({"proj_size": proj} if proj else {}))
    torch.manual_seed(7)
    ours = ours_cls(H_IN, H, **kw)
    after_ours = torch.rand(3)
    torch.manual_seed(7)
    ref = torch_cls(H_IN, H, **kw)
    after_ref = torch.rand(3)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for name, p in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[name], p), name
    assert torch.equal(after_ours, after_ref)


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    ours = memnets.LSTM(H_IN, H, num_layers=2, dropout=0.5, fused=False)
    ref = torch.nn.LSTM(H_IN, H, num_layers=2, dropout=0.5)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(L, N, H_IN)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x)[0], ref(x)[0])
    ours.train()
    a, b = ours(x)[0], ours(x)[0]
    assert not torch.allclose(a, b)  # dropout active between the layers


def test_swapping_the_cell_keeps_the_layout():
    model = memnets.LSTM(H_IN, H, num_layers=2, bidirectional=True,
                         cell=lambda i, h: memnets.GRUCell(i, h))
    assert not model._can_fuse()
    x = torch.randn(L, N, H_IN)
    out, h_n = model(x)
    assert out.shape == (L, N, 2 * H) and h_n.shape == (4, N, H)
    # the swapped cells compute what GRU cells compute
    gru = memnets.GRU(H_IN, H, num_layers=2, bidirectional=True, fused=False)
    gru.load_state_dict(model.state_dict())
    torch.testing.assert_close(gru(x)[0], out)


def test_wrong_input_and_state_shapes_raise_value_errors():
    lstm = memnets.LSTM(16, H, num_layers=2)
    with pytest.raises(ValueError, match=r"expected input with 16 features \(input_size\), got 12"):
        lstm(torch.randn(4, 3, 12))
    with pytest.raises(ValueError, match=r"got 4-d input"):
        lstm(torch.randn(4, 3, 2, 16))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(2, 3, 4\)"):
        lstm(torch.randn(4, 3, 16), (torch.zeros(1, 3, H), torch.zeros(2, 3, H)))
    with pytest.raises(ValueError, match=r"expected c_0 of shape \(2, 3, 4\)"):
        lstm(torch.randn(4, 3, 16), (torch.zeros(2, 3, H), torch.zeros(2, 3, 5)))
    with pytest.raises(ValueError, match=r"expected hx = \(h_0, c_0\)"):
        lstm(torch.randn(4, 3, 16), torch.zeros(2, 3, H))


def test_cell_options_keep_their_own_initialisation_in_the_drop_in():
    lstm = memnets.LSTM(H_IN, 25, layer_norm=True, peephole=True, forget_bias=2.0)
    cell = lstm.cells()[0]
    assert not lstm._can_fuse()
    assert torch.equal(cell.ln_ih.weight, torch.ones_like(cell.ln_ih.weight))
    assert torch.count_nonzero(cell.weight_ci) == 0
    assert torch.all(cell.bias_ih[25:50] == 2.0) and torch.all(cell.bias_hh[25:50] == 0.0)
    assert float(cell.weight_hh.detach().abs().max()) <= 1 / 25**0.5  # torch.nn's uniform init
