"""Which test utterances do many runs get the intent wrong on?

Usage::

    python scripts/atis_intent_errors.py runs/atis-joint-parts-s{1..20} --min-runs 2 \
        --out results/atis_intent_errors.md

Loads each run (an ensemble directory too) with ``load_run``, predicts the
intent of every utterance of ``--split`` (test by default) and prints a
markdown table of the utterances that at least ``--min-runs`` runs get wrong:
how many runs, the gold label, the predictions with their counts, and whether
the gold label ever occurs in the training split.  Utterances that every run
gets wrong bound what a model of this kind reaches on the split; the last
lines say how many there are and the accuracy that leaves.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from memnets.train import load_run


def predict_intents(run: Path, split: str, batch_size: int = 128):
    """``(utterances, predicted intents, task)`` of one run on a split."""
    _, task, model = load_run(run)
    examples = task.examples(split)
    predicted: list[str] = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = task.collate(examples[i : i + batch_size])
            _, intents = task.decode(model, model(batch.words, batch.chars, batch.lengths),
                                     batch)
            if intents[0] is None:
                raise SystemExit(f"{run} has no intent head")
            predicted.extend(intents)
    return examples, predicted, task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--min-runs", type=int, default=1,
                    help="list utterances that at least this many runs get wrong")
    ap.add_argument("--out", type=Path, help="write the table here as well")
    args = ap.parse_args()

    examples = task = None
    by_run: list[list[str]] = []
    for run in args.runs:
        ex, pred, t = predict_intents(run, args.split)
        if examples is not None and [u.words for u in ex] != [u.words for u in examples]:
            raise SystemExit(f"{run} reads another {args.split} split than {args.runs[0]}")
        examples, task = ex, t
        by_run.append(pred)
    seen = {u.intent for u in task.examples("train")}
    n_runs = len(by_run)
    rows = []
    for i, u in enumerate(examples):
        preds = Counter(p[i] for p in by_run)
        wrong = n_runs - preds[u.intent]
        if wrong >= args.min_runs:
            rows.append((wrong, u, preds))
    rows.sort(key=lambda r: (-r[0], r[1].intent, r[1].words))
    lines = [f"Intent errors on the {len(examples)} {args.split} utterances over {n_runs} "
             f"runs ({', '.join(r.name for r in args.runs)}); utterances that at least "
             f"{args.min_runs} of them get wrong.", "",
             "| wrong in | gold | label in train? | predictions | utterance |",
             "|---:|---|---|---|---|"]
    for wrong, u, preds in rows:
        shown = ", ".join(f"{k} {v}" for k, v in preds.most_common())
        lines.append(f"| {wrong}/{n_runs} | {u.intent} | {'yes' if u.intent in seen else 'no'}"
                     f" | {shown} | {' '.join(u.words)} |")
    always = sum(1 for wrong, _, _ in rows if wrong == n_runs)
    unseen = sum(1 for u in examples if u.intent not in seen)
    lines += ["", f"Wrong in every run: {always} utterances ({unseen} of the {len(examples)} "
              f"have a label that never occurs in training); an accuracy of "
              f"{100.0 * (len(examples) - always) / len(examples):.2f}% at most for a model "
              "that errs on all of them."]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
