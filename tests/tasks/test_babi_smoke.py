"""Smoke tests: the bAbI recipes learn (short runs through the engine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from memnets.tasks.recipes import load_config
from memnets.train import load_run, train

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MEMNETS_DATA", REPO.parent / "shared" / "data"))
pytestmark = pytest.mark.skipif(
    not (DATA / "babi" / "tasks_1-20_v1-2" / "en").is_dir(),
    reason=f"bAbI not found under {DATA} (set MEMNETS_DATA)")

QUIET = ["trainer.progress=false", "trainer.tensorboard=false", f"data.dir={DATA}"]


def test_smoke_memn2n_learns_task1_above_90_percent(tmp_path):
    torch.set_num_threads(1)
    res = train(load_config("babi-task1", QUIET), tmp_path / "run", quiet=True)
    assert res["test"]["error_task1"] < 10.0  # > 90% test accuracy
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    dev = [r["loss"] for r in rows if r.get("split") == "dev"]
    assert dev[-1] < dev[0]

    # memnets predict on a story of our own, with an unknown word left out
    story = tmp_path / "story.txt"
    story.write_text("Mary moved to the bathroom.\nJohn went to the hallway.\n"
                     "Mary travelled to the garden.\nJohn moved to the zeppelin.\n")
    _, task, model = load_run(tmp_path / "run", check_data=False)
    png = tmp_path / "att.png"
    out = task.predict(model, ["--story", str(story), "--question", "Where is Mary?",
                               "--png", str(png)])
    assert "unknown words left out: zeppelin" in out
    assert "answer: garden" in out
    assert "hop 3" in out and png.is_file()


def test_smoke_lstm_baseline_beats_chance(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config("babi-lstm", QUIET + ["trainer.max_epochs=4"])
    res = train(cfg, tmp_path / "run", quiet=True)
    assert res["test"]["error_task1"] < res["baselines"]["majority_error"] - 10

