"""PTB reader, batch-major streams and BPTT windows, against hand-worked examples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from memnets.data.ptb import batchify, bptt_segments, load_ptb, num_segments, read_words

DATA = Path(os.environ.get("MEMNETS_DATA", Path(__file__).resolve().parents[2] / "../shared/data"))


def write_ptb(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ptb.train.txt").write_text(" the cat sat \n the <unk> ran \n")
    (folder / "ptb.valid.txt").write_text(" the dog sat \n")
    (folder / "ptb.test.txt").write_text(" cat ran \n")


def test_read_words_appends_eos_per_line(tmp_path):
    write_ptb(tmp_path)
    assert read_words(tmp_path / "ptb.train.txt") == [
        "the", "cat", "sat", "<eos>", "the", "<unk>", "ran", "<eos>"]


def test_load_ptb_vocab_by_frequency_and_unknown_to_unk(tmp_path):
    write_ptb(tmp_path)
    c = load_ptb(tmp_path)
    # counts: the 2, <eos> 2, then cat, ran, sat, <unk> once each (ties alphabetical)
    assert c.vocab.itos == ["<eos>", "the", "<unk>", "cat", "ran", "sat"]
    assert c.vocab.decode(c["valid"].tolist()) == ["the", "<unk>", "sat", "<eos>"]
    assert c["test"].tolist() == [3, 4, 0]


def test_missing_file_and_missing_unk_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ptb.train.txt"):
        load_ptb(tmp_path)
    write_ptb(tmp_path)
    (tmp_path / "ptb.train.txt").write_text(" a b \n")
    with pytest.raises(ValueError, match="<unk>"):
        load_ptb(tmp_path)


def test_batchify_rows_are_contiguous_chunks():
    ids = torch.arange(11)
    s = batchify(ids, 3)
    assert s.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(ValueError, match="at least 2 \\* batch_size"):
        batchify(torch.arange(3), 2)
    with pytest.raises(ValueError, match="1-d"):
        batchify(torch.zeros(2, 5, dtype=torch.long), 2)


def test_bptt_segments_targets_every_next_token_once():
    s = batchify(torch.arange(20), 2)  # rows 0..9, 10..19
    segs = list(bptt_segments(s, 4))
    assert len(segs) == num_segments(s, 4) == 3
    assert segs[0][0].tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert segs[0][1].tolist() == [[1, 2, 3, 4], [11, 12, 13, 14]]
    assert segs[-1][0].tolist() == [[8], [18]] and segs[-1][1].tolist() == [[9], [19]]
    targets = torch.cat([y for _, y in segs], dim=1)
    assert targets.tolist() == [list(range(1, 10)), list(range(11, 20))]


@pytest.mark.skipif(not (DATA / "ptb").is_dir(), reason="shared PTB data not found")
def test_shared_ptb_matches_the_documented_counts():
    c = load_ptb(DATA / "ptb")
    assert len(c.vocab) == 10000
    assert {k: v.numel() for k, v in c.splits.items()} == {
        "train": 929589, "valid": 73760, "test": 82430}
    assert c.vocab.itos[0] == "the"


def test_char_level_ptb_spells_words_with_underscores(tmp_path):
    write_ptb(tmp_path)
    from memnets.data.ptb import read_chars

    assert read_chars(tmp_path / "ptb.test.txt") == list("cat_ran") + ["<eos>"]
    (tmp_path / "ptb.valid.txt").write_text(" the cat \n")
    c = load_ptb(tmp_path, level="char")
    assert "<eos>" in c.vocab and "_" in c.vocab
    assert c.vocab.decode(c["valid"].tolist()) == list("the_cat") + ["<eos>"]
    with pytest.raises(ValueError, match="level"):
        load_ptb(tmp_path, level="byte")
