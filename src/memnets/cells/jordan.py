"""Jordan's recurrent network: the previous output, not the hidden state, is fed back."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, check_size, check_sizes, register_state
from memnets.cells.elman import _zeros

_HIDDEN = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
_OUTPUT = {
    "softmax": lambda a: torch.softmax(a, dim=-1),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "identity": lambda a: a,
}


@register_state
class JordanState(NamedTuple):
    """State of :class:`JordanCell`: the context units ``y`` of shape ``(N, O)``.

    With the default ``self_connection=0`` this is the previous output
    :math:`y_{t-1}` itself.
    """

    y: Tensor


class JordanCell(RecurrentCell):
    r"""Jordan recurrent cell (Jordan, "Serial order: a parallel distributed processing
    approach", 1986), in the form used for slot filling by Mesnil, He, Deng & Bengio,
    "Investigation of recurrent-neural-network architectures and learning methods for
    spoken language understanding" (2013) and Mesnil et al., "Using recurrent neural
    networks for slot filling in spoken language understanding" (2015).

    .. math::
        \begin{aligned}
        h_t &= f(W_{ih} x_t + W_{yh} s_{t-1} + b_h) \\
        y_t &= g(W_{hy} h_t + b_y) \\
        s_t &= \mu\, s_{t-1} + y_t, \qquad s_0 = 0
        \end{aligned}

    The recurrent input is the previous *output* :math:`y_{t-1}` (held in the
    context units :math:`s`), not the hidden state; the output layer is part
    of the cell.  With the default :math:`\mu = 0` (Mesnil et al.),
    :math:`s_{t-1} = y_{t-1}`.  Jordan's original state units also decay with a
    self-connection :math:`\mu`, available as ``self_connection``.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` (H).
        output_size: features of ``y_t`` (O), e.g. the number of slot labels;
            defaults to ``hidden_size``.
        bias: if False, no ``b_h`` and ``b_y``.
        nonlinearity: :math:`f`, ``"sigmoid"`` (the papers), ``"tanh"`` or ``"relu"``.
        output_activation: :math:`g`, ``"softmax"`` (the papers: a distribution
            over labels), ``"sigmoid"``, ``"tanh"`` or ``"identity"``.
        self_connection: :math:`\mu`, the context units' fixed self-connection.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`JordanState` ``(y,)`` with ``y``
    ``(N, O)``; output ``y_t`` ``(N, O)``.

    Attributes:
        weight_ih: ``(H, H_in)``, Xavier-uniform.
        weight_yh: ``(H, O)``, Xavier-uniform (the recurrent weights).
        bias_h: ``(H,)``, zero.
        weight_hy: ``(O, H)``, Xavier-uniform.
        bias_y: ``(O,)``, zero.

    Parameter count: ``H * H_in + H * O + H + O * H + O`` (with bias).

    Departures from the papers: the biases ``b_h`` and ``b_y`` (the papers write
    none; ``bias=False`` removes them).  With ``"softmax"`` the
    output is a probability vector; train with ``nll_loss`` on its logarithm
    (``torch.log(y.clamp_min(1e-12))``).  Mesnil et al. also feed the model a
    window of word embeddings; that belongs in the input, outside the cell.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.JordanCell(3, 5, output_size=4)  # e.g. 4 slot labels
        >>> y, state = cell(torch.randn(2, 3))
        >>> y.shape, torch.allclose(y.sum(1), torch.ones(2), atol=1e-6)  # a distribution
        (torch.Size([2, 4]), True)
        >>> torch.equal(state.y, y)                        # the next step reads this output
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        bias: bool = True,
        *,
        nonlinearity: str = "sigmoid",
        output_activation: str = "softmax",
        self_connection: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        if nonlinearity not in _HIDDEN:
            raise ValueError(
                f"expected nonlinearity one of {sorted(_HIDDEN)}, got {nonlinearity!r}"
            )
        if output_activation not in _OUTPUT:
            raise ValueError(
                f"expected output_activation one of {sorted(_OUTPUT)}, got {output_activation!r}"
            )
        output_size = hidden_size if output_size is None else check_size("output_size", output_size)
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.nonlinearity, self.output_activation = nonlinearity, output_activation
        self.self_connection = float(self_connection)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **factory))
        self.weight_yh = nn.Parameter(torch.empty(hidden_size, output_size, **factory))
        self.weight_hy = nn.Parameter(torch.empty(output_size, hidden_size, **factory))
        if bias:
            self.bias_h = nn.Parameter(torch.empty(hidden_size, **factory))
            self.bias_y = nn.Parameter(torch.empty(output_size, **factory))
        else:
            self.register_parameter("bias_h", None)
            self.register_parameter("bias_y", None)
        self._f, self._g = _HIDDEN[nonlinearity], _OUTPUT[output_activation]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.weight_ih, self.weight_yh, self.weight_hy):
            nn.init.xavier_uniform_(w)
        if self.bias_h is not None:
            nn.init.zeros_(self.bias_h)
            nn.init.zeros_(self.bias_y)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> JordanState:
        return JordanState(_zeros(self, batch_size, self.output_size, device, dtype))

    def project_input(self, x: Tensor) -> Tensor:
        u = x @ self.weight_ih.t()  # (*, H)
        return u if self.bias_h is None else u + self.bias_h

    def recur(self, u_t: Tensor, state: JordanState) -> tuple[Tensor, JordanState]:
        h = self._f(torch.addmm(u_t, state.y, self.weight_yh.t()))  # (N, H)
        a = h @ self.weight_hy.t()  # (N, O)
        y = self._g(a if self.bias_y is None else a + self.bias_y)
        s = y if self.self_connection == 0.0 else self.self_connection * state.y + y
        return y, JordanState(s)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, output_size={self.output_size}"
        s += f", nonlinearity={self.nonlinearity!r}, output_activation={self.output_activation!r}"
        return s + (f", self_connection={self.self_connection}" if self.self_connection else "")
