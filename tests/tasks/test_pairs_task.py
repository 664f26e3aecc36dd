"""The sentence-pair tasks (``entailment``, ``relatedness``): recipe checks, exact
metrics against hand-written references, the trivial baselines, SICK's checked
download from a local server, ``memnets predict`` (text, --json, --png) and
ensembles through the command line, and smoke tests that a toy pair task
written as TSV is learnt from scratch within a minute."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import math
import random
import threading
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA

import memnets.tasks.pairs as pairs_task
from memnets.cli import main as cli_main
from memnets.config import ConfigError
from memnets.data import DataError
from memnets.data.sick import LABELS, PairExample
from memnets.data.vocab import Vocab
from memnets.tasks.pairs import (
    EntailmentDataConfig,
    EntailmentTask,
    PairEnsemble,
    RelatednessDataConfig,
    RelatednessTask,
    average_ranks,
    pearson,
    spearman,
)
from memnets.tasks.recipes import load_config
from memnets.train import load_run, train

FAST = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.log_every=10"]
SICK_RECIPES = ["sick-features", "sick-conditional", "sick-match-lstm", "sick-match-lstm-compare",
                "sick-match-lstm-em", "sick-lstmn-shallow", "sick-lstmn-deep", "sick-relatedness",
                "sick-joint"]

# ---------------------------------------------------------------------- a toy pair task
#
# Entailment: the hypothesis says the same thing, or the same with the subject's
# kind (a man -> a person); contradiction: it negates the premise; neutral: it
# says something else about the same subject.  Each class has its own band of
# relatedness scores, so that a model that tells the classes apart also ranks them.

KINDS = {"man": "person", "woman": "person", "boy": "person", "girl": "person",
         "dog": "animal", "cat": "animal", "horse": "animal"}
VERBS = ["running", "eating", "sleeping", "jumping", "singing", "swimming"]
PLACES = ["", " in the park", " on the grass", " near the river"]
BANDS = {"entailment": (4.2, 5.0), "contradiction": (3.0, 3.8), "neutral": (1.0, 2.2)}


def toy_pair(rng: random.Random) -> tuple[str, str, str, float]:
    subject, verb, place = rng.choice(sorted(KINDS)), rng.choice(VERBS), rng.choice(PLACES)
    premise = f"A {subject} is {verb}{place}"
    label = rng.choice(LABELS)
    who = rng.choice([subject, KINDS[subject]])
    if label == "entailment":
        hypothesis = f"A {who} is {verb}"
    elif label == "contradiction":
        hypothesis = rng.choice([f"A {subject} isn't {verb}", f"Nobody is {verb}{place}"])
    else:
        hypothesis = f"A {who} is {rng.choice([v for v in VERBS if v != verb])}"
    lo, hi = BANDS[label]
    return premise, hypothesis, label, round(rng.uniform(lo, hi), 2)


def write_toy(folder: Path, sizes=(400, 100, 100), seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "dev", "test"), sizes):
        rows = [toy_pair(rng) for _ in range(n)]
        (folder / f"{split}.tsv").write_text(
            "".join(f"{p}\t{h}\t{y}\t{s}\n" for p, h, y, s in rows))
    return folder


def toy_overrides(folder: Path, *extra: str) -> list[str]:
    return [f"data.dir={folder}", "data.format=tsv", "data.train_file=train.tsv",
            "data.dev_file=dev.tsv", "data.test_file=test.tsv", *FAST, *extra]


def toy_task(folder: Path, cls=EntailmentTask, **data) -> EntailmentTask:
    config = (EntailmentDataConfig if cls is EntailmentTask else RelatednessDataConfig)(
        format="tsv", train_file="train.tsv", dev_file="dev.tsv", test_file="test.tsv",
        **data)
    task = cls(config, folder)
    task.setup()
    return task


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory) -> Path:
    """A small match-LSTM with both heads trained on the toy task by ``memnets train``."""
    root = tmp_path_factory.mktemp("pairs")
    data = write_toy(root / "data")
    run = root / "joint"
    _train_cli("sick-joint", run, toy_overrides(
        data, "model.architecture=match_lstm", "model.classifier_hidden=null",
        "model.embedding_size=16", "model.hidden_size=24", "trainer.max_epochs=15",
        "trainer.early_stopping=null", "optimizer.lr=0.01", "model.dropout=0.0",
        "model.embedding_dropout=0.0"))
    return run


def _train_cli(recipe: str, run: Path, overrides: list[str]) -> dict:
    args = ["train", recipe, "--out", str(run), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    assert cli_main(args) == 0
    return json.loads((run / "results.json").read_text())


def _train_losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train" and "loss" in r]


# ---------------------------------------------------------------------- recipes


@pytest.mark.parametrize("recipe", SICK_RECIPES)
def test_shipped_recipes_load_and_fit_100_columns(recipe):
    from memnets.config import recipe_path

    config = load_config(recipe)
    assert config.info.dataset == "sick" and config.info.target
    assert config.task == ("relatedness" if recipe == "sick-relatedness" else "entailment")
    assert max(len(line) for line in recipe_path(recipe).read_text().splitlines()) <= 100
    if recipe == "sick-joint":
        assert config.data.relatedness_weight > 0
    assert config.model.exact_match == (recipe == "sick-match-lstm-em")


@pytest.mark.parametrize("override, message", [
    ("data.train_file=x.tsv", r"data: train_file: expected null with format sick"),
    ("data.format=csv", r"data.format: expected one of 'sick', 'jsonl', 'tsv'"),
    ("data.min_freq=0", r"data.min_freq: expected an integer >= 1, got 0"),
    ("data.relatedness_weight=-1", r"data.relatedness_weight: expected a number >= 0"),
    ("model.architecture=bimpm", r"model.architecture: expected one of 'features'"),
    ("model.pooling=sum", r"model: pooling: expected one of last, mean, max, attention"),
    ("model.attention=cosine", r"model: attention: expected one of additive, dot"),
    ("model.embedding_dropout=1.0", r"model.embedding_dropout: expected a number \[0, 1\)"),
    ("model.classifier_hidden=0", r"model.classifier_hidden: expected an integer >= 1"),
    ("model.block=residual", r"model: block: expected null"),
    ("model.hidden=3", r"model: unknown key 'hidden'"),
])
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("sick-match-lstm", [override])


def test_generic_formats_need_their_split_files():
    with pytest.raises(ConfigError, match=r"data: dev_file: expected a file with format jsonl"):
        load_config("sick-match-lstm", ["data.format=jsonl", "data.train_file=a.jsonl"])
    with pytest.raises(ConfigError, match=r"unknown key 'relatedness_weight'"):
        load_config("sick-relatedness", ["data.relatedness_weight=1"])


def test_a_bad_setting_exits_2_on_the_command_line(capsys):
    assert cli_main(["train", "sick-match-lstm", "--set", "model.pooling=sum"]) == 2
    assert "pooling: expected one of" in capsys.readouterr().err


def test_an_impossible_architecture_is_refused_before_training(tmp_path, capsys):
    data = write_toy(tmp_path / "data", sizes=(20, 5, 5))
    over = sum((["--set", o] for o in toy_overrides(data, "model.architecture=conditional",
                                                    "model.bidirectional=true")), [])
    assert cli_main(["train", "sick-match-lstm", "--out", str(tmp_path / "r"), *over]) == 2
    assert "expected bidirectional false" in capsys.readouterr().err


# ---------------------------------------------------------------------- metrics


def _ref_pearson(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def _ref_ranks(x):
    # rank_i = 1 + #smaller + (#equal - 1) / 2: the mean of the ranks a tie spans
    return [1 + sum(b < a for b in x) + (sum(b == a for b in x) - 1) / 2 for a in x]


def test_pearson_spearman_on_a_hand_worked_case():
    x, y = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
    assert average_ranks(y).tolist() == [1, 2, 3.5, 5, 3.5]
    # ranks of x: 1..5; of y: 1, 2, 3.5, 5, 3.5 -> sum dxdy = 8, sum dx^2 = 10, sum dy^2 = 9.5
    assert spearman(x, y) == pytest.approx(8 / math.sqrt(95), abs=1e-12)
    # raw values: dx = -2..2, dy = -1.6, -0.6, 0.4, 1.4, 0.4 -> 6 / sqrt(10 * 5.2)
    assert pearson(x, y) == pytest.approx(6 / math.sqrt(52), abs=1e-12)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0  # no variance: scored 0, not NaN


def test_pearson_spearman_against_references_on_random_ties():
    rng = random.Random(3)
    for _ in range(20):
        n = rng.randrange(3, 40)
        x = [rng.choice([1.0, 1.5, 2.0, 3.0, 4.2, 5.0]) for _ in range(n)]
        y = [rng.uniform(1, 5) for _ in range(n)]
        if len(set(x)) == 1:
            continue
        assert average_ranks(x).tolist() == _ref_ranks(x)
        assert pearson(x, y) == pytest.approx(_ref_pearson(x, y), abs=1e-12)
        assert spearman(x, y) == pytest.approx(_ref_pearson(_ref_ranks(x), _ref_ranks(y)),
                                               abs=1e-12)


def _predictions(task, model, split):
    """Every pair of ``split`` through the model alone, one pair at a time."""
    preds, golds, correct = [], [], 0
    for e in task.examples(split):
        batch = task.collate([e])
        with torch.no_grad():
            out = model(batch.premise, batch.premise_lengths, batch.hypothesis,
                        batch.hypothesis_lengths)
        probs = torch.softmax(out["relatedness"][0].double(), -1)
        preds.append(sum((i + 1) * float(probs[i]) for i in range(5)))
        golds.append(e.score)
        correct += LABELS[int(out["entailment"][0].argmax())] == e.label
    return preds, golds, 100.0 * correct / len(golds)


def test_evaluate_is_exact_over_several_batches(joint_run):
    config, task, model = load_run(joint_run, check_data=True)
    preds, golds, accuracy = _predictions(task, model, "test")
    for bs in (7, 100):
        m = task.evaluate(model, "test", batch_size=bs)
        assert m["accuracy"] == pytest.approx(accuracy)
        assert m["pearson"] == pytest.approx(_ref_pearson(preds, golds), abs=1e-5)
        assert m["spearman"] == pytest.approx(
            _ref_pearson(_ref_ranks(preds), _ref_ranks(golds)), abs=1e-5)
        assert m["mse"] == pytest.approx(
            sum((p - g) ** 2 for p, g in zip(preds, golds)) / len(golds), abs=1e-5)
    # the training loop's additive sums give the same Pearson r for a fixed model
    totals: dict = {}
    from memnets.tasks.base import add_stats

    with torch.no_grad():
        for batch in task.batches("test", batch_size=9):
            add_stats(totals, task.step(model, batch).stats)
    assert task.metrics(totals)["pearson"] == pytest.approx(_ref_pearson(preds, golds),
                                                            abs=1e-5)


def test_the_losses_are_cross_entropy_and_tai_kl(tmp_path):
    task = toy_task(write_toy(tmp_path, sizes=(30, 5, 5)), relatedness_weight=0.5)
    model = task.build_model(load_config("sick-match-lstm").model).eval()
    examples = task.examples("train")[:6]
    with torch.no_grad():
        out = task.step(model, task.collate(examples))
        batch = task.collate(examples)
        logits = model(batch.premise, batch.premise_lengths, batch.hypothesis,
                       batch.hypothesis_lengths)
    ce = kl = 0.0
    for k, e in enumerate(examples):
        logp = torch.log_softmax(logits["entailment"][k].double(), -1)
        ce -= float(logp[LABELS.index(e.label)])
        q = torch.softmax(logits["relatedness"][k].double(), -1)
        low = math.floor(e.score)
        target = [0.0] * 5  # Tai et al.: the score split between its two integers
        target[low - 1] = low + 1 - e.score
        if low < 5:
            target[low] = e.score - low
        kl += sum(p * math.log(p / float(q[i])) for i, p in enumerate(target) if p > 0)
    n = len(examples)
    assert float(out.loss) == pytest.approx(ce / n + 0.5 * kl / n, rel=1e-5)
    assert float(out.stats["correct"]) == sum(
        LABELS[int(logits["entailment"][k].argmax())] == e.label for k, e in enumerate(examples))


def test_baselines_majority_class_and_train_mean(tmp_path):
    (tmp_path / "train.tsv").write_text("a b\tc\tneutral\t1\na\tc\tneutral\t2\n"
                                        "a\tb\tentailment\t5\n")
    (tmp_path / "dev.tsv").write_text("a\tb\tentailment\t4\n")
    (tmp_path / "test.tsv").write_text("a\tb\tneutral\t2\na\tb\tentailment\t4\n"
                                       "a\tb\tcontradiction\t3\na\tb\tneutral\t1\n")
    task = toy_task(tmp_path, relatedness_weight=1.0)
    base = task.baselines()
    assert base["accuracy"] == pytest.approx(50.0)  # neutral, 2 of the 4 test pairs
    mean = (1 + 2 + 5) / 3
    assert base["mse"] == pytest.approx(sum((y - mean) ** 2 for y in (2, 4, 3, 1)) / 4)
    assert "pearson" not in base  # a constant predictor has no correlation
    assert set(toy_task(tmp_path).baselines()) == {"accuracy"}
    assert set(toy_task(tmp_path, RelatednessTask).baselines()) == {"mse"}


def test_relatedness_needs_scores_on_every_pair(tmp_path):
    (tmp_path / "train.tsv").write_text("a\tb\tneutral\t2\na\tc\tentailment\n")
    (tmp_path / "dev.tsv").write_text("a\tb\tentailment\t4\n")
    (tmp_path / "test.tsv").write_text("a\tb\tentailment\t4\n")
    toy_task(tmp_path)  # entailment alone needs no score
    with pytest.raises(DataError, match=r"expected a relatedness score on every pair of "
                                        r".*train.tsv .*got 1 of 2 pairs without one"):
        toy_task(tmp_path, RelatednessTask)


# ---------------------------------------------------------------------- data


def test_snli_jsonl_trains_by_naming_its_files(tmp_path, capsys):
    rng = random.Random(1)
    for split, n in (("train", 60), ("dev", 10)):
        rows = [toy_pair(rng) for _ in range(n)]
        lines = [json.dumps({"sentence1": p, "sentence2": h, "gold_label": y, "pairID": str(i)})
                 for i, (p, h, y, _) in enumerate(rows)]
        lines.append(json.dumps({"sentence1": "a", "sentence2": "b", "gold_label": "-"}))
        (tmp_path / f"snli_1.0_{split}.jsonl").write_text("\n".join(lines) + "\n")
    cfg = load_config("sick-features", [
        f"data.dir={tmp_path}", "data.format=jsonl", "data.train_file=snli_1.0_train.jsonl",
        "data.dev_file=snli_1.0_dev.jsonl", "model.embedding_size=8", "model.hidden_size=8",
        "trainer.max_epochs=1", *FAST])
    res = train(cfg, tmp_path / "run", quiet=True)
    assert "test" not in res and "accuracy" in res["dev"]
    out = capsys.readouterr().out
    assert "skipped 1 pairs of" in out and "snli_1.0_train.jsonl" in out
    _, task, _ = load_run(tmp_path / "run")
    assert task.splits() == ("train", "dev")


def test_missing_split_file_is_a_data_error(tmp_path):
    write_toy(tmp_path, sizes=(10, 3, 3))
    cfg = load_config("sick-features", toy_overrides(tmp_path, "data.test_file=none.tsv"))
    with pytest.raises(DataError, match=r"expected the test file .*none.tsv"):
        train(cfg, tmp_path / "run", quiet=True)


SICK_HEADER = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"
SICK_TEXT = "\r\n".join([SICK_HEADER, "1\tA man sings\tA person sings\tENTAILMENT\t4.5\tTRAIN",
                         "2\tA man sings\tA dog barks\tNEUTRAL\t1.2\tTRAIN",
                         "3\tA cat sleeps\tNo cat sleeps\tCONTRADICTION\t3.6\tTRIAL",
                         "4\tA cat runs\tAn animal runs\tENTAILMENT\t4.8\tTEST"])


@pytest.fixture()
def sick_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / "SICK.txt").write_bytes(SICK_TEXT.encode())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/SICK.txt"
    httpd.shutdown()
    httpd.server_close()


def test_missing_sick_is_downloaded_and_checked(sick_server, tmp_path, monkeypatch):
    monkeypatch.setattr(pairs_task, "SICK_URL", sick_server)
    monkeypatch.setattr(pairs_task, "SICK_SHA256", hashlib.sha256(SICK_TEXT.encode()).hexdigest())
    task = EntailmentTask(EntailmentDataConfig(), tmp_path)
    task.setup()
    assert (tmp_path / "sick" / "SICK.txt").read_bytes() == SICK_TEXT.encode()
    assert [len(task.examples(s)) for s in ("train", "dev", "test")] == [2, 1, 1]
    assert "person" in task.vocab and "animal" not in task.vocab  # from train only


def test_a_wrong_checksum_is_refused_and_writes_nothing(sick_server, tmp_path, monkeypatch):
    monkeypatch.setattr(pairs_task, "SICK_URL", sick_server)
    monkeypatch.setattr(pairs_task, "SICK_SHA256", "0" * 64)
    with pytest.raises(DataError, match="checksum mismatch"):
        EntailmentTask(EntailmentDataConfig(), tmp_path).setup()
    assert not (tmp_path / "sick" / "SICK.txt").exists()


def test_no_download_when_disabled_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"SICK file not found: expected .*sick/SICK.txt"):
        EntailmentTask(EntailmentDataConfig(download=False), tmp_path).setup()


@pytest.mark.skipif(not (SHARED_DATA / "sick" / "SICK.txt").is_file(),
                    reason=f"SICK not found under {SHARED_DATA} (set MEMNETS_DATA)")
def test_the_real_sick_task_sizes_and_baselines():
    task = RelatednessTask(RelatednessDataConfig(entailment_weight=1.0), SHARED_DATA)
    task.setup()
    assert [len(task.examples(s)) for s in ("train", "dev", "test")] == [4439, 495, 4906]
    base = task.baselines()
    test = task.examples("test")
    assert base["accuracy"] == pytest.approx(
        100.0 * sum(e.label == "neutral" for e in test) / len(test))
    assert 50.0 < base["accuracy"] < 60.0 and 0.8 < base["mse"] < 1.3


# ---------------------------------------------------------------------- vectors


def test_word_vectors_are_read_once_and_kept_in_the_weights(tmp_path):
    data = write_toy(tmp_path / "data", sizes=(40, 8, 8))
    vectors = tmp_path / "glove.txt"
    vectors.write_text("man " + " ".join(["0.5"] * 8) + "\nnobody " + " ".join(["-1"] * 8)
                       + "\nzebra " + " ".join(["2"] * 8) + "\n")
    run = tmp_path / "run"
    train(load_config("sick-features", toy_overrides(
        data, f"data.vectors={vectors}", "model.embedding_size=8", "model.hidden_size=8",
        "model.freeze_embeddings=true", "trainer.max_epochs=1")), run, quiet=True)
    vectors.unlink()  # a restored run never reads the file again
    _, task, model = load_run(run)
    table = model.embedding.weight
    assert torch.equal(table[task.vocab["man"]], torch.full((8,), 0.5))
    assert torch.equal(table[task.vocab["nobody"]], torch.full((8,), -1.0))
    assert torch.equal(table[task.vocab.pad_id], torch.zeros(8))


# ---------------------------------------------------------------------- predict


def test_predict_prints_label_probabilities_and_score(joint_run, capsys):
    capsys.readouterr()
    assert cli_main(["predict", str(joint_run), "--premise", "A man is running in the park",
                     "--hypothesis", "A person is running"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "entailment"
    probs = {line.split(":")[0].strip(): float(line.split(":")[1]) for line in lines[1:4]}
    assert list(probs) == list(LABELS) and sum(probs.values()) == pytest.approx(1, abs=2e-3)
    assert probs["entailment"] > 0.5
    assert lines[4].startswith("relatedness: ") and 4.0 < float(lines[4].split()[1]) <= 5.0


def test_predict_reads_tab_and_bar_pairs_and_prints_json(joint_run, tmp_path, capsys,
                                                          monkeypatch):
    import io
    import sys

    f = tmp_path / "pairs.txt"
    f.write_text("A dog is eating\tA dog isn't eating\n\nA cat is swimming ||| A cat is "
                 "sleeping\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("A girl is singing ||| A zebra sings\n"))
    capsys.readouterr()
    assert cli_main(["predict", str(joint_run), "--json", "--file", str(f), "-"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["A girl is singing ||| A zebra sings",
                                          "A dog is eating\tA dog isn't eating",
                                          "A cat is swimming ||| A cat is sleeping"]
    assert rows[1]["hypothesis"] == ["a", "dog", "is", "n't", "eating"]
    assert rows[1]["label"] == "contradiction"  # the toy's plainest cue: a negation
    assert all(r["label"] == max(r["probabilities"], key=r["probabilities"].get) for r in rows)
    assert rows[0]["unknown"] == ["sings", "zebra"]
    assert all(sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5) for r in rows)
    assert all(1.0 <= r["relatedness"] <= 5.0 for r in rows)


def test_predict_writes_the_attention_png(joint_run, tmp_path, capsys):
    png = tmp_path / "attention.png"
    capsys.readouterr()
    assert cli_main(["predict", str(joint_run), "--png", str(png), "--json",
                     "A man is running ||| A person is running"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert png.stat().st_size > 0 and row["attention_map"] == str(png)
    attention = torch.tensor(row["attention"])  # (hypothesis words, premise words)
    assert attention.shape == (4, 4)
    torch.testing.assert_close(attention.sum(1), torch.ones(4))
    assert cli_main(["predict", str(joint_run), "--png", str(png), "a ||| b", "c ||| d"]) == 2
    assert "--png: expected a single input, got 2" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["just one sentence"], "expected 'premise<TAB>hypothesis' or 'premise ||| hypothesis'"),
    (["a ||| b ||| c"], "(one separator)"),
    (["a |||   "], "expected a hypothesis of at least one word"),
    (["--premise", "a dog"], "expected --premise and --hypothesis together"),
    ([], "expected an input"),
])
def test_predict_refuses_bad_input_with_exit_2(joint_run, capsys, args, message):
    capsys.readouterr()
    assert cli_main(["predict", str(joint_run), *args]) == 2
    assert message in capsys.readouterr().err


def test_ensemble_averages_probabilities_and_predicts(joint_run, tmp_path, capsys):
    import shutil

    second = tmp_path / "second"
    shutil.copytree(joint_run, second)
    _, task, a = load_run(joint_run)
    b = load_run(second)[2]
    with torch.no_grad():  # make the second member differ
        b.heads["entailment"].bias.add_(torch.tensor([0.0, 1.0, -1.0]))
    batch = task.collate(task.examples("test")[:5])
    ens = PairEnsemble([a, b]).eval()
    with torch.no_grad():
        out = ens(batch.premise, batch.premise_lengths, batch.hypothesis,
                  batch.hypothesis_lengths, return_attention=True)
        outs = [m(batch.premise, batch.premise_lengths, batch.hypothesis,
                  batch.hypothesis_lengths, return_attention=True) for m in (a, b)]
    for head in ("entailment", "relatedness"):
        mean = (outs[0][head].softmax(-1) + outs[1][head].softmax(-1)) / 2
        torch.testing.assert_close(out[head].exp(), mean)
    torch.testing.assert_close(out["attention"], (outs[0]["attention"] + outs[1]["attention"])
                               / 2)
    capsys.readouterr()
    assert cli_main(["ensemble", str(joint_run), str(second), "--out", str(tmp_path / "ens")]) \
        == 0
    assert cli_main(["predict", str(tmp_path / "ens"), "A man is running ||| A man isn't "
                     "running"]) == 0
    assert capsys.readouterr().out.splitlines()[-5] in LABELS


# ---------------------------------------------------------------------- smoke


def test_smoke_match_lstm_learns_the_toy_task_with_both_heads_within_a_minute(joint_run):
    res = json.loads((joint_run / "results.json").read_text())
    losses = _train_losses(joint_run)
    assert losses[-1] < 0.5 * losses[0]
    assert res["test"]["accuracy"] > 90.0  # the majority class: about 35
    assert res["baselines"]["accuracy"] < 45.0
    assert res["test"]["pearson"] > 0.8 and res["test"]["mse"] < res["baselines"]["mse"] / 2


def test_smoke_match_lstm_with_exact_match_learns_the_toy_task(tmp_path):
    data = write_toy(tmp_path / "data")
    res = _train_cli("sick-match-lstm-em", tmp_path / "run", toy_overrides(
        data, "model.embedding_size=16", "model.hidden_size=24", "trainer.max_epochs=10",
        "trainer.early_stopping=null", "optimizer.lr=0.01", "model.dropout=0.0",
        "model.embedding_dropout=0.0"))
    assert res["test"]["accuracy"] > 90.0 > res["baselines"]["accuracy"] + 40


def test_smoke_relatedness_learns_the_toy_scores(tmp_path):
    data = write_toy(tmp_path / "data")
    res = _train_cli("sick-relatedness", tmp_path / "run", toy_overrides(
        data, "model.embedding_size=16", "model.hidden_size=24", "trainer.max_epochs=8",
        "trainer.early_stopping=null", "optimizer.lr=0.01", "model.dropout=0.0",
        "model.embedding_dropout=0.0", "data.batch_size=20"))
    assert res["main_metric"] == "pearson"
    assert res["test"]["pearson"] > 0.85 and res["test"]["spearman"] > 0.8
    assert res["test"]["mse"] < res["baselines"]["mse"] / 3


@pytest.mark.parametrize("architecture", ["features", "conditional", "lstmn_shallow",
                                          "lstmn_deep"])
def test_smoke_every_architecture_trains_a_step_and_predicts(tmp_path, architecture, capsys):
    data = write_toy(tmp_path / "data", sizes=(40, 8, 8))
    recipe = {"features": "sick-features", "conditional": "sick-conditional"}.get(
        architecture, f"sick-{architecture.replace('_', '-')}")
    _train_cli(recipe, tmp_path / "run", toy_overrides(
        data, "model.embedding_size=8", "model.hidden_size=8", "trainer.max_epochs=1"))
    capsys.readouterr()
    png = tmp_path / "a.png"
    args = ["predict", str(tmp_path / "run"), "A man is eating ||| A person is eating"]
    code = cli_main(args + ["--png", str(png)])
    if architecture == "features":
        assert code == 2 and "expected a model with word-by-word attention" in \
            capsys.readouterr().err
        assert cli_main(args) == 0
    else:
        assert code == 0 and png.stat().st_size > 0
    assert capsys.readouterr().out.splitlines()[0] in LABELS


def test_vocab_state_round_trips(tmp_path):
    task = toy_task(write_toy(tmp_path, sizes=(20, 4, 4)))
    other = EntailmentTask(task.config, tmp_path)
    other.load_state_dict(json.loads(json.dumps(task.state_dict())))
    assert other.vocab.itos == task.vocab.itos and isinstance(other.vocab, Vocab)
    e = PairExample(("a", "man"), ("a", "zebra"), "neutral", 2.0)
    batch = other.collate([e, task.examples("train")[0]])
    assert batch.hypothesis[0, 1] == other.vocab.unk_id and torch.isfinite(batch.scores).all()
