"""Recurrent cells: one small class per cell, each a single time step.

Every cell follows :class:`~memnets.cells.base.RecurrentCell`'s contract and is
registered by name for :func:`make_cell`.  The multi-layer cells (gated
feedback, depth-gated, Grid LSTM) are cells too: one state holds all their
layers, and they are registered with ``layers=True`` (``make_cell`` then takes
``num_layers``; :func:`memnets.layers.make_stack` runs one over time).

This package is a leaf: it may import torch and :mod:`memnets.errors` only.
"""

from memnets.cells.base import RecurrentCell
from memnets.cells.depth_gated import DepthGatedLSTMCell, DepthGatedState
from memnets.cells.elman import ElmanCell, ElmanState
from memnets.cells.gated_feedback import (
    GatedFeedbackCell,
    GatedFeedbackLSTMState,
    GatedFeedbackState,
)
from memnets.cells.grid_lstm import GridLSTMCell, GridLSTMState
from memnets.cells.gru import GRUCell, GRUState
from memnets.cells.indrnn import IndRNNCell, IndRNNState, constrain_all_
from memnets.cells.irnn import IRNNCell
from memnets.cells.jordan import JordanCell, JordanState
from memnets.cells.lstm import LSTMCell, LSTMState
from memnets.cells.lstmn import LSTMNCell, LSTMNState
from memnets.cells.minimal import MinGRUCell, MinGRUState, MinLSTMCell, MinLSTMState
from memnets.cells.registry import cell_names, make_cell, register_cell
from memnets.cells.regularizers import (
    CellWrapper,
    DropConnect,
    VariationalDropout,
    Zoneout,
    regularize,
)
from memnets.cells.scrn import SCRNCell, SCRNState
from memnets.cells.xlstm import MLSTMCell, MLSTMState, SLSTMCell, SLSTMState

register_cell("elman", ElmanCell)
register_cell("lstm", LSTMCell)
register_cell("gru", GRUCell)
register_cell("irnn", IRNNCell)
register_cell("lstmn", LSTMNCell)
register_cell("jordan", JordanCell)
register_cell("scrn", SCRNCell)
register_cell("indrnn", IndRNNCell)
register_cell("mingru", MinGRUCell)
register_cell("minlstm", MinLSTMCell)
register_cell("slstm", SLSTMCell)
register_cell("mlstm", MLSTMCell)
register_cell("gated_feedback", GatedFeedbackCell, layers=True)
register_cell("depth_gated", DepthGatedLSTMCell, layers=True)
register_cell("grid_lstm", GridLSTMCell, layers=True)

__all__ = [
    "CellWrapper",
    "DepthGatedLSTMCell",
    "DepthGatedState",
    "DropConnect",
    "ElmanCell",
    "ElmanState",
    "GRUCell",
    "GRUState",
    "GatedFeedbackCell",
    "GatedFeedbackLSTMState",
    "GatedFeedbackState",
    "GridLSTMCell",
    "GridLSTMState",
    "IRNNCell",
    "IndRNNCell",
    "IndRNNState",
    "JordanCell",
    "JordanState",
    "LSTMCell",
    "LSTMNCell",
    "LSTMNState",
    "LSTMState",
    "MLSTMCell",
    "MLSTMState",
    "MinGRUCell",
    "MinGRUState",
    "MinLSTMCell",
    "MinLSTMState",
    "RecurrentCell",
    "SCRNCell",
    "SCRNState",
    "SLSTMCell",
    "SLSTMState",
    "VariationalDropout",
    "Zoneout",
    "cell_names",
    "constrain_all_",
    "make_cell",
    "register_cell",
    "regularize",
]
