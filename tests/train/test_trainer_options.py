"""The trainer's options: gradient accumulation (``trainer.accumulate``), float16 with
a gradient scaler (``trainer.precision: fp16``) and ``torch.compile``
(``trainer.compile``): their configuration errors, accumulation against one large
batch and against a hand-written truncated-BPTT loop, exact resume, the scaler's
skipped steps and checkpointed state, and the compiled module's checkpoints.

torch.compile with its default backend (inductor) takes over a minute for the first
step of even a 4-step adding model on the 2-core test machine, so these tests run
torch.compile with its ``eager`` backend (dynamo traces the model and wraps it as
``OptimizedModule``, whose ``state_dict`` keys carry ``_orig_mod.``, but no code is
generated); the inductor path runs in ``tests/test_cuda.py`` on a GPU machine.
float16 runs on the CPU here only by adding the CPU to the trainer's fp16 devices:
the GradScaler code is the same on both devices.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from memnets import Recurrent, make_cell
from memnets.cli import main
from memnets.config import ConfigError, DataConfig
from memnets.tasks import StepOutput, Task, register_task, to_device
from memnets.tasks.base import model_device
from memnets.tasks.memory import AddingTask
from memnets.tasks.recipes import from_dict, load_config
from memnets.train import checkpoint as ckpt
from memnets.train import load_run, train
from memnets.train import trainer as trainer_module

QUIET = {"progress": False, "tensorboard": False, "threads": 1}
TINY = ["data.T=12", "data.train_size=200", "data.dev_size=40", "data.test_size=40",
        "data.batch_size=8", "model.hidden_size=8", "trainer.log_every=1",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.threads=1"]


def _weights(run: Path, which: str = "latest") -> dict:
    return load_file(str(ckpt.read_pointer(run, which) / "model.safetensors"))


def _rows(run: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


# ----------------------------------------------------------------- the configuration


@pytest.mark.parametrize("override,field", [
    ("trainer.accumulate=0", "trainer.accumulate"),
    ("trainer.accumulate=1.5", "trainer.accumulate"),
    ("trainer.compile=fast", "trainer.compile"),
    ("trainer.compile=1", "trainer.compile"),
    ("trainer.precision=fp8", "trainer.precision"),
])
def test_bad_option_values_are_configuration_errors_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=rf"{field}: expected"):
        load_config("adding", [override])


def test_option_values_and_defaults_are_read():
    default = load_config("adding", []).trainer
    assert (default.accumulate, default.compile, default.precision) == (1, False, "fp32")
    t = load_config("adding", ["trainer.accumulate=4", "trainer.compile=max-autotune",
                               "trainer.precision=fp16"]).trainer
    assert (t.accumulate, t.compile, t.precision) == (4, "max-autotune", "fp16")
    assert load_config("adding", ["trainer.compile=true"]).trainer.compile is True


def test_fp16_on_the_cpu_is_a_configuration_error_naming_bf16(tmp_path, capsys):
    config = load_config("adding", TINY + ["trainer.precision=fp16", "trainer.max_steps=2"])
    with pytest.raises(ConfigError, match=r"trainer.precision: fp16 .*CUDA.*use bf16"):
        train(config, tmp_path / "run", device="cpu", quiet=True)
    assert not (tmp_path / "run").exists()  # refused before anything is written
    out = tmp_path / "cli"
    assert main(["train", "adding", "--out", str(out), "--quiet", "--device", "cpu",
                 "--set", "trainer.precision=fp16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bf16" in err and not out.exists()


def test_compile_on_a_torch_without_it_is_a_configuration_error(tmp_path, monkeypatch):
    config = load_config("adding", TINY + ["trainer.compile=true", "trainer.max_steps=2"])
    monkeypatch.delattr(torch, "compile")
    with pytest.raises(ConfigError, match=r"trainer.compile: torch .* has no torch.compile"):
        train(config, tmp_path / "a", quiet=True)
    monkeypatch.undo()
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer.compile: .*cannot compile on Python"):
        train(config, tmp_path / "b", quiet=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ----------------------------------------------------------------- accumulation


@dataclass
class ToyData(DataConfig):
    size: int = 44  # batches of 16: 16, 16, 12; of 8 in pairs: (8, 8), (8, 8), (8, 4)
    length: int = 5


@register_task("test_options_toy")
class ToyTask(Task):
    """A float64 GRU regressing the sum of its inputs: a batch-mean loss."""

    DataConfig = ToyData
    main_metric = "loss"
    higher_is_better = False
    needs_data = False

    def dataset(self, split):
        g = torch.Generator().manual_seed({"train": 0, "dev": 1, "test": 2}[split])
        x = torch.randn(self.config.size, self.config.length, 2, generator=g,
                        dtype=torch.float64)
        return torch.utils.data.TensorDataset(x, x.sum(dim=(1, 2)))

    def build_model(self, config):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                cell = make_cell(config.cell, input_size=2, hidden_size=config.hidden_size)
                self.rnn = Recurrent(cell, batch_first=True)
                self.out = nn.Linear(config.hidden_size, 1)

            def forward(self, x):  # (N, L, 2) -> (N,)
                y, _ = self.rnn(x)
                return self.out(y[:, -1]).squeeze(-1)

        return Net().double()

    def step(self, model, batch, state=None):
        x, y = to_device(batch, model_device(model))
        se = (model(x) - y).square()
        return StepOutput(loss=se.mean(), size=len(y),
                          stats={"loss": se.sum().detach(), "count": len(y)})


def _toy(run: Path, batch_size: int, accumulate: int, **trainer) -> dict:
    config = from_dict({
        "task": "test_options_toy", "data": {"batch_size": batch_size},
        "model": {"cell": "gru", "hidden_size": 5},
        "optimizer": {"name": "adam", "lr": 0.05, "grad_clip": 0.3},
        "schedule": {"name": "cosine", "warmup_steps": 2},
        "trainer": {"max_epochs": 2, "evals_per_epoch": 3, "log_every": 1,
                    "accumulate": accumulate, **QUIET, **trainer}})
    return train(config, run, quiet=True)


@pytest.mark.parametrize("batch_size,k", [(8, 2), (4, 4)])
def test_k_micro_batches_of_b_equal_one_batch_of_kb_in_float64(tmp_path, batch_size, k):
    """Clipping, the warm-up and the cosine schedule act per optimizer step; the last
    step of each epoch gets micro-batches of unequal sizes (8 and 4; 4, 4 and 4 of k=4),
    weighted by their sizes."""
    ref = _toy(tmp_path / "ref", 16, 1)
    acc = _toy(tmp_path / "acc", batch_size, k)
    assert ref["steps"] == acc["steps"] == 6 and acc["epochs_completed"] == 2
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "acc")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-10, atol=1e-12, msg=name)
    dev_ref, dev_acc = _rows(tmp_path / "ref", "dev"), _rows(tmp_path / "acc", "dev")
    assert [(r["step"], r["epoch"]) for r in dev_acc] == [(r["step"], r["epoch"])
                                                          for r in dev_ref]
    assert [r["loss"] for r in dev_acc] == pytest.approx([r["loss"] for r in dev_ref],
                                                         rel=1e-10)
    train_rows = _rows(tmp_path / "acc", "train")
    assert [r["lr"] for r in train_rows] == pytest.approx(
        [r["lr"] for r in _rows(tmp_path / "ref", "train")], rel=1e-12)
    assert [r["ex_per_s"] > 0 for r in train_rows] == [True] * 6


def test_accumulation_changes_the_gradient_of_a_step(tmp_path):
    """The comparison above can fail: k = 2 with batch 8 is not k = 1 with batch 8, and
    weighting the unequal micro-batches alike moves the weights too."""
    _toy(tmp_path / "one", 8, 1)
    _toy(tmp_path / "two", 8, 2)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert any(not torch.allclose(a[n], b[n], rtol=1e-6, atol=1e-8) for n in a)


@dataclass
class ToyStreamData(DataConfig):
    rows: int = 3
    length: int = 41
    bptt: int = 5


@register_task("test_options_stream")
class ToyStream(Task):
    """Next value of a noisy sine in truncated-BPTT chunks (float64, stateful)."""

    DataConfig = ToyStreamData
    stateful = True
    needs_data = False
    seen: list = []

    def stream(self, split):
        g = torch.Generator().manual_seed({"train": 0, "dev": 1, "test": 2}[split])
        t = torch.arange(self.config.rows * self.config.length, dtype=torch.float64)
        x = torch.sin(t / 3) + 0.1 * torch.randn(t.shape, generator=g, dtype=torch.float64)
        return x.view(self.config.rows, self.config.length, 1)  # (rows, L, 1)

    def num_batches(self, split, *, batch_size):
        return (self.config.length - 1) // self.config.bptt

    def batches(self, split, *, batch_size, epoch=0, seed=0, shuffle=False, rank=0,
                world_size=1, start=0, num_workers=0):
        x, k = self.stream(split), self.config.bptt
        for b in range(start, self.num_batches(split, batch_size=batch_size)):
            yield x[:, b * k:(b + 1) * k], x[:, b * k + 1:(b + 1) * k + 1]

    def build_model(self, config):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = Recurrent(make_cell(config.cell, input_size=1,
                                               hidden_size=config.hidden_size),
                                     batch_first=True)
                self.out = nn.Linear(config.hidden_size, 1)

            def forward(self, x, state):
                y, state = self.rnn(x, state)
                return self.out(y), state

        return Net().double()

    def step(self, model, batch, state=None):
        x, y = to_device(batch, model_device(model))
        if model.training:
            type(self).seen.append(state)
        pred, state = model(x, state)
        se = (pred - y).square()
        return StepOutput(loss=se.mean(), size=y.numel(), state=state,
                          stats={"loss": se.sum().detach(), "count": y.numel()})


def test_truncated_bptt_state_is_carried_across_micro_batches(tmp_path):
    """8 chunks, 2 per SGD step, against a loop written out here: the state of each
    chunk is the detached final state of the one before, also within a step; the step
    is the mean of its two chunks' gradients."""
    recipe = {"task": "test_options_stream", "model": {"cell": "elman", "hidden_size": 4},
              "optimizer": {"name": "sgd", "lr": 0.1},
              "trainer": {"max_epochs": 1, "accumulate": 2, "seed": 3, **QUIET}}
    ToyStream.seen = []
    results = train(from_dict(recipe), tmp_path, quiet=True)
    assert results["steps"] == 4
    seen = ToyStream.seen
    assert len(seen) == 8 and seen[0] is None
    assert all(s is not None and not s.h.requires_grad for s in seen[1:])

    config = from_dict(recipe)
    task = ToyStream(config.data, tmp_path)
    torch.manual_seed(3)  # the trainer seeds torch with trainer.seed, then builds the model
    model = task.build_model(config.model)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    chunks = list(task.batches("train", batch_size=1))
    state = None
    for s in range(4):
        sgd.zero_grad()
        for x, y in chunks[2 * s:2 * s + 2]:
            pred, state = model(x, state)
            (0.5 * F.mse_loss(pred, y)).backward()
            state = type(state)(*(t.detach() for t in state))
        sgd.step()
    got = _weights(tmp_path)
    for name, p in model.state_dict().items():
        torch.testing.assert_close(got[name], p, rtol=1e-12, atol=1e-13, msg=name)


def test_resume_with_accumulation_is_bit_identical(tmp_path):
    """Two layers with dropout 0.3, two micro-batches per step, 52 batches an epoch (the
    last of 4 examples): cut at step 14, resumed past the epoch's end to step 40."""
    sets = TINY + ["data.train_size=412", "model.num_layers=2", "model.dropout=0.3",
                   "trainer.accumulate=2", "trainer.deterministic=true",
                   "trainer.checkpoint_every=7", "trainer.eval_every=20",
                   "trainer.max_epochs=2", "trainer.log_every=5"]
    ref = train(load_config("adding", sets + ["trainer.max_steps=40"]), tmp_path / "ref",
                quiet=True)
    train(load_config("adding", sets + ["trainer.max_steps=14"]), tmp_path / "cut", quiet=True)
    meta, _ = ckpt.load_checkpoint(ckpt.read_pointer(tmp_path / "cut"))
    assert meta["progress"]["step"] == 14 and meta["progress"]["batch"] == 28  # a boundary
    cut = train(load_config("adding", sets + ["trainer.max_steps=40"]), tmp_path / "cut",
                resume=True, quiet=True)
    assert ref["steps"] == cut["steps"] == 40
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta, _ = ckpt.load_checkpoint(ckpt.read_pointer(tmp_path / "ref"))
    assert meta["progress"]["epoch"] == 1 and meta["progress"]["batch"] == 28  # 26 + 14
    steps = [r["step"] for r in _rows(tmp_path / "cut", "train")]
    assert steps == sorted(set(steps))


# ----------------------------------------------------------------- float16 and its scaler


@register_task("test_options_loud")
class LoudAdding(AddingTask):
    """The adding task with its loss times 200: float16 gradients overflow at the
    scaler's first scales, so that it skips steps and lowers the scale."""

    def step(self, model, batch, state=None):
        out = super().step(model, batch, state)
        if model.training:
            out.loss = out.loss * 200.0
        return out


def test_fp16_skips_overflowing_steps_without_stopping_and_resumes_exactly(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(trainer_module, "_FP16_DEVICES", {"cuda", "cpu"})
    sets = TINY + ["task=test_options_loud", "trainer.precision=fp16",
                   "trainer.deterministic=true", "trainer.checkpoint_every=4",
                   "trainer.eval_every=20", "optimizer.grad_clip=1.0"]
    ref = train(load_config("adding", sets + ["trainer.max_steps=16"]), tmp_path / "ref",
                quiet=True)
    assert ref["steps"] == 16 and math.isfinite(ref["test"]["mse"])  # no NaN stop
    rows = _rows(tmp_path / "ref", "train")
    scales = [r["loss_scale"] for r in rows]
    assert scales[0] < 65536.0 and scales == sorted(scales, reverse=True)  # steps skipped
    assert not math.isfinite(float(rows[0]["grad_norm"]))  # the overflow it skipped

    train(load_config("adding", sets + ["trainer.max_steps=8"]), tmp_path / "cut", quiet=True)
    meta, _ = ckpt.load_checkpoint(ckpt.read_pointer(tmp_path / "cut"))
    assert meta["scaler"]["scale"] == scales[7]  # the scale after step 8
    shutil.copytree(tmp_path / "cut", tmp_path / "fresh")
    train(load_config("adding", sets + ["trainer.max_steps=16"]), tmp_path / "cut",
          resume=True, quiet=True)
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the same resume with the scaler's state dropped from the checkpoint: a fresh scale
    # of 65536 overflows and skips again, so the test above can fail
    folder = ckpt.read_pointer(tmp_path / "fresh")
    meta = json.loads((folder / "trainer.json").read_text())
    meta["scaler"] = None
    (folder / "trainer.json").write_text(json.dumps(meta))
    train(load_config("adding", sets + ["trainer.max_steps=16"]), tmp_path / "fresh",
          resume=True, quiet=True)
    c = _weights(tmp_path / "fresh")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fp16_with_accumulation_and_a_split_optimizer_trains(tmp_path, monkeypatch):
    """The scaler unscales a SplitOptimizer's dense and sparse (SparseAdam) groups.
    (The cell is SCRN: the CPU's fused LSTM kernel has no float16 version.)"""
    monkeypatch.setattr(trainer_module, "_FP16_DEVICES", {"cuda", "cpu"})
    (tmp_path / "t.txt").write_text("the cat sat on the mat. the dog ran away.\n" * 30)
    sets = [f"data.path={tmp_path / 't.txt'}", f"data.dir={tmp_path}", "data.download=false",
            "data.bptt=8", "data.batch_size=4", "data.eval_batch_size=4",
            "model.embedding_size=8", "model.hidden_size=8", "model.num_layers=1",
            "model.cell=scrn", "optimizer.sparse_embedding_lr=0.01", "trainer.max_steps=6",
            "trainer.eval_every=null", "trainer.max_epochs=1", "trainer.precision=fp16",
            "trainer.accumulate=2", "trainer.progress=false", "trainer.tensorboard=false",
            "trainer.threads=1"]
    results = train(load_config("shakespeare_char", sets), tmp_path / "run", quiet=True)
    assert results["steps"] == 6 and math.isfinite(results["dev"]["loss"])
    meta, _ = ckpt.load_checkpoint(ckpt.read_pointer(tmp_path / "run"))
    assert meta["scaler"]["scale"] > 0 and meta["progress"]["batch"] == 12


# ----------------------------------------------------------------- torch.compile


@pytest.fixture
def eager_compile(monkeypatch):
    """torch.compile with dynamo's ``eager`` backend; records each call's module and mode."""
    calls = []
    real = torch.compile

    def compile_(model, mode=None, **kw):
        calls.append((model, mode))
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_)
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()


@register_task("test_options_seen")
class SeenAdding(AddingTask):
    """Records the type of the module each training step receives."""

    kinds: list = []

    def step(self, model, batch, state=None):
        if model.training:
            type(self).kinds.append(type(model).__name__)
        return super().step(model, batch, state)


def test_compiled_training_checkpoints_the_plain_module_and_resumes(tmp_path, eager_compile):
    sets = TINY + ["task=test_options_seen", "data.T=4", "data.train_size=64",
                   "trainer.checkpoint_every=3", "trainer.eval_every=20"]
    train(load_config("adding", sets + ["trainer.max_steps=6"]), tmp_path / "plain",
          quiet=True)
    assert not eager_compile
    SeenAdding.kinds = []
    first = train(load_config("adding", sets + ["trainer.max_steps=3",
                                                "trainer.compile=reduce-overhead"]),
                  tmp_path / "run", quiet=True)
    assert first["steps"] == 3
    (model, mode), = eager_compile
    assert mode == "reduce-overhead" and SeenAdding.kinds == ["OptimizedModule"] * 3
    keys = set(_weights(tmp_path / "run"))
    assert keys == set(model.state_dict()) and not any("_orig_mod" in k for k in keys)
    resumed = train(load_config("adding", sets + ["trainer.max_steps=6",
                                                  "trainer.compile=reduce-overhead"]),
                    tmp_path / "run", resume=True, quiet=True)
    assert resumed["steps"] == 6 and len(eager_compile) == 2
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "run")
    for k in a:  # the same arithmetic, traced
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    _, task, loaded = load_run(tmp_path / "run")  # a plain module: eval and predict work
    assert type(loaded).__name__ == "SequenceRegressor"
    mse = task.evaluate(loaded, "test", batch_size=16)["mse"]
    assert mse == pytest.approx(resumed["test"]["mse"], rel=1e-6)


def test_a_compiler_failure_is_a_configuration_error_naming_the_option(tmp_path, monkeypatch):
    real = torch.compile

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile",
                        lambda model, mode=None: real(model, backend=broken_backend))
    torch._dynamo.reset()
    config = load_config("adding", TINY + ["data.T=4", "trainer.max_steps=2",
                                           "trainer.compile=true"])
    with pytest.raises(ConfigError, match=r"trainer.compile: torch.compile failed at step 1 "
                                          r"\(BackendCompilerFailed.*no C\+\+ compiler.*"
                                          r"trainer.compile: false"):
        train(config, tmp_path / "run", quiet=True)
    torch._dynamo.reset()


@pytest.mark.slow
def test_ddp_accumulation_matches_one_process_with_the_whole_batch(tmp_path):
    """torchrun, 2 CPU processes (gloo), global micro-batch 4, two per step (the first
    without an all-reduce): the weights of one process with batch 8."""
    import os
    import subprocess
    import sys

    sets = TINY + ["trainer.max_steps=8", "trainer.eval_every=4", "trainer.deterministic=true",
                   "optimizer.grad_clip=0.5"]

    def args(extra):
        return ["train", "adding", "--quiet", "--device", "cpu"] + [
            a for s in sets + extra for a in ("--set", s)]

    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    one = subprocess.run([sys.executable, "-m", "memnets", *args(["data.batch_size=8"]),
                          "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "memnets", *args(["data.batch_size=4", "trainer.accumulate=2"]),
         "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[:3000] + "\n...\n" + two.stderr[-1500:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
