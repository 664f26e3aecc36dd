"""Averaging several trained classifiers: the mean of their class probabilities.

This module imports torch only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ProbabilityEnsemble(nn.Module):
    r"""Several trained classifiers of one design, voting with their probabilities.

    .. math::
        \log p(y \mid x) = \log \frac{1}{M} \sum_{m=1}^{M} \mathrm{softmax}(f_m(x))_y

    ``forward`` takes what a member takes and returns these log-probabilities,
    ``(N, C)``; as logits they give the ensemble's class probabilities under a
    softmax, so a task's loss and accuracy apply unchanged.

    Args:
        members: the trained models; each maps the same inputs to ``(N, C)`` logits.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("expected at least one member model, got none")
        self.members = nn.ModuleList(members)

    def forward(self, *args, **kwargs) -> Tensor:
        logp = torch.stack([torch.log_softmax(m(*args, **kwargs), -1)
                            for m in self.members])  # (M, N, C)
        return torch.logsumexp(logp, 0) - math.log(len(self.members))  # (N, C)
