"""The ``sentiment`` task: sentence classification on the Stanford Sentiment Treebank.

SST-2 (``data.classes: 2``) or SST-5 (``5``); train on the training sentences or,
with ``data.phrases: true``, on every labelled phrase of the training trees;
dev and test are whole sentences.  The model is
:class:`memnets.models.classifier.SequenceClassifier` over any registered cell.
Pretrained word vectors in GloVe's text format are read from ``data.vectors``
when given (none ship with memnets), once, when a run starts: they then live in
the embedding's weights, so ``eval``, ``predict`` and ``--resume`` never read the
file again.

Metrics: ``accuracy`` (percent; the main metric) and ``loss``.
``memnets predict RUN_DIR "a gorgeous , witty , seductive movie ."`` prints
the class probabilities (one sentence per argument, ``--file`` line or standard
input line with ``-``), and lists the words the model never saw in training.

Recipes: ``sst2-lstm``, ``sst2-bilstm``, ``sst5-lstm``, ``sst5-bilstm`` and
their ``_phrases`` variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.download import download
from memnets.data.paths import DataError
from memnets.data.sst import SST_SHA256, SST_URLS, load_sst
from memnets.data.vocab import Vocab
from memnets.models.classifier import SequenceClassifier, load_word_vectors
from memnets.models.ensemble import ProbabilityEnsemble
from memnets.tasks import register_task
from memnets.tasks.base import StepOutput, Task, model_device

LABELS = {2: ["negative", "positive"],
          5: ["very negative", "negative", "neutral", "positive", "very positive"]}


@dataclass
class SSTDataConfig(DataConfig):
    """The ``data`` section of a sentiment recipe.

    Args:
        classes: 2 (SST-2, neutral removed) or 5 (SST-5).
        phrases: train on every labelled phrase of the training trees.
        path: the SST folder (``sentences/`` and ``trees/``), relative to the data root.
        vectors: a GloVe-format text file of pretrained word vectors, or ``None``;
            a relative path is taken from the current directory when the recipe is
            read, and ``config.yaml`` records it absolute.
        min_freq: keep training words seen at least this often.
        download: fetch missing SST files from their public addresses (sha256 checked).
    """

    batch_size: int = 100
    classes: Literal[2, 5] = 2
    phrases: bool = False
    path: str = "sst"
    vectors: str | None = None
    min_freq: int = 1
    download: bool = True

    RANGES: ClassVar[dict[str, str]] = {"min_freq": ">= 1"}

    def __post_init__(self) -> None:
        if self.vectors:
            self.vectors = str(Path(self.vectors).expanduser().absolute())


@dataclass
class SSTModelConfig(ModelConfig):
    """The ``model`` section: see :class:`~memnets.models.classifier.SequenceClassifier`."""

    embedding_size: int = 200
    hidden_size: int = 100
    bidirectional: bool = False
    pooling: Literal["last", "mean", "max", "attention"] = "max"
    embedding_dropout: float = 0.5
    word_dropout: bool = False
    freeze_embeddings: bool = False

    RANGES: ClassVar[dict[str, str]] = {"embedding_size": ">= 1", "embedding_dropout": "[0, 1)"}


@register_task("sentiment")
class SentimentTask(Task):
    DataConfig = SSTDataConfig
    ModelConfig = SSTModelConfig
    main_metric = "accuracy"
    higher_is_better = True
    predict_input = "a sentence in quotes, lowercased and tokenised like SST"

    def __init__(self, data: SSTDataConfig, data_dir: Path | None = None) -> None:
        super().__init__(data, data_dir)
        self.vocab: Vocab | None = None
        self._data: dict | None = None
        self._fresh = False  # set up from the data (not restored): read data.vectors

    def _folder(self) -> Path:
        path = Path(self.config.path)
        return path if path.is_absolute() else self.data_dir / path

    def _load(self) -> dict:
        if self._data is None:
            folder = self._folder()
            name = "fine" if self.config.classes == 5 else "binary"
            needed = [f"sentences/stsa.{name}.{s}" for s in ("train", "dev", "test")]
            if self.config.phrases:
                needed.append("trees/train.txt")
            for rel in needed:
                f = folder / rel
                if f.is_file():
                    continue
                if not self.config.download:
                    raise DataError(f"SST file not found: expected {f}")
                kind, fname = rel.split("/")
                fname = fname.removeprefix("stsa.")
                download(SST_URLS[kind].format(name=fname), f, sha256=SST_SHA256[rel],
                         quiet=False)
            try:
                self._data = load_sst(folder, fine=self.config.classes == 5,
                                      phrases=self.config.phrases)
            except DataError:
                raise
            except (FileNotFoundError, ValueError) as e:
                raise DataError(str(e)) from None
        return self._data

    def _split_file(self, split: str) -> Path:
        if split == "train" and self.config.phrases:
            return self._folder() / "trees" / "train.txt"
        name = "fine" if self.config.classes == 5 else "binary"
        return self._folder() / "sentences" / f"stsa.{name}.{split}"

    def check_splits(self, splits: tuple[str, ...]) -> None:
        """Raise :class:`DataError` naming the file of any of ``splits`` that is missing
        or holds no sentence, before anything trains.

        Reads every SST file this recipe uses (as :meth:`setup` does), after
        downloading the missing ones when ``data.download`` is true.
        """
        data = self._load()
        for split in splits:
            if split not in data:
                raise DataError(f"expected an SST split among {sorted(data)}, got {split!r}")
            if not data[split]:
                raise DataError(f"expected sentences in {self._split_file(split)}, got none")

    def setup(self) -> None:
        self.vocab = Vocab.build((t for t, _ in self._load()["train"]),
                                 min_freq=self.config.min_freq)
        self._fresh = True

    def state_dict(self) -> dict:
        return {"vocab": self.vocab.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.vocab = Vocab.from_dict(state["vocab"])

    def dataset(self, split: str):
        return [(self.vocab.encode(t), y) for t, y in self._load()[split]]

    def lengths(self, split: str) -> list[int]:
        """Words per sentence, for ``data.bucket``."""
        return [len(t) for t, _ in self._load()[split]]

    def collate(self, examples):
        lengths = torch.tensor([len(t) for t, _ in examples])
        x = torch.full((len(examples), int(lengths.max())), self.vocab.pad_id, dtype=torch.long)
        for i, (t, _) in enumerate(examples):
            x[i, : len(t)] = torch.tensor(t)
        return x, lengths, torch.tensor([y for _, y in examples])

    def build_model(self, config: SSTModelConfig) -> nn.Module:
        pretrained = None
        if self.config.vectors and self._fresh:  # a restored run has them in its weights
            pretrained, found = load_word_vectors(self.config.vectors, self.vocab,
                                                  dim=config.embedding_size)
            print(f"sentiment: {found} of {len(self.vocab)} words have pretrained vectors")
        return SequenceClassifier(
            len(self.vocab), config.embedding_size, config.hidden_size, self.config.classes,
            cell=config.cell, num_layers=config.num_layers, bidirectional=config.bidirectional,
            pooling=config.pooling, embedding_dropout=config.embedding_dropout,
            word_dropout=config.word_dropout, dropout=config.dropout,
            padding_idx=self.vocab.pad_id, pretrained=pretrained,
            freeze_embeddings=config.freeze_embeddings, block=config.block,
            block_options=config.block_options, **config.cell_options)

    def build_ensemble(self, models: list[nn.Module]) -> nn.Module:
        """The members' mean class probabilities (:class:`ProbabilityEnsemble`)."""
        return ProbabilityEnsemble(models)

    def step(self, model, batch, state=None) -> StepOutput:
        x, lengths, y = batch
        device = model_device(model)
        logits = model(x.to(device), lengths)  # (N, C)
        y = y.to(device)
        loss = F.cross_entropy(logits, y)
        return StepOutput(loss=loss, size=len(y), stats={
            "loss": loss.detach() * len(y), "count": len(y),
            "correct": (logits.argmax(-1) == y).sum()})

    def metrics(self, stats):
        n = max(stats["count"], 1)
        return {"loss": stats["loss"] / n, "accuracy": 100.0 * stats["correct"] / n}

    def baselines(self):
        counts = torch.bincount(torch.tensor([y for _, y in self._load()["train"]]))
        return {"accuracy (majority class of train)": 100.0 * float(counts.max() / counts.sum())}

    def parse_input(self, line: str, ns) -> list[str]:
        words = line.lower().split()
        if not words:
            raise ValueError("expected a sentence of at least one word, got none")
        return words

    def predict_batch(self, model, examples: list[list[str]], ns) -> list[dict]:
        """The class probabilities of each sentence, and its words the model never saw
        in training (read as ``<unk>``)."""
        x, lengths, _ = self.collate([(self.vocab.encode(w), 0) for w in examples])
        probs = torch.softmax(model(x.to(model_device(model)), lengths), -1).cpu()  # (N, C)
        names = LABELS[self.config.classes]
        results = []
        for words, p in zip(examples, probs.tolist()):
            r = {"label": names[max(range(len(p)), key=p.__getitem__)],
                 "probabilities": dict(zip(names, p))}
            unknown = sorted({w for w in words if w not in self.vocab})
            if unknown:
                r["unknown"] = unknown
            results.append(r)
        return results

    def format_prediction(self, result: dict, ns) -> str:
        lines = [result["label"]] + [f"  {n:>14}: {p:.3f}"
                                     for n, p in result["probabilities"].items()]
        if result.get("unknown"):
            lines.append("unknown words (read as <unk>): " + ", ".join(result["unknown"]))
        return "\n".join(lines)
