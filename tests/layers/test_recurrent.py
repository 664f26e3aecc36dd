"""The variable-length contract of Recurrent, Bidirectional and Stacked, for every cell.

Every registered cell (and stack) is checked: padded batches against each
sequence run alone (outputs, final state and gradients, both directions),
``gradcheck`` in float64 through Recurrent, Bidirectional and Stacked, and the
input layouts (batch_first, unbatched, PackedSequence).
"""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import memnets
from memnets.layers.sequence import map_state, reverse_padded

H_IN, H = 3, 4
LENGTHS = [5, 2, 4, 1]
L, N = max(LENGTHS), len(LENGTHS)


def _cell(name, seed=0, input_size=H_IN):
    torch.manual_seed(seed)
    return memnets.make_cell(name, input_size=input_size, hidden_size=H).double()


def _stack(name, seed=0):
    torch.manual_seed(seed)
    return memnets.make_stack(name, input_size=H_IN, hidden_size=H, num_layers=2).double()


def _as_layer(module, reverse=False):
    """A cell runs in Recurrent; a stack comes as Recurrent over a cell holding every layer."""
    if isinstance(module, memnets.Recurrent):
        module = module.cell
    return memnets.Recurrent(module, reverse=reverse)


def _designs():
    return [("cell", n) for n in memnets.cell_names()] + [
        ("stack", n) for n in memnets.stack_names()
    ]


def _build(kind, name):
    return _cell(name) if kind == "cell" else _stack(name)


def _x(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(L, N, H_IN, generator=g, dtype=torch.float64)


def _flat(state):
    out = []
    map_state(out.append, state)
    return out


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("kind,name", _designs())
def test_padded_batch_equals_each_sequence_alone(kind, name, reverse):
    layer = _as_layer(_build(kind, name), reverse=reverse).eval()
    x = _x().requires_grad_(True)
    out, state = layer(x, lengths=LENGTHS)
    for n, length in enumerate(LENGTHS):
        assert torch.count_nonzero(out[length:, n]) == 0, "padded outputs must be exactly zero"
    g = torch.Generator().manual_seed(3)
    weights = torch.randn(out.shape, generator=g, dtype=out.dtype)
    (out * weights).sum().backward()
    grad_batch = x.grad.clone()
    params_batch = {k: p.grad.clone() for k, p in layer.named_parameters() if p.grad is not None}

    params_alone = {k: torch.zeros_like(v) for k, v in params_batch.items()}
    for n, length in enumerate(LENGTHS):
        layer.zero_grad()
        xn = x.detach()[:length, n : n + 1].clone().requires_grad_(True)
        out_n, state_n = layer(xn)
        torch.testing.assert_close(out[:length, n : n + 1], out_n, atol=1e-12, rtol=0)
        for got, want in zip(_flat(state), _flat(state_n)):
            if got.shape[1:] != want.shape[1:]:
                continue  # a tape that grows with L (LSTMN): compared in the cell's own tests
            torch.testing.assert_close(got[n : n + 1], want, atol=1e-12, rtol=0)
        (out_n * weights[:length, n : n + 1]).sum().backward()
        torch.testing.assert_close(grad_batch[:length, n : n + 1], xn.grad, atol=1e-12, rtol=0)
        for k, p in layer.named_parameters():
            if p.grad is not None and k in params_alone:
                params_alone[k] += p.grad
    for k in params_batch:
        torch.testing.assert_close(params_batch[k], params_alone[k], atol=1e-10, rtol=0, msg=k)


@pytest.mark.parametrize("kind,name", _designs())
def test_gradcheck_through_recurrent_with_lengths(kind, name):
    layer = _as_layer(_build(kind, name)).eval()
    x = torch.randn(3, 2, H_IN, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x, lengths=[3, 2])[0], (x,))


@pytest.mark.parametrize("name", memnets.cell_names())
def test_gradcheck_through_bidirectional_and_stacked(name):
    torch.manual_seed(0)
    first = memnets.Bidirectional(_cell(name, 0), _cell(name, 1), merge="concat")
    out_size = first.output_size
    second = memnets.Bidirectional(_cell(name, 2, out_size), _cell(name, 3, out_size),
                                   merge="sum")
    net = memnets.Stacked([first, second]).eval()
    x = torch.randn(3, 2, H_IN, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: net(x, lengths=[3, 1])[0], (x,))


@pytest.mark.parametrize("name", memnets.cell_names())
def test_reverse_reads_each_sequence_backwards_within_its_length(name):
    cell = _cell(name).eval()
    x = _x()
    out, _ = memnets.Recurrent(cell, reverse=True)(x, lengths=LENGTHS)
    for n, length in enumerate(LENGTHS):
        flipped = x[:length, n : n + 1].flip(0)
        out_n, _ = memnets.Recurrent(cell)(flipped)
        torch.testing.assert_close(out[:length, n : n + 1], out_n.flip(0), atol=1e-12, rtol=0)


def test_bidirectional_is_forward_and_reverse_layers():
    f, b = _cell("lstm", 0), _cell("lstm", 1)
    x = _x()
    out, state = memnets.Bidirectional(f, b)(x, lengths=LENGTHS)
    out_f, st_f = memnets.Recurrent(f)(x, lengths=LENGTHS)
    out_b, st_b = memnets.Recurrent(b, reverse=True)(x, lengths=LENGTHS)
    torch.testing.assert_close(out, torch.cat([out_f, out_b], -1))
    torch.testing.assert_close(state.forward.c, st_f.c)
    torch.testing.assert_close(state.backward.h, st_b.h)
    summed, _ = memnets.Bidirectional(f, b, merge="sum")(x, lengths=LENGTHS)
    torch.testing.assert_close(summed, out_f + out_b)


def test_stacked_feeds_each_layer_the_previous_outputs():
    c1, c2 = _cell("gru", 0), _cell("gru", 1, input_size=H)
    x = _x()
    out, (s1, s2) = memnets.Stacked([c1, c2])(x, lengths=LENGTHS)
    mid, t1 = memnets.Recurrent(c1)(x, lengths=LENGTHS)
    want, t2 = memnets.Recurrent(c2)(mid, lengths=LENGTHS)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(s2.h, t2.h)
    torch.testing.assert_close(s1.h, t1.h)


def test_layouts_agree_batch_first_unbatched_packed_and_initial_state():
    cell = _cell("lstm")
    x = _x()
    h0 = cell.init_state(N)
    h0 = type(h0)(*(torch.randn_like(t) for t in h0))
    ref, ref_state = memnets.Recurrent(cell)(x, h0, lengths=LENGTHS)
    out, state = memnets.Recurrent(cell, batch_first=True)(x.transpose(0, 1), h0, lengths=LENGTHS)
    torch.testing.assert_close(out, ref.transpose(0, 1))
    torch.testing.assert_close(state.c, ref_state.c)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    out_p, state_p = memnets.Recurrent(cell)(packed, h0)
    padded, lens = pad_packed_sequence(out_p)
    torch.testing.assert_close(padded, ref[: int(lens.max())])
    torch.testing.assert_close(state_p.h, ref_state.h)
    one, one_state = memnets.Recurrent(cell)(x[:, 0], type(h0)(*(t[0] for t in h0)))
    torch.testing.assert_close(one, ref[:, 0])
    assert one_state.h.shape == (H,)


def test_recurrent_is_the_cell_applied_step_by_step():
    cell = _cell("gru")
    x = _x()
    state = cell.init_state(N)
    outs = []
    for t in range(L):
        y, state = cell(x[t], state)
        outs.append(y)
    out, final = memnets.Recurrent(cell)(x)
    torch.testing.assert_close(out, torch.stack(outs))
    torch.testing.assert_close(final.h, state.h)


def test_reverse_padded_keeps_padding_at_the_end():
    x = torch.arange(12.0).view(4, 3, 1)
    lens = torch.tensor([4, 2, 1])
    r = reverse_padded(x, lens)
    assert r[:, 0, 0].tolist() == [9.0, 6.0, 3.0, 0.0]
    assert r[:, 1, 0].tolist() == [4.0, 1.0, 7.0, 10.0]
    assert r[:, 2, 0].tolist() == [2.0, 5.0, 8.0, 11.0]
    torch.testing.assert_close(reverse_padded(r, lens), x)


def test_clear_errors():
    layer = memnets.Recurrent(memnets.LSTMCell(16, H))
    x = torch.randn(5, 2, 16)
    with pytest.raises(ValueError, match=r"expected input with 16 features \(input_size\), got 12"):
        layer(torch.randn(5, 2, 12))
    with pytest.raises(ValueError, match=r"expected input of shape \(L, N, H_in\)"):
        layer(torch.randn(5))
    with pytest.raises(ValueError, match=r"expected every length in \[1, 5\].*max 6"):
        layer(x, lengths=[6, 2])
    with pytest.raises(ValueError, match=r"expected every length in \[1, 5\].*min 0"):
        layer(x, lengths=[5, 0])
    with pytest.raises(ValueError, match=r"expected lengths of shape \(2,\)"):
        layer(x, lengths=[5, 2, 1])
    with pytest.raises(ValueError, match=r"sorted in decreasing order.*\[2, 5\]"):
        layer(x, lengths=[2, 5], enforce_sorted=True)
    with pytest.raises(ValueError, match=r"expected state field 'c' of shape \(2, 4\).*\(2, 5\)"):
        layer(x, memnets.LSTMState(torch.zeros(2, H), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=r"expected a state of 2 tensors"):
        layer(x, (torch.zeros(2, H),))
    with pytest.raises(ValueError, match=r"expected layer 1 to take 4 input features"):
        memnets.Stacked([memnets.LSTMCell(16, H), memnets.LSTMCell(5, H)])
    with pytest.raises(ValueError, match=r"expected merge 'concat' or 'sum'"):
        memnets.Bidirectional(memnets.GRUCell(3, 4), memnets.GRUCell(3, 4), merge="avg")


@pytest.mark.parametrize("name", memnets.cell_names())
def test_a_plain_tuple_state_is_the_cells_state(name):
    """``(h, c)`` for an LSTM cell is taken as ``LSTMState(h, c)``, for every cell,
    also inside Stacked and Bidirectional; the result is the cell's own type."""
    torch.manual_seed(0)
    cell = _cell(name)
    layer = memnets.Recurrent(cell)
    x = torch.randn(L, N, H_IN, dtype=torch.float64)
    state = map_state(lambda s: torch.randn_like(s) if s.is_floating_point() else s,
                      cell.init_state(N, dtype=torch.float64))
    plain = tuple(state)
    assert type(plain) is tuple and type(state) is not tuple
    out_named, final_named = layer(x, state, lengths=LENGTHS)
    out_plain, final_plain = layer(x, plain, lengths=LENGTHS)
    torch.testing.assert_close(out_plain, out_named, atol=0, rtol=0)
    assert type(final_plain) is type(final_named)
    for a, b in zip(final_plain, final_named):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    both = memnets.Bidirectional(cell, _cell(name, seed=1))
    out_b, _ = both(x, (plain, tuple(state)))
    torch.testing.assert_close(out_b, both(x, (state, state))[0], atol=0, rtol=0)


def test_a_plain_tuple_state_is_still_checked():
    layer = memnets.Recurrent(memnets.LSTMCell(16, H))
    x = torch.randn(5, 2, 16)
    with pytest.raises(ValueError, match=r"expected state field 'c' of shape \(2, 4\).*\(2, 5\)"):
        layer(x, (torch.zeros(2, H), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=r"expected a state of 2 tensors \('h', 'c'\)"):
        layer(x, (torch.zeros(2, H),) * 3)
    out, state = layer(x, (torch.zeros(2, H), torch.zeros(2, H)))
    assert isinstance(state, memnets.LSTMState)
