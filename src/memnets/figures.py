"""Figures that any layer may draw: the one place matplotlib is set up.

:func:`weight_heatmap` draws weights in [0, 1] (attention maps of the bAbI and
slot-filling ``predict --png``); :func:`save_png` writes and closes a figure
(used by :mod:`memnets.train.plots` too); :func:`attention_over_image` lays
attention over an image's grid on the image itself, one panel per word or
hop (captioning and visual question answering).  matplotlib runs on its Agg
backend (no display).

A leaf: this module may import matplotlib, numpy and torch only (tensors come
in already made).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_png(fig, out: Path, *, dpi: float | None = None) -> Path:
    """Lay out ``fig``, write it to ``out`` (folders made as needed; ``dpi`` default:
    the figure's own) and close it; returns ``out`` as a Path."""
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def weight_heatmap(weights, out: Path, *, columns: list[str], rows: list[str],
                   title: str = "", size: tuple[float, float], rotate_columns: bool = False,
                   annotate: bool = True, label: str = "attention weight") -> Path:
    """Weights in [0, 1] as a PNG: ``weights[r, c]`` in row ``rows[r]``, column
    ``columns[c]``, blue for large; each cell's value written in it when ``annotate``;
    the colour bar is labelled ``label``."""
    values = weights.detach().cpu().float().numpy()
    R, C = values.shape
    fig, ax = plt.subplots(figsize=size)
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    if rotate_columns:
        ax.set_xticks(range(C), columns, rotation=45, ha="right", fontsize=8)
    else:
        ax.set_xticks(range(C), columns)
    ax.set_yticks(range(R), rows, fontsize=8)
    if annotate:
        for r in range(R):
            for c in range(C):
                v = float(values[r, c])
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04).set_label(label, fontsize=8)
    return save_png(fig, out, dpi=110)


def upsample_grid(weights, height: int, width: int) -> np.ndarray:
    """``(h, w)`` grid weights as an ``(height, width)`` image: cell ``(r, c)`` sits at
    the centre of its rectangle (the image cut evenly into ``h x w`` rectangles) and
    every pixel interpolates linearly between the nearest centres, along rows and
    then columns (constant beyond the outer centres)."""
    grid = np.asarray(_array(weights), dtype=np.float64)
    if grid.ndim != 2:
        raise ValueError(f"expected (h, w) attention weights, got shape {grid.shape}")
    h, w = grid.shape
    ys = (np.arange(h) + 0.5) * height / h - 0.5  # cell centres, in pixel coordinates
    xs = (np.arange(w) + 0.5) * width / w - 0.5
    rows = np.stack([np.interp(np.arange(width), xs, grid[r]) for r in range(h)])  # (h, W)
    return np.stack([np.interp(np.arange(height), ys, rows[:, x]) for x in range(width)],
                    axis=1)  # (H, W)


def _array(values):
    if hasattr(values, "detach"):  # a torch tensor (floats as float64)
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()
    return values


def _is_box(value) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 4
            and all(isinstance(v, (int, float, np.integer, np.floating)) for v in value))


def attention_over_image(image, maps: Sequence[tuple[str, object]], out: Path, *,
                         title: str = "", boxes=None, columns: int = 6) -> Path:
    """Attention over an image as a PNG, as Xu et al. ("Show, attend and tell",
    2015) draw it: one panel per map, each the image with its ``(h, w)`` grid
    weights upsampled (:func:`upsample_grid`) and laid over it (bright where the
    model looks, the image dimmed elsewhere; one brightness scale, the largest
    weight of all maps, so that a diffuse map looks dimmer than a sharp one),
    titled by the map's label.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        maps: ``(label, weights)`` pairs; ``weights`` ``(h, w)`` (tensor or array),
            e.g. a generated word and the attention it was written with, or a hop.
        out: the PNG file.
        title: drawn above the panels (e.g. the caption).
        boxes: ``None``; one box ``(x0, y0, x1, y1)`` drawn on every panel; or one
            entry per map, each a box or ``None`` (e.g. the box of the object the
            word names), drawn as a magenta rectangle.
        columns: panels per row at most.
    """
    from matplotlib.patches import Rectangle

    img = np.asarray(_array(image))
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if not maps:
        raise ValueError("expected at least one attention map, got none")
    if boxes is None:
        per_panel = [None] * len(maps)
    elif _is_box(boxes):
        per_panel = [tuple(boxes)] * len(maps)
    else:
        per_panel = list(boxes)
        if len(per_panel) != len(maps):
            raise ValueError(f"expected one box (or None) per map ({len(maps)}), got "
                             f"{len(per_panel)}")
    H, W = img.shape[:2]
    base = img.astype(np.float64) / 255.0
    n = len(maps)
    cols = max(1, min(columns, n))
    rows = (n + cols - 1) // cols
    side = 2.1 * max(1.0, min(W / H, 4.0))
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, 2.3 * rows + (0.4 if title
                                                                              else 0.0)),
                             squeeze=False)
    ups = [upsample_grid(weights, H, W) for _, weights in maps]  # (H, W) each
    peak = max(float(up.max()) for up in ups)  # one scale for every panel
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        label = maps[k][0]
        light = ups[k] / peak if peak > 0 else ups[k]  # (H, W) in [0, 1]
        ax.imshow(np.clip(base * (0.25 + 0.75 * light[:, :, None]), 0.0, 1.0),
                  interpolation="nearest")
        ax.imshow(light, cmap="gray", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="nearest")
        box = per_panel[k]
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor="magenta", linewidth=1.2))
        ax.set_title(str(label), fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, out, dpi=100)
