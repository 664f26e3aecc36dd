"""IndRNN: every hidden unit recurs only on itself."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, check_sizes, register_state
from memnets.cells.elman import _zeros

_NONLINEARITIES = {"relu": torch.relu, "tanh": torch.tanh}


@register_state
class IndRNNState(NamedTuple):
    """State of :class:`IndRNNCell`: ``h`` of shape ``(N, H)``."""

    h: Tensor


class IndRNNCell(RecurrentCell):
    r"""Independently recurrent cell (Li, Li, Cook, Zhu & Gao, "Independently recurrent
    neural network (IndRNN): building a longer and deeper RNN", 2018).

    .. math::
        h_t = \sigma(W x_t + u \odot h_{t-1} + b), \qquad y_t = h_t

    The recurrent weight is a vector :math:`u` (one weight per unit), so
    units do not interact over time; layers stacked on top mix them.  Since
    :math:`\partial h_T / \partial h_t` of unit :math:`n` is a product of
    :math:`u_n` and :math:`\sigma'` terms, the paper keeps gradients from
    exploding or vanishing over :math:`T` steps by constraining
    :math:`|u_n|`, e.g. :math:`|u_n| \le \gamma^{1/T}` for ReLU units, by
    clipping after each training step.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` (H).
        bias: if False, no ``b``.
        nonlinearity: :math:`\sigma`, ``"relu"`` (the paper) or ``"tanh"``.
        recurrent_max: if set, :math:`|u_n| \le` ``recurrent_max``: the paper's
            magnitude constraint (``2 ** (1 / T)`` for sequences of length T
            lets a unit's gradient grow at most twofold over the sequence).
        recurrent_min: if set, :math:`|u_n| \ge` ``recurrent_min`` (the paper's
            lower bound :math:`\epsilon^{1/T}`, to keep long memory).

    The constraint is applied at construction and by :meth:`constrain_`,
    which a training loop calls after every optimiser step (the paper's
    projection); :func:`constrain_all_` does it for every cell of a model.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`IndRNNState` ``(h,)`` with ``h``
    ``(N, H)``; output ``y_t = h_t`` ``(N, H)``.

    Attributes:
        weight_ih: ``W``, ``(H, H_in)``, Xavier-uniform.
        weight_hh: ``u``, ``(H,)``, from U(0, 1) (our choice: every unit
            starts with a positive, decaying self-loop), then clipped to the bounds.
        bias: ``b``, ``(H,)``, zero.

    Parameter count: ``H * H_in + H + H`` (with bias), as in the paper.

    Departures from the paper: none in the model; batch normalisation and the
    residual IndRNN of the paper's deeper models belong to the layers above.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.IndRNNCell(3, 4, recurrent_max=0.5)
        >>> x, h = torch.randn(2, 3), torch.randn(2, 4)
        >>> y, state = cell(x, memnets.IndRNNState(h))
        >>> expected = torch.relu(x @ cell.weight_ih.T + cell.weight_hh * h + cell.bias)
        >>> torch.allclose(y, expected, atol=1e-6)
        True
        >>> with torch.no_grad():
        ...     _ = cell.weight_hh.fill_(3.0)              # as an optimiser step might leave it
        >>> cell.constrain_()                              # the paper's projection
        >>> cell.weight_hh.max().item()
        0.5
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        nonlinearity: str = "relu",
        recurrent_max: float | None = None,
        recurrent_min: float | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"expected nonlinearity 'relu' or 'tanh', got {nonlinearity!r}")
        if recurrent_max is not None and recurrent_max <= 0:
            raise ValueError(f"expected recurrent_max > 0, got {recurrent_max}")
        if recurrent_min is not None and (
            recurrent_min < 0 or (recurrent_max is not None and recurrent_min > recurrent_max)
        ):
            raise ValueError(
                f"expected 0 <= recurrent_min <= recurrent_max, got {recurrent_min} "
                f"and {recurrent_max}"
            )
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.nonlinearity = nonlinearity
        self.recurrent_max, self.recurrent_min = recurrent_max, recurrent_min
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(hidden_size, **factory))
        else:
            self.register_parameter("bias", None)
        self._act = _NONLINEARITIES[nonlinearity]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.uniform_(self.weight_hh, 0.0, 1.0)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.constrain_()

    @torch.no_grad()
    def constrain_(self) -> None:
        """Clip ``|u|`` into ``[recurrent_min, recurrent_max]`` in place, keeping signs."""
        u = self.weight_hh
        if self.recurrent_max is not None:
            u.clamp_(-self.recurrent_max, self.recurrent_max)
        if self.recurrent_min is not None and self.recurrent_min > 0:
            sign = torch.where(u < 0, -1.0, 1.0).to(u.dtype)
            u.copy_(sign * u.abs().clamp_min(self.recurrent_min))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> IndRNNState:
        return IndRNNState(_zeros(self, batch_size, self.hidden_size, device, dtype))

    def project_input(self, x: Tensor) -> Tensor:
        u = x @ self.weight_ih.t()  # (*, H)
        return u if self.bias is None else u + self.bias

    def recur(self, u_t: Tensor, state: IndRNNState) -> tuple[Tensor, IndRNNState]:
        h = self._act(torch.addcmul(u_t, self.weight_hh, state.h))  # (N, H)
        return h, IndRNNState(h)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"
        if self.recurrent_max is not None:
            s += f", recurrent_max={self.recurrent_max}"
        if self.recurrent_min is not None:
            s += f", recurrent_min={self.recurrent_min}"
        return s


def constrain_all_(model: nn.Module) -> None:
    """Call ``constrain_()`` on every submodule that has it (after an optimiser step)."""
    for m in model.modules():
        fn = getattr(m, "constrain_", None)
        if callable(fn):
            fn()
