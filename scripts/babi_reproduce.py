"""Reproduce a bAbI table: train a recipe with several seeds, keep the best on dev.

Sukhbaatar et al. 2015 train each model several times from different random
initialisations and keep one; here the run with the lowest dev (10% of train)
mean task error is kept, and its test errors are reported.

    python scripts/babi_reproduce.py babi-1k-joint --repeats 5 --key en
    python scripts/babi_reproduce.py babi-10k-joint --repeats 1 --key en-10k

A seed whose run finished earlier is reused (its own wall time counted), so
the script can be stopped and started again.  Each repeat is an ordinary
engine run (``runs/babi/<key>/seed<N>``), so ``memnets predict`` and
``memnets eval`` work on it.  The script writes the
``<key>`` section of ``results/babi.json`` (other sections are kept) and prints
the per-task table in Markdown, with the paper's numbers beside ours.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from memnets.data.babi import TASK_NAMES
from memnets.tasks.babi import FAIL_THRESHOLD
from memnets.tasks.recipes import load_config
from memnets.train import load_run, train

# Sukhbaatar et al. 2015, 1k joint PE LS RN 3 hops, test error % per task (the
# published per-task errors whose mean is 12.4%).  The paper's 10k per-task
# column was not at hand; for 10k only its mean (4.2%) is compared, in results/babi.md.
PAPER = {
    "en": {1: 0.0, 2: 11.4, 3: 21.9, 4: 13.4, 5: 14.4, 6: 2.8, 7: 18.3, 8: 9.3, 9: 1.9,
           10: 6.5, 11: 0.3, 12: 0.1, 13: 0.2, 14: 6.9, 15: 0.0, 16: 2.7, 17: 40.4,
           18: 9.4, 19: 88.0, 20: 0.0},
}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def evaluate_stopped(run_dir: Path) -> dict:
    """Dev and test metrics of the best checkpoint of a run that was stopped early."""
    config, task, model = load_run(run_dir, check_data=True)
    bs = config.data.eval_batch_size or config.data.batch_size
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    epochs = max((r.get("epoch", 0) for r in rows), default=0)
    print(f"{run_dir}: stopped after {epochs} epochs; evaluating its best checkpoint")
    return {"dev": task.evaluate(model, "dev", batch_size=bs),
            "test": task.evaluate(model, "test", batch_size=bs),
            "wall_seconds": max((r.get("time", 0.0) for r in rows), default=0.0),
            "stopped_after_epochs": epochs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe")
    p.add_argument("--key", required=True, help="section of results/babi.json (en, en-10k)")
    p.add_argument("--repeats", type=int, default=1, help="runs with seeds 0..N-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs", default="runs/babi", help="folder of the runs")
    p.add_argument("--results", default="results/babi.json")
    p.add_argument("--stopped", action="store_true",
                   help="a run stopped before its end: evaluate its best checkpoint so far")
    p.add_argument("--retrain", action="store_true",
                   help="train again even when a seed's run has finished (default: reuse it)")
    args = p.parse_args(argv)

    runs = []
    for seed in range(args.first_seed, args.first_seed + args.repeats):
        config = load_config(args.recipe, args.set + [f"trainer.seed={seed}",
                                                      "trainer.progress=false",
                                                      "trainer.tensorboard=false"])
        run_dir = Path(args.runs) / args.key / f"seed{seed}"
        t0 = time.time()
        done = run_dir / "results.json"
        if done.is_file() and not args.retrain:  # finished earlier: reuse it
            res = json.loads(done.read_text())
            t0 -= res.get("wall_seconds", 0.0) + res.get("eval_seconds", 0.0)
        elif args.stopped and (run_dir / "checkpoints").is_dir():
            res = evaluate_stopped(run_dir)
            t0 -= res["wall_seconds"]
        else:
            res = train(config, run_dir, quiet=True)
        runs.append({"seed": seed, "run_dir": str(run_dir), "wall_seconds": time.time() - t0,
                     "dev_mean_task_error": res["dev"]["mean_task_error"],
                     "test_mean_task_error": res["test"]["mean_task_error"],
                     "test": res["test"], "config": config.to_dict()})
        print(f"seed {seed}: dev {res['dev']['mean_task_error']:.2f}%  "
              f"test {res['test']['mean_task_error']:.2f}%  "
              f"({time.time() - t0:.0f} s)", flush=True)
    wall = sum(r["wall_seconds"] for r in runs)
    best = min(runs, key=lambda r: r["dev_mean_task_error"])
    test = best["test"]
    per_task = {str(t): round(test[f"error_task{t}"], 2) for t in range(1, 21)
                if f"error_task{t}" in test}
    failed = sum(e > FAIL_THRESHOLD for e in per_task.values())
    section = {
        "mean_error": round(sum(per_task.values()) / len(per_task), 2),
        "failed_tasks": failed,
        "per_task_error": per_task,
        "tasks_present": len(per_task),
        "missing_tasks": [t for t in range(1, 21) if str(t) not in per_task],
        "config": best["config"],
        "recipe": args.recipe,
        "repeats": args.repeats,
        "selected_seed": best["seed"],
        "selected_run": best["run_dir"],
        "runs": [{k: r[k] for k in ("seed", "dev_mean_task_error", "test_mean_task_error",
                                    "wall_seconds")} for r in runs],
        "wall_seconds": round(wall, 1),
        "command": " ".join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:])),
        "git_commit": git_commit(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, CPU only",
        "paper_per_task_error": {str(t): v for t, v in PAPER.get(args.key, {}).items()},
    }
    path = Path(args.results)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[args.key] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")

    paper = PAPER.get(args.key, {})
    print("\n| task | ours (% error) | paper |\n|---|---:|---:|")
    for t in range(1, 21):
        ours = f"{per_task[str(t)]:.1f}" if str(t) in per_task else "missing"
        theirs = f"{paper[t]:.1f}" if t in paper else "-"
        print(f"| {t}: {TASK_NAMES[t]} | {ours} | {theirs} |")
    print(f"| **mean** | **{section['mean_error']:.2f}** | |")
    print(f"| failed (> {FAIL_THRESHOLD:.0f}%) | {failed} | |")
    print(f"\nwall time {wall:.0f} s for {args.repeats} run(s); best seed {best['seed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
