r"""minGRU and minLSTM: the minimal RNNs whose gates read the input only, so that a
whole sequence is one linear scan.

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?", 2024.
Removing the previous state from every gate and from the candidate of a GRU or
an LSTM leaves the elementwise linear recurrence

.. math::
    h_t = a_t \odot h_{t-1} + b_t,

with :math:`a_t` and :math:`b_t` functions of :math:`x_t` alone.  Each cell
therefore has two modes with the same parameters, state_dict and results:
``"step"`` (a :class:`~memnets.cells.base.RecurrentCell` stepped by
:class:`~memnets.layers.Recurrent`) and ``"parallel"`` (the whole sequence in
:meth:`scan`, through :mod:`memnets.cells.scan`).  This module may import torch
and other :mod:`memnets.cells` modules.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, check_sizes, register_state
from memnets.cells.elman import _zeros
from memnets.cells.scan import carry_padded, linear_scan, log_linear_scan

_MODES = ("parallel", "step")


@register_state
class MinGRUState(NamedTuple):
    """State of :class:`MinGRUCell`: ``h`` of shape ``(N, H)``."""

    h: Tensor


@register_state
class MinLSTMState(NamedTuple):
    """State of :class:`MinLSTMCell`: ``h`` of shape ``(N, H)`` (the cell state is the output)."""

    h: Tensor


def _log_g(x: Tensor) -> Tensor:
    r""":math:`\log g(x)` for the paper's positive candidate activation
    :math:`g(x) = x + \tfrac12` for :math:`x \ge 0`, :math:`\sigma(x)` for :math:`x < 0`
    (continuous at 0, where both are :math:`\tfrac12`)."""
    # clamp: the branch not taken must stay finite, or its gradient turns NaN
    return torch.where(x >= 0, torch.log(x.clamp(min=0) + 0.5), F.logsigmoid(x))


class _MinimalCell(RecurrentCell):
    r"""What minGRU and minLSTM share: one input product for every gate, the linear
    step :math:`h_t = a_t \odot h_{t-1} + b_t`, and its scan.

    :meth:`project_input` returns ``u = [a; b]`` ``(*, 2H)`` — with ``log_space``
    their logarithms ``[log a; log b]`` — so the step does no more than one
    multiply-add and the parallel mode feeds ``u`` to the scan directly.
    Subclasses set ``_blocks`` (the gate blocks of ``weight_ih``) and implement
    :meth:`_coefficients`.
    """

    _blocks: tuple[str, ...]
    _state_type: type

    def __init__(self, input_size: int, hidden_size: int, bias: bool, mode: str,
                 log_space: bool, device, dtype, scan_method: str = "associative") -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        if mode not in _MODES:
            raise ValueError(f"expected mode 'parallel' or 'step', got {mode!r}")
        if scan_method not in ("associative", "heinsen"):
            raise ValueError(f"expected scan_method 'associative' or 'heinsen', "
                             f"got {scan_method!r}")
        self.scan_method = scan_method
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.parallel = mode == "parallel"
        self.log_space = bool(log_space)
        G = len(self._blocks)
        self.weight_ih = nn.Parameter(torch.empty(G * hidden_size, input_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
        self.reset_parameters()

    @property
    def mode(self) -> str:
        """``"parallel"`` or ``"step"``; set ``cell.parallel`` to switch (same parameters)."""
        return "parallel" if self.parallel else "step"

    def reset_parameters(self) -> None:
        """Xavier-uniform per gate block; zero biases."""
        H = self.hidden_size
        for k in range(len(self._blocks)):
            nn.init.xavier_uniform_(self.weight_ih[k * H : (k + 1) * H])
        if self.bias_ih is not None:
            nn.init.zeros_(self.bias_ih)

    def init_state(self, batch_size: int, *, device=None, dtype=None):
        return self._state_type(_zeros(self, batch_size, self.hidden_size, device, dtype))

    def _coefficients(self, k: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """``(a, b)`` from the gate pre-activations, or ``(log a, log b)`` with ``log_space``."""
        raise NotImplementedError

    def project_input(self, x: Tensor) -> Tensor:
        k = x @ self.weight_ih.t()  # (*, G·H): one product for every gate
        if self.bias_ih is not None:
            k = k + self.bias_ih
        a, b = self._coefficients(k.chunk(len(self._blocks), -1))  # (*, H) each
        return torch.cat([a, b], -1)  # (*, 2H)

    def recur(self, u_t: Tensor, state):
        """One step, :math:`h_t = a_t \\odot h_{t-1} + b_t`; ``u_t`` ``(N, 2H)``."""
        # in the state's dtype if wider (bfloat16 autocast, float32 state), as in scan
        u_t = u_t.to(torch.promote_types(u_t.dtype, state.h.dtype))
        a, b = u_t.chunk(2, -1)  # (N, H) each
        if self.log_space:
            a, b = a.exp(), b.exp()
        h = torch.addcmul(b, a, state.h)  # a ⊙ h_{t-1} + b
        return h, self._state_type(h)

    def scan(self, u: Tensor, state, valid: Tensor | None):
        """Every step at once: ``u`` ``(T, N, 2H)``, ``valid`` ``(T, N)`` or ``None``;
        returns ``h`` ``(T, N, H)`` and the state after each sequence's last valid step."""
        u = u.to(torch.promote_types(u.dtype, state.h.dtype))  # as in recur
        a, b = carry_padded(*u.chunk(2, -1), valid, log_space=self.log_space)  # (T, N, H) each
        if self.log_space and self.scan_method == "heinsen":
            # h_t = exp(log-scan from h_0 = 0) + (a_1 ⋯ a_t) h_0: the initial state
            # enters linearly, so it may be zero or negative
            h = log_linear_scan(a, b).exp() + torch.cumsum(a, 0).exp() * state.h
        elif self.log_space:
            # the associative scan on a_t in (0, 1) and b_t > 0 only multiplies and
            # adds positive numbers (no division, no cumulative product), so it is
            # as stable as the step; on CPU it is several times faster than
            # torch.logcumsumexp
            h = linear_scan(a.exp(), b.exp(), state.h)  # (T, N, H)
        else:
            h = linear_scan(a, b, state.h)  # (T, N, H)
        return h, self._state_type(h[-1])  # padded steps carried the state: the last row is final

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, mode={self.mode!r}"
        s += "" if self.log_space else ", log_space=False"
        s += "" if self.scan_method == "associative" else f", scan_method={self.scan_method!r}"
        return s + ("" if self.bias_ih is not None else ", bias=False")


class MinGRUCell(_MinimalCell):
    r"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?", 2024):
    a GRU whose update gate and candidate read the input only.

    .. math::
        \begin{aligned}
        z_t &= \sigma(W_z x_t + b_z) \\
        \tilde h_t &= W_h x_t + b_h
            \quad\text{or, with } \texttt{log\_space}, \quad g(W_h x_t + b_h) \\
        h_t &= (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t, \qquad y_t = h_t
        \end{aligned}

    with :math:`g(x) = x + \tfrac12` for :math:`x \ge 0` and :math:`\sigma(x)` below,
    the paper's activation that keeps :math:`\tilde h_t > 0` for its log-space form.
    The recurrence is linear, :math:`h_t = a_t \odot h_{t-1} + b_t` with
    :math:`a_t = 1 - z_t`, :math:`b_t = z_t \odot \tilde h_t`, so the whole sequence is a
    scan (:mod:`memnets.cells.scan`); :math:`k_z, k_h` below are the two
    pre-activations :math:`W_z x_t + b_z`, :math:`W_h x_t + b_h`.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` (H).
        bias: if False, no ``b_z``, ``b_h``.
        mode: ``"parallel"`` (default): :class:`~memnets.layers.Recurrent` runs the
            whole sequence through :meth:`scan`; ``"step"``: step by step through
            :meth:`recur`.  Same parameters, state_dict and results (to rounding).
        log_space: ``True`` (default, the paper's log-space version): :math:`g` on the
            candidate and the scan in log space (:func:`~memnets.cells.scan.log_linear_scan`,
            Heinsen 2023), stable over any length; the coefficients are
            :math:`\log a_t = \log\sigma(-k_z)`, :math:`\log b_t = \log\sigma(k_z) + \log g(k_h)`.
            ``False``: the plain equations, a linear candidate and
            :func:`~memnets.cells.scan.linear_scan`.  This changes the model (the
            candidate's activation), not only the arithmetic: a state_dict loads
            either way, but computes a different function.
        scan_method: how the parallel mode scans in log space: ``"associative"``
            (default: :func:`~memnets.cells.scan.linear_scan` on
            :math:`a_t = e^{\log a_t} \in (0, 1)` and :math:`b_t > 0`, which
            multiplies and adds positive numbers only, as stable as the step and
            several times faster on CPU than ``torch.logcumsumexp``) or
            ``"heinsen"`` (:func:`~memnets.cells.scan.log_linear_scan`, the
            log-cumulative-sum-exp form of Heinsen 2023 that the paper uses).
            Same results to rounding; no effect with ``log_space=False``.

    Shapes (N = batch, H_in = ``input_size``, H = ``hidden_size``): ``x_t``
    ``(N, H_in)``; state :class:`MinGRUState` ``(h,)`` with ``h`` ``(N, H)``; output
    ``y_t = h_t`` ``(N, H)``.  :meth:`project_input` maps ``(*, H_in)`` to
    ``u = [a; b]`` ``(*, 2H)`` (``[log a; log b]`` with ``log_space``).

    The gate blocks are in the order z, h.

    Attributes:
        weight_ih: ``(2H, H_in)``, Xavier-uniform per block, so that the
            pre-activations start with about the input's variance, away from
            saturation.
        bias_ih: ``(2H,)``, zero: the gate starts at :math:`\sigma(0) = \tfrac12` on
            average, favouring neither the old state nor the candidate.  The paper
            states no initialisation.

    Parameter count: ``2 * H * H_in + 2 * H`` (the paper's :math:`O(2 d_h d_x)`,
    against the GRU's :math:`3 d_h (d_x + d_h)`).

    Departures from the paper: both linear maps are blocks of one
    ``weight_ih``, computed in one product; in log space the initial state enters
    linearly, :math:`h_t = \exp(\text{scan})_t + (a_1 \cdots a_t)\, h_0`, instead of
    through :math:`\log h_0`, so it may be zero or negative and its gradient is
    defined at zero; the gates use ``logsigmoid`` (not a thresholded softplus)
    so that both modes are exact in float64.  The paper's deep models (hidden
    expansion, normalisation, MLP blocks) belong to the layers above.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.make_cell("mingru", input_size=3, hidden_size=4)
        >>> out, state = memnets.Recurrent(cell)(torch.randn(7, 2, 3))  # one scan
        >>> out.shape, state.h.shape
        (torch.Size([7, 2, 4]), torch.Size([2, 4]))
    """

    _blocks = ("z", "h")
    _state_type = MinGRUState

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 mode: str = "parallel", log_space: bool = True,
                 scan_method: str = "associative", device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, mode, log_space, device, dtype,
                         scan_method)

    def _coefficients(self, k):
        k_z, k_h = k  # (*, H) each
        if self.log_space:
            return F.logsigmoid(-k_z), F.logsigmoid(k_z) + _log_g(k_h)  # log(1 - z), log(z h̃)
        return torch.sigmoid(-k_z), torch.sigmoid(k_z) * k_h  # 1 - z, z ⊙ h̃


class MinLSTMCell(_MinimalCell):
    r"""minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?", 2024):
    an LSTM whose forget and input gates and candidate read the input only,
    without output gate, and with its gates normalised to sum to one.

    .. math::
        \begin{aligned}
        f_t &= \sigma(W_f x_t + b_f), \qquad i_t = \sigma(W_i x_t + b_i) \\
        f'_t &= \frac{f_t}{f_t + i_t}, \qquad i'_t = \frac{i_t}{f_t + i_t} \\
        \tilde h_t &= W_h x_t + b_h
            \quad\text{or, with } \texttt{log\_space}, \quad g(W_h x_t + b_h) \\
        h_t &= f'_t \odot h_{t-1} + i'_t \odot \tilde h_t, \qquad y_t = h_t
        \end{aligned}

    The normalisation is the paper's length-independence scaling: with
    :math:`f'_t + i'_t = 1` the scale of :math:`h_t` does not grow with the length
    of the sequence.  :math:`g` is as in :class:`MinGRUCell`.  The recurrence is
    :math:`h_t = a_t \odot h_{t-1} + b_t` with :math:`a_t = f'_t`,
    :math:`b_t = i'_t \odot \tilde h_t`.  With :math:`k_f, k_i, k_h` the three
    pre-activations, both normalised gates come from one difference,
    :math:`d_t = \log(i_t / f_t) = \log\sigma(k_i) - \log\sigma(k_f)`:
    :math:`f'_t = \sigma(-d_t)`, :math:`i'_t = \sigma(d_t)` (and their logarithms are
    ``logsigmoid`` of the same), which never divides.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` (H).
        bias: if False, no ``b_f``, ``b_i``, ``b_h``.
        mode: ``"parallel"`` (default) or ``"step"``, as in :class:`MinGRUCell`.
        log_space: as in :class:`MinGRUCell`: ``True`` (default) puts :math:`g` on
            the candidate and scans in log space, with
            :math:`\log a_t = \log\sigma(-d_t)`, :math:`\log b_t = \log\sigma(d_t) + \log g(k_h)`.
        scan_method: as in :class:`MinGRUCell` (``"associative"`` or ``"heinsen"``).

    Shapes: as :class:`MinGRUCell`; state :class:`MinLSTMState` ``(h,)``,
    ``h`` ``(N, H)``.

    The gate blocks are in the order f, i, h.

    Attributes:
        weight_ih: ``(3H, H_in)``, Xavier-uniform per block (as for minGRU).
        bias_ih: ``(3H,)``, zero: :math:`f'_t = i'_t = \tfrac12` on average at first.
            The paper states no initialisation.  A forget-gate bias alone gives
            :math:`f' \approx \sigma(b_f) / (\sigma(b_f) + \tfrac12) < \tfrac23`; longer
            memory at initialisation needs :math:`b_f - b_i` large.

    Parameter count: ``3 * H * H_in + 3 * H`` (the paper's :math:`O(3 d_h d_x)`,
    against the LSTM's :math:`4 d_h (d_x + d_h)`).

    Departures from the paper: those of :class:`MinGRUCell`; the normalised
    gates computed from :math:`d_t` as above (the same values as the paper's
    quotients).

    Examples::

        >>> import torch, memnets
        >>> scan = memnets.MinLSTMCell(3, 4)               # mode="parallel": one scan
        >>> step = memnets.MinLSTMCell(3, 4, mode="step")
        >>> _ = step.load_state_dict(scan.state_dict())    # one state_dict for both modes
        >>> x = torch.randn(6, 2, 3)
        >>> out, state = memnets.Recurrent(scan)(x, lengths=[6, 4])
        >>> out.shape, state.h.shape
        (torch.Size([6, 2, 4]), torch.Size([2, 4]))
        >>> torch.allclose(out, memnets.Recurrent(step)(x, lengths=[6, 4])[0], atol=1e-5)
        True
    """

    _blocks = ("f", "i", "h")
    _state_type = MinLSTMState

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 mode: str = "parallel", log_space: bool = True,
                 scan_method: str = "associative", device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, mode, log_space, device, dtype,
                         scan_method)

    def _coefficients(self, k):
        k_f, k_i, k_h = k  # (*, H) each
        d = F.logsigmoid(k_i) - F.logsigmoid(k_f)  # log(i / f)
        if self.log_space:
            return F.logsigmoid(-d), F.logsigmoid(d) + _log_g(k_h)  # log f', log(i' h̃)
        return torch.sigmoid(-d), torch.sigmoid(d) * k_h  # f', i' ⊙ h̃

