"""memnets: neural networks with memory, on PyTorch.

Cells (:mod:`memnets.cells`) do one time step — the multi-layer designs
(gated feedback, depth-gated, Grid LSTM) among them; layers
(:mod:`memnets.layers`) run any cell over time, stack it and read both
directions; ``RNN``, ``LSTM`` and ``GRU`` are drop-in replacements for their
torch.nn namesakes.  Everything public in ``cells`` and ``layers`` is
importable from ``memnets`` itself.  The layers of the package and what each
may import: ``docs/architecture.md``.
"""

from memnets import cells, layers  # noqa: F401
from memnets.cells import *  # noqa: F403
from memnets.layers import *  # noqa: F403

__version__ = "0.1.0"

__all__ = [*cells.__all__, *layers.__all__]
