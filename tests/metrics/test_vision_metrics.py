"""Exact match and attention localisation against hand-worked cases and a brute-force
reference that paints boxes and grid cells as pixel masks; the upsampling of
attention grids against a per-pixel interpolation written in cell coordinates."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from memnets.figures import upsample_grid
from memnets.metrics.vision import (
    box_chance,
    boxes_overlap,
    exact_match,
    localisation,
    localisation_chance,
    peak_cell,
    peak_in_box,
)


def grid_boxes(height, width, h, w):
    """The image cut evenly into h x w rectangles, row-major (integer pixel edges)."""
    ys = [round(height * r / h) for r in range(h + 1)]
    xs = [round(width * c / w) for c in range(w + 1)]
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(h) for c in range(w)]


def mask(box, height, width):
    m = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = box
    m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return m


def test_exact_match_counts_whole_captions():
    hyps = [["a", "red", "circle"], ["3", "1"], ["a", "blue", "square"], []]
    refs = [["a", "red", "circle"], ["3", "1", "4"], ["a", "blue", "square"], []]
    assert exact_match(hyps, refs) == pytest.approx(75.0)
    assert exact_match([("x",)], [["x"]]) == 100.0  # tuples and lists alike
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        exact_match(hyps, refs[:2])
    with pytest.raises(ValueError, match="at least one"):
        exact_match([], [])


def test_hand_worked_overlaps_of_half_open_boxes():
    cells = grid_boxes(64, 64, 4, 4)  # 16-pixel cells
    assert cells[5] == (16, 16, 32, 32)
    assert boxes_overlap((10, 10, 20, 20), (16, 16, 32, 32))
    assert not boxes_overlap((32, 16, 48, 32), (16, 16, 32, 32))  # edges touch: no area
    assert not boxes_overlap((0, 0, 16, 16), (16, 0, 32, 16))
    assert box_chance(cells, (10, 10, 20, 20)) == pytest.approx(4 / 16)
    assert box_chance(cells, (16, 16, 32, 32)) == pytest.approx(1 / 16)  # exactly one cell
    assert box_chance(cells, (0, 0, 64, 64)) == 1.0
    # a 75-pixel image on a 5 x 5 grid: 15-pixel cells, larger than a 10-pixel object
    big = grid_boxes(75, 75, 5, 5)
    assert box_chance(big, (20, 20, 30, 30)) == pytest.approx(1 / 25)
    assert box_chance(big, (25, 25, 35, 35)) == pytest.approx(4 / 25)


def test_peak_takes_the_first_maximum():
    assert peak_cell([0.1, 0.4, 0.4, 0.1]) == 1
    assert peak_cell(torch.tensor([0.0, 0.0, 1.0])) == 2
    with pytest.raises(ValueError, match="at least one cell"):
        peak_cell([])


def test_localisation_against_pixel_masks():
    rng = random.Random(0)
    H, W, h, w = 48, 80, 3, 5
    cells = grid_boxes(H, W, h, w)
    cell_t = torch.tensor(cells, dtype=torch.float32)  # (S, 4) as an encoder gives them
    for _ in range(50):
        n_objects = rng.randint(1, 4)
        boxes = []
        for _ in range(n_objects):
            x0, y0 = rng.randrange(W - 4), rng.randrange(H - 4)
            boxes.append((x0, y0, min(W, x0 + rng.randint(1, 20)), min(H, y0 + rng.randint(1, 20))))
        T = rng.randint(1, 8)
        attention = torch.rand(T + 1, h * w, dtype=torch.float64).softmax(-1)  # + end row
        named = [rng.choice([None, *range(n_objects)]) for _ in range(T)]
        hits = total = 0
        chance = 0.0
        for t, k in enumerate(named):
            if k is None:
                continue
            total += 1
            obj = mask(boxes[k], H, W)
            peak = int(torch.argmax(attention[t]))
            hits += bool((mask(cells[peak], H, W) & obj).any())
            chance += np.mean([(mask(c, H, W) & obj).any() for c in cells])
            assert peak_in_box(attention[t], cell_t, boxes[k]) == bool(
                (mask(cells[peak], H, W) & obj).any())
        assert localisation(attention, named, boxes, cell_t) == (hits, total)
        assert localisation_chance(named, boxes, cell_t) == pytest.approx(chance)


def test_localisation_refuses_what_does_not_fit():
    cells = grid_boxes(32, 32, 2, 2)
    att = torch.full((2, 4), 0.25)
    with pytest.raises(ValueError, match="attention row per word"):
        localisation(att, [0, None, 0], [(0, 0, 4, 4)], cells)
    with pytest.raises(ValueError, match="object indices"):
        localisation(att, [1], [(0, 0, 4, 4)], cells)
    with pytest.raises(ValueError, match="over 4 cells"):
        localisation(torch.full((1, 3), 1 / 3), [0], [(0, 0, 4, 4)], cells)
    with pytest.raises(ValueError, match="one cell box per attention weight"):
        peak_in_box([0.5, 0.5], cells, (0, 0, 4, 4))


def reference_upsample(grid, H, W):
    """Per pixel: its centre in cell coordinates, clamped, linear between neighbours."""
    h, w = grid.shape
    out = np.zeros((H, W))
    for y in range(H):
        for x in range(W):
            py = min(max((y + 0.5) * h / H - 0.5, 0.0), h - 1.0)
            px = min(max((x + 0.5) * w / W - 0.5, 0.0), w - 1.0)
            r0, c0 = int(np.floor(py)), int(np.floor(px))
            r1, c1 = min(r0 + 1, h - 1), min(c0 + 1, w - 1)
            fy, fx = py - r0, px - c0
            top = (1 - fx) * grid[r0, c0] + fx * grid[r0, c1]
            bottom = (1 - fx) * grid[r1, c0] + fx * grid[r1, c1]
            out[y, x] = (1 - fy) * top + fy * bottom
    return out


@pytest.mark.parametrize("shape", [(1, 1, 5, 7), (2, 3, 12, 18), (4, 4, 64, 64), (3, 14, 24, 112)])
def test_upsampled_grid_interpolates_between_cell_centres(shape):
    h, w, H, W = shape
    grid = np.random.default_rng(h * w).random((h, w))
    got = upsample_grid(torch.tensor(grid), H, W)
    assert got.shape == (H, W)
    np.testing.assert_allclose(got, reference_upsample(grid, H, W), atol=1e-12)
    assert got.min() >= grid.min() - 1e-12 and got.max() <= grid.max() + 1e-12
