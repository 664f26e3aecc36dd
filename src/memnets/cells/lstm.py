"""Long short-term memory, in torch.nn.LSTM's parameter layout."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memnets.cells.base import (
    RecurrentCell,
    SequenceForm,
    check_size,
    check_sizes,
    register_state,
)
from memnets.cells.elman import _zeros
from memnets.cells.fused import lstm_pointwise, lstm_step_backward, lstm_step_forward


@register_state
class LSTMState(NamedTuple):
    """State of :class:`LSTMCell`: ``h`` ``(N, H_out)`` then ``c`` ``(N, H)``."""

    h: Tensor
    c: Tensor


_ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda a: a,
    "hard_sigmoid": nn.functional.hardsigmoid,
    "softsign": nn.functional.softsign,
}


def _activation(option: str, name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"expected {option} one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


class LSTMCell(RecurrentCell):
    r"""LSTM cell (Hochreiter & Schmidhuber, "Long short-term memory", 1997, with the
    forget gate of Gers, Schmidhuber & Cummins, 2000), optionally with a
    projection (Sak, Senior & Beaufays, 2014), peepholes, a coupled input–forget
    gate, layer normalisation and other activations.

    .. math::
        \begin{aligned}
        i_t &= f(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}
               \;[+\, w_{ci} \odot c_{t-1}]) \\
        f_t &= f(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}
               \;[+\, w_{cf} \odot c_{t-1}]) \\
        g_t &= g(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        o_t &= f(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho} \;[+\, w_{co} \odot c_t]) \\
        h_t &= o_t \odot h(c_t) \quad (\text{then } h_t \leftarrow W_{hr} h_t
               \text{ if } \texttt{proj\_size} > 0), \qquad y_t = h_t
        \end{aligned}

    with, by default, :math:`f = \sigma` (``gate_activation``), :math:`g = \tanh`
    (``input_activation``) and :math:`h = \tanh` (``output_activation``); the
    bracketed terms are the peepholes.

    Options (all off by default; the defaults are the standard LSTM of
    ``torch.nn.LSTM``, with its parameter names and shapes):

    * ``peephole`` (Gers, Schraudolph & Schmidhuber, "Learning precise timing with
      LSTM recurrent networks", 2002): diagonal cell-to-gate weights
      ``weight_ci``, ``weight_cf``, ``weight_co`` of shape ``(H,)``; the input
      and forget gates look at :math:`c_{t-1}`, the output gate at :math:`c_t`.
      Initialised to zero, so training starts from the plain LSTM.
    * ``forget_bias`` (Jozefowicz, Zaremba & Sutskever, "An empirical exploration
      of recurrent network architectures", 2015): the initial value of the
      forget gate's ``bias_ih`` block (default 1.0, which keeps memory early in
      training; ``bias_hh`` stays 0).  It changes initialisation only.
    * ``coupled`` (Greff et al., "LSTM: a search space odyssey", 2015, "CIFG"):
      :math:`i_t = 1 - f_t`.  The input gate has no parameters: the gate
      blocks become f, g, o, so ``weight_ih`` is ``(3H, H_in)``, ``weight_hh``
      ``(3H, H_out)``, the biases ``(3H,)``, and there is no ``weight_ci``.
    * ``layer_norm`` (Ba, Kiros & Hinton, "Layer normalization", 2016): the
      paper's LSTM variant, with separate normalisations of the input and
      recurrent contributions, each over all the gates together, and of the
      cell before the output activation:

      .. math::
          a_t = \mathrm{LN}(W_{ih} x_t; \gamma_1, \beta_1)
                + \mathrm{LN}(W_{hh} h_{t-1}; \gamma_2, \beta_2) + b_{ih} + b_{hh},
          \qquad h_t = o_t \odot h(\mathrm{LN}(c_t; \gamma_3, \beta_3))

      where :math:`a_t` stacks the gate pre-activations (``4H`` or ``3H``
      values) and the state keeps the unnormalised :math:`c_t`.  Submodules
      ``ln_ih`` and ``ln_hh`` (``nn.LayerNorm`` of ``4H``/``3H``) and ``ln_c``
      (``H``); peepholes are added after the normalisation.
    * ``gate_activation``, ``input_activation``, ``output_activation``: the
      functions :math:`f`, :math:`g`, :math:`h` by name: ``"sigmoid"``,
      ``"tanh"``, ``"relu"``, ``"identity"``, ``"hard_sigmoid"`` (torch's
      ``hardsigmoid``, :math:`\min(1, \max(0, a/6 + 1/2))`), ``"softsign"``
      (:math:`a / (1 + |a|)`).

    :meth:`is_standard` tells whether the cell is torch.nn.LSTM's (every
    option at its default apart from ``forget_bias`` and ``proj_size``), so that
    a layer may use torch's fused kernel.

    Args:
        input_size: features of ``x_t`` (H_in).
        hidden_size: features of the memory cell ``c_t`` (H).
        bias: if False, no ``b_ih`` and ``b_hh``.
        proj_size: if > 0, ``h_t`` is projected to this size (H_out); else H_out = H.
        peephole, forget_bias, coupled, layer_norm: as above.
        gate_activation, input_activation, output_activation: as above.

    Shapes: ``x_t`` ``(N, H_in)``; state :class:`LSTMState` ``(h, c)`` with ``h``
    ``(N, H_out)`` and ``c`` ``(N, H)``; output ``y_t = h_t`` ``(N, H_out)``.

    The gate blocks are stacked in the order i, f, g, o as in torch.nn.LSTM (f, g, o
    when ``coupled``).

    Attributes:
        weight_ih: ``(4H, H_in)``, Xavier-uniform per gate.
        weight_hh: ``(4H, H_out)``, orthogonal per gate.
        bias_ih, bias_hh: ``(4H,)``; zero except the forget gate's ``bias_ih``
            block, which is ``forget_bias``.
        weight_hr: ``(H_out, H)`` when ``proj_size > 0``.
        weight_ci, weight_cf, weight_co: ``(H,)`` with ``peephole``.

    Departures from the papers: the peephole LSTM of Gers et al. has no
    forget-gate bias convention and no projection, and Ba et al. give no
    separate biases besides the LayerNorm shifts :math:`\beta`; here ``b_ih``
    and ``b_hh`` are kept in every variant (so parameter names do not depend
    on the options), which adds ``2 * 4H`` redundant parameters under
    ``layer_norm``.

    Examples::

        >>> import torch, memnets
        >>> cell = memnets.LSTMCell(3, 4)
        >>> ref = torch.nn.LSTMCell(3, 4)                  # the same parameter names and shapes
        >>> _ = ref.load_state_dict(cell.state_dict())
        >>> x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
        >>> y, state = cell(x, memnets.LSTMState(h, c))
        >>> h_ref, c_ref = ref(x, (h, c))
        >>> torch.allclose(y, h_ref, atol=1e-6), torch.allclose(state.c, c_ref, atol=1e-6)
        (True, True)
        >>> memnets.LSTMCell(3, 4, peephole=True).weight_ci.shape
        torch.Size([4])
        >>> memnets.LSTMCell(3, 4, coupled=True).weight_ih.shape   # blocks f, g, o
        torch.Size([12, 3])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        *,
        peephole: bool = False,
        forget_bias: float = 1.0,
        coupled: bool = False,
        layer_norm: bool = False,
        gate_activation: str = "sigmoid",
        input_activation: str = "tanh",
        output_activation: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        check_size("proj_size", proj_size, minimum=0)
        if proj_size and proj_size >= hidden_size:
            raise ValueError(
                f"expected 0 <= proj_size < hidden_size ({hidden_size}), got {proj_size}"
            )
        self._f = _activation("gate_activation", gate_activation)
        self._g = _activation("input_activation", input_activation)
        self._h = _activation("output_activation", output_activation)
        factory = {"device": device, "dtype": dtype}
        h_out = proj_size or hidden_size
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, h_out
        self.proj_size = proj_size
        self.peephole, self.forget_bias = bool(peephole), float(forget_bias)
        self.coupled, self.layer_norm = bool(coupled), bool(layer_norm)
        self.gate_activation = gate_activation
        self.input_activation, self.output_activation = input_activation, output_activation
        G = self.num_gates = 3 if coupled else 4
        self.weight_ih = nn.Parameter(torch.empty(G * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(G * hidden_size, h_out, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **factory))
        else:
            self.register_parameter("weight_hr", None)
        for name in ("weight_ci", "weight_cf", "weight_co"):
            if peephole and not (coupled and name == "weight_ci"):
                setattr(self, name, nn.Parameter(torch.empty(hidden_size, **factory)))
            else:
                self.register_parameter(name, None)
        if layer_norm:
            self.ln_ih = nn.LayerNorm(G * hidden_size, **factory)
            self.ln_hh = nn.LayerNorm(G * hidden_size, **factory)
            self.ln_c = nn.LayerNorm(hidden_size, **factory)
        self._standard = self.is_standard()  # options are fixed at construction
        self.reset_parameters()

    def is_standard(self) -> bool:
        """True when the cell computes torch.nn.LSTM's step (a fused kernel may run it)."""
        return not (self.peephole or self.coupled or self.layer_norm) and (
            self.gate_activation,
            self.input_activation,
            self.output_activation,
        ) == ("sigmoid", "tanh", "tanh")

    def reset_parameters(self) -> None:
        H = self.hidden_size
        for k in range(self.num_gates):
            nn.init.xavier_uniform_(self.weight_ih[k * H : (k + 1) * H])
            nn.init.orthogonal_(self.weight_hh[k * H : (k + 1) * H])
        if self.bias_ih is not None:
            nn.init.zeros_(self.bias_ih)
            nn.init.zeros_(self.bias_hh)
            k = 0 if self.coupled else 1  # the forget gate's block
            with torch.no_grad():
                self.bias_ih[k * H : (k + 1) * H].fill_(self.forget_bias)
        if self.weight_hr is not None:
            nn.init.xavier_uniform_(self.weight_hr)
        self.reset_option_parameters()

    def reset_option_parameters(self) -> None:
        """The parameters that only the options add: peepholes zero (training starts
        from the plain LSTM), layer-norm gains 1 and shifts 0; no random draws.
        :class:`memnets.LSTM` draws the others the torch.nn way and calls this alone."""
        for w in (self.weight_ci, self.weight_cf, self.weight_co):
            if w is not None:
                nn.init.zeros_(w)
        if self.layer_norm:
            for ln in (self.ln_ih, self.ln_hh, self.ln_c):
                ln.reset_parameters()

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> LSTMState:
        return LSTMState(
            _zeros(self, batch_size, self.output_size, device, dtype),
            _zeros(self, batch_size, self.hidden_size, device, dtype),
        )

    def project_input(self, x: Tensor) -> Tensor:
        u = x @ self.weight_ih.t()  # (*, 4H)
        if self.layer_norm:
            u = self.ln_ih(u)
        if self.bias_ih is not None:
            u = u + (self.bias_ih + self.bias_hh)
        return u

    def recur(self, u_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        if self._standard:
            gates = torch.addmm(u_t, state.h, self.weight_hh.t())  # (N, 4H)
            h, c = lstm_pointwise(gates, state.c)  # the equations above, one autograd node
        else:
            h, c = self._recur_general(u_t, state)
        if self.weight_hr is not None:
            h = h @ self.weight_hr.t()  # (N, H_out)
        return h, LSTMState(h, c)

    def sequence_form(self) -> SequenceForm | None:
        """The standard step without a projection (:meth:`is_standard`); ``None``
        (autograd) for the other options."""
        if not self._standard or self.weight_hr is not None:
            return None
        return SequenceForm(self.weight_hh)  # the biases are in project_input

    def pointwise_forward(self, u_t, v_t, state, params):
        h, c, saved = lstm_step_forward(u_t + v_t, state.c)
        return h, LSTMState(h, c), saved

    def pointwise_backward(self, saved, dy, dstate, params):
        d_gates, dc_prev = lstm_step_backward(saved, dy + dstate.h, dstate.c)
        return d_gates, d_gates, (None, dc_prev), ()

    def _recur_general(self, u_t: Tensor, state: LSTMState) -> tuple[Tensor, Tensor]:
        """Every option; returns ``h_t`` before the projection, and ``c_t``."""
        c_prev = state.c  # (N, H)
        rec = state.h @ self.weight_hh.t()  # (N, G*H)
        if self.layer_norm:
            rec = self.ln_hh(rec)
        gates = u_t + rec
        if self.coupled:
            a_f, a_g, a_o = gates.chunk(3, dim=1)
        else:
            a_i, a_f, a_g, a_o = gates.chunk(4, dim=1)
        if self.weight_cf is not None:
            a_f = a_f + self.weight_cf * c_prev
        f = self._f(a_f)
        if self.coupled:
            i = 1.0 - f
        else:
            i = self._f(a_i if self.weight_ci is None else a_i + self.weight_ci * c_prev)
        c = f * c_prev + i * self._g(a_g)  # (N, H)
        o = self._f(a_o if self.weight_co is None else a_o + self.weight_co * c)
        h = o * self._h(self.ln_c(c) if self.layer_norm else c)
        return h, c

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        s += f", proj_size={self.proj_size}" if self.proj_size else ""
        for name in ("peephole", "coupled", "layer_norm"):
            if getattr(self, name):
                s += f", {name}=True"
        if self.forget_bias != 1.0:
            s += f", forget_bias={self.forget_bias}"
        for name, default in (
            ("gate_activation", "sigmoid"),
            ("input_activation", "tanh"),
            ("output_activation", "tanh"),
        ):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s
