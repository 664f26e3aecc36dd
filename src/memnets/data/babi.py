"""Reader for the bAbI question-answering tasks (v1.2, English, 1k and 10k).

Weston, Bordes, Chopra, Rush, van Merriënboer, Joulin & Mikolov, "Towards
AI-complete question answering: a set of prerequisite toy tasks", 2015.

Each file holds stories; a story is numbered lines ``ID text`` that restart
at 1; a question line is ``ID question<TAB>answer<TAB>supporting IDs``.  Every
question becomes one :class:`BabiExample` whose memory is the story's
statements before it (questions are not memories), the most recent
``memory_size`` (50, as in Sukhbaatar et al. 2015) kept.

Answers are one word, or a comma list for tasks 8 (lists/sets) and 19 (path
finding), e.g. ``s,e``; the whole list is one answer label, so a model picks it
as a single class, as the paper's models do.

This module imports torch only for :func:`encode`/:class:`BabiBatch`; it uses
the shared :class:`~memnets.data.vocab.Vocab`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from memnets.data.text import DataFormatError, MissingFileError, read_lines
from memnets.data.vocab import PAD, UNK, Vocab
from memnets.errors import shorten

TASK_NAMES = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    3: "three-supporting-facts",
    4: "two-arg-relations",
    5: "three-arg-relations",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
    9: "simple-negation",
    10: "indefinite-knowledge",
    11: "basic-coreference",
    12: "conjunction",
    13: "compound-coreference",
    14: "time-reasoning",
    15: "basic-deduction",
    16: "basic-induction",
    17: "positional-reasoning",
    18: "size-reasoning",
    19: "path-finding",
    20: "agents-motivations",
}
SETS = ("en", "en-10k")
MEMORY_SIZE = 50
BABI_DIRNAME = "babi/tasks_1-20_v1-2"
# The public archive of v1.2 (Facebook AI Research); it unpacks to tasks_1-20_v1-2/.
BABI_URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"

_TOKEN = re.compile(r"[a-z0-9,']+")
_LINE = re.compile(r"^(\d+) (.*)$")


def tokenize(text: str) -> list[str]:
    """Lower-case words; the full stop and question mark are dropped.

    ``"Where is Mary?"`` -> ``["where", "is", "mary"]``.
    """
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class BabiExample:
    """One question with the memory it is asked about.

    Attributes:
        task: the task number, 1..20.
        story: the memory, oldest sentence first; each sentence a list of tokens.
        question: the question's tokens.
        answer: the answer words (more than one for tasks 8 and 19).
        supporting: indices into ``story`` of the supporting facts (those that
            fell out of the memory window are left out).
        source: ``"file:line"`` of the question line, for messages.
    """

    task: int
    story: tuple[tuple[str, ...], ...]
    question: tuple[str, ...]
    answer: tuple[str, ...]
    supporting: tuple[int, ...]
    source: str = ""

    @property
    def answer_label(self) -> str:
        """The answer as one class label: the words joined by commas."""
        return ",".join(self.answer)


class BabiFormatError(DataFormatError):
    """A line of a bAbI file is not in the documented format (a
    :class:`~memnets.errors.DataError` and a ``ValueError``); the message names file:line."""


def parse_lines(lines: Iterable[str], *, task: int = 0, name: str = "<lines>",
                memory_size: int = MEMORY_SIZE) -> list[BabiExample]:
    """Parse bAbI lines into examples; ``name`` is used in error messages.

    Raises:
        BabiFormatError: naming ``name`` and the 1-based line number, for a line
            that has no leading ID, an ID that does not follow the previous one,
            a question without answer (also a line ending in ``?`` without TABs),
            or supporting IDs that are not earlier statements of the same story.
    """
    if memory_size < 1:
        raise ValueError(f"expected memory_size >= 1, got {memory_size}")
    examples: list[BabiExample] = []
    statements: list[tuple[str, ...]] = []
    id_to_index: dict[int, int] = {}  # line ID -> index into statements
    last_id = 0
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        where = f"{name}:{lineno}"
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            raise BabiFormatError(
                f"{where}: expected 'ID text' with a numeric ID, got {shorten(line)}")
        if len(m.group(1)) > 9:
            raise BabiFormatError(
                f"{where}: expected a line ID of at most 9 digits, got {shorten(m.group(1))}")
        line_id, body = int(m.group(1)), m.group(2)
        if line_id == 1:
            statements, id_to_index = [], {}
        elif line_id != last_id + 1:
            raise BabiFormatError(
                f"{where}: expected line ID 1 or {last_id + 1}, got {line_id}")
        last_id = line_id
        if "\t" not in body:
            if body.rstrip().endswith("?"):
                raise BabiFormatError(
                    f"{where}: expected 'ID question<TAB>answer<TAB>supporting IDs' for a "
                    f"question, got no TAB in {shorten(line)}")
            statements.append(tuple(tokenize(body)))
            id_to_index[line_id] = len(statements) - 1
            continue
        fields = body.split("\t")
        if len(fields) != 3 or not fields[1].strip():
            raise BabiFormatError(
                f"{where}: expected 'ID question<TAB>answer<TAB>supporting IDs', got "
                f"{shorten(line)}")
        question, answer, support = fields
        answer_words = tuple(a.strip().lower() for a in answer.split(","))
        if not all(answer_words):
            raise BabiFormatError(
                f"{where}: expected answer words separated by commas, got {shorten(answer)}")
        try:
            support_ids = [int(s) for s in support.split()]
        except ValueError:
            raise BabiFormatError(
                f"{where}: expected supporting fact IDs as integers, got {shorten(support)}"
            ) from None
        bad = [s for s in support_ids if s not in id_to_index]
        if bad:
            raise BabiFormatError(f"{where}: supporting fact IDs {shorten(bad)} are not earlier "
                                  f"statements of this story")
        first = max(0, len(statements) - memory_size)
        supporting = tuple(id_to_index[s] - first for s in support_ids if id_to_index[s] >= first)
        examples.append(BabiExample(
            task=task,
            story=tuple(statements[first:]),
            question=tuple(tokenize(question)),
            answer=answer_words,
            supporting=supporting,
            source=where,
        ))
    return examples


def task_file(root: str | Path, task: int, split: str, set_name: str = "en") -> Path:
    """The path of one task's file: ``root/<set_name>/qa<task>_<name>_<split>.txt``.

    Raises:
        MissingFileError: (a ``DataError`` and a ``FileNotFoundError``) naming the
            path; the 10k set's task 3 train file is a known gap in the project's
            copy and gets its own explanation.
    """
    if task not in TASK_NAMES:
        raise ValueError(f"expected a bAbI task in 1..20, got {task}")
    if split not in ("train", "test"):
        raise ValueError(f"expected split 'train' or 'test', got {split!r}")
    if set_name not in SETS:
        raise ValueError(f"expected set {' or '.join(SETS)}, got {set_name!r}")
    path = Path(root) / set_name / f"qa{task}_{TASK_NAMES[task]}_{split}.txt"
    if not path.is_file():
        hint = ""
        if set_name == "en-10k" and task == 3 and split == "train":
            hint = (" (the project's copy of bAbI lacks this 5.3 MB file; train the 10k set on"
                    " the 19 other tasks with missing='skip', or fetch the public archive)")
        raise MissingFileError(f"bAbI task {task} {split} file not found: {path}{hint}")
    return path


def read_task(root: str | Path, task: int, split: str, set_name: str = "en",
              *, memory_size: int = MEMORY_SIZE) -> list[BabiExample]:
    """All examples of one task's train or test file (a file without questions is an error)."""
    path = task_file(root, task, split, set_name)
    examples = parse_lines(read_lines(path, "a bAbI task file"), task=task, name=str(path),
                           memory_size=memory_size)
    if not examples:
        raise BabiFormatError(f"{path}: expected questions (lines 'ID question<TAB>answer"
                              f"<TAB>supporting IDs'), got none")
    return examples


@dataclass
class BabiSplits:
    """Train/validation/test examples and the tasks they cover."""

    train: list[BabiExample]
    valid: list[BabiExample]
    test: list[BabiExample]
    tasks: list[int]
    missing: list[int]


def load_babi(root: str | Path, tasks: Sequence[int] | None = None, set_name: str = "en", *,
              valid_fraction: float = 0.1, memory_size: int = MEMORY_SIZE,
              missing: str = "error", seed: int = 0) -> BabiSplits:
    """Read one task or several (joint training) and hold out validation.

    ``valid_fraction`` of each task's train questions (10%, as in the paper) go
    to validation, chosen at random with ``seed`` per task.

    Args:
        root: the folder holding ``en/`` and ``en-10k/``.
        tasks: task numbers; ``None`` = all 20.
        missing: ``"error"`` raises for a task whose files are absent;
            ``"skip"`` leaves it out and lists it in ``BabiSplits.missing``.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"expected missing='error' or 'skip', got {missing!r}")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"expected 0 <= valid_fraction < 1, got {valid_fraction}")
    tasks = list(range(1, 21)) if tasks is None else [int(t) for t in tasks]
    train, valid, test, present, absent = [], [], [], [], []
    for t in tasks:
        try:
            tr = read_task(root, t, "train", set_name, memory_size=memory_size)
            te = read_task(root, t, "test", set_name, memory_size=memory_size)
        except FileNotFoundError:
            if missing == "error":
                raise
            absent.append(t)
            continue
        order = list(range(len(tr)))
        random.Random(seed * 1000 + t).shuffle(order)
        n_valid = int(round(valid_fraction * len(tr)))
        held = set(order[:n_valid])
        valid += [tr[i] for i in sorted(held)]
        train += [tr[i] for i in range(len(tr)) if i not in held]
        test += te
        present.append(t)
    if not present:
        raise MissingFileError(f"none of the bAbI tasks {tasks} were found under {root}")
    return BabiSplits(train, valid, test, present, absent)


def build_vocab(examples: Iterable[BabiExample]) -> Vocab:
    """Words of stories and questions plus the answer labels, in one vocabulary.

    The answer labels share the word vocabulary so that the output matrix can be
    tied to an embedding (the paper's adjacent weight tying).  ``<pad>`` is 0.
    """
    def seqs():
        for ex in examples:
            yield from ex.story
            yield ex.question
            yield (ex.answer_label,)

    return Vocab.build(seqs(), specials=(PAD, UNK), unk=UNK)


class BabiBatch(NamedTuple):
    """A padded batch (B = batch, M = memories, J = words per sentence, Q = question words).

    * story: ``(B, M, J)`` word ids, 0 = padding.
    * story_lengths: ``(B,)`` memories per example.
    * question: ``(B, Q)`` word ids.
    * answer: ``(B,)`` answer label ids.
    * task: ``(B,)`` task numbers.
    """

    story: Tensor
    story_lengths: Tensor
    question: Tensor
    answer: Tensor
    task: Tensor


def encode(examples: Sequence[BabiExample], vocab: Vocab) -> BabiBatch:
    """Pad examples to the largest story and sentence among them.

    Unknown words map to ``<unk>``; an unknown answer maps to ``<unk>`` as well
    (it can then never be predicted right, which is the honest score).
    """
    if not examples:
        raise ValueError("expected at least one example, got none")
    B = len(examples)
    M = max(1, max(len(ex.story) for ex in examples))
    J = max(1, max((len(s) for ex in examples for s in ex.story), default=1))
    Q = max(1, max(len(ex.question) for ex in examples))
    story = torch.zeros(B, M, J, dtype=torch.long)
    question = torch.zeros(B, Q, dtype=torch.long)
    for b, ex in enumerate(examples):
        for i, sent in enumerate(ex.story):
            if sent:
                story[b, i, : len(sent)] = torch.tensor(vocab.encode(sent))
        if ex.question:
            question[b, : len(ex.question)] = torch.tensor(vocab.encode(ex.question))
    lengths = torch.tensor([len(ex.story) for ex in examples], dtype=torch.long)
    answer = torch.tensor([vocab[ex.answer_label] for ex in examples], dtype=torch.long)
    task = torch.tensor([ex.task for ex in examples], dtype=torch.long)
    return BabiBatch(story, lengths, question, answer, task)


class EncodedSet:
    """A whole split encoded once, padded to its largest story; batches are slices.

    Slicing a pre-encoded tensor is far cheaper than encoding each batch, and
    :meth:`batch` trims the padding down to the batch's own largest story.
    """

    def __init__(self, examples: Sequence[BabiExample], vocab: Vocab):
        self.examples = list(examples)
        self.data = encode(self.examples, vocab)

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, index: Tensor) -> BabiBatch:
        d = self.data
        lengths = d.story_lengths[index]
        M = max(1, int(lengths.max()))
        story = d.story[index, :M]  # (B, M, J)
        J = max(1, int((story != 0).sum(-1).max()))
        question = d.question[index]
        Q = max(1, int((question != 0).sum(-1).max()))
        return BabiBatch(story[:, :, :J], lengths, question[:, :Q], d.answer[index],
                         d.task[index])


def _read_sums(name: str) -> dict[str, str]:
    """``{relative path: sha256}`` from a ``sha256sum``-format file shipped with the package."""
    from importlib.resources import files

    sums = {}
    for line in files(__package__).joinpath(name).read_text(encoding="utf-8").splitlines():
        digest, rel = line.split("  ", 1)
        sums[rel] = digest
    return sums


# sha256 of every task file of v1.2 (the public archive's en/ and en-10k/, but
# en-10k's task 3 train file, which the project's copy lacks), checked after a
# download so a changed archive is caught.  ``sha256sum -c`` reads the file too.
BABI_SHA256 = _read_sums("babi.sha256")


def ensure_babi(data_dir: str | Path, *, url: str = BABI_URL, quiet: bool = False) -> Path:
    """Download and unpack bAbI v1.2 under ``data_dir/babi`` unless it is there.

    The archive's own checksum is not published, so each unpacked task file is
    checked against :data:`BABI_SHA256` instead.  The archive is unpacked into
    a temporary folder beside the destination, and its ``en/`` and ``en-10k/``
    are moved into place only once every checksum matched; on a mismatch (or
    an archive that cannot be read) the temporary folder and the downloaded
    archive are removed, so nothing of it is left to train on, and
    :class:`~memnets.data.paths.DataError` names the file.

    Returns:
        ``data_dir/babi/tasks_1-20_v1-2``.
    """
    import gzip
    import shutil
    import tarfile
    import tempfile
    import zlib

    from memnets.data.download import download, sha256_file
    from memnets.data.paths import DataError

    root = Path(data_dir) / BABI_DIRNAME
    if (root / "en").is_dir():
        return root
    archive = download(url, Path(data_dir) / "babi" / "tasks_1-20_v1-2.tar.gz",
                       sha256=None,  # no published digest: the files are checked below
                       quiet=quiet)
    staging = Path(tempfile.mkdtemp(prefix=".tasks_1-20_v1-2.", suffix=".part",
                                    dir=archive.parent))
    try:
        try:
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers()
                           if m.isfile() and m.name.startswith("tasks_1-20_v1-2/")
                           and m.name.split("/")[1] in SETS and ".." not in m.name]
                tar.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(f"{archive}: expected a gzip-compressed tar archive of bAbI v1.2 "
                            f"from {url}, got one that cannot be unpacked ({e})") from None
        unpacked = staging / "tasks_1-20_v1-2"
        for rel, digest in BABI_SHA256.items():
            path = unpacked / rel
            if path.is_file() and (got := sha256_file(path)) != digest:
                raise DataError(f"checksum mismatch for {rel} of the archive {url}: expected "
                                f"sha256 {digest}, got {got}; nothing was unpacked to {root}")
        root.mkdir(parents=True, exist_ok=True)
        for set_name in sorted(SETS, reverse=True):  # en last: its folder marks a finished unpack
            src, dest = unpacked / set_name, root / set_name
            if not src.is_dir():
                continue
            if not dest.exists():
                src.replace(dest)
                continue
            for f in sorted(p for p in src.rglob("*") if p.is_file()):  # a set already
                target = dest / f.relative_to(src)  # there (en-10k): file by file
                target.parent.mkdir(parents=True, exist_ok=True)
                f.replace(target)
    except BaseException:
        archive.unlink(missing_ok=True)  # unchecked bytes: fetch them again next time
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
