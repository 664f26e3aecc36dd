"""Build cells and multi-layer designs by name: ``make_cell("lstm", ...)``.

A cell module registers its class with :func:`register_cell`; a design that
spans layers (a stack whose layers talk to each other) registers with
:func:`register_stack`.  Recipes and the command line use these names.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from memnets.cells.base import RecurrentCell, check_sizes
from memnets.cells.regularizers import REGULARIZER_OPTIONS, regularize

_CELLS: dict[str, Callable[..., RecurrentCell]] = {}
_STACKS: dict[str, Callable[..., nn.Module]] = {}


def register_cell(name: str, factory: Callable[..., RecurrentCell] | None = None):
    """Register ``factory(input_size, hidden_size, **options)`` under ``name``.

    Usable as a decorator: ``@register_cell("lstm")``.
    """

    def add(f):
        if name in _CELLS and _CELLS[name] is not f:
            raise ValueError(f"cell name {name!r} is already registered")
        _CELLS[name] = f
        return f

    return add(factory) if factory is not None else add


def register_stack(name: str, factory: Callable[..., nn.Module] | None = None):
    """Register ``factory(input_size, hidden_size, num_layers, **options)`` under ``name``."""

    def add(f):
        if name in _STACKS and _STACKS[name] is not f:
            raise ValueError(f"stack name {name!r} is already registered")
        _STACKS[name] = f
        return f

    return add(factory) if factory is not None else add


def cell_names() -> list[str]:
    """Names accepted by :func:`make_cell`, sorted."""
    return sorted(_CELLS)


def stack_names() -> list[str]:
    """Names accepted by :func:`make_stack`, sorted."""
    return sorted(_STACKS)


def make_cell(name: str, *, input_size: int, hidden_size: int, **options) -> RecurrentCell:
    """Build the cell registered as ``name``; ``options`` go to its constructor.

    The regulariser options ``input_dropout``, ``state_dropout``, ``zoneout``
    and ``weight_dropout`` wrap the cell instead (see
    :func:`memnets.cells.regularizers.regularize`), so any cell takes them.

    Raises ``ValueError`` for an unknown name, and
    :class:`~memnets.errors.ConfigError` (a ``ValueError``) unless both sizes
    are ints >= 1.
    """
    if name not in _CELLS:
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(cell_names())}")
    check_sizes(input_size=input_size, hidden_size=hidden_size)
    rates = {k: options.pop(k) for k in REGULARIZER_OPTIONS if k in options}
    cell = _CELLS[name](input_size, hidden_size, **options)
    return regularize(cell, **rates) if rates else cell


def make_stack(name: str, *, input_size: int, hidden_size: int, num_layers: int, **options):
    """Build the multi-layer design registered as ``name``; the three sizes must be
    ints >= 1 (:class:`~memnets.errors.ConfigError` otherwise)."""
    if name not in _STACKS:
        known = ", ".join(stack_names()) or "(none registered)"
        raise ValueError(f"unknown stack {name!r}; expected one of {known}")
    check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
    return _STACKS[name](input_size, hidden_size, num_layers, **options)
