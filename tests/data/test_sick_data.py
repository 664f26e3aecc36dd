"""The sentence-pair readers of memnets.data.sick: SICK.txt by column name, JSON lines
(SNLI) and TSV; every malformed row named by file:line; the real SICK's split sizes
and label counts when the shared data is there."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import SHARED_DATA

from memnets.data.sick import (
    PairExample,
    PairFormatError,
    read_pairs,
    read_pairs_jsonl,
    read_pairs_tsv,
    read_sick,
    tokenize,
)
from memnets.errors import DataError

HEADER = ["pair_ID", "sentence_A", "sentence_B", "entailment_label", "relatedness_score",
          "entailment_AB", "entailment_BA", "SemEval_set"]


def _row(pid, a, b, label, score, split):
    return [str(pid), a, b, label, str(score), "A_x_B", "B_x_A", split]


ROWS = [
    _row(1, "A man is playing a guitar", "A person plays an instrument", "ENTAILMENT", 4.2,
         "TRAIN"),
    _row(2, "A dog isn't running", "A dog is running", "CONTRADICTION", 3.6, "TRAIN"),
    _row(3, "Two kids, a boy and a girl, are eating", "A cat sleeps", "NEUTRAL", 1, "TRIAL"),
    _row(4, "A woman's t-shirt is red.", "The shirt is red", "ENTAILMENT", 5, "TEST"),
]


def _write(path, header, rows, *, ending="\r\n", last_ending=False):
    text = ending.join("\t".join(r) for r in [header, *rows])
    path.write_bytes((text + (ending if last_ending else "")).encode())
    return path


def test_tokenize_lowercases_and_splits_punctuation_and_clitics():
    assert tokenize("A dog, a CAT.") == ["a", "dog", ",", "a", "cat", "."]
    assert tokenize("isn't aren't doesn't") == ["is", "n't", "are", "n't", "does", "n't"]
    assert tokenize("the man's t-shirt") == ["the", "man", "'s", "t-shirt"]
    assert tokenize("  two\tspaces  ") == ["two", "spaces"]
    assert tokenize("") == []


@pytest.mark.parametrize("last_ending", [False, True])
@pytest.mark.parametrize("ending", ["\r\n", "\n"])
def test_sick_reads_crlf_with_or_without_a_last_line_ending(tmp_path, ending, last_ending):
    path = _write(tmp_path / "SICK.txt", HEADER, ROWS, ending=ending, last_ending=last_ending)
    data = read_sick(path)
    assert {k: len(v) for k, v in data.items()} == {"train": 2, "dev": 1, "test": 1}
    assert data["train"][0] == PairExample(
        ("a", "man", "is", "playing", "a", "guitar"),
        ("a", "person", "plays", "an", "instrument"), "entailment", 4.2, "1")
    assert data["train"][1].hypothesis == ("a", "dog", "is", "running")
    assert data["train"][1].premise == ("a", "dog", "is", "n't", "running")
    assert data["dev"][0].label == "neutral" and data["dev"][0].score == 1.0
    # the last field of the last line carries no "\r" and no stray characters
    assert data["test"][0].pair_id == "4" and data["test"][0].score == 5.0


def test_sick_finds_columns_by_name_in_any_order(tmp_path):
    order = [7, 3, 0, 2, 4, 1, 6, 5]
    header = [HEADER[k] for k in order] + ["extra"]
    rows = [[r[k] for k in order] + ["x"] for r in ROWS]
    data = read_sick(_write(tmp_path / "SICK.txt", header, rows))
    ref = read_sick(_write(tmp_path / "ref.txt", HEADER, ROWS))
    assert data == ref


def test_sick_header_without_a_column_names_it(tmp_path):
    header = [h if h != "relatedness_score" else "score_r" for h in HEADER]
    path = _write(tmp_path / "SICK.txt", header, ROWS)
    with pytest.raises(PairFormatError, match=r"SICK.txt:1: expected a header naming the "
                                              r"columns .*\(no relatedness_score\)"):
        read_sick(path)


@pytest.mark.parametrize("field, value, message", [
    (3, "ENTAILS", r"expected a label entailment, neutral, contradiction .*got 'ENTAILS'"),
    (3, "-", r"expected an entailment_label entailment, neutral, contradiction, got '-'"),
    (4, "5.5", r"expected a relatedness score, a number in \[1, 5\], got '5.5'"),
    (4, "0.9", r".*got '0.9'"),
    (4, "nan", r".*got 'nan'"),
    (4, "high", r".*got 'high'"),
    (7, "DEV", r"expected SemEval_set TRAIN, TRIAL, TEST, got 'DEV'"),
    (2, "   ", r"expected a sentence_B sentence of at least one word, got '   '"),
    (1, "", r"expected a sentence_A sentence of at least one word, got ''"),
])
def test_sick_malformed_row_names_file_line_and_what_came(tmp_path, field, value, message):
    rows = [list(r) for r in ROWS]
    rows[2][field] = value
    path = _write(tmp_path / "SICK.txt", HEADER, rows)
    with pytest.raises(PairFormatError, match=rf"SICK.txt:4: {message}") as info:
        read_sick(path)
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)


def test_sick_row_with_a_field_too_few_or_many(tmp_path):
    for rows in ([ROWS[0], ROWS[1][:-1]], [ROWS[0], ROWS[1] + ["x"]]):
        path = _write(tmp_path / "SICK.txt", HEADER, rows)
        got = len(rows[1])
        with pytest.raises(PairFormatError,
                           match=rf"SICK.txt:3: expected 8 tab-separated fields \(as in the "
                                 rf"header\), got {got}"):
            read_sick(path)


def test_sick_empty_or_missing_file(tmp_path):
    (tmp_path / "SICK.txt").write_text("")
    with pytest.raises(PairFormatError, match="expected a header line"):
        read_sick(tmp_path / "SICK.txt")
    with pytest.raises(DataError, match=r"expected the SICK file .* at .*nowhere.txt"):
        read_sick(tmp_path / "nowhere.txt")


def test_sick_non_utf8_byte_names_the_line(tmp_path):
    path = _write(tmp_path / "SICK.txt", HEADER, ROWS)
    data = path.read_bytes().replace(b"Two kids", b"Two k\xffds")
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"SICK.txt:4: expected UTF-8"):
        read_sick(path)


# ------------------------------------------------------------------ generic formats

SNLI = [
    {"gold_label": "neutral", "sentence1": "A person on a horse jumps.",
     "sentence2": "A person is training.", "pairID": "a1"},
    {"gold_label": "-", "sentence1": "Kids smile.", "sentence2": "Kids are happy.",
     "pairID": "a2"},
    {"gold_label": "contradiction", "sentence1": "Kids smile.", "sentence2": "Kids frown.",
     "pairID": "a3", "annotator_labels": ["contradiction"]},
    {"gold_label": "Entailment", "sentence1": "A dog barks.", "sentence2": "An animal makes "
     "a sound.", "pairID": "a4"},
]


def test_jsonl_reads_snli_keys_and_skips_and_counts_no_gold_label(tmp_path):
    path = tmp_path / "snli.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in SNLI) + "\n\n")
    got = read_pairs_jsonl(path)
    assert got.skipped == 1
    assert [e.label for e in got.examples] == ["neutral", "contradiction", "entailment"]
    assert got.examples[0] == PairExample(
        ("a", "person", "on", "a", "horse", "jumps", "."), ("a", "person", "is", "training",
                                                              "."), "neutral", None, "a1")
    assert read_pairs(path, "jsonl") == got


def test_jsonl_optional_score_and_plain_names(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"premise": "a b", "hypothesis": "c", "label": "NEUTRAL",
                                "score": 2.5}) + "\n")
    (e,) = read_pairs_jsonl(path).examples
    assert (e.premise, e.hypothesis, e.label, e.score) == (("a", "b"), ("c",), "neutral", 2.5)


@pytest.mark.parametrize("line, message", [
    ('{"sentence1": "a", "sentence2": "b"', r"expected a JSON object, got invalid JSON"),
    ('["a", "b", "neutral"]', r"expected a JSON object, got \['a', 'b', 'neutral'\]"),
    ('{"sentence1": "a", "gold_label": "neutral"}',
     r"expected a hypothesis under one of the keys hypothesis, sentence2, sentence_B"),
    ('{"sentence1": "a", "sentence2": "b", "gold_label": 1}', r"expected a label .*got 1"),
    ('{"sentence1": "a", "sentence2": "b", "gold_label": "yes"}', r".*got 'yes'"),
    ('{"sentence1": "a", "sentence2": "b", "gold_label": "neutral", "score": 7}',
     r"expected a relatedness score.*got 7"),
    ('{"sentence1": "", "sentence2": "b", "gold_label": "neutral"}',
     r"expected a premise sentence of at least one word"),
])
def test_jsonl_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SNLI[0]) + "\n\n" + line + "\n")
    with pytest.raises(PairFormatError, match=rf"bad.jsonl:3: {message}"):
        read_pairs_jsonl(path)


def test_tsv_positional_with_and_without_score(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"A man sings\tA person sings\tentailment\t4.5\r\n"
                     b"\r\n"
                     b"A man sings\tNobody sings\tCONTRADICTION\r\n"
                     b"Kids play\tKids play\t-\r\n"
                     b"A cat\tA dog\tneutral\t")
    got = read_pairs_tsv(path)
    assert got.skipped == 1
    assert [(e.label, e.score) for e in got.examples] == [
        ("entailment", 4.5), ("contradiction", None), ("neutral", None)]
    assert got.examples[1].hypothesis == ("nobody", "sings")
    assert read_pairs(path, "tsv") == got


def test_tsv_with_a_header_by_name_as_snli_txt(tmp_path):
    path = tmp_path / "snli_1.0_dev.txt"
    header = ["gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1", "sentence2", "captionID", "pairID"]
    rows = [["neutral", "( A dog )", "( A cat )", "A dog runs.", "A cat sits.", "c1", "p1"],
            ["-", "( x )", "( y )", "x", "y", "c2", "p2"],
            ["entailment", "( a )", "( b )", "A man eats", "A man eats food", "c3", "p3"]]
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    got = read_pairs_tsv(path)
    assert got.skipped == 1
    assert [(e.premise, e.label, e.pair_id) for e in got.examples] == [
        (("a", "dog", "runs", "."), "neutral", "p1"),
        (("a", "man", "eats"), "entailment", "p3")]
    assert got.examples[1].hypothesis == ("a", "man", "eats", "food")


@pytest.mark.parametrize("text, line, message", [
    ("a\tb\tneutral\na\tb\n", 2, r"expected 3 or 4 tab-separated fields \(premise, hypothesis, "
                                 r"label\[, score\]\), got 2"),
    ("a\tb\tneutral\t1\tx\n", 1, r".*got 5"),
    ("a\tb\tneutral\n\na\tb\tmaybe\n", 3, r"expected a label entailment, neutral, "
                                         r"contradiction .*got 'maybe'"),
    ("a\tb\tneutral\t0\n", 1, r"expected a relatedness score, a number in \[1, 5\], got '0'"),
    ("a\t.\tneutral\n\t b\tneutral\n", 2, r"expected a premise sentence of at least one word"),
    ("premise\thypothesis\tscore\n", 1, r"expected a header with a label column"),
    ("premise\thypothesis\tlabel\na\tb\n", 2, r"expected at least 3 tab-separated fields "
                                              r"\(as the header names\), got 2"),
])
def test_tsv_malformed_row_names_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(PairFormatError, match=rf"bad.tsv:{line}: {message}"):
        read_pairs_tsv(path)


def test_read_pairs_refuses_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="expected a pair-file format tsv or jsonl, got 'csv'"):
        read_pairs(tmp_path / "x.csv", "csv")


# ------------------------------------------------------------------ the real SICK

SICK = SHARED_DATA / "sick" / "SICK.txt"
needs_sick = pytest.mark.skipif(not SICK.is_file(),
                                reason=f"SICK not found at {SICK} (set MEMNETS_DATA)")


@needs_sick
def test_the_real_sick_split_sizes_and_label_counts():
    data = read_sick(SICK)
    assert {k: len(v) for k, v in data.items()} == {"train": 4439, "dev": 495, "test": 4906}
    labels = Counter(e.label for v in data.values() for e in v)
    assert labels == {"neutral": 5595, "entailment": 2821, "contradiction": 1424}
    scores = [e.score for v in data.values() for e in v]
    assert min(scores) == 1.0 and max(scores) == 5.0
    ids = [e.pair_id for v in data.values() for e in v]
    assert len(set(ids)) == 9840 and "10000" in ids  # the unterminated last line
