r"""Visual question answering: Stacked Attention Networks, and the baseline without attention.

:class:`StackedAttentionVQA` reads the image with
:class:`memnets.layers.image.ImageEncoder`, the question with
:func:`memnets.layers.build_encoder` over any registered cell, and lets the
question attend to the image's grid of features one or more times
(:class:`memnets.layers.attention.Attention`) before it answers.

This module imports torch, :mod:`memnets.cells.base` (the size checks),
:mod:`memnets.layers` and :mod:`memnets.errors` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import check_size, check_sizes
from memnets.errors import ConfigError
from memnets.layers.attention import Attention
from memnets.layers.encoder import build_encoder
from memnets.layers.image import ImageEncoder
from memnets.layers.pooling import pool
from memnets.layers.sequence import as_lengths


class StackedAttentionVQA(nn.Module):
    r"""Stacked attention networks (Yang, He, Gao, Deng & Smola, "Stacked attention
    networks for image question answering", 2016) over any registered cell; with
    ``hops=0``, the CNN+LSTM baseline without attention.

    **Image.**  :class:`~memnets.layers.image.ImageEncoder` gives :math:`f_1 \dots f_S`
    (one per grid cell), each mapped to the question's size d:
    :math:`v_i = \tanh(W_I f_i + b_I)`.

    **Question.**  Embedded and read by :func:`~memnets.layers.build_encoder`;
    :math:`u^0 = v_Q` is the output at the last word (with a bidirectional
    encoder, the forward half there and the backward half at the first word),
    d = the encoder's output size.

    **Hops** :math:`k = 1 \dots K` (``hops``), each with its own weights:

    .. math::
        \begin{aligned}
        h^k_{A,i} &= \tanh\big(W^k_{I,A} v_i + (W^k_{Q,A} u^{k-1} + b^k_A)\big) \\
        p^k &= \mathrm{softmax}_i\big(w^{k\top}_P h^k_{A,i}\big) \\
        \tilde v^k &= \textstyle\sum_i p^k_i v_i, \qquad u^k = \tilde v^k + u^{k-1} \\
        p(\text{answer}) &= \mathrm{softmax}\big(W_u\, \mathrm{drop}(u^K) + b_u\big)
        \end{aligned}

    Each hop is an additive :class:`~memnets.layers.attention.Attention`
    (query :math:`u^{k-1}`, keys and values :math:`v`, hidden size
    ``attention_size``).

    **Baseline** (``hops=0``): the image's features pooled and joined with the
    question, then an MLP, as the CNN+LSTM baselines of the literature (Santoro
    et al., "A simple neural network module for relational reasoning", 2017,
    use the CNN+MLP one):

    .. math::
        z = \mathrm{ReLU}\big(W_1\, \mathrm{drop}([\bar v;\, v_Q]) + b_1\big), \qquad
        \bar v = \tfrac{1}{S} \textstyle\sum_i v_i, \qquad
        p(\text{answer}) = \mathrm{softmax}(W_u\, \mathrm{drop}(z) + b_u)

    with a hidden layer of ``hidden_size``.

    **Shared images.**  A batch holds B images and N questions about them;
    ``image_index[n]`` names the image of question ``n``, so that the ~20
    questions of one image share one pass of the CNN (and of :math:`W_I`,
    :math:`W^k_{I,A}`).

    Departures from the paper: the image features come from a small CNN
    trained with the model (:class:`~memnets.layers.image.ImageEncoder`, with
    coordinate features when ``coordinates``), not from VGG's last pooling
    layer; the score bias :math:`b_P` is left out (it adds the same amount to
    every region and cancels in the softmax).  The baseline pools the grid
    (Santoro et al. flatten it), so that it does not depend on the image size.

    Args:
        vocab_size: question words (V).
        num_answers: A.
        channels: the image encoder's convolutions.
        coordinates: append each cell's coordinates to its features.
        embedding_size: E.
        hidden_size: H, each question-encoder direction (and the baseline's MLP).
        cell: a registered one-layer cell.
        num_layers: the question encoder's depth.
        bidirectional: a bidirectional question encoder.
        hops: K >= 0 attention layers (0: the baseline).
        attention_size: the hidden size k of each hop's attention.
        dropout: between the question encoder's layers and before the answer
            layer (and the baseline's MLP).
        padding_idx: the padding id of the question words.
        cell_options: for every cell.

    Attributes:
        image_encoder: the :class:`~memnets.layers.image.ImageEncoder`.
        embedding: ``(V, E)`` the question words, :math:`U(-0.1, 0.1)`, zero at padding.
        question_encoder: the recurrent layers.
        image_proj: :math:`W_I, b_I` ``Linear(D_img, d)``.
        hop_attention: the K :class:`~memnets.layers.attention.Attention` modules.
        mlp: the baseline's hidden layer :math:`W_1, b_1` (``None`` with hops).
        answer: :math:`W_u, b_u`.

    Shapes (B = images, N = questions, L = longest question, S = grid cells):
        :meth:`forward`: ``images`` ``(B, 3, H, W)`` float in [0, 1],
        ``image_index`` ``(N,)`` ids in ``[0, B)``, ``questions`` ``(N, L)`` ids,
        ``lengths`` ``(N,)`` in ``[1, L]`` -> logits ``(N, A)`` and each hop's
        attention ``(N, K, S)`` (``(N, 0, S)`` for the baseline), the cells
        row-major as :meth:`ImageEncoder.cell_boxes
        <memnets.layers.image.ImageEncoder.cell_boxes>` lists them.
    """

    def __init__(
        self,
        vocab_size: int,
        num_answers: int,
        *,
        channels: Sequence[int] = (32, 32, 32, 32),
        coordinates: bool = True,
        embedding_size: int = 64,
        hidden_size: int = 256,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        hops: int = 2,
        attention_size: int = 256,
        dropout: float = 0.0,
        padding_idx: int = 0,
        cell_options: dict | None = None,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size=vocab_size, num_answers=num_answers,
                    embedding_size=embedding_size, hidden_size=hidden_size,
                    num_layers=num_layers, attention_size=attention_size)
        self.num_hops = check_size("hops", hops, minimum=0)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"expected dropout in [0, 1), got {dropout}")
        self.bidirectional, self.dropout = bidirectional, dropout
        self.image_encoder = ImageEncoder(3, channels, coordinates=coordinates)
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=padding_idx)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[padding_idx].zero_()
        self.question_encoder = build_encoder(cell, embedding_size, hidden_size,
                                              num_layers=num_layers, bidirectional=bidirectional,
                                              dropout=dropout, cell_options=cell_options)
        d = self.question_encoder.output_size
        self.question_size = d
        self.image_proj = nn.Linear(self.image_encoder.output_size, d)
        self.hop_attention = nn.ModuleList(
            Attention(d, d, "additive", attention_size=attention_size) for _ in range(hops))
        self.mlp = nn.Linear(2 * d, hidden_size) if hops == 0 else None
        self.answer = nn.Linear(hidden_size if hops == 0 else d, num_answers)

    def _dropout(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x

    def encode_question(self, questions: Tensor, lengths: Tensor) -> Tensor:
        """:math:`v_Q` ``(N, d)`` for question ids ``(N, L)`` of ``lengths`` ``(N,)``.

        Each distinct question is read once (a batch of Sort-of-CLEVR images asks
        at most 36 distinct questions, however many images it holds) and its
        vector is shared by the rows that ask it."""
        if questions.shape[0] == 0:  # no question (a curriculum batch may ask none)
            return self.embedding.weight.new_zeros(0, self.question_size)
        keys = torch.cat([lengths.to(questions.device).unsqueeze(1), questions], 1)  # (N, 1+L)
        distinct, inverse = torch.unique(keys, dim=0, return_inverse=True)  # (U, 1+L), (N,)
        if distinct.shape[0] < keys.shape[0]:
            return self.encode_question(distinct[:, 1:], distinct[:, 0].cpu())[inverse]
        out, _ = self.question_encoder(self.embedding(questions), lengths=lengths)  # (N, L, d)
        return pool(out, lengths, "last", bidirectional=self.bidirectional)  # (N, d)

    def forward(self, images: Tensor, image_index: Tensor, questions: Tensor,
                lengths: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(images, Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"expected images of shape (B, 3, H, W), got {got}")
        B = images.shape[0]
        if not isinstance(questions, Tensor) or questions.dim() != 2 or \
                questions.is_floating_point():
            got = tuple(questions.shape) if isinstance(questions, Tensor) else \
                type(questions).__name__
            raise ValueError(f"expected question ids of shape (N, L) and integer dtype, got {got}")
        N, L = questions.shape
        if not isinstance(image_index, Tensor) or tuple(image_index.shape) != (N,) or \
                image_index.is_floating_point() or (N and (int(image_index.min()) < 0 or
                                                          int(image_index.max()) >= B)):
            got = (f"{image_index.tolist()[:8]} of shape {tuple(image_index.shape)}"
                   if isinstance(image_index, Tensor) else type(image_index).__name__)
            raise ValueError(f"expected image_index of shape ({N},), integers in [0, {B}), "
                             f"got {got}")
        lengths = as_lengths(lengths, name="lengths")
        if tuple(lengths.shape) != (N,) or (N and (int(lengths.min()) < 1 or
                                                   int(lengths.max()) > L)):
            raise ValueError(f"expected lengths of shape ({N},) with values in [1, {L}], "
                             f"got {lengths.tolist()[:8]} of shape {tuple(lengths.shape)}")
        features = self.image_encoder(images)  # (B, S, D_img)
        v_img = torch.tanh(self.image_proj(features))  # (B, S, d)
        index = image_index.to(v_img.device)
        v = v_img[index]  # (N, S, d), each question's image
        u = self.encode_question(questions, lengths)  # (N, d) u^0 = v_Q
        weights = []
        for attend in self.hop_attention:
            projected = attend.project_keys(v_img)[index]  # W_IA v_i once per image, (N, S, k)
            attended, p = attend(u, v, None, projected=projected)  # (N, d), (N, S)
            u = attended + u
            weights.append(p)
        if self.mlp is not None:
            z = torch.cat([v.mean(1), u], -1)  # (N, 2d)
            u = F.relu(self.mlp(self._dropout(z)))  # (N, H)
        logits = self.answer(self._dropout(u))  # (N, A)
        S = v.shape[1]
        attention = torch.stack(weights, 1) if weights else v.new_zeros(N, 0, S)
        return logits, attention
