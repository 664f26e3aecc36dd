"""What the multi-layer cells (gated feedback, depth-gated, Grid LSTM) share.

A multi-layer cell is one :class:`~memnets.cells.base.RecurrentCell` whose
state holds all its K layers, lowest first (``h`` of shape ``(N, K, H)``), so
that it runs unchanged inside every layer of :mod:`memnets.layers`.  It is
registered with ``register_cell(name, cls, layers=True)`` and built by
``make_cell(name, input_size=, hidden_size=, num_layers=)``.

This module may import torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def zeros_layers(cell: nn.Module, batch_size: int, device, dtype) -> Tensor:
    """A ``(batch_size, num_layers, hidden_size)`` zero tensor on the cell's device and dtype."""
    p = next(cell.parameters())
    return torch.zeros(
        batch_size,
        cell.num_layers,
        cell.hidden_size,
        device=p.device if device is None else device,
        dtype=p.dtype if dtype is None else dtype,
    )
