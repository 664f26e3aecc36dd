r"""Digit strings: images of 2-6 handwritten digits in a row, captioned by their words.

The digits are the UCI "Optical recognition of handwritten digits" data set
(Alpaydin & Kaynak, 1998) as scikit-learn ships it
(``sklearn.datasets.load_digits``: 1797 real 8x8 images, values 0..16, from 43
writers), an optional dependency: ``pip install 'memnets[vision]'``.

**Pools.**  The 1797 source images are shuffled once by ``random.Random``
seeded with ``"digit-strings/<seed>/pools"`` and cut into train, dev and test
pools of 70, 10 and 20 % (1258, 180 and 359 images); each split composes only
from its own pool, so no digit image of dev or test appears in training.

**An image.**  Image ``k`` of a split draws, from ``random.Random`` seeded with
``"digit-strings/<seed>/<split>/<k>"``: a length :math:`n \sim U\{2..6\}`;
:math:`n` digits uniform over 0-9 (repeats allowed); for each, a source image
of that digit uniform over the split's pool; the gaps between neighbours
:math:`g_i \sim U\{0..g\}`, :math:`g = \min(4, \lfloor (112 - 16 n) / (n - 1)
\rfloor)`; the left edge uniform over the positions that keep the row on the
canvas; and each digit's top edge uniform in 0..8.  Each digit is scaled x2 by
repeating pixels (16x16), its values mapped to 0..255 (:math:`\lfloor (255 v +
8) / 16 \rfloor`), and drawn white on a black 24x112 canvas, left to right
(the digits' 16x16 cells never overlap).  The image is stored as RGB, gray
repeated, so that every captioning dataset has three channels.  The caption is
the digits' words (``"3 1 4"``); each digit is a
:class:`~memnets.data.images.SceneObject` (colour ``"white"``, shape its word,
size ``None``) whose box is the tight box of its nonzero pixels.

Splits: train 20000, dev 1000, test 2000.  The JSONL line of an image holds,
per digit, its value, its source image (an index into ``load_digits``) and its
position; the image is composed when read (:func:`read_digit_strings`), and
the manifest records the sha256 of the source images, so that other digits
(another scikit-learn) never pass for these.

This module is a leaf: it imports the standard library, numpy,
:mod:`memnets.data.images` and, when first needed, scikit-learn.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memnets.data.images import CaptionExample, RowReader, SceneObject, box_centre
from memnets.data.text import read_json_lines
from memnets.errors import ConfigError, DataError

GENERATOR_VERSION = 1
#: Images per split by default.
DIGIT_STRING_COUNTS = {"train": 20000, "dev": 1000, "test": 2000}
POOL_SHARES = {"train": 0.7, "dev": 0.1, "test": 0.2}
CANVAS_HEIGHT, CANVAS_WIDTH = 24, 112
SCALE = 2  # an 8x8 source digit becomes 16x16
CELL = 8 * SCALE
MIN_DIGITS, MAX_DIGITS = 2, 6
MAX_GAP = 4  # pixels between neighbouring digits' cells, at most
DIGIT_WORDS = tuple(str(d) for d in range(10))


@functools.lru_cache(maxsize=1)
def load_uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI digits as scikit-learn ships them: ``images`` ``(1797, 8, 8)`` uint8
    (values 0..16) and ``labels`` ``(1797,)`` int64.  Read once per process.

    Raises:
        DataError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digit strings need scikit-learn's handwritten digits: pip install "
                        "'memnets[vision]' (or pip install scikit-learn)") from None
    digits = load_digits()
    images = np.asarray(digits.images).round().astype(np.uint8)
    labels = np.asarray(digits.target).astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def source_header() -> dict:
    """What the manifest records about the source digits (name, count, sha256)."""
    images, labels = load_uci_digits()
    h = hashlib.sha256(images.tobytes())
    h.update(labels.tobytes())
    return {"source": {"name": "sklearn.datasets.load_digits", "images": int(len(images)),
                       "sha256": h.hexdigest()}}


def source_pools(seed: int, n: int | None = None) -> dict[str, tuple[int, ...]]:
    """The source images of each split's pool (indices into ``load_digits``, sorted).

    Args:
        seed: the generation's seed.
        n: how many source images there are (default: ``load_digits``'s 1797).
    """
    if n is None:
        n = len(load_uci_digits()[1])
    order = list(range(n))
    random.Random(f"digit-strings/{seed}/pools").shuffle(order)
    n_train, n_dev = round(POOL_SHARES["train"] * n), round(POOL_SHARES["dev"] * n)
    cuts = {"train": order[:n_train], "dev": order[n_train:n_train + n_dev],
            "test": order[n_train + n_dev:]}
    return {split: tuple(sorted(idx)) for split, idx in cuts.items()}


def digit_string_layout(rng: random.Random, pool_by_digit: Sequence[Sequence[int]]
                        ) -> list[dict]:
    """One image's digits: ``[{"digit", "source", "x", "y"}, ...]`` left to right
    (the module docstring says how each is drawn); ``pool_by_digit[d]`` lists the
    source images of digit ``d`` that may be used."""
    n = rng.randint(MIN_DIGITS, MAX_DIGITS)
    digits = [rng.randrange(10) for _ in range(n)]
    sources = []
    for d in digits:
        if not pool_by_digit[d]:
            raise DataError(f"expected source images of the digit {d} in the pool, got none")
        sources.append(rng.choice(pool_by_digit[d]))
    most = min(MAX_GAP, (CANVAS_WIDTH - CELL * n) // (n - 1))
    gaps = [rng.randint(0, most) for _ in range(n - 1)]
    x = rng.randint(0, CANVAS_WIDTH - CELL * n - sum(gaps))
    out = []
    for i, (d, s) in enumerate(zip(digits, sources)):
        out.append({"digit": d, "source": int(s), "x": x,
                    "y": rng.randint(0, CANVAS_HEIGHT - CELL)})
        if i < n - 1:
            x += CELL + gaps[i]
    return out


def generate_rows(seed: int, counts: dict[str, int]) -> dict[str, list[dict]]:
    """The JSONL rows of every split (``counts``: images per split)."""
    labels = load_uci_digits()[1]
    pools = source_pools(seed, len(labels))
    out = {}
    for split, n in counts.items():
        if split not in pools:
            raise ConfigError(f"digit-strings: expected splits among {', '.join(pools)}, "
                              f"got {split!r}")
        by_digit = [[s for s in pools[split] if labels[s] == d] for d in range(10)]
        out[split] = [{"digits": digit_string_layout(
                           random.Random(f"digit-strings/{seed}/{split}/{k}"), by_digit),
                       "height": CANVAS_HEIGHT, "width": CANVAS_WIDTH} for k in range(n)]
    return out


def digit_cells(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every source digit (``(n, 8, 8)``, values 0..16) as its 16x16 cell (0..255),
    ``(n, 16, 16)`` uint8, and the tight box of each cell's nonzero pixels,
    ``(n, 4)`` int (x0, y0, x1, y1; the whole cell for a blank one)."""
    big = np.repeat(np.repeat(images.astype(np.uint16), SCALE, axis=1), SCALE, axis=2)
    cells = ((big * 255 + 8) // 16).astype(np.uint8)  # (n, 16, 16)
    boxes = np.tile(np.array([0, 0, CELL, CELL]), (len(cells), 1))
    for i, cell in enumerate(cells):
        rows, cols = np.nonzero(cell)
        if len(rows):
            boxes[i] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    return cells, boxes


@functools.lru_cache(maxsize=1)
def _uci_cells() -> tuple[np.ndarray, np.ndarray]:
    return digit_cells(load_uci_digits()[0])


def compose(placements: Sequence[dict], cells: np.ndarray, boxes: np.ndarray
            ) -> tuple[np.ndarray, list[SceneObject]]:
    """The image of ``placements`` (a row's ``digits``), ``(24, 112, 3)`` uint8, and
    one :class:`~memnets.data.images.SceneObject` per digit, from the source
    digits' cells and boxes (:func:`digit_cells`)."""
    canvas = np.zeros((CANVAS_HEIGHT, CANVAS_WIDTH), dtype=np.uint8)
    objects = []
    for p in placements:
        x, y, s = p["x"], p["y"], p["source"]
        region = canvas[y:y + CELL, x:x + CELL]
        np.maximum(region, cells[s], out=region)
        x0, y0, x1, y1 = (int(v) for v in boxes[s])
        box = (x + x0, y + y0, x + x1, y + y1)
        objects.append(SceneObject("white", str(p["digit"]), None, box_centre(box), box))
    return np.repeat(canvas[..., None], 3, axis=2), objects


def read_digit_strings(folder: str | os.PathLike, split: str) -> list[CaptionExample]:
    """The examples of a digit-string split: image, caption (the digit words), one
    object per digit (left to right), and ``word_objects`` ``(0, 1, ..., n - 1)``.

    Args:
        folder: the dataset's folder (``memnets.data.scenes.ensure_generated``).
        split: ``train``, ``dev`` or ``test``.

    Raises:
        DataError: a missing file, scikit-learn missing, or a line that is not a
            digit string (``<file>:<line>: expected ..., got ...``), e.g. a source
            image whose label is not the digit given.
    """
    if split not in DIGIT_STRING_COUNTS:
        raise ConfigError(f"digit-strings: expected a split among "
                          f"{', '.join(DIGIT_STRING_COUNTS)}, got {split!r}")
    path = Path(folder) / f"{split}.jsonl"
    rows = read_json_lines(path, "a digit-strings file (one image per line)")
    labels = load_uci_digits()[1]
    cells, boxes = _uci_cells()
    out = []
    for i, row in rows:
        field = RowReader(path, i)
        field(row, "width", int, lambda v: v == CANVAS_WIDTH, str(CANVAS_WIDTH))
        field(row, "height", int, lambda v: v == CANVAS_HEIGHT, str(CANVAS_HEIGHT))
        digits = field(row, "digits", list, lambda v: len(v) >= 1, "a non-empty list")
        placements = []
        for item in digits:
            try:  # the common case, checked quickly; the slow path below says what is wrong
                d, s, x, y = item["digit"], item["source"], item["x"], item["y"]
                if (type(d) is int and type(s) is int and type(x) is int and type(y) is int
                        and 0 <= s < len(labels) and labels[s] == d
                        and 0 <= x <= CANVAS_WIDTH - CELL and 0 <= y <= CANVAS_HEIGHT - CELL):
                    placements.append(item)
                    continue
            except (KeyError, TypeError):
                pass
            d = field(item, "digit", int, lambda v: 0 <= v <= 9, "a digit 0..9")
            s = field(item, "source", int, lambda v: 0 <= v < len(labels),
                      f"a source image index in 0..{len(labels) - 1}")
            if labels[s] != d:
                raise field.fail(f"source image {s} to show a {d}", f"a {int(labels[s])}")
            x = field(item, "x", int, lambda v: 0 <= v <= CANVAS_WIDTH - CELL,
                      f"an integer in 0..{CANVAS_WIDTH - CELL}")
            y = field(item, "y", int, lambda v: 0 <= v <= CANVAS_HEIGHT - CELL,
                      f"an integer in 0..{CANVAS_HEIGHT - CELL}")
            placements.append({"digit": d, "source": s, "x": x, "y": y})
        image, objects = compose(placements, cells, boxes)
        out.append(CaptionExample(image, tuple(str(p["digit"]) for p in placements),
                                  tuple(objects), tuple(range(len(objects)))))
    return out


def name_objects_digits(words: Sequence[str], objects: Sequence[SceneObject]
                        ) -> list[int | None]:
    """For a generated caption, the object each word names: the ``k``-th digit word
    names the ``k``-th object (while there is one); other words name none.

    Example::

        >>> from memnets.data.digit_strings import name_objects_digits
        >>> name_objects_digits(["3", "<unk>", "1", "4"], ["a", "b"])
        [0, None, 1, None]
    """
    out: list[int | None] = []
    k = 0
    for w in words:
        if w in DIGIT_WORDS:
            out.append(k if k < len(objects) else None)
            k += 1
        else:
            out.append(None)
    return out
