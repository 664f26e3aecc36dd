r"""Translation metrics: corpus BLEU in its two conventions, and chrF, through sacreBLEU.

BLEU (Papineni, Roukos, Ward & Zhu, "BLEU: a method for automatic evaluation of
machine translation", 2002) over a corpus of hypotheses :math:`h` with one
reference :math:`r` each:

.. math::
    \mathrm{BLEU} = 100 \cdot \mathrm{BP} \cdot
        \exp\Big(\tfrac14 \textstyle\sum_{n=1}^{4} \log p_n\Big), \qquad
    p_n = \frac{\sum_h \sum_{g \in n\text{-grams}(h)} \min(c_h(g), c_r(g))}
               {\sum_h |n\text{-grams}(h)|}, \qquad
    \mathrm{BP} = \min\big(1, e^{1 - R/H}\big)

with :math:`H` and :math:`R` the total hypothesis and reference lengths.  The
number depends on how the text is cut into tokens, so it comes in two
conventions here, and every result names its own:

* :func:`tokenized_bleu` — BLEU over the tokens as given, ``tokenize="none"``:
  for Multi30k the lowercased, Moses-tokenised ``tok/`` files.  This is the
  convention of the published Multi30k tables this project compares with: the
  BiGRU + Bahdanau attention (28.3), ConvS2S (34.1) and Transformer (36.5)
  figures of the bentrevett/pytorch-seq2seq tutorials (BLEU over lowercased
  tokens), and the OpenNMT-py LSTM figure for En→De (35.5), all on test2016;
  ``multi-bleu.perl`` computes the same number.
* :func:`sacre_bleu` — sacreBLEU's standard BLEU (Post, "A call for clarity in
  reporting BLEU scores", 2018): detokenised hypotheses against the untokenised
  references (``raw/``), sacreBLEU's own ``13a`` tokenisation, and a
  *signature* (``nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.6.0``)
  that records every choice.  A model of lowercased text is scored with
  ``lowercase=True`` (``case:lc``).

chrF (Popović, "chrF: character n-gram F-score for automatic MT evaluation",
2015) is the second number: character n-grams up to 6, :math:`\beta = 2`.

sacreBLEU is imported when a score is asked for: install it with
``pip install 'memnets[translation]'``.  A leaf: this module imports only
:mod:`memnets.errors` (and sacreBLEU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from memnets.errors import MemnetsError


class MissingDependency(MemnetsError, ImportError):
    """sacreBLEU is not installed."""


def _sacrebleu():
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError:
        raise MissingDependency("BLEU and chrF need the sacrebleu package: pip install "
                                "'memnets[translation]' (or pip install sacrebleu)") from None
    return BLEU, CHRF


@dataclass
class Score:
    """One corpus score.

    Attributes:
        name: ``"BLEU"`` or ``"chrF2"``.
        score: the score, 0-100.
        signature: sacreBLEU's signature of the settings.
        details: for BLEU, ``precisions`` (the four :math:`p_n`, percent), ``bp``,
            ``hyp_len`` and ``ref_len``.
    """

    name: str
    score: float
    signature: str
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.name} = {self.score:.2f} ({self.signature})"


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list, list]:
    hyps, refs = list(hypotheses), list(references)
    if len(hyps) != len(refs):
        raise ValueError(f"expected one reference per hypothesis, got {len(hyps)} hypotheses "
                         f"and {len(refs)} references")
    for name, seq in (("hypothesis", hyps), ("reference", refs)):
        for i, s in enumerate(seq):
            if not isinstance(s, str):
                raise ValueError(f"expected each {name} as a string, got "
                                 f"{type(s).__name__} at index {i}")
    return hyps, refs


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a",
                lowercase: bool = False) -> Score:
    """Corpus BLEU with sacreBLEU's settings ``tokenize`` and ``lowercase`` (one
    reference per hypothesis, exponential smoothing, sacreBLEU's default)."""
    BLEU, _ = _sacrebleu()
    hyps, refs = _check(hypotheses, references)
    # force: tokenised text is what "none" is for (sacreBLEU would warn about it)
    metric = BLEU(tokenize=tokenize, lowercase=lowercase, force=tokenize == "none")
    s = metric.corpus_score(hyps, [refs])
    return Score("BLEU", float(s.score), str(metric.get_signature()),
                 {"precisions": [float(p) for p in s.precisions], "bp": float(s.bp),
                  "hyp_len": int(s.sys_len), "ref_len": int(s.ref_len)})


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> Score:
    """BLEU over whitespace-separated tokens exactly as given (``tokenize="none"``):
    the lowercased tokenised convention of the published Multi30k tables."""
    return corpus_bleu(hypotheses, references, tokenize="none")


def sacre_bleu(hypotheses: Sequence[str], references: Sequence[str], *,
               lowercase: bool = False) -> Score:
    """sacreBLEU's standard BLEU: detokenised hypotheses against untokenised
    references, ``13a`` tokenisation; ``lowercase`` for a model of lowercased text."""
    return corpus_bleu(hypotheses, references, tokenize="13a", lowercase=lowercase)


def chrf(hypotheses: Sequence[str], references: Sequence[str], *,
         lowercase: bool = False) -> Score:
    """chrF2 (character 6-grams, no word n-grams, beta 2) of detokenised text."""
    _, CHRF = _sacrebleu()
    hyps, refs = _check(hypotheses, references)
    metric = CHRF(lowercase=lowercase)
    s = metric.corpus_score(hyps, [refs])
    return Score("chrF2", float(s.score), str(metric.get_signature()))
