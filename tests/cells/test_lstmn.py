"""LSTMN (Cheng, Dong & Lapata 2016) against a naive loop of the paper's equations."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from memnets import Bidirectional, Recurrent, cell_names, make_cell
from memnets.cells import LSTMNCell, LSTMNState
from memnets.layers import LSTMN

D = torch.float64


def naive_lstmn(cell: LSTMNCell, xs: torch.Tensor):
    """One sequence ``xs`` ``(L, H_in)``, written from the paper's equations with a
    Python list as the tape (slot 0 the zero initial state).  Returns outputs
    ``(L, H)``, the attention rows padded to ``(L, L)`` and the tapes."""
    H = cell.hidden_size
    Wh, Wx, Wt, v = cell.attn_weight_h, cell.attn_weight_x, cell.attn_weight_tilde, cell.attn_v
    W = torch.cat([cell.weight_ih, cell.weight_hh], dim=1)  # (4H, H_in + H) acting on [x; h~]
    b = cell.bias if cell.bias is not None else torch.zeros(4 * H, dtype=xs.dtype)
    hs, cs = [torch.zeros(H, dtype=xs.dtype)], [torch.zeros(H, dtype=xs.dtype)]
    h_tilde = torch.zeros(H, dtype=xs.dtype)
    outs, rows = [], []
    for x in xs:
        a = torch.stack([v @ torch.tanh(Wh @ hi + Wx @ x + Wt @ h_tilde) for hi in hs])
        s = torch.exp(a - a.max())
        s = s / s.sum()
        h_tilde = sum(si * hi for si, hi in zip(s, hs))
        c_tilde = sum(si * ci for si, ci in zip(s, cs))
        z = W @ torch.cat([x, h_tilde]) + b
        i, f, g, o = (z[k * H : (k + 1) * H] for k in range(4))
        c = torch.sigmoid(f) * c_tilde + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
        cs.append(c)
        outs.append(h)
        rows.append(torch.cat([s, s.new_zeros(len(xs) - len(s))]))
    return torch.stack(outs), torch.stack(rows), torch.stack(hs), torch.stack(cs)


def _layer(H_in=3, H=4, A=None, bias=True, seed=0, **kw):
    torch.manual_seed(seed)
    layer = LSTMN(H_in, H, attention_size=A, bias=bias, dtype=D, **kw)
    with torch.no_grad():  # larger weights than the init so that attention is not uniform
        for p in layer.parameters():
            p.uniform_(-1.0, 1.0)
    return layer


def _cell(**kw):
    return _layer(**kw).cell


def test_registry_builds_lstmn():
    assert "lstmn" in cell_names()
    cell = make_cell("lstmn", input_size=5, hidden_size=6, attention_size=3)
    assert isinstance(cell, LSTMNCell)
    assert (cell.input_size, cell.hidden_size, cell.output_size, cell.attention_size) == (
        5, 6, 6, 3)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("A", [None, 2])
def test_matches_naive_equations(bias, A):
    layer = _layer(A=A, bias=bias)
    cell = layer.cell
    torch.manual_seed(1)
    x = torch.randn(6, 3, 3, dtype=D)  # (L, N, H_in)
    out, final, attn = layer(x, return_attention=True)
    for n in range(3):
        ref_out, ref_attn, ref_h, ref_c = naive_lstmn(cell, x[:, n])
        torch.testing.assert_close(out[:, n], ref_out)
        torch.testing.assert_close(attn[n], ref_attn)
        torch.testing.assert_close(final.h[n], ref_h)
        torch.testing.assert_close(final.c[n], ref_c)
    # attention is a distribution over the slots before each step, nothing after it
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 6, dtype=D))
    assert bool((attn.triu(1) == 0).all())
    assert bool(final.mask.all()) and final.h.shape == (3, 7, 4)


def test_variable_lengths_equal_each_sequence_alone():
    cell = _cell()
    layer = Recurrent(cell, batch_first=True)
    lengths = [5, 2, 4, 1]
    torch.manual_seed(2)
    x = torch.randn(4, 5, 3, dtype=D)  # (N, L, H_in)
    out, final = layer(x, lengths=lengths)
    for n, T in enumerate(lengths):
        assert bool((out[n, T:] == 0).all())
        alone, fin = layer(x[n : n + 1, :T])
        torch.testing.assert_close(out[n : n + 1, :T], alone)
        # the valid slots of the tape are a prefix; padded steps added empty slots
        torch.testing.assert_close(final.h[n, : T + 1], fin.h[0])
        torch.testing.assert_close(final.c[n, : T + 1], fin.c[0])
        torch.testing.assert_close(final.key[n, : T + 1], fin.key[0])
        torch.testing.assert_close(final.h_tilde[n], fin.h_tilde[0])
        assert final.mask[n].tolist() == [True] * (T + 1) + [False] * (5 - T)
        assert bool((final.h[n, T + 1 :] == 0).all())


def test_attention_with_lengths_and_layouts():
    torch.manual_seed(3)
    layer = _layer(batch_first=True)
    x = torch.randn(3, 5, 3, dtype=D)
    lengths = torch.tensor([3, 5, 2])
    out, _, attn = layer(x, lengths=lengths, return_attention=True)
    assert attn.shape == (3, 5, 5)
    for n, T in enumerate(lengths.tolist()):
        _, _, alone = layer(x[n : n + 1, :T], return_attention=True)
        torch.testing.assert_close(attn[n, :T, :T], alone[0])
        assert bool((attn[n, T:] == 0).all()) and bool((attn[n, :, T:] == 0).all())
    # unbatched input gives an (L, L) matrix equal to the batched one
    out1, _, attn1 = layer(x[1], return_attention=True)
    torch.testing.assert_close(attn1, attn[1])
    torch.testing.assert_close(out1, out[1])
    with pytest.raises(ValueError, match="reverse=False"):
        LSTMN(3, 4, reverse=True)(x, return_attention=True)


def test_state_continues_across_chunks():
    """Running a sequence in two pieces, passing the tape, equals running it whole."""
    torch.manual_seed(4)
    layer = _layer()
    x = torch.randn(7, 2, 3, dtype=D)
    whole, final, attn = layer(x, return_attention=True)
    first, mid = layer(x[:3])
    second, final2, attn2 = layer(x[3:], mid, return_attention=True)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    for a, b in zip(final, final2):
        torch.testing.assert_close(a, b)
    assert attn2.shape == (2, 4, 3 + 4)  # T_0 - 1 + L columns
    torch.testing.assert_close(attn2, attn[:, 3:])


def test_state_from_tape_and_bad_state():
    cell = _cell()
    h, c = torch.randn(2, 3, 4, dtype=D), torch.randn(2, 3, 4, dtype=D)
    state = cell.state_from_tape(h, c)
    torch.testing.assert_close(state.key, h @ cell.attn_weight_h.t())
    y, new = cell(torch.randn(2, 3, dtype=D), state)
    assert new.h.shape == (2, 4, 4) and y.shape == (2, 4)
    layer = Recurrent(cell)
    with pytest.raises(ValueError, match=r"state field 'key' of shape \(2, 3, 4\)"):
        layer(torch.randn(5, 2, 3, dtype=D), LSTMNState(h, c, h[:, :, :2], h[:, 0], state.mask))
    with pytest.raises(ValueError, match="expected a state of 5 tensors"):
        layer(torch.randn(5, 2, 3, dtype=D), (h, c))
    with pytest.raises(ValueError, match="dtype bool"):
        layer(torch.randn(5, 2, 3, dtype=D), state._replace(mask=state.mask.double()))
    with pytest.raises(ValueError, match="attention_size >= 1"):
        LSTMNCell(3, 4, attention_size=0)


def test_bidirectional_backward_reads_reversed_sequences():
    torch.manual_seed(5)
    fwd, bwd = LSTMNCell(3, 4, dtype=D), LSTMNCell(3, 4, dtype=D)
    bi = Bidirectional(fwd, bwd)
    x = torch.randn(5, 2, 3, dtype=D)
    lengths = [5, 3]
    out, _ = bi(x, lengths=lengths)
    for n, T in enumerate(lengths):
        rev, _ = Recurrent(bwd)(x[:T, n : n + 1].flip(0))
        torch.testing.assert_close(out[:T, n, 4:], rev.flip(0)[:, 0])
        assert bool((out[T:, n] == 0).all())


def test_gradcheck_float64():
    cell = _cell(H_in=2, H=2, A=2)
    layer = Recurrent(cell)
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    x = torch.randn(3, 2, 2, dtype=D, requires_grad=True)

    def f(x, *ps):  # the h tape is the outputs; the c tape and h~ are the rest of the state
        out, final = functional_call(layer, {f"cell.{n}": p for n, p in zip(names, ps)},
                                     (x,), {"lengths": [3, 2]})
        return out, final.c, final.h_tilde

    assert torch.autograd.gradcheck(f, (x, *params))


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_matches_paper(bias):
    H_in, H, A = 7, 5, 3
    cell = LSTMNCell(H_in, H, attention_size=A, bias=bias)
    # the paper: gates W [h~_t; x_t] (+ b); attention W_h, W_x, W_h~ and v
    gates = 4 * H * (H + H_in) + (4 * H if bias else 0)
    attention = A * H + A * H_in + A * H + A
    assert sum(p.numel() for p in cell.parameters()) == gates + attention


def test_packed_input_gives_the_same_attention_as_lengths():
    from torch.nn.utils.rnn import pack_padded_sequence

    layer = _layer()
    torch.manual_seed(6)
    x = torch.randn(5, 3, 3, dtype=D)
    lengths = [2, 5, 3]
    out, _, attn = layer(x, lengths=lengths, return_attention=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    _, _, attn_p = layer(packed, return_attention=True)
    torch.testing.assert_close(attn_p, attn)


def test_deep_lstmn_in_stacked_equals_each_sequence_alone():
    from memnets import Stacked

    torch.manual_seed(7)
    deep = Stacked([LSTMNCell(3, 4, dtype=D), LSTMNCell(4, 5, attention_size=2, dtype=D)])
    x = torch.randn(6, 3, 3, dtype=D)
    lengths = [6, 2, 4]
    out, final = deep(x, lengths=lengths)
    for n, T in enumerate(lengths):
        alone, fin = deep(x[:T, n : n + 1])
        torch.testing.assert_close(out[:T, n : n + 1], alone)
        assert bool((out[T:, n] == 0).all())
        for got, want in zip(final, fin):
            torch.testing.assert_close(got.h[n, : T + 1], want.h[0])
