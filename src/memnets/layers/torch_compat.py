"""Drop-in replacements for torch.nn.RNN, torch.nn.LSTM and torch.nn.GRU.

They take torch.nn's constructor arguments, forward signature, return values,
initialisation and state_dict keys, and are built from the generic core
(cells + :class:`Recurrent` + :class:`Bidirectional` + :class:`Stacked`), so
the cell can be swapped with one argument.  When the cells are the standard
ones, the forward pass dispatches to torch's fused kernel (same parameters,
same results); ``fused=False`` forces the generic path.

Initialisation happens once: the default cells are built on the meta device
(no values, no random draws) and every parameter is then drawn as torch.nn
draws it, in torch.nn's order, so that under the same seed a drop-in starts
from the very weights of its torch.nn counterpart.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from memnets.cells.base import RecurrentCell, check_sizes
from memnets.cells.elman import ElmanCell, uniform_init_
from memnets.cells.gru import GRUCell
from memnets.cells.lstm import LSTMCell
from memnets.cells.registry import cell_names, make_cell
from memnets.cells.regularizers import REGULARIZER_OPTIONS
from memnets.layers.bidirectional import Bidirectional
from memnets.layers.recurrent import Recurrent
from memnets.layers.sequence import as_lengths, check_dtype, to_time_major
from memnets.layers.stacked import Stacked

CellFactory = Callable[[int, int], RecurrentCell]
_TORCH_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


class _TorchCompatible(nn.Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    _default_cell: type[RecurrentCell]
    _default_name: str  # its registry name: cell=<this name> is the default cell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        cell: CellFactory | str | None = None,
        fused: bool = True,
        device=None,
        dtype=None,
        **cell_options,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"expected dropout in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        self.fused = fused
        wrapped = any(k in cell_options for k in REGULARIZER_OPTIONS)  # make_cell wraps it
        if cell == self._default_name and not wrapped:
            cell = None  # the layer's own cell, initialised as torch.nn does
        elif isinstance(cell, str):
            cell = _registered_cell(cell, bias, cell_options, device, dtype)
        elif cell is not None and not callable(cell):
            raise ValueError(
                f"expected cell to be a registered cell name or a factory "
                f"cell(input_size, hidden_size), got {type(cell).__name__}")
        self._custom_cell = cell is not None

        def make(in_size: int) -> RecurrentCell:
            if cell is not None:
                return cell(in_size, hidden_size)
            # no values yet: _torch_init draws each parameter once, below
            return self._default_cell(
                in_size, hidden_size, bias, **cell_options, device="meta", dtype=dtype
            )

        layers, in_size = [], input_size
        for _ in range(num_layers):
            fwd = make(in_size)
            if bidirectional:
                layers.append(Bidirectional(fwd, make(in_size), batch_first=batch_first))
            else:
                layers.append(Recurrent(fwd, batch_first=batch_first))
            in_size = layers[-1].output_size
        self.stack = Stacked(layers, dropout=self.dropout, batch_first=batch_first)
        self.output_size = self.stack.output_size  # D * H_out
        if cell is None:
            self.stack.to_empty(device=device if device is not None else torch.empty(0).device)
            self._torch_init(cell_options)
        # torch.nn names: "<cell parameter>_l<layer>[_reverse]"
        self._flat_names: dict[str, str] = {}
        self._all_weights: list[list[str]] = []  # torch.nn's: the names per layer and direction
        for k in range(num_layers):
            for d, cell_ in enumerate(self._cells_of(k)):
                prefix = self._cell_prefix(k, d)
                names = []
                for name, _ in cell_.named_parameters():
                    flat = name.replace(".", "_") + f"_l{k}" + ("_reverse" if d else "")
                    self._flat_names[flat] = f"{prefix}.{name}"
                    names.append(flat)
                self._all_weights.append(names)
        self._nested_names = {v: k for k, v in self._flat_names.items()}
        # (owner module, attribute) of each weight in torch.nn's order
        self._weight_refs = [
            (self.get_submodule(n.rpartition(".")[0]), n.rpartition(".")[2])
            for n in self._flat_names.values()
        ]
        # Each parameter is registered here too, under its torch.nn name, so that
        # named_parameters() and parameters() give torch.nn's names and order (also
        # from a model that holds this layer); the cells keep the same objects and
        # compute with them.  state_dict() lists each once, by its torch.nn name.
        for flat, (module, attr) in zip(self._flat_names, self._weight_refs):
            self.register_parameter(flat, module._parameters[attr])
        self.register_state_dict_post_hook(_to_flat_names)
        self.register_load_state_dict_pre_hook(_from_flat_names)
        self.register_load_state_dict_post_hook(_tie_after_load)

    def _torch_init(self, cell_options: dict) -> None:
        """The one initialisation of the default cells: torch.nn's for the parameters
        torch.nn has, in its order; the others (peepholes, layer-norm gains, ...)
        get their cell's initialisation, and an explicit ``forget_bias`` option
        is honoured."""
        for c in self.cells():
            for name in _TORCH_PARAMETERS:
                p = getattr(c, name, None)
                if p is not None:
                    uniform_init_(p, self.hidden_size)
            self._init_option_parameters(c)
            if "forget_bias" in cell_options and c.bias_ih is not None:
                H, k = c.hidden_size, 0 if getattr(c, "coupled", False) else 1
                with torch.no_grad():
                    c.bias_ih[k * H : (k + 1) * H].fill_(cell_options["forget_bias"])
                    c.bias_hh[k * H : (k + 1) * H].zero_()

    def _init_option_parameters(self, cell: RecurrentCell) -> None:
        """Initialise the parameters that only the cell's options add (none here)."""

    # --- structure ---

    def _cell_prefix(self, layer: int, direction: int) -> str:
        if self.bidirectional:
            side = "forward_layer" if direction == 0 else "backward_layer"
            return f"stack.layers.{layer}.{side}.cell"
        return f"stack.layers.{layer}.cell"

    def _cells_of(self, layer: int) -> list[RecurrentCell]:
        module = self.stack.layers[layer]
        if self.bidirectional:
            return [module.forward_layer.cell, module.backward_layer.cell]
        return [module.cell]

    def cells(self) -> list[RecurrentCell]:
        """All cells, in torch.nn's order: layer by layer, forward before backward."""
        return [c for k in range(self.num_layers) for c in self._cells_of(k)]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters per layer and direction, as torch.nn's ``all_weights``:
        ``[[weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0], [..._l0_reverse], ...]``."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def _tie(self) -> None:
        """Make each cell hold the very parameter registered here under its torch.nn
        name: a conversion that replaces parameters (``to_empty``, swapping tensors
        on ``.to()``) or ``load_state_dict(assign=True)`` makes new objects per module."""
        for flat, (module, attr) in zip(self._flat_names, self._weight_refs):
            if module._parameters[attr] is not self._parameters[flat]:
                module._parameters[attr] = self._parameters[flat]

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [self._parameters[name] for name in self._flat_names]

    def flatten_parameters(self) -> None:
        """Lay the weights out in one block of memory, as cuDNN wants them.

        As in torch.nn: on CUDA, when the fused kernel will run, every weight
        becomes a view into one buffer (values unchanged), so that cuDNN does
        not copy them at each call.  Elsewhere (CPU, the generic path) a no-op.
        Called after ``.to()``/``.cuda()``.
        """
        weights = self._flat_weights
        if not weights or not self._can_fuse():
            return
        first = weights[0]
        if not (first.is_cuda and torch.backends.cudnn.is_acceptable(first)):
            return
        if any(w.dtype != first.dtype or w.device != first.device for w in weights):
            return
        if len({w.data_ptr() for w in weights}) != len(weights):
            return  # shared weights cannot be laid out apart
        if not torch._use_cudnn_rnn_flatten_weight():
            return
        from torch.backends.cudnn import rnn as cudnn_rnn
        proj = getattr(self, "proj_size", 0)
        per_layer = (4 if self.bias else 2) + (1 if proj > 0 else 0)
        with torch.cuda.device_of(first), torch.no_grad():
            torch._cudnn_rnn_flatten_weight(
                weights, per_layer, self.input_size, cudnn_rnn.get_cudnn_mode(self._cudnn_mode),
                self.hidden_size, proj, self.num_layers, self.batch_first,
                bool(self.bidirectional))

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self._tie()
        self.flatten_parameters()
        return result

    _cudnn_mode = ""  # cuDNN's name of the recurrence, set by each class

    # --- forward ---

    def forward(self, input: Tensor | PackedSequence, hx=None, lengths=None):
        """torch.nn's forward: ``output, h_n`` (RNN, GRU) or ``output, (h_n, c_n)`` (LSTM).

        ``hx`` has shape ``(D * num_layers, N, H_out)`` (without N for unbatched
        input), ``(h_0, c_0)`` for LSTM; it is in the input's batch order also
        for a PackedSequence, as in torch.nn.

        ``lengths`` (an extension of torch.nn's signature): the valid length of
        each sequence of a padded batch, instead of packing it.  Outputs past a
        sequence's length are zero and ``h_n`` is taken at its last valid step.
        Inputs are checked as in :mod:`memnets.layers.sequence` (``L >= 1``,
        integer lengths in ``[1, L]``, the parameters' dtype outside autocast).
        ``lengths`` may be given by position too, so that
        ``torch.onnx.export(layer, (x,), dynamo=False)`` can call ``forward`` (that
        exporter fills in every default by position); see docs/export.md.
        """
        check_dtype(input, self)
        if lengths is not None and self._can_fuse():
            batch = to_time_major(input, input_size=self.input_size,
                                  batch_first=self.batch_first, lengths=lengths)
            packed = pack_padded_sequence(input, as_lengths(lengths),
                                          batch_first=self.batch_first, enforce_sorted=False)
            out, state = self._forward_fused(packed, hx)
            out, _ = pad_packed_sequence(out, batch_first=self.batch_first,
                                         total_length=batch.x.shape[0])
            return out, state
        if self._can_fuse():
            return self._forward_fused(input, hx)
        batch = to_time_major(input, input_size=self.input_size, batch_first=self.batch_first,
                              lengths=lengths)
        N = batch.x.shape[1]
        state = self._split_hx(hx, N, batch.unbatched)
        out, final = self.stack.run(batch.x, state, batch.lengths)
        return batch.restore(out), self._join_states(final, batch.unbatched)

    @classmethod
    def kernel_runs(cls, cell: RecurrentCell) -> bool:
        """Whether torch's fused kernel computes ``cell``'s step: a cell of this
        layer's default type whose options keep it the standard one (see
        :meth:`_standard` of each class)."""
        return type(cell) is cls._default_cell and cls._standard(cell)

    @staticmethod
    def _standard(cell: RecurrentCell) -> bool:
        return True

    def _can_fuse(self) -> bool:
        if not self.fused or self._custom_cell:
            return False
        return all(self.kernel_runs(c) and self._fusable(c) for c in self.cells())

    def _fusable(self, cell: RecurrentCell) -> bool:
        """Whether this instance's kernel matches ``cell`` (RNN: the nonlinearity)."""
        return True

    def _state_sizes(self) -> list[int]:
        """Feature size of each state field, in torch.nn's hx order."""
        return [self.cells()[0].output_size]

    def _split_hx(self, hx, N: int, unbatched: bool):
        """torch.nn's ``hx`` to one state per layer (Bidirectional: a pair)."""
        if hx is None:
            return None
        fields = self._check_hx(hx, N, unbatched)
        if unbatched:
            fields = [f.unsqueeze(1) for f in fields]
        D = 2 if self.bidirectional else 1
        states = []
        for k in range(self.num_layers):
            per_dir = []
            for d, cell in enumerate(self._cells_of(k)):
                template = cell.init_state(N, device="meta")
                per_dir.append(type(template)(*(f[k * D + d] for f in fields)))
            states.append(tuple(per_dir) if self.bidirectional else per_dir[0])
        return tuple(states)

    def _join_states(self, final, unbatched: bool):
        per_cell = []
        for s in final:
            per_cell.extend(s if self.bidirectional else [s])
        fields = [torch.stack([s[i] for s in per_cell]) for i in range(len(per_cell[0]))]
        if unbatched:
            fields = [f.squeeze(1) for f in fields]
        return self._pack_hx(fields)

    def _pack_hx(self, fields: list[Tensor]):
        return fields[0]

    def _hx_fields(self, hx) -> list[Tensor]:
        return [hx]

    def _check_hx(self, hx, N: int, unbatched: bool) -> list[Tensor]:
        fields = self._hx_fields(hx)
        D = 2 if self.bidirectional else 1
        names = ["h_0", "c_0"]
        for name, f, size in zip(names, fields, self._state_sizes()):
            want = (D * self.num_layers, size) if unbatched else (D * self.num_layers, N, size)
            if not isinstance(f, Tensor) or tuple(f.shape) != want:
                got = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
                raise ValueError(
                    f"expected {name} of shape {want} (D * num_layers"
                    + ("" if unbatched else ", N")
                    + f", {'H_cell' if name == 'c_0' else 'H_out'}), got {got}"
                )
        return fields

    def _forward_fused(self, input, hx):
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes = input.data, input.batch_sizes
            sorted_idx, unsorted_idx = input.sorted_indices, input.unsorted_indices
            # the batch size from a shape where there is one (a traced graph keeps it
            # variable; int() of a value would fix it to the example's)
            N = int(batch_sizes[0]) if sorted_idx is None else sorted_idx.shape[0]
            unbatched = False
            if data.dim() != 2 or data.shape[-1] != self.input_size:
                to_time_major(input, input_size=self.input_size, batch_first=False)
        else:
            batch = to_time_major(input, input_size=self.input_size, batch_first=self.batch_first)
            N, unbatched = batch.x.shape[1], batch.unbatched
            sorted_idx = unsorted_idx = None
            data = input.unsqueeze(1) if unbatched else input
        D = 2 if self.bidirectional else 1
        if hx is None:
            fields = [
                data.new_zeros(D * self.num_layers, N, size) for size in self._state_sizes()
            ]
        else:
            fields = self._check_hx(hx, N, unbatched)
            if unbatched:
                fields = [f.unsqueeze(1) for f in fields]
            if sorted_idx is not None:
                fields = [f.index_select(1, sorted_idx) for f in fields]
        args = (self._flat_weights, self.bias, self.num_layers, self.dropout, self.training)
        if packed:
            result = self._kernel(data, batch_sizes, self._kernel_hx(fields), *args,
                                  self.bidirectional)
        else:
            result = self._kernel(data, self._kernel_hx(fields), *args, self.bidirectional,
                                  self.batch_first)
        output, hidden = result[0], list(result[1:])
        if unsorted_idx is not None:
            hidden = [h.index_select(1, unsorted_idx) for h in hidden]
        if packed:
            output = PackedSequence(output, batch_sizes, sorted_idx, unsorted_idx)
        elif unbatched:
            output = output.squeeze(1)
            hidden = [h.squeeze(1) for h in hidden]
        return output, self._pack_hx(hidden)

    def _kernel_hx(self, fields: list[Tensor]):
        return fields[0]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s


def _to_flat_names(module: _TorchCompatible, state_dict, prefix: str, local_metadata) -> None:
    """Keep each parameter once in a state_dict, under its torch.nn name (the
    layer's own entry, already in torch.nn's order); drop the cells' entries."""
    for nested, flat in module._nested_names.items():
        key = prefix + nested
        if key in state_dict:
            state_dict.setdefault(prefix + flat, state_dict.pop(key))


def _from_flat_names(module: _TorchCompatible, state_dict, prefix: str, *args) -> None:
    """A torch.nn-named entry loads both the layer's own entry and the cell's."""
    for flat, nested in module._flat_names.items():
        key = prefix + flat
        if key in state_dict:
            state_dict[prefix + nested] = state_dict[key]


def _tie_after_load(module: _TorchCompatible, incompatible_keys) -> None:
    module._tie()


def _registered_cell(name: str, bias: bool, options: dict, device, dtype) -> CellFactory:
    """The factory of the one-layer cell registered as ``name``, with the layer's
    cell options (``bias=False`` and ``device``/``dtype`` passed on when given)."""
    if name not in cell_names():
        multi = name in cell_names(layers=True)
        raise ValueError(
            f"expected cell to be a one-layer registered cell ({', '.join(cell_names())}) "
            f"or a factory, got {name!r}"
            + (" (a multi-layer cell: run it with memnets.layers.make_stack)" if multi else ""))
    options = dict(options)
    if not bias:
        options["bias"] = False
    options.update({k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None})

    def factory(input_size: int, hidden_size: int) -> RecurrentCell:
        return make_cell(name, input_size=input_size, hidden_size=hidden_size, **options)

    return factory


class RNN(_TorchCompatible):
    r"""Drop-in replacement for :class:`torch.nn.RNN` (Elman network, tanh or ReLU).

    .. math::
        h_t = \sigma(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    Args: as torch.nn.RNN (``input_size, hidden_size, num_layers=1,
    nonlinearity='tanh', bias=True, batch_first=False, dropout=0.0,
    bidirectional=False``), plus

    * ``cell``: another cell in the same deep/bidirectional layout: a registered
      one-layer cell name (``cell="scrn"``; the other keyword arguments are its
      options, as for :func:`memnets.make_cell`; the layer's own cell's name is the
      same as no ``cell``) or a factory ``cell(input_size, hidden_size) ->
      RecurrentCell``.  torch.nn-style names ``<parameter>_l<k>[_reverse]`` are
      kept for its parameters;
    * ``fused``: allow dispatch to torch's fused kernel (default True).

    ``named_parameters()``, ``parameters()``, ``state_dict()`` and ``all_weights``
    give torch.nn's names and order (``weight_ih_l0``, ``weight_hh_l0``,
    ``bias_ih_l0``, ``bias_hh_l0``, then ``..._l0_reverse``, ``..._l1``), also
    inside a model that holds the layer.

    Inputs: ``input`` ``(L, N, H_in)`` (``(N, L, H_in)`` with batch_first),
    ``(L, H_in)`` or a PackedSequence; ``hx`` ``(D * num_layers, N, H)``.
    Outputs: ``output`` ``(L, N, D * H)`` (or packed), ``h_n`` ``(D * num_layers, N, H)``.
    Parameters: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (and ``_reverse``), initialised from U(-1/sqrt(H), 1/sqrt(H)).

    Examples::

        >>> import torch, memnets
        >>> rnn = memnets.RNN(3, 4, num_layers=2, nonlinearity="relu")
        >>> ref = torch.nn.RNN(3, 4, num_layers=2, nonlinearity="relu")
        >>> _ = ref.load_state_dict(rnn.state_dict())
        >>> x = torch.randn(5, 2, 3)
        >>> out, h_n = rnn(x)
        >>> out.shape, h_n.shape
        (torch.Size([5, 2, 4]), torch.Size([2, 2, 4]))
        >>> torch.allclose(out, ref(x)[0], atol=1e-6)
        True
        >>> ind = memnets.RNN(3, 4, cell="indrnn", recurrent_max=2.0)   # another cell, same layout
        >>> [name for name, _ in ind.named_parameters()]
        ['weight_ih_l0', 'weight_hh_l0', 'bias_l0']
    """

    _default_cell, _default_name = ElmanCell, "elman"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, **kwargs) -> None:
        self.nonlinearity = nonlinearity
        if kwargs.get("cell") in (None, self._default_name):
            kwargs["nonlinearity"] = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, **kwargs)

    def _kernel(self, *args):
        return (_VF.rnn_tanh if self.nonlinearity == "tanh" else _VF.rnn_relu)(*args)

    @property
    def _cudnn_mode(self) -> str:
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"

    def _fusable(self, cell: ElmanCell) -> bool:
        return cell.nonlinearity == self.nonlinearity


class LSTM(_TorchCompatible):
    r"""Drop-in replacement for :class:`torch.nn.LSTM`, with ``proj_size``.

    Equations: see :class:`~memnets.cells.LSTMCell`.

    Args: as torch.nn.LSTM (``input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0``), plus
    ``cell`` and ``fused`` as in :class:`RNN`.

    Inputs: ``input`` as in :class:`RNN`; ``hx = (h_0, c_0)`` with ``h_0``
    ``(D * num_layers, N, H_out)`` and ``c_0`` ``(D * num_layers, N, H)``.
    Outputs: ``output`` ``(L, N, D * H_out)``, ``(h_n, c_n)`` shaped as ``hx``.
    Parameters: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}``, ``weight_hr_l{k}`` with ``proj_size`` (and ``_reverse``).

    Examples::

        >>> import torch, memnets
        >>> lstm = memnets.LSTM(3, 4, num_layers=2, bidirectional=True)
        >>> ref = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
        >>> _ = ref.load_state_dict(lstm.state_dict())
        >>> x = torch.randn(5, 2, 3)
        >>> out, (h_n, c_n) = lstm(x)
        >>> out.shape, h_n.shape, c_n.shape
        (torch.Size([5, 2, 8]), torch.Size([4, 2, 4]), torch.Size([4, 2, 4]))
        >>> torch.allclose(out, ref(x)[0], atol=1e-6)
        True
        >>> [n for n, _ in lstm.named_parameters()] == [n for n, _ in ref.named_parameters()]
        True
    """

    _default_cell, _default_name = LSTMCell, "lstm"

    @staticmethod
    def _standard(cell: LSTMCell) -> bool:
        """No peepholes, coupling, layer norm or other activations (``forget_bias``
        and ``proj_size`` are torch's too)."""
        return cell.is_standard()

    def _init_option_parameters(self, cell: LSTMCell) -> None:
        cell.reset_option_parameters()

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, **kwargs) -> None:
        self.proj_size = proj_size
        if kwargs.get("cell") in (None, self._default_name):
            kwargs["proj_size"] = proj_size
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, **kwargs)

    _kernel = staticmethod(_VF.lstm)
    _cudnn_mode = "LSTM"

    def _can_fuse(self) -> bool:
        # ONNX's LSTM operator has no projection, and torch's exporter refuses the
        # kernel with one: the generic cells are exported instead (docs/export.md)
        if self.proj_size and torch.onnx.is_in_onnx_export():
            return False
        return super()._can_fuse()

    def _state_sizes(self) -> list[int]:
        cell = self.cells()[0]
        return [cell.output_size, cell.hidden_size]

    def _hx_fields(self, hx) -> list[Tensor]:
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise ValueError(f"expected hx = (h_0, c_0) for LSTM, got {type(hx).__name__}")
        return list(hx)

    def _pack_hx(self, fields: list[Tensor]):
        return tuple(fields) if len(fields) > 1 else fields[0]

    def _kernel_hx(self, fields: list[Tensor]):
        return tuple(fields)


class GRU(_TorchCompatible):
    r"""Drop-in replacement for :class:`torch.nn.GRU`.

    Equations: see :class:`~memnets.cells.GRUCell` (reset gate applied after the
    recurrent product, as torch.nn.GRU does).

    Args, inputs and outputs: as :class:`RNN`, without ``nonlinearity``.
    Parameters: ``weight_ih_l{k}`` ``(3H, H_in)``, ``weight_hh_l{k}`` ``(3H, H)``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (and ``_reverse``).

    Examples::

        >>> import torch, memnets
        >>> gru = memnets.GRU(3, 4, batch_first=True)
        >>> ref = torch.nn.GRU(3, 4, batch_first=True)
        >>> _ = ref.load_state_dict(gru.state_dict())
        >>> x = torch.randn(2, 5, 3)
        >>> torch.allclose(gru(x)[0], ref(x)[0], atol=1e-6)
        True
        >>> out, h_n = gru(x, lengths=[5, 2])              # variable lengths without packing
        >>> out[1, 2:].abs().sum().item()
        0.0
    """

    _default_cell, _default_name = GRUCell, "gru"
    _kernel = staticmethod(_VF.gru)
    _cudnn_mode = "GRU"

    @staticmethod
    def _standard(cell: GRUCell) -> bool:
        """The reset gate applied after the recurrent product, as cuDNN does."""
        return cell.reset_after
