"""Greedy and beam search (memnets.models.decoding) against hand-worked cases and
brute force: beam 1 is greedy exactly; on a toy model greedy provably misses the
most probable output and beam search finds it; Wu et al.'s length normalisation
on a case worked by hand; a batch decodes as each example alone; a beam as wide
as the search space finds the brute-force optimum."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from memnets.models.decoding import (
    beam_search,
    greedy_search,
    index_state,
    length_penalty,
    max_lengths,
    repeat_state,
    replace_unknowns,
)

BOS, EOS = 0, 1


def table_step(table: dict[tuple[int, ...], dict[int, float]], V: int):
    """A decoder given by a table prefix -> {token: probability}; the state is the
    prefix so far, a (M, L) tensor padded with -1 (rows first)."""

    def step(tokens, state):
        prefix = torch.cat([state, tokens[:, None]], 1)  # (M, L + 1)
        rows = []
        for p in prefix.tolist():
            key = tuple(t for t in p if t >= 0)[1:]  # without BOS
            probs = torch.full((V,), 1e-12, dtype=torch.float64)
            for tok, pr in table.get(key, {EOS: 1.0}).items():
                probs[tok] = pr
            rows.append(torch.log(probs / probs.sum()))
        return torch.stack(rows), prefix

    return step


def empty_state(n: int):
    return torch.zeros(n, 0, dtype=torch.long)


# greedy's first choice (0.55) leads to two halves; the other (0.45) ends at once
TOY = {(): {2: 0.55, 3: 0.45}, (2,): {4: 0.5, 5: 0.5}, (2, 4): {EOS: 1.0},
       (2, 5): {EOS: 1.0}, (3,): {EOS: 1.0}}


def test_greedy_misses_the_most_probable_output_and_beam_finds_it():
    # greedy: 2 (0.55), then 4 or 5 (0.5), then EOS: P = 0.275; but [3] has P = 0.45
    step = table_step(TOY, 6)
    g = greedy_search(step, empty_state(1), batch_size=1, bos=BOS, eos=EOS, max_length=5)[0]
    assert g.tokens == [2, 4] and g.finished
    assert g.score == pytest.approx(math.log(0.55 * 0.5))
    b = beam_search(step, empty_state(1), batch_size=1, beam_size=2, bos=BOS, eos=EOS,
                    max_length=5)[0]
    assert b[0].tokens == [3] and b[0].score == pytest.approx(math.log(0.45))
    assert b[0].score > g.score and b[0].length == 2


def test_length_normalisation_worked_by_hand():
    # short: [3] then EOS, P = 0.3 * 1.0 = 0.3, |Y| = 2
    # long:  [2, 4, 4, 4] then EOS, P = 0.7 * 0.6^3 = 0.1512, |Y| = 5
    table = {(): {2: 0.7, 3: 0.3}, (3,): {EOS: 1.0},
             (2,): {4: 0.6, EOS: 0.4 - 1e-9}, (2, 4): {4: 0.6, EOS: 0.4 - 1e-9},
             (2, 4, 4): {4: 0.6, EOS: 0.4 - 1e-9}, (2, 4, 4, 4): {EOS: 1.0}}
    # with alpha = 0 the raw log-probabilities rank: [2] + EOS = 0.28 < [3] = 0.3 is the best
    step = table_step(table, 5)
    plain = beam_search(step, empty_state(1), batch_size=1, beam_size=3, bos=BOS, eos=EOS,
                        max_length=10, alpha=0.0)[0]
    assert plain[0].tokens == [3] and plain[0].score == pytest.approx(math.log(0.3))
    # alpha = 2: lp(2) = (7/6)^2 = 1.3611, lp(5) = (10/6)^2 = 2.7778
    #   [3]:        ln 0.3 / 1.3611 = -1.2040 / 1.3611 = -0.8846
    #   [2, 4, 4, 4]: ln 0.1512 / 2.7778 = -1.8892 / 2.7778 = -0.6801   <- best
    #   [2]:        ln 0.28 / lp(2) = -1.2730 / 1.3611 = -0.9353
    alpha = 2.0
    assert length_penalty(2, alpha) == pytest.approx(49 / 36)
    assert length_penalty(5, alpha) == pytest.approx(100 / 36)
    norm = beam_search(step, empty_state(1), batch_size=1, beam_size=3, bos=BOS, eos=EOS,
                       max_length=10, alpha=alpha)[0]
    assert norm[0].tokens == [2, 4, 4, 4] and norm[0].length == 5
    assert norm[0].score == pytest.approx(math.log(0.7 * 0.6 ** 3))
    assert norm[0].normalized == pytest.approx(-0.6801, abs=1e-4)
    assert [h.tokens for h in norm[1:3]] == [[3], [2]]
    assert norm[1].normalized == pytest.approx(-0.8846, abs=1e-4)


class RandomDecoder:
    """A random recurrent decoder: h' = tanh(W h + E[y]), log_probs = log_softmax(U h');
    per-example source "memory" of varying length mixed in by attention-like weights."""

    def __init__(self, V=7, H=5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(H, H, generator=g, dtype=torch.float64)
        self.E = torch.randn(V, H, generator=g, dtype=torch.float64) * 1.5
        self.U = torch.randn(V, H, generator=g, dtype=torch.float64) * 2.0
        self.H, self.V = H, V

    def start(self, N, seed=1):
        g = torch.Generator().manual_seed(seed)
        h = torch.randn(N, self.H, generator=g, dtype=torch.float64)
        memory = torch.randn(N, 4, self.H, generator=g, dtype=torch.float64)
        return {"h": h, "memory": memory, "tag": "kept"}

    def step(self, tokens, state):
        a = torch.softmax((state["memory"] @ state["h"][:, :, None]).squeeze(2), -1)  # (M, 4)
        ctx = (a[:, :, None] * state["memory"]).sum(1)
        h = torch.tanh(state["h"] @ self.W.T + self.E[tokens] + 0.5 * ctx)
        return torch.log_softmax(h @ self.U.T, -1), {**state, "h": h}, a


def test_beam_one_is_greedy_exactly():
    dec = RandomDecoder()
    for seed in range(5):
        state = dec.start(6, seed)
        g = greedy_search(dec.step, state, batch_size=6, bos=BOS, eos=EOS, max_length=12)
        b = beam_search(dec.step, state, batch_size=6, beam_size=1, bos=BOS, eos=EOS,
                        max_length=12)
        for gh, bh in zip(g, b):
            assert gh.tokens == bh[0].tokens and gh.finished == bh[0].finished
            assert gh.score == bh[0].score
            assert torch.equal(gh.attention, bh[0].attention)
    assert any(not h.finished for h in g) or any(h.finished for h in g)


def test_batched_beam_equals_each_example_alone():
    dec = RandomDecoder(V=9, seed=3)
    state = dec.start(5, 7)
    caps = torch.tensor([3, 8, 12, 5, 10])
    batch = beam_search(dec.step, state, batch_size=5, beam_size=4, bos=BOS, eos=EOS,
                        max_length=caps, alpha=0.6)
    for n in range(5):
        one = {k: (v[n:n + 1] if torch.is_tensor(v) else v) for k, v in state.items()}
        alone = beam_search(dec.step, one, batch_size=1, beam_size=4, bos=BOS, eos=EOS,
                            max_length=int(caps[n]), alpha=0.6)[0]
        assert [h.tokens for h in batch[n]] == [h.tokens for h in alone]
        for x, y in zip(batch[n], alone):
            assert x.score == pytest.approx(y.score, abs=1e-12)
            assert len(x.tokens) <= caps[n]
            assert torch.allclose(x.attention, y.attention)


def test_greedy_batch_equals_each_example_alone():
    dec = RandomDecoder(V=6, seed=5)
    state = dec.start(4, 2)
    batch = greedy_search(dec.step, state, batch_size=4, bos=BOS, eos=EOS, max_length=9)
    for n in range(4):
        one = {k: (v[n:n + 1] if torch.is_tensor(v) else v) for k, v in state.items()}
        alone = greedy_search(dec.step, one, batch_size=1, bos=BOS, eos=EOS, max_length=9)[0]
        assert batch[n].tokens == alone.tokens
        assert batch[n].score == pytest.approx(alone.score, abs=1e-12)


def brute_force_best(dec, state, V, L):
    """The most probable output of at most L tokens (EOS-ended, or L tokens without EOS)."""
    best, best_seq = -math.inf, None
    for n in range(0, L + 1):
        for seq in itertools.product([v for v in range(V) if v != EOS], repeat=n):
            s, h_state, tok = 0.0, state, torch.tensor([BOS])
            for y in [*seq, EOS][:L]:
                lp, h_state, _ = dec.step(tok, h_state)
                s += float(lp[0, y])
                tok = torch.tensor([y])
            if s > best:
                best, best_seq = s, list(seq)
    return best, best_seq


def test_a_beam_as_wide_as_the_space_finds_the_brute_force_optimum():
    V, L = 4, 4
    dec = RandomDecoder(V=V, seed=11)
    state = dec.start(1, 4)
    best, seq = brute_force_best(dec, state, V, L)
    hyps = beam_search(dec.step, state, batch_size=1, beam_size=(V - 1) ** L + 1, bos=BOS,
                       eos=EOS, max_length=L)[0]
    assert hyps[0].tokens == seq and hyps[0].score == pytest.approx(best, abs=1e-12)


def test_max_length_caps_and_the_ratio_rule():
    assert max_lengths(torch.tensor([0, 4, 10]), 1.5, 2).tolist() == [2, 8, 17]
    dec = RandomDecoder(V=5, seed=0)
    never_end = lambda tokens, s: (lambda lp, st, a: (  # noqa: E731
        lp.index_fill(1, torch.tensor([EOS]), -math.inf), st, a))(*dec.step(tokens, s))
    state = dec.start(2)
    g = greedy_search(never_end, state, batch_size=2, bos=BOS, eos=EOS, max_length=[3, 5])
    assert [len(h.tokens) for h in g] == [3, 5] and not any(h.finished for h in g)
    assert [h.attention.shape[0] for h in g] == [3, 5]
    b = beam_search(never_end, state, batch_size=2, beam_size=3, bos=BOS, eos=EOS,
                    max_length=[3, 5])
    assert [len(h[0].tokens) for h in b] == [3, 5] and not b[0][0].finished


def test_state_helpers_and_step_errors():
    s = {"a": torch.arange(3)[:, None], "b": (torch.arange(3), None), "n": 4}
    r = repeat_state(s, 2)
    assert r["a"][:, 0].tolist() == [0, 0, 1, 1, 2, 2] and r["b"][1] is None and r["n"] == 4
    assert index_state(r, torch.tensor([5, 0]))["b"][0].tolist() == [2, 0]
    with pytest.raises(ValueError, match="log_probs"):
        greedy_search(lambda t, s: (torch.zeros(5, 3), s), empty_state(2), batch_size=2,
                      bos=BOS, eos=EOS, max_length=3)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(lambda t, s: (t, s), None, batch_size=1, beam_size=0, bos=0, eos=1,
                    max_length=2)


def test_replace_unknowns_takes_the_most_attended_source_word():
    att = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7]])
    assert replace_unknowns(["the", "<unk>"], att, ["der", "hund", "zürich"], unk="<unk>") == [
        "the", "zürich"]
    with pytest.raises(ValueError, match="attention"):
        replace_unknowns(["a"], att, ["x"], unk="<unk>")
