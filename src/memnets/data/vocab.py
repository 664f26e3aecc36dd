"""A token vocabulary shared by the text applications.

Saved beside a run's weights as JSON, so a trained model can be rebuilt
without pickling.  This module imports nothing from torch.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PAD, UNK = "<pad>", "<unk>"


class Vocab:
    """Maps tokens to consecutive ids and back.

    Args:
        tokens: the tokens in id order; ``specials`` come first.
        specials: reserved tokens placed at the start (default ``<pad>`` = 0,
            ``<unk>`` = 1); pass ``()`` for a closed label set.
        unk: the token unknown tokens map to, or None to raise ``KeyError``
            naming the token (right for label sets, where an unseen label is an
            error in the data).
    """

    def __init__(
        self,
        tokens: Iterable[str] = (),
        *,
        specials: Iterable[str] = (PAD, UNK),
        unk: str | None = UNK,
    ) -> None:
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        for tok in [*specials, *tokens]:
            if tok not in self.stoi:
                self.stoi[tok] = len(self.itos)
                self.itos.append(tok)
        self.specials = list(specials)
        if unk is not None and unk not in self.stoi:
            raise ValueError(f"expected the unk token {unk!r} among the tokens, got none")
        self.unk = unk

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Iterable[str] = (PAD, UNK),
        unk: str | None = UNK,
    ) -> Vocab:
        """Count tokens; keep those seen at least ``min_freq`` times, most frequent first."""
        counts = Counter(tok for seq in sequences for tok in seq)
        kept = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                if c >= min_freq]
        if max_size is not None:
            kept = kept[:max_size]
        return cls(kept, specials=specials, unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        idx = self.stoi.get(token)
        if idx is not None:
            return idx
        if self.unk is None:
            raise KeyError(f"unknown token {token!r} (vocabulary of {len(self)} without unk)")
        return self.stoi[self.unk]

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    @property
    def unk_id(self) -> int:
        return self.stoi[self.unk]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def to_dict(self) -> dict:
        return {"tokens": self.itos, "specials": self.specials, "unk": self.unk}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        specials = d.get("specials", [])
        tokens = [t for t in d["tokens"] if t not in specials]
        vocab = cls(tokens, specials=specials, unk=d.get("unk"))
        if vocab.itos != d["tokens"]:
            raise ValueError("expected a vocabulary whose specials come first")
        return vocab

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        return cls.from_dict(json.loads(Path(path).read_text()))
