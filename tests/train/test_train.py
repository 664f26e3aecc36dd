"""The trainer: exact resume after SIGKILL, atomic checkpoints, NaN stop, schedules,
optimizer state round trip, stateful (truncated BPTT) carry, missing data, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from memnets.config import DataConfig, ScheduleConfig
from memnets.data import DataError
from memnets.errors import CheckpointError
from memnets.tasks import StepOutput, Task, register_task, to_device
from memnets.tasks.base import model_device
from memnets.tasks.memory import AddingTask
from memnets.tasks.recipes import from_dict, load_config
from memnets.train import TrainingError, load_run, train
from memnets.train import checkpoint as ckpt
from memnets.train.optim import LRSchedule, build_optimizer

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable

TINY = ["data.T=12", "data.train_size=400", "data.dev_size=40", "data.test_size=40",
        "data.batch_size=8", "model.hidden_size=8", "trainer.log_every=5",
        "trainer.progress=false", "trainer.tensorboard=false"]


@register_task("test_slow_adding")
class SlowAdding(AddingTask):
    """The adding task, slowed down so that a test can kill it mid-run."""

    def step(self, model, batch, state=None):
        time.sleep(0.03)
        return super().step(model, batch, state)


def _weights(run_dir: Path, which: str = "latest") -> dict:
    return load_file(str(ckpt.read_pointer(run_dir, which) / "model.safetensors"))


def _env():
    # the tests' folder (for --task-module test_train) before whatever path finds memnets
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)


def _train_cmd(out: Path, extra: list[str]) -> list[str]:
    sets = TINY + ["task=test_slow_adding", "trainer.max_steps=60", "trainer.max_epochs=3",
                   "trainer.checkpoint_every=5", "trainer.eval_every=30",
                   "trainer.deterministic=true"] + extra
    cmd = [PYTHON, "-m", "memnets", "--task-module", "test_train", "train", "adding",
           "--out", str(out), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_train_cmd(ref, []), check=True, env=_env(), timeout=300)
    proc = subprocess.Popen(_train_cmd(cut, []), env=_env())
    pointer = cut / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if pointer.exists():
            step = json.loads(pointer.read_text())["step"]
            if step >= 20:
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.01)
    proc.wait()
    assert killed_at is not None and killed_at < 60, "the run ended before it could be killed"
    assert json.loads(pointer.read_text())["step"] < 60
    resumed = subprocess.run(_train_cmd(cut, []) + ["--resume"], env=_env(), timeout=300)
    assert resumed.returncode == 0
    a, b = _weights(ref), _weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps))  # no step logged twice after the resume
    assert json.loads((cut / "results.json").read_text())["steps"] == 60


def test_extending_a_finished_run_matches_a_longer_run(tmp_path):
    """``--resume --set trainer.max_epochs=N`` on a finished run trains on to epoch N
    exactly as a run given N epochs from the start; both count every epoch they ran."""
    sets = TINY + ["trainer.max_steps=null", "trainer.eval_every=null",
                   "trainer.deterministic=true", "schedule.name=step",
                   "schedule.start_epoch=1", "schedule.step_size=1"]
    ref = train(load_config("adding", sets + ["trainer.max_epochs=3"]), tmp_path / "ref",
                quiet=True)
    first = train(load_config("adding", sets + ["trainer.max_epochs=2"]), tmp_path / "ext",
                  quiet=True)
    assert first["epochs_completed"] == 2 and first["steps"] == 2 * 50
    ext = train(load_config("adding", sets + ["trainer.max_epochs=3"]), tmp_path / "ext",
                resume=True, quiet=True)
    assert ref["epochs_completed"] == ext["epochs_completed"] == 3
    assert ref["steps"] == ext["steps"] == 3 * 50
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "ext")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in rows if r["split"] == "dev"] == [1, 2, 3]


def test_atomic_checkpoint_write_survives_a_crash(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    meta = {"step": 1}
    ckpt.save_checkpoint(tmp_path, "step-00000001", model=model, meta=meta,
                         tensors={"x": torch.zeros(1)})
    before = _weights(tmp_path)
    with torch.no_grad():
        model.weight.add_(1.0)
    real = ckpt.save_file
    calls = []

    def crash_on_second(tensors, path):  # model.safetensors is written, then we "die"
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"partial")
            raise OSError("disk full (simulated)")
        real(tensors, path)

    monkeypatch.setattr(ckpt, "save_file", crash_on_second)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_checkpoint(tmp_path, "step-00000002", model=model, meta={"step": 2},
                             tensors={"x": torch.zeros(1)})
    assert ckpt.read_pointer(tmp_path).name == "step-00000001"
    after = _weights(tmp_path)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest.json", "step-00000001"]
    monkeypatch.setattr(ckpt, "save_file", real)
    ckpt.save_checkpoint(tmp_path, "step-00000002", model=model, meta={"step": 2},
                         tensors={"x": torch.zeros(1)})
    assert ckpt.read_pointer(tmp_path).name == "step-00000002"
    assert not (tmp_path / "checkpoints" / "step-00000001").exists()  # pruned


def test_atomic_write_text_never_leaves_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "latest.json"
    ckpt.atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError("killed before rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ckpt.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["latest.json"]


@register_task("test_nan")
class NanTask(AddingTask):
    """Loss becomes NaN from training step 13 on."""

    calls = 0

    def step(self, model, batch, state=None):
        out = super().step(model, batch, state)
        if model.training:
            type(self).calls += 1
            if type(self).calls >= 13:
                out.loss = out.loss * float("nan")
        return out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    NanTask.calls = 0
    config = load_config("adding", TINY + ["task=test_nan", "trainer.max_steps=40",
                                           "trainer.eval_every=5"])
    with pytest.raises(TrainingError, match=r"loss is nan at step 13 .*last good checkpoint.*"
                                            r"step-00000010"):
        train(config, tmp_path, quiet=True)
    folder = ckpt.read_pointer(tmp_path)
    assert folder.name == "step-00000010"
    weights = load_file(str(folder / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    _, _, model = load_run(tmp_path, which="latest")  # still loadable


@dataclass
class FilesData(DataConfig):
    name: str = "x"


@register_task("test_files")
class FilesTask(Task):
    DataConfig = FilesData

    def setup(self):
        from memnets.data import require

        require(self.data_dir / "files" / "train.txt", "test files")


def test_missing_data_directory_is_a_clear_error(tmp_path):
    config = from_dict({"task": "test_files", "data": {"dir": str(tmp_path / "nowhere")}})
    with pytest.raises(DataError, match=r"data directory .*nowhere does not exist.*test_files"):
        train(config, tmp_path / "run", quiet=True)
    (tmp_path / "root").mkdir()
    config = from_dict({"task": "test_files", "data": {"dir": str(tmp_path / "root")}})
    with pytest.raises(DataError, match=r"test files not found: expected .*files/train.txt"):
        train(config, tmp_path / "run", quiet=True)


def _sched(**kw):
    return LRSchedule(ScheduleConfig(**kw), 1.0, total_steps=100)


def test_schedules_against_hand_computed_values():
    s = _sched(name="step", start_epoch=4, step_size=1, gamma=0.5)  # Zaremba et al. 2014
    assert [s.lr(0, e) for e in range(7)] == [1, 1, 1, 1, 0.5, 0.25, 0.125]
    s = _sched(name="step", start_epoch=25, step_size=25, gamma=0.5)  # MemN2N
    assert [s.lr(0, e) for e in (0, 24, 25, 49, 50)] == [1, 1, 0.5, 0.5, 0.25]
    s = _sched(name="cosine", warmup_steps=10, min_lr=0.1)
    assert s.lr(0, 0) == pytest.approx(0.1 * 1.0)  # warm-up: (0+1)/10 of the peak
    assert s.lr(9, 0) == pytest.approx(1.0)
    assert s.lr(55, 0) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert s.lr(100, 0) == pytest.approx(0.1)
    s = _sched(name="plateau", patience=1, gamma=0.1)
    seen = [s.observe(m) for m in (1.0, 0.9, 0.95, 0.93, 0.8, 0.85, 0.86)]
    assert seen == [False, False, False, True, False, False, True]
    assert s.lr(0, 0) == pytest.approx(0.01)
    s2 = _sched(name="plateau", patience=1, gamma=0.1)
    s2.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert s2.lr(0, 0) == s.lr(0, 0) and s2.observe(0.9) == s.observe(0.9)


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw"])
def test_optimizer_state_round_trip_without_pickle(name, tmp_path):
    from memnets.config import OptimizerConfig

    torch.manual_seed(0)
    cfg = OptimizerConfig(name=name, lr=0.1, momentum=0.9, nesterov=name == "sgd")
    model = nn.Linear(4, 3)
    opt = build_optimizer(model, cfg)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    tensors: dict = {}
    meta = json.loads(json.dumps(ckpt.optimizer_state(opt, tensors)))
    ckpt.save_file(tensors, str(tmp_path / "o.safetensors"))
    twin = nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    opt2 = build_optimizer(twin, cfg)
    ckpt.load_optimizer_state(opt2, meta, load_file(str(tmp_path / "o.safetensors")))
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (twin, opt2)):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()
    assert torch.equal(model.weight, twin.weight)


def test_pack_tree_round_trip():
    from memnets.cells.lstm import LSTMState

    state = (LSTMState(torch.randn(2, 3), torch.randn(2, 3)), [torch.ones(1), None], {"a": 1.5})
    tensors: dict = {}
    spec = json.loads(json.dumps(ckpt.pack_tree(state, "c", tensors)))
    back = ckpt.unpack_tree(spec, tensors)
    assert isinstance(back[0], LSTMState) and torch.equal(back[0].c, state[0].c)
    assert back[1][1] is None and back[2] == {"a": 1.5}
    with pytest.raises(CheckpointError, match="not a registered recurrent state"):
        ckpt.unpack_tree({"nt": "os:system", "items": []}, {})


@dataclass
class StreamData(DataConfig):
    rows: int = 4
    length: int = 60
    bptt: int = 5


@register_task("test_stream")
class StreamTask(Task):
    """Predict the next value of a noisy sine, in truncated-BPTT chunks."""

    DataConfig = StreamData
    stateful = True
    needs_data = False
    seen_states: list = []

    def _stream(self, split):
        g = torch.Generator().manual_seed({"train": 0, "dev": 1, "test": 2}[split])
        t = torch.arange(self.config.rows * self.config.length, dtype=torch.float32)
        x = torch.sin(t / 3) + 0.1 * torch.randn(t.shape, generator=g)
        return x.view(self.config.rows, self.config.length, 1)  # (rows, L, 1) batch-major

    def num_batches(self, split, *, batch_size):
        return (self.config.length - 1) // self.config.bptt

    def batches(self, split, *, batch_size, epoch=0, seed=0, shuffle=False, rank=0,
                world_size=1, start=0, num_workers=0):
        x = self._stream(split)
        k = self.config.bptt
        for b in range(start, self.num_batches(split, batch_size=batch_size)):
            yield x[:, b * k:(b + 1) * k], x[:, b * k + 1:(b + 1) * k + 1]

    def build_model(self, config):
        from memnets import Recurrent, make_cell

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = Recurrent(make_cell(config.cell, input_size=1,
                                               hidden_size=config.hidden_size), batch_first=True)
                self.out = nn.Linear(config.hidden_size, 1)

            def forward(self, x, state):
                y, state = self.rnn(x, state)
                return self.out(y), state

        return Net()

    def step(self, model, batch, state=None):
        x, y = to_device(batch, model_device(model))
        if model.training:
            type(self).seen_states.append(state)
        pred, state = model(x, state)
        se = (pred - y).square()
        return StepOutput(loss=se.mean(), size=y.numel(), state=state,
                          stats={"loss": se.sum().detach(), "count": y.numel()})


def test_stateful_task_gets_detached_state_carried_across_batches(tmp_path):
    StreamTask.seen_states = []
    config = from_dict({"task": "test_stream", "model": {"cell": "gru", "hidden_size": 6},
                        "optimizer": {"lr": 0.01},
                        "trainer": {"max_epochs": 2, "progress": False, "tensorboard": False}})
    results = train(config, tmp_path, quiet=True)
    seen = StreamTask.seen_states
    per_epoch = 59 // 5
    assert len(seen) == 2 * per_epoch
    assert seen[0] is None and seen[per_epoch] is None  # reset at each epoch
    assert all(s is not None and not s.h.requires_grad for s in seen[1:per_epoch])
    assert math.isfinite(results["dev"]["loss"])


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) and global batch 8 gives the weights of one
    process with batch 8."""
    sets = TINY + ["trainer.max_steps=12", "trainer.eval_every=6", "trainer.deterministic=true",
                   "data.batch_size=8", "optimizer.grad_clip=0.5"]
    args = ["train", "adding", "--quiet", "--device", "cpu"] + [
        a for s in sets for a in ("--set", s)]
    env = dict(_env(), GLOO_SOCKET_IFNAME="lo")  # keep gloo on the loopback interface
    one = subprocess.run([PYTHON, "-m", "memnets", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "memnets", *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[:3000] + "\n...\n" + two.stderr[-1500:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    ra = json.loads((tmp_path / "one" / "results.json").read_text())
    rb = json.loads((tmp_path / "two" / "results.json").read_text())
    assert ra["test"]["mse"] == pytest.approx(rb["test"]["mse"], rel=1e-4)


def test_the_example_task_in_docs_engine_md_trains(tmp_path):
    import re

    text = (HERE.parents[1] / "docs" / "engine.md").read_text()
    code = re.search(r"```python\n(from dataclasses.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/engine.md", "exec"), namespace)
    recipe = re.search(r"```yaml\n(task: majority.*?)```", text, re.S).group(1)
    (tmp_path / "majority.yaml").write_text(recipe)
    config = load_config(str(tmp_path / "majority.yaml"),
                         ["trainer.progress=false", "trainer.tensorboard=false",
                          "trainer.max_epochs=3"])
    r = train(config, tmp_path / "run", quiet=True)
    assert r["test"]["accuracy"] > 0.8


@register_task("test_phases")
class PhaseTask(AddingTask):
    """Counts dev evaluations: state that lives outside the weights."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.evals = 0

    def evaluate(self, model, split, **kw):
        if split == "dev":
            self.evals += 1
        return super().evaluate(model, split, **kw)

    def train_state(self, model):
        return {"evals": self.evals}

    def load_train_state(self, model, state):
        self.evals = state["evals"]


def test_task_train_state_is_checkpointed_and_restored(tmp_path):
    sets = TINY + ["task=test_phases", "trainer.max_steps=10", "trainer.eval_every=5",
                   "trainer.test=false"]
    train(load_config("adding", sets), tmp_path, quiet=True)
    meta, _ = ckpt.load_checkpoint(ckpt.read_pointer(tmp_path))
    assert meta["task_state"] == {"evals": 2}
    more = [s for s in sets if "max_steps" not in s] + ["trainer.max_steps=20"]
    train(load_config("adding", more), tmp_path, resume=True, quiet=True)
    meta, _ = ckpt.load_checkpoint(ckpt.read_pointer(tmp_path))
    assert meta["step"] == 20 and meta["task_state"] == {"evals": 4}


def test_smoke_bf16_autocast_trains_with_finite_loss(tmp_path):
    config = load_config("adding", TINY + ["trainer.max_steps=6", "trainer.precision=bf16"])
    r = train(config, tmp_path, quiet=True)
    assert math.isfinite(r["test"]["mse"])


def test_early_stopping_and_plateau_decay(tmp_path):
    # lr so small that the dev metric cannot improve by the 50% threshold: every
    # evaluation after the first is "no improvement"
    sets = TINY + ["trainer.max_steps=40", "trainer.eval_every=2", "trainer.early_stopping=3",
                   "optimizer.lr=1e-9", "schedule.name=plateau", "schedule.patience=0",
                   "schedule.threshold=0.5", "schedule.gamma=0.5", "trainer.log_every=1"]
    r = train(load_config("adding", sets), tmp_path, quiet=True)
    # evaluations at 2 (best), 4, 6, 8: stop; lr 1e-9 moves no weight, so the four
    # scores are equal, and on a tie the later checkpoint is the best one
    assert r["steps"] == 8 and r["best_step"] == 8
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if r["split"] == "train"]
    assert lrs == pytest.approx([1e-9] * 4 + [5e-10] * 2 + [2.5e-10] * 2)
    # resuming a run that stopped early (as memnets sweep does with the runs it finds)
    # trains nothing more; a resume that raises the patience continues
    again = train(load_config("adding", sets), tmp_path, resume=True, quiet=True)
    assert again["steps"] == 8 and again["best_step"] == 8
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == len(rows)
    patient = [s for s in sets if "early_stopping" not in s] + ["trainer.early_stopping=5"]
    more = train(load_config("adding", patient), tmp_path, resume=True, quiet=True)
    assert more["steps"] == 12


def test_sharded_batches_union_is_the_single_process_batch():
    from memnets.tasks import ShardedBatches

    one = list(ShardedBatches(17, 8, shuffle=True, seed=3, epoch=2))
    assert [len(b) for b in one] == [8, 8, 1] and sorted(sum(one, [])) == list(range(17))
    two = [list(ShardedBatches(17, 8, shuffle=True, seed=3, epoch=2, rank=r, world_size=2))
           for r in range(2)]
    assert len(two[0]) == len(two[1]) == 2  # the 1-element last batch cannot be shared: dropped
    for b in range(2):
        assert sorted(two[0][b] + two[1][b]) == sorted(one[b])
    assert list(ShardedBatches(17, 8, shuffle=True, seed=3, epoch=2, start=1)) == one[1:]
    three = [list(ShardedBatches(18, 8, rank=r, world_size=2)) for r in range(2)]
    assert [len(x) for x in three] == [3, 3] and three[0][2] == [16] and three[1][2] == [17]


def test_max_minutes_ends_the_run_like_its_last_step(tmp_path):
    config = load_config("adding", TINY + ["trainer.max_steps=100000", "trainer.log_every=5",
                                           "trainer.max_minutes=0.0001"])
    results = train(config, tmp_path, quiet=True)
    assert results["steps"] == 5  # stopped at the first check, then evaluated and tested
    assert math.isfinite(results["test"]["mse"])


def test_auto_device_is_the_same_on_every_rank(monkeypatch):
    from memnets.train.distributed import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes, one GPU: all on the CPU
    assert resolve_device("auto", 0).type == resolve_device("auto", 1).type == "cpu"
    with pytest.raises(RuntimeError, match="local rank 1, but this machine has 1 CUDA device"):
        resolve_device("cuda", 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert resolve_device("auto", 0) == torch.device("cuda", 0)


def test_results_record_the_commit_read_when_the_run_started(tmp_path, monkeypatch):
    import memnets.train.provenance as prov
    import memnets.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "git_commit", lambda: "abc1234")  # at the start
    monkeypatch.setattr(prov, "git_commit", lambda: "fff9999")  # what the checkout says later
    r = train(load_config("adding", TINY + ["trainer.max_steps=2"]), tmp_path, quiet=True)
    assert r["provenance"]["commit"] == "abc1234"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["provenance"]["commit"] == "abc1234"
