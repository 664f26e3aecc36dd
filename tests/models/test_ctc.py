"""The CTC model and loss: the loss against the sum over every alignment, the frames
an alignment needs against enumeration, the front end against plain convolutions,
and padded batches against each utterance alone, over several cells."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from memnets.errors import DataError
from memnets.models.ctc import ConvSubsampling, CTCModel, ctc_loss, min_frames
from memnets.models.ctc_decoding import greedy_decode

torch.set_num_threads(1)


def collapse(path, blank=0):
    return tuple(s for s, _ in itertools.groupby(path) if s != blank)


def brute_nll(log_probs, target, blank=0):
    """-log of the sum, over every path of every frame, of the paths that collapse to target."""
    T, V = log_probs.shape
    lp = log_probs.double().tolist()
    total = sum(math.exp(sum(lp[t][s] for t, s in enumerate(path)))
                for path in itertools.product(range(V), repeat=T)
                if collapse(path, blank) == tuple(target))
    return -math.log(total) if total > 0 else math.inf


def test_ctc_loss_is_minus_log_the_sum_over_alignments():
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(3, 5, 3, generator=g, dtype=torch.float64), -1)
    targets = torch.tensor([[1, 2, 0], [1, 1, 0], [2, 0, 0]])
    target_lengths = torch.tensor([2, 2, 1])
    lengths = torch.tensor([5, 4, 3])
    nll, feasible = ctc_loss(lp, lengths, targets, target_lengths)
    assert feasible.all()
    for n in range(3):
        ref = brute_nll(lp[n, : lengths[n]], targets[n, : target_lengths[n]].tolist())
        assert math.isclose(float(nll[n]), ref, rel_tol=1e-9), n


def test_min_frames_is_the_shortest_alignment_found_by_enumeration():
    for n in range(1, 5):
        for seq in itertools.product((1, 2), repeat=n):
            shortest = next(T for T in range(n, 2 * n + 1)
                            if any(collapse(p) == seq
                                   for p in itertools.product(range(3), repeat=T)))
            got = min_frames(torch.tensor([list(seq)]), torch.tensor([n]))
            assert int(got[0]) == shortest, seq
    flat = min_frames(torch.tensor([1, 1, 2, 2, 2]), torch.tensor([2, 3]))  # CTCLoss's 1-D form
    assert flat.tolist() == [3, 5]


def test_an_utterance_too_short_for_its_labels_is_an_error_or_a_counted_skip():
    lp = torch.log_softmax(torch.randn(2, 3, 4, dtype=torch.float64), -1)
    targets = torch.tensor([[1, 1, 2], [3, 0, 0]])  # "1 1 2" needs 4 frames, has 3
    lengths, target_lengths = torch.tensor([3, 3]), torch.tensor([3, 1])
    with pytest.raises(DataError, match=r"fewer frames than their labels need \(3 < 4\)"):
        ctc_loss(lp, lengths, targets, target_lengths)
    nll, feasible = ctc_loss(lp, lengths, targets, target_lengths, skip_infeasible=True)
    assert feasible.tolist() == [False, True] and float(nll[0]) == 0.0
    assert math.isfinite(float(nll.sum()))
    assert math.isclose(float(nll[1]), brute_nll(lp[1], [3]), rel_tol=1e-9)
    # torch's own answer for the short one is inf: what the skip keeps out of the mean
    raw = F.ctc_loss(lp[:1].transpose(0, 1), targets[:1], lengths[:1], target_lengths[:1],
                     reduction="none")
    assert math.isinf(float(raw[0]))


def reference_subsampling(conv: ConvSubsampling, x):
    """One utterance alone: the convolutions and ReLUs, no masking."""
    y = x[None, None]
    for c in conv.convs:
        y = torch.relu(F.conv2d(y, c.weight, c.bias, stride=2, padding=1))
    return y[0].permute(1, 0, 2).reshape(y.shape[2], -1)


def test_conv_subsampling_is_plain_convolutions_and_ignores_padding():
    torch.manual_seed(0)
    conv = ConvSubsampling(10, 2, 4)
    assert conv.output_size == 4 * 3  # ceil(10 / 4) = 3 features per channel
    xs = [torch.randn(13, 10), torch.randn(7, 10)]
    batch = torch.zeros(2, 13, 10)
    batch[0], batch[1, :7] = xs[0], xs[1]
    out, lengths = conv(batch, torch.tensor([13, 7]))
    assert lengths.tolist() == [4, 2] and out.shape == (2, 4, 12)
    for n, x in enumerate(xs):
        ref = reference_subsampling(conv, x)
        torch.testing.assert_close(out[n, : lengths[n]], ref)
    assert (out[1, 2:] == 0).all()


@pytest.mark.parametrize("cell, subsampling", [("lstm", 4), ("gru", 2), ("scrn", 1),
                                               ("mingru", 8)])
def test_a_padded_batch_gives_each_utterance_its_own_output(cell, subsampling):
    torch.manual_seed(1)
    model = CTCModel(6, 5, 8, cell=cell, num_layers=2, subsampling=subsampling,
                     conv_channels=3, dropout=0.1).eval()
    lengths = torch.tensor([17, 9, 1])
    x = torch.randn(3, 17, 6)
    lp, out_lengths = model(x, lengths)
    assert out_lengths.tolist() == [math.ceil(n / subsampling) for n in (17, 9, 1)]
    assert lp.shape == (3, math.ceil(17 / subsampling), 5)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(lp.shape[:2]))
    for n in range(3):
        alone, k = model(x[n:n + 1, : lengths[n]], lengths[n:n + 1])
        torch.testing.assert_close(lp[n, : out_lengths[n]], alone[0, : k[0]],
                                   rtol=1e-5, atol=1e-5)


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="subsampling in"):
        CTCModel(4, 3, 8, subsampling=3)
    with pytest.raises(ValueError, match="num_symbols >= 2"):
        CTCModel(4, 1, 8)
    m = CTCModel(4, 3, 8)
    with pytest.raises(ValueError, match=r"features of shape \(N, T, 4\), got \(2, 5, 3\)"):
        m(torch.zeros(2, 5, 3), torch.tensor([5, 5]))
    with pytest.raises(ValueError, match=r"values in \[1, 5\]"):
        m(torch.zeros(2, 5, 4), torch.tensor([5, 6]))


def test_smoke_a_tiny_ctc_problem_is_learned():
    """Frames that say their token (with noise) between silent frames: the model learns
    to spike once per token, repeats included, after a few hundred steps."""
    g = torch.Generator().manual_seed(0)
    V = 4  # blank + 3 tokens

    def example():
        tokens = torch.randint(1, V, (int(torch.randint(1, 5, (1,), generator=g)),),
                               generator=g)
        frames = []
        for t in tokens.tolist():
            frames += [0] * int(torch.randint(1, 3, (1,), generator=g)) + [t] * 3
        frames += [0]
        x = F.one_hot(torch.tensor(frames), V).float() + 0.3 * torch.randn(len(frames), V,
                                                                            generator=g)
        return x, tokens

    data = [example() for _ in range(64)]
    torch.manual_seed(0)
    model = CTCModel(V, V, 16, num_layers=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(150):
        batch = [data[(step * 8 + i) % len(data)] for i in range(8)]
        lengths = torch.tensor([len(x) for x, _ in batch])
        x = torch.nn.utils.rnn.pad_sequence([x for x, _ in batch], batch_first=True)
        targets = torch.nn.utils.rnn.pad_sequence([t for _, t in batch], batch_first=True)
        lp, out_len = model(x, lengths)
        nll, _ = ctc_loss(lp, out_len, targets, torch.tensor([len(t) for _, t in batch]))
        opt.zero_grad()
        nll.mean().backward()
        opt.step()
    model.eval()
    right = 0
    with torch.no_grad():
        for x, t in data[:32]:
            lp, n = model(x[None], torch.tensor([len(x)]))
            right += greedy_decode(lp, n)[0] == t.tolist()
    assert right >= 28
