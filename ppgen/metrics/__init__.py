"""Metrics of fitted models and their samples.

Likelihood metrics (`mean_log_likelihood`, `bits_per_dim`) and sample-quality
metrics for the 8x8 digits built on a classifier shipped with ppgen and run in
pure NumPy (`digits_classifier`, `digits_frechet_distance`,
`conditional_accuracy`; see ``ppgen.metrics.classifier``), plus the closed-form
`frechet_distance` between two Gaussians.

Two-sample metrics between generated samples and reference points in any
dimension: the squared `energy_distance` and the squared maximum mean discrepancy
`mmd` with a Gaussian kernel (both unbiased U-statistics by default, computed in
blocks so 10 000 x 10 000 points fit in a few MB), and, for the Gaussian-mixture
toys ``"ring"`` and ``"grid"``, `mode_coverage` / `mode_coverage_for` (modes
covered, fraction of high-quality samples, samples per mode; a `ModeCoverage`).
"""

from __future__ import annotations

import numpy as np

from ._frechet import frechet_distance
from ._samples import ModeCoverage, energy_distance, mmd, mode_coverage, mode_coverage_for
from .classifier import (
    SCALES,
    ConditionalAccuracy,
    DigitsClassifier,
    conditional_accuracy,
    digits_classifier,
    digits_frechet_distance,
    view_to_scale,
)

__all__ = [
    "SCALES",
    "ConditionalAccuracy",
    "DigitsClassifier",
    "ModeCoverage",
    "bits_per_dim",
    "conditional_accuracy",
    "digits_classifier",
    "digits_frechet_distance",
    "energy_distance",
    "frechet_distance",
    "mean_log_likelihood",
    "mmd",
    "mode_coverage",
    "mode_coverage_for",
    "view_to_scale",
]


def mean_log_likelihood(fit, x) -> float:
    """Mean per-example log-likelihood (nats) of ``x`` under ``fit``."""
    return float(np.mean(fit.log_likelihood(x)))


def bits_per_dim(fit, x) -> float:
    """Negative mean log-likelihood in bits per dimension (for continuous data, a density)."""
    x = np.asarray(x)
    dims = int(np.prod(x.shape[1:]))
    return float(-mean_log_likelihood(fit, x) / (dims * np.log(2.0)))
