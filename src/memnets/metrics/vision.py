r"""Scores of the vision tasks: exact match of captions, and attention localisation.

Exact match is the share of captions (in percent) that equal their reference
word for word; on digit strings it is the sequence accuracy.

Attention localisation asks whether a model looked where the word it wrote (or
the answer it gave) is.  The attention is a distribution :math:`\alpha` over
the :math:`S` cells of the image encoder's grid, each cell :math:`i` a pixel
rectangle :math:`R_i` (the image cut evenly into :math:`h \times w`
rectangles); the peak hits an object with box :math:`B` when

.. math::
    \hat\imath = \operatorname*{arg\,max}_i \alpha_i, \qquad
    \mathrm{hit} = [\, R_{\hat\imath} \cap B \ne \emptyset \,],
    \qquad \mathrm{localisation} = 100 \cdot \frac{\sum \mathrm{hit}}{\#\,\text{words}}

over every word that names an object (the first maximum when several cells tie).
A cell can be larger than an object: a 75-pixel Sort-of-CLEVR image on a
:math:`5 \times 5` grid has 15-pixel cells, an object 10 pixels across, so "in
the box" means that the peak *cell* overlaps the box, not that a point lies in
it.  Its chance level is what a peak drawn uniformly over the cells scores,
the share of cells that overlap the box,

.. math::
    \mathrm{chance}(B) = \frac{1}{S} \sum_i [\, R_i \cap B \ne \emptyset \,],

averaged over the same words (``localisation_chance`` of the tasks).

Boxes are ``(x0, y0, x1, y1)`` in pixels, half-open: :math:`[x_0, x_1) \times
[y_0, y_1)`; two boxes overlap when their intersection has positive area.
Attention and cell boxes may be tensors, arrays or nested lists.

This module is a leaf: it imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]


def _rows(values) -> list:
    """Nested lists of a tensor, an array or a (nested) sequence."""
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu()
    return values.tolist() if hasattr(values, "tolist") else [
        _rows(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v for v in values]


def exact_match(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
                ) -> float:
    """The share of hypotheses (token lists) equal to their reference, in percent.

    Raises:
        ValueError: not one reference per hypothesis, or no hypotheses.
    """
    hyps, refs = list(hypotheses), list(references)
    if len(hyps) != len(refs):
        raise ValueError(f"expected one reference per hypothesis, got {len(hyps)} hypotheses "
                         f"and {len(refs)} references")
    if not hyps:
        raise ValueError("expected at least one hypothesis, got none")
    same = sum(list(h) == list(r) for h, r in zip(hyps, refs))
    return 100.0 * same / len(hyps)


def _box(box, what: str) -> Box:
    b = [float(v) for v in _rows(box)]
    if len(b) != 4:
        raise ValueError(f"expected {what} as (x0, y0, x1, y1), got {len(b)} values")
    return b[0], b[1], b[2], b[3]


def boxes_overlap(a, b) -> bool:
    """Whether the half-open boxes ``a`` and ``b`` share an area."""
    ax0, ay0, ax1, ay1 = _box(a, "a box")
    bx0, by0, bx1, by1 = _box(b, "a box")
    return ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1


def peak_cell(attention) -> int:
    """The index of the largest weight of ``(S,)`` attention (the first of ties)."""
    weights = [float(v) for v in _rows(attention)]
    if not weights:
        raise ValueError("expected attention over at least one cell, got none")
    return max(range(len(weights)), key=lambda i: (weights[i], -i))


def _cells(cell_boxes, size: int | None = None) -> list[Box]:
    cells = [_box(c, "a cell box") for c in _rows(cell_boxes)]
    if size is not None and len(cells) != size:
        raise ValueError(f"expected one cell box per attention weight ({size}), got "
                         f"{len(cells)}")
    return cells


def peak_in_box(attention, cell_boxes, box) -> bool:
    """Whether the rectangle of the ``(S,)`` attention's peak cell (of the ``(S, 4)``
    ``cell_boxes``) overlaps ``box``."""
    weights = _rows(attention)
    cells = _cells(cell_boxes, len(weights))
    return boxes_overlap(cells[peak_cell(weights)], box)


def box_chance(cell_boxes, box) -> float:
    """The share of the ``(S, 4)`` cells that overlap ``box``: the chance that a
    uniformly drawn peak cell counts as a hit."""
    cells = _cells(cell_boxes)
    if not cells:
        raise ValueError("expected at least one cell box, got none")
    return sum(boxes_overlap(c, box) for c in cells) / len(cells)


def _check_named(attention: list, named: Sequence[int | None], boxes: Sequence) -> None:
    if len(attention) < len(named):
        raise ValueError(f"expected an attention row per word ({len(named)}), got "
                         f"{len(attention)}")
    for k in named:
        if k is not None and not 0 <= k < len(boxes):
            raise ValueError(f"expected object indices in [0, {len(boxes)}), got {k}")


def localisation(attention, named: Sequence[int | None], boxes: Sequence,
                 cell_boxes) -> tuple[int, int]:
    """``(hits, total)`` of one caption or answer sequence.

    Args:
        attention: ``(T, S)``: row ``t`` the attention with which word ``t`` was
            produced (rows past ``len(named)``, e.g. the end token's, are ignored).
        named: per word, the index of the object it names, or ``None``.
        boxes: the objects' boxes.
        cell_boxes: ``(S, 4)``, the pixel rectangle of each grid cell.

    Returns:
        the words whose attention peak overlaps their object's box, and the words
        that name an object.
    """
    rows = _rows(attention)
    _check_named(rows, named, boxes)
    cells = _cells(cell_boxes)
    hits = total = 0
    for t, k in enumerate(named):
        if k is None:
            continue
        total += 1
        if len(rows[t]) != len(cells):
            raise ValueError(f"expected attention over {len(cells)} cells, got {len(rows[t])}")
        hits += boxes_overlap(cells[peak_cell(rows[t])], boxes[k])
    return hits, total


def localisation_chance(named: Sequence[int | None], boxes: Sequence, cell_boxes) -> float:
    """The chance hits of :func:`localisation`'s words: the sum over the words that
    name an object of :func:`box_chance` of its box (divide by ``total`` for the
    chance level)."""
    cells = _cells(cell_boxes)
    out = 0.0
    for k in named:
        if k is None:
            continue
        if not 0 <= k < len(boxes):
            raise ValueError(f"expected object indices in [0, {len(boxes)}), got {k}")
        out += sum(boxes_overlap(c, boxes[k]) for c in cells) / len(cells)
    return out
