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


def build_optimizer(model: nn.Module, cfg: OptimizerConfig):
    """The optimizer named by ``cfg.name`` over the model's trainable parameters.

    With ``cfg.sparse_embedding_lr``, every trainable ``nn.Embedding`` is switched
    to sparse gradients (only the rows of a batch's words) and updated by
    ``torch.optim.SparseAdam`` at that rate, the rest by the named optimizer:
    a :class:`SplitOptimizer` of the two.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("expected a model with trainable parameters, got none")
    if cfg.sparse_embedding_lr is None:
        return _dense(params, cfg)
    tables = [m for m in model.modules()
              if isinstance(m, nn.Embedding) and m.weight.requires_grad]
    if not tables:
        raise ValueError("optimizer.sparse_embedding_lr: expected a model with a trainable "
                         "nn.Embedding, got none")
    for m in tables:
        m.sparse = True  # the gradient holds only the rows looked up
    sparse_ids = {id(m.weight) for m in tables}
    dense = [p for p in params if id(p) not in sparse_ids]
    sparse = [p for p in params if id(p) in sparse_ids]
    return SplitOptimizer(_dense(dense, cfg) if dense else None,
                          torch.optim.SparseAdam(sparse, lr=cfg.sparse_embedding_lr,
                                                 betas=tuple(cfg.betas), eps=cfg.eps),
                          lr_scale=cfg.sparse_embedding_lr / cfg.lr if cfg.lr else 1.0)


class SplitOptimizer:
    """Two optimizers as one: the dense parameters' and SparseAdam for embeddings.

    ``param_groups``, ``zero_grad``, ``step``, ``state_dict`` and
    ``load_state_dict`` behave as one optimizer's (states indexed dense first,
    then sparse), so checkpoints and the schedule treat it like any other; the
    sparse groups carry ``lr_scale``, the ratio of their rate to ``optimizer.lr``,
    which :func:`set_lr` applies.
    """

    def __init__(self, dense: torch.optim.Optimizer | None, sparse: torch.optim.Optimizer,
                 *, lr_scale: float) -> None:
        self.parts = [o for o in (dense, sparse) if o is not None]
        for group in sparse.param_groups:
            group["lr_scale"] = lr_scale

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.parts for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.parts:
            o.step()

    def _sizes(self) -> list[int]:
        return [sum(len(g["params"]) for g in o.param_groups) for o in self.parts]

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for o, n in zip(self.parts, self._sizes()):
            sd = o.state_dict()
            state.update({offset + int(i): v for i, v in sd["state"].items()})
            groups += [{**g, "params": [offset + i for i in g["params"]]}
                       for g in sd["param_groups"]]
            offset += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        offset, g0 = 0, 0
        for o, n in zip(self.parts, self._sizes()):
            k = len(o.param_groups)
            groups = [{**g, "params": [i - offset for i in g["params"]]}
                      for g in sd["param_groups"][g0:g0 + k]]
            state = {int(i) - offset: v for i, v in sd["state"].items()
                     if offset <= int(i) < offset + n}
            o.load_state_dict({"state": state, "param_groups": groups})
            offset, g0 = offset + n, g0 + k


def _dense(params: list, cfg: OptimizerConfig) -> torch.optim.Optimizer:
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
    """Set every group's rate to ``lr`` (times the group's ``lr_scale``, if any)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
