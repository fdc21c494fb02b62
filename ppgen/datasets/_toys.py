"""Two-dimensional toy distributions, generated from a seed.

Every generator draws ``n`` i.i.d. points with ``numpy.random.default_rng(seed)``,
so the same seed always gives the same points and the order is already random.
Formulas (``u`` ~ Uniform(0, 1), ``e`` ~ N(0, I_2), ``s`` = the ``noise`` argument):

- ``moons``: half ``c`` ~ Bernoulli(1/2), ``t = pi * u``; the upper moon is
  ``(cos t, sin t)``, the lower one ``(1 - cos t, 0.5 - sin t)``; plus ``s * e``
  (default ``s = 0.05``). Points lie roughly in [-1, 2] x [-0.5, 1].
- ``swiss_roll``: ``t = 1.5 pi (1 + 2u)`` in [1.5 pi, 4.5 pi]; the point is
  ``(t cos t, t sin t) / (4.5 pi) + s * e`` (default ``s = 0.05``): dividing by
  the largest radius ``4.5 pi`` puts the roll inside [-1, 1]^2 before noise.
- ``ring``: component ``k`` uniform on 0..7, mean ``(cos(2 pi k / 8), sin(2 pi k / 8))``
  (radius 1), point = mean + ``s * e`` (default ``s = 0.02``).
- ``grid``: component ``k`` uniform on 0..24, means ``(i, j)`` for ``i, j`` in
  {-2, -1, 0, 1, 2} (``k = 5 (i + 2) + (j + 2)``), point = mean + ``s * e``
  (default ``s = 0.05``).
- ``pinwheel``: arm ``k`` uniform on 0..4; ``(a, b) = (1 + 0.3 e_1, s e_2)``
  (radial std 0.3, tangential std ``s``, default 0.05); the point is ``(a, b)``
  rotated by the angle ``2 pi k / 5 + 0.25 exp(a)`` (rate 0.25): the further
  out along the arm, the more it is swept round.

Labels are the component index for ``ring``, ``grid`` and ``pinwheel`` (the
arm), None for ``moons`` and ``swiss_roll``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Dataset, from_arrays

def _moons(rng: np.random.Generator, n: int, s: float):
    upper = rng.random(n) < 0.5
    t = np.pi * rng.random(n)
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], axis=1) + s * rng.standard_normal((n, 2))
    return pts, None, {}


def _swiss_roll(rng: np.random.Generator, n: int, s: float):
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (4.5 * np.pi)
    pts += s * rng.standard_normal((n, 2))
    return pts, None, {}


def _mixture(rng: np.random.Generator, n: int, s: float, modes: np.ndarray):
    k = rng.integers(0, len(modes), size=n)
    pts = modes[k] + s * rng.standard_normal((n, 2))
    meta = {"modes": [[float(a), float(b)] for a, b in modes], "mode_std": float(s)}
    return pts, k, meta


def _ring(rng: np.random.Generator, n: int, s: float):
    ang = 2.0 * np.pi * np.arange(8) / 8
    modes = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    return _mixture(rng, n, s, modes)


def _grid(rng: np.random.Generator, n: int, s: float):
    i, j = np.meshgrid(np.arange(-2, 3), np.arange(-2, 3), indexing="ij")
    modes = np.stack([i.ravel(), j.ravel()], axis=1).astype(np.float64)
    return _mixture(rng, n, s, modes)


def _pinwheel(rng: np.random.Generator, n: int, s: float, arms: int = 5, radial_std: float = 0.3, rate: float = 0.25):
    k = rng.integers(0, arms, size=n)
    feats = rng.standard_normal((n, 2)) * np.array([radial_std, s])
    feats[:, 0] += 1.0
    angle = 2.0 * np.pi * k / arms + rate * np.exp(feats[:, 0])
    c, sn = np.cos(angle), np.sin(angle)
    pts = np.stack([c * feats[:, 0] - sn * feats[:, 1], sn * feats[:, 0] + c * feats[:, 1]], axis=1)
    return pts, k, {"arms": arms, "radial_std": radial_std, "rate": rate}


# name -> (generator, default noise)
TOYS: dict[str, tuple[Any, float]] = {
    "moons": (_moons, 0.05),
    "swiss_roll": (_swiss_roll, 0.05),
    "ring": (_ring, 0.02),
    "grid": (_grid, 0.05),
    "pinwheel": (_pinwheel, 0.05),
}


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Sizes (train, val, test) for ``n`` examples; rounding to the nearest integer."""
    n_val = int(round(n * val_fraction))
    n_test = int(round(n * test_fraction))
    return n - n_val - n_test, n_val, n_test


def load_toy(name: str, *, seed: int, n: int, noise: float, val_fraction: float, test_fraction: float) -> Dataset:
    """Draw ``n`` points of toy ``name`` and split them train/val/test in draw order.

    The caller has already checked the arguments (see `ppgen.datasets.load`).
    """
    gen, _ = TOYS[name]
    rng = np.random.default_rng(seed)
    pts, labels, extra = gen(rng, n, float(noise))
    n_train, n_val, _ = split_counts(n, val_fraction, test_fraction)
    cuts = [0, n_train, n_train + n_val, n]
    pts = pts.astype(np.float32)
    parts = [pts[a:b] if b > a else None for a, b in zip(cuts[:-1], cuts[1:])]
    ys = None
    if labels is not None:
        ys = tuple(labels[a:b] if b > a else None for a, b in zip(cuts[:-1], cuts[1:]))
    meta = {
        "view": None,
        "source": "generated",
        "support": "real",
        "levels": None,
        "low": None,
        "high": None,
        "num_classes": None if labels is None else (len(extra["modes"]) if "modes" in extra else extra["arms"]),
        "seed": int(seed),
        "n": int(n),
        "noise": float(noise),
        **extra,
    }
    return from_arrays(parts[0], parts[1], parts[2], ys, name=name, meta=meta)
