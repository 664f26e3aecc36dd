"""Download a file once, verify its sha256, write it atomically.

``download(url, dest, sha256=...)`` fetches ``url`` to the path ``dest``
(usually ``data_root() / "<dataset>" / "<file>"``).  The bytes go to a temporary
file in the same folder, are hashed while they arrive, and the file is renamed
into place only if the checksum matches, so an interrupted or corrupted
download never leaves a file that looks complete.  An existing ``dest`` with
the right checksum is not fetched again.

This module imports only the standard library.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from memnets.data.paths import DataError

CHUNK = 1 << 16


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    timeout: float = 60.0,
    force: bool = False,
    quiet: bool = True,
) -> Path:
    """Fetch ``url`` to ``dest`` and check its sha256.

    Args:
        url: ``http(s)://`` or ``file://`` address.
        dest: the file to create (its folder is created if needed).
        sha256: expected hex digest; ``None`` skips the check (say why at the call site).
        timeout: seconds to wait for the server at each read.
        force: fetch again even if ``dest`` exists with the right checksum.
        quiet: if False, print one line when a download starts.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: the server could not be reached or answered with an error,
            or the checksum did not match (the partial file is removed and an
            existing ``dest`` is left untouched).
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.exists() and not force:
        if expected is None or sha256_file(dest) == expected:
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"downloading {url} -> {dest}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    h.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as e:
            raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise DataError(f"download of {url} failed: {reason}") from None
        got = h.hexdigest()
        if expected is not None and got != expected:
            raise DataError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {got}; "
                f"{dest} was not written"
            )
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
