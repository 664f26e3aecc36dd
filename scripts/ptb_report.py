"""Write ``results/ptb.json`` from the logs of ``scripts/ptb_train.py`` and
``scripts/ptb_clipping.py``.

Usage::

    python scripts/ptb_report.py --small runs/ptb_small.json \\
        --clipping results/ptb_clipping.json --medium runs/ptb_medium_h200 \\
        --out results/ptb.json

``--medium`` is an engine run directory (``memnets train ptb_medium``); a
``provenance.json`` beside its ``results.json`` may give the command, commit
and machine.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def medium(run: Path) -> dict:
    """The ``medium`` entry from an engine run directory."""
    import yaml
    results = json.loads((run / "results.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in rows if r.get("split") == "dev"]
    prov = run / "provenance.json"
    entry = {
        "test_perplexity": results["test"]["perplexity"],
        "valid_perplexity": results["dev"]["perplexity"],
        "wall_seconds": round(results["wall_seconds"], 1),
        "epochs_completed": results["epochs_completed"],
        "epochs_planned": config["trainer"]["max_epochs"],
        "steps": results["steps"],
        "complete": results["epochs_completed"] >= config["trainer"]["max_epochs"],
        "per_epoch": [{"epoch": r["epoch"], "step": r["step"],
                       "valid_perplexity": round(r["perplexity"], 3)} for r in dev],
        "recipe": "ptb_medium",
        "published_test_perplexity": 82.7,
    }
    if prov.is_file():
        entry.update(json.loads(prov.read_text()))
    return entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", default="runs/ptb_small.json")
    ap.add_argument("--clipping", default="results/ptb_clipping.json")
    ap.add_argument("--medium", default=None, help="run directory of ptb_medium")
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
           "medium": medium(Path(args.medium)) if args.medium else
           {"run": False, "reason": "GPU recipe (ptb_medium); not run"}}
    if Path(args.clipping).is_file():
        out["clipping"] = json.loads(Path(args.clipping).read_text())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: small[k] for k in ("test_perplexity", "valid_perplexity",
                                             "wall_seconds", "epochs_completed")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
