r"""Synthetic memory tasks that need no data: adding, copy memory, associative
recall, selective copying.

Each example is generated from ``(data.seed, split, index)`` alone, so the
splits are fixed, the training order is reproducible and nothing is stored.

* **Adding** (Hochreiter & Schmidhuber, "Long short-term memory", 1997; protocol
  of Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of
  rectified linear units", 2015).  Input ``(T, 2)``: a number drawn from
  :math:`U[0, 1]` and a marker; exactly two markers are 1, one in each half of
  the sequence.  Target: the sum of the two marked numbers; loss MSE.  The
  constant predictor 1 has MSE :math:`\mathrm{Var}(a+b) = 2/12 \approx 0.167`.
* **Copy memory** (Arjovsky, Shah & Bengio, "Unitary evolution recurrent neural
  networks", 2016).  Symbols 1..8 (``copy_length`` of them), then ``T - 1``
  blanks (0), a delimiter (9) and ``copy_length`` blanks; the target is blanks
  and then the symbols again.  Loss: cross-entropy per step.  The memoryless
  predictor (blank, then uniform over the 8 symbols) has cross-entropy
  :math:`\frac{S \ln 8}{T + 2S}` with :math:`S` = ``copy_length``.
* **Associative recall** (after Ba, Hinton, Mnih, Leibo & Ionescu, "Using fast
  weights to attend to the recent past", 2016).  ``num_pairs`` pairs of a key
  (distinct letters a..z) and a value (digit), then ``??`` and one of the keys;
  the target is that key's value.  Chance: accuracy 1/10, cross-entropy
  :math:`\ln 10`.
* **Selective copying** (Gu & Dao, "Mamba: linear-time sequence modeling with
  selective state spaces", 2023; as used by Feng, Tung, Ahmed, Bengio &
  Hajimirsadeghi, "Were RNNs all we needed?", 2024).  Token ids: 0 is noise,
  1..V-2 are data symbols, V-1 is the marker (V = ``vocab_size``).  ``n_tokens``
  data symbols (uniform, with repetition) lie at distinct random positions,
  in order, among ``length`` steps of noise; then ``n_tokens`` markers.  The
  target is the data symbols in order, read out at the marker steps; loss
  cross-entropy over those steps.  Chance: per-token accuracy
  :math:`1/(V-2)`, exact match :math:`(V-2)^{-S}`, cross-entropy
  :math:`\ln(V-2)`.

The model (:class:`memnets.models.regressor.SequenceRegressor`) is the cell
named in ``model.cell`` (any registered one-layer cell) stacked
``model.num_layers`` deep with a linear read-out at the last step (adding,
recall) or at every step (copy, selective copying, which reads out the last
``n_tokens`` of them); selective copying embeds its token ids first.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.config import DataConfig, ModelConfig
from memnets.models.regressor import SequenceRegressor
from memnets.tasks import register_task
from memnets.tasks.base import StepOutput, Task, model_device, to_device

_SPLIT_CODE = {"train": 0, "dev": 1, "test": 2}
# Example i of a split is generated from seed (seed * 3 + split) * _SPLIT_STRIDE + i,
# so the splits' seeds are disjoint while no split is larger than the stride.
_SPLIT_STRIDE = 1_000_003
_SPLIT_SIZE = f"[1, {_SPLIT_STRIDE}]"  # the range of data.train_size, dev_size, test_size


# ---------------------------------------------------------------------- model


@dataclass
class MemoryModelConfig(ModelConfig):
    """``model`` section of the memory tasks.

    Args:
        init: ``default`` keeps the cell's own initialisation; ``identity``
            sets every square recurrent weight to the identity and its biases to
            zero (the IRNN of Le et al. 2015 for ``cell: elman`` with
            ``nonlinearity: relu``); ``chrono`` (LSTM only) draws the forget-gate
            biases as ``log(u)``, ``u ~ U[1, chrono_max - 1]``, and
            sets the input-gate biases to their negatives (Tallec & Ollivier, "Can
            recurrent neural networks warp time?", 2018), so that memory is kept
            over time scales up to ``chrono_max`` steps from the start.
        chrono_max: the longest time scale of the ``chrono`` initialisation.
    """

    hidden_size: int = 100
    init: str = "default"
    chrono_max: int = 100

    def validate(self) -> None:
        if self.init not in ("default", "identity", "chrono"):
            raise ValueError(f"init: expected 'default', 'identity' or 'chrono', got {self.init!r}")
        if self.chrono_max < 3:
            raise ValueError(f"chrono_max: expected at least 3, got {self.chrono_max}")


# ---------------------------------------------------------------------- tasks


@dataclass
class MemoryDataConfig(DataConfig):
    """``data`` section shared by the memory tasks.

    Args:
        T: sequence length (adding, recall: ignored) or delay (copy).
        train_size, dev_size, test_size: examples per split (Le et al. 2015 use
            100,000 training and 10,000 test sequences).
        seed: the seed the examples are generated from (independent of the
            trainer's seed, which orders them).
    """

    T: int = 100
    train_size: int = 100_000
    dev_size: int = 1_000
    test_size: int = 10_000
    seed: int = 1234

    RANGES: ClassVar[dict[str, str]] = {
        "T": ">= 1", "train_size": _SPLIT_SIZE, "dev_size": _SPLIT_SIZE,
        "test_size": _SPLIT_SIZE, "seed": ">= 0"}

    def validate(self) -> None:
        for name in ("T", "train_size", "dev_size", "test_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")


class _Generated(torch.utils.data.Dataset):
    """Example ``i`` of a split is ``make(torch.Generator seeded by (seed, split, i))``."""

    def __init__(self, size: int, seed: int, split: str, make) -> None:
        self.size, self.make = size, make
        self.base = (seed * 3 + _SPLIT_CODE[split]) * _SPLIT_STRIDE

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        if not 0 <= i < self.size:
            raise IndexError(f"expected an index in [0, {self.size}), got {i}")
        return self.make(torch.Generator().manual_seed(self.base + i))


class _MemoryTask(Task):
    DataConfig = MemoryDataConfig
    ModelConfig = MemoryModelConfig
    needs_data = False

    def dataset(self, split: str):
        c = self.config
        size = {"train": c.train_size, "dev": c.dev_size, "test": c.test_size}[split]
        return _Generated(size, c.seed, split, self.make_example)

    def make_example(self, g: torch.Generator):
        raise NotImplementedError

    def gradient_probe(self, model: nn.Module, batch) -> Tensor:
        x, y = to_device(batch, model_device(model))
        return model.hidden_gradients(x, lambda out: self.loss_of(out, y))


@register_task("adding")
class AddingTask(_MemoryTask):
    """The adding problem; metrics ``mse`` (main, lower is better) and ``baseline_mse``."""

    main_metric = "mse"
    predict_input = "a number of the sequence, in [0, 1]"

    def make_example(self, g):
        T = self.config.T
        values = torch.rand(T, generator=g)  # (T,)
        half = T // 2
        i = int(torch.randint(0, max(half, 1), (1,), generator=g))
        j = int(torch.randint(half, T, (1,), generator=g)) if T > 1 else 0
        marks = torch.zeros(T)
        marks[i] = 1.0
        marks[j] = 1.0
        x = torch.stack([values, marks], dim=1)  # (T, 2)
        return x, values[i] + values[j]  # i < T/2 <= j: always two numbers

    def build_model(self, config):
        return SequenceRegressor(2, 1, config, every_step=False)

    def loss_of(self, out, y):
        return F.mse_loss(out.squeeze(-1).float(), y)

    def step(self, model, batch, state=None):
        x, y = to_device(batch, model_device(model))  # (N, T, 2), (N,)
        pred = model(x).squeeze(-1).float()  # (N,)
        sq = (pred - y) ** 2
        base = (1.0 - y) ** 2  # the constant predictor 1 (the mean of the target)
        return StepOutput(loss=sq.mean(), size=len(y),
                          stats={"sq": sq.sum().detach(), "base_sq": base.sum(), "count": len(y)})

    def metrics(self, stats):
        n = max(stats["count"], 1.0)
        return {"mse": stats["sq"] / n, "baseline_mse": stats["base_sq"] / n}

    def baselines(self):
        return {"mse": 1.0 / 6.0}

    def add_predict_arguments(self, parser):
        parser.description = (
            "Sum the two marked numbers of each sequence. The numbers given as arguments "
            "are one sequence (memnets predict RUN_DIR 0.5 0.25 0.1 0.9 --marks 0,2); each "
            "non-blank line of a --file or, for '-', of standard input is another, its two "
            "marked numbers starred (0.5* 0.25 0.1* 0.9) or none starred and --marks. The "
            "model is loaded once and one result is printed per sequence, in order.")
        parser.add_argument("--marks",
                            help="the two marked positions, 0-based, distinct, comma-separated "
                                 "(e.g. 3,17), of the sequences that star none")

    def predict_inputs(self, ns):
        """The numbers given as arguments are one sequence; ``--file`` and ``-`` give one
        sequence per line."""
        values = [a for a in ns.inputs if a != "-"]
        rest = argparse.Namespace(**{**vars(ns), "inputs": [a for a in ns.inputs if a == "-"]})
        return ([("input", " ".join(values))] if values else []) + super().predict_inputs(rest)

    def parse_input(self, line, ns):
        tokens = line.split()
        starred = [i for i, t in enumerate(tokens) if t.endswith("*")]
        try:
            values = [float(t.removesuffix("*")) for t in tokens]
        except ValueError:
            raise ValueError(f"expected numbers separated by spaces, got {line!r}") from None
        if starred:
            marks, given = starred, " ".join(tokens[i] for i in starred)
            if len(marks) != 2:
                raise ValueError(f"expected two starred numbers, got {len(marks)}: {given}")
        elif ns.marks is None:
            raise ValueError("expected the two marked numbers: star them (0.5* 0.25 0.1* 0.9) "
                             "or give --marks I,J")
        else:
            given = ns.marks
            try:
                marks = [int(m) for m in ns.marks.split(",")]
            except ValueError:
                raise ValueError(f"--marks: expected two integers such as 3,17, got "
                                 f"{ns.marks!r}") from None
            if len(marks) != 2 or not all(0 <= m < len(values) for m in marks):
                raise ValueError(f"--marks: expected two positions in [0, {len(values)}), "
                                 f"got {ns.marks!r}")
            if marks[0] == marks[1]:
                raise ValueError(f"--marks: expected two different positions, got {given!r}")
        bad = [(i, v) for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            i, v = bad[0]
            raise ValueError(f"expected finite values, got {v} at position {i}")
        return values, marks

    def predict_example(self, model, example, ns):
        values, marks = example
        x = torch.zeros(1, len(values), 2)  # (1, T, 2): the number and its marker
        x[0, :, 0] = torch.tensor(values)
        x[0, marks, 1] = 1.0
        pred = float(model(x.to(model_device(model))).squeeze())
        return {"marks": marks, "prediction": pred,
                "true_sum": values[marks[0]] + values[marks[1]]}

    def format_prediction(self, result, ns):
        return f"prediction {result['prediction']:.4f}  (true sum {result['true_sum']:.4f})"


@register_task("copy")
class CopyTask(_MemoryTask):
    """Copy memory; metrics ``ce`` (main, nats per step), ``accuracy`` (all steps),
    ``copy_accuracy`` (the symbols to recall) and the memoryless baselines."""

    main_metric = "ce"

    @dataclass
    class DataConfig(MemoryDataConfig):
        copy_length: int = 10
        T: int = 100

    def make_example(self, g):
        T, S = self.config.T, self.config.copy_length
        symbols = torch.randint(1, 9, (S,), generator=g)
        seq = torch.zeros(T + 2 * S, dtype=torch.long)
        seq[:S] = symbols
        seq[S + T - 1] = 9  # the delimiter
        target = torch.zeros(T + 2 * S, dtype=torch.long)
        target[-S:] = symbols
        return F.one_hot(seq, 10).float(), target  # (L, 10), (L,)

    def build_model(self, config):
        return SequenceRegressor(10, 9, config, every_step=True)

    def loss_of(self, out, y):
        return F.cross_entropy(out.flatten(0, 1).float(), y.flatten())

    def step(self, model, batch, state=None):
        x, y = to_device(batch, model_device(model))  # (N, L, 10), (N, L)
        logits = model(x).float()  # (N, L, 9)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        pred = logits.argmax(-1)
        S = self.config.copy_length
        steps = y.numel()
        return StepOutput(
            loss=ce / steps, size=y.shape[0],
            stats={"ce": ce.detach(), "correct": (pred == y).sum(), "steps": steps,
                   "copy_correct": (pred[:, -S:] == y[:, -S:]).sum(),
                   "copy_steps": y[:, -S:].numel()},
        )

    def metrics(self, stats):
        L = self.config.T + 2 * self.config.copy_length
        S = self.config.copy_length
        return {
            "ce": stats["ce"] / stats["steps"],
            "accuracy": stats["correct"] / stats["steps"],
            "copy_accuracy": stats["copy_correct"] / stats["copy_steps"],
            "baseline_ce": S * math.log(8) / L,
            "baseline_accuracy": (L - S + S / 8) / L,
        }

    def baselines(self):
        m = self.metrics({"ce": 0, "steps": 1, "correct": 0, "copy_correct": 0, "copy_steps": 1})
        return {"ce": m["baseline_ce"], "accuracy": m["baseline_accuracy"]}


@register_task("recall")
class RecallTask(_MemoryTask):
    """Associative recall; metrics ``ce``, ``accuracy`` (main) and chance."""

    main_metric = "accuracy"
    higher_is_better = True
    KEYS, VALUES = 26, 10  # a..z, 0..9; the query marker "?" is symbol 36

    @dataclass
    class DataConfig(MemoryDataConfig):
        num_pairs: int = 8
        T: int = 0  # unused: the length is 2 * num_pairs + 3

        RANGES: ClassVar[dict[str, str]] = {"T": ">= 0"}

        def validate(self) -> None:
            if not 1 <= self.num_pairs <= 26:
                raise ValueError(f"num_pairs: expected 1..26, got {self.num_pairs}")

    def make_example(self, g):
        K = self.config.num_pairs
        keys = torch.randperm(self.KEYS, generator=g)[:K]
        values = torch.randint(0, self.VALUES, (K,), generator=g)
        q = int(torch.randint(0, K, (1,), generator=g))
        seq = torch.empty(2 * K + 3, dtype=torch.long)
        seq[0:2 * K:2] = keys
        seq[1:2 * K:2] = values + self.KEYS
        seq[2 * K:2 * K + 2] = 36
        seq[-1] = keys[q]
        return F.one_hot(seq, 37).float(), values[q]

    def build_model(self, config):
        return SequenceRegressor(37, self.VALUES, config, every_step=False)

    def loss_of(self, out, y):
        return F.cross_entropy(out.float(), y)

    def step(self, model, batch, state=None):
        x, y = to_device(batch, model_device(model))  # (N, L, 37), (N,)
        logits = model(x).float()  # (N, 10)
        ce = F.cross_entropy(logits, y, reduction="sum")
        return StepOutput(loss=ce / len(y), size=len(y), stats={
            "ce": ce.detach(), "correct": (logits.argmax(-1) == y).sum(), "count": len(y)})

    def metrics(self, stats):
        n = max(stats["count"], 1.0)
        return {"ce": stats["ce"] / n, "accuracy": stats["correct"] / n,
                "baseline_ce": math.log(self.VALUES), "baseline_accuracy": 1 / self.VALUES}

    def baselines(self):
        return {"ce": math.log(self.VALUES), "accuracy": 1 / self.VALUES}


@register_task("selective_copy")
class SelectiveCopyTask(_MemoryTask):
    r"""Selective copying (Gu & Dao 2023); metrics ``accuracy`` (main: per copied
    token, the number Gu & Dao and Feng et al. report), ``exact_match`` (all
    ``n_tokens`` of a sequence right), ``ce`` and the memoryless baselines.

    Example (``vocab_size`` V): ``x`` is ``(length + n_tokens,)`` token ids, 0 for
    noise, the data symbols (1..V-2) at ``n_tokens`` distinct random positions
    among the first ``length`` steps, then ``n_tokens`` markers (V-1); ``y`` is
    the ``(n_tokens,)`` data symbols in the order they appear.  The model reads all
    of ``x``; its outputs at the ``n_tokens`` marker steps are scored against ``y``
    (step ``length + k`` answers the ``k``-th symbol).  This is the layout of the
    generator published with S4 (Gu, Goel & Ré, "Efficiently modeling long
    sequences with structured state spaces", 2022) in its selective form: noise
    0, marker V-1, the answers at the marker steps; ``length`` counts the steps
    among which the data symbols lie.
    """

    main_metric = "accuracy"
    higher_is_better = True

    @dataclass
    class DataConfig(MemoryDataConfig):
        """``data`` section of selective copying.

        Args:
            length: steps among which the data symbols lie (noise elsewhere);
                the model reads ``length + n_tokens`` steps.
            n_tokens: data symbols to copy.
            vocab_size: token ids 0 (noise), 1..vocab_size-2 (data), vocab_size-1
                (marker); Gu & Dao's "16 possible tokens" is 16.
            T: unused (the memory tasks' common field).
        """

        length: int = 4096
        n_tokens: int = 16
        vocab_size: int = 16
        T: int = 0

        RANGES: ClassVar[dict[str, str]] = {
            "T": ">= 0", "length": ">= 1", "n_tokens": ">= 1", "vocab_size": ">= 3"}

        def validate(self) -> None:
            if self.n_tokens > self.length:
                raise ValueError(f"n_tokens: expected at most length ({self.length}) data "
                                 f"symbols, got {self.n_tokens}")

    @dataclass
    class ModelConfig(MemoryModelConfig):
        """``model`` section of selective copying: :class:`MemoryModelConfig`'s
        fields and the size of the token embedding.

        Args:
            embedding_size: size of the token embedding read by the first layer
                (``None``: ``hidden_size``, Gu & Dao's model dimension D).
        """

        embedding_size: int | None = None

        RANGES: ClassVar[dict[str, str]] = {"embedding_size": ">= 1"}

    def make_example(self, g):
        c = self.config
        L, S, V = c.length, c.n_tokens, c.vocab_size
        symbols = torch.randint(1, V - 1, (S,), generator=g)  # (S,) data symbols, repeats allowed
        where = torch.randperm(L, generator=g)[:S].sort().values  # (S,) distinct positions
        x = torch.zeros(L + S, dtype=torch.long)
        x[where] = symbols
        x[L:] = V - 1  # the markers: answer here
        return x, symbols  # (L + S,), (S,)

    def build_model(self, config):
        V = self.config.vocab_size
        return SequenceRegressor(config.embedding_size or config.hidden_size, V, config,
                                 every_step=True, vocab_size=V)

    def loss_of(self, out, y):
        S = self.config.n_tokens
        return F.cross_entropy(out[:, -S:].flatten(0, 1).float(), y.flatten())

    def step(self, model, batch, state=None):
        x, y = to_device(batch, model_device(model))  # (N, L + S), (N, S)
        S = self.config.n_tokens
        logits = model(x)[:, -S:].float()  # (N, S, V): the outputs at the marker steps
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        hit = logits.argmax(-1) == y  # (N, S)
        return StepOutput(loss=ce / y.numel(), size=y.shape[0], stats={
            "ce": ce.detach(), "correct": hit.sum(), "tokens": y.numel(),
            "exact": hit.all(-1).sum(), "count": y.shape[0]})

    def metrics(self, stats):
        tokens, n = max(stats["tokens"], 1.0), max(stats["count"], 1.0)
        return {"accuracy": stats["correct"] / tokens, "exact_match": stats["exact"] / n,
                "ce": stats["ce"] / tokens, **{f"baseline_{k}": v
                                               for k, v in self.baselines().items()}}

    def baselines(self):
        """The memoryless predictor: uniform over the V-2 data symbols at every answer."""
        data = self.config.vocab_size - 2
        return {"accuracy": 1 / data, "exact_match": data ** -float(self.config.n_tokens),
                "ce": math.log(data)}
