r"""The ``speech`` task: speech recognition with CTC, many-to-many where the output
is shorter than the input.

Audio frames in (log-mel or MFCC features, :mod:`memnets.data.audio`), a
transcript out, through :class:`memnets.models.ctc.CTCModel` over any registered
cell (a deep bidirectional encoder, optionally after convolutional
subsampling), trained with CTC (Graves et al., "Connectionist temporal
classification: labelling unsegmented sequence data with recurrent neural
networks", 2006) and decoded greedily or by prefix beam search with an optional
lexicon and word n-gram model (:mod:`memnets.models.ctc_decoding`).

Corpora (``data.corpus``; :mod:`memnets.data.speech` documents each split):
``yesno``, ``fsdd`` (isolated digits, the official split), ``fsdd_connected``
(connected digits composed from FSDD, seeded), ``an4`` (a 40-utterance sample)
and ``manifest`` (JSON lines ``{"audio": path, "text": ...}``, one file per
split: bring your own corpus by naming its files).  The token set comes from
the training transcripts: characters (``data.tokens: char``, the space one of
them) or words (``word``); id 0 is the blank.

Metrics of a split: ``loss`` (CTC negative log likelihood per label), and from
decoding, ``wer`` (the main metric), ``cer``, ``ser`` (sentence error rate) and
``accuracy`` (100 - ser: the isolated-digit accuracy), all in percent
(:mod:`memnets.metrics.asr`).  Utterances that CTC cannot align (fewer frames
after subsampling than their labels plus repeats) are left out of training with
a printed count; in dev and test they are decoded and scored but left out of the
loss (``too_short`` counts them), and so are transcripts holding symbols outside
the token set (``unscorable`` counts them; their words still count as errors).
Training throughput is in input frames (``frame_per_s`` in the training rows).

``memnets predict RUN_DIR audio.wav`` prints the transcript (``--beam N`` for
beam search; ``--json`` for JSON lines); ``--png FILE`` draws the
posteriorgram, every token's probability at every output frame (blank almost
everywhere, a spike per token), under the spectrogram.

Recipes: ``yesno-ctc``, ``fsdd-ctc``, ``fsdd-connected-ctc``, ``an4-ctc``;
docs/speech.md.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import torch
from torch import Tensor, nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.audio import (
    FeatureCache,
    FeatureSpec,
    features,
    log_mel,
    read_audio,
    resample,
    spec_augment,
)
from memnets.data.speech import (
    CORPORA,
    Utterance,
    an4_corpus,
    fetch_corpus,
    fsdd_connected,
    fsdd_corpus,
    load_waveform,
    read_manifest,
    yesno_corpus,
)
from memnets.errors import DataError, shorten
from memnets.metrics.asr import char_errors, chars, word_errors, words
from memnets.models.ctc import CTCModel, ctc_loss
from memnets.models.ctc_decoding import Lexicon, NGramLM, beam_decode, greedy_decode
from memnets.tasks import register_task
from memnets.tasks.base import StepOutput, Task, model_device

BLANK = "<blank>"
DEFAULT_FOLDERS = {"yesno": "yesno", "fsdd": "fsdd", "fsdd_connected": "fsdd",
                   "an4": "an4_subset"}
DOWNLOADS = {"yesno": "yesno", "fsdd": "fsdd", "fsdd_connected": "fsdd", "an4": "an4"}


# ---------------------------------------------------------------------- configuration


@dataclass
class SpeechDataConfig(DataConfig):
    """The ``data`` section of a speech recipe.

    Args:
        corpus: ``yesno``, ``fsdd``, ``fsdd_connected``, ``an4`` or ``manifest``.
        path: the corpus folder, relative to the data root (``null``: the
            corpus's own, e.g. ``fsdd``).
        train_manifest, dev_manifest, test_manifest: with ``manifest``, one
            JSON-lines file per split, relative to the data root (or absolute);
            ``test_manifest: null`` means no test split.
        tokens: ``char`` (characters, the space one of them) or ``word``.
        sample_rate: every file is resampled to this rate (Hz).
        features: ``logmel`` or ``mfcc``; ``n_mels``, ``n_mfcc``, ``frame_ms``,
            ``hop_ms``, ``f_min`` and ``f_max`` (``null``: Nyquist) as in
            :class:`memnets.data.audio.FeatureSpec`.
        normalize: ``utterance`` (each utterance's own mean and variance per
            feature, :func:`memnets.data.audio.normalize`), ``corpus`` (the
            training features' mean and variance, computed once and kept in
            ``task.json``: one speaker's recordings, as Kaldi's per-speaker CMVN)
            or ``none``.
        spec_augment: SpecAugment masks on the training features
            (``time_masks`` of at most ``time_mask_width`` frames,
            ``freq_masks`` of at most ``freq_mask_width`` features), drawn anew
            each epoch from ``(trainer.seed, epoch, utterance)``.
        sortagrad: the first epoch's batches go from the shortest utterances to
            the longest (Amodei et al., "Deep Speech 2", 2016: CTC starts to learn
            sooner); later epochs are shuffled.  Needs ``bucket: true``.
        speed_perturb: speed factors (e.g. ``[0.9, 1.0, 1.1]``): each training
            utterance is played at one of them, drawn each epoch like the masks
            (:meth:`SpeechTask.speed_features`); ``[]``: off.
        connected_train, connected_dev, connected_test: with ``fsdd_connected``,
            sequences composed per split; ``min_digits``, ``max_digits``,
            ``gap_min``, ``gap_max`` (seconds), ``gap_noise`` and
            ``composition_seed`` as in :func:`memnets.data.speech.fsdd_connected`.
        cache_dir: also keep the features on disk here (``null``: in memory only).
        audio_backend: ``auto``, ``soundfile`` or ``wave`` (:func:`memnets.data.audio.read_audio`).
        download: fetch a missing corpus (``yesno``, ``fsdd``, ``an4``) from its
            public copy, the listing's sha256 checked.
    """

    batch_size: int = 16
    corpus: Literal["yesno", "fsdd", "fsdd_connected", "an4", "manifest"] = "yesno"
    path: str | None = None
    train_manifest: str | None = None
    dev_manifest: str | None = None
    test_manifest: str | None = None
    tokens: Literal["char", "word"] = "char"
    sample_rate: int = 16000
    features: Literal["logmel", "mfcc"] = "logmel"
    n_mels: int = 40
    n_mfcc: int = 13
    frame_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 0.0
    f_max: float | None = None
    normalize: Literal["utterance", "corpus", "none"] = "utterance"
    spec_augment: bool = False
    speed_perturb: list[float] = field(default_factory=list)
    sortagrad: bool = False
    time_masks: int = 2
    time_mask_width: int = 10
    freq_masks: int = 2
    freq_mask_width: int = 8
    connected_train: int = 3000
    connected_dev: int = 300
    connected_test: int = 500
    min_digits: int = 1
    max_digits: int = 7
    gap_min: float = 0.05
    gap_max: float = 0.4
    gap_noise: float = 1e-3
    composition_seed: int = 0
    cache_dir: str | None = None
    audio_backend: Literal["auto", "soundfile", "wave"] = "auto"
    download: bool = True

    RANGES: ClassVar[dict[str, str]] = {
        "sample_rate": ">= 1000", "n_mels": ">= 1", "n_mfcc": ">= 1", "frame_ms": "> 0",
        "hop_ms": "> 0", "f_min": ">= 0", "f_max": "> 0", "time_masks": ">= 0",
        "time_mask_width": ">= 0", "freq_masks": ">= 0", "freq_mask_width": ">= 0",
        "connected_train": ">= 0", "connected_dev": ">= 0", "connected_test": ">= 0",
        "min_digits": ">= 1", "max_digits": ">= 1", "gap_min": ">= 0", "gap_max": ">= 0",
        "gap_noise": ">= 0", "composition_seed": ">= 0",
        "speed_perturb": "[0.5, 2]"}

    def feature_spec(self) -> FeatureSpec:
        """The features these settings describe."""
        return FeatureSpec(self.sample_rate, self.features, self.n_mels, self.n_mfcc,
                           self.frame_ms, self.hop_ms, self.f_min, self.f_max,
                           self.normalize == "utterance")

    def validate(self) -> None:
        self.feature_spec()  # its ValueError names the setting
        if self.sortagrad and not self.bucket:
            raise ValueError("sortagrad: expected bucket: true (batches by length)")
        if self.min_digits > self.max_digits:
            raise ValueError(f"expected min_digits <= max_digits, got {self.min_digits} > "
                             f"{self.max_digits}")
        if self.gap_min > self.gap_max:
            raise ValueError(f"expected gap_min <= gap_max, got {self.gap_min} > {self.gap_max}")
        manifests = {"train_manifest": self.train_manifest, "dev_manifest": self.dev_manifest,
                     "test_manifest": self.test_manifest}
        if self.corpus == "manifest":
            for key in ("train_manifest", "dev_manifest"):
                if not manifests[key]:
                    raise ValueError(f"{key}: expected a JSON-lines file with corpus manifest, "
                                     f"got {manifests[key]!r}")
        else:
            given = [k for k, v in manifests.items() if v is not None]
            if given:
                raise ValueError(f"{given[0]}: expected null with corpus {self.corpus} (set "
                                 f"data.corpus: manifest to read manifests), got "
                                 f"{manifests[given[0]]!r}")


@dataclass
class SpeechModelConfig(ModelConfig):
    """The ``model`` section: the acoustic model and its decoder.

    The encoder fields (``hidden_size``, ``num_layers``, ``bidirectional``,
    ``dropout``, ``cell``, ``cell_options``, ``block``, ``block_options``) are those
    of :class:`~memnets.models.ctc.CTCModel`.

    Args:
        subsampling: 1, 2, 4 or 8: frames kept per input frame, by stride-2
            convolutions.
        conv_channels: their channels.
        decoder: ``greedy`` or ``beam`` (prefix beam search), for evaluation and
            ``predict`` (``--beam N`` overrides it there).
        beam_size: prefixes kept per frame.
        lexicon: beam search spells only words of the training transcripts.
        lm_order: a word n-gram model of the training transcripts of this order
            in the beam search (0: none).
        lm_weight, word_bonus: its weight and a bonus per word.
    """

    hidden_size: int = 128
    num_layers: int = 2
    bidirectional: bool = True
    subsampling: Literal[1, 2, 4, 8] = 2
    conv_channels: int = 32
    decoder: Literal["greedy", "beam"] = "greedy"
    beam_size: int = 8
    lexicon: bool = False
    lm_order: int = 0
    lm_weight: float = 0.5
    word_bonus: float = 0.0

    RANGES: ClassVar[dict[str, str]] = {"conv_channels": ">= 1", "beam_size": ">= 1",
                                        "lm_order": ">= 0", "lm_weight": ">= 0"}


# ---------------------------------------------------------------------- batches


class SpeechBatch(NamedTuple):
    """A padded batch (N utterances, T the most frames, U the longest transcript).

    Attributes:
        features: ``(N, T, F)``, zero past each utterance's frames.
        lengths: ``(N,)`` frames.
        targets: ``(N, U)`` token ids (0 past each length).
        target_lengths: ``(N,)``.
        scorable: ``(N,)`` bool, false where the transcript holds symbols outside
            the token set (its loss is not computed).
        texts: the reference transcripts.
    """

    features: Tensor
    lengths: Tensor
    targets: Tensor
    target_lengths: Tensor
    scorable: Tensor
    texts: list[str]


class _Split:
    """A split's examples: features (computed once), targets and transcripts.

    While training (``round`` set to ``(seed, epoch)``), each example draws from a
    generator seeded by ``(seed, epoch, index)``: a speed factor among
    ``factors`` (its features from ``variant(index, factor)``, kept only when CTC
    can still align them: ``need`` frames after ``subsampling``), then
    SpecAugment's masks when ``augment`` holds their settings."""

    def __init__(self, feats: list[Tensor], targets: list[list[int]], texts: list[str],
                 scorable: list[bool], augment: dict | None = None, factors=(),
                 variant=None, need: list[int] | None = None, subsampling: int = 1) -> None:
        self.feats, self.targets, self.texts, self.scorable = feats, targets, texts, scorable
        self.augment, self.factors, self.variant = augment, tuple(factors), variant
        self.need, self.subsampling = need, subsampling
        self.round: tuple[int, int] | None = None  # (seed, epoch) while training

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int):
        x = self.feats[i]
        if self.round is not None and (self.augment is not None or self.factors):
            seed, epoch = self.round
            g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + i)
            if self.factors:
                f = self.factors[int(torch.randint(len(self.factors), (1,), generator=g))]
                if f != 1.0:
                    y = self.variant(i, f)
                    if math.ceil(y.shape[0] / self.subsampling) >= self.need[i]:
                        x = y
            if self.augment is not None:
                x = spec_augment(x, generator=g, **self.augment)
        return x, self.targets[i], self.texts[i], self.scorable[i]


# ---------------------------------------------------------------------- the task


@register_task("speech")
class SpeechTask(Task):
    DataConfig = SpeechDataConfig
    ModelConfig = SpeechModelConfig
    main_metric = "wer"
    higher_is_better = False
    size_unit = "frame"
    predict_input = "a path to an audio file (WAV; FLAC and OGG with soundfile)"
    one_input_options = ("png",)

    def __init__(self, data: SpeechDataConfig, data_dir: Path | None = None) -> None:
        super().__init__(data, data_dir)
        self.spec = data.feature_spec()
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        self.transcripts: dict[str, int] = {}  # training transcripts and their counts
        self.norm: tuple[Tensor, Tensor] | None = None  # corpus mean and std, (F,) each
        self.subsampling = 1
        self.decoding: dict = {"decoder": "greedy"}
        self._corpus: dict[str, list[Utterance]] | None = None
        self._splits: dict[tuple[str, int], _Split] = {}
        self.cache = FeatureCache(data.cache_dir)

    # ------------------------------------------------------------------ data

    def _resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() or self.data_dir is None else self.data_dir / path

    def _folder(self) -> Path:
        return self._resolve(self.config.path or DEFAULT_FOLDERS[self.config.corpus])

    def splits(self) -> tuple[str, ...]:
        if self.config.corpus == "manifest" and self.config.test_manifest is None:
            return ("train", "dev")
        return ("train", "dev", "test")

    def corpus(self) -> dict[str, list[Utterance]]:
        """The utterances of every split (read once; a missing corpus is fetched when
        ``data.download`` allows)."""
        if self._corpus is not None:
            return self._corpus
        c, corpus = self.config, self.config.corpus
        if corpus == "manifest":
            files = {"train": c.train_manifest, "dev": c.dev_manifest, "test": c.test_manifest}
            self._corpus = {s: read_manifest(self._resolve(files[s])) for s in self.splits()}
            return self._corpus
        folder = self._folder()
        if not folder.is_dir():
            if not c.download or c.path is not None:
                raise DataError(f"the {corpus} corpus not found: expected the folder {folder}"
                                + ("" if c.download else " (data.download is false)"))
            name = DOWNLOADS[corpus]
            print(f"speech: fetching the {name} corpus from {CORPORA[name].url.split('{')[0]}")
            fetch_corpus(name, folder.parent, quiet=False)
        if corpus == "yesno":
            self._corpus = yesno_corpus(folder)
        elif corpus == "fsdd":
            self._corpus = fsdd_corpus(folder)
        elif corpus == "an4":
            self._corpus = an4_corpus(folder)
        else:
            self._corpus = fsdd_connected(
                folder, {"train": c.connected_train, "dev": c.connected_dev,
                         "test": c.connected_test}, seed=c.composition_seed,
                min_digits=c.min_digits, max_digits=c.max_digits, gap_min=c.gap_min,
                gap_max=c.gap_max, gap_noise=c.gap_noise)
        return self._corpus

    def utterances(self, split: str) -> list[Utterance]:
        """The utterances of ``split``."""
        if split not in self.splits():
            raise DataError(f"expected a split among {', '.join(self.splits())}, got {split!r}")
        return self.corpus()[split]

    def tokenize(self, text: str) -> list[str]:
        """A transcript's tokens: its characters (words joined by one space) or words."""
        return chars(text) if self.config.tokens == "char" else words(text)

    def detokenize(self, ids: list[int]) -> str:
        """Token ids (no blank) back to a transcript."""
        toks = [self.itos[i] for i in ids]
        return " ".join(("".join(toks) if self.config.tokens == "char" else " ".join(toks))
                        .split())

    def features_of(self, utt: Utterance) -> Tensor:
        """An utterance's features ``(frames, F)``, as the model reads them."""
        return self.corpus_normalized(self.raw_features(utt))

    def raw_features(self, utt: Utterance) -> Tensor:
        """An utterance's features before corpus normalisation, from the cache after
        the first time."""
        def compute() -> Tensor:
            try:
                wave = load_waveform(utt, self.spec.sample_rate,
                                     backend=self.config.audio_backend)
            except DataError as e:
                raise DataError(f"{utt.where}: {e}" if utt.where else str(e)) from None
            return features(wave, self.spec)

        return self.cache.get(f"{utt.identity()}|{self.spec.key()}", compute)

    def corpus_normalized(self, x: Tensor) -> Tensor:
        """``x`` minus the training features' mean, over their standard deviation
        (with ``data.normalize: corpus``; else ``x`` itself)."""
        if self.config.normalize != "corpus":
            return x
        if self.norm is None:
            raise RuntimeError("setup() or load_state_dict() must run before features are read")
        mean, std = self.norm
        return (x - mean) / (std + 1e-5)

    def check_splits(self, splits: tuple[str, ...]) -> None:
        """Raise :class:`DataError` for a split with no utterance (or none that CTC can
        train on), before anything trains; computes the features of every split."""
        for split in splits:
            if not self.utterances(split):
                raise DataError(f"task speech: the {split} split of corpus "
                                f"{self.config.corpus} has no utterance")
            if not len(self.dataset(split)):
                raise DataError(f"task speech: no utterance of the {split} split is long "
                                f"enough for its transcript under CTC")

    def setup(self) -> None:
        texts = [u.text for u in self.utterances("train")]
        if not texts:
            raise DataError(f"task speech: the train split of corpus {self.config.corpus} "
                            f"has no utterance")
        tokens = sorted({t for text in texts for t in self.tokenize(text)})
        self.itos = [BLANK] + tokens
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.transcripts = dict(Counter(texts))
        if self.config.normalize == "corpus":
            total, square, frames = 0.0, 0.0, 0
            for utt in self.utterances("train"):
                x = self.raw_features(utt).double()
                total, square, frames = total + x.sum(0), square + (x * x).sum(0), \
                    frames + x.shape[0]
            mean = total / frames
            std = (square / frames - mean * mean).clamp(min=0).sqrt()
            self.norm = (mean.float(), std.float())

    def state_dict(self) -> dict:
        state = {"tokens": self.itos, "kind": self.config.tokens,
                 "transcripts": self.transcripts}
        if self.norm is not None:
            state["norm"] = {"mean": self.norm[0].tolist(), "std": self.norm[1].tolist()}
        return state

    def load_state_dict(self, state: dict) -> None:
        tokens = state.get("tokens")
        if not isinstance(tokens, list) or not tokens or tokens[0] != BLANK or \
                not all(isinstance(t, str) for t in tokens):
            raise DataError(f"task speech: expected a token list starting with {BLANK!r}, got "
                            f"{shorten(tokens)}")
        if state.get("kind") != self.config.tokens:
            raise DataError(f"task speech: expected {self.config.tokens} tokens (data.tokens), "
                            f"got a token set of kind {state.get('kind')!r}")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.transcripts = {str(k): int(v) for k, v in dict(state.get("transcripts", {})).items()}
        if self.config.normalize == "corpus":
            norm = state.get("norm")
            try:
                mean, std = (torch.tensor(norm[k], dtype=torch.float32) for k in ("mean", "std"))
            except (TypeError, KeyError, ValueError):
                raise DataError(f"task speech: expected the training features' mean and std "
                                f"(data.normalize: corpus), got {shorten(norm)}") from None
            if mean.shape != (self.spec.size,) or std.shape != (self.spec.size,):
                raise DataError(f"task speech: expected a mean and std of {self.spec.size} "
                                f"features, got shapes {tuple(mean.shape)}, {tuple(std.shape)}")
            self.norm = (mean, std)

    def dataset(self, split: str) -> _Split:
        """The split's examples; training utterances too short for CTC are left out
        (and counted), as are none of dev and test."""
        key = (split, self.subsampling)
        if key in self._splits:
            return self._splits[key]
        utts = self.utterances(split)
        feats, targets, texts, scorable, needs, kept = [], [], [], [], [], []
        short, outside = [], []
        for utt in utts:
            x = self.features_of(utt)
            toks = self.tokenize(utt.text)
            unknown = [t for t in toks if t not in self.stoi]
            ids = [self.stoi[t] for t in toks if t in self.stoi]
            frames = math.ceil(x.shape[0] / self.subsampling)
            need = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
            if unknown:
                if split == "train":
                    raise DataError(f"{utt.where or utt.id}: transcript {shorten(utt.text)} "
                                    f"holds {shorten(unknown[0])}, outside the token set of "
                                    f"this run")
                outside.append((utt, unknown[0]))
            if frames < need:
                short.append(utt)
                if split == "train":
                    continue
            feats.append(x)
            needs.append(need)
            kept.append(utt)
            targets.append(ids)
            texts.append(utt.text)
            scorable.append(not unknown)
        if short:
            what = ("left out of training" if split == "train"
                    else "scored but left out of the loss")
            print(f"speech: {len(short)} of {len(utts)} {split} utterances have fewer frames "
                  f"after subsampling by {self.subsampling} than their transcripts need under "
                  f"CTC (labels + repeats), {what}: {', '.join(u.id for u in short[:5])}"
                  + (", ..." if len(short) > 5 else ""))
        if outside:
            u, t = outside[0]
            print(f"speech: {len(outside)} of {len(utts)} {split} transcripts hold symbols "
                  f"outside the token set (e.g. {t!r} in {u.where or u.id}); they are scored "
                  f"(those symbols count as errors) but left out of the loss")
        c = self.config
        augment = None
        if split == "train" and c.spec_augment:
            augment = {"time_masks": c.time_masks, "time_width": c.time_mask_width,
                       "freq_masks": c.freq_masks, "freq_width": c.freq_mask_width}
        factors = tuple(c.speed_perturb) if split == "train" else ()
        self._splits[key] = _Split(
            feats, targets, texts, scorable, augment, factors,
            lambda i, f: self.corpus_normalized(self.speed_features(kept[i], f)), needs,
            self.subsampling)
        return self._splits[key]

    def speed_features(self, utt: Utterance, factor: float) -> Tensor:
        """Features of ``utt`` played ``factor`` times as fast (before corpus
        normalisation; cached): its samples read as if recorded at ``factor`` times
        the rate and resampled to ``data.sample_rate`` (Ko et al., "Audio
        augmentation for speech recognition", 2015: tempo and pitch change together)."""
        if factor == 1.0:
            return self.raw_features(utt)
        rate = self.spec.sample_rate

        def compute() -> Tensor:
            wave = load_waveform(utt, rate, backend=self.config.audio_backend)
            return features(resample(wave, round(rate * factor), rate), self.spec)

        return self.cache.get(f"{utt.identity()}|speed {factor}|{self.spec.key()}", compute)

    def lengths(self, split: str) -> list[int]:
        """Frames per utterance, for ``data.bucket``."""
        return [int(x.shape[0]) for x in self.dataset(split).feats]

    def batches(self, split: str, *, batch_size: int, epoch: int = 0, seed: int = 0,
                shuffle: bool = False, **kw):
        """The default batches; training batches (``shuffle``) draw their speed and
        masks for ``(seed, epoch)``, and with ``data.sortagrad`` the first epoch's
        go by length, shortest first."""
        ds = self.dataset(split)
        ds.round = (seed, epoch) if shuffle else None
        if shuffle and epoch == 0 and self.config.sortagrad:
            shuffle = False  # BucketedBatches unshuffled: sorted by length
        yield from super().batches(split, batch_size=batch_size, epoch=epoch, seed=seed,
                                   shuffle=shuffle, **kw)

    def collate(self, examples) -> SpeechBatch:
        lengths = torch.tensor([x.shape[0] for x, *_ in examples])
        target_lengths = torch.tensor([len(t) for _, t, *_ in examples])
        F = examples[0][0].shape[1]
        feats = torch.zeros(len(examples), int(lengths.max()), F)
        targets = torch.zeros(len(examples), max(1, int(target_lengths.max())), dtype=torch.long)
        for i, (x, t, _, _) in enumerate(examples):
            feats[i, : x.shape[0]] = x
            targets[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        return SpeechBatch(feats, lengths, targets, target_lengths,
                           torch.tensor([s for *_, s in examples]), [e[2] for e in examples])

    # ------------------------------------------------------------------ model

    def build_model(self, config: SpeechModelConfig) -> nn.Module:
        if not self.itos:
            raise RuntimeError("setup() or load_state_dict() must run before build_model()")
        self.subsampling = config.subsampling
        self.decoding = {"decoder": config.decoder, "beam_size": config.beam_size,
                         **self._constraints(config)}
        return CTCModel(self.spec.size, len(self.itos), config.hidden_size, cell=config.cell,
                        num_layers=config.num_layers, bidirectional=config.bidirectional,
                        dropout=config.dropout, subsampling=config.subsampling,
                        conv_channels=config.conv_channels, block=config.block,
                        block_options=config.block_options, **config.cell_options)

    def _constraints(self, config: SpeechModelConfig) -> dict:
        """The beam search's lexicon and LM, from the training transcripts."""
        out: dict = {"word_delimiter": self.stoi.get(" ") if self.config.tokens == "char"
                     else None, "lm_weight": config.lm_weight, "word_bonus": config.word_bonus}
        sentences = []  # each transcript as words, a word being the LM's key for it
        for text, count in self.transcripts.items():
            ws = words(text)
            if self.config.tokens == "char":
                sent = [tuple(self.stoi[ch] for ch in w) for w in ws]
            else:
                sent = [self.stoi[w] for w in ws]
            sentences += [sent] * count
        if config.lexicon:
            out["lexicon"] = Lexicon(w if isinstance(w, tuple) else (w,)
                                     for s in sentences for w in s)
        if config.lm_order > 0:
            out["lm"] = NGramLM(sentences, order=config.lm_order)
        return out

    def decode(self, log_probs: Tensor, lengths: Tensor, beam: int | None = None) -> list[str]:
        """Transcripts of a batch of outputs: greedy, or prefix beam search (``beam``,
        else the recipe's decoder) with the recipe's lexicon and LM."""
        d = self.decoding
        if beam is None and d["decoder"] == "greedy":
            ids = greedy_decode(log_probs, lengths)
        else:
            options = {k: v for k, v in d.items() if k not in ("decoder", "beam_size")}
            ids = beam_decode(log_probs, lengths, beam_size=beam or d["beam_size"], **options)
        return [self.detokenize(i) for i in ids]

    def step(self, model, batch: SpeechBatch, state=None) -> StepOutput:
        device = model_device(model)
        log_probs, out_lengths = model(batch.features.to(device), batch.lengths)
        training = model.training
        nll, feasible = ctc_loss(log_probs, out_lengths, batch.targets.to(device),
                                 batch.target_lengths, skip_infeasible=not training)
        used = feasible & batch.scorable
        if training and not bool(used.all()):
            raise DataError("task speech: a training batch holds an utterance that CTC cannot "
                            "align or score (it should have been left out)")
        n_used = int(used.sum())
        labels = batch.target_lengths.to(device).clamp(min=1).float()
        per_label = nll / labels  # (N,)
        mask = used.to(device)
        loss = (per_label * mask).sum() / max(n_used, 1)
        size = int(batch.lengths.sum())
        stats = {"nll": (nll * mask).sum().detach(),
                 "labels": float(batch.target_lengths[used].sum()), "scored": n_used}
        if not training:
            hyps = self.decode(log_probs, out_lengths)
            w = word_errors(batch.texts, hyps)
            c = char_errors(batch.texts, hyps)
            stats.update({
                "utts": len(hyps), "word_errors": w.errors, "words": w.units,
                "char_errors": c.errors, "chars": c.units,
                "sentence_errors": sum(words(r) != words(h) for r, h in zip(batch.texts, hyps)),
                "too_short": int((~feasible).sum()), "unscorable": int((~batch.scorable).sum())})
        return StepOutput(loss=loss, stats=stats, size=size)

    def metrics(self, stats: dict[str, float]) -> dict[str, float]:
        out = {"loss": stats["nll"] / max(stats["labels"], 1.0)}
        if "utts" in stats:
            utts = max(stats["utts"], 1.0)
            out["wer"] = 100.0 * stats["word_errors"] / max(stats["words"], 1.0)
            out["cer"] = 100.0 * stats["char_errors"] / max(stats["chars"], 1.0)
            out["ser"] = 100.0 * stats["sentence_errors"] / utts
            out["accuracy"] = 100.0 - out["ser"]
            out["too_short"] = stats["too_short"]
            out["unscorable"] = stats["unscorable"]
        return out

    def baselines(self) -> dict[str, float]:
        """WER of answering every dev utterance with the most frequent training transcript."""
        if not self.transcripts:
            return {}
        best = max(self.transcripts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        refs = [u.text for u in self.utterances("dev")]
        if not refs:
            return {}
        return {"wer": 100.0 * word_errors(refs, [best] * len(refs)).rate()}

    # ------------------------------------------------------------------ predict

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = ("Transcribe audio files: memnets predict RUN_DIR audio.wav "
                              "[more.wav ...]. " + parser.description)
        parser.add_argument("--beam", type=int, default=None, metavar="N",
                            help="prefix beam search keeping N prefixes (default: the "
                                 "recipe's model.decoder)")
        parser.add_argument("--png", help="write the posteriorgram (each token's probability "
                                          "per frame) under the spectrogram to this PNG file "
                                          "(one input)")

    def parse_input(self, line: str, ns) -> dict:
        """A path to an audio file -> its waveform and features."""
        if ns.beam is not None and ns.beam < 1:
            raise ValueError(f"--beam: expected N >= 1, got {ns.beam}")
        path = Path(line.strip()).expanduser()
        if not path.is_file():
            raise ValueError(f"expected a path to an audio file, got {shorten(line, 60)} "
                             f"(no such file)")
        wave, _ = read_audio(path, sample_rate=self.spec.sample_rate,
                             backend=self.config.audio_backend)
        return {"path": str(path), "wave": wave,
                "features": self.corpus_normalized(features(wave, self.spec))}

    def predict_batch(self, model: nn.Module, examples: list[dict], ns) -> list[dict]:
        """Each file's transcript, its length and, with ``--png``, the posteriorgram."""
        batch = self.collate([(e["features"], [], "", True) for e in examples])
        log_probs, out_lengths = model(batch.features.to(model_device(model)), batch.lengths)
        hyps = self.decode(log_probs, out_lengths, beam=ns.beam)
        results = []
        for k, (e, text) in enumerate(zip(examples, hyps)):
            r = {"transcript": text, "seconds": round(len(e["wave"]) / self.spec.sample_rate, 3),
                 "frames": int(out_lengths[k]),
                 "decoder": f"beam {ns.beam}" if ns.beam else self.decoding["decoder"]}
            if ns.png:
                probs = log_probs[k, : int(out_lengths[k])].exp().cpu()  # (T', V + 1)
                r["posteriorgram"] = str(self.posteriorgram_png(e["wave"], probs, text, ns.png))
            results.append(r)
        return results

    def format_prediction(self, result: dict, ns) -> str:
        lines = [result["transcript"] or "(empty transcript)"]
        if "posteriorgram" in result:
            lines.append(f"posteriorgram: {result['posteriorgram']}")
        return "\n".join(lines)

    def posteriorgram_png(self, wave: Tensor, probs: Tensor, transcript: str, out) -> Path:
        """The spectrogram (log mel energies) over time and, under it, every symbol's
        probability at every output frame: the blank in grey, each token in a colour,
        each token's name where the frame's most probable symbol turns to it."""
        from memnets.figures import plt, save_png  # matplotlib (Agg) only when asked

        hop = self.spec.hop_length / self.spec.sample_rate  # seconds per input frame
        spec = log_mel(wave, self.spec)  # (frames, n_mels), not normalised
        step = hop * self.subsampling  # seconds per output frame
        T, V = probs.shape
        times = (torch.arange(T) + 0.5) * step
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(16, 3 + 1.2 * len(wave) /
                                                               self.spec.sample_rate), 5.5),
                                          sharex=True, height_ratios=[1.2, 1])
        top.imshow(spec.T.numpy(), origin="lower", aspect="auto", cmap="magma",
                   extent=(0, spec.shape[0] * hop, 0, spec.shape[1]))
        top.set_ylabel("mel filter")
        top.set_title(f"\u201c{transcript}\u201d" if transcript else "(empty transcript)",
                      fontsize=10)
        bottom.plot(times, probs[:, 0].numpy(), color="0.6", lw=1.2, ls="--", label="blank")
        colours = plt.get_cmap("tab10" if V <= 11 else "tab20")
        best = probs.argmax(-1).tolist()
        for v in range(1, V):
            if float(probs[:, v].max()) < 0.05:
                continue
            colour = colours((v - 1) % colours.N)
            name = self.itos[v] if self.itos[v] != " " else "\u2423"
            bottom.plot(times, probs[:, v].numpy(), color=colour, lw=1.4,
                        label=name if V <= 12 else None)
        for t in range(T):
            v = best[t]
            if v != 0 and (t == 0 or best[t - 1] != v):
                name = self.itos[v] if self.itos[v] != " " else "\u2423"
                bottom.annotate(name, (float(times[t]), float(probs[t, v])),
                                textcoords="offset points", xytext=(0, 3), ha="center",
                                fontsize=8, color=colours((v - 1) % colours.N))
        bottom.set_ylim(0, 1.12)
        bottom.set_ylabel("p(symbol | frame)")
        bottom.set_xlabel("time (s)")
        bottom.legend(loc="upper right", fontsize=7, ncol=min(V, 6))
        return save_png(fig, Path(out), dpi=110)
