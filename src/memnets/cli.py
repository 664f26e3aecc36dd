"""The ``memnets`` command line.

Exit status: 0 success, 2 usage or configuration error (bad recipe, unknown key,
bad ``predict`` input), 1 failure at run time (missing data, NaN loss, ...).
Errors print one line; ``--debug`` prints the traceback too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import memnets

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """Bad arguments detected after parsing (exit status 2)."""


# --------------------------------------------------------------------------- helpers


def _recipe_stem(recipe: str) -> str:
    return Path(recipe).stem if recipe.endswith((".yaml", ".yml")) else recipe


def _default_out(recipe: str) -> Path:
    return Path("runs") / f"{_recipe_stem(recipe)}-{time.strftime('%Y%m%d-%H%M%S')}"


def _latest_run(recipe: str) -> Path:
    runs = sorted(Path("runs").glob(f"{_recipe_stem(recipe)}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise UsageError(f"--resume: no earlier run of {recipe!r} under runs/; pass --out RUN_DIR")
    return runs[-1]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _summary_table(rows: list[dict], main: str) -> str:
    head = f"| cell | test {main} | baseline {main} | ratio | steps | wall time (s) |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        split = "test" if "test" in r else "dev"
        value = r.get(split, {}).get(main)
        base = r.get(split, {}).get(f"baseline_{main}", r.get("baselines", {}).get(main))
        ratio = value / base if isinstance(value, float) and base else None
        lines.append(f"| {r['cell']} | {_fmt(value)} | {_fmt(base)} | "
                     f"{_fmt(ratio) if ratio is not None else '-'} | {r['steps']} | "
                     f"{r['wall_seconds']:.0f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands


def cmd_train(args) -> int:
    from memnets.config import read_yaml_file
    from memnets.tasks.recipes import from_dict, load_config
    from memnets.train import train
    from memnets.train.sweep import RESUMABLE, config_differences

    config = load_config(args.recipe, args.set)  # checked before anything is written
    if args.resume:
        out = Path(args.out) if args.out else _latest_run(args.recipe)
        cfg_file = out / "config.yaml"
        if not cfg_file.is_file():
            raise UsageError(f"--resume: {out} is not a run directory (no config.yaml)")
        have = from_dict(read_yaml_file(cfg_file, "run's config"), source=str(cfg_file))
        diff = config_differences(have.to_dict(), config.to_dict(), ignore=RESUMABLE)
        if diff:
            may = ", ".join(f"{s}.{k}" for s, k in sorted(RESUMABLE))
            raise UsageError(
                f"--resume: {args.recipe} with these --set differs from the run in {out}: "
                f"{'; '.join(diff[:6])}{'; ...' if len(diff) > 6 else ''}; give the run's "
                f"recipe and --set again (its config.yaml has them all); a resume may "
                f"change only {may}")
    else:
        if not args.out and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError("under torchrun, pass --out RUN_DIR so that every process "
                             "writes to the same run directory")
        out = Path(args.out) if args.out else _default_out(args.recipe)
        if (out / "checkpoints" / "latest.json").exists():
            raise UsageError(f"{out} already holds a run; add --resume to continue it or "
                             f"choose another --out")
    if args.quiet:
        config.trainer.progress = False
    results = train(config, out, resume=args.resume, device=args.device, quiet=args.quiet)
    if not args.quiet and int(os.environ.get("RANK", "0")) == 0:
        main = results["main_metric"]
        split = "test" if "test" in results else "dev"
        base = results["baselines"].get(main)
        extra = f" (trivial baseline {base:.4g})" if base is not None else ""
        print(f"{split} {main} {results[split][main]:.4g}{extra}; "
              f"{results['steps']} steps in {results['wall_seconds']:.0f} s; run: {out}")
    return EXIT_OK


def cmd_eval(args) -> int:
    from memnets.train import load_run
    from memnets.train.checkpoint import json_safe

    config, task, model = load_run(args.run_dir, which=args.checkpoint, device=args.device,
                                   check_data=True)
    if args.split not in task.splits():
        raise UsageError(f"--split: task {config.task!r} has splits {', '.join(task.splits())}, "
                         f"got {args.split!r}")
    bs = config.data.eval_batch_size or config.data.batch_size
    metrics = task.evaluate(model, args.split, batch_size=bs)
    if args.json:
        print(json.dumps(json_safe({"split": args.split, **metrics}), indent=1))
        return EXIT_OK
    width = max([len(k) for k in metrics] + [1])
    print(f"{args.split} ({args.checkpoint} checkpoint of {args.run_dir}):")
    for k, v in metrics.items():
        print(f"  {k:<{width}}  {_fmt(v)}")
    return EXIT_OK


def cmd_config(args) -> int:
    from memnets.config import dump_config
    from memnets.tasks.recipes import load_config

    print(dump_config(load_config(args.recipe, args.set)), end="")
    return EXIT_OK


def cmd_predict(args) -> int:
    from memnets.errors import DataError
    from memnets.train import load_run

    _, task, model = load_run(args.run_dir, which=args.checkpoint, device=args.device)
    try:
        text = task.predict(model, list(args.input))
    except DataError:  # a file it was given is broken (exit 1)
        raise
    except ValueError as e:  # the task rejected its input
        raise UsageError(str(e)) from e
    print(text)
    return EXIT_OK


def cmd_generate(args) -> int:
    from memnets.train import load_run

    _, task, model = load_run(args.run_dir, which=args.checkpoint, device=args.device)
    try:
        text = task.generate(model, list(args.input))
    except ValueError as e:  # the task rejected its input
        raise UsageError(str(e)) from e
    print(text)
    return EXIT_OK


RECIPES_WIDTH = 100  # columns of `memnets recipes`


def cmd_recipes(args) -> int:
    import textwrap

    from memnets.config import ConfigError, load_raw, recipe_names
    from memnets.data.paths import data_root

    rows, roots = [], set()
    for name in recipe_names():
        try:
            raw = load_raw(name)
        except ConfigError as e:
            rows.append((name, "?", "?", "?", f"(invalid: {e})"))
            continue
        info = raw.get("info") or {}
        dataset = str(info.get("dataset", "none"))
        if dataset.startswith("none"):
            here = "-"
        else:
            root = data_root((raw.get("data") or {}).get("dir"))
            roots.add(root)
            here = "yes" if (root / dataset).is_dir() else "no"
        rows.append((name, str(raw.get("task", "?")), dataset, here,
                     " ".join(str(info.get("target", "")).split())))
    if not rows:
        print("no recipes shipped")
        return EXIT_OK
    head = ("recipe", "task", "dataset", "found", "target")
    w = [max(len(r[i]) for r in [*rows, head]) for i in range(4)]
    indent = sum(w) + 2 * len(w)
    wrap = max(RECIPES_WIDTH - indent, 20)
    for r in [head, *rows]:
        target = textwrap.wrap(r[4], wrap, break_on_hyphens=False) or [""]
        print("  ".join(f"{c:<{n}}" for c, n in zip(r, w)) + "  " + target[0])
        for more in target[1:]:
            print(" " * indent + more)
    where = ", ".join(str(p) for p in sorted(roots)) or "-"
    print()
    print(textwrap.fill(f"found: whether the dataset's folder is in the data root ({where}: "
                        f"data.dir, else $MEMNETS_DATA, else ../shared/data); a recipe with "
                        f"data.download: true fetches a missing public dataset.",
                        RECIPES_WIDTH, break_on_hyphens=False, break_long_words=False))
    return EXIT_OK


def _models(text: str) -> list[str]:
    cells = [c.strip() for c in text.split(",") if c.strip()]
    if not cells:
        raise UsageError("--models: expected a comma-separated list of cells, e.g. lstm,gru,elman")
    known = memnets.cell_names()
    for c in cells:
        if c not in known:
            raise UsageError(f"--models: unknown cell {c!r}; expected some of {', '.join(known)}")
    return cells


def cmd_sweep(args) -> int:
    from memnets.tasks.recipes import load_config
    from memnets.train import sweep
    from memnets.train.plots import plot_curves

    started = time.perf_counter()
    seeds = sweep.parse_seeds(args.seeds) if args.seeds else None
    grid = [sweep.parse_grid(g) for g in args.grid]
    models = _models(args.models) if args.models else None
    if seeds is None and not grid and not models:
        raise UsageError("sweep: expected at least one of --seeds, --grid, --models")
    runs = sweep.plan_runs(overrides=list(args.set), seeds=seeds, grid=grid, models=models)
    task_name = load_config(args.recipe, runs[0].overrides).task
    metric, higher = sweep.parse_rule(args.select, task_name)
    if args.per is not None and not any(args.per in r.settings for r in runs):
        raise UsageError(f"--per: expected one of the settings that vary "
                         f"({', '.join(runs[0].settings)}), got {args.per!r}")
    out = Path(args.out) if args.out else _default_out(f"sweep-{_recipe_stem(args.recipe)}")
    rows = sweep.run_sweep(args.recipe, runs, out, jobs=args.jobs, device=args.device,
                           quiet=args.quiet, task_modules=getattr(args, "task_module", []))
    report = sweep.write_report(out, recipe=args.recipe, rows=rows, rule=args.select,
                                metric=metric, higher=higher, per=args.per, started=started)
    from memnets.train.logs import read_rows

    done = [out / r["name"] for r in rows if read_rows(out / r["name"])]
    if done:
        plot_curves(done, out / "curves.png", labels=[p.name for p in done],
                    title=f"{_recipe_stem(args.recipe)}: sweep")
    print(sweep.table(rows, metric, report["select"]["chosen"]))
    print(f"chosen on dev: {', '.join(report['select']['chosen'].values()) or '(none)'}; "
          f"{out / 'sweep.md'}")
    failed = [r for r in rows if r["status"].startswith("failed")]
    return EXIT_RUNTIME if failed else EXIT_OK


def cmd_ensemble(args) -> int:
    from memnets.train.ensemble import make_ensemble

    make_ensemble(args.runs, args.out, which=args.checkpoint, device=args.device,
                  quiet=args.quiet)
    print(f"ensemble of {len(args.runs)} runs: {args.out} (memnets eval / predict load it)")
    return EXIT_OK


def cmd_compare(args) -> int:
    from memnets.errors import TrainingError
    from memnets.train import sweep
    from memnets.train.checkpoint import read_json
    from memnets.train.plots import plot_curves

    cells = _models(args.models)
    out = Path(args.out) if args.out else _default_out(f"compare-{_recipe_stem(args.recipe)}")
    runs = sweep.plan_runs(overrides=list(args.set), models=cells)
    rows = sweep.run_sweep(args.recipe, runs, out, device=args.device, quiet=args.quiet)
    for r in rows:
        if r["status"] != "ok":
            raise TrainingError(f"compare: run {r['name']} {r['status']}")
    results = [read_json(out / c / "results.json", "results") for c in cells]
    main = results[0]["main_metric"]
    table = _summary_table(results, main)
    png = plot_curves([out / c for c in cells], out / "curves.png", labels=cells,
                      title=f"{_recipe_stem(args.recipe)}: dev {main} per cell")
    (out / "compare.md").write_text(
        f"# {_recipe_stem(args.recipe)}: {', '.join(cells)}\n\n{table}\n\n![curves](curves.png)\n")
    (out / "compare.json").write_text(json.dumps(results, indent=1))
    print(table)
    print(f"learning curves: {png}")
    return EXIT_OK


def cmd_plot(args) -> int:
    from memnets.train.plots import plot_curves

    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        if not (d / "metrics.jsonl").is_file():
            raise UsageError(f"{d} is not a run directory (no metrics.jsonl)")
    out = Path(args.out) if args.out else dirs[0] / "curves.png"
    try:
        print(plot_curves(dirs, out, metric=args.metric))
    except ValueError as e:  # no rows, or no such metric: nothing is written
        raise UsageError(str(e)) from None
    return EXIT_OK


def cmd_plot_gradients(args) -> int:
    import torch

    from memnets.tasks.base import input_gradient_norms
    from memnets.train import load_run
    from memnets.train.plots import plot_gradient_norms

    curves, kinds = {}, set()
    for run in args.run_dirs:
        config, task, model = load_run(run, which=args.checkpoint, device=args.device)
        if args.init:
            torch.manual_seed(config.trainer.seed)
            model = task.build_model(config.model).to(next(model.parameters()).device)
        split = "dev" if "dev" in task.splits() else "train"
        batch = next(iter(task.batches(split, batch_size=args.batch_size)))
        model.eval()
        norms = task.gradient_probe(model, batch)
        kind = "h_t"
        if norms is None:  # the generic probe: the gradient at the recurrent input
            norms, kind = input_gradient_norms(task, model, batch), "x_t"
        kinds.add(kind)
        which = "init" if args.init else args.checkpoint
        cell = getattr(config.model, "cell", None)
        label = f"{cell or config.task} ({which}, {Path(run).name})"
        curves[label] = [float(v) for v in norms]
    if len(kinds) > 1:
        raise UsageError("expected runs probed the same way; some report dL/dh_t (memory "
                         "tasks) and some dL/dx_t (the recurrent input): plot them apart")
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "gradients.png"
    (kind,) = kinds
    plot_gradient_norms(curves, out, ylabel=rf"$\|\partial L / \partial {kind}\|$ (batch mean)")
    out.with_suffix(".json").write_text(json.dumps(curves))
    for label, norms in curves.items():
        print(f"{label}: |dL/dh_1| = {norms[0]:.3g}, |dL/dh_T| = {norms[-1]:.3g}, "
              f"ratio {norms[0] / max(norms[-1], 1e-30):.3g}")
    print(out)
    return EXIT_OK


def cmd_report(args) -> int:

    import yaml

    from memnets.train.plots import plot_curves

    runs = []
    for d in map(Path, args.run_dirs):
        res, cfg = d / "results.json", d / "config.yaml"
        if not (res.is_file() and cfg.is_file()):
            raise UsageError(f"{d} is not a finished run (no results.json or config.yaml)")
        runs.append((d, json.loads(res.read_text()), yaml.safe_load(cfg.read_text())))
    # columns: the data/model fields that differ between the runs
    varying = []
    for section in ("data", "model"):
        keys = sorted({k for _, _, c in runs for k in c[section]})
        for k in keys:
            values = {json.dumps(c[section].get(k)) for _, _, c in runs}
            if len(values) > 1 and k != "cell":
                varying.append((section, k))
    main = runs[0][1]["main_metric"]
    split = "test" if all("test" in r for _, r, _ in runs) else "dev"
    head = ["run", "cell", *[f"{s}.{k}" for s, k in varying], f"{split} {main}",
            f"baseline {main}", "ratio", "steps", "best step", "wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = []
    for d, r, c in runs:
        value = r[split][main]
        base = r[split].get(f"baseline_{main}", r.get("baselines", {}).get(main))
        cell = r.get("cell", c["model"]["cell"]) or "-"  # null: the model has no cell
        row = {"run": d.name, "cell": cell,
               **{f"{s}.{k}": c[s].get(k) for s, k in varying},
               main: value, f"baseline_{main}": base, "steps": r.get("steps"),
               "best_step": r.get("best_step"), "wall_seconds": r["wall_seconds"],
               "metrics": r[split]}
        rows.append(row)
        cells = [d.name, cell, *[_fmt(c[s].get(k)) for s, k in varying],
                 _fmt(value), _fmt(base), _fmt(value / base) if base else "-",
                 *("-" if r.get(k) is None else str(r[k]) for k in ("steps", "best_step")),
                 f"{r['wall_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        from memnets.train.provenance import provenance

        made = provenance()
        commit = made["commit"]
        out.with_suffix(".json").write_text(json.dumps(
            {"split": split, "main_metric": main, **made, "runs": rows}, indent=1))
        trained = [(d, r, c) for d, r, c in runs if (d / "metrics.jsonl").is_file()]
        # an ensemble has no learning curve of its own: its row is in the table only
        if trained:
            png = plot_curves([d for d, _, _ in trained], out.with_suffix(".png"),
                              labels=[_report_label(d, r, c, varying) for d, r, c in trained])
            print(f"wrote {out.with_suffix('.json')} and {png} (commit {commit})")
        else:
            print(f"wrote {out.with_suffix('.json')} (commit {commit}; no run with "
                  f"learning curves to draw)")
    return EXIT_OK


def _report_label(run_dir: Path, results: dict, config: dict, varying: list) -> str:
    """A legend entry of ``memnets report``: the run's name, its cell when the name
    is not the cell, and the settings that differ between the runs (e.g. ``data.T=200``)
    when they are at most three."""
    parts = [f"{s}.{k}={_fmt(config[s].get(k))}" for s, k in varying]
    if len(parts) > 3:  # different recipes: the run's name says more than a list
        parts = []
    cell = results.get("cell", config["model"].get("cell"))
    if cell and cell != run_dir.name:
        parts.insert(0, str(cell))
    return f"{run_dir.name} ({', '.join(parts)})" if parts else run_dir.name


def cmd_data(args) -> int:
    from memnets.data.scenes import dataset_counts, ensure_generated, write_images

    counts = {}
    for item in args.count:
        split, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise UsageError(f"--count: expected SPLIT=N (e.g. train=100), got {item!r}")
        counts[split.strip()] = int(value)
    counts = dataset_counts(args.name, counts)  # a bad split is a ConfigError (exit 2)
    folder = ensure_generated(args.name, Path(args.out), seed=args.seed, counts=counts)
    print(f"{args.name} (seed {args.seed}) in {folder}")
    print("  " + ", ".join(f"{split} {n}" for split, n in counts.items()) + " images")
    if args.images:
        n = write_images(args.name, folder)
        print(f"  {n} PNG images in {folder / 'images'}/<split>/<k>.png")
    print(f"  manifest: {folder / 'MANIFEST.json'}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from memnets.demo import run_demo

    run_demo()
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    common.add_argument("--task-module", action="append", default=argparse.SUPPRESS,
                        metavar="MODULE",
                        help="import MODULE first, so that the tasks it registers can be "
                             "named by recipes (repeatable); recipes and run directories "
                             "never choose code to import")
    parser = argparse.ArgumentParser(
        prog="memnets", parents=[common],
        description="Neural networks with memory: train, evaluate, explain.",
        epilog="Exit status: 0 success, 2 usage or configuration error, 1 run-time failure.",
    )
    parser.add_argument("--version", action="version", version=f"memnets {memnets.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, fn, help, description=None):
        p = sub.add_parser(name, parents=[common], help=help, description=description or help)
        p.set_defaults(fn=fn)
        return p

    def device(p):
        p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")

    p = add("train", cmd_train, "train a recipe",
            "Train a recipe (a shipped name, see `memnets recipes`, or a YAML file). Under "
            "torchrun --nproc_per_node=N it trains with DistributedDataParallel.")
    p.add_argument("recipe", help="recipe name or path to a .yaml file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set model.hidden_size=256 (repeatable)")
    p.add_argument("--out", help="run directory (default runs/RECIPE-TIMESTAMP)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (default: the latest run of RECIPE) from its "
                        "last checkpoint; RECIPE and --set must give the run's settings again, "
                        "and may change only the budget (trainer.max_steps, max_epochs, "
                        "max_minutes, early_stopping) and trainer.progress, tensorboard, "
                        "device, threads, compile")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    device(p)

    p = add("eval", cmd_eval, "evaluate a run on a split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", help="train | dev | test (default test)")
    p.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--json", action="store_true",
                   help="print the metrics as JSON, at full precision (the text rounds them)")

    p = add("config", cmd_config, "print a recipe as it resolves (YAML)",
            "Print the recipe with its extends merged, the --set overrides applied and "
            "every default filled in, checked as memnets train checks it; nothing is "
            "trained.")
    p.add_argument("recipe", help="recipe name or path to a .yaml file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set model.hidden_size=256 (repeatable)")

    for name, fn, what, more in (
            ("predict", cmd_predict, "predict with a trained run",
             " Every INPUT is one input; --file PATH and - (standard input) give one per "
             "line; --json prints one JSON object per input."),
            ("generate", cmd_generate, "generate with a trained language model", "")):
        p = add(name, fn, what,
                f"{what}. Everything after RUN_DIR goes to the task, which parses it itself: "
                f"`memnets {name} RUN_DIR --help` shows the task's own options.{more}")
        p.add_argument("--checkpoint", default="best", choices=["best", "latest"])
        p.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
        p.add_argument("run_dir")
        p.add_argument("input", nargs=argparse.REMAINDER, help="the task's own arguments")

    add("recipes", cmd_recipes, "list the shipped recipes, the data they need and their targets")

    p = add("compare", cmd_compare, "train one recipe with several cells; plot and tabulate",
            "Train the same recipe once per cell (model.cell), then write DIR/curves.png, "
            "DIR/compare.md and DIR/compare.json and print the table. Runs already finished "
            "in DIR are resumed, not repeated.")
    p.add_argument("recipe")
    p.add_argument("--models", required=True, help="comma-separated cells, e.g. lstm,gru,elman")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="folder for the runs (default runs/compare-RECIPE-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true")
    device(p)

    p = add("sweep", cmd_sweep, "train a recipe over seeds, a grid and cells; tabulate; "
            "choose on dev",
            "Train every combination of --grid values, --models and --seeds into "
            "DIR/<name> (sequentially, or --jobs N at a time), then write DIR/sweep.md and "
            "DIR/sweep.json: each run's dev and test main metric, the mean and sd over seeds, "
            "and the run the --select rule picks on dev. Runs already in DIR are reused when "
            "their settings are the ones asked for.")
    p.add_argument("recipe")
    p.add_argument("--seeds", help="10 (seeds 0-9), 1,5,9 or 3-7: vary trainer.seed")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="vary a field over values, e.g. optimizer.lr=0.01,0.003 (repeatable)")
    p.add_argument("--models", help="comma-separated cells to vary model.cell over")
    p.add_argument("--select", default="best", metavar="RULE",
                   help="how to choose on dev: best (the task's main metric), max:METRIC or "
                        "min:METRIC (default best)")
    p.add_argument("--per", metavar="KEY", help="choose one run per value of this varied "
                                                "setting (e.g. model.cell)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="folder for the runs (default runs/sweep-RECIPE-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true")
    device(p)

    p = add("ensemble", cmd_ensemble, "combine trained runs into one model (an ensemble run)",
            "Combine runs of one task trained on the same data (each its checkpoint chosen on "
            "dev) with the task's build_ensemble; write DIR (config.yaml, task.json, "
            "ensemble.json, results.json with dev and test metrics). memnets eval and "
            "memnets predict load DIR like any run.")
    p.add_argument("runs", nargs="+", help="the member run directories")
    p.add_argument("--out", required=True, help="the ensemble directory to write")
    p.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quiet", action="store_true")

    p = add("plot", cmd_plot, "plot learning curves of one or more runs as PNG")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--metric", help="metric to plot (default: the task's main metric)")
    p.add_argument("--out", help="PNG path (default RUN_DIR/curves.png)")

    p = add("plot-gradients", cmd_plot_gradients,
            "plot |dL/dh_t| over time t for one or more runs (vanishing gradients)")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--init", action="store_true",
                   help="use freshly initialised weights instead of the trained ones")
    p.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--out", help="PNG path (default RUN_DIR/gradients.png)")
    p.add_argument("--device", default="cpu")

    p = add("report", cmd_report, "tabulate finished runs (markdown) and plot their curves",
            "Print a markdown table of finished runs: the data/model fields that differ "
            "between them, the test (or dev) main metric against its trivial baseline, "
            "steps and wall time. With --out PATH also write PATH.json and PATH.png.")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="path without suffix, e.g. results/adding")

    p = add("data", cmd_data, "generate an image dataset (Sort-of-CLEVR, shape captions, "
            "digit strings)",
            "Generate a dataset into --out: <split>.jsonl (one image description per line) "
            "and MANIFEST.json (generator, version, seed, counts, sha256 of each file); the "
            "same seed gives the same bytes. A folder that already holds this generation is "
            "left as it is. digit-strings needs scikit-learn (pip install 'memnets[vision]').")
    p.add_argument("name", choices=["sort-of-clevr", "shape-captions", "digit-strings"])
    p.add_argument("--out", required=True, help="the dataset's folder")
    p.add_argument("--seed", type=int, default=0, help="the generation's seed (default 0)")
    p.add_argument("--count", action="append", default=[], metavar="SPLIT=N",
                   help="images in a split instead of the default, e.g. train=100 "
                        "(repeatable)")
    p.add_argument("--images", action="store_true",
                   help="also write every image as DIR/images/<split>/<k>.png")

    add("demo", cmd_demo, "a short tour of the recurrent core")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "fn", None) is None:
        parser.print_help()
        return EXIT_USAGE
    from memnets.config import ConfigError

    try:
        for module in getattr(args, "task_module", []):
            from memnets.tasks import import_task_module

            try:
                import_task_module(module)
            except KeyError as e:
                raise UsageError(e.args[0]) from None
        code = args.fn(args)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Under torchrun, a process group's native threads can still be winding
            # down while the interpreter tears down its globals, which aborts the
            # process now and then ("terminate called without an active exception")
            # although training finished and everything is written: leave at once.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except KeyboardInterrupt:
        print("memnets: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, UsageError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"memnets {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(f"memnets {args.command}: error: {type(e).__name__}: {e}"
              if not isinstance(e, RuntimeError) else f"memnets {args.command}: error: {e}",
              file=sys.stderr)
        return EXIT_RUNTIME
