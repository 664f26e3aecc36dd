r"""The CTC acoustic model: frames of features in, per-frame log probabilities over
the tokens and the blank out, trained with ``torch.nn.CTCLoss``.

.. math::
    \begin{aligned}
    z_{1..T'} &= \mathrm{subsample}(x_{1..T}) \quad \text{(optional: } k \text{ stride-2
        convolutions, } T' = \lceil T / 2^k \rceil) \\
    o_{1..T'} &= \mathrm{encoder}(z_{1..T'}) \quad \text{(a deep, usually
        bidirectional, recurrent encoder over any registered cell)} \\
    \log p_t(\cdot \mid x) &= \log\mathrm{softmax}(W\, \mathrm{drop}(o_t) + b)
        \in \mathbb{R}^{V + 1}
    \end{aligned}

and the loss of Graves et al. ("Connectionist temporal classification:
labelling unsegmented sequence data with recurrent neural networks", 2006),
:math:`-\log p(y \mid x) = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_t
p_t(\pi_t \mid x)` (:mod:`memnets.models.ctc_decoding` defines
:math:`\mathcal{B}`).  Index 0 is the blank.

An alignment of :math:`y` needs one frame per token and a blank between two
equal neighbours, so :math:`p(y \mid x) = 0` (an infinite loss) when
:math:`T' < |y| + \#\{i : y_i = y_{i-1}\}` (:func:`min_frames`).  This module
never hides that (``zero_infinity`` is off): :func:`ctc_loss` raises for such
an utterance unless it is told to leave it out, and then says how many it left.

This module may import torch, :mod:`memnets.layers` and :mod:`memnets.errors`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import check_sizes
from memnets.errors import DataError
from memnets.layers.encoder import build_encoder
from memnets.layers.sequence import as_lengths

SUBSAMPLING = (1, 2, 4, 8)


def min_frames(targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Frames a CTC alignment of each target needs: its length plus its repeats.

    Shapes: ``targets`` ``(N, U)`` padded (or 1-D concatenated, as CTCLoss takes
    them), ``target_lengths`` ``(N,)``; returns ``(N,)`` int64.
    """
    lens = as_lengths(target_lengths, name="target_lengths")
    if targets.dim() == 1:
        rows = torch.split(targets.cpu(), lens.tolist())
    else:
        rows = [targets[n, : int(lens[n])].cpu() for n in range(len(lens))]
    need = [len(r) + int((r[1:] == r[:-1]).sum()) if len(r) else 0 for r in rows]
    return torch.tensor(need, dtype=torch.long)


def ctc_loss(log_probs: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor,
             *, blank: int = 0, skip_infeasible: bool = False) -> tuple[Tensor, Tensor]:
    """Per-utterance CTC negative log likelihood, ``torch.nn.functional.ctc_loss``
    with ``reduction="none"`` and ``zero_infinity`` off.

    Args:
        log_probs: ``(N, T, V)`` log softmax outputs (batch first).
        lengths: ``(N,)`` valid frames.
        targets: ``(N, U)`` token ids, padded (any value past the length).
        target_lengths: ``(N,)``.
        blank: the blank's id.
        skip_infeasible: leave out utterances with fewer frames than
            :func:`min_frames` (their loss is 0 and ``feasible`` false);
            otherwise such an utterance raises :class:`DataError`.

    Returns:
        ``(nll, feasible)``: ``(N,)`` float (0 where infeasible) and ``(N,)`` bool.
    """
    lengths = as_lengths(lengths)
    target_lengths = as_lengths(target_lengths, name="target_lengths")
    feasible = lengths >= min_frames(targets, target_lengths)
    if not bool(feasible.all()) and not skip_infeasible:
        bad = (~feasible).nonzero().flatten().tolist()
        need = min_frames(targets, target_lengths)
        raise DataError(f"CTC: utterance(s) {bad[:8]} of the batch have fewer frames than their "
                        f"labels need ({lengths[bad[0]].item()} < {need[bad[0]].item()}): an "
                        f"infinite loss; skip them or use a smaller subsampling")
    nll = log_probs.new_zeros(len(lengths))
    if bool(feasible.any()):
        idx = feasible.nonzero().flatten()
        keep = idx.to(log_probs.device)
        out = F.ctc_loss(log_probs[keep].transpose(0, 1), targets[keep], lengths[idx],
                         target_lengths[idx], blank=blank, reduction="none",
                         zero_infinity=False)
        nll = nll.index_put((keep,), out)
    return nll, feasible


class ConvSubsampling(nn.Module):
    r"""``k`` convolutions (3×3, stride 2 in time and frequency, padding 1, ReLU)
    over the ``(time, feature)`` plane, as in the front ends of Deep Speech 2
    (Amodei et al. 2016) and ESPnet; the channels of each frame are then joined
    into one vector.

    Padded frames are set to zero after every layer, so that an utterance gives
    the same output alone as in a padded batch.

    Shapes: input ``(N, T, F)`` and ``lengths`` ``(N,)``; output
    ``(N, T', C F')`` with :math:`T' = \lceil T / 2^k \rceil`,
    :math:`F' = \lceil F / 2^k \rceil`, and the new lengths.
    """

    def __init__(self, num_features: int, layers: int, channels: int) -> None:
        super().__init__()
        check_sizes(num_features=num_features, channels=channels)
        convs, c_in, f = [], 1, num_features
        for _ in range(layers):
            convs.append(nn.Conv2d(c_in, channels, 3, stride=2, padding=1))
            c_in, f = channels, (f + 1) // 2
        self.convs = nn.ModuleList(convs)
        self.output_size = channels * f if layers else num_features

    @staticmethod
    def halve(lengths: Tensor) -> Tensor:
        return (lengths + 1) // 2

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if not self.convs:
            return x, lengths
        y = x[:, None]  # (N, 1, T, F)
        for conv in self.convs:
            y = torch.relu(conv(y))  # (N, C, ceil(T/2), ceil(F/2))
            lengths = self.halve(lengths)
            steps = torch.arange(y.shape[2], device=y.device)
            y = y * (steps[None, :] < lengths.to(y.device)[:, None])[:, None, :, None]
        N, C, T, Fr = y.shape
        return y.permute(0, 2, 1, 3).reshape(N, T, C * Fr), lengths  # (N, T', C F')


class CTCModel(nn.Module):
    """Acoustic model for CTC: optional convolutional subsampling, a recurrent
    encoder, a linear layer over the tokens and the blank (the module docstring
    gives the equations).

    Args:
        num_features: features per input frame (F).
        num_symbols: V + 1, the tokens and the blank (id ``blank``).
        hidden_size: features per direction of each recurrent layer.
        cell: a registered cell; fused drop-in or generic layers by the rule of
            :func:`memnets.layers.build_encoder`.
        num_layers: recurrent layers (or residual blocks with ``block``).
        bidirectional: read the utterance both ways (the usual acoustic model:
            every frame's output sees the whole utterance).
        dropout: between recurrent layers and before the output layer.
        subsampling: 1 (none), 2, 4 or 8: frames are halved by each of
            log2(subsampling) stride-2 convolutions.
        conv_channels: channels of those convolutions.
        blank: the blank's id among the outputs.
        block, block_options: residual blocks instead of plain layers.
        cell_options: passed to the cell.

    Shapes (N = batch, T = longest utterance): ``forward(features (N, T, F),
    lengths (N,))`` returns ``(log_probs (N, T', V + 1), out_lengths (N,))``;
    the log probabilities of padded frames are those of a zero encoder output
    and are never read (decoders and the loss take ``out_lengths``).
    """

    def __init__(self, num_features: int, num_symbols: int, hidden_size: int, *,
                 cell: str = "lstm", num_layers: int = 2, bidirectional: bool = True,
                 dropout: float = 0.0, subsampling: int = 1, conv_channels: int = 32,
                 blank: int = 0, block: str | None = None, block_options: dict | None = None,
                 **cell_options) -> None:
        super().__init__()
        check_sizes(num_features=num_features, hidden_size=hidden_size, num_layers=num_layers)
        if num_symbols < 2:
            raise ValueError(f"expected num_symbols >= 2 (a token and the blank), got "
                             f"{num_symbols}")
        if subsampling not in SUBSAMPLING:
            raise ValueError(f"expected subsampling in {SUBSAMPLING}, got {subsampling!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"expected dropout in [0, 1), got {dropout}")
        if not 0 <= blank < num_symbols:
            raise ValueError(f"expected blank in [0, {num_symbols}), got {blank}")
        self.num_features, self.num_symbols, self.blank = num_features, num_symbols, blank
        self.subsampling, self.dropout = subsampling, dropout
        self.frontend = ConvSubsampling(num_features, subsampling.bit_length() - 1,
                                        conv_channels)
        self.encoder = build_encoder(cell, self.frontend.output_size, hidden_size,
                                     num_layers=num_layers, bidirectional=bidirectional,
                                     dropout=dropout, cell_options=cell_options, block=block,
                                     block_options=block_options)
        self.output = nn.Linear(self.encoder.output_size, num_symbols)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames out for ``lengths`` frames in: halved (rounding up) per convolution."""
        lengths = as_lengths(lengths)
        for _ in self.frontend.convs:
            lengths = ConvSubsampling.halve(lengths)
        return lengths

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(features, Tensor) or features.dim() != 3 or \
                features.shape[-1] != self.num_features:
            got = tuple(features.shape) if isinstance(features, Tensor) else \
                type(features).__name__
            raise ValueError(f"expected features of shape (N, T, {self.num_features}), got {got}")
        N, T, _ = features.shape
        lengths = as_lengths(lengths)
        if tuple(lengths.shape) != (N,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError(f"expected lengths of shape ({N},) with values in [1, {T}], got "
                             f"{lengths.tolist()[:8]} of shape {tuple(lengths.shape)}")
        steps = torch.arange(T, device=features.device)
        x = features * (steps[None, :] < lengths.to(features.device)[:, None])[..., None]
        z, out_lengths = self.frontend(x, lengths)  # (N, T', F'')
        o, _ = self.encoder(z, lengths=out_lengths)  # (N, T', D*H), zero at padding
        logits = self.output(F.dropout(o, self.dropout, training=self.training))
        return torch.log_softmax(logits.float(), -1), out_lengths  # (N, T', V + 1)
