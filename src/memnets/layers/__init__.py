"""Layers that run cells over time: the recurrent core of memnets.

``Recurrent`` runs any cell; ``Bidirectional`` and ``Stacked`` compose layers;
``RNN``/``LSTM``/``GRU`` are drop-ins for torch.nn; ``LSTMN`` runs the LSTMN cell
and returns its attention; ``make_stack`` runs a multi-layer cell by name.
``build_encoder`` builds a model's recurrent layers and decides "fused or generic"
(:mod:`memnets.layers.encoder`); :mod:`memnets.layers.blocks` holds the residual
blocks (``ResidualBlock``, ``XLSTMBlock``, ``BlockStack``) it builds with ``block=``;
:mod:`memnets.layers.pooling` pools outputs over the valid steps;
``Attention`` (additive, dot, general, concat) and ``masked_softmax`` read a memory of
keys, as the pair, translation and captioning models do.
This package may import torch, :mod:`memnets.cells` and :mod:`memnets.errors`.
"""

from memnets.layers.attention import Attention, masked_softmax
from memnets.layers.bidirectional import Bidirectional, BidirectionalState
from memnets.layers.blocks import BlockStack, ResidualBlock, XLSTMBlock, XLSTMBlockState
from memnets.layers.encoder import build_encoder
from memnets.layers.lstmn import LSTMN
from memnets.layers.recurrent import Recurrent, make_stack, stack_names
from memnets.layers.sequence import SequenceLayer
from memnets.layers.stacked import Stacked
from memnets.layers.torch_compat import GRU, LSTM, RNN

__all__ = [
    "Attention", "GRU", "LSTM", "LSTMN", "RNN", "Bidirectional", "BidirectionalState", "BlockStack",
    "Recurrent", "ResidualBlock", "SequenceLayer", "Stacked", "XLSTMBlock", "XLSTMBlockState",
    "build_encoder", "make_stack", "masked_softmax", "stack_names",
]
