"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``checkpoints/step-00001234/`` holding

* ``model.safetensors`` — the model's ``state_dict`` (keys unchanged);
* ``trainer.safetensors`` — optimizer state tensors, RNG states, the carried
  state of a stateful task;
* ``trainer.json`` — epoch, step, schedule state, optimizer scalars, metrics.

The folder is written under a temporary name, flushed, and renamed; then the
pointer ``checkpoints/latest.json`` (or ``best.json``) is replaced atomically
with ``os.replace``.  A kill at any moment therefore leaves the previous
pointer and its complete folder.  Loading reads only safetensors and JSON.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

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

    Supports None, numbers, strings, tensors, lists, tuples, dicts and
    NamedTuples whose class lives in a ``memnets`` module.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    if isinstance(obj, Tensor):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"t": key}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        cls = type(obj)
        return {"nt": f"{cls.__module__}:{cls.__qualname__}",
                "items": [pack_tree(o, prefix, tensors) for o in obj]}
    if isinstance(obj, (list, tuple)):
        return {"seq": "tuple" if isinstance(obj, tuple) else "list",
                "items": [pack_tree(o, prefix, tensors) for o in obj]}
    if isinstance(obj, dict):
        return {"dict": {str(k): pack_tree(v, prefix, tensors) for k, v in obj.items()}}
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__}")


def unpack_tree(spec: Any, tensors: dict[str, Tensor], device=None) -> Any:
    """Inverse of :func:`pack_tree`."""
    if "v" in spec:
        return spec["v"]
    if "t" in spec:
        t = tensors[spec["t"]]
        return t.to(device) if device is not None else t
    if "nt" in spec:
        module, _, name = spec["nt"].partition(":")
        if not module.split(".")[0] == "memnets":
            raise ValueError(f"refusing to rebuild state type {spec['nt']} outside memnets")
        cls = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
        return cls(*(unpack_tree(s, tensors, device) for s in spec["items"]))
    if "seq" in spec:
        items = [unpack_tree(s, tensors, device) for s in spec["items"]]
        return tuple(items) if spec["seq"] == "tuple" else items
    if "dict" in spec:
        return {k: unpack_tree(v, tensors, device) for k, v in spec["dict"].items()}
    raise ValueError(f"unknown checkpoint tree node {spec!r}")


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
    optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


# --------------------------------------------------------------------------- model


def model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The state_dict as contiguous CPU tensors (shared storage is copied apart)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def load_model_weights(model: nn.Module, path: Path) -> None:
    """Load ``model.safetensors`` strictly, with a clear message on mismatch."""
    weights = load_file(str(path))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    missing, unexpected = [], []
    own = model.state_dict()
    for k in own:
        if k not in weights:
            missing.append(k)
    for k in weights:
        if k not in own:
            unexpected.append(k)
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the model built from the recipe: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in weights.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the model expects "
                             f"{tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})


# --------------------------------------------------------------------------- folders


def save_checkpoint(run_dir: Path, name: str, *, model: nn.Module, meta: dict,
                    tensors: dict[str, Tensor], pointers: tuple[str, ...] = ("latest",),
                    keep: set[str] | None = None) -> Path:
    """Write ``checkpoints/<name>/`` completely, then point ``pointers`` at it.

    Older step folders not referenced by ``latest.json``/``best.json`` (or in
    ``keep``) are removed afterwards.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_file(model_tensors(model), str(tmp / "model.safetensors"))
        save_file(tensors, str(tmp / "trainer.safetensors"))
        (tmp / "trainer.json").write_text(json.dumps(meta, indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        final = root / name
        if final.exists():  # rewriting the same step (e.g. latest and best together)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for p in pointers:
        atomic_write_text(root / f"{p}.json", json.dumps({"dir": name, "step": meta.get("step")}))
    _prune(root, keep or set())
    return root / name


def _prune(root: Path, keep: set[str]) -> None:
    live = set(keep)
    for p in ("latest", "best"):
        target = read_pointer(root.parent, p)
        if target is not None:
            live.add(target.name)
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("step-") and d.name not in live:
            shutil.rmtree(d, ignore_errors=True)
        elif d.is_dir() and d.name.startswith("."):  # leftovers of a killed write
            shutil.rmtree(d, ignore_errors=True)


def read_pointer(run_dir: Path, which: str = "latest") -> Path | None:
    """The checkpoint folder that ``checkpoints/<which>.json`` points at, or None."""
    p = Path(run_dir) / CHECKPOINTS / f"{which}.json"
    if not p.is_file():
        return None
    target = Path(run_dir) / CHECKPOINTS / json.loads(p.read_text())["dir"]
    return target if target.is_dir() else None


def load_checkpoint(folder: Path) -> tuple[dict, dict[str, Tensor]]:
    """``(trainer.json, trainer.safetensors tensors)`` of a checkpoint folder."""
    meta = json.loads((folder / "trainer.json").read_text())
    tensors = load_file(str(folder / "trainer.safetensors"))
    return meta, tensors
