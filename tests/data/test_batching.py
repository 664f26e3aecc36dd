"""The batching rules of memnets.data.batching, used by every task."""

from __future__ import annotations

import random

import pytest

from memnets.config import ConfigError
from memnets.data.batching import BucketedBatches, ShardedBatches
from memnets.tasks.recipes import load_config
from memnets.train import train


def _reference(lengths, batch_size, shuffle, seed, pool=50):
    """The rule written out: shuffle, sort by length in pools, cut, shuffle batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    else:
        order.sort(key=lambda i: lengths[i])
    out = []
    for p in range(0, len(order), pool * batch_size):
        chunk = sorted(order[p:p + pool * batch_size], key=lambda i: lengths[i])
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(out)
    return out


@pytest.mark.parametrize("shuffle", [False, True])
def test_bucketed_batches_follow_the_rule_and_shard_like_sharded_batches(shuffle):
    lengths = [random.Random(i).randint(1, 40) for i in range(1003)]
    got = list(BucketedBatches(lengths, 7, shuffle=shuffle, seed=3, epoch=2, pool=5))
    assert got == _reference(lengths, 7, shuffle, seed=5, pool=5)
    assert len(BucketedBatches(lengths, 7, pool=5)) == len(got)
    assert sorted(i for b in got for i in b) == list(range(1003))  # every example once
    shares = [list(BucketedBatches(lengths, 7, shuffle=shuffle, seed=3, epoch=2, pool=5,
                                   rank=r, world_size=2)) for r in range(2)]
    assert [sorted(a + b) for a, b in zip(*shares)] == [sorted(b) for b in got]
    later = list(BucketedBatches(lengths, 7, shuffle=shuffle, seed=3, epoch=2, pool=5, start=4))
    assert later == got[4:]  # a resumed run sees the same batches
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in got]
    assert sum(spread) / len(spread) < 10  # similar lengths (unsorted: ~30)


def test_sharded_batches_are_unchanged():
    one = list(ShardedBatches(17, 8, shuffle=True, seed=3, epoch=2))
    assert sorted(i for b in one for i in b) == list(range(17))


def test_bucketing_a_task_without_lengths_is_a_configuration_error(tmp_path):
    config = load_config("adding", ["data.bucket=true", "trainer.max_steps=2",
                                    "data.train_size=32", "data.dev_size=8",
                                    "data.test_size=8", "trainer.progress=false"])
    with pytest.raises(ConfigError, match="data.bucket: task 'adding' cannot batch by length"):
        train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoints").exists()
