"""Long short-term memory, in torch.nn.LSTM's parameter layout."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell
from memnets.cells.elman import _zeros


class LSTMState(NamedTuple):
    """State of :class:`LSTMCell`: ``h`` ``(N, H_out)`` then ``c`` ``(N, H)``."""

    h: Tensor
    c: Tensor


class LSTMCell(RecurrentCell):
    r"""LSTM cell (Hochreiter & Schmidhuber, "Long short-term memory", 1997, with the
    forget gate of Gers, Schmidhuber & Cummins, 2000), optionally with a
    projection (Sak, Senior & Beaufays, 2014).

    .. math::
        \begin{aligned}
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t) \quad (\text{then } h_t \leftarrow W_{hr} h_t
               \text{ if } \texttt{proj\_size} > 0), \qquad y_t = h_t
        \end{aligned}

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of the memory cell ``c_t`` (H).
        bias: if False, no ``b_ih`` and ``b_hh``.
        proj_size: if > 0, ``h_t`` is projected to this size (H_out); else H_out = H.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`LSTMState` ``(h, c)`` with ``h``
    ``(N, H_out)`` and ``c`` ``(N, H)``; output ``y_t = h_t`` ``(N, H_out)``.

    Attributes (gate blocks stacked in the order i, f, g, o as in torch.nn.LSTM):
        weight_ih: ``(4H, H_in)``, Xavier-uniform per gate.
        weight_hh: ``(4H, H_out)``, orthogonal per gate.
        bias_ih, bias_hh: ``(4H,)``; zero except the forget gate's ``bias_ih``
            block, which is 1 so that memory is kept early in training
            (Jozefowicz, Zaremba & Sutskever, 2015).
        weight_hr: ``(H_out, H)`` when ``proj_size > 0``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(
                f"expected 0 <= proj_size < hidden_size ({hidden_size}), got {proj_size}"
            )
        factory = {"device": device, "dtype": dtype}
        h_out = proj_size or hidden_size
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, h_out
        self.proj_size = proj_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, h_out, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **factory))
        else:
            self.register_parameter("weight_hr", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        for k in range(4):
            nn.init.xavier_uniform_(self.weight_ih[k * H : (k + 1) * H])
            nn.init.orthogonal_(self.weight_hh[k * H : (k + 1) * H])
        if self.bias_ih is not None:
            nn.init.zeros_(self.bias_ih)
            nn.init.zeros_(self.bias_hh)
            with torch.no_grad():
                self.bias_ih[H : 2 * H].fill_(1.0)
        if self.weight_hr is not None:
            nn.init.xavier_uniform_(self.weight_hr)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> LSTMState:
        return LSTMState(
            _zeros(self, batch_size, self.output_size, device, dtype),
            _zeros(self, batch_size, self.hidden_size, device, dtype),
        )

    def project_input(self, x: Tensor) -> Tensor:
        u = x @ self.weight_ih.t()  # (*, 4H)
        if self.bias_ih is not None:
            u = u + (self.bias_ih + self.bias_hh)
        return u

    def recur(self, u_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        gates = torch.addmm(u_t, state.h, self.weight_hh.t())  # (N, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)  # (N, H)
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.weight_hr is not None:
            h = h @ self.weight_hr.t()  # (N, H_out)
        return h, LSTMState(h, c)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s + (f", proj_size={self.proj_size}" if self.proj_size else "")
