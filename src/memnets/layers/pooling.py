r"""Masked pooling: one vector per sequence from a layer's outputs over its valid steps.

Used by the classifier's read-out and the slot tagger's intent head.  Padding
is ignored whatever it holds: only steps ``t < lengths[n]`` of sequence ``n``
count.  This module imports torch and :mod:`memnets.layers.sequence`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memnets.layers.sequence import valid_mask

POOLINGS = ("last", "mean", "max", "attention")


def attention_scorer(size: int, heads: int = 1) -> nn.Sequential:
    r"""The scores of attention pooling, :math:`s_t = V^\top \tanh(W_a h_t + b_a)`:
    ``Linear(size, size)``, ``Tanh``, ``Linear(size, heads, bias=False)``; one
    column of :math:`V` per head.  ``(N, L, size) -> (N, L, heads)``."""
    return nn.Sequential(nn.Linear(size, size), nn.Tanh(), nn.Linear(size, heads, bias=False))


def attention_weights(scores: Tensor, lengths: Tensor) -> Tensor:
    """A softmax over each sequence's valid steps, per head: scores ``(N, L, heads)``
    to weights ``(N, L, heads)``, zero at padding, summing to 1 over ``L``."""
    valid = valid_mask(lengths, scores.shape[1], scores.device).t()  # (N, L)
    return scores.masked_fill(~valid.unsqueeze(2), float("-inf")).softmax(1)


def pool(h: Tensor, lengths: Tensor, how: str, *, scorer: nn.Module | None = None,
         bidirectional: bool = False) -> Tensor:
    r"""Pool ``h`` ``(N, L, F)`` over each sequence's valid steps.

    * ``last``: :math:`h_{T_n}` at the last valid step; with ``bidirectional``
      (the first half of the features is the forward direction, the second
      the backward one) the forward half at the last step joined with the
      backward half at the first step, each direction's summary of the whole
      sequence;
    * ``mean``: :math:`\frac{1}{T_n}\sum_{t \le T_n} h_t`;
    * ``max``: the element-wise maximum over the valid steps;
    * ``attention``: :math:`c = \sum_t \alpha_t h_t`,
      :math:`\alpha = \mathrm{softmax}_{t \le T_n}(s_t)` with the scores
      :math:`s_t` = ``scorer(h)`` ``(N, L, heads)`` (:func:`attention_scorer`;
      Yang et al., "Hierarchical attention networks for document
      classification", 2016); with several heads (Lin et al., "A structured
      self-attentive sentence embedding", 2017) the heads' vectors are
      concatenated.

    Args:
        h: ``(N, L, F)``; padded steps may hold anything.
        lengths: ``(N,)`` valid lengths, each in ``[1, L]`` (any device).
        how: one of :data:`POOLINGS`.
        scorer: the scoring module, for ``attention`` only.
        bidirectional: for ``last``: split the features into two directions.

    Returns:
        ``(N, F)``, or ``(N, heads * F)`` for ``attention``.
    """
    N, L, F = h.shape
    valid = valid_mask(lengths, L, h.device).t()  # (N, L)
    # padding counts for nothing below; the copy keeps h's memory layout, and with it
    # the order (and the rounding) of the sums over L
    h = h.clone(memory_format=torch.preserve_format).masked_fill_(~valid.unsqueeze(2), 0.0)
    if how == "last":
        last = h[torch.arange(N, device=h.device), lengths.to(h.device) - 1]  # (N, F)
        if not bidirectional:
            return last
        return torch.cat([last[:, : F // 2], h[:, 0, F // 2 :]], dim=1)
    if how == "mean":
        return h.sum(1) / lengths.to(h.device, h.dtype).unsqueeze(1)
    if how == "max":
        return h.masked_fill(~valid.unsqueeze(2), float("-inf")).amax(1)
    if how == "attention":
        if scorer is None:
            raise ValueError("expected a scorer for attention pooling, got none")
        alpha = attention_weights(scorer(h), lengths)  # (N, L, heads)
        return torch.einsum("nlk,nlh->nkh", alpha, h).flatten(1)  # (N, heads * F)
    raise ValueError(f"expected pooling one of {POOLINGS}, got {how!r}")
