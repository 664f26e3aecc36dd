"""The command line: exit codes, one-line errors, --help everywhere, a tiny end-to-end run."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import yaml

from memnets.cli import RECIPES_WIDTH, build_parser, main
from memnets.tasks import register_task
from memnets.tasks.babi import BabiTask
from memnets.tasks.memory import AddingTask
from memnets.tasks.recipes import from_dict, load_config

TINY = ["--set", "data.T=8", "--set", "data.train_size=64", "--set", "data.dev_size=16",
        "--set", "data.test_size=16", "--set", "data.batch_size=8", "--set",
        "model.hidden_size=6", "--set", "trainer.max_steps=8", "--set", "trainer.eval_every=4",
        "--set", "trainer.tensorboard=false"]



@register_task("test_cli_no_cell")
class NoCellAdding(AddingTask):
    """The adding task with a model that says it runs no cell (as bAbI's MemN2N)."""

    @classmethod
    def model_cell(cls, config):
        return None


@register_task("test_cli_flat_dev")
class FlatDevAdding(AddingTask):
    """Every evaluation scores the same: each dev evaluation ties the best so far."""

    def metrics(self, stats):
        return {**super().metrics(stats), "mse": 0.25}


COMMANDS = ["train", "config", "eval", "predict", "generate", "recipes", "compare", "sweep",
            "ensemble", "plot", "report", "plot-gradients", "demo", "data"]


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
    assert main(["eval", str(run), "--split", "dev", "--json"]) == 0
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
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet", *TINY,
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


# ----------------------------------------------------------------- predict at scale


def _write_sst(root):
    """A tiny SST-2 folder (sentences only): the same 32 sentences in every split."""
    folder = root / "sst" / "sentences"
    folder.mkdir(parents=True)
    lines = ([f"1 {s}" for s in ("a great film", "a wonderful story")] * 8
             + [f"0 {s}" for s in ("a dull film", "an awful story")] * 8)
    for split in ("train", "dev", "test"):
        (folder / f"stsa.binary.{split}").write_text("\n".join(lines) + "\n")


def _write_slots(root):
    """A tiny slot-filling corpus in the iob layout, two intents."""
    folder = root / "home"
    folder.mkdir(parents=True)
    rows = [("turn on the lamp", "O O O B-device", "switch"),
            ("play hey jude", "O B-song I-song", "play")] * 6
    for split in ("train", "valid", "test"):
        (folder / f"home.{split}.iob").write_text("".join(
            f"BOS {w} EOS\tO {t} {i}\n" for w, t, i in rows))


def _sets(values):
    return sum((["--set", v] for v in values), [])


def test_predict_takes_one_utterance_per_input_file_line_and_stdin_line(tmp_path, capsys,
                                                                         monkeypatch):
    """Several utterances were joined into one, and '-' was tagged as a word."""
    _write_slots(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "atis-joint", "--out", str(run), "--quiet", *_sets([
        f"data.dir={tmp_path}", "data.corpus=home", "data.format=iob",
        "data.train=home.train.iob", "data.dev=home.valid.iob", "data.test=home.test.iob",
        "data.batch_size=4", "model.hidden_size=4", "model.word_dim=4", "model.char_dim=0",
        "trainer.max_steps=2", "trainer.tensorboard=false"])]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "turn on the lamp", "play hey jude"]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert len(blocks) == 2  # one result per utterance, a blank line between
    assert [line.split()[0] for line in blocks[0].splitlines()[:-1]] == "turn on the lamp".split()
    assert [line.split()[0] for line in blocks[1].splitlines()[:-1]] == "play hey jude".split()
    assert all(b.splitlines()[-1].startswith("intent: ") for b in blocks)

    (tmp_path / "more.txt").write_text("play hey jude\n\nturn on the lamp\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("turn on the lamp\nplay hey jude\n"))
    assert main(["predict", str(run), "--json", "-", "--file", str(tmp_path / "more.txt"),
                 "--explain"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["turn on the lamp", "play hey jude",
                                          "play hey jude", "turn on the lamp"]
    assert [r["words"] for r in rows] == [r["input"].split() for r in rows]
    assert all(len(r["slots"]) == len(r["words"]) and r["intent"] in ("switch", "play")
               and sum(r["attention"]) == pytest.approx(1.0, abs=1e-4) for r in rows)
    assert rows[0]["slots"] == rows[3]["slots"]  # batched with others or not, the same

    assert main(["predict", str(run), "--png", str(tmp_path / "a.png"), "a", "b"]) == 2
    assert "--png: expected a single input, got 2" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("turn on\n\n   \nplay\n"))
    assert main(["predict", str(run), "--json", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # blank lines are no inputs
    assert main(["predict", str(run)]) == 2
    assert "expected an input" in capsys.readouterr().err
    assert main(["predict", str(run), "--file", str(tmp_path / "none.txt")]) == 1


def test_sst_predict_warns_on_unknown_words_and_needs_no_vectors_file(tmp_path, capsys,
                                                                      monkeypatch):
    """The vectors file was read again at predict/eval time (and relative to the data
    root at training time); unknown words were read as <unk> without a word."""
    _write_sst(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "vectors.txt").write_text("great 1 0 0 0\nawful -1 0 0 0\n")
    run = tmp_path / "run"
    assert main(["train", "sst2-lstm", "--out", str(run), "--quiet", *_sets([
        f"data.dir={tmp_path / 'data'}", "data.download=false", "data.vectors=vectors.txt",
        "data.batch_size=8", "model.embedding_size=4", "model.hidden_size=4",
        "trainer.max_steps=3", "trainer.tensorboard=false"])]) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["vectors"] == str(work / "vectors.txt")  # recorded absolute
    (work / "vectors.txt").unlink()  # the vectors live in the trained embedding now
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "dev"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "a great film", "an awful zeppelin"]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert blocks[0].splitlines()[0] in ("positive", "negative")
    assert "unknown" not in blocks[0]
    assert blocks[1].splitlines()[-1] == "unknown words (read as <unk>): zeppelin"
    monkeypatch.setattr("sys.stdin", io.StringIO("a dull film\nan awful story\n"))
    assert main(["predict", str(run), "--json", "-", "a great film"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["a dull film", "an awful story", "a great film"]
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0) for r in rows)
    assert main(["predict", str(run), "--json", "a great film"]) == 0
    (alone,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert alone["probabilities"] == pytest.approx(rows[2]["probabilities"], abs=1e-6)


# ----------------------------------------------------------------- small lies


def test_config_prints_the_resolved_recipe(capsys):
    assert main(["config", "adding", "--set", "model.hidden_size=7"]) == 0
    raw = yaml.safe_load(capsys.readouterr().out)
    assert raw["model"]["hidden_size"] == 7 and raw["data"]["T"] == 100
    assert raw["trainer"]["seed"] == 0  # defaults filled in
    assert from_dict(raw) == load_config("adding", ["model.hidden_size=7"])
    assert main(["config", "adding", "--set", "model.hiden_size=7"]) == 2


def test_resume_with_other_settings_is_an_error_naming_them(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "adding", "--out", str(run), "--quiet", *TINY]) == 0
    before = (run / "config.yaml").read_bytes()
    capsys.readouterr()
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet", *TINY,
                 "--set", "model.hidden_size=9", "--set", "trainer.max_steps=12"]) == 2
    err = capsys.readouterr().err
    assert "model.hidden_size (6 there, 9 asked)" in err and "max_steps" not in err.split(
        "; a resume")[0]
    assert main(["train", "copy", "--out", str(run), "--resume", "--quiet"]) == 2
    assert "task (adding there, copy asked)" in capsys.readouterr().err
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet",
                 "--set", "trainer.max_steps=12"]) == 2  # the run's --set left out
    assert "data.T (8 there, 100 asked)" in capsys.readouterr().err
    assert (run / "config.yaml").read_bytes() == before
    assert main(["train", "adding", "--out", str(run), "--resume", "--quiet", *TINY,
                 "--set", "trainer.max_steps=12", "--set", "trainer.max_epochs=2"]) == 0
    assert json.loads((run / "results.json").read_text())["steps"] == 12


def test_train_header_names_a_cell_only_when_the_model_runs_one(tmp_path, capsys):
    assert main(["train", "adding", "--out", str(tmp_path / "a"), *TINY]) == 0
    (header,) = [s for s in capsys.readouterr().out.splitlines() if s.startswith("task ")]
    assert "model SequenceRegressor (lstm, " in header
    assert main(["train", "adding", "--out", str(tmp_path / "b"), *TINY,
                 "--set", "task=test_cli_no_cell"]) == 0
    (header,) = [s for s in capsys.readouterr().out.splitlines() if s.startswith("task ")]
    assert "model SequenceRegressor (" in header and "lstm" not in header
    assert json.loads((tmp_path / "b" / "results.json").read_text())["cell"] is None
    assert BabiTask.model_cell(load_config("babi-task1").model) is None
    assert BabiTask.model_cell(load_config("babi-task1", ["model.arch=lstm"]).model) == "lstm"


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_models_refuses_a_model_without_a_cell(tmp_path, capsys, command):
    """compare babi-task1 --models lstm,gru trained the same MemN2N twice."""
    out = tmp_path / "out"
    assert main([command, "babi-task1", "--models", "lstm,gru", "--out", str(out),
                 "--quiet"]) == 2
    assert "has no recurrent cell" in capsys.readouterr().err
    assert main([command, "adding", "--models", "lstm,gru", "--out", str(out), "--quiet",
                 *TINY, "--set", "task=test_cli_no_cell"]) == 2
    assert not out.exists()


def test_epoch_numbers_agree_between_log_lines_and_metrics(tmp_path, capsys):
    """metrics.jsonl counted epochs from 0 while the log lines counted from 1."""
    run = tmp_path / "run"  # 8 batches an epoch; evaluations at steps 4, 8 and 12
    assert main(["train", "adding", "--out", str(run), *TINY, "--set", "trainer.max_steps=12",
                 "--set", "trainer.max_epochs=2", "--set", "trainer.log_every=4"]) == 0
    logged = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("step ") and "(epoch " in line:
            step, epoch = line.split()[1], line.split("(epoch ")[1].split(")")[0]
            logged[int(step)] = int(epoch)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    dev = {r["step"]: r["epoch"] for r in rows if r["split"] == "dev"}
    train = {r["step"]: r["epoch"] for r in rows if r["split"] == "train"}
    assert logged == dev == train == {4: 1, 8: 1, 12: 2}


def test_a_tie_on_dev_keeps_the_later_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "adding", "--out", str(run), "--quiet", *TINY,
                 "--set", "task=test_cli_flat_dev", "--set", "trainer.max_steps=12",
                 "--set", "trainer.max_epochs=2"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["best_step"] == 12 and results["checkpoint"].startswith("step-00000012")
    assert json.loads((run / "checkpoints" / "best.json").read_text())["step"] == 12


def test_word_language_models_report_bits_per_word(tmp_path, capsys):
    ptb = tmp_path / "ptb"
    ptb.mkdir()
    for split in ("train", "valid", "test"):
        (ptb / f"ptb.{split}.txt").write_text(" the cat sat on the <unk> \n" * 20)
    run = tmp_path / "run"
    assert main(["train", "ptb-small", "--out", str(run), "--quiet", *_sets([
        f"data.path={ptb}", "data.download=false", "data.batch_size=2", "data.bptt=4",
        "model.hidden_size=4", "model.num_layers=1", "trainer.max_steps=2",
        "trainer.tensorboard=false"])]) == 0
    results = json.loads((run / "results.json").read_text())
    assert "bits_per_word" in results["dev"] and "bpc" not in results["dev"]
    capsys.readouterr()
    assert main(["predict", str(run), "the cat sat"]) == 0
    out = capsys.readouterr().out
    assert "bits/word" in out and "bpc" not in out and "bits/char" not in out


def test_eval_rounds_its_printout_and_json_keeps_full_precision(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "adding", "--out", str(run), "--quiet", *TINY]) == 0
    dev = json.loads((run / "results.json").read_text())["dev"]
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "dev"]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines()[1:])
    assert printed == {k: f"{v:.4g}" for k, v in dev.items()}
    assert main(["eval", str(run), "--split", "dev", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"split": "dev", **dev}


def test_recipes_fit_100_columns_and_say_whether_the_data_is_there(tmp_path, capsys,
                                                                   monkeypatch):
    (tmp_path / "sst").mkdir()
    monkeypatch.setenv("MEMNETS_DATA", str(tmp_path))
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(s) for s in lines) <= RECIPES_WIDTH
    found = {s.split()[0]: s.split()[3] for s in lines[1:] if s[:1].strip() and
             len(s.split()) > 3 and not s.startswith("found:")}
    assert found["sst2-lstm"] == "yes" and found["ptb-small"] == "no"
    assert lines[0].split()[:5] == ["recipe", "task", "dataset", "found", "target"]
    assert any(str(tmp_path) in s for s in lines)


def test_training_to_a_log_file_prints_lines_and_announces_long_evaluations(
        tmp_path, capsys, monkeypatch):
    import memnets.train.trainer as trainer

    monkeypatch.setattr(trainer, "LONG_EVAL_SECONDS", 0.0)  # every evaluation is "long"
    run = tmp_path / "run"
    assert main(["train", "adding", "--out", str(run), *TINY,
                 "--set", "trainer.log_every=2"]) == 0
    out = capsys.readouterr().out  # pytest's stdout and stderr are not terminals
    train_lines = [line for line in out.splitlines() if ": train " in line]
    assert train_lines and train_lines[0].startswith("step 2 (epoch 1): train mse ")
    assert "ex/s" in train_lines[0]
    assert "evaluating dev (the last evaluation took" in out
    monkeypatch.setattr(trainer, "LONG_EVAL_SECONDS", 10.0)
    assert main(["train", "adding", "--out", str(tmp_path / "quiet"), "--quiet", *TINY]) == 0
    assert capsys.readouterr().out == ""
