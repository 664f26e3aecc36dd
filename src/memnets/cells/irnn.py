"""IRNN: a ReLU Elman network started from the identity recurrent matrix."""

from __future__ import annotations

import torch
from torch import nn

from memnets.cells.elman import ElmanCell


class IRNNCell(ElmanCell):
    r"""IRNN cell (Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of
    rectified linear units", 2015).

    .. math::
        h_t = \mathrm{ReLU}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}), \qquad y_t = h_t

    initialised with

    .. math::
        W_{hh} = s \, I, \qquad b_{ih} = b_{hh} = 0, \qquad
        (W_{ih})_{jk} \sim \mathcal{N}(0, \sigma^2)

    where :math:`s` is ``identity_scale`` (1 for the identity; the paper
    also starts some models from a scaled identity) and :math:`\sigma`
    is ``input_std``.  It is an :class:`~memnets.cells.ElmanCell` with the
    ReLU nonlinearity; only the initialisation differs.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` (H).
        bias: if False, no ``b_ih`` and ``b_hh``.
        identity_scale: the recurrent matrix starts as ``identity_scale * I``.
        input_std: standard deviation of the Gaussian that ``W_ih`` is drawn from.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`~memnets.cells.ElmanState`
    ``(h,)`` with ``h`` ``(N, H)``; output ``y_t = h_t`` ``(N, H)``.

    Attributes:
        weight_ih: ``(H, H_in)``, from :math:`\mathcal{N}(0, \sigma^2)`.
        weight_hh: ``(H, H)``, ``identity_scale * I``.
        bias_ih, bias_hh: ``(H,)``, zero.

    Departures from the paper:

    * The paper writes the non-recurrent weights as drawn from a Gaussian of
      mean 0 and standard deviation 0.001; ``input_std=1e-3`` is that value.
      (For large inputs a bigger value may train faster; it is an option.)
    * Two bias vectors (``b_ih`` and ``b_hh``) as in ``torch.nn.RNNCell``, so
      that the weights load into :class:`memnets.RNN` with ``nonlinearity="relu"``;
      their sum is the paper's single bias, so the model is the same but the
      parameter count is ``H * (H_in + H + 2)`` instead of the paper's
      ``H * (H_in + H + 1)``.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.IRNNCell(3, 4)
        >>> torch.equal(cell.weight_hh, torch.eye(4))      # the recurrent matrix starts as I
        True
        >>> x, h = torch.randn(2, 3), torch.randn(2, 4)
        >>> y, state = cell(x, memnets.ElmanState(h))
        >>> torch.allclose(y, torch.relu(x @ cell.weight_ih.T + h), atol=1e-6)  # zero biases
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        identity_scale: float = 1.0,
        input_std: float = 1e-3,
        device=None,
        dtype=None,
    ) -> None:
        if input_std < 0:
            raise ValueError(f"expected input_std >= 0, got {input_std}")
        self.identity_scale = float(identity_scale)
        self.input_std = float(input_std)
        super().__init__(
            input_size, hidden_size, bias, nonlinearity="relu", device=device, dtype=dtype
        )

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight_ih, 0.0, self.input_std)
        with torch.no_grad():
            self.weight_hh.copy_(torch.eye(self.hidden_size) * self.identity_scale)
        if self.bias_ih is not None:
            nn.init.zeros_(self.bias_ih)
            nn.init.zeros_(self.bias_hh)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.identity_scale != 1.0:
            s += f", identity_scale={self.identity_scale}"
        if self.input_std != 1e-3:
            s += f", input_std={self.input_std}"
        return s
