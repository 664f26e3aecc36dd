"""Images: reading any image file as RGB, writing PNG, and what the generated image
datasets share (the records of objects and captions, their folders on disk).

* :func:`read_image` reads a file with Pillow and returns ``(H, W, 3)`` uint8 RGB
  and a list of notes, one per change it made: another mode converted (grayscale,
  palette, RGBA, ...), an EXIF rotation applied, the first frame of several taken,
  another size resized (bilinear).  A missing or unreadable file is one
  :class:`~memnets.errors.DataError` line naming it.
* :func:`write_png` writes an array as PNG, the same bytes for the same array.
* :class:`SceneObject` (an object, its colour, shape and pixel box) and
  :class:`CaptionExample` (an image, its gold caption and which object each word
  names) are the records of :mod:`memnets.data.scenes` and
  :mod:`memnets.data.digit_strings`, which re-uses them.
* A generated dataset's folder holds ``<split>.jsonl`` (one image description per
  line, JSON with sorted keys) and ``MANIFEST.json`` (the generator, its version,
  the seed, the counts and the sha256 of every file):
  :func:`write_generated` writes them (each file to a temporary name first, the
  manifest last, so that a folder whose manifest matches is complete),
  :func:`manifest_matches` checks one, :func:`~memnets.data.text.read_json_lines`
  reads the lines back (a broken line is a ``<file>:<line>: expected ..., got ...`` error) and
  :func:`folder_writable` is the one test of whether a folder can be written
  into (tests replace it to simulate a read-only data folder).

Pixel coordinates: ``x`` runs right, ``y`` down; pixel ``(x, y)`` covers the
square ``[x, x + 1) x [y, y + 1)``, so a :data:`Box` ``(x0, y0, x1, y1)`` holds
the pixels ``x0 <= x < x1``, ``y0 <= y < y1``, and its centre is
``((x0 + x1) / 2, (y0 + y1) / 2)``.

This module is a leaf: it imports the standard library, numpy, Pillow and
:mod:`memnets.data.text` (file errors).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memnets.data.download import sha256_file
from memnets.data.text import DataFormatError, MissingFileError
from memnets.errors import DataError, shorten

#: A box of pixels ``(x0, y0, x1, y1)``, half-open: ``x0 <= x < x1``, ``y0 <= y < y1``.
Box = tuple[int, int, int, int]

MANIFEST = "MANIFEST.json"

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


# ---------------------------------------------------------------------- reading and writing


def read_image(path: str | os.PathLike, *, size: tuple[int, int] | None = None
               ) -> tuple[np.ndarray, list[str]]:
    """An image file as ``(H, W, 3)`` uint8 RGB, and a note for each change made to it.

    Conversions (each adds a note such as ``"converted L to RGB"``):

    * grayscale (``1``, ``L``), palette (``P``), CMYK, YCbCr, ...: Pillow's
      conversion to RGB;
    * with transparency (``RGBA``, ``LA``, a palette with a transparent colour):
      composited on black, the background of the generated datasets
      (``rgb * alpha / 255``), note ``"converted RGBA to RGB (composited on black)"``;
    * 16-bit grayscale (``I;16``, and ``I`` holding values above 255): divided
      by 257 (65535 becomes 255); 32-bit float (``F``) clipped to 0..255;
    * an EXIF orientation other than upright is applied; of an animation, the
      first frame is read.

    Args:
        path: the image file (any format Pillow reads: PNG, JPEG, GIF, BMP, ...).
        size: ``(H, W)``: an image of another size is resized to it (bilinear),
            with a note ``"resized 100x80 to 75x75 (width x height)"``.

    Raises:
        DataError: ``expected an image file at <path>, found none``, or
            ``<path>: expected an image file (PNG, JPEG, ...), got unreadable data
            (<reason>)``.
        ValueError: ``size`` is not two positive integers.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    if size is not None:
        if (len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int | np.integer)
                                  or s < 1 for s in size)):
            raise ValueError(f"expected size=(H, W), two positive integers, got {size!r}")
        size = (int(size[0]), int(size[1]))
    if not path.is_file():
        raise MissingFileError(f"expected an image file at {path}, found none")
    notes: list[str] = []
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            img.load()
            orientation = img.getexif().get(0x0112, 1)
            if orientation not in (None, 1):
                img = ImageOps.exif_transpose(img)
                notes.append(f"rotated by its EXIF orientation ({orientation})")
            image = _to_rgb(img, notes)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        reason = str(e) or type(e).__name__
        raise DataError(f"{path}: expected an image file (PNG, JPEG, ...), got unreadable data "
                        f"({reason[:200]})") from None
    if frames > 1:
        notes.append(f"read the first of {frames} frames")
    if size is not None and image.shape[:2] != size:
        h, w = image.shape[:2]
        resized = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        image = np.asarray(resized, dtype=np.uint8).copy()
        notes.append(f"resized {w}x{h} to {size[1]}x{size[0]} (width x height)")
    return image, notes


def _to_rgb(img, notes: list[str]) -> np.ndarray:
    """The loaded Pillow image as ``(H, W, 3)`` uint8, with a note unless it was RGB."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint32)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255  # on black, rounded
        notes.append(f"converted {mode} to RGB (composited on black)")
        return rgb.astype(np.uint8)
    if mode in _SIXTEEN_BIT or mode == "I":
        value = np.asarray(img).astype(np.int64)
        if mode in _SIXTEEN_BIT or value.max(initial=0) > 255:
            value = (value + 128) // 257
        gray = np.clip(value, 0, 255).astype(np.uint8)
    elif mode == "F":
        gray = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
    else:
        notes.append(f"converted {mode} to RGB")
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    notes.append(f"converted {mode} to RGB")
    return np.repeat(gray[..., None], 3, axis=2)


def check_image_array(image, what: str = "image") -> np.ndarray:
    """``image`` if it is a ``(H, W, 3)`` or ``(H, W)`` uint8 array, else ValueError."""
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8
            or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3)
            or 0 in image.shape):
        got = (f"shape {tuple(image.shape)} dtype {image.dtype}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise ValueError(f"expected {what} as a (H, W, 3) or (H, W) uint8 array, got {got}")
    return image


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``image`` (``(H, W, 3)`` RGB or ``(H, W)`` gray, uint8) as PNG; return the path.

    The same array gives the same bytes (Pillow's PNG writer stores no time
    stamp); the file is written under a temporary name and renamed into place,
    and missing parent folders are made.
    """
    from PIL import Image

    image = check_image_array(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(image)).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------- records


@dataclass(frozen=True)
class SceneObject:
    """One object of a generated image.

    Attributes:
        colour: its colour's name (``"red"``; ``"white"`` for a handwritten digit).
        shape: ``"square"``, ``"circle"`` or ``"triangle"``; a digit's word
            (``"3"``) in the digit strings.
        size: ``"small"`` or ``"large"`` in the shape captions, ``None`` elsewhere.
        centre: ``(x, y)`` in pixels, the centre of its box.
        box: the tight :data:`Box` of its drawn pixels.
    """

    colour: str
    shape: str
    size: str | None
    centre: tuple[float, float]
    box: Box


@dataclass(frozen=True)
class CaptionExample:
    """An image with its gold caption.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        words: the gold caption (``("a", "small", "red", "circle")``).
        objects: the objects of the image, in the order the caption names them
            (left to right).
        word_objects: per gold word, the index in ``objects`` of the object it
            names (the size, colour and shape words of an object's phrase; a digit
            word), else ``None`` (``"a"``, ``"left"``, ``"of"``).
    """

    image: np.ndarray
    words: tuple[str, ...]
    objects: tuple[SceneObject, ...]
    word_objects: tuple[int | None, ...]


def box_centre(box: Box) -> tuple[float, float]:
    """``((x0 + x1) / 2, (y0 + y1) / 2)``."""
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def boxes_overlap(a: Box, b: Box, gap: int = 0) -> bool:
    """Whether boxes ``a`` and ``b`` share a pixel, or come closer than ``gap`` pixels."""
    return (a[0] < b[2] + gap and b[0] < a[2] + gap
            and a[1] < b[3] + gap and b[1] < a[3] + gap)


# ---------------------------------------------------------------------- dataset folders


def folder_writable(folder: str | os.PathLike) -> bool:
    """Whether files can be created in ``folder`` (made if missing): a real test,
    creating and removing a temporary file, not a look at permission bits (which
    say nothing to root, or on a read-only mount)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".memnets-write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError:
        return False
    return True


def json_line(row: dict) -> str:
    """One JSONL line of ``row``: sorted keys, no spaces, ASCII (the same bytes every time)."""
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_generated(folder: str | os.PathLike, header: dict, rows: dict[str, Sequence[dict]]
                    ) -> Path:
    """Write a generated dataset: ``<folder>/<split>.jsonl`` for each split of ``rows``
    (one :func:`json_line` per row), then ``MANIFEST.json``; return the manifest's path.

    Args:
        folder: the dataset's folder (made if missing).
        header: what the manifest records besides the files: ``generator``,
            ``version``, ``seed``, ``counts`` (and anything a generator adds, such
            as the sha256 of its source data).
        rows: split -> the rows of its lines.

    The manifest holds ``header`` and ``files``: ``{"<split>.jsonl": {"lines": n,
    "sha256": ...}}``, with sorted keys, so the same rows give the same bytes.

    Raises:
        DataError: a file cannot be written (naming it).
    """
    folder = Path(folder)
    files = {}
    current = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split, split_rows in rows.items():
            current = folder / f"{split}.jsonl"
            data = "".join(json_line(r) + "\n" for r in split_rows).encode("ascii")
            _write_atomic(current, data)
            files[current.name] = {"lines": len(split_rows),
                                   "sha256": hashlib.sha256(data).hexdigest()}
        current = folder / MANIFEST
        manifest = {**header, "files": files}
        _write_atomic(current, (json.dumps(manifest, sort_keys=True, indent=1) + "\n").encode())
    except OSError as e:
        raise DataError(f"{current}: expected to write the generated data there, got "
                        f"{e.strerror or e}") from None
    return current


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The folder's ``MANIFEST.json`` as a dict, or ``None`` when missing or unreadable."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def manifest_matches(folder: str | os.PathLike, header: dict) -> bool:
    """Whether ``folder`` holds a complete generation described by ``header``: a
    manifest whose fields equal ``header``'s, and every file it lists present with
    its sha256."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None or any(manifest.get(k) != v for k, v in header.items()):
        return False
    files = manifest.get("files")
    if not isinstance(files, dict):
        return False
    for name, entry in files.items():
        path = folder / str(name)
        if not isinstance(entry, dict) or not path.is_file():
            return False
        try:
            if sha256_file(path) != entry.get("sha256"):
                return False
        except OSError:
            return False
    return True


class RowReader:
    """Checked access to the fields of one JSONL row; errors name ``<file>:<line>``.

    ``RowReader(path, line)(row, "colour", str)`` returns ``row["colour"]`` or raises
    :class:`~memnets.data.text.DataFormatError` saying what was expected and what came.
    """

    __slots__ = ("path", "line")

    def __init__(self, path: Path, line: int) -> None:
        self.path, self.line = path, line

    @property
    def where(self) -> str:
        """``<file>:<line>``."""
        return f"{self.path}:{self.line}"

    def fail(self, expected: str, got) -> DataFormatError:
        """The error for a field that is not what it should be."""
        return DataFormatError(f"{self.where}: expected {expected}, got {shorten(got, 60)}")

    def __call__(self, row, key: str, kind: type | tuple[type, ...],
                 check: Callable[[object], bool] | None = None, expected: str = ""):
        if not isinstance(row, dict):
            raise self.fail(f"a JSON object holding {key!r}", row)
        if key not in row:
            raise self.fail(f"a field {key!r}", f"an object with {sorted(row)}")
        value = row[key]
        bad_type = (not isinstance(value, kind)
                    or (isinstance(value, bool) and bool not in _as_tuple(kind)))
        if bad_type or (check is not None and not check(value)):
            names = "/".join(k.__name__ for k in _as_tuple(kind))
            raise self.fail(f"{key!r} to be {expected or names}", value)
        return value

    def box(self, row, key: str, width: int, height: int) -> Box:
        """A box ``[x0, y0, x1, y1]`` of integers inside a ``width x height`` image."""
        value = self(row, key, list,
                     lambda v: len(v) == 4 and all(type(c) is int for c in v),
                     "a box [x0, y0, x1, y1] of 4 integers")
        x0, y0, x1, y1 = value
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise self.fail(f"{key!r} to be a non-empty box inside the {width}x{height} image",
                            value)
        return (x0, y0, x1, y1)


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)
