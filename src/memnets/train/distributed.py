"""Processes and devices: ``torchrun`` (DDP), ``--device``, seeds, deterministic mode.

Under ``torchrun --nproc_per_node=N`` the environment holds ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` then joins the process group
(NCCL on CUDA, gloo on CPU) and picks ``cuda:LOCAL_RANK`` on GPU machines.
Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Dist:
    """Where this process stands: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device (clear error when absent).

    ``auto`` is CUDA when there is a GPU for every process of this machine
    (``LOCAL_WORLD_SIZE`` under torchrun), else the CPU for all of them, so
    that every rank makes the same choice.
    """
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if spec == "auto":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        spec = "cuda" if gpus >= local_world else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available here; "
                               f"use --device cpu or auto")
        if spec == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(
                    f"device 'cuda' for local rank {local_rank}, but this machine has "
                    f"{torch.cuda.device_count()} CUDA device(s); start at most that many "
                    f"processes per machine, or use --device cpu")
            return torch.device("cuda", local_rank)
        return torch.device(spec)
    raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {spec!r}")


def setup(device_spec: str) -> Dist:
    """Join the process group when launched by ``torchrun``; choose the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return Dist(rank=rank, world_size=world, local_rank=local, device=device)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.barrier()


def any_true(d: Dist, flag: bool) -> bool:
    """True if ``flag`` is true on any process (a collective under DDP)."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0],
                     device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return bool(t.item() > 0)


def broadcast_str(d: Dist, s: str) -> str:
    """Rank 0's string on every process."""
    if not d.enabled:
        return s
    box = [s]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
