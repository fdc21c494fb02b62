"""A digits classifier shipped with ppgen, run in pure NumPy, and the sample-quality metrics built on it.

The classifier is a small convolutional network trained on the training split of
``datasets.load("digits")`` by ``python -m ppgen.metrics._train_classifier``,
which writes ``digits_classifier.safetensors`` next to this module. Inference
here needs only NumPy and ``safetensors`` (no torch or jax is imported), so the
metrics score samples from either backend alike.

Architecture (`ARCH`; input ``x / 16`` for 0..16 pixel counts, one channel, 8x8)::

    conv 3x3 (pad 1) 1 -> 32, ReLU          8x8
    conv 3x3 (pad 1) 32 -> 32, ReLU, max-pool 2    -> 4x4
    conv 3x3 (pad 1) 32 -> 64, ReLU, max-pool 2    -> 2x2
    flatten (channel, row, column) 256 -> dense 64, ReLU     = features(x)
    dense 64 -> 10                                          = logits

Inputs are images of shape ``(N, 8, 8)`` or ``(N, 64)`` on one of the pixel
scales of `SCALES` (the digits views of ``ppgen.datasets``):

- ``"counts"`` (default): 0..16, the ``"categorical"`` view (non-integer values, e.g. model means, are fine);
- ``"unit"``: [0, 1], the ``"unit"`` view (``x / 16``);
- ``"symmetric"``: [-1, 1], the ``"symmetric"`` view (``x / 8 - 1``);
- ``"binary"``: {0, 1}, the ``"binary"`` view (``x > 8``); read as ``x * 16``, so values in
  between (Bernoulli means) are accepted as well.

Example:
    >>> from ppgen import datasets
    >>> from ppgen.metrics import digits_classifier
    >>> ds = datasets.load("digits", view="categorical")
    >>> clf = digits_classifier()
    >>> float((clf.predict(ds.test) == ds.labels.test).mean()) > 0.97
    True
"""

from __future__ import annotations

import functools
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import CheckpointError, ConfigError, DataError
from ._frechet import frechet_distance

__all__ = [
    "ARCH",
    "SCALES",
    "WEIGHTS_PATH",
    "ConditionalAccuracy",
    "DigitsClassifier",
    "conditional_accuracy",
    "digits_classifier",
    "digits_frechet_distance",
    "view_to_scale",
]

WEIGHTS_PATH = Path(__file__).with_name("digits_classifier.safetensors")
TRAIN_HINT = "python -m ppgen.metrics._train_classifier"
FORMAT = "ppgen.digits_classifier/1"  # the safetensors metadata key "format"

# Layer sizes, shared with the training script (which builds the torch model from them).
ARCH: dict[str, Any] = {"conv_channels": (32, 32, 64), "hidden": 64, "num_classes": 10, "kernel": 3, "image": 8}

# scale name -> (low, high) of the values it admits; every scale maps linearly to counts 0..16
SCALES: dict[str, tuple[float, float]] = {
    "counts": (0.0, 16.0),
    "unit": (0.0, 1.0),
    "symmetric": (-1.0, 1.0),
    "binary": (0.0, 1.0),
}
RANGE_TOLERANCE = 1e-3  # values may leave the scale's range by this fraction of its width (then clipped)
_VIEW_OF_SCALE = {"counts": "categorical", "unit": "unit", "symmetric": "symmetric", "binary": "binary"}


def expected_shapes(arch: dict[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the classifier (torch ``state_dict`` names and layouts)."""
    a = ARCH if arch is None else arch
    c1, c2, c3 = a["conv_channels"]
    k, h = a["kernel"], a["hidden"]
    flat = c3 * (a["image"] // 4) ** 2
    return {
        "conv1.weight": (c1, 1, k, k),
        "conv1.bias": (c1,),
        "conv2.weight": (c2, c1, k, k),
        "conv2.bias": (c2,),
        "conv3.weight": (c3, c2, k, k),
        "conv3.bias": (c3,),
        "fc1.weight": (h, flat),
        "fc1.bias": (h,),
        "fc2.weight": (a["num_classes"], h),
        "fc2.bias": (a["num_classes"],),
    }


def check_scale(scale: Any) -> str:
    """Return ``scale`` if it names one of `SCALES`, else raise ConfigError."""
    if not isinstance(scale, str) or scale not in SCALES:
        choices = ", ".join(repr(s) for s in SCALES)
        raise ConfigError(
            f"unknown pixel scale {scale!r}; choose one of {choices} "
            "(the digits views 'categorical', 'unit', 'symmetric', 'binary' in that order)"
        )
    return scale


def to_unit_images(x: Any, scale: str = "counts", *, what: str = "x") -> np.ndarray:
    """Check images on ``scale`` and return them as float32 ``(N, 8, 8)`` on [0, 1] (counts / 16).

    Raises ConfigError for an unknown scale and DataError for a wrong shape,
    non-numeric, NaN/inf values, or values outside the scale's range by more
    than `RANGE_TOLERANCE` of its width (values within the tolerance are clipped).
    """
    scale = check_scale(scale)
    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{what} has dtype {arr.dtype}, not numbers; pass a numeric array of 8x8 digit images")
    if arr.ndim == 3 and arr.shape[1:] == (8, 8) or arr.ndim == 2 and arr.shape[1] == 64:
        n = arr.shape[0]
    else:
        hint = "; for a single image pass x[None]" if arr.shape in ((8, 8), (64,)) else ""
        raise DataError(
            f"{what} has shape {arr.shape}; the digits classifier takes images of shape (N, 8, 8) or (N, 64)"
            f"{hint}"
        )
    arr = arr.reshape(n, 8, 8).astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argwhere(bad.reshape(n, -1).any(axis=1))[0, 0])
        raise DataError(
            f"{what} has {int(bad.sum())} non-finite values (NaN/inf), the first in image {first}; "
            "drop or repair those images (e.g. samples of a diverged model) before scoring"
        )
    low, high = SCALES[scale]
    tol = RANGE_TOLERANCE * (high - low)
    if n and (arr.min() < low - tol or arr.max() > high + tol):
        lo, hi = float(arr.min()), float(arr.max())
        guess = [s for s, (a, b) in SCALES.items() if s != "binary" and a - 1e-6 <= lo and hi <= b + 1e-6]
        fix = f"pass scale={guess[0]!r}" if guess else "clip or rescale the images"
        raise DataError(
            f"{what} has values in [{lo:g}, {hi:g}], outside [{low:g}, {high:g}] of scale={scale!r}; {fix} "
            "(scales: 'counts' 0..16, 'unit' [0, 1], 'symmetric' [-1, 1], 'binary' {0, 1})"
        )
    if scale == "counts" and n and arr.max() <= 1.0:
        warnings.warn(
            f"{what} is on scale='counts' (0..16) but no value exceeds 1; if these are 'unit' or 'binary' "
            "view images, pass scale='unit' or scale='binary'",
            UserWarning,
            stacklevel=3,
        )
    if scale == "counts":
        arr = arr / 16.0
    elif scale == "symmetric":
        arr = (arr + 1.0) / 2.0
    # "unit" and "binary" (x * 16 counts, i.e. x on the unit scale) are already on [0, 1]
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def _conv3x3_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``relu(conv(x, w) + b)`` with zero padding 1; ``x`` is NHWC, ``w`` is (out, in, 3, 3); returns NHWC."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = sliding_window_view(xp, (3, 3), axis=(1, 2))  # (N, H, W, C, 3, 3)
    out = np.tensordot(windows, w, axes=([3, 4, 5], [1, 2, 3]))  # (N, H, W, out)
    out += b
    return np.maximum(out, 0.0, out=out)


def _maxpool2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class DigitsClassifier:
    """The shipped 8x8 digits classifier (see the module docstring), evaluated with NumPy.

    Args:
        path: the safetensors file; default `WEIGHTS_PATH` (the file shipped with ppgen).
        chunk_size: images per forward pass; bounds the memory of big inputs (about 80 kB per image).

    Raises:
        CheckpointError: the file is missing or unreadable, or its tensors or metadata are
            not those of this architecture (retrain with ``python -m ppgen.metrics._train_classifier``).

    Attributes:
        meta: the training metadata stored in the file (architecture, seed, accuracies, input convention).
        path: the file read.

    Example:
        >>> clf = DigitsClassifier()
        >>> clf.features(np.full((2, 8, 8), 8.0)).shape
        (2, 64)
    """

    def __init__(self, path: str | os.PathLike | None = None, *, chunk_size: int = 512) -> None:
        self.path = Path(WEIGHTS_PATH if path is None else path)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size={chunk_size!r} is not a positive integer; pass e.g. chunk_size=512")
        self.chunk_size = chunk_size
        self._w, self.meta = _load_weights(self.path)
        self.num_features = ARCH["hidden"]
        self.num_classes = ARCH["num_classes"]

    @property
    def weights(self) -> dict:
        """The network's weights by name (``conv1.weight``, ..., ``fc2.bias``; float32 numpy),
        as the file stores them in PyTorch's layouts."""
        return dict(self._w)

    def __repr__(self) -> str:
        acc = self.meta.get("accuracy", {}).get("test")
        return f"DigitsClassifier(path={str(self.path)!r}, test_accuracy={acc})"

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features and logits (float32) of unit-scale images ``(n, 8, 8)``."""
        w = self._w
        h = x[..., None]  # NHWC, C = 1
        h = _conv3x3_relu(h, w["conv1.weight"], w["conv1.bias"])
        h = _maxpool2(_conv3x3_relu(h, w["conv2.weight"], w["conv2.bias"]))
        h = _maxpool2(_conv3x3_relu(h, w["conv3.weight"], w["conv3.bias"]))
        h = h.transpose(0, 3, 1, 2).reshape(len(x), -1)  # flatten in torch's (C, H, W) order
        feats = np.maximum(h @ w["fc1.weight"].T + w["fc1.bias"], 0.0)
        logits = feats @ w["fc2.weight"].T + w["fc2.bias"]
        return feats, logits

    def _run(self, x: Any, scale: str) -> tuple[np.ndarray, np.ndarray]:
        unit = to_unit_images(x, scale)
        feats = np.empty((len(unit), self.num_features), np.float64)
        logits = np.empty((len(unit), self.num_classes), np.float64)
        for i in range(0, len(unit), self.chunk_size):
            f, lg = self._forward(unit[i : i + self.chunk_size])
            feats[i : i + len(f)] = f
            logits[i : i + len(f)] = lg
        return feats, logits

    def logits(self, x: Any, scale: str = "counts") -> np.ndarray:
        """Unnormalised class scores, float64 ``(N, 10)``; ``x`` as in `predict_proba`."""
        return self._run(x, scale)[1]

    def predict_proba(self, x: Any, scale: str = "counts") -> np.ndarray:
        """Class probabilities ``softmax(logits)``, float64 ``(N, 10)``, rows summing to 1.

        Args:
            x: images ``(N, 8, 8)`` or ``(N, 64)`` on ``scale``.
            scale: ``"counts"`` (0..16, default), ``"unit"``, ``"symmetric"`` or ``"binary"``.
        """
        z = self.logits(x, scale)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict(self, x: Any, scale: str = "counts") -> np.ndarray:
        """The most probable digit of each image, int64 ``(N,)``; ``x`` as in `predict_proba`."""
        return np.argmax(self.logits(x, scale), axis=1).astype(np.int64)

    def features(self, x: Any, scale: str = "counts") -> np.ndarray:
        """Penultimate-layer activations (after ReLU), float64 ``(N, 64)``, the space of `digits_frechet_distance`."""
        return self._run(x, scale)[0]


def _load_weights(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    if not path.is_file():
        raise CheckpointError(
            f"the digits classifier weights {str(path)!r} do not exist; create them with `{TRAIN_HINT}`"
        )
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as f:
            raw_meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise CheckpointError(
            f"cannot read the digits classifier weights {str(path)!r} ({type(e).__name__}: {e}); "
            f"recreate them with `{TRAIN_HINT}`"
        ) from e
    if raw_meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a ppgen digits classifier (metadata format={raw_meta.get('format')!r}, "
            f"expected {FORMAT!r}); recreate it with `{TRAIN_HINT}`"
        )
    want = expected_shapes()
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        wrong = sorted(f"{k}: {got[k]} instead of {want[k]}" for k in set(want) & set(got) if got[k] != want[k])
        raise CheckpointError(
            f"the tensors of {str(path)!r} do not match the digits classifier architecture {ARCH} "
            f"(missing {missing}, unexpected {extra}, wrong shapes {wrong}); recreate the file with `{TRAIN_HINT}`"
        )
    weights = {}
    for k, v in tensors.items():
        if not np.issubdtype(v.dtype, np.floating) or not np.isfinite(v).all():
            raise CheckpointError(
                f"tensor {k!r} of {str(path)!r} is not finite floating point (dtype {v.dtype}); "
                f"recreate the file with `{TRAIN_HINT}`"
            )
        weights[k] = np.ascontiguousarray(v, dtype=np.float32)
    try:
        meta = json.loads(raw_meta.get("ppgen", "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"the metadata of {str(path)!r} is not JSON ({e}); recreate it with `{TRAIN_HINT}`"
        ) from e
    return weights, meta


@functools.lru_cache(maxsize=1)
def _cached(path: str) -> DigitsClassifier:
    return DigitsClassifier(path)


def digits_classifier() -> DigitsClassifier:
    """The shipped classifier at `WEIGHTS_PATH`, loaded once and cached.

    Example:
        >>> digits_classifier() is digits_classifier()
        True
    """
    return _cached(str(WEIGHTS_PATH))


def _classifier(classifier: DigitsClassifier | None) -> DigitsClassifier:
    return digits_classifier() if classifier is None else classifier


def digits_frechet_distance(
    samples: Any,
    reference: Any,
    scale: str = "counts",
    *,
    reference_scale: str | None = None,
    classifier: DigitsClassifier | None = None,
) -> float:
    """Fréchet distance between Gaussians fitted to the classifier features of two image sets (digits "FID").

    With ``f`` the 64 penultimate-layer activations of the shipped classifier
    (`DigitsClassifier.features`), fit ``N(mu_s, C_s)`` to ``f(samples)`` and
    ``N(mu_r, C_r)`` to ``f(reference)`` (sample mean and unbiased covariance)
    and return `frechet_distance`::

        d = ||mu_s - mu_r||^2 + tr(C_s + C_r - 2 (C_s^{1/2} C_r C_s^{1/2})^{1/2})

    0 means equal feature means and covariances; lower is better. Like FID, the
    estimate is biased upwards for small sets (it is not 0 for two independent
    samples of the same distribution), so compare models at equal set sizes;
    a few hundred images or more per set are advised.

    Args:
        samples: images ``(N, 8, 8)`` or ``(N, 64)``, N >= 2, on ``scale``.
        reference: images ``(M, 8, 8)`` or ``(M, 64)``, M >= 2, on ``reference_scale``, e.g. the
            test split ``datasets.load("digits", view="categorical").test``.
        scale: pixel scale of ``samples``: ``"counts"`` (0..16, default), ``"unit"``, ``"symmetric"``, ``"binary"``.
        reference_scale: pixel scale of ``reference``; default ``scale``.
        classifier: the classifier to use; default the shipped one (`digits_classifier`).

    Returns:
        The distance, a float >= 0 (squared feature units).

    Raises:
        DataError: bad images (shape, NaN/inf, out of range) or fewer than 2 in a set.
        ConfigError: unknown scale.

    Example:
        >>> from ppgen import datasets
        >>> ds = datasets.load("digits", view="categorical")
        >>> digits_frechet_distance(ds.train, ds.test) < digits_frechet_distance(ds.train[:, ::-1], ds.test)
        True
    """
    clf = _classifier(classifier)
    ref_scale = scale if reference_scale is None else reference_scale
    stats = []
    for what, x, s in (("samples", samples, scale), ("reference", reference, ref_scale)):
        f = clf.features(x, s)
        if len(f) < 2:
            raise DataError(
                f"{what} has {len(f)} image(s); a Fréchet distance needs at least 2 (a few hundred advised)"
            )
        stats.append((f.mean(axis=0), np.cov(f, rowvar=False)))
    return frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])


class ConditionalAccuracy(NamedTuple):
    """Result of `conditional_accuracy`.

    Attributes:
        overall: fraction of all samples classified as their label.
        per_class: float64 ``(10,)``, the fraction for the samples of each label (NaN for a label with no samples).
        counts: int64 ``(10,)``, the number of samples of each label.
    """

    overall: float
    per_class: np.ndarray
    counts: np.ndarray


def conditional_accuracy(
    samples: Any, labels: Any, scale: str = "counts", *, classifier: DigitsClassifier | None = None
) -> ConditionalAccuracy:
    """Fraction of class-conditional samples that the shipped classifier assigns to their conditioning label.

    With ``c(x)`` the classifier's most probable digit::

        overall      = (1 / N) sum_i [c(x_i) = y_i]
        per_class[k] = sum_{i: y_i = k} [c(x_i) = y_i] / #{i: y_i = k}

    Args:
        samples: images ``(N, 8, 8)`` or ``(N, 64)`` on ``scale``, N >= 1.
        labels: the digit each sample was generated for, integers 0..9, shape ``(N,)``.
        scale: pixel scale of ``samples``: ``"counts"`` (0..16, default), ``"unit"``, ``"symmetric"``, ``"binary"``.
        classifier: the classifier to use; default the shipped one (`digits_classifier`).

    Returns:
        `ConditionalAccuracy` ``(overall, per_class, counts)``; ``per_class[k]`` is NaN where ``counts[k] == 0``.

    Raises:
        DataError: bad images, or labels of the wrong shape, type or range.
        ConfigError: unknown scale.

    Example:
        >>> from ppgen import datasets
        >>> ds = datasets.load("digits", view="categorical")
        >>> acc = conditional_accuracy(ds.test, ds.labels.test)
        >>> acc.overall > 0.97, acc.per_class.shape
        (True, (10,))
    """
    clf = _classifier(classifier)
    pred = clf.predict(samples, scale)  # checks the images
    n = len(pred)
    if n == 0:
        raise DataError("samples is empty; pass at least one image and its label")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"labels has shape {y.shape}; pass one label per sample, shape ({n},)")
    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= clf.num_classes:
        shown = y[:5].tolist() if y.dtype != object else "objects"
        raise DataError(
            f"labels must be integer digits 0..{clf.num_classes - 1}; got dtype {y.dtype}, first values {shown}"
        )
    hit = pred == y
    counts = np.bincount(y, minlength=clf.num_classes).astype(np.int64)
    hits = np.bincount(y, weights=hit.astype(np.float64), minlength=clf.num_classes)
    per_class = np.where(counts > 0, hits / np.maximum(counts, 1), math.nan)
    return ConditionalAccuracy(float(hit.mean()), per_class, counts)


def view_to_scale(view: str) -> str:
    """The `SCALES` name of a digits dataset view (``"categorical"`` -> ``"counts"``, others unchanged)."""
    for s, v in _VIEW_OF_SCALE.items():
        if v == view:
            return s
    raise ConfigError(f"unknown digits view {view!r}; choose one of {', '.join(map(repr, _VIEW_OF_SCALE.values()))}")
