"""Recurrent language models: embedding, a stack of recurrent layers, softmax.

Used for word-level (Penn Treebank) and character-level (Tiny Shakespeare)
modelling with truncated backpropagation through time.  This module imports
torch and :mod:`memnets.cells` / :mod:`memnets.layers` only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells import make_cell
from memnets.cells.base import RecurrentCell, check_sizes
from memnets.layers import Stacked
from memnets.layers.torch_compat import GRU, LSTM, RNN

# cells that have a torch.nn-compatible drop-in layer with a fused kernel
_FUSED = {"lstm": LSTM, "gru": GRU, "elman": RNN}


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
    recurrent neural networks", 2016).

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
        cell: a name from :func:`memnets.cells.cell_names`.  ``"lstm"``,
            ``"gru"`` and ``"elman"`` run on the fused drop-in layers
            (:class:`memnets.LSTM` etc.) unless ``variational`` is set.
        dropout: probability of dropping a non-recurrent activation.
        variational: use time-locked masks and recurrent dropout (above).
        tie_weights: share the embedding matrix with the softmax weights
            (Press & Wolf, "Using the output embedding to improve language
            models", 2017; Inan, Khosravi & Socher, 2017); requires
            ``embedding_size == hidden_size``.
        init_range: if given, every parameter is drawn from
            U(-init_range, init_range) (Zaremba et al. use 0.1 and 0.05); else
            the cells keep their own initialisation.
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
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        if cell in _FUSED and not variational:
            self.rnn = _FUSED[cell](embedding_size, hidden_size, num_layers, batch_first=True,
                                    dropout=dropout if num_layers > 1 else 0.0, **cell_options)
        else:
            cells: list[RecurrentCell] = []
            in_size = embedding_size
            for _ in range(num_layers):
                c = make_cell(cell, input_size=in_size, hidden_size=hidden_size, **cell_options)
                if variational and dropout > 0:
                    c = RecurrentDropout(c, dropout)
                cells.append(c)
                in_size = c.output_size
            self.rnn = Stacked(cells, dropout=0.0 if variational else dropout, batch_first=True)
        out_size = self.rnn.stack.output_size if hasattr(self.rnn, "stack") else \
            self.rnn.output_size
        if out_size != hidden_size and tie_weights:
            raise ValueError(f"expected the top layer to output {embedding_size} features "
                             f"for tie_weights=True, got {out_size}")
        self.decoder = nn.Linear(out_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)

    # --- dropout ---

    def _drop(self, x: Tensor) -> Tensor:
        """Dropout of a non-recurrent activation ``(N, L, H)``."""
        if not self.training or self.dropout == 0.0:
            return x
        if not self.variational:
            return F.dropout(x, self.dropout, training=True)
        keep = 1.0 - self.dropout
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep) / keep  # (N, 1, H)
        return x * mask

    def _variational_layers(self):
        return [m for m in self.modules() if isinstance(m, RecurrentDropout)]

    # --- forward ---

    def forward(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"expected token ids of shape (N, L) and integer dtype, got {got}")
        N = tokens.shape[0]
        for m in self._variational_layers():
            m.sample_mask(N, self.training, device=tokens.device)
        x = self._drop(self.embedding(tokens))  # (N, L, E)
        if self.variational and isinstance(self.rnn, Stacked):
            finals = []
            states = state if state is not None else (None,) * len(self.rnn.layers)
            for k, (layer, s) in enumerate(zip(self.rnn.layers, states)):
                if k > 0:
                    x = self._drop(x)
                x, s = layer(x, s)  # (N, L, H)
                finals.append(s)
            out, state = x, tuple(finals)
        else:
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


class RecurrentDropout(RecurrentCell):
    r"""Variational dropout of a cell's recurrent input (Gal & Ghahramani, 2016).

    .. math::
        y_t, s_t = \mathrm{cell}\big(x_t, (m \odot h_{t-1}, \text{rest of } s_{t-1})\big),
        \qquad m \sim \mathrm{Bernoulli}(1 - p)^{N \times H} / (1 - p)

    with one mask :math:`m` per sequence, shared by all time steps (set by
    :meth:`sample_mask` before each segment).  Only the first state field
    (the output ``h``) is dropped; an LSTM's memory ``c`` is left alone.
    In eval mode the cell is the wrapped cell.

    Shapes: those of the wrapped cell.
    """

    def __init__(self, cell: RecurrentCell, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"expected p in [0, 1), got {p}")
        self.cell, self.p = cell, p
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.output_size = cell.output_size
        self._mask: Tensor | None = None

    def sample_mask(self, batch_size: int, training: bool, *, device=None) -> None:
        if not training or self.p == 0.0:
            self._mask = None
            return
        h_size = self.cell.init_state(1, device="meta")[0].shape[-1]
        keep = 1.0 - self.p
        p = next(self.cell.parameters())
        self._mask = torch.empty(batch_size, h_size, device=device or p.device,
                                 dtype=p.dtype).bernoulli_(keep) / keep  # (N, H)

    def project_input(self, x: Tensor) -> Tensor:
        return self.cell.project_input(x)

    def recur(self, u_t: Tensor, state):
        if self._mask is not None and self.training:
            state = type(state)(state[0] * self._mask, *state[1:])
        return self.cell.recur(u_t, state)

    def init_state(self, batch_size: int, *, device=None, dtype=None):
        return self.cell.init_state(batch_size, device=device, dtype=dtype)

    def mask_state(self, keep_new, new, old):
        return self.cell.mask_state(keep_new, new, old)

    def check_state(self, state, batch_size: int) -> None:
        self.cell.check_state(state, batch_size)

    def extra_repr(self) -> str:
        return f"p={self.p}"
