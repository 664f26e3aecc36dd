"""Grid LSTM over time and depth: an LSTM transform along each of the two dimensions.

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
class GridLSTMState(NamedTuple):
    """State of :class:`GridLSTMCell`: the time dimension's ``h`` then ``m`` of every
    block of the column, each ``(N, K, H)``, lowest block first."""

    h: Tensor
    m: Tensor


class GridLSTMCell(RecurrentCell):
    r"""2-D Grid LSTM over time and depth (Kalchbrenner, Danihelka & Graves, "Grid
    long short-term memory", 2016).

    A step is a column of K blocks.  Block :math:`k` at step :math:`t` receives a
    hidden vector and a memory vector along each dimension: along time from
    block :math:`k` at :math:`t-1`, along depth from block :math:`k-1` at
    :math:`t`.  Both dimensions read the same concatenated hidden vector and
    each has its own LSTM transform:

    .. math::
        \begin{aligned}
        \mathbf{H} &= [h^{\mathrm{time}}_{t-1,k};\ h^{\mathrm{depth}}_{t,k-1}] \\
        (h^{\mathrm{time}}_{t,k}, m^{\mathrm{time}}_{t,k}) &=
            \mathrm{LSTM}(\mathbf{H}, m^{\mathrm{time}}_{t-1,k}, W^{\mathrm{time}}_k) \\
        (h^{\mathrm{depth}}_{t,k}, m^{\mathrm{depth}}_{t,k}) &=
            \mathrm{LSTM}(\mathbf{H}, m^{\mathrm{depth}}_{t,k-1}, W^{\mathrm{depth}}_k)
        \end{aligned}

    where :math:`\mathrm{LSTM}(\mathbf{H}, m, W)` is the paper's

    .. math::
        \begin{aligned}
        g^u &= \sigma(W^u \mathbf{H} + b^u), \quad g^f = \sigma(W^f \mathbf{H} + b^f), \quad
        g^o = \sigma(W^o \mathbf{H} + b^o), \quad g^c = \tanh(W^c \mathbf{H} + b^c) \\
        m' &= g^f \odot m + g^u \odot g^c, \qquad h' = \tanh(g^o \odot m')
        \end{aligned}

    The bottom of the column receives the projected input,
    :math:`h^{\mathrm{depth}}_{t,0} = I x_t` and :math:`m^{\mathrm{depth}}_{t,0} = 0`;
    the output is the top block's depth output, :math:`y_t = h^{\mathrm{depth}}_{t,K}`.
    With ``tied=True`` every block uses the same :math:`W^{\mathrm{time}}` and
    :math:`W^{\mathrm{depth}}` (the paper's tied Grid LSTM).

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of every ``h`` and ``m`` (H).
        num_layers: blocks along depth (K).
        tied: share the block weights across depth.
        bias: if False, no biases :math:`b`.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`GridLSTMState` ``(h, m)``: the
    time dimension's vectors of every block, each ``(N, K, H)``; output
    ``y_t`` ``(N, H)``.

    Below, B = 1 if ``tied`` else K.

    Attributes:
        weight_in: ``(H, H_in)`` the input projection :math:`I`, Xavier-uniform.
        weight_from_time, weight_from_depth: ``(B, 8H, H)`` each, the columns
            of :math:`W = [W^{\mathrm{time}}; W^{\mathrm{depth}}]` that read
            :math:`h^{\mathrm{time}}` and :math:`h^{\mathrm{depth}}` (kept apart
            so that a step never slices a parameter); rows are
            :math:`W^{\mathrm{time}}` then :math:`W^{\mathrm{depth}}`, each with
            blocks u, f, c, o (the order i, f, g, o of torch.nn.LSTM);
            Xavier-uniform per block of :math:`W` (fan-in 2H).
        bias: ``(B, 8H)``; zero, except both forget blocks, 1.

    Parameters: :math:`H H_{in} + B (16 H^2 + 8 H)` (:math:`H H_{in} + 16 B H^2`
    without bias).

    Departures from the paper: the transforms have biases (the paper writes
    :math:`W \ast \mathbf{H}` alone); the paper's other options (priority
    dimensions, non-LSTM dimensions, more than two dimensions) are not built.
    Note that the paper's output :math:`h' = \tanh(g^o \odot m')` differs from
    the usual LSTM's :math:`g^o \odot \tanh(m')`; it is kept as written.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.GridLSTMCell(3, 4, num_layers=2)
        >>> y, state = cell(torch.randn(5, 3))
        >>> y.shape, state.h.shape, state.m.shape          # the time dimension of both blocks
        (torch.Size([5, 4]), torch.Size([5, 2, 4]), torch.Size([5, 2, 4]))
        >>> def count(cell):
        ...     return sum(p.numel() for p in cell.parameters())
        >>> count(memnets.GridLSTMCell(3, 4, num_layers=2, tied=True)) == count(
        ...     memnets.GridLSTMCell(3, 4, num_layers=5, tied=True))   # tied: one block's weights
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        tied: bool = False,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        factory = {"device": device, "dtype": dtype}
        H, K = hidden_size, num_layers
        B = 1 if tied else K
        self.input_size, self.hidden_size, self.output_size = input_size, H, H
        self.num_layers, self.tied = K, tied
        self.weight_in = nn.Parameter(torch.empty(H, input_size, **factory))
        self.weight_from_time = nn.Parameter(torch.empty(B, 8 * H, H, **factory))
        self.weight_from_depth = nn.Parameter(torch.empty(B, 8 * H, H, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(B, 8 * H, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        with torch.no_grad():
            nn.init.xavier_uniform_(self.weight_in)
            for b in range(self.weight_from_time.shape[0]):
                for k in range(8):
                    block = self.weight_from_time.new_empty(H, 2 * H)  # a block of W on [h_t; h_d]
                    nn.init.xavier_uniform_(block)
                    self.weight_from_time[b, k * H : (k + 1) * H] = block[:, :H]
                    self.weight_from_depth[b, k * H : (k + 1) * H] = block[:, H:]
            if self.bias is not None:
                nn.init.zeros_(self.bias)
                self.bias[:, H : 2 * H].fill_(1.0)  # time forget
                self.bias[:, 5 * H : 6 * H].fill_(1.0)  # depth forget

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> GridLSTMState:
        h = zeros_layers(self, batch_size, device, dtype)
        return GridLSTMState(h, torch.zeros_like(h))

    def project_input(self, x: Tensor) -> Tensor:
        return x @ self.weight_in.t()  # (*, H): h^depth_{t,0}

    def recur(self, u_t: Tensor, state: GridLSTMState) -> tuple[Tensor, GridLSTMState]:
        H, K = self.hidden_size, self.num_layers
        # the part of every block that reads h^time_{t-1}, for all blocks at once
        z_time = torch.einsum(
            "nkh,kgh->nkg", state.h, self.weight_from_time.expand(K, -1, -1)
        )  # (N, K, 8H)
        if self.bias is not None:
            z_time = z_time + self.bias.expand(K, -1)
        # unbind, not [k]: indexing would make backward build a full-size gradient per block
        w_depth = self.weight_from_depth.expand(K, -1, -1).unbind(0)  # K x (8H, H)
        h_depth = u_t  # (N, H): I x_t
        m_depth = torch.zeros_like(u_t)
        hs, ms = [], []
        for z_k, m_k, w_k in zip(z_time.unbind(1), state.m.unbind(1), w_depth):
            z = torch.addmm(z_k, h_depth, w_k.t())  # (N, 8H)
            h_time, m_time = _paper_lstm(z[:, : 4 * H], m_k)
            h_depth, m_depth = _paper_lstm(z[:, 4 * H :], m_depth)
            hs.append(h_time)
            ms.append(m_time)
        return h_depth, GridLSTMState(torch.stack(hs, dim=1), torch.stack(ms, dim=1))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        return s + (", tied=True" if self.tied else "")


def _paper_lstm(z: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    """The paper's LSTM transform from pre-activations ``z`` ``(N, 4H)`` (u, f, c, o)."""
    u, f, c, o = z.chunk(4, dim=1)
    m = torch.sigmoid(f) * m + torch.sigmoid(u) * torch.tanh(c)
    return torch.tanh(torch.sigmoid(o) * m), m
