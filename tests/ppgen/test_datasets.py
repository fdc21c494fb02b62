"""Tests of ppgen.datasets: built-in digits, 2-D toys, from_arrays, and the file readers."""

from __future__ import annotations

import gzip
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from ppgen import datasets
from ppgen.errors import ConfigError, DataError

META_KEYS = {"name", "view", "shape", "support", "levels", "low", "high", "num_classes", "source"}
TOYS = ["moons", "swiss_roll", "ring", "grid", "pinwheel"]


def check_meta(ds: datasets.Dataset) -> None:
    assert META_KEYS <= set(ds.meta)
    json.dumps(ds.meta)  # plain python values only
    assert ds.meta["shape"] == list(ds.shape)


# ------------------------------------------------------------------ digits


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    return load_digits()


def test_digits_splits_shapes_and_labels(sk_digits):
    ds = datasets.load("digits")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1000, 350, 447)
    assert ds.shape == (8, 8) and ds.data_dim == 64
    assert ds.train.shape == (1000, 8, 8) and ds.test.shape == (447, 8, 8)
    labels = np.concatenate(ds.labels)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, sk_digits.target)
    np.testing.assert_array_equal(ds.labels.val, sk_digits.target[1000:1350])
    assert ds.meta["name"] == "digits" and ds.meta["view"] == "unit"
    assert ds.meta["num_classes"] == 10 and ds.meta["source"] == "scikit-learn"
    check_meta(ds)
    assert ds.flat("test").shape == (447, 64)


def test_digits_views(sk_digits):
    raw = sk_digits.images
    unit = datasets.load("digits", view="unit")
    assert unit.train.dtype == np.float32
    assert unit.train.min() == 0.0 and unit.train.max() == 1.0
    np.testing.assert_allclose(unit.train, raw[:1000] / 16, rtol=1e-6)
    assert (unit.meta["support"], unit.meta["low"], unit.meta["high"]) == ("real", 0.0, 1.0)

    sym = datasets.load("digits", view="symmetric")
    assert sym.train.dtype == np.float32
    assert sym.train.min() == -1.0 and sym.train.max() == 1.0
    np.testing.assert_allclose(sym.test, raw[1350:] / 8 - 1, atol=1e-6)
    assert (sym.meta["low"], sym.meta["high"]) == (-1.0, 1.0)

    cat = datasets.load("digits", view="categorical")
    assert cat.train.dtype == np.int64
    np.testing.assert_array_equal(cat.val, raw[1000:1350].astype(np.int64))
    assert cat.meta["support"] == "categorical" and cat.meta["levels"] == 17
    assert cat.train.min() >= 0 and cat.train.max() <= 16

    binary = datasets.load("digits", view="binary")
    assert binary.train.dtype == np.float32
    assert set(np.unique(np.concatenate([binary.train, binary.val, binary.test]))) == {0.0, 1.0}
    np.testing.assert_array_equal(binary.train, (raw[:1000] > 8).astype(np.float32))
    assert binary.meta["support"] == "binary"


def test_digits_bad_options():
    with pytest.raises(ConfigError, match=r"'blurry'.*'unit'.*'symmetric'.*'binary'.*'categorical'"):
        datasets.load("digits", view="blurry")
    with pytest.raises(ConfigError, match="path"):
        datasets.load("digits", path="/tmp")
    with pytest.raises(ConfigError, match=r"n=5"):
        datasets.load("digits", n=5)


# ------------------------------------------------------------------ 2-D toys


@pytest.mark.parametrize("name", TOYS)
def test_toy_shapes_and_determinism(name):
    a = datasets.load(name, seed=3, n=1000)
    b = datasets.load(name, seed=3, n=1000)
    c = datasets.load(name, seed=4, n=1000)
    assert a.train.shape == (800, 2) and a.val.shape == (100, 2) and a.test.shape == (100, 2)
    assert a.train.dtype == np.float32
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.allclose(a.train, c.train)
    assert a.meta["support"] == "real" and a.meta["view"] is None and a.meta["source"] == "generated"
    check_meta(a)
    assert np.isfinite(a.train).all()


def test_toy_defaults_fractions_and_aliases():
    ds = datasets.load("moons")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 3000
    assert ds.labels is None and datasets.load("swiss_roll").labels is None
    dashed = datasets.load("swiss-roll", seed=2, n=100)
    np.testing.assert_array_equal(dashed.train, datasets.load("swiss_roll", seed=2, n=100).train)
    assert dashed.meta["name"] == "swiss_roll"
    no_val = datasets.load("ring", n=100, val_fraction=0.0, test_fraction=0.25)
    assert no_val.val is None and no_val.labels.val is None and len(no_val.test) == 25
    with pytest.raises(DataError, match="no 'val' split"):
        no_val.split("val")
    with pytest.raises(ConfigError, match="leave no training"):
        datasets.load("ring", n=2, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ConfigError, match=r"val_fraction=1\.5"):
        datasets.load("ring", val_fraction=1.5)
    with pytest.raises(ConfigError, match=r"view='unit'"):
        datasets.load("moons", view="unit")
    with pytest.raises(ConfigError, match=r"noise=-1"):
        datasets.load("moons", noise=-1.0)
    with pytest.raises(ConfigError, match=r"n=0"):
        datasets.load("grid", n=0)


def test_swiss_roll_formula_without_noise():
    x = datasets.load("swiss_roll", n=2000, noise=0.0).train.astype(np.float64)
    radius = np.hypot(x[:, 0], x[:, 1])
    assert radius.max() <= 1.0 + 1e-6 and radius.min() >= 1.0 / 3 - 1e-6
    # the angle equals the (scaled) radius: t = 4.5 pi r, and (cos t, sin t) points along x
    t = 4.5 * np.pi * radius
    np.testing.assert_allclose(np.cos(t) * radius, x[:, 0], atol=1e-5)


def test_moons_without_noise_lie_on_the_half_circles():
    x = datasets.load("moons", n=2000, noise=0.0).train.astype(np.float64)
    upper = np.hypot(x[:, 0], x[:, 1])
    lower = np.hypot(x[:, 0] - 1.0, x[:, 1] - 0.5)
    assert np.all(np.isclose(upper, 1.0, atol=1e-5) | np.isclose(lower, 1.0, atol=1e-5))


def test_ring_modes_and_std():
    ds = datasets.load("ring", n=8000, seed=1)
    modes = np.array(ds.meta["modes"])
    assert modes.shape == (8, 2)
    np.testing.assert_allclose(np.hypot(modes[:, 0], modes[:, 1]), 1.0)
    np.testing.assert_allclose(np.arctan2(modes[:, 1], modes[:, 0]) % (2 * np.pi), 2 * np.pi * np.arange(8) / 8, atol=1e-12)
    assert ds.meta["mode_std"] == 0.02 and ds.meta["num_classes"] == 8
    x, k = ds.train, ds.labels.train
    resid = x - modes[k]
    assert abs(resid.std() - 0.02) < 0.002
    assert np.all(np.argmin(((x[:, None, :] - modes[None]) ** 2).sum(-1), axis=1) == k)
    counts = np.bincount(k, minlength=8)
    assert counts.min() > 0.8 * counts.mean()  # equal weights
    wide = datasets.load("ring", n=4000, noise=0.1)
    assert abs((wide.train - modes[wide.labels.train]).std() - 0.1) < 0.01


def test_grid_modes_and_std():
    ds = datasets.load("grid", n=10000, seed=5)
    modes = np.array(ds.meta["modes"])
    assert modes.shape == (25, 2)
    assert {tuple(m) for m in modes} == {(i, j) for i in range(-2, 3) for j in range(-2, 3)}
    assert ds.meta["mode_std"] == 0.05 and ds.meta["num_classes"] == 25
    assert set(np.unique(ds.labels.train)) == set(range(25))
    assert abs((ds.train - modes[ds.labels.train]).std() - 0.05) < 0.004


def test_pinwheel_arms():
    ds = datasets.load("pinwheel", n=5000)
    assert ds.meta["num_classes"] == 5 and set(np.unique(ds.labels.train)) == set(range(5))
    means = np.stack([ds.train[ds.labels.train == k].mean(0) for k in range(5)])
    angles = np.sort(np.arctan2(means[:, 1], means[:, 0]) % (2 * np.pi))
    np.testing.assert_allclose(np.diff(angles), 2 * np.pi / 5, atol=0.1)  # arms evenly spread


# ------------------------------------------------------------------ from_arrays, check_finite


def test_from_arrays_conversion_and_inference():
    rng = np.random.default_rng(0)
    ds = datasets.from_arrays(rng.normal(size=(10, 3)), rng.normal(size=(4, 3)), labels=np.arange(10) % 3)
    assert ds.train.dtype == np.float64 and ds.meta["support"] == "real"  # float64 kept
    assert ds.meta["num_classes"] == 3 and ds.labels.val is None and ds.test is None
    assert ds.meta["name"] == "arrays" and ds.meta["low"] is None
    check_meta(ds)

    b = datasets.from_arrays([[0, 1], [1, 1]], name="bits")
    assert b.meta["support"] == "binary" and b.train.dtype == np.int64 and b.meta["name"] == "bits"
    bf = datasets.from_arrays(np.array([[0.0, 1.0]]))
    assert bf.meta["support"] == "binary" and bf.train.dtype == np.float64

    c = datasets.from_arrays(np.array([[0, 5], [2, 3]], dtype=np.uint8), np.array([[6, 0]], dtype=np.int16))
    assert c.train.dtype == np.int64 and c.meta["support"] == "categorical" and c.meta["levels"] == 7

    m = datasets.from_arrays(np.ones((2, 1)) * 0.5, meta={"source": "mine", "low": 0.0})
    assert m.meta["source"] == "mine" and m.meta["low"] == 0.0
    with pytest.raises(ConfigError, match="JSON"):
        datasets.from_arrays(np.ones((2, 1)), meta={"bad": object()})


def test_from_arrays_label_forms():
    x, v, t = np.zeros((4, 2)) + 0.5, np.zeros((2, 2)) + 0.5, np.zeros((3, 2)) + 0.5
    ys = (np.array([0, 1, 2, 3]), np.array([1, 1]), np.array([0, 0, 4]))
    for labels in (ys, datasets.Split(*ys), dict(zip(("train", "val", "test"), ys))):
        ds = datasets.from_arrays(x, v, t, labels)
        assert isinstance(ds.labels, datasets.Split)
        np.testing.assert_array_equal(ds.labels.test, [0, 0, 4])
        assert ds.meta["num_classes"] == 5 and ds.labels.train.dtype == np.int64
    with pytest.raises(DataError, match=r"3 labels but the split has 4 examples"):
        datasets.from_arrays(x, labels=[0, 1, 2])
    with pytest.raises(DataError, match=r"val labels has 3 labels .* 2 examples"):
        datasets.from_arrays(x, v, labels=(ys[0], [0, 1, 2]))
    with pytest.raises(DataError, match="no test data"):
        datasets.from_arrays(x, labels={"train": ys[0], "test": ys[2]})
    with pytest.raises(DataError, match=r"negative labels \(min -1\)"):
        datasets.from_arrays(x, labels=[0, -1, 0, 0])


def test_from_arrays_validation_errors():
    good = np.zeros((3, 2), np.float32) + 0.5
    bad = good.copy()
    bad[1, 1] = np.nan
    with pytest.raises(DataError, match=r"train split has 1 NaN and 0 inf .* index \(1, 1\).*remove or impute"):
        datasets.from_arrays(bad)
    inf = good.copy()
    inf[2, 0] = -np.inf
    with pytest.raises(DataError, match=r"test split has 0 NaN and 1 inf .* index \(2, 0\)"):
        datasets.from_arrays(good, test=inf)
    with pytest.raises(DataError, match=re.escape("val split has per-example shape (3,) but train has (2,)")):
        datasets.from_arrays(good, np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"flat vector of shape \(5,\).*reshape\(-1, 1\)"):
        datasets.from_arrays(np.arange(5.0))
    with pytest.raises(DataError, match="no examples"):
        datasets.from_arrays(np.zeros((0, 2)))
    with pytest.raises(DataError, match="dtype int64 but train has float32"):
        datasets.from_arrays(good, np.zeros((1, 2), int))
    with pytest.raises(DataError, match=r"negative values \(min -2\)"):
        datasets.from_arrays(np.array([[1, -2]]))
    with pytest.raises(DataError, match="too large for float32"):
        datasets.from_arrays(np.array([[1e300]], dtype=np.longdouble))
    assert datasets.from_arrays(np.array([[1e300]])).train.dtype == np.float64  # float64 kept as it is
    with pytest.raises(DataError, match="rectangular"):
        datasets.from_arrays([[1.0, 2.0], [3.0]])
    with pytest.raises(DataError, match="object array"):
        datasets.from_arrays(np.array([[None, 1]], dtype=object))


def test_check_finite():
    x = np.ones((4, 3))
    assert datasets.check_finite(x) is x
    assert isinstance(datasets.check_finite([[1, 2]]), np.ndarray)
    x[3, 2] = np.inf
    x[2, 0] = np.nan
    x[3, 0] = np.nan
    with pytest.raises(DataError, match=r"pixels has 2 NaN and 1 inf entries \(3 of 12\).*index \(2, 0\).*remove or impute"):
        datasets.check_finite(x, what="pixels")
    with pytest.raises(DataError, match="not numeric"):
        datasets.check_finite(np.array(["a"]))


def test_dataset_accessors():
    ds = datasets.from_arrays(np.zeros((5, 2, 3)) + 0.5, np.zeros((2, 2, 3)) + 0.5)
    assert ds.split("val") is ds.val
    assert ds.flat("val").shape == (2, 6)
    with pytest.raises(DataError, match="no 'test' split"):
        ds.flat("test")
    with pytest.raises(ConfigError, match="'training'"):
        ds.split("training")
    with pytest.raises(Exception):
        ds.train = None  # frozen
    assert "shape=(2, 3)" in repr(ds)


# ------------------------------------------------------------------ IDX (MNIST format)


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def write_idx_set(folder: Path, train_x, train_y, test_x=None, test_y=None, gz=False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train-images-idx3-ubyte": train_x, "train-labels-idx1-ubyte": train_y}
    if test_x is not None:
        files.update({"t10k-images-idx3-ubyte": test_x, "t10k-labels-idx1-ubyte": test_y})
    for stem, arr in files.items():
        data = idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


@pytest.fixture
def tiny_idx():
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, size=(12, 5, 4), dtype=np.uint8),
        rng.integers(0, 10, size=12, dtype=np.uint8),
        rng.integers(0, 256, size=(3, 5, 4), dtype=np.uint8),
        rng.integers(0, 10, size=3, dtype=np.uint8),
    )


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, tiny_idx, gz):
    tx, ty, sx, sy = tiny_idx
    write_idx_set(tmp_path, tx, ty, sx, sy, gz=gz)
    ds = datasets.load("mnist", path=tmp_path, view="categorical")
    # 12 training images, val_fraction 0.1 -> the last round(1.2) = 1 is val
    assert (len(ds.train), len(ds.val), len(ds.test)) == (11, 1, 3)
    assert ds.shape == (5, 4) and ds.train.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([ds.train, ds.val]), tx)
    np.testing.assert_array_equal(ds.test, sx)
    np.testing.assert_array_equal(np.concatenate([ds.labels.train, ds.labels.val]), ty)
    np.testing.assert_array_equal(ds.labels.test, sy)
    assert ds.meta["levels"] == 256 and ds.meta["num_classes"] == 10
    assert ds.meta["source"] == str(tmp_path)
    check_meta(ds)

    unit = datasets.load("mnist", path=str(tmp_path))
    assert unit.meta["view"] == "unit" and unit.train.dtype == np.float32
    np.testing.assert_array_equal(unit.test, sx.astype(np.float32) / np.float32(255))
    sym = datasets.load("mnist", path=tmp_path, view="symmetric")
    np.testing.assert_allclose(sym.test, sx / 127.5 - 1, atol=1e-6)
    binary = datasets.load("fashion_mnist", path=tmp_path, view="binary", val_fraction=0.25)
    assert binary.meta["name"] == "fashion-mnist" and len(binary.val) == 3
    np.testing.assert_array_equal(binary.test, (sx > 127).astype(np.float32))


def test_idx_large_train_keeps_last_10000_for_val(tmp_path):
    x = np.arange(10_005 * 2, dtype=np.uint64).astype(np.uint8).reshape(10_005, 1, 2)
    write_idx_set(tmp_path, x, np.zeros(10_005, np.uint8))
    ds = datasets.load("mnist", path=tmp_path, view="categorical")
    assert (len(ds.train), len(ds.val)) == (5, 10_000) and ds.test is None
    np.testing.assert_array_equal(ds.val, x[5:])


def test_idx_bad_files(tmp_path, tiny_idx):
    tx, ty, sx, sy = tiny_idx
    write_idx_set(tmp_path, tx, ty, sx, sy)
    images = tmp_path / "train-images-idx3-ubyte"
    good = images.read_bytes()

    images.write_bytes(good[:-7])
    with pytest.raises(DataError, match=rf"truncated: expected {len(good)} bytes .* found {len(good) - 7}"):
        datasets.load("mnist", path=tmp_path)

    images.write_bytes(good + b"\0")
    with pytest.raises(DataError, match="1 bytes beyond"):
        datasets.load("mnist", path=tmp_path)

    images.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(DataError, match=r"not an IDX file.*0x12 0x34"):
        datasets.load("mnist", path=tmp_path)

    images.write_bytes(idx_bytes(tx, code=0x0D))
    with pytest.raises(DataError, match="dtype code 0x0d"):
        datasets.load("mnist", path=tmp_path)

    images.write_bytes(idx_bytes(ty))  # a labels file where images should be
    with pytest.raises(DataError, match="has 1 dimensions but an image file must have 3"):
        datasets.load("mnist", path=tmp_path)

    images.write_bytes(idx_bytes(tx[:10]))
    with pytest.raises(DataError, match="10 images but .* 12 labels"):
        datasets.load("mnist", path=tmp_path)

    images.unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(DataError, match="corrupt or incomplete gzip"):
        datasets.load("mnist", path=tmp_path)


def test_idx_missing_paths(tmp_path, tiny_idx):
    missing = tmp_path / "nowhere" / "mnist"
    with pytest.raises(DataError, match=re.escape(f"no such file or directory: '{missing}'") + ".*train-images-idx3-ubyte"):
        datasets.load("mnist", path=missing)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"has no train-images-idx3-ubyte\[\.gz\].*notes\.txt"):
        datasets.load("mnist", path=tmp_path)
    with pytest.raises(DataError, match="is a file, not a folder"):
        datasets.load("mnist", path=tmp_path / "notes.txt")
    tx, ty, sx, _ = tiny_idx
    write_idx_set(tmp_path, tx, ty)
    ds = datasets.load("mnist", path=tmp_path)
    assert ds.test is None and ds.labels.test is None
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(sx))
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte"):
        datasets.load("mnist", path=tmp_path)
    with pytest.raises(ConfigError, match="path="):
        datasets.load("mnist")


# ------------------------------------------------------------------ CIFAR-10 (binary)


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(labels), -1)], axis=1)
    return records.astype(np.uint8).tobytes()


def cifar_images(n: int, offset: int) -> np.ndarray:
    """Images whose red plane is 10 + i, green 100 + i, blue 200 + i (i = image index)."""
    imgs = np.empty((n, 3, 32, 32), np.uint8)
    for c, base in enumerate((10, 100, 200)):
        imgs[:, c] = (base + offset + np.arange(n))[:, None, None]
    imgs[:, 0, 0, 1] = 7  # row-major order check: row 0, column 1 of the red plane
    return imgs


def test_cifar_round_trip(tmp_path):
    b1, b2, tb = cifar_images(3, 0), cifar_images(2, 3), cifar_images(2, 20)
    (tmp_path / "data_batch_1.bin").write_bytes(cifar_bytes(b1, np.array([0, 1, 2])))
    (tmp_path / "data_batch_2.bin").write_bytes(cifar_bytes(b2, np.array([3, 4])))
    (tmp_path / "test_batch.bin").write_bytes(cifar_bytes(tb, np.array([9, 8])))
    ds = datasets.load("cifar10", path=tmp_path, view="categorical", val_fraction=0.2)
    assert ds.shape == (3, 32, 32) and (len(ds.train), len(ds.val), len(ds.test)) == (4, 1, 2)
    both = np.concatenate([ds.train, ds.val])
    np.testing.assert_array_equal(both, np.concatenate([b1, b2]))
    assert both[4, 0, 5, 5] == 14 and both[4, 1, 5, 5] == 104 and both[4, 2, 5, 5] == 204  # R, G, B
    assert both[0, 0, 0, 1] == 7 and both[0, 0, 1, 0] == 10
    np.testing.assert_array_equal(ds.test, tb)
    np.testing.assert_array_equal(ds.labels.train, [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.labels.test, [9, 8])
    assert ds.meta["files"] == ["data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"]
    check_meta(ds)
    unit = datasets.load("cifar10", path=tmp_path)
    np.testing.assert_array_equal(unit.test, tb.astype(np.float32) / np.float32(255))

    nested = tmp_path / "parent"
    nested.mkdir()
    (tmp_path / "data_batch_1.bin").rename(nested / "x")
    (nested / "cifar-10-batches-bin").mkdir()
    (nested / "x").rename(nested / "cifar-10-batches-bin" / "data_batch_1.bin")
    assert len(datasets.load("cifar10", path=nested, view="binary").train) == 3


def test_cifar_bad_files(tmp_path):
    with pytest.raises(DataError, match=r"none of data_batch_1\.bin.*data_batch_5\.bin"):
        datasets.load("cifar10", path=tmp_path)
    good = cifar_bytes(cifar_images(2, 0), np.array([1, 2]))
    (tmp_path / "data_batch_1.bin").write_bytes(good[:-1])
    with pytest.raises(DataError, match=rf"{len(good) - 1} bytes, not a positive multiple of 3073.*truncated"):
        datasets.load("cifar10", path=tmp_path)
    (tmp_path / "data_batch_1.bin").write_bytes(cifar_bytes(cifar_images(2, 0), np.array([1, 57])))
    with pytest.raises(DataError, match="label byte 57 in record 1"):
        datasets.load("cifar10", path=tmp_path)
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "gone"))):
        datasets.load("cifar10", path=tmp_path / "gone")


# ------------------------------------------------------------------ .npz


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x, v, t = rng.normal(size=(6, 2, 2)), rng.normal(size=(2, 2, 2)), rng.normal(size=(3, 2, 2))
    y = np.array([0, 1, 2, 0, 1, 2])
    file = tmp_path / "mine.npz"
    np.savez(file, train=x, val=v, test=t, y_train=y, y_test=np.array([1, 1, 0]))
    ds = datasets.load("npz", path=file)
    np.testing.assert_array_equal(ds.train, x)  # float64 kept
    np.testing.assert_array_equal(ds.test, t)
    np.testing.assert_array_equal(ds.labels.train, y)
    assert ds.labels.val is None and ds.meta["num_classes"] == 3
    assert ds.meta["source"] == str(file) and ds.meta["support"] == "real"
    check_meta(ds)
    # a path as the name, as str or PathLike
    np.testing.assert_array_equal(datasets.load(str(file)).val, v)
    np.testing.assert_array_equal(datasets.load(file).val, v)
    # aliases
    np.savez(tmp_path / "alias.npz", x=np.array([[0, 1], [1, 1]]), labels=np.array([3, 4]))
    a = datasets.load(tmp_path / "alias.npz")
    assert a.meta["support"] == "binary" and a.meta["num_classes"] == 5


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "nokey.npz", features=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"unrecognised key\(s\) \['features'\]"):
        datasets.load(tmp_path / "nokey.npz")
    np.savez(tmp_path / "onlyval.npz", val=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"no training data: keys found \['val'\]"):
        datasets.load(tmp_path / "onlyval.npz")
    np.savez(tmp_path / "obj.npz", train=np.array([np.zeros(2), np.zeros(3)], dtype=object))
    with pytest.raises(DataError, match="pickled object arrays are not accepted"):
        datasets.load(tmp_path / "obj.npz")
    np.savez(tmp_path / "both.npz", train=np.zeros((2, 2)), x=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"\['train', 'x'\]"):
        datasets.load(tmp_path / "both.npz")
    np.savez(tmp_path / "nan.npz", train=np.array([[0.0, np.nan]]))
    with pytest.raises(DataError, match=r"nan\.npz.*1 NaN"):
        datasets.load(tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="junk.npz"):
        datasets.load(tmp_path / "junk.npz")
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled"):
        datasets.load("npz", path=tmp_path / "pickled.npy")
    missing = tmp_path / "absent.npz"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        datasets.load(missing)
    with pytest.raises(ConfigError, match="path="):
        datasets.load("npz")
    with pytest.raises(ConfigError, match="both a file"):
        datasets.load(str(missing), path=missing)
    with pytest.raises(ConfigError, match="view='unit'"):
        datasets.load(tmp_path / "onlyval.npz", view="unit")


# ------------------------------------------------------------------ names and dispatch


def test_names_and_unknown():
    got = datasets.names()
    for name in ["digits", *TOYS, "swiss-roll", "mnist", "fashion-mnist", "fashion_mnist", "cifar10", "npz"]:
        assert name in got
    with pytest.raises(ConfigError, match=r"unknown dataset 'imagenet'.*'digits'.*'mnist'"):
        datasets.load("imagenet")
    assert datasets.load("Digits").meta["name"] == "digits"
    assert set(datasets.__all__) == {"Dataset", "Split", "load", "from_arrays", "names", "check_finite"}


def test_mnist_labels_outside_0_to_9_are_refused(tmp_path, tiny_idx):
    tx, ty, sx, sy = tiny_idx
    bad = ty.copy()
    bad[4] = 200
    write_idx_set(tmp_path, tx, bad, sx, sy)
    with pytest.raises(DataError, match="training labels .* hold 200 at position 4; .* classes 0..9"):
        datasets.load("mnist", path=tmp_path)


def test_float64_data_keeps_its_precision():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(20, 3))
    ds = datasets.from_arrays(train, val=rng.normal(size=(5, 3)).astype(np.float32))
    assert ds.train.dtype == np.float64 and ds.val.dtype == np.float64
    np.testing.assert_array_equal(ds.train, train)
    assert datasets.from_arrays(train.astype(np.float32)).train.dtype == np.float32
