"""Slot-filling corpora (ATIS and any other corpus in the same two formats).

Two on-disk formats are read; nothing about ATIS is hard-coded (tags, intents
and vocabularies all come from the training data):

* **seq** (the layout of the 4478/500/893 ATIS split): a folder per split
  holding three line-aligned files: ``seq.in`` (space-separated words),
  ``seq.out`` (one BIO tag per word) and ``label`` (the intent; optional).
* **iob** (the layout of the 4978/893 split): one utterance per line,
  ``BOS w1 ... wn EOS<TAB>O t1 ... tn intent``; the ``O`` aligns with ``BOS``
  and the intent takes the place of ``EOS``.  Without the trailing intent
  (``... tn O``) the line holds tags only.

Multi-intent labels such as ``atis_flight#atis_airfare`` stay single classes.
Tags must be ``O``, ``B-<slot>`` or ``I-<slot>``.  Ill-formed files raise
:class:`SlotFormatError` (a :class:`~memnets.errors.DataError` and a
``ValueError``) naming the file and line; a missing file raises
:class:`~memnets.data.text.MissingFileError` naming it.

:class:`SlotVocabs` maps words (rare training words -> ``<unk>``, optional digit
normalisation), characters, tags and intents to ids; :func:`collate` pads a
batch.  Imports torch only for :func:`collate`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from memnets.data.text import DataFormatError, read_lines
from memnets.data.vocab import PAD, UNK, Vocab
from memnets.errors import shorten

# Public addresses of the two ATIS snapshots in ``../shared/data`` and the
# sha256 of every file (as in the ``sha256sums`` there).
SLOTGATED_URL = (
    "https://raw.githubusercontent.com/MiuLab/SlotGated-SLU/"
    "61f0307c729b1fad479ef1de94aa5ac5dee601b0/data/atis"
)
SLOTGATED_SHA256 = {
    "test/label": "ce4bfe6590d9498e1078f30b4137d3e8b3e94277b444b26360c0bf2e9e282761",
    "test/seq.in": "4b2119fc59c37f9398c6605db435d4f467505009e6ee3e5af04fed09f39dc397",
    "test/seq.out": "a4690d6bceadc06876d1ff99bc401744aa981cb321e598ae12a3859d7be53254",
    "train/label": "d0a771547665eecbdf9f96ea015ef07d1f6ee9f063e861020dafabb3c2a04377",
    "train/seq.in": "3a670980841b21ab39088b2595efc17d487cdc45769c075a3e5f9458bba28c7f",
    "train/seq.out": "14c7131bd66562f797dbd7189bc7358f0cf354c6afb0785a9ab973c35b58f34c",
    "valid/label": "06957cfe6fdffac84f8280bc3a1f8ca85c85631b363817aa4543aac611f8addf",
    "valid/seq.in": "c7435b96e7948393608c34819628e863c5338f11ca68e8f896d2cc041d8e17f8",
    "valid/seq.out": "83ccff3e36f83a993f8e5b5b82adf3256076f234abda4d784051381d7ac76922",
}
JOINTSLU_URL = (
    "https://raw.githubusercontent.com/yvchen/JointSLU/"
    "fad79658f343e98c1737fcfe563e76069b62f064/data"
)
JOINTSLU_SHA256 = {
    "atis.test.w-intent.iob": "744bc272bce1c6a828df7b5580b47a4aee2ad2019e5d2376c348bea1c15f0d6e",
    "atis.train.w-intent.iob": "e0a1e3de978345b4fbfa4f2eefa8bb974460f0f7f38330e179ccaecc80d68178",
}

FORMATS = ("seq", "iob")

# corpus folder (under the data root) -> (base address, {relative file: sha256})
KNOWN_CORPORA = {
    "atis_slotgated": (SLOTGATED_URL, SLOTGATED_SHA256),
    "atis_jointslu": (JOINTSLU_URL, JOINTSLU_SHA256),
}


def fetch_corpus(folder: str | Path, *, base_url: str | None = None) -> list[Path]:
    """Download the missing files of a known corpus into ``folder``.

    ``folder``'s name picks the corpus in :data:`KNOWN_CORPORA`; ``base_url``
    replaces its public address (tests use a local server).  Every file is
    checked against its sha256.  Returns the files downloaded.
    """
    from memnets.data.download import download

    folder = Path(folder)
    if folder.name not in KNOWN_CORPORA:
        raise ValueError(
            f"expected a corpus folder named one of {sorted(KNOWN_CORPORA)}, got {folder.name!r}"
        )
    url, sums = KNOWN_CORPORA[folder.name]
    url = (base_url or url).rstrip("/")
    fetched = []
    for rel, sha in sums.items():
        dest = folder / rel
        if not dest.exists():
            fetched.append(download(f"{url}/{rel}", dest, sha256=sha))
    return fetched


@dataclass(frozen=True)
class Utterance:
    """One utterance: its words, one tag per word, and its intent (or None)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    intent: str | None = None


class SlotFormatError(DataFormatError):
    """A malformed line of a slot-filling file; the message names the file and line."""


_TAG = re.compile(r"O|[BI]-\S+")


def _lines(path: Path) -> list[str]:
    return read_lines(path, "a data file")


def _check_tags(tags: Sequence[str], where: str) -> None:
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise SlotFormatError(
                f"{where}: expected tags O, B-<slot> or I-<slot>, got {shorten(tag)}")


def read_seq(folder: str | Path) -> list[Utterance]:
    """Read a split in the **seq** layout: ``folder/{seq.in, seq.out[, label]}``."""
    folder = Path(folder)
    words = _lines(folder / "seq.in")
    tags = _lines(folder / "seq.out")
    label_path = folder / "label"
    labels = _lines(label_path) if label_path.exists() else None
    if len(tags) != len(words):
        raise SlotFormatError(
            f"{folder / 'seq.out'}: expected {len(words)} lines (as in seq.in), got {len(tags)}"
        )
    if labels is not None and len(labels) != len(words):
        raise SlotFormatError(
            f"{label_path}: expected {len(words)} lines (as in seq.in), got {len(labels)}"
        )
    out = []
    for i, (w_line, t_line) in enumerate(zip(words, tags)):
        w, t = w_line.split(), t_line.split()
        if not w:
            raise SlotFormatError(
                f"{folder / 'seq.in'}:{i + 1}: expected words, got an empty line")
        if len(t) != len(w):
            raise SlotFormatError(
                f"{folder / 'seq.out'}:{i + 1}: expected {len(w)} tags (one per word of "
                f"seq.in), got {len(t)}"
            )
        _check_tags(t, f"{folder / 'seq.out'}:{i + 1}")
        intent = None
        if labels is not None:
            intent = labels[i].strip()
            if not intent or len(intent.split()) != 1:
                raise SlotFormatError(
                    f"{label_path}:{i + 1}: expected one intent label, got {shorten(labels[i])}"
                )
        out.append(Utterance(tuple(w), tuple(t), intent))
    return out


def read_iob(path: str | Path) -> list[Utterance]:
    """Read a file in the **iob** layout: ``BOS w1 .. wn EOS<TAB>O t1 .. tn intent``."""
    path = Path(path)
    out = []
    for i, line in enumerate(_lines(path)):
        where = f"{path}:{i + 1}"
        if not line.strip():
            continue
        if line.count("\t") != 1:
            raise SlotFormatError(
                f"{where}: expected 'BOS words EOS<TAB>O tags intent', got "
                f"{line.count(chr(9))} tabs"
            )
        left, right = line.split("\t")
        w, t = left.split(), right.split()
        if len(w) < 3 or w[0] != "BOS" or w[-1] != "EOS":
            raise SlotFormatError(
                f"{where}: expected words between BOS and EOS, got {shorten(left)}")
        if len(t) != len(w):
            raise SlotFormatError(
                f"{where}: expected {len(w)} labels (O, one tag per word, intent), got {len(t)}"
            )
        if t[0] != "O":
            raise SlotFormatError(f"{where}: expected the label O for BOS, got {shorten(t[0])}")
        _check_tags(t[1:-1], where)
        intent = t[-1]
        out.append(Utterance(tuple(w[1:-1]), tuple(t[1:-1]), None if intent == "O" else intent))
    return out


def read_split(root: str | Path, split: str, fmt: str) -> list[Utterance]:
    """Read ``split`` of a corpus: the folder ``root/split`` (seq) or the file
    ``root/split`` (iob), e.g. ``read_split(d, "atis.train.w-intent.iob", "iob")``."""
    if fmt not in FORMATS:
        raise ValueError(f"expected data format one of {FORMATS}, got {fmt!r}")
    path = Path(root) / split
    return read_seq(path) if fmt == "seq" else read_iob(path)


def split_off(
    data: Sequence[Utterance], fraction: float, seed: int = 0
) -> tuple[list[Utterance], list[Utterance]]:
    """Hold out ``fraction`` of ``data`` (shuffled with ``seed``) as a development set."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"expected a held-out fraction in (0, 1), got {fraction}")
    idx = list(range(len(data)))
    random.Random(seed).shuffle(idx)
    n_dev = max(1, round(fraction * len(data)))
    dev = sorted(idx[:n_dev])
    keep = sorted(idx[n_dev:])
    return [data[i] for i in keep], [data[i] for i in dev]


_DIGIT = re.compile(r"\d")


def normalize_word(word: str, *, lowercase: bool = True, digits: bool = False) -> str:
    """Lower-case ``word`` and, with ``digits``, write every digit as ``0``
    (``"1110"`` -> ``"0000"``), so numbers of one shape share an embedding."""
    if lowercase:
        word = word.lower()
    return _DIGIT.sub("0", word) if digits else word


@dataclass
class SlotVocabs:
    """The vocabularies of a slot-filling model, all built from training data.

    Attributes:
        words: ``<pad>``, ``<unk>``, then the words seen at least ``min_freq``
            times in training (after normalisation).
        chars: ``<pad>``, ``<unk>``, then every training character.
        tags: the training tags (closed set, no specials).
        intents: the training intents (closed set), or None for tags-only data.
        lowercase, digits: the word normalisation applied before lookup.
    """

    words: Vocab
    chars: Vocab
    tags: Vocab
    intents: Vocab | None
    lowercase: bool = True
    digits: bool = False

    @classmethod
    def build(
        cls,
        train: Sequence[Utterance],
        *,
        min_freq: int = 1,
        lowercase: bool = True,
        digits: bool = False,
    ) -> SlotVocabs:
        if not train:
            raise ValueError("expected training utterances to build vocabularies from, got none")
        norm = [[normalize_word(w, lowercase=lowercase, digits=digits) for w in u.words]
                for u in train]
        words = Vocab.build(norm, min_freq=min_freq)
        chars = Vocab.build([list(w) for u in train for w in u.words])
        tags = Vocab(sorted({t for u in train for t in u.tags}), specials=(), unk=None)
        intents = None
        if any(u.intent is not None for u in train):
            intents = Vocab(sorted({u.intent for u in train if u.intent is not None}),
                            specials=(), unk=None)
        return cls(words, chars, tags, intents, lowercase, digits)

    def word_ids(self, words: Sequence[str]) -> list[int]:
        return self.words.encode(
            normalize_word(w, lowercase=self.lowercase, digits=self.digits) for w in words
        )

    def char_ids(self, word: str) -> list[int]:
        return self.chars.encode(word)

    def tag_id(self, tag: str) -> int:
        """The tag's id, or -100 (ignored by the loss) for a tag unseen in training."""
        return self.tags.stoi.get(tag, -100)

    def intent_id(self, intent: str | None) -> int:
        """The intent's id, or -100 for an intent unseen in training (or none)."""
        if self.intents is None or intent is None:
            return -100
        return self.intents.stoi.get(intent, -100)

    def to_dict(self) -> dict:
        return {
            "words": self.words.to_dict(),
            "chars": self.chars.to_dict(),
            "tags": self.tags.to_dict(),
            "intents": None if self.intents is None else self.intents.to_dict(),
            "lowercase": self.lowercase,
            "digits": self.digits,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SlotVocabs:
        return cls(
            Vocab.from_dict(d["words"]),
            Vocab.from_dict(d["chars"]),
            Vocab.from_dict(d["tags"]),
            None if d.get("intents") is None else Vocab.from_dict(d["intents"]),
            d.get("lowercase", True),
            d.get("digits", False),
        )


@dataclass
class SlotBatch:
    """A padded batch (N = batch, L = longest utterance, C = longest word).

    ``words`` ``(N, L)`` (0 = pad), ``chars`` ``(N, L, C)`` (0 = pad),
    ``lengths`` ``(N,)``, ``tags`` ``(N, L)`` and ``intents`` ``(N,)`` with
    -100 where there is nothing to learn (padding, or a label unseen in
    training), and the utterances themselves for scoring with strings.
    """

    words: torch.Tensor
    chars: torch.Tensor
    lengths: torch.Tensor
    tags: torch.Tensor
    intents: torch.Tensor
    utterances: list[Utterance]

    def to(self, device) -> SlotBatch:
        return SlotBatch(
            self.words.to(device), self.chars.to(device), self.lengths,
            self.tags.to(device), self.intents.to(device), self.utterances,
        )


def collate(utterances: Sequence[Utterance], vocabs: SlotVocabs) -> SlotBatch:
    """Encode and pad a list of utterances."""
    n = len(utterances)
    if n == 0:
        raise ValueError("expected at least one utterance in a batch, got none")
    L = max(len(u.words) for u in utterances)
    C = max(len(w) for u in utterances for w in u.words)
    words = torch.zeros(n, L, dtype=torch.long)
    chars = torch.zeros(n, L, C, dtype=torch.long)
    tags = torch.full((n, L), -100, dtype=torch.long)
    intents = torch.full((n,), -100, dtype=torch.long)
    for i, u in enumerate(utterances):
        k = len(u.words)
        words[i, :k] = torch.tensor(vocabs.word_ids(u.words))
        for j, w in enumerate(u.words):
            chars[i, j, : len(w)] = torch.tensor(vocabs.char_ids(w))
        tags[i, :k] = torch.tensor([vocabs.tag_id(t) for t in u.tags])
        intents[i] = vocabs.intent_id(u.intent)
    lengths = torch.tensor([len(u.words) for u in utterances], dtype=torch.long)
    return SlotBatch(words, chars, lengths, tags, intents, list(utterances))


__all__ = [
    "FORMATS", "JOINTSLU_SHA256", "JOINTSLU_URL", "KNOWN_CORPORA", "PAD", "SLOTGATED_SHA256",
    "SLOTGATED_URL", "SlotBatch", "SlotFormatError", "SlotVocabs", "UNK", "Utterance", "collate",
    "fetch_corpus", "normalize_word", "read_iob", "read_seq", "read_split", "split_off",
]
