"""Selective copying: the generator against its definition (Gu & Dao 2023), the
metrics and baselines against hand-computed values, the recipes through the
config system and the command line, and a smoke run that learns."""

from __future__ import annotations

import math

import pytest
import torch

from memnets.cli import main
from memnets.errors import ConfigError
from memnets.tasks import get_task
from memnets.tasks.memory import _SPLIT_STRIDE, _Generated
from memnets.tasks.recipes import from_dict, load_config
from memnets.train import train

torch.set_num_threads(1)  # small models: threads only add overhead on a shared CPU


def _task(**data):
    cls = get_task("selective_copy")
    return cls(cls.DataConfig(**data))


def test_examples_follow_the_protocol():
    L, S, V = 30, 5, 10
    task = _task(length=L, n_tokens=S, vocab_size=V)
    ds = task.dataset("train")
    first_positions = set()
    for i in range(200):
        x, y = ds[i]
        assert x.shape == (L + S,) and y.shape == (S,)
        assert x.dtype == y.dtype == torch.long
        where = (x[:L] != 0).nonzero().flatten()
        assert len(where) == S  # exactly S data symbols, so at S distinct positions
        assert ((1 <= x[where]) & (x[where] <= V - 2)).all()  # data symbols, never noise/marker
        assert (x[L:] == V - 1).all()  # then S markers
        assert torch.equal(y, x[where])  # the target: the data symbols in order
        first_positions.add(int(where[0]))
    assert len(first_positions) > 10  # the positions are drawn, not fixed


def test_symbols_and_positions_are_uniform():
    L, S, V, n = 20, 4, 8, 3000
    task = _task(length=L, n_tokens=S, vocab_size=V, train_size=n)
    xs = torch.stack([task.dataset("train")[i][0] for i in range(n)])  # (n, L + S)
    hits = (xs[:, :L] != 0).float().mean(0)  # (L,): how often each step holds a symbol
    torch.testing.assert_close(hits, torch.full((L,), S / L), atol=0.04, rtol=0)
    counts = torch.bincount(xs[:, :L][xs[:, :L] != 0], minlength=V)[1:V - 1].float()
    torch.testing.assert_close(counts / counts.sum(), torch.full((V - 2,), 1 / (V - 2)),
                               atol=0.02, rtol=0)


def test_examples_are_fixed_by_seed_and_the_splits_are_disjoint():
    task = _task(length=40, n_tokens=6, train_size=50, dev_size=50, test_size=50)
    again = _task(length=40, n_tokens=6, train_size=50, dev_size=50, test_size=50)
    for split in ("train", "dev", "test"):
        for i in (0, 7, 49):
            assert all(torch.equal(a, b) for a, b in zip(task.dataset(split)[i],
                                                         again.dataset(split)[i]))
    other_seed = _task(length=40, n_tokens=6, seed=99)
    assert not torch.equal(task.dataset("train")[0][0], other_seed.dataset("train")[0][0])
    seqs = {split: {tuple(task.dataset(split)[i][0].tolist()) for i in range(50)}
            for split in ("train", "dev", "test")}
    assert not seqs["train"] & seqs["dev"] and not seqs["train"] & seqs["test"]
    assert not seqs["dev"] & seqs["test"]
    # the generator seeds of the splits are disjoint ranges while no split exceeds the stride
    bases = sorted(_Generated(1, 1234, s, None).base for s in ("train", "dev", "test"))
    assert [b - bases[0] for b in bases] == [0, _SPLIT_STRIDE, 2 * _SPLIT_STRIDE]
    with pytest.raises(ConfigError, match="train_size"):
        load_config("selective-copy-small", [f"data.train_size={_SPLIT_STRIDE + 1}"])


def test_data_config_is_checked():
    with pytest.raises(ConfigError, match="n_tokens: expected at most length"):
        load_config("selective-copy-small", ["data.length=4", "data.n_tokens=5"])
    with pytest.raises(ConfigError, match="vocab_size"):
        load_config("selective-copy-small", ["data.vocab_size=2"])


class _Fixed(torch.nn.Module):
    """A model whose logits are given: ``(N, L + S, V)``, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, x):
        return self.logits


def test_metrics_on_a_hand_made_batch():
    L, S, V = 4, 2, 5  # data symbols 1..3
    task = _task(length=L, n_tokens=S, vocab_size=V)
    x = torch.tensor([[0, 1, 0, 3, 4, 4], [2, 0, 0, 2, 4, 4], [0, 0, 3, 1, 4, 4]])
    y = torch.tensor([[1, 3], [2, 2], [3, 1]])
    logits = torch.zeros(3, L + S, V)
    logits[:, :L, 0] = 50.0  # the noise steps are not scored, whatever is predicted there
    # answers: [1, 3] right/right, [2, 1] right/wrong, [1, 3] wrong/wrong
    for n, answers in enumerate([[1, 3], [2, 1], [1, 3]]):
        for k, a in enumerate(answers):
            logits[n, L + k, a] = 2.0
    out = task.step(_Fixed(logits), (x, y))
    m = task.metrics({k: float(v) for k, v in out.stats.items()})
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["exact_match"] == pytest.approx(1 / 3)
    # each answer step: logit 2 on one class, 0 on the other four
    p_hit = math.exp(2) / (math.exp(2) + 4)
    p_miss = 1 / (math.exp(2) + 4)
    ce = -(3 * math.log(p_hit) + 3 * math.log(p_miss)) / 6
    assert m["ce"] == pytest.approx(ce, rel=1e-5) and out.loss.item() == pytest.approx(ce, rel=1e-5)
    assert out.size == 3


def test_baselines_are_the_memoryless_predictor():
    task = _task(length=10, n_tokens=3, vocab_size=8)  # 6 data symbols
    b = task.baselines()
    assert b == {"accuracy": pytest.approx(1 / 6), "exact_match": pytest.approx(6 ** -3),
                 "ce": pytest.approx(math.log(6))}
    # uniform logits over the data symbols (noise and marker never predicted) score exactly that
    x, y = torch.utils.data.default_collate([task.dataset("test")[i] for i in range(4)])
    logits = torch.full((4, 13, 8), -1e9)
    logits[:, :, 1:7] = 0.0
    out = task.step(_Fixed(logits), (x, y))
    m = task.metrics({k: float(v) for k, v in out.stats.items()})
    assert m["ce"] == pytest.approx(b["ce"], rel=1e-6)
    assert m["baseline_accuracy"] == b["accuracy"] and m["baseline_ce"] == b["ce"]


def test_model_embeds_tokens_and_answers_at_the_marker_steps():
    torch.manual_seed(0)
    cls = get_task("selective_copy")
    task = _task(length=12, n_tokens=3, vocab_size=7)
    model = task.build_model(cls.ModelConfig(cell="gru", hidden_size=8, num_layers=2,
                                             embedding_size=5))
    assert model.embedding.weight.shape == (7, 5)
    x, y = torch.utils.data.default_collate([task.dataset("dev")[i] for i in range(4)])
    assert model(x).shape == (4, 15, 7)
    # the answers depend on the first step (the model reads the whole sequence), and the
    # output at step t on the steps up to t only
    x2 = x.clone()
    x2[:, 0] = torch.where(x[:, 0] == 0, 1, 0)
    x2[:, 6] = torch.where(x[:, 6] == 0, 2, 0)
    out, out2 = model(x), model(x2)
    assert not torch.allclose(out[:, -3:], out2[:, -3:])
    x3 = x.clone()
    x3[:, 6] = torch.where(x[:, 6] == 0, 2, 0)
    torch.testing.assert_close(model(x3)[:, :6], out[:, :6])
    same = cls.ModelConfig(cell="gru", hidden_size=8)
    assert task.build_model(same).embedding.weight.shape == (7, 8)  # default: hidden_size
    norms = task.gradient_probe(model, (x, y))
    assert norms.shape == (15,) and (norms > 0).all()


def test_smoke_training_learns_far_above_chance(tmp_path):
    config = from_dict({
        "task": "selective_copy",
        "data": {"length": 16, "n_tokens": 4, "vocab_size": 8, "train_size": 4000,
                 "dev_size": 200, "test_size": 500, "batch_size": 32},
        "model": {"cell": "gru", "hidden_size": 32},
        "optimizer": {"name": "adam", "lr": 0.01, "grad_clip": 1.0},
        "trainer": {"max_epochs": 3, "progress": False, "tensorboard": False, "threads": 1},
    })
    r = train(config, tmp_path, quiet=True)
    base = r["baselines"]
    assert base["accuracy"] == pytest.approx(1 / 6)
    assert r["test"]["accuracy"] > 0.7  # chance 0.17; measured 0.94
    assert r["test"]["exact_match"] > 0.3  # chance 0.0008: all 4 symbols, in order
    assert r["test"]["ce"] < 0.5 * base["ce"]


def test_recipes_are_listed_and_load(capsys):
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in listing.splitlines()[1:]
            if line[:1].strip() and len(line.split()) > 1}  # not a wrapped target's line
    assert rows["selective-copy"] == rows["selective-copy-small"] == "selective_copy"
    full, small = load_config("selective-copy"), load_config("selective-copy-small")
    assert (full.data.length, full.data.n_tokens, full.data.vocab_size) == (4096, 16, 16)
    assert (full.data.batch_size, full.trainer.max_steps, full.optimizer.lr) == (64, 400_000, 1e-4)
    assert small.data.length < full.data.length and small.trainer.max_steps < 400_000
    assert load_config("selective-copy-small", ["model.cell=lstm"]).model.cell == "lstm"


def test_train_and_eval_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    tiny = ["--set", "data.length=12", "--set", "data.n_tokens=3", "--set", "data.train_size=64",
            "--set", "data.dev_size=16", "--set", "data.test_size=16",
            "--set", "trainer.max_steps=2", "--set", "model.hidden_size=8"]
    assert main(["train", "selective-copy-small", *tiny, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"exact_match"' in out and '"baseline_accuracy"' in out
