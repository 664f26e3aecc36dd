"""Slot-filling evaluation: chunk F1 exactly as ``conlleval`` computes it, intent
accuracy and sentence accuracy.

``conlleval`` is the Perl script of the CoNLL-2000 shared task (Tjong Kim Sang &
Buchholz, "Introduction to the CoNLL-2000 shared task: chunking", 2000); the
slot-filling literature on ATIS reports its F1.  This module re-implements its
chunk logic, including how it reads ill-formed sequences:

* a tag is split at its first hyphen into a prefix and a type
  (``I-fromloc.city_name`` -> ``I`` and ``fromloc.city_name``); ``O`` has no type;
* an ``I-`` tag after ``O``, or after a tag of a different type, *starts* a
  chunk (it is not dropped, and it is not merged with what came before);
* a chunk is counted correct only if the gold and the predicted chunk start at
  the same token, end at the same token and have the same type;
* sentences are separated as by conlleval's blank line: every chunk ends at a
  sentence boundary.

The script's further prefixes ``E``, ``[``, ``]`` and ``.`` follow its rules
as well; the tests cover the ``B``/``I``/``O`` schemes (IOB1 and IOB2) that
slot-filling corpora use.  Imports nothing from torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-toloc.city_name"`` -> ``("B", "toloc.city_name")``; ``"O"`` -> ``("O", "")``."""
    prefix, sep, kind = tag.partition("-")
    return (prefix, kind) if sep else (tag, "")


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """True if a chunk ended between the previous token and this one (conlleval's rule)."""
    if prev_tag in ("B", "I") and tag in ("B", "O"):
        return True
    if prev_tag == "E" and tag in ("E", "I", "O"):
        return True
    if prev_tag not in ("O", ".") and prev_type != type_:
        return True
    return prev_tag in ("[", "]")


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """True if a chunk starts at this token (conlleval's rule)."""
    if tag == "B" and prev_tag in ("B", "I", "O"):
        return True
    if prev_tag in ("E", "O") and tag in ("E", "I"):
        return True
    if tag not in ("O", ".") and prev_type != type_:
        return True
    return tag in ("[", "]")


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks of one tag sequence as ``(type, first, last)`` (inclusive), read as
    conlleval reads them.

    >>> chunks(["O", "I-city", "I-city", "B-city", "I-date"])
    [('city', 1, 2), ('city', 3, 3), ('date', 4, 4)]
    """
    out = []
    prev_tag, prev_type, start = "O", "", None
    for i, t in enumerate([*tags, "O"]):  # the trailing "O" is the sentence boundary
        tag, type_ = split_tag(t)
        if start is not None and end_of_chunk(prev_tag, tag, prev_type, type_):
            out.append((prev_type, start, i - 1))
            start = None
        if start_of_chunk(prev_tag, tag, prev_type, type_):
            start = i
        prev_tag, prev_type = tag, type_
    return out


@dataclass
class ChunkScore:
    """Precision, recall and F1 of one chunk type (or of all), in percent."""

    correct: int
    found_gold: int
    found_pred: int

    @property
    def precision(self) -> float:
        return 100.0 * self.correct / self.found_pred if self.found_pred else 0.0

    @property
    def recall(self) -> float:
        return 100.0 * self.correct / self.found_gold if self.found_gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


@dataclass
class ConllEval:
    """Accumulates conlleval's counts over sentences.

    Example::

        ev = ConllEval()
        ev.add(gold_tags, predicted_tags)   # once per sentence
        ev.f1, ev.precision, ev.recall      # percent
        ev.by_type()["toloc.city_name"].f1
    """

    correct_chunks: Counter = field(default_factory=Counter)
    gold_chunks: Counter = field(default_factory=Counter)
    pred_chunks: Counter = field(default_factory=Counter)
    correct_tokens: int = 0
    tokens: int = 0

    def add(self, gold: Sequence[str], pred: Sequence[str]) -> None:
        """Score one sentence: ``gold`` and ``pred`` are its tags, one per token."""
        if len(gold) != len(pred):
            raise ValueError(
                f"expected as many predicted tags as gold tags, got {len(pred)} and {len(gold)}"
            )
        g, p = chunks(gold), chunks(pred)
        self.gold_chunks.update(c[0] for c in g)
        self.pred_chunks.update(c[0] for c in p)
        self.correct_chunks.update(c[0] for c in set(g) & set(p))
        # conlleval's token accuracy compares prefix and type, i.e. the whole tag
        self.correct_tokens += sum(split_tag(a) == split_tag(b) for a, b in zip(gold, pred))
        self.tokens += len(gold)

    def total(self) -> ChunkScore:
        return ChunkScore(
            sum(self.correct_chunks.values()),
            sum(self.gold_chunks.values()),
            sum(self.pred_chunks.values()),
        )

    @property
    def f1(self) -> float:
        return self.total().f1

    @property
    def precision(self) -> float:
        return self.total().precision

    @property
    def recall(self) -> float:
        return self.total().recall

    @property
    def accuracy(self) -> float:
        """Token accuracy in percent (conlleval's ``accuracy``)."""
        return 100.0 * self.correct_tokens / self.tokens if self.tokens else 0.0

    def by_type(self) -> dict[str, ChunkScore]:
        types = sorted(set(self.gold_chunks) | set(self.pred_chunks))
        return {
            t: ChunkScore(self.correct_chunks[t], self.gold_chunks[t], self.pred_chunks[t])
            for t in types
        }

    def report(self) -> str:
        """A summary laid out like conlleval's output."""
        tot = self.total()
        lines = [
            f"processed {self.tokens} tokens with {tot.found_gold} phrases; "
            f"found: {tot.found_pred} phrases; correct: {tot.correct}.",
            f"accuracy: {self.accuracy:6.2f}%; precision: {tot.precision:6.2f}%; "
            f"recall: {tot.recall:6.2f}%; FB1: {tot.f1:6.2f}",
        ]
        for t, s in self.by_type().items():
            lines.append(
                f"{t:>17}: precision: {s.precision:6.2f}%; recall: {s.recall:6.2f}%; "
                f"FB1: {s.f1:6.2f}  {s.found_pred}"
            )
        return "\n".join(lines)


def conll_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Chunk F1 (percent) over a corpus of sentences, as conlleval reports it."""
    if len(gold) != len(pred):
        raise ValueError(
            f"expected as many predicted sentences as gold sentences, got {len(pred)} "
            f"and {len(gold)}"
        )
    ev = ConllEval()
    for g, p in zip(gold, pred):
        ev.add(g, p)
    return ev.f1


def slot_filling_scores(
    gold_tags: Sequence[Sequence[str]],
    pred_tags: Sequence[Sequence[str]],
    gold_intents: Sequence[str] | None = None,
    pred_intents: Sequence[str] | None = None,
) -> dict[str, float]:
    """Slot F1 (conlleval), intent accuracy and sentence accuracy, in percent.

    A sentence is right when every tag and the intent are right (without intents,
    when every tag is right).  Returns ``slot_f1``, ``slot_precision``,
    ``slot_recall``, ``tag_accuracy``, ``sentence_accuracy`` and, with intents,
    ``intent_accuracy``.
    """
    n = len(gold_tags)
    if len(pred_tags) != n:
        raise ValueError(f"expected {n} predicted tag sequences, got {len(pred_tags)}")
    with_intents = gold_intents is not None
    if with_intents and (pred_intents is None or len(gold_intents) != n
                         or len(pred_intents) != n):
        got = None if pred_intents is None else len(pred_intents)
        raise ValueError(
            f"expected {n} gold and {n} predicted intents, got {len(gold_intents)} and {got}"
        )
    ev = ConllEval()
    right_sentences = right_intents = 0
    for i in range(n):
        ev.add(gold_tags[i], pred_tags[i])
        tags_ok = list(gold_tags[i]) == list(pred_tags[i])
        intent_ok = (not with_intents) or gold_intents[i] == pred_intents[i]
        right_intents += with_intents and intent_ok
        right_sentences += tags_ok and intent_ok
    tot = ev.total()
    out = {
        "slot_f1": tot.f1,
        "slot_precision": tot.precision,
        "slot_recall": tot.recall,
        "tag_accuracy": ev.accuracy,
        "sentence_accuracy": 100.0 * right_sentences / n if n else 0.0,
    }
    if with_intents:
        out["intent_accuracy"] = 100.0 * right_intents / n if n else 0.0
    return out
