r"""Decoding CTC outputs: greedy, and prefix beam search with an optional lexicon
and word n-gram language model.

CTC (Graves, Fernandez, Gomez & Schmidhuber, "Connectionist temporal
classification: labelling unsegmented sequence data with recurrent neural
networks", 2006) lets a network emit one symbol per frame from the token set
plus a *blank* :math:`\varnothing`; the many-to-one map :math:`\mathcal{B}`
first merges runs of the same symbol, then removes the blanks:

.. math::
    \mathcal{B}(\text{a a} \varnothing \text{a b b}) = \text{a a b}, \qquad
    p(y \mid x) = \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_t p_t(\pi_t \mid x)

**Why the blank.**  Frame labels read by "merge the runs" alone (trimming)
cannot write a token twice in a row: 好好好棒棒棒棒棒 trims to 好棒, and no frame
sequence trims to 好棒棒, because the two 棒 run together.  With the blank
between them, 好好∅棒棒∅棒 collapses to 好棒棒.  :func:`trim` and :func:`collapse`
are the two maps; ``tests/models/test_ctc_decoding.py`` checks, over every
frame sequence of a small length, that trimming never writes a repeated token
and collapsing does.

* :func:`greedy_decode` (best path): the most probable symbol of each frame,
  then :math:`\mathcal{B}`.  Not the most probable labelling in general.
* :func:`prefix_beam_search`: the labelling search of Graves (2012, thesis,
  section 7.5) in the form of Hannun et al. ("First-pass large vocabulary
  continuous speech recognition using bi-directional recurrent DNNs", 2014):
  each prefix :math:`\ell` keeps :math:`p_b(\ell)` and :math:`p_{nb}(\ell)`, the
  probability of the frames so far giving :math:`\ell` with the last frame a
  blank or not; at frame :math:`t`, with :math:`a` the last token of :math:`\ell`,

  .. math::
      \begin{aligned}
      p_b^{t}(\ell) &\mathrel{+}= \big(p_b^{t-1}(\ell) + p_{nb}^{t-1}(\ell)\big)\,
          p_t(\varnothing) \\
      p_{nb}^{t}(\ell) &\mathrel{+}= p_{nb}^{t-1}(\ell)\, p_t(a) \\
      p_{nb}^{t}(\ell c) &\mathrel{+}= \begin{cases}
          p_b^{t-1}(\ell)\, p_t(c) & c = a \\
          \big(p_b^{t-1}(\ell) + p_{nb}^{t-1}(\ell)\big)\, p_t(c) & c \ne a
          \end{cases}
      \end{aligned}

  and the ``beam_size`` prefixes of highest score survive.  The score of a
  prefix is :math:`\log(p_b + p_{nb}) + \alpha \log P_{LM}(\text{words}) +
  \beta |\text{words}|`; without pruning (a beam as large as the number of
  prefixes) the search is exact: every prefix's :math:`p_b + p_{nb}` is
  :math:`p(\ell \mid x)`, tested against enumerating every alignment.

**Words.**  With character tokens, ``word_delimiter`` is the id of the space: a
word ends at each delimiter and at the end of the utterance.  With word tokens
(``word_delimiter=None``) every token is a word.  A :class:`Lexicon` keeps only
prefixes whose current word is the beginning of a word in it (and whose ended
words are words in it); a :class:`NGramLM` scores each word as it ends, and
the end of the sentence.

This module may import torch and :mod:`memnets.errors`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from torch import Tensor

NEG_INF = float("-inf")


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


# ---------------------------------------------------------------------- the two maps


def trim(frames: Sequence) -> list:
    """Merge runs of equal frame labels: ``trim("好好好棒棒棒棒棒") == list("好棒")``.

    This is frame labelling without a blank: it cannot write a token twice in a row.
    """
    out = []
    for s in frames:
        if not out or s != out[-1]:
            out.append(s)
    return out


def collapse(frames: Sequence, blank=0) -> list:
    """CTC's :math:`\\mathcal{B}`: merge runs of equal symbols, then drop ``blank``.

    >>> "".join(collapse("好好-棒棒-棒", blank="-"))
    '好棒棒'
    >>> "".join(trim("好好好棒棒棒棒棒"))
    '好棒'
    """
    return [s for s in trim(frames) if s != blank]


def greedy_decode(log_probs: Tensor, lengths: Tensor | None = None, *, blank: int = 0
                  ) -> list[list[int]]:
    """Best-path decoding: the argmax symbol of every frame, collapsed.

    Shapes: ``log_probs`` ``(N, T, V)`` (or ``(T, V)`` for one utterance),
    ``lengths`` ``(N,)`` valid frames (default: all ``T``).  Returns one list of
    token ids per utterance.
    """
    if log_probs.dim() == 2:
        log_probs = log_probs[None]
    N, T, _ = log_probs.shape
    best = log_probs.argmax(-1).cpu()  # (N, T)
    lens = [T] * N if lengths is None else [int(n) for n in lengths]
    return [collapse(best[n, : lens[n]].tolist(), blank) for n in range(N)]


# ---------------------------------------------------------------------- constraints


class Lexicon:
    """The words a transcript may use, as token sequences, kept in a prefix tree.

    Args:
        words: each word as a sequence of token ids (characters, without the
            delimiter); with word tokens, each word is one id.
    """

    def __init__(self, words: Iterable[Sequence[int]]) -> None:
        self.prefixes: set[tuple[int, ...]] = {()}
        self.words: set[tuple[int, ...]] = set()
        for w in words:
            w = tuple(int(t) for t in w)
            if not w:
                continue
            self.words.add(w)
            self.prefixes.update(w[:k] for k in range(1, len(w) + 1))

    def allows_prefix(self, partial: tuple[int, ...]) -> bool:
        """Whether ``partial`` begins some word."""
        return partial in self.prefixes

    def __contains__(self, word) -> bool:
        return tuple(word) in self.words

    def __len__(self) -> int:
        return len(self.words)


class NGramLM:
    r"""A word n-gram language model with interpolated Witten-Bell smoothing
    (Witten & Bell, "The zero-frequency problem", 1991), trained on sentences.

    .. math::
        P(w \mid h) = \frac{c(h w) + N_{1+}(h \bullet)\, P(w \mid h')}
                           {c(h) + N_{1+}(h \bullet)}

    where :math:`h'` is :math:`h` without its oldest word, :math:`c(h\,\cdot)`
    counts in the training sentences (each padded with ``order - 1`` start
    symbols and one end symbol ``</s>``), :math:`N_{1+}(h \bullet)` the number
    of distinct words seen after :math:`h`; the recursion ends at the uniform
    distribution over the vocabulary plus ``</s>`` and one unknown word
    (so that every word has a probability).  A history never seen backs off
    to :math:`P(w \mid h')`.

    Args:
        sentences: each a sequence of words (any hashable: strings, token ids).
        order: n (1 = unigram).
    """

    END = "</s>"
    START = "<s>"

    def __init__(self, sentences: Iterable[Sequence], order: int = 2) -> None:
        if order < 1:
            raise ValueError(f"expected order >= 1, got {order}")
        self.order = order
        self.counts: list[Counter] = [Counter() for _ in range(order)]  # by history length
        self.context: list[Counter] = [Counter() for _ in range(order)]
        self.followers: list[dict] = [dict() for _ in range(order)]
        vocab = set()
        for sent in sentences:
            seq = [self.START] * (order - 1) + list(sent) + [self.END]
            vocab.update(sent)
            for i in range(order - 1, len(seq)):
                for k in range(order):  # history of k words
                    h = tuple(seq[i - k:i])
                    self.counts[k][(h, seq[i])] += 1
                    self.context[k][h] += 1
                    self.followers[k].setdefault(h, set()).add(seq[i])
        self.vocab = vocab
        self._uniform = 1.0 / (len(vocab) + 2)  # words, </s> and one unknown

    def prob(self, word, history: Sequence = ()) -> float:
        """:math:`P(w \\mid h)`, with ``history`` the words before (start symbols implied)."""
        n_h = self.order - 1
        h = tuple(([self.START] * n_h + list(history))[-n_h:]) if n_h else ()
        p = self._uniform
        for k in range(len(h) + 1):
            hk = h[len(h) - k:]  # the last k words of the history
            n = self.context[k].get(hk, 0)
            if n == 0:
                continue  # an unseen history: keep the lower order's estimate
            types = len(self.followers[k][hk])
            p = (self.counts[k].get((hk, word), 0) + types * p) / (n + types)
        return p

    def log_prob(self, word, history: Sequence = ()) -> float:
        """``log`` of :meth:`prob`."""
        return math.log(self.prob(word, history))


# ---------------------------------------------------------------------- beam search


class _Beam:
    __slots__ = ("pb", "pnb", "lm", "words", "partial")

    def __init__(self, pb, pnb, lm, words, partial):
        self.pb, self.pnb, self.lm, self.words, self.partial = pb, pnb, lm, words, partial


def _entry(beams: dict, prefix: tuple, lm_score: float, words: tuple, partial: tuple) -> _Beam:
    """``beams[prefix]``, made with no probability yet on first use."""
    e = beams.get(prefix)
    if e is None:
        e = beams[prefix] = _Beam(NEG_INF, NEG_INF, lm_score, words, partial)
    return e


def prefix_beam_search(
    log_probs: Tensor,
    *,
    beam_size: int = 8,
    blank: int = 0,
    word_delimiter: int | None = None,
    lexicon: Lexicon | None = None,
    lm: NGramLM | None = None,
    lm_weight: float = 0.5,
    word_bonus: float = 0.0,
    top_k: int | None = None,
) -> list[tuple[list[int], float]]:
    """CTC prefix beam search over one utterance (the module docstring gives the
    recursion and the score).

    Args:
        log_probs: ``(T, V)`` log probabilities (each row a log softmax).
        beam_size: prefixes kept after each frame.
        blank: the blank's id.
        word_delimiter: the id that ends a word (character tokens), or ``None``
            when every token is a word.
        lexicon: keep only prefixes spelling words of it (``None``: any).
        lm: a word language model over the words as token-id tuples
            (character tokens) or token ids (word tokens); ``None``: none.
        lm_weight: :math:`\\alpha`, the LM's weight.
        word_bonus: :math:`\\beta`, added per word (counters the LM's bias
            towards short transcripts).
        top_k: only the ``top_k`` most probable symbols of each frame extend
            prefixes (``None``: all; pruning makes the search inexact).

    Returns:
        up to ``beam_size`` ``(tokens, score)`` pairs, best first; the score is
        the log probability plus the LM terms.  A lexicon that no prefix can
        satisfy gives an empty list.
    """
    if log_probs.dim() != 2:
        raise ValueError(f"expected log_probs of shape (T, V), got {tuple(log_probs.shape)}")
    if beam_size < 1:
        raise ValueError(f"expected beam_size >= 1, got {beam_size}")
    lp = log_probs.detach().double().cpu()
    T, V = lp.shape
    rows = lp.tolist()
    words_mode = word_delimiter is None

    def word_key(w: tuple[int, ...]):
        return w[0] if words_mode else w

    def end_word(beam: _Beam, word: tuple[int, ...]):
        """(lm score, words) after ``word`` ends; None if the lexicon refuses it."""
        if lexicon is not None and word not in lexicon:
            return None
        lm_score = beam.lm
        if lm is not None:
            lm_score += lm_weight * lm.log_prob(word_key(word), beam.words) + word_bonus
        else:
            lm_score += word_bonus
        return lm_score, beam.words + (word_key(word),)

    beams: dict[tuple[int, ...], _Beam] = {(): _Beam(0.0, NEG_INF, 0.0, (), ())}
    for t in range(T):
        row = rows[t]
        symbols = range(V)
        if top_k is not None and top_k < V:
            symbols = sorted(range(V), key=row.__getitem__, reverse=True)[:top_k]
        new: dict[tuple[int, ...], _Beam] = {}

        for prefix, b in beams.items():
            total = _logadd(b.pb, b.pnb)
            # blank: the prefix stays, now ending in a blank
            e = _entry(new, prefix, b.lm, b.words, b.partial)
            e.pb = _logadd(e.pb, total + row[blank])
            last = prefix[-1] if prefix else None
            for c in symbols:
                if c == blank:
                    continue
                p = row[c]
                if c == last:  # the same symbol again: merged unless a blank came between
                    e = _entry(new, prefix, b.lm, b.words, b.partial)
                    e.pnb = _logadd(e.pnb, b.pnb + p)
                    from_prev = b.pb + p
                else:
                    from_prev = total + p
                if from_prev == NEG_INF:
                    continue
                ext = prefix + (c,)
                if ext in new:
                    e = new[ext]
                    e.pnb = _logadd(e.pnb, from_prev)
                    continue
                # a new prefix: its words and LM score (a function of the prefix only)
                lm_score, words, partial = b.lm, b.words, b.partial
                if words_mode:
                    ended = end_word(b, (c,))
                    if ended is None:
                        continue
                    lm_score, words = ended
                elif c == word_delimiter:
                    if partial:
                        ended = end_word(b, partial)
                        if ended is None:
                            continue
                        lm_score, words = ended
                    partial = ()
                else:
                    partial = partial + (c,)
                    if lexicon is not None and not lexicon.allows_prefix(partial):
                        continue
                e = _entry(new, ext, lm_score, words, partial)
                e.pnb = _logadd(e.pnb, from_prev)
        ranked = sorted(new.items(), key=lambda kv: _logadd(kv[1].pb, kv[1].pnb) + kv[1].lm,
                        reverse=True)
        beams = dict(ranked[:beam_size])
    # the end of the utterance ends the last word, and the sentence
    finals = []
    for prefix, b in beams.items():
        score, words = b.lm, b.words
        if not words_mode and b.partial:
            ended = end_word(b, b.partial)
            if ended is None:
                continue
            score, words = ended
        if lm is not None:
            score += lm_weight * lm.log_prob(NGramLM.END, words)
        finals.append((list(prefix), _logadd(b.pb, b.pnb) + score))
    finals.sort(key=lambda x: x[1], reverse=True)
    return finals


def beam_decode(log_probs: Tensor, lengths: Tensor | None = None, **options
                ) -> list[list[int]]:
    """:func:`prefix_beam_search` on each utterance of ``(N, T, V)`` log probabilities
    (``lengths``: valid frames); the best prefix of each (empty if none is allowed)."""
    if log_probs.dim() == 2:
        log_probs = log_probs[None]
    N, T, _ = log_probs.shape
    lens = [T] * N if lengths is None else [int(n) for n in lengths]
    out = []
    for n in range(N):
        found = prefix_beam_search(log_probs[n, : lens[n]], **options)
        out.append(found[0][0] if found else [])
    return out
