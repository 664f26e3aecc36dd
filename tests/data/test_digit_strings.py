"""memnets.data.digit_strings: strings of UCI handwritten digits (scikit-learn's
load_digits), composed per seed, split by source image.

The composition is checked against a pixel-by-pixel reference written here (float64),
the splits for disjoint source images, the files for the same bytes per seed.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

from memnets.data import digit_strings
from memnets.data.digit_strings import (
    CANVAS_HEIGHT,
    CANVAS_WIDTH,
    load_uci_digits,
    name_objects_digits,
    read_digit_strings,
    source_pools,
)
from memnets.data.scenes import SceneObject, ensure_generated
from memnets.errors import DataError

pytest.importorskip("sklearn")

SMALL = {"train": 60, "dev": 20, "test": 30}


def _rows(folder, split):
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]


def _sha(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return ensure_generated("digit-strings", tmp_path_factory.mktemp("digits") / "d",
                            seed=5, counts=SMALL)


def test_the_source_digits():
    images, labels = load_uci_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert int(images.max()) == 16 and int(images.min()) == 0
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))


def test_pools_split_the_source_images_once():
    pools = source_pools(0)
    assert {k: len(v) for k, v in pools.items()} == {"train": 1258, "dev": 180, "test": 359}
    assert set(pools["train"]).isdisjoint(pools["dev"])
    assert set(pools["train"]).isdisjoint(pools["test"])
    assert set(pools["dev"]).isdisjoint(pools["test"])
    assert set().union(*map(set, pools.values())) == set(range(1797))
    assert source_pools(0) == pools and source_pools(1) != pools


def test_splits_share_no_source_image(small):
    used = {split: {d["source"] for r in _rows(small, split) for d in r["digits"]}
            for split in SMALL}
    pools = source_pools(5)
    for split, sources in used.items():
        assert sources <= set(pools[split]), split
    assert used["train"].isdisjoint(used["dev"]) and used["train"].isdisjoint(used["test"])
    assert used["dev"].isdisjoint(used["test"])


def test_same_bytes_per_seed(small, tmp_path):
    again = ensure_generated("digit-strings", tmp_path / "again", seed=5, counts=SMALL)
    other = ensure_generated("digit-strings", tmp_path / "other", seed=6, counts=SMALL)
    assert _sha(again) == _sha(small)
    assert all(_sha(other)[f] != _sha(small)[f] for f in ("train.jsonl", "dev.jsonl",
                                                           "test.jsonl"))
    manifest = json.loads((small / "MANIFEST.json").read_text())
    images, labels = load_uci_digits()
    h = hashlib.sha256(images.tobytes())
    h.update(labels.tobytes())
    assert manifest["source"] == {"name": "sklearn.datasets.load_digits", "images": 1797,
                                  "sha256": h.hexdigest()}
    assert manifest["counts"] == SMALL and manifest["seed"] == 5


def test_layout_follows_the_rules(small):
    lengths = set()
    for split in SMALL:
        for row in _rows(small, split):
            digits = row["digits"]
            lengths.add(len(digits))
            assert 2 <= len(digits) <= 6
            xs = [d["x"] for d in digits]
            assert xs[0] >= 0 and xs[-1] + 16 <= CANVAS_WIDTH
            gaps = [b - a - 16 for a, b in zip(xs, xs[1:])]
            assert all(0 <= g <= 4 for g in gaps)  # cells never overlap
            assert all(0 <= d["y"] <= CANVAS_HEIGHT - 16 for d in digits)
    assert lengths == {2, 3, 4, 5, 6}


def _reference_image(row) -> np.ndarray:
    """The canvas drawn pixel by pixel in float64: each source pixel v becomes a 2x2
    block of round(255 v / 16) (halves up)."""
    images, _ = load_uci_digits()
    canvas = np.zeros((CANVAS_HEIGHT, CANVAS_WIDTH), dtype=np.float64)
    for d in row["digits"]:
        src = images[d["source"]].astype(np.float64)
        for i in range(8):
            for j in range(8):
                value = np.floor(src[i, j] * 255.0 / 16.0 + 0.5)
                for a in range(2):
                    for b in range(2):
                        y, x = d["y"] + 2 * i + a, d["x"] + 2 * j + b
                        canvas[y, x] = max(canvas[y, x], value)
    return canvas


def test_images_captions_and_boxes_against_a_reference(small):
    _, labels = load_uci_digits()
    examples = read_digit_strings(small, "dev")
    rows = _rows(small, "dev")
    assert len(examples) == SMALL["dev"]
    for e, row in zip(examples, rows):
        assert e.image.shape == (CANVAS_HEIGHT, CANVAS_WIDTH, 3) and e.image.dtype == np.uint8
        assert np.array_equal(e.image[..., 0], e.image[..., 1])
        assert np.array_equal(e.image[..., 0], e.image[..., 2])
        ref = _reference_image(row)
        assert np.array_equal(e.image[..., 0].astype(np.float64), ref)
        assert e.words == tuple(str(d["digit"]) for d in row["digits"])
        assert [int(labels[d["source"]]) for d in row["digits"]] == [d["digit"]
                                                                     for d in row["digits"]]
        assert e.word_objects == tuple(range(len(e.words)))
        outside = np.ones(ref.shape, bool)
        for o, d in zip(e.objects, row["digits"]):
            assert (o.colour, o.shape, o.size) == ("white", str(d["digit"]), None)
            x0, y0, x1, y1 = o.box
            # the tight box of the digit's nonzero pixels, inside its 16x16 cell
            cell = np.zeros(ref.shape, bool)
            cell[d["y"]:d["y"] + 16, d["x"]:d["x"] + 16] = True
            ys, xs = np.nonzero((ref > 0) & cell)
            assert o.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert o.centre == ((x0 + x1) / 2, (y0 + y1) / 2)
            outside[y0:y1, x0:x1] = False
        assert not ref[outside].any()
        centres = [o.centre[0] for o in e.objects]
        assert centres == sorted(centres)


def test_name_objects_digits():
    objects = [SceneObject("white", w, None, (0.0, 0.0), (0, 0, 1, 1)) for w in "314"]
    assert name_objects_digits(["3", "1", "4"], objects) == [0, 1, 2]
    assert name_objects_digits(["3", "<unk>", "1", "4", "1"], objects) == [0, None, 1, 2, None]
    assert name_objects_digits(["</s>"], objects) == [None]
    assert name_objects_digits([], objects) == []


def test_corrupt_lines_are_named(small, tmp_path):
    folder = ensure_generated("digit-strings", tmp_path / "d", seed=5, counts=SMALL)
    path = folder / "test.jsonl"
    lines = path.read_text().splitlines()
    _, labels = load_uci_digits()
    row = json.loads(lines[6])
    src = row["digits"][0]["source"]
    row["digits"][0]["digit"] = (int(labels[src]) + 1) % 10
    path.write_text("\n".join(lines[:6] + [json.dumps(row)] + lines[7:]) + "\n")
    with pytest.raises(DataError, match=rf"^{path}:7: expected source image {src} to show a "
                                        rf"{(int(labels[src]) + 1) % 10}, got 'a {labels[src]}'"):
        read_digit_strings(folder, "test")
    row["digits"][0].update(digit=int(labels[src]), x=200)
    path.write_text("\n".join(lines[:6] + [json.dumps(row)] + lines[7:]) + "\n")
    with pytest.raises(DataError, match=rf"^{path}:7: expected 'x' to be an integer in 0..96"):
        read_digit_strings(folder, "test")
    path.write_text("\n".join(lines[:2] + ["{oops"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=rf"^{path}:3: expected a JSON object per line"):
        read_digit_strings(folder, "test")
    with pytest.raises(DataError, match="expected a digit-strings file"):
        read_digit_strings(tmp_path / "nothing", "train")
    with pytest.raises(ValueError, match="expected a split among train, dev, test"):
        read_digit_strings(folder, "test_compositional")


def test_without_scikit_learn_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    load_uci_digits.cache_clear()
    try:
        with pytest.raises(DataError, match=r"pip install 'memnets\[vision\]'"):
            load_uci_digits()
    finally:
        monkeypatch.undo()
        load_uci_digits.cache_clear()
    assert load_uci_digits()[0].shape == (1797, 8, 8)


def test_default_counts():
    assert digit_strings.DIGIT_STRING_COUNTS == {"train": 20000, "dev": 1000, "test": 2000}
