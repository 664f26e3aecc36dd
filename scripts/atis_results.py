"""Collect finished ATIS runs into results/atis.md and results/atis.json.

Usage (after `memnets train atis-... --out runs/atis-...` for each recipe)::

    python scripts/atis_results.py runs/atis-joint-s0 runs/atis-elman-s0 ... --out results/atis

Reads each run's ``config.yaml`` and ``results.json`` (written by the trainer)
and rewrites the table between the markers in ``results/atis.md``;
figures are the test split at the checkpoint chosen on the dev split, in
percent.  The best model is the run on the 4478/500/893 split with an intent
head whose dev ``joint`` score -- the mean of dev slot F1 and dev intent
accuracy, the score each joint run's trainer uses to choose its checkpoint --
is highest; ties go to the higher dev slot F1, then to the lower dev loss.
The test set is not looked at to choose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from memnets.train.provenance import provenance

BEGIN, END = "<!-- atis_results.py: begin -->", "<!-- atis_results.py: end -->"

# Published figures on the same splits (test set, percent).
PUBLISHED = {
    "atis-elman": "94.98 slot F1 (Mesnil et al. 2015, Elman RNN)",
    "atis-jordan": "94.29 slot F1 (Mesnil et al. 2015, Jordan RNN)",
    "atis-lstm": "-",
    "atis-bilstm": "95.2 slot F1 (Goo et al. 2018, slot-gated, intent attention)",
    "atis-bilstm-crf": "95.2 slot F1 (Goo et al. 2018, slot-gated, intent attention)",
    "atis-joint": "95.2 / 94.1 / 82.6 (Goo et al. 2018, slot-gated)",
    "atis-elman-char": "94.98 slot F1 (Mesnil et al. 2015, Elman RNN, words only)",
}


def recipe_of(run_name: str) -> str:
    """The recipe a run directory belongs to: the longest known name it starts with."""
    known = [r for r in PUBLISHED if run_name.startswith(r + "-")]
    return max(known, key=len) if known else run_name.rsplit("-s", 1)[0]


def split_name(cfg: dict) -> str:
    d = cfg["data"]
    if d.get("dev") is None:
        return f"{d['corpus']} train minus {d['dev_fraction']:.0%} dev / test"
    return f"{d['corpus']} {d['train']}/{d['dev']}/{d['test']}"


def describe(cfg: dict) -> str:
    m = cfg["model"]
    parts = [("Bi" if m["bidirectional"] else "") + m["cell"].upper()
             + f" {m['hidden_size']}", f"dropout {m['dropout']}"]
    if m.get("window"):
        parts.append(f"window {2 * m['window'] + 1}")
    if m.get("char_dim"):
        parts.append("char CNN")
    if m.get("crf"):
        parts.append("CRF")
    if m.get("intent_pooling", "none") != "none":
        heads = m.get("intent_heads", 1)
        parts.append(f"intent ({m['intent_pooling']}" + (f", {heads} heads" if heads > 1 else "")
                     + (f", parts split at {m['intent_parts']!r})" if m.get("intent_parts")
                        else ")"))
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", default="results/atis", help="path without suffix")
    ap.add_argument("--command", default="",
                    help="the command lines that trained the runs (default: this script's "
                         "own command line; the training commands are in results/atis.md)")
    args = ap.parse_args()

    rows = []
    exact_dev: dict[str, tuple[float, float, float]] = {}
    for run in args.runs:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        res = json.loads((run / "results.json").read_text())
        recipe = recipe_of(run.name)
        test, dev = res.get("test", {}), res.get("dev", {})
        dev_f1 = dev.get("slot_f1", float("-inf"))
        dev_joint = (dev_f1 + dev["intent_accuracy"]) / 2 if "intent_accuracy" in dev else dev_f1
        exact_dev[run.name] = (dev_joint, dev_f1, -dev.get("loss", float("inf")))
        rows.append({
            "name": run.name,
            "recipe": recipe,
            "model": describe(cfg) + (f"; ensemble of {len(res['members'])} seeds"
                                      if "members" in res else ""),
            "split": split_name(cfg),
            "slot_f1": round(test.get("slot_f1", float("nan")), 2),
            "intent_accuracy": (round(test["intent_accuracy"], 2)
                                if "intent_accuracy" in test else None),
            "sentence_accuracy": round(test.get("sentence_accuracy", float("nan")), 2),
            "dev_slot_f1": round(dev.get("slot_f1", float("nan")), 2),
            "dev_intent_accuracy": (round(dev["intent_accuracy"], 2)
                                    if "intent_accuracy" in dev else None),
            "dev_joint": round(exact_dev[run.name][0], 3),
            "published": PUBLISHED.get(recipe, "-"),
            "epochs": res.get("epochs_completed"),
            "best_checkpoint": res.get("checkpoint"),
            "seed": cfg["trainer"]["seed"],
            "wall_seconds": round(res.get("wall_seconds", 0.0), 1),
        })
    candidates = [r for r in rows if r["intent_accuracy"] is not None
                  and r["split"].startswith("atis_slotgated")]
    # chosen on the unrounded dev scores: rounding made ties that the order of the
    # arguments would have broken
    best = max(candidates, key=lambda r: exact_dev[r["name"]]) if candidates else None
    made = provenance(command=args.command or None)
    commit = made["commit"]
    machine = f"table made on {made['machine']}; where each run trained is in results/atis.md"
    out = {
        "best": None if best is None else {k: best[k] for k in (
            "model", "slot_f1", "intent_accuracy", "sentence_accuracy")} | {"run": best["name"]},
        "runs": rows,
        "git_commit": commit,
        "machine": machine,
        "command": made["command"],
    }
    Path(args.out + ".json").write_text(json.dumps(out, indent=1) + "\n")

    lines = [
        "| run | model | split | slot F1 | intent acc | sentence acc | dev slot F1 | "
        "dev intent | published | epochs | wall time |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        ia = "-" if r["intent_accuracy"] is None else f"{r['intent_accuracy']:.2f}"
        dia = "-" if r["dev_intent_accuracy"] is None else f"{r['dev_intent_accuracy']:.2f}"
        lines.append(
            f"| {r['name']} | {r['model']} | {r['split']} | {r['slot_f1']:.2f} | {ia} | "
            f"{r['sentence_accuracy']:.2f} | {r['dev_slot_f1']:.2f} | {dia} | {r['published']} | "
            f"{r['epochs']} | {r['wall_seconds'] / 60:.1f} min |"
        )
    if best is not None:
        lines += ["", "Best on dev (mean of dev slot F1 and dev intent accuracy, among joint "
                  f"runs on the 4478/500/893 split): "
                  f"**{best['name']}**, test slot F1 {best['slot_f1']:.2f}, intent accuracy "
                  f"{best['intent_accuracy']:.2f}, sentence accuracy "
                  f"{best['sentence_accuracy']:.2f}."]
    lines += ["", f"Table written at commit {commit}; machine: {machine}."]
    md = Path(args.out + ".md")
    text = md.read_text() if md.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{md}: expected the markers {BEGIN} and {END} around the table")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    md.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail)
    print("\n".join(lines))
    if best is not None:
        print(f"best (dev joint): {best['name']}: test slot F1 {best['slot_f1']}, intent "
              f"{best['intent_accuracy']}, sentence {best['sentence_accuracy']}")


if __name__ == "__main__":
    main()
