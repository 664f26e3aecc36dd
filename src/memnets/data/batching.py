"""Batching rules, written once for every task: which examples go together, in
which order, on which process.

* :class:`ShardedBatches` — shuffled by ``(seed, epoch)``, sharded across
  processes, able to start mid-epoch.
* :class:`BucketedBatches` — the same contract with batches of similar lengths
  (less padding): shuffle, sort by length within pools of ``pool`` batches, cut,
  shuffle the batches.
* :func:`batchify`, :func:`bptt_segments`, :func:`num_segments` — one long text
  as contiguous streams, read in windows for truncated BPTT (language models).

Both yield, for process ``rank`` of ``world_size``, its share of each global
batch (a list of example indices), so the union over processes is the
single-process batch, and skip the first ``start`` global batches, so a
resumed run sees exactly the batches it would have seen.  The order depends
only on ``(seed, epoch)``: nothing here draws from a global random stream.

This module imports only the standard library and torch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


class ShardedBatches:
    """Batch sampler that shuffles by ``(seed, epoch)``, shards across processes
    and can start mid-epoch.

    Global batch ``b`` is ``order[b*B:(b+1)*B]`` with ``order`` a permutation
    drawn from ``torch.Generator().manual_seed(seed + epoch)`` (as
    ``torch.utils.data.DistributedSampler`` does); process ``r`` of ``W`` takes
    the elements ``r, r+W, ...`` of each global batch, so the union over
    processes is exactly the single-process batch.  Every process yields the
    same number of batches (DDP needs it): with several processes, a last
    global batch smaller than the number of processes is dropped; with one
    process nothing is dropped.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 epoch: int = 0, rank: int = 0, world_size: int = 1, start: int = 0):
        if batch_size < world_size:
            raise ValueError(
                f"expected a global batch size >= the number of processes ({world_size}), "
                f"got {batch_size}"
            )
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start = start

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        B = self.batch_size
        for b in range(self.start, len(self)):
            yield order[b * B:(b + 1) * B][self.rank::self.world_size]

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest >= max(self.world_size, 1) else 0)


class BucketedBatches:
    """Global batches of examples of similar lengths, in an order fixed by
    ``(seed, epoch)``.

    With ``shuffle``: the examples are shuffled, sorted by length within pools of
    ``pool * batch_size``, cut into batches, and the batches shuffled (one
    ``random.Random(seed + epoch)`` for both). Without it, the examples are sorted
    by length, then the same cut. Process ``r`` of ``W`` takes the elements
    ``r, r+W, ...`` of each global batch, and a share that would be empty is
    not yielded.

    Args:
        lengths: the length of each example (its number of tokens).
        batch_size: the global batch size.
        pool: how many batches' worth of examples are sorted together.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                 start: int = 0, pool: int = 50):
        if batch_size < world_size:
            raise ValueError(
                f"expected a global batch size >= the number of processes ({world_size}), "
                f"got {batch_size}"
            )
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start, self.pool = start, pool

    def global_batches(self) -> list[list[int]]:
        n, B, lengths = len(self.lengths), self.batch_size, self.lengths
        order = list(range(n))
        rng = random.Random(self.seed + self.epoch)
        if self.shuffle:
            rng.shuffle(order)
        else:
            order.sort(key=lambda i: lengths[i])
        size = self.pool * B
        batches = []
        for p in range(0, n, size):
            chunk = sorted(order[p:p + size], key=lambda i: lengths[i])
            batches += [chunk[i:i + B] for i in range(0, len(chunk), B)]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self):
        for b, batch in enumerate(self.global_batches()):
            if b < self.start:
                continue
            share = batch[self.rank::self.world_size]
            if share:
                yield share

    def __len__(self) -> int:
        n, size = len(self.lengths), self.pool * self.batch_size
        return sum((min(size, n - p) + self.batch_size - 1) // self.batch_size
                   for p in range(0, n, size))


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """Cut a ``(T,)`` id sequence into ``batch_size`` contiguous streams ``(N, T // N)``.

    Row ``n`` is the ``n``-th contiguous chunk of the text, read left to right
    across consecutive segments, so the state carried for row ``n`` always
    belongs to the same stream.  The ``T mod N`` trailing ids are dropped.
    """
    if ids.dim() != 1:
        raise ValueError(f"expected a 1-d id tensor (T,), got shape {tuple(ids.shape)}")
    if batch_size < 1 or ids.numel() < 2 * batch_size:
        raise ValueError(
            f"expected at least 2 * batch_size = {2 * batch_size} ids, got {ids.numel()}"
        )
    width = ids.numel() // batch_size
    return ids[: width * batch_size].view(batch_size, width)  # (N, T // N)


def bptt_segments(streams: Tensor, bptt: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive windows for truncated backpropagation through time.

    Yields ``(x, y)`` with ``x = streams[:, i:i+l]`` and ``y = streams[:, i+1:i+1+l]``
    (both ``(N, l)``, ``l = bptt`` except possibly the last), for
    ``i = 0, bptt, 2 bptt, ...``; every id but the first of each stream is a
    target exactly once.
    """
    if bptt < 1:
        raise ValueError(f"expected bptt >= 1, got {bptt}")
    width = streams.shape[1]
    for i in range(0, width - 1, bptt):
        l = min(bptt, width - 1 - i)
        yield streams[:, i : i + l], streams[:, i + 1 : i + 1 + l]


def num_segments(streams: Tensor, bptt: int) -> int:
    """How many windows :func:`bptt_segments` yields."""
    return -(-(streams.shape[1] - 1) // bptt)
