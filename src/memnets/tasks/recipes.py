"""From a recipe to a checked :class:`~memnets.config.Config` of a registered task.

:mod:`memnets.config` reads and merges recipes and checks sections, knowing no
task; this module adds what needs the registries: the task named by ``task:``
(whose class carries its ``DataConfig`` and ``ModelConfig`` sections, found by
:func:`memnets.tasks.get_task`) and the cell named by ``model.cell`` (one of
:func:`memnets.cells.cell_names`).

This module may import :mod:`memnets.config`, :mod:`memnets.errors`,
:mod:`memnets.tasks` (the registry), :mod:`memnets.cells.registry` and
:mod:`memnets.layers.blocks` (the block names and their options).
"""

from __future__ import annotations

from memnets.cells.registry import cell_names
from memnets.config import (
    Config,
    ConfigError,
    apply_overrides,
    build_config,
    check_recipe_keys,
    load_raw,
)
from memnets.errors import shorten
from memnets.layers.blocks import check_block_options
from memnets.tasks import get_task


def from_dict(raw: dict, *, source: str = "recipe") -> Config:
    """Check a raw recipe dict and build the :class:`Config` (task sections included).

    Raises :class:`ConfigError` naming ``source`` for an unknown key, a missing
    or unregistered task, a bad section value or a ``model.cell`` that is not a
    registered one-layer cell.
    """
    check_recipe_keys(raw, source)
    task_name = raw.get("task")
    if not isinstance(task_name, str) or not task_name:
        raise ConfigError(f"{source}: expected 'task: NAME' (a registered task), got "
                          f"{shorten(task_name)}")
    if ":" in task_name:  # a file never chooses code to import
        raise ConfigError(
            f"{source}: task: expected the name of a registered task, got {shorten(task_name)}; "
            f"a task defined outside memnets is registered by importing its module: "
            f"`memnets --task-module PACKAGE.MODULE ...` or a 'memnets.tasks' entry point")
    try:
        task_cls = get_task(task_name)
    except KeyError as e:
        raise ConfigError(f"{source}: {e.args[0]}") from None
    config = build_config(raw, data=task_cls.DataConfig, model=task_cls.ModelConfig,
                          source=source)
    check_cell(config.model.cell, f"{source}: model.cell")
    check_block(config.model, f"{source}: model")
    return config


def check_cell(name: str, where: str) -> None:
    """``name`` is a registered one-layer cell; else :class:`ConfigError` naming ``where``."""
    if name not in cell_names():
        raise ConfigError(f"{where}: expected one of {', '.join(cell_names())}, got "
                          f"{shorten(name)}")


def check_block(model, where: str) -> None:
    """``model.block_options`` name options of ``model.block`` (or are empty without a
    block), and a model with a block is not bidirectional; else :class:`ConfigError`
    naming ``where``.  The values are checked when the model is built."""
    block, options = getattr(model, "block", None), getattr(model, "block_options", None)
    if block is None:
        if options:
            raise ConfigError(f"{where}.block_options: expected none without model.block, "
                              f"got {shorten(options)}")
        return
    try:
        check_block_options(block, options or {}, extra=("final_norm",))
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}") from None
    if getattr(model, "bidirectional", False):
        raise ConfigError(f"{where}.block: expected bidirectional: false with block {block!r} "
                          "(a residual stack reads each sequence one way)")


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Load a recipe by shipped name or path, apply ``--set`` overrides, check it."""
    raw = apply_overrides(load_raw(name_or_path), overrides or [], str(name_or_path))
    return from_dict(raw, source=str(name_or_path))
