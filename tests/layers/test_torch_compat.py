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


def _named_cases():
    """The parity configurations above, without the input kinds."""
    seen = []
    for mode, bias, bf, bi, layers, proj, _ in _cases():
        if (mode, bias, bf, bi, layers, proj) not in seen:
            seen.append((mode, bias, bf, bi, layers, proj))
    return seen


@pytest.mark.parametrize("mode,bias,bf,bi,layers,proj", _named_cases())
def test_named_parameters_are_torch_nn_names_in_torch_nn_order(mode, bias, bf, bi, layers, proj):
    ref, ours = _pair(mode, bias, bf, bi, layers, proj, torch.float32, fused=True)
    names = [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == names
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert ours._all_weights == ref._all_weights
    assert [[p.shape for p in w] for w in ours.all_weights] == [
        [p.shape for p in w] for w in ref.all_weights]
    # each parameter is the one its cell computes with, once in parameters()
    cells = {id(p) for c in ours.cells() for p in c.parameters()}
    assert [id(p) for p in ours.parameters()] == [id(getattr(ours, n)) for n in names]
    assert cells == {id(p) for p in ours.parameters()}
    # and inside a model, under the model's prefix
    model = torch.nn.Sequential(torch.nn.Identity(), ours)
    assert [n for n, _ in model.named_parameters()] == [f"1.{n}" for n in names]
    assert list(model.state_dict()) == [f"1.{n}" for n in ref.state_dict()]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("fused", [False, True], ids=["generic", "fused"])
def test_code_that_names_parameters_trains_as_with_torch_nn(mode, fused):
    """Initialisation by name and weight-decay groups by name, then optimizer steps:
    the same parameters as torch.nn's after each step."""
    torch_cls, ours_cls, extra = MODES[mode]
    kw = dict(num_layers=2, bidirectional=True, **extra)
    ref, ours = torch_cls(H_IN, H, **kw).double(), ours_cls(H_IN, H, fused=fused, **kw).double()
    for model in (ref, ours):
        torch.manual_seed(3)
        for name, p in model.named_parameters():
            if name.startswith("weight_hh"):
                torch.nn.init.orthogonal_(p)
            elif name.startswith("weight_ih"):
                torch.nn.init.xavier_uniform_(p)
            else:
                torch.nn.init.constant_(p, 0.1)
    optimizers = []
    for model in (ref, ours):
        decay = [p for n, p in model.named_parameters() if n.startswith("weight")]
        no_decay = [p for n, p in model.named_parameters() if not n.startswith("weight")]
        assert len(decay) == len(no_decay) == 4 * 2  # (ih, hh) x 2 directions x 2 layers
        optimizers.append(torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
            lr=0.01))
    x = torch.randn(L, N, H_IN, dtype=torch.float64)
    for _ in range(3):
        for model, opt in zip((ref, ours), optimizers):
            opt.zero_grad()
            model(x)[0].pow(2).sum().backward()
            opt.step()
    for (name, a), b in zip(ref.named_parameters(), ours.parameters()):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=0, msg=name)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-10, rtol=0)


def test_conversions_and_loading_keep_one_parameter_per_torch_name():
    """``.to()``, ``to_empty``, ``load_state_dict(assign=True)`` and deepcopy replace
    or copy parameters; the cells go on computing with the named ones."""
    import copy

    ref = torch.nn.LSTM(H_IN, H, num_layers=2, bidirectional=True)
    ours = memnets.LSTM(H_IN, H, num_layers=2, bidirectional=True, fused=False)
    converted = [ours.double(), copy.deepcopy(ours)]
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)  # new objects on .to()
    try:
        converted.append(copy.deepcopy(ours).float())
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
    fresh = memnets.LSTM(H_IN, H, num_layers=2, bidirectional=True, fused=False)
    fresh.load_state_dict(ref.state_dict(), assign=True)
    converted.append(fresh)
    empty = memnets.LSTM(H_IN, H, num_layers=2, bidirectional=True, fused=False)
    empty.to_empty(device="cpu")
    converted.append(empty)
    for model in converted:
        cells = {id(p) for c in model.cells() for p in c.parameters()}
        assert cells == {id(p) for p in model.parameters()}
        assert len(list(model.parameters())) == len(list(ref.parameters()))
    x = torch.randn(L, N, H_IN)
    torch.testing.assert_close(fresh(x)[0], ref(x)[0])


def test_a_registered_cell_name_as_the_cell():
    torch.manual_seed(0)
    by_name = memnets.LSTM(H_IN, H, num_layers=2, bidirectional=True, cell="scrn",
                           context_size=2)
    by_factory = memnets.LSTM(H_IN, H, num_layers=2, bidirectional=True,
                              cell=lambda i, h: memnets.make_cell("scrn", input_size=i,
                                                                  hidden_size=h, context_size=2))
    assert list(by_name.state_dict()) == list(by_factory.state_dict())
    assert [n for n, _ in by_name.named_parameters()] == list(by_name.state_dict())
    assert isinstance(by_name.cells()[0], memnets.SCRNCell) and not by_name._can_fuse()
    by_factory.load_state_dict(by_name.state_dict())
    x = torch.randn(L, N, H_IN)
    torch.testing.assert_close(by_name(x)[0], by_factory(x)[0])
    # bias=False reaches the cell; the layer's own cell's name is the default cell
    assert memnets.GRU(H_IN, H, bias=False, cell="elman").cells()[0].bias_ih is None
    own = memnets.RNN(H_IN, H, nonlinearity="relu", cell="elman")
    assert own._can_fuse() and own.cells()[0].nonlinearity == "relu"
    assert memnets.LSTM(H_IN, H, cell="lstm")._can_fuse()
    wrapped = memnets.LSTM(H_IN, H, cell="lstm", weight_dropout=0.5)  # through make_cell
    assert isinstance(wrapped.cells()[0], memnets.cells.DropConnect) and not wrapped._can_fuse()
    with pytest.raises(ValueError, match=r"one-layer registered cell .*got 'nope'"):
        memnets.LSTM(H_IN, H, cell="nope")
    with pytest.raises(ValueError, match="multi-layer cell: run it with memnets.layers.make_stack"):
        memnets.LSTM(H_IN, H, cell="gated_feedback")
    with pytest.raises(ValueError, match="expected cell to be a registered cell name or a factory"):
        memnets.LSTM(H_IN, H, cell=3)
