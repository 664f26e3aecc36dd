"""Character-level text for language modelling (Tiny Shakespeare by default).

Any UTF-8 text file works.  The text is split by position, without
shuffling: the first 90 % of the characters are ``train``, the next 5 %
``valid`` and the last 5 % ``test`` (Tiny Shakespeare has no official split;
char-rnn uses the first 90 % / last 10 % as train / validation, and we cut that
last 10 % in two so that a test set exists).  The vocabulary is every
character of the whole file, sorted, so that all three splits are covered.
This module imports torch and :mod:`memnets.data` only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from memnets.data.ptb import Corpus
from memnets.data.text import DataFormatError, read_text
from memnets.data.vocab import Vocab

DEFAULT_SPLIT = (0.9, 0.05, 0.05)
SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/"
                   "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt")
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def split_text(text: str, split: tuple[float, float, float] = DEFAULT_SPLIT) -> dict[str, str]:
    """Cut ``text`` into consecutive ``train``, ``valid``, ``test`` parts by fractions."""
    if len(split) != 3 or any(f < 0 for f in split) or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"expected three non-negative fractions summing to 1, got {split}")
    n = len(text)
    a = int(round(n * split[0]))
    b = int(round(n * (split[0] + split[1])))
    return {"train": text[:a], "valid": text[a:b], "test": text[b:]}


def load_chars(
    path: str | Path,
    *,
    split: tuple[float, float, float] = DEFAULT_SPLIT,
    vocab: Vocab | None = None,
) -> Corpus:
    """Read a text file as character ids, split by :func:`split_text`.

    The vocabulary (no specials) is the sorted set of the file's characters
    unless ``vocab`` is given; then a character outside it raises
    :class:`~memnets.data.text.DataFormatError` (a ``DataError`` and a
    ``ValueError``) naming the character and the file.  A missing file, one that
    is not UTF-8 or one of fewer than 100 characters raises a ``DataError``
    naming it (and the line of the first byte that is not UTF-8).
    """
    path = Path(path)
    text = read_text(path, "a text file")
    if len(text) < 100:
        raise DataFormatError(f"expected at least 100 characters in {path}, got {len(text)}")
    if vocab is None:
        vocab = Vocab(sorted(set(text)), specials=(), unk=None)
    else:
        missing = sorted(set(text) - set(vocab.stoi))
        if missing:
            raise DataFormatError(f"{path}: characters {missing[:10]!r} are not in the "
                                  f"vocabulary of {len(vocab)} characters")
    parts = split_text(text, split)
    return Corpus(vocab, {s: torch.tensor(vocab.encode(t), dtype=torch.long)
                          for s, t in parts.items()})
