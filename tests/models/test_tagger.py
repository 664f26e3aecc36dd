"""Slot tagger: each part against a naive loop of its equations written here,
variable-length batches against each utterance alone, and a smoke test that it learns."""

import pytest
import torch
import torch.nn.functional as F

from memnets.config import build_section
from memnets.layers.pooling import pool
from memnets.models.tagger import CharCNN, SlotTagger, context_window
from memnets.tasks.slot_filling import SlotModelConfig

TAGS = ["O", "B-a", "I-a", "B-b"]


def _config(values: dict) -> SlotModelConfig:
    """The recipe's model section, checked as a recipe's is."""
    return build_section(SlotModelConfig, values, "model")


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = _config({"hidden_size": 6, "word_dim": 5, **kw})
    m = SlotTagger(cfg, num_words=12, num_chars=9, tags=TAGS, num_intents=3).double()
    return m.eval()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 2, 4])
    words = torch.randint(2, 12, (3, 5), generator=g)
    chars = torch.randint(1, 9, (3, 5, 4), generator=g)
    chars[:, :, 3] = 0  # every word has at most 3 characters
    chars[0, 1, 1:] = 0  # one 1-character word
    for i, n in enumerate(lengths.tolist()):
        words[i, n:] = 0
        chars[i, n:] = 0
    return words, chars, lengths


def test_context_window_against_loop():
    x = torch.randn(2, 4, 3)
    k = 2
    out = context_window(x, k)
    assert out.shape == (2, 4, 15)
    for t in range(4):
        for j in range(2 * k + 1):
            s = t - k + j
            ref = x[:, s] if 0 <= s < 4 else torch.zeros(2, 3)
            assert torch.equal(out[:, t, 3 * j:3 * j + 3], ref)
    assert torch.equal(context_window(x, 0), x)


def test_char_cnn_against_loop_and_padding():
    torch.manual_seed(0)
    cnn = CharCNN(9, 4, 5, 3).double()
    chars = torch.tensor([[[3, 4, 5, 0], [2, 0, 0, 0], [0, 0, 0, 0]]])  # (1, 3, 4)
    out = cnn(chars)  # (1, 3, 5)
    W, b = cnn.conv.weight, cnn.conv.bias  # (5, 4, 3), (5,)
    for j, word in enumerate([[3, 4, 5], [2]]):
        e = cnn.embed.weight[torch.tensor(word)]  # (n, 4)
        padded = torch.cat([torch.zeros(1, 4, dtype=e.dtype), e, torch.zeros(1, 4,
                                                                             dtype=e.dtype)])
        feats = torch.stack([
            torch.relu((W * padded[p:p + 3].t().unsqueeze(0)).sum((1, 2)) + b)
            for p in range(len(word))
        ])  # (n, 5)
        assert torch.allclose(out[0, j], feats.max(0).values)
    assert torch.equal(out[0, 2], torch.zeros(5, dtype=out.dtype))
    # the representation does not depend on how much padding the batch has
    longer = torch.cat([chars, torch.zeros(1, 3, 6, dtype=torch.long)], dim=2)
    assert torch.allclose(cnn(longer), out)


def test_elman_window_tagger_against_equations():
    m = _model(cell="elman", window=1)
    words, chars, lengths = _batch()
    out = m(words, chars, lengths)
    cell = m.encoder.layers[0].cell
    for i, n in enumerate(lengths.tolist()):
        e = m.embed.weight[words[i, :n]]  # (n, 5)
        z = torch.zeros(1, 5, dtype=e.dtype)
        ep = torch.cat([z, e, z])
        h = torch.zeros(6, dtype=e.dtype)
        for t in range(n):
            x = torch.cat([ep[t], ep[t + 1], ep[t + 2]])  # words t-1, t, t+1
            h = torch.tanh(cell.weight_ih @ x + cell.bias_ih + cell.weight_hh @ h + cell.bias_hh)
            ref = m.slot_head.weight @ h + m.slot_head.bias
            assert torch.allclose(out.emissions[i, t], ref)


def test_jordan_posterior_tagger_against_equations():
    m = _model(cell="jordan", cell_output="posterior", window=1, intent_pooling="none")
    words, chars, lengths = _batch()
    out = m(words, chars, lengths)
    assert out.intent_logits is None
    cell = m.encoder.layers[0].cell
    assert cell.output_size == len(TAGS)
    for i, n in enumerate(lengths.tolist()):
        e = m.embed.weight[words[i, :n]]
        z = torch.zeros(1, 5, dtype=e.dtype)
        ep = torch.cat([z, e, z])
        y = torch.zeros(len(TAGS), dtype=e.dtype)
        for t in range(n):
            x = torch.cat([ep[t], ep[t + 1], ep[t + 2]])
            h = torch.sigmoid(cell.weight_ih @ x + cell.bias_h + cell.weight_yh @ y)
            y = torch.softmax(cell.weight_hy @ h + cell.bias_y, 0)
            assert torch.allclose(out.emissions[i, t], torch.log(y))


@pytest.mark.parametrize(
    "options",
    [
        {"cell": "lstm", "bidirectional": True, "char_dim": 3, "intent_pooling": "attention"},
        {"cell": "gru", "bidirectional": True, "num_layers": 2, "intent_pooling": "last"},
        {"cell": "lstm", "window": 2, "intent_pooling": "mean", "crf": True},
        {"cell": "elman", "intent_pooling": "max", "char_dim": 2},
        {"cell": "lstm", "bidirectional": True, "intent_pooling": "attention",
         "intent_heads": 3},
    ],
)
def test_batch_equals_each_utterance_alone(options):
    m = _model(**options)
    words, chars, lengths = _batch()
    out = m(words, chars, lengths)
    tags, intents = m.decode(out, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = m(words[i:i + 1, :n], chars[i:i + 1, :n], lengths[i:i + 1])
        assert torch.allclose(out.emissions[i, :n], alone.emissions[0])
        assert torch.allclose(out.intent_logits[i], alone.intent_logits[0])
        t1, i1 = m.decode(alone, lengths[i:i + 1])
        assert tags[i] == t1[0] and intents[i] == i1[0]


def test_pooling_against_hand_computation():
    words, chars, lengths = _batch()
    m = _model(cell="gru", bidirectional=True, intent_pooling="attention")
    h, _ = m.encoder(context_window(m.embed(words), 0), lengths=lengths)
    pooled = pool(h, lengths, m.config.intent_pooling, scorer=m.attention, bidirectional=True)
    att = m.attention
    for i, n in enumerate(lengths.tolist()):
        scores = torch.stack([att[2].weight @ torch.tanh(att[0].weight @ h[i, t] + att[0].bias)
                              for t in range(n)]).squeeze(1)
        alpha = torch.softmax(scores, 0)
        assert torch.allclose(pooled[i], (alpha.unsqueeze(1) * h[i, :n]).sum(0))
    last = pool(h, lengths, "last", bidirectional=True)
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(last[i], torch.cat([h[i, n - 1, :6], h[i, 0, 6:]]))


def test_multi_head_attention_pooling_against_hand_computation():
    """Each of the r heads pools with its own softmax over the valid steps; the
    pooled vector is their concatenation, head by head."""
    words, chars, lengths = _batch()
    m = _model(cell="gru", bidirectional=True, intent_pooling="attention", intent_heads=3)
    h, _ = m.encoder(context_window(m.embed(words), 0), lengths=lengths)
    valid = torch.arange(5).unsqueeze(0) < lengths.unsqueeze(1)
    pooled = pool(h, lengths, m.config.intent_pooling, scorer=m.attention, bidirectional=True)
    assert pooled.shape == (len(lengths), 3 * h.shape[2])
    W, b, V = m.attention[0].weight, m.attention[0].bias, m.attention[2].weight  # V: (3, H)
    for i, n in enumerate(lengths.tolist()):
        for k in range(3):
            scores = torch.stack([V[k] @ torch.tanh(W @ h[i, t] + b) for t in range(n)])
            alpha = torch.softmax(scores, 0)
            expected = (alpha.unsqueeze(1) * h[i, :n]).sum(0)
            H = h.shape[2]
            assert torch.allclose(pooled[i, k * H:(k + 1) * H], expected, atol=1e-6)
    out = m(words, chars, lengths)
    assert out.intent_logits.shape == (len(lengths), m.num_intents)
    alpha = m.intent_attention(words, chars, lengths)  # what --explain shows
    assert alpha.shape == (len(lengths), 5, 3)
    assert torch.allclose(alpha.sum(1), torch.ones(len(lengths), 3, dtype=alpha.dtype))
    assert not alpha[~valid].any()
    assert torch.allclose(torch.einsum("nlk,nlh->nkh", alpha, h).flatten(1), pooled)
    with pytest.raises(ValueError, match="expected intent_heads: 1 unless"):
        _config({"intent_pooling": "max", "intent_heads": 2})
    with pytest.raises(ValueError, match="expected intent_heads >= 1"):
        _config({"intent_pooling": "attention", "intent_heads": 0})


def test_loss_is_cross_entropy_plus_weighted_intent():
    m = _model(cell="lstm", intent_pooling="mean", intent_weight=0.5)
    words, chars, lengths = _batch()
    out = m(words, chars, lengths)
    tags = torch.randint(0, 4, words.shape)
    tags[words == 0] = -100
    tags[0, 0] = -100  # a tag unseen in training
    intents = torch.tensor([0, -100, 2])
    loss = m.loss(out, tags, intents, lengths)
    keep = tags >= 0
    ref_slot = F.log_softmax(out.emissions, 2)[keep].gather(1, tags[keep].unsqueeze(1)).mean()
    ref_int = F.log_softmax(out.intent_logits, 1)[[0, 2], [0, 2]].mean()
    assert torch.allclose(loss, -ref_slot - 0.5 * ref_int)


def test_crf_loss_skips_utterances_with_unknown_tags():
    m = _model(cell="lstm", crf=True, intent_pooling="none")
    words, chars, lengths = _batch()
    out = m(words, chars, lengths)
    tags = torch.randint(0, 4, words.shape)
    tags[1, 1] = -100
    loss = m.loss(out, tags, torch.full((3,), -100), lengths)
    keep = torch.tensor([0, 2])
    ref = m.crf.nll(out.emissions[keep], tags[keep], lengths[keep]).mean()
    assert torch.allclose(loss, ref)


def test_gradcheck_float64():
    m = _model(cell="lstm", bidirectional=True, char_dim=2, window=1, crf=True,
               intent_pooling="attention")
    words, chars, lengths = _batch()
    tags = torch.randint(0, 4, words.shape)
    intents = torch.tensor([0, 1, 2])
    names = ["embed.weight", "chars.conv.weight", "encoder.layers.0.forward_layer.cell.weight_hh",
             "crf.transitions", "attention.2.weight", "intent_head.weight"]
    params = dict(m.named_parameters())
    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)

    def loss_of(*values):
        out = torch.func.functional_call(m, dict(zip(names, values)), (words, chars, lengths))
        return m.loss(out, tags, intents, lengths)

    assert torch.autograd.gradcheck(loss_of, inputs)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match=r"model: unknown key 'hidden' \(did you mean "
                                         r"'hidden_size'\?\)"):
        _config({"hidden": 3})
    with pytest.raises(ValueError, match="expected intent_pooling one of"):
        _config({"intent_pooling": "sum"})
    with pytest.raises(ValueError, match="bidirectional: false with cell_output: posterior"):
        _config({"cell_output": "posterior", "bidirectional": True})


def test_smoke_learns_a_toy_tagging_rule():
    # word 2 is followed by a city (B-a); words >= 6 mark intent 1
    torch.manual_seed(0)
    cfg = _config({"cell": "lstm", "bidirectional": True, "hidden_size": 16,
                   "word_dim": 8, "intent_pooling": "max"})
    m = SlotTagger(cfg, num_words=10, num_chars=3, tags=TAGS, num_intents=2)
    words = torch.randint(2, 10, (64, 6))
    tags = torch.zeros_like(words)
    tags[:, 1:][words[:, :-1] == 2] = 1
    intents = (words >= 6).any(1).long() * (words[:, 0] >= 6).long()
    lengths = torch.full((64,), 6)
    opt = torch.optim.Adam(m.parameters(), 0.02)
    first = None
    for _ in range(60):
        loss = m.loss(m(words, None, lengths), tags, intents, lengths)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    pred, pred_int = m.decode(m(words, None, lengths), lengths)
    acc = (torch.tensor(pred) == tags).float().mean()
    assert float(loss.detach()) < 0.3 * first
    assert acc > 0.95
    assert (torch.tensor(pred_int) == intents).float().mean() > 0.9


def test_ensemble_averages_members_and_decodes_the_mean_crf_score():
    import itertools

    from memnets.models.tagger import TaggerEnsemble

    members = [_model(seed=s, cell="lstm", crf=True, intent_pooling="mean") for s in (0, 1)]
    for m in members:
        with torch.no_grad():
            m.crf.transitions.normal_()
    ens = TaggerEnsemble(members).double().eval()
    words, chars, lengths = _batch()
    out = ens(words, chars, lengths)
    o0, o1 = (m(words, chars, lengths) for m in members)
    assert torch.allclose(out.emissions, (o0.emissions + o1.emissions) / 2)
    p = (o0.intent_logits.softmax(1) + o1.intent_logits.softmax(1)) / 2
    assert torch.allclose(out.intent_logits.exp(), p)
    tags, intents = ens.decode(out, lengths)
    assert intents == p.argmax(1).tolist()
    # Viterbi of the ensemble = the path with the best mean member score (enumerated)
    i, n = 1, int(lengths[1])
    best, best_score = None, None
    for path in itertools.product(range(len(TAGS)), repeat=n):
        y = torch.tensor([list(path)])
        s = sum(m.crf.score(o.emissions[i:i + 1, :n], y) for m, o in zip(members, (o0, o1))) / 2
        if best_score is None or s > best_score:
            best, best_score = list(path), s
    assert tags[i] == best
    with pytest.raises(ValueError, match="expected members with the same tags"):
        TaggerEnsemble([members[0], _model(cell="lstm", crf=False, intent_pooling="mean")])


def test_intent_parts_add_a_shared_score_per_part():
    torch.manual_seed(0)
    names = ["a", "a#b", "b", "c"]
    cfg = _config({"hidden_size": 6, "word_dim": 5, "intent_pooling": "mean",
                   "intent_parts": "#"})
    m = SlotTagger(cfg, num_words=12, num_chars=9, tags=TAGS, num_intents=4,
                   intents=names).double().eval()
    seen = []
    m.intent_head.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    out = m(*_batch())
    pooled = seen[0]  # (N, F), the features both heads read
    W, b, U = m.intent_head.weight, m.intent_head.bias, m.intent_part_head.weight
    part = {"a": 0, "b": 1, "c": 2}  # parts in sorted order
    for k, name in enumerate(names):
        want = pooled @ W[k] + b[k] + sum(pooled @ U[part[p]] for p in name.split("#"))
        torch.testing.assert_close(out.intent_logits[:, k], want)
    with pytest.raises(ValueError, match="expected the 4 intent names"):
        SlotTagger(cfg, num_words=12, num_chars=9, tags=TAGS, num_intents=4)


def test_word_dropout_is_on_in_training_only():
    """``word_dropout`` replaces words by ``<unk>`` while training; in eval mode the
    tagger is deterministic and equals the same weights without word dropout."""
    m = _model(cell="lstm", word_dropout=0.5, intent_pooling="mean")
    plain = _model(cell="lstm", intent_pooling="mean")
    plain.load_state_dict(m.state_dict())
    batch = _batch()
    a, b, ref = m(*batch), m(*batch), plain(*batch)
    for x, y in ((a, ref), (b, ref)):
        torch.testing.assert_close(x.emissions, y.emissions, rtol=0, atol=0)
        torch.testing.assert_close(x.intent_logits, y.intent_logits, rtol=0, atol=0)
    m.train()
    torch.manual_seed(1)
    c, d = m(*batch), m(*batch)
    assert not torch.allclose(c.emissions, ref.emissions)
    assert not torch.allclose(c.emissions, d.emissions)
