r"""Sequence to sequence: a recurrent encoder–decoder over any memnets cell, without
attention or with the attention of Bahdanau et al. or of Luong et al.

The encoder is :func:`memnets.layers.build_encoder` (deep, optionally
bidirectional, fused drop-in where the rule allows); the decoder is a stack of
cells made with :func:`memnets.cells.make_cell`, stepped one token at a time by
:meth:`Seq2Seq.step` — the step that teacher forcing, greedy and beam search
(:mod:`memnets.models.decoding`) all run.  Attention is
:class:`memnets.layers.attention.Attention`.

This module imports torch, :mod:`memnets.cells`, :mod:`memnets.layers` and
:mod:`memnets.errors` only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import check_sizes
from memnets.cells.registry import make_cell
from memnets.errors import ConfigError
from memnets.layers.attention import KINDS, Attention
from memnets.layers.encoder import build_encoder
from memnets.layers.pooling import pool
from memnets.layers.sequence import as_lengths, reverse_padded

STYLES = ("none", "bahdanau", "luong")
BRIDGES = ("linear", "none")
DEFAULT_SCORE = {"bahdanau": "additive", "luong": "general"}


class DecoderState(NamedTuple):
    """The decoder's state between two steps; every tensor has the rows (examples,
    or hypotheses in a beam) first, so :func:`memnets.models.decoding.index_state`
    reorders it.

    Attributes:
        cells: one cell state per decoder layer, lowest first.
        output: ``(N, H)`` the top layer's last output :math:`s_{t-1}` (Bahdanau's query).
        feed: ``(N, R)`` the last attentional vector :math:`\\tilde h_{t-1}` (Luong's
            input feeding; zeros before the first step), or ``(N, 0)``.
        memory: ``(N, S, K)`` the encoder outputs the decoder attends to (keys and values).
        projected: ``Attention.project_keys(memory)``, computed once per source, or ``None``.
        mask: ``(N, S)`` bool, true at real source positions.
        summary: ``(N, D·H_enc)`` the encoder's summary of the source (the context
            :math:`c` fed at every step without attention).
    """

    cells: tuple
    output: Tensor
    feed: Tensor
    memory: Tensor
    projected: Tensor | None
    mask: Tensor
    summary: Tensor


class Seq2Seq(nn.Module):
    r"""An encoder–decoder for translation, over any registered cell.

    **Encoder.**  :math:`x_{1..S}` source ids, embedded and read by
    :func:`~memnets.layers.build_encoder` (``encoder_layers`` layers, optionally
    bidirectional): outputs :math:`h_{1..S}` (the memory) and a summary
    :math:`z` — the output at the last valid step, and with a bidirectional
    encoder the forward half there joined with the backward half at the first
    step.  ``reverse_source`` (Sutskever, Vinyals & Le, "Sequence to sequence
    learning with neural networks", 2014) reads each source backwards; the
    memory is put back in source order, so attention weights index source
    words.

    **Start.**  With ``bridge="linear"`` every state field of every decoder
    layer starts as :math:`\tanh(W_f z + b_f)` (one linear map per field; the
    top layer's first field is also :math:`s_0`), else all zero.

    **A decoder step** (embedding :math:`e_t = E\,y_{t-1}`, decoder layers
    :math:`f_1 \dots f_L` with states :math:`s^{(k)}_t`, top output :math:`s_t`):

    .. math::
        \begin{aligned}
        \text{none:} &\quad s_t = f(e_t\,[;\, z],\ s_{t-1}), &
            o_t &= \tanh(W_o [s_t\,[;\, z;\, e_t]] + b_o) \text{ or } s_t \\
        \text{bahdanau:} &\quad c_t, \alpha_t = \mathrm{attn}(s_{t-1}, h),\ \
            s_t = f([e_t; c_t], s_{t-1}), &
            o_t &= \tanh(W_o [s_t; c_t; e_t] + b_o) \\
        \text{luong:} &\quad s_t = f([e_t; \tilde h_{t-1}], s_{t-1}),\ \
            c_t, \alpha_t = \mathrm{attn}(s_t, h), &
            o_t &= \tilde h_t = \tanh(W_c [c_t; s_t]) \\
        & & p(y_t \mid y_{<t}, x) &= \mathrm{softmax}(W_s\, \mathrm{drop}(o_t) + b_s)
        \end{aligned}

    * ``none`` is Sutskever et al. 2014 (the summary starts the decoder, nothing
      else; :math:`o_t = s_t`), and with ``feed_context`` Cho et al., "Learning
      phrase representations using RNN encoder-decoder for statistical machine
      translation", 2014: :math:`z` enters every step and the read-out.
    * ``bahdanau`` is Bahdanau, Cho & Bengio, "Neural machine translation by
      jointly learning to align and translate", 2015: the previous state asks
      the question, the context enters the cell and the read-out; ``score``
      (default ``additive``) is any :class:`~memnets.layers.attention.Attention` kind.
    * ``luong`` is the global attention of Luong, Pham & Manning, "Effective
      approaches to attention-based neural machine translation", 2015: the new
      state asks, :math:`\tilde h_t` is read out and, with ``input_feeding``,
      fed to the next step; ``score`` ``dot``, ``general`` (default) or ``concat``.
      ``dot`` needs keys of the decoder's size: a bidirectional or wider encoder's
      outputs are first mapped by a linear layer without bias.

    ``tie_embeddings`` (Press & Wolf, "Using the output embedding to improve
    language models", 2017) makes :math:`W_s = E` and the read-out
    :math:`o_t` of the embedding size R = E (else R = H).

    Initialisation: embeddings :math:`U(-0.1, 0.1)` (the range of Zaremba,
    Sutskever & Vinyals, "Recurrent neural network regularization", 2014), so that a
    tied output layer starts near the uniform distribution; the cells their own
    (:func:`~memnets.cells.make_cell`); linear layers torch's.

    Departures: Bahdanau et al.'s read-out is a maxout layer over
    :math:`s_{t-1}`; here it is a tanh layer over the new :math:`s_t`.  The
    bridge generalises Bahdanau et al.'s :math:`s_0 = \tanh(W_s \overleftarrow{h}_1)`
    to any cell and depth, where Sutskever et al. copy the encoder's final
    states into a decoder of the same shape.

    Args:
        source_vocab, target_vocab: vocabulary sizes.
        embedding_size: E, both embeddings.
        hidden_size: H, each encoder direction and every decoder layer.
        cell: a registered one-layer cell, encoder and decoder.
        encoder_layers, decoder_layers: depths.
        bidirectional: a bidirectional encoder.
        attention: ``none``, ``bahdanau`` or ``luong``.
        score: the attention kind (``additive``, ``dot``, ``general``, ``concat``);
            ``None`` for the style's default.
        attention_size: the hidden size A of ``additive``/``concat`` scores (default H).
        input_feeding: Luong's input feeding.
        feed_context: without attention, give :math:`z` to every step (Cho et al.).
        reverse_source: read each source backwards.
        bridge: ``linear`` or ``none`` (zero start).
        dropout: between layers (encoder and decoder), on the decoder's top output
            and on the read-out.
        embedding_dropout: on both embeddings.
        tie_embeddings: tie the output layer to the target embedding.
        padding_idx: the padding id of both vocabularies.
        cell_options: for every cell.
        torch_compatible: allow the encoder's fused drop-in
            (:func:`~memnets.layers.build_encoder`).

    Shapes (N = batch, S = longest source, T = target steps, V = target vocabulary):
        :meth:`forward`: ``source`` ``(N, S)`` ids, ``source_lengths`` ``(N,)``,
        ``target_in`` ``(N, T)`` ids (start token first) -> logits ``(N, T, V)``
        and attention ``(N, T, S)`` (zeros without attention).
    """

    def __init__(
        self,
        source_vocab: int,
        target_vocab: int,
        *,
        embedding_size: int = 256,
        hidden_size: int = 512,
        cell: str = "lstm",
        encoder_layers: int = 1,
        decoder_layers: int = 1,
        bidirectional: bool = True,
        attention: str = "bahdanau",
        score: str | None = None,
        attention_size: int | None = None,
        input_feeding: bool = True,
        feed_context: bool = False,
        reverse_source: bool = False,
        bridge: str = "linear",
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        tie_embeddings: bool = False,
        padding_idx: int = 0,
        cell_options: dict | None = None,
        torch_compatible: bool = True,
    ) -> None:
        super().__init__()
        check_sizes(source_vocab=source_vocab, target_vocab=target_vocab,
                    embedding_size=embedding_size, hidden_size=hidden_size,
                    encoder_layers=encoder_layers, decoder_layers=decoder_layers)
        if attention not in STYLES:
            raise ConfigError(f"expected attention one of {', '.join(STYLES)}, got {attention!r}")
        if bridge not in BRIDGES:
            raise ConfigError(f"expected bridge one of {', '.join(BRIDGES)}, got {bridge!r}")
        for name, p in (("dropout", dropout), ("embedding_dropout", embedding_dropout)):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"expected {name} in [0, 1), got {p}")
        if attention == "none":
            if score is not None:
                raise ConfigError(f"score: expected none without attention, got {score!r}")
        else:
            score = score or DEFAULT_SCORE[attention]
            if score not in KINDS:
                raise ConfigError(f"expected score one of {', '.join(KINDS)}, got {score!r}")
        options = dict(cell_options or {})
        self.style, self.score_kind = attention, score
        self.input_feeding = attention == "luong" and input_feeding
        self.feed_context = attention == "none" and feed_context
        self.reverse_source, self.bidirectional = reverse_source, bidirectional
        self.dropout, self.embedding_dropout = dropout, embedding_dropout
        self.padding_idx = padding_idx
        E, H = embedding_size, hidden_size

        self.source_embedding = nn.Embedding(source_vocab, E, padding_idx=padding_idx)
        self.target_embedding = nn.Embedding(target_vocab, E, padding_idx=padding_idx)
        for emb in (self.source_embedding, self.target_embedding):
            # U(-0.1, 0.1), not torch's N(0, 1): a tied output layer then starts near
            # the uniform distribution (logits of N(0, 1) rows would start at std ~ sqrt(E))
            nn.init.uniform_(emb.weight, -0.1, 0.1)
            with torch.no_grad():
                emb.weight[padding_idx].zero_()
        self.encoder = build_encoder(cell, E, H, num_layers=encoder_layers,
                                     bidirectional=bidirectional, dropout=dropout,
                                     cell_options=options, torch_compatible=torch_compatible)
        D_enc = self.encoder.output_size
        self.summary_size = D_enc
        R = E if tie_embeddings else H
        self.readout_size = R

        # the memory the decoder attends to, and the attention
        self.memory_proj = None
        key_size = D_enc
        if score == "dot" and D_enc != H:
            self.memory_proj = nn.Linear(D_enc, H, bias=False)
            key_size = H
        scored = score in ("additive", "concat")  # the kinds with a hidden layer
        self.attention = None if attention == "none" else Attention(
            H, key_size, score, attention_size=(attention_size or H) if scored else None)
        # the decoder cells
        extra = {"none": D_enc if self.feed_context else 0, "bahdanau": key_size,
                 "luong": R if self.input_feeding else 0}[attention]
        cells, size = [], E + extra
        for _ in range(decoder_layers):
            c = make_cell(cell, input_size=size, hidden_size=H, **options)
            cells.append(c)
            size = c.output_size
        self.cells = nn.ModuleList(cells)
        top = size
        # read-out
        if attention == "luong":
            self.readout = nn.Linear(key_size + top, R, bias=False)
        elif attention == "bahdanau":
            self.readout = nn.Linear(top + key_size + E, R)
        elif self.feed_context or R != top:
            self.readout = nn.Linear(top + (D_enc + E if self.feed_context else 0), R)
        else:
            self.readout = None
        self.generator = nn.Linear(R, target_vocab)
        if tie_embeddings:
            self.generator.weight = self.target_embedding.weight
        # the bridge: one linear map per float state field of every decoder layer
        self.bridge = None
        if bridge == "linear":
            self.bridge = nn.ModuleList()
            for c in self.cells:
                template = c.init_state(1, device="meta")
                self.bridge.append(nn.ModuleList(
                    nn.Linear(D_enc, f.shape[-1]) if _bridgeable(f) else nn.Identity()
                    for f in template))

    # ------------------------------------------------------------------ encoder

    def _dropout(self, x: Tensor, p: float) -> Tensor:
        return F.dropout(x, p, self.training) if p > 0 else x

    def start(self, source: Tensor, source_lengths: Tensor) -> DecoderState:
        """Encode a batch of sources and return the decoder's first state."""
        if not isinstance(source, Tensor) or source.dim() != 2 or source.is_floating_point():
            got = tuple(source.shape) if isinstance(source, Tensor) else type(source).__name__
            raise ValueError(f"expected source ids of shape (N, S) and integer dtype, got {got}")
        N, S = source.shape
        lengths = as_lengths(source_lengths, name="source_lengths")
        if tuple(lengths.shape) != (N,) or int(lengths.min()) < 1 or int(lengths.max()) > S:
            raise ValueError(f"expected source_lengths of shape ({N},) with values in [1, {S}], "
                             f"got {lengths.tolist()[:8]} of shape {tuple(lengths.shape)}")
        if self.reverse_source:
            source = reverse_padded(source.t(), lengths).t()
        x = self._dropout(self.source_embedding(source), self.embedding_dropout)  # (N, S, E)
        out, _ = self.encoder(x, lengths=lengths)  # (N, S, D_enc), zero at padding
        summary = pool(out, lengths, "last", bidirectional=self.bidirectional)  # (N, D_enc)
        if self.reverse_source:
            out = reverse_padded(out.transpose(0, 1), lengths).transpose(0, 1)
        memory = self.memory_proj(out) if self.memory_proj is not None else out  # (N, S, K)
        mask = torch.arange(S, device=out.device)[None, :] < lengths.to(out.device)[:, None]
        projected = None if self.attention is None else self.attention.project_keys(memory)
        cells = []
        for k, c in enumerate(self.cells):
            zero = c.init_state(N, device=out.device, dtype=out.dtype)
            if self.bridge is None:
                cells.append(zero)
                continue
            fields = [torch.tanh(m(summary)) if _bridgeable(f) else f
                      for m, f in zip(self.bridge[k], zero)]
            cells.append(type(zero)(*fields))
        top = cells[-1][0]
        output = top if tuple(top.shape) == (N, self.cells[-1].output_size) else \
            out.new_zeros(N, self.cells[-1].output_size)
        feed = out.new_zeros(N, self.readout_size if self.input_feeding else 0)
        return DecoderState(tuple(cells), output, feed, memory, projected, mask, summary)

    # ------------------------------------------------------------------ decoder

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """One decoder step: the previous tokens ``(M,)`` -> read-out ``o_t`` ``(M, R)``
        (before the dropout and the output layer), the new state, and the
        attention weights ``(M, S)`` (zeros without attention)."""
        e = self._dropout(self.target_embedding(tokens), self.embedding_dropout)  # (M, E)
        alpha = None
        if self.style == "bahdanau":
            context, alpha = self.attention(state.output, state.memory, state.mask,
                                            projected=state.projected)  # (M, K), (M, S)
            x = torch.cat([e, context], -1)
        elif self.input_feeding:
            x = torch.cat([e, state.feed], -1)
        elif self.feed_context:
            x = torch.cat([e, state.summary], -1)
        else:
            x = e
        cells = []
        for k, c in enumerate(self.cells):
            if k > 0:
                x = self._dropout(x, self.dropout)
            x, s = c(x, state.cells[k])
            cells.append(s)
        h = x  # (M, H) the top output s_t
        feed = state.feed
        if self.style == "luong":
            context, alpha = self.attention(h, state.memory, state.mask,
                                            projected=state.projected)
            o = torch.tanh(self.readout(torch.cat([context, self._dropout(h, self.dropout)],
                                                  -1)))  # (M, R)
            if self.input_feeding:
                feed = o
        elif self.style == "bahdanau":
            o = torch.tanh(self.readout(torch.cat([self._dropout(h, self.dropout), context, e],
                                                  -1)))
        elif self.readout is not None:
            parts = [self._dropout(h, self.dropout)]
            if self.feed_context:
                parts += [state.summary, e]
            o = torch.tanh(self.readout(torch.cat(parts, -1)))
        else:
            o = h
        if alpha is None:
            alpha = state.mask.new_zeros(state.mask.shape, dtype=h.dtype)
        new = state._replace(cells=tuple(cells), output=h, feed=feed)
        return o, new, alpha

    def logits(self, readout: Tensor) -> Tensor:
        """The output layer: read-outs ``(*, R)`` -> logits ``(*, V)``."""
        return self.generator(self._dropout(readout, self.dropout))

    def _sample_masks(self, batch_size: int, like: Tensor) -> None:
        """Fresh per-sequence masks for regularised decoder cells (variational dropout)."""
        if not self.training:
            return
        for c in self.cells:
            if hasattr(c, "sample_masks"):
                c.sample_masks(batch_size, device=like.device, dtype=like.dtype)

    def forward(self, source: Tensor, source_lengths: Tensor, target_in: Tensor, *,
                sample_prob: float = 0.0) -> tuple[Tensor, Tensor]:
        """Teacher forcing: the logits of every target step ``(N, T, V)`` and the
        attention ``(N, T, S)``.

        ``sample_prob`` (scheduled sampling, Bengio, Vinyals, Jaitly & Shazeer,
        "Scheduled sampling for sequence prediction with recurrent neural networks",
        2015): in training, each input token after the first is, with this
        probability, replaced by a token drawn from the model's own distribution
        at the step before (drawn without gradient).
        """
        if target_in.dim() != 2 or target_in.shape[0] != source.shape[0]:
            raise ValueError(f"expected target ids of shape ({source.shape[0]}, T), got "
                             f"{tuple(target_in.shape)}")
        state = self.start(source, source_lengths)
        N, T = target_in.shape
        self._sample_masks(N, state.memory)
        sampling = self.training and sample_prob > 0
        outs, alphas, logits = [], [], []
        prev_logits = None
        for t in range(T):
            y = target_in[:, t]
            if sampling and prev_logits is not None:
                drawn = torch.multinomial(torch.softmax(prev_logits.detach().float(), -1),
                                          1).squeeze(1)
                use = torch.rand(N, device=y.device) < sample_prob
                y = torch.where(use, drawn, y)
            o, state, alpha = self.step(y, state)
            alphas.append(alpha)
            if sampling:
                prev_logits = self.logits(o)
                logits.append(prev_logits)
            else:
                outs.append(o)
        result = torch.stack(logits, 1) if sampling else self.logits(torch.stack(outs, 1))
        return result, torch.stack(alphas, 1)

    # ------------------------------------------------------------------ search

    def search_step(self, banned: tuple[int, ...] = ()):
        """The step function of :mod:`memnets.models.decoding`: ``(tokens, state) ->
        (log_probs, state, attention)``, with the ids in ``banned`` (padding, start)
        never generated."""

        def step(tokens: Tensor, state: DecoderState):
            o, state, alpha = self.step(tokens, state)
            logits = self.logits(o)
            if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: softmax in fp32
                logits = logits.float()
            log_probs = torch.log_softmax(logits, -1)
            if banned:
                log_probs[:, list(banned)] = float("-inf")
            return log_probs, state, alpha

        return step


def _bridgeable(field: Any) -> bool:
    """A state field the bridge sets: a float tensor ``(N, d)``."""
    return isinstance(field, Tensor) and field.dim() == 2 and field.is_floating_point()
