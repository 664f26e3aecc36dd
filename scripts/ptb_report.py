"""Write ``results/ptb.json`` from the logs of ``scripts/ptb_train.py`` and
``scripts/ptb_clipping.py``.

Usage::

    python scripts/ptb_report.py --small runs/ptb_small.json \\
        --clipping results/ptb_clipping.json --out results/ptb.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", default="runs/ptb_small.json")
    ap.add_argument("--clipping", default="results/ptb_clipping.json")
    ap.add_argument("--out", default="results/ptb.json")
    args = ap.parse_args(argv)
    log = json.loads(Path(args.small).read_text())
    epochs = log["epochs"]
    best = min(epochs, key=lambda e: e["valid_perplexity"])
    small = {
        "test_perplexity": finite(log.get("test_perplexity", best.get("test_perplexity"))),
        "valid_perplexity": finite(log.get("valid_perplexity", best["valid_perplexity"])),
        "wall_seconds": round(log["wall_seconds"], 1),
        "epochs_completed": len(epochs),
        "epochs_planned": log["args"]["epochs"],
        "best_epoch": best["epoch"],
        "complete": log.get("complete", True),
        "per_epoch": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in e.items()}
                      for e in epochs],
        "command": log["command"],
        "git_commit": log.get("git_commit"),
        "machine": log.get("machine"),
        "recipe": "ptb_small (same hyperparameters)",
    }
    out = {"small": small,
           "medium": {"run": False, "reason": "GPU recipe (ptb_medium); no GPU in this session"}}
    if Path(args.clipping).is_file():
        out["clipping"] = json.loads(Path(args.clipping).read_text())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: small[k] for k in ("test_perplexity", "valid_perplexity",
                                             "wall_seconds", "epochs_completed")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
