"""The :class:`Task` interface: what an application implements to get training,
evaluation, prediction and checkpointing from the engine.

A task knows its data (splits, batches), builds its model from the recipe's
``model`` section, computes the loss and additive statistics of a batch, and
turns summed statistics into metrics.  The trainer (:mod:`memnets.train`) does
the rest: optimisation, schedules, clipping, early stopping, checkpoints,
logging, DDP.  See ``docs/engine.md`` for a walk-through.

This module imports torch, :mod:`memnets.config`, :mod:`memnets.errors`, the
batching and text readers of :mod:`memnets.data`, and the base classes of
:mod:`memnets.layers` (for the gradient probe).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.batching import BucketedBatches, ShardedBatches  # noqa: F401 (re-exported)
from memnets.data.text import read_lines
from memnets.errors import ConfigError, DataError
from memnets.layers.sequence import SequenceLayer
from memnets.layers.torch_compat import GRU, LSTM, RNN

SPLITS = ("train", "dev", "test")


@dataclass
class StepOutput:
    """What :meth:`Task.step` returns for one batch.

    Attributes:
        loss: scalar tensor to minimise (the mean over the batch, usually); the
            trainer calls ``loss.backward()`` on it.
        stats: additive statistics of the batch, summed by the trainer over
            batches (and over processes under DDP) and turned into metrics by
            :meth:`Task.metrics`: e.g. ``{"loss": sum_of_losses, "count": n,
            "correct": k}``.  Values are Python numbers or 0-dim tensors.
        size: examples (or tokens) in the batch, for the throughput display.
        state: the state to carry into the next batch in stateful mode
            (:attr:`Task.stateful`); the trainer detaches it.  ``None`` otherwise.
    """

    loss: Tensor
    stats: dict[str, float | Tensor]
    size: int
    state: Any = None


class Task:
    """Base class of all tasks.  Subclass it and register it with :func:`register_task`.

    A subclass sets these class attributes.

    Attributes:
        name: the name recipes use (``task: adding``).
        DataConfig: a dataclass subclassing :class:`memnets.config.DataConfig`
            that declares the task's ``data`` fields (checked strictly).
        ModelConfig: likewise for the ``model`` section.
        main_metric: the key of :meth:`metrics` used for early stopping, the
            plateau schedule and model selection.
        higher_is_better: whether a larger ``main_metric`` is better.
        size_unit: ``"ex"`` (examples) or ``"tok"`` (tokens), for the progress bar.
        stateful: truncated BPTT: the trainer passes each batch's returned
            ``state`` (detached) to the next training batch; it resets to ``None``
            at the start of each epoch and of each evaluation.  The task's
            :meth:`batches` must then yield consecutive chunks of the streams.
        predict_input: what one input of ``memnets predict`` holds, for ``--help``
            (``"a sentence"``); a task that predicts implements :meth:`parse_input`
            and :meth:`predict_example` (or :meth:`predict_batch`), and
            :meth:`format_prediction` for the text form.
        one_input_options: ``memnets predict`` options that take a single input
            (``("png",)``: one picture is written).

    Life cycle (the engine calls, in order):
        1. ``task = Cls(data_config, data_dir)`` — cheap, reads nothing.
        2. a fresh run calls :meth:`setup` (read the training data, build
           vocabularies); a resumed run, ``eval``, ``predict`` and ``generate``
           call :meth:`load_state_dict` with what :meth:`state_dict` returned.
        3. :meth:`build_model` with the recipe's ``model`` section.
        4. :meth:`batches` / :meth:`step` / :meth:`evaluate` / :meth:`predict`.

    Args:
        data: the recipe's ``data`` section (an instance of ``self.DataConfig``).
        data_dir: the resolved data root (:func:`memnets.data.data_root`), or
            ``None`` for tasks that need no files.
    """

    name: ClassVar[str] = ""
    DataConfig: ClassVar[type] = DataConfig
    ModelConfig: ClassVar[type] = ModelConfig
    main_metric: ClassVar[str] = "loss"
    higher_is_better: ClassVar[bool] = False
    size_unit: ClassVar[str] = "ex"
    stateful: ClassVar[bool] = False
    needs_data: ClassVar[bool] = True
    predict_input: ClassVar[str] = "an input"
    one_input_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, data: DataConfig, data_dir: Path | None = None) -> None:
        self.config = data
        self.data_dir = Path(data_dir) if data_dir is not None else None

    # ------------------------------------------------------------------ state

    def setup(self) -> None:
        """Prepare a fresh run: read what the model's shape depends on (vocabularies).

        Raise :class:`memnets.data.DataError` with a clear message when files are missing.
        """

    def state_dict(self) -> dict:
        """JSON-serialisable state needed to rebuild the task without data (vocabularies)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (called instead of :meth:`setup`)."""

    def train_state(self, model: nn.Module) -> dict:
        """JSON-serialisable state that changes *during* training outside the weights
        (e.g. a phase flag such as linear start); saved in every checkpoint."""
        return {}

    def load_train_state(self, model: nn.Module, state: dict) -> None:
        """Restore :meth:`train_state` when a run resumes (after the weights are loaded)."""

    def observe_dev(self, model: nn.Module, metrics: dict[str, float]) -> bool:
        """Called by the trainer after each dev evaluation *during training*, before
        the checkpoint is written: the place for phase changes that follow the dev
        metrics (bAbI's linear start).  Return True when the model now computes
        another function; the trainer then evaluates the dev split again, so that a
        checkpoint's metrics are always those of the weights it holds.
        :meth:`evaluate` itself never changes the model or the task."""
        return False

    def check_splits(self, splits: tuple[str, ...]) -> None:
        """Raise :class:`memnets.data.DataError` unless every split in ``splits`` has
        data for at least one batch; the trainer calls it before the first step.

        The default counts batches (``data.batch_size`` for train,
        ``data.eval_batch_size`` for the others); a task whose readers would fetch
        or build much to count overrides it with a cheaper check of its files.
        """
        for split in splits:
            bs = self.config.batch_size if split == "train" else (
                self.config.eval_batch_size or self.config.batch_size)
            try:
                n = self.num_batches(split, batch_size=bs)
            except DataError:
                raise
            except ValueError as e:  # e.g. too few tokens to cut into bs streams
                raise DataError(f"task {self.name!r}: the {split} split is too small for a "
                                f"batch of {bs} ({e})") from None
            if n < 1:
                raise DataError(f"task {self.name!r}: the {split} split has no data for a "
                                f"batch of {bs}")

    # ------------------------------------------------------------------ data

    def splits(self) -> tuple[str, ...]:
        """The splits this task has, among ``train``, ``dev``, ``test``."""
        return SPLITS

    def dataset(self, split: str):
        """A map-style dataset (``len`` and ``[i]``) of the split's examples.

        Used by the default :meth:`batches`; override either this (plus
        :meth:`collate`) or :meth:`batches` itself.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement dataset() or batches()")

    def collate(self, examples: list) -> Any:
        """Turn a list of examples into a batch (default: ``torch.utils.data.default_collate``)."""
        return torch.utils.data.default_collate(examples)

    def batches(
        self,
        split: str,
        *,
        batch_size: int,
        epoch: int = 0,
        seed: int = 0,
        shuffle: bool = False,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        num_workers: int = 0,
    ) -> Iterator[Any]:
        """Yield this process's batches of ``split``.

        ``batch_size`` is the global batch: under DDP (``world_size`` > 1) each
        process yields its share of every global batch.  The order depends only
        on ``(seed, epoch)``, and the first ``start`` global batches are skipped,
        so a resumed run sees exactly the batches it would have seen.  The
        default shards :meth:`dataset` with
        :class:`~memnets.data.batching.ShardedBatches`, or with ``data.bucket`` by
        length with :class:`~memnets.data.batching.BucketedBatches`.
        """
        ds = self.dataset(split)
        if self.uses_buckets():
            sampler = BucketedBatches(
                self.lengths(split), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                rank=rank, world_size=world_size, start=start,
            )
        else:
            sampler = ShardedBatches(
                len(ds), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                rank=rank, world_size=world_size, start=start,
            )
        # The loader's own generator (for worker seeds): without one, starting the
        # loader draws from the global RNG, which is the dropout stream that a
        # resumed run restores, and would shift it.
        loader_rng = torch.Generator().manual_seed(seed + epoch)
        yield from torch.utils.data.DataLoader(
            ds, batch_sampler=sampler, collate_fn=self.collate, num_workers=num_workers,
            generator=loader_rng,
        )

    def num_batches(self, split: str, *, batch_size: int) -> int:
        """Global batches per pass over ``split`` (for progress bars and schedules)."""
        if self.uses_buckets():
            return len(BucketedBatches(self.lengths(split), batch_size))
        n = len(self.dataset(split))
        return (n + batch_size - 1) // batch_size

    def lengths(self, split: str) -> list[int] | None:
        """Optional: each example's length (tokens), for ``data.bucket``: batches of
        similar lengths (:class:`~memnets.data.batching.BucketedBatches`)."""
        return None

    def uses_buckets(self) -> bool:
        """Whether batches go by length (``data.bucket``); a configuration error for a
        task that cannot tell its examples' lengths."""
        if not getattr(self.config, "bucket", False):
            return False
        if type(self).lengths is Task.lengths:
            raise ConfigError(f"data.bucket: task {self.name!r} cannot batch by length (it "
                              f"does not define lengths()); expected data.bucket: false")
        return True

    # ------------------------------------------------------------------ model

    def build_model(self, config: ModelConfig) -> nn.Module:
        """Build the model from the recipe's ``model`` section (an instance of
        ``self.ModelConfig``).  Use :func:`memnets.make_cell` with ``config.cell`` and
        ``config.cell_options`` so that any registered cell can be swapped in."""
        raise NotImplementedError

    @classmethod
    def model_cell(cls, config: ModelConfig) -> str | None:
        """The registered cell that the model of ``config`` runs (``config.cell``), or
        ``None`` for a model without one (bAbI's MemN2N), whose ``model.cell`` changes
        nothing: the train header then names no cell, ``results.json`` records
        ``cell: null``, and ``memnets compare`` / ``sweep --models`` refuse the recipe."""
        return config.cell

    def step(self, model: nn.Module, batch: Any, state: Any = None) -> StepOutput:
        """Loss and additive statistics of one batch.

        Called under ``torch.no_grad()`` and ``model.eval()`` during evaluation;
        ``model.training`` tells which.  ``state`` is ``None`` unless the task is
        stateful.  Move the batch to the model's device here (see
        :func:`to_device`).
        """
        raise NotImplementedError

    def metrics(self, stats: dict[str, float]) -> dict[str, float]:
        """Metrics from statistics summed over a split (default: mean ``loss``)."""
        return {"loss": stats["loss"] / max(stats.get("count", 1.0), 1e-12)}

    def baselines(self) -> dict[str, float]:
        """Metrics of trivial predictors, for comparison in logs and tables (optional)."""
        return {}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, split: str, *, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> dict[str, float]:
        """Metrics of a whole split.  Each process evaluates its shard; under DDP
        the statistics are summed across processes before :meth:`metrics`."""
        was_training = model.training
        model.eval()
        totals: dict[str, float] = {}
        state = None
        try:
            for batch in self.batches(split, batch_size=batch_size, rank=rank,
                                      world_size=world_size):
                out = self.step(model, batch, state)
                if self.stateful:
                    state = detach_state(out.state)
                add_stats(totals, out.stats)
        finally:
            model.train(was_training)
        totals = all_reduce_stats(totals)
        return self.metrics(totals)

    # ------------------------------------------------------------------ use
    #
    # ``memnets predict RUN_DIR ARGS...``: the engine reads the inputs (each INPUT
    # argument, each line of a --file, or of standard input for ``-``), and the
    # task says how one input line becomes an example (parse_input) and what the
    # model makes of a batch of them (predict_batch); the engine prints one
    # result per input, as text (format_prediction) or as JSON lines (--json).

    def predict_parser(self) -> argparse.ArgumentParser:
        """The argparse parser of ``memnets predict RUN_DIR ARGS...``: the inputs
        (``INPUT...``, ``--file PATH``, ``-`` for standard input), ``--json``, and
        the task's own options (:meth:`add_predict_arguments`)."""
        parser = argparse.ArgumentParser(
            prog=f"memnets predict RUN_DIR  (task {self.name})",
            description=f"Predict on each input ({self.predict_input}). Every INPUT "
                        f"argument is one input, and so is every non-blank line of a --file "
                        f"or, for '-', of standard input; the model is loaded once and one "
                        f"result is printed per input, in order.")
        parser.add_argument("inputs", nargs="*", metavar="INPUT",
                            help=f"{self.predict_input}; '-' reads standard input, one input "
                                 f"per line")
        parser.add_argument("--file", action="append", default=[], metavar="PATH",
                            help="read inputs from PATH, one per line (repeatable)")
        parser.add_argument("--json", action="store_true",
                            help="print one JSON object per input (JSON lines) instead of text")
        self.add_predict_arguments(parser)
        return parser

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Optional: the task's own options of ``memnets predict`` (``--explain``, ...)."""

    def predict_inputs(self, ns: argparse.Namespace) -> list[tuple[str, str]]:
        """The inputs of a parsed ``memnets predict`` command as ``(where, line)``
        pairs, ``where`` naming the input in messages (``input 2``, ``FILE:7``,
        ``stdin:3``).  Blank lines of files and standard input are skipped."""
        out: list[tuple[str, str]] = []
        args = list(ns.inputs)
        for k, text in enumerate(args, 1):
            if text == "-":
                lines = sys.stdin.read().split("\n")
                out += [(f"stdin:{i}", s) for i, s in enumerate(lines, 1) if s.strip()]
            else:
                out.append((f"input {k}" if len(args) > 1 else "input", text))
        for path in ns.file:
            lines = read_lines(path, "a file of inputs, one per line")
            out += [(f"{path}:{i}", s) for i, s in enumerate(lines, 1) if s.strip()]
        return out

    def parse_input(self, line: str, ns: argparse.Namespace) -> Any:
        """One input line -> one example for :meth:`predict_batch`; raise
        ``ValueError`` saying what was expected for a line the task cannot read."""
        return line

    def predict_batch(self, model: nn.Module, examples: list, ns: argparse.Namespace
                      ) -> list[dict]:
        """One JSON-serialisable result per example (the default runs
        :meth:`predict_example` on each); a task whose model batches easily
        overrides this."""
        return [self.predict_example(model, e, ns) for e in examples]

    def predict_example(self, model: nn.Module, example: Any, ns: argparse.Namespace) -> dict:
        """The result of one example (a JSON-serialisable dict)."""
        raise NotImplementedError(f"task {self.name!r} does not implement predict")

    def format_prediction(self, result: dict, ns: argparse.Namespace) -> str:
        """The text printed for one result (default: ``key: value`` lines)."""
        return "\n".join(f"{k}: {v}" for k, v in result.items() if k != "input")

    def predict_results(self, model: nn.Module, args: list[str]) -> tuple[list[dict],
                                                                           argparse.Namespace]:
        """Parse ``args``, read every input, run the model once per batch of
        ``data.eval_batch_size`` (or ``batch_size``) inputs; the results in input
        order, each with its ``input`` line first."""
        if (type(self).predict_example is Task.predict_example
                and type(self).predict_batch is Task.predict_batch):
            raise NotImplementedError(f"task {self.name!r} does not implement predict")
        ns = self.predict_parser().parse_args(args)
        inputs = self.predict_inputs(ns)
        if not inputs:
            raise ValueError("expected an input: INPUT..., --file PATH, or - to read "
                             "standard input")
        for option in self.one_input_options:
            if getattr(ns, option, None) and len(inputs) > 1:
                raise ValueError(f"--{option}: expected a single input, got {len(inputs)}")
        examples = []
        for where, line in inputs:
            try:
                examples.append(self.parse_input(line, ns))
            except ValueError as e:
                raise ValueError(str(e) if where == "input" else f"{where}: {e}") from None
        size = max(1, self.config.eval_batch_size or self.config.batch_size)
        model.eval()
        results: list[dict] = []
        with torch.no_grad():
            for i in range(0, len(examples), size):
                results += self.predict_batch(model, examples[i:i + size], ns)
        return [{"input": line, **r} for (_, line), r in zip(inputs, results)], ns

    def predict(self, model: nn.Module, args: list[str]) -> str:
        """``memnets predict RUN_DIR ARGS...``: the text to print, one result per
        input (results of several lines are separated by a blank line), or with
        ``--json`` one JSON object per line."""
        results, ns = self.predict_results(model, args)
        if ns.json:
            return "\n".join(json.dumps(json_safe(r)) for r in results)
        texts = [self.format_prediction(r, ns) for r in results]
        return ("\n\n" if any("\n" in t for t in texts) else "\n").join(texts)

    def build_ensemble(self, models: list[nn.Module]) -> nn.Module:
        """Optional: one model that combines ``models`` (trained runs of this task with
        the same ``task.json``), used by ``memnets ensemble`` and by loading an
        ensemble directory; :meth:`step`, :meth:`evaluate` and :meth:`predict` must
        accept it as they accept a member."""
        raise NotImplementedError(f"task {self.name!r} does not implement build_ensemble")

    def generate(self, model: nn.Module, args: list[str]) -> str:
        """Optional: ``memnets generate RUN_DIR ARGS...`` (language models); returns text."""
        raise NotImplementedError(f"task {self.name!r} does not implement generate")

    def gradient_probe(self, model: nn.Module, batch: Any) -> Tensor | None:
        """Optional: for ``memnets plot-gradients``: return ``(L,)`` norms
        ``‖∂L/∂h_t‖`` of the loss with respect to the hidden state at each step.
        A task that returns ``None`` (the default) is probed by
        :func:`input_gradient_norms` instead."""
        return None


# ---------------------------------------------------------------------- helpers


def input_gradient_norms(task: Task, model: nn.Module, batch: Any) -> Tensor:
    r"""``(L,)``: :math:`\lVert \partial \mathcal{L} / \partial x_t \rVert`, the
    gradient of the batch's loss (:meth:`Task.step`) with respect to the input of
    the model's outermost recurrent layers at each step, averaged over the batch
    (a padded step counts as 0).

    The probe of ``memnets plot-gradients`` for every task with a recurrent
    encoder: what reaches step ``t`` is everything the loss sends back through
    the steps after it, so the curve shows vanishing (or exploding) gradients
    for any cell, fused or generic.  Only the first call of the layers in the
    forward pass is probed (a pair model's first sentence).

    Raises:
        ConfigError: the model has no recurrent layers (MemN2N), or they read a
            PackedSequence.
    """
    kinds = (SequenceLayer, LSTM, GRU, RNN, nn.RNNBase)
    encoder = next((m for m in model.modules() if isinstance(m, kinds)), None)
    if encoder is None:
        raise ConfigError(f"expected a model with recurrent layers for a gradient probe, "
                          f"got {type(model).__name__} without any")
    seen: list[Tensor] = []

    def capture(module, args, kwargs):
        if seen:
            return None
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, Tensor):
            raise ConfigError(f"gradient probes need padded tensor input to "
                              f"{type(module).__name__}, got {type(x).__name__}")
        x = x.detach().requires_grad_(True)
        seen.append(x)
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "input": x}

    handle = encoder.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.enable_grad():
            task.step(model, batch).loss.backward()
    finally:
        handle.remove()
    g = seen[0].grad
    if g is None:
        raise ConfigError("the loss does not depend on the recurrent layers' input")
    if g.dim() == 2:  # unbatched (L, H)
        return g.norm(dim=-1)
    if not getattr(encoder, "batch_first", False):
        g = g.transpose(0, 1)
    return g.norm(dim=-1).mean(0)  # (N, L, H) -> (L,)


def to_device(batch, device):
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def detach_state(state):
    """Detach every tensor of a (nested) state: truncated BPTT's cut."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float written as a string (``"nan"``, ``"inf"``),
    so that the JSON written is valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without any)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def add_stats(totals: dict[str, float], stats: dict) -> None:
    """``totals += stats`` key by key (tensors become Python floats)."""
    for k, v in stats.items():
        totals[k] = totals.get(k, 0.0) + (float(v.detach()) if isinstance(v, Tensor) else float(v))


def all_reduce_stats(totals: dict[str, float]) -> dict[str, float]:
    """Sum statistics over processes (no-op without ``torch.distributed``)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(totals)
    keys = [None]
    if dist.get_rank() == 0:
        keys = [sorted(totals)]
    dist.broadcast_object_list(keys, src=0)
    backend_cuda = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if backend_cuda else "cpu"
    values = torch.tensor([totals.get(k, 0.0) for k in keys[0]], dtype=torch.float64,
                          device=device)
    dist.all_reduce(values)
    return dict(zip(keys[0], values.tolist()))
