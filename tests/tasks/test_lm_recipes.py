"""Smoke tests: the shipped language-model and sentiment recipes train through the
engine on tiny data (loss falls, metric beats chance), and ``memnets generate``
and ``predict`` work on the runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from memnets.cli import main
from memnets.tasks.recipes import load_config
from memnets.train import train

torch.set_num_threads(1)  # small models: threads only add overhead on a shared CPU
SMALL = ["model.hidden_size=32", "trainer.max_epochs=3", "trainer.eval_every=null"]


def test_smoke_shakespeare_recipe_learns_and_generates(tmp_path, capsys):
    text = "ROMEO: the cat sat on the mat.\nJULIET: the dog ran.\n" * 40
    (tmp_path / "t.txt").write_text(text)
    cfg = load_config("shakespeare_char", [
        f"data.path={tmp_path / 't.txt'}", f"data.dir={tmp_path}", "data.bptt=16",
        "data.batch_size=8", "model.embedding_size=16", "model.num_layers=1",
        "schedule.name=constant", "optimizer.lr=1.0e-2", *SMALL])
    run = tmp_path / "run"
    results = train(cfg, run, quiet=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    dev_bpc = [r["bpc"] for r in rows if r.get("split") == "dev"]
    chance = math.log2(len(set(text)))
    assert dev_bpc[-1] < 0.5 * chance, (dev_bpc, chance)
    assert results
    assert main(["generate", str(run), "--prime", "ROMEO:", "--length", "30",
                 "--temperature", "0.8", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out.rstrip("\n")) >= 36


def write_fake_sst(root):
    sents, trees = root / "sst" / "sentences", root / "sst" / "trees"
    sents.mkdir(parents=True)
    trees.mkdir(parents=True)
    pos = ["a great film", "truly wonderful acting", "great and wonderful", "a wonderful story"]
    neg = ["a terrible film", "truly awful acting", "terrible and awful", "an awful story"]
    fine, binary, tree_lines = [], [], []
    for i in range(30):
        p, n = pos[i % 4].split(), neg[i % 4].split()
        fine += [f"4 {' '.join(p)}", f"0 {' '.join(n)}"]
        binary += [f"1 {' '.join(p)}", f"0 {' '.join(n)}"]
    polar = {"great": 4, "wonderful": 4, "terrible": 0, "awful": 0}
    for s, lab in [(p, 4) for p in pos] + [(n, 0) for n in neg]:
        words = s.split()  # a right-branching tree; each inner node has the sentence's label
        tree = f"({polar.get(words[-1], 2)} {words[-1]})"
        for w in reversed(words[:-1]):
            tree = f"({lab} ({polar.get(w, 2)} {w}) {tree})"
        tree_lines.append(tree)
    for split in ("train", "dev", "test"):
        (sents / f"stsa.fine.{split}").write_text("\n".join(fine) + "\n")
        (sents / f"stsa.binary.{split}").write_text("\n".join(binary) + "\n")
        (trees / f"{split}.txt").write_text("\n".join(tree_lines) + "\n")


@pytest.mark.parametrize("recipe", ["sst2_bilstm", "sst5_lstm_phrases"])
def test_smoke_sentiment_recipes_learn_and_predict(tmp_path, capsys, recipe):
    write_fake_sst(tmp_path)
    cfg = load_config(recipe, [f"data.dir={tmp_path}", "data.download=false",
                               "model.embedding_size=16", "data.batch_size=8", *SMALL,
                               "trainer.max_epochs=8", "optimizer.lr=1.0e-2"])
    run = tmp_path / "run"
    results = train(cfg, run, quiet=True)
    acc = results["test"]["accuracy"]
    assert acc > 90.0, results
    assert main(["predict", str(run), "a wonderful film"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] in {"positive", "very positive"}
