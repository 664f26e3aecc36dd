"""Language-modelling metrics: perplexity (words) and bits per token (per character
for characters, per word for words)."""

from __future__ import annotations

import math


def perplexity(mean_nll: float) -> float:
    r"""Perplexity :math:`\exp(-\frac{1}{T}\sum_t \ln p(w_t \mid w_{<t}))` from the mean
    negative log-likelihood in nats per token.  Overflow gives ``inf``."""
    if mean_nll != mean_nll:  # NaN
        raise ValueError("expected a finite mean negative log-likelihood, got nan")
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


def bits_per_token(mean_nll: float) -> float:
    r"""Bits per token :math:`-\frac{1}{T}\sum_t \log_2 p(x_t \mid x_{<t})` from the mean
    negative log-likelihood in nats per token: bits per character for a character
    model, bits per word for a word model."""
    return mean_nll / math.log(2.0)


bits_per_char = bits_per_token  # the name for character models
