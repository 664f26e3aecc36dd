"""memnets: neural networks with memory, on PyTorch.

Cells (:mod:`memnets.cells`) do one time step; layers (:mod:`memnets.layers`)
run any cell over time, stack it and read both directions; ``RNN``, ``LSTM``
and ``GRU`` are drop-in replacements for their torch.nn namesakes.
"""

from memnets import stacks  # noqa: F401  (registers the make_stack designs)
from memnets.cells import (
    ElmanCell,
    ElmanState,
    GRUCell,
    GRUState,
    LSTMCell,
    LSTMState,
    RecurrentCell,
    cell_names,
    make_cell,
    make_stack,
    register_cell,
    register_stack,
    stack_names,
)
from memnets.layers import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    BidirectionalState,
    Recurrent,
    SequenceLayer,
    Stacked,
)

__version__ = "0.1.0"

__all__ = [
    "GRU", "LSTM", "RNN", "Bidirectional", "BidirectionalState", "ElmanCell", "ElmanState",
    "GRUCell", "GRUState", "LSTMCell", "LSTMState", "Recurrent", "RecurrentCell",
    "SequenceLayer", "Stacked", "cell_names", "make_cell", "make_stack", "register_cell",
    "register_stack", "stack_names",
]
