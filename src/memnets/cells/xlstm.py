"""The xLSTM cells: sLSTM (scalar memory, memory mixing within heads) and mLSTM
(matrix memory, a recurrent step and a parallel whole-sequence form).

Beck, Pöppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter &
Hochreiter, "xLSTM: Extended Long Short-Term Memory", 2024.

Both cells use the paper's exponential input gate with a normaliser state and a
stabiliser state ``m``: the state holds the memory divided by ``exp(m)``, so that
the exponential gates never overflow, and the outputs are those of the
unstabilised equations.  The residual xLSTM blocks (up-projections,
convolutions, group norm) are not cells and do not live here.

This module may import torch, :mod:`memnets.errors` and :mod:`memnets.cells` modules.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import (
    RecurrentCell,
    capturing_graph,
    check_size,
    check_sizes,
    register_state,
)
from memnets.errors import ConfigError

_FORGET_GATES = ("sigmoid", "exp")


def _head_dim(hidden_size: int, num_heads) -> int:
    """``hidden_size // num_heads``, refusing a ``num_heads`` that does not divide it."""
    check_size("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ConfigError(
            f"expected hidden_size divisible by num_heads (hidden_size = num_heads x "
            f"head_dim), got hidden_size={hidden_size} and num_heads={num_heads}"
        )
    return hidden_size // num_heads


def _check_forget_gate(forget_gate: str) -> str:
    if forget_gate not in _FORGET_GATES:
        raise ValueError(f"expected forget_gate one of {list(_FORGET_GATES)}, got {forget_gate!r}")
    return forget_gate


def _log_forget(a_f: Tensor, forget_gate: str) -> Tensor:
    """``log f`` from the forget pre-activation: ``log σ(a)`` or ``a`` (exponential gate).

    ``log σ(a) = -softplus(-a)``, rather than ``F.logsigmoid``, whose CPU kernel
    costs milliseconds per call on small tensors when torch runs several threads
    (it is called at every step).  Beyond softplus's threshold (a < -20) it returns
    ``a``, off by less than exp(-20).
    """
    return -F.softplus(-a_f) if forget_gate == "sigmoid" else a_f


def _forget_bias_values(forget_bias, forget_gate: str, count: int) -> Tensor:
    """The initial forget biases: a float, a ``(low, high)`` range spread evenly over
    ``count`` units or heads, or ``None`` for the default of the gate kind."""
    if forget_bias is None:
        forget_bias = (3.0, 6.0) if forget_gate == "sigmoid" else 0.0
    if isinstance(forget_bias, (tuple, list)):
        if len(forget_bias) != 2:
            raise ValueError(f"expected forget_bias a float or a (low, high) pair, "
                             f"got {forget_bias!r}")
        low, high = (float(b) for b in forget_bias)
        return torch.linspace(low, high, count, dtype=torch.float64)
    return torch.full((count,), float(forget_bias), dtype=torch.float64)


def _zeros(cell: nn.Module, shape: tuple[int, ...], device, dtype) -> Tensor:
    """A zero tensor on the cell's device and dtype unless given."""
    if device is None or dtype is None:
        p = next(cell.parameters())
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
    return torch.zeros(shape, device=device, dtype=dtype)


def _stabilised_gates(log_i: Tensor, log_f: Tensor, m_prev: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the stabiliser: ``m_t = max(log f_t + m_{t-1}, log i_t)``,
    ``i' = exp(log i_t - m_t)``, ``f' = exp(log f_t + m_{t-1} - m_t)``."""
    decayed = log_f + m_prev
    m = torch.maximum(decayed, log_i)
    return torch.exp(log_i - m), torch.exp(decayed - m), m


# --- sLSTM --------------------------------------------------------------------------


@register_state
class SLSTMState(NamedTuple):
    """State of :class:`SLSTMCell`, each ``(N, H)``: ``h``; the stabilised cell ``c``
    and normaliser ``n`` (the paper's c_t and n_t divided by ``exp(m)``); ``m``."""

    h: Tensor
    c: Tensor
    n: Tensor
    m: Tensor


class SLSTMCell(RecurrentCell):
    r"""sLSTM cell: an LSTM with an exponential input gate, a normaliser state and
    memory mixing within heads (Beck et al., "xLSTM: Extended Long Short-Term
    Memory", 2024, section 2.2).

    .. math::
        \begin{aligned}
        \tilde a_t &= W x_t + R\, h_{t-1} + b
            = [\tilde\imath_t; \tilde f_t; \tilde z_t; \tilde o_t] \\
        i_t &= \exp(\tilde\imath_t), \quad
        f_t = \sigma(\tilde f_t) \text{ or } \exp(\tilde f_t), \quad
        z_t = \tanh(\tilde z_t), \quad o_t = \sigma(\tilde o_t) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot z_t, \qquad
        n_t = f_t \odot n_{t-1} + i_t, \qquad
        h_t = o_t \odot c_t / n_t, \qquad y_t = h_t
        \end{aligned}

    :math:`R` is block-diagonal: the H units form ``num_heads`` heads of
    ``head_dim`` units, and a unit's gates see only its own head's
    :math:`h_{t-1}` (memory mixing within a head, none across heads).

    The step is computed in the paper's stabilised form, which has the same
    outputs and gradients but never overflows: with :math:`\log f_t` =
    :math:`\log\sigma(\tilde f_t)` or :math:`\tilde f_t`,

    .. math::
        m_t = \max(\log f_t + m_{t-1}, \tilde\imath_t), \quad
        i'_t = \exp(\tilde\imath_t - m_t), \quad
        f'_t = \exp(\log f_t + m_{t-1} - m_t)

    and :math:`c, n` are updated with :math:`i', f'` in place of :math:`i, f`;
    the state's ``c`` and ``n`` are the paper's divided by :math:`e^{m_t}`, so
    their ratio is unchanged.

    The recurrence mixes memory through :math:`h_{t-1}`, so the cell has no
    parallel form: ``parallel`` is False and a layer runs it step by step.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` and of each state field (H);
            ``hidden_size = num_heads * head_dim``.
        num_heads: number of heads (default 1: one head, full memory mixing,
            which fits every hidden size; the paper's sLSTM blocks use 4).
        forget_gate: ``"sigmoid"`` (default: f ≤ 1, so memory never grows; the
            form the paper's parallel mLSTM derivation uses) or ``"exp"``.
        forget_bias: initial forget-gate bias: a float, a ``(low, high)`` range
            spread evenly over the H units, or ``None`` (default) for
            ``(3.0, 6.0)`` with the sigmoid gate (σ(3) ≈ 0.95 to σ(6) ≈ 0.998:
            the gate starts open, with memory time scales of about 20 to 400
            steps) and ``0.0`` with the exponential gate (f = 1: nothing is
            forgotten at first).  Initialisation only.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`SLSTMState` ``(h, c, n, m)``,
    each ``(N, H)``; output ``y_t = h_t`` ``(N, H)``.  The zero state has
    ``n = 0`` and ``m = 0``.

    The gate blocks are in the order i, f, z, o, as torch.nn.LSTM's i, f, g, o.

    Attributes:
        weight_ih: ``(4H, H_in)``, Xavier-uniform per gate.
        weight_hh: ``(4H, head_dim)``: row ``g·H + k·head_dim + j`` holds the
            recurrent weights of unit j of head k for gate g from the
            ``head_dim`` units of head k; orthogonal per gate and head, as the
            LSTM of this zoo.
        bias: ``(4H,)``; zero except the forget block (``forget_bias``).

    Departures from the paper: the sLSTM block around the cell (group norm,
    causal convolution, gated MLP) is not part of the cell; the paper leaves
    the initialisation open, the one above is ours.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.SLSTMCell(3, 8, num_heads=2)    # two heads of 4 units
        >>> cell.weight_hh.shape                           # recurrent weights within a head
        torch.Size([32, 4])
        >>> with torch.no_grad():
        ...     _ = cell.bias[:8].fill_(200.0)             # input gates exp(200): past float32
        >>> out, state = memnets.Recurrent(cell)(torch.randn(20, 2, 3))
        >>> out.shape, state.m.shape
        (torch.Size([20, 2, 8]), torch.Size([2, 8]))
        >>> bool(out.isfinite().all()), bool((state.m > 150).all())   # m carries the scale
        (True, True)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_heads: int = 1,
        forget_gate: str = "sigmoid",
        forget_bias: float | tuple[float, float] | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        self.head_dim = _head_dim(hidden_size, num_heads)
        self.num_heads = int(num_heads)
        self.forget_gate = _check_forget_gate(forget_gate)
        _forget_bias_values(forget_bias, forget_gate, 1)  # refuse a bad value here
        self.forget_bias = forget_bias
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, self.head_dim, **factory))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H, d = self.hidden_size, self.head_dim
        with torch.no_grad():
            for g in range(4):
                nn.init.xavier_uniform_(self.weight_ih[g * H : (g + 1) * H])
                for k in range(self.num_heads):
                    row = g * H + k * d
                    nn.init.orthogonal_(self.weight_hh[row : row + d])
            nn.init.zeros_(self.bias)
            self.bias[H : 2 * H].copy_(
                _forget_bias_values(self.forget_bias, self.forget_gate, H))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> SLSTMState:
        return SLSTMState(*(_zeros(self, (batch_size, self.hidden_size), device, dtype)
                            for _ in range(4)))

    def project_input(self, x: Tensor) -> Tensor:
        return x @ self.weight_ih.t() + self.bias  # (*, 4H)

    def recur(self, u_t: Tensor, state: SLSTMState) -> tuple[Tensor, SLSTMState]:
        N, H, K, d = u_t.shape[0], self.hidden_size, self.num_heads, self.head_dim
        if K == 1:  # one head: R is a full matrix
            a = torch.addmm(u_t, state.h, self.weight_hh.t())  # (N, 4H)
        else:
            R = self.weight_hh.view(4, K, d, d)  # (gate, head, unit, unit of the same head)
            mixed = torch.einsum("nkj,gkij->ngki", state.h.view(N, K, d), R)  # (N, 4, K, d)
            a = u_t + mixed.reshape(N, 4 * H)
        a_i, a_f, a_z, a_o = a.chunk(4, dim=1)  # (N, H) each
        i, f, m = _stabilised_gates(a_i, _log_forget(a_f, self.forget_gate), state.m)
        c = f * state.c + i * torch.tanh(a_z)  # (N, H), divided by exp(m)
        n = f * state.n + i
        h = torch.sigmoid(a_o) * (c / n)
        return h, SLSTMState(h, c, n, m)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        s += f", num_heads={self.num_heads}" if self.num_heads != 1 else ""
        s += f", forget_gate={self.forget_gate!r}" if self.forget_gate != "sigmoid" else ""
        return s + (f", forget_bias={self.forget_bias!r}" if self.forget_bias is not None else "")


# --- mLSTM --------------------------------------------------------------------------


@register_state
class MLSTMState(NamedTuple):
    """State of :class:`MLSTMCell`: the stabilised matrix memory ``C``
    ``(N, heads, d, d)`` and normaliser ``n`` ``(N, heads, d)`` (the paper's C_t
    and n_t divided by ``exp(m)``), and the stabiliser ``m`` ``(N, heads)``."""

    C: Tensor
    n: Tensor
    m: Tensor


_MODES = ("parallel", "step")


class MLSTMCell(RecurrentCell):
    r"""mLSTM cell: a matrix memory with a covariance update, written and read
    through keys, values and queries, with no memory mixing (Beck et al.,
    "xLSTM: Extended Long Short-Term Memory", 2024, section 2.3).

    Per head, with d = ``head_dim``:

    .. math::
        \begin{aligned}
        q_t &= W_q x_t + b_q, \quad k_t = \tfrac{1}{\sqrt d} W_k x_t + b_k, \quad
        v_t = W_v x_t + b_v \\
        i_t &= \exp(w_i^\top x_t + b_i), \quad
        f_t = \sigma(w_f^\top x_t + b_f) \text{ or } \exp(w_f^\top x_t + b_f), \quad
        o_t = \sigma(W_o x_t + b_o) \\
        C_t &= f_t C_{t-1} + i_t\, v_t k_t^\top, \qquad n_t = f_t n_{t-1} + i_t k_t \\
        \tilde h_t &= C_t q_t / \max(|n_t^\top q_t|, 1), \qquad
        h_t = o_t \odot \tilde h_t, \qquad y_t = h_t
        \end{aligned}

    :math:`i_t, f_t` are scalars per head; :math:`o_t, h_t` have the H =
    ``num_heads * head_dim`` features of all heads.  Every gate and q, k, v
    depend on the input alone, so the whole sequence can be computed at once.

    **Stabilised step** (``mode="step"``), as in the paper: with
    :math:`\tilde\imath_t = \log i_t`,
    :math:`m_t = \max(\log f_t + m_{t-1}, \tilde\imath_t)`, C and n are
    updated with :math:`i' = \exp(\tilde\imath_t - m_t)` and
    :math:`f' = \exp(\log f_t + m_{t-1} - m_t)` and read with
    :math:`\tilde h_t = C_t q_t / \max(|n_t^\top q_t|, \exp(-m_t))`; the
    state holds :math:`C_t e^{-m_t}`, :math:`n_t e^{-m_t}` and :math:`m_t`,
    and the outputs are exactly the unstabilised ones.

    **Parallel form** (``mode="parallel"``, the default; :meth:`scan`): with
    :math:`F_{t,s} = \sum_{r=s+1}^{t} \log f_r` and the initial state
    entering as a step 0 of log-weight :math:`m_0`,

    .. math::
        \begin{aligned}
        \tilde D_{t,s} &= F_{t,s} + \tilde\imath_s \;(1 \le s \le t), \quad
        \tilde D_{t,0} = F_{t,0} + m_0, \quad \tilde D_{t,s} = -\infty \;(s > t) \\
        m_t &= \max_{0 \le s \le t} \tilde D_{t,s}, \qquad
        D'_{t,s} = \exp(\tilde D_{t,s} - m_t) \\
        \tilde h_t &= \frac{\sum_{s \ge 1} D'_{t,s} (q_t^\top k_s) v_s + D'_{t,0} C_0 q_t}
                   {\max\big(\big|\sum_{s \ge 1} D'_{t,s} q_t^\top k_s
                     + D'_{t,0}\, n_0^\top q_t\big|,\ \exp(-m_t)\big)}
        \end{aligned}

    which is the stabilised step unrolled (its :math:`m_t` unrolls to this row
    maximum), so the final state :math:`(C'_T, n'_T, m_T)` follows from the
    last row exactly.  Padded steps (``valid`` false) get :math:`\log f = 0`
    and weight zero, so they change nothing and each sequence's final state is
    the one after its own last valid step.  With ``chunk_size`` the sequence is
    cut into chunks, each computed in the parallel form from the state the
    previous one left: time and memory grow as :math:`T \cdot` ``chunk_size``
    instead of :math:`T^2`.  Every mode and chunk size has the same parameters,
    state_dict and results.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` (H); ``hidden_size = num_heads * head_dim``.
        num_heads: number of heads, each with its own d x d memory (default 1,
            which fits every hidden size; the paper's blocks use 4).
        mode: ``"parallel"`` (``Recurrent`` calls :meth:`scan` once) or
            ``"step"`` (``Recurrent`` loops over :meth:`recur`).
        chunk_size: the chunk length of the parallel form (default 64), or
            ``None`` for the whole sequence as one chunk (the paper's parallel
            form; its T x T work and memory were slower than the step loop on
            this project's CPU already at T = 512, chunks of 64 about 7x faster
            than the loop; see docs/cells.md).  A trace for export takes the whole
            sequence as one chunk (:meth:`scan`, docs/export.md).
        forget_gate: ``"sigmoid"`` (default) or ``"exp"``.
        forget_bias: initial forget bias: a float, a ``(low, high)`` range
            spread evenly over the heads, or ``None`` (default) for
            ``(3.0, 6.0)`` with the sigmoid gate and ``0.0`` with the
            exponential one (see :class:`SLSTMCell`).  Initialisation only.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`MLSTMState` ``(C, n, m)``
    with ``C`` ``(N, heads, d, d)``, ``n`` ``(N, heads, d)``, ``m`` ``(N, heads)``
    (zero state: all zero); output ``y_t = h_t`` ``(N, H)``.

    The row blocks of ``weight_ih`` and ``bias`` are, in order: q, k, v, o of H rows
    each, then the input gates and the forget gates of one row per head.

    Attributes:
        weight_ih: ``(4H + 2·heads, H_in)``; q, k, v, o Xavier-uniform per
            block, the gate rows zero (the gates start independent of the
            input, each head a memory with the fixed time scale its forget bias
            sets).
        bias: ``(4H + 2·heads,)``; zero except the forget gates (``forget_bias``).

    Departures from the paper: the mLSTM block around the cell (up-projection,
    causal convolution before q and k, learnable skip, group norm) is not part
    of the cell; the initialisation is ours; the parallel form also takes a
    non-zero initial state (the paper's starts from zero).

    Examples::

        >>> import torch, memnets
        >>> par = memnets.MLSTMCell(3, 8, num_heads=2)     # mode="parallel"
        >>> step = memnets.MLSTMCell(3, 8, num_heads=2, mode="step")
        >>> _ = step.load_state_dict(par.state_dict())
        >>> x = torch.randn(6, 2, 3)
        >>> out, state = memnets.Recurrent(par)(x)         # the whole sequence at once
        >>> out.shape, state.C.shape                       # C: (N, heads, d, d)
        (torch.Size([6, 2, 8]), torch.Size([2, 2, 4, 4]))
        >>> torch.allclose(out, memnets.Recurrent(step)(x)[0], atol=1e-5)
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_heads: int = 1,
        mode: str = "parallel",
        chunk_size: int | None = 64,
        forget_gate: str = "sigmoid",
        forget_bias: float | tuple[float, float] | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        self.head_dim = _head_dim(hidden_size, num_heads)
        self.num_heads = int(num_heads)
        if mode not in _MODES:
            raise ValueError(f"expected mode one of {list(_MODES)}, got {mode!r}")
        self.mode = mode
        self.parallel = mode == "parallel"
        self.chunk_size = None if chunk_size is None else check_size("chunk_size", chunk_size)
        self.forget_gate = _check_forget_gate(forget_gate)
        _forget_bias_values(forget_bias, forget_gate, 1)  # refuse a bad value here
        self.forget_bias = forget_bias
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        rows = 4 * hidden_size + 2 * self.num_heads
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **factory))
        self.bias = nn.Parameter(torch.empty(rows, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H, K = self.hidden_size, self.num_heads
        with torch.no_grad():
            for g in range(4):  # q, k, v, o
                nn.init.xavier_uniform_(self.weight_ih[g * H : (g + 1) * H])
            nn.init.zeros_(self.weight_ih[4 * H :])
            nn.init.zeros_(self.bias)
            self.bias[4 * H + K :].copy_(
                _forget_bias_values(self.forget_bias, self.forget_gate, K))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> MLSTMState:
        K, d = self.num_heads, self.head_dim
        return MLSTMState(
            _zeros(self, (batch_size, K, d, d), device, dtype),
            _zeros(self, (batch_size, K, d), device, dtype),
            _zeros(self, (batch_size, K), device, dtype),
        )

    def project_input(self, x: Tensor) -> Tensor:
        H = self.hidden_size
        w = self.weight_ih
        # the key block is scaled by 1/sqrt(d) before its bias, as the paper writes k_t
        w = torch.cat([w[:H], w[H : 2 * H] / math.sqrt(self.head_dim), w[2 * H :]])
        return x @ w.t() + self.bias  # (*, 4H + 2 heads)

    def _split(self, u: Tensor):
        """``u`` ``(*, 4H + 2K)`` -> q, k, v ``(*, K, d)``, o ``(*, H)``, log i and the
        forget pre-activation ``(*, K)``."""
        H, K, d = self.hidden_size, self.num_heads, self.head_dim
        lead = u.shape[:-1]
        q, k, v, o = (u[..., g * H : (g + 1) * H].reshape(*lead, K, d) for g in range(4))
        return q, k, v, o.reshape(*lead, H), u[..., 4 * H : 4 * H + K], u[..., 4 * H + K :]

    def recur(self, u_t: Tensor, state: MLSTMState) -> tuple[Tensor, MLSTMState]:
        q, k, v, o, log_i, a_f = self._split(u_t)  # (N, K, d) x3, (N, H), (N, K) x2
        i, f, m = _stabilised_gates(log_i, _log_forget(a_f, self.forget_gate), state.m)
        C = f[..., None, None] * state.C + i[..., None, None] * (v[..., :, None] * k[..., None, :])
        n = f[..., None] * state.n + i[..., None] * k  # (N, K, d)
        num = (C @ q[..., None]).squeeze(-1)  # (N, K, d): C_t q_t
        den = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m))  # (N, K)
        h = torch.sigmoid(o) * (num / den[..., None]).flatten(-2)  # (N, H)
        return h, MLSTMState(C, n, m)

    def scan(self, u: Tensor, state: MLSTMState, valid: Tensor | None
             ) -> tuple[Tensor, MLSTMState]:
        """The parallel form over ``u`` ``(T, N, U)``, chunk by chunk when
        ``chunk_size`` is set; see the class docstring.  While a graph is recorded
        for export (:func:`~memnets.cells.base.capturing_graph`) the whole sequence
        is one chunk: a recorded chunk loop would hold the traced length only, one
        chunk holds every length (with ``T x T`` memory)."""
        if self.chunk_size is None or capturing_graph():
            return self._parallel(u, state, valid)
        T, L = u.shape[0], self.chunk_size
        outputs = []
        for start in range(0, T, L):
            chunk_valid = None if valid is None else valid[start : start + L]
            out, state = self._parallel(u[start : start + L], state, chunk_valid)
            outputs.append(out)
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0], state

    def _parallel(self, u: Tensor, state: MLSTMState, valid: Tensor | None
                  ) -> tuple[Tensor, MLSTMState]:
        T, N = u.shape[:2]
        q, k, v, o, log_i, a_f = self._split(u)  # (T, N, K, d) x3, (T, N, H), (T, N, K) x2
        q, k, v = (t.permute(1, 2, 0, 3) for t in (q, k, v))  # (N, K, T, d)
        log_i = log_i.permute(1, 2, 0)  # (N, K, T)
        log_f = _log_forget(a_f, self.forget_gate).permute(1, 2, 0)  # (N, K, T)
        allowed = torch.ones(T, T + 1, dtype=torch.bool, device=u.device).tril(1)  # s <= t
        if valid is not None:
            keep = valid.t()[:, None, :]  # (N, 1, T)
            log_f = torch.where(keep, log_f, 0.0)  # a padded step decays nothing...
            first = keep.new_ones(N, 1, 1)
            allowed = allowed & torch.cat([first, keep], -1)[..., None, :]  # ...and writes nothing
        # columns s = 0..T (0: the initial state), rows t = 1..T
        log_f0 = torch.cat([log_f.new_zeros(N, self.num_heads, 1), log_f], -1)  # (N, K, T+1)
        F_ts = _segment_sums(log_f0)[..., 1:, :]  # (N, K, T, T+1): sum of log f over s+1..t
        entry = torch.cat([state.m[..., None], log_i], -1)  # (N, K, T+1): log i_s; m_0 at s=0
        D = torch.where(allowed, F_ts + entry[..., None, :], -math.inf)  # (N, K, T, T+1)
        m = D.amax(-1)  # (N, K, T): the stabiliser of every step
        W = torch.exp(D - m[..., None])  # (N, K, T, T+1); exactly 0 where not allowed
        w0, Ws = W[..., 0], W[..., 1:]  # (N, K, T), (N, K, T, T)
        A = Ws * (q @ k.transpose(-1, -2))  # (N, K, T, T): D'_ts q_t.k_s
        num = A @ v + w0[..., None] * (q @ state.C.transpose(-1, -2))  # (N, K, T, d)
        den = A.sum(-1) + w0 * (q @ state.n[..., None]).squeeze(-1)  # (N, K, T)
        den = torch.maximum(den.abs(), torch.exp(-m))
        h_tilde = (num / den[..., None]).permute(2, 0, 1, 3).reshape(T, N, self.hidden_size)
        h = torch.sigmoid(o) * h_tilde  # (T, N, H)
        # the final state from the last row (padded steps keep it as it was)
        w_last0, w_last = w0[..., -1], Ws[..., -1, :]  # (N, K), (N, K, T)
        C = w_last0[..., None, None] * state.C + (v * w_last[..., None]).transpose(-1, -2) @ k
        n = w_last0[..., None] * state.n + (w_last[..., None] * k).sum(-2)  # (N, K, d)
        return h, MLSTMState(C, n, m[..., -1])

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        s += f", num_heads={self.num_heads}" if self.num_heads != 1 else ""
        s += f", mode={self.mode!r}" if self.mode != "parallel" else ""
        s += f", chunk_size={self.chunk_size}" if self.chunk_size != 64 else ""
        s += f", forget_gate={self.forget_gate!r}" if self.forget_gate != "sigmoid" else ""
        return s + (f", forget_bias={self.forget_bias!r}" if self.forget_bias is not None else "")


def _segment_sums(x: Tensor) -> Tensor:
    """``out[..., t, s] = x[..., s+1] + ... + x[..., t]`` for ``s < t``, 0 for ``s >= t``;
    ``x`` ``(*, S)``, out ``(*, S, S)``.  Summed directly rather than as a difference
    of running sums, which would lose precision once the running sum is large."""
    S = x.shape[-1]
    later = torch.ones(S, S, dtype=torch.bool, device=x.device).tril(-1)  # r > s
    terms = torch.where(later, x[..., :, None], 0.0)  # (*, r, s): x_r where r > s
    return terms.cumsum(-2)
