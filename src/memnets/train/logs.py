"""Metrics of a run: ``metrics.jsonl`` and ``metrics.csv`` in the run directory,
TensorBoard when it is installed, and the progress bar.

Each row is a flat dict: ``step``, ``epoch``, ``split`` (``train``, ``dev``,
``test``), ``time`` (seconds since the run started, resumed runs continue the
clock), ``lr`` and the task's metrics.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from memnets.errors import CheckpointError, shorten
from memnets.train.checkpoint import atomic_write_text

JSONL, CSV = "metrics.jsonl", "metrics.csv"


def read_rows(run_dir: Path) -> list[dict]:
    """All rows of ``metrics.jsonl`` (empty if there is none)."""
    path = Path(run_dir) / JSONL
    if not path.is_file():
        return []
    rows = []
    text = path.read_bytes().decode("utf-8", errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                row = None
            if not isinstance(row, dict):
                raise CheckpointError(f"{path}:{n}: expected a JSON object per line, got "
                                      f"{shorten(line)}")
            rows.append(row)
    return rows


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLogger:
    """Append rows to JSONL (and rewrite the CSV with every column seen).

    Args:
        run_dir: the run directory; nothing is written if ``enabled`` is False
            (processes other than rank 0).
        keep_until_step: on resume, rows logged after this step (by the killed
            run, after its last checkpoint) are dropped so the curves do not
            show the same steps twice.
        tensorboard: log to ``run_dir/tensorboard`` if the package is installed.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True,
                 keep_until_step: int | None = None, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.rows: list[dict] = []
        self.tb = None
        if not enabled:
            return
        if keep_until_step is not None:
            self.rows = [r for r in read_rows(self.run_dir)
                         if isinstance(r.get("step", 0), int)
                         and r.get("step", 0) <= keep_until_step]
            atomic_write_text(self.run_dir / JSONL,
                              "".join(json.dumps(r) + "\n" for r in self.rows))
        else:
            (self.run_dir / JSONL).write_text("")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except Exception:  # not installed: JSONL and CSV are enough
                self.tb = None

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        row = {k: _clean(v) for k, v in row.items()}
        self.rows.append(row)
        with open(self.run_dir / JSONL, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._write_csv()
        if self.tb is not None:
            split = row.get("split", "train")
            for k, v in row.items():
                if k not in ("step", "epoch", "split") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{split}/{k}", v, row.get("step", 0))

    def _write_csv(self) -> None:
        cols: list[str] = []
        for r in self.rows:
            cols.extend(k for k in r if k not in cols)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(self.rows)
        (self.run_dir / CSV).write_text(buf.getvalue())

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def format_metrics(metrics: dict, keys: list[str] | None = None) -> str:
    keys = keys or list(metrics)
    out = []
    for k in keys:
        v = metrics.get(k)
        if isinstance(v, float):
            out.append(f"{k} {v:.4g}")
        elif v is not None:
            out.append(f"{k} {v}")
    return ", ".join(out)
