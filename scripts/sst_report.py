"""Write ``results/sst.json`` from the logs of ``scripts/sst_train.py``.

For each of SST-2 and SST-5 the headline ``test_accuracy`` is that of the
BiLSTM trained on phrases (the configuration chosen in advance as the
strongest, as in Tai et al. 2015): among its runs (seeds), and ensembles of
them (``scripts/sst_ensemble.py``, files ``*ensemble*.json``), the one with the
best dev accuracy; every run is listed under ``runs``.

Usage::

    python scripts/sst_report.py --runs runs/sst --out results/sst.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/sst")
    ap.add_argument("--out", default="results/sst.json")
    args = ap.parse_args(argv)
    out: dict = {}
    for classes, key in ((2, "sst2"), (5, "sst5")):
        runs = {}
        for f in sorted(Path(args.runs).glob(f"sst{classes}_*.json")):
            log = json.loads(f.read_text())
            if "members" in log:  # an ensemble of runs
                a = log["member_args"][0]
                runs[f.stem] = {
                    "model": ("BiLSTM" if a["bidirectional"] else "LSTM")
                    + f" ({a['pooling']} pool), ensemble of {len(log['members'])}",
                    "training": "phrases" if a["phrases"] else "sentences",
                    "dev_accuracy": round(log["dev_accuracy"], 2),
                    "test_accuracy": round(log["test_accuracy"], 2),
                    "epochs": a["epochs"], "members": [Path(m).stem for m in log["members"]],
                    "member_test_accuracy": [round(v, 2) for v in log["member_test_accuracy"]],
                    "wall_seconds": round(log["wall_seconds"], 1),
                    "command": log["command"], "machine": log["machine"],
                    "git_commit": log["git_commit"],
                }
                continue
            a = log["args"]
            runs[f.stem] = {
                "model": ("BiLSTM" if a["bidirectional"] else "LSTM") + f" ({a['pooling']} pool)",
                "training": "phrases" if a["phrases"] else "sentences",
                "dev_accuracy": round(log["dev_accuracy"], 2),
                "test_accuracy": round(log["test_accuracy"], 2),
                "epochs": a["epochs"], "train_examples": log["train_examples"],
                "embedding": a["embedding"], "hidden": a["hidden"], "batch": a["batch"],
                "lr": a["lr"], "embedding_lr": a["embedding_lr"] or a["lr"],
                "wall_seconds": round(log["wall_seconds"], 1), "command": log["command"],
                "git_commit": log["git_commit"], "machine": log["machine"],
            }
        if not runs:
            continue
        chosen = [k for k in runs if k.startswith(f"sst{classes}_bilstm_phrases")] or list(runs)
        best = max(chosen, key=lambda k: runs[k]["dev_accuracy"])
        out[key] = {"test_accuracy": runs[best]["test_accuracy"],
                    "dev_accuracy": runs[best]["dev_accuracy"], "selected_run": best,
                    "selection": "BiLSTM on phrases (chosen in advance); best dev among its "
                                 "runs and ensembles of them",
                    "pretrained_vectors": None, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: {kk: v[kk] for kk in ("test_accuracy", "selected_run")}
                      for k, v in out.items()}))
    print("\n| data | run | model | training | epochs | dev acc | test acc | wall s |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for key, entry in out.items():
        for name, r in entry["runs"].items():
            mark = "**" if name == entry["selected_run"] else ""
            print(f"| {key.upper()} | {name} | {r['model']} | {r['training']} | {r['epochs']} "
                  f"| {r['dev_accuracy']:.2f} | {mark}{r['test_accuracy']:.2f}{mark} "
                  f"| {r['wall_seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
