"""SCRN: a sigmoid recurrent layer beside slowly changing context units."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, check_size, check_sizes, register_state
from memnets.cells.elman import _zeros

_NONLINEARITIES = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}


@register_state
class SCRNState(NamedTuple):
    """State of :class:`SCRNCell`: fast hidden units ``h`` ``(N, H)``, then slow
    context units ``s`` ``(N, S)``."""

    h: Tensor
    s: Tensor


class SCRNCell(RecurrentCell):
    r"""Structurally constrained recurrent network (Mikolov, Joulin, Chopra, Mathieu &
    Ranzato, "Learning longer memory in recurrent neural networks", 2015).

    .. math::
        \begin{aligned}
        s_t &= (1 - \alpha)\, B x_t + \alpha\, s_{t-1} \\
        h_t &= \sigma(P s_t + A x_t + R h_{t-1} + b) \\
        y_t &= [h_t ; s_t]
        \end{aligned}

    The context units :math:`s` have a fixed self-connection :math:`\alpha`
    close to 1, so they change slowly and keep a longer memory than the
    hidden units; :math:`\alpha` is a constant, not a parameter.

    The paper's output layer reads both, :math:`\mathrm{softmax}(U h_t + V s_t)`.
    The cell therefore outputs the concatenation :math:`[h_t; s_t]`: a linear
    layer on it is exactly :math:`U h_t + V s_t`, and the output layer stays
    with the model (a language model's decoder, a classifier), as for every
    other cell.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: fast hidden units ``h_t`` (H).
        context_size: slow context units ``s_t`` (S); defaults to ``hidden_size``.
        alpha: the fixed self-connection of the context units, in [0, 1]
            (0.95 in the paper).
        bias: if True, the hidden units have a bias ``b`` (the paper writes none).
        nonlinearity: :math:`\sigma`, ``"sigmoid"`` (the paper) or ``"tanh"``.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`SCRNState` ``(h, s)`` with ``h``
    ``(N, H)`` and ``s`` ``(N, S)``; output ``y_t`` ``(N, H + S)``, ``h_t`` first.

    Attributes:
        weight_xs: ``B``, ``(S, H_in)``, Xavier-uniform.
        weight_xh: ``A``, ``(H, H_in)``, Xavier-uniform.
        weight_sh: ``P``, ``(H, S)``, Xavier-uniform.
        weight_hh: ``R``, ``(H, H)``, orthogonal.
        bias: ``b``, ``(H,)``, zero (absent when ``bias=False``).

    Parameter count: ``S * H_in + H * H_in + H * S + H * H`` as in the paper,
    plus ``H`` with ``bias=True``.

    Departures from the paper: the optional bias (default on), and the output
    layer left to the model as explained above.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.SCRNCell(3, 4, context_size=2)  # alpha = 0.95
        >>> x = torch.randn(5, 3)
        >>> y, state = cell(x)                             # from the zero state
        >>> y.shape, state.h.shape, state.s.shape
        (torch.Size([5, 6]), torch.Size([5, 4]), torch.Size([5, 2]))
        >>> # s_1 = (1 - alpha) B x_1 + alpha s_0, with s_0 = 0
        >>> torch.allclose(state.s, 0.05 * x @ cell.weight_xs.T, atol=1e-6)
        True
        >>> torch.equal(y, torch.cat([state.h, state.s], 1))
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        context_size: int | None = None,
        alpha: float = 0.95,
        bias: bool = True,
        *,
        nonlinearity: str = "sigmoid",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        if context_size is None:
            context_size = hidden_size
        check_size("context_size", context_size)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"expected alpha in [0, 1], got {alpha}")
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(
                f"expected nonlinearity 'sigmoid' or 'tanh', got {nonlinearity!r}"
            )
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        self.context_size, self.output_size = context_size, hidden_size + context_size
        self.alpha, self.nonlinearity = float(alpha), nonlinearity
        self.weight_xs = nn.Parameter(torch.empty(context_size, input_size, **factory))
        self.weight_xh = nn.Parameter(torch.empty(hidden_size, input_size, **factory))
        self.weight_sh = nn.Parameter(torch.empty(hidden_size, context_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(hidden_size, **factory))
        else:
            self.register_parameter("bias", None)
        self._act = _NONLINEARITIES[nonlinearity]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.weight_xs, self.weight_xh, self.weight_sh):
            nn.init.xavier_uniform_(w)
        nn.init.orthogonal_(self.weight_hh)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> SCRNState:
        return SCRNState(
            _zeros(self, batch_size, self.hidden_size, device, dtype),
            _zeros(self, batch_size, self.context_size, device, dtype),
        )

    def project_input(self, x: Tensor) -> Tensor:
        """``[(1 - alpha) B x ; A x + b]``, shape ``(*, S + H)``."""
        bx = (1.0 - self.alpha) * (x @ self.weight_xs.t())  # (*, S)
        ax = x @ self.weight_xh.t()  # (*, H)
        if self.bias is not None:
            ax = ax + self.bias
        return torch.cat([bx, ax], dim=-1)

    def recur(self, u_t: Tensor, state: SCRNState) -> tuple[Tensor, SCRNState]:
        bx, ax = u_t.split([self.context_size, self.hidden_size], dim=1)
        s = bx + self.alpha * state.s  # (N, S)
        pre = torch.addmm(ax, s, self.weight_sh.t())  # (N, H)
        h = self._act(torch.addmm(pre, state.h, self.weight_hh.t()))
        return torch.cat([h, s], dim=1), SCRNState(h, s)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, context_size={self.context_size}"
        s += f", alpha={self.alpha}"
        if self.nonlinearity != "sigmoid":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s
