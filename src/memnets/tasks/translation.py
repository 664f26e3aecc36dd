"""The ``translation`` task: sequence to sequence on Multi30k (De→En, En→De), with
attention, beam search, BLEU, and the alignment picture.

Data: ``<data>/multi30k`` in either layout (:mod:`memnets.data.parallel`):
``data.layout: tok`` (default) reads the lowercased Moses-tokenised files and
keeps their words as tokens (optionally cut into SentencePiece units with
``data.subwords``); ``data.layout: raw`` reads the cased, untokenised files
through SentencePiece units (``data.subwords`` required).  Train on ``train``
(pairs longer than ``data.max_length`` tokens on either side left out), choose
on ``val``, test on ``data.test_set`` (``test_2016_flickr`` by default).  Missing
files are fetched from the official repository at a fixed commit, sha256-checked.

The model is :class:`memnets.models.seq2seq.Seq2Seq` over any registered cell:
no attention (Sutskever et al. 2014; Cho et al. 2014 with ``model.feed_context``),
``bahdanau`` or ``luong`` attention; teacher forcing with label smoothing and
optional scheduled sampling.

Metrics of a split: ``loss`` (mean negative log-likelihood per target token,
end token included) and ``perplexity`` from teacher forcing, and, from decoding
the split with ``data.beam_size`` (1 = greedy; :mod:`memnets.models.decoding`):

* ``bleu`` (the main metric): in the ``tok`` layout, BLEU over the lowercased
  tokens against the ``tok`` references (``tokenize="none"``), the convention of
  the published Multi30k tables; in the ``raw`` layout, sacreBLEU (cased);
* ``sacrebleu``: the detokenised output against the ``raw`` references with
  sacreBLEU's ``13a`` tokenisation, lowercased for a ``tok`` model (its
  signature is printed with each evaluation: :func:`memnets.metrics.bleu.sacre_bleu`);
* ``chrf``: chrF2 of the same detokenised text.

``memnets predict RUN_DIR "ein mann fährt fahrrad ."`` prints the translation
of each input (``--beam N``, ``--alpha A``; ``--png FILE`` writes the attention
matrix, target words × source words, for one input).

Recipes: ``multi30k-de-en-noattn``, ``multi30k-de-en-bahdanau``,
``multi30k-de-en-luong``, ``multi30k-en-de-luong``; docs/translation.md.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.download import download
from memnets.data.parallel import (
    BOS,
    EOS,
    MULTI30K_SHA256,
    MULTI30K_URL,
    SPLIT_FILES,
    SubwordModel,
    build_vocab,
    detokenize,
    filter_by_length,
    multi30k_file,
    read_parallel,
)
from memnets.data.text import DataFormatError
from memnets.data.vocab import UNK, Vocab
from memnets.errors import DataError
from memnets.layers.attention import KINDS
from memnets.metrics.bleu import chrf, sacre_bleu, tokenized_bleu
from memnets.metrics.lm import perplexity
from memnets.models.decoding import best_hypotheses, max_lengths, replace_unknowns
from memnets.models.seq2seq import Seq2Seq
from memnets.tasks import register_task
from memnets.tasks.base import StepOutput, Task, model_device


@dataclass
class TranslationDataConfig(DataConfig):
    """The ``data`` section of a translation recipe.

    Args:
        path: the Multi30k folder (``raw/`` and ``tok/``), relative to the data root.
        layout: ``tok`` (lowercased, tokenised) or ``raw`` (cased; needs ``subwords``).
        source, target: the languages, ``de`` or ``en``.
        test_set: the file set of the test split.
        min_freq: keep tokens seen at least this often in training (others read ``<unk>``).
        max_vocab: keep at most this many tokens per side (``None``: all).
        max_length: leave out training pairs with more tokens on either side (``None``: none).
        subwords: ``bpe`` or ``unigram`` SentencePiece units learnt on the training
            side of each language, or ``None`` (words).
        subword_vocab: pieces per language.
        download: fetch missing Multi30k files from their public address (sha256 checked).
        beam_size: decoding in evaluation and ``predict`` (1 = greedy search).
        length_penalty: Wu et al.'s alpha (0 = none).
        max_length_ratio, max_length_extra: at most ``ratio · source length + extra``
            target tokens.
        replace_unknowns: replace each ``<unk>`` of the output by the source token it
            attends to most.
    """

    batch_size: int = 64
    bucket: bool = True
    path: str = "multi30k"
    layout: Literal["tok", "raw"] = "tok"
    source: Literal["de", "en"] = "de"
    target: Literal["de", "en"] = "en"
    test_set: Literal["test_2016_flickr", "test_2017_flickr", "test_2017_mscoco"] = \
        "test_2016_flickr"
    min_freq: int = 2
    max_vocab: int | None = None
    max_length: int | None = 50
    subwords: Literal["bpe", "unigram"] | None = None
    subword_vocab: int = 8000
    download: bool = True
    beam_size: int = 1
    length_penalty: float = 0.0
    max_length_ratio: float = 1.5
    max_length_extra: int = 10
    replace_unknowns: bool = False

    RANGES: ClassVar[dict[str, str]] = {
        "min_freq": ">= 1", "max_vocab": ">= 1", "max_length": ">= 1", "subword_vocab": ">= 8",
        "beam_size": ">= 1", "length_penalty": ">= 0", "max_length_ratio": ">= 0",
        "max_length_extra": ">= 0"}

    def validate(self) -> None:
        if self.source == self.target:
            raise ValueError(f"expected two different languages, got source and target "
                             f"{self.source!r}")
        if self.layout == "raw" and self.subwords is None:
            raise ValueError("layout raw: expected subwords (bpe or unigram): untokenised "
                             "text is read through subword units")


SAMPLING = ("none", "constant", "linear", "exponential", "inverse_sigmoid")


@dataclass
class TranslationModelConfig(ModelConfig):
    """The ``model`` section: see :class:`~memnets.models.seq2seq.Seq2Seq`.

    ``num_layers`` is the encoder's depth, ``decoder_layers`` the decoder's (default
    the same).  Training options: ``label_smoothing`` (Szegedy et al., "Rethinking
    the inception architecture for computer vision", 2016) and scheduled sampling
    (Bengio et al. 2015): with ``sampling`` ``constant`` each input token is the
    model's own with probability ``sampling_k``; the paper's decays give the
    probability :math:`\\epsilon_i` of the *true* token at update ``i``:
    ``linear`` :math:`\\max(\\epsilon_{min}, k - c\\, i)`, ``exponential``
    :math:`\\max(\\epsilon_{min}, k^i)`, ``inverse_sigmoid``
    :math:`\\max(\\epsilon_{min}, k / (k + e^{i/k}))`.
    """

    embedding_size: int = 256
    hidden_size: int = 512
    decoder_layers: int | None = None
    bidirectional: bool = True
    attention: Literal["none", "bahdanau", "luong"] = "bahdanau"
    score: Literal["additive", "dot", "general", "concat"] | None = None
    attention_size: int | None = None
    input_feeding: bool = True
    feed_context: bool = False
    reverse_source: bool = False
    bridge: Literal["linear", "none"] = "linear"
    embedding_dropout: float = 0.0
    tie_embeddings: bool = False
    label_smoothing: float = 0.0
    sampling: Literal["none", "constant", "linear", "exponential", "inverse_sigmoid"] = "none"
    sampling_k: float = 1.0
    sampling_c: float = 0.0
    sampling_min: float = 0.0

    RANGES: ClassVar[dict[str, str]] = {
        "embedding_size": ">= 1", "decoder_layers": ">= 1", "attention_size": ">= 1",
        "embedding_dropout": "[0, 1)", "label_smoothing": "[0, 1)", "sampling_c": ">= 0",
        "sampling_min": "[0, 1]"}

    def validate(self) -> None:
        if self.attention == "none" and self.score is not None:
            raise ValueError(f"score: expected none without attention, got {self.score!r}")
        if self.score is not None and self.score not in KINDS:  # pragma: no cover
            raise ValueError(f"expected score one of {KINDS}, got {self.score!r}")
        k = self.sampling_k
        if self.sampling == "constant" and not 0.0 <= k <= 1.0:
            raise ValueError(f"sampling constant: expected sampling_k in [0, 1], got {k}")
        if self.sampling == "exponential" and not 0.0 < k < 1.0:
            raise ValueError(f"sampling exponential: expected sampling_k in (0, 1), got {k}")
        if self.sampling == "inverse_sigmoid" and k < 1.0:
            raise ValueError(f"sampling inverse_sigmoid: expected sampling_k >= 1, got {k}")


def sample_probability(config: TranslationModelConfig, update: int) -> float:
    """The probability of feeding the model's own token at training update ``update``."""
    kind, k = config.sampling, config.sampling_k
    if kind == "none":
        return 0.0
    if kind == "constant":
        return k
    if kind == "linear":
        truth = k - config.sampling_c * update
    elif kind == "exponential":
        truth = k ** update
    else:
        truth = k / (k + math.exp(min(update / k, 700.0)))
    return 1.0 - min(1.0, max(config.sampling_min, truth))


@register_task("translation")
class TranslationTask(Task):
    DataConfig = TranslationDataConfig
    ModelConfig = TranslationModelConfig
    main_metric = "bleu"
    higher_is_better = True
    size_unit = "tok"
    predict_input = "a source sentence (tok layout: lowercased, words and punctuation " \
                    "separated by spaces)"
    one_input_options = ("png",)

    def __init__(self, data: TranslationDataConfig, data_dir: Path | None = None) -> None:
        super().__init__(data, data_dir)
        self.source_vocab: Vocab | None = None
        self.target_vocab: Vocab | None = None
        self.subwords: dict[str, SubwordModel | None] = {"source": None, "target": None}
        self._pairs: dict[str, list[tuple[str, str]]] = {}
        self._examples: dict[str, list] = {}
        self._raw_refs: dict[str, list[str] | None] = {}
        self._updates = 0  # training updates so far (scheduled sampling)
        self._model_config: TranslationModelConfig | None = None

    # ------------------------------------------------------------------ files

    def _folder(self) -> Path:
        path = Path(self.config.path)
        return path if path.is_absolute() else self.data_dir / path

    def _split_name(self, split: str) -> str:
        if split == "test":
            return self.config.test_set
        if split not in SPLIT_FILES:
            raise DataError(f"expected a split among train, dev, test, got {split!r}")
        return SPLIT_FILES[split]

    def _file(self, layout: str, split: str, lang: str, *, fetch: bool = True) -> Path:
        rel = multi30k_file(layout, self._split_name(split), lang)
        f = self._folder() / rel
        if not f.is_file() and fetch:
            if not self.config.download:
                raise DataError(f"Multi30k file not found: expected {f} (data.download is false)")
            download(MULTI30K_URL.format(rel=rel), f, sha256=MULTI30K_SHA256[rel], quiet=False)
        return f

    def pairs(self, split: str) -> list[tuple[str, str]]:
        """The split's (source line, target line) pairs, as the files hold them."""
        if split not in self._pairs:
            c = self.config
            src = self._file(c.layout, split, c.source)
            tgt = self._file(c.layout, split, c.target)
            self._pairs[split] = read_parallel(src, tgt)
        return self._pairs[split]

    def raw_references(self, split: str) -> list[str] | None:
        """The split's untokenised target lines (for sacreBLEU), or ``None`` when the
        ``raw`` files are neither there nor to be fetched."""
        if split not in self._raw_refs:
            c = self.config
            if c.layout == "raw":
                self._raw_refs[split] = [t for _, t in self.pairs(split)]
            else:
                try:
                    src = self._file("raw", split, c.source)
                    tgt = self._file("raw", split, c.target)
                    refs = [t for _, t in read_parallel(src, tgt)]
                except DataError as e:
                    if "not found" not in str(e):
                        raise
                    refs = None
                if refs is not None and len(refs) != len(self.pairs(split)):
                    raise DataFormatError(f"expected {len(self.pairs(split))} lines in {tgt} "
                                          f"(as in the tok layout), got {len(refs)}")
                self._raw_refs[split] = refs
        return self._raw_refs[split]

    # ------------------------------------------------------------------ tokens

    def tokenize(self, side: str, line: str) -> list[str]:
        """A line's tokens on ``side`` (``source`` or ``target``): the words of the
        ``tok`` layout, or subword pieces."""
        sp = self.subwords[side]
        if sp is not None:
            return sp.encode(line)
        return line.split()

    def join(self, tokens: list[str]) -> str:
        """Target tokens as one line of the layout's text (subwords merged)."""
        sp = self.subwords["target"]
        return sp.decode(tokens) if sp is not None else " ".join(tokens)

    def setup(self) -> None:
        c = self.config
        train = self.pairs("train")
        if c.subwords is not None:
            for side, k in (("source", 0), ("target", 1)):
                self.subwords[side] = SubwordModel.train(
                    (p[k] for p in train), vocab_size=c.subword_vocab, kind=c.subwords)
        tokens = [(self.tokenize("source", s), self.tokenize("target", t)) for s, t in train]
        keep = filter_by_length(tokens, c.max_length)
        min_freq = 1 if c.subwords else c.min_freq
        self.source_vocab = build_vocab((tokens[i][0] for i in keep), min_freq=min_freq,
                                        max_size=c.max_vocab)
        self.target_vocab = build_vocab((tokens[i][1] for i in keep), min_freq=min_freq,
                                        max_size=c.max_vocab)

    def state_dict(self) -> dict:
        return {"source_vocab": self.source_vocab.to_dict(),
                "target_vocab": self.target_vocab.to_dict(),
                "subwords": {side: None if sp is None else sp.to_dict()
                             for side, sp in self.subwords.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.source_vocab = Vocab.from_dict(state["source_vocab"])
        self.target_vocab = Vocab.from_dict(state["target_vocab"])
        subwords = state.get("subwords") or {}
        self.subwords = {side: None if subwords.get(side) is None
                         else SubwordModel.from_dict(subwords[side])
                         for side in ("source", "target")}

    # ------------------------------------------------------------------ data

    def examples(self, split: str) -> list[tuple[list[int], list[int], int]]:
        """``(source ids, target ids, index in the split)`` of every pair used: all
        of dev and test, and the training pairs within ``data.max_length``."""
        if split not in self._examples:
            pairs = self.pairs(split)
            tokens = [(self.tokenize("source", s), self.tokenize("target", t)) for s, t in pairs]
            if split == "train":
                keep = filter_by_length(tokens, self.config.max_length)
            else:
                for i, (s, _) in enumerate(tokens):
                    if not s:
                        f = self._file(self.config.layout, split, self.config.source)
                        raise DataFormatError(f"{f}:{i + 1}: expected a sentence, got an "
                                              f"empty line")
                keep = range(len(tokens))
            sv, tv = self.source_vocab, self.target_vocab
            self._examples[split] = [(sv.encode(tokens[i][0]), tv.encode(tokens[i][1]), i)
                                     for i in keep]
        return self._examples[split]

    def check_splits(self, splits: tuple[str, ...]) -> None:
        for split in splits:
            if not self.examples(split):
                raise DataError(f"expected sentence pairs in the {split} split "
                                f"({self._file(self.config.layout, split, self.config.source)})"
                                f", got none" + (" within data.max_length" if split == "train"
                                                 else ""))

    def dataset(self, split: str):
        return self.examples(split)

    def lengths(self, split: str) -> list[int]:
        """The longer side of each pair, for ``data.bucket``."""
        return [max(len(s), len(t) + 1) for s, t, _ in self.examples(split)]

    def collate(self, examples):
        """``(source (N, S), source lengths (N,), target in (N, T), target out (N, T),
        indices (N,))``; the target in starts with ``<s>``, the target out ends with
        ``</s>``; padding is ``<pad>``."""
        pad = self.target_vocab.pad_id
        bos, eos = self.target_vocab[BOS], self.target_vocab[EOS]
        N = len(examples)
        lengths = torch.tensor([len(s) for s, _, _ in examples])
        T = max(len(t) for _, t, _ in examples) + 1
        src = torch.full((N, int(lengths.max())), self.source_vocab.pad_id, dtype=torch.long)
        tin = torch.full((N, T), pad, dtype=torch.long)
        tout = torch.full((N, T), pad, dtype=torch.long)
        for i, (s, t, _) in enumerate(examples):
            src[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            tin[i, :len(t) + 1] = torch.tensor([bos, *t], dtype=torch.long)
            tout[i, :len(t) + 1] = torch.tensor([*t, eos], dtype=torch.long)
        return src, lengths, tin, tout, torch.tensor([i for _, _, i in examples])

    # ------------------------------------------------------------------ model

    def build_model(self, config: TranslationModelConfig) -> nn.Module:
        self._model_config = config
        return Seq2Seq(
            len(self.source_vocab), len(self.target_vocab),
            embedding_size=config.embedding_size, hidden_size=config.hidden_size,
            cell=config.cell, encoder_layers=config.num_layers,
            decoder_layers=config.decoder_layers or config.num_layers,
            bidirectional=config.bidirectional, attention=config.attention, score=config.score,
            attention_size=config.attention_size, input_feeding=config.input_feeding,
            feed_context=config.feed_context, reverse_source=config.reverse_source,
            bridge=config.bridge, dropout=config.dropout,
            embedding_dropout=config.embedding_dropout, tie_embeddings=config.tie_embeddings,
            padding_idx=self.target_vocab.pad_id, cell_options=config.cell_options)

    def train_state(self, model: nn.Module) -> dict:
        return {"updates": self._updates}

    def load_train_state(self, model: nn.Module, state: dict) -> None:
        self._updates = int(state.get("updates", 0))

    def step(self, model, batch, state=None) -> StepOutput:
        device = model_device(model)
        src, lengths, tin, tout, _ = batch
        src, tin, tout = src.to(device), tin.to(device), tout.to(device)
        p = 0.0
        smoothing = 0.0
        if model.training:
            config = self._model_config
            if config is not None:
                p = sample_probability(config, self._updates)
                smoothing = config.label_smoothing
            self._updates += 1
        logits, _ = model(src, lengths, tin, sample_prob=p)  # (N, T, V)
        flat, gold = logits.reshape(-1, logits.shape[-1]).float(), tout.reshape(-1)
        pad = self.target_vocab.pad_id
        nll = F.cross_entropy(flat, gold, ignore_index=pad, reduction="sum")
        n = int((gold != pad).sum())
        if smoothing > 0:
            loss = F.cross_entropy(flat, gold, ignore_index=pad, label_smoothing=smoothing)
        else:
            loss = nll / max(n, 1)
        return StepOutput(loss=loss, size=n, stats={
            "loss": nll.detach(), "count": n, "sentences": len(lengths)})

    def metrics(self, stats):
        nll = stats["loss"] / max(stats["count"], 1)
        return {"loss": nll, "perplexity": perplexity(nll)}

    # ------------------------------------------------------------------ decoding

    def translate(self, model: nn.Module, sources: list[list[str]], *, beam_size: int | None = None,
                  alpha: float | None = None, replace: bool | None = None) -> list[dict]:
        """Decode source token lists; for each: ``tokens`` (target tokens), ``text``
        (one line of the layout's text), ``score``, ``attention`` (``(len(tokens) + 1,
        S)``, the end token's row last, when it ended) and ``finished``."""
        c = self.config
        beam = c.beam_size if beam_size is None else beam_size
        alpha = c.length_penalty if alpha is None else alpha
        replace = c.replace_unknowns if replace is None else replace
        tv = self.target_vocab
        device = model_device(model)
        ids = [self.source_vocab.encode(s) for s in sources]
        lengths = torch.tensor([len(s) for s in ids])
        src = torch.full((len(ids), int(lengths.max())), self.source_vocab.pad_id,
                         dtype=torch.long)
        for i, s in enumerate(ids):
            src[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        caps = max_lengths(lengths, c.max_length_ratio, c.max_length_extra)
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                state = model.start(src.to(device), lengths)
                hyps = best_hypotheses(model.search_step(banned=(tv.pad_id, tv[BOS])), state,
                                       batch_size=len(ids), bos=tv[BOS], eos=tv[EOS],
                                       max_length=caps, beam_size=beam, alpha=alpha)
        finally:
            model.train(was)
        attends = getattr(model, "attention", None) is not None
        out = []
        for source, h in zip(sources, hyps):
            words = tv.decode(h.tokens)
            attention = h.attention if attends else None
            if replace and attention is not None:
                words = replace_unknowns(words, attention, source, unk=UNK)
            out.append({"tokens": words, "text": self.join(words), "score": h.score,
                        "finished": h.finished, "attention": attention})
        return out

    def decode_split(self, model: nn.Module, split: str, *, batch_size: int) -> list[str]:
        """The translations (lines of the layout's text) of every pair of ``split``,
        in file order; decoded in batches of similar source length."""
        pairs = self.pairs(split)
        sources = [self.tokenize("source", s) for s, _ in pairs]
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        texts: list[str] = [""] * len(sources)
        for b in range(0, len(order), batch_size):
            chunk = order[b:b + batch_size]
            for i, r in zip(chunk, self.translate(model, [sources[i] for i in chunk])):
                texts[i] = r["text"]
        return texts

    def scores(self, hypotheses: list[str], split: str) -> dict[str, float]:
        """``bleu``, ``sacrebleu`` and ``chrf`` of a split's translations (see the
        module docstring for which convention each follows)."""
        refs = [t for _, t in self.pairs(split)]
        raw = self.raw_references(split)
        if self.config.layout == "tok":
            out = {"bleu": tokenized_bleu(hypotheses, refs).score}
            if raw is not None:
                detok = [detokenize(h.split()) for h in hypotheses]
                sacre = sacre_bleu(detok, raw, lowercase=True)
                out["sacrebleu"] = sacre.score
                out["chrf"] = chrf(detok, raw, lowercase=True).score
                self._record(sacre.signature)
            return out
        sacre = sacre_bleu(hypotheses, refs)
        self._record(sacre.signature)
        return {"bleu": sacre.score, "sacrebleu": sacre.score,
                "chrf": chrf(hypotheses, refs).score}

    signature: str | None = None  # sacreBLEU's, of the last score

    def _record(self, signature: str) -> None:
        if signature != self.signature:  # printed once (into the run's log)
            print(f"translation: sacreBLEU signature {signature}")
        self.signature = signature

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, *, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> dict[str, float]:
        """Teacher-forced ``loss`` and ``perplexity`` (sharded as usual), then the whole
        split decoded and scored (``bleu``, ``sacrebleu``, ``chrf``).  Under DDP every
        process decodes the whole split, so that all hold the same metrics."""
        metrics = super().evaluate(model, split, batch_size=batch_size, rank=rank,
                                   world_size=world_size)
        hyps = self.decode_split(model, split, batch_size=batch_size)
        metrics.update(self.scores(hyps, split))
        return metrics

    # ------------------------------------------------------------------ use

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = (
            f"Translate each input from {self.config.source} to {self.config.target}: "
            f"memnets predict RUN_DIR \"ein mann fährt fahrrad .\" (each INPUT, --file line "
            f"or standard input line with '-' is one sentence; the model is loaded once).")
        parser.add_argument("--beam", type=int, default=None, metavar="N",
                            help=f"beam size (default data.beam_size = {self.config.beam_size};"
                                 f" 1 = greedy)")
        parser.add_argument("--alpha", type=float, default=None,
                            help="length-normalisation alpha (default data.length_penalty)")
        parser.add_argument("--replace-unknowns", action="store_true", default=None,
                            help="replace <unk> by the source word it attends to most")
        parser.add_argument("--png", help="also write the attention matrix (target words x "
                                          "source words) to this PNG file (one input)")

    def parse_input(self, line: str, ns) -> list[str]:
        text = line.strip()
        if self.config.layout == "tok":
            text = text.lower()
        tokens = self.tokenize("source", text)
        if not tokens:
            raise ValueError("expected a sentence of at least one word, got none")
        return tokens

    def predict_batch(self, model, examples: list[list[str]], ns) -> list[dict]:
        if ns.beam is not None and ns.beam < 1:
            raise ValueError(f"--beam: expected N >= 1, got {ns.beam}")
        results = []
        for source, r in zip(examples, self.translate(model, examples, beam_size=ns.beam,
                                                      alpha=ns.alpha,
                                                      replace=ns.replace_unknowns)):
            unknown = sorted({w for w in source if w not in self.source_vocab})
            out = {"translation": r["text"], "tokens": r["tokens"], "source_tokens": source,
                   "score": r["score"], "finished": r["finished"],
                   "attention": None if r["attention"] is None else r["attention"].tolist()}
            if unknown:
                out["unknown"] = unknown
            if ns.png:
                out["heatmap"] = str(alignment_heatmap(
                    source, r["tokens"] + ([EOS] if r["finished"] else []), r["attention"],
                    ns.png, title=f"{' '.join(source)}  ->  {r['text']}"))
            results.append(out)
        return results

    def format_prediction(self, result: dict, ns) -> str:
        lines = [result["translation"]]
        if result.get("unknown"):
            lines.append("unknown words (read as <unk>): " + ", ".join(result["unknown"]))
        if "heatmap" in result:
            lines.append(f"attention heatmap written to {result['heatmap']}")
        return "\n".join(lines)


def alignment_heatmap(source: list[str], target: list[str], attention, path, *,
                      title: str = "") -> Path:
    """Write the attention matrix as a PNG: target tokens down, source tokens across."""
    from memnets.figures import weight_heatmap  # matplotlib only when asked

    if attention is None:
        raise ValueError("--png: this model has no attention to draw (model.attention: none)")
    weights = attention[:len(target), :len(source)]
    R, C = weights.shape
    size = (2.0 + 0.45 * C + 0.06 * max(len(w) for w in target), 1.5 + 0.32 * R)
    return weight_heatmap(weights, Path(path), columns=list(source), rows=list(target),
                          title=title, size=size, rotate_columns=True, annotate=C * R <= 400)


