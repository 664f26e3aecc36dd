"""Plots of runs: learning curves (``memnets plot``/``compare``), gradient norms
over time (``memnets plot-gradients``) and attention heatmaps (the tasks'
``predict --png``).  Uses matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from memnets.train.logs import read_rows  # noqa: E402


def _run_label(run_dir: Path) -> str:
    results = run_dir / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        return f"{r.get('cell', run_dir.name)} ({run_dir.name})"
    return run_dir.name


def plot_curves(run_dirs: list[Path], out: Path, *, metric: str | None = None,
                baseline: float | None = None, title: str | None = None,
                labels: list[str] | None = None) -> Path:
    """One line per run: the dev ``metric`` (default: the task's main metric) over
    steps, solid, and the same training metric, faint; a dashed baseline."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    positive = True
    names = []
    for i, run in enumerate(run_dirs):
        run = Path(run)
        rows = read_rows(run)
        if not rows:
            raise ValueError(f"{run}: no metrics.jsonl rows to plot")
        m = metric
        if m is None:
            res = run / "results.json"
            m = json.loads(res.read_text())["main_metric"] if res.is_file() else None
        if m is None:
            m = next(k for k in rows[-1] if k not in ("step", "epoch", "split", "time", "lr"))
        names.append(m)
        label = labels[i] if labels else _run_label(run)
        color = f"C{i}"
        dev = [(r["step"], r[m]) for r in rows if r.get("split") == "dev" and m in r]
        tr = [(r["step"], r[m]) for r in rows if r.get("split") == "train" and m in r]
        if tr:
            ax.plot(*zip(*tr), color=color, alpha=0.3, lw=1)
        if dev:
            ax.plot(*zip(*dev), color=color, lw=2, marker="o", ms=3, label=f"{label}, dev")
        positive &= all(v > 0 for _, v in dev + tr if isinstance(v, (int, float)))
        if baseline is None:
            res = run / "results.json"
            if res.is_file():
                baseline = json.loads(res.read_text()).get("baselines", {}).get(m)
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", lw=1, label=f"trivial baseline {baseline:.3g}")
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(", ".join(dict.fromkeys(names)))
    ax.set_title(title or "learning curves (faint: training batches)")
    return _finish(fig, ax, out)


def plot_gradient_norms(curves: dict[str, list[float]], out: Path, *, title: str = "") -> Path:
    r"""``curves``: label -> :math:`\lVert\partial L/\partial h_t\rVert` for t = 1..T, log scale."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, (label, norms) in enumerate(curves.items()):
        ax.plot(range(1, len(norms) + 1), norms, color=f"C{i}", lw=1.5, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel(r"$\|\partial L / \partial h_t\|$ (batch mean)")
    ax.set_title(title or "gradient of the loss with respect to the hidden state")
    return _finish(fig, ax, out)


def weight_heatmap(weights, out: Path, *, columns: list[str], rows: list[str],
                   title: str = "", size: tuple[float, float], rotate_columns: bool = False,
                   annotate: bool = True) -> Path:
    """Weights in [0, 1] as a PNG: ``weights[r, c]`` in row ``rows[r]``, column
    ``columns[c]``, blue for large; each cell's value written in it when ``annotate``."""
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
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _finish(fig, ax, out: Path) -> Path:
    """Grid, legend and layout shared by every plot; write the PNG and close the figure."""
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
