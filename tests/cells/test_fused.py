"""The fused pointwise steps equal the plain formulas, values and gradients."""

import torch

from memnets.cells.fused import GRUPointwise, LSTMPointwise


def _lstm_plain(gates, c_prev):
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_plain(u, v, h):
    u_r, u_z, u_n = u.chunk(3, 1)
    v_r, v_z, v_n = v.chunk(3, 1)
    r, z = torch.sigmoid(u_r + v_r), torch.sigmoid(u_z + v_z)
    n = torch.tanh(u_n + r * v_n)
    return (1 - z) * n + z * h


def _double(*shapes):
    torch.manual_seed(0)
    return [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]


def test_lstm_pointwise_matches_plain_formulas_and_gradcheck():
    gates, c = _double((3, 8), (3, 2))
    for a, b in zip(LSTMPointwise.apply(gates, c), _lstm_plain(gates, c)):
        torch.testing.assert_close(a, b, atol=1e-14, rtol=0)
    assert torch.autograd.gradcheck(LSTMPointwise.apply, (gates, c))


def test_gru_pointwise_matches_plain_formulas_and_gradcheck():
    u, v, h = _double((3, 6), (3, 6), (3, 2))
    torch.testing.assert_close(GRUPointwise.apply(u, v, h), _gru_plain(u, v, h),
                               atol=1e-14, rtol=0)
    assert torch.autograd.gradcheck(GRUPointwise.apply, (u, v, h))
