"""scikit-learn's 8x8 handwritten digits (bundled with scikit-learn, no network)."""

from __future__ import annotations

import functools

import numpy as np

from ._core import Dataset, from_arrays
from ._views import check_view, pixel_meta, pixel_view

N_TRAIN, N_VAL = 1000, 350  # fixed split: [:1000], [1000:1350], [1350:]


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError(
            "the 'digits' dataset comes with scikit-learn, which is not installed; "
            "run `pip install scikit-learn`"
        ) from e
    bunch = load_digits()
    images = np.asarray(bunch.images).astype(np.uint8)
    targets = np.asarray(bunch.target).astype(np.int64)
    images.flags.writeable = False
    targets.flags.writeable = False
    return images, targets


def load_digits(view: str | None = None) -> Dataset:
    """Load the 1797 8x8 scikit-learn digits (values 0..16, labels 0..9).

    Split is fixed and unshuffled: train ``[:1000]``, val ``[1000:1350]``,
    test ``[1350:]`` (1000/350/447 images). Views: ``"unit"`` (x/16),
    ``"symmetric"`` (x/8 - 1), ``"binary"`` (x > 8, half the range) and
    ``"categorical"`` (int64 codes, 17 levels).
    """
    view = check_view(view, "digits")
    images, targets = _raw_digits()
    x = pixel_view(images, view, 16)
    y = targets.copy()
    a, b = N_TRAIN, N_TRAIN + N_VAL
    meta = {"view": view, "num_classes": 10, "source": "scikit-learn", **pixel_meta(view, 16)}
    return from_arrays(x[:a], x[a:b], x[b:], (y[:a], y[a:b], y[b:]), name="digits", meta=meta)
