"""Many-to-one classifier: pooling against hand computations, lengths, GloVe loader."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memnets.data.vocab import Vocab
from memnets.models.classifier import SequenceClassifier, load_word_vectors


def encoder_outputs(m: SequenceClassifier, x, bidirectional):
    """Reference: torch.nn.LSTM with the same weights, each sequence run alone."""
    ref = nn.LSTM(m.embedding.embedding_dim, m.encoder.hidden_size, batch_first=True,
                  bidirectional=bidirectional)
    ref.load_state_dict(m.encoder.state_dict())
    return ref(F.embedding(x, m.embedding.weight))[0]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
def test_pooling_matches_each_sequence_run_alone(pooling, bidirectional):
    torch.manual_seed(0)
    m = SequenceClassifier(10, 4, 3, 2, pooling=pooling, bidirectional=bidirectional).eval()
    x = torch.randint(1, 10, (3, 6))
    lengths = torch.tensor([6, 2, 4])
    x[1, 2:] = 0
    x[2, 4:] = 0
    logits = m(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        o = encoder_outputs(m, x[i:i + 1, :n], bidirectional)[0]  # (n, D*H)
        if pooling == "last":
            z = o[-1] if not bidirectional else torch.cat([o[-1, :3], o[0, 3:]])
        elif pooling == "mean":
            z = o.mean(0)
        elif pooling == "max":
            z = o.max(0).values
        else:
            alpha = torch.softmax(m.attention(o).squeeze(-1), 0)
            z = (alpha.unsqueeze(1) * o).sum(0)
        torch.testing.assert_close(logits[i], m.classifier(z))


def test_generic_cell_path_agrees_with_a_naive_elman_loop():
    torch.manual_seed(1)
    m = SequenceClassifier(8, 3, 4, 3, cell="irnn", pooling="last").eval()
    cell = m.encoder.layers[0].cell
    x = torch.tensor([[1, 2, 3], [4, 5, 0]])
    logits = m(x, torch.tensor([3, 2]))
    for i, n in enumerate([3, 2]):
        h = torch.zeros(4)
        for t in range(n):
            e = m.embedding.weight[x[i, t]]
            h = torch.relu(cell.weight_ih @ e + cell.bias_ih + cell.weight_hh @ h + cell.bias_hh)
        torch.testing.assert_close(logits[i], m.classifier(h))


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(5, 2, 2, 2, pooling="sum")
    m = SequenceClassifier(5, 2, 2, 2)
    with pytest.raises(ValueError, match=r"lengths of shape \(2,\) with values in \[1, 3\]"):
        m(torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 4]))
    with pytest.raises(ValueError, match=r"pretrained vectors of shape \(5, 2\)"):
        SequenceClassifier(5, 2, 2, 2, pretrained=torch.zeros(5, 3))


def test_load_word_vectors_glove_text(tmp_path):
    vocab = Vocab(["good", "bad", "film"])
    f = tmp_path / "vectors.txt"
    f.write_text("good 1 2 3\nunseen 0 0 0\nfilm -1 0.5 2\n")
    table, found = load_word_vectors(f, vocab)
    assert found == 2 and table.shape == (5, 3)
    assert table[vocab["good"]].tolist() == [1, 2, 3]
    assert table[vocab["film"]].tolist() == [-1, 0.5, 2]
    assert table[vocab.pad_id].abs().sum() == 0
    assert table[vocab["bad"]].abs().max() <= 0.1
    m = SequenceClassifier(5, 3, 2, 2, pretrained=table, freeze_embeddings=True)
    assert torch.equal(m.embedding.weight, table) and not m.embedding.weight.requires_grad
    f.write_text("good 1 2 3\nbad 1 2\n")
    with pytest.raises(ValueError, match=r"vectors.txt:2: expected a word and 3 values, got 2"):
        load_word_vectors(f, vocab)


def test_smoke_classifier_learns_a_keyword_rule():
    """Smoke test: label = whether token 3 occurs; accuracy well above chance."""
    torch.manual_seed(0)
    x = torch.randint(4, 12, (200, 7))
    y = torch.randint(0, 2, (200,))
    pos = torch.randint(0, 7, (200,))
    x[y == 1, pos[y == 1]] = 3
    lengths = torch.full((200,), 7)
    m = SequenceClassifier(12, 8, 8, 2, bidirectional=True, pooling="max")
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(60):
        loss = F.cross_entropy(m(x, lengths), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (m.eval()(x, lengths).argmax(-1) == y).float().mean()
    assert acc > 0.9
