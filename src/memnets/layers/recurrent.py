"""``Recurrent``: runs any cell over time; :func:`make_stack` builds a multi-layer
cell by name and runs it so.

This module may import torch, :mod:`memnets.cells` and :mod:`memnets.layers.sequence`.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from memnets.cells.base import RecurrentCell, capturing_graph
from memnets.cells.registry import cell_names, make_cell
from memnets.layers.sequence import SequenceLayer, reverse_padded, valid_mask
from memnets.layers.time_loop import run_sequence_form, usable_form


class Recurrent(SequenceLayer):
    r"""Run a cell over every step of a batch of sequences.

    .. math::
        y_t, s_t = \mathrm{cell}(x_t, s_{t-1}), \quad t = 1 \dots L

    The input-only part of the cell (:meth:`RecurrentCell.project_input`) is
    computed for all steps in one matrix product before the loop, so the loop
    does only the recurrent work.  A cell with ``parallel`` set (minGRU,
    minLSTM, mLSTM in their parallel mode) is run by its
    :meth:`RecurrentCell.scan` over the whole sequence instead of the loop.
    In training, a cell with a sequence form (:meth:`RecurrentCell.sequence_form`:
    Elman, IRNN, the standard LSTM, the GRU) runs its loop as one autograd node
    with an analytic backward (:mod:`memnets.layers.time_loop`); the results
    are the step loop's.

    Args:
        cell: any :class:`~memnets.cells.RecurrentCell`.
        batch_first: inputs and outputs are ``(N, L, *)`` instead of ``(L, N, *)``.
        reverse: run from the last valid step of each sequence to its first;
            outputs are returned in the input's order.

    Shapes (N = batch, L = length, H_in = ``cell.input_size``,
    H_out = ``cell.output_size``):

    * input: ``(L, N, H_in)``, ``(N, L, H_in)`` with ``batch_first``, ``(L, H_in)``
      unbatched, or a PackedSequence; optional ``lengths`` ``(N,)``.
    * state: the cell's state (``cell.init_state(N)`` if omitted): its NamedTuple,
      or a plain tuple in the same field order (``(h, c)`` for an LSTM cell), which
      is checked and converted.
    * outputs: like the input with H_out features; exactly zero at padded steps.
    * final state: each sequence's state after its own last valid step (for
      ``reverse=True``, after its first step).

    See :mod:`memnets.layers.sequence` for the variable-length contract.

    Examples::

        >>> import torch, memnets
        >>> layer = memnets.Recurrent(memnets.LSTMCell(3, 4), batch_first=True)
        >>> x = torch.randn(2, 5, 3)
        >>> out, state = layer(x, lengths=[5, 2])
        >>> out.shape, state.h.shape
        (torch.Size([2, 5, 4]), torch.Size([2, 4]))
        >>> out[1, 2:].abs().sum().item()                  # padded steps are exactly zero
        0.0
        >>> alone, last = layer(x[1:, :2])                 # the second sequence alone
        >>> torch.allclose(out[1, :2], alone[0], atol=1e-6)
        True
        >>> torch.allclose(state.h[1], last.h[0], atol=1e-6)
        True
    """

    def __init__(self, cell: RecurrentCell, *, batch_first: bool = False, reverse: bool = False):
        super().__init__()
        if not isinstance(cell, RecurrentCell):
            raise ValueError(f"expected a RecurrentCell, got {type(cell).__name__}")
        self.cell = cell
        self.batch_first = batch_first
        self.reverse = reverse
        self.input_size = cell.input_size
        self.output_size = cell.output_size

    def run(self, x: Tensor, state, lengths: Tensor | None):
        L, N = x.shape[:2]
        cell = self.cell
        if state is None:
            state = cell.init_state(N, device=x.device, dtype=x.dtype)
        else:
            cell.check_state(state, N)
            state = _as_state_type(cell, state, N)
        if self.reverse:
            x = reverse_padded(x, lengths)
        tracing = capturing_graph()
        # a trace runs every step (the padded ones masked): int(lengths.max()) would
        # fix the traced graph to the example's longest sequence
        steps = L if lengths is None or tracing else int(lengths.max())
        u = cell.project_input(x[:steps])  # (T, N, U): all input work at once
        valid = None if lengths is None else valid_mask(lengths, steps, x.device)  # (T, N)
        if tracing and not cell.parallel:
            warnings.warn(
                f"Recurrent runs {type(cell).__name__} step by step in a Python loop: the "
                f"recorded graph holds {L} steps and takes inputs of exactly that length "
                f"(see docs/export.md for the layers that export at any length)",
                torch.jit.TracerWarning, stacklevel=2)
        form = None if tracing or cell.parallel else usable_form(cell, u, state)
        if cell.parallel:  # the cell's whole-sequence form (a scan) instead of the loop
            out, state = cell.scan(u, state, valid)
        elif form is not None:  # one autograd node for the loop (memnets.layers.time_loop)
            out, state = run_sequence_form(cell, form, u, state, valid)
        elif valid is None:
            # unbind, not u[t]: indexing would make backward allocate a full-size
            # gradient of u at every step.
            outputs = []
            for u_t in u.unbind(0):
                y_t, state = cell.recur(u_t, state)
                outputs.append(y_t)
            out = torch.stack(outputs)  # (L, N, H_out)
        else:
            outputs = []
            for u_t, valid_t in zip(u.unbind(0), valid.unbind(0)):
                y_t, new_state = cell.recur(u_t, state)
                state = cell.mask_state(valid_t, new_state, state)
                outputs.append(y_t)
            out = torch.stack(outputs)  # (T, N, H_out)
        if valid is not None:
            out = torch.where(valid.unsqueeze(-1), out, out.new_zeros(()))
            if steps < L:
                out = torch.cat([out, out.new_zeros((L - steps,) + out.shape[1:])])
        if self.reverse:
            out = reverse_padded(out, lengths)
        return out, state

    def cells(self) -> list[RecurrentCell]:
        return [self.cell]

    def extra_repr(self) -> str:
        flags = [f"batch_first={self.batch_first}"] if self.batch_first else []
        return ", ".join(flags + (["reverse=True"] if self.reverse else []))


def _as_state_type(cell: RecurrentCell, state: tuple, batch_size: int) -> tuple:
    """A plain tuple in the order of the cell's state fields, as the cell's NamedTuple
    (``(h, c)`` -> ``LSTMState(h, c)``); ``state`` has passed ``check_state``."""
    state_type = type(cell.init_state(batch_size, device="meta"))
    if type(state) is tuple and state_type is not tuple and hasattr(state_type, "_fields"):
        return state_type(*state)
    return state


def stack_names() -> list[str]:
    """Names accepted by :func:`make_stack`, sorted: the multi-layer cells,
    ``cell_names(layers=True)``."""
    return cell_names(layers=True)


def make_stack(name: str, *, input_size: int, hidden_size: int, num_layers: int,
               batch_first: bool = False, reverse: bool = False, **options) -> Recurrent:
    """The multi-layer cell registered as ``name``, run over time:
    ``Recurrent(make_cell(name, input_size=, hidden_size=, num_layers=, **options),
    batch_first=, reverse=)``; the cell is its ``.cell``.

    A thin alias kept for its one job (a multi-layer design ready to run over
    ``(L, N, H_in)``).  Raises ``ValueError`` for a name that is not a
    multi-layer cell, and :class:`~memnets.errors.ConfigError` unless the three
    sizes are ints >= 1.
    """
    if name not in stack_names():
        known = ", ".join(stack_names()) or "(none registered)"
        raise ValueError(f"unknown stack {name!r}; expected one of {known}")
    cell = make_cell(name, input_size=input_size, hidden_size=hidden_size,
                     num_layers=num_layers, **options)
    return Recurrent(cell, batch_first=batch_first, reverse=reverse)
