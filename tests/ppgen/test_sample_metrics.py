"""Tests of the two-sample metrics of ppgen.metrics (energy distance, MMD) and of mode coverage.

Every value is checked against an independent computation: explicit Python loops
over pairs, ``scipy.stats.energy_distance`` (1-D, V-statistic), the closed-form MMD
between two Gaussians, and hand-built point sets for mode coverage.
"""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest
import scipy.stats

from ppgen import datasets
from ppgen.errors import ConfigError, DataError
from ppgen.metrics import ModeCoverage, energy_distance, mmd, mode_coverage, mode_coverage_for
from ppgen.metrics import _samples

# ---------------------------------------------------------------------------------------------------------------------
# brute-force references: plain loops over pairs, nothing shared with the implementation


def _dist(a, b):
    return math.sqrt(sum((float(p) - float(q)) ** 2 for p, q in zip(a, b)))


def _brute_means(x, y, f, unbiased):
    """(mean f(x_i, x_j), mean f(y_i, y_j), mean f(x_i, y_j)) with explicit loops; U excludes i = j."""
    x, y = np.asarray(x, np.float64).reshape(len(x), -1), np.asarray(y, np.float64).reshape(len(y), -1)

    def within(a):
        pairs = [(i, j) for i in range(len(a)) for j in range(len(a)) if not (unbiased and i == j)]
        return sum(f(a[i], a[j]) for i, j in pairs) / len(pairs)

    cross = sum(f(x[i], y[j]) for i in range(len(x)) for j in range(len(y))) / (len(x) * len(y))
    return within(x), within(y), cross


def brute_energy(x, y, unbiased=True):
    exx, eyy, exy = _brute_means(x, y, _dist, unbiased)
    return 2.0 * exy - exx - eyy


def brute_mmd(x, y, h, unbiased=True):
    exx, eyy, exy = _brute_means(x, y, lambda a, b: math.exp(-_dist(a, b) ** 2 / (2.0 * h * h)), unbiased)
    return exx + eyy - 2.0 * exy


def brute_median_distance(points):
    p = np.asarray(points, np.float64).reshape(len(points), -1)
    return float(np.median([_dist(p[i], p[j]) for i, j in itertools.combinations(range(len(p)), 2)]))


@pytest.fixture
def small_sets():
    rng = np.random.default_rng(1)
    return rng.normal(size=(7, 3)), rng.normal(0.4, 1.3, size=(9, 3))


# ---------------------------------------------------------------------------------------------------------------------
# energy distance


@pytest.mark.parametrize("unbiased", [True, False])
def test_energy_distance_matches_brute_force(small_sets, unbiased):
    x, y = small_sets
    got = energy_distance(x, y, unbiased=unbiased)
    assert isinstance(got, float)
    assert got == pytest.approx(brute_energy(x, y, unbiased), rel=1e-10, abs=1e-12)


def test_energy_distance_u_and_v_differ_by_the_diagonal(small_sets):
    # V = 2 Exy - (n-1)/n Exx_U - (m-1)/m Eyy_U; a check that U really divides by n(n-1)
    x, y = small_sets
    exx, eyy, exy = _brute_means(x, y, _dist, True)
    v = 2.0 * exy - exx * 6 / 7 - eyy * 8 / 9
    assert energy_distance(x, y, unbiased=False) == pytest.approx(v, rel=1e-10)
    assert energy_distance(x, y) == pytest.approx(2.0 * exy - exx - eyy, rel=1e-10)


def test_energy_distance_v_statistic_is_scipy_squared_in_1d():
    # scipy.stats.energy_distance = sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) with V-statistic (empirical-CDF) means
    rng = np.random.default_rng(2)
    for n, m, shift in [(5, 8, 0.0), (40, 33, 0.7), (300, 200, -1.5)]:
        u, v = rng.normal(size=n), rng.normal(shift, 2.0, size=m)
        want = scipy.stats.energy_distance(u, v)
        assert math.sqrt(energy_distance(u, v, unbiased=False)) == pytest.approx(want, rel=1e-10)
        assert energy_distance(u[:, None], v[:, None], unbiased=False) == pytest.approx(want**2, rel=1e-10)
    assert energy_distance([0.0, 1.0], [2.0, 3.0]) == 2.0  # 2 * 2 - 1 - 1 (the docstring example)


def test_energy_distance_flattens_images():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 2, 3)), rng.normal(size=(5, 6))
    assert energy_distance(a, b) == pytest.approx(brute_energy(a.reshape(6, 6), b), rel=1e-10)
    ints = rng.integers(0, 17, size=(6, 2, 2))  # integer data (e.g. pixel counts) is converted to float64
    assert energy_distance(ints, ints[::-1] + 1) == pytest.approx(brute_energy(ints, ints[::-1] + 1), rel=1e-10)


def test_chunked_equals_unchunked(monkeypatch):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(230, 3)), rng.normal(0.2, 1.0, size=(170, 3))
    modes = rng.normal(size=(5, 3))
    whole = (energy_distance(x, y), mmd(x, y), mmd(x, y, bandwidth=0.7), mode_coverage(x, modes, 0.3))
    for block in (2, 7, 64):  # none divides 230 and 170, so every set ends in a short block
        monkeypatch.setattr(_samples, "_BLOCK", block)
        assert energy_distance(x, y) == pytest.approx(whole[0], rel=1e-12)
        assert mmd(x, y) == pytest.approx(whole[1], rel=1e-12)
        assert mmd(x, y, bandwidth=0.7) == pytest.approx(whole[2], rel=1e-12)
        mc = mode_coverage(x, modes, 0.3)
        assert mc[:3] == whole[3][:3] and np.array_equal(mc.per_mode, whole[3].per_mode)


def test_energy_distance_is_unbiased_under_the_null_and_positive_for_a_shift():
    # Same distribution: the U-statistic has mean 0, so the average of K independent values lies within
    # 3 standard errors (sd / sqrt(K)) of 0; the V-statistic is biased up by about E||X - X'|| (1/n + 1/m)
    # (= 1.77 * 2/300 = 0.012 for N(0, I_2)), many standard errors away.
    rng = np.random.default_rng(5)
    k, n = 30, 300
    pairs = [(rng.normal(size=(n, 2)), rng.normal(size=(n, 2))) for _ in range(k)]
    u = np.array([energy_distance(a, b) for a, b in pairs])
    v = np.array([energy_distance(a, b, unbiased=False) for a, b in pairs])
    se_u, se_v = u.std(ddof=1) / math.sqrt(k), v.std(ddof=1) / math.sqrt(k)
    assert abs(u.mean()) < 3 * se_u
    assert v.mean() > 10 * se_v
    assert v.mean() == pytest.approx(math.sqrt(math.pi) * 2 / n, rel=0.15)  # E||X - X'|| = sqrt(pi) in N(0, I_2)
    # shifted by 0.5 along one axis: far above the null spread
    shifted = np.array([energy_distance(a, b + [0.5, 0.0]) for a, b in pairs[:5]])
    assert shifted.min() > 10 * u.std(ddof=1)


def test_energy_distance_10k_points_in_2d():
    # 10 000 x 10 000 points: blocks of 1024 x 1024 pairs keep the extra memory at a few MB (numpy and scipy
    # report their allocations to tracemalloc); the 2e8 pairs take about half a second
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(10_000, 2)), rng.normal(size=(10_000, 2))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        value = energy_distance(a, b)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    # under the null the sd is about 0.0045 at n = 500 (previous test) and shrinks as 1/n: ~2.3e-4 here
    assert abs(value) < 2e-3


# ---------------------------------------------------------------------------------------------------------------------
# MMD


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("h", [0.3, 1.0, 4.0])
def test_mmd_matches_brute_force(small_sets, h, unbiased):
    x, y = small_sets
    got = mmd(x, y, bandwidth=h, unbiased=unbiased)
    assert isinstance(got, float)
    assert got == pytest.approx(brute_mmd(x, y, h, unbiased), rel=1e-10, abs=1e-12)


def test_mmd_median_heuristic_matches_brute_force(small_sets):
    x, y = small_sets
    h = brute_median_distance(np.concatenate([x, y]))
    assert mmd(x, y) == pytest.approx(brute_mmd(x, y, h), rel=1e-10, abs=1e-12)
    assert mmd(y, x) == pytest.approx(mmd(x, y), rel=1e-12)  # pooled points: symmetric in the two sets


def test_mmd_median_heuristic_subsamples_large_sets_deterministically():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(1500, 2)), rng.normal(0.3, 1.0, size=(1200, 2))  # 2700 pooled points > 2000
    first = mmd(x, y)
    assert mmd(x, y) == first  # fixed seed: the same subset every call
    pooled = np.concatenate([x, y])
    full_h = float(np.median(scipy.spatial.distance.pdist(pooled)))
    # the median over a random 2000 of the 2700 points is close to the full median, so is the MMD
    assert first == pytest.approx(mmd(x, y, bandwidth=full_h), rel=0.02)


def _gauss_mean_kernel(var, delta2, h, d):
    """E exp(-||Z||^2 / (2 h^2)) for Z ~ N(delta, var I_d), ||delta||^2 = delta2."""
    return (h * h / (h * h + var)) ** (d / 2) * np.exp(-delta2 / (2.0 * (h * h + var)))


@pytest.mark.parametrize(
    "d, s, shift, h",
    [(2, 1.0, [1.0, 0.5], 1.0), (5, 0.5, [0.3] * 5, 1.5), (1, 1.0, [2.0], 0.8)],
)
def test_mmd_matches_closed_form_between_gaussians(d, s, shift, h):
    # Population MMD^2 between N(0, s^2 I) and N(m, s^2 I): 2 c [1 - exp(-||m||^2 / (2 (h^2 + 2 s^2)))],
    # c = (h^2 / (h^2 + 2 s^2))^{d/2}. Tolerance: 5 standard deviations of the U-statistic, whose variance is
    # 4 Var g(X) / n + 4 Var g'(Y) / m to leading order (Hoeffding), with the first-order projections
    # g(x) = E k(x, X') - E k(x, Y) and g'(y) = E k(y, Y') - E k(X, y), in closed form for Gaussians
    # (x - X' ~ N(x, s^2 I), x - Y ~ N(x - m, s^2 I)) and their variances estimated from the drawn points.
    # (Checked once for the first case at n = 1000: over 60 seeds the estimates had sd 0.0100, predicted 0.0109.)
    rng = np.random.default_rng(8)
    n = m = 3000
    mu = np.asarray(shift, np.float64)
    x = rng.normal(0.0, s, size=(n, d))
    y = mu + rng.normal(0.0, s, size=(m, d))
    c = (h * h / (h * h + 2 * s * s)) ** (d / 2)
    pop = 2 * c * (1 - math.exp(-float(mu @ mu) / (2 * (h * h + 2 * s * s))))

    def proj(p, own, other):
        return _gauss_mean_kernel(s * s, ((p - own) ** 2).sum(1), h, d) - _gauss_mean_kernel(
            s * s, ((p - other) ** 2).sum(1), h, d
        )

    sd = math.sqrt(4 * proj(x, 0.0, mu).var() / n + 4 * proj(y, mu, 0.0).var() / m)
    assert pop > 15 * sd  # the check has teeth: the effect is far larger than the noise
    assert mmd(x, y, bandwidth=h) == pytest.approx(pop, abs=5 * sd)


def test_mmd_same_distribution_is_near_zero_and_v_statistic_biased():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))
    u = mmd(x, y, bandwidth=1.0)
    v = mmd(x, y, bandwidth=1.0, unbiased=False)
    # under the null the U-statistic is O(1/n): |u| is a few times 1e-4 at most; the V-statistic adds
    # (1 - E k(X, X')) (1/n + 1/m) = (1 - 1/3) * 1e-3 = 6.7e-4 for N(0, I_2) with h = 1
    assert abs(u) < 5e-4
    assert v - u == pytest.approx((1 - 1 / 3) * (2 / 2000), rel=0.05)
    assert mmd([0.0, 1.0], [100.0, 101.0], bandwidth=1.0) == pytest.approx(2 * math.exp(-0.5), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# mode coverage

RING = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


def test_mode_coverage_all_modes_hit():
    mc = mode_coverage(RING, RING, std=0.02)
    assert isinstance(mc, ModeCoverage)
    assert (mc.covered, mc.num_modes, mc.high_quality) == (8, 8, 1.0)
    assert isinstance(mc.covered, int) and isinstance(mc.high_quality, float)
    assert mc.per_mode.dtype == np.int64 and mc.per_mode.tolist() == [1] * 8


def test_mode_coverage_collapsed_onto_one_mode():
    rng = np.random.default_rng(10)
    samples = RING[3] + 0.02 * rng.normal(size=(500, 2)).clip(-2, 2)  # all within 2 sqrt(2) sigma < 3 sigma
    mc = mode_coverage(samples, RING, std=0.02)
    assert (mc.covered, mc.num_modes, mc.high_quality) == (1, 8, 1.0)
    assert mc.per_mode.tolist() == [0, 0, 0, 500, 0, 0, 0, 0]


def test_mode_coverage_radius_boundary():
    modes = np.array([[0.0, 0.0], [10.0, 0.0]])
    r = 3.0 * 0.1
    inside = np.array([[r * (1 - 1e-9), 0.0], [0.0, -r * (1 - 1e-9)]])
    outside = np.array([[r * (1 + 1e-9), 0.0], [0.0, -r * (1 + 1e-9)]])
    assert mode_coverage(inside, modes, 0.1)[:3] == (1, 2, 1.0)
    assert mode_coverage(outside, modes, 0.1)[:3] == (0, 2, 0.0)
    assert mode_coverage(outside, modes, 0.1, threshold=3.01)[:3] == (1, 2, 1.0)  # a wider radius reaches them
    diag = np.array([[10.0 + r * (1 - 1e-9) / math.sqrt(2), r * (1 - 1e-9) / math.sqrt(2)]])  # Euclidean, not per axis
    mc = mode_coverage(diag, modes, 0.1)
    assert mc[:3] == (1, 2, 1.0) and mc.per_mode.tolist() == [0, 1]


def test_mode_coverage_counts_against_loops():
    modes = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    samples = np.array([[0.01, 0.0], [0.0, -0.02], [0.03, 0.03], [1.0, 0.05], [0.5, 0.5], [3.0, 3.0]])
    mc = mode_coverage(samples, modes, std=0.1)  # radius 0.3
    assert (mc.covered, mc.num_modes) == (2, 3)
    assert mc.high_quality == pytest.approx(4 / 6)
    assert mc.per_mode.tolist() == [3, 1, 0]
    # random points against an explicit double loop
    rng = np.random.default_rng(11)
    pts, mus, std, thr = rng.uniform(-2, 2, size=(400, 3)), rng.uniform(-2, 2, size=(6, 3)), 0.15, 2.5
    dist = np.array([[_dist(p, q) for q in mus] for p in pts])
    near = dist.argmin(1)
    good = dist[np.arange(len(pts)), near] <= thr * std
    mc = mode_coverage(pts, mus, std, threshold=thr)
    assert mc.covered == int(sum(any(dist[i, k] <= thr * std for i in range(len(pts))) for k in range(6)))
    assert mc.high_quality == pytest.approx(good.mean())
    assert mc.per_mode.tolist() == [int(np.sum(good & (near == k))) for k in range(6)]


def test_mode_coverage_overlapping_balls_count_nearest_mode_only():
    modes = np.array([[0.0, 0.0], [0.1, 0.0]])
    mc = mode_coverage([[0.06, 0.0]], modes, std=0.1)  # within 0.3 of both; nearer the second
    assert mc.covered == 2 and mc.per_mode.tolist() == [0, 1] and mc.high_quality == 1.0


def test_mode_coverage_1d():
    mc = mode_coverage([0.1, 0.2, 5.0, 9.0], [0.0, 5.0, 20.0], std=0.1)
    assert mc[:3] == (2, 3, 0.75) and mc.per_mode.tolist() == [2, 1, 0]


def test_mode_coverage_for_ring():
    ds = datasets.load("ring")
    mc = mode_coverage_for(ds.train, ds.meta)
    assert (mc.covered, mc.num_modes) == (8, 8)
    assert mc.high_quality >= 0.99  # a 2-D Gaussian has 1 - exp(-4.5) = 98.9% within 3 sd; see the line below
    # independent count: each point against the centre of the component it was drawn from (its label)
    modes, std, lab = np.array(ds.meta["modes"]), ds.meta["mode_std"], ds.labels.train
    good = np.linalg.norm(ds.train - modes[lab], axis=1) <= 3 * std
    assert mc.high_quality == pytest.approx(good.mean(), abs=1e-12)
    assert mc.per_mode.tolist() == np.bincount(lab[good], minlength=8).tolist()
    same = mode_coverage_for(ds.train, ds)  # a Dataset works as well as its meta
    assert same[:3] == mc[:3] and np.array_equal(same.per_mode, mc.per_mode)
    # a model that dropped half the ring
    half = ds.train[lab < 4]
    assert mode_coverage_for(half, ds.meta).covered == 4


def test_mode_coverage_for_grid():
    ds = datasets.load("grid")
    mc = mode_coverage_for(ds.train, ds.meta)
    assert (mc.covered, mc.num_modes) == (25, 25)
    modes, lab = np.array(ds.meta["modes"]), ds.labels.train
    good = np.linalg.norm(ds.train - modes[lab], axis=1) <= 3 * ds.meta["mode_std"]
    assert mc.high_quality == pytest.approx(good.mean(), abs=1e-12) and mc.high_quality >= 0.98
    assert mc.per_mode.tolist() == np.bincount(lab[good], minlength=25).tolist()
    # spreading mass uniformly over the square: every mode still reached, but few samples are high quality
    rng = np.random.default_rng(12)
    spread = mode_coverage_for(rng.uniform(-2.5, 2.5, size=(5000, 2)), ds.meta)
    assert spread.covered == 25 and spread.high_quality < 0.1  # 25 pi 0.15^2 / 25 = 7% of the square's area


# ---------------------------------------------------------------------------------------------------------------------
# bad input

GOOD = np.zeros((4, 2)) + np.arange(4)[:, None]


@pytest.mark.parametrize("fn", [energy_distance, mmd])
@pytest.mark.parametrize(
    "samples, reference, match",
    [
        (np.ones((5, 2)), np.ones((5, 3)), r"samples has 2 values per point.*reference has 3.*same dimension"),
        (np.ones((5, 2, 2)), np.ones((5, 2)), r"samples has 4 values per point"),
        (np.ones((1, 2)), GOOD, r"samples has 1 point\(s\).*at least 2"),
        (GOOD, np.ones((0, 2)), r"reference has 0 point\(s\).*at least 2"),
        (np.array([[0.0, np.nan], [1, 1], [2, 2]]), GOOD, r"samples has 1 NaN and 0 inf"),
        (GOOD, np.array([[0.0, np.inf], [1, 1], [2, 2]]), r"reference has 0 NaN and 1 inf"),
        (3.0, GOOD, r"samples is a scalar"),
        (GOOD, np.ones((4, 2)) * 1j, r"reference has dtype complex128"),
        (["a", "b"], GOOD, r"samples has dtype <U1"),
        ([[1.0, 2.0], [3.0]], GOOD, r"samples"),
        (np.ones((3, 0)), GOOD, r"no coordinates"),
    ],
)
def test_two_sample_bad_data(fn, samples, reference, match):
    with pytest.raises(DataError, match=match):
        fn(samples, reference)


def test_v_statistic_accepts_single_points():
    assert energy_distance([[0.0, 0.0]], [[3.0, 4.0]], unbiased=False) == pytest.approx(10.0)
    with pytest.raises(DataError, match="at least 1"):
        energy_distance(np.ones((0, 2)), GOOD, unbiased=False)


@pytest.mark.parametrize("bandwidth", [0.0, -1.0, float("nan"), float("inf"), "1", [1.0, 2.0], True])
def test_mmd_bad_bandwidth(bandwidth):
    with pytest.raises(ConfigError, match=r"bandwidth=.*must be .*number > 0; pass e\.g\. bandwidth=1\.0"):
        mmd(GOOD, GOOD + 1, bandwidth=bandwidth)


def test_mmd_median_heuristic_zero():
    with pytest.raises(DataError, match=r"median heuristic gave bandwidth 0.*pass bandwidth="):
        mmd(np.zeros((5, 2)), np.zeros((4, 2)))
    assert mmd(np.zeros((5, 2)), np.zeros((4, 2)), bandwidth=1.0) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("fn", [energy_distance, mmd])
def test_bad_unbiased_flag(fn):
    with pytest.raises(ConfigError, match=r"unbiased='yes' must be True or False"):
        fn(GOOD, GOOD, unbiased="yes")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"std": 0.0}, r"std=0\.0 must be a finite number > 0"),
        ({"std": -0.1}, r"std=-0\.1 must be a finite number > 0"),
        ({"std": float("nan")}, r"std=nan must be a finite number > 0"),
        ({"std": [0.1, 0.2]}, r"std=\[0\.1, 0\.2\] must be a single number > 0"),
        ({"std": 0.1, "threshold": 0}, r"threshold=0 must be a finite number > 0; pass e\.g\. threshold=3\.0"),
        ({"std": 0.1, "threshold": -3.0}, r"threshold=-3\.0 must be"),
    ],
)
def test_mode_coverage_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        mode_coverage(GOOD, RING[:2], **kwargs)


@pytest.mark.parametrize(
    "samples, modes, match",
    [
        (GOOD, [1.0, 0.0], r"modes has shape \(2,\) but the samples have 2 values per point.*\(K, 2\)"),
        (GOOD, np.ones((3, 3)), r"modes has shape \(3, 3\).*\(K, 2\) array with K >= 1"),
        (GOOD, np.ones((0, 2)), r"modes has shape \(0, 2\)"),
        (GOOD, [[0.0, np.nan]], r"modes has 1 NaN"),
        (GOOD, [["a", "b"]], r"modes has dtype"),
        (np.ones((0, 2)), RING, r"samples has 0 point\(s\).*at least 1"),
        (np.array([[np.inf, 0.0]]), RING, r"samples has 0 NaN and 1 inf"),
    ],
)
def test_mode_coverage_bad_data(samples, modes, match):
    with pytest.raises(DataError, match=match):
        mode_coverage(samples, modes, 0.1)


def test_mode_coverage_for_bad_meta():
    moons = datasets.load("moons", n=50)
    with pytest.raises(DataError, match=r"dataset 'moons' has no 'modes'.*\['ring', 'grid'\]"):
        mode_coverage_for(moons.train, moons.meta)
    flat = datasets.load("ring", n=50, noise=0.0)
    with pytest.raises(DataError, match=r"dataset 'ring' has mode_std=0\.0 .*noise > 0"):
        mode_coverage_for(flat.train, flat.meta)
    with pytest.raises(DataError, match=r"dataset_meta is a list; pass the meta dict"):
        mode_coverage_for(GOOD, [[0.0, 0.0]])
    ring = datasets.load("ring", n=50)
    with pytest.raises(ConfigError, match=r"threshold=0\.0 must be"):
        mode_coverage_for(ring.train, ring.meta, threshold=0.0)
