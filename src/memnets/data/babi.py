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

from memnets.data.vocab import PAD, UNK, Vocab

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


class BabiFormatError(ValueError):
    """A line of a bAbI file is not in the documented format."""


def parse_lines(lines: Iterable[str], *, task: int = 0, name: str = "<lines>",
                memory_size: int = MEMORY_SIZE) -> list[BabiExample]:
    """Parse bAbI lines into examples; ``name`` is used in error messages.

    Raises:
        BabiFormatError: naming ``name`` and the 1-based line number, for a line
            that has no leading ID, an ID that does not follow the previous one,
            a question without answer, or supporting IDs that are not earlier
            statements of the same story.
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
            raise BabiFormatError(f"{where}: expected 'ID text' with a numeric ID, got {line!r}")
        line_id, body = int(m.group(1)), m.group(2)
        if line_id == 1:
            statements, id_to_index = [], {}
        elif line_id != last_id + 1:
            raise BabiFormatError(
                f"{where}: expected line ID 1 or {last_id + 1}, got {line_id}")
        last_id = line_id
        if "\t" not in body:
            statements.append(tuple(tokenize(body)))
            id_to_index[line_id] = len(statements) - 1
            continue
        fields = body.split("\t")
        if len(fields) != 3 or not fields[1].strip():
            raise BabiFormatError(
                f"{where}: expected 'ID question<TAB>answer<TAB>supporting IDs', got {line!r}")
        question, answer, support = fields
        try:
            support_ids = [int(s) for s in support.split()]
        except ValueError:
            raise BabiFormatError(
                f"{where}: expected supporting fact IDs as integers, got {support!r}") from None
        bad = [s for s in support_ids if s not in id_to_index]
        if bad:
            raise BabiFormatError(
                f"{where}: supporting fact IDs {bad} are not earlier statements of this story")
        first = max(0, len(statements) - memory_size)
        supporting = tuple(id_to_index[s] - first for s in support_ids if id_to_index[s] >= first)
        examples.append(BabiExample(
            task=task,
            story=tuple(statements[first:]),
            question=tuple(tokenize(question)),
            answer=tuple(a.strip().lower() for a in answer.split(",")),
            supporting=supporting,
            source=where,
        ))
    return examples


def task_file(root: str | Path, task: int, split: str, set_name: str = "en") -> Path:
    """The path of one task's file: ``root/<set_name>/qa<task>_<name>_<split>.txt``.

    Raises:
        FileNotFoundError: naming the path; the 10k set's task 3 train file is a
            known gap in the project's copy and gets its own explanation.
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
        raise FileNotFoundError(f"bAbI task {task} {split} file not found: {path}{hint}")
    return path


def read_task(root: str | Path, task: int, split: str, set_name: str = "en",
              *, memory_size: int = MEMORY_SIZE) -> list[BabiExample]:
    """All examples of one task's train or test file."""
    path = task_file(root, task, split, set_name)
    with open(path, encoding="utf-8") as f:
        return parse_lines(f, task=task, name=str(path), memory_size=memory_size)


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
        raise FileNotFoundError(f"none of the bAbI tasks {tasks} were found under {root}")
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


# sha256 of every task file of v1.2 (the public archive's en/ and en-10k/),
# checked after a download so a changed archive is caught.
BABI_SHA256 = {
    "en-10k/qa10_indefinite-knowledge_test.txt":
        "fde8f20ed0b3ba979058ed391a566af34653f23baab5b2793ee37f87ef4e88b7",
    "en-10k/qa10_indefinite-knowledge_train.txt":
        "c5c0788b0446095c07a0442784cad2b59c1d58e875ebe8ad852f5e3f628613f4",
    "en-10k/qa11_basic-coreference_test.txt":
        "46f3290d0158ce1285a40cd2d793f5a65f86ae5000226e165cbc85a3dfeb2f6f",
    "en-10k/qa11_basic-coreference_train.txt":
        "edfcd97fecd4a5045af25e1790cf1408856ae362c39521b1b69cd32b88ec0ced",
    "en-10k/qa12_conjunction_test.txt":
        "6437718f8f9801ce345869e910b896836cdc6fd2d01dc7b4d2df49730703b4b1",
    "en-10k/qa12_conjunction_train.txt":
        "39d58df3564916c66cebc98befb65d605c032181e51208730fd8837a77bc166a",
    "en-10k/qa13_compound-coreference_test.txt":
        "76a25b684f23c9cc473d8cd1465506168b9a1ec8891cfc59d0bbd87e6a064990",
    "en-10k/qa13_compound-coreference_train.txt":
        "c530fdf122d26617a8a03ba5cdbacee87c22624ba7f50d1f07f9658c900e22d8",
    "en-10k/qa14_time-reasoning_test.txt":
        "e3f0b19858ffbec3ed1e49076cc4d1295a89ce146c50318b862f13f202b3caf2",
    "en-10k/qa14_time-reasoning_train.txt":
        "c322e0814eef71f088af1aa1334e7ae4b1ee6ca18f2ee94c05e2189226964ed6",
    "en-10k/qa15_basic-deduction_test.txt":
        "32b77e117fe9acf5f94906684e3b5206de0108e646c76e1da3e022896ec7ee94",
    "en-10k/qa15_basic-deduction_train.txt":
        "0a86673f7fafa484f8ee394048f03de19405bdc40b58f21086969efad2862010",
    "en-10k/qa16_basic-induction_test.txt":
        "4a11e55366f2a5a859b5a81f683ee23801bdbe71ef984e51adb976bd053e8dcf",
    "en-10k/qa16_basic-induction_train.txt":
        "27fef347ce0b25dd148efea2b15f154926e0e9069d4ea6ab9cfca3add492ab35",
    "en-10k/qa17_positional-reasoning_test.txt":
        "9e1e0250ed4ec1831757fab26c04138f81ea557ebf6976a220db879cbed04bac",
    "en-10k/qa17_positional-reasoning_train.txt":
        "8a383651e009db50d6c9effed5778b8646c28c55fadb1592b5f4d8d3a187bbce",
    "en-10k/qa18_size-reasoning_test.txt":
        "d34f70eb7228a276fcb3a7854174fe562c5634f4fb454a39fc3d1ad9934be3ef",
    "en-10k/qa18_size-reasoning_train.txt":
        "9e7c15107067d2070170ef12579a8bfe34dfc35a7ac9ebd13f2001dc1a7488f9",
    "en-10k/qa19_path-finding_test.txt":
        "023e391f0d7f79c9e6ae1c46c093e2d0dbd50ab8fbd8965e037a75e3614c20e5",
    "en-10k/qa19_path-finding_train.txt":
        "6cfdc6f448e3cf0e3d8a390fa3add461935b033f89ede32aeef30812401ec91e",
    "en-10k/qa1_single-supporting-fact_test.txt":
        "55acf66cef2f6d798e2aa1d056e1ec8f24e910ea9215b639450574321132959b",
    "en-10k/qa1_single-supporting-fact_train.txt":
        "749ea9f7c99070feb2d88c975a254417a0dcc8274add4435ae5ae24c7afc7e9d",
    "en-10k/qa20_agents-motivations_test.txt":
        "bd3bde3788ac14ba0ae095078f7b820fbd2bfa6a34dba9d1d46a34afde9c2729",
    "en-10k/qa20_agents-motivations_train.txt":
        "36f20f3baf6bad2297d5b9fd877e633550c36106fe78bc10ddfb7b1eede62573",
    "en-10k/qa2_two-supporting-facts_test.txt":
        "eff93fb9cd81ba02eb765772cf7cc269769ed44ec71cbbbc19cfb16ee5eba0f6",
    "en-10k/qa2_two-supporting-facts_train.txt":
        "d4074c0c5d54f70ce2f538056ce2b6ef6a313da336da4245f1a24f1298e37ef3",
    "en-10k/qa3_three-supporting-facts_test.txt":
        "17795c977100baf8188f386522ae301b62d6c1a13efc01b3aea781e588b4d57f",
    "en-10k/qa4_two-arg-relations_test.txt":
        "07f0ca18ddeea9eed4ba6d59e162adcb0ce44815721114b3540d92825509331e",
    "en-10k/qa4_two-arg-relations_train.txt":
        "5d11b821d35234988ab907866aa7ce718e6b6d751acf63bdef52262afb59f12c",
    "en-10k/qa5_three-arg-relations_test.txt":
        "ec825c1c8a76e63a31f0d7a7763cd63740e98332fa9bdf246a19068949bd5f97",
    "en-10k/qa5_three-arg-relations_train.txt":
        "2506910935b701bac64fc8b1d7ff12bd8d0f47ceefca183454282bec784c12a5",
    "en-10k/qa6_yes-no-questions_test.txt":
        "b108b16f1eccbd1c24df6dca2649079a7b2f10af7fd12d4c45a3393802de59e3",
    "en-10k/qa6_yes-no-questions_train.txt":
        "602f379184bf3cb59660d0f7769d9c94ccdc1fc4d82dfe90bd460d985b1ff0c5",
    "en-10k/qa7_counting_test.txt":
        "a74d1f2b91329b2bae814d41cdac2fbdfdf0328562b7d8afa9a0fa576d461e27",
    "en-10k/qa7_counting_train.txt":
        "4a2508733bef9b38cfce4b3108a91b83cdee378de4a7370e4d32fea2dacd3b7d",
    "en-10k/qa8_lists-sets_test.txt":
        "362a653c821a580fa315a85243b4f03bfa06fa7e0269b6f8e596f8fe6911646a",
    "en-10k/qa8_lists-sets_train.txt":
        "9518da2d3aa5d98bec33335e0d5ba3a22c2bd1929ee679085d37eb50a7652e4a",
    "en-10k/qa9_simple-negation_test.txt":
        "63590aff3f89993db409f0e9a9eb39c2a5b9d5efff99b255d800a891b0044d9f",
    "en-10k/qa9_simple-negation_train.txt":
        "5f8949f6ef7d64516fc4dd5732b12b5932d057b1a614e8ac94e795fb020d4ff0",
    "en/qa10_indefinite-knowledge_test.txt":
        "fde8f20ed0b3ba979058ed391a566af34653f23baab5b2793ee37f87ef4e88b7",
    "en/qa10_indefinite-knowledge_train.txt":
        "0b7691689447bab05476c5b48c44999b41e747c3978df69c18fdd87b60d6e8b3",
    "en/qa11_basic-coreference_test.txt":
        "46f3290d0158ce1285a40cd2d793f5a65f86ae5000226e165cbc85a3dfeb2f6f",
    "en/qa11_basic-coreference_train.txt":
        "9468de9a1f256f43dfda693a5d07182d21149a82b65f7c2451c64e9cff5eb138",
    "en/qa12_conjunction_test.txt":
        "6437718f8f9801ce345869e910b896836cdc6fd2d01dc7b4d2df49730703b4b1",
    "en/qa12_conjunction_train.txt":
        "45c2764bb2d3c8f699d35e9d9aa7958fcd96379c6e907116cdf74526c108bb25",
    "en/qa13_compound-coreference_test.txt":
        "76a25b684f23c9cc473d8cd1465506168b9a1ec8891cfc59d0bbd87e6a064990",
    "en/qa13_compound-coreference_train.txt":
        "533a391edbda743e4c99504de88b40cdded5b1d5ef454d1390f0863f748a4cc9",
    "en/qa14_time-reasoning_test.txt":
        "e3f0b19858ffbec3ed1e49076cc4d1295a89ce146c50318b862f13f202b3caf2",
    "en/qa14_time-reasoning_train.txt":
        "b7561cbc624205c9c2fdbb8c843cfa8ad90edd65e78bb223fc6dea8113662df8",
    "en/qa15_basic-deduction_test.txt":
        "32b77e117fe9acf5f94906684e3b5206de0108e646c76e1da3e022896ec7ee94",
    "en/qa15_basic-deduction_train.txt":
        "e856ebfdcce4dd7d617c1d10f985e96a0850c0ca18e9a19a017cb710d135ed3d",
    "en/qa16_basic-induction_test.txt":
        "4a11e55366f2a5a859b5a81f683ee23801bdbe71ef984e51adb976bd053e8dcf",
    "en/qa16_basic-induction_train.txt":
        "20121005137e3d4b061a086eb177a456303d5742b764eb8da2d0e480b6af4d28",
    "en/qa17_positional-reasoning_test.txt":
        "9e1e0250ed4ec1831757fab26c04138f81ea557ebf6976a220db879cbed04bac",
    "en/qa17_positional-reasoning_train.txt":
        "20083bf56ff74f0e7cf5e3e2f8c3905cdb8ef09293c3e8cf7a96ed8b45ae2277",
    "en/qa18_size-reasoning_test.txt":
        "d34f70eb7228a276fcb3a7854174fe562c5634f4fb454a39fc3d1ad9934be3ef",
    "en/qa18_size-reasoning_train.txt":
        "18b7dcf52c9a0e87e4e7dd3d65b7e5a630de039645f52a1294197af7481d739d",
    "en/qa19_path-finding_test.txt":
        "023e391f0d7f79c9e6ae1c46c093e2d0dbd50ab8fbd8965e037a75e3614c20e5",
    "en/qa19_path-finding_train.txt":
        "dcb788352a56effb7bea1449128f31cc9c342c8c327b6df2caeee0e379e6ad3a",
    "en/qa1_single-supporting-fact_test.txt":
        "55acf66cef2f6d798e2aa1d056e1ec8f24e910ea9215b639450574321132959b",
    "en/qa1_single-supporting-fact_train.txt":
        "c64ba9b1a49bbb111ffc4cd2ae4f129d25c012399dd7ade9679eea464b9afb05",
    "en/qa20_agents-motivations_test.txt":
        "bd3bde3788ac14ba0ae095078f7b820fbd2bfa6a34dba9d1d46a34afde9c2729",
    "en/qa20_agents-motivations_train.txt":
        "29580ad55fb7b4b29ba014696056cc68f8f347dac3be88470fd692ad60150398",
    "en/qa2_two-supporting-facts_test.txt":
        "eff93fb9cd81ba02eb765772cf7cc269769ed44ec71cbbbc19cfb16ee5eba0f6",
    "en/qa2_two-supporting-facts_train.txt":
        "a4978af5bc0dc30191810e7c9949aaa6eae939ed0f6beb9fcb5f4330c2a27860",
    "en/qa3_three-supporting-facts_test.txt":
        "17795c977100baf8188f386522ae301b62d6c1a13efc01b3aea781e588b4d57f",
    "en/qa3_three-supporting-facts_train.txt":
        "a6e78019f36a02a7ed71fe6aaded0b563ff09c8deec392931801fcd9c6af4d60",
    "en/qa4_two-arg-relations_test.txt":
        "07f0ca18ddeea9eed4ba6d59e162adcb0ce44815721114b3540d92825509331e",
    "en/qa4_two-arg-relations_train.txt":
        "c9370502d85fa382f32d1fea2111e817f81ae9e3e79eb2924a1a5392a90417fa",
    "en/qa5_three-arg-relations_test.txt":
        "ec825c1c8a76e63a31f0d7a7763cd63740e98332fa9bdf246a19068949bd5f97",
    "en/qa5_three-arg-relations_train.txt":
        "086cd59c3ca9677bfac3d6a22ca5853c76a5c1fbae3159c7c4a6aef759a74ec0",
    "en/qa6_yes-no-questions_test.txt":
        "b108b16f1eccbd1c24df6dca2649079a7b2f10af7fd12d4c45a3393802de59e3",
    "en/qa6_yes-no-questions_train.txt":
        "5a133115ee35d475776df703ff605d145b11effbcdbf7e74861f9d5639246a5a",
    "en/qa7_counting_test.txt":
        "a74d1f2b91329b2bae814d41cdac2fbdfdf0328562b7d8afa9a0fa576d461e27",
    "en/qa7_counting_train.txt":
        "dca03bd91876951c49f1c971c83c9dd55404de60201b7b6435451cf7ddb4751c",
    "en/qa8_lists-sets_test.txt":
        "362a653c821a580fa315a85243b4f03bfa06fa7e0269b6f8e596f8fe6911646a",
    "en/qa8_lists-sets_train.txt":
        "058604df6f9440458317e8ae685d2b7b84261e1a80b4d6410a9140d16f81bf06",
    "en/qa9_simple-negation_test.txt":
        "63590aff3f89993db409f0e9a9eb39c2a5b9d5efff99b255d800a891b0044d9f",
    "en/qa9_simple-negation_train.txt":
        "0c3b89921af0caea1c4059ee3f7b7f2a88869f924195a428da37820446b8c49f",
}


def ensure_babi(data_dir: str | Path, *, url: str = BABI_URL, quiet: bool = False) -> Path:
    """Download and unpack bAbI v1.2 under ``data_dir/babi`` unless it is there.

    The archive's own checksum is not published, so each unpacked task file is
    checked against :data:`BABI_SHA256` instead; a mismatch removes nothing
    else and raises :class:`~memnets.data.paths.DataError` naming the file.

    Returns:
        ``data_dir/babi/tasks_1-20_v1-2``.
    """
    import tarfile

    from memnets.data.download import download, sha256_file
    from memnets.data.paths import DataError

    root = Path(data_dir) / BABI_DIRNAME
    if (root / "en").is_dir():
        return root
    archive = download(url, Path(data_dir) / "babi" / "tasks_1-20_v1-2.tar.gz",
                       sha256=None,  # no published digest: the files are checked below
                       quiet=quiet)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if m.isfile() and m.name.startswith("tasks_1-20_v1-2/")
                   and m.name.split("/")[1] in SETS and ".." not in m.name]
        tar.extractall(Path(data_dir) / "babi", members=members, filter="data")
    for rel, digest in BABI_SHA256.items():
        path = root / rel
        if path.is_file() and sha256_file(path) != digest:
            raise DataError(f"checksum mismatch for {path}: expected sha256 {digest}, "
                            f"got {sha256_file(path)}")
    return root
