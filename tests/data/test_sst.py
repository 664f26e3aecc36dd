"""SST reader: the tree parser against hand-worked trees, phrases, sentence files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memnets.data.sst import (
    SSTFormatError,
    Tree,
    load_sst,
    parse_tree,
    phrase_examples,
    read_sentences,
    read_trees,
    to_binary,
)

DATA = Path(os.environ.get("MEMNETS_DATA", Path(__file__).resolve().parents[2] / "../shared/data"))


def test_parse_hand_worked_tree():
    t = parse_tree("(3 (2 It) (4 (4 (2 's) (4 great)) (2 .)))")
    # worked by hand: root 3 over "It" (2) and a node 4 over ("'s great" 4, "." 2)
    assert t.label == 3 and t.word is None and len(t.children) == 2
    assert t.children[0] == Tree(2, word="It")
    right = t.children[1]
    assert right.label == 4 and [c.label for c in right.children] == [4, 2]
    assert right.children[0].children == [Tree(2, word="'s"), Tree(4, word="great")]
    assert t.leaves() == ["It", "'s", "great", "."]
    assert [n.label for n in t.subtrees()] == [3, 2, 4, 4, 2, 4, 2]


def test_parse_leaf_only_and_no_break_space_inside_a_word():
    assert parse_tree("(1 bad)") == Tree(1, word="bad")
    t = parse_tree("(2 (2 8\xa01\\/2) (2 .))")
    assert t.leaves() == ["8\xa01\\/2", "."]


@pytest.mark.parametrize("text, msg", [
    ("(3 (2 a) (2 b)", "expected '\\)'"),
    ("(7 a)", "expected a label 0-4 at token 1, got '7'"),
    ("(2 a) (2 b)", "expected end of line at token 4, got '\\('"),
    ("2 a", "expected '\\('"),
    ("(2 )", "expected a word or a child"),
])
def test_malformed_trees_raise_with_location(text, msg):
    with pytest.raises(SSTFormatError, match=f"f.txt:9: {msg}"):
        parse_tree(text, where="f.txt:9")


def test_phrases_fine_and_binary_hand_worked():
    trees = [parse_tree("(3 (2 It) (4 (4 (2 's) (4 great)) (2 .)))"),
             parse_tree("(1 (2 It) (0 awful))")]
    fine = phrase_examples(trees, binary=False)
    # roots first, then the other distinct phrases in order ("it" appears twice)
    assert fine == [
        (["it", "'s", "great", "."], 3), (["it", "awful"], 1),
        (["it"], 2), (["'s", "great", "."], 4), (["'s", "great"], 4), (["'s"], 2),
        (["great"], 4), (["."], 2), (["awful"], 0)]
    binary = phrase_examples(trees, binary=True)
    assert binary == [
        (["it", "'s", "great", "."], 1), (["it", "awful"], 0),
        (["'s", "great", "."], 1), (["'s", "great"], 1), (["great"], 1), (["awful"], 0)]
    assert [to_binary(k) for k in range(5)] == [0, 0, None, 1, 1]


def test_sentence_file_errors_name_file_and_line(tmp_path):
    f = tmp_path / "stsa.binary.train"
    f.write_text("1 a fine film\n7 bad label\n")
    with pytest.raises(SSTFormatError, match=r"stsa.binary.train:2: .*0..1"):
        read_sentences(f, num_classes=2)
    g = tmp_path / "trees.txt"
    g.write_text("(2 a)\n(2 (2 b)\n")
    with pytest.raises(SSTFormatError, match=r"trees.txt:2"):
        read_trees(g)


@pytest.mark.skipif(not (DATA / "sst").is_dir(), reason="shared SST data not found")
def test_shared_sst_counts_and_trees_agree_with_sentences():
    fine = load_sst(DATA / "sst", fine=True)
    assert {k: len(v) for k, v in fine.items()} == {"train": 8544, "dev": 1101, "test": 2210}
    binary = load_sst(DATA / "sst", fine=False)
    assert {k: len(v) for k, v in binary.items()} == {"train": 6920, "dev": 872, "test": 1821}
    test_trees = read_trees(DATA / "sst" / "trees" / "test.txt")
    from_trees = [(" ".join(t.leaves()).lower().split(), t.label) for t in test_trees]
    assert sorted(from_trees) == sorted(fine["test"])  # same sentences, other order
