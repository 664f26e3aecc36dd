"""Many-to-one sequence classification: embed, run a recurrent encoder, pool, classify.

Also :func:`load_word_vectors` (pretrained vectors in GloVe's text format).
This module imports torch, :mod:`memnets.cells`, :mod:`memnets.layers` and
:mod:`memnets.data` only.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import check_sizes
from memnets.data.text import DataFormatError, MissingFileError
from memnets.data.vocab import Vocab
from memnets.errors import shorten
from memnets.layers.encoder import build_encoder
from memnets.layers.pooling import POOLINGS, attention_scorer, pool
from memnets.layers.sequence import as_lengths


class SequenceClassifier(nn.Module):
    r"""A recurrent encoder read out by pooling, then a linear softmax classifier.

    .. math::
        \begin{aligned}
        e_t &= \mathrm{drop}_e(E\, w_t), \qquad
        o_{1..T} = \mathrm{encoder}(e_{1..T}) \\
        z &= \mathrm{pool}(o_{1..T}), \qquad
        p(y \mid w_{1..T}) = \mathrm{softmax}(W\, \mathrm{drop}(z) + b)
        \end{aligned}

    Pooling over the valid steps of each sequence (:func:`memnets.layers.pooling.pool`):

    * ``last``: the output at the last valid step; bidirectional: the forward
      half at the last step joined with the backward half at the first step
      (each direction's summary of the whole sentence);
    * ``mean`` / ``max``: element-wise mean / maximum over the valid steps;
    * ``attention``: :math:`z = \sum_t \alpha_t o_t` with
      :math:`\alpha = \mathrm{softmax}_t(v^\top \tanh(W_a o_t + b_a))`
      (the attention read-out of Yang et al., "Hierarchical attention networks
      for document classification", 2016), padded steps excluded.

    Shapes (N = batch, T = longest sequence, D = 2 if bidirectional else 1):

    * input: token ids ``(N, T)`` int64, padded with ``padding_idx``, and
      ``lengths`` ``(N,)``; each length in ``[1, T]``;
    * output: logits ``(N, num_classes)``.

    Args:
        vocab_size, embedding_size: the embedding table.
        hidden_size: features per direction of each recurrent layer.
        num_classes: output classes.
        cell: a registered cell name; fused drop-in or generic layers by the
            rule of :func:`memnets.layers.build_encoder`.
        num_layers: stacked layers (dropout ``dropout`` between them).
        bidirectional: run a backward encoder too and concatenate.
        pooling: one of ``last``, ``mean``, ``max``, ``attention``.
        embedding_dropout: dropout on the word vectors.  With
            ``word_dropout=True`` whole word vectors are dropped instead.
        dropout: dropout between layers and before the classifier.
        padding_idx: the id used for padding (its vector stays zero).
        pretrained: an optional ``(vocab_size, embedding_size)`` tensor to copy
            into the embedding (see :func:`load_word_vectors`).
        freeze_embeddings: keep the embedding fixed.
        block, block_options: residual blocks instead of plain layers
            (:func:`memnets.layers.build_encoder`).
        cell_options: passed to the cell.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        pooling: str = "last",
        embedding_dropout: float = 0.0,
        word_dropout: bool = False,
        dropout: float = 0.0,
        padding_idx: int = 0,
        pretrained: Tensor | None = None,
        freeze_embeddings: bool = False,
        block: str | None = None,
        block_options: dict | None = None,
        **cell_options,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size=vocab_size, embedding_size=embedding_size,
                    hidden_size=hidden_size, num_layers=num_layers)
        if pooling not in POOLINGS:
            raise ValueError(f"expected pooling in {POOLINGS}, got {pooling!r}")
        if num_classes < 2:
            raise ValueError(f"expected num_classes >= 2, got {num_classes}")
        for name, p in (("embedding_dropout", embedding_dropout), ("dropout", dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"expected {name} in [0, 1), got {p}")
        self.pooling, self.bidirectional = pooling, bidirectional
        self.embedding_dropout, self.word_dropout = embedding_dropout, word_dropout
        self.dropout = dropout
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=padding_idx)
        if pretrained is not None:
            if tuple(pretrained.shape) != (vocab_size, embedding_size):
                raise ValueError(
                    f"expected pretrained vectors of shape ({vocab_size}, {embedding_size}), "
                    f"got {tuple(pretrained.shape)}"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(pretrained)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.encoder = build_encoder(cell, embedding_size, hidden_size, num_layers=num_layers,
                                     bidirectional=bidirectional, dropout=dropout,
                                     cell_options=cell_options, block=block,
                                     block_options=block_options)
        self.output_size = self.encoder.output_size
        self.attention = attention_scorer(self.output_size) if pooling == "attention" else None
        self.classifier = nn.Linear(self.output_size, num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"expected token ids of shape (N, T) and integer dtype, got {got}")
        N, T = tokens.shape
        lengths = as_lengths(lengths)  # int64 on the CPU; floats and bools refused
        if tuple(lengths.shape) != (N,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError(f"expected lengths of shape ({N},) with values in [1, {T}], "
                             f"got {lengths.tolist()[:8]} of shape {tuple(lengths.shape)}")
        x = self.embedding(tokens)  # (N, T, E)
        if self.training and self.embedding_dropout > 0:
            if self.word_dropout:
                keep = 1 - self.embedding_dropout
                x = x * (x.new_empty(N, T, 1).bernoulli_(keep) / keep)
            else:
                x = F.dropout(x, self.embedding_dropout, training=True)
        out, _ = self.encoder(x, lengths=lengths)  # (N, T, D*H), zero at padding
        z = pool(out, lengths, self.pooling, scorer=self.attention,
                 bidirectional=self.bidirectional)  # (N, D*H)
        return self.classifier(F.dropout(z, self.dropout, training=self.training))


def load_word_vectors(
    path: str | Path, vocab: Vocab, *, dim: int | None = None, scale: float = 0.1,
    seed: int = 0,
) -> tuple[Tensor, int]:
    """Read word vectors in GloVe's text format (``word v_1 ... v_d`` per line).

    Returns ``(table, found)``: a ``(len(vocab), d)`` tensor whose rows for
    words in the file are their vectors, other rows drawn from
    U(-scale, scale) and the padding row zero; and how many vocabulary words
    the file had.  Lines with the wrong number of values raise ``ValueError``
    naming the file, the line and the expected dimension.  A first line of
    two integers (word2vec's header) is skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"expected a word-vector text file at {path}, found none")
    table: Tensor | None = None
    found = 0
    g = torch.Generator().manual_seed(seed)
    with path.open("rb") as f:  # streamed: such files run to gigabytes
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}:{i}: expected UTF-8 text, got "
                                      f"{raw[e.start:e.start + 1]!r}") from None
            parts = line.rstrip("\n").rstrip().split(" ")
            if i == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise DataFormatError(f"{path}:{i}: expected a word and {dim} values, "
                                 f"got {len(parts) - 1} values")
            if table is None:
                table = (torch.rand(len(vocab), dim, generator=g) * 2 - 1) * scale
            word = parts[0]
            if word in vocab.stoi:
                try:
                    table[vocab.stoi[word]] = torch.tensor([float(v) for v in parts[1:]])
                except ValueError:
                    raise DataFormatError(f"{path}:{i}: expected {dim} numbers after "
                                          f"{shorten(word)}") from None
                found += 1
    if table is None:
        raise DataFormatError(f"{path}: expected word vectors, got none")
    if "<pad>" in vocab.stoi:
        table[vocab.pad_id] = 0.0
    return table, found
