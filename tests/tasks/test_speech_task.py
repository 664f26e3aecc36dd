"""The speech task end to end: a corpus of tones written here trains through a
manifest (no shipped data needed), bad inputs are clear errors or counted skips,
never an infinite loss, and on the real yesno corpus `memnets train yesno-ctc`
learns in under a minute and `memnets predict` transcribes with --png and --json."""

from __future__ import annotations

import json
import math
import random
import struct
import wave
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA

from memnets.cli import main as cli_main
from memnets.data.audio import read_audio
from memnets.data.speech import yesno_corpus
from memnets.errors import ConfigError, DataError
from memnets.metrics.asr import wer
from memnets.tasks import get_task
from memnets.tasks.recipes import load_config
from memnets.train import load_run, train

torch.set_num_threads(1)
RECIPES = ("yesno-ctc", "fsdd-ctc", "fsdd-connected-ctc", "an4-ctc")
TONES = {"hi": 1200.0, "lo": 400.0}  # a "word" is a tone of its own pitch
RATE = 8000


def write_wav(path: Path, samples, *, rate=RATE, channels=1, width=2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 2 ** (8 * width - 1) - 1
    ints = [int(max(-1.0, min(1.0, s)) * scale) for s in samples]
    if width == 3:
        raw = b"".join((v & 0xFFFFFF).to_bytes(3, "little") for v in ints)
    else:
        raw = struct.pack(f"<{len(ints)}h", *ints)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def tone_utterance(rng: random.Random, words: list[str]) -> list[float]:
    out = [rng.gauss(0, 0.003) for _ in range(int(rng.uniform(0.05, 0.15) * RATE))]
    for w in words:
        n = int(0.15 * RATE)
        out += [0.5 * math.sin(2 * math.pi * TONES[w] * t / RATE) for t in range(n)]
        out += [rng.gauss(0, 0.003) for _ in range(int(rng.uniform(0.05, 0.15) * RATE))]
    return out


def write_tone_corpus(root: Path, sizes=(48, 8, 8), seed=0) -> dict[str, Path]:
    """Sequences of 1-4 tone words (repeats included) as wav files and manifests."""
    rng = random.Random(seed)
    manifests = {}
    for split, n in zip(("train", "dev", "test"), sizes):
        lines = []
        for k in range(n):
            words = [rng.choice(sorted(TONES)) for _ in range(rng.randint(1, 4))]
            rel = f"wav/{split}-{k}.wav"
            write_wav(root / rel, tone_utterance(rng, words))
            lines.append(json.dumps({"audio": rel, "text": " ".join(words)}))
        manifests[split] = root / f"{split}.json"
        manifests[split].write_text("\n".join(lines) + "\n")
    return manifests


def tone_recipe(root: Path, manifests: dict[str, Path], **model) -> Path:
    recipe = {
        "task": "speech",
        "data": {"corpus": "manifest", "dir": str(root),
                 "train_manifest": manifests["train"].name,
                 "dev_manifest": manifests["dev"].name,
                 "test_manifest": manifests["test"].name,
                 "tokens": "word", "sample_rate": RATE, "n_mels": 16, "batch_size": 4},
        "model": {"cell": "gru", "hidden_size": 24, "num_layers": 1, "subsampling": 2,
                  "conv_channels": 4, **model},
        "optimizer": {"name": "adam", "lr": 1.0e-2, "grad_clip": 5.0},
        "trainer": {"max_epochs": 20, "progress": False, "log_every": 12, "threads": 1,
                    "tensorboard": False},
    }
    path = root / "tones.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def test_recipes_load_and_say_what_they_aim_at():
    for name in RECIPES:
        config = load_config(name)
        assert config.task == "speech" and config.info.target
        text = (Path(__file__).resolve().parents[2] / "src" / "memnets" / "recipes"
                / f"{name}.yaml").read_text()
        assert max(len(line) for line in text.splitlines()) <= 100
    with pytest.raises(ConfigError, match="train_manifest: expected a JSON-lines file"):
        load_config("yesno-ctc", ["data.corpus=manifest"])
    with pytest.raises(ConfigError, match="dev_manifest: expected null with corpus yesno"):
        load_config("yesno-ctc", ["data.dev_manifest=x.json"])
    with pytest.raises(ConfigError, match="n_mfcc <= n_mels"):
        load_config("yesno-ctc", ["data.features=mfcc", "data.n_mfcc=40"])


def test_a_manifest_corpus_of_tones_trains_and_predicts(tmp_path, capsys):
    manifests = write_tone_corpus(tmp_path / "data")
    recipe = tone_recipe(tmp_path / "data", manifests, decoder="beam", beam_size=4,
                         lexicon=True, lm_order=2)
    res = train(load_config(str(recipe)), tmp_path / "run", quiet=True)
    assert res["test"]["wer"] < 10.0, res["test"]
    assert res["test"]["too_short"] == 0 and math.isfinite(res["test"]["loss"])
    assert res["baselines"]["wer"] > 40  # the most frequent transcript
    test = [json.loads(line) for line in manifests["test"].read_text().splitlines()]
    files = [str(tmp_path / "data" / t["audio"]) for t in test]
    capsys.readouterr()
    assert cli_main(["predict", str(tmp_path / "run"), *files[:4], "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == files[:4]
    assert wer([t["text"] for t in test[:4]], [r["transcript"] for r in rows]) < 0.25
    assert all(r["seconds"] > 0 and r["frames"] > 0 for r in rows)
    png = tmp_path / "post.png"
    assert cli_main(["predict", str(tmp_path / "run"), files[0], "--beam", "2",
                     "--png", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"posteriorgram: {png}" and png.read_bytes()[:4] == b"\x89PNG"
    assert cli_main(["predict", str(tmp_path / "run"), files[0], files[1], "--png",
                     str(png)]) == 2  # one picture, one input


def test_corpus_normalisation_uses_the_training_frames(tmp_path):
    manifests = write_tone_corpus(tmp_path / "data", sizes=(6, 2, 2))
    config = load_config(str(tone_recipe(tmp_path / "data", manifests)),
                         ["data.normalize=corpus"])
    cls = get_task("speech")
    task = cls(config.data, tmp_path / "data")
    task.setup()
    raw = torch.cat([task.raw_features(u) for u in task.utterances("train")]).double()
    mean, std = task.norm
    torch.testing.assert_close(mean.double(), raw.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std.double(), raw.std(0, unbiased=False), rtol=1e-4, atol=1e-4)
    restored = cls(config.data, tmp_path / "data")
    restored.load_state_dict(json.loads(json.dumps(task.state_dict())))
    u = task.utterances("dev")[0]
    torch.testing.assert_close(restored.features_of(u), task.features_of(u))
    # computed once each (6 in setup, read again above), and the dev utterance
    assert (task.cache.misses, task.cache.hits) == (7, 6) and restored.cache.misses == 1
    bad = task.state_dict()
    bad["norm"] = {"mean": [0.0] * 3, "std": [1.0] * 3}
    with pytest.raises(DataError, match="mean and std of 16 features"):
        cls(config.data, tmp_path / "data").load_state_dict(bad)


def test_spec_augment_draws_per_epoch_and_leaves_evaluation_alone(tmp_path):
    manifests = write_tone_corpus(tmp_path / "data", sizes=(4, 2, 2))
    config = load_config(str(tone_recipe(tmp_path / "data", manifests)),
                         ["data.spec_augment=true", "data.freq_mask_width=4"])
    task = get_task("speech")(config.data, tmp_path / "data")
    task.setup()
    task.build_model(config.model)

    def first(epoch, shuffle=True):
        return next(iter(task.batches("train", batch_size=4, epoch=epoch, seed=0,
                                      shuffle=shuffle))).features
    a, b, c = first(0), first(0), first(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = next(iter(task.batches("train", batch_size=4, shuffle=False))).features
    ds = task.dataset("train")
    assert torch.equal(plain[0, : ds.feats[0].shape[0]], ds.feats[0])  # no masks


def test_speed_perturbation_plays_utterances_faster_or_slower(tmp_path):
    manifests = write_tone_corpus(tmp_path / "data", sizes=(6, 2, 2))
    config = load_config(str(tone_recipe(tmp_path / "data", manifests)),
                         ["data.speed_perturb=[0.5, 1.0, 2.0]"])
    task = get_task("speech")(config.data, tmp_path / "data")
    task.setup()
    task.build_model(config.model)
    u = task.utterances("train")[0]
    samples = len(read_audio(u.audio)[0])
    for f in (0.5, 2.0):  # the samples read at f times the rate: T / f samples
        assert task.speed_features(u, f).shape[0] == task.spec.frames(math.ceil(samples / f))
    # a 1200 Hz tone played twice as fast peaks two mel filters' worth higher
    slow, fast = task.speed_features(u, 1.0), task.speed_features(u, 2.0)
    assert int(fast.max(0).values.argmax()) > int(slow.max(0).values.argmax())
    ds = task.dataset("train")
    seen = set()
    for epoch in range(8):
        ds.round = (0, epoch)
        seen |= {ds[i][0].shape[0] for i in range(len(ds))}
        assert {ds[i][0].shape[0] for i in range(len(ds))} == \
            {ds[i][0].shape[0] for i in range(len(ds))}  # drawn from (seed, epoch, index)
    lengths = {x.shape[0] for x in ds.feats}
    assert lengths < seen  # other lengths appeared
    ds.round = None
    assert [ds[i][0].shape[0] for i in range(len(ds))] == [x.shape[0] for x in ds.feats]
    ds.need = [10**6] * len(ds)  # no variant can be aligned: the plain features stay
    ds.round = (0, 3)
    assert [ds[i][0].shape[0] for i in range(len(ds))] == [x.shape[0] for x in ds.feats]
    with pytest.raises(ConfigError, match=r"speed_perturb: expected a number \[0.5, 2\]"):
        load_config("yesno-ctc", ["data.speed_perturb=[3.0]"])


def test_bad_utterances_are_counted_skips_or_clear_errors(tmp_path, capsys):
    root = tmp_path / "data"
    manifests = write_tone_corpus(root, sizes=(8, 3, 2))
    rng = random.Random(1)
    # a stereo 24-bit training file reads (mixed down); a 20 ms file cannot hold 4 words
    stereo = [v for s in tone_utterance(rng, ["hi"]) for v in (s, s)]
    write_wav(root / "wav" / "stereo.wav", stereo, channels=2, width=3)
    write_wav(root / "wav" / "short.wav", [0.1] * 160)
    with open(manifests["train"], "a") as f:
        f.write(json.dumps({"audio": "wav/stereo.wav", "text": "hi"}) + "\n")
        f.write(json.dumps({"audio": "wav/short.wav", "text": "hi lo hi lo"}) + "\n")
    with open(manifests["dev"], "a") as f:  # too short, and a word never trained on
        f.write(json.dumps({"audio": "wav/short.wav", "text": "lo hi lo hi"}) + "\n")
        f.write(json.dumps({"audio": "wav/dev-0.wav", "text": "hi hum"}) + "\n")
    config = load_config(str(tone_recipe(root, manifests)), ["trainer.max_epochs=1"])
    res = train(config, tmp_path / "run", quiet=True)
    out = capsys.readouterr().out
    assert "1 of 10 train utterances have fewer frames after subsampling by 2 than their " \
           "transcripts need under CTC" in out and "left out of training: short" in out
    assert "1 of 5 dev transcripts hold symbols outside the token set (e.g. 'hum'" in out
    dev = res["dev"]
    assert (dev["too_short"], dev["unscorable"]) == (1, 1) and math.isfinite(dev["loss"])
    # broken audio: the manifest's file and line, exit status 1
    (root / "wav" / "text.wav").write_text("not audio at all")
    write_wav(root / "wav" / "empty.wav", [])
    for name, match in (("text.wav", r"train\.json:9: .*text\.wav: expected a"),
                        ("empty.wav", r"train\.json:9: .*empty\.wav: expected audio samples")):
        lines = manifests["train"].read_text().splitlines()[:8]
        lines.append(json.dumps({"audio": f"wav/{name}", "text": "hi"}))
        manifests["train"].write_text("\n".join(lines) + "\n")
        capsys.readouterr()
        assert cli_main(["train", str(tmp_path / "data" / "tones.yaml"), "--out",
                         str(tmp_path / f"run-{name}"), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert __import__("re").search(match, err), err


def test_predict_refuses_missing_and_broken_files(tmp_path, capsys):
    manifests = write_tone_corpus(tmp_path / "data", sizes=(4, 2, 2))
    config = load_config(str(tone_recipe(tmp_path / "data", manifests)),
                         ["trainer.max_epochs=1", "data.normalize=corpus"])
    train(config, tmp_path / "run", quiet=True)
    _, task, model = load_run(tmp_path / "run")
    assert task.norm is not None and task.itos == ["<blank>", "hi", "lo"]
    capsys.readouterr()
    assert cli_main(["predict", str(tmp_path / "run"), str(tmp_path / "nope.wav")]) == 2
    assert "expected a path to an audio file" in capsys.readouterr().err
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00")
    assert cli_main(["predict", str(tmp_path / "run"), str(tmp_path / "junk.wav")]) == 1
    assert "junk.wav: expected a" in capsys.readouterr().err
    assert cli_main(["predict", str(tmp_path / "run"), str(tmp_path / "junk.wav"), "--beam",
                     "0"]) == 2


# ---------------------------------------------------------------------- the real corpus

needs_yesno = pytest.mark.skipif(not (SHARED_DATA / "yesno").is_dir(),
                                 reason=f"the yesno corpus is not under {SHARED_DATA}")


@needs_yesno
def test_smoke_yesno_trains_in_under_a_minute_and_transcribes(tmp_path, capsys):
    code = cli_main(["train", "yesno-ctc", "--out", str(tmp_path / "run"), "--quiet",
                     "--set", f"data.dir={SHARED_DATA}", "--set", "trainer.threads=1",
                     "--set", "trainer.max_epochs=25", "--set", "trainer.tensorboard=false"])
    assert code == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test"]["wer"] < 10.0, results["test"]
    test = yesno_corpus(SHARED_DATA / "yesno")["test"][:3]
    png = tmp_path / "yesno.png"
    capsys.readouterr()
    assert cli_main(["predict", str(tmp_path / "run"), str(test[0].audio), "--png",
                     str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"posteriorgram: {png}" and png.stat().st_size > 10_000
    assert cli_main(["predict", str(tmp_path / "run"), *(str(u.audio) for u in test),
                     "--json", "--beam", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert wer([u.text for u in test], [r["transcript"] for r in rows]) < 0.1
    assert all(r["decoder"] == "beam 4" for r in rows)


def test_sortagrad_orders_only_the_first_epoch_by_length(tmp_path):
    manifests = write_tone_corpus(tmp_path / "data", sizes=(24, 2, 2))
    config = load_config(str(tone_recipe(tmp_path / "data", manifests)),
                         ["data.sortagrad=true", "data.bucket=true"])
    task = get_task("speech")(config.data, tmp_path / "data")
    task.setup()
    task.build_model(config.model)

    def longest(epoch):
        return [int(b.lengths.max()) for b in task.batches("train", batch_size=4, epoch=epoch,
                                                           seed=0, shuffle=True)]
    first = longest(0)
    assert first == sorted(first) and len(first) == 6
    assert any(longest(e) != sorted(longest(e)) for e in (1, 2, 3))
    with pytest.raises(ConfigError, match="sortagrad: expected bucket: true"):
        load_config("yesno-ctc", ["data.sortagrad=true"])
