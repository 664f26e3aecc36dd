"""The bAbI models: MemN2N against a naive per-example loop of the paper's equations, and the
LSTM baseline's fused and generic paths against each other."""

import math

import pytest
import torch

from memnets.models.memn2n import MemN2N, position_encoding


def naive_memn2n(model: MemN2N, story, question, linear=False):
    """Sukhbaatar et al. 2015, Section 2, one example, plain Python loops.

    story: list of sentences (lists of ids, oldest first); question: list of ids.
    Returns (logits list of V floats, attention list of K lists).
    """
    d, K, n = model.embed_dim, model.hops, len(story)
    # with empty_memories, the slots past the story are empty sentences that are older
    # than every real one (age = slot) and take part in the attention
    slots = model.memory_size if model.empty_memories else n

    def vec(w, i):
        return [float(w[i, k]) for k in range(d)]

    def weight_l(k, j, J):
        if model.encoding == "pe":  # the paper, Section 4.1
            return (1 - j / J) - (k / d) * (1 - 2 * j / J)
        if model.encoding == "pe_centered":  # the authors' released code
            return 1 + 4 * (k - (d + 1) / 2) * (j - (J + 1) / 2) / (d * J)
        return 1.0

    def enc(weight, words):
        J = model.pe_width or len(words)
        out = [0.0] * d
        for j, w in enumerate(words, start=1):
            for k in range(1, d + 1):
                out[k - 1] += weight_l(k, j, J) * float(weight[w, k - 1])
        return out

    adj = model.tying == "adjacent"
    E = [p.detach() for p in model.embed]
    T = [p.detach() for p in model.time] if model.temporal else None
    B = E[0]
    A = [E[k] if adj else E[1] for k in range(K)]
    C = [E[k + 1] if adj else E[2] for k in range(K)]
    TA = [T[k] if adj else T[0] for k in range(K)] if T else None
    TC = [T[k + 1] if adj else T[1] for k in range(K)] if T else None
    W = E[K] if adj else model.out.detach()
    u = enc(B, question)
    atts = []
    for k in range(K):
        m, c = [], []
        for i in range(slots):
            sent = story[i] if i < n else []
            age = n - 1 - i if i < n else i  # x_1 is the most recent sentence
            mi, ci = enc(A[k], sent), enc(C[k], sent)
            if T is not None:
                mi = [a + b for a, b in zip(mi, vec(TA[k], age))]
                ci = [a + b for a, b in zip(ci, vec(TC[k], age))]
            m.append(mi)
            c.append(ci)
        s = [sum(a * b for a, b in zip(mi, u)) for mi in m]
        if linear:
            p = s
        else:
            z = max(s)
            e = [math.exp(x - z) for x in s]
            p = [x / sum(e) for x in e]
        o = [sum(p[i] * c[i][kk] for i in range(slots)) for kk in range(d)]
        if adj and not model.hop_map:
            u = [a + b for a, b in zip(u, o)]
        else:
            H = model.H.detach()
            u = [sum(float(H[r, q]) * u[q] for q in range(d)) + o[r] for r in range(d)]
        if model.nonlinearity == "relu":
            u = [max(x, 0.0) for x in u]
        atts.append(p)
    logits = [sum(float(W[v, kk]) * u[kk] for kk in range(d)) for v in range(W.shape[0])]
    return logits, atts


def random_examples(gen, n, V, max_mem=5, max_words=4):
    examples = []
    for _ in range(n):
        mem = int(torch.randint(1, max_mem + 1, (1,), generator=gen))
        story = [torch.randint(1, V, (int(torch.randint(1, max_words + 1, (1,), generator=gen)),),
                               generator=gen).tolist() for _ in range(mem)]
        q = torch.randint(1, V, (int(torch.randint(1, max_words + 1, (1,), generator=gen)),),
                          generator=gen).tolist()
        examples.append((story, q))
    return examples


def pad(examples):
    B = len(examples)
    M = max(len(s) for s, _ in examples)
    J = max(len(x) for s, _ in examples for x in s)
    Q = max(len(q) for _, q in examples)
    story = torch.zeros(B, M, J, dtype=torch.long)
    question = torch.zeros(B, Q, dtype=torch.long)
    for b, (s, q) in enumerate(examples):
        for i, x in enumerate(s):
            story[b, i, : len(x)] = torch.tensor(x)
        question[b, : len(q)] = torch.tensor(q)
    lengths = torch.tensor([len(s) for s, _ in examples])
    return story, lengths, question


@pytest.mark.parametrize("encoding,pe_width", [("bow", None), ("pe", None), ("pe", 6),
                                               ("pe_centered", None), ("pe_centered", 6)])
@pytest.mark.parametrize("tying,hop_map", [("adjacent", False), ("adjacent", True),
                                            ("layerwise", False)])
# empty memories need temporal encoding: without it they are all-zero slots
@pytest.mark.parametrize("temporal,empty", [(True, False), (False, False), (True, True)])
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("nonlinearity", [None, "relu"])
def test_batched_forward_matches_naive_loop(encoding, pe_width, tying, hop_map, temporal, linear,
                                            empty, nonlinearity):
    torch.manual_seed(0)
    V = 13
    model = MemN2N(V, embed_dim=6, hops=3, memory_size=8, encoding=encoding,
                   temporal=temporal, tying=tying, empty_memories=empty,
                   pe_width=pe_width, nonlinearity=nonlinearity, hop_map=hop_map).double()
    model.linear = linear
    model.eval()
    examples = random_examples(torch.Generator().manual_seed(1), 5, V)
    story, lengths, question = pad(examples)
    logits, att = model(story, lengths, question, return_attention=True)
    for b, (s, q) in enumerate(examples):
        ref_logits, ref_att = naive_memn2n(model, s, q, linear=linear)
        torch.testing.assert_close(logits[b], torch.tensor(ref_logits, dtype=torch.float64))
        for k in range(3):
            torch.testing.assert_close(att[b, k, : len(ref_att[k])],
                                       torch.tensor(ref_att[k], dtype=torch.float64))
            assert torch.all(att[b, k, len(ref_att[k]):] == 0)


def test_padding_memories_and_words_do_not_change_the_answer():
    torch.manual_seed(0)
    model = MemN2N(11, embed_dim=5, hops=2, memory_size=10).eval()
    ex = random_examples(torch.Generator().manual_seed(3), 1, 11)
    story, lengths, question = pad(ex)
    wide = torch.zeros(1, story.shape[1] + 3, story.shape[2] + 2, dtype=torch.long)
    wide[:, : story.shape[1], : story.shape[2]] = story
    q_wide = torch.cat([question, torch.zeros(1, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(model(story, lengths, question), model(wide, lengths, q_wide))


def test_position_encoding_hand_computed():
    # J = 2 words, d = 2: l_kj = (1 - j/2) - (k/2)(1 - j)
    l = position_encoding(torch.tensor([2]), 3, 2)[0]
    # j = 1: (1 - 1/2) - (k/2)(1 - 1) = 0.5 for both k
    # j = 2: (1 - 1) - (k/2)(1 - 2) = k/2
    torch.testing.assert_close(l[:2], torch.tensor([[0.5, 0.5], [0.5, 1.0]]))


def test_gradcheck_float64():
    torch.manual_seed(0)
    model = MemN2N(7, embed_dim=3, hops=2, memory_size=4, tying="layerwise").double().eval()
    story, lengths, question = pad(random_examples(torch.Generator().manual_seed(2), 2, 7, 3, 3))
    names = [n for n, _ in model.named_parameters()]
    # word matrices without their padding row: that row is held at zero by design
    # (F.embedding's padding_idx), so its numerical and analytic gradients differ.
    has_pad = [n.startswith("embed") or n == "out" for n in names]

    def f(*ps):
        full = [torch.cat([q.new_zeros(1, q.shape[1]), q]) if pad_row else q
                for q, pad_row in zip(ps, has_pad)]
        return torch.func.functional_call(model, dict(zip(names, full)),
                                          (story, lengths, question))

    inputs = tuple((p[1:] if pad_row else p).detach().clone().requires_grad_(True)
                   for p, pad_row in zip(model.parameters(), has_pad))
    assert torch.autograd.gradcheck(f, inputs)


def test_padding_rows_stay_zero_and_get_no_gradient():
    model = MemN2N(9, embed_dim=4, hops=3)
    story, lengths, question = pad(random_examples(torch.Generator().manual_seed(4), 3, 9))
    model(story, lengths, question).sum().backward()
    for e in model.embed:
        assert torch.all(e[0] == 0) and torch.all(e.grad[0] == 0)


def test_random_noise_shifts_older_memories_only_in_training():
    model = MemN2N(5, embed_dim=2, hops=1, memory_size=50, random_noise=0.5)
    lengths = torch.tensor([6, 3])
    model.eval()
    base = model.time_index(lengths, 6)
    assert base.tolist() == [[5, 4, 3, 2, 1, 0], [2, 1, 0, 3, 4, 5]]  # empty slots: older
    model.train()
    torch.manual_seed(0)
    noisy = model.time_index(lengths, 6)
    # most recent sentence keeps index >= 0, order stays strictly decreasing for valid slots
    assert torch.all(noisy >= base)
    assert torch.all(noisy[0, :-1] > noisy[0, 1:])
    assert noisy[1, 3:].tolist() == [3, 4, 5]  # empty slots are not shifted
    assert not torch.equal(noisy, base)


def test_pe_centered_hand_computed():
    # d = 2, J = 3: l_kj = 1 + 4 (k - 1.5)(j - 2) / 6
    model = MemN2N(4, embed_dim=2, hops=1, encoding="pe_centered", pe_width=3,
                   temporal=False).double()
    with torch.no_grad():
        model.embed[0].copy_(torch.tensor([[0, 0], [1, 1], [10, 10], [100, 100.0]]))
    bags = model.bags(torch.tensor([[1, 2, 3]]))
    got = model._encode(bags, model.embed[0])[0]
    l = torch.tensor([[1 + 4 * (k - 1.5) * (j - 2) / 6 for k in (1, 2)] for j in (1, 2, 3)],
                     dtype=torch.float64)
    want = (l * torch.tensor([[1.0], [10.0], [100.0]], dtype=torch.float64)).sum(0)
    torch.testing.assert_close(got, want)


def test_pe_width_rejects_a_longer_sentence():
    model = MemN2N(5, embed_dim=4, hops=1, encoding="pe_centered", pe_width=2)
    with pytest.raises(ValueError, match="at most pe_width=2 words, got one of 3"):
        model(torch.ones(1, 1, 3, dtype=torch.long), torch.tensor([1]),
              torch.ones(1, 1, dtype=torch.long))


def test_bad_shapes_raise_clear_errors():
    model = MemN2N(5, embed_dim=2, hops=1, memory_size=4)
    with pytest.raises(ValueError, match=r"story of shape \(B, M, J\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.tensor([1, 1]),
              torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="at most memory_size=4"):
        model(torch.ones(1, 6, 2, dtype=torch.long), torch.tensor([6]),
              torch.ones(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="tying"):
        MemN2N(5, tying="rnn")
    with pytest.raises(ValueError, match=r"nonlinearity in \(None, 'relu'\), got 'tanh'"):
        MemN2N(5, nonlinearity="tanh")


def test_lstm_baseline_fused_and_generic_paths_agree():
    from memnets.layers import LSTM, Stacked
    from memnets.models.babi_lstm import BabiLSTM

    torch.manual_seed(0)
    fused = BabiLSTM(11, 4, 5).double()
    # a regulariser option, even at rate 0, takes the generic layers (build_encoder's rule)
    generic = BabiLSTM(11, 4, 5, cell_options={"zoneout": 0.0}).double()
    assert isinstance(fused.rnn, LSTM) and isinstance(generic.rnn, Stacked)
    generic.load_state_dict({k: v for k, v in fused.state_dict().items()
                             if not k.startswith("rnn.")}, strict=False)
    (cell,) = generic.rnn.cells()  # make_cell leaves a rate of 0 unwrapped: an LSTMCell
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(fused.rnn, f"{name}_l0"))
    story = torch.randint(1, 11, (3, 4, 3))
    story[1, 2:] = 0  # a shorter story
    story[2, :, 2] = 0  # shorter sentences
    question = torch.randint(1, 11, (3, 2))
    lengths = torch.tensor([4, 2, 4])
    torch.testing.assert_close(fused(story, lengths, question), generic(story, lengths, question))
