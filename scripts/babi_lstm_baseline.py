"""The LSTM baseline's per-task table: one ``babi-lstm`` run per bAbI task.

Weston et al. 2015 train their LSTM reader on each task alone; so does this
script (1k questions per task by default), and it writes the ``lstm-<set>``
section of ``results/babi.json`` (per-task test error of the weights chosen on
dev, mean, failed tasks, wall time).  A task whose run finished earlier is
reused, so the script can be stopped and started again.

    python scripts/babi_lstm_baseline.py --runs runs/babi-lstm
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

from memnets.tasks.babi import FAIL_THRESHOLD
from memnets.tasks.recipes import load_config
from memnets.train import train

# Weston et al. 2015's LSTM, 1k per task (as tabled by Sukhbaatar et al. 2015), % test error
PAPER_LSTM = {1: 50.0, 2: 80.0, 3: 80.0, 4: 39.0, 5: 30.0, 6: 52.0, 7: 51.0, 8: 55.0, 9: 36.0,
              10: 56.0, 11: 38.0, 12: 26.0, 13: 6.0, 14: 73.0, 15: 79.0, 16: 77.0, 17: 49.0,
              18: 48.0, 19: 92.0, 20: 9.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="babi-lstm")
    ap.add_argument("--set-name", default="en")
    ap.add_argument("--tasks", default="1-20", help="e.g. 1-20 or 1,2,16")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--runs", default="runs/babi-lstm")
    ap.add_argument("--results", default="results/babi.json")
    args = ap.parse_args(argv)
    if "-" in args.tasks:
        lo, hi = (int(x) for x in args.tasks.split("-"))
        tasks = list(range(lo, hi + 1))
    else:
        tasks = [int(x) for x in args.tasks.split(",")]
    per_task, walls, config = {}, {}, None
    for t in tasks:
        run = Path(args.runs) / args.set_name / f"task{t}"
        done = run / "results.json"
        if not done.is_file():
            config = load_config(args.recipe, [f"data.set_name={args.set_name}",
                                               f"data.tasks=[{t}]", "trainer.progress=false",
                                               *args.set])
            train(config, run, quiet=True)
        res = json.loads(done.read_text())
        per_task[str(t)] = round(res["test"]["mean_task_error"], 2)
        walls[str(t)] = round(res["wall_seconds"], 1)
        print(f"task {t}: test error {per_task[str(t)]:.1f}% (paper {PAPER_LSTM[t]:.0f}%), "
              f"{walls[str(t)]:.0f} s", flush=True)
    config = config or load_config(args.recipe, [f"data.set_name={args.set_name}", *args.set])
    mean = sum(per_task.values()) / len(per_task)
    section = {
        "mean_error": round(mean, 2),
        "failed_tasks": sum(v > FAIL_THRESHOLD for v in per_task.values()),
        "per_task_error": per_task, "per_task_wall_seconds": walls,
        "wall_seconds": round(sum(walls.values()), 1),
        "training": "each task alone", "recipe": args.recipe, "overrides": args.set,
        "model": {k: v for k, v in vars(config.model).items()},
        "paper_per_task_error": {str(k): v for k, v in PAPER_LSTM.items()},
        "command": "python scripts/babi_lstm_baseline.py " + " ".join(
            [f"--set-name {args.set_name}", f"--tasks {args.tasks}", f"--runs {args.runs}"]
            + [f"--set {s}" for s in args.set]),
        "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
        "machine": f"{platform.machine()}, CPU, 1 thread",
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    path = Path(args.results)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[f"lstm-{args.set_name}"] = section
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"mean {mean:.2f}%, {section['failed_tasks']} failed; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
