"""A linear-chain conditional random field output layer, with Viterbi decoding.

Lafferty, McCallum & Pereira, "Conditional random fields: probabilistic models
for segmenting and labeling sequence data", 2001; used on top of a recurrent
encoder as in Huang, Xu & Yu, "Bidirectional LSTM-CRF models for sequence
tagging", 2015.  Imports torch, and the shared check of lengths from
:mod:`memnets.layers.sequence`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from memnets.layers.sequence import as_lengths

# Score given to forbidden transitions: low enough that no path uses one when
# another exists, finite so that sums stay free of inf - inf.
FORBIDDEN = -1e4


class LinearChainCRF(nn.Module):
    r"""Linear-chain CRF over ``T`` tags.

    A tag sequence :math:`y_1 \dots y_n` of an utterance with emission scores
    :math:`E_{t, y}` (from the encoder) has the score

    .. math::
        s(y) = \pi_{y_1} + \sum_{t=1}^{n} E_{t, y_t}
               + \sum_{t=2}^{n} A_{y_{t-1}, y_t} + \omega_{y_n}

    and probability :math:`p(y) = \exp s(y) / Z` with
    :math:`Z = \sum_{y'} \exp s(y')`, computed by the forward algorithm
    :math:`\alpha_1 = \pi + E_1`,
    :math:`\alpha_t(j) = \log\sum_i \exp(\alpha_{t-1}(i) + A_{ij}) + E_{t,j}`,
    :math:`\log Z = \log\sum_j \exp(\alpha_n(j) + \omega_j)`.  Viterbi decoding
    replaces log-sum-exp by max and follows the back-pointers.

    Shapes (N = batch, L = longest sequence, T = ``num_tags``):

    * emissions: ``(N, L, T)``; positions at or past a sequence's length are ignored.
    * tags: ``(N, L)`` integer; padded positions may hold anything (e.g. -100).
    * lengths: ``(N,)`` with every length in ``[1, L]``, or None for all ``L``.

    Args:
        num_tags: ``T``.
        allowed: optional ``(T, T)`` bool tensor; ``allowed[i, j]`` False forbids
            tag ``j`` right after tag ``i`` (see :func:`bio_constraints`).
        allowed_start: optional ``(T,)`` bool tensor; False forbids a first tag.

    Attributes:
        transitions: ``A`` ``(T, T)``, from row tag to column tag; zero at start.
        start, end: ``pi`` and ``omega`` ``(T,)``; zero at start.
    """

    def __init__(
        self,
        num_tags: int,
        *,
        allowed: Tensor | None = None,
        allowed_start: Tensor | None = None,
    ) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"expected at least one tag, got num_tags={num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        penalty = torch.zeros(num_tags, num_tags)
        start_penalty = torch.zeros(num_tags)
        if allowed is not None:
            if tuple(allowed.shape) != (num_tags, num_tags):
                raise ValueError(
                    f"expected allowed of shape ({num_tags}, {num_tags}), "
                    f"got {tuple(allowed.shape)}"
                )
            penalty = penalty.masked_fill(~allowed.bool(), FORBIDDEN)
        if allowed_start is not None:
            if tuple(allowed_start.shape) != (num_tags,):
                raise ValueError(
                    f"expected allowed_start of shape ({num_tags},), "
                    f"got {tuple(allowed_start.shape)}"
                )
            start_penalty = start_penalty.masked_fill(~allowed_start.bool(), FORBIDDEN)
        self.register_buffer("transition_penalty", penalty)
        self.register_buffer("start_penalty", start_penalty)

    def _scores(self) -> tuple[Tensor, Tensor, Tensor]:
        return (self.transitions + self.transition_penalty, self.start + self.start_penalty,
                self.end)

    def _check(self, emissions: Tensor, lengths) -> Tensor:
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(
                f"expected emissions of shape (N, L, {self.num_tags}), "
                f"got {tuple(emissions.shape)}"
            )
        N, L = emissions.shape[:2]
        if lengths is None:
            return torch.full((N,), L, dtype=torch.long, device=emissions.device)
        lengths = as_lengths(lengths).to(emissions.device)  # floats and bools refused
        if lengths.shape != (N,):
            raise ValueError(f"expected lengths of shape ({N},), got {tuple(lengths.shape)}")
        if N and (int(lengths.min()) < 1 or int(lengths.max()) > L):
            raise ValueError(f"expected every length in [1, {L}], got {lengths.tolist()}")
        return lengths

    def score(self, emissions: Tensor, tags: Tensor, lengths=None) -> Tensor:
        """:math:`s(y)` of the given tag sequences, ``(N,)``."""
        lengths = self._check(emissions, lengths)
        trans, start, end = self._scores()
        N, L, _ = emissions.shape
        steps = torch.arange(L, device=emissions.device)
        valid = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (N, L)
        tags = tags.masked_fill(~valid, 0)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (N, L)
        total = start[tags[:, 0]] + (emit * valid).sum(1)
        if L > 1:
            pair = trans[tags[:, :-1], tags[:, 1:]]  # (N, L-1)
            total = total + (pair * valid[:, 1:]).sum(1)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (N,)
        return total + end[last]

    def log_partition(self, emissions: Tensor, lengths=None) -> Tensor:
        r""":math:`\log Z` for each sequence, ``(N,)``."""
        lengths = self._check(emissions, lengths)
        trans, start, end = self._scores()
        # log sum_i exp(alpha_i + A_ij) as a matrix product in shifted exp space:
        # exp(alpha - m_alpha) @ exp(A - m_A), then add the shifts back.
        shift = trans.detach().max()
        exp_trans = torch.exp(trans - shift)  # (T_from, T_to)
        alpha = start + emissions[:, 0]  # (N, T)
        for t in range(1, emissions.shape[1]):
            m = alpha.detach().max(dim=1, keepdim=True).values  # (N, 1)
            total = torch.exp(alpha - m) @ exp_trans  # (N, T_to)
            nxt = torch.log(total.clamp_min(1e-30)) + m + shift + emissions[:, t]
            alpha = torch.where((t < lengths).unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def nll(self, emissions: Tensor, tags: Tensor, lengths=None) -> Tensor:
        r"""Negative log-likelihood :math:`\log Z - s(y)` per sequence, ``(N,)``."""
        return self.log_partition(emissions, lengths) - self.score(emissions, tags, lengths)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths=None) -> list[list[int]]:
        """The highest-scoring tag sequence of each utterance (Viterbi), as lists."""
        lengths = self._check(emissions, lengths)
        trans, start, end = self._scores()
        N, L, _ = emissions.shape
        delta = start + emissions[:, 0]  # (N, T)
        back = []
        for t in range(1, L):
            cand = delta.unsqueeze(2) + trans  # (N, T_from, T_to)
            best, arg = cand.max(dim=1)  # (N, T_to)
            alive = (t < lengths).unsqueeze(1)
            delta = torch.where(alive, best + emissions[:, t], delta)
            back.append(arg)
        last = (delta + end).argmax(dim=1)  # (N,)
        paths = []
        for i in range(N):
            n = int(lengths[i])
            tag = int(last[i])
            path = [tag]
            for t in range(n - 1, 0, -1):
                tag = int(back[t - 1][i, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"


def bio_constraints(tags: Sequence[str]) -> tuple[Tensor, Tensor]:
    """The transitions a well-formed BIO (IOB2) sequence may take.

    ``I-x`` may follow only ``B-x`` or ``I-x`` and may not start a sequence;
    everything else is allowed.  Returns ``(allowed (T, T), allowed_start (T,))``
    for :class:`LinearChainCRF`.  Tags are read generically (prefix, hyphen,
    type), so any BIO tag set works.
    """
    T = len(tags)
    allowed = torch.ones(T, T, dtype=torch.bool)
    allowed_start = torch.ones(T, dtype=torch.bool)
    for j, tag in enumerate(tags):
        prefix, sep, kind = tag.partition("-")
        if prefix != "I" or not sep:
            continue
        allowed_start[j] = False
        for i, prev in enumerate(tags):
            p_prefix, p_sep, p_kind = prev.partition("-")
            allowed[i, j] = p_prefix in ("B", "I") and bool(p_sep) and p_kind == kind
    return allowed, allowed_start
