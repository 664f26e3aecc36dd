"""Average the class probabilities of several SST runs and score the ensemble.

Each run is a JSON log written by ``scripts/sst_train.py --save-probs``; the
runs must share the data (same classes, same dev and test sentences).  The
ensemble's members are fixed in advance (every run given); dev accuracy is
reported beside test so that the choice between an ensemble and a single run
can be made on dev.

    python scripts/sst_ensemble.py runs/sst-gpu/sst2_seed*.json --name sst2_bilstm_phrases_x6 \\
        --out runs/sst-gpu/sst2_ensemble.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def load(path: Path) -> dict:
    log = json.loads(path.read_text())
    for key in ("dev_probs", "test_probs", "dev_labels", "test_labels"):
        if key not in log:
            raise SystemExit(f"{path}: expected a log written with --save-probs, "
                             f"found no {key!r}")
    return log


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--name", required=True, help="the ensemble's name in the report")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    logs = [load(p) for p in args.runs]
    first = logs[0]
    result = {"name": args.name, "members": [str(p) for p in args.runs],
              "member_args": [log["args"] for log in logs],
              "classes": first["args"]["classes"],
              "wall_seconds": sum(log["wall_seconds"] for log in logs),
              "machine": first.get("machine"), "git_commit": first.get("git_commit"),
              "command": " ".join(["python", *sys.argv])}
    for split in ("dev", "test"):
        gold = torch.tensor(first[f"{split}_labels"])
        for path, log in zip(args.runs, logs):
            if log[f"{split}_labels"] != first[f"{split}_labels"]:
                raise SystemExit(f"{path}: its {split} sentences differ from {args.runs[0]}'s")
        probs = torch.stack([torch.tensor(log[f"{split}_probs"]) for log in logs]).mean(0)
        result[f"{split}_accuracy"] = 100.0 * float((probs.argmax(-1) == gold).float().mean())
        result[f"member_{split}_accuracy"] = [log[f"{split}_accuracy"] for log in logs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("name", "dev_accuracy", "test_accuracy",
                                             "member_dev_accuracy", "member_test_accuracy")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
