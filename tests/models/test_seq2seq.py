"""Seq2Seq (memnets.models.seq2seq) against a plain loop of its equations in float64
(every attention style and score, LSTM and GRU cells, deep decoders, the bridge,
reversed sources, tied embeddings), a padded batch against each example alone,
gradients through every attention kind × {lstm, gru}, scheduled sampling, and
the decoder step that beam search runs against teacher forcing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from memnets.errors import ConfigError
from memnets.layers.pooling import pool
from memnets.models.decoding import beam_search, greedy_search
from memnets.models.seq2seq import Seq2Seq

SV, TV, E, H = 11, 13, 5, 6


def make(seed=0, **kw):
    torch.manual_seed(seed)
    options = dict(embedding_size=E, hidden_size=H, cell="lstm", bidirectional=True,
                   attention="bahdanau")
    options.update(kw)
    return Seq2Seq(SV, TV, **options).double()


def batch(seed=1, N=3, S=(5, 2, 4), T=4):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(S[:N])
    src = torch.randint(2, SV, (N, int(lengths.max())), generator=g)
    for i, n in enumerate(lengths.tolist()):
        src[i, n:] = 0
    tin = torch.randint(2, TV, (N, T), generator=g)
    return src, lengths, tin


# ---------------------------------------------------------------------- the reference


def lstm_step(cell, x, h, c):
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = gates.chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(cell, x, h):
    a, b = x @ cell.weight_ih.T + cell.bias_ih, h @ cell.weight_hh.T + cell.bias_hh
    ar, az, an = a.chunk(3, -1)
    br, bz, bn = b.chunk(3, -1)
    r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
    n = torch.tanh(an + r * bn)
    return (1 - z) * n + z * h


def score(att, q, keys):
    """score(q, k_j) for every j, by kind: q (D_q,), keys (S, D_k) -> (S,)."""
    if att.kind == "additive":
        return torch.tanh(att.query_proj(q) + keys @ att.key_proj.weight.T) @ att.v
    if att.kind == "dot":
        return keys @ q
    if att.kind == "general":
        return keys @ (att.weight.T @ q)
    qk = torch.cat([q.expand(len(keys), -1), keys], -1)
    return torch.tanh(qk @ att.weight.T + att.bias) @ att.v


def reference_logits(model, src, lengths, tin):
    """Each example alone, every step written out from the paper's equations."""
    dec = model.decoder
    out = []
    for n in range(len(src)):
        S = int(lengths[n])
        x = src[n, :S]
        if model.reverse_source:
            x = x.flip(0)
        enc, _ = model.encoder(model.source_embedding(x)[None])  # (1, S, D) one example
        z = pool(enc, torch.tensor([S]), "last", bidirectional=model.bidirectional)[0]
        memory = enc[0].flip(0) if model.reverse_source else enc[0]
        if dec.memory_proj is not None:
            memory = memory @ dec.memory_proj.weight.T
        states = []
        for k, cell in enumerate(dec.cells):
            if dec.bridge is not None:
                states.append([torch.tanh(m(z)) for m in dec.bridge[k]])
            else:
                states.append([torch.zeros(H, dtype=z.dtype) for _ in cell.init_state(1)])
        s_prev = states[-1][0]
        feed = torch.zeros(dec.readout_size, dtype=z.dtype)
        rows = []
        for t in range(tin.shape[1]):
            e = dec.embedding.weight[tin[n, t]]
            if dec.style == "bahdanau":
                a = torch.softmax(score(model.attention, s_prev, memory), 0)
                ctx = a @ memory
                inp = torch.cat([e, ctx])
            elif dec.input_feeding:
                inp = torch.cat([e, feed])
            elif dec.feed_context:
                inp = torch.cat([e, z])
            else:
                inp = e
            for k, cell in enumerate(dec.cells):
                if len(states[k]) == 2:
                    h, c = lstm_step(cell, inp, *states[k])
                    states[k] = [h, c]
                else:
                    h = gru_step(cell, inp, states[k][0])
                    states[k] = [h]
                inp = h
            s_prev = h
            if dec.style == "luong":
                a = torch.softmax(score(model.attention, h, memory), 0)
                ctx = a @ memory
                o = torch.tanh(dec.readout.weight @ torch.cat([ctx, h]))
                feed = o
            elif dec.style == "bahdanau":
                o = torch.tanh(dec.readout(torch.cat([h, ctx, e])))
            elif dec.readout is not None:
                parts = [h, z, e] if dec.feed_context else [h]
                o = torch.tanh(dec.readout(torch.cat(parts)))
            else:
                o = h
            rows.append(dec.generator(o))
        out.append(torch.stack(rows))
    return torch.stack(out)


CASES = [
    dict(attention="none"),
    dict(attention="none", feed_context=True, reverse_source=True, bidirectional=False),
    dict(attention="none", tie_embeddings=True, bridge="none"),
    dict(attention="bahdanau"),
    dict(attention="bahdanau", score="general", decoder_layers=2, encoder_layers=2),
    dict(attention="luong", score="general"),
    dict(attention="luong", score="dot"),
    dict(attention="luong", score="dot", bidirectional=False),
    dict(attention="luong", score="concat", input_feeding=False, reverse_source=True),
    dict(attention="luong", score="additive", tie_embeddings=True),
]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_teacher_forcing_equals_a_plain_loop_of_the_equations(case, cell):
    model = make(cell=cell, **case).eval()
    src, lengths, tin = batch()
    logits, attention = model(src, lengths, tin)
    assert logits.shape == (3, 4, TV) and attention.shape == (3, 4, 5)
    ref = reference_logits(model, src, lengths, tin)
    assert torch.allclose(logits, ref, atol=1e-10), (logits - ref).abs().max()
    if case["attention"] != "none":
        assert torch.allclose(attention.sum(-1), torch.ones(3, 4, dtype=torch.float64))
        assert attention[1, :, 2:].abs().max() == 0  # padding gets no weight
    else:
        assert attention.abs().max() == 0


@pytest.mark.parametrize("case", CASES[1::2], ids=lambda c: c["attention"])
def test_a_padded_batch_equals_each_example_alone(case):
    model = make(seed=3, **case).eval()
    src, lengths, tin = batch(seed=5, N=3, S=(2, 6, 3), T=5)
    logits, attention = model(src, lengths, tin)
    for n in range(3):
        S = int(lengths[n])
        one, att = model(src[n:n + 1, :S], lengths[n:n + 1], tin[n:n + 1])
        assert torch.allclose(logits[n], one[0], atol=1e-12)
        assert torch.allclose(attention[n, :, :S], att[0], atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("style,kind", [("bahdanau", "additive"), ("bahdanau", "concat"),
                                        ("luong", "dot"), ("luong", "general"),
                                        ("luong", "concat"), ("none", None)])
def test_gradients_reach_every_parameter(style, kind, cell):
    model = make(cell=cell, attention=style, score=kind, dropout=0.2, embedding_dropout=0.1,
                 decoder_layers=2).train()
    src, lengths, tin = batch()
    logits, _ = model(src, lengths, tin)
    F.cross_entropy(logits.reshape(-1, TV), tin.roll(-1, 1).reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if not name.startswith(("source_embedding", "decoder.embedding")):
            assert p.grad.abs().max() > 0, name


def test_tied_embeddings_share_one_tensor_and_dropout_is_off_in_eval():
    model = make(tie_embeddings=True, dropout=0.5, embedding_dropout=0.5)
    assert model.decoder.generator.weight is model.decoder.embedding.weight
    src, lengths, tin = batch()
    model.eval()
    a, _ = model(src, lengths, tin)
    b, _ = model(src, lengths, tin)
    assert torch.equal(a, b)
    model.train()
    c, _ = model(src, lengths, tin)
    assert not torch.allclose(a, c)


def test_scheduled_sampling_feeds_the_model_its_own_tokens():
    model = make(attention="luong").train()
    src, lengths, tin = batch()
    torch.manual_seed(0)
    plain, _ = model(src, lengths, tin, sample_prob=0.0)
    other = tin.clone()
    other[:, 1:] = (other[:, 1:] + 1) % TV
    torch.manual_seed(0)
    a, _ = model(src, lengths, tin, sample_prob=1.0)
    torch.manual_seed(0)
    b, _ = model(src, lengths, other, sample_prob=1.0)
    # every input after the first is drawn from the model: the targets given do not matter
    assert torch.allclose(a, b) and not torch.allclose(a, plain)
    model.eval()  # never in evaluation
    assert torch.allclose(model(src, lengths, tin, sample_prob=1.0)[0],
                          model(src, lengths, tin)[0])


@torch.no_grad()
def test_search_scores_equal_teacher_forced_log_probabilities():
    model = make(attention="luong", score="general", seed=4).eval()
    src, lengths, _ = batch(seed=2)
    step = model.search_step(banned=(0,))
    hyps = beam_search(step, model.start(src, lengths), batch_size=3, beam_size=3, bos=2,
                       eos=3, max_length=6)
    greedy = greedy_search(step, model.start(src, lengths), batch_size=3, bos=2, eos=3,
                           max_length=6)
    for n in range(3):
        for h in (hyps[n][0], greedy[n]):
            out = h.tokens + ([3] if h.finished else [])
            tin = torch.tensor([[2, *out[:-1]]]) if out else torch.tensor([[2]])
            S = int(lengths[n])
            logits, att = model(src[n:n + 1, :S], lengths[n:n + 1], tin)
            lp = torch.log_softmax(logits[0], -1)
            lp[:, 0] = float("-inf")
            assert h.score == pytest.approx(float(lp[range(len(out)), out].sum()), abs=1e-9)
            assert torch.allclose(h.attention[:, :S].double(), att[0].double(), atol=1e-6)
        assert hyps[n][0].score >= greedy[n].score - 1e-9


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="attention"):
        make(attention="local")
    with pytest.raises(ConfigError, match="score"):
        make(attention="none", score="dot")
    model = make()
    with pytest.raises(ValueError, match="source_lengths"):
        model(torch.ones(2, 3, dtype=torch.long), torch.tensor([4, 1]),
              torch.ones(2, 2, dtype=torch.long))
