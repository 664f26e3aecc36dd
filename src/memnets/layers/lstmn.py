"""``LSTMN``: an :class:`~memnets.cells.lstmn.LSTMNCell` run over time, with its
``(N, L, L)`` attention matrix on request.

This module may import torch, :mod:`memnets.cells` and :mod:`memnets.layers.recurrent`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from memnets.cells.lstmn import LSTMNCell
from memnets.layers.recurrent import Recurrent


class LSTMN(Recurrent):
    r"""An :class:`LSTMNCell` run over time, with its attention weights on request.

    ``forward(input, state=None, *, lengths=None, enforce_sorted=False,
    return_attention=False)`` returns ``(outputs, final_state)`` like
    :class:`~memnets.layers.Recurrent`, and with ``return_attention=True``
    ``(outputs, final_state, attention)`` where ``attention`` is
    ``(N, L, T_0 - 1 + L)`` (``(N, L, L)`` from the default state, whose tape
    has ``T_0 = 1`` slot; ``(L, L)`` for unbatched input).
    ``attention[n, t, j]`` is the weight that step ``t`` gives to tape slot
    ``j``: slot ``T_0 - 1 + k`` holds the state after step ``k - 1``, so from the
    default state column ``j`` is the state *before* step ``j``.  Each row of a
    valid step sums to 1 and is zero right of the diagonal; rows of padded
    steps are zero.

    Args:
        input_size, hidden_size, attention_size, bias: as :class:`LSTMNCell`.
        batch_first, reverse: as :class:`~memnets.layers.Recurrent`
            (``return_attention`` needs ``reverse=False``).

    Examples::

        >>> import torch, memnets
        >>> layer = memnets.LSTMN(3, 4, batch_first=True)
        >>> out, state, attention = layer(torch.randn(2, 5, 3), lengths=[5, 3],
        ...                               return_attention=True)
        >>> out.shape, attention.shape
        (torch.Size([2, 5, 4]), torch.Size([2, 5, 5]))
        >>> torch.allclose(attention[0].sum(-1), torch.ones(5), atol=1e-6)  # rows sum to 1
        True
        >>> bool((attention[0].triu(1) == 0).all())        # step t reads only slots before it
        True
        >>> attention[1, 3:].abs().sum().item()            # the rows of padded steps are zero
        0.0
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        attention_size: int | None = None,
        bias: bool = True,
        *,
        batch_first: bool = False,
        reverse: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        cell = LSTMNCell(input_size, hidden_size, attention_size, bias, device=device, dtype=dtype)
        super().__init__(cell, batch_first=batch_first, reverse=reverse)
        self._seen: tuple[int, Tensor | None] | None = None

    def run(self, x: Tensor, state, lengths: Tensor | None):
        self._seen = (x.shape[0], lengths)
        return super().run(x, state, lengths)

    def forward(self, input, state=None, *, lengths=None, enforce_sorted=False,
                return_attention: bool = False):
        if not return_attention:
            return super().forward(input, state, lengths=lengths, enforce_sorted=enforce_sorted)
        if self.reverse:
            raise ValueError(
                "expected reverse=False with return_attention=True (the tape of a "
                "reversed layer is in reading order); use cell.record_attention() instead"
            )
        with self.cell.record_attention() as rows:
            out, final = super().forward(
                input, state, lengths=lengths, enforce_sorted=enforce_sorted
            )
        L, lens = self._seen
        slots0 = rows[0].shape[1]
        width = slots0 - 1 + L
        attn = torch.stack([F.pad(r, (0, width - r.shape[1])) for r in rows], dim=1)  # (N, T, S)
        if attn.shape[1] < L:
            attn = F.pad(attn, (0, 0, 0, L - attn.shape[1]))  # (N, L, S)
        if lens is not None:
            valid = torch.arange(L, device=attn.device) < lens.to(attn.device).unsqueeze(1)
            attn = attn * valid.unsqueeze(-1)  # (N, L, S): padded rows zero
        if isinstance(input, Tensor) and input.dim() == 2:
            attn = attn.squeeze(0)
        return out, final, attn
