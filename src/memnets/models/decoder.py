r"""An attention decoder that starts from any memory: the decoder half of
:class:`memnets.models.seq2seq.Seq2Seq`, shared with the captioning model.

A memory is a set of vectors (a source sentence's encoder outputs, an image's
grid of features), a mask of its real positions and a summary vector.
:class:`AttentionDecoder` embeds the previous token, reads the memory with
:class:`memnets.layers.attention.Attention`, steps a stack of cells made by
:func:`memnets.cells.make_cell` and scores the next token; :meth:`~AttentionDecoder.step`
is the one step that teacher forcing, greedy and beam search
(:mod:`memnets.models.decoding`) all run.

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
        memory: ``(N, S, K)`` what the decoder attends to (keys and values).
        projected: ``Attention.project_keys(memory)``, computed once per memory, or ``None``.
        mask: ``(N, S)`` bool, true at real memory positions.
        summary: ``(N, Z)`` the summary of the memory (the context :math:`z` fed at
            every step without attention, and the bridge's input).
    """

    cells: tuple
    output: Tensor
    feed: Tensor
    memory: Tensor
    projected: Tensor | None
    mask: Tensor
    summary: Tensor


class AttentionDecoder(nn.Module):
    r"""A recurrent decoder over any registered cell that reads a memory, without
    attention or with the attention of Bahdanau et al. or of Luong et al.

    **Start.**  From a memory :math:`h_{1..S}` (``(N, S, K)``, real where ``mask``
    is true) and a summary :math:`z`: with ``bridge="linear"`` every state field
    of every decoder layer starts as :math:`\tanh(W_f z + b_f)` (one linear map
    per field; the top layer's first field is also :math:`s_0`), else all zero.

    **A step** (embedding :math:`e_t = E\,y_{t-1}`, decoder layers
    :math:`f_1 \dots f_L` with states :math:`s^{(k)}_t`, top output :math:`s_t`):

    .. math::
        \begin{aligned}
        \text{none:} &\quad s_t = f(e_t\,[;\, z],\ s_{t-1}), &
            o_t &= \tanh(W_o [s_t\,[;\, z;\, e_t]] + b_o) \text{ or } s_t \\
        \text{bahdanau:} &\quad c_t, \alpha_t = \mathrm{attn}(s_{t-1}, h),\ \
            [c_t \leftarrow \beta_t c_t,]\ \ s_t = f([e_t; c_t], s_{t-1}), &
            o_t &= \tanh(W_o [s_t; c_t; e_t] + b_o) \\
        \text{luong:} &\quad s_t = f([e_t; \tilde h_{t-1}], s_{t-1}),\ \
            c_t, \alpha_t = \mathrm{attn}(s_t, h), &
            o_t &= \tilde h_t = \tanh(W_c [c_t; s_t]) \\
        & & p(y_t \mid y_{<t}, h) &= \mathrm{softmax}(W_s\, \mathrm{drop}(o_t) + b_s)
        \end{aligned}

    * ``none``: the summary starts the decoder (Sutskever, Vinyals & Le,
      "Sequence to sequence learning with neural networks", 2014; :math:`o_t = s_t`),
      and with ``feed_context`` (Cho et al., "Learning phrase representations
      using RNN encoder-decoder for statistical machine translation", 2014)
      :math:`z` enters every step and the read-out.
    * ``bahdanau`` (Bahdanau, Cho & Bengio, "Neural machine translation by jointly
      learning to align and translate", 2015): the previous state asks the
      question, the context enters the cell and the read-out; ``score`` (default
      ``additive``) is any :class:`~memnets.layers.attention.Attention` kind.
      With ``gate`` the context is scaled by the gating scalar of Xu et al.,
      "Show, attend and tell: neural image caption generation with visual
      attention", 2015: :math:`\beta_t = \sigma(w_\beta^\top s_{t-1} + b_\beta)`,
      so the decoder can turn away from the memory (for words such as "of").
    * ``luong`` (Luong, Pham & Manning, "Effective approaches to attention-based
      neural machine translation", 2015, global attention): the new state asks,
      :math:`\tilde h_t` is read out and, with ``input_feeding``, fed to the next
      step; ``score`` ``dot``, ``general`` (default) or ``concat``.  ``dot`` needs
      keys of the decoder's size: a memory of another size K is first mapped to
      H by a linear layer without bias.

    ``tie_embeddings`` (Press & Wolf, "Using the output embedding to improve
    language models", 2017) makes :math:`W_s = E` and the read-out :math:`o_t`
    of the embedding size R = E (else R = H).

    Initialisation: the embedding :math:`U(-0.1, 0.1)` (the range of Zaremba,
    Sutskever & Vinyals, "Recurrent neural network regularization", 2014), so
    that a tied output layer starts near the uniform distribution, and zero at
    ``padding_idx``; the cells their own (:func:`~memnets.cells.make_cell`);
    linear layers torch's.

    Departures: Bahdanau et al.'s read-out is a maxout layer over
    :math:`s_{t-1}`; here it is a tanh layer over the new :math:`s_t`.  The
    bridge generalises Bahdanau et al.'s :math:`s_0 = \tanh(W_s \overleftarrow{h}_1)`
    (and Xu et al.'s :math:`f_{\text{init}}` MLPs, here one tanh layer) to any
    cell and depth.

    Args:
        vocab_size: V, the output vocabulary.
        memory_size: K, features of a memory vector.
        summary_size: Z, features of the summary.
        embedding_size: E.
        hidden_size: H, every decoder layer.
        cell: a registered one-layer cell.
        num_layers: L, the decoder's depth.
        attention: ``none``, ``bahdanau`` or ``luong``.
        score: the attention kind (``additive``, ``dot``, ``general``, ``concat``);
            ``None`` for the style's default.
        attention_size: the hidden size A of ``additive``/``concat`` scores (default H).
        input_feeding: Luong's input feeding.
        feed_context: without attention, give :math:`z` to every step (Cho et al.).
        bridge: ``linear`` or ``none`` (zero start).
        gate: Xu et al.'s gating scalar (``bahdanau`` only).
        dropout: between layers, on the top output and on the read-out.
        embedding_dropout: on the embedding.
        tie_embeddings: tie the output layer to the embedding.
        padding_idx: the padding id.
        cell_options: for every cell.
        embedding: a ready ``nn.Embedding(V, E)`` to use (kept as it is), instead of
            a new one.

    Attributes:
        embedding: ``(V, E)`` :math:`E`.
        attention: the :class:`~memnets.layers.attention.Attention`, or ``None``.
        memory_proj: ``dot`` with K != H: the map of the memory to H, else ``None``.
        cells: the decoder cells, lowest first.
        readout: :math:`W_o` (:math:`W_c` for ``luong``), or ``None`` where :math:`o_t = s_t`.
        generator: :math:`W_s, b_s`.
        bridge: one ``ModuleList`` of per-field maps per layer, or ``None``.
        gate: :math:`w_\beta, b_\beta` ``Linear(H, 1)``, or ``None``.

    Shapes (N = batch, S = memory positions, T = target steps):
        :meth:`forward`: ``memory`` ``(N, S, K)``, ``mask`` ``(N, S)`` bool,
        ``summary`` ``(N, Z)``, ``target_in`` ``(N, T)`` ids (start token first)
        -> logits ``(N, T, V)`` and attention ``(N, T, S)`` (zeros without attention).
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        memory_size: int,
        summary_size: int,
        embedding_size: int,
        hidden_size: int,
        cell: str = "lstm",
        num_layers: int = 1,
        attention: str = "bahdanau",
        score: str | None = None,
        attention_size: int | None = None,
        input_feeding: bool = True,
        feed_context: bool = False,
        bridge: str = "linear",
        gate: bool = False,
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        tie_embeddings: bool = False,
        padding_idx: int = 0,
        cell_options: dict | None = None,
        embedding: nn.Embedding | None = None,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size=vocab_size, memory_size=memory_size, summary_size=summary_size,
                    embedding_size=embedding_size, hidden_size=hidden_size, num_layers=num_layers)
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
        if gate and attention != "bahdanau":
            raise ConfigError(f"gate: the gating scalar needs attention 'bahdanau', "
                              f"got {attention!r}")
        options = dict(cell_options or {})
        self.style, self.score_kind = attention, score
        self.input_feeding = attention == "luong" and input_feeding
        self.feed_context = attention == "none" and feed_context
        self.dropout, self.embedding_dropout = dropout, embedding_dropout
        self.padding_idx = padding_idx
        self.memory_size, self.summary_size = memory_size, summary_size
        E, H, K, Z = embedding_size, hidden_size, memory_size, summary_size
        R = E if tie_embeddings else H
        self.readout_size = R

        if embedding is None:
            embedding = nn.Embedding(vocab_size, E, padding_idx=padding_idx)
            # U(-0.1, 0.1), not torch's N(0, 1): a tied output layer then starts near the
            # uniform distribution (logits of N(0, 1) rows would start at std ~ sqrt(E))
            nn.init.uniform_(embedding.weight, -0.1, 0.1)
            with torch.no_grad():
                embedding.weight[padding_idx].zero_()
        elif not isinstance(embedding, nn.Embedding) or \
                tuple(embedding.weight.shape) != (vocab_size, E):
            got = (tuple(embedding.weight.shape) if isinstance(embedding, nn.Embedding)
                   else type(embedding).__name__)
            raise ConfigError(f"embedding: expected an nn.Embedding of shape ({vocab_size}, {E}), "
                              f"got {got}")
        self.embedding = embedding

        # the memory the decoder attends to, and the attention
        self.memory_proj = None
        key_size = K
        if score == "dot" and K != H:
            self.memory_proj = nn.Linear(K, H, bias=False)
            key_size = H
        self.key_size = key_size
        scored = score in ("additive", "concat")  # the kinds with a hidden layer
        self.attention = None if attention == "none" else Attention(
            H, key_size, score, attention_size=(attention_size or H) if scored else None)
        # the decoder cells
        extra = {"none": Z if self.feed_context else 0, "bahdanau": key_size,
                 "luong": R if self.input_feeding else 0}[attention]
        cells, size = [], E + extra
        for _ in range(num_layers):
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
            self.readout = nn.Linear(top + (Z + E if self.feed_context else 0), R)
        else:
            self.readout = None
        self.generator = nn.Linear(R, vocab_size)
        if tie_embeddings:
            self.generator.weight = self.embedding.weight
        # the bridge: one linear map per float state field of every decoder layer
        self.bridge = None
        if bridge == "linear":
            self.bridge = nn.ModuleList()
            for c in self.cells:
                template = c.init_state(1, device="meta")
                self.bridge.append(nn.ModuleList(
                    nn.Linear(Z, f.shape[-1]) if _bridgeable(f) else nn.Identity()
                    for f in template))
        # Xu et al.'s gating scalar beta_t = sigmoid(f_beta(s_{t-1}))
        self.gate = nn.Linear(top, 1) if gate else None

    def _dropout(self, x: Tensor, p: float) -> Tensor:
        return F.dropout(x, p, self.training) if p > 0 else x

    # ------------------------------------------------------------------ start

    def start(self, memory: Tensor, mask: Tensor, summary: Tensor) -> DecoderState:
        """The first state from a memory ``(N, S, K)``, its mask ``(N, S)`` (bool, true
        at real positions) and a summary ``(N, Z)``."""
        if not isinstance(memory, Tensor) or memory.dim() != 3 or \
                memory.shape[-1] != self.memory_size:
            got = tuple(memory.shape) if isinstance(memory, Tensor) else type(memory).__name__
            raise ValueError(f"expected a memory of shape (N, S, {self.memory_size}), got {got}")
        N, S = memory.shape[:2]
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or \
                tuple(mask.shape) != (N, S):
            got = (f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, Tensor)
                   else type(mask).__name__)
            raise ValueError(f"expected a bool mask of shape ({N}, {S}), got {got}")
        if not isinstance(summary, Tensor) or tuple(summary.shape) != (N, self.summary_size):
            got = tuple(summary.shape) if isinstance(summary, Tensor) else type(summary).__name__
            raise ValueError(f"expected a summary of shape ({N}, {self.summary_size}), got {got}")
        out = memory
        memory = self.memory_proj(out) if self.memory_proj is not None else out  # (N, S, K)
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

    # ------------------------------------------------------------------ step

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """One step: the previous tokens ``(M,)`` -> read-out ``o_t`` ``(M, R)``
        (before the dropout and the output layer), the new state, and the
        attention weights ``(M, S)`` (zeros without attention)."""
        e = self._dropout(self.embedding(tokens), self.embedding_dropout)  # (M, E)
        alpha = None
        if self.style == "bahdanau":
            context, alpha = self.attention(state.output, state.memory, state.mask,
                                            projected=state.projected)  # (M, K), (M, S)
            if self.gate is not None:
                context = torch.sigmoid(self.gate(state.output)) * context  # beta_t c_t
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

    def sample_masks(self, batch_size: int, like: Tensor) -> None:
        """Fresh per-sequence masks for regularised cells (variational dropout), in
        training; :meth:`forward` calls it, a caller stepping by hand calls it once
        per batch of sequences."""
        if not self.training:
            return
        for c in self.cells:
            if hasattr(c, "sample_masks"):
                c.sample_masks(batch_size, device=like.device, dtype=like.dtype)

    def forward(self, memory: Tensor, mask: Tensor, summary: Tensor, target_in: Tensor, *,
                sample_prob: float = 0.0) -> tuple[Tensor, Tensor]:
        """Teacher forcing: the logits of every target step ``(N, T, V)`` and the
        attention ``(N, T, S)``.

        ``sample_prob`` (scheduled sampling, Bengio, Vinyals, Jaitly & Shazeer,
        "Scheduled sampling for sequence prediction with recurrent neural networks",
        2015): in training, each input token after the first is, with this
        probability, replaced by a token drawn from the model's own distribution
        at the step before (drawn without gradient).
        """
        if not isinstance(target_in, Tensor) or target_in.dim() != 2 or \
                target_in.shape[0] != memory.shape[0]:
            got = tuple(target_in.shape) if isinstance(target_in, Tensor) else \
                type(target_in).__name__
            raise ValueError(f"expected target ids of shape ({memory.shape[0]}, T), got {got}")
        state = self.start(memory, mask, summary)
        return self.teacher_forced(state, target_in, sample_prob=sample_prob)

    def teacher_forced(self, state: DecoderState, target_in: Tensor, *,
                       sample_prob: float = 0.0) -> tuple[Tensor, Tensor]:
        """:meth:`forward` from a first state (:meth:`start`) instead of a memory."""
        N, T = target_in.shape
        self.sample_masks(N, state.memory)
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
