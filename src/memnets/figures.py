"""Figures that any layer may draw: the one place matplotlib is set up.

:func:`weight_heatmap` draws weights in [0, 1] (attention maps of the bAbI and
slot-filling ``predict --png``); :func:`save_png` writes and closes a figure
(used by :mod:`memnets.train.plots` too).  matplotlib runs on its Agg backend
(no display).

A leaf: this module may import matplotlib, numpy and torch only (tensors come
in already made).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

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
