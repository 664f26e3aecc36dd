"""StackedAttentionVQA (memnets.models.vqa) against a per-example loop of Yang et al.'s
equations in float64 (one and two hops, the question LSTM or GRU stepped by hand, one way and
both ways) and of the baseline without attention, with the weights read from the model; image
sharing through image_index equal to repeating the images; a padded batch of questions equal to
each alone; attention that sums to one over the grid; gradcheck in float64; argument checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from memnets.errors import ConfigError
from memnets.models.vqa import StackedAttentionVQA

V, A, E, H, K = 9, 5, 4, 3, 6
CHANNELS = (4, 3)  # 12 x 10 images -> a 3 x 3 grid of 3 + 2 features


def make(seed=0, **kw):
    torch.manual_seed(seed)
    options = dict(channels=CHANNELS, embedding_size=E, hidden_size=H, attention_size=K)
    options.update(kw)
    model = StackedAttentionVQA(V, A, **options).double()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # batch norm statistics away from the identity
        for norm in model.image_encoder.norms:
            norm.running_mean.normal_(0, 0.3, generator=g)
            norm.running_var.uniform_(0.5, 1.5, generator=g)
    return model


def batch(seed=1, B=2, index=(0, 0, 1, 0, 1), lengths=(4, 2, 3, 1, 4)):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, 3, 12, 10, generator=g, dtype=torch.float64)
    lengths = torch.tensor(lengths)
    questions = torch.randint(1, V, (len(lengths), int(lengths.max())), generator=g)
    for n, L in enumerate(lengths.tolist()):
        questions[n, L:] = 0
    return images, torch.tensor(index), questions, lengths


# ---------------------------------------------------------------------- the reference


def rnn_step(enc, suffix, x, state):
    """One step of torch's LSTM or GRU equations with the drop-in's weights (layer 0)."""
    w_ih, w_hh = getattr(enc, f"weight_ih_l0{suffix}"), getattr(enc, f"weight_hh_l0{suffix}")
    b_ih, b_hh = getattr(enc, f"bias_ih_l0{suffix}"), getattr(enc, f"bias_hh_l0{suffix}")
    a, b = w_ih @ x + b_ih, w_hh @ state[0] + b_hh
    if len(state) == 2:
        i, f, g, o = (a + b).chunk(4)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    ar, az, an = a.chunk(3)
    br, bz, bn = b.chunk(3)
    r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
    return ((1 - z) * torch.tanh(an + r * bn) + z * state[0],)


def question_vector(model, words, lstm):
    """v_Q: the last hidden state (and, both ways, the backward one at the first word)."""
    zero = (torch.zeros(H, dtype=torch.float64),) * (2 if lstm else 1)
    x = [model.embedding.weight[w] for w in words]
    state = zero
    for x_t in x:
        state = rnn_step(model.question_encoder, "", x_t, state)
    if not model.bidirectional:
        return state[0]
    back = zero
    for x_t in reversed(x):
        back = rnn_step(model.question_encoder, "_reverse", x_t, back)
    return torch.cat([state[0], back[0]])


@torch.no_grad()
def reference(model, images, image_index, questions, lengths, lstm=True):
    grids = model.image_encoder(images)  # (B, S, D_img): tested on their own
    logits, attention = [], []
    for n in range(len(questions)):
        f = grids[image_index[n]]
        S = len(f)
        v = [torch.tanh(model.image_proj.weight @ f[i] + model.image_proj.bias) for i in range(S)]
        u = question_vector(model, questions[n, :lengths[n]].tolist(), lstm)
        ps = []
        for att in model.hop_attention:
            # h_A,i = tanh(W_IA v_i + (W_QA u + b_A)),  p = softmax(w_P h_A)
            query = att.query_proj.weight @ u + att.query_proj.bias
            scores = torch.stack([att.v @ torch.tanh(att.key_proj.weight @ v[i] + query)
                                  for i in range(S)])
            p = torch.exp(scores - scores.max())
            p = p / p.sum()
            u = sum(p[i] * v[i] for i in range(S)) + u  # u^k = v~^k + u^(k-1)
            ps.append(p)
        if model.mlp is not None:
            z = torch.cat([sum(v) / S, u])
            u = torch.relu(model.mlp.weight @ z + model.mlp.bias)
        logits.append(model.answer.weight @ u + model.answer.bias)
        attention.append(torch.stack(ps) if ps else torch.zeros(0, S, dtype=torch.float64))
    return torch.stack(logits), torch.stack(attention)


CASES = [
    dict(hops=1),
    dict(hops=2),
    dict(hops=2, bidirectional=True),
    dict(hops=1, cell="gru", coordinates=False),
    dict(hops=3, cell="gru", bidirectional=True),
    dict(hops=0),  # the baseline
    dict(hops=0, bidirectional=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_answers_equal_a_loop_of_the_papers_equations(case):
    model = make(**case).eval()
    images, index, questions, lengths = batch()
    logits, attention = model(images, index, questions, lengths)
    hops = case["hops"]
    assert logits.shape == (5, A) and attention.shape == (5, hops, 9)
    ref_logits, ref_attention = reference(model, images, index, questions, lengths,
                                          lstm=case.get("cell", "lstm") == "lstm")
    assert torch.allclose(logits, ref_logits, atol=1e-10), (logits - ref_logits).abs().max()
    assert torch.allclose(attention, ref_attention, atol=1e-12)
    if hops:  # each hop a distribution over the whole grid
        assert torch.allclose(attention.sum(-1), torch.ones(5, hops, dtype=torch.float64))
        assert attention.min() > 0
    else:
        assert model.mlp is not None and len(model.hop_attention) == 0


@pytest.mark.parametrize("hops", [0, 2])
def test_sharing_images_equals_repeating_them(hops):
    model = make(seed=2, hops=hops).eval()
    images, index, questions, lengths = batch(seed=3, B=3, index=(2, 0, 2, 2, 1))
    shared = model(images, index, questions, lengths)
    repeated = model(images[index], torch.arange(5), questions, lengths)
    assert torch.allclose(shared[0], repeated[0], atol=1e-12)
    assert torch.allclose(shared[1], repeated[1], atol=1e-12)


def test_a_padded_batch_of_questions_equals_each_alone():
    model = make(seed=4, hops=2, bidirectional=True).eval()
    images, index, questions, lengths = batch(seed=5)
    logits, attention = model(images, index, questions, lengths)
    for n in range(5):
        L = int(lengths[n])
        one, att = model(images[index[n]][None], torch.tensor([0]), questions[n:n + 1, :L],
                         lengths[n:n + 1])
        assert torch.allclose(logits[n], one[0], atol=1e-12)
        assert torch.allclose(attention[n], att[0], atol=1e-12)


def test_a_repeated_question_is_read_once_and_gets_the_same_vector():
    model = make(seed=8, hops=2).eval()
    calls = []
    model.question_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    questions = torch.tensor([[3, 4, 5], [2, 6, 0], [3, 4, 5], [2, 6, 0], [2, 6, 1]])
    lengths = torch.tensor([3, 2, 3, 2, 3])
    u = model.encode_question(questions, lengths)
    assert calls == [3]  # three distinct (question, length) rows
    alone = torch.cat([model.encode_question(questions[n:n + 1], lengths[n:n + 1])
                       for n in range(5)])
    assert torch.allclose(u, alone, atol=1e-12)
    assert torch.equal(u[0], u[2]) and torch.equal(u[1], u[3])


@pytest.mark.parametrize("hops", [0, 2])
def test_gradcheck_float64_through_the_images(hops):
    model = make(seed=6, hops=hops, channels=(2,)).eval()
    images = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    index, questions = torch.tensor([1, 0, 1]), torch.tensor([[3, 4, 5], [2, 0, 0], [6, 7, 0]])
    lengths = torch.tensor([3, 1, 2])

    def f(x):
        return model(x, index, questions, lengths)

    assert torch.autograd.gradcheck(f, (images,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("hops", [0, 1, 2])
def test_gradients_reach_every_parameter_in_training(hops):
    model = make(seed=7, hops=hops, dropout=0.2, num_layers=2).train()
    images, index, questions, lengths = batch()
    logits, _ = model(images, index, questions, lengths)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3, 4])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "embedding.weight":  # the padding row gets no gradient
            assert p.grad.abs().max() > 0, name


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="hops"):
        make(hops=-1)
    with pytest.raises(ConfigError, match="dropout"):
        make(dropout=1.5)
    model = make()
    images, index, questions, lengths = batch()
    with pytest.raises(ValueError, match=r"image_index of shape \(5,\), integers in \[0, 2\)"):
        model(images, torch.tensor([0, 0, 2, 0, 1]), questions, lengths)
    with pytest.raises(ValueError, match="image_index"):
        model(images, index[:4], questions, lengths)
    with pytest.raises(ValueError, match=r"lengths of shape \(5,\) with values in \[1, 4\]"):
        model(images, index, questions, torch.tensor([4, 2, 3, 0, 4]))
    with pytest.raises(ValueError, match="question ids"):
        model(images, index, questions.double(), lengths)
    with pytest.raises(ValueError, match=r"images of shape \(B, 3, H, W\)"):
        model(images[0], index, questions, lengths)
