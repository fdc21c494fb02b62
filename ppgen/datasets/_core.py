"""The `Dataset` container, `from_arrays` (its validating constructor) and `check_finite`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np

from ..errors import ConfigError, DataError

SPLIT_NAMES = ("train", "val", "test")


class Split(NamedTuple):
    """One value per split: ``train``, ``val`` and ``test`` (``val``/``test`` may be None).

    Used for the integer labels of a `Dataset`.

    Example:
        >>> Split(np.array([0, 1]), None, np.array([1])).train
        array([0, 1])
    """

    train: np.ndarray
    val: np.ndarray | None
    test: np.ndarray | None


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train/val/test arrays with their labels and a JSON-serialisable description.

    Examples keep their natural shape: an array of 8x8 images is ``(N, 8, 8)``,
    2-D points are ``(N, 2)``. Build one with `load` or `from_arrays`, which check
    the arrays; constructing the class directly skips those checks.

    Attributes:
        train: ``(N, *shape)`` training examples.
        val: ``(N_val, *shape)`` validation examples, or None.
        test: ``(N_test, *shape)`` test examples, or None.
        labels: integer labels per split (a `Split` of 1-D int64 arrays), or None.
        meta: always holds ``name``, ``view``, ``shape``, ``support``
            (``"real"``/``"binary"``/``"categorical"``), ``levels``, ``low``,
            ``high``, ``num_classes`` and ``source``; plain Python values only, so
            ``json.dumps(meta)`` works.

    Equality is identity (comparing arrays element-wise has no single truth value).

    Example:
        >>> ds = from_arrays(np.zeros((4, 2, 3)) + 0.5)
        >>> ds.shape, ds.data_dim, ds.flat().shape
        ((2, 3), 6, (4, 6))
    """

    train: np.ndarray
    val: np.ndarray | None
    test: np.ndarray | None
    labels: Split | None
    meta: dict

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(8, 8)``."""
        return tuple(int(s) for s in self.train.shape[1:])

    @property
    def data_dim(self) -> int:
        """Number of values in one example: the product of `shape`."""
        return int(math.prod(self.shape))

    def split(self, name: str = "train") -> np.ndarray:
        """Return the array of split ``name`` ("train", "val" or "test").

        Raises:
            ConfigError: ``name`` is not one of the three split names.
            DataError: that split is None in this dataset.

        Example:
            >>> from_arrays(np.ones((3, 1)) * 0.5).split("train").shape
            (3, 1)
        """
        if name not in SPLIT_NAMES:
            raise ConfigError(f"unknown split {name!r}; use one of 'train', 'val', 'test'")
        arr = getattr(self, name)
        if arr is None:
            have = [s for s in SPLIT_NAMES if getattr(self, s) is not None]
            raise DataError(
                f"dataset {self.meta.get('name')!r} has no {name!r} split (it has {have}); "
                f"use one of those, or load it with a non-zero {name}_fraction"
            )
        return arr

    def flat(self, split: str = "train") -> np.ndarray:
        """Return split ``split`` reshaped to ``(N, data_dim)`` (a view when possible).

        Example:
            >>> from_arrays(np.ones((3, 2, 2)) * 0.5).flat().shape
            (3, 4)
        """
        arr = self.split(split)
        return arr.reshape(arr.shape[0], -1)

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{s}={getattr(self, s).shape[0]}" for s in SPLIT_NAMES if getattr(self, s) is not None
        )
        return (
            f"Dataset(name={self.meta.get('name')!r}, view={self.meta.get('view')!r}, "
            f"shape={self.shape}, support={self.meta.get('support')!r}, {sizes}, "
            f"labels={'yes' if self.labels is not None else 'no'})"
        )


def check_finite(x: Any, what: str = "data") -> np.ndarray:
    """Return ``x`` as a numpy array after checking that it holds no NaN or inf.

    Integer and boolean arrays pass unchanged. The check costs one pass over
    the data (a float64 sum) when everything is finite.

    Args:
        x: array-like of numbers.
        what: how to name ``x`` in the error message, e.g. ``"val split"``.

    Returns:
        ``np.asarray(x)``.

    Raises:
        DataError: ``x`` holds NaN/inf (the message gives how many of each and the
            index of the first one) or is not numeric.

    Example:
        >>> check_finite([[1.0, 2.0]]).shape
        (1, 2)
        >>> check_finite([1.0, float("nan")])
        Traceback (most recent call last):
        ...
        ppgen.errors.DataError: data has 1 NaN and 0 inf entries (1 of 2); ...
    """
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind in "biu":
        return arr
    if kind not in "fc":
        raise DataError(
            f"{what} has dtype {arr.dtype} which is not numeric; pass an array of numbers"
        )
    if arr.size == 0 or np.isfinite(arr.sum(dtype=np.complex128 if kind == "c" else np.float64)):
        return arr
    bad = ~np.isfinite(arr)
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:  # the sum overflowed, but every entry is finite
        return arr
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), arr.shape))
    where = first[0] if len(first) == 1 else first
    raise DataError(
        f"{what} has {n_nan} NaN and {n_bad - n_nan} inf entries ({n_bad} of {arr.size}); "
        f"the first is at index {where}; remove or impute them (e.g. drop those rows, "
        "or replace them with np.nan_to_num) before using the data"
    )


def _to_array(x: Any, what: str) -> np.ndarray:
    """Convert one split to float64 (float64 data), float32 (other floats, bools) or int64
    (integers) and check it."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as e:
        raise DataError(f"could not turn {what} into an array ({e}); pass a rectangular numeric array") from e
    if arr.dtype == object:
        raise DataError(
            f"{what} is an object array (ragged lists or mixed types?); pass a rectangular numeric array"
        )
    if arr.ndim == 0:
        raise DataError(f"{what} is a scalar ({arr!r}); pass an array of shape (N, ...) with N examples")
    if arr.ndim == 1:
        raise DataError(
            f"{what} is a flat vector of shape {arr.shape}; examples must have a shape of their own: "
            f"if these are {arr.shape[0]} scalar examples, pass x.reshape(-1, 1); "
            "if it is one example, pass x[None]"
        )
    if arr.shape[0] < 1:
        raise DataError(f"{what} has shape {arr.shape}: no examples; pass at least one example")
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.float32)
    if kind in "iu":
        if kind == "u" and arr.dtype.itemsize == 8 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise DataError(f"{what} has values above {np.iinfo(np.int64).max} that do not fit int64; rescale them")
        return arr.astype(np.int64, copy=False)
    if kind == "f":
        check_finite(arr, what)
        if arr.dtype == np.float64:  # kept: closed form and EM compute in float64
            return arr
        with np.errstate(over="ignore"):
            out = arr.astype(np.float32, copy=False)
        if out is not arr and out.size and not np.isfinite(out.sum(dtype=np.float64)):
            big = float(np.max(np.abs(arr)))
            raise DataError(
                f"{what} has values too large for float32 (largest |x| = {big:g}); rescale the data"
            )
        return out
    raise DataError(f"{what} has dtype {arr.dtype}; pass real numbers (float) or integer codes (int)")


def _to_labels(y: Any, what: str, n: int) -> np.ndarray:
    """Convert labels of one split to a 1-D int64 array of length ``n``."""
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError) as e:
        raise DataError(f"could not turn {what} into an array ({e}); pass a 1-D array of ints") from e
    if arr.ndim != 1:
        raise DataError(
            f"{what} has shape {arr.shape}; labels must be 1-D with one integer per example "
            "(use y.ravel() if they are (N, 1))"
        )
    if arr.shape[0] != n:
        raise DataError(
            f"{what} has {arr.shape[0]} labels but the split has {n} examples; pass one label per example"
        )
    kind = arr.dtype.kind
    if kind == "f":
        check_finite(arr, what)
        if not np.all(arr == np.round(arr)):
            raise DataError(f"{what} holds non-integer values; labels must be integer class indices")
    elif kind not in "biu":
        raise DataError(f"{what} has dtype {arr.dtype}; labels must be integer class indices")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise DataError(
            f"{what} holds negative labels (min {int(out.min())}); labels must be class indices 0..K-1"
        )
    return out


def _labels_per_split(labels: Any) -> dict[str, Any]:
    """Normalise the accepted ``labels`` forms to a dict split name -> array-like or None."""
    if isinstance(labels, Mapping):
        unknown = sorted(str(k) for k in labels if k not in SPLIT_NAMES)
        if unknown:
            raise DataError(f"labels has unknown key(s) {unknown}; use 'train', 'val', 'test'")
        return {s: labels.get(s) for s in SPLIT_NAMES}
    if isinstance(labels, tuple) and 1 <= len(labels) <= 3 and all(
        e is None or np.ndim(e) >= 1 for e in labels
    ):
        return dict(zip(SPLIT_NAMES, tuple(labels) + (None,) * (3 - len(labels))))
    return {"train": labels, "val": None, "test": None}


def _is_binary(arr: np.ndarray) -> bool:
    if arr.size == 0:
        return True
    if arr.min() < 0 or arr.max() > 1:
        return False
    return not np.any((arr != 0) & (arr != 1))


def _jsonable(meta: dict, what: str) -> dict:
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{what} is not JSON-serialisable ({e}); use plain str/int/float/bool/list/dict/None values"
        ) from e
    return meta


def from_arrays(
    train: Any,
    val: Any = None,
    test: Any = None,
    labels: Any = None,
    *,
    name: str = "arrays",
    meta: Mapping[str, Any] | None = None,
) -> Dataset:
    """Build a checked `Dataset` from arrays you already have in memory.

    Each split is converted to numpy: float64 data stays float64 (the closed-form and EM
    fits compute in float64), other floating point (and boolean) data becomes float32,
    integer data int64. Every split must be finite, hold at least one
    example, have at least 2 dimensions ``(N, *shape)`` and share the per-example
    shape of ``train``; all splits must be of one kind (all float or all integer).

    ``meta`` describes the data; what is not given is inferred:
    ``support`` is ``"binary"`` when every value is 0 or 1 (``low``=0, ``high``=1),
    ``"categorical"`` for other integer data (``levels`` = max + 1, ``low``=0,
    ``high`` = levels - 1; negative integers are refused), else ``"real"``
    (``low``/``high`` None: the range of a sample says nothing certain about
    the support). ``num_classes`` is max label + 1, or None without labels;
    ``source`` defaults to ``"arrays"``.

    Args:
        train: ``(N, *shape)`` array-like.
        val: optional validation examples.
        test: optional test examples.
        labels: integer labels: one array for ``train``; or a `Split`/tuple
            ``(y_train, y_val, y_test)`` (shorter tuples allowed) or a dict with
            keys ``"train"``/``"val"``/``"test"``. Each must be 1-D with one
            label per example; a split without labels gets None.
        name: stored as ``meta["name"]``.
        meta: extra or overriding meta entries (must be JSON-serialisable).

    Returns:
        A `Dataset`.

    Raises:
        DataError: NaN/inf values, an empty split, a flat 1-D vector, mismatched
            per-example shapes or dtypes, labels of the wrong length, labels for a
            split that is None.
        ConfigError: ``meta`` is not JSON-serialisable.

    Example:
        >>> ds = from_arrays(np.random.rand(100, 2), labels=np.zeros(100, int))
        >>> ds.meta["support"], ds.meta["num_classes"], ds.labels.train.shape
        ('real', 1, (100,))
    """
    arrays = {"train": _to_array(train, "train split")}
    shape = arrays["train"].shape[1:]
    for s, x in (("val", val), ("test", test)):
        if x is None:
            arrays[s] = None
            continue
        arr = _to_array(x, f"{s} split")
        if arr.shape[1:] != shape:
            raise DataError(
                f"{s} split has per-example shape {arr.shape[1:]} but train has {shape}; "
                "all splits must hold examples of one shape (reshape or crop them to match)"
            )
        if arr.dtype.kind == "f" and arrays["train"].dtype.kind == "f":
            arr = arr.astype(arrays["train"].dtype, copy=False)  # one float precision, the training split's
        if arr.dtype != arrays["train"].dtype:
            raise DataError(
                f"{s} split has dtype {arr.dtype} but train has {arrays['train'].dtype}; "
                "pass all splits as float (real values) or all as int (category codes)"
            )
        arrays[s] = arr
    present = [a for a in arrays.values() if a is not None]

    label_split = None
    num_classes = None
    if labels is not None:
        given = _labels_per_split(labels)
        ys = {}
        for s in SPLIT_NAMES:
            if given[s] is None:
                ys[s] = None
                continue
            if arrays[s] is None:
                raise DataError(f"labels were given for the {s} split but there is no {s} data; drop them or pass {s}=")
            ys[s] = _to_labels(given[s], f"{s} labels", arrays[s].shape[0])
        if ys["train"] is None:
            raise DataError("labels were given for val/test but not for train; pass train labels too (or none at all)")
        label_split = Split(ys["train"], ys["val"], ys["test"])
        num_classes = 1 + max(int(y.max()) for y in label_split if y is not None and y.size)

    info: dict[str, Any] = {
        "name": str(name),
        "view": None,
        "shape": [int(d) for d in shape],
        "levels": None,
        "low": None,
        "high": None,
        "num_classes": num_classes,
        "source": "arrays",
    }
    if all(_is_binary(a) for a in present):
        info.update(support="binary", low=0.0, high=1.0)
    elif arrays["train"].dtype.kind == "i":
        lo = min(int(a.min()) for a in present)
        if lo < 0:
            raise DataError(
                f"integer data has negative values (min {lo}); categorical data must be coded 0..K-1: "
                "subtract the minimum, or pass a float array if the values are real numbers"
            )
        levels = 1 + max(int(a.max()) for a in present)
        info.update(support="categorical", levels=levels, low=0.0, high=float(levels - 1))
    else:
        info["support"] = "real"
    if meta:
        info.update(dict(meta))
    _jsonable(info, "meta")
    return Dataset(arrays["train"], arrays["val"], arrays["test"], label_split, info)
