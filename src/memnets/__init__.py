"""memnets: neural networks with memory, on PyTorch.

Cells (:mod:`memnets.cells`) do one time step; layers (:mod:`memnets.layers`)
run any cell over time, stack it and read both directions; ``RNN``, ``LSTM``
and ``GRU`` are drop-in replacements for their torch.nn namesakes; designs that
span layers are in :mod:`memnets.stacks`.  Everything public in ``cells`` and
``layers`` is importable from ``memnets`` itself.
"""

from memnets import cells, layers, stacks  # noqa: F401  (stacks registers make_stack designs)
from memnets.cells import *  # noqa: F403
from memnets.layers import *  # noqa: F403

__version__ = "0.1.0"

__all__ = [*cells.__all__, *layers.__all__]
