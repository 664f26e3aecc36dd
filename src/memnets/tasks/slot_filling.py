"""Slot filling with joint intent detection (task ``slot_filling``).

Reads any corpus in the ``seq`` or ``iob`` layout of :mod:`memnets.data.atis`
(ATIS's two usual splits are shipped as recipes); the tag set, the intents
and the vocabularies come from the training split, so another corpus in the
same layout trains by changing ``data.corpus`` only.  The model is
:class:`memnets.models.tagger.SlotTagger`.

Metrics (percent): ``slot_f1`` exactly as conlleval computes it,
``intent_accuracy``, ``sentence_accuracy`` (every tag and the intent right),
``joint`` (mean of slot F1 and intent accuracy), plus ``loss``.  Model
selection uses ``data.select`` (default ``slot_f1``) on the dev split.

Labels that occur in dev or test but never in training cannot be predicted;
they are scored as errors (not dropped), and ignored by the loss.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar

from memnets.cells.base import check_size, check_sizes
from memnets.config import DataConfig, ModelConfig
from memnets.data.atis import (
    FORMATS,
    KNOWN_CORPORA,
    SlotBatch,
    SlotVocabs,
    Utterance,
    collate,
    fetch_corpus,
    read_split,
    split_off,
)
from memnets.data.paths import DataError
from memnets.layers.pooling import POOLINGS
from memnets.metrics.conlleval import ConllEval
from memnets.models.tagger import SlotTagger, TaggerEnsemble
from memnets.tasks import register_task
from memnets.tasks.base import StepOutput, Task, model_device

SELECT_METRICS = ("slot_f1", "intent_accuracy", "sentence_accuracy", "joint")
INTENT_POOLINGS = ("none", *POOLINGS)  # none: slots only
CELL_OUTPUTS = ("features", "posterior")


@dataclass
class SlotDataConfig(DataConfig):
    """``data`` section of ``slot_filling``.

    Args:
        corpus: the corpus folder, relative to the data root (or absolute).
            The folders named in :data:`memnets.data.atis.KNOWN_CORPORA` are
            downloaded (sha256-checked) when missing and ``download`` is true.
        format: ``seq`` (a folder per split with ``seq.in``, ``seq.out``,
            ``label``) or ``iob`` (a file per split, ``BOS .. EOS<TAB>O .. intent``).
        train, dev, test: the split folders (seq) or files (iob) inside
            ``corpus``; ``dev: null`` holds out ``dev_fraction`` of train instead,
            ``test: null`` means no test split.
        dev_fraction: share of train held out as dev when ``dev`` is null.
        split_seed: the seed of that hold-out.
        min_freq: training words seen fewer times become ``<unk>``.
        lowercase, digits: word normalisation (``digits`` writes every digit as 0).
        download: fetch a known corpus when its files are missing.
        bucket: batch utterances of similar length together (less padding).
        select: the dev metric that picks the checkpoint and drives early
            stopping: ``slot_f1``, ``intent_accuracy``, ``sentence_accuracy`` or
            ``joint`` (the mean of slot F1 and intent accuracy).
    """

    corpus: str = "atis_slotgated"
    format: str = "seq"
    train: str = "train"
    dev: str | None = "valid"
    test: str | None = "test"
    dev_fraction: float = 0.1
    split_seed: int = 0
    min_freq: int = 1
    lowercase: bool = True
    digits: bool = False
    download: bool = True
    bucket: bool = True
    select: str = "slot_f1"

    RANGES: ClassVar[dict[str, str]] = {"split_seed": ">= 0", "min_freq": ">= 1"}

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format: expected one of {FORMATS}, got {self.format!r}")
        if self.dev is None and not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(
                f"dev_fraction: expected a value in (0, 1) when dev is null, "
                f"got {self.dev_fraction}"
            )
        if self.select not in SELECT_METRICS:
            raise ValueError(f"select: expected one of {SELECT_METRICS}, got {self.select!r}")
        if self.min_freq < 1:
            raise ValueError(f"min_freq: expected >= 1, got {self.min_freq}")


@dataclass
class SlotModelConfig(ModelConfig):
    """``model`` section of ``slot_filling``: the hyper-parameters of
    :class:`memnets.models.tagger.SlotTagger`, checked here once, when the recipe
    is read (:func:`memnets.config.build_section` runs :meth:`validate` and the
    ``RANGES`` of :class:`~memnets.config.ModelConfig`).

    Args:
        cell: name of a registered cell (``elman``, ``jordan``, ``lstm``, ``gru``, ...).
        hidden_size: features of each direction's state.
        num_layers: stacked recurrent layers.
        bidirectional: read each utterance in both directions.
        cell_options: extra keyword arguments for the cell's constructor.
        cell_output: ``features`` (a linear layer maps the top layer's outputs
            to slot scores) or ``posterior``: the top cell itself outputs the
            distribution over tags (built with ``output_size`` = number of
            tags, as the ``jordan`` cell of Mesnil et al.) and its logarithm is
            the slot score.  ``posterior`` needs a one-directional top layer.
        word_dim: word embedding size.
        window: context half-width ``k``; the encoder reads the concatenated
            embeddings of words ``t-k .. t+k`` at step ``t`` (zeros beyond the
            utterance).  0 reads word ``t`` alone.
        char_dim: character embedding size; 0 switches the character encoder off.
        char_filters: output features of the character CNN.
        char_kernel: width of its filters, in characters.
        dropout: on word representations, between layers and before the heads.
        word_dropout: probability of replacing a training word by ``<unk>``,
            which teaches the ``<unk>`` embedding.
        crf: decode slots with a linear-chain CRF instead of per-word softmax.
        bio_constrained: with ``crf``, forbid ``I-x`` after anything but
            ``B-x``/``I-x`` and at the start (read from the tag names).
        intent_pooling: ``none`` (slots only), ``last``, ``mean``, ``max`` or
            ``attention``.
        intent_heads: with ``attention`` pooling, the number of attention
            heads; each pools the encoder's outputs with its own weights and
            the intent head reads their concatenation (Lin et al., "A
            structured self-attentive sentence embedding", 2017, without
            their penalty term), so that an intent resting on two cues ("fares"
            and "ground transportation") can attend to both.
        intent_weight: weight of the intent loss against the slot loss.
        intent_parts: a separator (e.g. ``"#"``) that splits multi-intent labels
            into parts; then each intent's score also adds a score per part,
            shared by every label with that part, so that ``a#b`` draws on the
            evidence for ``a`` and for ``b``.  Labels stay single classes for
            the loss and the metrics.  Empty (default): one free score per label.
    """

    hidden_size: int = 100
    bidirectional: bool = False
    cell_output: str = "features"
    word_dim: int = 100
    window: int = 0
    char_dim: int = 0
    char_filters: int = 50
    char_kernel: int = 3
    word_dropout: float = 0.0
    crf: bool = False
    bio_constrained: bool = True
    intent_pooling: str = "none"
    intent_heads: int = 1
    intent_weight: float = 1.0
    intent_parts: str = ""

    def validate(self) -> None:
        if self.cell_output not in CELL_OUTPUTS:
            raise ValueError(
                f"expected cell_output one of {CELL_OUTPUTS}, got {self.cell_output!r}"
            )
        if self.cell_output == "posterior" and self.bidirectional:
            raise ValueError("expected bidirectional: false with cell_output: posterior")
        if self.intent_pooling not in INTENT_POOLINGS:
            raise ValueError(
                f"expected intent_pooling one of {INTENT_POOLINGS}, got {self.intent_pooling!r}"
            )
        if self.intent_heads != 1 and self.intent_pooling != "attention":
            raise ValueError(f"expected intent_heads: 1 unless intent_pooling is 'attention', "
                             f"got {self.intent_heads} with {self.intent_pooling!r}")
        for name in ("hidden_size", "num_layers", "word_dim", "intent_heads"):
            check_size(name, getattr(self, name))
        for name in ("window", "char_dim"):
            check_size(name, getattr(self, name), minimum=0)
        if self.char_dim:
            check_sizes(char_filters=self.char_filters, char_kernel=self.char_kernel)
        for name in ("dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"expected {name} in [0, 1), got {getattr(self, name)}")


@register_task("slot_filling")
class SlotFillingTask(Task):
    """Slot filling and intent detection on a corpus in the seq or iob layout."""

    DataConfig = SlotDataConfig
    ModelConfig = SlotModelConfig
    main_metric = "slot_f1"
    higher_is_better = True
    size_unit = "ex"
    predict_input = "an utterance in quotes, words separated by spaces"
    one_input_options = ("png",)

    def __init__(self, data: SlotDataConfig, data_dir=None) -> None:
        super().__init__(data, data_dir)
        self.vocabs: SlotVocabs | None = None
        self.main_metric = data.select  # the engine reads it from the instance
        self._data: dict[str, list[Utterance]] = {}

    # ------------------------------------------------------------------ data

    @property
    def corpus_dir(self):
        from pathlib import Path

        p = Path(self.config.corpus).expanduser()
        return p if p.is_absolute() or self.data_dir is None else self.data_dir / p

    def _read(self, name: str) -> list[Utterance]:
        folder = self.corpus_dir
        path = folder / name
        if not path.exists() and self.config.download and folder.name in KNOWN_CORPORA:
            fetch_corpus(folder)
        if not path.exists():
            kind = "folder with seq.in, seq.out, label" if self.config.format == "seq" else "file"
            raise DataError(
                f"slot-filling split not found: expected the {kind} {path} "
                f"(data.corpus={self.config.corpus!r}, data.format={self.config.format!r})"
            )
        try:
            return read_split(folder, name, self.config.format)
        except DataError:
            raise
        except (ValueError, FileNotFoundError) as e:
            raise DataError(str(e)) from None

    def _split_name(self, split: str) -> str:
        """The folder (seq) or file (iob) of ``split`` inside the corpus; a held-out dev
        (``data.dev: null``) is read from the train one."""
        c = self.config
        names = {"train": c.train, "dev": c.train if c.dev is None else c.dev, "test": c.test}
        if split not in names:
            raise DataError(f"expected a slot-filling split train, dev or test, got {split!r}")
        if names[split] is None:
            raise DataError(f"expected a {split} split, got data.{split}: null in this recipe")
        return names[split]

    def _needs_intents(self) -> bool:
        return self.config.select in ("intent_accuracy", "joint")

    def _split_files(self, name: str, *, labels: bool) -> list:
        folder = self.corpus_dir / name
        if self.config.format == "iob":
            return [folder]
        return [folder / "seq.in", folder / "seq.out"] + ([folder / "label"] if labels else [])

    def _check_labels(self, splits: tuple[str, ...]) -> None:
        """In the seq layout, every split needs its ``label`` file when the recipe scores
        intents (``data.select``) or when the training split has one (so that a dev or
        test split without intents is not scored as all wrong)."""
        c = self.config
        if c.format != "seq":
            return
        train_label = self.corpus_dir / c.train / "label"
        if not train_label.is_file():
            if self._needs_intents():
                raise DataError(f"intent labels not found: expected {train_label} "
                                f"(data.select={c.select!r} scores intents)")
            return
        for split in splits:
            label = self.corpus_dir / self._split_name(split) / "label"
            if (self.corpus_dir / self._split_name(split)).is_dir() and not label.is_file():
                raise DataError(f"intent labels not found: expected {label}, as "
                                f"{train_label} gives the training split intents")

    def check_splits(self, splits: tuple[str, ...]) -> None:
        """Raise :class:`DataError` naming every missing file of ``splits``, or a split
        without utterances, before anything trains.

        A known corpus (:data:`~memnets.data.atis.KNOWN_CORPORA`) is downloaded first
        when ``data.download`` is true, as the first read would; nothing else touches
        the network.  The splits are read (the corpora are small), so that a malformed
        test file is found now too.
        """
        labels = self._needs_intents() or (
            self.config.format == "seq"
            and (self.corpus_dir / self.config.train / "label").is_file())
        names = list(dict.fromkeys(self._split_name(s) for s in splits))
        missing = [f for n in names for f in self._split_files(n, labels=labels)
                   if not f.is_file()]
        folder = self.corpus_dir
        if missing and self.config.download and folder.name in KNOWN_CORPORA:
            fetch_corpus(folder)
            missing = [f for f in missing if not f.is_file()]
        if missing:
            raise DataError(
                f"slot-filling split file(s) not found: expected {', '.join(map(str, missing))} "
                f"(data.corpus={self.config.corpus!r}, data.format={self.config.format!r})")
        self._check_labels(splits)
        for split in splits:
            if not self.examples(split):
                raise DataError(f"expected utterances in {folder / self._split_name(split)}, "
                                f"got none")

    def splits(self) -> tuple[str, ...]:
        return ("train", "dev") + (("test",) if self.config.test is not None else ())

    def examples(self, split: str) -> list[Utterance]:
        """The utterances of ``split`` (read once)."""
        if split not in self._data:
            c = self.config
            if split in ("train", "dev") and c.dev is None:
                train, dev = split_off(self._read(c.train), c.dev_fraction, c.split_seed)
                self._data["train"], self._data["dev"] = train, dev
            elif split in ("train", "dev", "test"):
                name = {"train": c.train, "dev": c.dev, "test": c.test}[split]
                if name is None:
                    raise ValueError(f"this recipe has no {split} split")
                self._data[split] = self._read(name)
            else:
                raise ValueError(f"expected split train, dev or test, got {split!r}")
        return self._data[split]

    def setup(self) -> None:
        c = self.config
        train = self.examples("train")
        self._check_labels(self.splits())
        if not train:
            raise DataError(f"expected utterances in {self.corpus_dir / c.train}, got none")
        if self._needs_intents() and all(u.intent is None for u in train):
            raise DataError(f"expected intents in {self.corpus_dir / c.train} "
                            f"(data.select={c.select!r} scores intents), got none")
        self.vocabs = SlotVocabs.build(train, min_freq=c.min_freq,
                                       lowercase=c.lowercase, digits=c.digits)

    def state_dict(self) -> dict:
        return {"vocabs": self.vocabs.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.vocabs = SlotVocabs.from_dict(state["vocabs"])

    def dataset(self, split: str):
        return self.examples(split)

    def collate(self, examples: list[Utterance]) -> SlotBatch:
        return collate(examples, self.vocabs)

    def lengths(self, split: str) -> list[int]:
        """Words per utterance: ``data.bucket`` (on by default here) batches by it."""
        return [len(u.words) for u in self.examples(split)]

    # ------------------------------------------------------------------ model

    def build_model(self, config: SlotModelConfig) -> SlotTagger:
        v = self.vocabs
        if v is None:
            raise RuntimeError("setup() or load_state_dict() must run before build_model()")
        return SlotTagger(config, num_words=len(v.words), num_chars=len(v.chars),
                          tags=list(v.tags.itos),
                          num_intents=0 if v.intents is None else len(v.intents),
                          intents=None if v.intents is None else list(v.intents.itos))

    def build_ensemble(self, models: list[SlotTagger]) -> TaggerEnsemble:
        """Members of one design decoding together (``memnets ensemble``; ``memnets
        predict`` and ``eval`` on the directory it writes)."""
        return TaggerEnsemble(models)

    def step(self, model: SlotTagger, batch: SlotBatch, state=None) -> StepOutput:
        batch = batch.to(model_device(model))
        out = model(batch.words, batch.chars, batch.lengths)
        loss = model.loss(out, batch.tags, batch.intents, batch.lengths)
        n = len(batch.utterances)
        stats: dict = {"loss": loss.detach() * n, "count": n}
        if not model.training:
            stats.update(self.score(model, out, batch))
        return StepOutput(loss=loss, stats=stats, size=n)

    def decode(self, model: SlotTagger, out, batch: SlotBatch):
        """Predicted tag strings and intents (None without an intent head)."""
        tag_ids, intent_ids = model.decode(out, batch.lengths)
        tags = [self.vocabs.tags.decode(t) for t in tag_ids]
        if intent_ids and self.vocabs.intents is not None:
            intents = self.vocabs.intents.decode(intent_ids)
        else:
            intents = [None] * len(tags)
        return tags, intents

    def score(self, model: SlotTagger, out, batch: SlotBatch) -> dict:
        """Additive counts of one batch: chunks (conlleval), intents, sentences."""
        tags, intents = self.decode(model, out, batch)
        ev = ConllEval()
        intent_ok = sentence_ok = 0
        with_intent = model.intent_head is not None
        for u, t, i in zip(batch.utterances, tags, intents):
            ev.add(u.tags, t)
            i_ok = (not with_intent) or i == u.intent
            intent_ok += with_intent and i_ok
            sentence_ok += i_ok and tuple(t) == u.tags
        tot = ev.total()
        return {"chunks_correct": tot.correct, "chunks_gold": tot.found_gold,
                "chunks_pred": tot.found_pred, "intents_correct": intent_ok,
                "intents_scored": len(tags) if with_intent else 0,
                "sentences_correct": sentence_ok}

    def metrics(self, stats: dict) -> dict:
        n = max(stats.get("count", 0.0), 1e-12)
        out = {"loss": stats["loss"] / n}
        if "chunks_gold" in stats:
            c, g, p = stats["chunks_correct"], stats["chunks_gold"], stats["chunks_pred"]
            prec = 100.0 * c / p if p else 0.0
            rec = 100.0 * c / g if g else 0.0
            out["slot_f1"] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
            out["slot_precision"], out["slot_recall"] = prec, rec
            if stats.get("intents_scored", 0):
                out["intent_accuracy"] = 100.0 * stats["intents_correct"] / stats["intents_scored"]
            out["sentence_accuracy"] = 100.0 * stats["sentences_correct"] / n
            out["joint"] = (out["slot_f1"] + out.get("intent_accuracy", out["slot_f1"])) / 2
        return out

    # ------------------------------------------------------------------ use

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = ("Tag every word with its slot and print the intent: "
                              "memnets predict RUN_DIR \"show me flights from boston to "
                              "denver\". " + parser.description)
        parser.add_argument("--explain", action="store_true",
                            help="also print each word's weight in the intent's attention "
                                 "(the mean over heads and ensemble members) and the most "
                                 "likely intents with their probabilities")
        parser.add_argument("--top", type=int, default=3,
                            help="intents listed with --explain (default 3)")
        parser.add_argument("--png", help="write the intent attention (words across, each "
                                          "head and member down) to this PNG file (one "
                                          "utterance)")

    def parse_input(self, line: str, ns) -> Utterance:
        words = line.split()
        if not words:
            raise ValueError("expected an utterance of at least one word, got none")
        return Utterance(tuple(words), ("O",) * len(words), None)

    def predict_batch(self, model: SlotTagger, examples: list[Utterance], ns) -> list[dict]:
        """Slots and intent of each utterance; with ``--explain`` / ``--png`` also each
        word's intent attention (the mean over heads and members) and the likely intents."""
        batch = self.collate(examples).to(model_device(model))
        out = model(batch.words, batch.chars, batch.lengths)
        tags, intents = self.decode(model, out, batch)
        explain = ns.explain or ns.png
        if explain and intents[0] is None:
            raise ValueError("expected a run with an intent head for --explain/--png; "
                             "this one tags slots only")
        attention = None
        if explain:
            attention = model.intent_attention(batch.words, batch.chars, batch.lengths)
            if attention is None:
                raise ValueError(f"expected a run whose intent is pooled by attention for "
                                 f"--explain/--png, got intent_pooling="
                                 f"{model.config.intent_pooling!r}")
            attention = attention.cpu()  # (N, L, members * heads)
        results = []
        for k, u in enumerate(examples):
            r: dict = {"words": list(u.words), "slots": list(tags[k])}
            if intents[k] is not None:
                r["intent"] = intents[k]
            if ns.explain:
                r["attention"] = attention[k, :len(u.words)].mean(1).tolist()
                probs = out.intent_logits[k].softmax(-1).cpu()
                top = probs.topk(min(max(ns.top, 1), len(probs)))
                names = self.vocabs.intents.decode(top.indices.tolist())
                r["likely_intents"] = [[n, p] for n, p in zip(names, top.values.tolist())]
            if ns.png:
                r["attention_map"] = str(self._attention_png(
                    model, attention[k, :len(u.words)], list(u.words), intents[k], ns.png))
            results.append(r)
        return results

    def _attention_png(self, model: SlotTagger, attention, words: list[str], intent: str,
                       path: str):
        """The intent attention ``(L, members * heads)`` of one utterance as a heatmap."""
        from memnets.figures import weight_heatmap  # matplotlib only when asked

        heads = model.config.intent_heads
        members = attention.shape[1] // heads
        rows = [" ".join(([f"member {m + 1}"] if members > 1 else [])
                         + ([f"head {k + 1}"] if heads > 1 or members == 1 else []))
                for m in range(members) for k in range(heads)]
        L, R = attention.shape
        return weight_heatmap(attention.T, path, columns=words, rows=rows,
                              title=f"intent: {intent}", size=(2 + 0.7 * L, 1.3 + 0.35 * R),
                              rotate_columns=True, annotate=R <= 12 and L <= 30)

    def format_prediction(self, result: dict, ns) -> str:
        """One word per line with its slot (and attention), then the intent."""
        words, tags = result["words"], result["slots"]
        width = max(len(w) for w in words)
        if "attention" in result:
            tag_width = max(len(t) for t in tags)
            lines = [f"{'word':<{width}}  {'slot':<{tag_width}}  attention"]
            lines += [f"{w:<{width}}  {t:<{tag_width}}  {a:.2f}"
                      for w, t, a in zip(words, tags, result["attention"])]
        else:
            lines = [f"{w:<{width}}  {t}" for w, t in zip(words, tags)]
        if "intent" in result:
            lines.append(f"intent: {result['intent']}")
        if "likely_intents" in result:
            lines.append("likely intents: " + ", ".join(
                f"{n} {p:.3f}" for n, p in result["likely_intents"]))
        if "attention_map" in result:
            lines.append(f"attention map: {result['attention_map']}")
        return "\n".join(lines)
