"""Metrics of fitted models and their samples."""

from __future__ import annotations

import numpy as np

__all__ = ["bits_per_dim", "mean_log_likelihood"]


def mean_log_likelihood(fit, x) -> float:
    """Mean per-example log-likelihood (nats) of ``x`` under ``fit``."""
    return float(np.mean(fit.log_likelihood(x)))


def bits_per_dim(fit, x) -> float:
    """Negative mean log-likelihood in bits per dimension (for continuous data, a density)."""
    x = np.asarray(x)
    dims = int(np.prod(x.shape[1:]))
    return float(-mean_log_likelihood(fit, x) / (dims * np.log(2.0)))
