"""Language-modelling tasks with truncated BPTT: ``language_model`` (words, Penn
Treebank) and ``char_language_model`` (characters of any text file, Tiny
Shakespeare by default).

Both are stateful (see ``docs/engine.md``): a split is cut into ``batch_size``
batch-major streams (:func:`memnets.data.ptb.batchify`), each batch is the next
``bptt`` steps of every stream, and the trainer carries the detached state from
one batch to the next.  Under DDP each process takes a contiguous block of
stream rows.

Metrics: ``loss`` (nats per token), ``perplexity`` (words; the main metric) and
the bits per token: ``bits_per_word`` for words, ``bpc`` (bits per character;
the main metric of the character task) for characters.
``memnets predict RUN_DIR "the company said it expects"`` prints a text's
perplexity (one text per argument, ``--file`` line or standard input line).
``memnets generate RUN_DIR --prime "ROMEO:" --length 300 --temperature 0.8``
samples text from a trained model.

Recipes: ``ptb-small`` (Zaremba et al. 2014's small model; runs on a CPU),
``ptb-medium`` (their medium model; a GPU recipe), ``ptb-clip-*`` (the
tanh RNN / LSTM clipping experiment), ``shakespeare-char``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.batching import batchify, bptt_segments, num_segments
from memnets.data.chars import DEFAULT_SPLIT, SHAKESPEARE_SHA256, SHAKESPEARE_URL, load_chars
from memnets.data.download import download
from memnets.data.paths import DataError
from memnets.data.ptb import PTB_SHA256, PTB_URL, load_ptb
from memnets.data.vocab import Vocab
from memnets.metrics.lm import bits_per_token, perplexity
from memnets.models.language_model import RNNLanguageModel
from memnets.tasks import register_task
from memnets.tasks.base import StepOutput, Task, model_device

_SPLIT_NAMES = {"train": "train", "dev": "valid", "test": "test"}
MAX_GENERATE_LENGTH = 100_000  # tokens of one ``memnets generate``; sampling is one step a token


@dataclass
class LMDataConfig(DataConfig):
    """The ``data`` section of a language-model recipe.

    Args:
        bptt: time steps per batch (truncation length).
        path: (characters) the text file, absolute or relative to the data
            root; default ``tinyshakespeare/input.txt``.  (Words) the folder
            holding ``ptb.{train,valid,test}.txt``; default ``ptb``.
        split: (characters) fractions of the text for train / dev / test,
            taken in order.
        level: (Penn Treebank) ``word``, or ``char`` for its characters with
            ``_`` between words (:func:`memnets.data.ptb.read_chars`).
        download: fetch the default dataset from its public address (sha256
            checked) when its files are missing.
    """

    batch_size: int = 20
    bptt: int = 35
    path: str | None = None
    split: list[float] = field(default_factory=lambda: list(DEFAULT_SPLIT))
    level: Literal["word", "char"] = "word"
    download: bool = True

    RANGES: ClassVar[dict[str, str]] = {"bptt": ">= 1", "split": "[0, 1]"}

    def validate(self) -> None:
        if self.bptt < 1:
            raise ValueError(f"expected bptt >= 1, got {self.bptt}")
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"expected split of three fractions summing to 1, got {self.split}")


@dataclass
class LMModelConfig(ModelConfig):
    """The ``model`` section of a language-model recipe.

    The fields besides ``cell``, ``hidden_size``, ``num_layers``, ``dropout`` and
    ``cell_options``:

    Args:
        embedding_size: size of the input vectors (``None``: ``hidden_size``).
        tie_weights: share the input embedding with the softmax weights.
        variational: time-locked dropout masks and recurrent dropout
            (Gal & Ghahramani 2016) instead of Zaremba et al.'s per-step dropout.
        init_range: draw every parameter from U(-init_range, init_range)
            (``None``: the cells' own initialisation).
        loss: ``token`` minimises the mean cross-entropy per token;
            ``sequence`` sums it over the ``bptt`` steps and averages over the
            batch, as Zaremba et al.'s code does (the gradient is ``bptt``
            times larger, which their lr 1 and clipping at 5 assume).
            Reported metrics are per token either way.
    """

    embedding_size: int | None = None
    tie_weights: bool = False
    variational: bool = False
    init_range: float | None = None
    loss: Literal["token", "sequence"] = "token"

    RANGES: ClassVar[dict[str, str]] = {"embedding_size": ">= 1", "init_range": "> 0"}


class _LMTask(Task):
    """Shared machinery of the word and character tasks."""

    DataConfig = LMDataConfig
    ModelConfig = LMModelConfig
    size_unit = "tok"
    stateful = True
    higher_is_better = False
    predict_input = "a text in quotes"

    def __init__(self, data: LMDataConfig, data_dir: Path | None = None) -> None:
        super().__init__(data, data_dir)
        self.vocab: Vocab | None = None
        self._splits: dict[str, torch.Tensor] | None = None
        self._loss = "token"

    # --- data ---

    def _read(self, vocab: Vocab | None):
        raise NotImplementedError

    def setup(self) -> None:
        corpus = self._read(None)
        self.vocab, self._splits = corpus.vocab, corpus.splits

    def state_dict(self) -> dict:
        return {"vocab": self.vocab.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.vocab = Vocab.from_dict(state["vocab"])

    def ids(self, split: str) -> torch.Tensor:
        """The ``(T,)`` ids of ``train``, ``dev`` or ``test``."""
        if self._splits is None:
            self._splits = self._read(self.vocab).splits
        return self._splits[_SPLIT_NAMES[split]]

    def _streams(self, split: str, batch_size: int, rank: int, world_size: int):
        streams = batchify(self.ids(split), batch_size)  # (N, W), the global batch
        if world_size > 1:
            per = batch_size // world_size
            streams = streams[rank * per:(rank + 1) * per]
        return streams

    def batches(self, split, *, batch_size, epoch=0, seed=0, shuffle=False, rank=0,
                world_size=1, start=0, num_workers=0):
        # Streams are read in order (shuffling would break the carried state).
        streams = self._streams(split, batch_size, rank, world_size)
        for k, (x, y) in enumerate(bptt_segments(streams, self.config.bptt)):
            if k >= start:
                yield x, y

    def num_batches(self, split: str, *, batch_size: int) -> int:
        return num_segments(batchify(self.ids(split), batch_size), self.config.bptt)

    size_name = "tokens"  # what ids() counts, for messages

    def _source(self, split: str) -> str:
        """Where ``split``'s text comes from, for messages."""
        raise NotImplementedError

    def check_splits(self, splits: tuple[str, ...]) -> None:
        """Raise :class:`DataError` naming the file of any of ``splits`` that is missing
        or too short for one batch (two tokens per stream, ``data.batch_size``
        streams for train, ``data.eval_batch_size`` for the others), before
        anything trains.

        Reads the text as :meth:`setup` does, downloading the default dataset
        first when it is missing and ``data.download`` is true.
        """
        for split in splits:
            if split not in _SPLIT_NAMES:
                raise DataError(f"expected a split among {sorted(_SPLIT_NAMES)}, got {split!r}")
            c = self.config
            bs = c.batch_size if split == "train" else (c.eval_batch_size or c.batch_size)
            n = self.ids(split).numel()
            if n < 2 * bs:
                raise DataError(f"{self._source(split)}: expected at least {2 * bs} "
                                f"{self.size_name} (one batch of {bs} streams), got {n}")

    # --- model ---

    def build_model(self, config: LMModelConfig) -> nn.Module:
        self._loss = config.loss
        return RNNLanguageModel(
            len(self.vocab), config.embedding_size or config.hidden_size, config.hidden_size,
            config.num_layers, cell=config.cell, dropout=config.dropout,
            variational=config.variational, tie_weights=config.tie_weights,
            init_range=config.init_range, block=config.block,
            block_options=config.block_options, **config.cell_options)

    def step(self, model, batch, state=None) -> StepOutput:
        device = model_device(model)
        x, y = (t.to(device) for t in batch)  # (N, L) each
        logits, state = model(x, state)  # (N, L, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        objective = loss * x.shape[1] if self._loss == "sequence" and model.training else loss
        n = y.numel()
        return StepOutput(loss=objective, size=n, state=state,
                          stats={"loss": loss.detach() * n, "count": n})

    @property
    def char_level(self) -> bool:
        """Whether the tokens are characters (else words)."""
        raise NotImplementedError

    @property
    def bits_metric(self) -> str:
        """The name of the bits-per-token metric: ``bpc`` for characters,
        ``bits_per_word`` for words."""
        return "bpc" if self.char_level else "bits_per_word"

    def metrics(self, stats: dict[str, float]) -> dict[str, float]:
        nll = stats["loss"] / max(stats["count"], 1)
        return {"loss": nll, "perplexity": perplexity(nll),
                self.bits_metric: bits_per_token(nll)}

    # --- use ---

    def _encode_prime(self, prime: str) -> list[int]:
        raise NotImplementedError

    def _join(self, tokens: list[str]) -> str:
        raise NotImplementedError

    def generate(self, model, args: list[str]) -> str:
        p = argparse.ArgumentParser(prog=f"memnets generate RUN_DIR  (task {self.name})")
        p.add_argument("--prime", default="", help="text to start from")
        p.add_argument("--length", type=int, default=300,
                       help=f"tokens to sample, 1 to {MAX_GENERATE_LENGTH} (default 300)")
        p.add_argument("--temperature", type=float, default=1.0,
                       help="divide the logits by this (0: always the most likely token)")
        p.add_argument("--seed", type=int, default=None, help="random seed of the sampler")
        a = p.parse_args(args)
        if not 1 <= a.length <= MAX_GENERATE_LENGTH:
            raise ValueError(f"expected --length in [1, {MAX_GENERATE_LENGTH}], got {a.length}")
        if not (math.isfinite(a.temperature) and a.temperature >= 0):
            raise ValueError(f"expected a finite --temperature >= 0, got {a.temperature}")
        ids = self._encode_prime(a.prime)
        g = torch.Generator(device=model_device(model))
        if a.seed is not None:
            g.manual_seed(a.seed)
        else:
            g.seed()
        prime = torch.tensor(ids, dtype=torch.long, device=model_device(model))
        out = model.generate(prime, a.length, temperature=a.temperature, generator=g)
        return self._join([a.prime] if a.prime else []) + self._join(
            self.vocab.decode(out.tolist()), continuation=bool(a.prime))

    def parse_input(self, line: str, ns) -> list[int]:
        ids = self._encode_prime(line)
        if len(ids) < 2:
            raise ValueError("expected a text of at least two tokens")
        return ids

    def predict_example(self, model, ids: list[int], ns) -> dict:
        """The text's negative log-likelihood, perplexity and bits per token, each
        token predicted from the ones before it."""
        x = torch.tensor(ids, device=model_device(model)).view(1, -1)
        loss, _ = model.loss(x[:, :-1], x[:, 1:])
        nll = float(loss)
        return {"tokens": len(ids) - 1, "nll": nll, "perplexity": perplexity(nll),
                self.bits_metric: bits_per_token(nll)}

    def format_prediction(self, result: dict, ns) -> str:
        unit = "char" if self.char_level else "word"
        return (f"tokens: {result['tokens']}  nll: {result['nll']:.4f} nats/token  "
                f"perplexity: {result['perplexity']:.2f}  "
                f"bits/{unit}: {result[self.bits_metric]:.3f}")


@register_task("language_model")
class WordLanguageModelTask(_LMTask):
    """Word-level language modelling on Penn Treebank (Mikolov's files, 10k words)."""

    main_metric = "perplexity"

    def _folder(self) -> Path:
        path = Path(self.config.path or "ptb")
        return path if path.is_absolute() else self.data_dir / path

    def _read(self, vocab):
        folder = self._folder()
        for split in ("train", "valid", "test"):
            f = folder / f"ptb.{split}.txt"
            if not f.is_file():
                if not (self.config.download and self.config.path is None):
                    raise DataError(f"Penn Treebank file not found: expected {f}; set "
                                    "data.download: true to fetch it, or data.path")
                download(PTB_URL.format(split=split), f, sha256=PTB_SHA256[split], quiet=False)
        try:
            return load_ptb(folder, vocab=vocab, level=self.config.level)
        except DataError:
            raise
        except (FileNotFoundError, ValueError) as e:
            raise DataError(str(e)) from None

    @property
    def char_level(self) -> bool:
        return self.config.level == "char"

    @property
    def size_name(self) -> str:
        return "characters" if self.config.level == "char" else "tokens"

    def _source(self, split: str) -> str:
        return str(self._folder() / f"ptb.{_SPLIT_NAMES[split]}.txt")

    def _encode_prime(self, prime: str) -> list[int]:
        if self.config.level == "char":
            tokens = list(prime.replace(" ", "_"))
            missing = sorted(set(tokens) - set(self.vocab.stoi))
            if missing:
                raise ValueError(f"expected characters of the training text, got {missing!r}")
        else:
            tokens = prime.split()
        return self.vocab.encode(tokens) if tokens else [self.vocab["<eos>"]]

    def _join(self, tokens, continuation=False):
        if self.config.level == "char":
            return "".join("\n" if t == "<eos>" else " " if t == "_" else t for t in tokens)
        text = " ".join(t if t != "<eos>" else "\n" for t in tokens).replace(" \n ", "\n")
        return (" " + text) if continuation and text else text


@register_task("char_language_model")
class CharLanguageModelTask(_LMTask):
    """Character-level language modelling on any text file (Tiny Shakespeare by default)."""

    main_metric = "bpc"

    def _file(self) -> Path:
        path = Path(self.config.path or "tinyshakespeare/input.txt")
        return path if path.is_absolute() else self.data_dir / path

    def _read(self, vocab):
        f = self._file()
        if not f.is_file():
            if not (self.config.download and self.config.path is None):
                raise DataError(f"text file not found: expected {f} (data.path)")
            download(SHAKESPEARE_URL, f, sha256=SHAKESPEARE_SHA256, quiet=False)
        try:
            return load_chars(f, split=tuple(self.config.split), vocab=vocab)
        except DataError:
            raise
        except (FileNotFoundError, ValueError) as e:
            raise DataError(str(e)) from None

    size_name = "characters"
    char_level = True

    def _source(self, split: str) -> str:
        k = list(_SPLIT_NAMES).index(split)
        return f"the {split} part (fraction {self.config.split[k]}) of {self._file()}"

    def _encode_prime(self, prime: str) -> list[int]:
        if not prime:
            return [self.vocab["\n"]] if "\n" in self.vocab else [0]
        missing = sorted(set(prime) - set(self.vocab.stoi))
        if missing:
            raise ValueError(f"expected a prime made of the training text's {len(self.vocab)} "
                             f"characters, got unknown {missing!r}")
        return self.vocab.encode(prime)

    def _join(self, tokens, continuation=False):
        return "".join(tokens)
