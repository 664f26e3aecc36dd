"""``SequenceRegressor``: recurrent layers of any registered cell and a linear
read-out, the model of the synthetic memory tasks (adding, copy, recall,
selective copying); and
``chrono_init``, the chrono initialisation of an LSTM cell's gate biases.

This module may import torch, :mod:`memnets.config` (for the type of the model
section), :mod:`memnets.cells` and :mod:`memnets.layers`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memnets.config import ModelConfig
from memnets.errors import ConfigError
from memnets.layers.encoder import build_encoder
from memnets.layers.recurrent import Recurrent
from memnets.layers.stacked import Stacked


class SequenceRegressor(nn.Module):
    """Recurrent layers and a linear read-out.

    ``config`` is a model section: ``cell``, ``hidden_size``, ``num_layers``,
    ``dropout`` (between layers) and ``cell_options``, and where it has them
    ``init`` and ``chrono_max`` (the memory tasks' ``MemoryModelConfig``).
    The layers are :func:`memnets.layers.build_encoder`'s generic ones
    (``torch_compatible=False``) for every cell, so that ``init: default`` is
    each cell's own initialisation and the others start from it.

    With ``vocab_size`` the input is token ids, embedded by an
    ``nn.Embedding(vocab_size, input_size)`` before the layers (selective
    copying); without it, the input is already vectors (one-hot symbols, numbers).

    Shapes: input ``(N, L, H_in)``, or ``(N, L)`` token ids with ``vocab_size``;
    output ``(N, out)`` (``every_step=False``) or ``(N, L, out)``.
    """

    @staticmethod
    def upgrade_state_dict(weights: dict) -> dict:
        """Checkpoints written before the encoder builder named the layers
        ``layers.K.cell.*``; they are ``encoder.layers.K.cell.*`` now."""
        return {("encoder." + k if k.startswith("layers.") else k): v
                for k, v in weights.items()}

    def __init__(self, input_size: int, output_size: int, config: ModelConfig,
                 every_step: bool, *, vocab_size: int | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, input_size) if vocab_size else None
        self.encoder = build_encoder(config.cell, input_size, config.hidden_size,
                                     num_layers=config.num_layers, dropout=config.dropout,
                                     cell_options=config.cell_options, torch_compatible=False,
                                     block=config.block, block_options=config.block_options)
        self.head = nn.Linear(self.encoder.output_size, output_size)
        self.every_step = every_step
        if getattr(config, "init", "default") == "chrono":
            for cell in self.encoder.cells():
                chrono_init(cell, config.chrono_max)
        if getattr(config, "init", "default") == "identity":
            for cell in self.encoder.cells():
                w = getattr(cell, "weight_hh", None)
                if w is None or w.shape[0] != w.shape[1]:
                    raise ValueError(
                        f"init: identity needs a square weight_hh, cell {config.cell!r} has "
                        f"{None if w is None else tuple(w.shape)}"
                    )
                with torch.no_grad():
                    w.copy_(torch.eye(w.shape[0]))
                    for name in ("bias_hh", "bias_ih"):
                        b = getattr(cell, name, None)
                        if b is not None:
                            b.zero_()

    def forward(self, x: Tensor) -> Tensor:
        if self.embedding is not None:
            x = self.embedding(x)  # (N, L) ids -> (N, L, H_in)
        h, _ = self.encoder(x)  # (N, L, H)
        if not self.every_step:
            h = h[:, -1]  # (N, H)
        return self.head(h)

    def hidden_gradients(self, x: Tensor, loss_fn) -> Tensor:
        r"""``(L,)``: :math:`\lVert \partial \mathcal{L} / \partial h_t \rVert` of the top
        layer's state, averaged over the batch, with the loss ``loss_fn(output)``.

        The layers below the top run as in :meth:`forward` (without dropout); the
        top cell is stepped here, so that each step's state keeps its gradient.
        Defined for plain stacks only: a residual block's norms, projections and
        skips are not the cells alone, so with ``model.block`` it raises."""
        if not isinstance(self.encoder, Stacked):
            raise ConfigError("gradient probes step the cells of a plain stack; expected "
                              f"model.block null, got {type(self.encoder).__name__}")
        *below, cell = self.encoder.cells()
        h = x if self.embedding is None else self.embedding(x)  # (N, L, H_in)
        for c in below:
            h, _ = Recurrent(c, batch_first=True)(h)  # (N, L, H)
        u = cell.project_input(h)  # (N, L, U)
        state = cell.init_state(x.shape[0], device=h.device, dtype=h.dtype)
        states, ys = [], []
        for t in range(u.shape[1]):
            y, state = cell.recur(u[:, t], state)
            state[0].retain_grad()
            states.append(state[0])
            ys.append(y)
        out = torch.stack(ys, 1)
        out = self.head(out if self.every_step else out[:, -1])
        loss_fn(out).backward()
        return torch.stack([s.grad.norm(dim=-1).mean() for s in states])


def chrono_init(cell: nn.Module, t_max: int) -> None:
    """Chrono initialisation of an LSTM cell's gate biases (blocks i, f, g, o)."""
    b_ih, b_hh = getattr(cell, "bias_ih", None), getattr(cell, "bias_hh", None)
    if b_ih is None or b_ih.shape[0] != 4 * cell.hidden_size:
        raise ValueError(f"init: chrono needs an LSTM cell with biases, got "
                         f"{type(cell).__name__}")
    H = cell.hidden_size
    with torch.no_grad():
        forget = torch.log(torch.empty(H).uniform_(1.0, t_max - 1.0))
        b_ih[:H] = -forget
        b_ih[H:2 * H] = forget
        if b_hh is not None:
            b_hh[:2 * H] = 0.0
