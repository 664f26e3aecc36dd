"""The sequence-level path: a whole time loop as one autograd node.

Under autograd, every step of :class:`~memnets.layers.Recurrent` records a few
nodes, and backward computes the recurrent weight's gradient as one small
product per step.  A cell whose step is a recurrent product followed by a
pointwise function declares so (:meth:`RecurrentCell.sequence_form
<memnets.cells.RecurrentCell.sequence_form>`), and :func:`run_sequence_form`
then runs it through :class:`TimeLoop`:

* forward runs the loop without recording a graph and keeps only what the
  cell's pointwise backward needs, and the recurrent inputs ``r_{t-1}``;
* backward runs the reverse loop: the cell's analytic pointwise backward, then
  ``dr_{t-1} = dv_t W`` through the recurrent product;
* the gradient of ``W`` is one product over all steps,
  ``dW = \\sum_t dv_t^T r_{t-1}``, and that of the bias one sum.

Variable lengths follow the contract of :mod:`memnets.layers.sequence`: an
invalid step keeps the state and its gradient passes through unchanged.  The
input-only work (``project_input``) stays outside, so its weights get their
gradient from one product as before.  Double backward is not supported.

:func:`sequence_level` switches the path off, for comparison and benchmarks.
This module imports torch and :mod:`memnets.cells.base`.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from memnets.cells.base import RecurrentCell, SequenceForm, _where_batch, sequence_form_of

_ENABLED = True


@contextlib.contextmanager
def sequence_level(enabled: bool):
    """Within the block, :class:`~memnets.layers.Recurrent` uses (``True``, the
    default outside) or never uses (``False``) the sequence-level path."""
    global _ENABLED
    before, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = before


def usable_form(cell: RecurrentCell, u: Tensor, state: tuple) -> SequenceForm | None:
    """The cell's sequence form when the path applies: enabled, gradients are being
    recorded and something needs one; else ``None`` (the step-by-step loop)."""
    if not _ENABLED or not torch.is_grad_enabled():
        return None
    form = sequence_form_of(cell)
    if form is None:
        return None
    tensors = [u, form.weight, form.bias, *form.params, *state]
    if not any(t is not None and t.requires_grad for t in tensors):
        return None
    return form


def run_sequence_form(cell: RecurrentCell, form: SequenceForm, u: Tensor, state: tuple,
                      valid: Tensor | None) -> tuple[Tensor, tuple]:
    """``(outputs (T, N, H_out), final state)`` of ``cell`` over ``u`` ``(T, N, U)``,
    exactly as the step loop with :meth:`~memnets.cells.RecurrentCell.mask_state`."""
    n = len(state)
    result = TimeLoop.apply(cell, form, n, u, valid, form.weight, form.bias,
                            *state, *form.params)
    return result[0], type(state)(*result[1:])


class TimeLoop(torch.autograd.Function):
    """The time loop of a cell with a :class:`~memnets.cells.base.SequenceForm`."""

    @staticmethod
    def forward(ctx, cell, form, n_state, u, valid, weight, bias, *rest):
        state_type = type(cell.init_state(1, device="meta"))
        state = state_type(*rest[:n_state])
        params = rest[n_state:]
        field = form.field
        outputs, recurrent_inputs, saved = [], [], []
        for t, u_t in enumerate(u.unbind(0)):
            r = state[field]
            v = r @ weight.t() if bias is None else torch.addmm(bias, r, weight.t())
            y, new, kept = cell.pointwise_forward(u_t, v, state, params)
            if valid is not None:
                new = cell.mask_state(valid[t], new, state)
            outputs.append(y)
            recurrent_inputs.append(r)
            saved.extend(kept)
            state = new
        ctx.cell, ctx.field, ctx.n_state = cell, field, n_state
        ctx.steps, ctx.per_step = u.shape[0], len(saved) // u.shape[0]
        ctx.valid, ctx.has_bias = valid, bias is not None
        ctx.save_for_backward(weight, torch.stack(recurrent_inputs), *params, *saved)
        ctx.n_params = len(params)
        # outputs are fresh tensors: a final state equal to a saved one is returned as a copy
        final = tuple(s.clone() if any(s is k for k in saved) else s for s in state)
        return (torch.stack(outputs), *final)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, *d_final):
        cell, field, T, k = ctx.cell, ctx.field, ctx.steps, ctx.per_step
        weight, rs, *rest = ctx.saved_tensors
        params, saved = tuple(rest[: ctx.n_params]), rest[ctx.n_params :]
        state_type = type(cell.init_state(1, device="meta"))
        N = rs.shape[1]
        zeros_like_field = [cell.init_state(N, device=rs.device, dtype=rs.dtype)[i]
                            for i in range(ctx.n_state)]
        d_state = [g if g is not None else z for g, z in zip(d_final, zeros_like_field)]
        d_v = rs.new_empty((T, N, weight.shape[0]))
        d_u = None
        d_params = [None] * len(params)
        valid = ctx.valid
        for t in range(T - 1, -1, -1):
            dy = d_out[t] if d_out is not None else rs.new_zeros((N, cell.output_size))
            if valid is not None:
                keep = valid[t]
                carry = [_where_batch(keep, torch.zeros_like(g), g) for g in d_state]
                d_state = [_where_batch(keep, g, torch.zeros_like(g)) for g in d_state]
            du, dv, d_prev, dp = cell.pointwise_backward(
                tuple(saved[t * k : (t + 1) * k]), dy, state_type(*d_state), params)
            if valid is not None:  # zero, not whatever the discarded step computed
                dv = _where_batch(keep, dv, torch.zeros_like(dv))
                du = dv if du is dv else _where_batch(keep, du, torch.zeros_like(du))
            d_v[t] = dv
            if du is not dv:
                if d_u is None:
                    d_u = rs.new_zeros((T,) + du.shape)
                d_u[t] = du
            d_state = [g if g is not None else torch.zeros_like(z)
                       for g, z in zip(d_prev, zeros_like_field)]
            d_state[field] = d_state[field] + dv @ weight
            if valid is not None:
                d_state = [g + c for g, c in zip(d_state, carry)]
            for i, g in enumerate(dp):
                if g is not None:
                    d_params[i] = g if d_params[i] is None else d_params[i] + g
        flat_v = d_v.reshape(T * N, -1)
        d_weight = flat_v.t() @ rs.reshape(T * N, -1)  # one product over all steps
        d_bias = flat_v.sum(0) if ctx.has_bias else None
        return (None, None, None, d_v if d_u is None else d_u, None, d_weight, d_bias,
                *d_state, *d_params)
