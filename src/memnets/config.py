"""Recipes: YAML files loaded into one dataclass per component, strictly checked.

A recipe is a small YAML file with the sections below; every section is a
dataclass whose fields are the only keys allowed in it::

    task: adding              # a registered task (memnets.tasks; see --task-module)
    extends: adding           # optional: start from another recipe and override it
    info:    {description: ..., dataset: ..., target: ...}   # shown by `memnets recipes`
    data:    {batch_size: 50, T: 100}        # the task's DataConfig (subclass of DataConfig)
    model:   {cell: lstm, hidden_size: 128}  # the task's ModelConfig (subclass of ModelConfig)
    optimizer: {name: adam, lr: 1.0e-3, grad_clip: 1.0}
    schedule:  {name: cosine, warmup_steps: 100}
    trainer:   {max_steps: 2000, eval_every: 200, seed: 0}

The ``data`` and ``model`` sections carry task-specific fields: a task declares
its own dataclasses for them (subclasses of :class:`DataConfig` and
:class:`ModelConfig`), so they are checked as strictly as the rest.  An unknown
key raises :class:`ConfigError` naming the key and the valid ones; a value of the
wrong type raises :class:`ConfigError` naming the field and the expected type.

Overrides use dotted paths: ``--set model.hidden_size=256`` (the value is read
as YAML: ``256``, ``1.0e-3``, ``true``, ``[0.9, 0.98]``, ``null``).

This module is a leaf: it imports only the standard library, PyYAML and
:mod:`memnets.errors`.  It knows no task: a recipe becomes a checked
:class:`Config` in :func:`memnets.tasks.recipes.from_dict` (and
:func:`~memnets.tasks.recipes.load_config`), which find the task's ``data`` and
``model`` classes in the task registry.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from memnets.errors import ConfigError, shorten  # ConfigError is re-exported here

# --------------------------------------------------------------------------- sections


@dataclass
class InfoConfig:
    """What ``memnets recipes`` shows: free text, not used by training."""

    description: str = ""
    dataset: str = "none"  # the dataset the recipe needs (a folder of the data root)
    target: str = ""  # the published number the recipe aims at, with its source


@dataclass
class DataConfig:
    """Fields every task's data section has; a task subclasses it to add its own.

    Args:
        dir: the data root; ``None`` uses :func:`memnets.data.data_root`.
        batch_size: the *global* batch size (split across processes under DDP).
        eval_batch_size: batch size for evaluation; ``None`` = ``batch_size``.
        num_workers: DataLoader worker processes.
        bucket: batch examples of similar lengths together (less padding), for
            tasks that tell their examples' lengths (``Task.lengths``).
    """

    dir: str | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    bucket: bool = False

    RANGES: ClassVar[dict[str, str]] = {
        "batch_size": ">= 1", "eval_batch_size": ">= 1", "num_workers": ">= 0"}


@dataclass
class ModelConfig:
    """Fields every task's model section has; a task subclasses it to add its own.

    Args:
        cell: a name known to :func:`memnets.make_cell` (``lstm``, ``gru``, ``elman``, ...).
        hidden_size: hidden units per layer.
        num_layers: stacked recurrent layers.
        dropout: dropout between layers / on non-recurrent connections (task-defined).
        cell_options: extra keyword arguments for the cell's constructor
            (e.g. ``{nonlinearity: relu}`` for ``elman``).
        block: ``null`` (plain stacked layers) or ``residual``, ``xlstm_pre``,
            ``xlstm_post``: ``num_layers`` residual blocks of width
            ``hidden_size`` around the cell (:mod:`memnets.layers.blocks`),
            for the models built with :func:`memnets.layers.build_encoder`.
        block_options: the blocks' options (e.g. ``{norm: rms, mlp_ratio: 2}``
            for ``residual``, ``{num_heads: 4}`` for the xLSTM blocks;
            ``final_norm: false`` drops the norm after the last block); the
            names are checked when the recipe is read, the values when the
            model is built.
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    cell_options: dict[str, Any] = field(default_factory=dict)
    # the names are memnets.layers.blocks.BLOCK_NAMES (a leaf cannot import it; a test checks)
    block: Literal["residual", "xlstm_pre", "xlstm_post"] | None = None
    block_options: dict[str, Any] = field(default_factory=dict)

    RANGES: ClassVar[dict[str, str]] = {
        "hidden_size": ">= 1", "num_layers": ">= 1", "dropout": "[0, 1)"}


@dataclass
class OptimizerConfig:
    """The optimizer and gradient clipping.

    ``sgd`` uses ``momentum`` and ``nesterov``; ``rmsprop`` uses ``alpha``,
    ``momentum`` and ``eps``; ``adam``/``adamw`` use ``betas`` and ``eps``.
    ``grad_clip`` is the maximum global gradient norm (``None``: no clipping) of
    the dense gradients.  ``sparse_embedding_lr`` (``None``: off) gives every
    embedding table sparse gradients, updated by SparseAdam at this rate (the
    schedule scales it as it scales ``lr``; no weight decay, not clipped).
    """

    name: Literal["sgd", "rmsprop", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    alpha: float = 0.99
    grad_clip: float | None = None
    sparse_embedding_lr: float | None = None

    RANGES: ClassVar[dict[str, str]] = {
        "lr": ">= 0", "momentum": "[0, 1)", "weight_decay": ">= 0", "betas": "[0, 1)",
        "eps": "> 0", "alpha": "[0, 1)", "grad_clip": "> 0", "sparse_embedding_lr": "> 0"}

    def validate(self) -> None:
        if len(self.betas) != 2:
            raise ConfigError(f"betas: expected two numbers [beta1, beta2], got {self.betas}")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ConfigError(f"nesterov: expected name sgd with momentum > 0, got name "
                              f"{self.name!r} and momentum {self.momentum}")


@dataclass
class ScheduleConfig:
    """The learning-rate schedule (a factor times ``optimizer.lr``).

    * ``constant``: no change.
    * ``step``: multiply by ``gamma`` at epoch ``start_epoch`` (0-based) and then
      every ``step_size`` epochs (Zaremba et al. 2014: start 4, step 1, gamma 0.5).
    * ``plateau``: multiply by ``gamma`` when the dev main metric has not improved
      by more than ``threshold`` (relative) for more than ``patience`` evaluations.
    * ``cosine``: cosine decay from ``lr`` to ``min_lr`` over ``total_steps``
      (default: the trainer's step budget).

    ``warmup_steps`` (any schedule) ramps the rate linearly from 0 over the first steps.
    """

    name: Literal["constant", "step", "plateau", "cosine"] = "constant"
    gamma: float = 0.5
    step_size: int = 1
    start_epoch: int = 0
    patience: int = 0
    threshold: float = 0.0
    warmup_steps: int = 0
    min_lr: float = 0.0
    total_steps: int | None = None

    RANGES: ClassVar[dict[str, str]] = {
        "gamma": "(0, 1]", "step_size": ">= 1", "start_epoch": ">= 0", "patience": ">= 0",
        "threshold": ">= 0", "warmup_steps": ">= 0", "min_lr": ">= 0", "total_steps": ">= 1"}


@dataclass
class TrainerConfig:
    """The training loop.

    Args:
        max_epochs: passes over the training split.
        max_steps: optimizer steps; stops at whichever budget ends first.
        max_minutes: wall-clock budget of this run (resumed time included),
            checked every ``log_every`` steps; the run then ends as at its last
            step (final evaluation, selection, test).
        eval_every: evaluate the dev split every this many steps (``None``: each epoch).
        checkpoint_every: write a checkpoint every this many steps (``None``: at
            each evaluation).  The latest checkpoint is always the one written last.
        early_stopping: stop after this many evaluations without improvement of
            the dev main metric (``None``: never).
        select: ``best`` evaluates the best dev checkpoint at the end; ``last`` the last.
        test: evaluate the test split at the end (if the task has one).
        seed: seeds python, numpy and torch; the data order depends on it too.
        deterministic: ``torch.use_deterministic_algorithms(True)`` and friends.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``; ``bf16`` runs the forward pass under bfloat16
            autocast (CPU and CUDA); ``fp16`` under float16 autocast with a
            gradient scaler (``torch.amp.GradScaler``, its state checkpointed),
            on CUDA only: on the CPU it is a configuration error (use ``bf16``).
        accumulate: micro-batches of ``data.batch_size`` per optimizer step
            (gradient accumulation): one step sees ``accumulate * batch_size``
            examples, each micro-batch's loss weighted by its ``StepOutput.size``.
            ``max_steps``, ``eval_every``, ``log_every`` and the schedule count
            optimizer steps; an epoch is ``ceil(batches / accumulate)`` steps.
        compile: ``true`` (or a mode: ``default``, ``reduce-overhead``,
            ``max-autotune``, ``max-autotune-no-cudagraphs``) runs the training
            forward through ``torch.compile``; evaluation and the checkpoints use
            the plain module.  The first step compiles (up to minutes; see
            docs/engine.md for what it gains).
        evals_per_epoch: evaluate the dev split this many times per epoch, evenly
            spaced, the last at the epoch's end (``None``: ``eval_every`` decides).
        on_divergence: what a NaN or infinite loss, weights or dev metric does:
            ``stop`` raises an error (exit 1); ``finish`` ends the run there and
            records it (``results.json``: ``diverged``, with the step), scoring the
            last good checkpoint, as an experiment on divergence wants.
        log_every: steps between log lines / metric rows.
        progress: show progress: on a terminal a progress bar (which names the
            split while it is evaluated); otherwise (a log file) a line every
            ``log_every`` steps with the training metrics and the rate, and, when the
            last dev evaluation took 10 s or more, a line before the next one.
        tensorboard: also log to TensorBoard (when installed).
        threads: CPU threads for torch (``torch.set_num_threads``); ``None`` keeps
            torch's default.  Small recurrent models run fastest with 1: their
            per-step work is too small to share.
    """

    max_epochs: int = 10
    max_steps: int | None = None
    max_minutes: float | None = None
    eval_every: int | None = None
    evals_per_epoch: int | None = None
    on_divergence: Literal["stop", "finish"] = "stop"
    checkpoint_every: int | None = None
    early_stopping: int | None = None
    select: Literal["best", "last"] = "best"
    test: bool = True
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    accumulate: int = 1
    compile: bool | Literal["default", "reduce-overhead", "max-autotune",
                            "max-autotune-no-cudagraphs"] = False
    log_every: int = 50
    progress: bool = True
    tensorboard: bool = True
    threads: int | None = None

    RANGES: ClassVar[dict[str, str]] = {
        "max_epochs": ">= 1", "max_steps": ">= 1", "max_minutes": "> 0", "eval_every": ">= 1",
        "evals_per_epoch": ">= 1",
        "checkpoint_every": ">= 1", "early_stopping": ">= 1", "seed": ">= 0",
        "log_every": ">= 1", "threads": ">= 1", "accumulate": ">= 1"}

    def validate(self) -> None:
        if self.eval_every is not None and self.evals_per_epoch is not None:
            raise ConfigError(f"expected eval_every or evals_per_epoch, not both; got "
                              f"{self.eval_every} and {self.evals_per_epoch}")
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass
class Config:
    """A whole recipe.  ``data`` and ``model`` are the task's own subclasses."""

    task: str
    info: InfoConfig = field(default_factory=InfoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON-ready) of every field, defaults included."""
        return dataclasses.asdict(self)


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# the keys of a recipe, and the sections that are the same for every task
RECIPE_KEYS = ("task", "extends", "info", "data", "model", "optimizer", "schedule", "trainer")
SECTIONS = {
    "info": InfoConfig,
    "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig,
    "trainer": TrainerConfig,
}


# --------------------------------------------------------------------------- conversion


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


def _convert(value, tp, where: str):
    """Return ``value`` checked (and mildly coerced) against the annotation ``tp``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, where)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_t, val_t = typing.get_args(tp) or (Any, Any)
        return {_convert(k, key_t, where): _convert(v, val_t, f"{where}.{k}")
                for k, v in value.items()}
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected str, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return build_section(tp, value, where)
    raise ConfigError(f"{where}: unsupported field type {tp!r}")  # pragma: no cover


_RANGE = re.compile(r"(>=|>)\s*(\S+)|([\[(])\s*(\S+),\s*(\S+)\s*([\])])")


def _in_range(value: float, spec: str) -> bool:
    m = _RANGE.fullmatch(spec.strip())
    if m is None:  # pragma: no cover - a typo in a RANGES table
        raise ValueError(f"bad range {spec!r}")
    if m.group(1):
        bound = float(m.group(2))
        return value >= bound if m.group(1) == ">=" else value > bound
    lo, hi = float(m.group(4)), float(m.group(5))
    above = value >= lo if m.group(3) == "[" else value > lo
    below = value <= hi if m.group(6) == "]" else value < hi
    return above and below


def check_ranges(obj, where: str) -> None:
    """Check every field named in the ``RANGES`` tables of ``obj``'s classes.

    ``RANGES`` maps a field to ``">= 1"``, ``"> 0"``, ``"[0, 1)"`` and the like;
    ``None`` passes (it means "off" or "default"), a list is checked item by
    item, and NaN never passes.
    """
    ranges: dict[str, str] = {}
    for klass in reversed(type(obj).__mro__):
        ranges.update(vars(klass).get("RANGES", {}))
    for name, spec in ranges.items():
        value = getattr(obj, name, None)
        items = value if isinstance(value, list) else [value]
        for v in items:
            if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isnan(v) or not _in_range(v, spec):
                kind = "an integer" if isinstance(v, int) else "a number"
                raise ConfigError(f"{where}.{name}: expected {kind} {spec}, got {value!r}")


def build_section(cls, values: dict | None, where: str):
    """Build dataclass ``cls`` from a mapping, strictly.

    Raises :class:`ConfigError` for an unknown key (naming the valid ones), a
    missing required field, a value of the wrong type, one that the class's
    ``validate()`` refuses, or a value outside the range that the ``RANGES`` table
    of the class or of any base class gives.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(fields)}"
            )
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}")
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {', '.join(missing)}")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as e:  # ConfigError included: say which section
            raise ConfigError(f"{where}: {e}") from None
    check_ranges(obj, where)
    return obj


# --------------------------------------------------------------------------- recipes


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``memnets/recipes``, sorted."""
    folder = resources.files("memnets") / "recipes"
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def recipe_path(name_or_path: str) -> Path:
    """A shipped recipe's file by name, or the user's YAML file by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"recipe file {name_or_path} does not exist")
        return p
    shipped = Path(str(resources.files("memnets") / "recipes" / f"{name_or_path}.yaml"))
    if not shipped.is_file():  # names are hyphenated; the older underscores still work
        shipped = shipped.with_name(f"{name_or_path.replace('_', '-')}.yaml")
    if not shipped.is_file():
        names = recipe_names()
        close = difflib.get_close_matches(name_or_path, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown recipe {name_or_path!r}{hint}; expected a path to a .yaml file or "
            f"one of: {', '.join(names) or '(none shipped)'}"
        )
    return shipped


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a plain key, got {shorten(key)}",
                key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (first on line {seen[key] + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _mapping_without_duplicates)


def parse_yaml(text: str, where: str):
    """YAML text to Python values, strictly: safe types only, no key given twice.

    Raises :class:`ConfigError` naming ``where`` and the line.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.reader.ReaderError as e:  # a control character: no mark, a position
        line = text[: e.position].count("\n") + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise ConfigError(f"{where}:{line}: invalid YAML (expected printable text, got "
                          f"character #x{char:04x})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line
        if len(problem) > 120:
            problem = problem[:120] + "..."
        raise ConfigError(f"{at}: invalid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(f"{where}: invalid YAML (nested too deeply)") from None


def read_yaml_file(path: Path, what: str = "recipe"):
    """A YAML file's values; every failure is a :class:`ConfigError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: expected UTF-8 text in the {what}, got byte "
                          f"0x{data[e.start]:02x}") from None
    return parse_yaml(text, str(path))


def _read_yaml(path: Path) -> dict:
    raw = read_yaml_file(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in (
                "cell_options", "block_options"):  # options are replaced whole
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_raw(name_or_path: str, _seen: tuple[Path, ...] = ()) -> dict:
    """The recipe as a plain dict, with ``extends`` resolved (no checking yet).

    Recipes that extend each other in a cycle (found by resolved path) are a
    :class:`ConfigError` naming the cycle.
    """
    path = recipe_path(name_or_path)
    here = path.resolve()
    if here in _seen:
        cycle = " -> ".join(str(p) for p in (*_seen[_seen.index(here):], here))
        raise ConfigError(f"{path}: recipes extend each other in a cycle: {cycle}")
    raw = _read_yaml(path)
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent:
            raise ConfigError(f"{path}: extends: expected a recipe name or path, got {parent!r}")
        base_arg = parent
        if not recipe_path_is_name(parent):
            base_arg = str(path.parent / parent)
        try:
            base = load_raw(base_arg, _seen + (here,))
        except ConfigError as e:
            if str(e).startswith(str(path)):
                raise
            raise ConfigError(f"{path}: extends: {e}") from None
        raw = _merge(base, raw)
    return raw


def recipe_path_is_name(s: str) -> bool:
    return not (s.endswith((".yaml", ".yml")) or "/" in s)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.hidden_size=256"`` -> ``(["model", "hidden_size"], 256)``."""
    if "=" not in text:
        raise ConfigError(f"--set: expected KEY=VALUE such as model.hidden_size=256, got {text!r}")
    key, value = text.split("=", 1)
    keys = key.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set: expected a dotted key such as trainer.seed, got {key!r}")
    try:
        parsed = parse_yaml(value, f"--set {key}") if value.strip() else ""
    except ConfigError:
        parsed = value
    return keys, parsed


def apply_overrides(raw: dict, overrides: list[str], source: str = "recipe") -> dict:
    """Apply ``--set`` overrides to a raw recipe dict (checked later by
    :func:`memnets.tasks.recipes.from_dict`); ``source`` names the recipe in messages."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of recipe sections, got "
                          f"{shorten(raw)}")
    raw = copy.deepcopy(raw)
    for text in overrides or []:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{source}: --set {text}: expected {k!r} to be a section, "
                                  f"got {shorten(nxt)}")
            node = nxt
        node[keys[-1]] = value
    return raw


def check_recipe_keys(raw, source: str = "recipe") -> None:
    """``raw`` is a mapping whose keys are all recipe keys (:data:`RECIPE_KEYS`);
    else :class:`ConfigError` naming ``source``, the key and the valid ones."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {raw!r}")
    for key in raw:
        if key not in RECIPE_KEYS:
            close = difflib.get_close_matches(str(key), RECIPE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(RECIPE_KEYS)}"
            )


def build_config(raw: dict, *, data: type[DataConfig], model: type[ModelConfig],
                 source: str = "recipe") -> Config:
    """The :class:`Config` of a raw recipe whose task has the ``data`` and ``model``
    section classes: every section built strictly by :func:`build_section`.

    Knows no task: :func:`memnets.tasks.recipes.from_dict` finds the task's
    classes in the task registry and checks the task name and the cell.
    """
    kwargs: dict[str, Any] = {"task": raw["task"]}
    for name, cls in SECTIONS.items():
        kwargs[name] = build_section(cls, raw.get(name), f"{source}: {name}")
    kwargs["data"] = build_section(data, raw.get("data"), f"{source}: data")
    kwargs["model"] = build_section(model, raw.get("model"), f"{source}: model")
    return Config(**kwargs)


def dump_config(config: Config) -> str:
    """YAML text of a config (every field), loadable again with
    :func:`memnets.tasks.recipes.from_dict`."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
