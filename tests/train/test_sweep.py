"""``memnets sweep`` and ``memnets ensemble``: several runs through the engine, a
table, a choice on dev, and trained runs combined into one model; with the trainer
options they need (several dev evaluations per epoch, recording a diverging run)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import SHARED_DATA

from memnets.cli import main
from memnets.config import ConfigError
from memnets.models.ensemble import ProbabilityEnsemble
from memnets.tasks.recipes import load_config
from memnets.train import checkpoint as ckpt
from memnets.train import load_run, sweep, train

TINY = ["data.T=8", "data.train_size=80", "data.dev_size=24", "data.test_size=24",
        "data.batch_size=8", "model.hidden_size=4", "trainer.log_every=5",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.max_steps=6",
        "trainer.threads=1"]


def _sets(extra=()):
    return sum((["--set", s] for s in [*TINY, *extra]), [])


def test_planning_names_every_combination_and_its_overrides():
    runs = sweep.plan_runs(overrides=["a.b=1"], seeds=[0, 1],
                           grid=[sweep.parse_grid("optimizer.lr=0.1,0.01")],
                           models=["lstm", "gru"])
    assert len(runs) == 8
    assert runs[0].name == "lr=0.1,lstm,seed=0"
    assert runs[0].overrides == ["a.b=1", "optimizer.lr=0.1", 'model.cell="lstm"',
                                 "trainer.seed=0"]
    assert runs[-1].settings == {"optimizer.lr": 0.01, "model.cell": "gru", "trainer.seed": 1}
    assert [r.name for r in sweep.plan_runs(overrides=[], models=["lstm", "gru"])] == [
        "lstm", "gru"]


def test_seed_and_grid_arguments_are_checked():
    assert sweep.parse_seeds("3") == [0, 1, 2]
    assert sweep.parse_seeds("4,9") == [4, 9] and sweep.parse_seeds("2-4") == [2, 3, 4]
    for bad in ("x", "1,1", "-3", "0"):
        with pytest.raises(ConfigError, match="--seeds"):
            sweep.parse_seeds(bad)
    with pytest.raises(ConfigError, match="--grid: expected KEY=V1,V2"):
        sweep.parse_grid("optimizer.lr")
    with pytest.raises(ConfigError, match="given twice"):
        sweep.parse_grid("optimizer.lr=0.1,0.1")
    assert sweep.parse_grid("data.tasks=[[1], [2, 3]]") == ("data.tasks", [[1], [2, 3]])
    runs = sweep.plan_runs(overrides=[], grid=[sweep.parse_grid("data.tasks=[[1],[2,3]]")])
    assert [r.name for r in runs] == ["tasks=[1]", "tasks=[2,3]"]
    assert runs[1].overrides == ["data.tasks=[2, 3]"]
    with pytest.raises(ConfigError, match="never on test"):
        sweep.parse_rule("min:test.mse", "adding")
    assert sweep.parse_rule("best", "adding") == ("mse", False)
    assert sweep.parse_rule("max:dev.accuracy", "recall") == ("accuracy", True)


def test_selection_is_on_dev_and_per_group():
    rows = [{"name": n, "settings": {"model.cell": c, "trainer.seed": s},
             "dev": {"mse": d}, "test": {"mse": t}}
            for n, c, s, d, t in [("a", "lstm", 0, 0.3, 0.1), ("b", "lstm", 1, 0.2, 0.9),
                                  ("c", "gru", 0, 0.5, 0.0), ("d", "gru", 1, float("nan"), 0)]]
    assert sweep.select(rows, "mse", higher=False) == {"": "b"}
    assert sweep.select(rows, "mse", higher=False, per="model.cell") == {
        '"lstm"': "b", '"gru"': "c"}
    groups = sweep.summarize(rows, "mse")
    assert groups[0]["settings"] == {"model.cell": "lstm"} and groups[0]["runs"] == 2
    assert groups[0]["dev_mean"] == pytest.approx(0.25)
    assert groups[0]["dev_sd"] == pytest.approx(math.sqrt(0.005))
    assert groups[1]["dev_n"] == 1  # the NaN run is left out of the mean


def test_sweep_end_to_end_table_choice_and_reuse(tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["sweep", "adding", "--seeds", "2", "--grid", "model.hidden_size=3,5",
            "--out", str(out), "--quiet", *_sets()]
    assert main(args) == 0
    report = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in report["runs"]] == [
        "hidden_size=3,seed=0", "hidden_size=3,seed=1", "hidden_size=5,seed=0",
        "hidden_size=5,seed=1"]
    assert all(r["status"] == "ok" for r in report["runs"])
    best = min(report["runs"], key=lambda r: r["dev"]["mse"])
    assert report["select"]["chosen"] == {"": best["name"]}
    assert report["select"]["split"] == "dev" and "commit" in report and report["machine"]
    assert len(report["groups"]) == 2 and report["groups"][0]["runs"] == 2
    md = (out / "sweep.md").read_text()
    assert f"**{best['name']}**" in md and "± " in md
    # each run is an ordinary run directory
    config, _, _ = load_run(out / "hidden_size=5,seed=1")
    assert config.model.hidden_size == 5 and config.trainer.seed == 1
    run = out / "hidden_size=3,seed=0"
    train_rows = [line for line in (run / "metrics.jsonl").open() if '"train"' in line]
    weights = (ckpt.read_pointer(run) / "model.safetensors").read_bytes()
    assert main(args) == 0  # finished runs are reused, not trained again
    assert [line for line in (run / "metrics.jsonl").open() if '"train"' in line] == train_rows
    assert (ckpt.read_pointer(run) / "model.safetensors").read_bytes() == weights
    assert json.loads((run / "results.json").read_text())["steps"] == 6
    capsys.readouterr()
    assert main([*args, "--set", "optimizer.lr=0.5"]) == 2  # other settings: refused
    assert "optimizer.lr" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_with_jobs_trains_in_processes(tmp_path):
    out = tmp_path / "sw"
    assert main(["sweep", "adding", "--models", "lstm,gru", "--jobs", "2", "--out", str(out),
                 "--quiet", *_sets()]) == 0
    report = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in report["runs"]] == ["ok", "ok"]
    assert (out / "gru.log").is_file()
    assert json.loads((out / "gru" / "results.json").read_text())["cell"] == "gru"


def test_evals_per_epoch_spreads_dev_evaluations(tmp_path):
    config = load_config("adding", TINY + ["trainer.max_steps=null", "trainer.max_epochs=2",
                                           "trainer.eval_every=null", "trainer.evals_per_epoch=3"])
    train(config, tmp_path, quiet=True)  # 10 batches an epoch: stride 4
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if r["split"] == "dev"] == [4, 8, 10, 14, 18, 20]
    with pytest.raises(ConfigError, match="eval_every or evals_per_epoch"):
        load_config("adding", ["trainer.eval_every=5", "trainer.evals_per_epoch=2"])


def test_a_diverging_run_is_recorded_when_asked(tmp_path, capsys):
    sets = ["optimizer.name=sgd", "optimizer.lr=1.0e30", "optimizer.grad_clip=null",
            "trainer.eval_every=2", "trainer.max_steps=12"]
    out = tmp_path / "run"
    assert main(["train", "adding", "--out", str(out), "--quiet", *_sets(sets)]) == 1
    assert main(["train", "adding", "--out", str(tmp_path / "rec"), "--quiet",
                 *_sets(sets + ["trainer.on_divergence=finish"])]) == 0
    results = json.loads((tmp_path / "rec" / "results.json").read_text())
    assert results["diverged"]["step"] <= 12 and "nan" in results["diverged"]["why"].lower() \
        or "inf" in results["diverged"]["why"].lower()
    assert main(["sweep", "adding", "--seeds", "1", "--out", str(tmp_path / "sw"), "--quiet",
                 *_sets(sets + ["trainer.on_divergence=finish"])]) == 0
    report = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert report["runs"][0]["status"].startswith("diverged at step")


def test_probability_ensemble_is_the_mean_of_member_probabilities():
    torch.manual_seed(0)
    members = [torch.nn.Linear(3, 4) for _ in range(3)]
    x = torch.randn(5, 3)
    got = ProbabilityEnsemble(members)(x).exp()
    want = torch.stack([torch.softmax(m(x), -1) for m in members]).mean(0)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(5))


needs_sst = pytest.mark.skipif(not (SHARED_DATA / "sst" / "sentences").is_dir(),
                               reason=f"SST not found under {SHARED_DATA}")


@needs_sst
def test_ensemble_of_sst_runs_loads_like_a_run(tmp_path, capsys):
    sets = [f"data.dir={SHARED_DATA}", "data.download=false", "model.embedding_size=8",
            "model.hidden_size=6", "trainer.max_steps=4", "trainer.progress=false",
            "trainer.tensorboard=false", "data.batch_size=64", "trainer.threads=1"]
    runs = []
    for seed in (1, 2):
        runs.append(tmp_path / f"s{seed}")
        train(load_config("sst2_lstm", sets + [f"trainer.seed={seed}"]), runs[-1], quiet=True)
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, runs), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["members"] == [str(r) for r in runs] and "commit" in results
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(
        results["test"]["accuracy"])
    # the same as averaging the members' probabilities by hand
    _, task, ens = load_run(out)
    members = [load_run(r)[2] for r in runs]
    x, lengths, y = next(iter(task.batches("test", batch_size=50)))
    with torch.no_grad():
        want = torch.stack([torch.softmax(m(x, lengths), -1) for m in members]).mean(0)
        assert torch.allclose(ens(x, lengths).exp(), want, atol=1e-6)
    assert main(["predict", str(out), "a great film"]) == 0
    # memnets report lists the ensemble beside its members (no steps, no curve of its own)
    capsys.readouterr()
    assert main(["report", *map(str, runs), str(out), "--out", str(tmp_path / "rep")]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| ens |"))
    assert f"{results['test']['accuracy']:.4g}" in row and "| - | - |" in row
    rows = json.loads((tmp_path / "rep.json").read_text())["runs"]
    assert [r["run"] for r in rows] == ["s1", "s2", "ens"] and rows[2]["steps"] is None
    assert (tmp_path / "rep.png").is_file()
    assert main(["ensemble", str(runs[0]), "--out", str(tmp_path / "one")]) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "mine")]) == 2


def test_ensemble_refuses_runs_of_other_tasks_or_data(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(load_config("adding", TINY), a, quiet=True)
    train(load_config("copy", ["data.T=4", "data.train_size=32", "data.dev_size=8",
                               "data.test_size=8", "data.batch_size=8", "model.hidden_size=4",
                               "trainer.max_steps=2", "trainer.progress=false",
                               "trainer.tensorboard=false"]), b, quiet=True)
    assert main(["ensemble", str(a), str(b), "--out", str(tmp_path / "e")]) == 2
    c = tmp_path / "c"
    train(load_config("adding", TINY + ["trainer.seed=3"]), c, quiet=True)
    assert main(["ensemble", str(a), str(c), "--out", str(tmp_path / "e2")]) == 2  # no ensemble
    assert not (tmp_path / "e2").exists()  # refused before anything is written
