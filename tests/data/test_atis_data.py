"""Slot-filling readers (seq and iob layouts), vocabularies, batching, and the
download path against a local HTTP server (never the internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch

from memnets.data import DataError
from memnets.data.atis import (
    JOINTSLU_SHA256,
    SLOTGATED_SHA256,
    SlotVocabs,
    Utterance,
    collate,
    fetch_corpus,
    normalize_word,
    read_iob,
    read_seq,
    read_split,
    split_off,
)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MEMNETS_DATA", REPO.parent / "shared" / "data"))
needs_atis = pytest.mark.skipif(
    not (DATA / "atis_slotgated" / "train" / "seq.in").is_file()
    or not (DATA / "atis_jointslu" / "atis.train.w-intent.iob").is_file(),
    reason=f"ATIS not found under {DATA} (set MEMNETS_DATA)",
)


def _write_seq(folder: Path, words, tags, labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seq.in").write_text("".join(w + "\n" for w in words))
    (folder / "seq.out").write_text("".join(t + "\n" for t in tags))
    if labels is not None:
        (folder / "label").write_text("".join(x + "\n" for x in labels))


def test_read_seq(tmp_path):
    _write_seq(tmp_path / "train", ["fly to paris", "hello"], ["O O B-city", "O"],
               ["book#ask", "greet"])
    data = read_seq(tmp_path / "train")
    assert data == [
        Utterance(("fly", "to", "paris"), ("O", "O", "B-city"), "book#ask"),
        Utterance(("hello",), ("O",), "greet"),
    ]
    assert read_split(tmp_path, "train", "seq") == data
    (tmp_path / "train" / "label").unlink()
    assert read_seq(tmp_path / "train")[0].intent is None


def test_read_seq_errors_name_file_and_line(tmp_path):
    _write_seq(tmp_path / "a", ["fly to paris", "hello there"], ["O O B-city", "O"], ["x", "y"])
    with pytest.raises(ValueError, match=r"a/seq.out:2: expected 2 tags .* got 1"):
        read_seq(tmp_path / "a")
    _write_seq(tmp_path / "b", ["a", "b"], ["O"], ["x", "y"])
    with pytest.raises(ValueError, match=r"b/seq.out: expected 2 lines .* got 1"):
        read_seq(tmp_path / "b")
    _write_seq(tmp_path / "c", ["a", "b"], ["O", "O"], ["x", "two words"])
    with pytest.raises(ValueError, match=r"c/label:2: expected one intent label"):
        read_seq(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="expected a data file at"):
        read_seq(tmp_path / "missing")


def test_read_iob(tmp_path):
    p = tmp_path / "x.iob"
    p.write_text(
        "BOS fly to paris EOS\t O O O B-city book#ask\n"
        "BOS hi EOS\tO O O\n"
    )
    data = read_iob(p)
    assert data[0] == Utterance(("fly", "to", "paris"), ("O", "O", "B-city"), "book#ask")
    assert data[1] == Utterance(("hi",), ("O",), None)  # tags only: trailing O, no intent


def test_read_iob_errors_name_file_and_line(tmp_path):
    p = tmp_path / "x.iob"
    p.write_text("BOS a EOS\tO O x\nBOS a b EOS\tO O x\n")
    with pytest.raises(ValueError, match=r"x.iob:2: expected 4 labels .* got 3"):
        read_iob(p)
    p.write_text("a b\tO O\n")
    with pytest.raises(ValueError, match=r"x.iob:1: expected words between BOS and EOS"):
        read_iob(p)
    p.write_text("BOS a EOS O O x\n")
    with pytest.raises(ValueError, match=r"x.iob:1: expected 'BOS words EOS<TAB>O tags intent'"):
        read_iob(p)


def test_split_off_is_deterministic_and_disjoint():
    data = [Utterance((str(i),), ("O",), None) for i in range(50)]
    a, b = split_off(data, 0.2, seed=3)
    assert len(b) == 10 and len(a) == 40
    assert sorted(a + b, key=lambda u: int(u.words[0])) == data
    assert split_off(data, 0.2, seed=3) == (a, b)
    with pytest.raises(ValueError, match=r"expected a held-out fraction in \(0, 1\)"):
        split_off(data, 1.0)


def test_vocabs_unk_digits_and_unseen_labels():
    train = [
        Utterance(("Fly", "to", "Paris", "at", "838"), ("O", "O", "B-city", "O", "B-time"), "a"),
        Utterance(("fly", "to", "rome", "at", "1110"), ("O", "O", "B-city", "O", "B-time"), "b#c"),
    ]
    v = SlotVocabs.build(train, min_freq=2, digits=True)
    assert v.words.itos == ["<pad>", "<unk>", "at", "fly", "to"]
    assert v.word_ids(["FLY", "paris"]) == [v.words["fly"], v.words.unk_id]
    assert normalize_word("A838", digits=True) == "a000"
    v1 = SlotVocabs.build(train, min_freq=1, digits=True)
    assert v1.word_ids(["9999"]) == v1.word_ids(["1110"])  # one shape, one id
    assert v1.word_ids(["12"]) == [v1.words.unk_id]  # a new shape is unknown
    assert v.tags.itos == ["B-city", "B-time", "O"]
    assert v.intents.itos == ["a", "b#c"]  # a multi-intent label is one class
    assert v.tag_id("B-unseen") == -100 and v.intent_id("unseen") == -100
    assert v.char_ids("Fz") == [v.chars["F"], v.chars.unk_id]
    back = SlotVocabs.from_dict(v.to_dict())
    assert back.words.itos == v.words.itos and back.intents.itos == v.intents.itos
    assert back.digits is True


def test_collate_pads():
    train = [Utterance(("ab", "c"), ("O", "B-x"), "i"), Utterance(("d",), ("B-y",), "j")]
    v = SlotVocabs.build(train)
    b = collate([train[1], train[0], Utterance(("zz",), ("B-new",), "new")], v)
    assert b.words.shape == (3, 2) and b.chars.shape == (3, 2, 2)
    assert b.lengths.tolist() == [1, 2, 1]
    assert b.words[0, 1] == 0 and b.chars[0, 1].tolist() == [0, 0]
    assert b.tags[0].tolist() == [v.tags["B-y"], -100]
    assert b.tags[2, 0] == -100 and b.intents[2] == -100
    assert b.chars[1, 0].tolist() == [v.chars["a"], v.chars["b"]]
    assert b.intents[:2].tolist() == [v.intents["j"], v.intents["i"]]
    assert isinstance(b.words, torch.Tensor)


@needs_atis
def test_real_atis_counts_and_the_two_splits_agree():
    sg = {s: read_split(DATA / "atis_slotgated", s, "seq") for s in ("train", "valid", "test")}
    js = {s: read_split(DATA / "atis_jointslu", f"atis.{s}.w-intent.iob", "iob")
          for s in ("train", "test")}
    assert [len(sg[s]) for s in ("train", "valid", "test")] == [4478, 500, 893]
    assert [len(js[s]) for s in ("train", "test")] == [4978, 893]
    assert Counter(js["train"]) == Counter(sg["train"] + sg["valid"])
    assert Counter(js["test"]) == Counter(sg["test"])
    v = SlotVocabs.build(sg["train"])
    assert "atis_flight#atis_airfare" in v.intents
    assert all(u.intent is not None for u in js["train"])


def _serve(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@needs_atis
def test_fetch_corpus_from_local_server_checks_sha256(tmp_path):
    httpd = _serve(DATA)
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        got = fetch_corpus(tmp_path / "atis_jointslu", base_url=f"{base}/atis_jointslu")
        assert sorted(p.name for p in got) == sorted(JOINTSLU_SHA256)
        assert fetch_corpus(tmp_path / "atis_jointslu", base_url=f"{base}/nowhere") == []
        got = fetch_corpus(tmp_path / "atis_slotgated", base_url=f"{base}/atis_slotgated")
        assert len(got) == len(SLOTGATED_SHA256)
        for rel, sha in SLOTGATED_SHA256.items():
            assert hashlib.sha256((tmp_path / "atis_slotgated" / rel).read_bytes()).hexdigest() \
                == sha
        # a corrupted file on the server: DataError, nothing written
        bad = tmp_path / "served" / "atis_jointslu"
        shutil.copytree(DATA / "atis_jointslu", bad)
        (bad / "atis.test.w-intent.iob").chmod(0o644)
        (bad / "atis.test.w-intent.iob").write_text("tampered\n")
    finally:
        httpd.shutdown()
        httpd.server_close()
    httpd = _serve(tmp_path / "served")
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(DataError, match="checksum mismatch"):
            fetch_corpus(tmp_path / "fresh" / "atis_jointslu", base_url=f"{base}/atis_jointslu")
        assert not (tmp_path / "fresh" / "atis_jointslu" / "atis.test.w-intent.iob").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
    with pytest.raises(ValueError, match="expected a corpus folder named one of"):
        fetch_corpus(tmp_path / "other")
