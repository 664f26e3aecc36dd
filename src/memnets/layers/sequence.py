"""The variable-length contract shared by every layer that runs over time.

Written down once, here:

* A batch of sequences is time-major ``(L, N, H_in)``, batch-major
  ``(N, L, H_in)`` with ``batch_first=True``, unbatched ``(L, H_in)``, or a
  :class:`~torch.nn.utils.rnn.PackedSequence`.
* Every sequence has at least one step (``L >= 1``).
* Sequences of different lengths are given as ``lengths`` (a list of ints or
  an integer tensor of shape ``(N,)``, each in ``[1, L]``; floats and bools are
  refused, :func:`as_lengths`) or by packing.
* The input has the dtype of the layer's parameters, unless autocast is on
  (:func:`check_dtype`).
* Outputs at padded positions are exactly zero.
* The final state of a sequence is its state after its own last valid step.
* Reversing a sequence reverses its valid steps only; padding stays at the end.

Layers convert their input once at the boundary (:func:`to_time_major`) and
work on time-major padded tensors with a ``lengths`` tensor, or ``None`` when
every sequence has the full length (always the tensor while a graph is recorded
for export, :func:`memnets.cells.base.capturing_graph`).  This module imports
only torch and :mod:`memnets.cells.base`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from memnets.cells.base import capturing_graph


@dataclass
class SequenceBatch:
    """A batch converted to the internal layout, and how to convert results back."""

    x: Tensor  # (L, N, H_in)
    lengths: Tensor | None  # (N,) int64 on CPU, or None when all are L
    batch_first: bool
    unbatched: bool
    packed: PackedSequence | None

    def restore(self, out: Tensor) -> Tensor | PackedSequence:
        """Convert a time-major output ``(L, N, H_out)`` to the input's layout."""
        if self.packed is not None:
            p = self.packed
            if p.sorted_indices is not None:
                out = out.index_select(1, p.sorted_indices)
            lengths = pad_lengths_of(p)
            data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
            return PackedSequence(data, p.batch_sizes, p.sorted_indices, p.unsorted_indices)
        if self.unbatched:
            return out.squeeze(1)
        return out.transpose(0, 1) if self.batch_first else out


def pad_lengths_of(packed: PackedSequence) -> Tensor:
    """Lengths of a packed batch in its sorted (packing) order."""
    batch_sizes = packed.batch_sizes  # (L,) number of sequences alive at each step
    n = int(batch_sizes[0])
    return (batch_sizes.unsqueeze(1) > torch.arange(n).unsqueeze(0)).sum(0)


def to_time_major(
    input: Tensor | PackedSequence,
    *,
    input_size: int,
    batch_first: bool,
    lengths=None,
    enforce_sorted: bool = False,
) -> SequenceBatch:
    """Validate ``input`` and ``lengths`` and convert them to :class:`SequenceBatch`.

    Raises ``ValueError`` naming what was expected and what came.  The dtype is
    checked apart, by :func:`check_dtype`, which needs the layer.
    """
    if isinstance(input, PackedSequence):
        if lengths is not None:
            raise ValueError("expected either a PackedSequence or lengths=, got both")
        x, lens = pad_packed_sequence(input)  # (L, N, H_in), original order
        _check_features(x, input_size)
        return SequenceBatch(x, _full_is_none(lens, x.shape[0]), batch_first, False, input)
    if not isinstance(input, Tensor):
        raise ValueError(f"expected a Tensor or PackedSequence, got {type(input).__name__}")
    layout = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
    if input.dim() == 2:
        if lengths is not None:
            raise ValueError(
                f"expected batched input {layout} when lengths= is given, "
                f"got unbatched input of shape {tuple(input.shape)}"
            )
        _check_features(input, input_size)
        _check_steps(input, input.shape[0], "(L, H_in)")
        return SequenceBatch(input.unsqueeze(1), None, batch_first, True, None)
    if input.dim() != 3:
        raise ValueError(
            f"expected input of shape {layout} or unbatched (L, H_in) with "
            f"H_in={input_size}, got {input.dim()}-d input of shape {tuple(input.shape)}"
        )
    _check_features(input, input_size)
    x = input.transpose(0, 1) if batch_first else input
    L, N = x.shape[:2]
    _check_steps(input, L, layout)
    if lengths is None:
        return SequenceBatch(x, None, batch_first, False, None)
    lens = as_lengths(lengths)
    if lens.dim() != 1 or lens.shape[0] != N:
        raise ValueError(
            f"expected lengths of shape ({N},) (one per sequence), got {tuple(lens.shape)}"
        )
    if N and (int(lens.min()) < 1 or int(lens.max()) > L):
        raise ValueError(
            f"expected every length in [1, {L}] (L = {L}), got min {int(lens.min())} "
            f"and max {int(lens.max())}"
        )
    if enforce_sorted and N > 1 and bool((lens[1:] > lens[:-1]).any()):
        raise ValueError(
            "expected lengths sorted in decreasing order (enforce_sorted=True), "
            f"got {lens.tolist()}"
        )
    return SequenceBatch(x, _full_is_none(lens, L), batch_first, False, None)


def _check_features(x: Tensor, input_size: int) -> None:
    if x.shape[-1] != input_size:
        raise ValueError(
            f"expected input with {input_size} features (input_size), got {x.shape[-1]}"
        )


def _check_steps(input: Tensor, L: int, layout: str) -> None:
    if L == 0:
        raise ValueError(
            f"expected at least one time step, got input of shape {tuple(input.shape)} "
            f"(read as {layout})"
        )


def as_lengths(lengths, *, name: str = "lengths") -> Tensor:
    """``lengths`` (a list of ints or an integer tensor) as an int64 CPU tensor.

    The one check of the lengths' type, used by every layer and model that takes
    them: float, complex or bool values raise ``ValueError`` naming the dtype
    (``3.0`` is a float, not a length, and would be truncated silently).  The
    shape and the range are left to the caller, which knows ``N`` and ``L``.
    """
    expected = f"expected integer {name} (a list of ints or an integer tensor)"
    if isinstance(lengths, Tensor):
        lens = lengths
    else:
        try:
            lens = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{expected}, got {type(lengths).__name__}") from None
        if lens.numel() == 0:
            return lens.to(dtype=torch.long)  # [] has no dtype to check
    if lens.dtype == torch.bool or lens.is_floating_point() or lens.is_complex():
        raise ValueError(f"{expected}, got dtype {lens.dtype}")
    return lens.to(device="cpu", dtype=torch.long)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()
    except RuntimeError:  # a device type autocast does not know
        return False


def check_dtype(input: Tensor | PackedSequence, module: nn.Module) -> None:
    """Raise ``ValueError`` unless ``input`` has the dtype of ``module``'s parameters.

    Outside autocast, a float16 input into a float32 layer (or any other
    mismatch) would fail deep inside a matrix product; this names both dtypes
    and the fix.  Under ``torch.autocast`` for the input's device, floating
    inputs of any precision pass (autocast casts them).  Called once per
    forward, at the boundary.
    """
    data = input.data if isinstance(input, PackedSequence) else input
    if not isinstance(data, Tensor):
        return  # to_time_major names the wrong type
    weight = next((p for p in module.parameters() if p.is_floating_point()), None)
    if weight is None or data.dtype == weight.dtype:
        return
    if data.is_floating_point():
        if _autocast_on(data.device.type):
            return
        fix = (f"convert the input with .to({weight.dtype}), or the module with "
               f".to({data.dtype}), or run under torch.autocast")
    else:
        fix = f"recurrent layers take float features; convert with .to({weight.dtype})"
    raise ValueError(
        f"expected input of dtype {weight.dtype} (the dtype of {type(module).__name__}'s "
        f"parameters), got {data.dtype}; {fix}"
    )


def _full_is_none(lengths: Tensor, L: int) -> Tensor | None:
    if capturing_graph():
        return lengths  # the traced graph must read the lengths, whatever the example's
    return None if bool((lengths == L).all()) else lengths


def valid_mask(lengths: Tensor, L: int, device) -> Tensor:
    """``(L, N)`` bool: True where step ``t`` is inside sequence ``n``."""
    return torch.arange(L, device=device).unsqueeze(1) < lengths.to(device).unsqueeze(0)


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` ``(L, N, *)`` within its own length.

    Padding stays at the end, and applying it twice gives ``x`` back.
    """
    if lengths is None:
        return x.flip(0)
    L = x.shape[0]
    t = torch.arange(L).unsqueeze(1)  # (L, 1)
    lens = lengths.unsqueeze(0)  # (1, N)
    index = torch.where(t < lens, lens - 1 - t, t).to(x.device)  # (L, N)
    index = index.view(index.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return x.gather(0, index)


def map_state(fn, state):
    """Apply ``fn`` to every tensor of a (possibly nested) tuple state, keeping its types."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple):
        items = [map_state(fn, s) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    if state is None:
        return None
    raise ValueError(f"expected a state made of tensors and tuples, got {type(state).__name__}")


class SequenceLayer(nn.Module):
    """Base of the layers that run over time (Recurrent, Bidirectional, Stacked).

    Subclasses set ``input_size``, ``output_size`` and ``batch_first`` and
    implement :meth:`run`, which works on the internal layout, and :meth:`cells`.
    A model asks a layer for its ``output_size`` and its :meth:`cells`; it never
    reaches into how the layer is composed.

    Examples::

        >>> import torch, memnets
        >>> layer = memnets.Recurrent(memnets.GRUCell(3, 4))   # every SequenceLayer takes these
        >>> x = torch.randn(5, 2, 3)                       # (L, N, H_in)
        >>> out, state = layer(x, lengths=[5, 3])
        >>> packed = torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3])
        >>> out_packed, state_packed = layer(packed)       # a PackedSequence comes back packed
        >>> torch.allclose(state_packed.h, state.h, atol=1e-6)
        True
        >>> out_one, state_one = layer(x[:, 0])            # unbatched (L, H_in)
        >>> out_one.shape, state_one.h.shape
        (torch.Size([5, 4]), torch.Size([4]))
        >>> layer.output_size, [type(cell).__name__ for cell in layer.cells()]
        (4, ['GRUCell'])
    """

    input_size: int
    output_size: int
    batch_first: bool

    def forward(
        self,
        input: Tensor | PackedSequence,
        state=None,
        lengths=None,
        enforce_sorted: bool = False,
    ):
        """Run over a batch of sequences.

        Every argument may be given by position (the TorchScript-based ONNX
        exporter calls ``forward`` with each default filled in by position).

        Args:
            input: ``(L, N, H_in)``, ``(N, L, H_in)`` if ``batch_first``,
                unbatched ``(L, H_in)``, or a PackedSequence.
            state: optional initial state (zeros if omitted); for unbatched
                input its tensors have no batch dimension.
            lengths: optional ``(N,)`` valid lengths, each in ``[1, L]``.
            enforce_sorted: require ``lengths`` in decreasing order.

        Returns:
            ``(outputs, final_state)``: outputs in the input's layout with
            ``H_out`` features, zero at padded positions; the final state at
            each sequence's last valid step.
        """
        batch = to_time_major(
            input,
            input_size=self.input_size,
            batch_first=self.batch_first,
            lengths=lengths,
            enforce_sorted=enforce_sorted,
        )
        check_dtype(input, self)
        if batch.unbatched:
            state = map_state(lambda s: s.unsqueeze(0), state)
        out, final = self.run(batch.x, state, batch.lengths)
        if batch.unbatched:
            final = map_state(lambda s: s.squeeze(0), final)
        return batch.restore(out), final

    def run(self, x: Tensor, state, lengths: Tensor | None):
        """Internal layout: ``x`` ``(L, N, H_in)``, ``lengths`` ``(N,)`` or None."""
        raise NotImplementedError

    def cells(self) -> list[nn.Module]:
        """The cells this layer runs, lowest layer first, forward before backward
        (what an initialisation scheme such as chrono's sets)."""
        raise NotImplementedError
