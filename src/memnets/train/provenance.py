"""Where a number came from: the command, the commit, the machine, the wall time.

Every file that reports results (``memnets sweep``, ``memnets ensemble``,
``memnets report`` and the scripts that write ``results/`` pages) records the
dict :func:`provenance` returns, so a reader can rerun the command on the same
commit and compare machines.

This module imports only the standard library and torch.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The short commit of the checkout (``-dirty`` when it has changes), or ``unknown``."""
    try:
        run = dict(capture_output=True, text=True, timeout=10, cwd=cwd)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        if not commit:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               **run).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine() -> str:
    """One line: processor, cores, accelerator, torch build."""
    cpu = cpu_name()
    gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {gpu}; torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (``memnets ...`` for the command line, else the script)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("memnets", "__main__.py"):
        argv[0] = "memnets"
    elif argv and argv[0].endswith(".py"):
        argv.insert(0, "python")
    return shlex.join(argv)


def provenance(*, command: str | None = None, wall_seconds: float | None = None,
               started: float | None = None, commit: str | None = None) -> dict:
    """``{"command", "commit", "machine", "date", "wall_seconds"}`` for a results file.

    ``commit``: the one read when the work began (the code that was imported), for a
    run whose checkout may move on before it ends; ``None`` reads it now."""
    out = {"command": command if command is not None else command_line(),
           "commit": commit if commit is not None else git_commit(), "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if wall_seconds is None and started is not None:
        wall_seconds = time.perf_counter() - started
    if wall_seconds is not None:
        out["wall_seconds"] = round(float(wall_seconds), 1)
    return out
