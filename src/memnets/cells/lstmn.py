"""Long Short-Term Memory-Network: an LSTM that reads a tape of its own past states.

The cell is here; the layer that runs it over time and returns its attention
matrix is :class:`memnets.layers.lstmn.LSTMN`.  This module may import torch and
:mod:`memnets.cells.base`.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, _where_batch, check_size, check_sizes, register_state


@register_state
class LSTMNState(NamedTuple):
    """State of :class:`LSTMNCell`: the tape and the last adaptive summary.

    T is the number of tape slots.  Slot 0 holds the initial state; slot ``j``
    the state after the ``j``-th step; the tape grows by one slot per step.

    * ``h``: ``(N, T, H)`` hidden tape :math:`h_0, h_1, \\dots`.
    * ``c``: ``(N, T, H)`` memory tape :math:`c_0, c_1, \\dots`.
    * ``key``: ``(N, T, A)`` :math:`W_h h_i` for every slot, kept so that a step
      costs O(T A) instead of O(T A H); :meth:`LSTMNCell.state_from_tape`
      computes it.
    * ``h_tilde``: ``(N, H)`` the adaptive summary :math:`\\tilde h_{t-1}`.
    * ``mask``: ``(N, T)`` bool, true where the slot holds a state of the
      sequence (false for the slots added during padded steps).
    """

    h: Tensor
    c: Tensor
    key: Tensor
    h_tilde: Tensor
    mask: Tensor


class LSTMNCell(RecurrentCell):
    r"""LSTMN cell (Cheng, Dong & Lapata, "Long short-term memory-networks for
    machine reading", 2016): an LSTM whose memory is a tape of all its previous
    hidden and memory states, read with intra-attention at every step.

    .. math::
        \begin{aligned}
        a_i^t &= v^\top \tanh(W_h h_i + W_x x_t + W_{\tilde h} \tilde h_{t-1}),
            \quad i = 0 \dots t-1 \\
        s^t &= \mathrm{softmax}(a^t) \\
        \tilde h_t &= \textstyle\sum_i s_i^t h_i, \qquad
        \tilde c_t = \textstyle\sum_i s_i^t c_i \\
        [i_t; f_t; g_t; o_t] &= W_{ih} x_t + W_{hh} \tilde h_t + b \\
        c_t &= \sigma(f_t) \odot \tilde c_t + \sigma(i_t) \odot \tanh(g_t) \\
        h_t &= \sigma(o_t) \odot \tanh(c_t), \qquad y_t = h_t
        \end{aligned}

    and :math:`(h_t, c_t)` is appended to the tape.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of ``h_t`` and ``c_t`` (H).
        attention_size: size of the attention layer (A); default H.
        bias: if False, no gate bias ``b``.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`LSTMNState`; output
    ``y_t = h_t`` ``(N, H)``.

    Attributes:
        weight_ih: ``(4H, H_in)`` gate blocks i, f, g, o (torch.nn.LSTM's order),
            Xavier-uniform per gate.
        weight_hh: ``(4H, H)`` acting on :math:`\tilde h_t`, orthogonal per gate.
        bias: ``(4H,)`` zero except the forget block, 1.
        attn_weight_h: ``(A, H)`` :math:`W_h`, Xavier-uniform.
        attn_weight_x: ``(A, H_in)`` :math:`W_x`, Xavier-uniform.
        attn_weight_tilde: ``(A, H)`` :math:`W_{\tilde h}`, Xavier-uniform.
        attn_v: ``(A,)`` :math:`v`, uniform in :math:`\pm 1/\sqrt{A}`.

    Parameters: :math:`4H(H_{in} + H + 1) + A(2H + H_{in} + 1)` (with bias).

    Variable lengths: the tape has one slot per step of the longest sequence;
    a padded step adds a zero slot with ``mask`` false, which attention
    ignores, so a sequence in a batch computes exactly what it computes alone
    (its valid slots are a prefix of the tape).

    Attention weights: :class:`~memnets.layers.lstmn.LSTMN` returns the ``(N, L, L)`` matrix with
    ``return_attention=True``; with any layer, :meth:`record_attention`
    collects the ``(N, T)`` row of every step.

    Regularisers: the state ones (zoneout, state dropout) assume fixed-size
    state fields; apply them to ``h_tilde`` only, never to the tape fields.

    Departures from the paper: the tape starts with the initial state
    :math:`(h_0, c_0)` (zeros by default) as slot 0, so that the first step has
    something to attend to (the paper's sum over :math:`i < t` is empty at
    :math:`t = 1`) and :math:`\tilde h_0 = 0`; the gates have one bias vector
    (the paper leaves biases implicit).

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.LSTMNCell(3, 4)
        >>> state = cell.init_state(2)                     # a tape of one slot: the zero state
        >>> with cell.record_attention() as rows:
        ...     for x_t in torch.randn(5, 2, 3):
        ...         y, state = cell(x_t, state)
        >>> y.shape, state.h.shape                         # the initial slot and one per step
        (torch.Size([2, 4]), torch.Size([2, 6, 4]))
        >>> [row.shape[1] for row in rows]                 # step t reads the t slots before it
        [1, 2, 3, 4, 5]
        >>> torch.allclose(rows[-1].sum(1), torch.ones(2), atol=1e-6)
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        attention_size: int | None = None,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        A = hidden_size if attention_size is None else check_size("attention_size", attention_size)
        factory = {"device": device, "dtype": dtype}
        H = hidden_size
        self.input_size, self.hidden_size, self.output_size = input_size, H, H
        self.attention_size = A
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(4 * H, **factory))
        else:
            self.register_parameter("bias", None)
        self.attn_weight_h = nn.Parameter(torch.empty(A, H, **factory))
        self.attn_weight_x = nn.Parameter(torch.empty(A, input_size, **factory))
        self.attn_weight_tilde = nn.Parameter(torch.empty(A, H, **factory))
        self.attn_v = nn.Parameter(torch.empty(A, **factory))
        self._attention_rows: list[Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        for k in range(4):
            nn.init.xavier_uniform_(self.weight_ih[k * H : (k + 1) * H])
            nn.init.orthogonal_(self.weight_hh[k * H : (k + 1) * H])
        if self.bias is not None:
            nn.init.zeros_(self.bias)
            with torch.no_grad():
                self.bias[H : 2 * H].fill_(1.0)
        for w in (self.attn_weight_h, self.attn_weight_x, self.attn_weight_tilde):
            nn.init.xavier_uniform_(w)
        bound = self.attention_size**-0.5
        nn.init.uniform_(self.attn_v, -bound, bound)

    # --- state -------------------------------------------------------------

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> LSTMNState:
        p = self.weight_ih
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        N, H, A = batch_size, self.hidden_size, self.attention_size
        return LSTMNState(
            torch.zeros(N, 1, H, device=device, dtype=dtype),
            torch.zeros(N, 1, H, device=device, dtype=dtype),
            torch.zeros(N, 1, A, device=device, dtype=dtype),
            torch.zeros(N, H, device=device, dtype=dtype),
            torch.ones(N, 1, device=device, dtype=torch.bool),
        )

    def state_from_tape(
        self,
        h: Tensor,
        c: Tensor,
        mask: Tensor | None = None,
        h_tilde: Tensor | None = None,
    ) -> LSTMNState:
        """Build a state from tapes ``h``, ``c`` ``(N, T, H)``.

        ``mask`` ``(N, T)`` defaults to all true and ``h_tilde`` ``(N, H)`` to zeros.
        """
        if h.dim() != 3 or h.shape != c.shape or h.shape[-1] != self.hidden_size:
            raise ValueError(
                f"expected tapes h and c of the same shape (N, T, {self.hidden_size}), got "
                f"{tuple(h.shape)} and {tuple(c.shape)}"
            )
        N, T, H = h.shape
        if mask is None:
            mask = torch.ones(N, T, dtype=torch.bool, device=h.device)
        if h_tilde is None:
            h_tilde = h.new_zeros(N, H)
        state = LSTMNState(h, c, h @ self.attn_weight_h.t(), h_tilde, mask)
        self.check_state(state, N)
        return state

    def check_state(self, state, batch_size: int) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise ValueError(
                f"expected a state of 5 tensors {LSTMNState._fields} for LSTMNCell, got "
                f"{type(state).__name__}"
            )
        h = state[0]
        if not isinstance(h, Tensor) or h.dim() != 3 or h.shape[1] < 1:
            shape = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(
                f"expected state field 'h' of shape ({batch_size}, T, {self.hidden_size}) "
                f"with T >= 1 tape slots for LSTMNCell, got {shape}"
            )
        N, T, H, A = batch_size, h.shape[1], self.hidden_size, self.attention_size
        want = {"h": (N, T, H), "c": (N, T, H), "key": (N, T, A), "h_tilde": (N, H),
                "mask": (N, T)}
        for (name, shape), got in zip(want.items(), state):
            if not isinstance(got, Tensor) or tuple(got.shape) != shape:
                g = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                raise ValueError(
                    f"expected state field '{name}' of shape {shape} for LSTMNCell, got {g}"
                )
        if state[4].dtype != torch.bool:
            raise ValueError(f"expected state field 'mask' of dtype bool, got {state[4].dtype}")

    def mask_state(self, keep_new: Tensor, new: LSTMNState, old: LSTMNState) -> LSTMNState:
        """Keep ``new`` where ``keep_new``; elsewhere ``old`` with its tape padded by
        empty slots (zeros, ``mask`` false) to the length of ``new``'s tape."""
        extra = new.h.shape[1] - old.h.shape[1]
        if extra < 0:
            raise ValueError(
                f"expected the new tape to be at least as long as the old one, got "
                f"{new.h.shape[1]} and {old.h.shape[1]} slots"
            )
        if extra:
            old = LSTMNState(
                F.pad(old.h, (0, 0, 0, extra)),
                F.pad(old.c, (0, 0, 0, extra)),
                F.pad(old.key, (0, 0, 0, extra)),
                old.h_tilde,
                F.pad(old.mask, (0, extra), value=False),
            )
        keep = keep_new.unsqueeze(1)  # (N, 1)
        # the bool mask by logic, not torch.where (which ONNX Runtime lacks for bools)
        mask = (keep & new.mask) | (~keep & old.mask)  # (N, T)
        return LSTMNState(*(_where_batch(keep_new, n, o) for n, o in zip(new[:4], old[:4])),
                          mask)

    # --- step ----------------------------------------------------------------

    def project_input(self, x: Tensor) -> Tensor:
        gx = x @ self.weight_ih.t()  # (*, 4H)
        if self.bias is not None:
            gx = gx + self.bias
        qx = x @ self.attn_weight_x.t()  # (*, A)
        return torch.cat([qx, gx], dim=-1)  # (*, A + 4H)

    def recur(self, u_t: Tensor, state: LSTMNState) -> tuple[Tensor, LSTMNState]:
        qx, gx = u_t.split([self.attention_size, 4 * self.hidden_size], dim=1)
        query = torch.addmm(qx, state.h_tilde, self.attn_weight_tilde.t())  # (N, A)
        scores = torch.tanh(state.key + query.unsqueeze(1)) @ self.attn_v  # (N, T)
        scores = scores.masked_fill(~state.mask, float("-inf"))
        s = _softmax_rows(scores)  # (N, T)
        if self._attention_rows is not None:
            self._attention_rows.append(s)
        h_tilde = torch.bmm(s.unsqueeze(1), state.h).squeeze(1)  # (N, H)
        c_tilde = torch.bmm(s.unsqueeze(1), state.c).squeeze(1)  # (N, H)
        gates = torch.addmm(gx, h_tilde, self.weight_hh.t())  # (N, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c_tilde + torch.sigmoid(i) * torch.tanh(g)  # (N, H)
        h = torch.sigmoid(o) * torch.tanh(c)  # (N, H)
        key = h @ self.attn_weight_h.t()  # (N, A)
        new = LSTMNState(
            torch.cat([state.h, h.unsqueeze(1)], dim=1),  # (N, T+1, H)
            torch.cat([state.c, c.unsqueeze(1)], dim=1),
            torch.cat([state.key, key.unsqueeze(1)], dim=1),  # (N, T+1, A)
            h_tilde,
            F.pad(state.mask, (0, 1), value=True),  # (N, T+1)
        )
        return h, new

    @contextlib.contextmanager
    def record_attention(self):
        """Collect the attention weights of every step run inside the block.

        Yields a list that receives one ``(N, T)`` tensor per call of
        :meth:`recur` (T = tape slots before that step); rows of padded steps
        are included as computed and should be ignored.
        """
        previous = self._attention_rows
        rows: list[Tensor] = []
        self._attention_rows = rows
        try:
            yield rows
        finally:
            self._attention_rows = previous

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, attention_size={self.attention_size}"


def _softmax_rows(scores: Tensor) -> Tensor:
    """Softmax over dim 1 of a small ``(N, T)`` tensor, from pointwise ops.

    torch.softmax on CPU hands even a tiny input to the thread pool; on a busy
    machine a call then waits milliseconds for threads (measured 5-27 ms for a
    (2, 3) input with 2 threads, against microseconds for this form).
    """
    # the shift by the row maximum cancels in the ratio, so it needs no gradient
    e = torch.exp(scores - scores.amax(dim=1, keepdim=True).detach())  # (N, T); masked: 0
    return e / e.sum(dim=1, keepdim=True)
