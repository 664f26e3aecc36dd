"""Plots of runs: learning curves (``memnets plot``/``compare``) and gradient
norms over time (``memnets plot-gradients``).  The figure plumbing (matplotlib's
Agg backend, writing a PNG) and the attention heatmaps of the tasks' ``predict
--png`` are in :mod:`memnets.figures`.

This module may import matplotlib, :mod:`memnets.figures` and :mod:`memnets.train.logs`.
"""

from __future__ import annotations

import json
from pathlib import Path

from memnets.figures import plt, save_png
from memnets.train.logs import read_rows


def _run_label(run_dir: Path) -> str:
    results = run_dir / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        return f"{r.get('cell') or run_dir.name} ({run_dir.name})"
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


def _finish(fig, ax, out: Path) -> Path:
    """Grid, legend and layout shared by every plot; write the PNG and close the figure."""
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_png(fig, out)
