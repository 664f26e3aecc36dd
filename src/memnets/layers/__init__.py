"""Layers that run cells over time: the recurrent core of memnets."""

from memnets.layers.bidirectional import Bidirectional, BidirectionalState
from memnets.layers.recurrent import Recurrent
from memnets.layers.sequence import SequenceLayer
from memnets.layers.stacked import Stacked
from memnets.layers.torch_compat import GRU, LSTM, RNN

__all__ = [
    "GRU", "LSTM", "RNN", "Bidirectional", "BidirectionalState", "Recurrent",
    "SequenceLayer", "Stacked",
]
