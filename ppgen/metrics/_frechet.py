"""The Fréchet (2-Wasserstein) distance between two Gaussians, in closed form."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["frechet_distance"]

_SYM_TOL = 1e-6  # relative asymmetry accepted in a covariance
_PSD_TOL = 1e-8  # relative negative eigenvalue accepted in a covariance


def _check_gaussian(mu: Any, cov: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim == 0:
        c = c.reshape(1, 1)
    if m.ndim != 1:
        raise DataError(f"mu{name} has shape {m.shape}; pass a mean vector of shape (d,)")
    d = len(m)
    if c.shape != (d, d):
        raise DataError(
            f"cov{name} has shape {c.shape}; pass the ({d}, {d}) covariance matching mu{name} of shape ({d},)"
        )
    if not (np.isfinite(m).all() and np.isfinite(c).all()):
        raise DataError(f"mu{name} or cov{name} has NaN/inf values; compute the statistics from finite features")
    scale = max(float(np.abs(c).max()), np.finfo(np.float64).tiny)
    asym = float(np.abs(c - c.T).max())
    if asym > _SYM_TOL * scale:
        raise DataError(f"cov{name} is not symmetric (max |C - C^T| = {asym:.3g}); pass a covariance matrix")
    c = 0.5 * (c + c.T)
    low = float(np.linalg.eigvalsh(c).min())
    if low < -_PSD_TOL * scale * d:
        raise DataError(
            f"cov{name} is not positive semi-definite (smallest eigenvalue {low:.3g}); pass a covariance matrix"
        )
    return m, c


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding-error eigenvalues set to 0)."""
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: Any, cov1: Any, mu2: Any, cov2: Any) -> float:
    """Fréchet distance (squared 2-Wasserstein distance) between ``N(mu1, cov1)`` and ``N(mu2, cov2)``.

    ::

        d = ||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2})

    Computed in float64 from symmetric eigendecompositions and one SVD: ``S1 = C1^{1/2}``
    and ``S2 = C2^{1/2}`` from ``eigh`` (rounding-error negative eigenvalues set to
    0), then ``S1 C2 S1 = (S1 S2)(S1 S2)^T``, so ``tr((S1 C2 S1)^{1/2})`` is the sum
    of the singular values of ``S1 S2``. This equals ``tr((C1 C2)^{1/2})`` of the
    usual FID formula without the square root of a non-symmetric product, and,
    unlike eigenvalues of ``S1 C2 S1``, does not square small eigenvalues into
    rounding error, so equal Gaussians give 0 to rounding even for singular
    covariances (e.g. features of dead ReLU units). Tiny negative results are returned as 0.

    Args:
        mu1, mu2: means, shape ``(d,)`` (a scalar is read as d = 1).
        cov1, cov2: symmetric positive semi-definite covariances, shape ``(d, d)`` (a scalar is a variance).

    Returns:
        The distance, a float >= 0; 0 (up to rounding) exactly when the two Gaussians are equal.

    Raises:
        DataError: mismatched shapes, NaN/inf, or a covariance that is not symmetric PSD.

    Example:
        >>> frechet_distance(0.0, 1.0, 3.0, 4.0)  # 1-D: (m1 - m2)^2 + (s1 - s2)^2
        10.0
    """
    m1, c1 = _check_gaussian(mu1, cov1, "1")
    m2, c2 = _check_gaussian(mu2, cov2, "2")
    if m1.shape != m2.shape:
        raise DataError(f"mu1 has shape {m1.shape} and mu2 {m2.shape}; the two Gaussians must have the same dimension")
    tr_cross = float(np.linalg.svd(_psd_sqrt(c1) @ _psd_sqrt(c2), compute_uv=False).sum())
    diff = m1 - m2
    d = float(diff @ diff) + float(np.trace(c1)) + float(np.trace(c2)) - 2.0 * tr_cross
    return max(d, 0.0)
