"""Language-modelling metrics: perplexity (words) and bits per character."""

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


def bits_per_char(mean_nll: float) -> float:
    r"""Bits per character :math:`-\frac{1}{T}\sum_t \log_2 p(c_t \mid c_{<t})` from the
    mean negative log-likelihood in nats per character."""
    return mean_nll / math.log(2.0)
