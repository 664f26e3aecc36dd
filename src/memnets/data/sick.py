"""Sentence pairs: SICK (Marelli et al., "A SICK cure for the evaluation of
compositional distributional semantic models", 2014) and a generic pair format
for SNLI, MultiNLI and any other corpus of premise / hypothesis / label.

Three readers, one per format, all returning :class:`PairExample` rows:

* :func:`read_sick` -- the full ``SICK.txt`` release: a tab-separated file with
  a header; the columns are found by *name* (``sentence_A``, ``sentence_B``,
  ``entailment_label``, ``relatedness_score``, ``SemEval_set``, and ``pair_ID``
  when present), and the ``SemEval_set`` column splits it: ``TRAIN`` -> train,
  ``TRIAL`` -> dev, ``TEST`` -> test.
* :func:`read_pairs_jsonl` -- JSON lines, one object per pair, as SNLI and
  MultiNLI ship them (``sentence1``, ``sentence2``, ``gold_label``).
* :func:`read_pairs_tsv` -- ``premise<TAB>hypothesis<TAB>label[<TAB>score]`` per
  line, or a TSV whose first line names its columns (SNLI's and MultiNLI's
  ``.txt`` files, with ``sentence1``, ``sentence2``, ``gold_label``).

The column (or key) names each field is looked for under are in
:data:`COLUMN_NAMES`.  Labels are ``entailment``, ``neutral`` and
``contradiction`` in any case; a pair whose label is ``-`` (SNLI's "no gold
label": the annotators did not agree) is skipped and counted in
:attr:`PairFile.skipped`.  A relatedness score, where there is one, is a number
in [1, 5].  Any other malformed row raises :class:`PairFormatError` (a
:class:`~memnets.errors.DataError` and a ``ValueError``) naming the file and
line, what was expected and what came.

Tokenisation is :func:`tokenize`, the same for every format and for the
sentences typed at ``memnets predict``.

This module imports only the standard library and :mod:`memnets.errors` (and its
sibling data modules).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from memnets.data.text import DataFormatError, read_lines
from memnets.errors import shorten

# The public copy of SICK.txt (see ../shared/data/README.md, section 9) and its sha256.
SICK_URL = ("https://raw.githubusercontent.com/kkalouli/SICK-processing/"
            "0848f4aec60870122a4ca18de08ba0e25f6f9a75/SICK.txt")
SICK_SHA256 = "1539c2d059809b5bd40694e26d8121cc85b6b496f91c7b40f2fc83bbd7dcd957"

LABELS = ("entailment", "neutral", "contradiction")  # class ids 0, 1, 2
NO_LABEL = "-"  # SNLI: no gold label (the pair is skipped)
SCORE_RANGE = (1.0, 5.0)
SICK_SPLITS = {"TRAIN": "train", "TRIAL": "dev", "TEST": "test"}
SICK_COLUMNS = ("sentence_A", "sentence_B", "entailment_label", "relatedness_score",
                "SemEval_set")
FORMATS = ("sick", "tsv", "jsonl")

# field -> the names it goes by, in the order looked for (JSON keys and TSV headers)
COLUMN_NAMES = {
    "premise": ("premise", "sentence1", "sentence_A"),
    "hypothesis": ("hypothesis", "sentence2", "sentence_B"),
    "label": ("label", "gold_label", "entailment_label"),
    "score": ("score", "relatedness_score"),
    "id": ("id", "pairID", "pair_ID"),
}


class PairFormatError(DataFormatError):
    """A malformed row of a sentence-pair file; the message names the file and line."""


@dataclass(frozen=True)
class PairExample:
    """One sentence pair.

    Attributes:
        premise, hypothesis: the two sentences' tokens (see :func:`tokenize`).
        label: ``entailment``, ``neutral`` or ``contradiction``.
        score: the relatedness score in [1, 5], or ``None`` when the corpus has none.
        pair_id: the corpus' id of the pair (``""`` when it gives none).
    """

    premise: tuple[str, ...]
    hypothesis: tuple[str, ...]
    label: str
    score: float | None = None
    pair_id: str = ""


@dataclass
class PairFile:
    """What :func:`read_pairs_jsonl` and :func:`read_pairs_tsv` read from a file:
    the pairs, and how many rows were skipped for having no gold label (``-``)."""

    examples: list[PairExample]
    skipped: int = 0


# One token: a word with its inner hyphens (t-shirt), the negation clitic n't,
# another clitic ('s, 're), or any other single character that is not a space.
_TOKEN = re.compile(r"\w+(?=n't\b)|n't\b|'\w+|\w+(?:-\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into words and punctuation.

    A word keeps its inner hyphens (``t-shirt``); ``n't`` and other clitics after
    an apostrophe are split off as in the Penn Treebank (``isn't`` -> ``is n't``,
    ``man's`` -> ``man 's``), so that every negation shares one token; every other
    character that is neither a letter, a digit nor a space is a token of its own
    (``dog,`` -> ``dog ,``).  SICK has little punctuation (commas, a few full
    stops); SNLI has more.

    >>> tokenize("A man isn't playing, a woman's t-shirt is red.")
    ['a', 'man', 'is', "n't", 'playing', ',', 'a', 'woman', "'s", 't-shirt', 'is', 'red', '.']
    """
    return _TOKEN.findall(text.lower())


def parse_label(value, where: str) -> str | None:
    """``value`` as one of :data:`LABELS` (any case), ``None`` for ``-``; raise
    :class:`PairFormatError` naming ``where`` otherwise."""
    if isinstance(value, str):
        label = value.strip().lower()
        if label == NO_LABEL:
            return None
        if label in LABELS:
            return label
    raise PairFormatError(f"{where}: expected a label {', '.join(LABELS)} (or '-' for none), "
                          f"got {shorten(value, 40)}")


def parse_score(value, where: str) -> float:
    """``value`` as a relatedness score in [1, 5]; raise :class:`PairFormatError`
    naming ``where`` otherwise."""
    try:
        score = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        score = math.nan
    lo, hi = SCORE_RANGE
    if not lo <= score <= hi:  # NaN fails too
        raise PairFormatError(f"{where}: expected a relatedness score, a number in "
                              f"[{lo:g}, {hi:g}], got {shorten(value, 40)}")
    return score


def _sentence(text, field: str, where: str) -> tuple[str, ...]:
    tokens = tokenize(text) if isinstance(text, str) else []
    if not tokens:
        raise PairFormatError(f"{where}: expected a {field} sentence of at least one word, "
                              f"got {shorten(text, 40)}")
    return tuple(tokens)


def _find_columns(names: list[str], fields: tuple[str, ...]) -> dict[str, int]:
    """The index in ``names`` of each field of ``fields`` found under one of its
    :data:`COLUMN_NAMES` (first name listed first); fields not found are left out."""
    found = {}
    for field in fields:
        for name in COLUMN_NAMES[field]:
            if name in names:
                found[field] = names.index(name)
                break
    return found


def read_sick(path: str | Path) -> dict[str, list[PairExample]]:
    """The pairs of a ``SICK.txt`` file by split: ``{"train": [...], "dev": [...],
    "test": [...]}`` (``SemEval_set`` TRAIN, TRIAL, TEST), in file order.

    The header must name the columns of :data:`SICK_COLUMNS` (in any order,
    others allowed).  CRLF or LF endings, a last line with or without one.

    Raises:
        PairFormatError: a header without those columns, or a row with the wrong
            number of fields, an empty sentence, an unknown label or set, or a
            score outside [1, 5] (``file:line: expected ..., got ...``).
        MissingFileError: no file at ``path``.
    """
    path = Path(path)
    lines = read_lines(path, "the SICK file (SICK.txt)")
    if not lines:
        raise PairFormatError(f"{path}: expected a header line naming the columns "
                              f"{', '.join(SICK_COLUMNS)}, got an empty file")
    header = lines[0].split("\t")
    missing = [c for c in SICK_COLUMNS if c not in header]
    if missing:
        raise PairFormatError(f"{path}:1: expected a header naming the columns "
                              f"{', '.join(SICK_COLUMNS)}, got {shorten(lines[0], 60)} "
                              f"(no {', '.join(missing)})")
    col = {c: header.index(c) for c in SICK_COLUMNS}
    id_col = header.index("pair_ID") if "pair_ID" in header else None
    out: dict[str, list[PairExample]] = {s: [] for s in SICK_SPLITS.values()}
    for i, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        fields = line.split("\t")
        if len(fields) != len(header):
            raise PairFormatError(f"{where}: expected {len(header)} tab-separated fields (as "
                                  f"in the header), got {len(fields)}")
        split = SICK_SPLITS.get(fields[col["SemEval_set"]].strip())
        if split is None:
            raise PairFormatError(f"{where}: expected SemEval_set {', '.join(SICK_SPLITS)}, "
                                  f"got {shorten(fields[col['SemEval_set']], 40)}")
        label = parse_label(fields[col["entailment_label"]], where)
        if label is None:
            raise PairFormatError(f"{where}: expected an entailment_label "
                                  f"{', '.join(LABELS)}, got '-'")
        out[split].append(PairExample(
            _sentence(fields[col["sentence_A"]], "sentence_A", where),
            _sentence(fields[col["sentence_B"]], "sentence_B", where),
            label, parse_score(fields[col["relatedness_score"]], where),
            fields[id_col].strip() if id_col is not None else ""))
    return out


def read_pairs_jsonl(path: str | Path) -> PairFile:
    """Pairs of a JSON-lines file: one object per non-blank line with a premise,
    a hypothesis and a label under one of the names of :data:`COLUMN_NAMES`
    (SNLI's ``sentence1``, ``sentence2``, ``gold_label``), and optionally a
    ``score`` and an ``id``.  Rows labelled ``-`` are skipped and counted.

    Raises:
        PairFormatError: a line that is not a JSON object, lacks a field, or has
            an empty sentence, an unknown label or a score outside [1, 5].
    """
    path = Path(path)
    examples, skipped = [], 0
    for i, line in enumerate(read_lines(path, "a JSON-lines file of sentence pairs"), 1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise PairFormatError(f"{where}: expected a JSON object, got invalid JSON "
                                  f"({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise PairFormatError(f"{where}: expected a JSON object, got {shorten(row, 40)}")
        values = {}
        for field in ("premise", "hypothesis", "label", "score", "id"):
            key = next((k for k in COLUMN_NAMES[field] if k in row), None)
            if key is None and field in ("premise", "hypothesis", "label"):
                raise PairFormatError(
                    f"{where}: expected a {field} under one of the keys "
                    f"{', '.join(COLUMN_NAMES[field])}, got the keys {shorten(sorted(row), 60)}")
            values[field] = None if key is None else row[key]
        label = parse_label(values["label"], where)
        if label is None:
            skipped += 1
            continue
        score = None if values["score"] is None else parse_score(values["score"], where)
        examples.append(PairExample(
            _sentence(values["premise"], "premise", where),
            _sentence(values["hypothesis"], "hypothesis", where), label, score,
            "" if values["id"] is None else str(values["id"])))
    return PairFile(examples, skipped)


def read_pairs_tsv(path: str | Path) -> PairFile:
    """Pairs of a tab-separated file, one per non-blank line.

    Either positional, ``premise<TAB>hypothesis<TAB>label[<TAB>score]``, or with a
    first line naming the columns: it is a header when it holds a premise and a
    hypothesis name of :data:`COLUMN_NAMES` (SNLI's and MultiNLI's ``.txt``:
    ``gold_label ... sentence1 sentence2 ...``); a label column is then required,
    a score column optional, other columns ignored.  Rows labelled ``-`` are
    skipped and counted.

    Raises:
        PairFormatError: a row with too few (or, positional, too many) fields, an
            empty sentence, an unknown label or a score outside [1, 5]; a header
            without a label column.
    """
    path = Path(path)
    lines = read_lines(path, "a TSV file of sentence pairs")
    first = next((i for i, s in enumerate(lines) if s.strip()), None)
    columns: dict[str, int] | None = None
    start = 0
    if first is not None:
        names = [n.strip() for n in lines[first].split("\t")]
        found = _find_columns(names, ("premise", "hypothesis", "label", "score", "id"))
        if "premise" in found and "hypothesis" in found:
            if "label" not in found:
                raise PairFormatError(
                    f"{path}:{first + 1}: expected a header with a label column (one of "
                    f"{', '.join(COLUMN_NAMES['label'])}), got {shorten(lines[first], 60)}")
            columns, start = found, first + 1
    width = None if columns is None else max(columns.values()) + 1
    examples, skipped = [], 0
    for i, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        fields = line.split("\t")
        if columns is None:
            if len(fields) not in (3, 4):
                raise PairFormatError(f"{where}: expected 3 or 4 tab-separated fields "
                                      f"(premise, hypothesis, label[, score]), got "
                                      f"{len(fields)}")
            values = dict(zip(("premise", "hypothesis", "label", "score"), fields))
        else:
            if len(fields) < width:
                raise PairFormatError(f"{where}: expected at least {width} tab-separated "
                                      f"fields (as the header names), got {len(fields)}")
            values = {f: fields[k] for f, k in columns.items()}
        label = parse_label(values["label"], where)
        if label is None:
            skipped += 1
            continue
        score = values.get("score")
        score = None if score is None or not score.strip() else parse_score(score, where)
        examples.append(PairExample(
            _sentence(values["premise"], "premise", where),
            _sentence(values["hypothesis"], "hypothesis", where), label, score,
            values.get("id", "").strip()))
    return PairFile(examples, skipped)


def read_pairs(path: str | Path, fmt: str) -> PairFile:
    """Read one split file of the generic pair format ``fmt`` (``tsv`` or ``jsonl``)."""
    if fmt == "jsonl":
        return read_pairs_jsonl(path)
    if fmt == "tsv":
        return read_pairs_tsv(path)
    raise ValueError(f"expected a pair-file format tsv or jsonl, got {fmt!r}")
