"""Designs that span layers: stacks whose layers talk to each other at every step.

Each design is one :class:`~memnets.cells.RecurrentCell` whose state holds all
its layers (``h`` of shape ``(N, K, H)``, lowest layer first), so it runs
unchanged inside :class:`~memnets.layers.Recurrent`, :class:`~memnets.layers.Bidirectional`
and :class:`~memnets.layers.Stacked`, with variable lengths.

:func:`~memnets.make_stack` returns the cell already wrapped in
:class:`~memnets.layers.Recurrent` (``batch_first=`` and ``reverse=`` go to the
wrapper, every other option to the cell), ready to run over ``(L, N, H_in)``;
the cell is its ``.cell``.  Registered names: ``gated_feedback``,
``depth_gated``, ``grid_lstm``.
"""

from memnets.cells.registry import register_stack
from memnets.stacks._common import layer_factory
from memnets.stacks.depth_gated import DepthGatedLSTMCell, DepthGatedState
from memnets.stacks.gated_feedback import (
    GatedFeedbackCell,
    GatedFeedbackLSTMState,
    GatedFeedbackState,
)
from memnets.stacks.grid_lstm import GridLSTMCell, GridLSTMState

register_stack("gated_feedback", layer_factory(GatedFeedbackCell))
register_stack("depth_gated", layer_factory(DepthGatedLSTMCell))
register_stack("grid_lstm", layer_factory(GridLSTMCell))

__all__ = [
    "DepthGatedLSTMCell",
    "DepthGatedState",
    "GatedFeedbackCell",
    "GatedFeedbackLSTMState",
    "GatedFeedbackState",
    "GridLSTMCell",
    "GridLSTMState",
]
