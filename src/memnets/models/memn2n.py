r"""End-to-end memory network (MemN2N) for question answering over a story.

Sukhbaatar, Szlam, Weston & Fergus, "End-to-end memory networks", 2015.

The model imports only torch (and the shared size check of
:mod:`memnets.cells.base`); data come as padded id tensors (see
:class:`memnets.data.babi.BabiBatch`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import check_sizes

ENCODINGS = ("bow", "pe", "pe_centered")
TYINGS = ("adjacent", "layerwise")
NONLINEARITIES = (None, "relu")


def position_encoding(lengths: Tensor, max_len: int, dim: int) -> Tensor:
    r"""The paper's position encoding weights :math:`l_{kj}`.

    .. math::
        l_{kj} = (1 - j/J) - (k/d)\,(1 - 2j/J), \quad j = 1..J,\; k = 1..d

    with :math:`J` the number of words of each sentence (not the padded width).

    Args:
        lengths: ``(*)`` words per sentence.
        max_len: the padded width ``J_max``.
        dim: the embedding size ``d``.

    Returns:
        ``(*, J_max, d)``; entries past a sentence's length are meaningless
        (they multiply zero padding embeddings).
    """
    J = lengths.clamp(min=1).to(torch.get_default_dtype()).unsqueeze(-1).unsqueeze(-1)
    j = torch.arange(1, max_len + 1, device=lengths.device).view(max_len, 1).to(J.dtype)
    k = torch.arange(1, dim + 1, device=lengths.device).view(1, dim).to(J.dtype)
    return (1 - j / J) - (k / dim) * (1 - 2 * j / J)  # (*, J_max, d)


class MemN2N(nn.Module):
    r"""End-to-end memory network with K hops.

    For a story :math:`x_1..x_n` (:math:`x_1` the most recent sentence) and a
    question :math:`q`, with :math:`\phi` the sentence encoding (BoW:
    :math:`\phi_E(x) = \sum_j E x_j`; PE: :math:`\sum_j l_j \circ E x_j`):

    .. math::
        u^1 = \phi_B(q) \\
        m^k_i = \phi_{A^k}(x_i) + T^k_A(i), \quad c^k_i = \phi_{C^k}(x_i) + T^k_C(i) \\
        p^k_i = \mathrm{softmax}_i(u^{k\top} m^k_i), \quad o^k = \sum_i p^k_i c^k_i \\
        u^{k+1} = g(u^k + o^k) \;\;\text{(adjacent; } g(H u^k + o^k)
        \text{ with hop\_map)}, \qquad
        u^{k+1} = g(H u^k + o^k) \;\;\text{(layer-wise)} \\
        \hat a = \mathrm{softmax}(W u^{K+1})

    Tying. *Adjacent*: :math:`A^{k+1} = C^k`, :math:`B = A^1`, :math:`W^\top = C^K`
    (K + 1 embedding matrices), the same for :math:`T_A, T_C`. *Layer-wise*:
    :math:`A^k = A`, :math:`C^k = C` for all k, separate :math:`B` and :math:`W`,
    and a linear map :math:`H`.

    :math:`g` is the identity (the paper's model) or, with ``nonlinearity="relu"``,
    a ReLU after every hop (the last included), the ``add_nonlin`` option of
    the authors' released code.

    Linear start (LS): with ``model.linear = True`` the softmax of every hop is
    removed (:math:`p^k_i = u^{k\top} m^k_i`); the final softmax stays.

    Random noise (RN): in training, each memory is followed by an empty memory
    with probability ``random_noise`` (about that fraction of empty memories),
    which shifts the temporal indices :math:`i` of everything older.

    Shapes (B = batch, M = memories, J = words per sentence, Q = question
    words, V = ``vocab_size``, K = ``hops``):

    * story: ``(B, M, J)`` word ids, oldest sentence first, 0 = padding.
    * story_lengths: ``(B,)`` valid memories (the first ``story_lengths[b]`` rows).
    * question: ``(B, Q)`` word ids.
    * output: logits ``(B, V)``; with ``return_attention``, also ``(B, K, M)``
      the weights :math:`p^k` (in the input's sentence order).

    Args:
        vocab_size: V, answers included (they are words of the vocabulary).
        embed_dim: d.
        hops: K (default 3).
        memory_size: rows of the temporal matrices; stories must not be longer.
        encoding: ``"bow"`` (bag of words), ``"pe"`` (position encoding as the
            paper writes it) or ``"pe_centered"``, the form of the authors'
            released code, :math:`l_{kj} = 1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (dJ)`:
            weights centred on 1, the sign of the position term flipping at
            the middle dimension.  With ``pe_width`` set it solves basic
            induction (bAbI task 16) that the paper's form with per-sentence
            :math:`J` does not learn (about 50% error, measured).
        temporal: add the temporal encodings :math:`T_A, T_C`.
        tying: ``"adjacent"`` or ``"layerwise"``.
        random_noise: fraction of empty memories inserted in training (0 = off).
        init_std: standard deviation of the Gaussian initialisation (0.1).
        pe_width: ``None`` (default): :math:`J` in either PE is each sentence's own
            length, as the paper writes it.  An integer: one fixed :math:`J` for
            every sentence and question (the longest in the data), as the
            authors' released code computes it; a word at position j is then
            weighted the same in every sentence, whatever its length.
        empty_memories: the memory always has ``memory_size`` slots; those past
            the story are empty sentences (only their temporal vector, index =
            slot, older than every sentence) that the attention may choose, as in
            the paper's fixed-size memory.  Off: padded slots are masked out.
        hop_map: with adjacent tying, also the linear map :math:`H` between
            hops, one matrix for every hop (the released code's ``add_proj``);
            layer-wise tying always has it.
        nonlinearity: ``None`` (default, :math:`g` = identity) or ``"relu"``.
        pad_id: the id whose embedding is kept at zero.

    Implementation: a sentence's encoding is computed as two weighted bag sums
    over its real words (:meth:`bags`), the whole batch at once.

    Departures from the paper: without ``empty_memories``, padded memory slots
    are masked out of the attention; random noise shifts the temporal indices
    as inserted empty memories would, but does not add them as slots of their
    own; a temporal index beyond ``memory_size`` (possible only with random
    noise) is clamped to the last row.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 20, hops: int = 3, *,
                 memory_size: int = 50, encoding: str = "pe", temporal: bool = True,
                 tying: str = "adjacent", random_noise: float = 0.0, init_std: float = 0.1,
                 empty_memories: bool = False, pe_width: int | None = None,
                 nonlinearity: str | None = None, hop_map: bool = False, pad_id: int = 0):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"expected encoding in {ENCODINGS}, got {encoding!r}")
        if tying not in TYINGS:
            raise ValueError(f"expected tying in {TYINGS}, got {tying!r}")
        check_sizes(vocab_size=vocab_size, embed_dim=embed_dim, hops=hops,
                    memory_size=memory_size)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"expected nonlinearity in {NONLINEARITIES}, got {nonlinearity!r}")
        if pe_width is not None and pe_width < 1:
            raise ValueError(f"expected pe_width None or >= 1, got {pe_width}")
        if not 0 <= random_noise < 1:
            raise ValueError(f"expected 0 <= random_noise < 1, got {random_noise}")
        self.vocab_size, self.embed_dim, self.hops = vocab_size, embed_dim, hops
        self.memory_size, self.encoding, self.temporal = memory_size, encoding, temporal
        self.tying, self.random_noise, self.pad_id = tying, random_noise, pad_id
        self.init_std, self.empty_memories, self.pe_width = init_std, empty_memories, pe_width
        self.nonlinearity = nonlinearity
        self.hop_map = hop_map or tying == "layerwise"
        # linear start is part of the model's state, so a checkpoint resumes in the right mode
        self.register_buffer("linear_mode", torch.tensor(False))
        V, d = vocab_size, embed_dim
        if tying == "adjacent":
            # embed[0] = B = A^1, embed[k] = C^k = A^{k+1}, embed[K] = C^K = W^T
            self.embed = nn.ParameterList([nn.Parameter(torch.empty(V, d))
                                           for _ in range(hops + 1)])
            if temporal:
                self.time = nn.ParameterList([nn.Parameter(torch.empty(memory_size, d))
                                              for _ in range(hops + 1)])
            if self.hop_map:
                self.H = nn.Parameter(torch.empty(d, d))
        else:
            self.embed = nn.ParameterList([nn.Parameter(torch.empty(V, d))
                                           for _ in range(3)])  # B, A, C
            self.out = nn.Parameter(torch.empty(V, d))  # W
            self.H = nn.Parameter(torch.empty(d, d))
            if temporal:
                self.time = nn.ParameterList([nn.Parameter(torch.empty(memory_size, d))
                                              for _ in range(2)])  # T_A, T_C
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every matrix from N(0, init_std^2), as in the paper; padding rows zero."""
        for p in self.parameters():
            nn.init.normal_(p, 0.0, self.init_std)
        with torch.no_grad():
            for e in self.embed:
                e[self.pad_id].zero_()
            if self.tying == "layerwise":
                self.out[self.pad_id].zero_()

    @property
    def linear(self) -> bool:
        """Linear start: the hops' softmaxes are removed while this is True."""
        return bool(self.linear_mode)

    @linear.setter
    def linear(self, value: bool) -> None:
        self.linear_mode.fill_(bool(value))

    # -- which matrix plays which role -------------------------------------------------
    def _B(self) -> Tensor:
        return self.embed[0]

    def _A(self, k: int) -> Tensor:  # k = 0..K-1
        return self.embed[k] if self.tying == "adjacent" else self.embed[1]

    def _C(self, k: int) -> Tensor:
        return self.embed[k + 1] if self.tying == "adjacent" else self.embed[2]

    def _TA(self, k: int) -> Tensor:
        return self.time[k] if self.tying == "adjacent" else self.time[0]

    def _TC(self, k: int) -> Tensor:
        return self.time[k + 1] if self.tying == "adjacent" else self.time[1]

    def _W(self) -> Tensor:
        return self.embed[self.hops] if self.tying == "adjacent" else self.out

    # -- pieces ---------------------------------------------------------------------
    def bags(self, ids: Tensor) -> tuple:
        r"""The words of each sentence as weighted bags, so that encoding is a bag sum.

        PE's weight is affine in the dimension k: :math:`l_{kj} = a_j + k\,b_j` with
        :math:`a_j = 1 - j/J` and :math:`b_j = -(1 - 2j/J)/d`, hence
        :math:`\sum_j l_j \circ E x_j = \sum_j a_j E x_j + k \circ \sum_j b_j E x_j`:
        two weighted bag sums (:func:`torch.nn.functional.embedding_bag`) over the
        real words only, padding skipped.  BoW is :math:`a_j = 1`, no :math:`b`.

        Args:
            ids: ``(*, J)`` word ids.

        Returns:
            an opaque tuple for :meth:`_encode`.
        """
        J = ids.shape[-1]
        real = ids != self.pad_id  # (*, J)
        dtype = self.embed[0].dtype
        counts = real.sum(-1)  # (*,)
        flat = ids[real]  # (T,) the real words, sentence by sentence
        offsets = (counts.reshape(-1).cumsum(0) - counts.reshape(-1))  # (S,)
        if self.encoding != "bow" and self.pe_width is not None:
            longest = int(counts.max()) if counts.numel() else 0
            if longest > self.pe_width:
                raise ValueError(f"expected sentences of at most pe_width={self.pe_width} "
                                 f"words, got one of {longest}")
            n = torch.full(counts.shape, float(self.pe_width), dtype=dtype,
                           device=ids.device).unsqueeze(-1)  # (*, 1)
        else:
            n = counts.unsqueeze(-1).clamp(min=1).to(dtype)  # (*, 1)
        if self.encoding != "bow":
            j = torch.arange(1, J + 1, device=ids.device, dtype=dtype)  # (J,)
            if self.encoding == "pe_centered":  # a_j + k b_j = 1 + 4 (k - (d+1)/2) c_j
                d = self.embed_dim
                c = (j - (n + 1) / 2) / (d * n)
                a = (1 - 2 * (d + 1) * c).expand(real.shape)[real]
                b = (4 * c).expand(real.shape)[real]
            else:
                a = (1 - j / n).expand(real.shape)[real]  # (T,)
                b = (-(1 - 2 * j / n) / self.embed_dim).expand(real.shape)[real]  # (T,)
        else:
            a, b = torch.ones(flat.shape, dtype=dtype, device=ids.device), None
        return flat, offsets, a, b, ids.shape[:-1]

    def _encode(self, bags: tuple, weight: Tensor) -> Tensor:
        flat, offsets, a, b, shape = bags
        out = F.embedding_bag(flat, weight, offsets, mode="sum", per_sample_weights=a)  # (S, d)
        if b is not None:
            k = torch.arange(1, self.embed_dim + 1, device=weight.device, dtype=weight.dtype)
            out = out + k * F.embedding_bag(flat, weight, offsets, mode="sum",
                                            per_sample_weights=b)
        return out.reshape(*shape, self.embed_dim)  # (*, d)

    def time_index(self, story_lengths: Tensor, M: int) -> Tensor:
        """Temporal index of each memory slot, 0 = most recent; ``(B, M)``.

        In training with ``random_noise`` > 0, empty memories are drawn after
        each sentence (Bernoulli per slot) and shift the indices of older ones.
        """
        slot = torch.arange(M, device=story_lengths.device).unsqueeze(0)  # (1, M)
        valid = slot < story_lengths.unsqueeze(1)  # (B, M)
        index = (story_lengths.unsqueeze(1) - 1 - slot)  # (B, M)
        index = torch.where(valid, index, slot)  # empty slots: older than every sentence
        if self.training and self.random_noise > 0:
            gaps = (torch.rand(valid.shape, device=valid.device) < self.random_noise) & valid
            # empties after slot i and before the question: a reverse cumulative sum
            after = gaps.flip(1).long().cumsum(1).flip(1)  # (B, M)
            index = index + after
        return index.clamp(max=self.memory_size - 1)

    def forward(self, story: Tensor, story_lengths: Tensor, question: Tensor, *,
                return_attention: bool = False):
        if story.dim() != 3:
            raise ValueError(f"expected story of shape (B, M, J), got {tuple(story.shape)}")
        B, M, J = story.shape
        if question.dim() != 2 or question.shape[0] != B:
            raise ValueError(f"expected question of shape ({B}, Q), got {tuple(question.shape)}")
        if story_lengths.shape != (B,):
            raise ValueError(
                f"expected story_lengths of shape ({B},), got {tuple(story_lengths.shape)}")
        if M > self.memory_size and self.temporal:
            raise ValueError(f"expected at most memory_size={self.memory_size} memories, got {M}")
        if self.empty_memories and M < self.memory_size:
            story = F.pad(story, (0, 0, 0, self.memory_size - M))  # (B, memory_size, J)
            M = self.memory_size
        valid = torch.arange(M, device=story.device).unsqueeze(0) < story_lengths.unsqueeze(1)
        if self.empty_memories:
            valid = torch.ones_like(valid)  # empty slots can be attended to
        story_bags = self.bags(story)  # sentences of (B, M)
        question_bags = self.bags(question)  # questions of (B,)
        tidx = self.time_index(story_lengths, M) if self.temporal else None  # (B, M)

        u = self._encode(question_bags, self._B())  # (B, d)
        attention = []
        m_words = self._encode(story_bags, self._A(0))  # (B, M, d)
        for k in range(self.hops):
            m = m_words + F.embedding(tidx, self._TA(k)) if self.temporal else m_words
            scores = torch.einsum("bmd,bd->bm", m, u)  # (B, M)
            if self.linear:
                p = scores.masked_fill(~valid, 0.0)
            else:
                p = scores.masked_fill(~valid, float("-inf")).softmax(-1)
                p = p.masked_fill(~valid, 0.0)  # a story with no memory: zeros, not NaN
            c_words = self._encode(story_bags, self._C(k))  # (B, M, d)
            c = c_words + F.embedding(tidx, self._TC(k)) if self.temporal else c_words
            o = torch.einsum("bm,bmd->bd", p, c)  # (B, d)
            u = (u @ self.H.T if self.hop_map else u) + o
            if self.nonlinearity == "relu":
                u = torch.relu(u)
            attention.append(p)
            if self.tying == "adjacent":
                m_words = c_words  # A^{k+1} = C^k
        W = self._W()
        keep = torch.ones(W.shape[0], 1, dtype=W.dtype, device=W.device)
        keep[self.pad_id] = 0  # the padding word is no answer and its row stays zero
        logits = u @ (W * keep).T  # (B, V)
        if return_attention:
            return logits, torch.stack(attention, 1)  # (B, K, M)
        return logits

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, embed_dim={self.embed_dim}, hops={self.hops}, "
                f"encoding={self.encoding!r}, temporal={self.temporal}, tying={self.tying!r}, "
                f"random_noise={self.random_noise}, pe_width={self.pe_width}, "
                f"nonlinearity={self.nonlinearity!r}, hop_map={self.hop_map}")
