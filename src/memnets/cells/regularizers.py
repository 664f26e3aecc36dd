r"""Regularisers for any cell, as cell wrappers: variational dropout, zoneout, DropConnect.

A wrapper is itself a :class:`~memnets.cells.base.RecurrentCell` with the
wrapped cell's sizes and state, so it runs through ``Recurrent``,
``Bidirectional`` and ``Stacked`` unchanged::

    cell = VariationalDropout(LSTMCell(16, 32), input_dropout=0.25, state_dropout=0.25)
    cell = regularize(LSTMCell(16, 32), zoneout={"c": 0.5, "h": 0.05})
    cell = make_cell("lstm", input_size=16, hidden_size=32, weight_dropout=0.5)

Each is off in evaluation mode (``cell.eval()``) in the way its paper
defines: dropout masks are inverted (scaled by ``1 / (1 - p)`` in training),
so evaluation uses the plain cell; zoneout uses its expectation.

Per-sequence masks.  Variational dropout and DropConnect draw one mask per
sequence (per forward pass).  ``Recurrent`` calls :meth:`project_input` once
with every step of the batch, ``(L, N, H_in)``; a wrapper draws its masks
there, so every ``Recurrent`` call gets fresh masks that stay fixed over its
steps.  A single-step call ``cell(x_t, state)`` in training mode reuses the
current masks (drawing them when there are none or the batch size changed):
a loop that calls the cell step by step must call :meth:`sample_masks` at
the start of each sequence.  The current masks are in ``cell.masks``.

Parameter names gain the prefix ``cell.`` (``cell.weight_hh``), as for any
wrapping module.  This module may import only torch and the cell base.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell


class CellWrapper(RecurrentCell):
    """A cell that wraps another and keeps its sizes, state and state helpers.

    Examples::

        >>> import torch, memnets
        >>> class Clipped(memnets.CellWrapper):            # change one method, keep the rest
        ...     def recur(self, u_t, state):
        ...         y, state = self.cell.recur(u_t, state)
        ...         return y.clamp(-0.5, 0.5), state
        >>> cell = Clipped(memnets.ElmanCell(3, 4))
        >>> cell.input_size, cell.output_size, type(cell.init_state(2)).__name__
        (3, 4, 'ElmanState')
        >>> out, _ = memnets.Recurrent(cell)(torch.randn(5, 2, 3))
        >>> bool(out.abs().max() <= 0.5)
        True
    """

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        if not isinstance(cell, RecurrentCell):
            raise ValueError(f"expected a RecurrentCell to wrap, got {type(cell).__name__}")
        self.cell = cell
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.output_size = cell.output_size

    def project_input(self, x: Tensor) -> Tensor:
        return self.cell.project_input(x)

    def recur(self, u_t: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        return self.cell.recur(u_t, state)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> NamedTuple:
        return self.cell.init_state(batch_size, device=device, dtype=dtype)

    def mask_state(self, keep_new: Tensor, new: NamedTuple, old: NamedTuple) -> NamedTuple:
        return self.cell.mask_state(keep_new, new, old)

    def check_state(self, state: NamedTuple, batch_size: int) -> None:
        self.cell.check_state(state, batch_size)

    def _state_fields(self) -> tuple[str, ...]:
        template = self.cell.init_state(1, device="meta")
        return getattr(type(template), "_fields", tuple(str(i) for i in range(len(template))))

    def _resolve_fields(self, fields: Iterable[str] | None, option: str) -> tuple[str, ...]:
        """Validate state field names; ``None`` means the first field (``h`` for most cells)."""
        known = self._state_fields()
        if fields is None:
            return known[:1]
        fields = (fields,) if isinstance(fields, str) else tuple(fields)
        for f in fields:
            if f not in known:
                raise ValueError(
                    f"expected {option} among the state fields {known} of "
                    f"{type(self.cell).__name__}, got {f!r}"
                )
        return fields


def _check_rate(name: str, p: float) -> float:
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"expected {name} in [0, 1), got {p}")
    return float(p)


def _dropout_mask(shape, p: float, like: Tensor) -> Tensor:
    """Inverted-dropout mask: 0 with probability p, else 1 / (1 - p)."""
    keep = torch.empty(shape, device=like.device, dtype=like.dtype).bernoulli_(1.0 - p)
    return keep / (1.0 - p)


class _PerSequenceMasks(CellWrapper):
    """Shared mask bookkeeping of :class:`VariationalDropout` and :class:`DropConnect`."""

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__(cell)
        self.masks: dict[str, Tensor] | None = None
        self._mask_batch: int | None = None

    def _active(self) -> bool:
        raise NotImplementedError

    def sample_masks(self, batch_size: int, *, device=None, dtype=None) -> dict[str, Tensor]:
        """Draw the masks for a new batch of ``batch_size`` sequences and keep them."""
        raise NotImplementedError

    def _ensure_masks(self, batch_size: int, like: Tensor) -> None:
        if self.masks is None or self._mask_batch != batch_size:
            self.sample_masks(batch_size, device=like.device, dtype=like.dtype)

    def forward(self, x_t: Tensor, state: NamedTuple | None = None):
        """One step, reusing the current masks (see the module docstring)."""
        if self.training and self._active():
            self._ensure_masks(x_t.shape[0], x_t)
            self._step_mode = True
        try:
            return super().forward(x_t, state)
        finally:
            self._step_mode = False

    _step_mode = False

    def _begin_sequence(self, x: Tensor) -> None:
        """Called by :meth:`project_input`: a whole sequence ``(L, N, H_in)`` draws new masks."""
        if self.training and self._active() and not self._step_mode:
            if x.dim() >= 3:
                self.sample_masks(x.shape[-2], device=x.device, dtype=x.dtype)
            else:
                self._ensure_masks(x.shape[0], x)


class VariationalDropout(_PerSequenceMasks):
    r"""Variational dropout (Gal & Ghahramani, "A theoretically grounded application
    of dropout in recurrent neural networks", 2016).

    .. math::
        y_t, s_t = \mathrm{cell}(m_x \odot x_t,\; s_{t-1} \text{ with }
                   h_{t-1} \leftarrow m_h \odot h_{t-1})

    where the masks :math:`m_x \in \{0, 1/(1-p_x)\}^{N \times H_{in}}` and
    :math:`m_h \in \{0, 1/(1-p_h)\}^{N \times H}` are drawn once per sequence
    and used at every step, one per example.  A mask acts on the input or
    state vector before the cell's weight products, so all gates of a gated
    cell see the same dropped units (the paper's parametrisation with one
    mask per vector shared by the gates, rather than a mask per gate).

    Args:
        cell: the cell to regularise.
        input_dropout: :math:`p_x`, the probability of dropping an input unit.
        state_dropout: :math:`p_h`, the probability of dropping a unit of the
            recurrent state.
        state_fields: the names of the state fields to drop (default: the
            first, ``h`` for Elman, IRNN, LSTM, GRU, SCRN and IndRNN, ``y`` for
            Jordan).  The LSTM's memory ``c`` is not dropped, as in the paper.

    Shapes: those of the wrapped cell.  ``masks`` holds ``"input"`` ``(N, H_in)``
    and ``"state.<field>"`` tensors of the field's shape.

    In evaluation mode the wrapper is the plain cell (the masks are inverted,
    so their expectation is 1: the paper's standard-dropout approximation).

    Departures from the paper: the state mask is applied to the state field
    as the wrapped cell receives it, so it acts wherever the cell uses that
    field.  For Elman, IRNN, LSTM and IndRNN that is the recurrent product
    only, as in the paper; for the GRU it also masks :math:`h_{t-1}` in the
    update :math:`z_t \odot h_{t-1}`, where the paper drops only the copies
    of :math:`h_{t-1}` that enter the weight products.  The paper's word
    (embedding) dropout belongs to the embedding layer.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.VariationalDropout(memnets.LSTMCell(3, 4), input_dropout=0.5,
        ...                                   state_dropout=0.25)
        >>> layer = memnets.Recurrent(cell)
        >>> out, _ = layer(torch.randn(6, 2, 3))          # one set of masks for these sequences
        >>> cell.masks["input"].shape, cell.masks["state.h"].shape
        (torch.Size([2, 3]), torch.Size([2, 4]))
        >>> set(cell.masks["input"].unique().tolist()) <= {0.0, 2.0}   # 0 or 1 / (1 - p)
        True
        >>> _ = cell.eval()                                # evaluation: the plain cell
        >>> x = torch.randn(6, 2, 3)
        >>> torch.equal(layer(x)[0], memnets.Recurrent(cell.cell)(x)[0])
        True
    """

    def __init__(
        self,
        cell: RecurrentCell,
        input_dropout: float = 0.0,
        state_dropout: float = 0.0,
        state_fields: Iterable[str] | None = None,
    ) -> None:
        super().__init__(cell)
        self.input_dropout = _check_rate("input_dropout", input_dropout)
        self.state_dropout = _check_rate("state_dropout", state_dropout)
        self.state_fields = self._resolve_fields(state_fields, "state_fields")

    def _active(self) -> bool:
        return self.input_dropout > 0 or self.state_dropout > 0

    def sample_masks(self, batch_size: int, *, device=None, dtype=None) -> dict[str, Tensor]:
        like = next(self.parameters())
        like = torch.empty(0, device=device or like.device, dtype=dtype or like.dtype)
        masks = {}
        if self.input_dropout > 0:
            masks["input"] = _dropout_mask((batch_size, self.input_size), self.input_dropout, like)
        if self.state_dropout > 0:
            template = self.cell.init_state(batch_size, device="meta")
            names = self._state_fields()
            for f in self.state_fields:
                shape = template[names.index(f)].shape
                masks[f"state.{f}"] = _dropout_mask(shape, self.state_dropout, like)
        self.masks, self._mask_batch = masks, batch_size
        return masks

    def project_input(self, x: Tensor) -> Tensor:
        self._begin_sequence(x)
        if self.training and self.input_dropout > 0:
            x = x * self.masks["input"]  # (N, H_in) broadcast over steps
        return self.cell.project_input(x)

    def recur(self, u_t: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        if self.training and self.state_dropout > 0:
            self._ensure_masks(u_t.shape[0], u_t)
            state = state._replace(
                **{f: getattr(state, f) * self.masks[f"state.{f}"] for f in self.state_fields}
            )
        return self.cell.recur(u_t, state)

    def extra_repr(self) -> str:
        return (
            f"input_dropout={self.input_dropout}, state_dropout={self.state_dropout}, "
            f"state_fields={self.state_fields}"
        )


class Zoneout(CellWrapper):
    r"""Zoneout (Krueger et al., "Zoneout: regularizing RNNs by randomly preserving
    hidden activations", 2017).

    .. math::
        \tilde y_t, \tilde s_t = \mathrm{cell}(x_t, s_{t-1}), \qquad
        s_t = d_t \odot s_{t-1} + (1 - d_t) \odot \tilde s_t

    for each zoned-out state field, with :math:`d_t \sim \mathrm{Bernoulli}(z)`
    drawn afresh per unit, per example and per step in training.  In
    evaluation mode the expectation is used:
    :math:`s_t = z\, s_{t-1} + (1 - z)\, \tilde s_t`.  For the LSTM this is
    the paper's zoneout LSTM: the candidate :math:`\tilde h_t` is computed
    from the candidate :math:`\tilde c_t`, before :math:`c` is zoned out.

    Args:
        cell: the cell to regularise.
        zoneout: the rate :math:`z` for every state field, or a mapping from
            field name to rate, e.g. ``{"c": 0.5, "h": 0.05}`` for an LSTM
            (the paper's separate rates for cells and hidden states).  A single
            rate skips the fields that cannot be zoned out: non-float fields
            (masks) and fields whose shape changes from step to step (LSTMN's
            growing tapes); naming such a field in a mapping is an error.

    Output: when the cell's output is one of its state fields (Elman, IRNN,
    LSTM, GRU, IndRNN, and Jordan without self-connection), the zoned-out
    field is returned as ``y_t``, as in the paper; otherwise (SCRN) the
    cell's own output :math:`\tilde y_t`.

    Shapes: those of the wrapped cell.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.Zoneout(memnets.LSTMCell(3, 4), {"c": 0.5, "h": 0.05})
        >>> _ = cell.eval()                                # the expectation of the masks
        >>> x, old = torch.randn(2, 3), memnets.LSTMState(torch.randn(2, 4), torch.randn(2, 4))
        >>> y, new = cell(x, old)
        >>> _, candidate = cell.cell(x, old)
        >>> torch.allclose(new.c, 0.5 * old.c + 0.5 * candidate.c, atol=1e-6)
        True
        >>> torch.allclose(y, 0.05 * old.h + 0.95 * candidate.h, atol=1e-6), torch.equal(y, new.h)
        (True, True)
    """

    def __init__(self, cell: RecurrentCell, zoneout: float | Mapping[str, float]) -> None:
        super().__init__(cell)
        fields = self._state_fields()
        if isinstance(zoneout, Mapping):
            self._resolve_fields(zoneout.keys(), "zoneout fields")
            rates = {f: _check_rate(f"zoneout[{f!r}]", z) for f, z in zoneout.items()}
        else:
            rates = {f: _check_rate("zoneout", zoneout) for f in fields}
        self.rates = {f: z for f, z in rates.items() if z > 0}
        self._named = isinstance(zoneout, Mapping)

    def recur(self, u_t: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        y, new = self.cell.recur(u_t, state)
        out = {}
        for f, z in self.rates.items():
            old_f, new_f = getattr(state, f), getattr(new, f)
            if not new_f.is_floating_point() or old_f.shape != new_f.shape:
                if self._named:
                    raise ValueError(
                        f"zoneout: state field {f!r} of {type(self.cell).__name__} cannot be "
                        f"zoned out (dtype {new_f.dtype}, shape {tuple(old_f.shape)} -> "
                        f"{tuple(new_f.shape)}); expected a float field of a fixed shape")
                continue
            if self.training:
                keep_old = torch.rand_like(new_f) < z
                mixed = torch.where(keep_old, old_f, new_f)
            else:
                mixed = new_f + z * (old_f - new_f)  # z * old + (1 - z) * new
            if y is new_f:
                y = mixed
            out[f] = mixed
        return y, new._replace(**out)

    def extra_repr(self) -> str:
        return f"zoneout={self.rates}"


class _RecurCall(nn.Module):
    """Calls ``cell.recur``; lets ``functional_call`` swap the cell's weights for one step."""

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, u_t: Tensor, state: NamedTuple):
        return self.cell.recur(u_t, state)


class DropConnect(_PerSequenceMasks):
    r"""DropConnect on recurrent weights (Wan, Zeiler, Zhang, LeCun & Fergus,
    "Regularization of neural networks using DropConnect", 2013), as in the
    weight-dropped LSTM (Merity, Keskar & Socher, "Regularizing and optimizing
    LSTM language models", 2017).

    .. math::
        \tilde W_{hh} = M \odot W_{hh}, \qquad
        M \in \{0, 1/(1-p)\}^{\text{shape of } W_{hh}}

    with one mask :math:`M` per forward pass, shared by every example and
    every step, so that the cell's own recurrent kernel runs unchanged on
    :math:`\tilde W_{hh}`.

    Args:
        cell: the cell to regularise.
        weight_dropout: :math:`p`, the probability of dropping a weight.
        weights: names of the wrapped cell's parameters to drop (default
            ``("weight_hh",)``, the recurrent matrix of every built-in cell
            except Jordan's ``weight_yh`` and SCRN's ``weight_hh``/``weight_sh``).

    Shapes: those of the wrapped cell.  ``masks`` maps each weight name to a
    mask of its shape.

    In evaluation mode the full weights are used, as in Merity et al.
    Departure from Wan et al.: their inference approximates the distribution
    of each unit's masked sum by a Gaussian and samples from it; here, as in
    Merity et al., the masks are inverted and evaluation uses :math:`W_{hh}`.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.DropConnect(memnets.GRUCell(3, 4), weight_dropout=0.5)
        >>> layer = memnets.Recurrent(cell)
        >>> out, _ = layer(torch.randn(5, 2, 3))          # one mask for the whole pass
        >>> cell.masks["weight_hh"].shape
        torch.Size([12, 4])
        >>> _ = cell.eval()                                # evaluation: the full weights
        >>> x = torch.randn(5, 2, 3)
        >>> torch.allclose(layer(x)[0], memnets.Recurrent(cell.cell)(x)[0], atol=1e-6)
        True
    """

    def __init__(
        self,
        cell: RecurrentCell,
        weight_dropout: float,
        weights: Iterable[str] = ("weight_hh",),
    ) -> None:
        super().__init__(cell)
        self.weight_dropout = _check_rate("weight_dropout", weight_dropout)
        params = dict(cell.named_parameters())
        self.weights = (weights,) if isinstance(weights, str) else tuple(weights)
        for name in self.weights:
            if name not in params:
                raise ValueError(
                    f"expected weights among the parameters {sorted(params)} of "
                    f"{type(cell).__name__}, got {name!r}"
                )
        # not a registered submodule: it only re-enters self.cell
        object.__setattr__(self, "_call", _RecurCall(cell))
        self._masked: dict[str, Tensor] | None = None

    def _active(self) -> bool:
        return self.weight_dropout > 0

    def sample_masks(self, batch_size: int, *, device=None, dtype=None) -> dict[str, Tensor]:
        params = dict(self.cell.named_parameters())
        self.masks = {
            n: _dropout_mask(params[n].shape, self.weight_dropout, params[n]) for n in self.weights
        }
        self._mask_batch = batch_size
        self._masked = None
        return self.masks

    def project_input(self, x: Tensor) -> Tensor:
        self._begin_sequence(x)
        if self.training and self._active():
            # masked weights for the steps to come: once per sequence, or per
            # single step (so no step reuses a graph from an earlier call)
            params = dict(self.cell.named_parameters())
            self._masked = {f"cell.{n}": params[n] * m for n, m in self.masks.items()}
        return self.cell.project_input(x)

    def recur(self, u_t: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        if not (self.training and self._active()):
            return self.cell.recur(u_t, state)
        if self._masked is None:
            raise RuntimeError(
                "expected project_input() before recur() in training mode (it prepares "
                "the dropped weights); call the cell or run it through Recurrent"
            )
        return torch.func.functional_call(self._call, self._masked, (u_t, state))

    def __getstate__(self):
        # the masked weights belong to the last forward pass's graph: not copied
        # or pickled (deepcopy of a graph tensor fails), re-made by the next one
        state = dict(super().__getstate__())  # a copy: the live module keeps its own
        state["_masked"] = None
        return state

    def extra_repr(self) -> str:
        return f"weight_dropout={self.weight_dropout}, weights={self.weights}"


def regularize(
    cell: RecurrentCell,
    *,
    input_dropout: float = 0.0,
    state_dropout: float = 0.0,
    zoneout: float | Mapping[str, float] = 0.0,
    weight_dropout: float = 0.0,
) -> RecurrentCell:
    """Wrap ``cell`` in the regularisers whose rates are non-zero.

    Order, inside out: :class:`DropConnect` (``weight_dropout``),
    :class:`VariationalDropout` (``input_dropout``, ``state_dropout``),
    :class:`Zoneout` (``zoneout``), so zoneout mixes the undropped previous
    state with the new one.  Returns ``cell`` itself when every rate is 0.
    These are also options of :func:`memnets.make_cell`.
    """
    if weight_dropout:
        cell = DropConnect(cell, weight_dropout)
    if input_dropout or state_dropout:
        cell = VariationalDropout(cell, input_dropout, state_dropout)
    if (isinstance(zoneout, Mapping) and any(zoneout.values())) or (
        not isinstance(zoneout, Mapping) and zoneout
    ):
        cell = Zoneout(cell, zoneout)
    return cell


REGULARIZER_OPTIONS = ("input_dropout", "state_dropout", "zoneout", "weight_dropout")
