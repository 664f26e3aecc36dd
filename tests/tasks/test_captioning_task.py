"""The captioning task end to end, on data it generates into a temporary folder: each
shipped recipe, shrunk, trains and beats chance in under a minute; the loss is the
token cross-entropy plus the doubly stochastic penalty of a per-example float64
loop; evaluation scores its own decoded captions (exact match and localisation
recomputed here, BLEU by sacreBLEU directly, localisation with pixel masks);
`memnets predict` captions image files (another size resized and another mode
converted, with notes), stored split images with their gold caption, and draws the
attention of every word over the image; broken and missing files, wrong options
and attention-free models are refused with one clear line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from memnets.cli import main as cli_main
from memnets.config import ConfigError
from memnets.data.images import write_png
from memnets.figures import attention_over_image
from memnets.tasks.captioning import BOS, EOS, CaptioningTask
from memnets.tasks.recipes import load_config
from memnets.train import load_run, train

pytest.importorskip("sacrebleu")

RECIPES = ("shapes-caption-attention", "shapes-caption-noattn", "digits-caption-attention",
           "digits-caption-noattn")
FAST = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.log_every=20",
        "trainer.early_stopping=null", "trainer.threads=1", "schedule.name=constant"]
SHAPES = ["data.train_size=500", "data.dev_size=50", "data.test_size=50", "data.batch_size=32",
          "model.hidden_size=64", "model.embedding_size=32", "model.channels=[16,16,16,16]",
          "trainer.max_epochs=4"]
DIGITS = ["data.train_size=3000", "data.dev_size=50", "data.test_size=100",
          "data.batch_size=16", "model.hidden_size=64", "model.channels=[32,32,32]",
          "trainer.max_epochs=3"]


def smoke(root: Path, run: Path, recipe: str, extra: list[str]) -> tuple[dict, float]:
    config = load_config(recipe, [f"data.dir={root}", *extra, *FAST])
    start = time.perf_counter()
    res = train(config, run, quiet=True)
    return res, time.perf_counter() - start


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def shapes_run(root, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "shapes-attention"
    res, seconds = smoke(root, run, "shapes-caption-attention", SHAPES)
    return run, res, seconds


def test_recipes_load_and_say_what_they_aim_at():
    folder = Path(__file__).resolve().parents[2] / "src" / "memnets" / "recipes"
    for name in RECIPES:
        config = load_config(name)
        assert config.task == "captioning" and config.info.target
        attends = "noattn" not in name
        assert (config.model.attention == "soft") == attends
        assert config.data.dataset == name.split("-")[0]
        text = (folder / f"{name}.yaml").read_text()
        assert max(len(line) for line in text.splitlines()) <= 100
    assert load_config("shapes-caption-attention").model.doubly_stochastic == 1.0
    with pytest.raises(ConfigError, match="test_set: expected test with dataset digits"):
        load_config("digits-caption-attention", ["data.test_set=test_compositional"])
    with pytest.raises(ConfigError, match="block: expected null"):
        load_config("shapes-caption-attention", ["model.block=residual"])
    with pytest.raises(ConfigError, match="channels"):
        load_config("shapes-caption-attention", ["model.channels=[]"])


def test_smoke_shapes_attention_beats_chance_in_under_a_minute(shapes_run):
    run, res, seconds = shapes_run
    test, chance = res["test"], res["baselines"]
    assert test["bleu"] > chance["bleu"] + 15, (test, chance)
    assert test["localisation"] > test["localisation_chance"] + 5, test
    assert {"compositional_bleu", "compositional_exact_match",
            "compositional_localisation"} <= set(test)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    dev = [r["bleu"] for r in rows if r.get("split") == "dev"]
    assert dev[-1] > dev[0]


def test_smoke_shapes_noattn_beats_chance_and_refuses_png(root, tmp_path, capsys):
    res, seconds = smoke(root, tmp_path / "run", "shapes-caption-noattn", SHAPES)
    assert res["test"]["bleu"] > res["baselines"]["bleu"] + 10, res
    assert "localisation" not in res["test"] and "penalty" not in res["test"]
    capsys.readouterr()
    assert cli_main(["predict", str(tmp_path / "run"), "--test-index", "0", "--png",
                     str(tmp_path / "x.png")]) == 2
    assert "no attention" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def digit_lengths_right(run: Path) -> tuple[float, float]:
    """The share of test strings decoded with the right number of digits, and the
    share that the most frequent training length would get."""
    _, task, model = load_run(run, check_data=False)
    decoded = task.decode_split(model, "test", batch_size=64)
    gold = [len(e.words) for e in task.examples("test")]
    right = np.mean([len(d["words"]) == g for d, g in zip(decoded, gold)])
    train = [len(e.words) for e in task.examples("train")]
    common = max(set(train), key=train.count)
    return float(right), float(np.mean([g == common for g in gold]))


@pytest.mark.parametrize("recipe", ["digits-caption-attention", "digits-caption-noattn"])
def test_smoke_digit_strings_beat_chance_in_under_a_minute(root, tmp_path, recipe):
    pytest.importorskip("sklearn")
    res, seconds = smoke(root, tmp_path / "run", recipe, DIGITS)
    right, chance = digit_lengths_right(tmp_path / "run")
    assert right > chance + 0.2, (right, chance, res["test"])


# ---------------------------------------------------------------------- the loss


def test_loss_is_cross_entropy_plus_the_penalty_of_a_per_example_loop(shapes_run):
    run, _, _ = shapes_run
    _, task, model = load_run(run, check_data=False)
    lam = task._model_config.doubly_stochastic
    assert lam == 1.0
    batch = next(iter(task.batches("dev", batch_size=6)))
    model.eval()
    with torch.no_grad():
        out = task.step(model, batch)
        logits, attention = model(batch.images, batch.target_in)
    logits, attention = logits.double(), attention.double()
    pad = task.vocab.pad_id
    nll, tokens, penalty = 0.0, 0, 0.0
    for n in range(len(batch.indices)):
        gold = batch.target_out[n]
        steps = int((gold != pad).sum())
        assert bool((gold[steps:] == pad).all()) and int(gold[steps - 1]) == task.vocab[EOS]
        for t in range(steps):
            nll -= float(torch.log_softmax(logits[n, t], -1)[gold[t]])
        tokens += steps
        for i in range(attention.shape[2]):
            penalty += (1.0 - sum(float(attention[n, t, i]) for t in range(steps))) ** 2
    penalty /= len(batch.indices)
    assert out.stats["count"] == tokens
    assert float(out.stats["loss"]) == pytest.approx(nll, rel=1e-5)
    assert float(out.loss) == pytest.approx(nll / tokens + lam * penalty, rel=1e-5)
    assert float(out.stats["penalty"]) == pytest.approx(penalty * len(batch.indices), rel=1e-5)
    # the target in is the target out shifted right behind <s>
    assert bool((batch.target_in[:, 0] == task.vocab[BOS]).all())
    real = (batch.target_out[:, :-1] != pad) & (batch.target_out[:, :-1] != task.vocab[EOS])
    assert torch.equal(batch.target_in[:, 1:][real], batch.target_out[:, :-1][real])


def test_augmentation_moves_training_images_only(shapes_run, monkeypatch):
    run, _, _ = shapes_run
    _, task, model = load_run(run, check_data=False)
    batch = next(iter(task.batches("dev", batch_size=4)))
    seen = []
    original = model.forward

    def spy(images, target_in, **kw):
        seen.append(images.clone())
        return original(images, target_in, **kw)

    monkeypatch.setattr(model, "forward", spy)
    task.config.augment_shift, task.config.augment_rotate = 2.0, 5.0
    model.eval()
    with torch.no_grad():
        task.step(model, batch)
    assert torch.equal(seen[-1], batch.images)  # evaluation: never augmented
    model.train()
    torch.manual_seed(3)
    with torch.no_grad():
        task.step(model, batch)
    moved = seen[-1]
    assert moved.shape == batch.images.shape and not torch.equal(moved, batch.images)
    torch.manual_seed(3)  # the global generator decides: the same seed, the same maps
    with torch.no_grad():
        task.step(model, batch)
    assert torch.equal(seen[-1], moved)
    task.config.augment_shift = task.config.augment_rotate = 0.0
    with torch.no_grad():
        task.step(model, batch)
    assert torch.equal(seen[-1], batch.images)  # not asked for: the images as they are


# ---------------------------------------------------------------------- evaluation


def pixel_mask(box, height, width) -> np.ndarray:
    m = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[y0:y1, x0:x1] = True
    return m


def test_evaluation_scores_its_own_decoded_captions(shapes_run):
    from sacrebleu.metrics import BLEU

    run, res, _ = shapes_run
    _, task, model = load_run(run, check_data=False)
    decoded = task.decode_split(model, "test", batch_size=7)
    examples = task.examples("test")
    assert len(decoded) == len(examples) == 50
    gold = [list(e.words) for e in examples]
    hyps = [d["words"] for d in decoded]
    same = sum(h == g for h, g in zip(hyps, gold))
    assert res["test"]["exact_match"] == pytest.approx(100.0 * same / len(gold))
    bleu = BLEU(tokenize="none", force=True).corpus_score([" ".join(h) for h in hyps],
                                                          [[" ".join(g) for g in gold]])
    assert res["test"]["bleu"] == pytest.approx(bleu.score)
    # localisation: the peak cell of each object word's attention against the object's
    # pixels; chance: the share of cells that touch them
    H, W = task.image_size
    cells = [tuple(c) for c in model.encoder.cell_boxes(H, W).tolist()]
    assert len(cells) == 16 and np.logical_or.reduce(
        [pixel_mask(c, H, W) for c in cells]).all()  # the cells tile the image
    hits = total = 0
    chance = 0.0
    for d, e in zip(decoded, examples):
        att = d["attention"]
        assert att.shape == (len(d["words"]) + d["finished"], 16)
        assert torch.allclose(att.sum(1), torch.ones(len(att)), atol=1e-5)
        for t, k in enumerate(task.name_objects(d["words"], e.objects)):
            if k is None:
                continue
            obj = pixel_mask(e.objects[k].box, H, W)
            total += 1
            hits += bool((pixel_mask(cells[int(att[t].argmax())], H, W) & obj).any())
            chance += np.mean([(pixel_mask(c, H, W) & obj).any() for c in cells])
    assert total > 0
    assert res["test"]["localisation"] == pytest.approx(100.0 * hits / total)
    assert res["test"]["localisation_chance"] == pytest.approx(100.0 * chance / total)
    # the compositional split decodes its own images
    assert res["test"]["compositional_exact_match"] == pytest.approx(
        task.scores(model, "test_compositional", task.decode_split(
            model, "test_compositional", batch_size=50))["exact_match"])


def test_a_batch_decodes_as_each_image_alone(shapes_run):
    run, _, _ = shapes_run
    _, task, model = load_run(run, check_data=False)
    images = task.dataset("dev").images[:5].float() / 255
    together = task.caption(model, images, beam_size=3)
    for k in range(5):
        alone = task.caption(model, images[k:k + 1], beam_size=3)[0]
        assert alone["words"] == together[k]["words"]
        assert alone["score"] == pytest.approx(together[k]["score"], abs=1e-4)
    greedy = task.caption(model, images, beam_size=1)
    assert all(r["finished"] for r in greedy) or all(len(r["words"]) <= task.max_length
                                                      for r in greedy)


# ---------------------------------------------------------------------- predict


def test_predict_captions_files_and_stored_images(shapes_run, tmp_path, capsys):
    from PIL import Image

    run, _, _ = shapes_run
    _, task, model = load_run(run, check_data=False)
    example = task.examples("test")[3]
    expected = " ".join(task.caption(model, torch.from_numpy(example.image).permute(2, 0, 1)
                                     [None].float() / 255)[0]["words"]) or "(empty caption)"
    png = write_png(tmp_path / "scene.png", example.image)
    capsys.readouterr()
    assert cli_main(["predict", str(run), str(png)]) == 0
    assert capsys.readouterr().out.strip() == expected
    # a stored image by index: the same caption, and the gold one
    assert cli_main(["predict", str(run), "--test-index", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == expected and lines[1].startswith(f"gold: {' '.join(example.words)}  (")
    # another size and another mode: read anyway, with a note each
    Image.fromarray(example.image).resize((100, 80)).save(tmp_path / "big.png")
    rgba = np.concatenate([example.image, np.full((64, 64, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    assert cli_main(["predict", str(run), "--json", str(tmp_path / "big.png"),
                     str(tmp_path / "alpha.png")]) == 0
    big, alpha = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert big["notes"] == ["resized 100x80 to 64x64 (width x height)"]
    assert alpha["notes"] == ["converted RGBA to RGB (composited on black)"]
    assert alpha["caption"] == expected  # opaque alpha: the same pixels
    assert cli_main(["predict", str(run), str(tmp_path / "alpha.png")]) == 0
    assert capsys.readouterr().out.splitlines()[1] == \
        "note: converted RGBA to RGB (composited on black)"


def test_predict_draws_the_attention_of_every_word(shapes_run, tmp_path, capsys):
    run, _, _ = shapes_run
    out = tmp_path / "maps.png"
    capsys.readouterr()
    assert cli_main(["predict", str(run), "--test-index", "1", "--split", "dev", "--png",
                     str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert out.read_bytes()[:4] == b"\x89PNG" and result["png"] == str(out)
    att = torch.tensor(result["attention"])
    assert att.shape == (len(result["words"]) + result["finished"], 16)
    assert torch.allclose(att.sum(1), torch.ones(len(att)), atol=1e-5)
    _, task, _ = load_run(run, check_data=False)
    assert result["gold"] == " ".join(task.examples("dev")[1].words)
    assert cli_main(["predict", str(run), "--test-index", "1", "--png", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == \
        f"attention over the image written to {out}"


def test_predict_refuses_bad_input_with_one_line(shapes_run, tmp_path, capsys):
    run, _, _ = shapes_run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    capsys.readouterr()
    assert cli_main(["predict", str(run), str(broken)]) == 1
    err = capsys.readouterr().err
    assert str(broken) in err and "expected an image file" in err
    assert cli_main(["predict", str(run), str(tmp_path / "missing.png")]) == 1
    assert "missing.png" in capsys.readouterr().err
    cases = [(["--test-index", "50"], "expected an index in [0, 50)"),
             (["--test-index", "0", str(broken)], "expected no image files"),
             (["--test-index", "0", "--beam", "0"], "--beam: expected N >= 1"),
             (["--png", str(tmp_path / "x.png"), str(broken), str(broken)],
              "expected a single input")]
    for args, message in cases:
        assert cli_main(["predict", str(run), *args]) == 2
        assert message in capsys.readouterr().err
    assert cli_main(["predict", str(run), "--test-index", "0", "--split", "train"]) == 0


# ---------------------------------------------------------------------- the figure


def test_attention_over_image_draws_one_panel_per_map(tmp_path):
    image = np.zeros((24, 112, 3), dtype=np.uint8)
    image[4:20, 10:26] = 255
    maps = [(w, torch.rand(3, 14).softmax(-1)) for w in ("3", "1", "4", "</s>")]
    out = attention_over_image(image, maps, tmp_path / "a.png", title="3 1 4",
                               boxes=[(10, 4, 26, 20), None, None, None])
    assert out == tmp_path / "a.png" and out.read_bytes()[:4] == b"\x89PNG"
    one = attention_over_image(image, maps[:1], tmp_path / "b.png", boxes=(10, 4, 26, 20))
    assert one.stat().st_size < out.stat().st_size  # fewer panels
    with pytest.raises(ValueError, match="one box"):
        attention_over_image(image, maps, tmp_path / "c.png", boxes=[None])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        attention_over_image(image[..., 0], maps, tmp_path / "c.png")
    with pytest.raises(ValueError, match="at least one"):
        attention_over_image(image, [], tmp_path / "c.png")


def test_task_reads_the_split_it_is_asked_for(root):
    task = CaptioningTask(CaptioningTask.DataConfig(dataset="shapes", train_size=20,
                                                    test_size=5), root)
    task.setup()
    assert task.splits() == ("train", "dev", "test", "test_compositional")
    assert len(task.examples("train")) == 20 and len(task.examples("test")) == 5
    comp = task.examples("test_compositional")
    held = {("red", "square"), ("green", "circle"), ("blue", "triangle")}
    assert all(any((o.colour, o.shape) in held for o in e.objects) for e in comp)
    assert not any((o.colour, o.shape) in held for e in task.examples("train")
                   for o in e.objects)
    assert task.vocab.itos[:4] == ["<pad>", "<unk>", BOS, EOS]
    assert task.image_size == (64, 64) and task.max_length == max(
        len(e.words) for e in task.examples("train")) + 5
