r"""The LSTM baseline for bAbI: read the story, then the question, answer once.

Weston, Bordes, Chopra, Rush, van Merriënboer, Joulin & Mikolov, "Towards
AI-complete question answering: a set of prerequisite toy tasks", 2015
(their LSTM baseline, as also reported by Sukhbaatar et al. 2015).

Built with :func:`memnets.layers.build_encoder`, so any registered cell can
replace the LSTM; a cell that torch's kernel computes (a plain ``lstm``,
``gru`` or ``elman``: the builder's rule) runs on the fused drop-in
(:class:`memnets.LSTM` etc.), which reads the few-hundred-word stories several
times faster.  Imports torch and :mod:`memnets.cells` / :mod:`memnets.layers` only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memnets.cells.base import check_sizes
from memnets.layers.encoder import build_encoder


def flatten_story_and_question(story: Tensor, question: Tensor, pad_id: int = 0):
    """The story's words followed by the question's, padding squeezed out.

    Args:
        story: ``(B, M, J)`` word ids, 0 = padding.
        question: ``(B, Q)`` word ids.

    Returns:
        ``(tokens (B, L), lengths (B,))`` with each row's words left-aligned in
        reading order (sentence by sentence, then the question).
    """
    B = story.shape[0]
    seq = torch.cat([story.reshape(B, -1), question], 1)  # (B, M*J + Q)
    valid = seq != pad_id
    # a stable sort of "is padding" moves valid words to the front, order kept
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices
    tokens = seq.gather(1, order)
    lengths = valid.sum(1)
    L = max(1, int(lengths.max()))
    return tokens[:, :L], lengths.clamp(min=1)


class BabiLSTM(nn.Module):
    r"""Many-to-one recurrent reader: embed, run a cell, classify the last state.

    .. math::
        h_t = \mathrm{cell}(E w_t, h_{t-1}), \quad t = 1..L; \qquad
        \hat a = \mathrm{softmax}(W h_L)

    over the words :math:`w_1..w_L` of the story followed by the question.

    Shapes (B = batch, M = memories, J = words per sentence, Q = question
    words, V = ``vocab_size``): ``story (B, M, J)``, ``story_lengths (B,)``
    (unused: padding sentences are all-zero rows), ``question (B, Q)``; returns
    logits ``(B, V)``.

    Args:
        vocab_size: V (answers are words of the vocabulary, as for MemN2N).
        embed_dim: word embedding size.
        hidden_size: the cell's hidden size.
        cell: a name registered with :func:`memnets.make_cell` (default ``lstm``).
        dropout: dropout on the embeddings and on the final state.
        cell_options: extra keyword arguments for the cell.
        block, block_options: a residual block instead of a plain layer
            (:func:`memnets.layers.build_encoder`).
    """

    def __init__(self, vocab_size: int, embed_dim: int = 50, hidden_size: int = 100, *,
                 cell: str = "lstm", dropout: float = 0.0, cell_options: dict | None = None,
                 pad_id: int = 0, block: str | None = None, block_options: dict | None = None):
        super().__init__()
        check_sizes(vocab_size=vocab_size, embed_dim=embed_dim, hidden_size=hidden_size)
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = build_encoder(cell, embed_dim, hidden_size, cell_options=cell_options,
                                 block=block, block_options=block_options)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(self.rnn.output_size, vocab_size)

    def forward(self, story: Tensor, story_lengths: Tensor, question: Tensor) -> Tensor:
        tokens, lengths = flatten_story_and_question(story, question, self.pad_id)  # (B, L)
        x = self.drop(self.embed(tokens))  # (B, L, E)
        outputs, _ = self.rnn(x, lengths=lengths.cpu())  # (B, L, H)
        last = outputs[torch.arange(tokens.shape[0]), lengths - 1]  # (B, H)
        return self.out(self.drop(last))  # (B, V)
