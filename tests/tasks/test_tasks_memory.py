"""The memory tasks: generators against their definitions, baselines against
hand-computed values, the model against a naive loop, the gradient probe against
autograd, and a smoke run that learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from memnets.models.regressor import SequenceRegressor
from memnets.tasks import get_task
from memnets.tasks.memory import MemoryModelConfig
from memnets.tasks.recipes import from_dict
from memnets.train import train


def _task(name, **data):
    cls = get_task(name)
    return cls(cls.DataConfig(**data))


def test_adding_examples_follow_the_protocol():
    task = _task("adding", T=30)
    ds = task.dataset("train")
    for i in range(50):
        x, y = ds[i]
        assert x.shape == (30, 2)
        marks = x[:, 1].nonzero().flatten().tolist()
        assert len(marks) == 2 and marks[0] < 15 <= marks[1]  # one marker in each half
        assert ((0 <= x[:, 0]) & (x[:, 0] < 1)).all()
        assert y == pytest.approx(float(x[marks[0], 0] + x[marks[1], 0]))
    assert torch.equal(ds[3][0], task.dataset("train")[3][0])  # fixed by (seed, split, index)
    assert not torch.equal(ds[3][0], task.dataset("dev")[3][0])  # splits differ


def test_adding_baseline_is_the_variance_of_the_target():
    task = _task("adding", T=10, test_size=4000)
    ys = torch.stack([task.dataset("test")[i][1] for i in range(4000)])
    assert float(((1.0 - ys) ** 2).mean()) == pytest.approx(1 / 6, abs=0.01)  # Var(a+b) = 2/12
    assert task.baselines()["mse"] == pytest.approx(0.1667, abs=1e-4)


def test_adding_metrics_from_stats_by_hand():
    task = _task("adding", T=4)

    class Const(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x):
            return self.p.expand(x.shape[0], 1)

    x = torch.zeros(2, 4, 2)
    y = torch.tensor([1.0, 1.5])
    out = task.step(Const(), (x, y))
    assert out.loss.item() == pytest.approx(((0.5 - 1) ** 2 + (0.5 - 1.5) ** 2) / 2)
    m = task.metrics({k: float(v) for k, v in out.stats.items()})
    assert m["mse"] == pytest.approx(0.625) and m["baseline_mse"] == pytest.approx(0.125)


def test_copy_examples_and_memoryless_baseline():
    task = _task("copy", T=5, copy_length=3)
    x, y = task.dataset("train")[0]
    seq = x.argmax(-1)
    assert x.shape == (5 + 6, 10) and y.shape == (11,)
    assert ((1 <= seq[:3]) & (seq[:3] <= 8)).all()
    assert seq[3:7].tolist() == [0, 0, 0, 0] and seq[7] == 9 and seq[8:].tolist() == [0, 0, 0]
    assert y[:8].tolist() == [0] * 8 and torch.equal(y[8:], seq[:3])
    # memoryless predictor: blank until the delimiter, then uniform over the 8 symbols
    m = task.metrics({"ce": 0, "steps": 1, "correct": 0, "copy_correct": 0, "copy_steps": 1})
    assert m["baseline_ce"] == pytest.approx(3 * math.log(8) / 11)
    assert m["baseline_accuracy"] == pytest.approx((8 + 3 / 8) / 11)
    logits = torch.full((1, 11, 9), -1e9)
    logits[0, :8, 0] = 0
    logits[0, 8:, 1:] = 0
    assert F.cross_entropy(logits[0], y).item() == pytest.approx(m["baseline_ce"], rel=1e-6)


def test_recall_examples():
    task = _task("recall", num_pairs=4)
    x, y = task.dataset("train")[7]
    seq = x.argmax(-1).tolist()
    keys, values = seq[0:8:2], [v - 26 for v in seq[1:8:2]]
    assert len(set(keys)) == 4 and all(k < 26 for k in keys)
    assert seq[8:10] == [36, 36] and seq[10] in keys
    assert int(y) == values[keys.index(seq[10])]


def test_sequence_regressor_matches_a_naive_loop():
    torch.manual_seed(0)
    cfg = MemoryModelConfig(cell="lstm", hidden_size=5, num_layers=2)
    model = SequenceRegressor(2, 1, cfg, every_step=False)
    x = torch.randn(3, 7, 2)
    h = x
    for c in model.encoder.cells():  # naive loop of the LSTM equations, per step
        hs, state_h, state_c = [], torch.zeros(3, 5), torch.zeros(3, 5)
        for t in range(7):
            g = (h[:, t] @ c.weight_ih.T + c.bias_ih + state_h @ c.weight_hh.T + c.bias_hh)
            i, f, gg, o = g.chunk(4, dim=1)
            state_c = torch.sigmoid(f) * state_c + torch.sigmoid(i) * torch.tanh(gg)
            state_h = torch.sigmoid(o) * torch.tanh(state_c)
            hs.append(state_h)
        h = torch.stack(hs, 1)
    ref = h[:, -1] @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), ref)


def test_identity_init_gives_irnn():
    cfg = MemoryModelConfig(cell="elman", hidden_size=4, init="identity",
                            cell_options={"nonlinearity": "relu"})
    model = SequenceRegressor(2, 1, cfg, every_step=False)
    (cell,) = model.encoder.cells()
    assert torch.equal(cell.weight_hh, torch.eye(4)) and (cell.bias_hh == 0).all()
    with pytest.raises(ValueError, match="square weight_hh"):
        SequenceRegressor(2, 1, MemoryModelConfig(cell="lstm", init="identity"), False)


def test_gradient_probe_matches_autograd_of_the_state():
    torch.manual_seed(0)
    task = _task("adding", T=6)
    model = SequenceRegressor(2, 1, MemoryModelConfig(cell="elman", hidden_size=4), False)
    batch = torch.utils.data.default_collate([task.dataset("dev")[i] for i in range(3)])
    norms = task.gradient_probe(model, batch)
    # reference: h_t as explicit leaves of an unrolled Elman loop
    x, y = batch
    (c,) = model.encoder.cells()
    h = torch.zeros(3, 4)
    hs = []
    for t in range(6):
        h = torch.tanh(x[:, t] @ c.weight_ih.T + c.bias_ih + h @ c.weight_hh.T + c.bias_hh)
        h.retain_grad()
        hs.append(h)
    F.mse_loss((h @ model.head.weight.T + model.head.bias).squeeze(-1), y).backward()
    ref = torch.stack([v.grad.norm(dim=-1).mean() for v in hs])
    torch.testing.assert_close(norms, ref)


@pytest.mark.parametrize("name", ["adding", "copy", "recall"])
def test_smoke_training_beats_the_trivial_baseline(name, tmp_path):
    data = {"adding": {"T": 10}, "copy": {"T": 3, "copy_length": 2},
            "recall": {"num_pairs": 2}}[name]
    config = from_dict({
        "task": name,
        "data": {**data, "train_size": 4000, "dev_size": 200, "test_size": 200,
                 "batch_size": 32},
        "model": {"cell": "gru", "hidden_size": 32},
        "optimizer": {"name": "adam", "lr": 0.01, "grad_clip": 1.0},
        "trainer": {"max_epochs": 3, "progress": False, "tensorboard": False},
    })
    r = train(config, tmp_path, quiet=True)
    task = get_task(name)
    main = task.main_metric
    base = r["baselines"][main]
    if task.higher_is_better:
        assert r["test"][main] > base + 0.2
    else:
        assert r["test"][main] < 0.5 * base


def test_chrono_init_sets_forget_and_input_biases():
    torch.manual_seed(0)
    cfg = MemoryModelConfig(cell="lstm", hidden_size=50, init="chrono", chrono_max=100)
    (cell,) = SequenceRegressor(2, 1, cfg, every_step=False).encoder.cells()
    H = 50
    forget, inp = cell.bias_ih[H:2 * H], cell.bias_ih[:H]
    assert (forget >= 0).all() and (forget <= math.log(99) + 1e-6).all()
    assert torch.equal(inp, -forget) and (cell.bias_hh[:2 * H] == 0).all()
    with pytest.raises(ValueError, match="chrono needs an LSTM"):
        SequenceRegressor(2, 1, MemoryModelConfig(cell="elman", init="chrono"), False)
