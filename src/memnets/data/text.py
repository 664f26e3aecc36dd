"""Reading the text files of a dataset: checked UTF-8, lines numbered for messages.

Every reader in :mod:`memnets.data` opens its files through :func:`read_lines`
(or :func:`read_text` for a whole file, :func:`read_json_lines` for JSON lines),
so that a missing file, an unreadable one or a byte that is not UTF-8 becomes
one :class:`~memnets.errors.DataError` line naming the file and the 1-based
line, never a ``UnicodeDecodeError``:

    data/ptb/ptb.train.txt:3: expected UTF-8 text, got b'\\xff' at byte 5 of the line

Lines end where Python's text files end them (``\\n``, ``\\r\\n`` or ``\\r``) and
are returned without their ending.  The two error classes here are the ones
readers raise; both keep the built-in class that callers caught before.

This module imports only the standard library and :mod:`memnets.errors`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from memnets.errors import DataError, shorten


class DataFormatError(DataError, ValueError):
    """A dataset file is not in its documented format; the message names file:line."""


class MissingFileError(DataError, FileNotFoundError):
    """A file a reader needs does not exist; the message names the path."""


def read_text(path: str | os.PathLike, what: str = "a text file") -> str:
    """The whole file as text, line endings written ``\\n``.

    Args:
        path: the file.
        what: what the file should be, for the messages (``"a PTB text file"``).

    Raises:
        MissingFileError: ``expected <what> at <path>, found none``.
        DataError: the file exists but cannot be read.
        DataFormatError: ``<path>:<line>: expected UTF-8 text, got <bytes> at byte <k>
            of the line``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"expected {what} at {path}, found none")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: expected {what} that can be read, got {e.strerror or e}") \
            from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        head = data[: e.start]
        line = head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1
        column = e.start - max(head.rfind(b"\n"), head.rfind(b"\r"))
        raise DataFormatError(f"{path}:{line}: expected UTF-8 text, got "
                              f"{shorten(data[e.start:e.end])} at byte {column} of the line"
                              ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_lines(path: str | os.PathLike, what: str = "a text file") -> list[str]:
    """The file's lines without their endings (line ``k`` is ``[k - 1]``); see :func:`read_text`."""
    lines = read_text(path, what).split("\n")
    if lines[-1] == "":
        lines.pop()  # the ending of the last line, or an empty file
    return lines


def read_json_lines(path: str | os.PathLike, what: str) -> list[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file.

    Raises:
        DataError: the file is missing or unreadable (:func:`read_lines`), or a
            line is not a JSON object (``<path>:<line>: expected a JSON object per
            line (<what>), got ...``).
    """
    rows = []
    for i, line in enumerate(read_lines(path, what), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{i}: expected a JSON object per line ({what}), got "
                                  f"{shorten(line, 60)} ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataFormatError(f"{path}:{i}: expected a JSON object per line ({what}), got "
                                  f"{type(row).__name__}")
        rows.append((i, row))
    return rows
