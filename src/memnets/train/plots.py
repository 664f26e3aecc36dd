"""Plots of runs: learning curves (``memnets plot``/``compare``/``report``) and
gradient norms over time (``memnets plot-gradients``).  The figure plumbing
(matplotlib's Agg backend, writing a PNG) and the attention heatmaps of the
tasks' ``predict --png`` are in :mod:`memnets.figures`.

Axes: a metric that lives in a bounded range (accuracy, F1, error rates, BLEU,
correlations: :func:`is_bounded`) is drawn on a linear axis; an unbounded
positive one (loss, perplexity, MSE) on a log axis when it spans more than a
factor of 10, linear otherwise.

This module may import matplotlib, :mod:`memnets.figures` and :mod:`memnets.train.logs`.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.lines import Line2D

from memnets.figures import plt, save_png
from memnets.train.logs import read_rows

# name parts of metrics with a bounded range (percentages, rates, scores, correlations)
BOUNDED = ("accuracy", "acc", "f1", "error", "precision", "recall", "pearson", "spearman",
           "bleu", "chrf", "wer", "cer", "exact", "percent", "failed")
NOT_METRICS = ("step", "epoch", "split", "time", "lr")


def is_bounded(metric: str) -> bool:
    """True when ``metric`` names a quantity in a bounded range (accuracy, F1, an
    error rate, BLEU, a correlation): drawn on a linear axis."""
    parts = metric.lower().replace("-", "_").split("_")
    return any(p in BOUNDED for p in parts)


def y_scale(metrics: list[str], values: list[float]) -> str:
    """``"linear"`` for bounded metrics (:func:`is_bounded`) and for values within a
    factor of 10 of each other; ``"log"`` for positive values spanning more."""
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if (finite and not any(map(is_bounded, metrics)) and min(finite) > 0
            and max(finite) / min(finite) > 10):
        return "log"
    return "linear"


def metrics_of(run_dir: Path) -> list[str]:
    """The metrics that ``run_dir``'s ``metrics.jsonl`` records, in order of appearance."""
    names: dict[str, None] = {}
    for r in read_rows(run_dir):
        for k, v in r.items():
            if k not in NOT_METRICS and isinstance(v, (int, float)):
                names[k] = None
    return list(names)


def _results(run_dir: Path) -> dict:
    res = run_dir / "results.json"
    return json.loads(res.read_text()) if res.is_file() else {}


def _run_label(run_dir: Path) -> str:
    cell = _results(run_dir).get("cell")
    return f"{cell} ({run_dir.name})" if cell else run_dir.name


def plot_curves(run_dirs: list[Path], out: Path, *, metric: str | None = None,
                baseline: float | None = None, title: str | None = None,
                labels: list[str] | None = None) -> Path:
    """One colour per run: the dev ``metric`` (default: the task's main metric) over
    steps, solid with markers, and the same metric on training batches, faint; each
    run's trivial baseline (from its ``results.json``, or ``baseline``) dashed in its
    colour, listed once when all runs share it.

    Raises:
        ValueError: a run has no rows, or none of its rows has ``metric`` (the
            message lists the metrics it has).
    """
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    values, names, baselines = [], [], []
    for i, run in enumerate(run_dirs):
        run = Path(run)
        rows = read_rows(run)
        if not rows:
            raise ValueError(f"{run}: no metrics.jsonl rows to plot")
        m = metric or _results(run).get("main_metric")
        if m is None:
            m = metrics_of(run)[0]
        if not any(m in r for r in rows):
            raise ValueError(f"{run}: no metric {m!r}; expected one of "
                             f"{', '.join(metrics_of(run))}")
        names.append(m)
        label = labels[i] if labels else _run_label(run)
        color = f"C{i}"
        dev = [(r["step"], r[m]) for r in rows if r.get("split") == "dev" and m in r]
        tr = [(r["step"], r[m]) for r in rows if r.get("split") == "train" and m in r]
        if tr:
            ax.plot(*zip(*tr), color=color, alpha=0.3, lw=1)
        if dev:
            ax.plot(*zip(*dev), color=color, lw=2, marker="o", ms=3, label=f"{label}, dev")
        values += [v for _, v in dev + tr if isinstance(v, (int, float))]
        b = baseline if baseline is not None else _results(run).get("baselines", {}).get(m)
        baselines.append((b, color, label))
    _draw_baselines(ax, baselines)
    ax.set_yscale(y_scale(names, values))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(", ".join(dict.fromkeys(names)))
    ax.set_title(title or "learning curves")
    handles, _ = ax.get_legend_handles_labels()
    if any(line.get_alpha() == 0.3 for line in ax.get_lines()):
        handles.append(Line2D([], [], color="gray", alpha=0.3, lw=1,
                              label="faint: the same metric on training batches"))
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles=handles, fontsize=8)
    return save_png(fig, out)


def _draw_baselines(ax, baselines: list[tuple[float | None, str, str]]) -> None:
    known = [(b, c, lab) for b, c, lab in baselines if b is not None]
    if not known:
        return
    if len({b for b, _, _ in known}) == 1:
        b = known[0][0]
        ax.axhline(b, color="gray", ls="--", lw=1, label=f"trivial baseline {b:.3g}")
        return
    for b, color, label in known:
        ax.axhline(b, color=color, ls="--", lw=1, label=f"{label}, trivial baseline {b:.3g}")


def plot_gradient_norms(curves: dict[str, list[float]], out: Path, *, title: str = "",
                        ylabel: str = r"$\|\partial L / \partial h_t\|$ (batch mean)") -> Path:
    r"""``curves``: label -> a gradient norm for t = 1..T (by default
    :math:`\lVert\partial L/\partial h_t\rVert`), log scale, one line per label."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, (label, norms) in enumerate(curves.items()):
        ax.plot(range(1, len(norms) + 1), norms, color=f"C{i}", lw=1.5, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "gradient of the loss over time")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_png(fig, out)
