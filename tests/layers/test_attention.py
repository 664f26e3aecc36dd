"""masked_softmax and Attention against per-example loops of each kind's equation."""

import doctest
import math

import pytest
import torch

import memnets.layers.attention
from memnets.errors import ConfigError
from memnets.layers.attention import KINDS, Attention, masked_softmax

DQ, DK, DV, A = 5, 4, 3, 6


def make(kind: str, *, bias: bool = True) -> Attention:
    torch.manual_seed(0)
    dq = DK if kind == "dot" else DQ
    size = A if kind in ("additive", "concat") else None
    att = Attention(dq, DK, kind, attention_size=size, bias=bias).double()
    with torch.no_grad():  # non-zero biases, so that a misplaced bias shows
        for name, p in att.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    return att


def reference_score(att: Attention, q: torch.Tensor, k: torch.Tensor) -> float:
    """The kind's score for one query ``(D_q,)`` and one key ``(D_k,)``, written
    from its equation element by element."""
    if att.kind == "dot":
        return sum(float(q[i]) * float(k[i]) for i in range(len(q)))
    if att.kind == "general":
        W = att.weight
        return sum(float(q[i]) * float(W[i, j]) * float(k[j])
                   for i in range(W.shape[0]) for j in range(W.shape[1]))
    if att.kind == "additive":
        Wq, Wk, v = att.query_proj.weight, att.key_proj.weight, att.v
        b = att.query_proj.bias
        total = 0.0
        for a in range(len(v)):
            pre = sum(float(Wq[a, i]) * float(q[i]) for i in range(len(q)))
            pre += sum(float(Wk[a, j]) * float(k[j]) for j in range(len(k)))
            pre += 0.0 if b is None else float(b[a])
            total += float(v[a]) * math.tanh(pre)
        return total
    W, v, b = att.weight, att.v, att.bias
    qk = [float(x) for x in q] + [float(x) for x in k]
    total = 0.0
    for a in range(len(v)):
        pre = sum(float(W[a, i]) * qk[i] for i in range(len(qk)))
        pre += 0.0 if b is None else float(b[a])
        total += float(v[a]) * math.tanh(pre)
    return total


@torch.no_grad()
def reference(att, query, keys, values, lengths):
    """Per example and per query: scores over the real keys, softmax, weighted sum."""
    N, Tk = keys.shape[:2]
    single = query.dim() == 2
    q3 = query.unsqueeze(1) if single else query
    ctx = torch.zeros(N, q3.shape[1], values.shape[-1], dtype=torch.float64)
    w = torch.zeros(N, q3.shape[1], Tk, dtype=torch.float64)
    for n in range(N):
        for t in range(q3.shape[1]):
            s = [reference_score(att, q3[n, t], keys[n, j]) for j in range(lengths[n])]
            if not s:
                continue
            m = max(s)
            e = [math.exp(x - m) for x in s]
            for j in range(lengths[n]):
                w[n, t, j] = e[j] / sum(e)
                ctx[n, t] += w[n, t, j] * values[n, j]
    return (ctx.squeeze(1), w.squeeze(1)) if single else (ctx, w)


def inputs(kind, *, tq=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    dq = DK if kind == "dot" else DQ
    shape = (3, dq) if tq is None else (3, tq, dq)
    query = torch.randn(*shape, generator=g, dtype=torch.float64)
    keys = torch.randn(3, 5, DK, generator=g, dtype=torch.float64)
    values = torch.randn(3, 5, DV, generator=g, dtype=torch.float64)
    lengths = [5, 2, 3]
    mask = torch.arange(5) < torch.tensor(lengths).unsqueeze(1)
    return query, keys, values, lengths, mask


@pytest.mark.parametrize("tq", [None, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_matches_a_loop_of_its_equation(kind, tq):
    att = make(kind)
    query, keys, values, lengths, mask = inputs(kind, tq=tq)
    ctx, w = att(query, keys, mask, values=values)
    ref_ctx, ref_w = reference(att, query, keys, values, lengths)
    torch.testing.assert_close(w, ref_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ctx, ref_ctx, rtol=1e-10, atol=1e-12)
    # default values are the keys
    ctx_k, _ = att(query, keys, mask)
    torch.testing.assert_close(ctx_k, reference(att, query, keys, keys, lengths)[0])


@pytest.mark.parametrize("kind", ["additive", "concat"])
def test_without_bias_matches_the_loop(kind):
    att = make(kind, bias=False)
    query, keys, values, lengths, mask = inputs(kind)
    _, w = att(query, keys, mask, values=values)
    torch.testing.assert_close(w, reference(att, query, keys, values, lengths)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind):
    att = make(kind)
    query, keys, values, _, mask = inputs(kind, tq=2)
    query.requires_grad_(), keys.requires_grad_(), values.requires_grad_()
    params = tuple(att.parameters())

    def f(q, k, v, *ps):
        return att(q, k, mask, values=v)

    assert torch.autograd.gradcheck(f, (query, keys, values, *params))


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_over_real_keys_and_are_zero_at_padding(kind):
    att = make(kind).float()
    query, keys, _, lengths, mask = inputs(kind, tq=4)
    _, w = att(query.float(), keys.float() * 30, mask)  # large scores: saturated softmax
    for n, L in enumerate(lengths):
        assert torch.equal(w[n, :, L:], torch.zeros_like(w[n, :, L:]))
        torch.testing.assert_close(w[n, :, :L].sum(-1), torch.ones(4))


def test_fully_masked_row_gives_zeros_and_finite_gradients():
    att = make("additive")
    query, keys, values, _, mask = inputs("additive")
    mask = mask.clone()
    mask[1] = False
    query.requires_grad_(), keys.requires_grad_()
    ctx, w = att(query, keys, mask, values=values)
    assert torch.equal(w[1], torch.zeros(5, dtype=torch.float64))
    assert torch.equal(ctx[1], torch.zeros(DV, dtype=torch.float64))
    (ctx.sum() + w.pow(2).sum()).backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(keys.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in att.parameters())
    assert torch.equal(query.grad[1], torch.zeros_like(query.grad[1]))


def test_masked_softmax_against_softmax_over_the_real_part():
    torch.manual_seed(0)
    s = torch.randn(4, 3, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0],
                         [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    w = masked_softmax(s, mask.unsqueeze(1))  # (4, 1, 6) broadcast over dim 1
    for n in range(4):
        real = mask[n].nonzero().flatten()
        want = torch.zeros(3, 6, dtype=torch.float64)
        if len(real):
            want[:, real] = torch.softmax(s[n][:, real], -1)
        torch.testing.assert_close(w[n], want)
    assert torch.equal(w[1], torch.zeros(3, 6, dtype=torch.float64))
    w.sum().backward()
    assert torch.isfinite(s.grad).all()
    torch.testing.assert_close(masked_softmax(s, None, 1), torch.softmax(s, 1))
    assert torch.autograd.gradcheck(lambda x: masked_softmax(x, mask.unsqueeze(1)), (s,))
    with pytest.raises(ValueError, match="bool mask"):
        masked_softmax(s, mask.unsqueeze(1).long())


@pytest.mark.parametrize("kind", KINDS)
def test_projected_keys_path_equals_the_uncached_path(kind):
    att = make(kind)
    query, keys, values, _, mask = inputs(kind)
    cached = att.project_keys(keys)
    assert cached.shape == (3, 5, att.projected_size)
    for a, b in zip(att(query, keys, mask, values=values, projected=cached),
                    att(query, keys, mask, values=values)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="projected keys"):
        att(query, keys, mask, projected=cached[:, :, :1])


def test_dot_with_unequal_sizes_raises_config_error():
    with pytest.raises(ConfigError, match="query_size == key_size"):
        Attention(5, 4, "dot")
    with pytest.raises(ConfigError, match="attention kind"):
        Attention(5, 4, "bilinear")
    with pytest.raises(ConfigError, match="no attention_size"):
        Attention(5, 4, "general", attention_size=3)
    with pytest.raises(ConfigError, match="query_size"):
        Attention(0, 4)


def test_shape_errors_name_what_was_expected():
    att = Attention(5, 4)
    with pytest.raises(ValueError, match=r"query of shape \(2, 5\)"):
        att(torch.randn(2, 3), torch.randn(2, 7, 4))
    with pytest.raises(ValueError, match=r"keys of shape \(N, T_k, 4\)"):
        att(torch.randn(2, 5), torch.randn(2, 7, 3))
    with pytest.raises(ValueError, match=r"bool mask of shape \(2, 7\)"):
        att(torch.randn(2, 5), torch.randn(2, 7, 4), torch.ones(2, 6, dtype=torch.bool))


def test_docstring_examples_run():
    failures, tried = doctest.testmod(memnets.layers.attention, optionflags=doctest.ELLIPSIS)
    assert tried >= 5 and failures == 0
