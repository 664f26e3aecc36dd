import pytest

from memnets.data.vocab import PAD, UNK, Vocab


def test_build_orders_by_frequency_and_maps_unknown_to_unk():
    v = Vocab.build([["b", "a", "b"], ["c", "b", "a"]], min_freq=2)
    assert v.itos == [PAD, UNK, "b", "a"]
    assert v.encode(["a", "zzz", "b"]) == [3, 1, 2]
    assert v.decode([2, 3]) == ["b", "a"]


def test_label_vocab_without_unk_names_the_unknown_label(tmp_path):
    labels = Vocab(["O", "B-city"], specials=(), unk=None)
    assert labels["B-city"] == 1
    with pytest.raises(KeyError, match="B-date"):
        labels["B-date"]
    labels.save(tmp_path / "labels.json")
    assert Vocab.load(tmp_path / "labels.json").itos == ["O", "B-city"]


def test_json_round_trip(tmp_path):
    v = Vocab.build([["x", "y", "y"]], max_size=1)
    v.save(tmp_path / "v.json")
    w = Vocab.load(tmp_path / "v.json")
    assert w.itos == v.itos == [PAD, UNK, "y"] and w["x"] == w.unk_id
