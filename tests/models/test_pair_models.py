"""Sentence-pair models against per-example loops of their papers' equations.

Each reference below reads one pair at a time, one word at a time, in float64,
with the model's weights copied in: an LSTM step, an LSTMN step (Cheng et al.
eq. 4–9), Rocktäschel et al.'s word-by-word attention, Wang & Jiang's
match-LSTM, Cheng et al.'s inter-attention and deep fusion (eq. 10–15).
"""

from __future__ import annotations

import doctest
import itertools
import math
import time

import pytest
import torch

import memnets.models.pair
from memnets.errors import ConfigError
from memnets.models.pair import (
    ARCHITECTURES,
    PairModel,
    expected_relatedness,
    relatedness_target,
)

V, E, H = 9, 3, 4
ATTENTIVE = [a for a in ARCHITECTURES if a != "features"]


# --- reference steps -----------------------------------------------------------------


def sig(x):
    return torch.sigmoid(x)


def lstm_step(W_ih, W_hh, b, x, h, c):
    """One LSTM step, gates i, f, g, o: the LSTM's equations."""
    i, f, g, o = (W_ih @ x + W_hh @ h + b).chunk(4)
    c = sig(f) * c + sig(i) * torch.tanh(g)
    return sig(o) * torch.tanh(c), c


def run_lstm(layer, xs, h=None, c=None):
    """A one-layer fused LSTM layer's weights (torch.nn names) over the rows of ``xs``."""
    W_ih, W_hh = layer.weight_ih_l0, layer.weight_hh_l0
    b = layer.bias_ih_l0 + layer.bias_hh_l0
    h = torch.zeros(W_hh.shape[1], dtype=xs.dtype) if h is None else h
    c = torch.zeros_like(h) if c is None else c
    out = []
    for x in xs:
        h, c = lstm_step(W_ih, W_hh, b, x, h, c)
        out.append(h)
    return torch.stack(out), h, c


def softmax(scores):
    m = max(float(s) for s in scores)
    e = torch.stack([torch.exp(s - m) for s in scores])
    return e / e.sum()


def additive_scores(v, W_k, W_q, keys, query):
    """v . tanh(W_k k_j + W_q q) for every key row k_j."""
    return [v @ torch.tanh(W_k @ k + W_q @ query) for k in keys]


class LSTMNRef:
    """The LSTMN step (Cheng et al. eq. 4–9) over a growing tape, slot 0 the zero state;
    with ``deep`` the fused memory of eq. 13–14."""

    def __init__(self, cell, deep=False):
        self.cell, self.deep = cell, deep
        H = cell.hidden_size
        zero = torch.zeros(H, dtype=torch.float64)
        self.hs, self.cs, self.h_tilde = [zero], [zero], zero

    def step(self, x, gamma=None, alpha=None):
        k = self.cell
        a = [k.attn_v @ torch.tanh(k.attn_weight_h @ h_i + k.attn_weight_x @ x
                                   + k.attn_weight_tilde @ self.h_tilde) for h_i in self.hs]
        s = softmax(a)
        self.h_tilde = sum(s_i * h_i for s_i, h_i in zip(s, self.hs))
        c_tilde = sum(s_i * c_i for s_i, c_i in zip(s, self.cs))
        i, f, g, o = (k.weight_ih @ x + k.weight_hh @ self.h_tilde + k.bias).chunk(4)
        c = sig(f) * c_tilde + sig(i) * torch.tanh(g)
        if self.deep:
            r = sig(k.weight_r @ torch.cat([gamma, x]) + k.bias_r)
            c = r * alpha + c
        h = sig(o) * torch.tanh(c)
        self.hs.append(h)
        self.cs.append(c)
        return h


# --- per-example references of each architecture ------------------------------------------


def ref_features(m, P, Q):
    body = m.body
    u = run_lstm(body.premise_encoder, P)[0].mean(0)
    v = run_lstm(body.hypothesis_encoder, Q)[0].mean(0)
    z = torch.tanh(body.mlp.weight @ torch.cat([u, v, (u - v).abs(), u * v]) + body.mlp.bias)
    return z, None


def ref_conditional(m, P, Q):
    body = m.body
    Y, h, c = run_lstm(body.premise_encoder, P)
    hs, _, _ = run_lstm(body.hypothesis_encoder, Q, h, c)
    att = body.attention
    k = Y.shape[1]
    W_y, w = att.key_proj.weight, att.v
    W_h, W_r = att.query_proj.weight[:, :k], att.query_proj.weight[:, k:]
    r = torch.zeros(k, dtype=torch.float64)
    alphas = []
    for h_t in hs:
        M = torch.tanh(W_y @ Y.t() + (W_h @ h_t + W_r @ r).unsqueeze(1))  # (k, L)
        alpha = softmax(list(w @ M))
        r = Y.t() @ alpha + torch.tanh(body.W_t.weight @ r)
        alphas.append(alpha)
    h_star = torch.tanh(body.W_p.weight @ r + body.W_x.weight @ hs[-1])
    return h_star, torch.stack(alphas)


def ref_match_lstm(m, P, Q):
    body = m.body
    hs = run_lstm(body.premise_encoder, P)[0]
    ht = run_lstm(body.hypothesis_encoder, Q)[0]
    att, cell = body.attention, body.matcher
    d = hs.shape[1]
    W_s, w_e = att.key_proj.weight, att.v
    W_t, W_m = att.query_proj.weight[:, :d], att.query_proj.weight[:, d:]
    hm = torch.zeros(cell.hidden_size, dtype=torch.float64)
    cm = torch.zeros_like(hm)
    alphas = []
    for ht_k in ht:
        e = [w_e @ torch.tanh(W_s @ hs_j + W_t @ ht_k + W_m @ hm) for hs_j in hs]
        alpha = softmax(e)
        a_k = sum(a * hs_j for a, hs_j in zip(alpha, hs))
        m_k = ([a_k, ht_k] if body.matching == "concat"
               else [a_k, ht_k, a_k - ht_k, a_k * ht_k])
        hm, cm = lstm_step(cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh,
                           torch.cat(m_k), hm, cm)
        alphas.append(alpha)
    return hm, torch.stack(alphas)


def ref_lstmn(m, P, Q, deep):
    body = m.body
    premise = LSTMNRef(body.premise_reader.cell)
    gamma = torch.stack([premise.step(x) for x in P])  # hidden tape (L, H)
    alpha = torch.stack(premise.cs[1:])  # memory tape (L, H)
    att = body.inter_attention
    W_g, u = att.key_proj.weight, att.v
    width = Q.shape[1]  # E, or E + 1 with the exact-match feature
    W_x, W_gt = att.query_proj.weight[:, :width], att.query_proj.weight[:, width:]
    reader = LSTMNRef(body.hypothesis_reader.cell, deep=deep)
    g_read = torch.zeros(H, dtype=torch.float64)
    hs, ps = [], []
    for x in Q:
        p = softmax([u @ torch.tanh(W_g @ g_j + W_x @ x + W_gt @ g_read) for g_j in gamma])
        a_read = sum(p_j * a_j for p_j, a_j in zip(p, alpha))
        g_read = sum(p_j * g_j for p_j, g_j in zip(p, gamma))
        hs.append(reader.step(x, g_read, a_read) if deep else reader.step(torch.cat([x, g_read])))
        ps.append(p)
    joined = torch.cat([gamma.mean(0), torch.stack(hs).mean(0)])
    return torch.relu(body.mlp.weight @ joined + body.mlp.bias), torch.stack(ps)


REFERENCES = {
    "features": ref_features,
    "conditional": ref_conditional,
    "match_lstm": ref_match_lstm,
    "lstmn_shallow": lambda m, P, Q: ref_lstmn(m, P, Q, deep=False),
    "lstmn_deep": lambda m, P, Q: ref_lstmn(m, P, Q, deep=True),
}


def make_model(architecture, *, cell="lstm", heads=None, seed=0, **options):
    torch.manual_seed(seed)
    pooling = "mean" if architecture in ("features", "lstmn_shallow", "lstmn_deep") else "max"
    options.setdefault("pooling", pooling)
    m = PairModel(V, E, H, architecture=architecture, cell=cell,
                  heads=heads or {"entailment": 3, "relatedness": 5}, **options)
    m = m.double().eval()
    with torch.no_grad():  # every weight random (biases too, and the padding row:
        for p in m.parameters():  # padded positions must be ignored, not zero)
            p.uniform_(-0.7, 0.7)
    return m


def pair_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lp, lq = torch.tensor([5, 2, 4, 1]), torch.tensor([3, 4, 1, 2])
    premise = torch.randint(1, V, (4, 6), generator=g)  # wider than the longest premise
    hypothesis = torch.randint(1, V, (4, 4), generator=g)
    for n in range(4):
        premise[n, lp[n]:] = 0
        hypothesis[n, lq[n]:] = 0
    return premise, lp, hypothesis, lq


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_matches_a_per_example_loop_of_its_equations(architecture, shared):
    m = make_model(architecture, shared=shared)
    premise, lp, hypothesis, lq = pair_batch()
    out = m(premise, lp, hypothesis, lq, return_attention=True)
    emb = m.embedding.weight
    with torch.no_grad():
        for n in range(4):
            P, Q = emb[premise[n, :lp[n]]], emb[hypothesis[n, :lq[n]]]
            z, weights = REFERENCES[architecture](m, P, Q)
            for name, head in m.heads.items():
                torch.testing.assert_close(out[name][n], head.weight @ z + head.bias)
            if weights is None:
                assert out["attention"] is None
            else:
                got = out["attention"][n]
                torch.testing.assert_close(got[:lq[n], :lp[n]], weights)
                assert torch.count_nonzero(got[lq[n]:]) == 0
                assert torch.count_nonzero(got[:, lp[n]:]) == 0


@pytest.mark.parametrize("architecture, cell", [
    (a, c) for a in ARCHITECTURES
    for c in (["lstm", "gru", "mingru"] if not a.startswith("lstmn") else ["lstmn"])])
def test_a_padded_batch_equals_each_pair_run_alone(architecture, cell):
    m = make_model(architecture, cell=cell, shared=False, pooling="max")
    premise, lp, hypothesis, lq = pair_batch(1)
    out = m(premise, lp, hypothesis, lq, return_attention=True)
    for n in range(4):
        alone = m(premise[n:n + 1, :lp[n]], lp[n:n + 1], hypothesis[n:n + 1, :lq[n]],
                  lq[n:n + 1], return_attention=True)
        for name in m.heads:
            torch.testing.assert_close(out[name][n:n + 1], alone[name])
        if alone["attention"] is not None:
            torch.testing.assert_close(out["attention"][n, :lq[n], :lp[n]], alone["attention"][0])


@pytest.mark.parametrize("architecture", ATTENTIVE)
def test_attention_rows_sum_to_one_over_real_premise_words_and_are_zero_at_padding(architecture):
    m = make_model(architecture).float()
    premise, lp, hypothesis, lq = pair_batch(2)
    with torch.no_grad():
        m.embedding.weight.mul_(20)  # saturated scores
    a = m(premise, lp, hypothesis, lq, return_attention=True)["attention"]
    assert a.shape == (4, 4, 6)
    for n in range(4):
        torch.testing.assert_close(a[n, :lq[n]].sum(-1), torch.ones(int(lq[n])))
        assert torch.equal(a[n, lq[n]:], torch.zeros_like(a[n, lq[n]:]))
        assert torch.equal(a[n, :, lp[n]:], torch.zeros_like(a[n, :, lp[n]:]))
        assert (a[n] >= 0).all()


HEADS = {"entailment": {"entailment": 3}, "relatedness": {"relatedness": 5},
         "both": {"entailment": 3, "relatedness": 5}}


@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "elman", "mingru"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_smoke_every_architecture_cell_and_heads_runs_forward_and_backward(
        architecture, cell, heads):
    torch.manual_seed(0)
    options = {"bidirectional": True} if architecture in ("features", "match_lstm") else {}
    if architecture.startswith("lstmn") and cell != "lstm":
        with pytest.raises(ConfigError, match="reads with LSTMN cells"):
            PairModel(V, E, H, architecture=architecture, cell=cell, heads=HEADS[heads])
        return
    m = PairModel(V, E, H, architecture=architecture, cell=cell, heads=HEADS[heads],
                  dropout=0.1, embedding_dropout=0.1, **options)
    premise, lp, hypothesis, lq = pair_batch(3)
    out = m(premise, lp, hypothesis, lq, return_attention=True)
    assert set(out) == set(HEADS[heads]) | {"attention"}
    for name, classes in HEADS[heads].items():
        assert out[name].shape == (4, classes)
    loss = sum(out[name].logsumexp(1).sum() for name in HEADS[heads])
    loss.backward()
    for name, p in m.named_parameters():
        if name.startswith("heads.") or p.requires_grad is False:
            continue
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_regularised_matching_cell_and_options():
    torch.manual_seed(0)
    m = PairModel(V, E, H, architecture="match_lstm", input_dropout=0.2, zoneout=0.1,
                  num_layers=2, classifier_hidden=7)
    premise, lp, hypothesis, lq = pair_batch(4)
    out = m(premise, lp, hypothesis, lq)
    out["entailment"].sum().backward()
    assert m.heads["entailment"].in_features == 7
    m.eval()
    a = m(premise, lp, hypothesis, lq)["entailment"]
    torch.testing.assert_close(a, m(premise, lp, hypothesis, lq)["entailment"])


@pytest.mark.parametrize("kind", ["general", "concat"])
def test_other_attention_kinds_run(kind):
    for architecture in ATTENTIVE:
        m = PairModel(V, E, H, architecture=architecture, attention=kind)
        premise, lp, hypothesis, lq = pair_batch(5)
        a = m(premise, lp, hypothesis, lq, return_attention=True)["attention"]
        torch.testing.assert_close(a.sum(-1), (torch.arange(4) < lq.unsqueeze(1)).float())


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="architecture one of"):
        PairModel(V, E, H, architecture="esim")
    with pytest.raises(ConfigError, match="bidirectional false"):
        PairModel(V, E, H, architecture="conditional", bidirectional=True)
    with pytest.raises(ConfigError, match="query_size == key_size"):
        PairModel(V, E, H, architecture="match_lstm", attention="dot")
    with pytest.raises(ConfigError, match="taken by the attention"):
        PairModel(V, E, H, heads={"attention": 3})
    with pytest.raises(ConfigError, match="heads"):
        PairModel(V, E, H, heads={"entailment": 1})
    with pytest.raises(ConfigError, match="num_layers 1"):
        PairModel(V, E, H, architecture="lstmn_deep", num_layers=2)
    with pytest.raises(ConfigError, match="attention_size, got peephole"):
        PairModel(V, E, H, architecture="lstmn_shallow", peephole=True)
    with pytest.raises(ConfigError, match="pretrained vectors of shape"):
        PairModel(V, E, H, pretrained=torch.zeros(V, E + 1))
    m = PairModel(V, E, H)
    with pytest.raises(ValueError, match=r"hypothesis_lengths of shape \(2,\)"):
        m(torch.ones(2, 3, dtype=torch.long), [3, 1], torch.ones(2, 2, dtype=torch.long), [3, 1])
    with pytest.raises(ValueError, match="as many premises"):
        m(torch.ones(2, 3, dtype=torch.long), [3, 1], torch.ones(1, 2, dtype=torch.long), [2])


def test_lstmn_attention_size_option():
    m = PairModel(V, E, H, architecture="lstmn_deep", attention_size=6)
    assert m.body.premise_reader.cell.attention_size == 6
    assert m.body.hypothesis_reader.cell.attention_size == 6
    m = PairModel(V, E, H, architecture="lstmn_shallow", cell="lstmn")
    premise, lp, hypothesis, lq = pair_batch(7)
    assert m(premise, lp, hypothesis, lq)["entailment"].shape == (4, 3)


def test_relatedness_target_hand_worked_cases():
    p = relatedness_target(torch.tensor([1.0, 5.0, 3.6, 2.0, 4.25]))
    want = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0.4, 0.6, 0],
                         [0, 1, 0, 0, 0], [0, 0, 0, 0.75, 0.25]])
    torch.testing.assert_close(p, want)
    torch.testing.assert_close(relatedness_target(torch.tensor([2.5]), classes=3),
                               torch.tensor([[0, 0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"in \[1, 5\], got \[0.5"):
        relatedness_target(torch.tensor([3.0, 0.5]))
    with pytest.raises(ValueError, match="in"):
        relatedness_target(torch.tensor([float("nan")]))


def test_relatedness_round_trip():
    y = 1 + 4 * torch.rand(200, dtype=torch.float64)
    y[:3] = torch.tensor([1.0, 5.0, 3.0], dtype=torch.float64)
    p = relatedness_target(y)
    assert (p >= 0).all() and (p > 0).sum(1).le(2).all()
    torch.testing.assert_close(p.sum(1), torch.ones(200, dtype=torch.float64))
    torch.testing.assert_close(p @ torch.arange(1.0, 6.0, dtype=torch.float64), y)
    # expected_relatedness of logits whose softmax is p gives y back
    torch.testing.assert_close(expected_relatedness(p.log()), y)
    logits = torch.randn(3, 5)
    want = [sum((i + 1) * w for i, w in enumerate(torch.softmax(row, 0).tolist()))
            for row in logits]
    torch.testing.assert_close(expected_relatedness(logits), torch.tensor(want))


@pytest.mark.parametrize("freeze", [True, False])
def test_pretrained_embeddings_keep_their_rows(freeze):
    table = torch.randn(V, E)
    table[0] = 0
    m = PairModel(V, E, H, architecture="features", pretrained=table, freeze_embeddings=freeze)
    assert torch.equal(m.embedding.weight.detach(), table)
    assert m.embedding.weight.requires_grad is not freeze
    premise, lp, hypothesis, lq = pair_batch(6)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m(premise, lp, hypothesis, lq)["entailment"].sum().backward()
    opt.step()
    assert torch.equal(m.embedding.weight.detach(), table) is freeze
    assert torch.equal(m.embedding.weight[0].detach(), torch.zeros(E))  # padding row


def toy_pairs(n, g):
    """Premise of 3–6 tokens from 1..7, hypothesis of 1–3 tokens; label 1 when every
    hypothesis token is in the premise (half the pairs by construction)."""
    premises, hypotheses, labels = [], [], []
    for i in range(n):
        P = torch.randint(1, 8, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g)
        k = int(torch.randint(1, 4, (1,), generator=g))
        if i % 2 == 0:
            Q = P[torch.randint(0, len(P), (k,), generator=g)]
        else:
            missing = [t for t in range(1, 8) if t not in P.tolist()]
            Q = torch.randint(1, 8, (k,), generator=g)
            Q[int(torch.randint(0, k, (1,), generator=g))] = missing[
                int(torch.randint(0, len(missing), (1,), generator=g))]
        premises.append(P)
        hypotheses.append(Q)
        labels.append(int(set(Q.tolist()) <= set(P.tolist())))
    return premises, hypotheses, torch.tensor(labels)


def pad(seqs):
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def test_match_lstm_learns_a_toy_subset_task():
    """Fresh pairs at every step (no memorising); stops at 95% on held-out pairs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        test_p, test_q, test_y = toy_pairs(256, g)
        P, lp = pad(test_p)
        Q, lq = pad(test_q)
        m = PairModel(8, 8, 16, architecture="match_lstm", heads={"subset": 2})
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        start, accuracy = time.perf_counter(), 0.0
        for step in range(1, 1501):
            m.train()
            bp, bq, by = toy_pairs(32, g)
            (bp, blp), (bq, blq) = pad(bp), pad(bq)
            loss = torch.nn.functional.cross_entropy(m(bp, blp, bq, blq)["subset"], by)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 25 == 0:
                m.eval()
                with torch.no_grad():
                    predicted = m(P, lp, Q, lq)["subset"].argmax(1)
                accuracy = (predicted == test_y).float().mean().item()
                if accuracy >= 0.95:
                    break
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert accuracy >= 0.9, f"accuracy {accuracy:.3f} after {step} steps, {elapsed:.1f} s"


def test_toy_labels_are_what_they_claim():
    g = torch.Generator().manual_seed(1)
    ps, qs, ys = toy_pairs(50, g)
    for P, Q, y in zip(ps, qs, ys.tolist()):
        assert y == all(t in P.tolist() for t in Q.tolist())
    assert ys.float().mean().item() == 0.5
    assert math.isclose(sum(len(q) for q in qs) / 50, 2, abs_tol=0.6)
    assert not list(itertools.filterfalse(lambda q: 1 <= len(q) <= 3, qs))


def test_docstring_examples_run():
    failures, tried = doctest.testmod(memnets.models.pair)
    assert tried >= 4 and failures == 0


def test_match_lstm_with_comparison_features_matches_the_loop():
    m = make_model("match_lstm", shared=False, matching="compare")
    assert m.body.matcher.input_size == 4 * H
    premise, lp, hypothesis, lq = pair_batch()
    out = m(premise, lp, hypothesis, lq, return_attention=True)
    emb = m.embedding.weight
    with torch.no_grad():
        for n in range(4):
            z, weights = ref_match_lstm(m, emb[premise[n, :lp[n]]], emb[hypothesis[n, :lq[n]]])
            head = m.heads["entailment"]
            torch.testing.assert_close(out["entailment"][n], head.weight @ z + head.bias)
            torch.testing.assert_close(out["attention"][n, :lq[n], :lp[n]], weights)
    # the paper's form reads a narrower input: the two differ
    assert make_model("match_lstm").body.matcher.input_size == 2 * H
    with pytest.raises(ConfigError, match="matching"):
        PairModel(V, E, H, architecture="match_lstm", matching="sum")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_exact_match_feature_is_one_where_the_token_is_in_the_other_sentence(architecture):
    m = make_model(architecture, shared=False, exact_match=True, unk_idx=1)
    premise = torch.tensor([[5, 6, 1, 7, 0], [3, 3, 4, 0, 0]])
    hypothesis = torch.tensor([[7, 1, 8, 0], [2, 8, 3, 4]])
    lp, lq = torch.tensor([4, 3]), torch.tensor([3, 4])
    in_q, in_p = m.exact_matches(premise, hypothesis)
    # token 1 is unknown: never a match; padding (0) never matches either
    assert in_q.tolist() == [[False, False, False, True, False], [True, True, True, False, False]]
    assert in_p.tolist() == [[True, False, False, False], [False, False, True, True]]
    out = m(premise, lp, hypothesis, lq, return_attention=True)
    emb = m.embedding.weight
    with torch.no_grad():
        for n in range(2):
            P = torch.cat([emb[premise[n, :lp[n]]], in_q[n, :lp[n], None].double()], 1)
            Q = torch.cat([emb[hypothesis[n, :lq[n]]], in_p[n, :lq[n], None].double()], 1)
            z, _ = REFERENCES[architecture](m, P, Q)
            for name, head in m.heads.items():
                torch.testing.assert_close(out[name][n], head.weight @ z + head.bias)
    plain = make_model(architecture, shared=False)
    assert sum(p.numel() for p in m.parameters()) > sum(p.numel() for p in plain.parameters())
