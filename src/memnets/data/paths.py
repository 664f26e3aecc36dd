"""Where datasets live: :func:`data_root` and checked look-ups inside it.

Order of precedence for the data root:

1. an explicit directory (the recipe's ``data.dir`` or ``--data-dir``);
2. the ``MEMNETS_DATA`` environment variable;
3. ``<repository root>/../shared/data`` when that folder exists (a development checkout);
4. a per-user cache: ``$XDG_CACHE_HOME/memnets/data`` (``~/.cache/memnets/data``).

This module imports only the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

from memnets.errors import DataError  # re-exported: memnets.data.DataError

ENV_VAR = "MEMNETS_DATA"




def repo_root() -> Path | None:
    """The source checkout's root (the folder with ``pyproject.toml``), if installed from one."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "memnets").is_dir():
            return parent
    return None


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/memnets/data``, by default ``~/.cache/memnets/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memnets" / "data"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root folder (see the module docstring for the precedence).

    An explicit folder or ``MEMNETS_DATA`` is returned even if it does not
    exist yet; a reader then raises :class:`DataError` via :func:`require`.
    """
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    root = repo_root()
    if root is not None:
        shared = (root.parent / "shared" / "data").resolve()
        if shared.is_dir():
            return shared
    return user_cache_dir()


def require(path: str | os.PathLike, what: str, *, hint: str = "") -> Path:
    """Return ``path`` if it exists, else raise :class:`DataError` naming it.

    Args:
        path: the file or folder a reader needs.
        what: what it is, for the message (``"bAbI task files"``).
        hint: how to get it (a download command, the expected layout).
    """
    p = Path(path)
    if not p.exists():
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        msg = (f"{what} not found: expected {p} (the data root is chosen by data.dir, "
               f"${ENV_VAR}, ../shared/data or {user_cache_dir()}; nearest existing folder: "
               f"{parent})")
        if hint:
            msg += f"; {hint}"
        raise DataError(msg)
    return p
