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
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from memnets.data.paths import DataError

CHUNK = 1 << 16


class Progress:
    """Bytes received so far, written to ``stream``: on a terminal one line redrawn at
    most every 0.2 s; elsewhere (a log file) a line at 25, 50 and 75 % of ``total``
    (none when the size is unknown), and on :meth:`close` the total and the time."""

    def __init__(self, total: int | None, stream) -> None:
        self.total, self.stream, self.done = total, stream, 0
        self.tty = stream.isatty()
        self.start = self.last = time.monotonic()
        self.quarter = 0

    def _text(self) -> str:
        mb = self.done / 1e6
        if self.total:
            return f"  {mb:.1f} of {self.total / 1e6:.1f} MB ({100 * self.done / self.total:.0f}%)"
        return f"  {mb:.1f} MB"

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.2:
                self.last = now
                print(f"\r{self._text()}", end="", file=self.stream, flush=True)
        elif self.total and self.quarter < 3 and self.done * 4 >= (self.quarter + 1) * self.total:
            self.quarter = self.done * 4 // self.total if self.done < self.total else 3
            print(self._text(), file=self.stream, flush=True)

    def close(self) -> None:
        seconds = time.monotonic() - self.start
        end = "\r" if self.tty else ""
        print(f"{end}  {self.done / 1e6:.1f} MB in {seconds:.1f} s", file=self.stream, flush=True)


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
        quiet: if False, show progress on standard error: one line updated in
            place on a terminal, otherwise a line at each quarter of the file (when
            the server sends its size) and one when it is complete.

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
        print(f"downloading {url} -> {dest}", file=sys.stderr)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                size = resp.headers.get("Content-Length")
                shown = None if quiet else Progress(int(size) if size else None, sys.stderr)
                for block in iter(lambda: resp.read(CHUNK), b""):
                    h.update(block)
                    out.write(block)
                    if shown:
                        shown.update(len(block))
                out.flush()
                if shown:
                    shown.close()
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
