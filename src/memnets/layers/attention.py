r"""Attention over a sequence of keys: the one masked softmax and the one scoring module.

Written once for every model that attends — the sentence-pair models, the
translation decoder — as :func:`masked_softmax` and :class:`Attention`.  A
mask is a bool tensor, true at real positions; padded positions get weight
exactly zero, and a query with no real position gets all-zero weights (and a
zero context), never NaN.

This module imports torch, :mod:`memnets.cells.base` (the size check) and
:mod:`memnets.errors`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memnets.cells.base import check_size
from memnets.errors import ConfigError

KINDS = ("additive", "dot", "general", "concat")


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    r"""Softmax of ``scores`` along ``dim`` over the positions where ``mask`` is true.

    .. math::
        w_j = \frac{m_j \exp(s_j)}{\sum_k m_k \exp(s_k)}, \qquad
        w = 0 \text{ when } \textstyle\sum_k m_k = 0

    Args:
        scores: any float tensor.
        mask: bool, broadcastable to ``scores``, true at real positions; ``None``
            is the plain softmax.
        dim: the dimension to normalise over.

    Returns:
        weights of the shape of ``scores``: exactly zero where the mask is false,
        summing to 1 along ``dim`` wherever one position is real, all zero (with
        finite gradients) where none is.
    """
    if mask is None:
        return torch.softmax(scores, dim)
    if mask.dtype != torch.bool:
        raise ValueError(f"expected a bool mask (true at real positions), got {mask.dtype}")
    filled = scores.masked_fill(~mask, float("-inf"))
    # the shift by the maximum cancels in the ratio, so it needs no gradient; a row
    # with no real position has maximum -inf, shifted by 0 instead
    top = filled.amax(dim, keepdim=True).detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(filled - top)  # exactly 0 at padding
    total = e.sum(dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


class Attention(nn.Module):
    r"""Scores a query against every key, normalises the scores over the real keys
    and returns the weighted sum of the values.

    .. math::
        \alpha_j = \mathrm{softmax}_{j \in \text{real}}\big(\mathrm{score}(q, k_j)\big),
        \qquad c = \textstyle\sum_j \alpha_j v_j

    with, by ``kind``:

    .. math::
        \begin{aligned}
        \text{additive:} &\quad \mathrm{score}(q, k) = v^\top \tanh(W_q q + W_k k + b) \\
        \text{dot:} &\quad \mathrm{score}(q, k) = q^\top k \\
        \text{general:} &\quad \mathrm{score}(q, k) = q^\top W k \\
        \text{concat:} &\quad \mathrm{score}(q, k) = v^\top \tanh(W [q; k] + b)
        \end{aligned}

    ``additive`` is Bahdanau, Cho & Bengio, "Neural machine translation by
    jointly learning to align and translate", 2015; ``dot``, ``general`` and
    ``concat`` are Luong, Pham & Manning, "Effective approaches to
    attention-based neural machine translation", 2015.  ``additive`` and
    ``concat`` compute the same family of functions (:math:`W [q; k] = W_q q + W_k k`);
    they differ in the parameter layout: two matrices against Luong's one.

    The key-only part of a score, :meth:`project_keys` (:math:`W_k k` for
    additive, the key columns of :math:`W` times :math:`k` for concat,
    :math:`W k` for general, :math:`k` itself for dot), depends on the source
    sequence alone: a decoder computes it once and passes it back as
    ``projected=`` at every step.

    Args:
        query_size: features of a query (D_q).
        key_size: features of a key (D_k); ``dot`` needs ``key_size == query_size``.
        kind: ``additive``, ``dot``, ``general`` or ``concat``.
        attention_size: the hidden size A of ``additive`` and ``concat``; default
            ``key_size``.  Refused for the other kinds, which have none.
        bias: the bias :math:`b` inside the tanh of ``additive`` and ``concat``
            (``general`` and ``dot`` have none: a bias there adds the same amount
            to every key's score and cancels in the softmax).

    The parameters depend on the kind (``dot`` has none).  Matrices are
    Xavier-uniform (they feed a tanh or a product of unit-scale vectors),
    :math:`v` uniform in :math:`\pm 1/\sqrt{A}`, biases zero.

    Attributes:
        query_proj: ``additive``: ``(A, D_q)`` :math:`W_q`, with the bias :math:`b`.
        key_proj: ``additive``: ``(A, D_k)`` :math:`W_k`.
        weight: ``general``: ``(D_q, D_k)`` :math:`W`; ``concat``: ``(A, D_q + D_k)``
            :math:`W`, query columns first.
        bias: ``concat``: ``(A,)`` :math:`b`.
        v: ``additive`` and ``concat``: ``(A,)`` :math:`v`.

    Shapes (N = batch, T_q = queries per example, T_k = keys, D_v = value features):

    * ``query``: ``(N, D_q)`` (one query per example, a decoder step) or
      ``(N, T_q, D_q)`` (every position of a second sequence);
    * ``keys``: ``(N, T_k, D_k)``; ``mask``: ``(N, T_k)`` bool, true at real keys
      (``None``: every key is real); ``values``: ``(N, T_k, D_v)``, default
      ``keys``; ``projected``: ``project_keys(keys)``;
    * returns ``(context, weights)``: ``(N, D_v)`` and ``(N, T_k)``, or
      ``(N, T_q, D_v)`` and ``(N, T_q, T_k)``.  Weights are zero at padded keys;
      an example with no real key gets zero weights and a zero context.

    Examples::

        >>> import torch
        >>> from memnets.layers.attention import Attention
        >>> attend = Attention(6, 4, "additive", attention_size=5)
        >>> keys, mask = torch.randn(2, 7, 4), torch.arange(7) < torch.tensor([[7], [3]])
        >>> context, weights = attend(torch.randn(2, 6), keys, mask)
        >>> context.shape, weights.shape
        (torch.Size([2, 4]), torch.Size([2, 7]))
        >>> weights[1, 3:].abs().sum().item(), round(weights[1].sum().item(), 6)
        (0.0, 1.0)
        >>> cached = attend.project_keys(keys)  # once per source sequence
        >>> torch.allclose(attend(torch.randn(2, 3, 6), keys, mask, projected=cached)[1].sum(-1),
        ...                torch.ones(2, 3))
        True
    """

    def __init__(self, query_size: int, key_size: int, kind: str = "additive", *,
                 attention_size: int | None = None, bias: bool = True) -> None:
        super().__init__()
        self.query_size = check_size("query_size", query_size)
        self.key_size = check_size("key_size", key_size)
        if kind not in KINDS:
            raise ConfigError(f"expected attention kind one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        if kind in ("dot", "general"):
            if attention_size is not None:
                raise ConfigError(f"attention kind {kind!r} has no attention_size; "
                                  f"got {attention_size!r}")
            if kind == "dot" and query_size != key_size:
                raise ConfigError(f"attention kind 'dot' needs query_size == key_size, got "
                                  f"{query_size} and {key_size}")
            self.attention_size = None
        else:
            self.attention_size = (key_size if attention_size is None
                                   else check_size("attention_size", attention_size))
        A = self.attention_size
        #: features of project_keys(keys): A, D_q for general, D_k for dot
        self.projected_size = {"general": query_size, "dot": key_size}.get(kind, A)
        if kind == "additive":
            self.query_proj = nn.Linear(query_size, A, bias=bias)
            self.key_proj = nn.Linear(key_size, A, bias=False)
            self.v = nn.Parameter(torch.empty(A))
        elif kind == "general":
            self.weight = nn.Parameter(torch.empty(query_size, key_size))
        elif kind == "concat":
            self.weight = nn.Parameter(torch.empty(A, query_size + key_size))
            self.bias = nn.Parameter(torch.empty(A)) if bias else None
            self.v = nn.Parameter(torch.empty(A))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.kind == "additive":
            nn.init.xavier_uniform_(self.query_proj.weight)
            nn.init.xavier_uniform_(self.key_proj.weight)
            if self.query_proj.bias is not None:
                nn.init.zeros_(self.query_proj.bias)
        elif self.kind in ("general", "concat"):
            nn.init.xavier_uniform_(self.weight)
            if self.kind == "concat" and self.bias is not None:
                nn.init.zeros_(self.bias)
        if self.kind in ("additive", "concat"):
            bound = self.attention_size ** -0.5
            nn.init.uniform_(self.v, -bound, bound)

    def project_keys(self, keys: Tensor) -> Tensor:
        """The key-only part of the score, ``(N, T_k, D_k)`` to ``(N, T_k, P)``:
        P = A for additive and concat, D_q for general, D_k for dot."""
        if keys.dim() != 3 or keys.shape[-1] != self.key_size:
            raise ValueError(f"expected keys of shape (N, T_k, {self.key_size}), "
                             f"got {tuple(keys.shape)}")
        if self.kind == "additive":
            return self.key_proj(keys)  # (N, T_k, A)
        if self.kind == "concat":
            return keys @ self.weight[:, self.query_size:].t()  # (N, T_k, A)
        if self.kind == "general":
            return keys @ self.weight.t()  # (N, T_k, D_q)
        return keys

    def project_query(self, query: Tensor) -> Tensor:
        """The query-only part of the score: ``(*, D_q)`` to ``(*, A)`` for additive
        and concat (with the bias), the query itself for dot and general."""
        if self.kind == "additive":
            return self.query_proj(query)
        if self.kind == "concat":
            q = query @ self.weight[:, :self.query_size].t()
            return q if self.bias is None else q + self.bias
        return query

    def scores(self, query: Tensor, projected: Tensor) -> Tensor:
        """Raw scores of queries ``(N, T_q, D_q)`` against projected keys
        ``(N, T_k, P)``: ``(N, T_q, T_k)``, before masking."""
        q = self.project_query(query)  # (N, T_q, A) or (N, T_q, D_q)
        if self.kind in ("additive", "concat"):
            hidden = torch.tanh(q.unsqueeze(2) + projected.unsqueeze(1))  # (N, T_q, T_k, A)
            return hidden @ self.v  # (N, T_q, T_k)
        return q @ projected.transpose(1, 2)  # (N, T_q, T_k)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor | None = None, *,
                values: Tensor | None = None,
                projected: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if keys.dim() != 3 or keys.shape[-1] != self.key_size:
            raise ValueError(f"expected keys of shape (N, T_k, {self.key_size}), "
                             f"got {tuple(keys.shape)}")
        N, Tk = keys.shape[:2]
        single = query.dim() == 2
        if query.dim() not in (2, 3) or query.shape[0] != N or query.shape[-1] != self.query_size:
            raise ValueError(f"expected a query of shape ({N}, {self.query_size}) or "
                             f"({N}, T_q, {self.query_size}), got {tuple(query.shape)}")
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (N, Tk)):
            raise ValueError(f"expected a bool mask of shape ({N}, {Tk}), got "
                             f"{mask.dtype} of shape {tuple(mask.shape)}")
        if values is None:
            values = keys
        elif values.dim() != 3 or tuple(values.shape[:2]) != (N, Tk):
            raise ValueError(f"expected values of shape ({N}, {Tk}, D_v), "
                             f"got {tuple(values.shape)}")
        if projected is None:
            projected = self.project_keys(keys)
        elif tuple(projected.shape) != (N, Tk, self.projected_size):
            raise ValueError(f"expected projected keys of shape ({N}, {Tk}, "
                             f"{self.projected_size}) (project_keys(keys)), "
                             f"got {tuple(projected.shape)}")
        q = query.unsqueeze(1) if single else query  # (N, T_q, D_q)
        scores = self.scores(q, projected)  # (N, T_q, T_k)
        weights = masked_softmax(scores, None if mask is None else mask.unsqueeze(1))
        context = weights @ values  # (N, T_q, D_v)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights

    def extra_repr(self) -> str:
        size = "" if self.attention_size is None else f", attention_size={self.attention_size}"
        return f"{self.query_size}, {self.key_size}, kind={self.kind!r}{size}"
