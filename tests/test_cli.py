"""The command line: exit codes, one-line errors, --help everywhere, a tiny end-to-end run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from memnets.cli import build_parser, main

TINY = ["--set", "data.T=8", "--set", "data.train_size=64", "--set", "data.dev_size=16",
        "--set", "data.test_size=16", "--set", "data.batch_size=8", "--set",
        "model.hidden_size=6", "--set", "trainer.max_steps=8", "--set", "trainer.eval_every=4",
        "--set", "trainer.tensorboard=false"]

COMMANDS = ["train", "eval", "predict", "generate", "recipes", "compare", "sweep", "ensemble",
            "plot", "report", "plot-gradients", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: memnets" in capsys.readouterr().out


def test_every_subcommand_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


def test_unknown_recipe_key_exits_2_naming_the_key(capsys):
    assert main(["train", "adding", "--set", "model.hiden_size=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line, no traceback
    assert "unknown key 'hiden_size'" in err and "hidden_size" in err


def test_unknown_key_in_user_file_exits_2(tmp_path, capsys):
    p = tmp_path / "r.yaml"
    p.write_text("task: adding\ntrainer:\n  max_step: 3\n")
    assert main(["train", str(p)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'max_step'" in err and "max_steps" in err


def test_wrong_type_exits_2_naming_field_and_type(capsys):
    assert main(["train", "adding", "--set", "optimizer.lr=fast"]) == 2
    err = capsys.readouterr().err
    assert "optimizer.lr: expected float, got 'fast'" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train"])  # argparse: missing RECIPE
    assert e.value.code == 2
    assert main(["train", "no-such-recipe"]) == 2
    assert main(["eval", "/nonexistent/run"]) == 2
    assert main(["compare", "adding", "--models", "lstm,nope"]) == 2
    assert "unknown cell 'nope'" in capsys.readouterr().err
    assert main([]) == 2


def test_missing_data_exits_1_with_one_line(tmp_path, capsys):
    p = tmp_path / "r.yaml"  # a task that reads files (defined in test_train.py)
    p.write_text(f"task: test_files\ndata: {{dir: {tmp_path / 'nowhere'}}}\n")
    assert main(["--task-module", "test_train", "train", str(p), "--quiet",
                 "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere does not exist" in err


def test_end_to_end_train_eval_predict_plot(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "adding", "--out", str(run), "--quiet", *TINY]) == 0
    for f in ("config.yaml", "task.json", "metrics.jsonl", "metrics.csv", "results.json"):
        assert (run / f).is_file(), f
    assert main(["train", "adding", "--out", str(run), "--quiet", *TINY]) == 2  # exists
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "dev"]) == 0
    out = json.loads(capsys.readouterr().out)
    results = json.loads((run / "results.json").read_text())
    assert out["mse"] == pytest.approx(results["dev"]["mse"])
    assert main(["predict", str(run), "0.5", "0.25", "0.1", "0.9", "--marks", "0,2"]) == 0
    assert "true sum 0.6000" in capsys.readouterr().out
    assert main(["predict", str(run), "0.5", "--marks", "0,9"]) == 2
    assert main(["generate", str(run), "x"]) == 1  # the adding task cannot generate
    assert main(["plot", str(run)]) == 0
    assert (run / "curves.png").stat().st_size > 1000
    assert main(["plot-gradients", str(run), "--init", "--batch-size", "4"]) == 0
    norms = json.loads((run / "gradients.json").read_text())
    (curve,) = norms.values()
    assert len(curve) == 8 and all(v > 0 for v in curve)
    # --resume with a larger budget continues the same run
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet",
                 "--set", "trainer.max_steps=12", "--set", "trainer.max_epochs=5"]) == 0
    assert json.loads((run / "results.json").read_text())["steps"] == 12


def test_recipes_lists_dataset_and_target(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "adding" in out and "none (generated)" in out and "0.167" in out


def test_compare_writes_table_and_plot(tmp_path, capsys):
    assert main(["compare", "adding", "--models", "lstm,elman", "--out", str(tmp_path),
                 "--quiet", *TINY]) == 0
    out = capsys.readouterr().out
    assert "| lstm |" in out and "| elman |" in out
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "compare.md").is_file()
    assert main(["report", str(tmp_path / "lstm"), str(tmp_path / "elman"),
                 "--out", str(tmp_path / "res" / "adding")]) == 0
    table = capsys.readouterr().out
    assert "| lstm | lstm |" in table and "| elman | elman |" in table
    report = json.loads((tmp_path / "res" / "adding.json").read_text())
    assert [r["cell"] for r in report["runs"]] == ["lstm", "elman"]
    assert report["runs"][0]["mse"] == json.loads(
        (tmp_path / "lstm" / "results.json").read_text())["test"]["mse"]
    assert (tmp_path / "res" / "adding.png").is_file()
    assert main(["report", str(tmp_path)]) == 2  # not a run directory


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "memnets", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("memnets ")
