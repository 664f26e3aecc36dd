"""Training: the loop (:func:`train`), checkpoints, optimizers and schedules,
distributed set-up, metric logs and plots.

The loop knows nothing about applications: it talks to a
:class:`memnets.tasks.Task`.
"""

from memnets.train.runs import load_run, make_task
from memnets.train.trainer import Trainer, TrainingError, train

__all__ = ["Trainer", "TrainingError", "load_run", "make_task", "train"]
