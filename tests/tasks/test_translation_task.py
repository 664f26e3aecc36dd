"""The translation task end to end: a shipped Multi30k recipe learns to translate a
made-up language that reverses the word order (a corpus this test writes in both
Multi30k layouts) in well under a minute, and `memnets predict` prints the
translation, writes the alignment picture and answers in JSON; evaluation scores
match the metrics computed from its own decoded output; missing files are
fetched from a 127.0.0.1 server with their checksums; real Multi30k lines are
read when the shared data is there."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import random
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA

import memnets.tasks.translation as translation
from memnets.cli import main as cli_main
from memnets.config import ConfigError
from memnets.data.parallel import multi30k_file
from memnets.errors import DataError
from memnets.tasks.recipes import load_config
from memnets.tasks.translation import (
    TranslationDataConfig,
    TranslationModelConfig,
    TranslationTask,
    sample_probability,
)
from memnets.train import load_run, train

pytest.importorskip("sacrebleu")

WORDS = ["hund", "katze", "mann", "frau", "ball", "baum", "haus", "auto"]
GLOSS = {"hund": "dog", "katze": "cat", "mann": "man", "frau": "woman", "ball": "ball",
         "baum": "tree", "haus": "house", "auto": "car"}


def _pair(rng: random.Random) -> tuple[str, str]:
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 5))]
    return " ".join(words) + " .", " ".join(GLOSS[w] for w in reversed(words)) + " ."


def write_corpus(root: Path, sizes=None, *, raw=True) -> Path:
    """A 'reversed gloss' corpus in Multi30k's layout under root/multi30k."""
    rng = random.Random(0)
    sizes = sizes or {"train": 600, "val": 40, "test_2016_flickr": 40}
    folder = root / "multi30k"
    for name, n in sizes.items():
        pairs = [_pair(rng) for _ in range(n)]
        for k, lang in enumerate(("de", "en")):
            lines = [p[k] for p in pairs]
            f = folder / multi30k_file("tok", name, lang)
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("".join(line + "\n" for line in lines))
            if raw:  # cased, untokenised
                text = "".join(line[0].upper() + line[1:-2] + ".\n" for line in lines)
                g = folder / multi30k_file("raw", name, lang)
                g.parent.mkdir(parents=True, exist_ok=True)
                g.write_bytes(gzip.compress(text.encode()))
    return root


FAST = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.log_every=10",
        "trainer.early_stopping=null", "trainer.threads=1"]
SMALL = ["model.embedding_size=24", "model.hidden_size=48", "model.dropout=0.0",
         "model.embedding_dropout=0.0", "model.label_smoothing=0.0", "data.batch_size=32",
         "data.beam_size=3", "optimizer.lr=0.01", "schedule.name=constant", "data.min_freq=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = write_corpus(tmp_path_factory.mktemp("data"))
    run = tmp_path_factory.mktemp("runs") / "bahdanau"
    cfg = load_config("multi30k-de-en-bahdanau", [f"data.dir={root}", *SMALL, *FAST,
                                                   "trainer.max_epochs=10"])
    start = time.perf_counter()
    res = train(cfg, run, quiet=True)
    return root, run, res, time.perf_counter() - start


def test_smoke_attention_learns_to_translate_reversed_order_in_under_a_minute(trained):
    _, run, res, seconds = trained
    assert res["test"]["bleu"] > 90.0, res["test"]
    assert res["test"]["sacrebleu"] > 90.0 and res["test"]["chrf"] > 90.0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    dev = [r["bleu"] for r in rows if r.get("split") == "dev"]
    assert dev[-1] > dev[0]


def test_predict_prints_the_translation_and_the_alignment(trained, capsys, tmp_path):
    _, run, _, _ = trained
    capsys.readouterr()
    assert cli_main(["predict", str(run), "Hund Katze Auto ."]) == 0
    assert capsys.readouterr().out.strip() == "car cat dog ."
    png = tmp_path / "align.png"
    assert cli_main(["predict", str(run), "--beam", "2", "--png", str(png), "--json",
                     "mann baum ."]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["translation"] == "tree man ." and out["source_tokens"] == ["mann", "baum", "."]
    assert png.stat().st_size > 1000 and out["heatmap"] == str(png)
    att = torch.tensor(out["attention"])  # target tokens (+ </s>) x source tokens
    assert att.shape == (4, 3) and torch.allclose(att.sum(1), torch.ones(4))
    # the alignment the model learnt: "tree" reads "baum", "man" reads "mann"
    assert att[0].argmax() == 1 and att[1].argmax() == 0
    # several inputs (arguments, a file, stdin), the model loaded once
    inputs = tmp_path / "in.txt"
    inputs.write_text("haus .\n\nfrau ball .\n")
    assert cli_main(["predict", str(run), "auto haus .", "--file", str(inputs)]) == 0
    assert capsys.readouterr().out.split("\n")[:3] == ["house car .", "house .", "ball woman ."]
    assert cli_main(["predict", str(run), "--png", str(png), "a .", "b ."]) == 2
    assert cli_main(["predict", str(run), "drache ."]) == 0
    assert "unknown words (read as <unk>): drache" in capsys.readouterr().out


def test_evaluation_scores_its_own_decoded_output(trained):
    root, run, res, _ = trained
    from memnets.metrics.bleu import tokenized_bleu

    _, task, model = load_run(run, check_data=False)
    hyps = task.decode_split(model, "test", batch_size=7)
    refs = [t for _, t in task.pairs("test")]
    assert tokenized_bleu(hyps, refs).score == pytest.approx(res["test"]["bleu"])
    # a batch decodes as each sentence alone
    sources = [task.tokenize("source", s) for s, _ in task.pairs("test")[:6]]
    together = task.translate(model, sources, beam_size=3)
    for s, r in zip(sources, together):
        assert task.translate(model, [s], beam_size=3)[0]["tokens"] == r["tokens"]


def test_no_attention_recipe_trains_and_refuses_png(tmp_path, capsys):
    root = write_corpus(tmp_path / "data", {"train": 64, "val": 8, "test_2016_flickr": 8})
    cfg = load_config("multi30k-de-en-noattn", [f"data.dir={root}", *SMALL, *FAST,
                                                 "trainer.max_steps=3", "data.beam_size=1"])
    train(cfg, tmp_path / "run", quiet=True)
    capsys.readouterr()
    assert cli_main(["predict", str(tmp_path / "run"), "hund .", "--png",
                     str(tmp_path / "x.png")]) == 2
    assert "no attention" in capsys.readouterr().err


def test_raw_layout_reads_through_subword_units(tmp_path, capsys):
    pytest.importorskip("sentencepiece")
    root = write_corpus(tmp_path / "data", {"train": 300, "val": 10, "test_2016_flickr": 10})
    cfg = load_config("multi30k-de-en-luong", [
        f"data.dir={root}", *SMALL, *FAST, "data.layout=raw", "data.subwords=bpe",
        "data.subword_vocab=40", "trainer.max_steps=4", "data.beam_size=1",
        "model.num_layers=1", "model.decoder_layers=1"])
    res = train(cfg, tmp_path / "run", quiet=True)
    assert set(res["test"]) >= {"bleu", "sacrebleu", "chrf", "loss", "perplexity"}
    state = json.loads((tmp_path / "run" / "task.json").read_text())
    assert state["subwords"]["source"]["sentencepiece"]
    assert any(t.startswith("\u2581") for t in state["source_vocab"]["tokens"])
    capsys.readouterr()
    assert cli_main(["predict", str(tmp_path / "run"), "--json", "Hund Katze."]) == 0
    out = json.loads(capsys.readouterr().out)  # cased text in, pieces through the model
    pieces = out["source_tokens"]
    assert "".join(pieces).replace("\u2581", " ").strip() == "Hund Katze." and len(pieces) > 2
    _, task, _ = load_run(tmp_path / "run", check_data=False)
    assert out["translation"] == task.join(out["tokens"])


def test_files_are_fetched_with_their_checksums_from_a_local_server(tmp_path, monkeypatch):
    served = write_corpus(tmp_path / "served", {"train": 20, "val": 4, "test_2016_flickr": 4})
    folder = served / "multi30k"
    sums = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(translation, "MULTI30K_URL",
                            f"http://127.0.0.1:{httpd.server_address[1]}/" + "{rel}")
        monkeypatch.setattr(translation, "MULTI30K_SHA256", sums)
        task = TranslationTask(TranslationDataConfig(min_freq=1), tmp_path / "empty")
        task.setup()
        assert (tmp_path / "empty" / "multi30k" / "tok" / "train.lc.norm.tok.de").is_file()
        assert len(task.examples("dev")) == 4 and len(task.raw_references("dev")) == 4
        monkeypatch.setattr(translation, "MULTI30K_SHA256", {k: "0" * 64 for k in sums})
        fresh = TranslationTask(TranslationDataConfig(min_freq=1), tmp_path / "other")
        with pytest.raises(DataError, match="checksum"):
            fresh.setup()
        assert not (tmp_path / "other" / "multi30k" / "tok" / "train.lc.norm.tok.de").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
    no_fetch = TranslationTask(TranslationDataConfig(download=False), tmp_path / "none")
    with pytest.raises(DataError, match="train.lc.norm.tok.de"):
        no_fetch.setup()


def test_mismatched_line_counts_are_a_data_error_naming_both_files(tmp_path):
    root = write_corpus(tmp_path, {"train": 10, "val": 3, "test_2016_flickr": 3})
    f = root / "multi30k" / "tok" / "train.lc.norm.tok.en"
    f.write_text("".join(f.read_text().splitlines(keepends=True)[:-1]))
    task = TranslationTask(TranslationDataConfig(download=False), root)
    with pytest.raises(DataError, match=r"10 in .*train\.lc\.norm\.tok\.de and 9 in .*\.en"):
        task.setup()


def test_recipes_resolve_and_bad_settings_are_config_errors():
    for name in ("multi30k-de-en-noattn", "multi30k-de-en-bahdanau", "multi30k-de-en-luong",
                 "multi30k-en-de-luong", "multi30k-en-de-bahdanau"):
        cfg = load_config(name)
        assert cfg.task == "translation" and cfg.info.target
    assert load_config("multi30k-en-de-luong").data.source == "en"
    with pytest.raises(ConfigError, match="subwords"):
        load_config("multi30k-de-en-luong", ["data.layout=raw"])
    with pytest.raises(ConfigError, match="different languages"):
        load_config("multi30k-de-en-luong", ["data.target=de"])
    with pytest.raises(ConfigError, match="score"):
        load_config("multi30k-de-en-noattn", ["model.score=dot"])


def test_scheduled_sampling_schedules_worked_by_hand():
    c = TranslationModelConfig
    assert sample_probability(c(), 100) == 0.0
    assert sample_probability(c(sampling="constant", sampling_k=0.25), 7) == 0.25
    # linear: eps_i = max(0.2, 1 - 0.001 i): i = 300 -> 0.7, i = 5000 -> 0.2
    lin = c(sampling="linear", sampling_k=1.0, sampling_c=0.001, sampling_min=0.2)
    assert sample_probability(lin, 300) == pytest.approx(0.3)
    assert sample_probability(lin, 5000) == pytest.approx(0.8)
    # exponential: eps_i = 0.99^i; inverse sigmoid: eps_i = k / (k + exp(i / k))
    assert sample_probability(c(sampling="exponential", sampling_k=0.99), 100) == \
        pytest.approx(1 - 0.99 ** 100)
    inv = c(sampling="inverse_sigmoid", sampling_k=10.0)
    assert sample_probability(inv, 0) == pytest.approx(1 - 10 / 11)
    assert sample_probability(inv, 50) == pytest.approx(1 - 10 / (10 + 2.718281828 ** 5))


@pytest.mark.skipif(not (SHARED_DATA / "multi30k" / "tok").is_dir(),
                    reason=f"Multi30k not found under {SHARED_DATA} (set MEMNETS_DATA)")
def test_real_multi30k_lines_and_vocabularies():
    task = TranslationTask(TranslationDataConfig(download=False), SHARED_DATA)
    pairs = task.pairs("dev")
    assert len(pairs) == 1014 and pairs[0] == (
        "eine gruppe von männern lädt baumwolle auf einen lastwagen",
        "a group of men are loading cotton onto a truck")
    assert len(task.pairs("test")) == 1000 and len(task.raw_references("test")) == 1000
    task.setup()
    assert task.source_vocab.itos[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert 7000 < len(task.source_vocab) < 9000 and 5000 < len(task.target_vocab) < 7000
    assert len(task.examples("train")) == 29000  # no training pair is over 50 tokens
    src, lengths, tin, tout, idx = task.collate(task.examples("dev")[:3])
    assert tin[:, 0].eq(2).all() and (tout == 3).sum() == 3 and idx.tolist() == [0, 1, 2]
    model = task.build_model(load_config("multi30k-de-en-bahdanau").model)
    assert model.readout_size == 256  # tied embeddings
