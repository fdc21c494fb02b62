"""Sample-quality metrics that compare two sets of points: energy distance, MMD, and mode coverage.

`energy_distance` and `mmd` are two-sample statistics between generated samples
and reference data in any dimension (images are flattened to vectors); both are
computed in float64 from exact pairwise differences (``scipy.spatial.distance``)
in blocks of ``_BLOCK x _BLOCK`` pairs, so memory stays at a few MB per block
whatever the number of points (10 000 x 10 000 points in 2-D take well under a
second). `mode_coverage` and `mode_coverage_for` count how many components of a
Gaussian mixture (the ``ring`` and ``grid`` toys of ``ppgen.datasets``) a
model's samples reach, and how many samples land near any component.

Example:
    >>> from ppgen import datasets
    >>> ds = datasets.load("ring")
    >>> mode_coverage_for(ds.test, ds.meta).covered
    8
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from scipy.spatial.distance import cdist, pdist

from ..datasets import check_finite
from ..errors import ConfigError, DataError

__all__ = ["ModeCoverage", "energy_distance", "mmd", "mode_coverage", "mode_coverage_for"]

_BLOCK = 1024  # points per side of one block of pairwise distances (1024^2 float64 = 8 MB)
_MEDIAN_POINTS = 2000  # the median heuristic looks at the pairs among at most this many pooled points
_MEDIAN_SEED = 0  # fixed seed of the random subset used by the median heuristic
_MODE_DATASETS = ("ring", "grid")  # ppgen toys whose meta holds "modes" and "mode_std"


# ---------------------------------------------------------------------------------------------------------------------
# input checks


def _points(x: Any, name: str, min_n: int) -> np.ndarray:
    """``x`` as a float64 ``(N, D)`` array: ``(N,)`` is read as N 1-D points, trailing dimensions are flattened."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as e:
        raise DataError(f"could not turn {name} into an array ({e}); pass a rectangular numeric array") from e
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{name} has dtype {arr.dtype} (ragged lists, strings or complex numbers?); "
            "pass a real numeric array of points, shape (N, D) or (N,)"
        )
    if arr.ndim == 0:
        raise DataError(f"{name} is a scalar ({arr.item()!r}); pass an array of points, shape (N, D) or (N,) for 1-D")
    n = arr.shape[0]
    if n < min_n:
        raise DataError(
            f"{name} has {n} point(s) (shape {arr.shape}); pass at least {min_n}"
            + (" (the within-set average is over pairs of distinct points)" if min_n > 1 else "")
        )
    flat = arr.reshape(n, -1) if arr.ndim > 1 else arr.reshape(n, 1)
    if flat.shape[1] == 0:
        raise DataError(f"{name} has shape {arr.shape}, i.e. points with no coordinates; pass shape (N, D) with D >= 1")
    check_finite(flat, what=name)
    return flat.astype(np.float64)


def _two_sets(samples: Any, reference: Any, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    x = _points(samples, "samples", min_n)
    y = _points(reference, "reference", min_n)
    if x.shape[1] != y.shape[1]:
        raise DataError(
            f"samples has {x.shape[1]} values per point (shape {np.shape(samples)}) and reference has {y.shape[1]} "
            f"(shape {np.shape(reference)}); pass two sets of points of the same dimension"
        )
    return x, y


def _positive(value: Any, name: str, example: str) -> float:
    """``value`` as a float after checking that it is one finite number > 0."""
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else np.asarray(None)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise ConfigError(f"{name}={value!r} must be a single number > 0; pass e.g. {name}={example}")
    v = float(arr)
    if not (math.isfinite(v) and v > 0.0):
        raise ConfigError(f"{name}={value!r} must be a finite number > 0; pass e.g. {name}={example}")
    return v


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}={value!r} must be True or False")
    return bool(value)


# ---------------------------------------------------------------------------------------------------------------------
# blocked pairwise sums


def _transform(d: np.ndarray, scale: float | None) -> np.ndarray:
    """Distances as they are (``scale`` None), or squared distances to Gaussian kernel values ``exp(-scale d)``."""
    if scale is not None:
        np.multiply(d, -scale, out=d)
        np.exp(d, out=d)
    return d


def _cross_sum(a: np.ndarray, b: np.ndarray, metric: str, scale: float | None) -> float:
    """``sum_{i, j} f(a_i, b_j)`` over all ``len(a) * len(b)`` pairs, in blocks."""
    s = max(1, int(_BLOCK))
    parts = [
        float(_transform(cdist(a[i : i + s], b[j : j + s], metric), scale).sum())
        for i in range(0, len(a), s)
        for j in range(0, len(b), s)
    ]
    return math.fsum(parts)


def _within_sum(a: np.ndarray, metric: str, scale: float | None) -> float:
    """``sum_{i != j} f(a_i, a_j)`` over the ``n (n - 1)`` ordered pairs of distinct points, in blocks.

    Only the blocks on and above the diagonal are computed; the diagonal blocks use
    `pdist`, which never pairs a point with itself, so ``i = j`` is excluded exactly.
    """
    s = max(1, int(_BLOCK))
    parts = []
    for i in range(0, len(a), s):
        blk = a[i : i + s]
        if len(blk) > 1:
            parts.append(float(_transform(pdist(blk, metric), scale).sum()))
        for j in range(i + s, len(a), s):
            parts.append(float(_transform(cdist(blk, a[j : j + s], metric), scale).sum()))
    return 2.0 * math.fsum(parts)


def _two_sample(x: np.ndarray, y: np.ndarray, metric: str, scale: float | None, unbiased: bool):
    """(mean f over x-x pairs, mean f over y-y pairs, mean f over x-y pairs), U- or V-statistic means."""
    f0 = 0.0 if scale is None else 1.0  # f at distance 0: the i = j terms a V-statistic adds
    n, m = len(x), len(y)
    sxx, syy = _within_sum(x, metric, scale), _within_sum(y, metric, scale)
    if unbiased:
        exx, eyy = sxx / (n * (n - 1)), syy / (m * (m - 1))
    else:
        exx, eyy = (sxx + n * f0) / (n * n), (syy + m * f0) / (m * m)
    return exx, eyy, _cross_sum(x, y, metric, scale) / (n * m)


# ---------------------------------------------------------------------------------------------------------------------
# public metrics


def energy_distance(samples: Any, reference: Any, *, unbiased: bool = True) -> float:
    """Squared energy distance between two sets of points (Székely & Rizzo).

    For X ~ P (``samples``) and Y ~ Q (``reference``), with X', Y' independent copies::

        E(P, Q) = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||

    is >= 0 and is 0 exactly when P = Q (for distributions with finite mean). With
    ``x_1..x_n`` and ``y_1..y_m`` the estimate is::

        2 / (n m) sum_{i, j} ||x_i - y_j||
          - 1 / (n (n - 1)) sum_{i != j} ||x_i - x_j||
          - 1 / (m (m - 1)) sum_{i != j} ||y_i - y_j||

    the unbiased U-statistic (``unbiased=True``, default), which can come out slightly
    negative when P = Q. ``unbiased=False`` gives the V-statistic, which divides the
    within-set sums by ``n^2`` and ``m^2`` (pairs ``i = j`` included, at distance 0)
    and is always >= 0; in 1-D its square root equals ``scipy.stats.energy_distance``.

    Distances are Euclidean, computed in float64 from exact coordinate differences,
    in blocks of ``1024 x 1024`` pairs (8 MB), so 10 000 x 10 000 points fit easily.

    Args:
        samples: points ``(N, D)``; ``(N,)`` is N points in 1-D, and trailing
            dimensions are flattened (images ``(N, 8, 8)`` are points in 64-D).
        reference: points ``(M, D)`` (or shapes as for ``samples`` with the same D).
        unbiased: True for the U-statistic (default), False for the V-statistic.

    Returns:
        The estimate of ``E(P, Q)`` (squared units of the data; not its square root), a float.

    Raises:
        DataError: fewer than 2 points in a set (1 for the V-statistic), NaN/inf
            values, non-numeric data, or sets of different dimension D.
        ConfigError: ``unbiased`` not a bool.

    Example:
        >>> energy_distance([0.0, 1.0], [2.0, 3.0])  # 2 * 2 - 1 - 1
        2.0
        >>> energy_distance([0.0, 1.0], [2.0, 3.0], unbiased=False)  # 2 * 2 - 1/2 - 1/2
        3.0

    References:
        G. J. Székely and M. L. Rizzo, "Energy statistics: A class of statistics based on
        distances", Journal of Statistical Planning and Inference 143(8), 1249-1272, 2013.
    """
    unbiased = _flag(unbiased, "unbiased")
    x, y = _two_sets(samples, reference, 2 if unbiased else 1)
    exx, eyy, exy = _two_sample(x, y, "euclidean", None, unbiased)
    return float(2.0 * exy - exx - eyy)


def _median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """Median pairwise Euclidean distance among the pooled points (a fixed random subset of 2000 when more)."""
    pooled = np.concatenate([x, y])
    if len(pooled) > _MEDIAN_POINTS:
        idx = np.random.default_rng(_MEDIAN_SEED).choice(len(pooled), _MEDIAN_POINTS, replace=False)
        pooled = pooled[idx]
    h = float(np.median(pdist(pooled, "euclidean")))
    if not h > 0.0:
        raise DataError(
            "the median heuristic gave bandwidth 0: more than half of the pairs among the pooled samples and "
            "reference points coincide; pass bandwidth=<a positive length on the scale of the data>"
        )
    return h


def mmd(samples: Any, reference: Any, bandwidth: float | None = None, *, unbiased: bool = True) -> float:
    """Squared maximum mean discrepancy (MMD^2) with a Gaussian kernel, unbiased estimate.

    With ``k(x, y) = exp(-||x - y||^2 / (2 h^2))`` and X, X' ~ P (``samples``),
    Y, Y' ~ Q (``reference``)::

        MMD^2(P, Q) = E k(X, X') + E k(Y, Y') - 2 E k(X, Y)

    which is >= 0 and 0 exactly when P = Q (the Gaussian kernel is characteristic).
    The default estimate is the unbiased U-statistic::

        1 / (n (n - 1)) sum_{i != j} k(x_i, x_j) + 1 / (m (m - 1)) sum_{i != j} k(y_i, y_j)
          - 2 / (n m) sum_{i, j} k(x_i, y_j)

    which can come out slightly negative when P = Q; ``unbiased=False`` gives the
    V-statistic (within-set sums over all ``n^2`` / ``m^2`` pairs, ``k(x, x) = 1``
    included), always >= 0 and biased upwards by about ``1/n + 1/m``.

    ``bandwidth=None`` uses the median heuristic: ``h`` = the median Euclidean distance
    between pairs of distinct points of ``samples`` and ``reference`` pooled (from a
    fixed random subset of 2000 points when there are more, seed 0, so the result is
    deterministic). Pass the same explicit ``bandwidth`` when comparing several
    models against one reference: the heuristic's ``h`` depends on the samples.

    Computed in float64 from exact coordinate differences, in blocks of ``1024 x 1024`` pairs.

    Args:
        samples: points ``(N, D)``; ``(N,)`` is N points in 1-D, and trailing dimensions are flattened.
        reference: points ``(M, D)`` (or shapes as for ``samples`` with the same D).
        bandwidth: the kernel width ``h`` > 0 (units of the data), or None for the median heuristic.
        unbiased: True for the U-statistic (default), False for the V-statistic.

    Returns:
        The estimate of ``MMD^2`` (not its square root), a float in roughly [-1, 2].

    Raises:
        DataError: fewer than 2 points in a set (1 for the V-statistic), NaN/inf values,
            non-numeric data, sets of different dimension D, or a median heuristic of 0.
        ConfigError: ``bandwidth`` not a finite number > 0, or ``unbiased`` not a bool.

    Example:
        >>> round(mmd([0.0, 1.0], [100.0, 101.0], bandwidth=1.0), 6)  # 2 exp(-1/2): no overlap at all
        1.213061

    References:
        A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schölkopf and A. Smola, "A kernel
        two-sample test", Journal of Machine Learning Research 13, 723-773, 2012 (Lemma 6).
    """
    unbiased = _flag(unbiased, "unbiased")
    x, y = _two_sets(samples, reference, 2 if unbiased else 1)
    h = _median_bandwidth(x, y) if bandwidth is None else _positive(bandwidth, "bandwidth", "1.0 (or None)")
    exx, eyy, exy = _two_sample(x, y, "sqeuclidean", 1.0 / (2.0 * h * h), unbiased)
    return float(exx + eyy - 2.0 * exy)


class ModeCoverage(NamedTuple):
    """Result of `mode_coverage`.

    Attributes:
        covered: number of modes with at least one sample within ``threshold * std``.
        num_modes: number of modes K.
        high_quality: fraction of samples within ``threshold * std`` of some mode.
        per_mode: int64 ``(K,)``, the number of high-quality samples whose nearest mode is each mode;
            ``per_mode.sum() / N == high_quality``. When the balls of radius ``threshold * std``
            around two modes overlap, a sample in both counts for its nearest mode only, so
            ``covered >= np.count_nonzero(per_mode)`` (equal when the balls are disjoint).
    """

    covered: int
    num_modes: int
    high_quality: float
    per_mode: np.ndarray


def _modes(modes: Any, dim: int) -> np.ndarray:
    try:
        arr = np.asarray(modes)
    except (ValueError, TypeError) as e:
        raise DataError(f"could not turn modes into an array ({e}); pass a (K, {dim}) array of mode centres") from e
    if arr.dtype.kind not in "biuf":
        raise DataError(f"modes has dtype {arr.dtype}; pass a real numeric (K, {dim}) array of mode centres")
    if arr.ndim == 1 and dim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim < 2 or arr.shape[0] == 0 or math.prod(arr.shape[1:]) != dim:
        example = f", e.g. [[{', '.join(['0.0'] * dim)}]] for one mode" if dim <= 4 else ""
        raise DataError(
            f"modes has shape {arr.shape} but the samples have {dim} values per point; "
            f"pass the mode centres as a (K, {dim}) array with K >= 1{example}"
        )
    arr = arr.reshape(arr.shape[0], dim)
    check_finite(arr, what="modes")
    return arr.astype(np.float64)


def mode_coverage(samples: Any, modes: Any, std: float, threshold: float = 3.0) -> ModeCoverage:
    """How many mixture components (modes) the samples reach, and how many samples are near a mode.

    The evaluation of GANs on mixtures of well-separated Gaussians (the ring of 8 and
    the grid of 25 of Metz et al., Srivastava et al. and Lin et al.): with ``r =
    threshold * std`` and ``d(x, mu)`` the Euclidean distance, for samples ``x_1..x_N``
    and modes ``mu_1..mu_K``::

        covered      = #{k : min_i d(x_i, mu_k) <= r}
        high_quality = (1 / N) #{i : min_k d(x_i, mu_k) <= r}
        per_mode[k]  = #{i : argmin_l d(x_i, mu_l) = k and d(x_i, mu_k) <= r}

    A model that collapses onto a few modes has a low ``covered``; one that spreads
    mass between modes has a low ``high_quality``; ``per_mode`` shows whether the
    covered modes get balanced mass (uniform weights in the ppgen toys).

    Args:
        samples: points ``(N, D)``, N >= 1 (``(N,)`` for 1-D; trailing dimensions are flattened).
        modes: mode centres ``(K, D)``, K >= 1 (``(K,)`` when the samples are 1-D).
        std: the standard deviation of each component (one number > 0).
        threshold: the radius in units of ``std`` (default 3: a 2-D Gaussian puts
            ``1 - exp(-9/2)`` = 98.9% of its mass within 3 standard deviations).

    Returns:
        `ModeCoverage` ``(covered, num_modes, high_quality, per_mode)``.

    Raises:
        DataError: bad samples (empty, NaN/inf, non-numeric) or modes of the wrong shape.
        ConfigError: ``std`` or ``threshold`` not a finite number > 0.

    Example:
        >>> mc = mode_coverage([[0.05, 0.0], [0.02, 0.01], [5.0, 5.0]], [[0.0, 0.0], [1.0, 0.0]], std=0.1)
        >>> mc.covered, mc.num_modes, round(mc.high_quality, 3), mc.per_mode.tolist()
        (1, 2, 0.667, [2, 0])

    References:
        L. Metz, B. Poole, D. Pfau and J. Sohl-Dickstein, "Unrolled generative adversarial
        networks", ICLR 2017. A. Srivastava, L. Valkov, C. Russell, M. U. Gutmann and
        C. Sutton, "VEEGAN: Reducing mode collapse in GANs using implicit variational
        learning", NeurIPS 2017. Z. Lin, A. Khetan, G. Fanti and S. Oh, "PacGAN: The power
        of two samples in generative adversarial networks", NeurIPS 2018.
    """
    x = _points(samples, "samples", 1)
    mu = _modes(modes, x.shape[1])
    r = _positive(std, "std", "0.02 (the per-component standard deviation)") * _positive(threshold, "threshold", "3.0")
    k = len(mu)
    nearest = np.empty(len(x), dtype=np.int64)
    near_d = np.empty(len(x), dtype=np.float64)
    mode_d = np.full(k, np.inf)
    rows = max(1, (int(_BLOCK) ** 2) // k)
    for i in range(0, len(x), rows):
        d = cdist(x[i : i + rows], mu, "euclidean")
        j = np.argmin(d, axis=1)
        nearest[i : i + rows] = j
        near_d[i : i + rows] = d[np.arange(len(d)), j]
        np.minimum(mode_d, d.min(axis=0), out=mode_d)
    good = near_d <= r
    per_mode = np.bincount(nearest[good], minlength=k).astype(np.int64)
    return ModeCoverage(int(np.count_nonzero(mode_d <= r)), k, float(np.mean(good)), per_mode)


def mode_coverage_for(samples: Any, dataset_meta: Any, threshold: float = 3.0) -> ModeCoverage:
    """`mode_coverage` against the modes of a ppgen toy mixture (``"ring"`` or ``"grid"``).

    Reads ``modes`` and ``mode_std`` from the dataset's ``meta`` (as written by
    ``ppgen.datasets.load``) and calls ``mode_coverage(samples, modes, mode_std, threshold)``.

    Args:
        samples: points ``(N, 2)``, e.g. samples drawn from a model fitted to the toy.
        dataset_meta: the ``meta`` dict of a loaded ``"ring"`` or ``"grid"`` dataset (the `Dataset` itself works too).
        threshold: the radius in units of ``mode_std`` (default 3).

    Returns:
        `ModeCoverage` ``(covered, num_modes, high_quality, per_mode)``.

    Raises:
        DataError: the meta has no ``modes``/``mode_std`` (e.g. ``"moons"``) or ``mode_std`` is 0
            (loaded with ``noise=0``), or bad samples.
        ConfigError: ``threshold`` not a finite number > 0.

    Example:
        >>> from ppgen import datasets
        >>> ds = datasets.load("grid")
        >>> mc = mode_coverage_for(ds.train, ds.meta)
        >>> mc.covered, mc.num_modes, mc.high_quality > 0.98
        (25, 25, True)
    """
    meta = getattr(dataset_meta, "meta", dataset_meta)
    if not isinstance(meta, Mapping):
        raise DataError(
            f"dataset_meta is a {type(dataset_meta).__name__}; pass the meta dict of a loaded mixture toy, "
            f"e.g. datasets.load('ring').meta"
        )
    name = meta.get("name")
    if meta.get("modes") is None or meta.get("mode_std") is None:
        raise DataError(
            f"dataset {name!r} has no 'modes'/'mode_std' in its meta, so there is nothing to cover; mode coverage "
            f"applies to the Gaussian-mixture toys {list(_MODE_DATASETS)} (datasets.load('ring').meta), "
            "or call mode_coverage(samples, modes, std) with your own modes"
        )
    std = meta["mode_std"]
    if isinstance(std, (int, float)) and not isinstance(std, bool) and std <= 0:
        raise DataError(
            f"dataset {name!r} has mode_std={std!r} (loaded with noise=0?), so no radius threshold * std can be "
            "formed; load it with noise > 0, or call mode_coverage(samples, modes, std=<a radius unit>) yourself"
        )
    return mode_coverage(samples, meta["modes"], std, threshold)
