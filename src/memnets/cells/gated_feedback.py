"""Gated Feedback RNN: every layer at t-1 feeds every layer at t through a global reset gate.

A multi-layer cell (registered with ``layers=True``): one state holds every layer.
This module may import torch, :mod:`memnets.cells.base` and :mod:`memnets.cells.multilayer`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, check_sizes, register_state
from memnets.cells.multilayer import zeros_layers

_GATES = {"tanh": 1, "gru": 3, "lstm": 4}


@register_state
class GatedFeedbackState(NamedTuple):
    """State of :class:`GatedFeedbackCell` with ``tanh`` or ``gru`` units:
    ``h`` ``(N, K, H)``, the hidden state of every layer, lowest first."""

    h: Tensor


@register_state
class GatedFeedbackLSTMState(NamedTuple):
    """State of :class:`GatedFeedbackCell` with ``lstm`` units: ``h`` then ``c``,
    each ``(N, K, H)``, lowest layer first."""

    h: Tensor
    c: Tensor


class GatedFeedbackCell(RecurrentCell):
    r"""Gated Feedback RNN (Chung, Gulcehre, Cho & Bengio, "Gated feedback recurrent
    neural networks", 2015): K layers in which every layer :math:`i` at step
    :math:`t-1` feeds every layer :math:`j` at step :math:`t`, each connection
    scaled by a scalar global reset gate.

    With :math:`h_t^0 = x_t` and :math:`h_{t-1}^* = [h_{t-1}^1; \dots; h_{t-1}^K]`,
    for :math:`j = 1 \dots K`:

    .. math::
        g^{i \to j} = \sigma\big(w_g^{i \to j} \cdot h_t^{j-1}
            + u_g^{i \to j} \cdot h_{t-1}^*\big), \qquad
        R^j = \textstyle\sum_{i=1}^K g^{i \to j}\, U^{i \to j} h_{t-1}^i

    and, by unit type (``unit``):

    .. math::
        \begin{aligned}
        \texttt{tanh}:\ & h_t^j = \tanh(W^{j-1 \to j} h_t^{j-1} + b^j + R^j) \\
        \texttt{gru}:\ & r_t^j = \sigma(W_r^{j-1 \to j} h_t^{j-1} + U_r^{j} h_{t-1}^j + b_r^j),
            \quad z_t^j = \sigma(W_z^{j-1 \to j} h_t^{j-1} + U_z^{j} h_{t-1}^j + b_z^j) \\
          & \tilde h_t^j = \tanh(W^{j-1 \to j} h_t^{j-1} + b^j + r_t^j \odot R^j), \quad
            h_t^j = (1 - z_t^j) \odot h_{t-1}^j + z_t^j \odot \tilde h_t^j \\
        \texttt{lstm}:\ & [i; f; o]_t^j = \sigma(W_{ifo}^{j-1 \to j} h_t^{j-1}
            + U_{ifo}^{j} h_{t-1}^j + b_{ifo}^j), \quad
            \tilde c_t^j = \tanh(W_c^{j-1 \to j} h_t^{j-1} + b_c^j + R^j) \\
          & c_t^j = f_t^j \odot c_{t-1}^j + i_t^j \odot \tilde c_t^j, \quad
            h_t^j = o_t^j \odot \tanh(c_t^j)
        \end{aligned}

    The global reset gates act only on the recurrent part of the candidate
    (the gates of the GRU and LSTM units see only their own layer at
    :math:`t-1`), as in the paper.  Output :math:`y_t = h_t^K`.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of every layer's ``h`` (H).
        num_layers: K.
        unit: ``"tanh"``, ``"gru"`` or ``"lstm"``.
        bias: if False, no unit biases ``b``.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`GatedFeedbackState` ``(h,)``
    (tanh, gru) or :class:`GatedFeedbackLSTMState` ``(h, c)`` (lstm), each
    ``(N, K, H)`` with the lowest layer first; output ``y_t`` ``(N, H)``.

    Below, G = 1, 3, 4 blocks for tanh, gru, lstm, and d_j = H_in for the first
    layer, else H.

    Attributes:
        weight_ih: per layer ``(G H, d_j)``: :math:`W^{j-1 \to j}` with blocks
            ``[n]``, ``[r, z, n]`` or ``[i, f, o, c]`` (the candidate last),
            Xavier-uniform per block.
        bias: per layer ``(G H,)``; zero, except the LSTM forget block, 1.
        weight_hh: ``(K, (G-1) H, H)`` :math:`U_{rz}^j` or :math:`U_{ifo}^j`
            (absent for tanh), orthogonal per block.
        weight_feedback: ``(K, K, H, H)``, ``[j, i]`` is :math:`U^{i \to j}`,
            orthogonal.
        gate_ih: per layer ``(K, d_j)``, row ``i`` is :math:`w_g^{i \to j}`;
            uniform in :math:`\pm 1/\sqrt{d}` (d = fan-in).
        gate_hh: ``(K, K, K H)``, ``[j, i]`` is :math:`u_g^{i \to j}`;
            uniform in :math:`\pm 1/\sqrt{d}` (d = fan-in).

    Parameters: :math:`\sum_j \big[G H d_j + (G-1) H^2 + K H^2 + K d_j + K^2 H\big]`,
    plus :math:`G H K` with bias.

    Departures from the paper: the units have biases (the paper leaves them
    implicit) and the global reset gates do not; the output is the top
    layer's state (a model may read the whole state ``h`` for all layers).

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.GatedFeedbackCell(3, 4, num_layers=3, unit="lstm")
        >>> y, state = cell(torch.randn(2, 3))
        >>> type(state).__name__, state.h.shape            # every layer's h and c
        ('GatedFeedbackLSTMState', torch.Size([2, 3, 4]))
        >>> torch.equal(y, state.h[:, -1])                 # the output is the top layer's h
        True
        >>> cell.weight_feedback.shape                     # U^{i -> j} for every pair of layers
        torch.Size([3, 3, 4, 4])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        unit: str = "tanh",
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        if unit not in _GATES:
            raise ValueError(f"expected unit 'tanh', 'gru' or 'lstm', got {unit!r}")
        factory = {"device": device, "dtype": dtype}
        H, K, G = hidden_size, num_layers, _GATES[unit]
        self.input_size, self.hidden_size, self.output_size = input_size, H, H
        self.num_layers, self.unit = K, unit
        sizes = [input_size] + [H] * (K - 1)
        self.weight_ih = nn.ParameterList(
            nn.Parameter(torch.empty(G * H, d, **factory)) for d in sizes
        )
        self.bias = (
            nn.ParameterList(nn.Parameter(torch.empty(G * H, **factory)) for _ in sizes)
            if bias
            else None
        )
        if G > 1:
            self.weight_hh = nn.Parameter(torch.empty(K, (G - 1) * H, H, **factory))
        else:
            self.register_parameter("weight_hh", None)
        self.weight_feedback = nn.Parameter(torch.empty(K, K, H, H, **factory))
        self.gate_ih = nn.ParameterList(nn.Parameter(torch.empty(K, d, **factory)) for d in sizes)
        self.gate_hh = nn.Parameter(torch.empty(K, K, K * H, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H, K, G = self.hidden_size, self.num_layers, _GATES[self.unit]
        with torch.no_grad():
            for j in range(K):
                for k in range(G):
                    nn.init.xavier_uniform_(self.weight_ih[j][k * H : (k + 1) * H])
                    if k < G - 1:
                        nn.init.orthogonal_(self.weight_hh[j, k * H : (k + 1) * H])
                for i in range(K):
                    nn.init.orthogonal_(self.weight_feedback[j, i])
                d = self.gate_ih[j].shape[1]
                nn.init.uniform_(self.gate_ih[j], -(d**-0.5), d**-0.5)
                if self.bias is not None:
                    nn.init.zeros_(self.bias[j])
                    if self.unit == "lstm":
                        self.bias[j][H : 2 * H].fill_(1.0)
            nn.init.uniform_(self.gate_hh, -((K * H) ** -0.5), (K * H) ** -0.5)

    def init_state(self, batch_size: int, *, device=None, dtype=None):
        h = zeros_layers(self, batch_size, device, dtype)
        if self.unit == "lstm":
            return GatedFeedbackLSTMState(h, torch.zeros_like(h))
        return GatedFeedbackState(h)

    def project_input(self, x: Tensor) -> Tensor:
        a = x @ self.weight_ih[0].t()  # (*, G H)
        if self.bias is not None:
            a = a + self.bias[0]
        return torch.cat([a, x @ self.gate_ih[0].t()], dim=-1)  # (*, G H + K)

    def recur(self, u_t: Tensor, state):
        H, K, G = self.hidden_size, self.num_layers, _GATES[self.unit]
        h_prev = state.h  # (N, K, H)
        N = h_prev.shape[0]
        # everything that depends on t-1 alone, for all layers at once
        feedback = torch.einsum("nih,jioh->njio", h_prev, self.weight_feedback)  # (N, K_j, K_i, H)
        gate_prev = (h_prev.reshape(N, K * H) @ self.gate_hh.reshape(K * K, K * H).t()).view(
            N, K, K
        )  # (N, K_j, K_i)
        # unbind, not [:, j]: indexing would make backward build full-size gradients per layer
        feedback_j = feedback.unbind(1)  # K x (N, K_i, H)
        gate_prev_j = gate_prev.unbind(1)  # K x (N, K_i)
        h_prev_j = h_prev.unbind(1)  # K x (N, H)
        if G > 1:
            local = torch.einsum("njh,jgh->njg", h_prev, self.weight_hh).unbind(1)  # (N, (G-1)H)
        if self.unit == "lstm":
            c_prev_j = state.c.unbind(1)
        hs, cs = [], []
        below = None
        for j in range(K):
            if j == 0:
                a, g_in = u_t[:, : G * H], u_t[:, G * H :]  # (N, G H), (N, K)
            else:
                a = below @ self.weight_ih[j].t()
                if self.bias is not None:
                    a = a + self.bias[j]
                g_in = below @ self.gate_ih[j].t()
            g = torch.sigmoid(g_in + gate_prev_j[j])  # (N, K_i): g^{i->j}
            R = torch.bmm(g.unsqueeze(1), feedback_j[j]).squeeze(1)  # (N, H)
            if self.unit == "tanh":
                h = torch.tanh(a + R)
            elif self.unit == "gru":
                r, z = torch.sigmoid(a[:, : 2 * H] + local[j]).chunk(2, dim=1)
                n = torch.tanh(a[:, 2 * H :] + r * R)
                h = (1 - z) * h_prev_j[j] + z * n
            else:
                i, f, o = torch.sigmoid(a[:, : 3 * H] + local[j]).chunk(3, dim=1)
                c = f * c_prev_j[j] + i * torch.tanh(a[:, 3 * H :] + R)
                h = o * torch.tanh(c)
                cs.append(c)
            hs.append(h)
            below = h
        h_all = torch.stack(hs, dim=1)  # (N, K, H)
        if self.unit == "lstm":
            return below, GatedFeedbackLSTMState(h_all, torch.stack(cs, dim=1))
        return below, GatedFeedbackState(h_all)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"unit={self.unit!r}"
        )
