"""Plots that read right: the axis a metric gets, errors for metrics a run lacks,
legends naming what differs, and the gradient probe of every recurrent task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA
from torch import nn

from memnets.cli import _report_label, main
from memnets.errors import ConfigError
from memnets.layers.encoder import build_encoder
from memnets.tasks import StepOutput, Task
from memnets.tasks.base import input_gradient_norms
from memnets.train.plots import is_bounded, metrics_of, y_scale


def test_bounded_metrics_get_a_linear_axis():
    assert is_bounded("accuracy") and is_bounded("slot_f1") and is_bounded("error")
    assert is_bounded("pearson") and is_bounded("bleu")
    assert not is_bounded("loss") and not is_bounded("perplexity")
    assert not is_bounded("bits_per_word") and not is_bounded("mse")
    assert y_scale(["accuracy"], [1.0, 50.0, 99.0]) == "linear"  # spans 99x, bounded
    assert y_scale(["loss"], [2.3, 0.01]) == "log"
    assert y_scale(["loss"], [2.3, 1.0]) == "linear"  # within a factor of 10
    assert y_scale(["mse"], [0.2, -0.1]) == "linear"  # not all positive
    assert y_scale(["loss"], [float("nan"), 5.0, 0.1]) == "log"  # NaN ignored


def _fake_run(path: Path) -> Path:
    path.mkdir()
    rows = [{"step": s, "epoch": 1, "split": split, "loss": 1.0 / s, "accuracy": 50.0 + s}
            for s in (1, 2, 3) for split in ("train", "dev")]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plot_of_a_metric_the_run_lacks_is_an_error_naming_those_it_has(tmp_path, capsys):
    run = _fake_run(tmp_path / "run")
    assert metrics_of(run) == ["loss", "accuracy"]
    assert main(["plot", str(run), "--metric", "foo"]) == 2
    err = capsys.readouterr().err
    assert "'foo'" in err and "loss, accuracy" in err
    assert not (run / "curves.png").exists()
    assert main(["plot", str(run), "--metric", "accuracy"]) == 0
    assert (run / "curves.png").stat().st_size > 1000


def test_report_legend_names_the_settings_that_differ(tmp_path):
    config = {"data": {"T": 200}, "model": {"cell": "lstm"}}
    label = _report_label(tmp_path / "t200", {"cell": "lstm"}, config, [("data", "T")])
    assert label == "t200 (lstm, data.T=200)"
    assert _report_label(tmp_path / "lstm", {"cell": "lstm"}, config, []) == "lstm"


class _LastStep(nn.Module):
    def __init__(self, cell: str, batch_first: bool):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(5, 3)
        self.rnn = build_encoder(cell, 3, 4, batch_first=batch_first)
        self.head = nn.Linear(4, 1)

    def forward(self, x):  # x (N, L) ids
        e = self.embed(x)
        self.seen = e
        if self.batch_first:
            return self.head(self.rnn(e)[0][:, -1])
        return self.head(self.rnn(e.transpose(0, 1))[0][-1])


class _ProbeTask(Task):
    name = "probe_test"

    def step(self, model, batch, state=None):
        loss = model(batch).pow(2).mean()
        return StepOutput(loss=loss, stats={}, size=len(batch))


@pytest.mark.parametrize("cell", ["lstm", "indrnn"])  # the fused drop-in and a generic cell
@pytest.mark.parametrize("batch_first", [True, False])
def test_input_gradient_probe_equals_the_gradient_at_each_step(cell, batch_first):
    torch.manual_seed(0)
    model = _LastStep(cell, batch_first).double()
    x = torch.randint(0, 5, (3, 6))
    norms = input_gradient_norms(_ProbeTask(None), model, x)
    # reference: the embedding output's gradient, taken by autograd directly
    model.zero_grad()
    model.seen = None
    out = model(x)
    model.seen.retain_grad()
    out.pow(2).mean().backward()
    expected = model.seen.grad.norm(dim=-1).mean(0)
    assert norms.shape == (6,)
    torch.testing.assert_close(norms, expected, rtol=1e-12, atol=1e-15)
    assert norms[-1] > 0 and norms[0] > 0


def test_input_gradient_probe_refuses_a_model_without_recurrent_layers():
    with pytest.raises(ConfigError, match="recurrent layers"):
        input_gradient_norms(_ProbeTask(None), nn.Linear(2, 1), torch.zeros(1, 2))


@pytest.mark.skipif(not (SHARED_DATA / "sst").is_dir(), reason="needs ../shared/data/sst")
def test_plot_gradients_works_for_a_sentiment_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEMNETS_DATA", str(SHARED_DATA))
    run = tmp_path / "sst"
    assert main(["train", "sst2-lstm", "--out", str(run), "--quiet",
                 "--set", "trainer.max_steps=2", "--set", "model.hidden_size=8",
                 "--set", "model.embedding_size=8", "--set", "data.batch_size=20"]) == 0
    assert main(["plot-gradients", str(run), "--batch-size", "8"]) == 0
    (curve,) = json.loads((run / "gradients.json").read_text()).values()
    assert len(curve) > 3 and curve[-1] > 0
    assert (run / "gradients.png").stat().st_size > 1000
