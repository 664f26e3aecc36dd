r"""Sentence-pair models: a premise and a hypothesis in, one set of logits per head out.

For natural language inference (entailment, neutral, contradiction) and
semantic relatedness (Tai et al.'s distribution over the scores 1..5), with any
registered memnets cell inside.  :class:`PairModel` embeds both sentences and
dispatches to one small class per architecture, each of which returns the pair
vector (and the hypothesis-by-premise attention where it has one):

* ``features`` — :class:`SentenceFeatures`, two sentence encoders and the
  features :math:`[u; v; |u - v|; u \odot v]`;
* ``conditional`` — :class:`ConditionalAttention`, conditional encoding with
  word-by-word attention;
* ``match_lstm`` — :class:`MatchLSTM`, a matching LSTM over attended premises;
* ``lstmn_shallow``, ``lstmn_deep`` — :class:`LSTMNFusion`, LSTMNs with
  shallow or deep attention fusion.

Also :func:`relatedness_target` and :func:`expected_relatedness`, Tai et al.'s
target distribution and read-out.  Recurrent layers come from
:func:`memnets.layers.encoder.build_encoder`; the cells stepped by hand inside
a recurrence from :func:`memnets.cells.registry.make_cell`.

This module imports torch, :mod:`memnets.layers` and the leaves only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memnets.cells.base import RecurrentCell, check_size, check_sizes
from memnets.cells.lstmn_fusion import LSTMNFusionCell
from memnets.cells.registry import make_cell
from memnets.errors import ConfigError
from memnets.layers.attention import Attention
from memnets.layers.encoder import build_encoder
from memnets.layers.lstmn import LSTMN
from memnets.layers.pooling import POOLINGS, attention_scorer, pool
from memnets.layers.recurrent import Recurrent
from memnets.layers.sequence import as_lengths

ARCHITECTURES = ("features", "conditional", "match_lstm", "lstmn_shallow", "lstmn_deep")
# what match-LSTM's matching cell reads: the paper's [a; h] or the comparison features
MATCHINGS = ("concat", "compare")
DEFAULT_HEADS = MappingProxyType({"entailment": 3})


def _real(lengths: Tensor, T: int, device) -> Tensor:
    """``(N, T)`` bool, true at the real words of each sentence."""
    return torch.arange(T, device=device) < lengths.to(device).unsqueeze(1)


def _at_last(x: Tensor, lengths: Tensor) -> Tensor:
    """``x[n, lengths[n] - 1]`` for each ``n``: ``(N, T, F)`` to ``(N, F)``."""
    return x[torch.arange(x.shape[0], device=x.device), lengths.to(x.device) - 1]


def _begin_sequence(cell: nn.Module, batch_size: int, like: Tensor) -> None:
    """Fresh per-sequence dropout masks for a cell stepped by hand (the regulariser
    wrappers draw them themselves only when a layer runs a whole sequence)."""
    while isinstance(cell, RecurrentCell):
        if cell.training and hasattr(cell, "sample_masks"):
            cell.sample_masks(batch_size, device=like.device, dtype=like.dtype)
        cell = getattr(cell, "cell", None)


def encoder_pair(cell: str, embedding_size: int, hidden_size: int, *, num_layers: int,
                 bidirectional: bool, dropout: float, shared: bool,
                 cell_options: dict) -> tuple[nn.Module, nn.Module]:
    """The premise's and the hypothesis's recurrent layers (:func:`build_encoder`): one
    module twice when ``shared``, else two with their own weights."""

    def encoder():
        return build_encoder(cell, embedding_size, hidden_size, num_layers=num_layers,
                             bidirectional=bidirectional, dropout=dropout,
                             cell_options=cell_options)

    premise = encoder()
    return premise, premise if shared else encoder()


class SentenceFeatures(nn.Module):
    r"""Sentence encoders and matching features (Bowman, Angeli, Potts & Manning, "A
    large annotated corpus for learning natural language inference", 2015; Mou et al.,
    "Natural language inference by tree-based convolution and heuristic matching", 2016).

    .. math::
        u = \mathrm{pool}(\mathrm{enc}_p(P)), \quad v = \mathrm{pool}(\mathrm{enc}_h(Q)),
        \qquad z = \tanh\big(W\, \mathrm{drop}([u; v; |u - v|; u \odot v]) + b\big)

    with :math:`\mathrm{enc}_p = \mathrm{enc}_h` when ``shared``.  For relatedness
    Tai, Socher & Manning ("Improved semantic representations from tree-structured
    LSTM networks", 2015) feed only :math:`h_\times = u \odot v` and
    :math:`h_+ = |u - v|` to a sigmoid layer; here every head reads the one
    :math:`z` above, built from the full feature vector with a tanh layer.
    Bowman et al. stack three tanh layers; here there is one.

    Returns ``z`` ``(N, classifier_hidden)`` and no attention.
    """

    def __init__(self, embedding_size: int, hidden_size: int, *, cell: str, num_layers: int,
                 bidirectional: bool, shared: bool, pooling: str, classifier_hidden: int,
                 dropout: float, cell_options: dict) -> None:
        super().__init__()

        self.premise_encoder, self.hypothesis_encoder = encoder_pair(
            cell, embedding_size, hidden_size, num_layers=num_layers,
            bidirectional=bidirectional, dropout=dropout, shared=shared,
            cell_options=cell_options)
        size = self.premise_encoder.output_size
        self.pooling, self.bidirectional, self.dropout = pooling, bidirectional, dropout
        if pooling == "attention":
            self.premise_scorer = attention_scorer(size)
            self.hypothesis_scorer = self.premise_scorer if shared else attention_scorer(size)
        else:
            self.premise_scorer = self.hypothesis_scorer = None
        self.mlp = nn.Linear(4 * size, classifier_hidden)
        self.output_size = classifier_hidden

    def encode(self, x: Tensor, lengths: Tensor, encoder: nn.Module, scorer) -> Tensor:
        out, _ = encoder(x, lengths=lengths)  # (N, T, D*H), zero at padding
        return pool(out, lengths, self.pooling, scorer=scorer, bidirectional=self.bidirectional)

    def forward(self, p: Tensor, lp: Tensor, q: Tensor, lq: Tensor) -> tuple[Tensor, None]:
        u = self.encode(p, lp, self.premise_encoder, self.premise_scorer)  # (N, D*H)
        v = self.encode(q, lq, self.hypothesis_encoder, self.hypothesis_scorer)  # (N, D*H)
        features = torch.cat([u, v, (u - v).abs(), u * v], dim=1)  # (N, 4*D*H)
        features = F.dropout(features, self.dropout, training=self.training)
        return torch.tanh(self.mlp(features)), None


class ConditionalAttention(nn.Module):
    r"""Conditional encoding with word-by-word attention (Rocktäschel, Grefenstette,
    Hermann, Kočiský & Blunsom, "Reasoning about entailment with neural attention", 2016).

    The premise encoder reads the premise into :math:`Y = [y_1 \dots y_L]`; the
    hypothesis encoder starts from the premise encoder's final state and gives
    :math:`h_1 \dots h_N`.  At each hypothesis word (:math:`r_0 = 0`):

    .. math::
        \begin{aligned}
        M_t &= \tanh\big(W^y Y + (W^h h_t + W^r r_{t-1}) \otimes e_L\big) \\
        \alpha_t &= \mathrm{softmax}(w^\top M_t) \qquad (\text{over the real premise words}) \\
        r_t &= Y \alpha_t^\top + \tanh(W^t r_{t-1}) \\
        h^* &= \tanh(W^p r_N + W^x h_N)
        \end{aligned}

    with :math:`r_N`, :math:`h_N` at each hypothesis's last real word.  The
    attention is :class:`~memnets.layers.attention.Attention` with query
    :math:`[h_t; r_{t-1}]` (its query matrix is :math:`[W^h, W^r]`, its key
    matrix :math:`W^y`, its :math:`v` the paper's :math:`w`), without bias; other
    ``attention`` kinds replace the score.

    Departures from the paper: the whole final state (:math:`h` and :math:`c` for
    an LSTM; whatever state the cell has) initialises the hypothesis encoder,
    where the paper passes the memory cell :math:`c` only, so that any cell
    works; with ``shared`` both sentences are read by the same encoder (the
    paper uses two, ``shared=False``).  Unidirectional only.

    Returns :math:`h^*` ``(N, H)`` and the weights :math:`\alpha` ``(N, T_h, T_p)``.
    """

    def __init__(self, embedding_size: int, hidden_size: int, *, cell: str, num_layers: int,
                 shared: bool, attention: str, dropout: float, cell_options: dict) -> None:
        super().__init__()

        self.premise_encoder, self.hypothesis_encoder = encoder_pair(
            cell, embedding_size, hidden_size, num_layers=num_layers, bidirectional=False,
            dropout=dropout, shared=shared, cell_options=cell_options)
        k = self.premise_encoder.output_size
        self.attention = Attention(2 * k, k, attention, bias=False)  # A = k
        self.W_t = nn.Linear(k, k, bias=False)
        self.W_p = nn.Linear(k, k, bias=False)
        self.W_x = nn.Linear(k, k, bias=False)
        self.output_size = k

    def forward(self, p: Tensor, lp: Tensor, q: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:
        Y, premise_state = self.premise_encoder(p, lengths=lp)  # (N, T_p, k)
        h, _ = self.hypothesis_encoder(q, premise_state, lengths=lq)  # (N, T_h, k)
        premise_real = _real(lp, Y.shape[1], Y.device)  # (N, T_p)
        keys = self.attention.project_keys(Y)  # W^y Y, once
        r = h.new_zeros(h.shape[0], Y.shape[2])  # r_0 = 0, (N, k)
        rs, alphas = [], []
        for h_t in h.unbind(1):  # (N, k)
            a_t, alpha_t = self.attention(torch.cat([h_t, r], dim=1), Y, premise_real,
                                          projected=keys)  # Y alpha_t^T (N, k), (N, T_p)
            r = a_t + torch.tanh(self.W_t(r))  # (N, k)
            rs.append(r)
            alphas.append(alpha_t)
        r_N = _at_last(torch.stack(rs, dim=1), lq)  # (N, k)
        h_N = _at_last(h, lq)  # (N, k)
        h_star = torch.tanh(self.W_p(r_N) + self.W_x(h_N))  # (N, k)
        weights = torch.stack(alphas, dim=1)  # (N, T_h, T_p)
        weights = weights * _real(lq, h.shape[1], h.device).unsqueeze(2)  # padded rows 0
        return h_star, weights


class MatchLSTM(nn.Module):
    r"""match-LSTM (Wang & Jiang, "Learning natural language inference with LSTM", 2016).

    Encoders give the premise states :math:`h^s_j` and hypothesis states
    :math:`h^t_k`; a matching recurrence reads the hypothesis word by word
    (:math:`h^m_0 = 0`):

    .. math::
        \begin{aligned}
        e_{kj} &= w^e \cdot \tanh(W^s h^s_j + W^t h^t_k + W^m h^m_{k-1}) \\
        \alpha_{kj} &= \mathrm{softmax}_j(e_{kj}) \qquad (\text{over the real premise words}) \\
        a_k &= \textstyle\sum_j \alpha_{kj} h^s_j, \qquad m_k = [a_k; h^t_k] \\
        h^m_k &= \mathrm{mLSTM}(m_k, h^m_{k-1})
        \end{aligned}

    The attention is :class:`~memnets.layers.attention.Attention` with query
    :math:`[h^t_k; h^m_{k-1}]` (query matrix :math:`[W^t, W^m]`, key matrix
    :math:`W^s`, :math:`v = w^e`), without bias; the matching cell is any
    registered cell (``cell``, with ``cell_options``), :math:`h^m_k` its output.
    The classifier reads :math:`h^m` at each hypothesis's last real word.
    ``matching="compare"`` feeds the matching cell
    :math:`m_k = [a_k; h^t_k; a_k - h^t_k; a_k \odot h^t_k]` instead, the
    comparison features of Chen et al. ("Enhanced LSTM for natural language
    inference", 2017): a departure from Wang & Jiang, which learns on SICK from
    scratch where the paper's form does not (``results/nli.md``).
    With ``bidirectional`` the encoders read both ways (:math:`h^s`, :math:`h^t`
    of size 2H); the matching recurrence reads forward only.

    Returns :math:`h^m_N` ``(N, H)`` and the weights :math:`\alpha` ``(N, T_h, T_p)``.
    """

    def __init__(self, embedding_size: int, hidden_size: int, *, cell: str, num_layers: int,
                 bidirectional: bool, shared: bool, attention: str, dropout: float,
                 cell_options: dict, matching: str = "concat") -> None:
        super().__init__()
        if matching not in MATCHINGS:
            raise ConfigError(f"expected matching one of {', '.join(MATCHINGS)}, "
                              f"got {matching!r}")
        self.matching = matching

        self.premise_encoder, self.hypothesis_encoder = encoder_pair(
            cell, embedding_size, hidden_size, num_layers=num_layers,
            bidirectional=bidirectional, dropout=dropout, shared=shared,
            cell_options=cell_options)
        d = self.premise_encoder.output_size
        width = 2 * d if matching == "concat" else 4 * d
        self.matcher = make_cell(cell, input_size=width, hidden_size=hidden_size, **cell_options)
        m = self.matcher.output_size
        self.attention = Attention(d + m, d, attention, bias=False)
        self.output_size = m

    def forward(self, p: Tensor, lp: Tensor, q: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:
        hs, _ = self.premise_encoder(p, lengths=lp)  # (N, T_p, d)
        ht, _ = self.hypothesis_encoder(q, lengths=lq)  # (N, T_h, d)
        N, T_h = ht.shape[:2]
        premise_real = _real(lp, hs.shape[1], hs.device)  # (N, T_p)
        hypothesis_real = _real(lq, T_h, ht.device)  # (N, T_h)
        keys = self.attention.project_keys(hs)  # W^s h^s, once
        _begin_sequence(self.matcher, N, ht)
        state = self.matcher.init_state(N, device=ht.device, dtype=ht.dtype)
        hm = ht.new_zeros(N, self.output_size)  # h^m_0
        alphas = []
        for k in range(T_h):
            ht_k, real_k = ht[:, k], hypothesis_real[:, k]  # (N, d), (N,)
            a_k, alpha_k = self.attention(torch.cat([ht_k, hm], dim=1), hs, premise_real,
                                          projected=keys)  # (N, d), (N, T_p)
            m_k = ([a_k, ht_k] if self.matching == "concat"
                   else [a_k, ht_k, a_k - ht_k, a_k * ht_k])
            y, new_state = self.matcher(torch.cat(m_k, dim=1), state)
            state = self.matcher.mask_state(real_k, new_state, state)  # past the end: kept
            hm = torch.where(real_k.unsqueeze(1), y, hm)  # (N, m)
            alphas.append(alpha_k)
        weights = torch.stack(alphas, dim=1) * hypothesis_real.unsqueeze(2)  # (N, T_h, T_p)
        return hm, weights


class LSTMNFusion(nn.Module):
    r"""LSTMNs for a pair with shallow or deep attention fusion (Cheng, Dong & Lapata,
    "Long short-term memory-networks for machine reading", 2016, §3.3).

    An LSTMN (:class:`~memnets.layers.lstmn.LSTMN`, intra-attention over its own
    tape) reads the premise into its hidden tape :math:`\gamma_1 \dots \gamma_m`
    and memory tape :math:`\alpha_1 \dots \alpha_m`.  At each hypothesis word
    :math:`x_t` inter-attention reads the premise's tapes
    (:math:`\tilde\gamma_0 = 0`):

    .. math::
        \begin{aligned}
        p^t_j &= \mathrm{softmax}_j\big(u^\top \tanh(W_\gamma \gamma_j + W_x x_t
            + W_{\tilde\gamma} \tilde\gamma_{t-1})\big) \\
        [\tilde\alpha_t; \tilde\gamma_t] &= \textstyle\sum_j p^t_j [\alpha_j; \gamma_j]
        \end{aligned}

    (:class:`~memnets.layers.attention.Attention` with query
    :math:`[x_t; \tilde\gamma_{t-1}]`, values :math:`[\alpha_j; \gamma_j]`, no bias).
    A second LSTMN reads the hypothesis with intra-attention over its own tape
    :math:`h_1 \dots h_n`, and

    * ``shallow``: takes :math:`[x_t; \tilde\gamma_t]` as its input, the
      inter-attention's context fed to the decoder as in Bahdanau et al.'s
      encoder–decoder;
    * ``deep``: is :class:`~memnets.cells.lstmn_fusion.LSTMNFusionCell`, whose
      memory takes the attended premise memory through a gate,
      :math:`r_t = \sigma(W_r [\tilde\gamma_t; x_t])`,
      :math:`c_t = r_t \odot \tilde\alpha_t + f_t \odot \tilde c_t + i_t \odot \hat c_t`.

    The classifier reads, as in the paper's inference experiments, the two
    tapes pooled (``pooling``; the paper averages, ``mean``) and joined,
    :math:`z = \mathrm{ReLU}(W [\mathrm{pool}(\gamma); \mathrm{pool}(h)] + b)`.

    Departures from the paper: the paper specifies the inter-attention score
    (eq. 10) for deep fusion only and says of shallow fusion that it is
    "similar to" Bahdanau et al.'s; both use eq. 10 here, so that the two differ
    only in how the read enters the hypothesis LSTMN.  Every tape starts with
    :class:`~memnets.cells.lstmn.LSTMNCell`'s slot 0.

    Returns ``z`` ``(N, classifier_hidden)`` and the inter-attention weights
    :math:`p` ``(N, T_h, T_p)``.
    """

    def __init__(self, embedding_size: int, hidden_size: int, *, deep: bool, pooling: str,
                 attention: str, classifier_hidden: int, dropout: float,
                 attention_size: int | None = None) -> None:
        super().__init__()
        E, H = embedding_size, hidden_size
        self.deep, self.pooling, self.dropout = deep, pooling, dropout
        self.premise_reader = LSTMN(E, H, attention_size, batch_first=True)
        self.inter_attention = Attention(E + H, H, attention, bias=False)
        if deep:
            self.hypothesis_reader = Recurrent(LSTMNFusionCell(E, H, attention_size),
                                               batch_first=True)
        else:
            self.hypothesis_reader = LSTMN(E + H, H, attention_size, batch_first=True)
        if pooling == "attention":
            self.premise_scorer, self.hypothesis_scorer = attention_scorer(H), attention_scorer(H)
        else:
            self.premise_scorer = self.hypothesis_scorer = None
        self.mlp = nn.Linear(2 * H, classifier_hidden)
        self.output_size = classifier_hidden

    def forward(self, p: Tensor, lp: Tensor, q: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:
        N, T_p = p.shape[:2]
        T_h = q.shape[1]
        gamma, tape = self.premise_reader(p, lengths=lp)  # (N, T_p, H), LSTMNState
        alpha = tape.c[:, 1:]  # memory tape, slot 0 (the initial state) left out
        alpha = F.pad(alpha, (0, 0, 0, T_p - alpha.shape[1]))  # (N, T_p, H), zero at padding
        premise_real = _real(lp, T_p, p.device)  # (N, T_p)
        keys = self.inter_attention.project_keys(gamma)  # W_gamma gamma, once
        values = torch.cat([alpha, gamma], dim=2)  # (N, T_p, 2H)
        H = gamma.shape[2]
        read = gamma.new_zeros(N, H)  # gamma~_0
        reads, weights = [], []
        for x_t in q.unbind(1):  # (N, E)
            context, p_t = self.inter_attention(torch.cat([x_t, read], dim=1), gamma,
                                                premise_real, values=values, projected=keys)
            reads.append(context)  # [alpha~_t; gamma~_t], (N, 2H)
            read = context[:, H:]
            weights.append(p_t)
        reads = torch.stack(reads, dim=1)  # (N, T_h, 2H)
        alpha_read, gamma_read = reads.split([H, H], dim=2)
        if self.deep:
            inputs = torch.cat([q, gamma_read, alpha_read], dim=2)  # (N, T_h, E + 2H)
        else:
            inputs = torch.cat([q, gamma_read], dim=2)  # (N, T_h, E + H)
        h, _ = self.hypothesis_reader(inputs, lengths=lq)  # (N, T_h, H)
        u = pool(gamma, lp, self.pooling, scorer=self.premise_scorer)  # (N, H)
        v = pool(h, lq, self.pooling, scorer=self.hypothesis_scorer)  # (N, H)
        joined = F.dropout(torch.cat([u, v], dim=1), self.dropout, training=self.training)
        weights = torch.stack(weights, dim=1) * _real(lq, T_h, q.device).unsqueeze(2)
        return torch.relu(self.mlp(joined)), weights  # (N, classifier_hidden), (N, T_h, T_p)


class PairModel(nn.Module):
    r"""A sentence-pair classifier: embed both sentences, build a pair vector with one
    of the architectures, and read it out with one linear layer per head.

    .. math::
        P = \mathrm{drop}_e(E\, p), \quad Q = \mathrm{drop}_e(E\, q), \qquad
        z = \mathrm{architecture}(P, Q), \qquad
        \mathrm{logits}_k = W_k\, \mathrm{drop}(z) + b_k \text{ for each head } k

    Architectures (each class's docstring has its equations and paper):
    ``features`` (:class:`SentenceFeatures`), ``conditional``
    (:class:`ConditionalAttention`), ``match_lstm`` (:class:`MatchLSTM`),
    ``lstmn_shallow`` and ``lstmn_deep`` (:class:`LSTMNFusion`).

    Args:
        vocab_size, embedding_size: the one embedding table of both sentences.
        hidden_size: H, features per direction of each recurrent layer (and of
            the matching cell, the LSTMNs).
        architecture: one of :data:`ARCHITECTURES`.
        heads: head name to number of classes (each >= 2), e.g.
            ``{"entailment": 3}``, ``{"relatedness": 5}`` (Tai et al.'s
            distribution over 1..5, see :func:`relatedness_target`) or both.
            ``"attention"`` is not a head name (it is the output key of the weights).
        cell: a registered one-layer cell for the encoders and the matching
            cell (fused drop-in or generic by :func:`memnets.layers.build_encoder`'s
            rule).  The LSTMN architectures always read with LSTMN cells; for
            them ``cell`` must be ``lstm`` (the default) or ``lstmn``.
        num_layers: stacked encoder layers (``features``, ``conditional``,
            ``match_lstm``); the LSTMN architectures take 1.
        bidirectional: bidirectional encoders (``features``, ``match_lstm``).
        shared: one encoder for both sentences (``features``, ``conditional``,
            ``match_lstm``); the LSTMN architectures' premise and hypothesis
            readers differ in kind and never share.
        pooling: one of ``last``, ``mean``, ``max``, ``attention``, for
            ``features`` and the LSTMN architectures.
        attention: the :class:`~memnets.layers.attention.Attention` kind of the
            attention architectures; ``additive`` is each paper's.
        matching: ``match_lstm`` only: the matching cell reads ``concat``
            :math:`[a_k; h^t_k]` (the paper) or ``compare``
            :math:`[a_k; h^t_k; a_k - h^t_k; a_k \odot h^t_k]` (:class:`MatchLSTM`).
        classifier_hidden: the hidden layer before the heads: tanh for
            ``features``, ReLU for the LSTMN ones (default ``2 * hidden_size``
            for both); for ``conditional`` and ``match_lstm`` none by default
            (the paper's read-out), a tanh layer of this size if given.
        dropout: between encoder layers, on the features before the hidden
            layer, and on the pair vector before the heads.
        embedding_dropout: dropout on the word vectors; with ``word_dropout``
            whole word vectors are dropped instead (as
            :class:`memnets.models.classifier.SequenceClassifier`).
        padding_idx: the id used for padding (its vector stays zero).
        pretrained: an optional ``(vocab_size, embedding_size)`` tensor copied
            into the embedding (:func:`memnets.models.classifier.load_word_vectors`).
        freeze_embeddings: keep the embedding fixed.
        exact_match: append to each word's vector a 0/1 feature, 1 where the same
            token occurs in the other sentence of the pair (the exact-match
            feature of Chen, Fisch, Weston & Bordes, "Reading Wikipedia to answer
            open-domain questions", 2017, used for inference by Gong, Luo & Zhang,
            "Natural language inference over interaction space", 2018); the
            encoders then read E + 1 features.  Padding and ``unk_idx`` never match.
        unk_idx: the unknown-word id (``None``: none).
        cell_options: passed to every cell (for the LSTMN architectures only
            ``attention_size``, the intra-attention size).

    Shapes (N = batch, T_p, T_h = longest premise, hypothesis):

    * ``premise`` ``(N, T_p)``, ``hypothesis`` ``(N, T_h)``: int64 token ids,
      padded; ``premise_lengths``, ``hypothesis_lengths`` ``(N,)``, each >= 1;
    * returns a dict: each head name to logits ``(N, C)``; with
      ``return_attention`` also ``"attention"``: ``(N, T_h, T_p)``, row ``t`` the
      weights hypothesis word ``t`` gives the premise words (each real row sums
      to 1; rows of padded hypothesis words and columns of padded premise words
      exactly 0), or ``None`` for ``features``.

    Examples::

        >>> import torch
        >>> from memnets.models.pair import PairModel
        >>> model = PairModel(20, 8, 16, architecture="match_lstm",
        ...                   heads={"entailment": 3, "relatedness": 5}, cell="gru")
        >>> premise, hypothesis = torch.randint(1, 20, (2, 7)), torch.randint(1, 20, (2, 5))
        >>> out = model(premise, torch.tensor([7, 4]), hypothesis, torch.tensor([5, 2]),
        ...             return_attention=True)
        >>> out["entailment"].shape, out["relatedness"].shape, out["attention"].shape
        (torch.Size([2, 3]), torch.Size([2, 5]), torch.Size([2, 5, 7]))
        >>> weights = out["attention"][1]  # second pair: 2 hypothesis words, 4 premise words
        >>> weights[2:].abs().sum().item(), weights[:, 4:].abs().sum().item()
        (0.0, 0.0)
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        *,
        architecture: str = "match_lstm",
        heads: Mapping[str, int] = DEFAULT_HEADS,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        shared: bool = True,
        pooling: str = "max",
        attention: str = "additive",
        matching: str = "concat",
        classifier_hidden: int | None = None,
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        word_dropout: bool = False,
        padding_idx: int = 0,
        pretrained: Tensor | None = None,
        freeze_embeddings: bool = False,
        exact_match: bool = False,
        unk_idx: int | None = None,
        **cell_options,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size=vocab_size, embedding_size=embedding_size,
                    hidden_size=hidden_size, num_layers=num_layers)
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"expected architecture one of {', '.join(ARCHITECTURES)}, "
                              f"got {architecture!r}")
        if pooling not in POOLINGS:
            raise ConfigError(f"expected pooling one of {', '.join(POOLINGS)}, got {pooling!r}")
        if not isinstance(heads, Mapping) or not heads:
            raise ConfigError(f"expected heads as a mapping of name to classes, e.g. "
                              f"{{'entailment': 3}}, got {heads!r}")
        for name, classes in heads.items():
            if name == "attention":
                raise ConfigError("head name 'attention' is taken by the attention weights; "
                                  "choose another")
            check_size(f"heads[{name!r}]", classes, minimum=2)
        for name, p in (("embedding_dropout", embedding_dropout), ("dropout", dropout)):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"expected {name} in [0, 1), got {p}")
        hidden = (2 * hidden_size if classifier_hidden is None
                  else check_size("classifier_hidden", classifier_hidden))
        self.architecture = architecture
        self.dropout, self.embedding_dropout = dropout, embedding_dropout
        self.word_dropout = word_dropout
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=padding_idx)
        if pretrained is not None:
            if tuple(pretrained.shape) != (vocab_size, embedding_size):
                raise ConfigError(f"expected pretrained vectors of shape ({vocab_size}, "
                                  f"{embedding_size}), got {tuple(pretrained.shape)}")
            with torch.no_grad():
                self.embedding.weight.copy_(pretrained)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.exact_match, self.padding_idx, self.unk_idx = exact_match, padding_idx, unk_idx
        common = {"cell": cell, "num_layers": num_layers, "dropout": dropout,
                  "cell_options": dict(cell_options)}
        E, H = embedding_size + (1 if exact_match else 0), hidden_size
        if architecture == "features":
            self.body = SentenceFeatures(E, H, bidirectional=bidirectional, shared=shared,
                                         pooling=pooling, classifier_hidden=hidden, **common)
        elif architecture == "conditional":
            if bidirectional:
                raise ConfigError("architecture 'conditional' reads both sentences one way "
                                  "(the hypothesis encoder continues from the premise's final "
                                  "state); expected bidirectional false")
            self.body = ConditionalAttention(E, H, shared=shared, attention=attention, **common)
        elif architecture == "match_lstm":
            self.body = MatchLSTM(E, H, bidirectional=bidirectional, shared=shared,
                                  attention=attention, matching=matching, **common)
        else:
            self._check_lstmn(architecture, cell, num_layers, bidirectional, cell_options)
            self.body = LSTMNFusion(E, H, deep=architecture == "lstmn_deep", pooling=pooling,
                                    attention=attention, classifier_hidden=hidden,
                                    dropout=dropout, **cell_options)
        size = self.body.output_size
        self.hidden = None
        if classifier_hidden is not None and architecture in ("conditional", "match_lstm"):
            self.hidden = nn.Linear(size, hidden)
            size = hidden
        self.heads = nn.ModuleDict({name: nn.Linear(size, int(c)) for name, c in heads.items()})

    @staticmethod
    def _check_lstmn(architecture, cell, num_layers, bidirectional, cell_options) -> None:
        if cell not in ("lstm", "lstmn"):
            raise ConfigError(f"architecture {architecture!r} reads with LSTMN cells; expected "
                              f"cell 'lstmn' (or the default 'lstm'), got {cell!r}")
        if num_layers != 1 or bidirectional:
            raise ConfigError(f"architecture {architecture!r}: expected num_layers 1 and "
                              f"bidirectional false, got {num_layers} and {bidirectional}")
        unknown = sorted(set(cell_options) - {"attention_size"})
        if unknown:
            raise ConfigError(f"architecture {architecture!r}: expected no cell options but "
                              f"attention_size, got {', '.join(unknown)}")

    def _embed(self, tokens: Tensor) -> Tensor:
        x = self.embedding(tokens)  # (N, T, E)
        if self.training and self.embedding_dropout > 0:
            if self.word_dropout:
                keep = 1 - self.embedding_dropout
                x = x * (x.new_empty(*tokens.shape, 1).bernoulli_(keep) / keep)
            else:
                x = F.dropout(x, self.embedding_dropout, training=True)
        return x

    def exact_matches(self, premise: Tensor, hypothesis: Tensor) -> tuple[Tensor, Tensor]:
        """Bool ``(N, T_p)``: premise word occurs in its hypothesis, and ``(N, T_h)``:
        hypothesis word occurs in its premise (padding and unknown words: false)."""
        def real(t: Tensor) -> Tensor:
            ok = t != self.padding_idx
            return ok if self.unk_idx is None else ok & (t != self.unk_idx)

        same = (premise.unsqueeze(2) == hypothesis.unsqueeze(1))  # (N, T_p, T_h)
        same = same & real(premise).unsqueeze(2) & real(hypothesis).unsqueeze(1)
        return same.any(2), same.any(1)

    @staticmethod
    def _check(name: str, tokens: Tensor, lengths) -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"expected {name} token ids of shape (N, T) and integer dtype, "
                             f"got {got}")
        N, T = tokens.shape
        lens = as_lengths(lengths, name=f"{name}_lengths")
        if tuple(lens.shape) != (N,) or N == 0 or int(lens.min()) < 1 or int(lens.max()) > T:
            raise ValueError(f"expected {name}_lengths of shape ({N},) with values in [1, {T}], "
                             f"got {lens.tolist()[:8]} of shape {tuple(lens.shape)}")
        return lens

    def forward(self, premise: Tensor, premise_lengths, hypothesis: Tensor, hypothesis_lengths,
                *, return_attention: bool = False) -> dict[str, Tensor | None]:
        lp = self._check("premise", premise, premise_lengths)
        lq = self._check("hypothesis", hypothesis, hypothesis_lengths)
        if premise.shape[0] != hypothesis.shape[0]:
            raise ValueError(f"expected as many premises as hypotheses, got "
                             f"{premise.shape[0]} and {hypothesis.shape[0]}")
        P, Q = self._embed(premise), self._embed(hypothesis)
        if self.exact_match:
            in_q, in_p = self.exact_matches(premise, hypothesis)
            P = torch.cat([P, in_q.unsqueeze(-1).to(P.dtype)], -1)  # (N, T_p, E + 1)
            Q = torch.cat([Q, in_p.unsqueeze(-1).to(Q.dtype)], -1)  # (N, T_h, E + 1)
        z, weights = self.body(P, lp, Q, lq)
        if self.hidden is not None:
            z = torch.tanh(self.hidden(F.dropout(z, self.dropout, training=self.training)))
        z = F.dropout(z, self.dropout, training=self.training)
        out: dict[str, Tensor | None] = {name: head(z) for name, head in self.heads.items()}
        if return_attention:
            out["attention"] = weights
        return out


def relatedness_target(scores: Tensor, classes: int = 5) -> Tensor:
    r"""Tai, Socher & Manning's sparse target distribution for a relatedness score
    (“Improved semantic representations from tree-structured LSTM networks”, 2015).

    .. math::
        p_i = \begin{cases} y - \lfloor y \rfloor & i = \lfloor y \rfloor + 1 \\
        \lfloor y \rfloor - y + 1 & i = \lfloor y \rfloor \\ 0 & \text{otherwise}
        \end{cases} \qquad i = 1 \dots K

    so that :math:`\sum_i i\, p_i = y`.

    Args:
        scores: ``(N,)`` floats in ``[1, classes]``.
        classes: K.

    Returns:
        ``(N, K)``; column ``i - 1`` is :math:`p_i`.
    """
    K = check_size("classes", classes, minimum=2)
    y = torch.as_tensor(scores)
    y = y.to(torch.get_default_dtype()) if not y.is_floating_point() else y
    if y.dim() != 1:
        raise ValueError(f"expected relatedness scores of shape (N,), got {tuple(y.shape)}")
    bad = ~((y >= 1) & (y <= K))  # NaN too
    if bool(bad.any()):
        raise ValueError(f"expected relatedness scores in [1, {K}], got "
                         f"{y[bad][:4].tolist()}")
    low = y.floor().clamp(max=K - 1)  # y = K: p_K = 1 through the upper column
    frac = y - low  # in [0, 1]
    p = y.new_zeros(y.shape[0], K)
    rows = torch.arange(y.shape[0], device=y.device)
    p[rows, low.long() - 1] = 1 - frac
    p[rows, low.long()] = frac
    return p


def expected_relatedness(logits: Tensor) -> Tensor:
    r"""Tai et al.'s predicted score :math:`\hat y = \sum_{i=1}^{K} i\, \hat p_i` with
    :math:`\hat p = \mathrm{softmax}(\text{logits})`: ``(N, K)`` to ``(N,)``."""
    K = logits.shape[-1]
    ranks = torch.arange(1, K + 1, device=logits.device, dtype=logits.dtype)
    return logits.softmax(-1) @ ranks
