"""Elman's simple recurrent network (tanh or ReLU), in torch.nn.RNN's parameter layout."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, SequenceForm, check_sizes, register_state

_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


@register_state
class ElmanState(NamedTuple):
    """State of :class:`ElmanCell`: ``h`` of shape ``(N, H)``."""

    h: Tensor


class ElmanCell(RecurrentCell):
    r"""Elman recurrent cell (Elman, "Finding structure in time", 1990).

    .. math::
        h_t = \sigma(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}), \qquad y_t = h_t

    with :math:`\sigma` = tanh or ReLU.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` (H).
        bias: if False, no ``b_ih`` and ``b_hh``.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`ElmanState` ``(h,)`` with ``h``
    ``(N, H)``; output ``y_t = h_t`` ``(N, H)``.

    Attributes:
        weight_ih: ``(H, H_in)``, Xavier-uniform.
        weight_hh: ``(H, H)``, orthogonal, so that repeated products neither
            explode nor vanish at initialisation.
        bias_ih, bias_hh: ``(H,)``, zero.

    Parameter names and shapes are those of ``torch.nn.RNNCell``.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.ElmanCell(3, 4)
        >>> ref = torch.nn.RNNCell(3, 4)                   # the same parameter names and shapes
        >>> _ = ref.load_state_dict(cell.state_dict())
        >>> x, h = torch.randn(2, 3), torch.randn(2, 4)
        >>> y, state = cell(x, memnets.ElmanState(h))
        >>> y.shape, torch.allclose(y, ref(x, h), atol=1e-6)
        (torch.Size([2, 4]), True)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(
                f"expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}"
            )
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.nonlinearity = nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self._act = _NONLINEARITIES[nonlinearity]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.orthogonal_(self.weight_hh)
        if self.bias_ih is not None:
            nn.init.zeros_(self.bias_ih)
            nn.init.zeros_(self.bias_hh)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> ElmanState:
        return ElmanState(_zeros(self, batch_size, self.hidden_size, device, dtype))

    def project_input(self, x: Tensor) -> Tensor:
        u = x @ self.weight_ih.t()  # (*, H)
        if self.bias_ih is not None:
            u = u + (self.bias_ih + self.bias_hh)
        return u

    def recur(self, u_t: Tensor, state: ElmanState) -> tuple[Tensor, ElmanState]:
        h = self._act(torch.addmm(u_t, state.h, self.weight_hh.t()))  # (N, H)
        return h, ElmanState(h)

    def sequence_form(self) -> SequenceForm:
        return SequenceForm(self.weight_hh)  # the biases are in project_input

    def pointwise_forward(self, u_t, v_t, state, params):
        h = self._act(u_t + v_t)
        return h, ElmanState(h), (h,)

    def pointwise_backward(self, saved, dy, dstate, params):
        (h,) = saved
        dh = dy + dstate.h
        da = dh * (1 - h * h) if self.nonlinearity == "tanh" else dh * (h > 0)
        return da, da, (None,), ()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


def _zeros(cell: nn.Module, batch_size: int, size: int, device, dtype) -> Tensor:
    """A ``(batch_size, size)`` zero tensor on the cell's device and dtype unless given."""
    if device is None or dtype is None:
        p = next(cell.parameters())
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
    return torch.zeros(batch_size, size, device=device, dtype=dtype)


def uniform_init_(param: Tensor, hidden_size: int) -> None:
    """torch.nn's RNN initialisation of one parameter: U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    nn.init.uniform_(param, -bound, bound)
