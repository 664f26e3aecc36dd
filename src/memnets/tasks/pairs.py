r"""Sentence pairs: the ``entailment`` and ``relatedness`` tasks (SICK, SNLI, MultiNLI).

Both read the same data and build the same model,
:class:`memnets.models.pair.PairModel` (sentence encoders, conditional encoding
with word-by-word attention, match-LSTM, LSTMN with shallow or deep fusion, over
any registered cell); they differ in the head they are scored on.

* ``entailment``: does the premise entail the hypothesis, contradict it, or
  neither?  Three-way cross-entropy; metrics ``accuracy`` (percent, the main
  metric) and ``ce``.  ``data.relatedness_weight`` > 0 trains the relatedness
  head beside it (a joint model).
* ``relatedness``: how related are the two sentences, on SICK's 1-5 scale?  As in
  Tai et al. ("Improved semantic representations from tree-structured long
  short-term memory networks", 2015) the model predicts a distribution
  :math:`\hat p_\theta` over the scores 1..5, trained towards the sparse target
  :math:`p` that puts the gold score :math:`y` between its two neighbouring
  integers, and predicts the expectation :math:`\hat y = r^\top \hat p_\theta`,
  :math:`r = (1, \dots, 5)`:

  .. math::
      p_i = \begin{cases} y - \lfloor y \rfloor & i = \lfloor y \rfloor + 1 \\
            \lfloor y \rfloor - y + 1 & i = \lfloor y \rfloor \\ 0 & \text{otherwise}
            \end{cases}, \qquad
      \mathcal{L} = \frac{1}{N} \sum_{n=1}^{N} \mathrm{KL}\big(p^{(n)} \,\big\|\,
            \hat p_\theta^{(n)}\big)

  Metrics ``pearson`` (Pearson's r of :math:`\hat y` and :math:`y`, the main
  metric), ``spearman`` (Spearman's rho), ``mse`` and ``kl``.
  ``data.entailment_weight`` > 0 trains the entailment head beside it.

Departures: Tai et al. add an L2 penalty to the loss; here weight decay is the
optimizer's (``optimizer.weight_decay``).  A joint model's loss is the main
head's plus the other's times its weight.

Data (``data.format``): ``sick`` reads one ``SICK.txt`` (``data.path``, split by
its ``SemEval_set`` column into TRAIN / TRIAL (dev) / TEST, downloaded with its
sha256 checked when missing); ``jsonl`` and ``tsv`` read one file per split
(``data.train_file``, ``data.dev_file`` and optionally ``data.test_file``), so
that SNLI or MultiNLI trains by naming its files (:mod:`memnets.data.sick`).
The vocabulary is built from the training pairs (``data.min_freq``).
Pretrained word vectors in GloVe's text format are read from ``data.vectors``
when given, once, when a run starts: they then live in the embedding, so
``eval``, ``predict`` and ``--resume`` never read the file again.

Dev and test metrics are exact: :meth:`PairTask.evaluate` gathers every
prediction of the split (Spearman's rho needs them all); the training rows'
``pearson`` comes from sums over the batches of the moving model.

``memnets predict RUN --premise "A man is playing a guitar" --hypothesis "A
person plays an instrument"`` prints the label with its probabilities (and the
relatedness score where the model has that head); INPUT arguments, ``--file``
lines and standard input take ``premise<TAB>hypothesis`` or ``premise |||
hypothesis``; ``--png FILE`` draws the word-by-word attention (hypothesis words
down, premise words across).

Recipes: ``sick-features``, ``sick-conditional``, ``sick-match-lstm``,
``sick-lstmn-shallow``, ``sick-lstmn-deep`` (entailment), ``sick-relatedness``
and ``sick-joint`` (both heads).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.download import download
from memnets.data.paths import DataError
from memnets.data.sick import (
    LABELS,
    SICK_SHA256,
    SICK_URL,
    PairExample,
    read_pairs,
    read_sick,
    tokenize,
)
from memnets.data.vocab import Vocab
from memnets.errors import shorten
from memnets.layers.attention import KINDS as ATTENTIONS
from memnets.layers.pooling import POOLINGS
from memnets.models.classifier import load_word_vectors
from memnets.models.pair import PairModel, expected_relatedness, relatedness_target
from memnets.tasks import register_task
from memnets.tasks.base import StepOutput, Task, model_device, to_device

ARCHITECTURES = ("features", "conditional", "match_lstm", "lstmn_shallow", "lstmn_deep")
SCORES = 5  # relatedness classes: the scores 1..5
SEPARATORS = ("\t", "|||")  # between premise and hypothesis on a predict input line


# ---------------------------------------------------------------------- configuration


@dataclass
class PairDataConfig(DataConfig):
    """The ``data`` section of the sentence-pair tasks.

    Args:
        format: ``sick`` (one ``SICK.txt`` with a split column), ``jsonl`` (SNLI's
            and MultiNLI's JSON lines) or ``tsv`` (``premise<TAB>hypothesis<TAB>
            label[<TAB>score]``, or a TSV whose header names its columns).
        path: with ``sick``, the file, relative to the data root (or absolute).
        train_file, dev_file, test_file: with ``jsonl`` / ``tsv``, one file per
            split, relative to the data root (or absolute); ``test_file: null``
            means no test split (MultiNLI's test labels are not public).
        vectors: a GloVe-format text file of pretrained word vectors, or ``None``;
            a relative path is taken from the current directory when the recipe
            is read, and ``config.yaml`` records it absolute.
        min_freq: keep training words seen at least this often (others: ``<unk>``).
        download: fetch a missing ``SICK.txt`` from its public address (sha256 checked).
    """

    batch_size: int = 25
    format: Literal["sick", "jsonl", "tsv"] = "sick"
    path: str = "sick/SICK.txt"
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    vectors: str | None = None
    min_freq: int = 1
    download: bool = True

    RANGES: ClassVar[dict[str, str]] = {"min_freq": ">= 1"}

    def __post_init__(self) -> None:
        if self.vectors:
            self.vectors = str(Path(self.vectors).expanduser().absolute())

    def validate(self) -> None:
        files = {"train_file": self.train_file, "dev_file": self.dev_file,
                 "test_file": self.test_file}
        if self.format == "sick":
            given = [k for k, v in files.items() if v is not None]
            if given:
                raise ValueError(f"{given[0]}: expected null with format sick (data.path names "
                                 f"the one SICK.txt), got {files[given[0]]!r}; set data.format "
                                 f"to jsonl or tsv for one file per split")
        else:
            for key in ("train_file", "dev_file"):
                if not files[key]:
                    raise ValueError(f"{key}: expected a file with format {self.format}, "
                                     f"got {files[key]!r}")


@dataclass
class EntailmentDataConfig(PairDataConfig):
    """``data`` of ``entailment``: also ``relatedness_weight``, the weight of the
    relatedness loss trained beside the entailment loss (0: no relatedness head)."""

    relatedness_weight: float = 0.0

    RANGES: ClassVar[dict[str, str]] = {"relatedness_weight": ">= 0"}


@dataclass
class RelatednessDataConfig(PairDataConfig):
    """``data`` of ``relatedness``: also ``entailment_weight``, the weight of the
    entailment loss trained beside the relatedness loss (0: no entailment head)."""

    entailment_weight: float = 0.0

    RANGES: ClassVar[dict[str, str]] = {"entailment_weight": ">= 0"}


@dataclass
class PairModelConfig(ModelConfig):
    """The ``model`` section: the arguments of :class:`~memnets.models.pair.PairModel`.

    Args:
        architecture: ``features`` (two sentence encoders, ``[u, v, |u - v|, u * v]``;
            Bowman et al. 2015, Mou et al. 2016), ``conditional`` (the hypothesis
            read from the premise's state, word-by-word attention; Rocktaeschel et
            al. 2016), ``match_lstm`` (Wang & Jiang 2016), ``lstmn_shallow`` or
            ``lstmn_deep`` (Cheng et al. 2016).
        embedding_size: word vector size.
        hidden_size: features of each encoder's state (per direction).
        bidirectional: read the sentences in both directions (``features``).
        shared: the premise and hypothesis encoders share their weights.
        pooling: how a sentence encoder's outputs become one vector (``last``,
            ``mean``, ``max``, ``attention``; see :mod:`memnets.layers.pooling`).
        attention: the attention score (``additive``, ``dot``, ``general``,
            ``concat``; see :mod:`memnets.layers.attention`).
        matching: what match-LSTM's matching cell reads: ``concat`` (the paper's
            [attended premise; word]) or ``compare`` (with their difference and
            product too; :class:`~memnets.models.pair.MatchLSTM`).
        classifier_hidden: the width of the hidden layer before the heads; ``null``:
            2 x ``hidden_size`` for ``features`` and the LSTMN architectures, and
            none for ``conditional`` and ``match_lstm`` (the papers' read-outs).
        embedding_dropout: dropout on the word vectors.
        word_dropout: with ``embedding_dropout``, drop whole word vectors (at that
            rate) instead of their single features.
        freeze_embeddings: keep the embedding fixed (with ``data.vectors``).
        exact_match: append the 0/1 exact-match feature to each word (the token
            occurs in the other sentence; :class:`~memnets.models.pair.PairModel`).
        cell, num_layers, dropout, cell_options: as for every model
            (:class:`memnets.config.ModelConfig`).
    """

    architecture: Literal["features", "conditional", "match_lstm", "lstmn_shallow",
                          "lstmn_deep"] = "match_lstm"
    embedding_size: int = 100
    hidden_size: int = 100
    bidirectional: bool = False
    shared: bool = True
    pooling: str = "max"
    attention: str = "additive"
    matching: Literal["concat", "compare"] = "concat"
    classifier_hidden: int | None = None
    embedding_dropout: float = 0.0
    word_dropout: bool = False
    freeze_embeddings: bool = False
    exact_match: bool = False

    RANGES: ClassVar[dict[str, str]] = {"embedding_size": ">= 1", "embedding_dropout": "[0, 1)",
                                        "classifier_hidden": ">= 1"}

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {', '.join(POOLINGS)}, "
                             f"got {self.pooling!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTIONS)}, "
                             f"got {self.attention!r}")
        if self.block is not None:
            raise ValueError(f"block: expected null (the pair models run plain recurrent "
                             f"layers), got {self.block!r}")


# ---------------------------------------------------------------------- batches


class PairBatch(NamedTuple):
    """A padded batch of pairs (N pairs; Tp, Th the longest premise and hypothesis).

    Attributes:
        premise: ``(N, Tp)`` word ids, padded with the vocabulary's ``<pad>``.
        premise_lengths: ``(N,)``.
        hypothesis: ``(N, Th)``.
        hypothesis_lengths: ``(N,)``.
        labels: ``(N,)`` class ids (:data:`memnets.data.sick.LABELS`).
        scores: ``(N,)`` relatedness scores, NaN where the corpus has none.
    """

    premise: Tensor
    premise_lengths: Tensor
    hypothesis: Tensor
    hypothesis_lengths: Tensor
    labels: Tensor
    scores: Tensor


def _pad(seqs: list[list[int]], pad: int) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(s) for s in seqs])
    x = torch.full((len(seqs), int(lengths.max())), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s)
    return x, lengths


# ---------------------------------------------------------------------- exact metrics


def pearson(x: list[float] | Tensor, y: list[float] | Tensor) -> float:
    r"""Pearson's r, :math:`\frac{\sum (x_i - \bar x)(y_i - \bar y)}
    {\sqrt{\sum (x_i - \bar x)^2 \sum (y_i - \bar y)^2}}`, in float64.

    Constant ``x`` or ``y`` (no variance: r undefined) scores 0, so that a collapsed
    model ranks last instead of stopping training as a NaN metric would."""
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if len(x) < 2:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum()) / den if den > 0 else 0.0


def average_ranks(x: list[float] | Tensor) -> Tensor:
    """1-based ranks of ``x`` in float64, tied values given the mean of their ranks."""
    x = torch.as_tensor(x, dtype=torch.float64)
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    values = x[order].tolist()
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1  # positions i..j share ranks i+1..j+1
        i = j + 1
    return ranks


def spearman(x: list[float] | Tensor, y: list[float] | Tensor) -> float:
    """Spearman's rho: Pearson's r of the two variables' (tie-averaged) ranks."""
    return pearson(average_ranks(x), average_ranks(y))


def _pearson_from_sums(s: dict[str, float]) -> float:
    n = s["rel_count"]
    cov = s["sxy"] - s["sx"] * s["sy"] / n
    vx, vy = s["sxx"] - s["sx"] ** 2 / n, s["syy"] - s["sy"] ** 2 / n
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else 0.0


# ---------------------------------------------------------------------- ensembles


class PairEnsemble(nn.Module):
    r"""Several trained pair models of one design, voting with their probabilities:
    for each head, :math:`\log \frac{1}{M} \sum_m \mathrm{softmax}(f_m(x))`, as
    :class:`memnets.models.ensemble.ProbabilityEnsemble` does for one output; the
    attention is the members' mean (``None`` if a member has none).

    The ensemble's expected relatedness is the mean of the members' expected scores
    (the expectation is linear in the distribution)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("expected at least one member model, got none")
        self.members = nn.ModuleList(members)

    def forward(self, premise, premise_lengths, hypothesis, hypothesis_lengths,
                return_attention: bool = False) -> dict:
        outs = [m(premise, premise_lengths, hypothesis, hypothesis_lengths,
                  return_attention=return_attention) for m in self.members]
        merged = {}
        log_m = math.log(len(outs))
        for key in outs[0]:
            if key == "attention":
                maps = [o[key] for o in outs]
                merged[key] = None if any(a is None for a in maps) else \
                    torch.stack(maps).mean(0)  # (N, Th, Tp)
            else:
                logp = torch.stack([torch.log_softmax(o[key], -1) for o in outs])  # (M, N, C)
                merged[key] = torch.logsumexp(logp, 0) - log_m
        return merged


# ---------------------------------------------------------------------- the tasks


class PairTask(Task):
    """What ``entailment`` and ``relatedness`` share: the data, the model, the losses,
    the metrics and ``memnets predict``.  ``HEAD`` is the head scored by the main
    metric; ``OTHER_WEIGHT`` names the data field that weighs the other head."""

    ModelConfig = PairModelConfig
    higher_is_better = True
    predict_input = "a pair: 'premise<TAB>hypothesis' or 'premise ||| hypothesis'"
    one_input_options = ("png",)
    HEAD: ClassVar[str] = ""
    OTHER_WEIGHT: ClassVar[str] = ""

    def __init__(self, data: PairDataConfig, data_dir: Path | None = None) -> None:
        super().__init__(data, data_dir)
        self.vocab: Vocab | None = None
        self._data: dict[str, list[PairExample]] | None = None
        self._fresh = False  # set up from the data (not restored): read data.vectors
        self._collect: tuple[list[float], list[float]] | None = None

    # ------------------------------------------------------------------ heads

    def weights(self) -> dict[str, float]:
        """Loss weight of each head the model has: the main head 1, the other its
        ``data`` weight when that is above 0."""
        other = "relatedness" if self.HEAD == "entailment" else "entailment"
        w = {self.HEAD: 1.0}
        if getattr(self.config, self.OTHER_WEIGHT) > 0:
            w[other] = float(getattr(self.config, self.OTHER_WEIGHT))
        return w

    def heads(self) -> dict[str, int]:
        """The model's heads and their classes (``{"entailment": 3, "relatedness": 5}``)."""
        return {h: len(LABELS) if h == "entailment" else SCORES for h in self.weights()}

    # ------------------------------------------------------------------ data

    def _resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() or self.data_dir is None else self.data_dir / path

    def split_file(self, split: str) -> Path:
        """The file holding ``split``."""
        c = self.config
        if c.format == "sick":
            return self._resolve(c.path)
        name = {"train": c.train_file, "dev": c.dev_file, "test": c.test_file}.get(split)
        if name is None:
            raise DataError(f"expected a split among {', '.join(self.splits())}, got {split!r}")
        return self._resolve(name)

    def splits(self) -> tuple[str, ...]:
        if self.config.format == "sick" or self.config.test_file is not None:
            return ("train", "dev", "test")
        return ("train", "dev")

    def _load(self) -> dict[str, list[PairExample]]:
        if self._data is None:
            c = self.config
            if c.format == "sick":
                path = self.split_file("train")
                if not path.is_file():
                    if not c.download:
                        raise DataError(f"SICK file not found: expected {path} "
                                        f"(data.download is false)")
                    download(SICK_URL, path, sha256=SICK_SHA256, quiet=False)
                self._data = read_sick(path)
            else:
                self._data = {}
                for split in self.splits():
                    path = self.split_file(split)
                    if not path.is_file():
                        raise DataError(f"sentence-pair file not found: expected the {split} "
                                        f"file {path} (data.{split}_file, format {c.format})")
                    got = read_pairs(path, c.format)
                    if got.skipped:
                        print(f"{self.name}: skipped {got.skipped} pairs of {path} without a "
                              f"gold label ('-')")
                    self._data[split] = got.examples
        return self._data

    def examples(self, split: str) -> list[PairExample]:
        """The pairs of ``split`` (read once)."""
        data = self._load()
        if split not in data or split not in self.splits():
            raise DataError(f"expected a split among {', '.join(self.splits())}, got {split!r}")
        return data[split]

    def check_splits(self, splits: tuple[str, ...]) -> None:
        """Raise :class:`DataError` naming the file of a split that is missing, holds no
        pair, or lacks relatedness scores that the model's relatedness head needs;
        reads every file (downloading ``SICK.txt`` first when allowed)."""
        for split in splits:
            ex = self.examples(split)
            where = self.split_file(split)
            if not ex:
                raise DataError(f"expected sentence pairs in the {split} split of {where}, "
                                f"got none")
            if "relatedness" in self.heads():
                missing = sum(e.score is None for e in ex)
                if missing:
                    raise DataError(
                        f"expected a relatedness score on every pair of {where} (task "
                        f"{self.name} trains the relatedness head), got {missing} of "
                        f"{len(ex)} pairs without one")

    def setup(self) -> None:
        self.check_splits(("train",))
        self.vocab = Vocab.build((e.premise + e.hypothesis for e in self.examples("train")),
                                 min_freq=self.config.min_freq)
        self._fresh = True

    def state_dict(self) -> dict:
        return {"vocab": self.vocab.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.vocab = Vocab.from_dict(state["vocab"])

    def dataset(self, split: str):
        return self.examples(split)

    def lengths(self, split: str) -> list[int]:
        """Words of premise and hypothesis together, for ``data.bucket``."""
        return [len(e.premise) + len(e.hypothesis) for e in self.examples(split)]

    def collate(self, examples: list[PairExample]) -> PairBatch:
        pad = self.vocab.pad_id
        p, p_len = _pad([self.vocab.encode(e.premise) for e in examples], pad)
        h, h_len = _pad([self.vocab.encode(e.hypothesis) for e in examples], pad)
        labels = torch.tensor([LABELS.index(e.label) for e in examples])
        scores = torch.tensor([math.nan if e.score is None else e.score for e in examples],
                              dtype=torch.float32)
        return PairBatch(p, p_len, h, h_len, labels, scores)

    # ------------------------------------------------------------------ model

    def build_model(self, config: PairModelConfig) -> nn.Module:
        if self.vocab is None:
            raise RuntimeError("setup() or load_state_dict() must run before build_model()")
        pretrained = None
        if self.config.vectors and self._fresh:  # a restored run has them in its weights
            pretrained, found = load_word_vectors(self.config.vectors, self.vocab,
                                                  dim=config.embedding_size)
            print(f"{self.name}: {found} of {len(self.vocab)} words have pretrained vectors")
        return PairModel(
            len(self.vocab), config.embedding_size, config.hidden_size,
            architecture=config.architecture, heads=self.heads(), cell=config.cell,
            num_layers=config.num_layers, bidirectional=config.bidirectional,
            shared=config.shared, pooling=config.pooling, attention=config.attention,
            matching=config.matching,
            classifier_hidden=config.classifier_hidden, dropout=config.dropout,
            embedding_dropout=config.embedding_dropout, word_dropout=config.word_dropout,
            padding_idx=self.vocab.pad_id,
            pretrained=pretrained, freeze_embeddings=config.freeze_embeddings,
            exact_match=config.exact_match, unk_idx=self.vocab.unk_id,
            **config.cell_options)

    def build_ensemble(self, models: list[nn.Module]) -> nn.Module:
        """The members' mean probabilities, head by head (:class:`PairEnsemble`)."""
        return PairEnsemble(models)

    def step(self, model: nn.Module, batch: PairBatch, state=None) -> StepOutput:
        b = to_device(batch, model_device(model))
        out = model(b.premise, b.premise_lengths, b.hypothesis, b.hypothesis_lengths)
        n = len(b.labels)
        weights = self.weights()
        loss = torch.zeros((), device=b.labels.device)
        stats: dict = {"count": n}
        if "entailment" in weights:
            logits = out["entailment"]  # (N, 3)
            ce = F.cross_entropy(logits, b.labels)
            loss = loss + weights["entailment"] * ce
            stats["ce"] = ce.detach() * n
            stats["correct"] = (logits.argmax(-1) == b.labels).sum()
        if "relatedness" in weights:
            logits = out["relatedness"]  # (N, 5)
            target = relatedness_target(b.scores, SCORES)  # (N, 5)
            kl = F.kl_div(torch.log_softmax(logits, -1), target, reduction="batchmean")
            loss = loss + weights["relatedness"] * kl
            pred = expected_relatedness(logits).detach().double()  # (N,)
            gold = b.scores.double()
            stats.update(kl=kl.detach() * n, rel_count=n, sx=pred.sum(), sy=gold.sum(),
                         sxx=(pred * pred).sum(), syy=(gold * gold).sum(),
                         sxy=(pred * gold).sum(), se=((pred - gold) ** 2).sum())
            if self._collect is not None and not model.training:
                self._collect[0].extend(pred.tolist())
                self._collect[1].extend(gold.tolist())
        stats["loss"] = loss.detach() * n
        return StepOutput(loss=loss, stats=stats, size=n)

    def metrics(self, stats: dict) -> dict:
        n = max(stats.get("count", 0.0), 1e-12)
        out = {"loss": stats["loss"] / n}
        if "correct" in stats:
            out["accuracy"] = 100.0 * stats["correct"] / n
            out["ce"] = stats["ce"] / n
        if "rel_count" in stats:
            out["pearson"] = _pearson_from_sums(stats)
            out["mse"] = stats["se"] / stats["rel_count"]
            out["kl"] = stats["kl"] / stats["rel_count"]
        return out

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, *, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> dict[str, float]:
        """Metrics of a whole split; with a relatedness head, ``pearson``, ``spearman``
        and ``mse`` computed at once from every prediction of the split (gathered
        from all processes under DDP)."""
        self._collect = ([], [])
        try:
            metrics = super().evaluate(model, split, batch_size=batch_size, rank=rank,
                                       world_size=world_size)
            pred, gold = self._collect
        finally:
            self._collect = None
        if "relatedness" in self.heads():
            pred, gold = _gather(pred), _gather(gold)
            metrics["pearson"] = pearson(pred, gold)
            metrics["spearman"] = spearman(pred, gold)
            metrics["mse"] = float(torch.tensor(pred, dtype=torch.float64).sub(
                torch.tensor(gold, dtype=torch.float64)).pow(2).mean()) if pred else 0.0
        return metrics

    def baselines(self) -> dict[str, float]:
        """Trivial predictors fitted on train and scored on test (dev without a test
        split): ``accuracy`` of always answering train's most frequent label; ``mse``
        of always answering train's mean score (whose Pearson r is undefined)."""
        train = self.examples("train")
        scored = self.examples("test" if "test" in self.splits() else "dev")
        out = {}
        heads = self.heads()
        if "entailment" in heads:
            labels = [e.label for e in train]
            majority = max(LABELS, key=labels.count)
            out["accuracy"] = 100.0 * sum(e.label == majority for e in scored) / len(scored)
        if "relatedness" in heads:
            mean = sum(e.score for e in train) / len(train)
            out["mse"] = sum((e.score - mean) ** 2 for e in scored) / len(scored)
        return out

    # ------------------------------------------------------------------ predict

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = (
            "Say whether the premise entails the hypothesis, contradicts it or neither "
            "(with the probabilities), and how related the two are where the model has a "
            "relatedness head: memnets predict RUN_DIR --premise \"A man is playing a "
            "guitar\" --hypothesis \"A person plays an instrument\"; or give pairs as "
            "'premise<TAB>hypothesis' or 'premise ||| hypothesis' (INPUT, --file lines, "
            "standard input with '-'). " + parser.description)
        parser.add_argument("--premise", help="the premise of one pair (with --hypothesis)")
        parser.add_argument("--hypothesis", help="the hypothesis of that pair")
        parser.add_argument("--png", help="write the word-by-word attention (hypothesis "
                                          "words down, premise words across) to this PNG "
                                          "file (one pair)")

    def predict_inputs(self, ns) -> list[tuple[str, str]]:
        if (ns.premise is None) != (ns.hypothesis is None):
            raise ValueError("expected --premise and --hypothesis together, got only "
                             + ("--premise" if ns.hypothesis is None else "--hypothesis"))
        asked = [("--premise/--hypothesis", f"{ns.premise}\t{ns.hypothesis}")
                 ] if ns.premise is not None else []
        return asked + super().predict_inputs(ns)

    def parse_input(self, line: str, ns) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``premise<TAB>hypothesis`` or ``premise ||| hypothesis`` -> the two token tuples."""
        sep = next((s for s in SEPARATORS if s in line), None)
        parts = line.split(sep) if sep is not None else [line]
        if len(parts) != 2:
            raise ValueError(f"expected 'premise<TAB>hypothesis' or 'premise ||| hypothesis' "
                             f"(one separator), got {shorten(line, 60)}")
        premise, hypothesis = (tuple(tokenize(p)) for p in parts)
        for name, words in (("premise", premise), ("hypothesis", hypothesis)):
            if not words:
                raise ValueError(f"expected a {name} of at least one word, got none in "
                                 f"{shorten(line, 60)}")
        return premise, hypothesis

    def predict_batch(self, model: nn.Module, examples: list, ns) -> list[dict]:
        """Each pair's label and probabilities (entailment head), expected score
        (relatedness head), the words the model never saw in training and, with
        ``--png``, the attention map."""
        batch = self.collate([PairExample(p, h, LABELS[0]) for p, h in examples])
        b = to_device(batch, model_device(model))
        out = model(b.premise, b.premise_lengths, b.hypothesis, b.hypothesis_lengths,
                    return_attention=bool(ns.png))
        attention = out.get("attention") if ns.png else None
        if ns.png and attention is None:
            raise ValueError("--png: expected a model with word-by-word attention, got "
                             "architecture 'features' (two separate sentence encoders)")
        results = []
        for k, (premise, hypothesis) in enumerate(examples):
            r: dict = {"premise": list(premise), "hypothesis": list(hypothesis)}
            if "entailment" in out:
                probs = torch.softmax(out["entailment"][k].float(), -1).tolist()
                r["label"] = LABELS[max(range(len(probs)), key=probs.__getitem__)]
                r["probabilities"] = dict(zip(LABELS, probs))
            if "relatedness" in out:
                r["relatedness"] = float(expected_relatedness(out["relatedness"][k:k + 1])[0])
            unknown = sorted({w for w in premise + hypothesis if w not in self.vocab})
            if unknown:
                r["unknown"] = unknown
            if attention is not None:
                a = attention[k, :len(hypothesis), :len(premise)].float().cpu()  # (Th, Tp)
                r["attention"] = a.tolist()
                r["attention_map"] = str(self._attention_png(a, premise, hypothesis, r,
                                                             ns.png))
            results.append(r)
        return results

    def _attention_png(self, attention: Tensor, premise, hypothesis, result: dict, path: str):
        from memnets.figures import weight_heatmap  # matplotlib only when asked

        Th, Tp = attention.shape
        title = "  ".join(x for x in (
            result.get("label", ""), f"relatedness {result['relatedness']:.2f}"
            if "relatedness" in result else "") if x)
        return weight_heatmap(attention, path, columns=list(premise), rows=list(hypothesis),
                              title=title, size=(2.5 + 0.6 * Tp, 1.5 + 0.4 * Th),
                              rotate_columns=True, annotate=Th <= 25 and Tp <= 25)

    def format_prediction(self, result: dict, ns) -> str:
        """The label and its probabilities, the relatedness score, unknown words and
        the attention map written."""
        label = []
        if "label" in result:
            label = [result["label"]] + [f"  {n:>13}: {p:.3f}"
                                         for n, p in result["probabilities"].items()]
        score = [f"relatedness: {result['relatedness']:.2f} (1-5)"
                 ] if "relatedness" in result else []
        lines = score + label if self.HEAD == "relatedness" else label + score
        if result.get("unknown"):
            lines.append("unknown words (read as <unk>): " + ", ".join(result["unknown"]))
        if "attention_map" in result:
            lines.append(f"attention map: {result['attention_map']}")
        return "\n".join(lines)


def _gather(values: list[float]) -> list[float]:
    """``values`` of every process, in rank order (the list itself without DDP)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, values)
    return [v for p in parts for v in p]


@register_task("entailment")
class EntailmentTask(PairTask):
    """Three-way entailment (entailment / neutral / contradiction); main metric
    ``accuracy``; ``data.relatedness_weight`` adds the relatedness head."""

    DataConfig = EntailmentDataConfig
    main_metric = "accuracy"
    HEAD = "entailment"
    OTHER_WEIGHT = "relatedness_weight"


@register_task("relatedness")
class RelatednessTask(PairTask):
    """Relatedness on 1..5 (Tai et al. 2015's distribution and KL loss); main metric
    ``pearson``; ``data.entailment_weight`` adds the entailment head."""

    DataConfig = RelatednessDataConfig
    main_metric = "pearson"
    HEAD = "relatedness"
    OTHER_WEIGHT = "entailment_weight"
