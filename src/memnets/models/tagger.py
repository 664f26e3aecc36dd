"""Sequence taggers for slot filling, with an optional joint intent classifier.

One model covers the designs the slot-filling literature compares:

* Elman and Jordan RNNs reading a window of word embeddings (Mesnil et al.,
  "Using recurrent neural networks for slot filling in spoken language
  understanding", 2015);
* LSTM and GRU taggers, uni- or bidirectional and stacked;
* a linear-chain CRF output layer (:mod:`memnets.models.crf`);
* a many-to-one intent head on the same encoder, pooling the encoder's outputs
  by the last states, mean, max, or attention (Liu & Lane, "Attention-based
  recurrent neural network models for joint intent detection and slot
  filling", 2016);
* an optional character-level word encoder, so an unseen word (a new city
  name) is still represented by its spelling.

The recurrent layers come from :func:`memnets.layers.build_encoder` with
``torch_compatible=False``: the generic layers over the cell registry
(:func:`memnets.make_cell`), with each cell's own initialisation, run with
``lengths``; the intent head pools with :func:`memnets.layers.pooling.pool`.
The hyper-parameters are the recipe's ``model`` section,
:class:`memnets.tasks.slot_filling.SlotModelConfig`, checked there.
Imports torch, :mod:`memnets.config` (the section's base type) and the
layers below models only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.config import ModelConfig
from memnets.layers.encoder import build_encoder
from memnets.layers.pooling import attention_scorer, attention_weights, pool
from memnets.layers.sequence import as_lengths
from memnets.models.crf import LinearChainCRF, bio_constraints


class TaggerOutput(NamedTuple):
    """``emissions`` ``(N, L, T)`` slot scores; ``intent_logits`` ``(N, K)`` or None."""

    emissions: Tensor
    intent_logits: Tensor | None


class CharCNN(nn.Module):
    r"""Word representation from its characters: embed, convolve, max over positions.

    .. math::
        r_w = \max_{j} \mathrm{ReLU}(W * [c_{j-k'} \dots c_{j+k'}] + b)

    (Ma & Hovy, "End-to-end sequence labeling via bi-directional
    LSTM-CNNs-CRF", 2016, without their per-character dropout.)

    Shapes: chars ``(N, L, C)`` with 0 = pad -> ``(N, L, F)``; words made of
    padding only give zeros.
    """

    def __init__(self, num_chars: int, char_dim: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel, padding=kernel // 2)
        self.output_size = filters

    def forward(self, chars: Tensor) -> Tensor:
        N, L, C = chars.shape
        flat = chars.reshape(N * L, C)
        x = self.embed(flat).transpose(1, 2)  # (N*L, D_c, C)
        h = F.relu(self.conv(x))[:, :, :C]  # (N*L, F, C)
        real = (flat != 0).unsqueeze(1)  # (N*L, 1, C)
        h = h.masked_fill(~real, 0.0)  # ReLU output >= 0, so 0 is neutral for max
        return h.max(dim=2).values.reshape(N, L, -1)  # (N, L, F)


def context_window(x: Tensor, k: int) -> Tensor:
    """Concatenate each step with its ``k`` neighbours on either side.

    ``(N, L, D)`` -> ``(N, L, (2k+1) D)``; steps outside ``[0, L)`` read zeros,
    so the caller zeroes padded steps first.  Block ``j`` of the output at step
    ``t`` is ``x[t - k + j]``.
    """
    if k == 0:
        return x
    N, L, D = x.shape
    padded = F.pad(x, (0, 0, k, k))  # (N, L + 2k, D)
    return torch.cat([padded[:, j : j + L] for j in range(2 * k + 1)], dim=2)


class SlotTagger(nn.Module):
    r"""Recurrent slot tagger with an optional joint intent head.

    For an utterance :math:`w_1 \dots w_n`:

    .. math::
        e_t &= [\mathrm{Emb}(w_t); \mathrm{CharCNN}(w_t)] \\
        x_t &= [e_{t-k}; \dots; e_t; \dots; e_{t+k}] \\
        h_1 \dots h_n &= \mathrm{RNN}(x_1 \dots x_n) \\
        E_t &= W_s h_t + b_s \quad\text{(slot scores; softmax or CRF)} \\
        c &= \mathrm{pool}(h_1 \dots h_n), \qquad
             p(\text{intent}) = \mathrm{softmax}(W_i c + b_i)

    where :math:`\mathrm{pool}` is the last states (the forward direction's last
    step and the backward direction's first), the mean, the elementwise max,
    or attention :math:`c = \sum_t \alpha_t h_t`,
    :math:`\alpha = \mathrm{softmax}_t(v^\top \tanh(W_a h_t + b_a))`; with
    ``intent_heads`` = :math:`r` there are :math:`r` vectors :math:`v_1 \dots v_r`
    and :math:`c = [c_1; \dots; c_r]`.

    The loss is the slot loss (per-word cross-entropy averaged over words, or
    the CRF negative log-likelihood averaged over utterances) plus
    ``intent_weight`` times the intent cross-entropy.

    Shapes (N = batch, L = longest utterance, C = longest word, T = tags,
    K = intents):

    * words ``(N, L)``, chars ``(N, L, C)`` (0 = pad), lengths ``(N,)``.
    * output :class:`TaggerOutput`: emissions ``(N, L, T)``, intent logits ``(N, K)``.

    Args:
        config: the ``model`` section of a slot-filling recipe
            (:class:`memnets.tasks.slot_filling.SlotModelConfig`, whose fields
            and checks are documented there).
        num_words, num_chars: vocabulary sizes (id 0 is padding, 1 unknown).
        tags: the tag names (their number sets T; their names set the BIO
            constraints of the CRF).
        num_intents: K, or 0 for no intent head.

    Departures from the papers: Mesnil et al. train the Elman/Jordan taggers
    with plain SGD and sigmoid units; here the cell's own non-linearity and the
    recipe's optimiser are used (the ``jordan`` cell keeps their sigmoid
    hidden units by default).  With ``cell_output: posterior`` the Jordan cell's
    softmax output is the slot posterior and is fed back, as in the paper.
    Liu & Lane's attention model also attends for every slot; here attention
    pools only for the intent.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        num_words: int,
        num_chars: int,
        tags: list[str],
        num_intents: int = 0,
        intents: list[str] | None = None,
    ) -> None:
        super().__init__()
        if config.intent_pooling != "none" and num_intents < 1:
            raise ValueError(
                f"expected intents in the data for intent_pooling={config.intent_pooling!r}, "
                "got none"
            )
        self.config = config
        self.num_tags = len(tags)
        self.num_intents = num_intents if config.intent_pooling != "none" else 0
        self.unk_id = 1
        self.embed = nn.Embedding(num_words, config.word_dim, padding_idx=0)
        rep = config.word_dim
        self.chars = None
        if config.char_dim > 0:
            self.chars = CharCNN(num_chars, config.char_dim, config.char_filters,
                                 config.char_kernel)
            rep += self.chars.output_size
        in_size = rep * (2 * config.window + 1)
        self.posterior = config.cell_output == "posterior"
        self.encoder = build_encoder(
            config.cell, in_size, config.hidden_size, num_layers=config.num_layers,
            bidirectional=config.bidirectional, dropout=config.dropout,
            cell_options=config.cell_options, torch_compatible=False,
            block=config.block, block_options=config.block_options,
            # the top cell outputs the tag distribution itself (a Jordan cell, Mesnil et al.)
            top_options={"output_size": self.num_tags} if self.posterior else None)
        in_size = self.encoder.output_size
        self.drop = nn.Dropout(config.dropout)
        self.slot_head = None if self.posterior else nn.Linear(in_size, self.num_tags)
        self.crf = None
        if config.crf:
            allowed = allowed_start = None
            if config.bio_constrained:
                allowed, allowed_start = bio_constraints(tags)
            self.crf = LinearChainCRF(self.num_tags, allowed=allowed,
                                      allowed_start=allowed_start)
        self.attention = None
        self.intent_head = self.intent_part_head = None
        if self.num_intents:
            pooled_size = in_size
            if config.intent_pooling == "attention":
                self.attention = attention_scorer(in_size, config.intent_heads)
                pooled_size = in_size * config.intent_heads
            self.intent_head = nn.Linear(pooled_size, self.num_intents)
            if config.intent_parts:
                if intents is None or len(intents) != self.num_intents:
                    raise ValueError(f"expected the {self.num_intents} intent names for "
                                     f"intent_parts={config.intent_parts!r}, got {intents!r}")
                parts = sorted({p for name in intents for p in name.split(config.intent_parts)})
                index = {p: i for i, p in enumerate(parts)}
                member = torch.zeros(self.num_intents, len(parts))  # (K, P) label k has part p
                for k, name in enumerate(intents):
                    for p in name.split(config.intent_parts):
                        member[k, index[p]] = 1.0
                self.register_buffer("intent_membership", member, persistent=False)
                self.intent_part_head = nn.Linear(pooled_size, len(parts), bias=False)

    def forward(self, words: Tensor, chars: Tensor | None, lengths: Tensor) -> TaggerOutput:
        h, valid, lengths = self._encode(words, chars, lengths)
        if self.posterior:  # h holds p(tag) at each step
            emissions = torch.log(h.clamp_min(1e-12)) * valid.unsqueeze(2)  # (N, L, T)
        else:
            h = self.drop(h)
            emissions = self.slot_head(h)  # (N, L, T)
        intent = None
        if self.intent_head is not None:
            pooled = pool(h, lengths, self.config.intent_pooling, scorer=self.attention,
                          bidirectional=self.config.bidirectional)  # (N, F)
            intent = self.intent_head(pooled)  # (N, K)
            if self.intent_part_head is not None:  # + the scores of each label's parts
                intent = intent + self.intent_part_head(pooled) @ self.intent_membership.T
        return TaggerOutput(emissions, intent)

    @torch.no_grad()
    def intent_attention(self, words: Tensor, chars: Tensor | None,
                         lengths: Tensor) -> Tensor | None:
        """The intent head's attention weights ``(N, L, heads)`` (zero at padding), or
        None when the intent is not pooled by attention."""
        if self.attention is None:
            return None
        h, _, lengths = self._encode(words, chars, lengths)
        return attention_weights(self.attention(h if self.posterior else self.drop(h)), lengths)

    def _encode(self, words: Tensor, chars: Tensor | None, lengths: Tensor):
        """Encoder outputs ``(N, L, H_out)``, the valid-step mask ``(N, L)`` and lengths."""
        N, L = words.shape
        lengths = as_lengths(lengths)  # int64 on the CPU; floats and bools refused
        valid = (torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1)).to(words.device)  # (N, L)
        if self.training and self.config.word_dropout > 0:
            drop = torch.rand(words.shape, device=words.device) < self.config.word_dropout
            words = words.masked_fill(drop & valid, self.unk_id)
        e = self.embed(words)  # (N, L, D_w)
        if self.chars is not None:
            if chars is None:
                raise ValueError("expected chars (N, L, C) for a tagger with a character encoder")
            e = torch.cat([e, self.chars(chars)], dim=2)  # (N, L, D_w + F)
        e = self.drop(e) * valid.unsqueeze(2)
        x = context_window(e, self.config.window)  # (N, L, (2k+1) D)
        h, _ = self.encoder(x, lengths=lengths.cpu())  # (N, L, H_out); zero at padding
        return h, valid, lengths

    def loss(self, out: TaggerOutput, tags: Tensor, intents: Tensor, lengths: Tensor) -> Tensor:
        """Slot loss plus weighted intent loss; -100 marks labels to ignore."""
        if self.crf is not None:
            lengths_d = lengths.to(out.emissions.device)
            valid = (torch.arange(tags.shape[1], device=tags.device).unsqueeze(0)
                     < lengths_d.unsqueeze(1))
            # utterances holding a tag unseen in training have no CRF path: skip them
            usable = ~((tags < 0) & valid).any(1)
            if usable.any():
                nll = self.crf.nll(out.emissions[usable], tags[usable], lengths_d[usable])
                slot = nll.mean()
            else:
                slot = out.emissions.sum() * 0.0
        else:
            slot = F.cross_entropy(out.emissions.reshape(-1, self.num_tags), tags.reshape(-1),
                                   ignore_index=-100)
        if out.intent_logits is None:
            return slot
        if (intents >= 0).any():
            intent = F.cross_entropy(out.intent_logits, intents, ignore_index=-100)
            slot = slot + self.config.intent_weight * intent
        return slot

    @torch.no_grad()
    def decode(self, out: TaggerOutput, lengths: Tensor) -> tuple[list[list[int]], list[int]]:
        """Tag ids per utterance (Viterbi with a CRF, else argmax) and intent ids
        (empty list without an intent head)."""
        lengths = as_lengths(lengths)
        if self.crf is not None:
            tags = self.crf.decode(out.emissions, lengths.to(out.emissions.device))
        else:
            best = out.emissions.argmax(2).cpu()
            tags = [best[i, : int(n)].tolist() for i, n in enumerate(lengths)]
        intents = [] if out.intent_logits is None else out.intent_logits.argmax(1).tolist()
        return tags, intents


class TaggerEnsemble(nn.Module):
    r"""Several trained :class:`SlotTagger` of one design, decoding together.

    .. math::
        E_t = \frac{1}{M}\sum_m E^{(m)}_t, \qquad
        p(\text{intent}) = \frac{1}{M}\sum_m p^{(m)}(\text{intent})

    With CRF members, the transition, start and end scores are averaged too,
    so Viterbi finds the tag sequence with the highest mean member score
    :math:`\frac{1}{M}\sum_m s^{(m)}(y)` (a product of the members' CRF
    distributions, renormalised).  Without CRF the averaged emissions are the
    members' mean logits.  The members must share vocabularies and tag set.

    Shapes and methods (``forward``, ``loss``, ``decode``) are those of
    :class:`SlotTagger`; ``intent_logits`` are the logarithms of the mean
    probabilities.
    """

    def __init__(self, members: list[SlotTagger]) -> None:
        super().__init__()
        if not members:
            raise ValueError("expected at least one member tagger, got none")
        first = members[0]
        for k, m in enumerate(members[1:], 1):
            if (m.num_tags, m.num_intents, m.crf is None) != (
                first.num_tags, first.num_intents, first.crf is None
            ):
                raise ValueError(
                    f"expected members with the same tags, intents and output layer; member "
                    f"{k} has {m.num_tags} tags, {m.num_intents} intents, crf={m.crf is not None}"
                    f" against {first.num_tags}, {first.num_intents}, crf={first.crf is not None}"
                )
        self.members = nn.ModuleList(members)
        self.config = first.config
        self.num_tags, self.num_intents = first.num_tags, first.num_intents
        self.intent_head = first.intent_head  # only tested for None by callers
        self.crf = None
        if first.crf is not None:
            self.crf = LinearChainCRF(first.num_tags)
            with torch.no_grad():
                for name in ("transitions", "start", "end"):
                    mean = torch.stack([getattr(m.crf, name) + _penalty(m.crf, name)
                                        for m in members]).mean(0)
                    getattr(self.crf, name).copy_(mean)

    def forward(self, words: Tensor, chars: Tensor | None, lengths: Tensor) -> TaggerOutput:
        outs = [m(words, chars, lengths) for m in self.members]
        emissions = torch.stack([o.emissions for o in outs]).mean(0)  # (N, L, T)
        intent = None
        if outs[0].intent_logits is not None:
            probs = torch.stack([o.intent_logits.softmax(-1) for o in outs]).mean(0)  # (N, K)
            intent = torch.log(probs.clamp_min(1e-12))
        return TaggerOutput(emissions, intent)

    @torch.no_grad()
    def intent_attention(self, words: Tensor, chars: Tensor | None,
                         lengths: Tensor) -> Tensor | None:
        """Every member's attention weights side by side ``(N, L, members * heads)``,
        or None when the members do not pool by attention."""
        per_member = [m.intent_attention(words, chars, lengths) for m in self.members]
        if any(a is None for a in per_member):
            return None
        return torch.cat(per_member, dim=2)

    loss = SlotTagger.loss
    decode = SlotTagger.decode


def _penalty(crf: LinearChainCRF, name: str) -> Tensor:
    if name == "transitions":
        return crf.transition_penalty
    if name == "start":
        return crf.start_penalty
    return torch.zeros_like(crf.end)
