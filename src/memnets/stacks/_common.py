"""Helpers shared by the multi-layer cells of :mod:`memnets.stacks`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell
from memnets.cells.base import check_sizes as _check_sizes
from memnets.layers.recurrent import Recurrent


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


def check_sizes(input_size: int, hidden_size: int, num_layers: int) -> None:
    """Each size an int >= 1 (the shared :func:`memnets.cells.base.check_sizes`)."""
    _check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)


def layer_factory(cell_class: Callable[..., RecurrentCell]) -> Callable[..., Recurrent]:
    """``make_stack`` factory: the cell run over time by :class:`Recurrent`."""

    def build(input_size, hidden_size, num_layers, *, batch_first=False, reverse=False, **options):
        cell = cell_class(input_size, hidden_size, num_layers, **options)
        return Recurrent(cell, batch_first=batch_first, reverse=reverse)

    build.__name__ = f"make_{cell_class.__name__}_layer"
    build.__doc__ = (
        f"``Recurrent({cell_class.__name__}(input_size, hidden_size, num_layers, **options), "
        "batch_first=, reverse=)``."
    )
    return build
