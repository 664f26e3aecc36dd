"""Tasks: what a recipe trains (``task: adding``), found by name.

A task module in this package registers its class with :func:`register_task`
when imported.  :func:`get_task` imports every module of this package the first
time a name is not yet known, so an application adds a task by adding a module
here — no list to edit.  A recipe may also name a task outside memnets as
``"package.module:ClassName"``.
"""

from __future__ import annotations

import importlib
import pkgutil

from memnets.tasks.base import SPLITS, ShardedBatches, StepOutput, Task, detach_state, to_device

_TASKS: dict[str, type[Task]] = {}
_IMPORT_ERRORS: dict[str, str] = {}
_DISCOVERED = False


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
        if info.name == "base":
            continue
        try:
            importlib.import_module(f"{__name__}.{info.name}")
        except Exception as e:  # keep other tasks usable; report if this name is asked for
            _IMPORT_ERRORS[info.name] = f"{type(e).__name__}: {e}"


def task_names() -> list[str]:
    """Names of all registered tasks (after importing the task modules), sorted."""
    _discover()
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``, or ``"package.module:Class"``.

    Raises ``KeyError`` with a message naming the known tasks.
    """
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise KeyError(f"cannot import task {name!r}: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise KeyError(f"expected {name!r} to be a Task subclass, got {cls!r}")
        return cls
    if name not in _TASKS:
        _discover()
    if name not in _TASKS:
        broken = "".join(f"; module memnets.tasks.{m} failed to import ({err})"
                         for m, err in sorted(_IMPORT_ERRORS.items()))
        raise KeyError(
            f"unknown task {name!r}; expected one of {', '.join(sorted(_TASKS)) or '(none)'}"
            + broken
        )
    return _TASKS[name]


__all__ = [
    "SPLITS", "ShardedBatches", "StepOutput", "Task", "detach_state", "get_task",
    "register_task", "task_names", "to_device",
]
