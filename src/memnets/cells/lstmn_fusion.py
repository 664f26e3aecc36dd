r"""The LSTMN step of deep attention fusion: intra-attention over the target's own tape,
and an attended source memory gated into the memory cell.

Cheng, Dong & Lapata, "Long short-term memory-networks for machine reading",
2016, §3.3 (deep attention fusion).  The inter-attention read of the source
(their eq. 10–12) depends on the source tapes, which belong to whoever holds
the source sequence (a sentence-pair model, a decoder); its result is handed to
this cell as part of each step's input, so that the cell keeps the one-step
contract and any layer (:class:`memnets.layers.Recurrent`) runs it over time.

Not registered by name: its input is not a plain sequence.  This module may
import torch and :mod:`memnets.cells.lstmn` (and through it
:mod:`memnets.cells.base`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memnets.cells.lstmn import LSTMNCell, LSTMNState, _softmax_rows


class LSTMNFusionCell(LSTMNCell):
    r"""LSTMN cell with deep attention fusion (Cheng, Dong & Lapata, "Long short-term
    memory-networks for machine reading", 2016, eq. 4–9 and 13–15).

    The step input is :math:`[x_t; \tilde\gamma_t; \tilde\alpha_t]`: the word
    :math:`x_t` and the source hidden and memory tapes read by inter-attention
    at this step, :math:`[\tilde\alpha_t; \tilde\gamma_t] = \sum_j p^t_j [\alpha_j; \gamma_j]`.

    .. math::
        \begin{aligned}
        s^t &= \mathrm{softmax}_i\big(v^\top \tanh(W_h h_i + W_x x_t
            + W_{\tilde h} \tilde h_{t-1})\big), \qquad
        \tilde h_t = \textstyle\sum_i s_i^t h_i, \quad
        \tilde c_t = \textstyle\sum_i s_i^t c_i \\
        [i_t; f_t; \hat c_t; o_t] &= [\sigma; \sigma; \tanh; \sigma](W_{ih} x_t
            + W_{hh} \tilde h_t + b) \\
        r_t &= \sigma(W_r [\tilde\gamma_t; x_t] + b_r) \\
        c_t &= r_t \odot \tilde\alpha_t + f_t \odot \tilde c_t + i_t \odot \hat c_t, \qquad
        h_t = o_t \odot \tanh(c_t)
        \end{aligned}

    and :math:`(h_t, c_t)` is appended to the target tape, as in :class:`LSTMNCell`.

    Args:
        input_size: features of the word :math:`x_t` (E).
        hidden_size: H, of the target's tapes and of the source tapes (the
            source memory :math:`\tilde\alpha_t` is added to :math:`c_t`).
        attention_size: intra-attention size A; default H.
        bias: gate biases :math:`b` and :math:`b_r`.

    Shapes: step input ``(N, E + 2H)`` (``input_size`` is E + 2H; ``word_size``
    is E); state :class:`~memnets.cells.lstmn.LSTMNState`; output
    :math:`h_t` ``(N, H)``.

    Attributes: those of :class:`LSTMNCell`, and ``weight_r`` ``(H, H + E)``
    acting on :math:`[\tilde\gamma_t; x_t]` (Xavier-uniform) with ``bias_r``
    ``(H,)`` (zero, so the gate starts half open).

    Departures from the paper: the gate :math:`r_t` has a bias, like the other
    gates; the tape starts with slot 0 as :class:`LSTMNCell`'s does.

    Examples::

        >>> import torch
        >>> from memnets.cells.lstmn_fusion import LSTMNFusionCell
        >>> from memnets.layers import Recurrent
        >>> E, H = 3, 4
        >>> cell = LSTMNFusionCell(E, H)
        >>> cell.input_size  # the word and the two source tapes read at each step
        11
        >>> steps = torch.randn(5, 2, E + 2 * H)  # (L, N, E + 2H)
        >>> out, state = Recurrent(cell)(steps)
        >>> out.shape, state.h.shape  # the target tape: slot 0 and one slot a step
        (torch.Size([5, 2, 4]), torch.Size([2, 6, 4]))
        >>> with torch.no_grad():  # r_t shut: the source memory does not reach c_t
        ...     _ = cell.bias_r.fill_(-1e4)
        ...     shut, _ = Recurrent(cell)(steps)
        ...     _ = steps[..., E + H:].mul_(10.0)  # scale the source memory
        ...     still, _ = Recurrent(cell)(steps)
        >>> torch.equal(shut, still)
        True
    """

    def __init__(self, input_size: int, hidden_size: int, attention_size: int | None = None,
                 bias: bool = True, *, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, attention_size, bias,
                         device=device, dtype=dtype)
        H = hidden_size
        self.word_size = input_size
        self.input_size = input_size + 2 * H
        self.weight_r = nn.Parameter(torch.empty(H, H + input_size, device=device, dtype=dtype))
        if bias:
            self.bias_r = nn.Parameter(torch.empty(H, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_r", None)
        self._reset_gate()

    def _reset_gate(self) -> None:
        nn.init.xavier_uniform_(self.weight_r)
        if self.bias_r is not None:
            nn.init.zeros_(self.bias_r)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "weight_r"):  # LSTMNCell.__init__ calls this before weight_r exists
            self._reset_gate()

    def project_input(self, x: Tensor) -> Tensor:
        """``[x; γ̃; α̃]`` ``(*, E + 2H)`` to ``[W_x x; W_ih x + b; W_r [γ̃; x] + b_r; α̃]``."""
        H = self.hidden_size
        word, gamma, alpha = x.split([self.word_size, H, H], dim=-1)
        base = super().project_input(word)  # (*, A + 4H)
        r = torch.cat([gamma, word], dim=-1) @ self.weight_r.t()  # (*, H)
        if self.bias_r is not None:
            r = r + self.bias_r
        return torch.cat([base, r, alpha], dim=-1)  # (*, A + 6H)

    def recur(self, u_t: Tensor, state: LSTMNState) -> tuple[Tensor, LSTMNState]:
        H = self.hidden_size
        qx, gx, r, alpha = u_t.split([self.attention_size, 4 * H, H, H], dim=1)
        query = torch.addmm(qx, state.h_tilde, self.attn_weight_tilde.t())  # (N, A)
        scores = torch.tanh(state.key + query.unsqueeze(1)) @ self.attn_v  # (N, T)
        s = _softmax_rows(scores.masked_fill(~state.mask, float("-inf")))  # (N, T)
        if self._attention_rows is not None:
            self._attention_rows.append(s)
        h_tilde = torch.bmm(s.unsqueeze(1), state.h).squeeze(1)  # (N, H)
        c_tilde = torch.bmm(s.unsqueeze(1), state.c).squeeze(1)  # (N, H)
        i, f, g, o = torch.addmm(gx, h_tilde, self.weight_hh.t()).chunk(4, dim=1)
        c = (torch.sigmoid(r) * alpha + torch.sigmoid(f) * c_tilde
             + torch.sigmoid(i) * torch.tanh(g))  # (N, H)
        h = torch.sigmoid(o) * torch.tanh(c)  # (N, H)
        new = LSTMNState(
            torch.cat([state.h, h.unsqueeze(1)], dim=1),  # (N, T+1, H)
            torch.cat([state.c, c.unsqueeze(1)], dim=1),
            torch.cat([state.key, (h @ self.attn_weight_h.t()).unsqueeze(1)], dim=1),
            h_tilde,
            nn.functional.pad(state.mask, (0, 1), value=True),  # (N, T+1)
        )
        return h, new

    def extra_repr(self) -> str:
        return (f"{self.word_size} (+ 2 x {self.hidden_size} from the source), "
                f"{self.hidden_size}, attention_size={self.attention_size}")
