r"""``build_encoder``: a model's recurrent layers, built in one place, where "fused or
generic" is decided.

Every model that reads a sequence with registered cells (the language model,
the classifier, the bAbI LSTM, the slot tagger, the memory tasks' regressor)
asks this function for its recurrent layers and then uses only what every
result offers: ``forward(input, state=None, lengths=None)``, ``output_size``
and ``cells()``.

This module may import torch, :mod:`memnets.cells` and the other layers.
"""

from __future__ import annotations

from torch import nn

from memnets.cells.base import check_size
from memnets.cells.registry import make_cell
from memnets.cells.regularizers import REGULARIZER_OPTIONS
from memnets.errors import ConfigError
from memnets.layers.bidirectional import Bidirectional
from memnets.layers.blocks import BlockStack, check_block_options, make_block
from memnets.layers.recurrent import Recurrent
from memnets.layers.stacked import Stacked
from memnets.layers.torch_compat import GRU, LSTM, RNN

# the registered cells that have a torch.nn-compatible drop-in layer
DROP_INS = {"lstm": LSTM, "gru": GRU, "elman": RNN}


def build_encoder(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    batch_first: bool = True,
    cell_options: dict | None = None,
    top_options: dict | None = None,
    torch_compatible: bool = True,
    block: str | None = None,
    block_options: dict | None = None,
) -> nn.Module:
    r"""``num_layers`` recurrent layers of the registered cell ``cell``, uni- or
    bidirectional, with dropout ``dropout`` between layers.

    .. math::
        y^{(0)}_t = x_t, \qquad
        y^{(k)}_t = \mathrm{layer}_k\big(\mathrm{dropout}(y^{(k-1)})\big)_t, \qquad
        \mathrm{layer}_k = \mathrm{cell} \text{ run over time (both ways and
        concatenated if bidirectional)}

    **The rule, fused or generic.**  The fused drop-in (:class:`memnets.LSTM`,
    :class:`memnets.GRU`, :class:`memnets.RNN`, which runs torch's kernel) is
    returned exactly when all of these hold:

    1. ``torch_compatible`` is true: the caller accepts torch.nn's parameter
       names and initialisation (below);
    2. ``cell`` is ``lstm``, ``gru`` or ``elman`` (:data:`DROP_INS`);
    3. no regulariser option (``input_dropout``, ``state_dropout``,
       ``zoneout``, ``weight_dropout``) is given, at any rate, even 0 (so that
       a sweep over a rate keeps one parameter layout), and no ``top_options``:
       those need a cell wrapper or a top cell of its own;
    4. the cell that ``cell_options`` describe is one that torch's kernel
       computes (the drop-in's ``kernel_runs``): an LSTM without peepholes,
       coupling, layer norm or other activations (``forget_bias``,
       ``proj_size`` and ``bias`` are fine), a GRU with ``reset_after``, an
       Elman cell (tanh or ReLU).

    Otherwise the generic layers: :class:`Stacked` over one :class:`Recurrent`
    (or :class:`Bidirectional`) per layer, each cell made by
    :func:`memnets.make_cell` (even for one layer, so that parameter names do
    not depend on the depth).  Both compute the same function; they differ in:

    * parameter names: the drop-in's are torch.nn's (``weight_ih_l0``,
      ``weight_hh_l0_reverse``, ...); the generic ones follow the modules
      (``layers.0.cell.weight_ih``, ``layers.0.backward_layer.cell.weight_hh``);
    * initialisation: the drop-in's is torch.nn's, every parameter from
      :math:`U(-1/\sqrt{H}, 1/\sqrt{H})` (peepholes and layer norm as their
      cell's; ``forget_bias`` when given); the generic one is each cell's own
      (Xavier input weights, orthogonal recurrent weights, forget-gate bias 1);
    * state: torch.nn's ``h_n`` (``(h_n, c_n)`` for an LSTM) against a tuple
      of one cell state per layer (a :class:`BidirectionalState` per layer
      when bidirectional).

    Args:
        cell: a name from :func:`memnets.cells.cell_names`.
        input_size: H_in.
        hidden_size: H, each direction's hidden size.
        num_layers: stacked layers.
        bidirectional: read each sequence both ways and concatenate.
        dropout: dropout between layers in training (none with one layer).
        batch_first: inputs and outputs ``(N, L, *)`` instead of ``(L, N, *)``.
        cell_options: keyword arguments for every cell (e.g. ``nonlinearity``,
            ``peephole``, ``zoneout``).
        top_options: extra keyword arguments for the top layer's cells only
            (the slot tagger's posterior Jordan cell: ``output_size``).
        torch_compatible: allow the drop-in; ``False`` keeps the generic layers
            and each cell's own initialisation whatever the cell.
        block: ``None`` (the layers above), or ``"residual"``, ``"xlstm_pre"``,
            ``"xlstm_post"``: ``num_layers`` residual blocks of width
            ``hidden_size`` (see below).
        block_options: the blocks' options (:data:`memnets.layers.blocks.BLOCK_OPTIONS`),
            and ``final_norm`` (default true) for the stack.

    **Blocks.**  With ``block``, the result is a
    :class:`~memnets.layers.blocks.BlockStack`: the input is first projected
    to ``hidden_size`` = d by a linear layer when ``input_size != d``, then
    ``num_layers`` blocks of width d follow (each made by
    :func:`memnets.layers.blocks.make_block` around the cell ``cell`` with
    ``cell_options``; ``dropout`` is each block's branch dropout, even with one
    block, and nothing is dropped between blocks), then, with ``final_norm``,
    a norm of the blocks' kind; ``output_size`` is d.  The fused rule does not
    apply (``torch_compatible`` is ignored).  ``bidirectional`` and
    ``top_options`` are refused with :class:`~memnets.errors.ConfigError`: a
    residual stream of one width has no place for a second direction or for a
    top cell of another output size.

    Shapes (N = batch, L = length, D = 2 if bidirectional else 1): input
    ``(N, L, H_in)`` with ``batch_first`` (or ``(L, N, H_in)``), optional
    ``lengths`` ``(N,)``; output ``(N, L, output_size)``, exactly zero at padded
    steps; ``output_size`` = D times the top cell's output size.

    Returns:
        the layer; its ``cells()`` lists the cells, lowest layer first,
        forward before backward.
    """
    options = dict(cell_options or {})
    top = dict(top_options or {})
    if block is not None:
        return _build_blocks(block, cell, input_size, hidden_size, num_layers=num_layers,
                             bidirectional=bidirectional, dropout=dropout,
                             batch_first=batch_first, cell_options=options, top_options=top,
                             block_options=dict(block_options or {}))
    if block_options:
        raise ConfigError(f"block_options: expected none without a block, got {block_options!r}")
    between = dropout if num_layers > 1 else 0.0
    drop_in = DROP_INS.get(cell) if torch_compatible else None
    if drop_in is not None and not top and not any(k in options for k in REGULARIZER_OPTIONS):
        # the cell the options describe, without values (meta: no memory, no draws)
        probe = make_cell(cell, input_size=input_size, hidden_size=hidden_size,
                          device="meta", **options)
        if drop_in.kernel_runs(probe):
            return drop_in(input_size, hidden_size, num_layers, batch_first=batch_first,
                           dropout=between, bidirectional=bidirectional, **options)
    layers, size = [], input_size
    for k in range(num_layers):
        extra = top if k == num_layers - 1 else {}

        def make(size=size, extra=extra):
            return make_cell(cell, input_size=size, hidden_size=hidden_size, **options, **extra)

        layer = (Bidirectional(make(), make(), batch_first=batch_first) if bidirectional
                 else Recurrent(make(), batch_first=batch_first))
        layers.append(layer)
        size = layer.output_size
    return Stacked(layers, dropout=between, batch_first=batch_first)


def _build_blocks(block: str, cell: str, input_size: int, hidden_size: int, *,
                  num_layers: int, bidirectional: bool, dropout: float, batch_first: bool,
                  cell_options: dict, top_options: dict, block_options: dict) -> BlockStack:
    """The block branch of :func:`build_encoder` (its docstring says what it builds)."""
    check_block_options(block, block_options, extra=("final_norm",))
    if bidirectional:
        raise ConfigError(f"block {block!r}: expected bidirectional false; a residual "
                          "stack reads each sequence one way")
    if top_options:
        raise ConfigError(f"block {block!r}: expected no top_options, got {top_options!r}; "
                          "every block's cell outputs the residual width")
    final_norm = block_options.pop("final_norm", True)
    if not isinstance(final_norm, bool):
        raise ConfigError(f"block_options.final_norm: expected true or false, got {final_norm!r}")
    blocks = [make_block(block, cell, hidden_size, cell_options=cell_options, dropout=dropout,
                         batch_first=batch_first, **block_options)
              for _ in range(check_size("num_layers", num_layers))]
    return BlockStack(blocks, input_size=input_size, batch_first=batch_first,
                      final_norm=block_options.get("norm", "layer") if final_norm else None)
