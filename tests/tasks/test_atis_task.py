"""The slot_filling task end to end: the shipped recipes train on a corpus this test
writes, with labels ATIS never had (no code change, only data.dir/data.corpus), and
`memnets predict` prints every word's slot and the intent.  Smoke tests show that
every ATIS recipe learns on a small slice of ATIS."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch

from memnets.cli import main as cli_main
from memnets.config import ConfigError
from memnets.data.atis import read_split
from memnets.metrics.conlleval import slot_filling_scores
from memnets.tasks.recipes import load_config
from memnets.train import train

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MEMNETS_DATA", REPO.parent / "shared" / "data"))
needs_atis = pytest.mark.skipif(
    not (DATA / "atis_slotgated" / "train" / "seq.in").is_file()
    or not (DATA / "atis_jointslu" / "atis.train.w-intent.iob").is_file(),
    reason=f"ATIS not found under {DATA} (set MEMNETS_DATA)",
)

# A smart-home corpus: slot types and intents that ATIS never had.
DEVICES = ["lamp", "heater", "fan", "ceiling light", "coffee machine", "tv"]
ROOMS = ["kitchen", "bedroom", "living room", "garage", "office"]
LEVELS = ["ten", "twenty", "fifty", "eighty", "full"]
SONGS = ["yellow submarine", "blue monday", "hey jude", "clocks"]


def _slot(words: str, kind: str) -> tuple[list[str], list[str]]:
    w = words.split()
    return w, [f"B-{kind}"] + [f"I-{kind}"] * (len(w) - 1)


def _utterance(rng: random.Random) -> tuple[list[str], list[str], str]:
    out_w, out_t = [], []

    def say(text):
        out_w.extend(text.split())
        out_t.extend(["O"] * len(text.split()))

    def fill(values, kind):
        w, t = _slot(rng.choice(values), kind)
        out_w.extend(w)
        out_t.extend(t)

    kind = rng.randrange(3)
    if kind == 0:
        say(rng.choice(["switch on the", "please turn off the", "power up the"]))
        fill(DEVICES, "device")
        say("in the")
        fill(ROOMS, "room")
        return out_w, out_t, "home.switch"
    if kind == 1:
        say(rng.choice(["set the", "dim the"]))
        fill(DEVICES, "device")
        say("to")
        fill(LEVELS, "level")
        say("percent")
        return out_w, out_t, "home.set_level"
    say(rng.choice(["play", "put on"]))
    fill(SONGS, "song.title")
    say("and turn it up to")
    fill(LEVELS, "volume")
    return out_w, out_t, "media.play#media.volume"


def _write_home_corpus(root: Path, fmt: str) -> None:
    rng = random.Random(0)
    sizes = {"train": 240, "valid": 60, "test": 60}
    for split, n in sizes.items():
        rows = [_utterance(rng) for _ in range(n)]
        if fmt == "seq":
            d = root / "home" / split
            d.mkdir(parents=True)
            (d / "seq.in").write_text("".join(" ".join(w) + "\n" for w, _, _ in rows))
            (d / "seq.out").write_text("".join(" ".join(t) + "\n" for _, t, _ in rows))
            (d / "label").write_text("".join(i + "\n" for _, _, i in rows))
        else:
            d = root / "home"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"home.{split}.iob").write_text("".join(
                f"BOS {' '.join(w)} EOS\tO {' '.join(t)} {i}\n" for w, t, i in rows))


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train" and "loss" in r]


FAST = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.log_every=5"]


def test_joint_recipe_trains_on_a_new_corpus_without_code_change(tmp_path, capsys):
    _write_home_corpus(tmp_path / "data", "seq")
    cfg = load_config("atis-joint", [
        f"data.dir={tmp_path / 'data'}", "data.corpus=home", "data.batch_size=16",
        "model.hidden_size=32", "model.word_dim=16", "model.char_dim=8",
        "model.char_filters=16", "trainer.max_epochs=12", "trainer.early_stopping=null",
        "optimizer.lr=0.01", *FAST,
    ])
    run = tmp_path / "run"
    res = train(cfg, run, quiet=True)
    vocab = json.loads((run / "task.json").read_text())["vocabs"]
    assert "B-song.title" in vocab["tags"]["tokens"]
    assert "media.play#media.volume" in vocab["intents"]["tokens"]  # one class
    losses = _losses(run)
    assert losses[-1] < 0.5 * losses[0]
    assert res["test"]["slot_f1"] > 90.0  # all-O would score 0
    assert res["test"]["intent_accuracy"] > 90.0  # three balanced intents: chance ~33

    capsys.readouterr()
    assert cli_main(["predict", str(run), "please turn off the coffee machine in the garage"]) == 0
    out = capsys.readouterr().out.splitlines()
    words = "please turn off the coffee machine in the garage".split()
    assert [line.split()[0] for line in out[:-1]] == words
    assert out[4].split()[1] == "B-device" and out[5].split()[1] == "I-device"
    assert out[8].split()[1] == "B-room"
    assert out[-1] == "intent: home.switch"

    png = tmp_path / "attention.png"
    assert cli_main(["predict", str(run), "--explain", "--top", "2", "--png", str(png),
                     "please turn off the coffee machine in the garage"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["word", "slot", "attention"]
    rows = [line.split() for line in out[1:10]]
    assert [r[0] for r in rows] == words and rows[4][1] == "B-device"
    assert sum(float(r[2]) for r in rows) == pytest.approx(1.0, abs=0.05)
    assert out[10] == "intent: home.switch"
    likely = out[11].removeprefix("likely intents: ").split(", ")
    assert len(likely) == 2 and likely[0].split()[0] == "home.switch"
    assert float(likely[0].split()[1]) >= float(likely[1].split()[1])
    assert out[12] == f"attention map: {png}" and png.stat().st_size > 0

    slots_only = load_config("atis-bilstm", [
        f"data.dir={tmp_path / 'data'}", "data.corpus=home", "model.hidden_size=8",
        "model.word_dim=4", "trainer.max_epochs=1", *FAST])
    train(slots_only, tmp_path / "slots", quiet=True)
    assert cli_main(["predict", str(tmp_path / "slots"), "--explain", "turn on the fan"]) == 2
    assert "expected a run with an intent head" in capsys.readouterr().err


def test_elman_recipe_trains_on_a_new_corpus_in_iob_layout(tmp_path):
    _write_home_corpus(tmp_path / "data", "iob")
    cfg = load_config("atis-elman", [
        f"data.dir={tmp_path / 'data'}", "data.corpus=home", "data.train=home.train.iob",
        "data.test=home.test.iob", "model.hidden_size=32", "model.word_dim=16",
        "trainer.max_epochs=8", "trainer.early_stopping=null", "optimizer.lr=0.01", *FAST,
    ])
    res = train(cfg, tmp_path / "run", quiet=True)
    assert res["test"]["slot_f1"] > 80.0
    assert "intent_accuracy" not in res["test"]  # the Elman recipe tags slots only


def test_missing_corpus_is_a_clear_data_error(tmp_path):
    from memnets.data import DataError

    (tmp_path / "data").mkdir()
    cfg = load_config("atis-bilstm", [f"data.dir={tmp_path / 'data'}", "data.corpus=nowhere"])
    with pytest.raises(DataError, match=r"expected the folder with seq.in, seq.out, label .*"
                                        r"nowhere/train"):
        train(cfg, tmp_path / "run", quiet=True)


def test_task_metrics_equal_conlleval_on_the_predictions(tmp_path):
    """The additive counts the trainer sums give the same figures as scoring the
    decoded corpus at once."""
    from memnets.train import load_run

    _write_home_corpus(tmp_path / "data", "seq")
    cfg = load_config("atis-bilstm-crf", [
        f"data.dir={tmp_path / 'data'}", "data.corpus=home", "model.hidden_size=16",
        "model.word_dim=8", "trainer.max_epochs=2", "data.eval_batch_size=7", *FAST,
    ])
    train(cfg, tmp_path / "run", quiet=True)
    _, task, model = load_run(tmp_path / "run", check_data=True)
    metrics = task.evaluate(model, "test", batch_size=7)
    gold, pred = [], []
    for batch in task.batches("test", batch_size=7):
        out = model(batch.words, batch.chars, batch.lengths)
        tags, _ = task.decode(model, out, batch)
        gold += [u.tags for u in batch.utterances]
        pred += tags
    ref = slot_filling_scores(gold, pred)
    assert metrics["slot_f1"] == pytest.approx(ref["slot_f1"])
    assert metrics["sentence_accuracy"] == pytest.approx(ref["sentence_accuracy"])


def train_home_ensemble(root: Path, members: list[str], extra: tuple[str, ...] = ()) -> Path:
    """Two small atis-joint runs (seeds 1, 2) on the home corpus in ``root/runs/s1``
    and ``s2``, and an ensemble directory ``root/runs/ens`` listing them under the
    names ``members`` (as the older scripts/atis_ensemble.py recorded them)."""
    import shutil

    _write_home_corpus(root / "data", "seq")
    runs = root / "runs"
    for seed in (1, 2):
        cfg = load_config("atis-joint", [
            f"data.dir={root / 'data'}", "data.corpus=home", "model.hidden_size=16",
            "model.word_dim=8", "model.char_dim=4", "model.char_filters=8",
            "trainer.max_epochs=2", f"trainer.seed={seed}", *FAST, *extra,
        ])
        train(cfg, runs / f"s{seed}", quiet=True)
    ens = runs / "ens"
    ens.mkdir()
    for name in ("config.yaml", "task.json"):
        shutil.copy(runs / "s1" / name, ens / name)
    (ens / "results.json").write_text(json.dumps({"members": members}))
    return ens


def test_an_ensemble_directory_loads_predicts_and_evaluates(tmp_path, capsys):
    """A directory listing member runs (as the older scripts/atis_ensemble.py wrote it) is a run
    for load_run, `memnets predict` and `memnets eval`: the members' TaggerEnsemble."""
    import shutil

    from memnets.models.tagger import TaggerEnsemble
    from memnets.train import load_run

    # members named as the script records them, relative to another working folder
    ens = train_home_ensemble(tmp_path, ["elsewhere/s1", "elsewhere/s2"])
    runs = ens.parent

    _, task, model = load_run(ens, check_data=True)
    assert isinstance(model, TaggerEnsemble) and len(model.members) == 2
    direct = TaggerEnsemble([load_run(runs / s)[2] for s in ("s1", "s2")]).eval()
    assert task.evaluate(model, "test", batch_size=16) == task.evaluate(direct, "test",
                                                                        batch_size=16)
    capsys.readouterr()
    assert cli_main(["predict", str(ens), "turn off the lamp in the kitchen"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 8 and out[-1].startswith("intent: ")  # 7 words, the intent
    png = tmp_path / "ens.png"
    assert cli_main(["predict", str(ens), "--png", str(png), "turn off the lamp"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"attention map: {png}"
    attention = model.intent_attention(*_one(task, "turn off the lamp"))
    assert attention.shape == (1, 4, 2)  # one column per member (one head each)
    torch.testing.assert_close(attention[..., 1:],
                               direct.members[1].intent_attention(*_one(task, "turn off the lamp")))
    assert cli_main(["eval", str(ens), "--split", "dev"]) == 0

    (runs / "s2" / "task.json").write_text(json.dumps({"vocabs": {}}))
    with pytest.raises(ConfigError, match="other vocabularies"):
        load_run(ens)
    shutil.rmtree(runs / "s2")
    with pytest.raises(ConfigError, match="member run 'elsewhere/s2' not found"):
        load_run(ens)


def _one(task, text):
    from memnets.data.atis import Utterance

    words = tuple(text.split())
    batch = task.collate([Utterance(words, ("O",) * len(words), None)])
    return batch.words, batch.chars, batch.lengths


# ---------------------------------------------------------------------------
# smoke tests: each shipped ATIS recipe learns on a slice of ATIS


def _atis_slice(root: Path) -> None:
    sg = {s: read_split(DATA / "atis_slotgated", s, "seq") for s in ("train", "valid")}
    for split, data, n in (("train", sg["train"], 600), ("valid", sg["valid"], 100),
                           ("test", sg["valid"], 100)):
        d = root / "atis_small" / split
        d.mkdir(parents=True)
        rows = data[:n]
        (d / "seq.in").write_text("".join(" ".join(u.words) + "\n" for u in rows))
        (d / "seq.out").write_text("".join(" ".join(u.tags) + "\n" for u in rows))
        (d / "label").write_text("".join(u.intent + "\n" for u in rows))


@needs_atis
@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe", ["atis-elman", "atis-elman-char", "atis-jordan", "atis-lstm", "atis-bilstm",
               "atis-bilstm-crf", "atis-joint"],
)
def test_smoke_recipe_learns_on_an_atis_slice(tmp_path, recipe):
    _atis_slice(tmp_path / "data")
    over = [f"data.dir={tmp_path / 'data'}", "data.corpus=atis_small", "data.format=seq",
            "data.train=train", "data.dev=valid", "data.test=test", "trainer.max_steps=80",
            "trainer.max_epochs=10", "trainer.eval_every=80", "data.batch_size=32", *FAST]
    if recipe in ("atis-elman", "atis-elman-char", "atis-jordan"):
        over.append("optimizer.lr=0.005")
    res = train(load_config(recipe, over), tmp_path / "run", quiet=True)
    losses = _losses(tmp_path / "run")
    assert losses[-1] < 0.6 * losses[0]
    assert res["dev"]["slot_f1"] > 50.0  # predicting all O scores 0


def test_select_picks_the_main_metric():
    from memnets.config import ConfigError
    from memnets.train import make_task

    task = make_task(load_config("atis-joint"), check_data=False)
    assert task.main_metric == "joint" and task.higher_is_better
    assert make_task(load_config("atis-bilstm"), check_data=False).main_metric == "slot_f1"
    with pytest.raises(ConfigError, match="select: expected one of"):
        load_config("atis-joint", ["data.select=f1"])
    metrics = task.metrics({"loss": 2.0, "count": 4, "chunks_correct": 3, "chunks_gold": 4,
                            "chunks_pred": 6, "intents_correct": 3, "intents_scored": 4,
                            "sentences_correct": 1})
    assert metrics["slot_f1"] == pytest.approx(60.0)  # P 50, R 75
    assert metrics["intent_accuracy"] == pytest.approx(75.0)
    assert metrics["joint"] == pytest.approx(67.5)
    assert metrics["sentence_accuracy"] == pytest.approx(25.0)


def test_intent_error_table_counts_what_evaluate_counts(tmp_path, capsys, monkeypatch):
    """scripts/atis_intent_errors.py: with --min-runs 1 its table lists every test
    utterance some run gets wrong, and the 'wrong in' column adds up to the errors
    that each run's intent accuracy implies."""
    import importlib.util
    import sys

    from memnets.train import load_run

    spec = importlib.util.spec_from_file_location(
        "atis_intent_errors", REPO / "scripts" / "atis_intent_errors.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    _write_home_corpus(tmp_path / "data", "seq")
    runs = [tmp_path / f"s{seed}" for seed in (1, 2)]
    for seed, run in zip((1, 2), runs):
        cfg = load_config("atis-joint", [
            f"data.dir={tmp_path / 'data'}", "data.corpus=home", "model.hidden_size=8",
            "model.word_dim=4", "model.char_dim=0", "trainer.max_epochs=1",
            f"trainer.seed={seed}", *FAST,
        ])
        train(cfg, run, quiet=True)
    errors = 0
    for run in runs:
        _, task, model = load_run(run)
        n = len(task.examples("test"))
        errors += round(n * (1 - task.evaluate(model, "test", batch_size=16)
                                ["intent_accuracy"] / 100))
    assert errors > 0, "the one-epoch runs are expected to make some intent errors"
    out = tmp_path / "errors.md"
    monkeypatch.setattr(sys, "argv", ["atis_intent_errors.py", *map(str, runs),
                                      "--min-runs", "1", "--out", str(out)])
    capsys.readouterr()
    script.main()
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")
            and "/2 |" in line]
    assert sum(int(r.split("|")[1].strip().split("/")[0]) for r in rows) == errors
    assert out.read_text() == capsys.readouterr().out
