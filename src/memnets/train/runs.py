"""Run directories: rebuild ``(config, task, model)`` of a run, or of an ensemble of runs.

A run directory holds ``config.yaml``, ``task.json`` and ``checkpoints/`` (see
:mod:`memnets.train.checkpoint`).  An *ensemble* directory holds the first two
and ``ensemble.json`` naming its member runs (``memnets ensemble``); loading it
loads every member and combines them with the task's ``build_ensemble``.  Every
file read is checked, and a broken one is named in the error.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from memnets.config import Config, ConfigError, read_yaml_file
from memnets.data.paths import DataError, data_root
from memnets.errors import CheckpointError, MemnetsError, TrainingError, shorten
from memnets.tasks import get_task
from memnets.tasks.base import Task
from memnets.tasks.recipes import from_dict
from memnets.train import distributed as ddp
from memnets.train.checkpoint import (
    complete_checkpoints,
    find_latest,
    load_model_weights,
    read_json,
    read_pointer,
)

ENSEMBLE = "ensemble.json"


def make_task(config: Config, *, check_data: bool = True) -> Task:
    """The task of a recipe with its data root resolved (the task is not set up)."""
    cls = get_task(config.task)
    data_dir = None
    if cls.needs_data:
        data_dir = data_root(config.data.dir)
        if check_data and not data_dir.is_dir():
            raise DataError(
                f"data directory {data_dir} does not exist: task {config.task!r} reads its "
                f"files from the data root (set data.dir, $MEMNETS_DATA, or put the datasets "
                f"in ../shared/data)"
            )
    return cls(config.data, data_dir)


def load_run(run_dir: str | Path, *, which: str = "best", device: str = "cpu",
             check_data: bool = False):
    """Rebuild ``(config, task, model)`` of a run from its directory.

    ``which`` is ``best`` (falls back to ``latest`` when the run kept no best)
    or ``latest``.  Reads ``config.yaml``, ``task.json`` and the weights only.

    An ensemble directory (no checkpoint of its own; ``ensemble.json`` lists its
    ``members``, as ``memnets ensemble`` writes it; older ones list them in
    ``results.json``) loads every member run and combines them with the task's
    ``build_ensemble``.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    task = make_task(config, check_data=check_data)
    task_state = read_task_state(run_dir)
    load_task_state(task, task_state, run_dir / "task.json")
    members = _ensemble_members(run_dir)
    if members is not None:
        models = []
        for member in members:
            state = read_task_state(member)
            if state != task_state:
                raise ConfigError(f"ensemble {run_dir}: member {member} was trained with other "
                                  f"vocabularies or labels (its task.json differs)")
            models.append(load_run(member, which=which, device=device)[2])
        return config, task, combine(task, models).to(ddp.resolve_device(device)).eval()
    model = build_from_files(task, config, run_dir).to(ddp.resolve_device(device))
    folder = read_pointer(run_dir, which) or find_latest(run_dir)[0]
    if folder is None:
        raise TrainingError(f"{run_dir} has no checkpoint yet (no checkpoints/latest.json)")
    load_model_weights(model, folder / "model.safetensors")
    model.eval()
    return config, task, model


def _ensemble_members(run_dir: Path) -> list[Path] | None:
    """The member runs of an ensemble directory, or None for an ordinary run.

    A member's path is taken as written, else beside the ensemble (the same
    parent folder), so that a folder of runs can be moved as a whole."""
    listing = run_dir / ENSEMBLE
    if not listing.is_file():  # the older layout: the members in results.json
        listing = run_dir / "results.json"
        if complete_checkpoints(run_dir) or not listing.is_file():
            return None
    info = read_json(listing, "ensemble members")
    listed = info.get("members") if isinstance(info, dict) else None
    if not listed:
        if listing.name == ENSEMBLE:
            raise CheckpointError(f"{listing}: expected 'members', a list of run folders")
        return None
    if not isinstance(listed, list) or not all(isinstance(m, str) for m in listed):
        raise CheckpointError(f"{listing}: expected 'members' to be a list of run folders, "
                              f"got {shorten(listed)}")
    found = []
    for name in listed:
        tries = [Path(name), run_dir.parent / Path(name).name]
        hit = next((t for t in tries if (t / "config.yaml").is_file()), None)
        if hit is None:
            raise ConfigError(f"ensemble {run_dir}: member run {name!r} not found (looked in "
                              + " and ".join(str(t) for t in tries) + ")")
        found.append(hit)
    return found


def combine(task: Task, models: list[nn.Module]) -> nn.Module:
    """The task's ensemble of ``models``; a task that cannot combine runs says so."""
    try:
        return task.build_ensemble(models)
    except NotImplementedError:
        raise ConfigError(f"task {task.name!r} cannot combine runs into an ensemble "
                          f"(it has no build_ensemble)") from None


def read_run_config(run_dir: Path) -> Config:
    """The resolved recipe of a run directory (``config.yaml``), checked."""
    cfg_path = Path(run_dir) / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory: expected {cfg_path}")
    return from_dict(read_yaml_file(cfg_path, "run's config"), source=str(cfg_path))


def read_task_state(run_dir: Path) -> dict:
    """``task.json`` of a run (vocabularies and such); ``{}`` when there is none."""
    path = Path(run_dir) / "task.json"
    if not path.is_file():
        return {}
    state = read_json(path, "task state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(state).__name__}")
    return state


def load_task_state(task: Task, state: dict, where: Path) -> None:
    """``task.load_state_dict(state)``; a state the task cannot use names the file."""
    try:
        task.load_state_dict(state)
    except MemnetsError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        what = f"the field {e.args[0]!r}" if isinstance(e, KeyError) else shorten(str(e), 120)
        raise CheckpointError(f"{where}: expected the state of task {task.name!r}; "
                              f"{type(e).__name__}: {what}") from None


def build_from_files(task: Task, config: Config, run_dir: Path) -> nn.Module:
    """``task.build_model`` for a task restored from a run directory: a model that
    cannot be built from what the files say names them."""
    try:
        return task.build_model(config.model)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise CheckpointError(f"{run_dir}: the model cannot be built from config.yaml and "
                              f"task.json ({shorten(str(e), 160)})") from None
