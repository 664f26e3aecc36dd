r"""Parallel corpora for translation: Multi30k's two layouts, sentence pairs checked
line by line, vocabularies with BOS/EOS, subword units, length filtering and
detokenisation.

Multi30k task 1 (Elliott, Frank, Sima'an & Specia, "Multi30K: multilingual
English-German image descriptions", 2016) ships each split as one file per
language, parallel line by line, in two layouts under ``<data>/multi30k``:

* ``raw/{name}.{lang}.gz`` — the captions as written (cased, untokenised), gzipped;
* ``tok/{name}.lc.norm.tok.{lang}`` — the official preprocessed text: lowercased,
  punctuation-normalised, Moses-tokenised (``&apos;`` and ``&quot;`` escaped).

``name`` is ``train`` (29000 pairs), ``val`` (1014), ``test_2016_flickr`` (1000),
``test_2017_flickr`` (1000) or ``test_2017_mscoco`` (461).  :func:`read_parallel`
reads the two sides of a split and refuses files whose line counts differ (the
message names both files and both counts).

Tokens: in the ``tok`` layout a line's tokens are its whitespace-separated
words; optional subword units (:class:`SubwordModel`, SentencePiece — Kudo &
Richardson, "SentencePiece: a simple and language independent subword tokenizer
and detokenizer for neural text processing", 2018) split them further.  The
``raw`` layout is read through subword units only: untokenised text has no
useful word boundaries of its own, and SentencePiece's pieces give the text back
exactly.  :func:`detokenize` turns ``tok``-layout tokens back into plain text (for
sacreBLEU).

This module imports the standard library and :mod:`memnets.data` only;
``sentencepiece`` is imported when subword units are asked for.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from memnets.data.text import DataFormatError, MissingFileError
from memnets.data.vocab import PAD, UNK, Vocab
from memnets.errors import DataError, shorten

BOS, EOS = "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3 of every translation vocabulary

LAYOUTS = ("tok", "raw")
LANGUAGES = ("de", "en")
# the engine's splits -> Multi30k file names; any of TEST_SETS may be the test split
SPLIT_FILES = {"train": "train", "dev": "val"}
TEST_SETS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")

# The official repository at a fixed commit (the files of ../shared/data/multi30k).
MULTI30K_COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"
MULTI30K_URL = ("https://raw.githubusercontent.com/multi30k/dataset/"
                f"{MULTI30K_COMMIT}/data/task1/" + "{rel}")
# sha256 of each file (the sums of ../shared/data/multi30k/sha256sums)
_SUMS = """
9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8 raw/test_2016_flickr.de.gz
611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9 raw/test_2016_flickr.en.gz
a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee raw/test_2017_flickr.de.gz
76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074 raw/test_2017_flickr.en.gz
799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338 raw/test_2017_mscoco.de.gz
aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58 raw/test_2017_mscoco.en.gz
726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6 raw/train.de.gz
d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f raw/train.en.gz
f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a raw/val.de.gz
14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28 raw/val.en.gz
c6a33d39d48f9f510de147651316cd9d918e09ad0219df734a2f16b6baccacc4 tok/test_2016_flickr.lc.norm.tok.de
5b7f32627cf99eced828311b955dae9800bb52bc8b91cf8b6526829e605b29d2 tok/test_2016_flickr.lc.norm.tok.en
02067e4a9402786a4fcb8c1b6f4307e4a5073ced64800abead5273b54f5f31f6 tok/test_2017_flickr.lc.norm.tok.de
c9d1dfd7a26add989382e534af235af9f0f658b2a30e7eb0efdaf142496ee54f tok/test_2017_flickr.lc.norm.tok.en
e2825990b8a4e5289d2cdba801d57c187810bab9b4f5d87a30c35800a0d871b6 tok/test_2017_mscoco.lc.norm.tok.de
fe69ae004d71c42ead0301e70c57de5b1b6b5fb7f52210d42b22801e98e656f3 tok/test_2017_mscoco.lc.norm.tok.en
cb5a23529b65ec2061f1dc446192a9c37382b63cc75f81a0be59d34894b3a505 tok/train.lc.norm.tok.de
08925f8e0572bcd5a006702fc5fe20e2d77c6917d4eebd576fc20de6693c2119 tok/train.lc.norm.tok.en
97232bd273eceb7207f689527386a97e4be2616b18ada47576bdaf96c8ae1f00 tok/val.lc.norm.tok.de
46573ce391ae227f1c72f873392436a20ef18e0a6d518098cfbd70b77c8572ec tok/val.lc.norm.tok.en
"""
MULTI30K_SHA256 = {rel: digest for digest, rel in (ln.split() for ln in _SUMS.split("\n") if ln)}


def multi30k_file(layout: str, name: str, lang: str) -> str:
    """The path of one Multi30k file relative to the dataset folder:
    ``multi30k_file("tok", "val", "de") == "tok/val.lc.norm.tok.de"``."""
    if layout not in LAYOUTS:
        raise ValueError(f"expected a Multi30k layout among {LAYOUTS}, got {layout!r}")
    return f"raw/{name}.{lang}.gz" if layout == "raw" else f"tok/{name}.lc.norm.tok.{lang}"


def read_corpus_lines(path: str | Path, what: str = "a corpus file, one sentence per line"
                      ) -> list[str]:
    """The lines of a text file, gunzipped when its name ends in ``.gz``, without their
    endings (``\\n`` or ``\\r\\n``); checked UTF-8.

    Raises:
        MissingFileError: the file does not exist.
        DataFormatError: ``FILE:LINE: expected UTF-8 text, ...`` or a gzip file that
            cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"expected {what} at {path}, found none")
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFormatError(f"{path}: expected {what} (gzip), got unreadable bytes ({e})"
                              ) from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as e:
            raise DataFormatError(f"{path}:{i}: expected UTF-8 text, got "
                                  f"{shorten(raw[e.start:e.end])} at byte {e.start + 1} "
                                  f"of the line") from None
    return out


def read_parallel(source: str | Path, target: str | Path) -> list[tuple[str, str]]:
    """The sentence pairs of two parallel files (line *k* of one translates line *k*
    of the other).

    Raises:
        DataFormatError: the files hold different numbers of lines, e.g.
            ``expected parallel files with the same number of lines, got 29000 in
            .../train.de.gz and 28999 in .../train.en.gz``.
    """
    src, tgt = read_corpus_lines(source), read_corpus_lines(target)
    if len(src) != len(tgt):
        raise DataFormatError(f"expected parallel files with the same number of lines, got "
                              f"{len(src)} in {source} and {len(tgt)} in {target}")
    return list(zip(src, tgt))


def filter_by_length(pairs: Sequence[tuple[list[str], list[str]]], max_length: int | None,
                     min_length: int = 1) -> list[int]:
    """Indices of the token pairs whose sides both hold ``min_length`` to
    ``max_length`` tokens (``None``: no upper bound)."""
    keep = []
    for i, (s, t) in enumerate(pairs):
        lo = min(len(s), len(t))
        hi = max(len(s), len(t))
        if lo >= min_length and (max_length is None or hi <= max_length):
            keep.append(i)
    return keep


def build_vocab(sentences: Iterable[Sequence[str]], *, min_freq: int = 1,
                max_size: int | None = None) -> Vocab:
    """A vocabulary of the tokens seen at least ``min_freq`` times (most frequent
    first), after the specials ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2 (BOS), ``</s>`` 3
    (EOS); unknown tokens read as ``<unk>``."""
    return Vocab.build(sentences, min_freq=min_freq, max_size=max_size, specials=SPECIALS)


# ---------------------------------------------------------------------- subwords


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:  # pragma: no cover - depends on the installation
        raise DataError("subword units need the sentencepiece package: pip install "
                        "'memnets[translation]' (or pip install sentencepiece)") from None
    return sentencepiece


class SubwordModel:
    """Subword units learnt from the training text with SentencePiece, and back.

    ``kind`` is ``bpe`` (byte-pair encoding: Sennrich, Haddow & Birch, "Neural
    machine translation of rare words with subword units", 2016) or ``unigram``
    (Kudo, "Subword regularization: improving neural network translation models
    with multiple subword candidates", 2018).  The model lives in memory and in
    :meth:`to_dict` (its bytes in base64), so that a run keeps it in its
    ``task.json`` and never reads the training text again.

    Args:
        proto: a serialised SentencePiece model.
    """

    def __init__(self, proto: bytes) -> None:
        spm = _sentencepiece()
        self.proto = bytes(proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.proto)

    @classmethod
    def train(cls, lines: Iterable[str], *, vocab_size: int, kind: str = "bpe",
              character_coverage: float = 1.0) -> SubwordModel:
        """Learn ``vocab_size`` pieces from ``lines`` (one thread, so that the result
        depends on the text alone)."""
        if kind not in ("bpe", "unigram"):
            raise ValueError(f"expected subword kind 'bpe' or 'unigram', got {kind!r}")
        spm = _sentencepiece()
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter([line for line in lines if line.strip()]),
                model_writer=out, vocab_size=vocab_size, model_type=kind,
                character_coverage=character_coverage, num_threads=1,
                hard_vocab_limit=False, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
                minloglevel=2)
        except RuntimeError as e:
            raise DataError(f"SentencePiece could not learn {vocab_size} {kind} pieces from "
                            f"the training text: {e}") from None
        return cls(out.getvalue())

    def encode(self, text: str) -> list[str]:
        """The pieces of ``text`` (a word-initial piece starts with ``▁``)."""
        return list(self._sp.encode(text, out_type=str))

    def decode(self, pieces: Sequence[str]) -> str:
        """The text of ``pieces`` (the inverse of :meth:`encode` on text it covers)."""
        return self._sp.decode_pieces(list(pieces))

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    def to_dict(self) -> dict:
        return {"sentencepiece": base64.b64encode(self.proto).decode("ascii")}

    @classmethod
    def from_dict(cls, d: dict) -> SubwordModel:
        return cls(base64.b64decode(d["sentencepiece"]))


# ---------------------------------------------------------------------- detokenising

_UNESCAPE = {"&apos;": "'", "&quot;": '"', "&amp;": "&", "&lt;": "<", "&gt;": ">",
             "&#91;": "[", "&#93;": "]", "&#124;": "|"}
_NO_SPACE_BEFORE = set(".,!?;:%)]}") | {"...", "'s", "'re", "'ll", "'ve", "'m", "'d", "n't"}
_NO_SPACE_AFTER = set("([{$")
_CLITIC = re.compile(r"^'[a-z]+$|^n't$")


def unescape(token: str) -> str:
    """A Moses-escaped token as text: ``&apos;s`` -> ``'s``, ``&quot;`` -> ``"``."""
    for k, v in _UNESCAPE.items():
        token = token.replace(k, v)
    return token


def detokenize(tokens: Sequence[str]) -> str:
    """Moses-tokenised words (Multi30k's ``tok`` layout) joined back into plain text,
    for sacreBLEU against the ``raw`` references.

    Escapes are undone; punctuation ``. , ! ? ; : % ) ] }`` and clitics (``'s``,
    ``n't``) attach to the word before them, ``( [ { $`` to the word after, and
    straight double quotes alternately open (attach right) and close (attach
    left).  Casing is not restored: compare lowercased (``lowercase=True``).

    >>> detokenize("a man &apos;s dog , running ( fast ) .".split())
    "a man's dog, running (fast)."
    >>> detokenize('er sagt &quot; hallo &quot; .'.split())
    'er sagt "hallo".'
    """
    out: list[str] = []
    glue_next = False
    quote_open = False
    for raw in tokens:
        tok = unescape(raw)
        attach_left = tok in _NO_SPACE_BEFORE or bool(_CLITIC.match(tok))
        attach_right = tok in _NO_SPACE_AFTER
        if tok == '"':
            attach_left, attach_right = quote_open, not quote_open
            quote_open = not quote_open
        if out and (attach_left or glue_next):
            out[-1] += tok
        else:
            out.append(tok)
        glue_next = attach_right
    return " ".join(out)
