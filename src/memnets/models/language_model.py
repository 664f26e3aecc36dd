"""Recurrent language models: embedding, a stack of recurrent layers, softmax.

Used for word-level (Penn Treebank) and character-level (Tiny Shakespeare)
modelling with truncated backpropagation through time.  This module imports
torch and :mod:`memnets.cells` / :mod:`memnets.layers` only.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import check_sizes
from memnets.layers.encoder import build_encoder


class RNNLanguageModel(nn.Module):
    r"""A recurrent language model (Mikolov et al., "Recurrent neural network based
    language model", 2010; the LSTM form of Zaremba, Sutskever & Vinyals,
    "Recurrent neural network regularization", 2014).

    .. math::
        \begin{aligned}
        e_t &= \mathrm{drop}(E\, w_t) \\
        h^{(1)}_t, \dots, h^{(K)}_t &= \text{$K$ recurrent layers over } e_{1..t}
            \text{ (dropout between layers)} \\
        p(w_{t+1} \mid w_{\le t}) &= \mathrm{softmax}(W\, \mathrm{drop}(h^{(K)}_t) + b)
        \end{aligned}

    Dropout touches only the non-recurrent connections (embedding to layer 1,
    layer to layer, top layer to softmax), as Zaremba et al. prescribe.  With
    ``variational=True`` the dropout masks are instead sampled once per
    segment and shared by all its time steps, and the recurrent connection
    :math:`h_{t-1}` of every layer is dropped too, with a mask also fixed over
    time (Gal & Ghahramani, "A theoretically grounded application of dropout in
    recurrent neural networks", 2016): every cell is wrapped in
    :class:`~memnets.cells.regularizers.VariationalDropout` with
    ``input_dropout = state_dropout = dropout`` (its input mask is the
    embedding's or the layer below's), and the top layer's output gets a
    time-locked mask of its own.

    Shapes (N = batch, L = segment length, V = vocabulary):

    * input: token ids ``(N, L)`` int64 (batch-major streams);
    * state: what the recurrent core returns; ``None`` starts from zeros.  Pass
      it back (after :meth:`detach_state`) to continue the streams;
    * output: logits ``(N, L, V)`` and the final state.

    Args:
        vocab_size: V.
        embedding_size: size of the word vectors.
        hidden_size: size of each recurrent layer.
        num_layers: K.
        cell: a name from :func:`memnets.cells.cell_names`.  Whether it runs on
            the fused drop-in layers (:class:`memnets.LSTM` etc.) or on the
            generic ones is the rule of :func:`memnets.layers.build_encoder`
            (``variational`` adds regulariser options, so it runs generic).
        dropout: probability of dropping a non-recurrent activation.
        variational: use time-locked masks and recurrent dropout (above).
        tie_weights: share the embedding matrix with the softmax weights
            (Press & Wolf, "Using the output embedding to improve language
            models", 2017; Inan, Khosravi & Socher, 2017); requires
            ``embedding_size == hidden_size``.
        init_range: if given, every parameter is drawn once from
            U(-init_range, init_range) (Zaremba et al. use 0.1 and 0.05): the
            modules are built on the meta device (no values, no draws) and
            given storage before the draw.  Else each module keeps its own
            initialisation (the drop-in's is torch.nn's).
        block, block_options: residual blocks instead of plain layers
            (:func:`memnets.layers.build_encoder`).
        cell_options: passed to the cell (e.g. ``nonlinearity="tanh"``).

    Departures from the papers: none in the equations; the softmax is a plain
    full softmax over V.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        cell: str = "lstm",
        dropout: float = 0.0,
        variational: bool = False,
        tie_weights: bool = False,
        init_range: float | None = None,
        block: str | None = None,
        block_options: dict | None = None,
        **cell_options,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size=vocab_size, embedding_size=embedding_size,
                    hidden_size=hidden_size, num_layers=num_layers)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"expected dropout in [0, 1), got {dropout}")
        if tie_weights and embedding_size != hidden_size:
            raise ValueError(
                "expected embedding_size == hidden_size with tie_weights=True, "
                f"got {embedding_size} and {hidden_size}"
            )
        self.vocab_size, self.embedding_size = vocab_size, embedding_size
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.cell_name, self.dropout, self.variational = cell, float(dropout), variational
        self.tie_weights = tie_weights
        options = dict(cell_options)
        if variational:
            given = sorted(k for k in ("input_dropout", "state_dropout") if k in options)
            if given:
                raise ValueError(f"expected no {' or '.join(given)} in the cell options with "
                                 "variational=True (it sets both to dropout)")
            options.update(input_dropout=dropout, state_dropout=dropout)
        # with init_range, built without values: each parameter is drawn once, below
        build = torch.device("meta") if init_range is not None else contextlib.nullcontext()
        with build:
            self.embedding = nn.Embedding(vocab_size, embedding_size)
            self.rnn = build_encoder(cell, embedding_size, hidden_size, num_layers=num_layers,
                                     dropout=0.0 if variational else dropout,
                                     cell_options=options, block=block,
                                     block_options=block_options)
            out_size = self.rnn.output_size
            if out_size != hidden_size and tie_weights:
                raise ValueError(f"expected the top layer to output {embedding_size} features "
                                 f"for tie_weights=True, got {out_size}")
            self.decoder = nn.Linear(out_size, vocab_size)
        if init_range is not None:  # storage, one tensor per module: tie after it
            self.to_empty(device=torch.empty(0).device)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)

    # --- dropout ---

    def _drop(self, x: Tensor) -> Tensor:
        """Dropout of a non-recurrent activation ``(N, L, H)`` that no cell drops: the
        embedding (unless variational: the first cell drops its input) and the top
        layer's output; variational: one mask per sequence for all its steps."""
        if not self.training or self.dropout == 0.0:
            return x
        if not self.variational:
            return F.dropout(x, self.dropout, training=True)
        keep = 1.0 - self.dropout
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep) / keep  # (N, 1, H)
        return x * mask

    # --- forward ---

    def forward(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"expected token ids of shape (N, L) and integer dtype, got {got}")
        x = self.embedding(tokens)  # (N, L, E)
        if not self.variational:
            x = self._drop(x)
        out, state = self.rnn(x, state)  # (N, L, H)
        logits = self.decoder(self._drop(out))  # (N, L, V)
        return logits, state

    @staticmethod
    def detach_state(state):
        """The same state cut from the graph (truncated BPTT carries it across segments)."""
        if state is None:
            return None
        if isinstance(state, Tensor):
            return state.detach()
        return type(state)(*(RNNLanguageModel.detach_state(s) for s in state)) \
            if hasattr(state, "_fields") else type(state)(
                RNNLanguageModel.detach_state(s) for s in state)

    def loss(self, tokens: Tensor, targets: Tensor, state=None):
        """Mean cross-entropy in nats per target token, and the final state."""
        logits, state = self(tokens, state)
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1)), state

    @torch.no_grad()
    def generate(
        self,
        prime: Tensor,
        length: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample ``length`` ids after the ``prime`` ids ``(P,)``, one at a time.

        ``temperature`` divides the logits (below 1: more conservative, 0: greedy).
        Returns the sampled ids ``(length,)`` (without the prime).
        """
        if prime.dim() != 1 or prime.numel() == 0:
            raise ValueError(f"expected a non-empty prime of shape (P,), got {tuple(prime.shape)}")
        if temperature < 0:
            raise ValueError(f"expected temperature >= 0, got {temperature}")
        was_training = self.training
        self.eval()
        logits, state = self(prime.view(1, -1))
        out = []
        for _ in range(length):
            last = logits[0, -1]  # (V,)
            if temperature == 0:
                nxt = last.argmax().view(1)
            else:
                probs = F.softmax(last / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            out.append(nxt)
            logits, state = self(nxt.view(1, 1), state)
        self.train(was_training)
        return torch.cat(out) if out else prime.new_zeros(0)

    def config(self) -> dict:
        """Constructor arguments (without ``init_range``), for checkpoints."""
        return {"vocab_size": self.vocab_size, "embedding_size": self.embedding_size,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "cell": self.cell_name, "dropout": self.dropout,
                "variational": self.variational, "tie_weights": self.tie_weights}

