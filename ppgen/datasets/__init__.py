"""Datasets for deep generative models: built-in, generated, or read from files you have.

Every loader returns a `Dataset`: ``train``/``val``/``test`` arrays of shape
``(N, *shape)`` (examples keep their natural shape), integer ``labels`` per
split (or None), and a JSON-serialisable ``meta`` dict that says what the
values are (``support``, ``levels``, ``low``/``high``, ...), so that a model can
pick a matching likelihood. All data is checked to be finite.

Sources:

- ``"digits"``: scikit-learn's bundled 8x8 digits (no network).
- ``"moons"``, ``"swiss_roll"``, ``"ring"``, ``"grid"``, ``"pinwheel"``: 2-D toys
  generated from ``seed``.
- ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ``"npz"``: files you already
  have, given with ``path=``. Nothing is ever downloaded or unpickled.
- `from_arrays`: arrays you have in memory.

Example:
    >>> from ppgen import datasets
    >>> ds = datasets.load("digits", view="binary")
    >>> ds.train.shape, ds.meta["support"]
    ((1000, 8, 8), 'binary')
    >>> ring = datasets.load("ring", seed=1, n=500)
    >>> ring.flat("val").shape
    (50, 2)
"""

from __future__ import annotations

import numbers
import os
from typing import Any

from ..errors import ConfigError
from ._core import Dataset, Split, check_finite, from_arrays
from ._digits import load_digits
from ._files import CIFAR_HINT, IDX_HINT, NPZ_HINT, load_cifar10, load_idx, load_npz
from ._toys import TOYS, load_toy, split_counts
from ._views import PIXEL_VIEWS

__all__ = ["Dataset", "Split", "load", "from_arrays", "names", "check_finite"]

_FILE_SETS = {"mnist": IDX_HINT, "fashion-mnist": IDX_HINT, "cifar10": CIFAR_HINT, "npz": NPZ_HINT}
_CANONICAL = ["digits", *TOYS, *_FILE_SETS]
_ALIASES = {"swiss-roll": "swiss_roll", "fashion_mnist": "fashion-mnist"}
DEFAULT_TOY_N = 3000


def names() -> list[str]:
    """Every dataset name `load` accepts, aliases included, sorted.

    Matching in `load` also ignores case and treats ``-`` and ``_`` alike.

    Example:
        >>> "digits" in names() and "swiss-roll" in names()
        True
    """
    return sorted([*_CANONICAL, *_ALIASES])


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


_LOOKUP = {_norm(n): n for n in _CANONICAL} | {_norm(a): c for a, c in _ALIASES.items()}


def _check_fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{what}={value!r} is not a number in [0, 1); pass e.g. {what}=0.1")
    return float(value)


def load(
    name: str | os.PathLike,
    *,
    view: str | None = None,
    path: str | os.PathLike | None = None,
    seed: int = 0,
    n: int | None = None,
    noise: float | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Dataset:
    """Load a dataset by name: built in, generated from a seed, or read from your files.

    **digits** (scikit-learn's 1797 8x8 digits, values 0..16, labels 0..9). Fixed,
    unshuffled split: train ``[:1000]``, val ``[1000:1350]``, test ``[1350:]``.
    ``view``: ``"unit"`` (default; float32 x/16 in [0, 1]), ``"symmetric"``
    (float32 x/8 - 1 in [-1, 1]), ``"binary"`` (float32 1 where x > 8, i.e.
    above half the range, else 0), ``"categorical"`` (int64 codes 0..16, 17
    levels). ``seed``, ``val_fraction`` and ``test_fraction`` are not used.

    **2-D toys** ``moons``, ``swiss_roll``, ``ring`` (8 Gaussians on the unit
    circle), ``grid`` (25 Gaussians on {-2..2}^2), ``pinwheel`` (5 arms): ``n``
    points (default 3000) drawn i.i.d. with ``numpy.random.default_rng(seed)``,
    as float32 ``(N, 2)``; the first ``n - n_val - n_test`` are train, then val,
    then test, where ``n_val = round(n * val_fraction)`` and likewise for test (a
    split of size 0 is None). ``noise`` is the Gaussian noise std (default 0.05;
    0.02 for ``ring``; the tangential std for ``pinwheel``). Labels are the
    component index for ``ring``, ``grid`` and ``pinwheel`` (the arm), None for
    the others; ring and grid have ``meta["modes"]`` and ``meta["mode_std"]``.
    The exact formulas are in the docstring of ``ppgen.datasets._toys``.
    ``view`` must be None.

    **mnist**, **fashion-mnist** (``path``: a folder holding
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` and optionally
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each may be ``.gz``).
    Images keep the ``H x W`` the file declares. Val is the last 10 000
    training images when there are more than 10 000, else the last
    ``round(N * val_fraction)``; test is the t10k set (None if those files are
    absent). **cifar10** (``path``: a folder with the binary
    ``data_batch_1.bin`` ... ``data_batch_5.bin``, whichever exist, and
    ``test_batch.bin``; a parent folder holding ``cifar-10-batches-bin/`` works
    too): images ``(N, 3, 32, 32)`` (R, G, B planes); val is the last 5000
    training images when there are more, else a ``val_fraction``. Views for
    these are those of digits with 0..255 values: ``"unit"`` (x/255),
    ``"symmetric"`` (x/127.5 - 1), ``"binary"`` (x > 127), ``"categorical"``
    (int64, 256 levels). ``test_fraction`` is not used.

    **npz** (``path``: a file written by ``np.savez``): keys ``train`` (or
    ``x``, ``data``, ``x_train``), optional ``val`` (``x_val``), ``test``
    (``x_test``), ``y_train`` (or ``labels``, ``y``), ``y_val``, ``y_test``;
    other keys are refused so no split is silently dropped. Splits are taken
    as stored (``val_fraction``/``test_fraction`` not used) and checked by
    `from_arrays`, which also infers ``meta["support"]``. Object (pickled)
    arrays are refused. ``load("my/file.npz")`` (a name that ends in ``.npz``
    or is an existing path) is short for ``load("npz", path="my/file.npz")``.

    Names ignore case and ``-``/``_`` ("swiss-roll", "fashion_mnist").

    Args:
        name: a name from `names`, or a path to a ``.npz`` file.
        view: how pixel values are represented (digits, mnist, fashion-mnist,
            cifar10); must be None otherwise.
        path: the folder (mnist, fashion-mnist, cifar10) or file (npz) to read.
        seed: seed of the toy generators (a non-negative int).
        n: number of toy points (toys only).
        noise: toy noise level (toys only).
        val_fraction: fraction of examples for validation, in [0, 1).
        test_fraction: fraction of toy points for testing, in [0, 1).

    Returns:
        A `Dataset`; ``meta`` also records ``seed``/``n``/``noise`` for toys and
        the ``files`` read for mnist/fashion-mnist/cifar10.

    Raises:
        ConfigError: unknown name or view, ``path`` missing where it is needed
            or given where it is not, arguments for another kind of dataset,
            fractions outside [0, 1) or leaving no training data.
        DataError: a file is missing, truncated, corrupt or of another format.

    Example:
        >>> ds = load("moons", n=1000, seed=3)
        >>> ds.train.shape, ds.val.shape, ds.test.shape
        ((800, 2), (100, 2), (100, 2))
        >>> load("mnist", path="~/data/mnist", view="binary")  # doctest: +SKIP
    """
    if isinstance(name, os.PathLike):
        path = _only_path(name, path)
        name = "npz"
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {name!r}; pass one of {names()}")
    key = _LOOKUP.get(_norm(name))
    if key is None:
        if name.lower().endswith(".npz") or os.path.exists(name):
            key, path = "npz", _only_path(name, path)
        else:
            raise ConfigError(
                f"unknown dataset {name!r}; choose one of {names()}, or pass the path of a .npz file"
            )
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    test_fraction = _check_fraction(test_fraction, "test_fraction")

    if key in TOYS:
        return _load_toy(key, view, path, seed, n, noise, val_fraction, test_fraction)

    for arg, value in (("n", n), ("noise", noise)):
        if value is not None:
            raise ConfigError(
                f"{arg}={value!r} only applies to the generated toys {list(TOYS)}, not to {key!r}; drop it"
            )
    if key == "digits":
        if path is not None:
            raise ConfigError(
                f"'digits' comes with scikit-learn and takes no path (got path={str(path)!r}); drop path="
            )
        return load_digits(view)
    if path is None:
        raise ConfigError(f"load({key!r}) needs path=: {_FILE_SETS[key]}")
    if key == "npz":
        if view is not None:
            raise ConfigError(
                f"view={view!r} does not apply to .npz files (their arrays are used as stored); drop view="
            )
        return load_npz(path)
    if key == "cifar10":
        return load_cifar10(path, view, val_fraction)
    return load_idx(key, path, view, val_fraction)


def _only_path(name: str | os.PathLike, path: Any) -> str | os.PathLike:
    if path is not None:
        raise ConfigError(
            f"got both a file as the name ({str(name)!r}) and path={str(path)!r}; "
            f"pass either load({str(name)!r}) or load('npz', path=...)"
        )
    return name


def _load_toy(key, view, path, seed, n, noise, val_fraction, test_fraction) -> Dataset:
    if view is not None:
        raise ConfigError(f"view={view!r} does not apply to the 2-D toy {key!r} (views are {list(PIXEL_VIEWS)} "
                          "for image datasets); drop view=")
    if path is not None:
        raise ConfigError(f"{key!r} is generated and reads no file (got path={str(path)!r}); drop path=")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative int; pass e.g. seed=0")
    if n is None:
        n = DEFAULT_TOY_N
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"n={n!r} must be a positive int (the number of points); pass e.g. n={DEFAULT_TOY_N}")
    if noise is None:
        noise = TOYS[key][1]
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not 0.0 <= float(noise) < float("inf"):
        raise ConfigError(f"noise={noise!r} must be a finite number >= 0; pass e.g. noise={TOYS[key][1]}")
    n_train, _, _ = split_counts(int(n), val_fraction, test_fraction)
    if n_train < 1:
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training points "
            f"out of n={n}; lower the fractions or raise n"
        )
    return load_toy(key, seed=int(seed), n=int(n), noise=float(noise),
                    val_fraction=val_fraction, test_fraction=test_fraction)
