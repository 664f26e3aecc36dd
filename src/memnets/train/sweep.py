"""Several runs of one recipe: seeds, a grid of settings, several cells; a table;
a model chosen on dev by a rule named in the command.

``memnets sweep RECIPE --seeds 10 --grid optimizer.lr=0.01,0.003 --models lstm,gru``
trains every combination into ``OUT/<name>/`` (a run directory like any other),
one after the other or ``--jobs N`` at a time, then writes ``OUT/sweep.json``
and ``OUT/sweep.md``: each run's settings, dev and test main metric, steps and
wall time; the mean and standard deviation over seeds of each setting; and the
run (or, with ``--per KEY``, the run for each value of ``KEY``) that the
selection rule picks on **dev**.  ``memnets compare`` is the case ``--models``;
a recipe whose model runs no cell (:meth:`~memnets.tasks.base.Task.model_cell`:
bAbI's MemN2N) cannot vary it.

A run already in ``OUT/<name>`` is resumed (a finished one is reused) only if
its resolved recipe equals the one asked for; otherwise the sweep stops before
training anything, naming the fields that differ.

This module imports :mod:`memnets.config`, :mod:`memnets.tasks` and the
trainer's run-directory helpers.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memnets.config import Config, ConfigError, parse_override
from memnets.errors import MemnetsError
from memnets.tasks import get_task
from memnets.tasks.recipes import load_config
from memnets.train.checkpoint import find_latest, read_json
from memnets.train.provenance import provenance
from memnets.train.runs import read_run_config

# fields that do not change what a run computes (ignored when reusing a run)
PRESENTATION = {("trainer", "progress"), ("trainer", "tensorboard"), ("trainer", "device")}
# and those that `memnets train --resume` may change besides: the budget, and how fast
# the steps run (threads, torch.compile: the same model, up to rounding)
RESUMABLE = PRESENTATION | {("trainer", "max_steps"), ("trainer", "max_epochs"),
                            ("trainer", "max_minutes"), ("trainer", "early_stopping"),
                            ("trainer", "threads"), ("trainer", "compile")}


@dataclass
class PlannedRun:
    """One run of a sweep: its folder name, its ``--set`` overrides, what varies."""

    name: str
    overrides: list[str]
    settings: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- planning


def parse_seeds(text: str) -> list[int]:
    """``"10"`` -> seeds 0..9; ``"1,5,9"`` or ``"3-7"`` -> those seeds."""
    text = text.strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        elif "-" in text[1:]:
            lo, hi = text.split("-", 1)
            seeds = list(range(int(lo), int(hi) + 1))
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds: expected a count (10), a list (1,5,9) or a range (3-7), "
                          f"got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: expected distinct seeds >= 0, got {text!r}")
    return seeds


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``"optimizer.lr=0.01,0.003"`` -> ``("optimizer.lr", [0.01, 0.003])`` (YAML values);
    values that hold commas as one YAML list: ``"data.tasks=[[1], [2, 3]]"``."""
    if "=" not in text:
        raise ConfigError(f"--grid: expected KEY=V1,V2,... such as optimizer.lr=0.01,0.003, "
                          f"got {text!r}")
    key, values = text.split("=", 1)
    if values.strip().startswith("["):  # a YAML list of values, for values holding commas
        parsed = parse_override(f"{key}={values}")[1]
        if not isinstance(parsed, list):
            raise ConfigError(f"--grid {key}: expected a YAML list such as [[1], [2, 3]], "
                              f"got {values!r}")
    else:
        parsed = [parse_override(f"{key}={v}")[1] for v in values.split(",") if v.strip()]
    if len(parsed) < 1:
        raise ConfigError(f"--grid {key}: expected at least one value, got {values!r}")
    if len(set(map(json.dumps, parsed))) != len(parsed):
        raise ConfigError(f"--grid {key}: a value is given twice in {values!r}")
    return key.strip(), parsed


def _label(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("/", "_").replace(" ", "")
    return text if key == "model.cell" else f"{key.rsplit('.', 1)[-1]}={text}"


def plan_runs(*, overrides: list[str], seeds: list[int] | None = None,
              grid: list[tuple[str, list[Any]]] | None = None,
              models: list[str] | None = None) -> list[PlannedRun]:
    """Every combination of the axes, in a fixed order (grid, then models, then seeds)."""
    axes: list[tuple[str, list[Any]]] = list(grid or [])
    if models:
        axes.append(("model.cell", list(models)))
    if seeds is not None:
        axes.append(("trainer.seed", list(seeds)))
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"sweep: a setting varies twice: {sorted(keys)}")
    if not axes:
        return [PlannedRun("run", list(overrides))]
    runs = []
    for combo in itertools.product(*(values for _, values in axes)):
        settings = dict(zip(keys, combo))
        name = ",".join(_label(k, v) for k, v in settings.items())
        runs.append(PlannedRun(name, [*overrides, *(f"{k}={json.dumps(v)}"
                                                    for k, v in settings.items())], settings))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # short names collide: use the full keys
        for r in runs:
            r.name = ",".join(f"{k}={json.dumps(v)}" for k, v in r.settings.items())
    return runs


# --------------------------------------------------------------------------- reuse


def config_differences(have: dict, want: dict, ignore: set = PRESENTATION) -> list[str]:
    """``section.field (X there, Y asked)`` for every field that differs, apart from
    the ``(section, field)`` pairs in ``ignore``."""
    diff = []
    # top-level values (the task) first, then the sections
    for section in sorted(set(have) | set(want),
                          key=lambda k: (isinstance(have.get(k), dict), k)):
        a, b = have.get(section), want.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if (section, k) not in ignore and a.get(k) != b.get(k):
                    diff.append(f"{section}.{k} ({_fmt(a.get(k))} there, {_fmt(b.get(k))} asked)")
        elif a != b:
            diff.append(f"{section} ({_fmt(a)} there, {_fmt(b)} asked)")
    return diff


def reusable(run_dir: Path, config: Config) -> bool:
    """Whether ``run_dir`` holds a run of exactly ``config`` (to resume or reuse);
    False when it holds none.  A run of other settings is a :class:`ConfigError`
    naming the fields that differ."""
    if find_latest(run_dir)[0] is None:
        return False
    diff = config_differences(read_run_config(run_dir).to_dict(), config.to_dict())
    if diff:
        raise ConfigError(f"{run_dir} holds a run with other settings: {'; '.join(diff[:6])}"
                          f"{'; ...' if len(diff) > 6 else ''}; choose another --out or "
                          f"remove it")
    return True


# --------------------------------------------------------------------------- running


def run_sweep(recipe: str, runs: list[PlannedRun], out: Path, *, jobs: int = 1,
              device: str | None = None, quiet: bool = False,
              task_modules: list[str] | None = None) -> list[dict]:
    """Train every planned run into ``out/<name>``; one row per run (see :func:`row`).

    Every configuration is built and checked, and every existing run directory
    compared, before the first run starts.  A run that fails is recorded
    (``status``) and the others go on.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs: expected at least 1, got {jobs}")
    configs = [load_config(recipe, r.overrides) for r in runs]
    for r, c in zip(runs, configs):
        if "model.cell" in r.settings and get_task(c.task).model_cell(c.model) is None:
            raise ConfigError(f"--models: the {c.task} model of run {r.name!r} has no "
                              f"recurrent cell, so model.cell changes nothing and every cell "
                              f"would train the same model; expected a recipe whose model "
                              f"runs a cell")
    resume = [reusable(out / r.name, c) for r, c in zip(runs, configs)]
    out.mkdir(parents=True, exist_ok=True)

    def one(k: int) -> dict:
        r, config = runs[k], configs[k]
        run_dir = out / r.name
        if quiet:
            config.trainer.progress = False
        if jobs == 1:
            from memnets.train.trainer import train

            if not quiet:
                print(f"== {r.name} ==", flush=True)
            try:
                train(config, run_dir, resume=resume[k], device=device, quiet=quiet)
            except MemnetsError as e:
                return row(r, run_dir, error=str(e))
            return row(r, run_dir)
        cmd = [sys.executable, "-m", "memnets"]
        for m in task_modules or []:
            cmd += ["--task-module", m]
        cmd += ["train", recipe, "--out", str(run_dir), "--quiet"]
        for s in r.overrides + (["trainer.progress=false"] if quiet else []):
            cmd += ["--set", s]
        if resume[k]:
            cmd.append("--resume")
        if device:
            cmd += ["--device", device]
        log = out / f"{r.name}.log"
        with open(log, "w") as f:
            done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, PYTHONUNBUFFERED="1"))
        if not quiet:
            print(f"== {r.name}: exit {done.returncode} ({log})", flush=True)
        error = None
        if done.returncode != 0:
            lines = [s for s in log.read_text(errors="replace").splitlines() if s.strip()]
            error = lines[-1] if lines else f"exit status {done.returncode}"
        return row(r, run_dir, error=error)

    if jobs == 1:
        return [one(k) for k in range(len(runs))]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, range(len(runs))))


def row(run: PlannedRun, run_dir: Path, *, error: str | None = None) -> dict:
    """What the table keeps of a run: settings, dev/test metrics, steps, time, status."""
    out: dict = {"name": run.name, "dir": str(run_dir), "settings": run.settings}
    results = run_dir / "results.json"
    if results.is_file():
        r = read_json(results, "results")
        out.update({k: r.get(k) for k in ("main_metric", "steps", "best_step",
                                           "wall_seconds", "dev", "test", "diverged")})
    if error is not None:
        out["status"] = f"failed: {error if len(error) <= 200 else error[:200] + '...'}"
    elif out.get("diverged"):
        out["status"] = f"diverged at step {out['diverged'].get('step')}"
    elif not results.is_file():
        out["status"] = "failed: no results.json"
    else:
        out["status"] = "ok"
    return out


# --------------------------------------------------------------------------- choosing


def parse_rule(rule: str, task_name: str) -> tuple[str, bool]:
    """``best`` -> (the task's main metric, its direction); ``max:M`` / ``min:M`` -> (M, ...).

    Selection reads the dev split only.
    """
    task = get_task(task_name)
    if rule == "best":
        return task.main_metric, task.higher_is_better
    how, _, metric = rule.partition(":")
    metric = metric.removeprefix("dev.")
    if how not in ("max", "min") or not metric:
        raise ConfigError(f"--select: expected best, max:METRIC or min:METRIC (a dev metric), "
                          f"got {rule!r}")
    if metric.startswith("test"):
        raise ConfigError(f"--select: a model is chosen on dev, never on test; got {rule!r}")
    return metric, how == "max"


def _value(r: dict, split: str, metric: str) -> float | None:
    v = (r.get(split) or {}).get(metric)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def select(rows: list[dict], metric: str, higher: bool, per: str | None = None) -> dict:
    """The row with the best dev ``metric`` (ties: the first planned), per value of ``per``."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        key = json.dumps(r["settings"].get(per)) if per else ""
        groups.setdefault(key, []).append(r)
    chosen = {}
    for key, members in groups.items():
        scored = [(v, i, r) for i, r in enumerate(members)
                  if (v := _value(r, "dev", metric)) is not None]
        if scored:
            best = max(scored, key=lambda t: (t[0] if higher else -t[0], -t[1]))[2]
            chosen[key] = best["name"]
    return chosen


def summarize(rows: list[dict], metric: str) -> list[dict]:
    """Mean and standard deviation over seeds of each setting's dev and test ``metric``."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        rest = {k: v for k, v in r["settings"].items() if k != "trainer.seed"}
        groups.setdefault(json.dumps(rest, sort_keys=True), []).append(r)
    out = []
    for key, members in groups.items():
        entry: dict = {"settings": json.loads(key), "runs": len(members)}
        for split in ("dev", "test"):
            values = [v for r in members if (v := _value(r, split, metric)) is not None]
            if values:
                entry[f"{split}_mean"] = statistics.fmean(values)
                entry[f"{split}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
                entry[f"{split}_n"] = len(values)
        out.append(entry)
    return out


# --------------------------------------------------------------------------- reporting


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows: list[dict], metric: str, chosen: dict) -> str:
    """Markdown: one line per run, the chosen ones marked."""
    keys = sorted({k for r in rows for k in r["settings"]})
    head = ["run", *keys, f"dev {metric}", f"test {metric}", "steps", "wall s", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    picked = set(chosen.values())
    for r in rows:
        cells = [("**" + r["name"] + "**") if r["name"] in picked else r["name"],
                 *[_fmt(r["settings"].get(k, "")) for k in keys],
                 _fmt(_value(r, "dev", metric)), _fmt(_value(r, "test", metric)),
                 str(r.get("steps", "")), f"{r['wall_seconds']:.0f}" if r.get("wall_seconds")
                 else "", r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(groups: list[dict], metric: str) -> str:
    """Markdown: mean ± sd over seeds of each setting."""
    keys = sorted({k for g in groups for k in g["settings"]})
    head = [*keys, "runs", f"dev {metric}", f"test {metric}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [*[_fmt(g["settings"].get(k, "")) for k in keys], str(g["runs"])]
        for split in ("dev", "test"):
            cells.append(f"{g[f'{split}_mean']:.4g} ± {g[f'{split}_sd']:.2g}"
                         if f"{split}_mean" in g else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, *, recipe: str, rows: list[dict], rule: str, metric: str,
                 higher: bool, per: str | None, started: float) -> dict:
    """``out/sweep.json`` and ``out/sweep.md``; returns the JSON written."""
    chosen = select(rows, metric, higher, per)
    groups = summarize(rows, metric)
    report = {"recipe": recipe, "select": {"rule": rule, "metric": metric, "split": "dev",
                                           "higher_is_better": higher, "per": per,
                                           "chosen": chosen},
              "runs": rows, "groups": groups, **provenance(started=started)}
    (out / "sweep.json").write_text(json.dumps(report, indent=1))
    md = [f"# sweep of `{recipe}`", "", f"`{report['command']}` at commit {report['commit']}, "
          f"{report['machine']}; {report['wall_seconds']:.0f} s.", "",
          table(rows, metric, chosen), "", "Mean ± sd over seeds:", "",
          summary_table(groups, metric), "",
          f"Chosen on dev ({rule}: {'highest' if higher else 'lowest'} dev {metric}"
          + (f", per {per}" if per else "") + "): "
          + ", ".join(f"`{n}`" for n in chosen.values()) + "."]
    (out / "sweep.md").write_text("\n".join(md) + "\n")
    return report
