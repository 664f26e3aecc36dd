"""Captioner (memnets.models.captioning) against a per-example loop of Show, attend and tell's
equations in float64 (additive and general scores, the gating scalar on and off, LSTM and GRU,
two layers) and of Show and tell's, with the weights read from the model; attention that sums
to one over the grid and masks no cell; beam search of width 1 equal to greedy and search scores
equal to teacher forcing; the doubly stochastic penalty on a case worked by hand; gradcheck in
float64; the decoder's own argument checks (memnets.models.decoder)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memnets.errors import ConfigError
from memnets.models.captioning import Captioner, doubly_stochastic_penalty
from memnets.models.decoder import AttentionDecoder
from memnets.models.decoding import beam_search, greedy_search

V, E, H = 11, 5, 6
CHANNELS = (4, 3)  # 12 x 10 images -> a 3 x 3 grid of 3 + 2 features


def make(seed=0, **kw):
    torch.manual_seed(seed)
    options = dict(channels=CHANNELS, embedding_size=E, hidden_size=H)
    options.update(kw)
    model = Captioner(V, **options).double()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # batch norm statistics away from the identity
        for norm in model.encoder.norms:
            norm.running_mean.normal_(0, 0.3, generator=g)
            norm.running_var.uniform_(0.5, 1.5, generator=g)
    return model


def batch(seed=1, N=3, T=4):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(N, 3, 12, 10, generator=g, dtype=torch.float64)
    tin = torch.randint(2, V, (N, T), generator=g)
    return images, tin


# ---------------------------------------------------------------------- the reference


def lstm_step(cell, x, h, c):
    gates = cell.weight_ih @ x + cell.bias_ih + cell.weight_hh @ h + cell.bias_hh
    i, f, g, o = gates.chunk(4)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(cell, x, h):
    a, b = cell.weight_ih @ x + cell.bias_ih, cell.weight_hh @ h + cell.bias_hh
    ar, az, an = a.chunk(3)
    br, bz, bn = b.chunk(3)
    r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
    return (1 - z) * torch.tanh(an + r * bn) + z * h


def score(att, h, a_i):
    """e_ti for one cell: Xu et al.'s MLP (additive) or Luong's general score."""
    if att.kind == "additive":
        return att.v @ torch.tanh(att.query_proj.weight @ h + att.query_proj.bias
                                  + att.key_proj.weight @ a_i)
    assert att.kind == "general"
    return h @ att.weight @ a_i


@torch.no_grad()
def reference(model, images, tin):
    """Each example alone, each step and each grid cell written out."""
    dec = model.decoder
    soft = model.attention_style == "soft"
    grids = model.encoder(images)  # (N, S, D): the annotation vectors (tested on their own)
    logits, attention = [], []
    for n in range(len(images)):
        a = grids[n]  # (S, D)
        S = len(a)
        mean = sum(a[i] for i in range(S)) / S
        states = [[torch.tanh(m.weight @ mean + m.bias) for m in dec.bridge[k]]
                  for k in range(len(dec.cells))]
        h_prev = states[-1][0]
        rows, alphas = [], []
        for t in range(tin.shape[1]):
            e = dec.embedding.weight[tin[n, t]]
            if soft:
                scores = torch.stack([score(dec.attention, h_prev, a[i]) for i in range(S)])
                weights = torch.exp(scores) / torch.exp(scores).sum()
                z = sum(weights[i] * a[i] for i in range(S))
                if dec.gate is not None:
                    z = torch.sigmoid(dec.gate.weight[0] @ h_prev + dec.gate.bias[0]) * z
                x = torch.cat([e, z])
            else:
                weights = torch.zeros(S, dtype=torch.float64)
                x = e
            for k, cell in enumerate(dec.cells):
                if len(states[k]) == 2:
                    states[k] = list(lstm_step(cell, x, *states[k]))
                else:
                    states[k] = [gru_step(cell, x, states[k][0])]
                x = states[k][0]
            h_prev = x
            o = torch.tanh(dec.readout.weight @ torch.cat([x, z, e]) + dec.readout.bias) \
                if soft else x
            rows.append(dec.generator.weight @ o + dec.generator.bias)
            alphas.append(weights)
        logits.append(torch.stack(rows))
        attention.append(torch.stack(alphas))
    return torch.stack(logits), torch.stack(attention)


CASES = [
    dict(),  # Xu et al.: soft additive attention with the gating scalar, LSTM
    dict(gate=False),
    dict(kernel_size=5, image_dropout=0.3),  # eval: no dropout; wider cells, same grid
    dict(cell="gru"),
    dict(score="general", num_layers=2),
    dict(coordinates=False, cell="gru", num_layers=2, gate=False),
    dict(attention="none"),  # Vinyals et al.
    dict(attention="none", cell="gru", num_layers=2),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())
                         or "show-attend-tell")
def test_teacher_forcing_equals_a_loop_of_the_papers_equations(case):
    model = make(**case).eval()
    images, tin = batch()
    logits, attention = model(images, tin)
    assert logits.shape == (3, 4, V) and attention.shape == (3, 4, 9)
    ref_logits, ref_attention = reference(model, images, tin)
    assert torch.allclose(logits, ref_logits, atol=1e-10), (logits - ref_logits).abs().max()
    assert torch.allclose(attention, ref_attention, atol=1e-12)
    if case.get("attention") == "none":
        assert attention.abs().max() == 0 and model.decoder.attention is None
        assert model.decoder.gate is None  # gate and score are ignored without attention
    else:
        # a distribution over the whole grid: sums to one, no cell masked out
        assert torch.allclose(attention.sum(-1), torch.ones(3, 4, dtype=torch.float64))
        assert attention.min() > 0


def test_a_batch_equals_each_image_alone():
    model = make(seed=2).eval()
    images, tin = batch(seed=3, N=4, T=5)
    logits, attention = model(images, tin)
    for n in range(4):
        one, att = model(images[n:n + 1], tin[n:n + 1])
        assert torch.allclose(logits[n], one[0], atol=1e-12)
        assert torch.allclose(attention[n], att[0], atol=1e-12)


@torch.no_grad()
@pytest.mark.parametrize("attention", ["soft", "none"])
def test_beam_of_one_is_greedy_and_scores_equal_teacher_forcing(attention):
    model = make(seed=4, attention=attention).eval()
    images, _ = batch(seed=5, N=4)
    step = model.search_step(banned=(0, 2))
    greedy = greedy_search(step, model.start(images), batch_size=4, bos=2, eos=3, max_length=6)
    beam1 = beam_search(step, model.start(images), batch_size=4, beam_size=1, bos=2, eos=3,
                        max_length=6)
    beam3 = beam_search(step, model.start(images), batch_size=4, beam_size=3, bos=2, eos=3,
                        max_length=6)
    for n in range(4):
        g, b = greedy[n], beam1[n][0]
        assert g.tokens == b.tokens and g.finished == b.finished
        assert g.score == pytest.approx(b.score, abs=1e-9)
        assert torch.allclose(g.attention, b.attention)
        assert beam3[n][0].score >= g.score - 1e-9
        for h in (g, beam3[n][0]):  # the search's score is the teacher-forced log-probability
            out = h.tokens + ([3] if h.finished else [])
            tin = torch.tensor([[2, *out[:-1]]])
            logits, att = model(images[n:n + 1], tin)
            lp = torch.log_softmax(logits[0], -1)
            lp[:, [0, 2]] = float("-inf")
            assert h.score == pytest.approx(float(lp[range(len(out)), out].sum()), abs=1e-9)
            assert torch.allclose(h.attention.double(), att[0], atol=1e-6)


def test_doubly_stochastic_penalty_worked_by_hand():
    # example 0: steps [0.5, 0.5] and [0.2, 0.8]: column sums 0.7, 1.3 -> 0.09 + 0.09 = 0.18
    # example 1: steps [1.0, 0.0] and (padding) [0.6, 0.4]: sums 1.0, 0.0 -> 0 + 1 = 1.0
    attention = torch.tensor([[[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.6, 0.4]]],
                             dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    penalty = doubly_stochastic_penalty(attention, mask)
    assert penalty.item() == pytest.approx((0.18 + 1.0) / 2)
    assert doubly_stochastic_penalty(attention, mask.double()).item() == pytest.approx(0.59)
    penalty.backward()
    # d/d alpha_ti = -2 (1 - sum_t alpha_ti) / N at real steps, 0 at padding
    expected = torch.tensor([[[-0.3, 0.3], [-0.3, 0.3]], [[0.0, -1.0], [0.0, 0.0]]],
                            dtype=torch.float64)
    assert torch.allclose(attention.grad, expected)
    # a caption that attends to every cell exactly once in all pays nothing
    perm = torch.eye(3, dtype=torch.float64)[None]
    assert doubly_stochastic_penalty(perm, torch.ones(1, 3, dtype=torch.bool)).item() == 0
    with pytest.raises(ValueError, match=r"target_mask of shape \(2, 2\)"):
        doubly_stochastic_penalty(attention, mask[:, :1])
    with pytest.raises(ValueError, match=r"attention of shape \(N, T, S\)"):
        doubly_stochastic_penalty(attention[0], mask)


def test_gradcheck_float64_through_images_and_the_penalty():
    model = make(seed=6, channels=(2,), hidden_size=3, embedding_size=2).eval()
    images = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    tin = torch.tensor([[2, 5, 7], [2, 4, 4]])
    mask = torch.tensor([[True, True, True], [True, True, False]])

    def f(x):
        logits, attention = model(x, tin)
        return logits, doubly_stochastic_penalty(attention, mask)

    assert torch.autograd.gradcheck(f, (images,), eps=1e-6, atol=1e-6)


def test_gradients_reach_every_parameter_in_training():
    model = make(seed=7, dropout=0.2, num_layers=2).train()
    images, tin = batch()
    logits, attention = model(images, tin)
    loss = F.cross_entropy(logits.reshape(-1, V), tin.roll(-1, 1).reshape(-1))
    (loss + doubly_stochastic_penalty(attention, torch.ones_like(tin, dtype=torch.bool))
     ).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="attention"):
        Captioner(V, attention="hard")
    with pytest.raises(ConfigError, match="score"):
        Captioner(V, score="nearest")
    model = make()
    with pytest.raises(ValueError, match=r"images of shape \(N, 3, H, W\)"):
        model(torch.rand(2, 1, 12, 10, dtype=torch.float64), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target ids of shape \(2, T\)"):
        model(torch.rand(2, 3, 12, 10, dtype=torch.float64), torch.ones(3, 3, dtype=torch.long))


def test_the_decoder_checks_its_memory_and_options():
    with pytest.raises(ConfigError, match="gate"):
        AttentionDecoder(V, memory_size=4, summary_size=4, embedding_size=E, hidden_size=H,
                         attention="luong", gate=True)
    with pytest.raises(ConfigError, match=r"embedding: expected an nn.Embedding of shape"):
        AttentionDecoder(V, memory_size=4, summary_size=4, embedding_size=E, hidden_size=H,
                         embedding=nn.Embedding(V, E + 1))
    shared = nn.Embedding(V, E)
    dec = AttentionDecoder(V, memory_size=4, summary_size=3, embedding_size=E, hidden_size=H,
                           embedding=shared, tie_embeddings=True)
    assert dec.embedding is shared and dec.generator.weight is shared.weight
    memory, summary = torch.rand(2, 5, 4), torch.rand(2, 3)
    mask = torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"memory of shape \(N, S, 4\)"):
        dec.start(torch.rand(2, 5, 3), mask, summary)
    with pytest.raises(ValueError, match=r"bool mask of shape \(2, 5\)"):
        dec.start(memory, mask.long(), summary)
    with pytest.raises(ValueError, match=r"summary of shape \(2, 3\)"):
        dec.start(memory, mask, torch.rand(2, 4))
    # a masked memory position gets no weight and changes nothing
    mask[1, 3:] = False
    logits, attention = dec(memory, mask, summary, torch.tensor([[2, 4], [2, 5]]))
    assert attention[1, :, 3:].abs().max() == 0
    assert torch.allclose(attention.sum(-1), torch.ones(2, 2))
    other = memory.clone()
    other[1, 3:] = 100.0
    assert torch.equal(dec(other, mask, summary, torch.tensor([[2, 4], [2, 5]]))[0], logits)
    assert torch.isfinite(logits).all()
