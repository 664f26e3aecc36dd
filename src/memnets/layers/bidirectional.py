"""``Bidirectional``: a forward and a backward layer over the same sequences."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from memnets.cells.base import RecurrentCell, register_state
from memnets.layers.recurrent import Recurrent
from memnets.layers.sequence import SequenceLayer


@register_state
class BidirectionalState(NamedTuple):
    """State of :class:`Bidirectional`: the forward cell's state, then the backward one's."""

    forward: tuple
    backward: tuple


class Bidirectional(SequenceLayer):
    r"""Read each sequence in both directions and merge the outputs.

    .. math::
        \overrightarrow{y}_t = \overrightarrow{\mathrm{cell}}(x_t, \dots), \quad
        \overleftarrow{y}_t = \overleftarrow{\mathrm{cell}}(x_t, \dots), \quad
        y_t = [\overrightarrow{y}_t; \overleftarrow{y}_t] \text{ or }
              \overrightarrow{y}_t + \overleftarrow{y}_t

    The backward cell reads each sequence from its own last valid step
    (Schuster & Paliwal, "Bidirectional recurrent neural networks", 1997).

    Args:
        forward_cell, backward_cell: any two cells with the same input size
            (and the same output size for ``merge="sum"``).
        merge: ``"concat"`` (H_out = sum of both) or ``"sum"``.
        batch_first: as in :class:`Recurrent`.

    State: :class:`BidirectionalState` ``(forward, backward)``; the backward
    final state is the one after reading each sequence's first step.

    Examples::

        >>> import torch, memnets
        >>> forward_cell, backward_cell = memnets.GRUCell(3, 4), memnets.GRUCell(3, 4)
        >>> layer = memnets.Bidirectional(forward_cell, backward_cell)
        >>> x = torch.randn(5, 2, 3)
        >>> out, state = layer(x, lengths=[5, 3])
        >>> out.shape, type(state).__name__                # concat: H_out = 4 + 4
        (torch.Size([5, 2, 8]), 'BidirectionalState')
        >>> # the backward half reads the second sequence from its own last valid step
        >>> back, _ = memnets.Recurrent(backward_cell)(x[:3, 1:].flip(0))
        >>> torch.allclose(out[:3, 1, 4:], back.flip(0)[:, 0], atol=1e-6)
        True
    """

    def __init__(
        self,
        forward_cell: RecurrentCell,
        backward_cell: RecurrentCell,
        *,
        merge: str = "concat",
        batch_first: bool = False,
    ):
        super().__init__()
        if merge not in ("concat", "sum"):
            raise ValueError(f"expected merge 'concat' or 'sum', got {merge!r}")
        if forward_cell.input_size != backward_cell.input_size:
            raise ValueError(
                f"expected cells with the same input_size, got {forward_cell.input_size} "
                f"and {backward_cell.input_size}"
            )
        if merge == "sum" and forward_cell.output_size != backward_cell.output_size:
            raise ValueError(
                f"expected cells with the same output_size for merge='sum', got "
                f"{forward_cell.output_size} and {backward_cell.output_size}"
            )
        self.forward_layer = Recurrent(forward_cell, batch_first=batch_first)
        self.backward_layer = Recurrent(backward_cell, batch_first=batch_first, reverse=True)
        self.merge = merge
        self.batch_first = batch_first
        self.input_size = forward_cell.input_size
        self.output_size = forward_cell.output_size + (
            backward_cell.output_size if merge == "concat" else 0
        )

    def run(self, x: Tensor, state, lengths: Tensor | None):
        if state is None:
            state = BidirectionalState(None, None)
        elif not (isinstance(state, tuple) and len(state) == 2):
            raise ValueError(
                "expected a BidirectionalState(forward, backward) as state, "
                f"got {type(state).__name__}"
            )
        out_f, state_f = self.forward_layer.run(x, state[0], lengths)
        out_b, state_b = self.backward_layer.run(x, state[1], lengths)
        if self.merge == "concat":
            out = torch.cat([out_f, out_b], dim=-1)  # (L, N, H_f + H_b)
        else:
            out = out_f + out_b
        return out, BidirectionalState(state_f, state_b)

    def cells(self) -> list[RecurrentCell]:
        return self.forward_layer.cells() + self.backward_layer.cells()

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}"
