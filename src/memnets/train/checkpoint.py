"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``checkpoints/step-00001234/`` holding

* ``model.safetensors`` — the model's ``state_dict`` (keys unchanged);
* ``trainer.safetensors`` — optimizer state tensors, RNG states, the carried
  state of a stateful task;
* ``trainer.json`` — epoch, step, schedule state, optimizer scalars, metrics,
  the state of the float16 gradient scaler (``trainer.precision: fp16``).

The folder is written under a temporary name, flushed, and renamed; then the
pointers ``checkpoints/best.json`` and ``checkpoints/latest.json`` are replaced
atomically with ``os.replace``.  Writing a step again makes a new revision
folder (``step-00001234.1``) instead of removing the old one first.  A kill at
any moment therefore leaves pointers that name complete folders; if a pointer
itself was never written, :func:`find_latest` finds the newest complete folder.
Only engine-named folders are ever pruned.

Loading reads only safetensors and JSON, checks what it reads, and never
imports or calls anything a file names: a carried recurrent state is rebuilt
from the registered state types (:data:`memnets.cells.base.STATE_TYPES`).
Every unreadable or malformed file is a :class:`~memnets.errors.CheckpointError`
naming it.  :class:`RunLock` keeps a second process from training into the
same run directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from memnets.cells.base import STATE_TYPES
from memnets.errors import CheckpointError, TrainingError, shorten
from memnets.tasks.base import json_safe  # noqa: F401 (re-exported)

CHECKPOINTS = "checkpoints"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- trees


def pack_tree(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """JSON description of a nested state; tensors go to ``tensors`` under ``prefix.i``.

    Supports None, numbers, strings, tensors, lists, tuples, dicts and the
    recurrent state NamedTuples registered with
    :func:`memnets.cells.base.register_state` (stored by name).
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    if isinstance(obj, Tensor):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"t": key}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        name = type(obj).__qualname__
        if STATE_TYPES.get(name) is not type(obj):
            raise TypeError(f"cannot checkpoint a {name}: register it with "
                            f"memnets.cells.base.register_state")
        return {"state": name, "items": [pack_tree(o, prefix, tensors) for o in obj]}
    if isinstance(obj, (list, tuple)):
        return {"seq": "tuple" if isinstance(obj, tuple) else "list",
                "items": [pack_tree(o, prefix, tensors) for o in obj]}
    if isinstance(obj, dict):
        return {"dict": {str(k): pack_tree(v, prefix, tensors) for k, v in obj.items()}}
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__}")


def unpack_tree(spec: Any, tensors: dict[str, Tensor], device=None, *,
                where: str = "checkpoint") -> Any:
    """Inverse of :func:`pack_tree`.

    Builds only plain values, tensors from ``tensors``, lists, tuples, dicts and
    the registered state NamedTuples, looked up by name in
    :data:`memnets.cells.base.STATE_TYPES`: nothing a file names is ever
    imported or called.  Raises :class:`CheckpointError` naming ``where`` for
    anything else.
    """
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: carried state: expected {what}, got {shorten(spec)}")

    def items(key: str) -> list:
        value = spec.get(key)
        if not isinstance(value, list):
            raise bad(f"a list under {key!r}")
        return [unpack_tree(s, tensors, device, where=where) for s in value]

    if not isinstance(spec, dict) or len(spec) not in (1, 2):
        raise bad("a node such as {'v': 1}, {'t': KEY}, {'seq': ...}, {'dict': ...}")
    if "v" in spec:
        v = spec["v"]
        if v is not None and not isinstance(v, (bool, int, float, str)):
            raise bad("a plain value")
        return v
    if "t" in spec:
        key = spec["t"]
        if not isinstance(key, str) or key not in tensors:
            raise bad(f"the key of a tensor in trainer.safetensors ({len(tensors)} stored)")
        t = tensors[key]
        return t.to(device) if device is not None else t
    if "state" in spec or "nt" in spec:
        # "nt" ("module:Class") is how older checkpoints named a state type; only
        # the class name is used, and only to look it up among registered states
        name = spec.get("state", spec.get("nt"))
        if not isinstance(name, str):
            raise bad("the name of a registered state type")
        cls = STATE_TYPES.get(name.rpartition(":")[2])
        if cls is None:
            raise CheckpointError(
                f"{where}: carried state names the type {shorten(name)}, which is not a "
                f"registered recurrent state (expected one of {', '.join(sorted(STATE_TYPES))})")
        values = items("items")
        if len(values) != len(cls._fields):
            raise bad(f"{len(cls._fields)} items for {cls.__qualname__}{cls._fields}")
        return cls(*values)
    if "seq" in spec:
        values = items("items")
        if spec["seq"] not in ("tuple", "list"):
            raise bad("'seq': 'tuple' or 'list'")
        return tuple(values) if spec["seq"] == "tuple" else values
    if "dict" in spec:
        if not isinstance(spec["dict"], dict):
            raise bad("a mapping under 'dict'")
        return {k: unpack_tree(v, tensors, device, where=where) for k, v in spec["dict"].items()}
    raise bad("a node such as {'v': 1}, {'t': KEY}, {'seq': ...}, {'dict': ...}")


# --------------------------------------------------------------------------- RNG


def rng_state(tensors: dict[str, Tensor]) -> dict:
    """Capture python, numpy, torch (and CUDA) RNG states."""
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    return {"python": [version, list(internal), gauss],
            "numpy": [name, int(pos), int(has_gauss), float(cached)]}


def set_rng_state(state: dict, tensors: dict[str, Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, pos, has_gauss, cached = state["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state((name, keys, pos, has_gauss, cached))


# --------------------------------------------------------------------------- optimizer


def optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> dict:
    """Per-parameter optimizer state: tensors to ``tensors``, scalars returned."""
    sd = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for idx, entry in sd["state"].items():
        for k, v in entry.items():
            if isinstance(v, Tensor):
                tensors[f"optimizer.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return {"scalars": scalars, "lrs": [g["lr"] for g in sd["param_groups"]]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, meta: dict,
                         tensors: dict[str, Tensor]) -> None:
    """Restore per-parameter state; hyper-parameters come from the recipe."""
    sd = optimizer.state_dict()
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = t
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    for group, lr in zip(sd["param_groups"], meta.get("lrs", [])):
        group["lr"] = lr
    _check_optimizer_state(optimizer, state)
    optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def _check_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[int, dict]) -> None:
    """Every parameter's state has the same entries, and each tensor entry the
    parameter's shape (a renamed or reshaped entry would fail steps later)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    names = {frozenset(entry) for entry in state.values()}
    if len(names) > 1:
        raise ValueError(f"optimizer state entries differ between parameters: "
                         f"{sorted(sorted(n) for n in names)[:2]}")
    for idx, entry in state.items():
        if not 0 <= idx < len(params):
            raise ValueError(f"optimizer state for parameter {idx}, the model has "
                             f"{len(params)}")
        for name, value in entry.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != params[idx].shape:
                raise ValueError(f"optimizer state {name} of parameter {idx} has shape "
                                 f"{tuple(value.shape)}, the parameter {tuple(params[idx].shape)}")


# --------------------------------------------------------------------------- model


def model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The state_dict as contiguous CPU tensors (shared storage is copied apart)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def all_finite(model: nn.Module) -> bool:
    """Whether every floating-point tensor of the model's state is finite."""
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values()
               if v.is_floating_point())


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file; any failure is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: expected a safetensors file, found none")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...: one clear line
        raise CheckpointError(f"{path}: expected a safetensors file, could not read it "
                              f"({shorten(str(e), 120)})") from None


def read_json(path: Path, what: str = "JSON file") -> Any:
    """A JSON file's value; a missing, unreadable or malformed file is a
    :class:`CheckpointError` naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: expected the run's {what}, found none") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: expected UTF-8 JSON ({what}), got byte "
                              f"0x{e.object[e.start]:02x} at offset {e.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}:{e.lineno}: expected JSON ({what}), got "
                              f"{e.msg.lower()}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: expected JSON ({what}), got nesting too deep") from None


def json_field(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``mapping[key]`` checked to be of ``kind``; else a :class:`CheckpointError`."""
    if not isinstance(mapping, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {shorten(mapping)}")
    if key not in mapping:
        raise CheckpointError(f"{where}: expected the field {key!r}, found only "
                              f"{shorten(sorted(mapping))}")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise CheckpointError(f"{where}: expected {key!r} to be {names}, got {shorten(value)}")
    return value


def load_model_weights(model: nn.Module, path: Path) -> None:
    """Load ``model.safetensors`` strictly: the same keys, shapes and dtypes, finite.

    A model whose parameter names changed may define ``upgrade_state_dict(weights)``
    returning the weights under today's names; it is applied first.
    """
    weights = read_safetensors(path)
    upgrade = getattr(model, "upgrade_state_dict", None)
    if callable(upgrade):
        weights = upgrade(weights)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the model built from the recipe: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in weights.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{path}: {k} has shape {tuple(v.shape)}, the model expects "
                                  f"{tuple(own[k].shape)}")
        if v.dtype != own[k].dtype:
            raise CheckpointError(f"{path}: {k} has dtype {v.dtype}, the model expects "
                                  f"{own[k].dtype}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{path}: {k} holds NaN or infinite values")
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})


# --------------------------------------------------------------------------- folders

# The names the engine gives checkpoint folders: the step, and a revision when the
# same step is written again (``step-00000040.1``).  Nothing else is ever pruned.
_STEP_DIR = re.compile(r"step-(\d{8})(?:\.(\d+))?")
_TMP_DIR = re.compile(r"\.step-\d{8}(?:\.\d+)?\.[A-Za-z0-9_]+")
_FILES = ("model.safetensors", "trainer.safetensors", "trainer.json")


def step_dir_name(step: int) -> str:
    """The folder name of a checkpoint of ``step`` (before any revision)."""
    return f"step-{step:08d}"


def _free_name(root: Path, name: str) -> str:
    """``name``, or ``name.1``, ``name.2``, ... : the first that does not exist yet."""
    if not (root / name).exists():
        return name
    k = 1
    while (root / f"{name}.{k}").exists():
        k += 1
    return f"{name}.{k}"


def save_checkpoint(run_dir: Path, name: str, *, model: nn.Module, meta: dict,
                    tensors: dict[str, Tensor], pointers: tuple[str, ...] = ("latest",),
                    keep: set[str] | None = None) -> Path:
    """Write ``checkpoints/<name>/`` completely, then point ``pointers`` at it.

    At every instant each pointer names a complete folder: the new folder is
    written under a temporary name, flushed and renamed into place (under a new
    revision name, ``<name>.1``, if ``<name>`` exists already, so that the
    folder a pointer names is never removed before the pointer moves); then the
    pointers are replaced atomically, ``best`` before ``latest``; then engine-named
    step folders that no pointer (nor ``keep``) names are removed.
    Returns the folder written.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_file(model_tensors(model), str(tmp / "model.safetensors"))
        save_file(tensors, str(tmp / "trainer.safetensors"))
        (tmp / "trainer.json").write_text(json.dumps(json_safe(meta), indent=1, allow_nan=False))
        mode = 0o666 & ~_umask()
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(f, mode)
        _fsync_dir(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        final = root / _free_name(root, name)
        os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for p in sorted(pointers, key=lambda q: q != "best"):  # latest last: it is the resume point
        atomic_write_text(root / f"{p}.json",
                          json.dumps({"dir": final.name, "step": meta.get("step")}))
    _prune(root, keep or set())
    return final


def _prune(root: Path, keep: set[str]) -> None:
    live = set(keep)
    for p in ("latest", "best"):
        try:
            target = read_pointer(root.parent, p)
        except CheckpointError:
            return  # a pointer we cannot read: remove nothing
        if target is not None:
            live.add(target.name)
    for d in root.iterdir():
        if not d.is_dir() or d.is_symlink():
            continue
        if _STEP_DIR.fullmatch(d.name) and d.name not in live:
            shutil.rmtree(d, ignore_errors=True)
        elif _TMP_DIR.fullmatch(d.name):  # leftovers of a killed write
            shutil.rmtree(d, ignore_errors=True)


def read_pointer(run_dir: Path, which: str = "latest") -> Path | None:
    """The checkpoint folder that ``checkpoints/<which>.json`` points at.

    ``None`` when the pointer does not exist or names a folder that is not
    there; a :class:`CheckpointError` when the pointer cannot be read or names
    anything but an engine-named folder of this run.
    """
    p = Path(run_dir) / CHECKPOINTS / f"{which}.json"
    if not p.is_file():
        return None
    spec = read_json(p, f"{which} checkpoint pointer")
    name = json_field(spec, "dir", str, str(p))
    if not _STEP_DIR.fullmatch(name):
        raise CheckpointError(f"{p}: expected 'dir' to name a checkpoint folder such as "
                              f"step-00000100, got {shorten(name)}")
    target = Path(run_dir) / CHECKPOINTS / name
    return target if is_complete(target) else None


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds the three files of a checkpoint."""
    return folder.is_dir() and all((folder / f).is_file() for f in _FILES)


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Engine-named checkpoint folders holding all their files, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.fullmatch(d.name)
        if m and is_complete(d):
            found.append(((int(m.group(1)), int(m.group(2) or 0)), d))
    return [d for _, d in sorted(found)]


def find_latest(run_dir: Path) -> tuple[Path | None, str]:
    """The checkpoint to resume from, and a note when the pointer could not be used.

    Normally what ``latest.json`` names.  When that pointer is missing, unreadable
    or dangling (a kill or a full disk between writing a folder and its pointer),
    the newest complete step folder is taken instead and the note says so.
    """
    problem = ""
    try:
        folder = read_pointer(run_dir, "latest")
    except CheckpointError as e:
        folder, problem = None, str(e)
    if folder is not None:
        return folder, ""
    found = complete_checkpoints(run_dir)
    if not found:
        return None, problem
    pointer = Path(run_dir) / CHECKPOINTS / "latest.json"
    why = problem or (f"{pointer} names no complete checkpoint" if pointer.exists()
                      else f"{pointer} is missing")
    return found[-1], f"{why}; resuming from the newest complete checkpoint {found[-1].name}"


def load_checkpoint(folder: Path) -> tuple[dict, dict[str, Tensor]]:
    """``(trainer.json, trainer.safetensors tensors)`` of a checkpoint folder."""
    folder = Path(folder)
    meta = read_json(folder / "trainer.json", "trainer state")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{folder / 'trainer.json'}: expected a JSON object, got "
                              f"{shorten(meta)}")
    return meta, read_safetensors(folder / "trainer.safetensors")


# --------------------------------------------------------------------------- lock


class RunLock:
    """An exclusive lock on a run directory (``RUN/.lock``, ``flock``), held while
    one process trains into it.  A second writer is refused at once with a
    :class:`TrainingError` naming the holder's process id.

    Use as a context manager; the lock goes with the process if it dies.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise TrainingError(
                f"{self.path.parent} is in use: another training (process {holder}) holds "
                f"{self.path}; wait for it to end or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
