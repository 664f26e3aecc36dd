"""Language model, truncated BPTT and the language-model tasks, against references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memnets.cells import ElmanCell
from memnets.cells.regularizers import VariationalDropout
from memnets.data.chars import load_chars, split_text
from memnets.metrics.lm import bits_per_char, perplexity
from memnets.models.language_model import RNNLanguageModel
from memnets.tasks.language_model import CharLanguageModelTask, LMDataConfig, LMModelConfig
from memnets.tasks.recipes import load_config


def torch_reference(model: RNNLanguageModel, tokens, state=None):
    """The same network from torch.nn modules after copying the weights."""
    lstm = nn.LSTM(model.embedding_size, model.hidden_size, model.num_layers, batch_first=True)
    lstm.load_state_dict(model.rnn.state_dict())
    out, state = lstm(F.embedding(tokens, model.embedding.weight), state)
    return F.linear(out, model.decoder.weight, model.decoder.bias), state


def test_lstm_lm_matches_torch_nn_and_carried_state_equals_one_long_run():
    torch.manual_seed(0)
    m = RNNLanguageModel(11, 6, 6, 2, init_range=0.1).eval()
    x = torch.randint(0, 11, (3, 10))
    ref, _ = torch_reference(m, x)
    logits, _ = m(x)
    torch.testing.assert_close(logits, ref)
    # two segments with the state carried (detached) give the same logits
    a, s = m(x[:, :4])
    b, _ = m(x[:, 4:], m.detach_state(s))
    torch.testing.assert_close(torch.cat([a, b], 1), logits)


@pytest.mark.parametrize("kw", [
    {},  # the fused drop-in (ptb-small's path)
    {"tie_weights": True},
    {"cell": "irnn", "dropout": 0.2},  # generic layers
    {"dropout": 0.3, "variational": True},  # VariationalDropout cells
])
def test_init_range_draws_each_parameter_once(kw):
    """With init_range every parameter is drawn once: the weights are exactly the
    first draws from the seed, in parameter order, and nothing else drew before."""
    torch.manual_seed(3)
    m = RNNLanguageModel(11, 6, 6, 2, init_range=0.1, **kw)
    after = torch.rand(2)
    torch.manual_seed(3)
    for name, p in m.named_parameters():
        expect = torch.empty_like(p).uniform_(-0.1, 0.1)
        assert torch.equal(p, expect), name
    assert torch.equal(torch.rand(2), after)
    if kw.get("tie_weights"):
        assert m.decoder.weight is m.embedding.weight


def test_generic_path_elman_matches_a_naive_loop_of_the_equations():
    torch.manual_seed(1)
    m = RNNLanguageModel(7, 4, 5, 1, cell="elman", variational=True).eval()  # generic layers
    cell = m.rnn.layers[0].cell
    assert isinstance(cell, ElmanCell)
    x = torch.randint(0, 7, (2, 6))
    h = torch.zeros(2, 5)
    expect = []
    for t in range(6):
        e = m.embedding.weight[x[:, t]]
        h = torch.tanh(e @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh)
        expect.append(h @ m.decoder.weight.T + m.decoder.bias)
    logits, state = m(x)
    torch.testing.assert_close(logits, torch.stack(expect, 1))
    torch.testing.assert_close(state[0].h, h)


def test_variational_layers_use_one_input_and_one_state_mask_for_all_steps():
    torch.manual_seed(2)
    m = RNNLanguageModel(5, 3, 4, 2, cell="elman", dropout=0.5, variational=True).train()
    cells = m.rnn.cells()
    assert all(isinstance(c, VariationalDropout) and c.input_dropout == c.state_dropout == 0.5
               for c in cells)
    x = torch.randn(2, 5, 3)

    def naive(masked: bool):
        h_in = x
        for wrapped in cells:
            cell = wrapped.cell
            m_x = wrapped.masks["input"] if masked else 1.0  # (N, H_in), all steps
            m_h = wrapped.masks["state.h"] if masked else 1.0  # (N, H), all steps
            h, hs = torch.zeros(2, 4), []
            for t in range(5):
                h = torch.tanh((h_in[:, t] * m_x) @ cell.weight_ih.T + cell.bias_ih
                               + (h * m_h) @ cell.weight_hh.T + cell.bias_hh)
                hs.append(h)
            h_in = torch.stack(hs, 1)
        return h_in

    out, _ = m.rnn(x)  # (N, L, H); each layer drew its masks for this sequence
    for wrapped in cells:
        assert set(wrapped.masks["input"].unique().tolist()) <= {0.0, 2.0}
        assert set(wrapped.masks["state.h"].unique().tolist()) <= {0.0, 2.0}
    torch.testing.assert_close(out, naive(masked=True))
    m.eval()  # no masks: the plain cells
    torch.testing.assert_close(m.rnn(x)[0], naive(masked=False))


def test_variational_refuses_rates_of_its_own_in_the_cell_options():
    with pytest.raises(ValueError, match="expected no state_dropout in the cell options with "
                                         r"variational=True \(it sets both to dropout\)"):
        RNNLanguageModel(5, 3, 3, 1, dropout=0.5, variational=True, state_dropout=0.1)
    m = RNNLanguageModel(5, 3, 3, 1, dropout=0.5, zoneout=0.1)  # other options: generic layers
    assert [type(c).__name__ for c in m.rnn.cells()] == ["Zoneout"]


def test_variational_dropout_masks_are_locked_over_time():
    torch.manual_seed(3)
    m = RNNLanguageModel(5, 8, 8, 1, dropout=0.5, variational=True).train()
    x = m.embedding.weight.new_ones(2, 7, 8)
    d = m._drop(x)
    assert torch.equal(d[:, 0], d[:, 6])  # same mask at every step
    assert (d == 0).any() and (d == 2).any()


def test_tied_weights_share_one_tensor_and_reject_size_mismatch():
    m = RNNLanguageModel(9, 4, 4, 1, tie_weights=True)
    assert m.decoder.weight is m.embedding.weight
    with pytest.raises(ValueError, match="embedding_size == hidden_size"):
        RNNLanguageModel(9, 4, 5, 1, tie_weights=True)


def test_gradcheck_float64_generic_lm():
    torch.manual_seed(4)
    m = RNNLanguageModel(5, 3, 3, 2, cell="lstm", variational=True).double().eval()
    x = torch.randint(0, 5, (2, 4))
    emb = m.embedding.weight.detach().clone().requires_grad_(True)

    def f(w):
        m.embedding.weight.data = w
        e = F.embedding(x, w)
        out, _ = m.rnn.layers[0](e)
        out, _ = m.rnn.layers[1](out)
        return m.decoder(out)

    assert torch.autograd.gradcheck(f, (emb,), eps=1e-6, atol=1e-5)


def test_bad_input_errors_name_expected_and_got():
    m = RNNLanguageModel(5, 3, 3)
    with pytest.raises(ValueError, match=r"\(N, L\).*got \(4,\)"):
        m(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty prime"):
        m.generate(torch.zeros(0, dtype=torch.long), 3)


def test_generate_greedy_is_the_argmax_chain():
    torch.manual_seed(5)
    m = RNNLanguageModel(6, 4, 4).eval()
    out = m.generate(torch.tensor([1, 2]), 4, temperature=0)
    seq = [1, 2]
    for _ in range(4):
        logits, _ = m(torch.tensor([seq]))
        seq.append(int(logits[0, -1].argmax()))
    assert out.tolist() == seq[2:]


def test_metrics_hand_values():
    assert perplexity(math.log(100.0)) == pytest.approx(100.0)
    assert bits_per_char(math.log(2.0)) == pytest.approx(1.0)
    assert perplexity(1e6) == math.inf


def test_char_split_90_5_5_and_unknown_character(tmp_path):
    text = "abcdefghij" * 20  # 200 characters
    parts = split_text(text)
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [180, 10, 10]
    assert "".join(parts.values()) == text
    f = tmp_path / "t.txt"
    f.write_text(text)
    c = load_chars(f)
    assert c.vocab.itos == list("abcdefghij")
    assert c["train"].numel() == 180
    g = tmp_path / "u.txt"
    g.write_text(text + "z")
    with pytest.raises(ValueError, match="'z'"):
        load_chars(g, vocab=c.vocab)


def test_char_task_stateful_batches_and_smoke_training(tmp_path):
    """Smoke test: the char task learns a repetitive text (loss falls well below chance)."""
    text = "the cat sat on the mat. " * 60
    (tmp_path / "t.txt").write_text(text)
    task = CharLanguageModelTask(LMDataConfig(path=str(tmp_path / "t.txt"), bptt=8), tmp_path)
    task.setup()
    batches = list(task.batches("train", batch_size=4))
    assert len(batches) == task.num_batches("train", batch_size=4)
    # consecutive batches continue the same rows
    assert torch.equal(batches[1][0][:, 0], batches[0][1][:, -1])
    torch.manual_seed(0)
    model = task.build_model(LMModelConfig(hidden_size=32, embedding_size=16))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = None
    for _ in range(3):
        state = None
        for b in batches:
            out = task.step(model, b, state)
            state = model.detach_state(out.state)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            first = first if first is not None else float(out.loss.detach())
    m = task.evaluate(model, "dev", batch_size=2)
    chance = math.log(len(task.vocab))
    assert first > 0.9 * chance and m["loss"] < 0.5 * chance
    assert m["bpc"] == pytest.approx(m["loss"] / math.log(2))
    sample = task.generate(model, ["--prime", "the ", "--length", "20", "--seed", "1"])
    assert sample.startswith("the ") and len(sample) == 24
    with pytest.raises(ValueError, match="unknown"):
        task.generate(model, ["--prime", "XYZ"])


def test_shipped_recipes_hold_zaremba_small_hyperparameters():
    c = load_config("ptb_small")
    assert (c.model.hidden_size, c.model.num_layers, c.model.dropout) == (200, 2, 0.0)
    assert (c.data.batch_size, c.data.bptt, c.model.init_range) == (20, 20, 0.1)
    assert (c.optimizer.name, c.optimizer.lr, c.optimizer.grad_clip) == ("sgd", 1.0, 5.0)
    assert (c.schedule.start_epoch, c.schedule.gamma, c.trainer.max_epochs) == (4, 0.5, 13)
    assert load_config("ptb_clip_rnn_noclip").optimizer.grad_clip is None
