r"""Greedy and beam search, written once for every autoregressive decoder
(translation now; captioning and speech reuse it).

A decoder is seen through one function, its *step*::

    step(tokens, state) -> (log_probs, state)                # or
    step(tokens, state) -> (log_probs, state, attention)

``tokens`` ``(M,)`` are the last token of each of ``M`` rows (hypotheses),
``log_probs`` ``(M, V)`` the log-probabilities of the next token, and
``attention`` ``(M, S)`` (optional) what each row looked at, kept per output
token for the alignment picture and :func:`replace_unknowns`.  ``state`` is
anything whose tensors have the rows as their first dimension: a tensor, or
tuples (named or not), lists and dicts of them (other leaves, such as ``None``
or numbers, are passed along unchanged).  The search selects and repeats rows
with :func:`index_state` and :func:`repeat_state`; a decoder whose state is
laid out otherwise passes its own ``reorder(state, index)``.

The searches (``N`` examples, beam ``B``):

* :func:`greedy_search` takes the most probable token at every step.
* :func:`beam_search` keeps the ``B`` best prefixes of each example (Sutskever,
  Vinyals & Le, "Sequence to sequence learning with neural networks", 2014),
  all examples in one batch of ``N·B`` rows.  Hypotheses are ranked by the
  length-normalised score of Wu et al., "Google's neural machine translation
  system: bridging the gap between human and machine translation", 2016:

  .. math::
      s(Y) = \frac{\log P(Y \mid X)}{\mathrm{lp}(Y)}, \qquad
      \mathrm{lp}(Y) = \frac{(5 + |Y|)^\alpha}{(5 + 1)^\alpha}

  with :math:`\alpha = 0` the plain log-probability.  Departure from the paper:
  its coverage penalty is not implemented.
* :func:`best_hypotheses` is what a task calls: greedy search for a beam of 1,
  else the best hypothesis of the beam.

Conventions shared by both:

* :math:`|Y|` counts the generated tokens, the end token included when the
  hypothesis has one; ``Hypothesis.tokens`` holds neither the start nor the end
  token.
* At most ``max_length`` tokens are generated per example (an int, or one per
  example, e.g. from :func:`max_lengths`: a ratio of the source length plus a
  constant); a hypothesis that reaches it without the end token stops there
  (``finished`` false), its score without an end token.
* An end token among the ``2B`` candidates of a step ends a hypothesis when it
  ranks among the first ``B``; the ``B`` best other candidates live on.  An
  example is done when no live prefix can still beat the best hypothesis that
  ended: a prefix of score :math:`s \le 0` reaches at best
  :math:`s / \mathrm{lp}(\text{max length})`, since scores only fall as tokens
  are added (and with :math:`\alpha = 0` at best :math:`s`).  The output is
  the best of all that ended.  With ``B = 1`` and :math:`\alpha = 0` this is
  exactly greedy search.
* Examples that are done leave the batch (their rows are dropped from the
  state), so a batch costs what its longest example costs, no more.

This module imports torch only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

StepFn = Callable[[Tensor, Any], tuple]


class Hypothesis(NamedTuple):
    """One decoded output.

    Attributes:
        tokens: the generated token ids, without start and end tokens.
        score: :math:`\\log P(Y \\mid X)`, the end token's log-probability included
            when it ended.
        normalized: ``score / lp(length)`` (equal to ``score`` for
            :math:`\\alpha = 0` and in greedy search).
        length: :math:`|Y|`: ``len(tokens)``, plus 1 when ``finished``.
        finished: whether it ended with the end token (else it stopped at the
            maximum length).
        attention: ``(length, S)``: the step's attention for each generated token
            (the end token's last), or ``None`` when the step returns none.
    """

    tokens: list[int]
    score: float
    normalized: float
    length: int
    finished: bool
    attention: Tensor | None


# ---------------------------------------------------------------------- states


def map_state(fn: Callable[[Tensor], Tensor], state: Any) -> Any:
    """``fn`` applied to every tensor of a (nested) state; other leaves unchanged."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_state(fn, s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(fn, s) for s in state)
    if isinstance(state, dict):
        return {k: map_state(fn, v) for k, v in state.items()}
    return state


def index_state(state: Any, index: Tensor) -> Any:
    """Rows ``index`` of every tensor of ``state`` (``index_select`` along dim 0)."""
    return map_state(lambda t: t.index_select(0, index.to(t.device)), state)


def repeat_state(state: Any, times: int) -> Any:
    """Each row repeated ``times`` times in place (row ``n`` becomes rows
    ``n·times ... n·times + times - 1``)."""
    return map_state(lambda t: t.repeat_interleave(times, dim=0), state)


# ---------------------------------------------------------------------- lengths


def length_penalty(length: int, alpha: float) -> float:
    r""":math:`\mathrm{lp}(Y) = ((5 + |Y|) / 6)^\alpha` (Wu et al. 2016)."""
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(source_lengths: Tensor | Sequence[int], ratio: float, extra: int) -> Tensor:
    """``floor(ratio · source length + extra)`` tokens per example, at least 1: the
    usual cap of a translation (e.g. ``ratio = 1.5``, ``extra = 10``)."""
    lengths = torch.as_tensor(source_lengths, dtype=torch.float64)
    return torch.clamp(torch.floor(ratio * lengths + extra), min=1).long()


def _per_example(max_length: int | Tensor | Sequence[int], n: int) -> list[int]:
    if isinstance(max_length, int):
        out = [max_length] * n
    else:
        out = [int(v) for v in torch.as_tensor(max_length).reshape(-1).tolist()]
        if len(out) != n:
            raise ValueError(f"expected max_length as an int or {n} values (one per example), "
                             f"got {len(out)}")
    if any(v < 1 for v in out):
        raise ValueError(f"expected max_length >= 1, got {min(out)}")
    return out


def _unpack(out: tuple) -> tuple[Tensor, Any, Tensor | None]:
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise ValueError("expected step(tokens, state) to return (log_probs, state) or "
                         "(log_probs, state, attention)")
    return out[0], out[1], out[2] if len(out) == 3 else None


def _check_log_probs(log_probs: Tensor, rows: int) -> None:
    if log_probs.dim() != 2 or log_probs.shape[0] != rows:
        raise ValueError(f"expected log_probs of shape ({rows}, V) from step, got "
                         f"{tuple(log_probs.shape)}")


# ---------------------------------------------------------------------- greedy


@torch.no_grad()
def greedy_search(step: StepFn, state: Any, *, batch_size: int, bos: int, eos: int,
                  max_length: int | Tensor | Sequence[int],
                  reorder: Callable[[Any, Tensor], Any] = index_state) -> list[Hypothesis]:
    """The most probable token at every step, for ``batch_size`` examples at once.

    Args:
        step: the decoder step (see the module docstring).
        state: the decoder state of the ``batch_size`` examples (rows first).
        bos, eos: the start and end token ids.
        max_length: the most tokens generated per example (int or ``(N,)``).
        reorder: ``reorder(state, index)`` keeps rows ``index`` (default
            :func:`index_state`).

    Returns:
        one :class:`Hypothesis` per example, in order.
    """
    N = batch_size
    caps = _per_example(max_length, N)
    active = list(range(N))
    tokens: list[list[int]] = [[] for _ in range(N)]
    attn: list[list[Tensor]] = [[] for _ in range(N)]
    scores = [0.0] * N
    done: list[Hypothesis | None] = [None] * N
    last = torch.full((N,), bos, dtype=torch.long)
    t = 0
    while active:
        log_probs, state, attention = _unpack(step(last.to(_device(state, last)), state))
        _check_log_probs(log_probs, len(active))
        best = log_probs.argmax(-1)  # (M,) the first maximum
        best_lp = log_probs.gather(1, best[:, None]).squeeze(1)
        best, best_lp = best.tolist(), best_lp.double().tolist()
        keep = []
        for row, n in enumerate(active):
            scores[n] += best_lp[row]
            if attention is not None:
                attn[n].append(attention[row].detach().float().cpu())
            if best[row] == eos:
                done[n] = _hypothesis(tokens[n], scores[n], scores[n], True, attn[n])
                continue
            tokens[n].append(best[row])
            if t + 1 >= caps[n]:
                done[n] = _hypothesis(tokens[n], scores[n], scores[n], False, attn[n])
                continue
            keep.append(row)
        active = [active[r] for r in keep]
        if not active:
            break
        index = torch.tensor(keep, dtype=torch.long)
        if len(keep) != len(best):
            state = reorder(state, index)
        last = torch.tensor([best[r] for r in keep], dtype=torch.long)
        t += 1
    return done  # type: ignore[return-value]


def _device(state: Any, default: Tensor) -> torch.device:
    found: list[torch.device] = []
    map_state(lambda x: found.append(x.device) or x, state)
    return found[0] if found else default.device


def _hypothesis(tokens: list[int], score: float, normalized: float, finished: bool,
                attention: list[Tensor]) -> Hypothesis:
    return Hypothesis(list(tokens), float(score), float(normalized),
                      len(tokens) + (1 if finished else 0), finished,
                      torch.stack(attention) if attention else None)


# ---------------------------------------------------------------------- beam


@torch.no_grad()
def beam_search(step: StepFn, state: Any, *, batch_size: int, beam_size: int, bos: int, eos: int,
                max_length: int | Tensor | Sequence[int], alpha: float = 0.0,
                reorder: Callable[[Any, Tensor], Any] = index_state,
                expand: Callable[[Any, int], Any] = repeat_state) -> list[list[Hypothesis]]:
    """Batched beam search with the length normalisation of Wu et al. (2016).

    Args:
        step: the decoder step (see the module docstring); it receives
            ``N_active · B`` rows, example-major (row ``a·B + b`` is beam ``b`` of
            the ``a``-th example still being decoded).
        state: the decoder state of the ``batch_size`` examples (one row each);
            ``expand(state, B)`` makes the ``N · B`` rows.
        beam_size: B >= 1.
        bos, eos: the start and end token ids.
        max_length: the most tokens generated per example (int or ``(N,)``).
        alpha: the length-normalisation exponent (0: none; Wu et al. use 0.6 to 0.7).
        reorder: ``reorder(state, index)`` keeps rows ``index`` (default
            :func:`index_state`).
        expand: ``expand(state, B)`` repeats each row ``B`` times (default
            :func:`repeat_state`).

    Returns:
        for each example, the ``B`` best hypotheses that ended (or stopped at the
        maximum length), best normalised score first; ``[0]`` is the output.
    """
    N, B = batch_size, beam_size
    if B < 1:
        raise ValueError(f"expected beam_size >= 1, got {B}")
    if alpha < 0:
        raise ValueError(f"expected alpha >= 0, got {alpha}")
    caps = _per_example(max_length, N)
    state = expand(state, B)
    active = list(range(N))  # examples still decoded, in row order
    finished: list[list[Hypothesis]] = [[] for _ in range(N)]
    # per live row: its score, tokens and attention so far
    row_scores = [0.0 if b == 0 else -math.inf for _ in range(N) for b in range(B)]
    row_tokens: list[list[int]] = [[] for _ in range(N * B)]
    row_attn: list[list[Tensor]] = [[] for _ in range(N * B)]
    last = torch.full((N * B,), bos, dtype=torch.long)
    t = 0
    while active:
        log_probs, state, attention = _unpack(step(last.to(_device(state, last)), state))
        M = len(active) * B
        _check_log_probs(log_probs, M)
        V = log_probs.shape[1]
        scores = torch.tensor(row_scores, dtype=torch.float64, device=log_probs.device)
        cand = (scores[:, None] + log_probs.double()).view(len(active), B * V)
        k = min(2 * B, B * V)
        top_v, top_i = cand.topk(k, dim=1)  # (A, k)
        # ranked by score, the lower index first among equal scores
        order = torch.argsort(top_i, dim=1)
        top_v, top_i = top_v.gather(1, order), top_i.gather(1, order)
        order = torch.argsort(top_v, dim=1, descending=True, stable=True)
        top_v, top_i = top_v.gather(1, order).tolist(), top_i.gather(1, order).tolist()
        attn_rows = None if attention is None else attention.detach().float().cpu()
        keep_rows: list[int] = []
        next_tokens: list[int] = []
        new_scores: list[float] = []
        new_tokens: list[list[int]] = []
        new_attn: list[list[Tensor]] = []
        still: list[int] = []
        for a, n in enumerate(active):
            alive: list[tuple[int, int, float]] = []  # (row, token, score)
            for rank, (v, i) in enumerate(zip(top_v[a], top_i[a])):
                if v == -math.inf:
                    break
                row, tok = a * B + i // V, i % V
                if tok == eos:
                    if rank < B:
                        hist = row_attn[row] + ([attn_rows[row]] if attn_rows is not None
                                                else [])
                        L = len(row_tokens[row]) + 1
                        finished[n].append(_hypothesis(
                            row_tokens[row], v, v / length_penalty(L, alpha), True, hist))
                    continue
                if len(alive) < B:
                    alive.append((row, tok, v))
            length = t + 1
            if length >= caps[n]:  # the cap: live prefixes stop here
                for row, tok, v in alive:
                    hist = row_attn[row] + ([attn_rows[row]] if attn_rows is not None else [])
                    finished[n].append(_hypothesis(row_tokens[row] + [tok], v,
                                                   v / length_penalty(length, alpha), False,
                                                   hist))
                continue
            if _example_done(finished[n], alive, alpha, caps[n]):
                continue
            while len(alive) < B:  # fewer finite candidates than beams: dead rows
                alive.append((alive[0][0] if alive else a * B, eos, -math.inf))
            still.append(n)
            for row, tok, v in alive:
                keep_rows.append(row)
                next_tokens.append(tok)
                new_scores.append(v)
                new_tokens.append(row_tokens[row] + [tok])
                new_attn.append(row_attn[row] + ([attn_rows[row]] if attn_rows is not None
                                                 else []))
        active = still
        if not active:
            break
        state = reorder(state, torch.tensor(keep_rows, dtype=torch.long))
        row_scores, row_tokens, row_attn = new_scores, new_tokens, new_attn
        last = torch.tensor(next_tokens, dtype=torch.long)
        t += 1
    return [sorted(f, key=lambda h: -h.normalized)[:B] for f in finished]


def best_hypotheses(step: StepFn, state: Any, *, batch_size: int, bos: int, eos: int,
                    max_length: int | Tensor | Sequence[int], beam_size: int = 1,
                    alpha: float = 0.0) -> list[Hypothesis]:
    """The output of each example, as a task decodes: :func:`greedy_search` for
    ``beam_size`` 1, else the best of :func:`beam_search` (the arguments are theirs)."""
    common = dict(batch_size=batch_size, bos=bos, eos=eos, max_length=max_length)
    if beam_size == 1:
        return greedy_search(step, state, **common)
    return [h[0] for h in beam_search(step, state, beam_size=beam_size, alpha=alpha, **common)]


def _example_done(finished: list[Hypothesis], alive: list[tuple[int, int, float]],
                  alpha: float, cap: int) -> bool:
    """No live prefix can beat the best hypothesis that ended."""
    if not alive:
        return True
    if not finished:
        return False
    best = max(h.normalized for h in finished)
    bound = max(v for _, _, v in alive) / length_penalty(cap, alpha)
    return best >= bound


# ---------------------------------------------------------------------- unknown words


def replace_unknowns(output: Sequence[str], attention: Tensor, source: Sequence[str], *,
                     unk: str) -> list[str]:
    """Each ``unk`` in ``output`` replaced by the source word it attends to most
    (Luong, Sutskever, Le, Vinyals & Zaremba, "Addressing the rare word problem in
    neural machine translation", 2015, with the attention as the alignment, as Jean,
    Cho, Memisevic & Bengio, "On using very large target vocabulary for neural
    machine translation", 2015, do).

    Args:
        output: the output words (``attention`` row ``i`` belongs to word ``i``).
        attention: ``(>= len(output), S)`` weights over the source positions.
        source: the ``S`` source words.
    """
    if attention.dim() != 2 or attention.shape[0] < len(output) or \
            attention.shape[1] != len(source):
        raise ValueError(f"expected attention of shape (>= {len(output)}, {len(source)}), got "
                         f"{tuple(attention.shape)}")
    out = list(output)
    for i, w in enumerate(out):
        if w == unk:
            out[i] = source[int(attention[i].argmax())]
    return out
