r"""Residual blocks around one recurrent layer: the deep stacks of the parallel cells.

A block is a sequence layer of width :math:`d` (``input_size == output_size == d``)
that wraps one recurrent layer of any registered cell in normalisation,
projections and a residual connection:

* :class:`ResidualBlock` (``"residual"``): pre-norm residual recurrence, then an
  optional MLP, the stacks of Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were
  RNNs all we needed?", 2024;
* :class:`XLSTMBlock` with ``up_projection="post"`` (``"xlstm_post"``, the
  sLSTM block) or ``"pre"`` (``"xlstm_pre"``, the mLSTM block) of Beck,
  Pöppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter &
  Hochreiter, "xLSTM: extended long short-term memory", 2024.

:class:`BlockStack` puts ``num_layers`` blocks on top of each other (after a
linear projection of the input to :math:`d` when needed, and before a final
norm); :func:`make_block` builds a block by name around a cell made by name.
:func:`memnets.layers.build_encoder` with ``block=`` is how models get them.

Every block follows the variable-length contract of
:mod:`memnets.layers.sequence`: outputs at padded steps are exactly zero and each
sequence's outputs and final state are those of the sequence run alone (the
causal convolution reads only a step and the ones before it, which are all
valid steps of the same sequence).

This module may import torch, :mod:`memnets.cells`, :mod:`memnets.errors` and
the other layers.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, check_size, register_state
from memnets.cells.registry import make_cell
from memnets.errors import ConfigError
from memnets.layers.recurrent import Recurrent
from memnets.layers.sequence import SequenceLayer, valid_mask

#: the block names of :func:`make_block` (and of ``model.block`` in a recipe)
BLOCK_NAMES = ("residual", "xlstm_pre", "xlstm_post")
#: the normalisations a block can use before its branches
NORMS = ("layer", "rms")
#: the options each block name takes (``block_options``), besides the encoder's dropout
BLOCK_OPTIONS = {
    "residual": ("norm", "mlp_ratio"),
    "xlstm_pre": ("norm", "num_heads", "proj_factor", "conv_kernel"),
    "xlstm_post": ("norm", "num_heads", "proj_factor"),
}


# --------------------------------------------------------------------------- pieces


class RMSNorm(nn.Module):
    r"""Root-mean-square normalisation over the last dimension (Zhang & Sennrich,
    "Root mean square layer normalization", 2019):

    .. math::
        y = \frac{x}{\sqrt{\tfrac{1}{d}\sum_i x_i^2 + \epsilon}} \odot g

    Kept here (rather than ``torch.nn.RMSNorm``) so that torch >= 2.2 works.
    ``weight`` is :math:`g` ``(d,)``, initialised to ones.

    Examples::

        >>> import torch
        >>> from memnets.layers.blocks import RMSNorm
        >>> norm = RMSNorm(8)
        >>> y = norm(3 * torch.randn(2, 8))
        >>> torch.allclose(y.pow(2).mean(-1), torch.ones(2), atol=1e-4)   # unit mean square
        True
    """

    def __init__(self, size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: str, size: int) -> nn.Module:
    """``nn.LayerNorm(size)`` for ``"layer"``, :class:`RMSNorm` for ``"rms"``."""
    if kind == "layer":
        return nn.LayerNorm(size)
    if kind == "rms":
        return RMSNorm(size)
    raise ConfigError(f"norm: expected one of {', '.join(map(repr, NORMS))}, got {kind!r}")


def zero_padding(y: Tensor, lengths: Tensor | None) -> Tensor:
    """``y`` ``(L, N, *)`` with every padded step set to exactly zero."""
    if lengths is None:
        return y
    valid = valid_mask(lengths, y.shape[0], y.device)  # (L, N)
    return torch.where(valid.view(valid.shape + (1,) * (y.dim() - 2)), y, y.new_zeros(()))


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


def _check_factor(name: str, value, *, zero_ok: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        value >= 0 if zero_ok else value > 0)
    if not ok:
        raise ConfigError(f"{name}: expected a number {'>= 0' if zero_ok else '> 0'}, "
                          f"got {value!r}")
    return float(value)


def _check_cell(cell, block: str) -> int:
    """The width of ``cell``, which must map its width to itself."""
    if not isinstance(cell, RecurrentCell):
        raise ValueError(f"expected a RecurrentCell, got {type(cell).__name__}")
    if cell.output_size != cell.input_size:
        raise ConfigError(
            f"{block}: expected a cell whose output_size equals its input_size (the residual "
            f"width), got input_size={cell.input_size} and output_size={cell.output_size} "
            f"({type(cell).__name__})")
    return cell.input_size


def _cell_heads(cell: nn.Module) -> int:
    """The cell's ``num_heads`` (looking through regulariser wrappers), else 1."""
    while cell is not None:
        heads = getattr(cell, "num_heads", None)
        if isinstance(heads, int) and not isinstance(heads, bool):
            return heads
        cell = getattr(cell, "cell", None)
    return 1


def _group_norm(size: int, num_heads: int | None, cell: nn.Module) -> nn.GroupNorm:
    heads = _cell_heads(cell) if num_heads is None else check_size("num_heads", num_heads)
    if size % heads:
        raise ConfigError(f"num_heads: expected a divisor of the cell's width {size}, "
                          f"got {heads}")
    return nn.GroupNorm(heads, size)


def _per_step(module: nn.Module, x: Tensor) -> Tensor:
    """A module over ``(M, C)`` rows (GroupNorm) applied to every step of ``(L, N, C)``."""
    return module(x.reshape(-1, x.shape[-1])).view(x.shape)


# --------------------------------------------------------------------------- blocks


class ResidualBlock(SequenceLayer):
    r"""A pre-norm residual block around one recurrent layer, optionally followed by
    a residual MLP.

    .. math::
        h_t &= x_t + \mathrm{Dropout}\big(\mathrm{RNN}(\mathrm{Norm}_1(x))_t\big) \\
        y_t &= h_t + \mathrm{Dropout}\big(W_2\, \mathrm{GELU}(W_1 \mathrm{Norm}_2(h_t) + b_1)
               + b_2\big)

    where RNN is the cell run over time (:class:`~memnets.layers.Recurrent`),
    Norm a LayerNorm or an RMSNorm over the :math:`d` features, and the MLP widens
    to :math:`m = \mathrm{round}(\text{mlp\_ratio} \cdot d)` features (without it,
    ``mlp_ratio=0``, :math:`y_t = h_t`).

    Feng, Tung, Ahmed, Bengio & Hajimirsadeghi ("Were RNNs all we needed?",
    2024) build their deep models from minGRU/minLSTM layers with residual
    connections, normalisation and an MLP; this block arranges them pre-norm,
    as the xLSTM blocks do.  Departures and choices made here: the recurrence
    is any registered cell of width :math:`d`; dropout is on each branch's
    output; the block has no convolution (the pre-up-projection
    :class:`XLSTMBlock` has one); projections and norms keep torch's default
    initialisation and the cell its own.

    Args:
        cell: a :class:`~memnets.cells.RecurrentCell` with
            ``input_size == output_size == d``.
        norm: ``"layer"`` (LayerNorm, default) or ``"rms"`` (:class:`RMSNorm`).
        mlp_ratio: the MLP's expansion :math:`m/d` (default 4); 0 leaves the MLP out.
        dropout: dropout on each branch's output, in training.
        batch_first: inputs and outputs ``(N, L, d)`` instead of ``(L, N, d)``.

    Shapes (N = batch, L = length, d = the cell's width): input and output
    ``(L, N, d)`` (``(N, L, d)`` with ``batch_first``), optional ``lengths``
    ``(N,)``; outputs exactly zero at padded steps.

    State: the cell's state (``cell.init_state(N)`` if omitted); the final one
    is each sequence's after its last valid step.

    Attributes: ``norm``, ``recurrent`` (the cell is ``recurrent.cell``),
    ``mlp_norm`` and ``mlp`` (``None`` without the MLP).

    Examples::

        >>> import torch, memnets
        >>> block = memnets.ResidualBlock(memnets.GRUCell(8, 8), mlp_ratio=0)   # no MLP
        >>> x = torch.randn(6, 2, 8)
        >>> y, state = block(x)
        >>> y.shape, state.h.shape
        (torch.Size([6, 2, 8]), torch.Size([2, 8]))
        >>> torch.allclose(y, x + block.recurrent(block.norm(x))[0], atol=1e-6)  # x + RNN(Norm(x))
        True
        >>> cell = memnets.make_cell("mingru", input_size=8, hidden_size=8)
        >>> y, _ = memnets.ResidualBlock(cell, norm="rms")(x, lengths=[6, 4])   # with the MLP
        >>> y[4:, 1].abs().sum().item()                    # padded steps are zero
        0.0
    """

    def __init__(self, cell: RecurrentCell, *, norm: str = "layer", mlp_ratio: float = 4.0,
                 dropout: float = 0.0, batch_first: bool = False) -> None:
        super().__init__()
        d = _check_cell(cell, "residual")
        mlp_ratio = _check_factor("mlp_ratio", mlp_ratio, zero_ok=True)
        self.norm = make_norm(norm, d)
        self.recurrent = Recurrent(cell)
        self.mlp_norm = self.mlp = None
        if mlp_ratio > 0:
            m = max(1, round(mlp_ratio * d))
            self.mlp_norm = make_norm(norm, d)
            self.mlp = nn.Sequential(nn.Linear(d, m), nn.GELU(), nn.Linear(m, d))
        self.drop = nn.Dropout(_check_rate("dropout", dropout))
        self.input_size = self.output_size = d
        self.batch_first = batch_first

    def run(self, x: Tensor, state, lengths: Tensor | None):
        h, state = self.recurrent.run(self.norm(x), state, lengths)  # (L, N, d)
        x = x + self.drop(h)
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.mlp_norm(x)))  # (L, N, d)
        return zero_padding(x, lengths), state

    def cells(self) -> list[RecurrentCell]:
        return self.recurrent.cells()


@register_state
class XLSTMBlockState(NamedTuple):
    """State of a pre-up-projection :class:`XLSTMBlock`: the cell's state, then
    ``conv`` ``(N, K-1, E)``, the last ``K-1`` inputs of the causal convolution
    (zeros before the first step)."""

    cell: tuple
    conv: Tensor


class XLSTMBlock(SequenceLayer):
    r"""The residual blocks of xLSTM, around any cell: post up-projection (the
    sLSTM block) or pre up-projection (the mLSTM block).

    **Post up-projection** (``up_projection="post"``; cell of width :math:`d`;
    :math:`m = \mathrm{round}(\mathrm{PF} \cdot d)`, PF = ``proj_factor``,
    default 4/3):

    .. math::
        g_t &= \mathrm{GN}\big(\mathrm{RNN}(\mathrm{Norm}(x))_t\big) \\
        [a_t; b_t] &= W_\uparrow g_t + b_\uparrow \qquad (a_t, b_t \in \mathbb{R}^m) \\
        y_t &= x_t + \mathrm{Dropout}\big(W_\downarrow(\mathrm{GELU}(a_t) \odot b_t)
               + b_\downarrow\big)

    **Pre up-projection** (``up_projection="pre"``; cell of width
    :math:`E = \mathrm{round}(\mathrm{PF} \cdot d)`, PF default 2; causal
    depthwise convolution of kernel :math:`K` = ``conv_kernel``, default 4):

    .. math::
        [a_t; z_t] &= W_\uparrow \mathrm{Norm}(x_t) + b_\uparrow
                      \qquad (a_t, z_t \in \mathbb{R}^E) \\
        c_t &= \mathrm{SiLU}\Big(\textstyle\sum_{j=0}^{K-1} w_j \odot a_{t-K+1+j}
               + b_c\Big) \qquad (a_s = 0 \text{ for } s < 1) \\
        g_t &= \mathrm{GN}\big(\mathrm{RNN}(c)_t\big) \\
        y_t &= x_t + \mathrm{Dropout}\big(W_\downarrow\big((g_t + s \odot c_t)
               \odot \mathrm{SiLU}(z_t)\big) + b_\downarrow\big)

    Norm is a LayerNorm (or RMSNorm) over :math:`d`, RNN the cell run over time,
    GN a group norm over the cell's outputs with one group per head, :math:`s`
    the learnable skip (initialised to ones), :math:`w_j` the per-feature
    convolution weights.

    Departures from Beck et al. (2024), whose blocks are built around their own
    cells: here the cell is any registered one (``slstm``, ``mlstm``, but also
    ``gru``), so

    * in the pre-up-projection block the cell reads :math:`c_t` alone: the
      mLSTM block's query and key come from the convolved branch and its value
      from the branch before the convolution, which a cell of one input cannot
      take apart (an ``mlstm`` cell computes all three from :math:`c_t`);
    * in the post-up-projection block there is no convolution: the sLSTM block
      convolves the input for the input and forget gates only, which needs the
      cell's gates; the block's gated MLP follows the group norm inside one
      residual branch, as in the block diagram;
    * GN has ``num_heads`` groups, by default the cell's ``num_heads`` (1 for a
      cell without heads: then it normalises over all the cell's outputs);
    * projections have biases, and they, the convolution and the norms keep
      torch's default initialisation (the cell its own); dropout is on the
      residual branch's output.

    Args:
        cell: a :class:`~memnets.cells.RecurrentCell` with
            ``input_size == output_size`` (:math:`d` for ``"post"``, :math:`E`
            for ``"pre"``).
        up_projection: ``"pre"`` or ``"post"``.
        size: :math:`d`, the block's width: required for ``"pre"``; for
            ``"post"`` it defaults to (and must equal) the cell's width.
        proj_factor: PF; for ``"pre"``, if given, ``round(PF * size)`` must be
            the cell's width (by default it is read from the cell); for
            ``"post"``, the gated MLP's factor (default 4/3).
        norm: ``"layer"`` (default) or ``"rms"``, the norm before the branch.
        num_heads: groups of GN (default: the cell's ``num_heads``, else 1).
        conv_kernel: :math:`K` for ``"pre"`` (default 4); ``"post"`` has no
            convolution and takes none.
        dropout: dropout on the branch's output, in training.
        batch_first: inputs and outputs ``(N, L, d)`` instead of ``(L, N, d)``.

    Shapes (N = batch, L = length): input and output ``(L, N, d)``
    (``(N, L, d)`` with ``batch_first``), optional ``lengths`` ``(N,)``;
    outputs exactly zero at padded steps.

    State: ``"post"``: the cell's state; ``"pre"``: :class:`XLSTMBlockState`
    ``(cell, conv)``, so that running a sequence in two pieces, the second from
    the first's final state, gives the outputs of running it whole.

    Attributes: ``norm``, ``recurrent`` (the cell is ``recurrent.cell``),
    ``group_norm``, ``up`` and ``down`` (the projections); for ``"pre"`` also
    ``conv`` (an ``nn.Conv1d`` with ``groups=E``, used without padding) and ``skip``.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.make_cell("mlstm", input_size=16, hidden_size=16, num_heads=2)
        >>> block = memnets.XLSTMBlock(cell, up_projection="pre", size=8)   # E = 2 * 8
        >>> x = torch.randn(10, 2, 8)
        >>> y, state = block(x)
        >>> y.shape, type(state).__name__, state.conv.shape   # conv: the last K - 1 = 3 inputs
        (torch.Size([10, 2, 8]), 'XLSTMBlockState', torch.Size([2, 3, 16]))
        >>> first, middle = block(x[:6])                   # in two pieces, the second from
        >>> second, _ = block(x[6:], middle)               # the first's final state
        >>> torch.allclose(torch.cat([first, second]), y, atol=1e-5)
        True
    """

    def __init__(self, cell: RecurrentCell, *, up_projection: str, size: int | None = None,
                 proj_factor: float | None = None, norm: str = "layer",
                 num_heads: int | None = None, conv_kernel: int | None = None,
                 dropout: float = 0.0, batch_first: bool = False) -> None:
        super().__init__()
        if up_projection not in ("pre", "post"):
            raise ConfigError(f"up_projection: expected 'pre' or 'post', got {up_projection!r}")
        name = f"xlstm_{up_projection}"
        width = _check_cell(cell, name)
        if up_projection == "post":
            d = width if size is None else check_size("size", size)
            if d != width:
                raise ConfigError(f"{name}: expected a cell of width size={d}, got {width}")
            if conv_kernel is not None:
                raise ConfigError(f"{name}: the post-up-projection block has no convolution; "
                                  f"expected no conv_kernel, got {conv_kernel!r}")
            pf = 4 / 3 if proj_factor is None else _check_factor("proj_factor", proj_factor)
            m = max(1, round(pf * d))
        else:
            if size is None:
                raise ConfigError(f"{name}: expected the block's width size=, got none")
            d = check_size("size", size)
            if proj_factor is not None:
                pf = _check_factor("proj_factor", proj_factor)
                if round(pf * d) != width:
                    raise ConfigError(f"{name}: expected a cell of width round({pf} * {d}) = "
                                      f"{round(pf * d)}, got {width}")
            k = check_size("conv_kernel", 4 if conv_kernel is None else conv_kernel)
        # the modules in the order of the equations
        self.norm = make_norm(norm, d)
        if up_projection == "pre":
            self.up = nn.Linear(d, 2 * width)  # -> [a; z]
            self.conv = nn.Conv1d(width, width, k, groups=width)
            self.recurrent = Recurrent(cell)
            self.group_norm = _group_norm(width, num_heads, cell)
            self.skip = nn.Parameter(torch.ones(width))
            self.down = nn.Linear(width, d)
        else:
            self.recurrent = Recurrent(cell)
            self.group_norm = _group_norm(width, num_heads, cell)
            self.up = nn.Linear(d, 2 * m)  # -> [a; b]
            self.down = nn.Linear(m, d)
        self.drop = nn.Dropout(_check_rate("dropout", dropout))
        self.up_projection = up_projection
        self.input_size = self.output_size = d
        self.batch_first = batch_first

    # --- the two branches ---

    def run(self, x: Tensor, state, lengths: Tensor | None):
        if self.up_projection == "post":
            return self._run_post(x, state, lengths)
        return self._run_pre(x, state, lengths)

    def _run_post(self, x: Tensor, state, lengths):
        h, state = self.recurrent.run(self.norm(x), state, lengths)  # (L, N, d)
        a, b = self.up(_per_step(self.group_norm, h)).chunk(2, dim=-1)  # (L, N, m) each
        y = x + self.drop(self.down(F.gelu(a) * b))  # (L, N, d)
        return zero_padding(y, lengths), state

    def _run_pre(self, x: Tensor, state, lengths):
        L, N = x.shape[:2]
        cell_state, carry = self._split_state(state, N, x)
        a, z = self.up(self.norm(x)).chunk(2, dim=-1)  # (L, N, E) each
        c, carry = self._causal_conv(a, carry, lengths)
        c = F.silu(c)  # (L, N, E)
        h, cell_state = self.recurrent.run(c, cell_state, lengths)  # (L, N, E)
        g = _per_step(self.group_norm, h)
        y = x + self.drop(self.down((g + self.skip * c) * F.silu(z)))  # (L, N, d)
        return zero_padding(y, lengths), XLSTMBlockState(cell_state, carry)

    def _split_state(self, state, N: int, x: Tensor):
        E, k = self.conv.in_channels, self.conv.kernel_size[0]
        if state is None:
            return None, x.new_zeros(N, k - 1, E)
        if not (isinstance(state, tuple) and len(state) == 2):
            raise ValueError(f"expected an XLSTMBlockState(cell, conv) as state, "
                             f"got {type(state).__name__}")
        cell_state, carry = state
        if not isinstance(carry, Tensor) or tuple(carry.shape) != (N, k - 1, E):
            got = tuple(carry.shape) if isinstance(carry, Tensor) else type(carry).__name__
            raise ValueError(f"expected state field 'conv' of shape {(N, k - 1, E)} "
                             f"(N, conv_kernel - 1, E), got {got}")
        return cell_state, carry

    def _causal_conv(self, a: Tensor, carry: Tensor, lengths: Tensor | None):
        """The depthwise convolution of ``a`` ``(L, N, E)`` over each step and the
        ``K-1`` before it (``carry`` ``(N, K-1, E)`` before the first step), and the
        new carry: each sequence's last ``K-1`` inputs up to its last valid step."""
        L, N, E = a.shape
        k = self.conv.kernel_size[0]
        seq = torch.cat([carry.transpose(0, 1), a])  # (K-1+L, N, E): input step t at t+K-1
        out = self.conv(seq.permute(1, 2, 0)).permute(2, 0, 1)  # (L, N, E): no padding
        ends = torch.full((N,), L) if lengths is None else lengths
        index = ends.view(1, N) + torch.arange(k - 1).view(k - 1, 1)  # (K-1, N)
        index = index.to(a.device).unsqueeze(-1).expand(k - 1, N, E)
        return out, seq.gather(0, index).transpose(0, 1)  # (N, K-1, E)

    def cells(self) -> list[RecurrentCell]:
        return self.recurrent.cells()

    def extra_repr(self) -> str:
        return f"up_projection={self.up_projection!r}"


# --------------------------------------------------------------------------- stack


class BlockStack(SequenceLayer):
    r"""Blocks of one width :math:`d` on top of each other.

    .. math::
        y^{(0)}_t = P x_t + b_P \;(\text{or } x_t \text{ when } H_{in} = d), \qquad
        y^{(k)}_t = \mathrm{block}_k(y^{(k-1)})_t, \qquad
        y_t = \mathrm{Norm}(y^{(K)}_t)

    The input projection :math:`P` ``(d, H_in)`` is there only when the input
    has other than :math:`d` features; the final norm (as after a pre-norm
    stack, whose residual stream is never normalised otherwise) only with
    ``final_norm``.  No dropout between blocks: each block drops its branch.

    Args:
        blocks: sequence layers with ``input_size == output_size == d`` (the
            blocks of this module), built with the same ``batch_first``.
        input_size: H_in (default: d).
        final_norm: ``"layer"``, ``"rms"`` or ``None`` (no final norm).
        batch_first: inputs and outputs ``(N, L, *)`` instead of ``(L, N, *)``.

    Shapes: input ``(L, N, H_in)`` (``(N, L, H_in)`` with ``batch_first``),
    output ``(L, N, d)``, exactly zero at padded steps.  State: a tuple with
    one state per block, lowest first.

    Examples::

        >>> import torch, memnets
        >>> blocks = [memnets.ResidualBlock(memnets.GRUCell(8, 8)) for _ in range(2)]
        >>> stack = memnets.BlockStack(blocks, input_size=3)   # projects 3 features to d = 8
        >>> out, states = stack(torch.randn(5, 2, 3))
        >>> out.shape, len(states), stack.input_projection.weight.shape
        (torch.Size([5, 2, 8]), 2, torch.Size([8, 3]))
        >>> torch.allclose(out.mean(-1), torch.zeros(5, 2), atol=1e-5)   # the final LayerNorm
        True
    """

    def __init__(self, blocks: Sequence[SequenceLayer], *, input_size: int | None = None,
                 final_norm: str | None = "layer", batch_first: bool = False) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("expected at least one block, got none")
        d = blocks[0].input_size
        for k, block in enumerate(blocks):
            if not isinstance(block, SequenceLayer):
                raise ValueError(f"expected block {k} to be a SequenceLayer, "
                                 f"got {type(block).__name__}")
            if (block.input_size, block.output_size) != (d, d):
                raise ValueError(f"expected every block of width {d}, got block {k} with "
                                 f"input_size={block.input_size}, output_size={block.output_size}")
            if block.batch_first != batch_first:
                raise ValueError(f"expected block {k} built with batch_first={batch_first}, "
                                 f"got batch_first={block.batch_first}")
        input_size = d if input_size is None else check_size("input_size", input_size)
        self.input_projection = nn.Linear(input_size, d) if input_size != d else None
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = None if final_norm is None else make_norm(final_norm, d)
        self.input_size, self.output_size = input_size, d
        self.batch_first = batch_first

    def run(self, x: Tensor, state, lengths: Tensor | None):
        n = len(self.blocks)
        if state is None:
            state = (None,) * n
        elif not (isinstance(state, (tuple, list)) and len(state) == n):
            got = len(state) if isinstance(state, (tuple, list)) else type(state).__name__
            raise ValueError(f"expected a tuple of {n} block states, got {got}")
        if self.input_projection is not None:
            x = self.input_projection(x)  # (L, N, d)
        finals = []
        for block, s in zip(self.blocks, state):
            x, s = block.run(x, s, lengths)
            finals.append(s)
        if self.final_norm is not None:
            x = zero_padding(self.final_norm(x), lengths)
        return x, tuple(finals)

    def cells(self) -> list[RecurrentCell]:
        return [c for block in self.blocks for c in block.cells()]


# --------------------------------------------------------------------------- by name


def check_block_options(block: str, options: dict, *, extra: tuple[str, ...] = ()) -> None:
    """:class:`ConfigError` unless ``block`` is one of :data:`BLOCK_NAMES` and every
    key of ``options`` is one of its :data:`BLOCK_OPTIONS` or of ``extra`` (the
    stack's ``final_norm``, for :func:`~memnets.layers.build_encoder`); the values
    are checked when the block is built."""
    if block not in BLOCK_NAMES:
        raise ConfigError(f"block: expected one of {', '.join(map(repr, BLOCK_NAMES))}, "
                          f"got {block!r}")
    if not isinstance(options, dict):
        raise ConfigError(f"block_options: expected a mapping, got {options!r}")
    allowed = BLOCK_OPTIONS[block] + tuple(extra)
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        hint = " (the blocks' dropout is the model's dropout)" if "dropout" in unknown else ""
        raise ConfigError(f"block_options: unknown option(s) {', '.join(unknown)} for block "
                          f"{block!r}{hint}; expected some of {', '.join(allowed)}")


def make_block(block: str, cell: str, size: int, *, cell_options: dict | None = None,
               dropout: float = 0.0, batch_first: bool = False, **options) -> SequenceLayer:
    """The block named ``block`` (:data:`BLOCK_NAMES`) of width ``size`` around the
    registered cell ``cell`` (made by :func:`memnets.make_cell` with ``cell_options``).

    ``"residual"`` and ``"xlstm_post"`` make the cell at width ``size``;
    ``"xlstm_pre"`` at ``round(proj_factor * size)`` (``proj_factor`` default 2).
    ``options`` are the block's (:data:`BLOCK_OPTIONS`); an unknown one, or a
    cell whose output size is not its width, raises :class:`ConfigError`.
    """
    check_block_options(block, options)
    d = check_size("hidden_size", size)
    width = d
    if block == "xlstm_pre":
        pf = _check_factor("proj_factor", options.get("proj_factor", 2.0))
        options["proj_factor"] = pf
        width = max(1, round(pf * d))
    rnn = make_cell(cell, input_size=width, hidden_size=width, **dict(cell_options or {}))
    if block == "residual":
        return ResidualBlock(rnn, dropout=dropout, batch_first=batch_first, **options)
    return XLSTMBlock(rnn, up_projection=block.removeprefix("xlstm_"), size=d, dropout=dropout,
                      batch_first=batch_first, **options)
