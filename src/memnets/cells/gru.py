"""Gated recurrent unit, in torch.nn.GRU's parameter layout."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, SequenceForm, check_sizes, register_state
from memnets.cells.elman import _zeros
from memnets.cells.fused import gru_pointwise, gru_step_backward, gru_step_forward


@register_state
class GRUState(NamedTuple):
    """State of :class:`GRUCell`: ``h`` of shape ``(N, H)``."""

    h: Tensor


class GRUCell(RecurrentCell):
    r"""Gated recurrent unit (Cho et al., "Learning phrase representations using RNN
    encoder-decoder for statistical machine translation", 2014).

    .. math::
        \begin{aligned}
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
               \quad \text{(reset after, default)} \\
        n_t &= \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn})
               \quad \text{(reset before, the paper)} \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}, \qquad y_t = h_t
        \end{aligned}

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` (H).
        bias: if False, no ``b_ih`` and ``b_hh``.
        reset_after: ``True`` (the default) applies the reset gate after the
            recurrent product, as cuDNN and torch.nn.GRU do; ``False`` applies it
            to :math:`h_{t-1}` before the product, as in the paper.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`GRUState` ``(h,)`` with ``h``
    ``(N, H)``; output ``y_t = h_t``.

    The gate blocks are in the order r, z, n, as in torch.nn.GRU.

    Attributes:
        weight_ih: ``(3H, H_in)``, Xavier-uniform per gate.
        weight_hh: ``(3H, H)``, orthogonal per gate.
        bias_ih, bias_hh: ``(3H,)``, zero.

    Why ``reset_after=True`` is the default: all three recurrent products
    :math:`W_{hr} h, W_{hz} h, W_{hn} h` then come from one matrix product
    per step, which can start before :math:`r_t` is known (the paper's form
    needs a second, dependent product :math:`W_{hn}(r_t \odot h_{t-1})`); it
    is the form of torch.nn.GRU and cuDNN, so the weights and results of
    :class:`memnets.GRU` match torch's.  Both forms have the same parameters, so a
    state_dict loads into either.

    Departures from the paper: the default form above; the paper has one
    bias per gate, torch.nn's layout two (``b_ih`` and ``b_hh``; with
    ``reset_after`` ``b_hn`` sits inside the reset product, so they are not
    redundant there).

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.GRUCell(3, 4)                   # reset_after=True: torch's form
        >>> ref = torch.nn.GRUCell(3, 4)
        >>> _ = ref.load_state_dict(cell.state_dict())
        >>> x, h = torch.randn(2, 3), torch.randn(2, 4)
        >>> y, state = cell(x, memnets.GRUState(h))
        >>> torch.allclose(y, ref(x, h), atol=1e-6)
        True
        >>> paper = memnets.GRUCell(3, 4, reset_after=False)   # the same parameters load into
        >>> _ = paper.load_state_dict(cell.state_dict())       # the paper's form
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        reset_after: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.reset_after = reset_after
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        for k in range(3):
            nn.init.xavier_uniform_(self.weight_ih[k * H : (k + 1) * H])
            nn.init.orthogonal_(self.weight_hh[k * H : (k + 1) * H])
        if self.bias_ih is not None:
            nn.init.zeros_(self.bias_ih)
            nn.init.zeros_(self.bias_hh)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> GRUState:
        return GRUState(_zeros(self, batch_size, self.hidden_size, device, dtype))

    def project_input(self, x: Tensor) -> Tensor:
        u = x @ self.weight_ih.t()  # (*, 3H)
        if self.bias_ih is not None:
            u = u + self.bias_ih
        return u

    def recur(self, u_t: Tensor, state: GRUState) -> tuple[Tensor, GRUState]:
        H, h = self.hidden_size, state.h
        if self.reset_after:
            if self.bias_hh is None:
                v = h @ self.weight_hh.t()  # (N, 3H)
            else:
                v = torch.addmm(self.bias_hh, h, self.weight_hh.t())
            h = gru_pointwise(u_t, v, h)  # the equations above, as one autograd node
            return h, GRUState(h)
        # reset before the product (the paper): two recurrent products
        b_rz = b_n = None
        if self.bias_hh is not None:
            b_rz, b_n = self.bias_hh[: 2 * H], self.bias_hh[2 * H :]
        v = h @ self.weight_hh[: 2 * H].t()  # (N, 2H)
        if b_rz is not None:
            v = v + b_rz
        u_r, u_z, u_n = u_t.chunk(3, dim=1)  # (N, H) each
        v_r, v_z = v.chunk(2, dim=1)
        r = torch.sigmoid(u_r + v_r)
        z = torch.sigmoid(u_z + v_z)
        v_n = (r * h) @ self.weight_hh[2 * H :].t()
        n = torch.tanh(u_n + v_n + (b_n if b_n is not None else 0.0))
        h = n + z * (h - n)  # (1 - z) * n + z * h
        return h, GRUState(h)

    def sequence_form(self) -> SequenceForm | None:
        """The default form (reset after the product); ``None`` (autograd) for the
        paper's, whose second product depends on :math:`r_t`."""
        return SequenceForm(self.weight_hh, self.bias_hh) if self.reset_after else None

    def pointwise_forward(self, u_t, v_t, state, params):
        h, saved = gru_step_forward(u_t, v_t, state.h)
        return h, GRUState(h), saved

    def pointwise_backward(self, saved, dy, dstate, params):
        du, dv, dh_prev = gru_step_backward(saved, dy + dstate.h)
        return du, dv, (dh_prev,), ()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s + ("" if self.reset_after else ", reset_after=False")
