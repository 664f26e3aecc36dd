"""Depth-Gated LSTM: a depth gate links the memory cells of adjacent layers.

A multi-layer cell (registered with ``layers=True``): one state holds every layer.
This module may import torch, :mod:`memnets.cells.base` and :mod:`memnets.cells.multilayer`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, check_sizes, register_state
from memnets.cells.multilayer import zeros_layers


@register_state
class DepthGatedState(NamedTuple):
    """State of :class:`DepthGatedLSTMCell`: ``h`` then ``c``, each ``(N, K, H)``,
    lowest layer first."""

    h: Tensor
    c: Tensor


class DepthGatedLSTMCell(RecurrentCell):
    r"""Depth-Gated LSTM (Yao, Cohn, Vylomova, Duh & Dyer, "Depth-gated recurrent
    neural networks", 2015): a stack of K peephole LSTMs in which a depth gate
    lets the memory cell of layer :math:`l` flow into the memory cell of layer
    :math:`l+1` at the same step.

    With :math:`x_t^{1} = x_t` and :math:`x_t^{l+1} = h_t^{l}`, for each layer
    (superscripts :math:`l+1` dropped on the right-hand side):

    .. math::
        \begin{aligned}
        i_t &= \sigma(W_{xi} x_t^{l+1} + W_{hi} h_{t-1} + w_{ci} \odot c_{t-1} + b_i) \\
        f_t &= \sigma(W_{xf} x_t^{l+1} + W_{hf} h_{t-1} + w_{cf} \odot c_{t-1} + b_f) \\
        d_t &= \sigma(b_d + W_{xd} x_t^{l+1} + w_{cd} \odot c_{t-1} + w_{ld} \odot c_t^{l}) \\
        c_t &= d_t \odot c_t^{l} + f_t \odot c_{t-1}
               + i_t \odot \tanh(W_{xc} x_t^{l+1} + W_{hc} h_{t-1} + b_c) \\
        o_t &= \sigma(W_{xo} x_t^{l+1} + W_{ho} h_{t-1} + w_{co} \odot c_t + b_o) \\
        h_t &= o_t \odot \tanh(c_t)
        \end{aligned}

    The first layer has no layer below it, hence no depth gate (it is a
    peephole LSTM).  Output :math:`y_t = h_t^K`.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of every layer's ``h`` and ``c`` (H).
        num_layers: K.
        peepholes: if False, no :math:`w_{ci}, w_{cf}, w_{co}` (a plain LSTM per
            layer, still depth-gated).
        bias: if False, no biases :math:`b`.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`DepthGatedState` ``(h, c)``,
    each ``(N, K, H)``; output ``y_t`` ``(N, H)``.

    Attributes:
        weight_ih: per layer; ``(4H, H_in)`` for the first, blocks i, f, g, o
            (torch.nn.LSTM's order, g the candidate); ``(5H, H)`` above, blocks
            i, f, g, o, d; Xavier-uniform per block.
        weight_hh: ``(K, 4H, H)``, blocks i, f, g, o, orthogonal per block.
        bias: per layer ``(4H,)`` or ``(5H,)``; zero, except the forget block, 1.
        peephole: ``(K, 3, H)`` rows :math:`w_{ci}, w_{cf}, w_{co}`, zero.
        depth_weight_c, depth_weight_l: ``(K-1, H)`` each, :math:`w_{cd}` and
            :math:`w_{ld}` for layers 2..K, zero, so that the depth gate starts
            at :math:`\sigma(b_d + W_{xd} x)`.

    Parameters: first layer :math:`4H H_{in} + 4H^2 + 3H + 4H`; each layer
    above :math:`5H^2 + 4H^2 + 3H + 2H + 5H` (less the peepholes and biases
    when switched off).

    Departures from the paper: none in the equations; the peephole
    connections are diagonal (vectors), as in the LSTM the paper builds on
    (Graves, "Generating sequences with recurrent neural networks", 2013).

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.DepthGatedLSTMCell(3, 4, num_layers=2)
        >>> y, state = cell(torch.randn(5, 3))             # one state holds both layers
        >>> y.shape, state.h.shape, state.c.shape
        (torch.Size([5, 4]), torch.Size([5, 2, 4]), torch.Size([5, 2, 4]))
        >>> torch.equal(y, state.h[:, -1])                 # the output is the top layer's h
        True
        >>> layer = memnets.make_stack("depth_gated", input_size=3, hidden_size=4, num_layers=2)
        >>> layer(torch.randn(7, 5, 3))[0].shape           # run over time: (L, N, H)
        torch.Size([7, 5, 4])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        peepholes: bool = True,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        factory = {"device": device, "dtype": dtype}
        H, K = hidden_size, num_layers
        self.input_size, self.hidden_size, self.output_size = input_size, H, H
        self.num_layers = K
        blocks = [4] + [5] * (K - 1)
        sizes = [input_size] + [H] * (K - 1)
        self.weight_ih = nn.ParameterList(
            nn.Parameter(torch.empty(g * H, d, **factory)) for g, d in zip(blocks, sizes)
        )
        self.weight_hh = nn.Parameter(torch.empty(K, 4 * H, H, **factory))
        self.bias = (
            nn.ParameterList(nn.Parameter(torch.empty(g * H, **factory)) for g in blocks)
            if bias
            else None
        )
        if peepholes:
            self.peephole = nn.Parameter(torch.empty(K, 3, H, **factory))
        else:
            self.register_parameter("peephole", None)
        self.depth_weight_c = nn.Parameter(torch.empty(K - 1, H, **factory))
        self.depth_weight_l = nn.Parameter(torch.empty(K - 1, H, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        with torch.no_grad():
            for j, w in enumerate(self.weight_ih):
                for k in range(w.shape[0] // H):
                    nn.init.xavier_uniform_(w[k * H : (k + 1) * H])
                for k in range(4):
                    nn.init.orthogonal_(self.weight_hh[j, k * H : (k + 1) * H])
                if self.bias is not None:
                    nn.init.zeros_(self.bias[j])
                    self.bias[j][H : 2 * H].fill_(1.0)
            if self.peephole is not None:
                nn.init.zeros_(self.peephole)
            nn.init.zeros_(self.depth_weight_c)
            nn.init.zeros_(self.depth_weight_l)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> DepthGatedState:
        h = zeros_layers(self, batch_size, device, dtype)
        return DepthGatedState(h, torch.zeros_like(h))

    def project_input(self, x: Tensor) -> Tensor:
        a = x @ self.weight_ih[0].t()  # (*, 4H)
        return a + self.bias[0] if self.bias is not None else a

    def recur(self, u_t: Tensor, state: DepthGatedState) -> tuple[Tensor, DepthGatedState]:
        H = self.hidden_size
        rec = torch.einsum("nkh,kgh->nkg", state.h, self.weight_hh)  # (N, K, 4H): all layers
        # unbind, not [:, j]: indexing would make backward build full-size gradients per layer
        rec_j, c_prev_j = rec.unbind(1), state.c.unbind(1)  # K x (N, 4H), K x (N, H)
        peep = self.peephole.unbind(0) if self.peephole is not None else None  # K x (3, H)
        w_cd, w_ld = self.depth_weight_c.unbind(0), self.depth_weight_l.unbind(0)
        hs, cs = [], []
        below_h = below_c = None
        for j in range(self.num_layers):
            if j == 0:
                a = u_t  # (N, 4H)
            else:
                a = below_h @ self.weight_ih[j].t()  # (N, 5H)
                if self.bias is not None:
                    a = a + self.bias[j]
            i, f, g, o = (a[:, : 4 * H] + rec_j[j]).chunk(4, dim=1)
            c_prev = c_prev_j[j]  # (N, H)
            if peep is not None:
                w_ci, w_cf, w_co = peep[j].unbind(0)
                i = i + w_ci * c_prev
                f = f + w_cf * c_prev
            c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
            if j > 0:
                d = torch.sigmoid(a[:, 4 * H :] + w_cd[j - 1] * c_prev + w_ld[j - 1] * below_c)
                c = c + d * below_c
            if peep is not None:
                o = o + w_co * c
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
            below_h, below_c = h, c
        return below_h, DepthGatedState(torch.stack(hs, dim=1), torch.stack(cs, dim=1))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        return s + ("" if self.peephole is not None else ", peepholes=False")
