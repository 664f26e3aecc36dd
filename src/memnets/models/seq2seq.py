r"""Sequence to sequence: a recurrent encoder–decoder over any memnets cell, without
attention or with the attention of Bahdanau et al. or of Luong et al.

The encoder is :func:`memnets.layers.build_encoder` (deep, optionally
bidirectional, fused drop-in where the rule allows); the decoder is
:class:`memnets.models.decoder.AttentionDecoder` (a stack of cells made with
:func:`memnets.cells.make_cell`, stepped one token at a time by
:meth:`Seq2Seq.step` — the step that teacher forcing, greedy and beam search
(:mod:`memnets.models.decoding`) all run), which starts from the encoder's
outputs.  Attention is :class:`memnets.layers.attention.Attention`.

This module imports torch, :mod:`memnets.cells`, :mod:`memnets.layers`,
:mod:`memnets.models.decoder` and :mod:`memnets.errors` only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import check_sizes
from memnets.errors import ConfigError
from memnets.layers.attention import Attention
from memnets.layers.encoder import build_encoder
from memnets.layers.pooling import pool
from memnets.layers.sequence import as_lengths, reverse_padded
from memnets.models.decoder import BRIDGES, DEFAULT_SCORE, STYLES, AttentionDecoder, DecoderState

__all__ = ["BRIDGES", "DEFAULT_SCORE", "STYLES", "DecoderState", "Seq2Seq"]


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

    **Decoder.**  :class:`~memnets.models.decoder.AttentionDecoder`, given the
    memory :math:`h` (real at the source's words) and the summary :math:`z`.

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

    Attributes:
        source_embedding: ``(source_vocab, E)``.
        encoder: the recurrent layers (:func:`~memnets.layers.build_encoder`).
        decoder: the :class:`~memnets.models.decoder.AttentionDecoder` (its
            ``embedding`` is the target embedding).
        attention: the decoder's attention (a property), ``None`` without.
        readout_size: R (a property).

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
        for name, p in (("dropout", dropout), ("embedding_dropout", embedding_dropout)):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"expected {name} in [0, 1), got {p}")
        options = dict(cell_options or {})
        self.reverse_source, self.bidirectional = reverse_source, bidirectional
        self.embedding_dropout = embedding_dropout
        self.padding_idx = padding_idx
        E, H = embedding_size, hidden_size

        self.source_embedding = nn.Embedding(source_vocab, E, padding_idx=padding_idx)
        target_embedding = nn.Embedding(target_vocab, E, padding_idx=padding_idx)
        for emb in (self.source_embedding, target_embedding):
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
        self.decoder = AttentionDecoder(
            target_vocab, memory_size=D_enc, summary_size=D_enc, embedding_size=E,
            hidden_size=H, cell=cell, num_layers=decoder_layers, attention=attention,
            score=score, attention_size=attention_size, input_feeding=input_feeding,
            feed_context=feed_context, bridge=bridge, dropout=dropout,
            embedding_dropout=embedding_dropout, tie_embeddings=tie_embeddings,
            padding_idx=padding_idx, cell_options=options, embedding=target_embedding)

    @property
    def attention(self) -> Attention | None:
        """The decoder's :class:`~memnets.layers.attention.Attention` (``None`` without)."""
        return self.decoder.attention

    @property
    def readout_size(self) -> int:
        """R, the features of a read-out :math:`o_t` (E with tied embeddings, else H)."""
        return self.decoder.readout_size

    # ------------------------------------------------------------------ encoder

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
        x = self.source_embedding(source)  # (N, S, E)
        if self.embedding_dropout > 0:
            x = F.dropout(x, self.embedding_dropout, self.training)
        out, _ = self.encoder(x, lengths=lengths)  # (N, S, D_enc), zero at padding
        summary = pool(out, lengths, "last", bidirectional=self.bidirectional)  # (N, D_enc)
        if self.reverse_source:
            out = reverse_padded(out.transpose(0, 1), lengths).transpose(0, 1)
        mask = torch.arange(S, device=out.device)[None, :] < lengths.to(out.device)[:, None]
        return self.decoder.start(out, mask, summary)

    # ------------------------------------------------------------------ decoder

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """One decoder step (:meth:`AttentionDecoder.step
        <memnets.models.decoder.AttentionDecoder.step>`): the previous tokens ``(M,)``
        -> read-out ``o_t`` ``(M, R)`` (before the dropout and the output layer), the
        new state, and the attention weights ``(M, S)`` (zeros without attention)."""
        return self.decoder.step(tokens, state)

    def logits(self, readout: Tensor) -> Tensor:
        """The output layer: read-outs ``(*, R)`` -> logits ``(*, V)``."""
        return self.decoder.logits(readout)

    def forward(self, source: Tensor, source_lengths: Tensor, target_in: Tensor, *,
                sample_prob: float = 0.0) -> tuple[Tensor, Tensor]:
        """Teacher forcing: the logits of every target step ``(N, T, V)`` and the
        attention ``(N, T, S)``; ``sample_prob`` is scheduled sampling, as in
        :meth:`AttentionDecoder.forward <memnets.models.decoder.AttentionDecoder.forward>`."""
        if target_in.dim() != 2 or target_in.shape[0] != source.shape[0]:
            raise ValueError(f"expected target ids of shape ({source.shape[0]}, T), got "
                             f"{tuple(target_in.shape)}")
        state = self.start(source, source_lengths)
        return self.decoder.teacher_forced(state, target_in, sample_prob=sample_prob)

    # ------------------------------------------------------------------ search

    def search_step(self, banned: tuple[int, ...] = ()):
        """The step function of :mod:`memnets.models.decoding`: ``(tokens, state) ->
        (log_probs, state, attention)``, with the ids in ``banned`` (padding, start)
        never generated."""
        return self.decoder.search_step(banned)
