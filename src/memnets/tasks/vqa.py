r"""The ``vqa`` task: visual question answering on Sort-of-CLEVR with stacked attention.

An image and a question in, one answer out.  The data are the project's own
Sort-of-CLEVR (Santoro et al., "A simple neural network module for relational
reasoning", 2017; :mod:`memnets.data.scenes`): 75x75 images of six objects of
distinct colours, each a square or a circle, with 10 non-relational questions
(``shape``: the shape of the red object; ``horizontal``: is it on the left;
``vertical``: is it on the top) and 10 relational ones (``closest`` /
``furthest``: the shape of the object closest to / furthest from it; ``count``:
how many objects have its shape) per image, rendered as words for a recurrent
question encoder; 10 answers (``yes``, ``no``, ``square``, ``circle``, ``1`` ..
``6``).  Splits: train 9800, dev 200, test 200 images.  The images are generated
on first use into ``<data>/<data.path>`` (seeded by ``data.seed``; or into the
user cache when the data root cannot be written) and rendered from their scene
descriptions when read.

The model is :class:`memnets.models.vqa.StackedAttentionVQA` (Yang et al.,
"Stacked attention networks for image question answering", 2016): a CNN grid
:math:`v_i` (:class:`memnets.layers.image.ImageEncoder`, with coordinate
features as an option) and a question vector :math:`u_0` from any registered
cell, then ``model.hops`` attention hops

.. math::
    h_A^{(k)} = \tanh\big(W_I v_i + (W_Q u_{k-1} + b_A)\big), \qquad
    p^{(k)} = \operatorname{softmax}_i\big(W_P h_A^{(k)} + b_P\big), \\
    \tilde v_k = \sum_i p^{(k)}_i v_i, \qquad u_k = \tilde v_k + u_{k-1}, \qquad
    \hat p(a) = \operatorname{softmax}(W_u u_K + b_u),

trained with the mean cross-entropy over the questions of a batch.
``model.hops: 0`` is the baseline without attention (pooled CNN features and the
question into an MLP, the "CNN+LSTM" baseline of the literature).

**Batches** hold ``data.batch_size`` *images* and all their questions (20 each):
the CNN runs once per image and ``image_index`` tells each question its image,
so an epoch is 9800 CNN passes and 196,000 questions.  The images are shuffled
by ``(trainer.seed, epoch)`` (:class:`~memnets.data.batching.ShardedBatches`),
and a resumed run starts at its batch.  The loss is the mean over the batch's
questions (``StepOutput.size`` counts questions).

**Metrics** of a split, in percent: ``accuracy`` (the main metric),
``relational``, ``non_relational``, ``acc_<kind>`` per question kind, and, for a
model with attention, ``localisation``: the share of questions with an answer
object (all but ``count``) whose last hop's attention peak (the arg-max grid
cell) overlaps that object's box (:func:`memnets.metrics.vision.peak_in_box`),
beside ``localisation_chance``, the mean share of the grid's cells that overlap
the box (what a peak drawn at random scores).  Localisation is measured in
evaluation only (dev and test rows), not on the training rows.
:meth:`VQATask.baselines` answers each kind's most frequent training answer.

``memnets predict RUN image.png --question "what is the shape of the red object ?"``
prints the answer with the most probable answers (``--top``); ``--png OUT`` draws
each hop's attention over the image (:func:`memnets.figures.attention_over_image`).
A question word the model never saw is an error that lists them.  ``memnets
predict RUN --test-index K`` answers the 20 questions of test image ``K`` beside
the truth (``--split dev`` for a dev image; ``--question-index J`` for one of
them, which ``--png`` can draw with its answer object's box).

Departures from Yang et al.: the question encoder is a recurrent network over
any registered memnets cell (theirs an LSTM or a CNN), the image a small CNN
trained from scratch on the generated images (theirs VGG features of real
photographs), and the answers are a closed set of 10.

Recipes: ``sort-of-clevr-san2``, ``sort-of-clevr-san1``, ``sort-of-clevr-baseline``;
docs/vision.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.images import MANIFEST, folder_writable
from memnets.data.paths import user_cache_dir
from memnets.data.scenes import (
    NON_RELATIONAL_KINDS,
    RELATIONAL_KINDS,
    SORT_OF_CLEVR_ANSWERS,
    dataset_counts,
    ensure_generated,
    read_sort_of_clevr,
)
from memnets.data.vocab import Vocab
from memnets.errors import DataError, shorten
from memnets.models.vqa import StackedAttentionVQA
from memnets.tasks import register_task
from memnets.tasks.base import ShardedBatches, StepOutput, Task, model_device, to_device

NON_RELATIONAL = NON_RELATIONAL_KINDS  # shape, horizontal, vertical
RELATIONAL = RELATIONAL_KINDS  # closest, furthest, count
KINDS = NON_RELATIONAL + RELATIONAL
NO_BOX = -1  # the box row of a question without an answer object (count)
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokenize(question: str) -> list[str]:
    """A question's words, lowercased, punctuation split off:
    ``"What is the shape of the red object?"`` -> ``[..., "object", "?"]``."""
    return _WORD.findall(question.lower())


# ---------------------------------------------------------------------- configuration


@dataclass
class VQADataConfig(DataConfig):
    """The ``data`` section of a ``vqa`` recipe.

    Args:
        batch_size: images per batch (each with all its questions, 20 for
            Sort-of-CLEVR: 32 images are 640 questions); ``eval_batch_size`` too.
        path: the generated Sort-of-CLEVR folder, relative to the data root (or
            absolute); generated there on first use (into the user cache,
            :func:`memnets.data.paths.user_cache_dir`, when it cannot be written).
        seed: the generator's seed (another seed is another dataset).
        train_size, dev_size, test_size: images generated for the split
            (``null``: the generator's 9800, 200, 200).  Image ``k`` of a split
            depends only on the seed, the split and ``k``, so a smaller split is
            the first images of the full one.  Another seed or other counts live
            in a folder of their own beside ``path``,
            ``<path>-seed<S>-<train>-<dev>-<test>``, so that a quick run never
            overwrites the full dataset.
        curriculum_kinds: the question kinds that the first ``curriculum_epochs``
            training epochs ask (the images stay the same, so an epoch keeps its
            number of batches); every kind after them and in evaluation.  A
            curriculum (Bengio, Louradour, Collobert & Weston, "Curriculum
            learning", 2009).  On 3000 images, shape questions alone left the
            plateau after about 2,300 updates; on the full set, 30 epochs of them did
            not (docs/vision.md).
        curriculum_epochs: 0 is no curriculum.
    """

    batch_size: int = 32
    path: str = "sort-of-clevr"
    seed: int = 0
    train_size: int | None = None
    dev_size: int | None = None
    test_size: int | None = None
    curriculum_kinds: list[str] = field(default_factory=lambda: ["shape"])
    curriculum_epochs: int = 0

    RANGES: ClassVar[dict[str, str]] = {
        "seed": ">= 0", "train_size": ">= 1", "dev_size": ">= 1", "test_size": ">= 1",
        "curriculum_epochs": ">= 0"}

    def counts(self) -> dict[str, int]:
        """The images per split asked for beyond the generator's defaults."""
        given = {"train": self.train_size, "dev": self.dev_size, "test": self.test_size}
        return {split: n for split, n in given.items() if n is not None}

    def validate(self) -> None:
        if self.bucket:
            raise ValueError("bucket: expected false (a batch is whole images with all their "
                             "questions), got true")
        unknown = [k for k in self.curriculum_kinds if k not in KINDS]
        if unknown or (self.curriculum_epochs and not self.curriculum_kinds):
            raise ValueError(f"curriculum_kinds: expected a non-empty list of kinds among "
                             f"{', '.join(KINDS)}, got {self.curriculum_kinds!r}")


@dataclass
class VQAModelConfig(ModelConfig):
    """The ``model`` section: the arguments of
    :class:`~memnets.models.vqa.StackedAttentionVQA`.

    Args:
        hops: attention hops (Yang et al.'s K: 1 or 2); 0 is the baseline without
            attention.
        channels: output channels of each CNN layer (3x3, stride 2).
        coordinates: append each grid cell's (x, y) in [-1, 1] to its features
            (Santoro et al. 2017).
        embedding_size: question word vector size.
        hidden_size: the question encoder's state (the size d of u and of the
            mapped image features).
        bidirectional: read the question in both directions.
        attention_size: the hidden size k of each hop's attention layer.
        cell, num_layers, dropout, cell_options: as for every model
            (:class:`memnets.config.ModelConfig`).
    """

    hops: int = 2
    channels: list[int] = field(default_factory=lambda: [32, 32, 32, 32])
    coordinates: bool = True
    embedding_size: int = 32
    hidden_size: int = 128
    bidirectional: bool = False
    attention_size: int = 128

    RANGES: ClassVar[dict[str, str]] = {
        "hops": ">= 0", "channels": ">= 1", "embedding_size": ">= 1", "attention_size": ">= 1"}

    def validate(self) -> None:
        if not self.channels:
            raise ValueError("channels: expected at least one CNN layer, got []")
        if self.block is not None:
            raise ValueError(f"block: expected null (the question encoder runs plain "
                             f"recurrent layers), got {self.block!r}")


# ---------------------------------------------------------------------- batches


class VQABatch(NamedTuple):
    """``B`` images and their ``N`` questions (``L`` the longest question).

    Attributes:
        images: ``(B, 3, H, W)`` float in [0, 1].
        image_index: ``(N,)`` each question's image, an index into ``images``.
        questions: ``(N, L)`` word ids, padded with ``<pad>``.
        lengths: ``(N,)`` words per question.
        answers: ``(N,)`` answer ids (:data:`memnets.data.scenes.SORT_OF_CLEVR_ANSWERS`).
        kinds: ``(N,)`` the question kind, an index into :data:`KINDS`.
        boxes: ``(N, 4)`` the answer object's box ``(x0, y0, x1, y1)`` in pixels,
            ``-1`` where the question has none (``count``).
        images_id: ``(B,)`` each image's index in its split.
    """

    images: Tensor
    image_index: Tensor
    questions: Tensor
    lengths: Tensor
    answers: Tensor
    kinds: Tensor
    boxes: Tensor
    images_id: Tensor


class EncodedSplit:
    """One split as tensors, built once: the images ``(I, 3, H, W)`` uint8 and every
    question's ids, answer, kind, box and image; :meth:`batch` cuts a batch."""

    def __init__(self, images: list, examples: list, vocab: Vocab, *, where: str) -> None:
        if not images:
            raise DataError(f"expected images in {where}, got none")
        import numpy as np

        self.images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        self.by_image: list[list[int]] = [[] for _ in images]
        ids, answers, kinds, boxes = [], [], [], []
        for q, ex in enumerate(examples):
            if not 0 <= ex.image_id < len(images):
                raise DataError(f"{where}: question {q} names image {ex.image_id}, expected "
                                f"0..{len(images) - 1}")
            if ex.kind not in KINDS or ex.answer not in SORT_OF_CLEVR_ANSWERS:
                raise DataError(f"{where}: question {q}: expected a kind among "
                                f"{', '.join(KINDS)} and an answer among "
                                f"{', '.join(SORT_OF_CLEVR_ANSWERS)}, got {ex.kind!r}, "
                                f"{ex.answer!r}")
            self.by_image[ex.image_id].append(q)
            ids.append(vocab.encode(ex.words))
            answers.append(SORT_OF_CLEVR_ANSWERS.index(ex.answer))
            kinds.append(KINDS.index(ex.kind))
            boxes.append(list(ex.target_box) if ex.target_box is not None else [NO_BOX] * 4)
        self.lengths = torch.tensor([len(s) for s in ids], dtype=torch.long)
        self.questions = torch.full((len(ids), int(self.lengths.max())), vocab.pad_id,
                                    dtype=torch.long)
        for q, s in enumerate(ids):
            self.questions[q, :len(s)] = torch.tensor(s, dtype=torch.long)
        self.answers = torch.tensor(answers, dtype=torch.long)
        self.kinds = torch.tensor(kinds, dtype=torch.long)
        self.boxes = torch.tensor(boxes, dtype=torch.long).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.by_image)

    def batch(self, image_ids: list[int], kinds: frozenset[int] | None = None) -> VQABatch:
        """The images ``image_ids`` (split indices) with all their questions, in order
        (only those of ``kinds``, indices into :data:`KINDS`, when given)."""
        sel = torch.tensor([q for i in image_ids for q in self.by_image[i]], dtype=torch.long)
        index = torch.tensor([b for b, i in enumerate(image_ids) for _ in self.by_image[i]],
                             dtype=torch.long)
        if kinds is not None:
            keep = torch.isin(self.kinds[sel], torch.tensor(sorted(kinds), dtype=torch.long))
            sel, index = sel[keep], index[keep]
        L = int(self.lengths[sel].max()) if len(sel) else 1
        return VQABatch(
            images=self.images[image_ids].float().div_(255.0),
            image_index=index,
            questions=self.questions[sel, :L], lengths=self.lengths[sel],
            answers=self.answers[sel], kinds=self.kinds[sel], boxes=self.boxes[sel],
            images_id=torch.tensor(image_ids, dtype=torch.long))


# ---------------------------------------------------------------------- the task


@register_task("vqa")
class VQATask(Task):
    """Visual question answering on Sort-of-CLEVR (see the module docstring)."""

    DataConfig = VQADataConfig
    ModelConfig = VQAModelConfig
    main_metric = "accuracy"
    higher_is_better = True
    size_unit = "ex"
    predict_input = "an image file (PNG, JPEG, ...) to ask the --question about"
    one_input_options = ("png",)

    def __init__(self, data: VQADataConfig, data_dir: Path | None = None) -> None:
        super().__init__(data, data_dir)
        self.vocab: Vocab | None = None
        self.image_size: tuple[int, int] | None = None  # (H, W) of the training images
        self._folder: Path | None = None
        self._raw: dict[str, tuple[list, list]] = {}
        self._encoded: dict[str, EncodedSplit] = {}
        self._cells: dict[tuple[int, int], Tensor] = {}

    # ------------------------------------------------------------------ data

    def folder(self) -> Path:
        """The generated Sort-of-CLEVR folder (generated on first use; see
        :class:`VQADataConfig` for where a dataset of another seed or size lives)."""
        if self._folder is None:
            c = self.config
            path = Path(c.path).expanduser()
            if not path.is_absolute():
                if self.data_dir is None:
                    raise DataError("the vqa task needs a data root (data.dir, $MEMNETS_DATA, "
                                    "...) or an absolute data.path")
                path = self.data_dir / path
            counts = dataset_counts("sort-of-clevr", c.counts())
            if c.seed != 0 or counts != dataset_counts("sort-of-clevr"):
                name = f"{path.name}-seed{c.seed}-{counts['train']}-{counts['dev']}-" \
                       f"{counts['test']}"
                path = path.with_name(name)
                if not (path / MANIFEST).is_file() and not folder_writable(path):
                    # the generator's own fallback is one folder per dataset name;
                    # a variant keeps its name there too
                    print(f"note: {path} cannot be written; using {user_cache_dir() / name}",
                          file=sys.stderr)
                    path = user_cache_dir() / name
            self._folder = Path(ensure_generated("sort-of-clevr", path, seed=c.seed,
                                                 counts=counts))
        return self._folder

    def raw(self, split: str) -> tuple[list, list]:
        """``(images, questions)`` of ``split`` as
        :func:`memnets.data.scenes.read_sort_of_clevr` reads them (once)."""
        if split not in self._raw:
            if split not in self.splits():
                raise DataError(f"expected a split among {', '.join(self.splits())}, "
                                f"got {split!r}")
            images, questions = read_sort_of_clevr(self.folder(), split)
            self._raw[split] = (list(images), list(questions))
        return self._raw[split]

    def encoded(self, split: str) -> EncodedSplit:
        if split not in self._encoded:
            images, questions = self.raw(split)
            self._encoded[split] = EncodedSplit(images, questions, self.vocab,
                                                where=f"the {split} split of {self.folder()}")
        return self._encoded[split]

    def setup(self) -> None:
        images, questions = self.raw("train")
        if not images or not questions:
            raise DataError(f"expected images with questions in the train split of "
                            f"{self.folder()}, got {len(images)} images, {len(questions)} "
                            f"questions")
        self.vocab = Vocab.build(q.words for q in questions)
        self.image_size = (int(images[0].shape[0]), int(images[0].shape[1]))

    def state_dict(self) -> dict:
        return {"vocab": self.vocab.to_dict(), "image_size": list(self.image_size),
                "answers": list(SORT_OF_CLEVR_ANSWERS)}

    def load_state_dict(self, state: dict) -> None:
        self.vocab = Vocab.from_dict(state["vocab"])
        self.image_size = tuple(int(x) for x in state["image_size"])
        if list(state.get("answers", SORT_OF_CLEVR_ANSWERS)) != list(SORT_OF_CLEVR_ANSWERS):
            raise DataError(f"expected a run trained on the answers "
                            f"{list(SORT_OF_CLEVR_ANSWERS)}, got {state['answers']}")

    def check_splits(self, splits: tuple[str, ...]) -> None:
        for split in splits:
            images, questions = self.raw(split)
            if not images or not questions:
                raise DataError(f"expected images with questions in the {split} split of "
                                f"{self.folder()}, got {len(images)} images and "
                                f"{len(questions)} questions")

    def batches(self, split, *, batch_size, epoch=0, seed=0, shuffle=False, rank=0,
                world_size=1, start=0, num_workers=0):
        """Batches of ``batch_size`` images with all their questions (see the module
        docstring); the order depends only on ``(seed, epoch)``.  Training epochs
        ``0 .. data.curriculum_epochs - 1`` keep only the questions of
        ``data.curriculum_kinds``."""
        enc = self.encoded(split)
        c = self.config
        kinds = None
        if split == "train" and shuffle and epoch < c.curriculum_epochs:
            kinds = frozenset(KINDS.index(k) for k in c.curriculum_kinds)
        sampler = ShardedBatches(len(enc), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                 rank=rank, world_size=world_size, start=start)
        for ids in sampler:
            yield enc.batch(ids, kinds)

    def num_batches(self, split: str, *, batch_size: int) -> int:
        return len(ShardedBatches(len(self.raw(split)[0]), batch_size))

    # ------------------------------------------------------------------ model

    def build_model(self, config: VQAModelConfig) -> nn.Module:
        if self.vocab is None:
            raise RuntimeError("setup() or load_state_dict() must run before build_model()")
        return StackedAttentionVQA(
            len(self.vocab), len(SORT_OF_CLEVR_ANSWERS), channels=tuple(config.channels),
            coordinates=config.coordinates, embedding_size=config.embedding_size,
            hidden_size=config.hidden_size, cell=config.cell, num_layers=config.num_layers,
            bidirectional=config.bidirectional, hops=config.hops,
            attention_size=config.attention_size, dropout=config.dropout,
            padding_idx=self.vocab.pad_id, cell_options=config.cell_options)

    def cell_boxes(self, model: nn.Module, height: int, width: int) -> Tensor:
        """``(S, 4)`` the pixel rectangle of each grid cell of the model's encoder."""
        key = (height, width)
        if key not in self._cells:
            self._cells[key] = model.image_encoder.cell_boxes(height, width).long().cpu()
        return self._cells[key]

    def step(self, model: nn.Module, batch: VQABatch, state=None) -> StepOutput:
        b = to_device(batch, model_device(model))
        logits, attention = model(b.images, b.image_index, b.questions, b.lengths)  # (N, A)
        n = len(b.answers)
        # a curriculum batch may hold no question of its kinds: a zero loss, no NaN
        loss = F.cross_entropy(logits.float(), b.answers) if n else logits.float().sum() * 0.0
        correct = logits.argmax(-1) == b.answers  # (N,)
        stats: dict = {"loss": loss.detach() * n, "count": n, "correct": correct.sum()}
        for k, kind in enumerate(KINDS):
            sel = b.kinds == k
            stats[f"count_{kind}"] = sel.sum()
            stats[f"correct_{kind}"] = (correct & sel).sum()
        if not model.training and attention is not None and attention.shape[1] > 0:
            stats.update(self.localisation_stats(model, b, attention[:, -1]))
        return StepOutput(loss=loss, stats=stats, size=n)

    def localisation_stats(self, model: nn.Module, b: VQABatch, last: Tensor) -> dict:
        """``loc_count`` (questions with an answer object), ``loc_hits`` (those whose
        peak cell of ``last`` ``(N, S)`` overlaps its box) and ``loc_chance`` (the sum
        of the shares of grid cells overlapping each box)."""
        from memnets.metrics.vision import box_chance, peak_in_box

        H, W = b.images.shape[-2:]
        cells = self.cell_boxes(model, int(H), int(W)).tolist()  # (S, 4)
        boxes = b.boxes.cpu().tolist()
        located = [q for q, box in enumerate(boxes) if box[0] != NO_BOX]
        last = last.detach().float().cpu().tolist()
        return {"loc_count": len(located),
                "loc_hits": sum(peak_in_box(last[q], cells, boxes[q]) for q in located),
                "loc_chance": sum(box_chance(cells, boxes[q]) for q in located)}

    def metrics(self, stats: dict[str, float]) -> dict[str, float]:
        n = max(stats.get("count", 0.0), 1e-12)
        out = {"loss": stats["loss"] / n, "accuracy": 100.0 * stats["correct"] / n}
        for name, kinds in (("relational", RELATIONAL), ("non_relational", NON_RELATIONAL)):
            count = sum(stats.get(f"count_{k}", 0.0) for k in kinds)
            if count:
                out[name] = 100.0 * sum(stats[f"correct_{k}"] for k in kinds) / count
        for kind in KINDS:
            if stats.get(f"count_{kind}", 0.0):
                out[f"acc_{kind}"] = 100.0 * stats[f"correct_{kind}"] / stats[f"count_{kind}"]
        if stats.get("loc_count", 0.0):
            out["localisation"] = 100.0 * stats["loc_hits"] / stats["loc_count"]
            out["localisation_chance"] = 100.0 * stats["loc_chance"] / stats["loc_count"]
        return out

    def baselines(self) -> dict[str, float]:
        """Each kind's most frequent training answer, scored on test (dev without a
        test split): ``accuracy``, ``relational``, ``non_relational`` and ``acc_<kind>``,
        what a model that reads only the question's kind scores."""
        majority = {}
        for kind in KINDS:
            counts = Counter(q.answer for q in self.raw("train")[1] if q.kind == kind)
            if counts:  # ties go to the answer listed first
                majority[kind] = max(SORT_OF_CLEVR_ANSWERS, key=lambda a: counts[a])
        scored = self.raw("test" if "test" in self.splits() else "dev")[1]
        stats: dict[str, float] = {"loss": 0.0, "count": len(scored),
                                   "correct": sum(q.answer == majority.get(q.kind)
                                                  for q in scored)}
        for kind in KINDS:
            of_kind = [q for q in scored if q.kind == kind]
            stats[f"count_{kind}"] = len(of_kind)
            stats[f"correct_{kind}"] = sum(q.answer == majority.get(kind) for q in of_kind)
        out = self.metrics(stats)
        del out["loss"]
        return out

    # ------------------------------------------------------------------ predict

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = (
            "Answer questions about an image and show where each attention hop looks: "
            "memnets predict RUN_DIR image.png --question \"what is the shape of the red "
            "object ?\" (each INPUT or --file line is an image; every --question is asked "
            "of each). Or answer the 20 questions of a test image beside the truth: "
            "memnets predict RUN_DIR --test-index K. " + parser.description)
        parser.add_argument("--question", action="append", default=[],
                            help="a question about the image (repeatable)")
        parser.add_argument("--top", type=int, default=3, metavar="K",
                            help="print the K most probable answers (default 3)")
        parser.add_argument("--test-index", type=int, metavar="K",
                            help="instead of an image file: image K of the --split, with its "
                                 "20 questions and their true answers")
        parser.add_argument("--split", default="test", choices=("train", "dev", "test"),
                            help="with --test-index: the split (default test)")
        parser.add_argument("--question-index", type=int, metavar="J",
                            help="with --test-index: only the image's J-th question")
        parser.add_argument("--png", help="write each hop's attention over the image to this "
                                          "PNG file (one image, one question)")

    def encode_question(self, question: str) -> list[int]:
        """A question's word ids; ``ValueError`` listing the words the model never saw."""
        words = tokenize(question)
        if not words:
            raise ValueError("expected a question of at least one word, got none")
        unknown = sorted({w for w in words if w not in self.vocab})
        if unknown:
            known = sorted(w for w in self.vocab.itos if w not in self.vocab.specials)
            raise ValueError(f"unknown words in the question {shorten(question, 80)}: "
                             f"{', '.join(unknown)} (the model knows: {' '.join(known)})")
        return self.vocab.encode(words)

    def predict_results(self, model: nn.Module, args: list[str]):
        """Read the image(s) or the ``--test-index`` image, answer every question."""
        ns = self.predict_parser().parse_args(args)
        if ns.top < 1:
            raise ValueError(f"--top: expected K >= 1, got {ns.top}")
        if ns.test_index is None and (ns.question_index is not None or ns.split != "test"):
            raise ValueError("--question-index and --split go with --test-index")
        model.eval()
        if ns.test_index is not None:
            if ns.inputs or ns.file:
                raise ValueError("expected either --test-index or image files, got both")
            jobs = [self._test_image(ns)]
        else:
            if not ns.question:
                raise ValueError('expected --question "..." to ask about the image')
            from memnets.data.images import read_image

            inputs = self.predict_inputs(ns)
            if not inputs:
                raise ValueError("expected an image file: INPUT..., --file PATH, or - to "
                                 "read paths from standard input")
            jobs = []
            for where, path in inputs:
                image, notes = read_image(path, size=self.image_size)
                jobs.append((where, path, image, notes,
                             [(q, None) for q in ns.question]))
        if ns.png and sum(len(j[4]) for j in jobs) != 1:
            raise ValueError(f"--png: expected a single image and question, got "
                             f"{sum(len(j[4]) for j in jobs)} questions"
                             + (" (pick one with --question-index)"
                                if ns.test_index is not None else ""))
        results = []
        with torch.no_grad():
            for where, path, image, notes, asked in jobs:
                results += self._answer(model, where, path, image, notes, asked, ns)
        return results, ns

    def _test_image(self, ns) -> tuple:
        images, questions = self.raw(ns.split)
        k = ns.test_index
        if not 0 <= k < len(images):
            raise ValueError(f"--test-index: expected 0..{len(images) - 1} for the {ns.split} "
                             f"split, got {k}")
        mine = [q for q in questions if q.image_id == k]
        if ns.question_index is not None:
            if not 0 <= ns.question_index < len(mine):
                raise ValueError(f"--question-index: expected 0..{len(mine) - 1}, got "
                                 f"{ns.question_index}")
            mine = [mine[ns.question_index]]
        asked = [(" ".join(q.words), q) for q in mine]
        asked += [(q, None) for q in ns.question]  # own questions about the test image
        return (f"{ns.split} image {k}", None, images[k], [], asked)

    def _answer(self, model, where, path, image, notes, asked, ns) -> list[dict]:
        ids = [self.encode_question(q) for q, _ in asked]
        lengths = torch.tensor([len(s) for s in ids])
        questions = torch.full((len(ids), int(lengths.max())), self.vocab.pad_id,
                               dtype=torch.long)
        for i, s in enumerate(ids):
            questions[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        device = model_device(model)
        pixels = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
        logits, attention = model(pixels.to(device), torch.zeros(len(ids), dtype=torch.long,
                                                                 device=device),
                                  questions.to(device), lengths.to(device))
        probs = torch.softmax(logits.float(), -1).cpu()  # (Q, A)
        H, W = image.shape[:2]
        grid = model.image_encoder.grid(H, W)
        results = []
        for i, (question, truth) in enumerate(asked):
            top = probs[i].topk(min(ns.top, probs.shape[1]))
            answers = {SORT_OF_CLEVR_ANSWERS[int(a)]: float(p)
                       for p, a in zip(top.values, top.indices)}
            r: dict = {"input": where if path is None else path, "question": question,
                       "answer": next(iter(answers)), "probability": next(iter(answers.values())),
                       "top": answers}
            if notes:
                r["notes"] = list(notes)
            if truth is not None:
                r.update(true_answer=truth.answer, kind=truth.kind,
                         relational=truth.relational, correct=r["answer"] == truth.answer)
            hops = attention[i].float().cpu() if attention is not None else None  # (K, S)
            if hops is not None and hops.shape[0] > 0:
                r["attention"] = hops.reshape(-1, *grid).tolist()
            if ns.png:
                if hops is None or hops.shape[0] == 0:
                    raise ValueError("--png: this model has no attention to draw "
                                     "(model.hops: 0)")
                from memnets.figures import attention_over_image

                maps = [(f"hop {k + 1}", hops[k].reshape(*grid).numpy())
                        for k in range(hops.shape[0])]
                boxes = tuple(truth.target_box) if truth is not None and \
                    truth.target_box is not None else None
                title = f"{question}  ->  {r['answer']}" + (
                    f" (true: {truth.answer})" if truth is not None else "")
                r["attention_map"] = str(attention_over_image(image, maps, ns.png, title=title,
                                                              boxes=boxes))
            results.append(r)
        return results

    def predict(self, model: nn.Module, args: list[str]) -> str:
        """As :meth:`Task.predict`; a ``--test-index`` image is one table, its score first."""
        results, ns = self.predict_results(model, args)
        if ns.json:
            import json

            from memnets.tasks.base import json_safe

            return "\n".join(json.dumps(json_safe(r)) for r in results)
        if ns.test_index is not None:
            scored = [r for r in results if "true_answer" in r]
            width = max(len(r["question"]) for r in results)
            head = f"{ns.split} image {ns.test_index}: " + (
                f"{sum(r['correct'] for r in scored)} of {len(scored)} answered right"
                if scored else "")
            rows = [head, f"{'question':<{width}}  {'answer':>6}  {'p':>5}  truth"]
            for r in results:
                truth = r.get("true_answer", "")
                mark = "" if not truth or r["correct"] else "   <- wrong"
                rows.append(f"{r['question']:<{width}}  {r['answer']:>6}  "
                            f"{r['probability']:5.3f}  {truth}{mark}")
            rows += [f"attention map: {r['attention_map']}" for r in results
                     if "attention_map" in r]
            return "\n".join(rows)
        texts = [self.format_prediction(r, ns) for r in results]
        return "\n\n".join(texts)

    def format_prediction(self, result: dict, ns) -> str:
        """The question, the answer with the most probable answers, any notes on the
        image read and the attention map written."""
        lines = [f"{result['input']}: {result['question']}"]
        lines += [f"note: {n}" for n in result.get("notes", [])]
        lines.append(f"answer: {result['answer']}  (" + ", ".join(
            f"{a} {p:.3f}" for a, p in result["top"].items()) + ")")
        if "attention_map" in result:
            lines.append(f"attention map: {result['attention_map']}")
        return "\n".join(lines)

