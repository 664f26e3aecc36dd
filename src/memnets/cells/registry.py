"""Build cells by name: ``make_cell("lstm", ...)``; the one registry of cells.

A cell module's class is registered with :func:`register_cell` (in
:mod:`memnets.cells`).  A multi-layer cell — one cell whose state holds all its
layers, such as ``gated_feedback`` — is registered the same way with
``layers=True``; its factory takes ``num_layers`` as well, and
``make_cell(name, ..., num_layers=K)`` builds it.  Recipes and the command line
use these names (``model.cell`` takes the one-layer ones, which the models
stack themselves).

This module may import torch and :mod:`memnets.cells.base` and
:mod:`memnets.cells.regularizers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from memnets.cells.base import RecurrentCell, check_sizes
from memnets.cells.regularizers import REGULARIZER_OPTIONS, regularize


class CellEntry(NamedTuple):
    """A registered name: ``factory(input_size, hidden_size, **options)``, or with
    ``layers`` true ``factory(input_size, hidden_size, num_layers, **options)``."""

    factory: Callable[..., RecurrentCell]
    layers: bool


_CELLS: dict[str, CellEntry] = {}


def register_cell(name: str, factory: Callable[..., RecurrentCell] | None = None, *,
                  layers: bool = False):
    """Register ``factory`` under ``name``; ``layers=True`` for a multi-layer cell,
    whose factory takes ``num_layers`` as its third argument.

    Usable as a decorator: ``@register_cell("lstm")``.
    """

    def add(f):
        if name in _CELLS and _CELLS[name].factory is not f:
            raise ValueError(f"cell name {name!r} is already registered")
        _CELLS[name] = CellEntry(f, layers)
        return f

    return add(factory) if factory is not None else add


def cell_names(*, layers: bool | None = False) -> list[str]:
    """Registered names, sorted: the one-layer cells (default), the multi-layer
    ones (``layers=True``) or all (``layers=None``)."""
    return sorted(n for n, e in _CELLS.items() if layers is None or e.layers == layers)


def make_cell(name: str, *, input_size: int, hidden_size: int, num_layers: int | None = None,
              **options) -> RecurrentCell:
    """Build the cell registered as ``name``; ``options`` go to its constructor.

    ``num_layers`` is for a multi-layer cell only (and required by one).  The
    regulariser options ``input_dropout``, ``state_dropout``, ``zoneout`` and
    ``weight_dropout`` wrap a one-layer cell instead (see
    :func:`memnets.cells.regularizers.regularize`), so any such cell takes them.

    Raises ``ValueError`` for an unknown name or ``num_layers`` given to a
    one-layer cell, and :class:`~memnets.errors.ConfigError` (a ``ValueError``)
    unless the sizes are ints >= 1.
    """
    entry = _CELLS.get(name)
    if entry is None:
        multi = cell_names(layers=True)
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(cell_names())}"
                         + (f" (or, with num_layers, {', '.join(multi)})" if multi else ""))
    if entry.layers:
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        return entry.factory(input_size, hidden_size, num_layers, **options)
    if num_layers is not None:
        raise ValueError(
            f"cell {name!r} is one layer; expected no num_layers, got {num_layers!r} "
            f"(stack one-layer cells with memnets.Stacked; the multi-layer cells are "
            f"{', '.join(cell_names(layers=True)) or '(none registered)'})")
    check_sizes(input_size=input_size, hidden_size=hidden_size)
    rates = {k: options.pop(k) for k in REGULARIZER_OPTIONS if k in options}
    cell = entry.factory(input_size, hidden_size, **options)
    return regularize(cell, **rates) if rates else cell
