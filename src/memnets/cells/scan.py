r"""Linear recurrences over a whole sequence at once: the scan every linear-recurrence cell uses.

A cell whose gates read the input only (minGRU, minLSTM, an LRU...) updates its
state by an elementwise linear recurrence

.. math::
    h_t = a_t \odot h_{t-1} + b_t, \qquad t = 1 \dots T, \quad h_0 \text{ given}.

Each step is the affine map :math:`h \mapsto a_t h + b_t`, and composing two
such maps, :math:`(a_2, b_2) \circ (a_1, b_1) = (a_2 a_1,\; a_2 b_1 + b_2)`, is
associative; so all :math:`T` states are a prefix scan of these maps, computed
here in :math:`O(\log T)` sequential steps of whole-tensor torch operations
instead of a loop of :math:`T` steps.  Two forms:

* :func:`linear_scan` works on ``a`` and ``b`` themselves: exact (only
  products and sums) for any sign of ``a``, ``b`` and ``h_0``, and for
  complex tensors.
* :func:`log_linear_scan` works on their logarithms (Heinsen, "Efficient
  parallelization of a ubiquitous sequential computation", 2023), for
  positive ``a`` and ``b``: it never forms the products
  :math:`a_1 \cdots a_t`, which underflow over long sequences.

:func:`carry_padded` makes padded steps carry the state through unchanged, so
that the last row of a scan over a padded batch is each sequence's state after
its own last valid step.

Shapes (T = steps, N = batch, ``*`` = any trailing feature dimensions): ``a``,
``b`` and the result ``(T, N, *)``; ``h0`` ``(N, *)``; a validity mask ``(T, N)``.
Row ``t - 1`` of a result is :math:`h_t`: the state after step ``t``.

This module may import torch and :mod:`memnets.cells.base`.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from memnets.cells.base import capturing_graph


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    r"""Every state of :math:`h_t = a_t \odot h_{t-1} + b_t` at once, by an associative scan.

    Args:
        a: the decays :math:`a_t`, ``(T, N, *)``; any sign (or complex).
        b: the inputs :math:`b_t`, ``(T, N, *)``.
        h0: the initial state :math:`h_0`, ``(N, *)``; ``None`` for zero.

    Returns:
        ``(T, N, *)``: row ``t - 1`` holds :math:`h_t`.

    The scan composes neighbouring steps into pairs,
    :math:`(a_{2k}, b_{2k}) \circ (a_{2k-1}, b_{2k-1})`, scans the
    :math:`\lfloor T/2 \rfloor` pairs recursively (which gives every even-numbered
    state) and fills in each odd-numbered state with one more step (the
    recursive prefix computation of Ladner & Fischer, "Parallel prefix
    computation", 1980; Blelloch, "Prefix sums and their applications", 1990):
    :math:`O(T)` work, :math:`2 \lceil \log_2 T \rceil` sequential levels.  Only products and
    sums are formed, so the result is exact in the sense of a step loop (it
    differs from one by rounding only, whatever the signs); the intermediate
    products :math:`a_i \cdots a_j` may under- or overflow over long spans when
    :math:`|a| \ne 1`, exactly where the true contributions do.

    The backward pass is the adjoint recurrence, itself a linear recurrence run
    from the last step, :math:`\lambda_t = g_t + \bar a_{t+1} \lambda_{t+1}`
    (:math:`g_t` the gradient arriving at :math:`h_t`), computed by the same scan:
    then :math:`\partial b_t = \lambda_t`, :math:`\partial a_t = \lambda_t \bar h_{t-1}`,
    :math:`\partial h_0 = \bar a_1 \lambda_1`.  So a backward costs one more scan,
    and only ``a``, ``h0`` and the states are kept for it (first derivatives
    only: a double backward raises).  The inputs are promoted to one dtype
    (``torch.promote_types``), as the step ``a * h + b`` would promote them.
    """
    _check_pair("a", a, "b", b)
    if h0 is not None and tuple(h0.shape) != tuple(a.shape[1:]):
        raise ValueError(
            f"expected h0 of shape {tuple(a.shape[1:])} (a's shape without the "
            f"steps), got {tuple(h0.shape)}"
        )
    dtype = torch.promote_types(a.dtype, b.dtype)
    if h0 is not None:
        dtype = torch.promote_types(dtype, h0.dtype)
        h0 = h0.to(dtype)
    a, b = a.to(dtype), b.to(dtype)  # e.g. bfloat16 steps from a float32 state: float32
    if a.shape[0] == 0:
        return torch.zeros_like(b)
    if capturing_graph():
        return _scan_recorded(a, b, h0)
    return _LinearScan.apply(a, b, h0)


class _LinearScan(torch.autograd.Function):
    """:func:`linear_scan`, with the adjoint recurrence as its backward."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
        h = torch.empty_like(b)  # (T, N, *)
        if h0 is not None:  # fold h_0 into the first step: h_1 = a_1 h_0 + b_1
            b = torch.cat([torch.addcmul(b[:1], a[:1], h0.unsqueeze(0)), b[1:]])
        _scan_from_zero(a, b, h)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        a, h0, h = ctx.saved_tensors
        # lambda_T = g_T, lambda_t = g_t + conj(a_{t+1}) lambda_{t+1}
        lam = _scan_back(a[1:].conj(), g, torch.empty_like(g))  # (T, N, *)
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:  # lambda_t conj(h_{t-1})
            grad_a = torch.empty_like(lam)
            torch.mul(lam[1:], h[:-1].conj(), out=grad_a[1:])
            if h0 is None:
                grad_a[0] = 0
            else:
                torch.mul(lam[0], h0.conj(), out=grad_a[0])
        if h0 is not None and ctx.needs_input_grad[2]:
            grad_h0 = a[0].conj() * lam[0]
        return grad_a, lam, grad_h0


def _scan_from_zero(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """:func:`linear_scan` with ``h_0 = 0`` (the states are the ``b`` part of the prefix
    maps), written into ``out``; no autograd (the forward of :class:`_LinearScan`)."""
    T = a.shape[0]
    out[:1] = b[:1]  # h_1 = b_1
    if T == 1:
        return out
    n = T // 2  # pairs (steps 2k-1, 2k), k = 1 ... n, at rows (2k-2, 2k-1)
    a_first, a_second = a[0 : 2 * n : 2], a[1 : 2 * n : 2]  # (n, N, *)
    b_first, b_second = b[0 : 2 * n : 2], b[1 : 2 * n : 2]
    # h_2, h_4, ..., h_2n (rows 1, 3, ...): the scan of the composed pairs
    _scan_from_zero(a_second * a_first, torch.addcmul(b_second, a_second, b_first),
                    out[1 : 2 * n : 2])
    # h_3, h_5, ... (rows 2, 4, ...): one step from the state before each
    m = T - n - 1
    torch.addcmul(b[2::2], a[2::2], out[1 : 2 * m : 2], out=out[2::2])
    return out


def _scan_recorded(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    """:func:`linear_scan` while a graph is recorded for export (``capturing_graph``):
    no autograd function (torch.jit.save refuses a graph that holds one) and no
    writes into a buffer (the ONNX exporter loses them), but the same products and
    sums as :func:`_scan_from_zero`, so the same numbers.  The recursion is unrolled
    for the traced number of steps, and the graph checks that number."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        T = int(a.shape[0])  # a constant of the graph (a trace records sizes as values)
    warnings.warn(
        f"linear_scan is unrolled for {T} steps: the recorded graph takes sequences of "
        f"exactly that length (see docs/export.md)", torch.jit.TracerWarning, stacklevel=3)
    # to a constant length: at any other length the recorded graph fails here
    a, b = (t.reshape((T,) + tuple(t.shape[1:])) for t in (a, b))
    if h0 is not None:  # fold h_0 into the first step, as _LinearScan does
        b = torch.cat([torch.addcmul(b[:1], a[:1], h0.unsqueeze(0)), b[1:]])
    return _scan_unrolled(a, b, T)


def _scan_unrolled(a: Tensor, b: Tensor, T: int) -> Tensor:
    """:func:`_scan_from_zero`'s recursion as operations that return their results,
    for ``T`` (a Python int) steps."""
    if T == 1:
        return b  # h_1 = b_1
    n = T // 2
    a_first, a_second = a[0 : 2 * n : 2], a[1 : 2 * n : 2]  # (n, N, *)
    b_first, b_second = b[0 : 2 * n : 2], b[1 : 2 * n : 2]
    even = _scan_unrolled(a_second * a_first, torch.addcmul(b_second, a_second, b_first), n)
    m = T - n - 1  # h_2, ..., h_2n above (rows 1, 3, ...); rows 0, 2, ... below
    odd = torch.cat([b[:1], torch.addcmul(b[2:T:2], a[2:T:2], even[:m])])  # (T - n, N, *)
    pairs = torch.stack([odd[:n], even], 1).flatten(0, 1)  # rows 0 ... 2n - 1
    return pairs if T == 2 * n else torch.cat([pairs, odd[n:]])


def _scan_back(c: Tensor, g: Tensor, out: Tensor) -> Tensor:
    """The same scan run from the last row: ``out[T-1] = g[T-1]``,
    ``out[t] = g[t] + c[t] * out[t+1]``, with ``c`` of ``T - 1`` rows; into ``out``.

    Pairs are the rows ``(t, t + 1)`` counted from the end; when ``T`` is odd, row 0
    is left over and filled in last."""
    T = g.shape[0]
    out[T - 1 :] = g[T - 1 :]
    if T == 1:
        return out
    n, s = T // 2, T % 2  # pairs (s + 2k, s + 2k + 1), k = 0 ... n - 1
    c_first, c_second = c[s::2], c[s + 1 :: 2]  # (n, N, *) and (n - 1, N, *)
    # out at rows s, s + 2, ..., T - 2: the scan of the composed pairs
    _scan_back(c_first[: n - 1] * c_second, torch.addcmul(g[s::2], c_first, g[s + 1 :: 2]),
               out[s::2])
    # rows s + 1, s + 3, ..., T - 3: one step back from the row after each
    torch.addcmul(g[s + 1 : T - 1 : 2], c_second, out[s + 2 :: 2], out=out[s + 1 : T - 1 : 2])
    if s:  # row 0
        torch.addcmul(g[:1], c[:1], out[1:2], out=out[:1])
    return out


def log_linear_scan(log_a: Tensor, log_b: Tensor, log_h0: Tensor | None = None) -> Tensor:
    r"""The logarithm of every state of :math:`h_t = a_t h_{t-1} + b_t`, for positive ``a``, ``b``.

    Heinsen, "Efficient parallelization of a ubiquitous sequential computation",
    2023: with :math:`a^*_t = \sum_{k \le t} \log a_k` (the log of
    :math:`a_1 \cdots a_t`),

    .. math::
        \log h_t = a^*_t + \log\Big(h_0 + \sum_{k \le t} e^{\log b_k - a^*_k}\Big)
                 = a^*_t + \operatorname{logcumsumexp}_{k \le t}(\log b_k - a^*_k),

    with :math:`h_0` entering as a step :math:`k = 0` with :math:`a^*_0 = 0`.
    A cumulative sum and a ``torch.logcumsumexp`` (itself a scan) give all states.

    Args:
        log_a: :math:`\log a_t`, ``(T, N, *)``, real (``a > 0``).
        log_b: :math:`\log b_t`, ``(T, N, *)``; ``-inf`` where :math:`b_t = 0`.
        log_h0: :math:`\log h_0`, ``(N, *)``; ``None`` for :math:`h_0 = 0`.

    Returns:
        ``(T, N, *)``: row ``t - 1`` holds :math:`\log h_t` (``exp`` it for :math:`h_t`).

    Stability: no product of decays is ever formed, so nothing underflows
    however small :math:`a_1 \cdots a_t` becomes, and ``logcumsumexp`` shifts by
    its running maximum, so large :math:`\log b` do not overflow either.  The
    price is a cancellation in :math:`a^*_t + \operatorname{logcumsumexp}(\cdot)`,
    two terms of size about :math:`|a^*_t|`: :math:`\log h_t` carries an absolute
    error of about :math:`|a^*_t| \varepsilon` (:math:`\varepsilon` the dtype's
    epsilon), e.g. ``1e-3`` in float32 once :math:`|a^*_t| \approx 10^4`.

    Gradients are finite as long as every column starts with a finite term: a
    ``-inf`` ``log_h0`` (a zero initial state) followed by ``-inf`` ``log_b`` gives
    NaN gradients, as ``torch.logcumsumexp`` does for a leading ``-inf``; pass
    ``log_h0=None`` for a zero initial state, or add :math:`e^{a^*_t} h_0`
    outside the scan for one of any sign (what the minimal RNN cells do).
    """
    _check_pair("log_a", log_a, "log_b", log_b)
    a_star = torch.cumsum(log_a, 0)  # (T, N, *): log(a_1 ... a_t)
    terms = log_b - a_star
    if log_h0 is None:
        return a_star + torch.logcumsumexp(terms, 0)
    if tuple(log_h0.shape) != tuple(log_a.shape[1:]):
        raise ValueError(
            f"expected log_h0 of shape {tuple(log_a.shape[1:])} (log_a's shape without "
            f"the steps), got {tuple(log_h0.shape)}"
        )
    terms = torch.cat([log_h0.unsqueeze(0), terms])  # h_0 as step 0, a*_0 = 0
    return a_star + torch.logcumsumexp(terms, 0)[1:]


def carry_padded(a: Tensor, b: Tensor, valid: Tensor | None, *, log_space: bool = False
                 ) -> tuple[Tensor, Tensor]:
    r"""``(a, b)`` with every invalid step made the identity map, so that it carries the
    state through: :math:`a_t = 1, b_t = 0` there (:math:`\log a_t = 0`,
    :math:`\log b_t = -\infty` with ``log_space``).

    After a scan, the state at an invalid step is then the state after the last
    valid step before it, and the last row is each sequence's final state.

    Args:
        a, b: ``(T, N, *)`` (their logarithms with ``log_space``).
        valid: a bool mask ``(T, N)``, true at real steps; ``None``: every step is
            real, and ``(a, b)`` come back unchanged.
    """
    if valid is None:
        return a, b
    if valid.dtype != torch.bool or tuple(valid.shape) != tuple(a.shape[:2]):
        raise ValueError(
            f"expected valid to be a bool mask of shape {tuple(a.shape[:2])} (T, N), got "
            f"{valid.dtype} of shape {tuple(valid.shape)}"
        )
    keep = valid.reshape(tuple(valid.shape) + (1,) * (a.dim() - 2))  # (T, N, 1, ...)
    one, zero = (0.0, float("-inf")) if log_space else (1.0, 0.0)
    return torch.where(keep, a, one), torch.where(keep, b, zero)


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.dim() < 1 or tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"expected {name_a} and {name_b} of the same shape (T, N, *), got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
