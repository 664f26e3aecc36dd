"""Evaluate an ensemble of trained slot-filling runs (same recipe, different seeds).

Usage::

    python scripts/atis_ensemble.py runs/atis-joint-s1 runs/atis-joint-s2 runs/atis-joint-s3 \
        --out runs/atis-joint-ensemble-s123

Each member is the checkpoint its own run chose on dev; the ensemble averages
their slot scores (and CRF transition scores) and intent probabilities
(:class:`memnets.models.tagger.TaggerEnsemble`).  Writes ``config.yaml`` (the
first member's) and ``results.json`` (dev and test metrics, the members, and
the members' summed training time) to ``--out``, the layout
``scripts/atis_results.py`` reads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from memnets.models.tagger import TaggerEnsemble
from memnets.train import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    loaded = [load_run(r, check_data=True) for r in args.runs]
    states = [json.loads((r / "task.json").read_text()) for r in args.runs]
    if any(s != states[0] for s in states[1:]):
        raise SystemExit("expected members trained on the same data (identical task.json)")
    config, task, _ = loaded[0]
    ensemble = TaggerEnsemble([m for _, _, m in loaded]).eval()
    bs = config.data.eval_batch_size or config.data.batch_size
    start = time.perf_counter()
    results: dict = {"task": config.task, "cell": config.model.cell,
                     "members": [str(r) for r in args.runs],
                     "main_metric": task.main_metric}
    with torch.no_grad():
        for split in ("dev", "test"):
            results[split] = task.evaluate(ensemble, split, batch_size=bs)
            print(split, {k: round(v, 2) for k, v in results[split].items()})
    member_results = [json.loads((r / "results.json").read_text()) for r in args.runs]
    results["wall_seconds"] = sum(m["wall_seconds"] for m in member_results)
    results["epochs_completed"] = "+".join(str(m["epochs_completed"]) for m in member_results)
    results["checkpoint"] = ", ".join(m["checkpoint"] for m in member_results)
    results["eval_seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.runs[0] / "config.yaml", args.out / "config.yaml")
    shutil.copy(args.runs[0] / "task.json", args.out / "task.json")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
