"""``optimizer.sparse_embedding_lr``: embeddings with sparse gradients under SparseAdam,
the rest under the named optimizer, checkpointed and resumed as one optimizer."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SHARED_DATA
from safetensors.torch import load_file
from torch import nn

from memnets.config import OptimizerConfig
from memnets.tasks.recipes import load_config
from memnets.train import checkpoint as ckpt
from memnets.train import train
from memnets.train.optim import SplitOptimizer, build_optimizer, set_lr


class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.embedding(x).mean(1))


def _steps(model, opt, n=3):
    torch.manual_seed(1)
    for _ in range(n):
        opt.zero_grad()
        model(torch.randint(0, 10, (5, 3))).square().sum().backward()
        opt.step()


def test_split_optimizer_updates_only_looked_up_rows_at_its_own_rate():
    torch.manual_seed(0)
    model = Bag()
    opt = build_optimizer(model, OptimizerConfig(name="adam", lr=0.01, sparse_embedding_lr=0.05))
    assert isinstance(opt, SplitOptimizer) and model.embedding.sparse
    set_lr(opt, 0.005)  # the schedule halves the rate: both halve
    assert [g["lr"] for g in opt.param_groups] == [0.005, pytest.approx(0.025)]
    before = model.embedding.weight.detach().clone()
    opt.zero_grad()
    model(torch.tensor([[1, 2, 2]])).sum().backward()
    assert model.embedding.weight.grad.is_sparse
    opt.step()
    changed = (model.embedding.weight.detach() != before).any(1)
    assert changed.tolist() == [i in (1, 2) for i in range(10)]


def test_split_optimizer_state_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = OptimizerConfig(name="adam", lr=0.01, sparse_embedding_lr=0.05)
    model = Bag()
    opt = build_optimizer(model, cfg)
    _steps(model, opt)
    tensors: dict = {}
    meta = json.loads(json.dumps(ckpt.optimizer_state(opt, tensors)))
    ckpt.save_file(tensors, str(tmp_path / "o.safetensors"))  # as a checkpoint does
    tensors = load_file(str(tmp_path / "o.safetensors"))
    twin = Bag()
    twin.load_state_dict(model.state_dict())
    opt2 = build_optimizer(twin, cfg)
    ckpt.load_optimizer_state(opt2, meta, tensors)
    _steps(model, opt)
    _steps(twin, opt2)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


@pytest.mark.skipif(not (SHARED_DATA / "sst" / "sentences").is_dir(), reason="no SST data")
def test_sentiment_trains_and_resumes_exactly_with_sparse_embeddings(tmp_path):
    sets = [f"data.dir={SHARED_DATA}", "data.download=false", "model.embedding_size=8",
            "model.hidden_size=6", "optimizer.sparse_embedding_lr=5.0e-3",
            "trainer.progress=false", "trainer.tensorboard=false", "data.batch_size=64",
            "data.bucket=true", "trainer.threads=1", "trainer.deterministic=true",
            "trainer.eval_every=null", "trainer.checkpoint_every=3", "trainer.test=false"]
    train(load_config("sst2_lstm", sets + ["trainer.max_steps=6"]), tmp_path / "ref",
          quiet=True)
    train(load_config("sst2_lstm", sets + ["trainer.max_steps=3"]), tmp_path / "cut",
          quiet=True)
    train(load_config("sst2_lstm", sets + ["trainer.max_steps=6"]), tmp_path / "cut",
          resume=True, quiet=True)
    a = load_file(str(ckpt.read_pointer(tmp_path / "ref") / "model.safetensors"))
    b = load_file(str(ckpt.read_pointer(tmp_path / "cut") / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
