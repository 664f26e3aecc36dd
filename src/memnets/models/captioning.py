r"""Image captioning: an image encoder and an attention decoder over its grid of features.

:class:`Captioner` is Xu et al.'s "Show, attend and tell" with deterministic
soft attention, or, without attention, Vinyals et al.'s "Show and tell";
:func:`doubly_stochastic_penalty` is Xu et al.'s regulariser on the attention.
The encoder is :class:`memnets.layers.image.ImageEncoder`, the decoder
:class:`memnets.models.decoder.AttentionDecoder` (shared with translation), so
greedy and beam search are :mod:`memnets.models.decoding`'s.

This module imports torch, :mod:`memnets.layers`, :mod:`memnets.models.decoder`
and :mod:`memnets.errors` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from memnets.errors import ConfigError
from memnets.layers.image import ImageEncoder
from memnets.models.decoder import AttentionDecoder, DecoderState

ATTENTIONS = ("soft", "none")


class Captioner(nn.Module):
    r"""A caption generator over any registered cell, with soft visual attention
    (Xu et al., "Show, attend and tell: neural image caption generation with
    visual attention", 2015) or without (Vinyals, Toshev, Bengio & Erhan, "Show
    and tell: a neural image caption generator", 2015).

    **Encoder.**  :class:`~memnets.layers.image.ImageEncoder` maps the image to
    annotation vectors :math:`a_1 \dots a_S` (one per grid cell, with the cell's
    coordinates when ``coordinates``); their mean :math:`\bar a` summarises it.

    **Decoder** (:class:`~memnets.models.decoder.AttentionDecoder`, embedding
    :math:`e_t = E\,y_{t-1}`, top state :math:`h_t`), ``attention="soft"``:

    .. math::
        \begin{aligned}
        h_0, c_0 &= \tanh(W_{\text{init},h}\, \bar a + b),\ \tanh(W_{\text{init},c}\, \bar a + b) \\
        e_{ti} &= v^\top \tanh(W_h h_{t-1} + W_a a_i + b_e), \qquad
            \alpha_t = \mathrm{softmax}_i(e_t) \\
        \beta_t &= \sigma(w_\beta^\top h_{t-1} + b_\beta), \qquad
            \hat z_t = \beta_t \textstyle\sum_i \alpha_{ti} a_i \\
        h_t, c_t &= \mathrm{LSTM}([e_t; \hat z_t],\ (h_{t-1}, c_{t-1})) \\
        p(y_t \mid a, y_{<t}) &= \mathrm{softmax}\big(W_s \tanh(W_o [h_t; \hat z_t; e_t] + b_o)
            + b_s\big)
        \end{aligned}

    (without ``gate``, :math:`\beta_t = 1`; another ``score`` replaces
    :math:`e_{ti}` by that :class:`~memnets.layers.attention.Attention` kind).
    ``attention="none"`` is Show and tell: the summary :math:`\bar a` starts the
    decoder through the same initial maps, and :math:`p(y_t) = \mathrm{softmax}(W_s h_t + b_s)`.
    Any registered cell replaces the LSTM (every float state field gets its own
    initial map).

    Training adds :func:`doubly_stochastic_penalty` to the cross-entropy.

    Departures from the papers: Xu et al.'s initial states and deep output
    layer are MLPs, and their output layer is linear in
    :math:`E y_{t-1} + L_h h_t + L_z \hat z_t`; here each initial map is one
    tanh layer and the deep output one tanh layer over :math:`[h_t; \hat z_t; e_t]`
    (:class:`~memnets.models.decoder.AttentionDecoder`'s Bahdanau read-out).
    Vinyals et al. feed the image once as the LSTM's first input; here it sets the
    initial state.  The CNN is small and trained from scratch with the captioner,
    where both papers use a network pre-trained on ImageNet.

    Args:
        vocab_size: V.
        channels: the image encoder's convolutions (:class:`~memnets.layers.image.ImageEncoder`).
        coordinates: append each cell's coordinates to its features.
        kernel_size: every convolution's (square) kernel; each cell of the grid
            sees :math:`1 + (k - 1)(2^L - 1)` pixels each way (L convolutions).
        embedding_size: E.
        hidden_size: H, every decoder layer (and the attention's hidden size).
        cell: a registered one-layer cell.
        num_layers: the decoder's depth.
        attention: ``soft`` or ``none``.
        score: the attention kind (``additive`` is Xu et al.'s); ignored without attention.
        gate: Xu et al.'s gating scalar :math:`\beta_t`; ignored without attention.
        dropout: the decoder's (between layers, on the top output and the read-out).
        image_dropout: the image encoder's, on the grid's features.
        padding_idx: the padding id.
        cell_options: for every cell.

    Attributes:
        encoder: the :class:`~memnets.layers.image.ImageEncoder`.
        decoder: the :class:`~memnets.models.decoder.AttentionDecoder`.

    Shapes (N = batch, S = grid cells, T = caption steps):
        :meth:`forward`: ``images`` ``(N, 3, H, W)`` float in [0, 1],
        ``target_in`` ``(N, T)`` ids (start token first) -> logits ``(N, T, V)``
        and attention ``(N, T, S)`` (zeros without attention), the cells
        row-major as :meth:`ImageEncoder.cell_boxes
        <memnets.layers.image.ImageEncoder.cell_boxes>` lists them.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        channels: Sequence[int] = (32, 32, 32, 32),
        coordinates: bool = True,
        kernel_size: int = 3,
        embedding_size: int = 64,
        hidden_size: int = 256,
        cell: str = "lstm",
        num_layers: int = 1,
        attention: str = "soft",
        score: str = "additive",
        gate: bool = True,
        dropout: float = 0.0,
        image_dropout: float = 0.0,
        padding_idx: int = 0,
        cell_options: dict | None = None,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ConfigError(f"expected attention one of {', '.join(ATTENTIONS)}, "
                              f"got {attention!r}")
        soft = attention == "soft"
        self.attention_style = attention
        self.encoder = ImageEncoder(3, channels, kernel_size=kernel_size, coordinates=coordinates,
                                    dropout=image_dropout)
        D = self.encoder.output_size
        self.decoder = AttentionDecoder(
            vocab_size, memory_size=D, summary_size=D, embedding_size=embedding_size,
            hidden_size=hidden_size, cell=cell, num_layers=num_layers,
            attention="bahdanau" if soft else "none", score=score if soft else None,
            gate=bool(gate) and soft, dropout=dropout, padding_idx=padding_idx,
            cell_options=cell_options)

    def start(self, images: Tensor) -> DecoderState:
        """The decoder's first state for a batch of images ``(N, 3, H, W)``: the
        memory is the grid of features, every cell real; the summary their mean."""
        memory = self.encoder(images)  # (N, S, D)
        mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)  # (N, S)
        return self.decoder.start(memory, mask, memory.mean(1))

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """One decoder step (:meth:`AttentionDecoder.step
        <memnets.models.decoder.AttentionDecoder.step>`)."""
        return self.decoder.step(tokens, state)

    def logits(self, readout: Tensor) -> Tensor:
        """The output layer: read-outs ``(*, R)`` -> logits ``(*, V)``."""
        return self.decoder.logits(readout)

    def forward(self, images: Tensor, target_in: Tensor, *,
                sample_prob: float = 0.0) -> tuple[Tensor, Tensor]:
        """Teacher forcing: logits ``(N, T, V)`` and attention ``(N, T, S)``;
        ``sample_prob`` is scheduled sampling (:meth:`AttentionDecoder.forward
        <memnets.models.decoder.AttentionDecoder.forward>`)."""
        if not isinstance(target_in, Tensor) or target_in.dim() != 2 or \
                target_in.shape[0] != images.shape[0]:
            got = tuple(target_in.shape) if isinstance(target_in, Tensor) else \
                type(target_in).__name__
            raise ValueError(f"expected target ids of shape ({images.shape[0]}, T), got {got}")
        state = self.start(images)
        return self.decoder.teacher_forced(state, target_in, sample_prob=sample_prob)

    def search_step(self, banned: tuple[int, ...] = ()):
        """The step function of :mod:`memnets.models.decoding` (greedy and beam
        search from :meth:`start`), with the ids in ``banned`` never generated."""
        return self.decoder.search_step(banned)


def doubly_stochastic_penalty(attention: Tensor, target_mask: Tensor) -> Tensor:
    r"""Xu et al.'s doubly stochastic regulariser (their eq. 14): every cell should
    receive, over the caption, about as much attention as one step gives in all.

    .. math::
        \Omega = \frac{1}{N} \sum_{n=1}^{N} \sum_{i=1}^{S}
            \Big(1 - \sum_{t \le T_n} \alpha^{(n)}_{ti}\Big)^2

    The task adds :math:`\lambda\, \Omega` to the loss.

    Args:
        attention: ``(N, T, S)`` the weights of every step (:meth:`Captioner.forward`).
        target_mask: ``(N, T)`` bool (or 0/1), true at real caption steps; padded
            steps count for nothing.

    Returns:
        the scalar :math:`\Omega` (a tensor with gradient).
    """
    if not isinstance(attention, Tensor) or attention.dim() != 3:
        got = tuple(attention.shape) if isinstance(attention, Tensor) else \
            type(attention).__name__
        raise ValueError(f"expected attention of shape (N, T, S), got {got}")
    if not isinstance(target_mask, Tensor) or tuple(target_mask.shape) != attention.shape[:2]:
        got = tuple(target_mask.shape) if isinstance(target_mask, Tensor) else \
            type(target_mask).__name__
        raise ValueError(f"expected target_mask of shape {tuple(attention.shape[:2])}, got {got}")
    weights = attention * target_mask.to(attention.dtype).unsqueeze(-1)  # (N, T, S)
    return ((1.0 - weights.sum(1)) ** 2).sum(-1).mean()
