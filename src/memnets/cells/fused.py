"""Pointwise parts of the LSTM and GRU steps as single autograd functions.

Written as plain tensor operations, one LSTM step records about ten autograd
nodes, and the backward pass of ``chunk`` concatenates four gradients at every
step.  These functions compute the same values, keep only what the backward
pass needs, and write the gate gradients into one buffer, which makes the
generic path (``Recurrent`` over a cell) markedly faster in training.  They are
checked against the plain formulas and with ``gradcheck`` in the tests.

Cells call :func:`lstm_pointwise` and :func:`gru_pointwise`, which use these
functions in eager mode and the same formulas as plain tensor operations while
a graph is recorded (:func:`~memnets.cells.base.capturing_graph`:
``torch.jit.trace``, the TorchScript-based ONNX exporter
``torch.onnx.export(..., dynamo=False)``, ``torch.export``): a traced graph
with an autograd function in it cannot be saved, and the ONNX exporter, which
inlines the function's body, returns a function's several outputs in the order
they were computed (``c`` before ``h``), not the order returned, so an exported
LSTM step swapped them.

The formulas and their backward are written once, as ``*_step_forward`` and
``*_step_backward``; the autograd functions and the sequence-level path
(:mod:`memnets.layers.time_loop`) both call them.  This module imports torch and
:mod:`memnets.cells.base`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from memnets.cells.base import capturing_graph


def lstm_pointwise(gates: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor]:
    """:class:`LSTMPointwise`: ``(h_t, c_t)`` from ``gates`` ``(N, 4H)`` and ``c_prev``
    ``(N, H)``; as plain tensor operations while a graph is recorded."""
    if not capturing_graph():
        return LSTMPointwise.apply(gates, c_prev)
    i, f, g, o = gates.chunk(4, dim=1)  # (N, H) each
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_pointwise(u: Tensor, v: Tensor, h_prev: Tensor) -> Tensor:
    """:class:`GRUPointwise`: ``h_t`` from ``u``, ``v`` ``(N, 3H)`` and ``h_prev``
    ``(N, H)``; as plain tensor operations while a graph is recorded."""
    if not capturing_graph():
        return GRUPointwise.apply(u, v, h_prev)
    u_r, u_z, u_n = u.chunk(3, dim=1)  # (N, H) each
    v_r, v_z, v_n = v.chunk(3, dim=1)
    r, z = torch.sigmoid(u_r + v_r), torch.sigmoid(u_z + v_z)
    n = torch.tanh(u_n + r * v_n)
    return n + z * (h_prev - n)  # (1 - z) n + z h_{t-1}


def lstm_step_forward(gates: Tensor, c_prev: Tensor):
    """The LSTM pointwise step without a graph: ``(h_t, c_t, saved)``, where ``saved``
    ``(acts, c_prev, tanh_c)`` is what :func:`lstm_step_backward` needs."""
    H = c_prev.shape[1]
    acts = torch.sigmoid(gates)  # (N, 4H); the g block is replaced by tanh below
    g = torch.tanh(gates[:, 2 * H : 3 * H])
    acts[:, 2 * H : 3 * H] = g
    i, f, o = acts[:, :H], acts[:, H : 2 * H], acts[:, 3 * H :]
    c = torch.addcmul(f * c_prev, i, g)
    tanh_c = torch.tanh(c)
    return o * tanh_c, c, (acts, c_prev, tanh_c)


def lstm_step_backward(saved, dh: Tensor, dc_next: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients at ``gates`` and ``c_prev`` from those at ``h_t`` and ``c_t``."""
    acts, c_prev, tanh_c = saved
    H = c_prev.shape[1]
    i, f, g, o = (acts[:, k * H : (k + 1) * H] for k in range(4))
    dc = torch.addcmul(dc_next, dh * o, 1 - tanh_c * tanh_c)  # (N, H)
    d_acts = torch.cat([dc * g, dc * c_prev, dc * i, dh * tanh_c], dim=1)  # (N, 4H)
    slope = acts * (1 - acts)  # sigmoid'; the g block takes tanh' = 1 - g^2
    slope[:, 2 * H : 3 * H] = 1 - g * g
    return d_acts * slope, dc * f


def gru_step_forward(u: Tensor, v: Tensor, h_prev: Tensor):
    """The GRU pointwise step (reset after the product) without a graph:
    ``(h_t, saved)`` with ``saved`` ``(rz, n, v_n, h_prev)`` for :func:`gru_step_backward`."""
    H = h_prev.shape[1]
    rz = torch.sigmoid(u[:, : 2 * H] + v[:, : 2 * H])  # (N, 2H)
    z = rz[:, H:]
    v_n = v[:, 2 * H :]
    n = torch.tanh(torch.addcmul(u[:, 2 * H :], rz[:, :H], v_n))
    return torch.addcmul(n, z, h_prev - n), (rz, n, v_n, h_prev)


def gru_step_backward(saved, dh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients at ``u``, ``v`` and ``h_prev`` (its direct path only, not through
    ``v``) from the gradient at ``h_t``."""
    rz, n, v_n, h_prev = saved
    H = h_prev.shape[1]
    r, z = rz[:, :H], rz[:, H:]
    da_n = dh * (1 - z) * (1 - n * n)  # gradient at the tanh's input
    d_rz = torch.cat([da_n * v_n, dh * (h_prev - n)], dim=1) * rz * (1 - rz)  # (N, 2H)
    du = torch.cat([d_rz, da_n], dim=1)
    dv = torch.cat([d_rz, da_n * r], dim=1)
    return du, dv, dh * z


class LSTMPointwise(torch.autograd.Function):
    r"""From pre-activations to the new cell and (unprojected) hidden state.

    ``gates`` ``(N, 4H)`` in the order i, f, g, o and ``c_prev`` ``(N, H)``:

    .. math::
        c_t = \sigma(a_f) \odot c_{t-1} + \sigma(a_i) \odot \tanh(a_g), \qquad
        h_t = \sigma(a_o) \odot \tanh(c_t)

    Returns ``(h_t, c_t)``.
    """

    @staticmethod
    def forward(ctx, gates: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor]:
        h, c, saved = lstm_step_forward(gates, c_prev)
        ctx.save_for_backward(*saved)
        return h, c

    @staticmethod
    def backward(ctx, dh: Tensor, dc_next: Tensor) -> tuple[Tensor, Tensor]:
        return lstm_step_backward(ctx.saved_tensors, dh, dc_next)


class GRUPointwise(torch.autograd.Function):
    r"""The GRU step after both matrix products (reset applied after the product).

    ``u`` = :math:`W_i x_t + b_i` and ``v`` = :math:`W_h h_{t-1} + b_h`, both
    ``(N, 3H)`` in the order r, z, n, and ``h_prev`` ``(N, H)``:

    .. math::
        r = \sigma(u_r + v_r),\; z = \sigma(u_z + v_z),\;
        n = \tanh(u_n + r \odot v_n),\; h_t = (1 - z) \odot n + z \odot h_{t-1}
    """

    @staticmethod
    def forward(ctx, u: Tensor, v: Tensor, h_prev: Tensor) -> Tensor:
        h, saved = gru_step_forward(u, v, h_prev)
        ctx.save_for_backward(*saved)
        return h

    @staticmethod
    def backward(ctx, dh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return gru_step_backward(ctx.saved_tensors, dh)
