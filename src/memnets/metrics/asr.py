r"""Speech recognition scores: word and character error rates, sentence error rate.

The error count of a hypothesis against its reference is their Levenshtein
distance: the fewest substitutions :math:`S`, deletions :math:`D` and
insertions :math:`I` that turn the reference (:math:`N` units) into the
hypothesis, by the dynamic programme

.. math::
    d_{i,0} = i, \quad d_{0,j} = j, \quad
    d_{i,j} = \min\big(d_{i-1,j} + 1,\; d_{i,j-1} + 1,\;
              d_{i-1,j-1} + [r_i \ne h_j]\big)

and, over a corpus, :math:`\mathrm{WER} = \sum (S + D + I) / \sum N` on words
(text split at blanks), :math:`\mathrm{CER}` the same on characters (the words
joined by single spaces, the space counted as a character, as ``jiwer`` counts
it), and the sentence error rate the fraction of utterances whose hypothesis
is not exactly the reference (word for word).  All are fractions (1.0 = 100%);
WER and CER can exceed 1 when the hypotheses insert much.  An empty reference
counts its hypothesis's length as errors over 0 units; a corpus of empty
references with empty hypotheses scores 0.

This module is a leaf: it imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class ErrorCounts:
    """Edit operations summed over utterances (additive: ``a + b``).

    Attributes:
        substitutions, deletions, insertions: the operations.
        hits: units of the references matched exactly.
        units: units (words or characters) of the references.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def errors(self) -> int:
        """S + D + I."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def units(self) -> int:
        """Reference length: S + D + hits."""
        return self.substitutions + self.deletions + self.hits

    def rate(self) -> float:
        """errors / units (0 when both are 0, ``inf`` for errors over no units)."""
        if self.units == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.units

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.substitutions + other.substitutions,
                           self.deletions + other.deletions,
                           self.insertions + other.insertions, self.hits + other.hits)


def align(ref: Sequence, hyp: Sequence) -> ErrorCounts:
    """The fewest edits from ``ref`` to ``hyp`` (the module docstring's programme),
    split into substitutions, deletions and insertions; of the minimal
    alignments, the one with the most hits, then the most substitutions."""
    R, H = len(ref), len(hyp)
    # each cell: (cost, -hits, -subs, subs, dels, ins) so that min() breaks ties as stated
    prev = [(j, 0, 0, 0, 0, j) for j in range(H + 1)]
    for i in range(1, R + 1):
        cur = [(i, 0, 0, 0, i, 0)]
        for j in range(1, H + 1):
            c, nh, ns, s, d, n = prev[j - 1]
            if ref[i - 1] == hyp[j - 1]:
                diag = (c, nh - 1, ns, s, d, n)
            else:
                diag = (c + 1, nh, ns - 1, s + 1, d, n)
            c, nh, ns, s, d, n = prev[j]
            up = (c + 1, nh, ns, s, d + 1, n)  # ref[i-1] deleted
            c, nh, ns, s, d, n = cur[j - 1]
            left = (c + 1, nh, ns, s, d, n + 1)  # hyp[j-1] inserted
            cur.append(min(diag, up, left))
        prev = cur
    _, nh, _, s, d, n = prev[H]
    return ErrorCounts(s, d, n, -nh)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance between two sequences (words, characters, token ids)."""
    return align(ref, hyp).errors


def words(text: str) -> list[str]:
    """The words of a transcript (split at blanks)."""
    return text.split()


def chars(text: str) -> list[str]:
    """The characters of a transcript, its words joined by single spaces."""
    return list(" ".join(text.split()))


def _pairs(references: Sequence[str], hypotheses: Sequence[str]):
    if isinstance(references, str) or isinstance(hypotheses, str):
        references, hypotheses = [references], [hypotheses]
    if len(references) != len(hypotheses):
        raise ValueError(f"expected as many hypotheses as references, got "
                         f"{len(hypotheses)} and {len(references)}")
    return zip(references, hypotheses)


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    """Word edits summed over the utterances."""
    total = ErrorCounts()
    for r, h in _pairs(references, hypotheses):
        total = total + align(words(r), words(h))
    return total


def char_errors(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    """Character edits summed over the utterances."""
    total = ErrorCounts()
    for r, h in _pairs(references, hypotheses):
        total = total + align(chars(r), chars(h))
    return total


def wer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Word error rate (a fraction) of the hypotheses against the references."""
    return word_errors(references, hypotheses).rate()


def cer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Character error rate (a fraction)."""
    return char_errors(references, hypotheses).rate()


def sentence_error_rate(references: Sequence[str] | str,
                        hypotheses: Sequence[str] | str) -> float:
    """Fraction of utterances whose hypothesis differs from the reference, word for word."""
    pairs = list(_pairs(references, hypotheses))
    if not pairs:
        return 0.0
    return sum(words(r) != words(h) for r, h in pairs) / len(pairs)
