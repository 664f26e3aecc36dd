"""build_encoder: the fused drop-in exactly when the rule allows it, and the generic
layers computing the same function after copying the weights (variable lengths
included)."""

from __future__ import annotations

import pytest
import torch

from memnets.cells.regularizers import Zoneout
from memnets.layers import GRU, LSTM, RNN, Stacked, build_encoder

FUSED_CASES = [
    ("lstm", {}, {}, LSTM),
    ("lstm", {"forget_bias": 0.0}, {}, LSTM),
    ("lstm", {"proj_size": 3}, {}, LSTM),
    ("lstm", {"bias": False}, {}, LSTM),
    ("gru", {}, {}, GRU),
    ("gru", {"reset_after": True}, {}, GRU),
    ("elman", {}, {}, RNN),
    ("elman", {"nonlinearity": "relu"}, {}, RNN),
]
GENERIC_CASES = [
    ("lstm", {"peephole": True}, {}),
    ("lstm", {"coupled": True}, {}),
    ("lstm", {"layer_norm": True}, {}),
    ("lstm", {"gate_activation": "hard_sigmoid"}, {}),
    ("gru", {"reset_after": False}, {}),
    ("lstm", {"zoneout": 0.0}, {}),  # a regulariser option at rate 0 still keeps the layout
    ("gru", {"state_dropout": 0.3}, {}),
    ("elman", {"weight_dropout": 0.2}, {}),
    ("lstm", {}, {"torch_compatible": False}),
    ("elman", {}, {"torch_compatible": False}),
    ("lstm", {}, {"top_options": {"forget_bias": 2.0}}),
    ("irnn", {}, {}),
    ("jordan", {}, {}),
    ("scrn", {}, {}),
]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(("cell", "options", "kwargs", "drop_in"), FUSED_CASES)
def test_fused_drop_in_when_every_cell_and_option_allows_it(cell, options, kwargs, drop_in,
                                                            bidirectional):
    enc = build_encoder(cell, 4, 6, num_layers=2, bidirectional=bidirectional,
                        cell_options=options, **kwargs)
    assert type(enc) is drop_in
    assert enc._can_fuse()  # torch's kernel runs it
    assert all(drop_in.kernel_runs(c) for c in enc.cells())
    H_out = options.get("proj_size") or 6
    assert enc.output_size == (2 if bidirectional else 1) * H_out
    assert len(enc.cells()) == 2 * (2 if bidirectional else 1)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(("cell", "options", "kwargs"), GENERIC_CASES)
def test_generic_layers_otherwise(cell, options, kwargs, bidirectional):
    enc = build_encoder(cell, 4, 6, num_layers=2, bidirectional=bidirectional,
                        cell_options=options, **kwargs)
    assert type(enc) is Stacked
    assert enc.output_size == (2 if bidirectional else 1) * enc.cells()[-1].output_size
    assert len(enc.cells()) == 2 * (2 if bidirectional else 1)
    x = torch.randn(3, 5, 4)
    out, _ = enc.eval()(x, lengths=torch.tensor([5, 2, 4]))
    assert out.shape == (3, 5, enc.output_size)
    assert not out[1, 2:].any() and not out[2, 4:].any()


def test_generic_layers_are_stacked_for_one_layer_too_and_cells_get_their_options():
    enc = build_encoder("lstm", 4, 6, cell_options={"zoneout": 0.1})
    assert type(enc) is Stacked and len(enc.layers) == 1
    (cell,) = enc.cells()
    assert isinstance(cell, Zoneout)
    assert list(enc.state_dict())[0] == "layers.0.cell.cell.weight_ih"


def test_top_options_reach_the_top_layer_only():
    enc = build_encoder("jordan", 4, 6, num_layers=3, top_options={"output_size": 2})
    assert [c.output_size for c in enc.cells()] == [6, 6, 2]
    assert enc.output_size == 2


def test_dropout_between_layers_only():
    assert build_encoder("lstm", 4, 6, dropout=0.5).dropout == 0.0  # one layer: none
    assert build_encoder("lstm", 4, 6, num_layers=2, dropout=0.5).dropout == 0.5
    assert build_encoder("irnn", 4, 6, num_layers=2, dropout=0.5).dropout == 0.5


def test_unknown_options_are_refused_as_by_the_cell():
    with pytest.raises(TypeError, match="nonlinearity"):
        build_encoder("lstm", 4, 6, cell_options={"nonlinearity": "relu"})
    with pytest.raises(ValueError, match="unknown cell 'lstmx'"):
        build_encoder("lstmx", 4, 6)


def _torch_states(state, num_layers: int, bidirectional: bool, field: str) -> torch.Tensor:
    """The generic layers' final states (one per layer) as torch.nn's ``h_n``/``c_n``:
    ``(D * num_layers, N, H)``, layer by layer, forward before backward."""
    per_cell = []
    for k in range(num_layers):
        per_cell += [state[k].forward, state[k].backward] if bidirectional else [state[k]]
    return torch.stack([getattr(s, field) for s in per_cell])


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(("cell", "options"), [
    ("lstm", {}), ("lstm", {"proj_size": 3}), ("lstm", {"forget_bias": 0.5}),
    ("gru", {}), ("elman", {}), ("elman", {"nonlinearity": "relu"}),
])
def test_generic_path_equals_fused_after_copying_weights(cell, options, bidirectional):
    torch.manual_seed(0)
    fused = build_encoder(cell, 4, 5, num_layers=2, bidirectional=bidirectional,
                          cell_options=options).double().eval()
    generic = build_encoder(cell, 4, 5, num_layers=2, bidirectional=bidirectional,
                            cell_options=options, torch_compatible=False).double().eval()
    assert type(fused) is not Stacked and type(generic) is Stacked
    for f, g in zip(fused.cells(), generic.cells(), strict=True):
        g.load_state_dict(f.state_dict())
    x = torch.randn(4, 6, 4, dtype=torch.float64)
    lengths = torch.tensor([6, 1, 4, 3])
    out_f, state_f = fused(x, lengths=lengths)
    out_g, state_g = generic(x, lengths=lengths)
    torch.testing.assert_close(out_g, out_f)
    for i, n in enumerate(lengths.tolist()):  # zero past each sequence's end
        assert not out_f[i, n:].any() and not out_g[i, n:].any()
    h_n, c_n = state_f if cell == "lstm" else (state_f, None)
    torch.testing.assert_close(_torch_states(state_g, 2, bidirectional, "h"), h_n)
    if c_n is not None:
        torch.testing.assert_close(_torch_states(state_g, 2, bidirectional, "c"), c_n)
    # and both against each sequence run alone, without lengths
    for i, n in enumerate(lengths.tolist()):
        alone, _ = generic(x[i:i + 1, :n])
        torch.testing.assert_close(out_f[i:i + 1, :n], alone)
