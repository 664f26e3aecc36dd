"""Recurrent cells: one small class per cell, each a single time step.

Every cell follows :class:`~memnets.cells.base.RecurrentCell`'s contract and is
registered by name for :func:`make_cell`.
"""

from memnets.cells.base import RecurrentCell
from memnets.cells.elman import ElmanCell, ElmanState
from memnets.cells.gru import GRUCell, GRUState
from memnets.cells.indrnn import IndRNNCell, IndRNNState, constrain_all_
from memnets.cells.irnn import IRNNCell
from memnets.cells.jordan import JordanCell, JordanState
from memnets.cells.lstm import LSTMCell, LSTMState
from memnets.cells.lstmn import LSTMN, LSTMNCell, LSTMNState
from memnets.cells.registry import (
    cell_names,
    make_cell,
    make_stack,
    register_cell,
    register_stack,
    stack_names,
)
from memnets.cells.regularizers import (
    CellWrapper,
    DropConnect,
    VariationalDropout,
    Zoneout,
    regularize,
)
from memnets.cells.scrn import SCRNCell, SCRNState

register_cell("elman", ElmanCell)
register_cell("lstm", LSTMCell)
register_cell("gru", GRUCell)
register_cell("irnn", IRNNCell)
register_cell("lstmn", LSTMNCell)
register_cell("jordan", JordanCell)
register_cell("scrn", SCRNCell)
register_cell("indrnn", IndRNNCell)

__all__ = [
    "CellWrapper",
    "DropConnect",
    "ElmanCell",
    "ElmanState",
    "GRUCell",
    "GRUState",
    "IRNNCell",
    "IndRNNCell",
    "IndRNNState",
    "JordanCell",
    "JordanState",
    "LSTMCell",
    "LSTMN",
    "LSTMNCell",
    "LSTMNState",
    "LSTMState",
    "RecurrentCell",
    "SCRNCell",
    "SCRNState",
    "VariationalDropout",
    "Zoneout",
    "cell_names",
    "constrain_all_",
    "make_cell",
    "make_stack",
    "register_cell",
    "register_stack",
    "regularize",
    "stack_names",
]
