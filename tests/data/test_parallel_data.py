"""Parallel corpora (memnets.data.parallel): both Multi30k layouts, line counts that
must match, gzip and UTF-8 errors naming file and line, vocabularies with BOS/EOS,
length filtering, SentencePiece units, detokenisation (checked against the real
raw files when the shared data is there) and the checksum table."""

from __future__ import annotations

import gzip

import pytest
from conftest import SHARED_DATA

from memnets.data.download import sha256_file
from memnets.data.parallel import (
    BOS,
    EOS,
    LANGUAGES,
    MULTI30K_SHA256,
    TEST_SETS,
    build_vocab,
    detokenize,
    filter_by_length,
    multi30k_file,
    read_corpus_lines,
    read_parallel,
)
from memnets.data.vocab import PAD, UNK
from memnets.errors import DataError

MULTI30K = SHARED_DATA / "multi30k"
needs_multi30k = pytest.mark.skipif(not (MULTI30K / "tok").is_dir(),
                                    reason=f"Multi30k not found under {SHARED_DATA}")


def test_read_parallel_plain_and_gzip(tmp_path):
    (tmp_path / "a.de").write_text("ein hund .\r\nzwei katzen\n")
    (tmp_path / "a.en.gz").write_bytes(gzip.compress(b"A dog.\nTwo cats\n"))
    assert read_parallel(tmp_path / "a.de", tmp_path / "a.en.gz") == [
        ("ein hund .", "A dog."), ("zwei katzen", "Two cats")]


def test_line_counts_must_match_and_the_error_names_both_files(tmp_path):
    (tmp_path / "train.de").write_text("a\nb\nc\n")
    (tmp_path / "train.en").write_text("a\nb\n")
    with pytest.raises(DataError) as e:
        read_parallel(tmp_path / "train.de", tmp_path / "train.en")
    msg = str(e.value)
    assert "3 in" in msg and "train.de" in msg and "2 in" in msg and "train.en" in msg


def test_broken_files_are_data_errors_with_file_and_line(tmp_path):
    (tmp_path / "bad.de").write_bytes(b"gut\nschlecht \xff\n")
    with pytest.raises(DataError, match=r"bad\.de:2: expected UTF-8"):
        read_corpus_lines(tmp_path / "bad.de")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="gzip"):
        read_corpus_lines(tmp_path / "bad.gz")
    with pytest.raises(DataError, match="missing.en"):
        read_corpus_lines(tmp_path / "missing.en")


def test_layout_paths_and_the_checksum_table_cover_every_file():
    assert multi30k_file("tok", "val", "de") == "tok/val.lc.norm.tok.de"
    assert multi30k_file("raw", "train", "en") == "raw/train.en.gz"
    names = ("train", "val", *TEST_SETS)
    expected = {multi30k_file(lay, n, lang) for lay in ("raw", "tok") for n in names
                for lang in LANGUAGES}
    assert set(MULTI30K_SHA256) == expected
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in MULTI30K_SHA256.values())
    with pytest.raises(ValueError, match="layout"):
        multi30k_file("bpe", "val", "de")


@needs_multi30k
def test_the_checksums_are_those_of_the_shared_files():
    for rel, digest in MULTI30K_SHA256.items():
        assert sha256_file(MULTI30K / rel) == digest, rel


def test_vocabulary_specials_min_frequency_and_unk():
    v = build_vocab([["a", "b", "a"], ["c", "a", "b"]], min_freq=2)
    assert v.itos[:4] == [PAD, UNK, BOS, EOS] and v.pad_id == 0 and v[EOS] == 3
    assert v.itos[4:] == ["a", "b"] and v["c"] == v.unk_id
    assert len(build_vocab([["a", "b", "c"]], max_size=1)) == 5


def test_length_filter_keeps_pairs_within_bounds_on_both_sides():
    pairs = [(["a"] * 3, ["b"] * 3), (["a"] * 6, ["b"]), (["a"], ["b"] * 6), ([], ["b"])]
    assert filter_by_length(pairs, 5) == [0]
    assert filter_by_length(pairs, None) == [0, 1, 2]


def test_subword_units_round_trip_and_serialise():
    pytest.importorskip("sentencepiece")
    from memnets.data.parallel import SubwordModel

    lines = [f"Ein Mann fährt Fahrrad Nummer {i}." for i in range(200)] + [
        "Zwei Hunde spielen im Schnee."] * 50
    sp = SubwordModel.train(lines, vocab_size=60, kind="bpe")
    pieces = sp.encode("Ein Hund fährt im Schnee.")
    assert pieces[0].startswith("\u2581") and len(pieces) > 4
    assert sp.decode(pieces) == "Ein Hund fährt im Schnee."
    again = SubwordModel.from_dict(sp.to_dict())
    assert again.encode("Zwei Männer") == sp.encode("Zwei Männer")
    with pytest.raises(ValueError, match="bpe"):
        SubwordModel.train(lines, vocab_size=60, kind="words")


def test_detokenize_undoes_moses_tokenisation():
    assert detokenize("a man &apos;s dog , running ( fast ) .".split()) == \
        "a man's dog, running (fast)."
    assert detokenize('er sagt &quot; hallo &quot; und geht !'.split()) == \
        'er sagt "hallo" und geht!'
    assert detokenize("it isn &apos;t $ 5 : no ?".split()) == "it isn't $5: no?"
    assert detokenize([]) == ""


@needs_multi30k
@pytest.mark.parametrize("lang", LANGUAGES)
def test_detokenised_tok_files_give_back_the_raw_files(lang):
    tok = read_corpus_lines(MULTI30K / multi30k_file("tok", "test_2016_flickr", lang))
    raw = read_corpus_lines(MULTI30K / multi30k_file("raw", "test_2016_flickr", lang))
    assert len(tok) == len(raw) == 1000
    same = sum(detokenize(t.split()) == r.lower() for t, r in zip(tok, raw))
    assert same >= 995  # a few lines differ by the normalisation of quotes and spaces


@needs_multi30k
def test_the_shared_splits_have_their_documented_sizes():
    for name, n in (("train", 29000), ("val", 1014), ("test_2016_flickr", 1000),
                    ("test_2017_flickr", 1000), ("test_2017_mscoco", 461)):
        for layout in ("raw", "tok"):
            pairs = read_parallel(MULTI30K / multi30k_file(layout, name, "de"),
                                  MULTI30K / multi30k_file(layout, name, "en"))
            assert len(pairs) == n, (layout, name)


def test_docstring_examples_run():
    import doctest

    import memnets.data.parallel

    failures, tried = doctest.testmod(memnets.data.parallel)
    assert tried >= 2 and failures == 0
