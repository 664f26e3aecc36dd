"""Optimizers and learning-rate schedules built from the recipe.

The schedule is a small pure object (:class:`LRSchedule`): the rate is a
function of the step, the epoch and, for ``plateau``, of the dev metrics seen
so far, whose state is three JSON scalars — so a checkpoint stores it without
pickling and ``--resume`` continues exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from memnets.config import OptimizerConfig, ScheduleConfig


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.name`` over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("expected a model with trainable parameters, got none")
    if cfg.name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ValueError("optimizer.nesterov: expected momentum > 0 with Nesterov, got 0")
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                   momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if len(cfg.betas) != 2:
        raise ValueError(f"optimizer.betas: expected two numbers, got {cfg.betas}")
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
               weight_decay=cfg.weight_decay)


class LRSchedule:
    """Learning rate at each step: ``base_lr`` times warm-up times the schedule's factor.

    Args:
        cfg: the recipe's ``schedule`` section.
        base_lr: ``optimizer.lr``.
        total_steps: the run's step budget (for ``cosine`` when
            ``cfg.total_steps`` is not set).
        higher_is_better: direction of the metric given to :meth:`observe`.
    """

    def __init__(self, cfg: ScheduleConfig, base_lr: float, total_steps: int,
                 higher_is_better: bool = False) -> None:
        self.cfg, self.base_lr = cfg, base_lr
        self.total_steps = max(1, cfg.total_steps or total_steps)
        self.higher_is_better = higher_is_better
        self.plateau_scale = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0

    def lr(self, step: int, epoch: int) -> float:
        """The rate for optimizer step ``step`` (0-based) in epoch ``epoch`` (0-based)."""
        c = self.cfg
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps > 0 else 1.0
        if c.name == "step":
            n = 0 if epoch < c.start_epoch else (epoch - c.start_epoch) // c.step_size + 1
            return self.base_lr * warm * c.gamma ** n
        if c.name == "plateau":
            return self.base_lr * warm * self.plateau_scale
        if c.name == "cosine":
            span = max(1, self.total_steps - c.warmup_steps)
            progress = min(1.0, max(0.0, (step - c.warmup_steps) / span))
            cos = 0.5 * (1.0 + math.cos(math.pi * progress))
            return warm * (c.min_lr + (self.base_lr - c.min_lr) * cos)
        return self.base_lr * warm

    def observe(self, metric: float) -> bool:
        """Feed a dev main-metric value (``plateau`` only); returns True if the rate decayed."""
        if self.cfg.name != "plateau" or metric is None or not math.isfinite(metric):
            return False
        best = self.plateau_best
        if best is None:
            self.plateau_best = metric
            return False
        margin = self.cfg.threshold * abs(best)
        better = metric > best + margin if self.higher_is_better else metric < best - margin
        if better:
            self.plateau_best, self.plateau_bad = metric, 0
            return False
        self.plateau_bad += 1
        if self.plateau_bad > self.cfg.patience:
            self.plateau_scale *= self.cfg.gamma
            self.plateau_bad = 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "plateau_best": self.plateau_best,
                "plateau_bad": self.plateau_bad}

    def load_state_dict(self, d: dict) -> None:
        self.plateau_scale = float(d["plateau_scale"])
        self.plateau_best = d["plateau_best"]
        self.plateau_bad = int(d["plateau_bad"])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
