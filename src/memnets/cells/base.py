"""The step contract every memnets cell follows.

A cell advances one time step.  Running over time, masking of padded steps,
reversal, stacking and bidirection live in :mod:`memnets.layers` and work for
every cell that honours this contract.  It also holds :func:`check_sizes`, the
one check of size arguments that every cell, stack and layer uses.  This
module may import only torch and :mod:`memnets.errors`.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.errors import ConfigError


def check_size(name: str, value, minimum: int = 1) -> int:
    """``value`` if it is an int ``>= minimum``; else :class:`~memnets.errors.ConfigError`
    (a ``ValueError``) naming the argument, the value and the valid range.

    ``bool`` is refused although Python counts it as an int (``hidden_size=True``
    is a slip, not a size of 1).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(
            f"expected {name} to be an int >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ConfigError(f"expected {name} >= {minimum}, got {value}")
    return int(value)


def capturing_graph() -> bool:
    """True while a graph is recorded for saving or export: ``torch.jit.trace``, the
    TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``) or
    ``torch.export``.  The fused autograd functions then give way to the same
    formulas as plain tensor operations, and a layer runs every step of a padded
    batch, so that the recorded graph is right and can be saved (docs/export.md).
    """
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def check_sizes(**sizes) -> None:
    """:func:`check_size` with minimum 1 for each keyword:
    ``check_sizes(input_size=4, hidden_size=0)`` raises ``expected hidden_size >= 1, got 0``."""
    for name, value in sizes.items():
        check_size(name, value)


class RecurrentCell(nn.Module):
    """Base class of all cells.

    A cell maps one input step and the previous state to an output and a new
    state::

        y_t, state_t = cell(x_t, state_{t-1})

    The state is a :class:`~typing.NamedTuple` of tensors whose first
    dimension is the batch (``LSTMState(h, c)``); its order is documented by
    each cell.

    Work that depends on the input alone is split out so that a layer can do
    it for every time step in one matrix product before the time loop:

    * :meth:`project_input` maps ``x`` of shape ``(*, input_size)`` to ``u`` of
      shape ``(*, U)``; the default is the identity.
    * :meth:`recur` does the recurrent work of one step from ``u_t``.

    so that ``forward(x_t, state) == recur(project_input(x_t), state)``.

    Subclasses set ``input_size``, ``hidden_size`` and ``output_size`` (the
    size of ``y_t``), and implement :meth:`init_state` and :meth:`recur`.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.ElmanCell(3, 4)                 # any cell keeps this contract
        >>> state = cell.init_state(2)                     # the zero state, a NamedTuple
        >>> type(state).__name__, state._fields, state.h.shape
        ('ElmanState', ('h',), torch.Size([2, 4]))
        >>> x = torch.randn(2, 3)
        >>> y, new = cell(x, state)                        # one step
        >>> y2, new2 = cell.recur(cell.project_input(x), state)
        >>> torch.equal(y, y2), torch.equal(new.h, new2.h)
        (True, True)
    """

    input_size: int
    hidden_size: int
    output_size: int

    def project_input(self, x: Tensor) -> Tensor:
        """Input-only part of a step, for any number of leading dimensions."""
        return x

    def recur(self, u_t: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        """Recurrent part of a step: ``u_t`` is ``project_input(x_t)``, ``(N, U)``."""
        raise NotImplementedError

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> NamedTuple:
        """The zero state for a batch of ``batch_size`` sequences."""
        raise NotImplementedError

    def forward(self, x_t: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        """One step.  ``x_t``: ``(N, input_size)``; returns ``(y_t, new_state)``."""
        if state is None:
            state = self.init_state(x_t.shape[0], device=x_t.device, dtype=x_t.dtype)
        return self.recur(self.project_input(x_t), state)

    # --- the whole-sequence form, for cells whose recurrence allows one ---

    #: True when :class:`~memnets.layers.Recurrent` should call :meth:`scan` once
    #: instead of :meth:`recur` at every step.  Cells with a parallel form (the
    #: linear-recurrence cells, mLSTM) set it from their ``mode`` argument; both
    #: modes have the same parameters, state_dict and results.
    parallel: bool = False

    def scan(self, u: Tensor, state: NamedTuple, valid: Tensor | None
             ) -> tuple[Tensor, NamedTuple]:
        """Every step at once: ``u`` is ``project_input(x)`` for all steps, ``(T, N, U)``;
        ``valid`` a bool ``(T, N)`` mask whose true entries are a prefix of each
        column (``None``: every step is valid).

        Returns the outputs ``(T, N, H_out)`` (values at invalid steps are free:
        the layer zeroes them) and, per sequence, the state after its last valid
        step, exactly as running :meth:`recur` step by step with
        :meth:`mask_state` would.
        """
        raise NotImplementedError(f"{type(self).__name__} has no whole-sequence form")

    # --- the sequence-level form, for cells whose step is "product + pointwise" ---

    def sequence_form(self) -> SequenceForm | None:
        """How :class:`~memnets.layers.Recurrent` may run the whole sequence as one
        autograd node (:mod:`memnets.layers.time_loop`), or ``None`` (the default):
        step by step under autograd.

        A cell whose step is ``v_t = r_{t-1} W^T [+ b]`` (``r`` one field of the
        state) followed by a pointwise function of ``u_t``, ``v_t`` and the state
        opts in by returning a :class:`SequenceForm` and implementing
        :meth:`pointwise_forward` and :meth:`pointwise_backward`.  The layer then
        runs the forward loop without a graph and the backward loop with the
        cell's analytic pointwise backward, and computes the gradient of ``W``
        (and ``b``) as one matrix product over all steps.  A subclass that
        overrides :meth:`recur` without overriding this method falls back to
        autograd (:func:`sequence_form_of`), so its own step is never bypassed.
        """
        return None

    def pointwise_forward(self, u_t: Tensor, v_t: Tensor, state: NamedTuple,
                          params: tuple) -> tuple[Tensor, NamedTuple, tuple]:
        """The step after the recurrent product, run without a graph: returns
        ``(y_t, new_state, saved)``, ``saved`` a tuple of tensors for
        :meth:`pointwise_backward`.  ``params`` is :attr:`SequenceForm.params`."""
        raise NotImplementedError(f"{type(self).__name__} has no sequence-level form")

    def pointwise_backward(self, saved: tuple, dy: Tensor, dstate: NamedTuple, params: tuple
                           ) -> tuple[Tensor, Tensor, tuple, tuple]:
        """Gradients of one step: from those at ``y_t`` and at every field of the new
        state, return ``(du_t, dv_t, dstate_prev, dparams)``.  ``dstate_prev`` holds
        the gradient at each field of the previous state through the pointwise
        step only (``None`` for none); the layer adds the path through ``v_t``.
        ``dparams`` has one tensor (or ``None``) per entry of ``params``.  The
        result must be linear in the incoming gradients."""
        raise NotImplementedError(f"{type(self).__name__} has no sequence-level form")

    # --- helpers used by the layers; cells with unusual state override them ---

    def mask_state(self, keep_new: Tensor, new: NamedTuple, old: NamedTuple) -> NamedTuple:
        """Take ``new`` where ``keep_new`` (a bool ``(N,)`` tensor) is true, else ``old``."""
        return type(new)(*(_where_batch(keep_new, n, o) for n, o in zip(new, old)))

    def check_state(self, state: NamedTuple, batch_size: int) -> None:
        """Raise ``ValueError`` unless ``state`` has the fields and shapes of ``init_state``."""
        expected = self.init_state(batch_size, device="meta")
        if not isinstance(state, tuple) or len(state) != len(expected):
            fields = getattr(type(expected), "_fields", None)
            raise ValueError(
                f"expected a state of {len(expected)} tensors {fields} for "
                f"{type(self).__name__}, got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, tuple) else "")
            )
        names = getattr(type(expected), "_fields", [str(i) for i in range(len(expected))])
        for name, want, got in zip(names, expected, state):
            if not isinstance(got, Tensor) or tuple(got.shape) != tuple(want.shape):
                shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                raise ValueError(
                    f"expected state field '{name}' of shape {tuple(want.shape)} for "
                    f"{type(self).__name__}, got {shape}"
                )

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class SequenceForm(NamedTuple):
    """What a cell's :meth:`RecurrentCell.sequence_form` declares: the recurrent product
    ``v_t = state[field] @ weight.T (+ bias)`` and the other parameters its pointwise
    step reads (their gradients are summed over the steps)."""

    weight: Tensor  # (V, R)
    bias: Tensor | None = None  # (V,)
    params: tuple = ()
    field: int = 0


def sequence_form_of(cell: RecurrentCell) -> SequenceForm | None:
    """``cell.sequence_form()``, or ``None`` when the class that defines the cell's
    :meth:`~RecurrentCell.recur` is not the one that defines its sequence form (a
    subclass that changed the step but not the form)."""
    def owner(name):
        return next(k for k in type(cell).__mro__ if name in vars(k))
    if owner("recur") is not owner("sequence_form"):
        return None
    return cell.sequence_form()


# Recurrent state types by name, for rebuilding a checkpointed state (truncated
# BPTT carries one across batches).  A checkpoint names its state types; loading
# looks the names up here and never imports anything a file names.
STATE_TYPES: dict[str, type] = {}


def register_state(cls: type) -> type:
    """Class decorator: make a state NamedTuple rebuildable from a checkpoint by name."""
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise TypeError(f"expected a NamedTuple class, got {cls!r}")
    name = cls.__qualname__
    if STATE_TYPES.get(name, cls) is not cls and (
            STATE_TYPES[name].__module__, STATE_TYPES[name].__qualname__) != (
            cls.__module__, cls.__qualname__):
        raise ValueError(f"state type name {name!r} is already registered")
    STATE_TYPES[name] = cls
    return cls


def _where_batch(keep: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``torch.where`` with a ``(N,)`` condition broadcast over trailing dimensions."""
    return torch.where(keep.view((-1,) + (1,) * (new.dim() - 1)), new, old)
