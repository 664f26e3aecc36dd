"""Show which sentence each hop reads, for test questions of a trained bAbI run.

    python scripts/babi_explain.py runs/babi/en/seed0 --task 2 --task 16 --out results

For each task, the first test question of that task: the story with each hop's
attention (supporting facts starred) as a text table, and a heatmap PNG
``<out>/babi_attention_task<N>.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from memnets.data.babi import encode
from memnets.tasks.babi import attention_heatmap, attention_table
from memnets.train import load_run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--task", type=int, action="append", required=True)
    p.add_argument("--index", type=int, default=0, help="which test question of the task")
    p.add_argument("--out", default="results")
    args = p.parse_args(argv)
    _, task, model = load_run(args.run_dir, check_data=True)
    test = task.examples("test")
    for t in args.task:
        ex = [e for e in test if e.task == t][args.index]
        batch = encode([ex], task.vocab)
        with torch.no_grad():
            logits, att = model(batch.story, batch.story_lengths, batch.question,
                                return_attention=True)
        answer = task.vocab.itos[int(logits[0].argmax())]
        attention = att[0]  # (K, M): sentences, then the empty memories if any
        question = " ".join(ex.question) + "?"
        print(f"task {t} ({Path(ex.source).name}): predicted {answer!r}, true {ex.answer_label!r}")
        print(attention_table(list(ex.story), attention, question=question,
                              supporting=ex.supporting))
        png = Path(args.out) / f"babi_attention_task{t}.png"
        attention_heatmap(list(ex.story), attention, png, supporting=ex.supporting,
                          title=f"task {t}: {question} -> {answer} (true: {ex.answer_label})")
        print(f"heatmap: {png}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
