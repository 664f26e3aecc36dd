r"""Speech corpora for CTC: utterances (audio and transcript) and their splits.

Every reader returns ``{"train": [...], "dev": [...], "test": [...]}`` of
:class:`Utterance`; :func:`load_waveform` turns one into samples at a chosen
rate.  Transcripts are lowercased, with words separated by single spaces.

* **yesno** (``<data>/yesno/waves_yesno/*.wav``; Kaldi's "yesno" corpus,
  OpenSLR SLR1): 60 recordings of eight words each, the words in the file name
  (``1_0_0_1_...wav``, 1 = "yes", 0 = "no").  The split is Kaldi's recipe's:
  the file names sorted, the first half (30) for training, the second half (30)
  for test.  The last :data:`YESNO_DEV` files of the training half are held out
  as dev (train 24 / dev 6 / test 30).
* **fsdd** (``<data>/fsdd/recordings/{digit}_{speaker}_{index}.wav``; the Free
  Spoken Digit Dataset, 6 speakers, 50 recordings of each digit each): the
  official split, index 0-4 test (300); the official training part, index
  5-49, gives dev (index 5-9, 300) and train (index 10-49, 2400).  The
  transcript is the digit's English word (``"seven"``).
* **fsdd connected digits** (:func:`fsdd_connected`): sequences of 1-7 digits
  composed by the project from FSDD recordings of one split only (train
  sequences from train recordings, dev from dev, test from test), so that no
  recording is shared between splits.  Sequence ``k`` of a split draws, from
  ``random.Random`` seeded with ``"fsdd-connected/<seed>/<split>/<k>"``: a
  speaker (uniform over the six), a length ``n ~ U{min_digits..max_digits}``,
  ``n`` digits uniform over 0-9 (repeats allowed: "four four" happens), one
  recording of that speaker saying each digit (uniform over the split's), a
  gap before each recording and one after the last, each ``~ U[gap_min,
  gap_max]`` seconds.  A gap is Gaussian noise of standard deviation
  ``gap_noise`` (seeded by the same string), not digital silence: FSDD's
  recordings are trimmed close to the speech, and real pauses are never
  exactly zero.
* **an4** (``<data>/an4_subset``: a 40-utterance sample of CMU's AN4, NeMo's
  test data): ``an4_train.json`` (30) and ``an4_val.json`` (10, used as test),
  NeMo manifests whose ``audio_filepath`` values point into NeMo's tree and are
  matched by file name to ``train/wav/`` and ``test/wav/``.  Every fifth
  training utterance (positions 5, 10, ..., in file order) is dev: train 24 /
  dev 6 / test 10.
* **manifest** (:func:`read_manifest`): JSON lines ``{"audio": path, "text":
  ...}`` (NeMo's ``audio_filepath`` is read too), one file per split; relative
  paths are taken from the manifest's folder.  Users bring their own corpus
  this way.

**Downloads.**  :func:`fetch_corpus` fetches ``yesno``, ``fsdd`` or ``an4``
from the public copies named in :data:`CORPORA` (pinned commits on GitHub),
file by file, into a staging folder; the corpus is moved into place only if
the sha256 of its listing (:func:`listing_sha256`: ``sha256  name`` lines of
every file, sorted by name, the format of ``sha256sum``) matches the one
recorded here, so a partial or altered download never looks complete.

This module is a leaf: it imports the standard library, torch and
:mod:`memnets.data` (the audio front end, downloads) and :mod:`memnets.errors`.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from memnets.data.audio import file_identity, read_audio
from memnets.data.download import download, sha256_file
from memnets.data.text import DataFormatError, read_json_lines
from memnets.errors import DataError, shorten

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_TEST = range(0, 5)  # the official test indices
FSDD_DEV = range(5, 10)  # held out of the official training part for model choice
YESNO_DEV = 6  # the last files of yesno's training half held out as dev
AN4_DEV_EVERY = 5  # every fifth AN4 training utterance is dev
SPLITS = ("train", "dev", "test")

# the 60 yesno recordings (their names without underscores; 1 = yes, 0 = no)
YESNO_NAMES = (
    "00001111 00010001 00010110 00100010 00100110 00100111 00101000 00101001 00101011 "
    "00110001 00110100 00110110 00110111 00111000 00111001 00111100 00111110 01000100 "
    "01000110 01001010 01001011 01010000 01011010 01011100 01100110 01100111 01110000 "
    "01110010 01110101 01111010 01111111 10000000 10000001 10000011 10001001 10010111 "
    "10101001 10110111 10111010 10111101 11000001 11000111 11001010 11001011 11001110 "
    "11010100 11010110 11011001 11011011 11011110 11100001 11100101 11100111 11101010 "
    "11101011 11110010 11110100 11111000 11111100 11111111").split()
AN4_WAVS = {
    "train": (
        "an104-mrcb-b an127-mcen-b an152-mwhw-b an180-mjjs2-b an185-fnsv-b an199-mgah-b "
        "an204-mcel-b an22-flrp-b an223-fwxs-b an225-fwxs-b an230-msjm-b an234-mcsc-b "
        "an251-fash-b an261-mcfl-b an265-mcfl-b an298-fsaf2-b an304-mtcv-b an32-mtje-b "
        "an324-mmal-b an333-msrb-b an341-msct-b an357-mscg2-b an369-mtos-b an388-mmtm-b "
        "an390-mmtm-b an46-mmap-b an5-mblw-b an90-fbbh-b cen3-fjdn-b cen3-mtxj-b").split(),
    "test": (
        "an392-mjwl-b an402-mdms2-b an409-fcaw-b an416-fjlp-b an440-mjgm-b an442-mmxg-b "
        "an443-mmxg-b cen3-fjlp-b cen3-mdms2-b cen3-mjwl-b").split(),
}


@dataclass(frozen=True)
class CorpusSource:
    """Where a corpus comes from.

    Attributes:
        folder: its folder under the data root.
        url: the address of one file, ``{path}`` standing for its remote path.
        listing_sha256: sha256 of the corpus listing (:func:`listing_sha256`).
        licence: the corpus's licence, in words.
        origin: the original distribution.
    """

    folder: str
    url: str
    listing_sha256: str
    licence: str
    origin: str


_GH = "https://raw.githubusercontent.com/"
CORPORA = {
    "yesno": CorpusSource(
        "yesno", _GH + "keighrim/kaldi-yesno-tutorial/f4e2910de0d3b58f5f3b5cd10a8e57712c60b34a/"
        "{path}", "5f4067e9fdf40160bf1b6f128b75f576d9a919aa718361b372023798c0581745",
        "free for testing Kaldi (OpenSLR resource 1)",
        "https://www.openslr.org/resources/1/waves_yesno.tar.gz"),
    "fsdd": CorpusSource(
        "fsdd", _GH + "Jakobovski/free-spoken-digit-dataset/"
        "26eb9aaf76e81b692f806f9140c2d2777410d7a1/{path}",
        "04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b", "CC BY-SA 4.0",
        "https://github.com/Jakobovski/free-spoken-digit-dataset"),
    "an4": CorpusSource(
        "an4_subset", _GH + "NVIDIA/NeMo-text-processing/"
        "abcaa91e0eea51c16ca2fc339f32272a54818add/{path}",
        "acaa06512fda41883f864ee2c930f63335e80ac0750121530d567a002ea21863",
        "CMU, free for any purpose (BSD-style)",
        "http://www.speech.cs.cmu.edu/databases/an4/"),
}


@dataclass(frozen=True)
class Segment:
    """One recording of a composed utterance, after ``gap`` seconds of pause."""

    audio: Path
    gap: float


@dataclass(frozen=True)
class Utterance:
    """One utterance: its audio (a file, or recordings composed with pauses) and
    its transcript.

    Attributes:
        id: a name unique in its corpus (the file's stem, ``test-00017``).
        text: the transcript, lowercased, words separated by one space.
        audio: the file, or ``None`` for a composed utterance.
        parts: the composed utterance's recordings (empty for a file).
        tail: seconds of pause after the last part.
        gap_noise: standard deviation of the pauses' Gaussian noise.
        seed: the string seeding the pauses' noise.
        where: where the utterance was listed (``manifest.json:12``), for messages.
    """

    id: str
    text: str
    audio: Path | None = None
    parts: tuple[Segment, ...] = ()
    tail: float = 0.0
    gap_noise: float = 0.0
    seed: str = ""
    where: str = ""

    def identity(self) -> str:
        """What the features depend on: the file (path, size, time) or the composition."""
        if self.audio is not None:
            return file_identity(self.audio)
        parts = ";".join(f"{file_identity(p.audio)}@{p.gap:.6f}" for p in self.parts)
        return f"composed[{parts}]+{self.tail:.6f}~{self.gap_noise}:{self.seed}"

    def files(self) -> list[Path]:
        """The audio files this utterance reads."""
        return [self.audio] if self.audio is not None else [p.audio for p in self.parts]


def normalize_text(text: str) -> str:
    """Lowercased, words separated by single spaces, no space at either end."""
    return " ".join(text.lower().split())


def load_waveform(utt: Utterance, sample_rate: int, *, backend: str = "auto") -> Tensor:
    """The utterance's samples at ``sample_rate``, ``(T,)`` float32 mono (files read
    with :func:`~memnets.data.audio.read_audio` and ``backend``).

    A composed utterance joins its parts, each after its pause, and a pause at
    the end; the pauses hold Gaussian noise of standard deviation
    ``utt.gap_noise`` drawn from a generator seeded by ``utt.seed``.
    """
    if utt.audio is not None:
        return read_audio(utt.audio, sample_rate=sample_rate, backend=backend)[0]
    seed = int.from_bytes(hashlib.sha256(utt.seed.encode()).digest()[:8], "little") >> 1
    g = torch.Generator().manual_seed(seed)

    def pause(seconds: float) -> Tensor:
        return torch.randn(int(round(seconds * sample_rate)), generator=g) * utt.gap_noise

    pieces = []
    for part in utt.parts:
        pieces += [pause(part.gap),
                   read_audio(part.audio, sample_rate=sample_rate, backend=backend)[0]]
    pieces.append(pause(utt.tail))
    return torch.cat(pieces)


# ---------------------------------------------------------------------- corpora


def _need_folder(folder: Path, what: str, hint: str) -> None:
    if not folder.is_dir():
        raise DataError(f"{what} not found: expected the folder {folder}; {hint}")


def yesno_corpus(folder: str | os.PathLike) -> dict[str, list[Utterance]]:
    """The yesno corpus in ``folder`` (holding ``waves_yesno/``), split as Kaldi's recipe
    splits it (the module docstring says how)."""
    folder = Path(folder)
    waves = folder / "waves_yesno"
    _need_folder(waves, "the yesno corpus", "set data.download: true to fetch it")
    files = sorted(waves.glob("*.wav"))
    if len(files) < 2:
        raise DataError(f"expected the yesno recordings (*.wav) in {waves}, got {len(files)}")
    utts = []
    for f in files:
        bits = f.stem.split("_")
        if not bits or any(b not in ("0", "1") for b in bits):
            raise DataError(f"{f}: expected a yesno file name of 0s and 1s joined by '_' "
                            f"(1_0_0_1_0_1_1_0.wav), got {shorten(f.name)}")
        utts.append(Utterance(f.stem, " ".join("yes" if b == "1" else "no" for b in bits), f))
    half = len(utts) // 2  # Kaldi: file i (1-based) is train when i <= n / 2
    train, test = utts[:half], utts[half:]
    dev_n = min(YESNO_DEV, max(1, len(train) // 5))
    return {"train": train[:-dev_n], "dev": train[-dev_n:], "test": test}


_FSDD_NAME = re.compile(r"([0-9])_([a-z]+)_([0-9]+)")


def fsdd_recordings(folder: str | os.PathLike) -> dict[str, list[tuple[int, str, int, Path]]]:
    """FSDD's recordings by split: ``(digit, speaker, index, path)`` in name order."""
    folder = Path(folder)
    rec = folder / "recordings"
    _need_folder(rec, "the Free Spoken Digit Dataset", "set data.download: true to fetch it")
    out: dict[str, list] = {s: [] for s in SPLITS}
    for f in sorted(rec.glob("*.wav")):
        m = _FSDD_NAME.fullmatch(f.stem)
        if m is None:
            raise DataError(f"{f}: expected an FSDD file name {{digit}}_{{speaker}}_{{index}}"
                            f".wav, got {shorten(f.name)}")
        digit, speaker, index = int(m.group(1)), m.group(2), int(m.group(3))
        split = ("test" if index in FSDD_TEST else "dev" if index in FSDD_DEV else "train")
        out[split].append((digit, speaker, index, f))
    if not any(out.values()):
        raise DataError(f"expected FSDD recordings (*.wav) in {rec}, got none")
    return out


def fsdd_corpus(folder: str | os.PathLike) -> dict[str, list[Utterance]]:
    """Isolated digits: each FSDD recording, its digit's word as the transcript."""
    return {split: [Utterance(p.stem, DIGITS[d], p) for d, _, _, p in recs]
            for split, recs in fsdd_recordings(folder).items()}


def fsdd_connected(folder: str | os.PathLike, counts: dict[str, int], *, seed: int = 0,
                   min_digits: int = 1, max_digits: int = 7, gap_min: float = 0.05,
                   gap_max: float = 0.4, gap_noise: float = 1e-3
                   ) -> dict[str, list[Utterance]]:
    """Connected-digit sequences composed from FSDD (the module docstring says how).

    Args:
        folder: the FSDD folder (holding ``recordings/``).
        counts: sequences per split, e.g. ``{"train": 3000, "dev": 300, "test": 500}``.
        seed: the composition's seed.
        min_digits, max_digits: sequence lengths, inclusive.
        gap_min, gap_max: pause lengths in seconds.
        gap_noise: standard deviation of the pauses' noise.
    """
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"expected 1 <= min_digits <= max_digits, got {min_digits}, "
                         f"{max_digits}")
    if not 0 <= gap_min <= gap_max:
        raise ValueError(f"expected 0 <= gap_min <= gap_max, got {gap_min}, {gap_max}")
    recordings = fsdd_recordings(folder)
    out: dict[str, list[Utterance]] = {}
    for split, n in counts.items():
        pool: dict[tuple[str, int], list[Path]] = {}
        for digit, speaker, _, path in recordings[split]:
            pool.setdefault((speaker, digit), []).append(path)
        speakers = sorted({s for s, _ in pool})
        if n and not speakers:
            raise DataError(f"expected FSDD recordings of the {split} split in "
                            f"{Path(folder) / 'recordings'}, got none")
        utts = []
        for k in range(n):
            tag = f"fsdd-connected/{seed}/{split}/{k}"
            rng = random.Random(tag)
            speaker = rng.choice(speakers)
            have = [d for d in range(10) if (speaker, d) in pool]
            digits = [rng.choice(have) for _ in range(rng.randint(min_digits, max_digits))]
            parts = tuple(Segment(rng.choice(pool[(speaker, d)]), rng.uniform(gap_min, gap_max))
                          for d in digits)
            utts.append(Utterance(f"{split}-{k:05d}", " ".join(DIGITS[d] for d in digits),
                                  parts=parts, tail=rng.uniform(gap_min, gap_max),
                                  gap_noise=gap_noise, seed=tag))
        out[split] = utts
    return out


def _manifest_row(path: Path, i: int, row: dict) -> tuple[str, str]:
    audio = row.get("audio", row.get("audio_filepath"))
    if not isinstance(audio, str) or not audio:
        raise DataFormatError(f"{path}:{i}: expected an \"audio\" path (or NeMo's "
                              f"\"audio_filepath\"), got {shorten(audio)}")
    text = row.get("text")
    if not isinstance(text, str):
        raise DataFormatError(f"{path}:{i}: expected a \"text\" string, got {shorten(text)}")
    return audio, text


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """A JSON-lines manifest, ``{"audio": path, "text": ...}`` per line (NeMo's
    ``audio_filepath`` works too; other keys are ignored; blank lines skipped).

    Relative audio paths are taken from the manifest's folder.

    Raises:
        DataError: a line that is not a JSON object with ``audio`` and ``text``, or
            an audio file that does not exist (naming the manifest and the line).
    """
    path = Path(path)
    utts = []
    for i, row in read_json_lines(path, "a JSON-lines manifest"):
        audio, text = _manifest_row(path, i, row)
        f = Path(audio).expanduser()
        if not f.is_absolute():
            f = path.parent / f
        if not f.is_file():
            raise DataError(f"{path}:{i}: audio file {f} not found (relative paths are taken "
                            f"from the manifest's folder {path.parent})")
        utts.append(Utterance(f"{f.stem}", normalize_text(text), f, where=f"{path}:{i}"))
    return utts


def an4_corpus(folder: str | os.PathLike) -> dict[str, list[Utterance]]:
    """The AN4 sample (the module docstring says how it is split)."""
    folder = Path(folder)
    _need_folder(folder, "the AN4 sample", "set data.download: true to fetch it")
    out = {}
    for split, name, sub in (("train", "an4_train.json", "train"),
                             ("test", "an4_val.json", "test")):
        path = folder / name
        utts = []
        for i, row in read_json_lines(path, "an AN4 manifest (NeMo's JSON lines)"):
            audio, text = _manifest_row(path, i, row)
            f = folder / sub / "wav" / Path(audio).name
            if not f.is_file():
                raise DataError(f"{path}:{i}: expected the audio of {shorten(audio)} at {f}, "
                                f"found none")
            utts.append(Utterance(f.stem, normalize_text(text), f, where=f"{path}:{i}"))
        out[split] = utts
    train = out["train"]
    dev = [u for k, u in enumerate(train, 1) if k % AN4_DEV_EVERY == 0]
    return {"train": [u for k, u in enumerate(train, 1) if k % AN4_DEV_EVERY],
            "dev": dev, "test": out["test"]}


# ---------------------------------------------------------------------- downloads


def corpus_files(name: str) -> dict[str, str]:
    """The files of corpus ``name``: local path (under its folder) -> remote path."""
    if name == "yesno":
        files = {f"waves_yesno/{'_'.join(b)}.wav": f"waves_yesno/{'_'.join(b)}.wav"
                 for b in YESNO_NAMES}
        files["waves_yesno/README"] = "waves_yesno/README"
        return files
    if name == "fsdd":
        return {f"recordings/{d}_{s}_{i}.wav": f"recordings/{d}_{s}_{i}.wav"
                for d in range(10) for s in FSDD_SPEAKERS for i in range(50)}
    if name == "an4":
        asr = "tests/.data/asr"
        files = {f"{split}/wav/{w}.wav": f"{asr}/{split}/an4/wav/{w}.wav"
                 for split, names in AN4_WAVS.items() for w in names}
        files.update({"an4_train.json": f"{asr}/an4_train.json",
                      "an4_val.json": f"{asr}/an4_val.json", "LICENSE": f"{asr}/LICENSE",
                      "README.an4": "tests/.data/an4_speaker/an4/README"})
        return files
    raise ValueError(f"expected a corpus among {', '.join(CORPORA)}, got {name!r}")


def listing_sha256(folder: str | os.PathLike, names) -> str:
    """sha256 of the listing of ``names`` in ``folder``: one ``<sha256>  <name>`` line
    per file, sorted by name (the output of ``sha256sum`` on sorted names)."""
    folder = Path(folder)
    lines = [f"{sha256_file(folder / n)}  {n}\n" for n in sorted(names)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def fetch_corpus(name: str, root: str | os.PathLike, *, url: str | None = None,
                 sha256: str | None = None, quiet: bool = True) -> Path:
    """Download corpus ``name`` into ``root / CORPORA[name].folder`` unless it is there.

    Args:
        name: ``yesno``, ``fsdd`` or ``an4``.
        root: the data root.
        url: the address of one file with ``{path}`` (default: the public copy).
        sha256: the listing's sha256 (default: the recorded one).
        quiet: no progress lines.

    Returns:
        the corpus folder.

    Raises:
        DataError: a file could not be fetched, or the listing's sha256 differs
            (then nothing is written and the staging folder is removed).
    """
    source = CORPORA[name]
    files = corpus_files(name)
    dest = Path(root) / source.folder
    if all((dest / n).is_file() for n in files):
        return dest
    expected = (sha256 or source.listing_sha256).lower()
    stage = dest.parent / f".{dest.name}.part"
    if stage.exists():
        shutil.rmtree(stage)
    try:
        for local, remote in files.items():
            # each file unchecked here: the listing's sha256 below checks them all
            download((url or source.url).format(path=remote), stage / local, sha256=None,
                     quiet=True)
        got = listing_sha256(stage, files)
        if got != expected:
            raise DataError(f"checksum mismatch for the {name} corpus: expected listing sha256 "
                            f"{expected}, got {got}; {dest} was not written")
        for local in files:
            target = dest / local
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / local, target)
        if not quiet:
            print(f"{name}: {len(files)} files in {dest}")
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return dest
