"""The clipping experiment: tanh RNN vs LSTM on Penn Treebank, same budget, the RNN
with and without gradient-norm clipping (Pascanu, Mikolov & Bengio 2013).

Runs ``scripts/ptb_train.py`` three times with the hyperparameters of the
``ptb_clip_*`` recipes (character-level PTB, one layer of 128 units, batch 32,
50 unrolled steps, SGD lr 0.1 on the loss summed over the steps, 1000 updates),
then draws the learning curves in one PNG and writes a JSON summary.  (The
script, not ``memnets train``, because the engine stops a run at the first
non-finite loss, and the divergence is part of what is shown.)

Usage::

    OMP_NUM_THREADS=1 python scripts/ptb_clipping.py --runs runs/clip \\
        --png results/ptb_clipping.png --json results/ptb_clipping.json
    python scripts/ptb_clipping.py --plot-only ...   # redraw from the run logs
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

RUNS = {
    "LSTM, clip 5": ["--cell", "lstm", "--clip", "5"],
    "tanh RNN, clip 5": ["--cell", "elman", "--nonlinearity", "tanh", "--clip", "5"],
    "tanh RNN, no clipping": ["--cell", "elman", "--nonlinearity", "tanh", "--clip", "0"],
}
COMMON = ["--level", "char", "--layers", "1", "--hidden", "128", "--batch", "32", "--bptt", "50",
          "--lr", "0.1", "--epochs", "1", "--max-steps", "1000", "--log-every", "50",
          "--valid-every", "500", "--init", "0.1"]


TOP = 8.0  # top of the plot's y axis, bits per character


def slug(name: str) -> str:
    return name.lower().replace(",", "").replace(" ", "_")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/clip")
    ap.add_argument("--png", default="results/ptb_clipping.png")
    ap.add_argument("--json", default="results/ptb_clipping.json")
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        for name, extra in RUNS.items():
            out = runs / f"{slug(name)}.json"
            cmd = [sys.executable, "scripts/ptb_train.py", *COMMON, *extra, "--out", str(out)]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    summary = {}
    for name in RUNS:
        log = json.loads((runs / f"{slug(name)}.json").read_text())
        steps = [c["step"] for c in log["curve"]]
        bpc = [c["train_loss"] / math.log(2) if math.isfinite(c["train_loss"]) else math.inf
               for c in log["curve"]]
        shown = [min(b, TOP - 0.1) for b in bpc]  # off-scale values drawn at the top
        valid = log.get("valid_perplexity")
        vbpc = math.log2(valid) if valid and math.isfinite(valid) else math.inf
        label = f"{name}: valid {vbpc:.2f} bpc" + (" (off scale)" if vbpc > TOP else "")
        line, = ax.plot(steps, shown, label=label)
        summary[name] = {
            "diverged": log["diverged"], "steps": log["steps"],
            "final_train_bpc": bpc[-1] if bpc and math.isfinite(bpc[-1]) else None,
            "valid_bpc": vbpc if math.isfinite(vbpc) else None,
            "wall_seconds": log["wall_seconds"], "command": log["command"],
        }
        if log["diverged"]:
            ax.axvline(log["steps"], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("updates (batch 32 x 50 characters)")
    ax.set_ylabel("training loss, bits per character (mean of 50 updates)")
    ax.set_title("PTB characters: tanh RNN vs LSTM, with and without gradient clipping")
    ax.set_ylim(1.0, TOP)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=120)
    Path(args.json).write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
