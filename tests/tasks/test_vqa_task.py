"""The ``vqa`` task on generated Sort-of-CLEVR: the recipes, batches of whole images
with all their questions (deterministic per seed and epoch, resumable mid-epoch,
sharded by image), the loss and every metric against a per-question reference
(localisation by brute force over pixels), the per-kind majority baselines,
``memnets predict`` (an image file, --png, --test-index, bad input) and a smoke
training per recipe that beats the baselines within a minute."""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import memnets.data.scenes as scenes
import memnets.tasks.vqa as vqa_task
from memnets.cli import main as cli_main
from memnets.config import ConfigError, recipe_path
from memnets.data.images import write_png
from memnets.data.scenes import SORT_OF_CLEVR_ANSWERS, read_sort_of_clevr
from memnets.tasks.recipes import load_config
from memnets.tasks.vqa import KINDS, RELATIONAL, VQATask, tokenize

torch.set_num_threads(1)
RECIPES = {"sort-of-clevr-san2": 2, "sort-of-clevr-san1": 1, "sort-of-clevr-baseline": 0}
FAST = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.log_every=10",
        "trainer.threads=1"]
TINY = {"train": 60, "dev": 12, "test": 12}  # images per split of the unit tests


def counts_overrides(root: Path, counts: dict[str, int]) -> list[str]:
    return [f"data.dir={root}", *(f"data.{s}_size={n}" for s, n in counts.items())]


def tiny_task(root: Path, *overrides: str, counts=TINY) -> VQATask:
    config = load_config("sort-of-clevr-san2", [*counts_overrides(root, counts), *overrides])
    task = VQATask(config.data, root)
    task.setup()
    return task


def tiny_model(task: VQATask, hops: int = 2, seed: int = 0):
    config = load_config("sort-of-clevr-san2", [
        f"model.hops={hops}", "model.channels=[6, 6, 6, 6]", "model.hidden_size=12",
        "model.embedding_size=8", "model.attention_size=10"]).model
    torch.manual_seed(seed)
    return task.build_model(config)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vqa-data")


def _train_cli(recipe: str, run: Path, overrides: list[str]) -> dict:
    args = ["train", recipe, "--out", str(run), "--quiet"]
    for o in [*FAST, *overrides]:
        args += ["--set", o]
    assert cli_main(args) == 0
    return json.loads((run / "results.json").read_text())


# ---------------------------------------------------------------------- recipes


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipes_load_and_say_what_they_aim_at(recipe):
    config = load_config(recipe)
    assert config.task == "vqa" and config.info.dataset == "sort-of-clevr"
    assert config.model.hops == RECIPES[recipe]
    assert "relational" in config.info.target
    assert max(len(line) for line in recipe_path(recipe).read_text().splitlines()) <= 100


@pytest.mark.parametrize("override, message", [
    ("data.bucket=true", "bucket: expected false"),
    ("model.channels=[]", "channels: expected at least one CNN layer"),
    ("model.hops=-1", "hops"),
    ("model.block=residual", "block: expected null"),
    ("data.train_size=0", "train_size"),
    ("data.curriculum_kinds=[shapes]", "curriculum_kinds: expected a non-empty list of kinds"),
    ("data.curriculum_epochs=-1", "curriculum_epochs"),
])
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("sort-of-clevr-san2", [override])


def test_a_smaller_or_reseeded_dataset_lives_beside_the_full_one(root, tmp_path, monkeypatch,
                                                                capsys):
    task = tiny_task(root)
    assert task.folder() == root / "sort-of-clevr-seed0-60-12-12"
    assert not (root / "sort-of-clevr").exists()
    # a data root that cannot be written: the variant goes to the user cache, by its name
    cache = tmp_path / "cache"
    monkeypatch.setattr(vqa_task, "user_cache_dir", lambda: cache)
    monkeypatch.setattr(scenes, "user_cache_dir", lambda: cache)
    locked = tmp_path / "locked"
    writable = lambda folder: not str(folder).startswith(str(locked))  # noqa: E731
    monkeypatch.setattr(vqa_task, "folder_writable", writable)
    monkeypatch.setattr(scenes, "folder_writable", writable)
    config = load_config("sort-of-clevr-san2", [*counts_overrides(locked, TINY), "data.seed=3"])
    assert VQATask(config.data, locked).folder() == cache / "sort-of-clevr-seed3-60-12-12"
    assert "cannot be written" in capsys.readouterr().err
    assert not locked.exists()


# ---------------------------------------------------------------------- batches


def test_batches_hold_whole_images_with_all_their_questions(root):
    task = tiny_task(root)
    images, questions = read_sort_of_clevr(task.folder(), "train")  # read again: a reference
    seen = []
    for batch in task.batches("train", batch_size=7, epoch=2, seed=5, shuffle=True):
        ids = batch.images_id.tolist()
        seen += ids
        mine = [q for k in ids for q in questions if q.image_id == k]
        assert len(batch.answers) == len(mine) == 20 * len(ids)
        for b, k in enumerate(ids):
            expected = torch.from_numpy(images[k]).permute(2, 0, 1).float() / 255
            assert torch.equal(batch.images[b], expected)
        for n, q in enumerate(mine):
            words = task.vocab.decode(batch.questions[n, :batch.lengths[n]].tolist())
            assert tuple(words) == q.words
            assert ids[int(batch.image_index[n])] == q.image_id
            assert SORT_OF_CLEVR_ANSWERS[int(batch.answers[n])] == q.answer
            assert KINDS[int(batch.kinds[n])] == q.kind
            box = batch.boxes[n].tolist()
            assert (box == [-1] * 4) if q.target_box is None else box == list(q.target_box)
            assert (batch.questions[n, batch.lengths[n]:] == task.vocab.pad_id).all()
    assert sorted(seen) == list(range(TINY["train"]))  # every image once an epoch
    assert task.num_batches("train", batch_size=7) == math.ceil(TINY["train"] / 7)


def test_batch_order_depends_only_on_seed_and_epoch_and_resumes_at_start(root):
    task, again = tiny_task(root), tiny_task(root)

    def order(t, **kw):
        return [b.images_id.tolist() for b in t.batches("train", batch_size=8, shuffle=True,
                                                        **kw)]

    first = order(task, epoch=1, seed=4)
    assert order(again, epoch=1, seed=4) == first
    assert order(task, epoch=2, seed=4) != first and order(task, epoch=1, seed=5) != first
    assert order(task, epoch=1, seed=4, start=3) == first[3:]
    ranks = [order(task, epoch=1, seed=4, rank=r, world_size=2) for r in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(b) for b in first]
    assert [b.images_id.tolist() for b in task.batches("dev", batch_size=5)] == \
        [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]


def test_curriculum_epochs_ask_only_their_kinds_then_every_kind(root):
    task = tiny_task(root, "data.curriculum_epochs=2", "data.curriculum_kinds=[shape, count]")
    plain = tiny_task(root)
    _, questions = read_sort_of_clevr(task.folder(), "train")
    wanted = {KINDS.index("shape"), KINDS.index("count")}
    for epoch in (0, 1):
        batches = list(task.batches("train", batch_size=7, epoch=epoch, seed=5, shuffle=True))
        reference = list(plain.batches("train", batch_size=7, epoch=epoch, seed=5, shuffle=True))
        assert [b.images_id.tolist() for b in batches] == \
            [b.images_id.tolist() for b in reference]  # the same images, the same batches
        for b, full in zip(batches, reference):
            keep = torch.tensor([int(k) in wanted for k in full.kinds])
            assert torch.equal(b.answers, full.answers[keep])
            assert torch.equal(b.questions, full.questions[keep][:, :b.questions.shape[1]])
            assert torch.equal(b.image_index, full.image_index[keep])
            assert set(b.kinds.tolist()) <= wanted
        assert sum(len(b.answers) for b in batches) == \
            sum(q.kind in ("shape", "count") for q in questions)
    later = next(iter(task.batches("train", batch_size=7, epoch=2, seed=5, shuffle=True)))
    assert len(later.answers) == 20 * len(later.images_id)
    evaluated = next(iter(task.batches("dev", batch_size=3)))  # evaluation: every kind
    assert len(evaluated.answers) == 60


def test_a_batch_without_questions_has_zero_loss_not_nan(root):
    task = tiny_task(root, "data.curriculum_epochs=1", "data.curriculum_kinds=[shape]")
    model = tiny_model(task).train()
    enc = task.encoded("train")
    empty = enc.batch([0], frozenset())
    assert len(empty.answers) == 0
    out = task.step(model, empty)
    assert float(out.loss.detach()) == 0.0
    out.loss.backward()  # a zero gradient, not NaN
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------------- loss and metrics


def _cells(h: int, w: int, height: int, width: int) -> list[set]:
    """Each grid cell's pixels: the image cut evenly into h x w rectangles."""
    ys = [i * height // h for i in range(h + 1)]
    xs = [j * width // w for j in range(w + 1)]
    return [{(x, y) for x in range(xs[j], xs[j + 1]) for y in range(ys[i], ys[i + 1])}
            for i in range(h) for j in range(w)]


def _reference(task: VQATask, model, split: str) -> dict:
    """Every metric from each question run alone through the model, in float64 sums."""
    images, questions = task.raw(split)
    H, W = images[0].shape[:2]
    sums = Counter()
    cells = None
    model.eval()
    with torch.no_grad():
        for q in questions:
            image = torch.from_numpy(images[q.image_id]).permute(2, 0, 1).float()[None] / 255
            ids = torch.tensor([task.vocab.encode(q.words)])
            logits, attention = model(image, torch.zeros(1, dtype=torch.long), ids,
                                      torch.tensor([len(q.words)]))
            z = logits[0].double().tolist()
            top = max(z)
            log_norm = top + math.log(sum(math.exp(v - top) for v in z))
            gold = SORT_OF_CLEVR_ANSWERS.index(q.answer)
            right = max(range(len(z)), key=z.__getitem__) == gold
            sums["loss"] += log_norm - z[gold]
            sums["n"] += 1
            sums["right"] += right
            sums[f"n_{q.kind}"] += 1
            sums[f"right_{q.kind}"] += right
            group = "rel" if q.kind in RELATIONAL else "nonrel"
            sums[f"n_{group}"] += 1
            sums[f"right_{group}"] += right
            if attention.shape[1] and q.target_box is not None:
                if cells is None:
                    S = attention.shape[2]
                    h, w = model.image_encoder.grid(H, W)
                    assert h * w == S
                    cells = _cells(h, w, H, W)
                x0, y0, x1, y1 = q.target_box
                box = {(x, y) for x in range(x0, x1) for y in range(y0, y1)}
                last = attention[0, -1].tolist()
                peak = max(range(len(last)), key=last.__getitem__)
                sums["located"] += 1
                sums["hits"] += bool(cells[peak] & box)
                sums["chance"] += sum(bool(c & box) for c in cells) / len(cells)
    out = {"loss": sums["loss"] / sums["n"], "accuracy": 100 * sums["right"] / sums["n"],
           "relational": 100 * sums["right_rel"] / sums["n_rel"],
           "non_relational": 100 * sums["right_nonrel"] / sums["n_nonrel"]}
    out.update({f"acc_{k}": 100 * sums[f"right_{k}"] / sums[f"n_{k}"] for k in KINDS
                if sums[f"n_{k}"]})
    if sums["located"]:
        out["localisation"] = 100 * sums["hits"] / sums["located"]
        out["localisation_chance"] = 100 * sums["chance"] / sums["located"]
    return out


@pytest.mark.parametrize("hops", [2, 0])
def test_loss_and_metrics_match_a_per_question_reference(root, hops):
    task = tiny_task(root)
    model = tiny_model(task, hops=hops)
    # a few steps, so that the answers are not all one
    opt = torch.optim.Adam(model.parameters(), 0.02)
    for batch in task.batches("train", batch_size=30, shuffle=True):
        opt.zero_grad()
        task.step(model, batch).loss.backward()
        opt.step()
    got = task.evaluate(model, "dev", batch_size=5)
    want = _reference(task, model, "dev")
    assert sorted(got) == sorted(want)
    assert ("localisation" in got) == (hops > 0)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert 0 < got["accuracy"] < 100
    if hops:
        assert 0 < got["localisation_chance"] < 50  # a box touches a few of 25 cells


def test_the_training_loss_is_the_mean_over_the_batchs_questions(root):
    task = tiny_task(root)
    model = tiny_model(task).eval()
    batch = next(iter(task.batches("dev", batch_size=3)))
    out = task.step(model, batch)
    with torch.no_grad():
        logits, _ = model(batch.images, batch.image_index, batch.questions, batch.lengths)
    logp = torch.log_softmax(logits.double(), -1)
    want = -sum(float(logp[n, int(a)]) for n, a in enumerate(batch.answers)) / 60
    assert out.size == 60 and float(out.loss.detach()) == pytest.approx(want, rel=1e-6)
    assert float(out.stats["loss"]) == pytest.approx(60 * want, rel=1e-6)


def test_baselines_answer_each_kinds_most_frequent_training_answer(root):
    task = tiny_task(root)
    train, test = task.raw("train")[1], task.raw("test")[1]
    got = task.baselines()
    right = Counter()
    for kind in KINDS:
        answers = Counter(q.answer for q in train if q.kind == kind)
        best = max(answers.values())
        majority = next(a for a in SORT_OF_CLEVR_ANSWERS if answers[a] == best)
        of_kind = [q for q in test if q.kind == kind]
        right[kind] = sum(q.answer == majority for q in of_kind)
        assert got[f"acc_{kind}"] == pytest.approx(100 * right[kind] / len(of_kind))
    assert got["accuracy"] == pytest.approx(100 * sum(right.values()) / len(test))
    rel = [q for q in test if q.relational]
    assert got["relational"] == pytest.approx(
        100 * sum(right[k] for k in RELATIONAL) / len(rel))
    assert "loss" not in got and "localisation" not in got


def test_questions_are_read_as_the_generator_writes_them():
    assert tokenize("What is the shape of the RED object?") == \
        "what is the shape of the red object ?".split()
    assert tokenize("  how many objects have the same shape as the red object ? ") == \
        "how many objects have the same shape as the red object ?".split()


# ---------------------------------------------------------------------- smoke and predict

SMOKE = {"train": 1500, "dev": 40, "test": 100}
SMOKE_FOLDER = "sort-of-clevr-seed0-1500-40-100"
SMOKE_MODEL = ["model.channels=[16, 16, 16, 16]", "model.hidden_size=32",
               "model.attention_size=32", "model.embedding_size=16", "data.batch_size=16",
               "optimizer.lr=0.004", "schedule.warmup_steps=0", "trainer.max_epochs=8"]


@pytest.fixture(scope="module")
def smoke_runs(root, tmp_path_factory) -> dict[str, tuple[Path, dict, float]]:
    """Each recipe trained on a small generated set by ``memnets train``, timed."""
    out = tmp_path_factory.mktemp("vqa-runs")
    runs = {}
    for recipe in RECIPES:
        start = time.perf_counter()
        res = _train_cli(recipe, out / recipe, [*counts_overrides(root, SMOKE), *SMOKE_MODEL])
        runs[recipe] = (out / recipe, res, time.perf_counter() - start)
    return runs


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_smoke_each_recipe_beats_the_baselines_within_a_minute(smoke_runs, recipe):
    run, res, seconds = smoke_runs[recipe]
    test, base = res["test"], res["baselines"]
    # the per-kind majority answers score what reading the question alone can; a
    # minute of training reads the image too (the shapes present, where they are)
    assert test["accuracy"] > base["accuracy"] + 3, (test, base)
    assert ("localisation" in test) == (RECIPES[recipe] > 0)


def _predict(capsys, run: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(["predict", str(run), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_answers_a_test_image_beside_the_truth(smoke_runs, root, capsys):
    run = smoke_runs["sort-of-clevr-san2"][0]
    code, out, _ = _predict(capsys, run, "--test-index", "3")
    assert code == 0
    lines = out.strip().splitlines()
    _, questions = read_sort_of_clevr(root / SMOKE_FOLDER, "test")
    mine = [q for q in questions if q.image_id == 3]
    rows = lines[2:]
    assert len(rows) == 20
    for row, q in zip(rows, mine):
        assert row.startswith(" ".join(q.words))
        assert row.split()[len(q.words) + 2] == q.answer  # question, answer, p, truth
    wrong = sum("<- wrong" in row for row in rows)
    assert lines[0] == f"test image 3: {20 - wrong} of 20 answered right"
    code, out, _ = _predict(capsys, run, "--test-index", "3", "--json")
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["true_answer"] for r in results] == [q.answer for q in mine]
    assert all(len(r["attention"]) == 2 and len(r["attention"][0]) == 5 for r in results)
    assert all(abs(sum(map(sum, r["attention"][1])) - 1) < 1e-5 for r in results)


def test_predict_reads_an_image_file_and_draws_each_hop(smoke_runs, root, tmp_path, capsys):
    run = smoke_runs["sort-of-clevr-san2"][0]
    images, questions = read_sort_of_clevr(root / SMOKE_FOLDER, "test")
    path = write_png(tmp_path / "scene.png", images[3])
    q = next(q for q in questions if q.image_id == 3 and q.kind == "shape")
    asked = " ".join(q.words)
    code, out, _ = _predict(capsys, run, str(path), "--question", asked, "--top", "2")
    assert code == 0
    first, answer = out.strip().splitlines()
    assert first == f"{path}: {asked}"
    assert re.match(r"answer: (\w+)  \((\w+) \d\.\d{3}, (\w+) \d\.\d{3}\)$", answer)
    # the same answer as for the test image itself (the file holds the same pixels)
    _, table, _ = _predict(capsys, run, "--test-index", "3", "--question", asked, "--json")
    assert answer.split()[1] == json.loads(table.splitlines()[-1])["answer"]
    png = tmp_path / "hops.png"
    code, out, _ = _predict(capsys, run, str(path), "--question", asked, "--png", str(png))
    assert code == 0 and out.strip().endswith(f"attention map: {png}")
    assert png.read_bytes()[:4] == b"\x89PNG"
    png2 = tmp_path / "test.png"
    code, out, _ = _predict(capsys, run, "--test-index", "3", "--question-index", "0",
                            "--png", str(png2))
    assert code == 0 and png2.read_bytes()[:4] == b"\x89PNG"


def test_predict_converts_other_sizes_and_modes_with_a_note(smoke_runs, tmp_path, capsys):
    from PIL import Image

    run = smoke_runs["sort-of-clevr-san2"][0]
    rgba = np.zeros((100, 80, 4), dtype=np.uint8)
    rgba[10:30, 10:30] = (255, 0, 0, 255)
    path = tmp_path / "big.png"
    Image.fromarray(rgba, "RGBA").save(path)
    code, out, _ = _predict(capsys, run, str(path), "--question",
                            "is the red object on the left ?")
    assert code == 0
    assert "note: converted RGBA to RGB" in out and "note: resized 80x100 to 75x75" in out


@pytest.mark.parametrize("args, message", [
    (["--question", "what is the colour of the pink object ?"],
     "unknown words in the question .*: colour, pink \\(the model knows: "),
    ([], "expected --question"),
    (["--question", "is the red object on the left ?", "--question",
      "is the red object on the top ?", "--png", "x.png"], "--png: expected a single"),
    (["--question-index", "2", "--question", "is the red object on the left ?"],
     "--question-index and --split go with --test-index"),
])
def test_predict_refuses_bad_input_with_exit_2(smoke_runs, root, tmp_path, capsys, args,
                                               message):
    run = smoke_runs["sort-of-clevr-san2"][0]
    images, _ = read_sort_of_clevr(root / SMOKE_FOLDER, "dev")
    path = write_png(tmp_path / "scene.png", images[0])
    code, _, err = _predict(capsys, run, str(path), *args)
    assert code == 2 and re.search(message, err), err


def test_predict_names_a_corrupt_image_and_refuses_bad_indices(smoke_runs, tmp_path, capsys):
    run = smoke_runs["sort-of-clevr-san2"][0]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, _, err = _predict(capsys, run, str(bad), "--question", "is the red object on the top ?")
    assert code == 1 and str(bad) in err and "expected an image file" in err
    code, _, err = _predict(capsys, run, "--test-index", "100")
    assert code == 2 and "--test-index: expected 0..99" in err
    base = smoke_runs["sort-of-clevr-baseline"][0]
    code, _, err = _predict(capsys, base, "--test-index", "0", "--question-index", "1",
                            "--png", str(tmp_path / "none.png"))
    assert code == 2 and "no attention to draw" in err
