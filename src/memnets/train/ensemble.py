"""``memnets ensemble RUN... --out DIR``: several trained runs as one model.

The members are runs of one task trained on the same data (identical
``task.json``), each contributing the checkpoint it chose on dev.  The ensemble
directory holds ``config.yaml`` and ``task.json`` (the first member's),
``ensemble.json`` (the members, as given and resolved) and ``results.json``
(dev and test metrics, the members' summed training time, provenance).  It is
a run directory for ``memnets eval`` and ``memnets predict``:
:func:`memnets.train.runs.load_run` combines the members with the task's
``build_ensemble``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from memnets.config import ConfigError, dump_config
from memnets.tasks import Task, get_task
from memnets.train.checkpoint import atomic_write_text, json_safe, read_json
from memnets.train.provenance import provenance
from memnets.train.runs import ENSEMBLE, load_run, read_run_config, read_task_state


def make_ensemble(runs: list[str | Path], out: str | Path, *, which: str = "best",
                  device: str = "cpu", quiet: bool = False) -> dict:
    """Write the ensemble directory ``out`` of ``runs`` and score it; returns results.json."""
    started = time.perf_counter()
    runs, out = [Path(r) for r in runs], Path(out)
    if len(runs) < 2:
        raise ConfigError(f"ensemble: expected at least two member runs, got {len(runs)}")
    if len({r.resolve() for r in runs}) != len(runs):
        raise ConfigError("ensemble: a member run is given twice")
    configs = [read_run_config(r) for r in runs]
    states = [read_task_state(r) for r in runs]
    for r, c, s in zip(runs[1:], configs[1:], states[1:]):
        if c.task != configs[0].task:
            raise ConfigError(f"ensemble: {r} is a run of task {c.task!r}, {runs[0]} of "
                              f"{configs[0].task!r}")
        if s != states[0]:
            raise ConfigError(f"ensemble: {r} was trained with other vocabularies or labels "
                              f"than {runs[0]} (their task.json differ)")
    if get_task(configs[0].task).build_ensemble is Task.build_ensemble:
        raise ConfigError(f"ensemble: task {configs[0].task!r} cannot combine runs into an "
                          f"ensemble (it has no build_ensemble)")
    if out.exists() and any(out.iterdir()) and not (out / ENSEMBLE).is_file():
        held = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise ConfigError(f"--out {out}: expected a new or empty folder (or an ensemble "
                          f"directory), got one holding {held}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(configs[0]))
    atomic_write_text(out / "task.json", json.dumps(states[0]))
    atomic_write_text(out / ENSEMBLE, json.dumps(
        {"members": [str(r) for r in runs], "resolved": [str(r.resolve()) for r in runs],
         "checkpoint": which}, indent=1))
    config, task, model = load_run(out, which=which, device=device, check_data=True)
    bs = config.data.eval_batch_size or config.data.batch_size
    results: dict = {"task": config.task, "cell": task.model_cell(config.model),
                     "members": [str(r) for r in runs], "main_metric": task.main_metric,
                     "baselines": task.baselines()}
    trained = 0.0
    for r in runs:
        res = r / "results.json"
        if res.is_file():
            trained += float(read_json(res, "results").get("wall_seconds") or 0.0)
    results["members_wall_seconds"] = trained
    with torch.no_grad():
        for split in ("dev", "test"):
            if split in task.splits():
                results[split] = task.evaluate(model, split, batch_size=bs)
                if not quiet:
                    main = results[split].get(task.main_metric)
                    print(f"{split} {task.main_metric} {main:.4g} (ensemble of {len(runs)})")
    results.update(provenance(started=started))
    results["wall_seconds"] = results.pop("wall_seconds", None)
    atomic_write_text(out / "results.json", json.dumps(json_safe(results), indent=1))
    return results
