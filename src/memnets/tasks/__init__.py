"""Tasks: what a recipe trains (``task: adding``), found by name.

A task module in this package registers its class with :func:`register_task`
when imported.  :func:`get_task` imports every module of this package the first
time a name is not yet known, so an application adds a task by adding a module
here — no list to edit.

A task defined outside memnets registers itself the same way when its module
is imported: on the command line with ``memnets --task-module PACKAGE.MODULE``
(:func:`import_task_module`), or by an installed package's ``memnets.tasks``
entry point.  A recipe or a run directory only ever *names* a registered task:
nothing read from a file chooses code to import.

The registry holds the name and the class, and the class holds its config
sections (``DataConfig``, ``ModelConfig``): :mod:`memnets.tasks.recipes` turns a
recipe into a checked :class:`~memnets.config.Config` with them, so that
:mod:`memnets.config` itself knows no task.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import metadata

from memnets.errors import shorten
from memnets.tasks.base import SPLITS, ShardedBatches, StepOutput, Task, detach_state, to_device

_TASKS: dict[str, type[Task]] = {}
_IMPORT_ERRORS: dict[str, str] = {}
_DISCOVERED = False
_NOT_TASKS = ("base", "recipes")  # modules of this package that define no task


def register_task(name: str, cls: type[Task] | None = None):
    """Register a :class:`Task` subclass under ``name``; usable as a class decorator."""

    def add(c):
        if not (isinstance(c, type) and issubclass(c, Task)):
            raise TypeError(f"expected a Task subclass for {name!r}, got {c!r}")
        if name in _TASKS and _TASKS[name] is not c:
            same = (_TASKS[name].__module__, _TASKS[name].__qualname__) == (
                c.__module__, c.__qualname__)
            if not same:  # a module reloaded is fine; two different classes are not
                raise ValueError(f"task name {name!r} is already registered")
        c.name = name
        _TASKS[name] = c
        return c

    return add(cls) if cls is not None else add


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_TASKS:
            continue
        try:
            importlib.import_module(f"{__name__}.{info.name}")
        except Exception as e:  # keep other tasks usable; report if this name is asked for
            _IMPORT_ERRORS[info.name] = f"{type(e).__name__}: {e}"
    for ep in metadata.entry_points(group="memnets.tasks"):  # installed packages' tasks
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001 - reported when the name is asked for
            _IMPORT_ERRORS[ep.value] = f"{type(e).__name__}: {e}"


def import_task_module(module: str) -> None:
    """Import ``module`` (given on the command line) so that its tasks register.

    Raises ``KeyError`` with a clear message when it cannot be imported.
    """
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the user's module, one line
        raise KeyError(f"--task-module {module}: cannot import it ({type(e).__name__}: {e})"
                       ) from None


def task_names() -> list[str]:
    """Names of all registered tasks (after importing the task modules), sorted."""
    _discover()
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``.

    Never imports a module named by ``name``.  Raises ``KeyError`` with a
    message naming the known tasks.
    """
    if name not in _TASKS:
        _discover()
    if name not in _TASKS:
        broken = "".join(f"; module memnets.tasks.{m} failed to import ({err})"
                         for m, err in sorted(_IMPORT_ERRORS.items()))
        raise KeyError(
            f"unknown task {shorten(name)}; expected one of {', '.join(sorted(_TASKS)) or '(none)'}"
            + broken
        )
    return _TASKS[name]


__all__ = [
    "SPLITS", "ShardedBatches", "StepOutput", "Task", "detach_state", "get_task",
    "import_task_module", "register_task", "task_names", "to_device",
]
