"""``Stacked``: layers on top of each other, with dropout between them."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell
from memnets.layers.recurrent import Recurrent
from memnets.layers.sequence import SequenceLayer


class Stacked(SequenceLayer):
    r"""A deep recurrent network: the outputs of layer :math:`k` are the inputs of
    layer :math:`k+1`.

    .. math::
        y^{(0)}_t = x_t, \qquad
        y^{(k)}_t = \mathrm{layer}_k\big(\mathrm{dropout}(y^{(k-1)})\big)_t

    Dropout is applied to the outputs of every layer but the last, in training
    mode only (as in torch.nn.LSTM; Zaremba, Sutskever & Vinyals, "Recurrent
    neural network regularization", 2014).

    Args:
        layers: cells (each run with :class:`Recurrent`) or sequence layers
            (:class:`Recurrent`, :class:`Bidirectional`, ...); each layer's
            ``input_size`` must equal the previous layer's ``output_size``.
        dropout: probability of zeroing an element between layers.
        batch_first: as in :class:`Recurrent`; sequence layers given in
            ``layers`` must have been built with the same value.

    State: a tuple with one state per layer, lowest first.

    Examples::

        >>> import torch, memnets
        >>> stack = memnets.Stacked([memnets.LSTMCell(3, 4), memnets.GRUCell(4, 5)], dropout=0.2)
        >>> x = torch.randn(6, 2, 3)
        >>> out, states = stack(x)
        >>> out.shape, [type(s).__name__ for s in states]
        (torch.Size([6, 2, 5]), ['LSTMState', 'GRUState'])
        >>> _ = stack.eval()                               # no dropout: one layer after the other
        >>> lower, upper = stack.cells()
        >>> h, _ = memnets.Recurrent(lower)(x)
        >>> torch.allclose(stack(x)[0], memnets.Recurrent(upper)(h)[0], atol=1e-6)
        True
    """

    def __init__(
        self,
        layers: Sequence[RecurrentCell | SequenceLayer],
        *,
        dropout: float = 0.0,
        batch_first: bool = False,
    ):
        super().__init__()
        if not layers:
            raise ValueError("expected at least one layer, got none")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"expected dropout in [0, 1], got {dropout}")
        built = []
        for k, layer in enumerate(layers):
            if isinstance(layer, RecurrentCell):
                layer = Recurrent(layer, batch_first=batch_first)
            elif not isinstance(layer, SequenceLayer):
                raise ValueError(
                    f"expected layer {k} to be a RecurrentCell or a SequenceLayer, "
                    f"got {type(layer).__name__}"
                )
            elif layer.batch_first != batch_first:
                raise ValueError(
                    f"expected layer {k} built with batch_first={batch_first}, "
                    f"got batch_first={layer.batch_first}"
                )
            if built and layer.input_size != built[-1].output_size:
                raise ValueError(
                    f"expected layer {k} to take {built[-1].output_size} input features "
                    f"(layer {k - 1}'s output_size), got input_size={layer.input_size}"
                )
            built.append(layer)
        self.layers = nn.ModuleList(built)
        self.dropout = dropout
        self.batch_first = batch_first
        self.input_size = built[0].input_size
        self.output_size = built[-1].output_size

    def run(self, x: Tensor, state, lengths: Tensor | None):
        n = len(self.layers)
        if state is None:
            state = (None,) * n
        elif not (isinstance(state, (tuple, list)) and len(state) == n):
            got = len(state) if isinstance(state, (tuple, list)) else type(state).__name__
            raise ValueError(f"expected a tuple of {n} layer states, got {got}")
        finals = []
        for k, (layer, s) in enumerate(zip(self.layers, state)):
            if k > 0 and self.dropout > 0.0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
            x, s = layer.run(x, s, lengths)
            finals.append(s)
        return x, tuple(finals)

    def cells(self) -> list[RecurrentCell]:
        return [c for layer in self.layers for c in layer.cells()]

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}" if self.dropout else ""
