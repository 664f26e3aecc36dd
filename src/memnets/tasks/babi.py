"""The ``babi`` task: question answering on the bAbI tasks with MemN2N or an LSTM.

Recipes: ``babi-task1`` (one task, a quick check), ``babi-1k-joint`` (all 20
tasks of the 1k set, Sukhbaatar et al. 2015's PE LS RN 3-hop joint model),
``babi-10k-joint`` (the 10k set), ``babi-lstm`` (the LSTM baseline).

Metrics: ``error`` (percent of questions answered wrong), ``mean_task_error``
(mean over the tasks of the per-task error, the paper's headline number),
``failed_tasks`` (tasks with error > 5%), ``error_task<N>`` per task, ``loss``.

Linear start (LS) runs inside the task: while the MemN2N is in linear mode the
loss is scaled by ``model.ls_lr_scale`` (0.5: with plain SGD this is the
paper's lr 0.005 instead of 0.01), and after each evaluation of the dev split
the softmaxes are put back as soon as the dev loss has stopped falling.

Explanation: :func:`attention_table` and :func:`attention_heatmap` show, for
one question, each hop's attention over the story's sentences;
``memnets predict RUN_DIR --story FILE --question "Where is Mary?"`` prints the
answer and the table, and ``--png FILE`` writes the heatmap.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.config import DataConfig, ModelConfig
from memnets.data.babi import (
    BABI_DIRNAME,
    MEMORY_SIZE,
    TASK_NAMES,
    BabiExample,
    EncodedSet,
    build_vocab,
    load_babi,
    tokenize,
)
from memnets.data.paths import DataError
from memnets.data.vocab import Vocab
from memnets.models.babi_lstm import BabiLSTM
from memnets.models.memn2n import MemN2N
from memnets.tasks import register_task
from memnets.tasks.base import ShardedBatches, StepOutput, Task, model_device, to_device

FAIL_THRESHOLD = 5.0  # percent: a task with more error than this counts as failed


@dataclass
class BabiDataConfig(DataConfig):
    """The ``data`` section of a bAbI recipe.

    Args:
        set_name: ``en`` (1k questions per task) or ``en-10k``.
        tasks: task numbers to train on together; empty = all 20 (joint).
        memory_size: the most recent sentences kept as memory (50).
        valid_fraction: share of each task's train questions held out (0.1).
        missing: ``error`` for a missing task file, or ``skip`` to leave the
            task out (the project's copy of en-10k lacks task 3's train file).
        split_seed: seed of the train/validation split.
    """

    set_name: Literal["en", "en-10k"] = "en"
    tasks: list[int] = field(default_factory=list)
    memory_size: int = MEMORY_SIZE
    valid_fraction: float = 0.1
    missing: Literal["error", "skip"] = "error"
    split_seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {
        "memory_size": ">= 1", "valid_fraction": "(0, 1)", "split_seed": ">= 0"}

    def validate(self) -> None:
        bad = [t for t in self.tasks if t not in TASK_NAMES]
        if bad:
            raise ValueError(f"tasks: expected task numbers in 1..20, got {bad}")


@dataclass
class BabiModelConfig(ModelConfig):
    """The ``model`` section of a bAbI recipe.

    ``arch: memn2n`` uses ``embed_dim``, ``hops``, ``encoding``, ``temporal``,
    ``tying``, ``random_noise``, ``linear_start``, ``ls_lr_scale``, ``ls_patience`` (dev
    evaluations without a lower dev loss before LS ends; 1 = the paper's rule),
    ``ls_epochs`` (if set, LS ends after this many epochs instead, whatever the
    dev loss does; our reading of the authors' released code, not checked here) and
    ``init_std``; ``pe_width``: ``sentence`` (J in the position encoding is
    each sentence's length, as the paper writes it) or ``max`` (one J for
    every sentence and question, the longest in the data, as the
    authors' released code has it); ``nonlinearity``: ``none`` (the paper's
    linear hops) or ``relu`` (a ReLU on the controller state after every hop, the
    released code's ``add_nonlin``); ``hop_map``: with adjacent tying, also a
    linear map H between hops (the released code's ``add_proj``; layer-wise tying
    always has one); ``batch_loss: sum`` (the paper's: gradients summed over the
    batch, which is what its lr 0.01 and clipping at norm 40 are sized for)
    or ``mean``; ``arch: lstm`` uses ``embed_dim``, ``cell``, ``hidden_size``,
    ``dropout`` and ``cell_options``.
    """

    arch: Literal["memn2n", "lstm"] = "memn2n"
    embed_dim: int = 20
    hops: int = 3
    encoding: Literal["bow", "pe", "pe_centered"] = "pe"
    temporal: bool = True
    tying: Literal["adjacent", "layerwise"] = "adjacent"
    random_noise: float = 0.1
    linear_start: bool = True
    ls_lr_scale: float = 0.5
    ls_patience: int = 1
    ls_epochs: int | None = None
    init_std: float = 0.1
    empty_memories: bool = False
    pe_width: Literal["sentence", "max"] = "sentence"
    nonlinearity: Literal["none", "relu"] = "none"
    hop_map: bool = False
    batch_loss: Literal["sum", "mean"] = "sum"

    RANGES: ClassVar[dict[str, str]] = {
        "embed_dim": ">= 1", "hops": ">= 1", "random_noise": "[0, 1)", "ls_lr_scale": "> 0",
        "ls_patience": ">= 1", "ls_epochs": ">= 1", "init_std": "> 0"}


@register_task("babi")
class BabiTask(Task):
    """bAbI question answering (see the module docstring)."""

    DataConfig = BabiDataConfig
    ModelConfig = BabiModelConfig
    main_metric = "mean_task_error"
    higher_is_better = False
    size_unit = "ex"
    predict_input = "a question about the --story, in quotes"
    one_input_options = ("png",)

    def __init__(self, data: BabiDataConfig, data_dir: Path | None = None) -> None:
        super().__init__(data, data_dir)
        self.vocab: Vocab | None = None
        self.tasks: list[int] = []
        self.missing: list[int] = []
        self.max_words: int | None = None
        self._splits = None
        self._encoded: dict[str, EncodedSet] = {}
        self._ls_best = math.inf
        self._ls_wait = 0
        self._ls_evals = 0
        self._model_config: BabiModelConfig | None = None

    # ------------------------------------------------------------------ data

    def babi_root(self) -> Path:
        if self.data_dir is None:
            raise DataError("the babi task needs a data root (data.dir, $MEMNETS_DATA, ...)")
        root = self.data_dir / BABI_DIRNAME
        if not (root / self.config.set_name).is_dir():
            from memnets.data.babi import ensure_babi

            ensure_babi(self.data_dir)
        return root

    def _load(self):
        if self._splits is None:
            c = self.config
            try:
                self._splits = load_babi(
                    self.babi_root(), c.tasks or None, c.set_name,
                    valid_fraction=c.valid_fraction, memory_size=c.memory_size,
                    missing=c.missing, seed=c.split_seed)
            except FileNotFoundError as e:
                raise DataError(str(e)) from None
            if self._splits.missing:
                names = ", ".join(str(t) for t in self._splits.missing)
                print(f"babi: {c.set_name} lacks task(s) {names}; training on the "
                      f"{len(self._splits.tasks)} tasks present")
        return self._splits

    def setup(self) -> None:
        splits = self._load()
        self.vocab = build_vocab(splits.train)
        self.tasks, self.missing = list(splits.tasks), list(splits.missing)
        every = [*splits.train, *splits.valid, *splits.test]  # a width, no labels
        self.max_words = max(max((len(s) for ex in every for s in ex.story), default=1),
                             max((len(ex.question) for ex in every), default=1))

    def state_dict(self) -> dict:
        return {"vocab": self.vocab.to_dict(), "tasks": self.tasks, "missing": self.missing,
                "max_words": self.max_words}

    def load_state_dict(self, state: dict) -> None:
        self.vocab = Vocab.from_dict(state["vocab"])
        self.tasks, self.missing = list(state["tasks"]), list(state.get("missing", []))
        self.max_words = int(state.get("max_words", 0)) or None

    def examples(self, split: str) -> list[BabiExample]:
        s = self._load()
        return {"train": s.train, "dev": s.valid, "test": s.test}[split]

    def encoded(self, split: str) -> EncodedSet:
        if split not in self._encoded:
            self._encoded[split] = EncodedSet(self.examples(split), self.vocab)
        return self._encoded[split]

    def dataset(self, split: str):
        return self.examples(split)

    def batches(self, split, *, batch_size, epoch=0, seed=0, shuffle=False, rank=0,
                world_size=1, start=0, num_workers=0):
        enc = self.encoded(split)
        sampler = ShardedBatches(len(enc), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                 rank=rank, world_size=world_size, start=start)
        for idx in sampler:
            yield enc.batch(torch.tensor(idx, dtype=torch.long))

    # ------------------------------------------------------------------ model

    def build_model(self, config: BabiModelConfig) -> nn.Module:
        self._model_config = config
        V = len(self.vocab)
        if config.arch == "lstm":
            return BabiLSTM(V, config.embed_dim, config.hidden_size, cell=config.cell,
                            dropout=config.dropout, cell_options=config.cell_options,
                            block=config.block, block_options=config.block_options)
        model = MemN2N(V, config.embed_dim, config.hops, memory_size=self.config.memory_size,
                       encoding=config.encoding, temporal=config.temporal, tying=config.tying,
                       random_noise=config.random_noise, init_std=config.init_std,
                       empty_memories=config.empty_memories,
                       pe_width=self._pe_width(config),
                       nonlinearity=None if config.nonlinearity == "none" else config.nonlinearity,
                       hop_map=config.hop_map)
        model.linear = config.linear_start
        model.ls_lr_scale = config.ls_lr_scale
        self._ls_best, self._ls_wait, self._ls_evals = math.inf, 0, 0
        return model

    @classmethod
    def model_cell(cls, config: BabiModelConfig) -> str | None:
        """``model.cell`` for ``arch: lstm``; MemN2N has no recurrent cell."""
        return config.cell if config.arch == "lstm" else None

    def _pe_width(self, config: BabiModelConfig) -> int | None:
        if config.pe_width == "sentence" or config.encoding == "bow":
            return None
        if not self.max_words:
            raise ValueError("pe_width: max needs the training data's longest sentence, "
                             "which this run directory does not record")
        return self.max_words

    def step(self, model: nn.Module, batch, state=None) -> StepOutput:
        batch = to_device(batch, model_device(model))
        logits = model(batch.story, batch.story_lengths, batch.question)  # (B, V)
        losses = F.cross_entropy(logits, batch.answer, reduction="none")  # (B,)
        sum_loss = self._model_config is None or self._model_config.batch_loss == "sum"
        loss = losses.sum() if sum_loss else losses.mean()
        if model.training and getattr(model, "linear", False):
            loss = loss * getattr(model, "ls_lr_scale", 1.0)  # SGD: lr x scale during LS
        correct = (logits.argmax(-1) == batch.answer)
        stats: dict = {"loss": losses.sum().detach(), "count": len(losses),
                       "correct": correct.sum()}
        for t in batch.task.unique().tolist():
            sel = batch.task == t
            stats[f"count_t{t}"] = sel.sum()
            stats[f"correct_t{t}"] = (correct & sel).sum()
        return StepOutput(loss=loss, stats=stats, size=len(losses))

    def metrics(self, stats: dict[str, float]) -> dict[str, float]:
        n = max(stats.get("count", 0.0), 1.0)
        out = {"loss": stats["loss"] / n, "error": 100.0 * (1 - stats["correct"] / n)}
        errors = {}
        for key in stats:
            if key.startswith("count_t"):
                t = int(key[len("count_t"):])
                errors[t] = 100.0 * (1 - stats[f"correct_t{t}"] / max(stats[key], 1.0))
        for t in sorted(errors):
            out[f"error_task{t}"] = errors[t]
        out["mean_task_error"] = sum(errors.values()) / max(len(errors), 1)
        out["failed_tasks"] = float(sum(e > FAIL_THRESHOLD for e in errors.values()))
        return out

    def baselines(self) -> dict[str, float]:
        """Error of always answering the most frequent training answer."""
        from collections import Counter

        train = self.examples("train")
        top, _ = Counter(ex.answer_label for ex in train).most_common(1)[0]
        dev = self.examples("dev")
        return {"majority_error": 100.0 * sum(ex.answer_label != top for ex in dev)
                / max(len(dev), 1)}

    def observe_dev(self, model, metrics: dict[str, float]) -> bool:
        """During training, linear start follows the dev loss (never in ``evaluate``)."""
        return bool(getattr(model, "linear", False)
                    and self.update_linear_start(model, metrics["loss"]))

    def train_state(self, model: nn.Module) -> dict:
        """Linear start's counters (its on/off flag is a buffer of the model)."""
        best = self._ls_best if math.isfinite(self._ls_best) else None
        return {"ls_best": best, "ls_wait": self._ls_wait, "ls_evals": self._ls_evals}

    def load_train_state(self, model: nn.Module, state: dict) -> None:
        best = state.get("ls_best")
        self._ls_best = math.inf if best is None else float(best)
        self._ls_wait = int(state.get("ls_wait", 0))
        self._ls_evals = int(state.get("ls_evals", 0))

    def update_linear_start(self, model: MemN2N, dev_loss: float) -> bool:
        """End linear start once the dev loss stops falling (or after ``ls_epochs``
        dev evaluations, one per epoch); True when it just ended."""
        cfg = self._model_config
        self._ls_evals += 1
        if cfg is not None and cfg.ls_epochs is not None:
            if self._ls_evals < cfg.ls_epochs:
                return False
            model.linear = False
            print(f"babi: linear start ends after {self._ls_evals} epochs, softmaxes restored")
            return True
        if dev_loss < self._ls_best:
            self._ls_best, self._ls_wait = dev_loss, 0
            return False
        self._ls_wait += 1
        patience = cfg.ls_patience if cfg is not None else 1
        if self._ls_wait < patience:
            return False
        model.linear = False
        print(f"babi: dev loss stopped falling ({dev_loss:.4f} >= {self._ls_best:.4f}); "
              "linear start ends, softmaxes restored")
        return True

    # ------------------------------------------------------------------ use

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = (
            "Answer questions about a story you wrote and show which sentence each hop "
            "reads: memnets predict RUN_DIR --story FILE \"Where is Mary?\" (each INPUT, "
            "--file line or standard input line with '-' is one question about the story). "
            "Words the model never saw in training are left out (they would only add an "
            "untrained vector) and listed in the output.")
        parser.add_argument("--story",
                            help="a text file of sentences ended by '.', one or more per line "
                                 "(bAbI's leading numbers and question lines are allowed and "
                                 "ignored)")
        parser.add_argument("--question", help='a question, e.g. "Where is Mary?" (the same '
                                               'as giving it as an INPUT)')
        parser.add_argument("--test-task", type=int, metavar="T",
                            help="instead of --story and questions: a question of bAbI task "
                                 "T's test split (supporting facts starred; needs the data)")
        parser.add_argument("--index", type=int, default=0,
                            help="with --test-task: which of its test questions (default 0)")
        parser.add_argument("--png", help="also write the attention heatmap to this PNG file "
                                          "(one question)")

    def predict_results(self, model: nn.Module, args: list[str]):
        """As :meth:`Task.predict_results`, and ``--test-task T``: one test question."""
        ns = self.predict_parser().parse_args(args)
        if ns.test_task is None:
            return super().predict_results(model, args)
        if ns.story or ns.question or ns.inputs or ns.file:
            raise ValueError("expected either --test-task or --story with questions")
        model.eval()
        with torch.no_grad():
            result = self._explain_test_question(model, ns.test_task, ns.index, ns.png)
        return [result], ns

    def predict_inputs(self, ns) -> list[tuple[str, str]]:
        if not ns.story:
            raise ValueError("expected --story FILE and a question (or --test-task T)")
        asked = [("--question", ns.question)] if ns.question else []
        return asked + super().predict_inputs(ns)

    def parse_input(self, line: str, ns) -> str:
        if not any(t in self.vocab for t in tokenize(line)):
            raise ValueError(f"no word of the question {line!r} is known to the model")
        return line

    def predict_batch(self, model: nn.Module, examples: list[str], ns) -> list[dict]:
        path = Path(ns.story)
        if not path.is_file():
            raise DataError(f"story file not found: {path}")
        sentences = read_story_file(path)
        results = []
        for question in examples:
            answer, prob, story, attention, unknown = answer_question(
                model, self.vocab, sentences, question, memory_size=self.config.memory_size)
            r: dict = {"answer": answer, "probability": prob, "unknown": sorted(unknown),
                       "story": [" ".join(s) for s in story],
                       "attention": None if attention is None else attention.tolist()}
            if ns.png and attention is not None:
                r["heatmap"] = str(attention_heatmap(story, attention, ns.png,
                                                     title=f"{question}  ->  {answer}"))
            results.append(r)
        return results

    def _explain_test_question(self, model: nn.Module, t: int, index: int,
                               png: str | None) -> dict:
        """A test question of task ``t`` with each hop's attention (supporting facts starred)."""
        from memnets.data.babi import encode

        if t not in TASK_NAMES:
            raise ValueError(f"--test-task: expected a task number in 1..20, got {t}")
        questions = [e for e in self.examples("test") if e.task == t]
        if not questions:
            raise ValueError(f"--test-task: this run's test split has no question of task {t} "
                             f"(it trained on tasks {self.tasks})")
        if not 0 <= index < len(questions):
            raise ValueError(f"--index: expected 0..{len(questions) - 1} for task {t}, "
                             f"got {index}")
        ex = questions[index]
        batch = to_device(encode([ex], self.vocab), model_device(model))
        out = model(batch.story, batch.story_lengths, batch.question,
                    return_attention=isinstance(model, MemN2N))
        logits, attention = out if isinstance(out, tuple) else (out, None)
        answer = self.vocab.itos[int(logits[0].argmax())]
        question = " ".join(ex.question) + "?"
        r: dict = {"input": f"task {t} ({Path(ex.source).name}), test question {index}",
                   "question": question, "answer": answer, "true_answer": ex.answer_label,
                   "story": [" ".join(s) for s in ex.story], "supporting": list(ex.supporting),
                   "attention": None if attention is None else attention[0].cpu().tolist()}
        if png and attention is not None:
            r["heatmap"] = str(attention_heatmap(
                list(ex.story), attention[0].cpu(), png, supporting=ex.supporting,
                title=f"task {t}: {question} -> {answer} (true: {ex.answer_label})"))
        return r

    def format_prediction(self, result: dict, ns) -> str:
        """The answer (and the true one for a test question), then each hop's attention
        over the story's sentences."""
        if "true_answer" in result:
            lines = [f"{result['input']}: predicted {result['answer']!r}, "
                     f"true {result['true_answer']!r}"]
            question, supporting = result["question"], tuple(result["supporting"])
        else:
            lines = ["unknown words left out: " + ", ".join(result["unknown"])
                     ] if result["unknown"] else []
            lines.append(f"answer: {result['answer']}  (p = {result['probability']:.3f})")
            question, supporting = result["input"], ()
        if result["attention"] is None:
            if "true_answer" in result or ns.png:
                lines.append("(no attention to draw: this model is not a memory network)")
            return "\n".join(lines)
        lines.append(attention_table(result["story"], torch.tensor(result["attention"]),
                                     question=question, supporting=supporting))
        if "heatmap" in result:
            lines.append(f"heatmap written to {result['heatmap']}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- explanation


def read_story_file(path: str | Path) -> list[str]:
    """Sentences of a user's story file: one per line, or several on a line, each
    ended by ``.`` or ``!``; an optional leading ``ID``, bAbI question lines
    (with a TAB) and blank lines skipped.

    Raises :class:`~memnets.data.paths.DataError` naming the file (and the line
    of a byte that is not UTF-8) when it is missing or not text.
    """
    from memnets.data.text import read_lines

    out = []
    for line in read_lines(path, "a story file"):
        line = line.strip()
        if not line or "\t" in line:
            continue
        head, _, rest = line.partition(" ")
        line = rest if head.isdigit() and rest else line
        out += [s.strip() for s in re.findall(r"[^.!]+[.!]?", line) if s.strip(" .!")]
    return out


@torch.no_grad()
def answer_question(model: nn.Module, vocab: Vocab, sentences: list[str], question: str, *,
                    memory_size: int = MEMORY_SIZE):
    """Answer one question about ``sentences``.

    Unknown words are dropped (and returned), so they change nothing.

    Returns:
        ``(answer, probability, story tokens kept, attention (K, M) or None, unknown words)``.
    """
    unknown: set[str] = set()

    def ids(tokens):
        kept = [t for t in tokens if t in vocab]
        unknown.update(t for t in tokens if t not in vocab)
        return [vocab[t] for t in kept]

    story_tokens = [tokenize(s) for s in sentences][-memory_size:]
    story_ids = [ids(s) for s in story_tokens]
    q_ids = ids(tokenize(question))
    if not q_ids:
        raise ValueError(f"no word of the question {question!r} is known to the model")
    M, J = max(1, len(story_ids)), max([1] + [len(s) for s in story_ids])
    story = torch.zeros(1, M, J, dtype=torch.long)
    for i, s in enumerate(story_ids):
        story[0, i, : len(s)] = torch.tensor(s, dtype=torch.long)
    q = torch.tensor([q_ids])
    lengths = torch.tensor([len(story_ids)])
    device = model_device(model)
    model.eval()
    if isinstance(model, MemN2N):
        logits, att = model(story.to(device), lengths.to(device), q.to(device),
                            return_attention=True)
        attention = att[0].cpu()  # (K, M): the story's sentences, then any empty memories
    else:
        logits, attention = model(story.to(device), lengths.to(device), q.to(device)), None
    probs = logits[0].softmax(-1)
    probs[vocab.pad_id] = 0
    best = int(probs.argmax())
    return vocab.itos[best], float(probs[best]), story_tokens, attention, unknown


def attention_table(story: list, attention: Tensor, *, question: str = "",
                    supporting: tuple[int, ...] = ()) -> str:
    """A text table: one row per sentence, one column per hop's weight.

    ``attention`` is ``(K, M)``; columns past the story (the model's empty
    memories) are summed into one last row.  Each hop's largest weight is
    marked ``<``; supporting facts (if given) are starred.
    """
    K = attention.shape[0]
    sents = [" ".join(s) if not isinstance(s, str) else s for s in story]
    if attention.shape[1] > len(sents):
        attention = torch.cat([attention[:, : len(sents)],
                               attention[:, len(sents):].sum(1, keepdim=True)], 1)
        sents = sents + ["(empty memories)"]
    width = max([len(s) for s in sents] + [8])
    head = f"{'':2}{'sentence':<{width}}" + "".join(f"  hop {k + 1:<2}" for k in range(K))
    lines = ([f"question: {question}"] if question else []) + [head, "-" * len(head)]
    top = attention.argmax(-1).tolist() if attention.numel() else []
    for i, s in enumerate(sents):
        mark = "* " if i in supporting else "  "
        cells = "".join(
            f"  {float(attention[k, i]):.2f}{'<' if top[k] == i else ' '} " for k in range(K))
        lines.append(f"{mark}{s:<{width}}{cells}")
    return "\n".join(lines)


def attention_heatmap(story: list, attention: Tensor, path: str | Path, *, title: str = "",
                      supporting: tuple[int, ...] = ()) -> Path:
    """Write a heatmap PNG: sentences down, hops across, colour = attention weight."""
    from memnets.figures import weight_heatmap  # matplotlib only when asked

    sents = [" ".join(s) if not isinstance(s, str) else s for s in story]
    if attention.shape[1] > len(sents):  # the model's empty memories, summed
        attention = torch.cat([attention[:, : len(sents)],
                               attention[:, len(sents):].sum(1, keepdim=True)], 1)
        sents = sents + ["(empty memories)"]
    sents = [("* " if i in supporting else "") + s for i, s in enumerate(sents)]
    K, M = attention.shape
    size = (3 + 0.9 * K + 0.09 * max(len(s) for s in sents), 1.2 + 0.32 * M)
    return weight_heatmap(attention.T, path, columns=[f"hop {k + 1}" for k in range(K)],
                          rows=sents, title=title, size=size)
