r"""The ``captioning`` task: an image in, a sentence out (one to many), with soft
attention over the image or without it, on images that memnets generates.

Data (``data.dataset``), generated on first use into ``<data>/<data.path>`` with
``data.seed`` (:func:`memnets.data.scenes.ensure_generated`; ``memnets data NAME
--out DIR`` writes the same files by hand):

* ``shapes`` — scenes of 1 to 4 coloured squares, circles and triangles, small
  or large, captioned left to right by a fixed grammar ("a small red circle
  left of a large blue square"); 64x64 pixels; train 8000, dev 500, test 1000
  images, and ``test_compositional`` (1000), whose every image holds a
  colour-shape pair that no other split shows
  (:data:`memnets.data.scenes.HELD_OUT_PAIRS`);
* ``digits`` — strings of 2 to 6 handwritten digits (the UCI digits that
  scikit-learn ships, each split composed from its own source images), 24x112
  pixels, captioned by the digit words ("3 1 4"); train 20000, dev 1000, test
  2000 (needs ``pip install memnets[vision]``).

``data.train_size``, ``dev_size`` and ``test_size`` keep only the first images of
a split (quick checks).  The vocabulary is the training captions' words with
``<pad>``, ``<unk>``, ``<s>`` and ``</s>``.

The model is :class:`memnets.models.captioning.Captioner`: a small CNN whose grid
of feature vectors is the memory of a recurrent decoder over any registered
cell, with Xu et al.'s deterministic soft attention ("Show, attend and tell:
neural image caption generation with visual attention", 2015; ``model.attention:
soft``, the gating scalar with ``model.gate``) or, ``none``, the pooled image
starting the decoder (Vinyals et al., "Show and tell: a neural image caption
generator", 2015).  The loss of a caption :math:`y_{1..C}` (the end token
included) is the token cross-entropy plus the doubly stochastic regulariser
(Xu et al. eq. 14), weighted by ``model.doubly_stochastic`` (:math:`\lambda`):

.. math::
    L = -\frac{1}{\sum_n C_n} \sum_n \sum_{t=1}^{C_n} \log p(y_t \mid y_{<t}, a)
        \;+\; \lambda \cdot \frac{1}{N} \sum_n \sum_{i=1}^{S}
        \Big(1 - \sum_{t=1}^{C_n} \alpha_{t i}\Big)^2

Departure from the paper: the token term is a mean over tokens (Xu et al. sum
over the caption), so :math:`\lambda` weighs the penalty against the mean.

Metrics of a split: ``loss`` (negative log-likelihood per target token, the
penalty left out) and ``perplexity`` from teacher forcing, ``penalty`` (the
regulariser per caption, attention models), and, decoding the split with
``data.beam_size`` (1 = greedy; :mod:`memnets.models.decoding`):

* ``exact_match`` (the main metric): the percentage of captions equal to the
  gold caption word for word; on digit strings, the sequence accuracy;
* ``bleu``: corpus BLEU-4 over the words as they are (sacreBLEU with
  ``tokenize="none"``, :func:`memnets.metrics.bleu.tokenized_bleu`);
* ``localisation`` (attention models): the percentage of the generated words
  that name an object (the size, colour and shape words of an object phrase,
  :func:`memnets.data.scenes.name_objects_shapes`; every digit word,
  :func:`memnets.data.digit_strings.name_objects_digits`) whose attention peak
  cell overlaps that object's box, and ``localisation_chance``, what a peak
  drawn uniformly over the grid would score (:mod:`memnets.metrics.vision`);
* on ``shapes``, the evaluation of ``test`` also decodes ``test_compositional``
  and reports it as ``compositional_exact_match``, ``compositional_bleu`` and
  ``compositional_localisation`` (``memnets eval RUN --split test_compositional``
  gives all of its metrics).

``memnets predict RUN_DIR image.png`` prints the caption of an image file (read
at the training image size: another size is resized and another mode
converted, each with a note; :func:`memnets.data.images.read_image`); ``--beam
N``; ``--png OUT`` draws the attention of every generated word over the image
(:func:`memnets.figures.attention_over_image`); ``--test-index K [--split
test|dev|test_compositional]`` captions a stored image of a split instead and
prints its gold caption too.

Recipes: ``shapes-caption-attention``, ``shapes-caption-noattn``,
``digits-caption-attention``, ``digits-caption-noattn``; docs/vision.md.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.digit_strings import name_objects_digits, read_digit_strings
from memnets.data.images import read_image
from memnets.data.scenes import ensure_generated, name_objects_shapes, read_shape_captions
from memnets.data.vocab import PAD, UNK, Vocab
from memnets.errors import DataError
from memnets.layers.image import random_affine
from memnets.metrics.bleu import tokenized_bleu
from memnets.metrics.lm import perplexity
from memnets.metrics.vision import exact_match, localisation, localisation_chance
from memnets.models.captioning import Captioner, doubly_stochastic_penalty
from memnets.models.decoding import best_hypotheses
from memnets.tasks import register_task
from memnets.tasks.base import StepOutput, Task, model_device

BOS, EOS = "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3

# data.dataset -> (generator name, default folder under the data root)
DATASETS = {"shapes": ("shape-captions", "shape-captions"),
            "digits": ("digit-strings", "digit-strings")}
SPLIT_NAMES = {"shapes": ("train", "dev", "test", "test_compositional"),
               "digits": ("train", "dev", "test")}


# ---------------------------------------------------------------------- configuration


@dataclass
class CaptioningDataConfig(DataConfig):
    """The ``data`` section of a captioning recipe.

    Args:
        dataset: ``shapes`` (shape scenes) or ``digits`` (digit strings).
        path: the generated data's folder, relative to the data root (``null``:
            ``shape-captions`` or ``digit-strings``).
        seed: the generator's seed (another seed generates the folder anew).
        test_set: the split that ``test`` means: ``test`` or, for ``shapes``,
            ``test_compositional``.
        train_size, dev_size, test_size: at most this many images of the split,
            the first ones (``null``: all); ``test_size`` counts for
            ``test_compositional`` too.
        min_freq: keep caption words seen at least this often in training.
        beam_size: decoding in evaluation and ``predict`` (1 = greedy search).
        length_penalty: Wu et al.'s alpha in the beam search (0 = none).
        augment_shift, augment_rotate, augment_scale: each training image moved by
            its own random affine map (:func:`memnets.layers.image.random_affine`:
            up to this many pixels, degrees, and this relative change of size);
            0 is none, and evaluation never augments.
        max_length: the most words of a generated caption (``null``: the longest
            training caption plus 5).
    """

    batch_size: int = 64
    dataset: Literal["shapes", "digits"] = "shapes"
    path: str | None = None
    seed: int = 0
    test_set: Literal["test", "test_compositional"] = "test"
    train_size: int | None = None
    dev_size: int | None = None
    test_size: int | None = None
    min_freq: int = 1
    beam_size: int = 1
    length_penalty: float = 0.0
    max_length: int | None = None
    augment_shift: float = 0.0
    augment_rotate: float = 0.0
    augment_scale: float = 0.0

    RANGES: ClassVar[dict[str, str]] = {
        "seed": ">= 0", "train_size": ">= 1", "dev_size": ">= 1", "test_size": ">= 1",
        "min_freq": ">= 1", "beam_size": ">= 1", "length_penalty": ">= 0",
        "max_length": ">= 1", "augment_shift": ">= 0", "augment_rotate": ">= 0",
        "augment_scale": "[0, 1)"}

    def validate(self) -> None:
        if self.dataset == "digits" and self.test_set != "test":
            raise ValueError(f"test_set: expected test with dataset digits (only shapes has "
                             f"a compositional split), got {self.test_set!r}")


@dataclass
class CaptioningModelConfig(ModelConfig):
    """The ``model`` section: see :class:`~memnets.models.captioning.Captioner`.

    Args:
        channels: the CNN's channels per convolution (each halves the image).
        coordinates: append each grid cell's (x, y) in [-1, 1] to its features.
        kernel_size: every convolution's kernel (3: each cell of a 3-layer grid
            sees 15 pixels each way; 5: 29).
        embedding_size: word embeddings.
        attention: ``soft`` (Xu et al.) or ``none`` (Vinyals et al.).
        score: the attention score (``additive`` as in Xu et al.).
        gate: Xu et al.'s gating scalar on the context.
        doubly_stochastic: :math:`\\lambda`, the weight of the doubly stochastic
            penalty (attention models; 0 = off).
        image_dropout: dropout on the grid's features in training (not on the
            coordinates).
    """

    hidden_size: int = 256
    channels: list[int] = field(default_factory=lambda: [32, 32, 32, 32])
    coordinates: bool = True
    kernel_size: int = 3
    embedding_size: int = 64
    attention: Literal["soft", "none"] = "soft"
    score: Literal["additive", "dot", "general", "concat"] = "additive"
    gate: bool = True
    doubly_stochastic: float = 1.0
    image_dropout: float = 0.0

    RANGES: ClassVar[dict[str, str]] = {"channels": ">= 1", "embedding_size": ">= 1",
                                        "kernel_size": ">= 1", "doubly_stochastic": ">= 0",
                                        "image_dropout": "[0, 1)"}

    def validate(self) -> None:
        if not self.channels:
            raise ValueError("channels: expected at least one convolution, got []")
        if self.block is not None:
            raise ValueError(f"block: expected null (the captioning decoder steps its cells "
                             f"one by one), got {self.block!r}")


# ---------------------------------------------------------------------- data


class CaptionBatch(NamedTuple):
    """A batch of ``N`` images and captions (``T`` the longest caption + 1).

    Attributes:
        images: ``(N, 3, H, W)`` float in [0, 1].
        target_in: ``(N, T)`` ``<s>`` then the caption's ids, ``<pad>`` after.
        target_out: ``(N, T)`` the caption's ids then ``</s>``, ``<pad>`` after.
        indices: ``(N,)`` the images' indices in their split.
    """

    images: Tensor
    target_in: Tensor
    target_out: Tensor
    indices: Tensor


class _Split:
    """A split's images (uint8, ``(N, 3, H, W)``), caption ids and examples; item
    ``i`` is ``(image i, caption ids i, i)``."""

    def __init__(self, images: Tensor, targets: list[list[int]], examples: list) -> None:
        self.images, self.targets, self.examples = images, targets, examples

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, list[int], int]:
        return self.images[i], self.targets[i], i


def image_tensor(images: list[np.ndarray]) -> Tensor:
    """``(H, W, 3)`` uint8 arrays -> one ``(N, 3, H, W)`` uint8 tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def as_float(images: Tensor) -> Tensor:
    """uint8 images -> float in [0, 1]."""
    return images.float().div_(255.0)


# ---------------------------------------------------------------------- the task


@register_task("captioning")
class CaptioningTask(Task):
    DataConfig = CaptioningDataConfig
    ModelConfig = CaptioningModelConfig
    main_metric = "exact_match"
    higher_is_better = True
    size_unit = "ex"
    predict_input = "a path to an image file (PNG, JPEG, ...)"
    one_input_options = ("png",)

    def __init__(self, data: CaptioningDataConfig, data_dir: Path | None = None) -> None:
        super().__init__(data, data_dir)
        self.vocab: Vocab | None = None
        self.image_size: tuple[int, int] | None = None  # (H, W) of the training images
        self.max_length: int | None = None
        self.captions: Counter = Counter()  # training captions, for the baseline
        self._folder_used: Path | None = None
        self._examples: dict[str, list] = {}
        self._splits: dict[str, _Split] = {}
        self._model_config: CaptioningModelConfig | None = None

    # ------------------------------------------------------------------ files

    def splits(self) -> tuple[str, ...]:
        return SPLIT_NAMES[self.config.dataset]

    def _file_split(self, split: str) -> str:
        """The generated split that a task split reads (``test`` -> ``data.test_set``)."""
        if split not in self.splits():
            raise DataError(f"expected a split among {', '.join(self.splits())}, got {split!r}")
        return self.config.test_set if split == "test" else split

    def folder(self) -> Path:
        """The generated data's folder (generated now if it is not there)."""
        if self._folder_used is None:
            c = self.config
            generator, default = DATASETS[c.dataset]
            path = Path(c.path or default).expanduser()
            if not path.is_absolute():
                if self.data_dir is None:
                    raise DataError("task captioning: expected a data root, got none")
                path = self.data_dir / path
            self._folder_used = Path(ensure_generated(generator, path, seed=c.seed))
        return self._folder_used

    def examples(self, split: str) -> list:
        """The split's :class:`~memnets.data.scenes.CaptionExample` list (the first
        ``data.<split>_size`` of them when set)."""
        name = self._file_split(split)
        if name not in self._examples:
            read = read_shape_captions if self.config.dataset == "shapes" else read_digit_strings
            examples = list(read(self.folder(), name))
            limit = {"train": self.config.train_size, "dev": self.config.dev_size}.get(
                name, self.config.test_size)
            if limit is not None:
                examples = examples[:limit]
            self._examples[name] = examples
        return self._examples[name]

    def name_objects(self, words: list[str], objects) -> list[int | None]:
        """Per generated word, the index of the object it names (or ``None``)."""
        if self.config.dataset == "shapes":
            return list(name_objects_shapes(words, objects))
        return list(name_objects_digits(words, objects))

    # ------------------------------------------------------------------ state

    def setup(self) -> None:
        train = self.examples("train")
        if not train:
            raise DataError(f"expected captioned images in the train split of "
                            f"{self.folder()}, got none")
        captions = [list(e.words) for e in train]
        self.vocab = Vocab.build(captions, min_freq=self.config.min_freq, specials=SPECIALS)
        H, W = (int(v) for v in train[0].image.shape[:2])
        self.image_size = (H, W)
        self.max_length = self.config.max_length or max(len(c) for c in captions) + 5
        self.captions = Counter(" ".join(c) for c in captions)

    def state_dict(self) -> dict:
        best = self.captions.most_common(1)
        return {"vocab": self.vocab.to_dict(), "image_size": list(self.image_size),
                "max_length": self.max_length,
                "most_frequent_caption": best[0][0] if best else None}

    def load_state_dict(self, state: dict) -> None:
        self.vocab = Vocab.from_dict(state["vocab"])
        self.image_size = tuple(int(v) for v in state["image_size"])
        self.max_length = int(state["max_length"])
        best = state.get("most_frequent_caption")
        self.captions = Counter({best: 1} if best is not None else {})

    # ------------------------------------------------------------------ batches

    def dataset(self, split: str) -> _Split:
        if split not in self._splits:
            examples = self.examples(split)
            size = self.image_size
            for k, e in enumerate(examples):
                if tuple(e.image.shape) != (*size, 3):
                    raise DataError(f"{self.folder()}: image {k} of the {split} split is "
                                    f"{tuple(e.image.shape)}, expected ({size[0]}, "
                                    f"{size[1]}, 3) as the training images")
            images = image_tensor([e.image for e in examples]) if examples else \
                torch.zeros(0, 3, *size, dtype=torch.uint8)
            targets = [self.vocab.encode(e.words) for e in examples]
            self._splits[split] = _Split(images, targets, examples)
        return self._splits[split]

    def lengths(self, split: str) -> list[int]:
        """Caption words + 1 per image, for ``data.bucket``."""
        return [len(t) + 1 for t in self.dataset(split).targets]

    def collate(self, examples: list[tuple[Tensor, list[int], int]]) -> CaptionBatch:
        pad, bos, eos = self.vocab.pad_id, self.vocab[BOS], self.vocab[EOS]
        N = len(examples)
        T = max(len(t) for _, t, _ in examples) + 1
        tin = torch.full((N, T), pad, dtype=torch.long)
        tout = torch.full((N, T), pad, dtype=torch.long)
        for row, (_, t, _) in enumerate(examples):
            tin[row, :len(t) + 1] = torch.tensor([bos, *t], dtype=torch.long)
            tout[row, :len(t) + 1] = torch.tensor([*t, eos], dtype=torch.long)
        images = as_float(torch.stack([x for x, _, _ in examples]))  # (N, 3, H, W)
        return CaptionBatch(images, tin, tout, torch.tensor([i for _, _, i in examples]))

    # ------------------------------------------------------------------ model

    def build_model(self, config: CaptioningModelConfig) -> nn.Module:
        if self.vocab is None:
            raise RuntimeError("setup() or load_state_dict() must run before build_model()")
        self._model_config = config
        return Captioner(
            len(self.vocab), channels=tuple(config.channels), coordinates=config.coordinates,
            kernel_size=config.kernel_size,
            embedding_size=config.embedding_size, hidden_size=config.hidden_size,
            cell=config.cell, num_layers=config.num_layers, attention=config.attention,
            score=config.score, gate=config.gate, dropout=config.dropout,
            image_dropout=config.image_dropout, padding_idx=self.vocab.pad_id,
            cell_options=config.cell_options)

    @staticmethod
    def attends(model: nn.Module) -> bool:
        """Whether ``model`` attends over the image (``model.attention: soft``)."""
        decoder = getattr(model, "decoder", None)
        return decoder is not None and getattr(decoder, "attention", None) is not None

    def step(self, model, batch: CaptionBatch, state=None) -> StepOutput:
        device = model_device(model)
        images, tin, tout = batch.images.to(device), batch.target_in.to(device), \
            batch.target_out.to(device)
        c = self.config
        if model.training:  # a no-op unless the recipe augments
            images = random_affine(images, shift=c.augment_shift, rotate=c.augment_rotate,
                                   scale=c.augment_scale)
        logits, attention = model(images, tin)  # (N, T, V), (N, T, S)
        pad = self.vocab.pad_id
        gold = tout.reshape(-1)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), gold,
                              ignore_index=pad, reduction="sum")
        n = int((gold != pad).sum())
        loss = nll / max(n, 1)
        N = len(tin)
        stats = {"loss": nll.detach(), "count": n, "captions": N}
        lam = self._model_config.doubly_stochastic if self._model_config is not None else 0.0
        if self.attends(model):
            penalty = doubly_stochastic_penalty(attention.float(), tout != pad)
            stats["penalty"] = penalty.detach() * N
            if lam > 0:
                loss = loss + lam * penalty
        return StepOutput(loss=loss, size=N, stats=stats)

    def metrics(self, stats: dict[str, float]) -> dict[str, float]:
        nll = stats["loss"] / max(stats["count"], 1)
        out = {"loss": nll, "perplexity": perplexity(nll)}
        if "penalty" in stats:
            out["penalty"] = stats["penalty"] / max(stats["captions"], 1)
        return out

    def baselines(self) -> dict[str, float]:
        """``exact_match`` and ``bleu`` of giving every dev image the most frequent
        training caption."""
        best = self.captions.most_common(1)
        if not best:
            return {}
        refs = [list(e.words) for e in self.examples("dev")]
        if not refs:
            return {}
        hyps = [best[0][0].split()] * len(refs)
        return {"exact_match": exact_match(hyps, refs),
                "bleu": tokenized_bleu([" ".join(h) for h in hyps],
                                       [" ".join(r) for r in refs]).score}

    # ------------------------------------------------------------------ decoding

    def caption(self, model: nn.Module, images: Tensor, *, beam_size: int | None = None,
                alpha: float | None = None) -> list[dict]:
        """Caption float images ``(N, 3, H, W)``; for each: ``words``, ``score``,
        ``finished`` and ``attention`` (``(len(words) + 1, S)`` with the end
        token's row last when it ended; ``None`` without attention)."""
        c = self.config
        beam = c.beam_size if beam_size is None else beam_size
        alpha = c.length_penalty if alpha is None else alpha
        v = self.vocab
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                state = model.start(images.to(model_device(model)))
                hyps = best_hypotheses(model.search_step(banned=(v.pad_id, v[BOS])), state,
                                       batch_size=len(images), bos=v[BOS], eos=v[EOS],
                                       max_length=self.max_length, beam_size=beam, alpha=alpha)
        finally:
            model.train(was)
        attends = self.attends(model)
        return [{"words": v.decode(h.tokens), "score": h.score, "finished": h.finished,
                 "attention": h.attention if attends else None} for h in hyps]

    def decode_split(self, model: nn.Module, split: str, *, batch_size: int) -> list[dict]:
        """:meth:`caption` of every image of ``split``, in order."""
        ds = self.dataset(split)
        out: list[dict] = []
        for b in range(0, len(ds), batch_size):
            out += self.caption(model, as_float(ds.images[b:b + batch_size]))
        return out

    def cell_boxes(self, model: nn.Module) -> Tensor:
        """``(S, 4)`` the pixel box of every grid cell of the training image size."""
        return model.encoder.cell_boxes(*self.image_size)

    def scores(self, model: nn.Module, split: str, results: list[dict]) -> dict[str, float]:
        """``exact_match``, ``bleu`` and (attention models) ``localisation`` and
        ``localisation_chance`` of a split's decoded captions."""
        examples = self.examples(split)
        hyps = [r["words"] for r in results]
        refs = [list(e.words) for e in examples]
        out = {"exact_match": exact_match(hyps, refs),
               "bleu": tokenized_bleu([" ".join(h) for h in hyps],
                                      [" ".join(r) for r in refs]).score}
        if results and results[0]["attention"] is not None:
            cells = self.cell_boxes(model).cpu()
            hits = total = 0
            chance = 0.0
            for r, e in zip(results, examples):
                named = self.name_objects(r["words"], e.objects)
                boxes = [o.box for o in e.objects]
                h, t = localisation(r["attention"], named, boxes, cells)
                hits, total = hits + h, total + t
                chance += localisation_chance(named, boxes, cells)
            out["localisation"] = 100.0 * hits / max(total, 1)
            out["localisation_chance"] = 100.0 * chance / max(total, 1)
            out["object_words"] = float(total)
        return out

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, *, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> dict[str, float]:
        """Teacher-forced ``loss``, ``perplexity`` (and ``penalty``), then the whole
        split decoded and scored; on ``shapes``, ``test`` adds the compositional
        split's ``compositional_*`` scores.  Under DDP every process decodes the
        whole split, so that all hold the same metrics."""
        metrics = super().evaluate(model, split, batch_size=batch_size, rank=rank,
                                   world_size=world_size)
        metrics.update(self.scores(model, split, self.decode_split(model, split,
                                                                   batch_size=batch_size)))
        if self.config.dataset == "shapes" and split == "test" and self.config.test_set == "test":
            comp = "test_compositional"
            scored = self.scores(model, comp, self.decode_split(model, comp,
                                                                batch_size=batch_size))
            for key in ("exact_match", "bleu", "localisation"):
                if key in scored:
                    metrics[f"compositional_{key}"] = scored[key]
        return metrics

    # ------------------------------------------------------------------ predict

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = (
            "Caption images: memnets predict RUN_DIR image.png [more.png ...] (read at the "
            "training image size, converted to RGB), or a stored image of a split with "
            "--test-index K. " + parser.description)
        parser.add_argument("--beam", type=int, default=None, metavar="N",
                            help=f"beam size (default data.beam_size = {self.config.beam_size};"
                                 f" 1 = greedy)")
        parser.add_argument("--png", help="also write the attention of every generated word "
                                          "over the image to this PNG file (one input)")
        parser.add_argument("--test-index", type=int, default=None, metavar="K",
                            help="caption image K of a stored split (see --split) and print "
                                 "its gold caption too")
        parser.add_argument("--split", default="test", choices=self.splits(),
                            help="the split of --test-index (default test)")

    def predict_inputs(self, ns: argparse.Namespace) -> list[tuple[str, str]]:
        if ns.test_index is None:
            return super().predict_inputs(ns)
        if ns.inputs or ns.file:
            raise ValueError("--test-index: expected no image files with it, got "
                             f"{len(ns.inputs) + len(ns.file)}")
        return [("input", f"{ns.split} image {ns.test_index}")]

    def parse_input(self, line: str, ns) -> dict:
        """An image file (or, with ``--test-index``, a stored image) -> its image,
        notes and, for a stored one, the gold caption and objects."""
        if ns.beam is not None and ns.beam < 1:
            raise ValueError(f"--beam: expected N >= 1, got {ns.beam}")
        if ns.test_index is not None:
            examples = self.examples(ns.split)
            k = ns.test_index
            if not 0 <= k < len(examples):
                raise ValueError(f"--test-index: expected an index in [0, {len(examples)}) of "
                                 f"the {ns.split} split, got {k}")
            e = examples[k]
            return {"image": e.image, "notes": [], "gold": list(e.words),
                    "objects": e.objects}
        path = Path(line.strip()).expanduser()
        if not line.strip():
            raise ValueError("expected a path to an image file, got an empty input")
        image, notes = read_image(path, size=self.image_size)
        return {"image": image, "notes": list(notes), "path": str(path)}

    def predict_batch(self, model: nn.Module, examples: list[dict], ns) -> list[dict]:
        """Each image's caption (and gold caption for a stored one); with ``--png``
        the attention of every word over the image."""
        images = as_float(image_tensor([e["image"] for e in examples]))
        decoded = self.caption(model, images, beam_size=ns.beam)
        results = []
        for e, r in zip(examples, decoded):
            words = r["words"]
            out = {"caption": " ".join(words), "words": words, "score": r["score"],
                   "finished": r["finished"],
                   "attention": None if r["attention"] is None else r["attention"].tolist()}
            if e["notes"]:
                out["notes"] = e["notes"]
            unknown = [w for w in words if w == UNK]
            if unknown:
                out["unknown"] = len(unknown)
            if "gold" in e:
                out["gold"] = " ".join(e["gold"])
                out["exact_match"] = words == e["gold"]
            if ns.png:
                out["png"] = str(self.attention_png(model, e, r, ns.png))
            results.append(out)
        return results

    def attention_png(self, model: nn.Module, example: dict, result: dict, out) -> Path:
        """One panel per generated word (and the end token): its attention over the
        image; for a stored image, the box of the object the word names."""
        from memnets.figures import attention_over_image  # matplotlib only when asked

        if result["attention"] is None:
            raise ValueError("--png: this model has no attention to draw (model.attention: "
                             "none)")
        h, w = model.encoder.grid(*self.image_size)
        words = result["words"] + ([EOS] if result["finished"] else [])
        att = result["attention"][:len(words)]  # (len(words), S)
        maps = [(word, att[t].reshape(h, w)) for t, word in enumerate(words)]
        boxes = None
        if "objects" in example:
            named = self.name_objects(result["words"], example["objects"]) + [None]
            boxes = [None if k is None else example["objects"][k].box
                     for k in named[:len(words)]]
        caption = " ".join(result["words"]) or "(empty caption)"
        return attention_over_image(example["image"], maps, Path(out), title=caption,
                                    boxes=boxes)

    def format_prediction(self, result: dict, ns) -> str:
        lines = [result["caption"] or "(empty caption)"]
        for note in result.get("notes", []):
            lines.append(f"note: {note}")
        if "gold" in result:
            lines.append(f"gold: {result['gold']}"
                         + ("  (exact match)" if result["exact_match"] else "  (differs)"))
        if not result["finished"]:
            lines.append(f"(stopped at {self.max_length} words without the end token)")
        if "png" in result:
            lines.append(f"attention over the image written to {result['png']}")
        return "\n".join(lines)
