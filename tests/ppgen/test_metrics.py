"""Tests of ppgen.metrics: the shipped digits classifier (NumPy inference), Fréchet distances, conditional accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from ppgen import datasets
from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.metrics import (
    ConditionalAccuracy,
    DigitsClassifier,
    conditional_accuracy,
    digits_classifier,
    digits_frechet_distance,
    frechet_distance,
    view_to_scale,
)
from ppgen.metrics import classifier as clf_mod

TRAIN_HINT = "python -m ppgen.metrics._train_classifier"


@pytest.fixture(scope="module")
def ds():
    return datasets.load("digits", view="categorical")


@pytest.fixture(scope="module")
def clf():
    return digits_classifier()


@pytest.fixture(scope="module")
def test_features(ds, clf):
    return clf.features(ds.test)


def random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (0.0 if rank else 0.1 * np.eye(d))


# ------------------------------------------------------------------ the shipped classifier


def test_shipped_classifier_test_accuracy(ds, clf):
    assert clf.path == clf_mod.WEIGHTS_PATH and clf.path.is_file()
    acc = float(np.mean(clf.predict(ds.test) == ds.labels.test))
    assert acc >= 0.97
    # the metadata records the training run and agrees with what the NumPy inference measures
    assert clf.meta["seed"] == 0 and clf.meta["arch"]["hidden"] == clf.num_features == 64
    assert clf.meta["accuracy"]["test"] == pytest.approx(acc, abs=1e-4)
    assert clf.meta["accuracy"]["val"] >= 0.97 and clf.meta["accuracy"]["train"] >= 0.97
    assert "x / 16" in clf.meta["input"]
    assert digits_classifier() is clf


def test_outputs_shapes_and_probabilities(ds, clf):
    x = ds.test[:20]
    p = clf.predict_proba(x)
    assert p.shape == (20, 10) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert (p >= 0).all()
    np.testing.assert_array_equal(clf.predict(x), p.argmax(axis=1))
    f = clf.features(x)
    assert f.shape == (20, 64) and f.dtype == np.float64 and (f >= 0).all()  # after the ReLU
    # logits are the last layer applied to the features
    w = clf.weights
    np.testing.assert_allclose(clf.logits(x), f @ w["fc2.weight"].T.astype(np.float64) + w["fc2.bias"], atol=1e-4)


def test_chunking_and_flat_input_give_the_same_results(ds):
    x = ds.test[:37]
    whole = DigitsClassifier()
    chunked = DigitsClassifier(chunk_size=5)
    # equal up to float32 rounding (BLAS may block a matrix product differently for other sizes)
    np.testing.assert_allclose(whole.features(x), chunked.features(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whole.predict_proba(x.reshape(37, 64)), chunked.predict_proba(x), atol=1e-6)
    np.testing.assert_array_equal(whole.predict(x.reshape(37, 64)), chunked.predict(x))
    assert whole.features(x[:0]).shape == (0, 64)


def test_four_views_give_identical_predictions(ds, clf):
    base = clf.predict(ds.test)
    for view in ("unit", "symmetric"):
        x = datasets.load("digits", view=view).test
        scale = view_to_scale(view)
        np.testing.assert_array_equal(clf.predict(x, scale=scale), base)
        np.testing.assert_allclose(clf.features(x, scale=scale), clf.features(ds.test), rtol=1e-5, atol=1e-5)
    binary = datasets.load("digits", view="binary").test
    same_images = (ds.test > 8) * 16  # the binary view is x > 8; on the counts scale that is 0 or 16
    np.testing.assert_array_equal(clf.predict(binary, scale="binary"), clf.predict(same_images))
    assert view_to_scale("categorical") == "counts"
    # binarised digits are still mostly recognised (the classifier saw binarised images in training)
    assert np.mean(clf.predict(binary, scale="binary") == ds.labels.test) >= 0.9


def test_inference_imports_no_torch_or_jax():
    code = (
        "import sys, numpy as np\n"
        "from ppgen.metrics import digits_classifier\n"
        "digits_classifier().predict(np.full((3, 8, 8), 8.0))\n"
        "print([m for m in ('torch', 'jax', 'pyro', 'numpyro') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("x", "scale", "match"),
    [
        (np.zeros((8, 8)), "counts", r"shape \(8, 8\).*x\[None\]"),
        (np.zeros((64,)), "counts", r"shape \(64,\)"),
        (np.zeros((3, 7, 7)), "counts", r"shape \(3, 7, 7\).*\(N, 8, 8\) or \(N, 64\)"),
        (np.zeros((3, 63)), "counts", r"shape \(3, 63\)"),
        (np.full((2, 8, 8), "a"), "counts", r"dtype <U1"),
        (np.full((2, 8, 8), 17.0), "counts", r"\[17, 17\].*scale='counts'"),
        (np.full((2, 8, 8), -1.0), "counts", r"\[-1, -1\].*pass scale='symmetric'"),
        (np.full((2, 8, 8), 8.0), "unit", r"\[8, 8\].*\[0, 1\] of scale='unit'.*pass scale='counts'"),
        (np.full((2, 8, 8), -1.5), "symmetric", r"\[-1.5, -1.5\].*scale='symmetric'"),
        (np.full((2, 8, 8), 2.0), "binary", r"scale='binary'"),
    ],
)
def test_bad_images_raise_data_error(clf, x, scale, match):
    with pytest.raises(DataError, match=match):
        clf.predict(x, scale=scale)


def test_non_finite_images_name_the_image(clf, ds):
    x = ds.test[:5].astype(np.float64)
    x[3, 2, 2] = np.nan
    with pytest.raises(DataError, match=r"1 non-finite.*image 3"):
        clf.features(x)
    x[3, 2, 2] = np.inf
    with pytest.raises(DataError, match="non-finite"):
        digits_frechet_distance(x, ds.test)


def test_values_within_tolerance_are_clipped_not_rejected(clf, ds):
    x = ds.test[:10].astype(np.float64)
    np.testing.assert_array_equal(clf.predict(x + 1e-4 * (x == 16)), clf.predict(x))
    with pytest.raises(DataError):
        clf.predict(x + 0.1 * (x == 16))


@pytest.mark.parametrize("scale", ["bytes", "categorical", None, 16])
def test_unknown_scale_raises_config_error(clf, ds, scale):
    with pytest.raises(ConfigError, match=r"unknown pixel scale.*'counts', 'unit', 'symmetric', 'binary'"):
        clf.predict(ds.test[:2], scale=scale)
    with pytest.raises(ConfigError):
        conditional_accuracy(ds.test[:2], ds.labels.test[:2], scale=scale)


def test_unit_images_on_the_counts_scale_warn(clf, ds):
    with pytest.warns(UserWarning, match="scale='unit'"):
        clf.predict(ds.test[:4] / 16.0)


def test_bad_chunk_size(clf):
    with pytest.raises(ConfigError, match="chunk_size=0"):
        DigitsClassifier(chunk_size=0)


# ------------------------------------------------------------------ the weights file


def test_missing_weights_file_names_path_and_fix(tmp_path, monkeypatch):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(CheckpointError, match="nowhere.safetensors.*do not exist") as e:
        DigitsClassifier(path)
    assert TRAIN_HINT in str(e.value)
    monkeypatch.setattr(clf_mod, "WEIGHTS_PATH", path)
    with pytest.raises(CheckpointError, match=TRAIN_HINT):
        digits_classifier()
    with pytest.raises(CheckpointError, match=TRAIN_HINT):
        conditional_accuracy(np.zeros((1, 8, 8)), [0])


def test_foreign_weights_files_are_rejected(tmp_path, clf):
    from safetensors.numpy import save_file

    good = {k: v.copy() for k, v in clf.weights.items()}
    meta = {"format": clf_mod.FORMAT, "ppgen": json.dumps({"seed": 0})}

    other = tmp_path / "other.safetensors"  # some other model's file
    save_file({"encoder.weight": np.zeros((3, 3), np.float32)}, str(other))
    with pytest.raises(CheckpointError, match=f"not a ppgen digits classifier.*{TRAIN_HINT}"):
        DigitsClassifier(other)

    renamed = tmp_path / "renamed.safetensors"
    save_file({("dense1.weight" if k == "fc1.weight" else k): v for k, v in good.items()}, str(renamed), meta)
    with pytest.raises(CheckpointError, match=r"missing \['fc1.weight'\], unexpected \['dense1.weight'\]"):
        DigitsClassifier(renamed)

    resized = tmp_path / "resized.safetensors"
    save_file({**good, "fc2.weight": np.zeros((10, 32), np.float32)}, str(resized), meta)
    with pytest.raises(CheckpointError, match=r"fc2.weight: \(10, 32\) instead of \(10, 64\)") as e:
        DigitsClassifier(resized)
    assert TRAIN_HINT in str(e.value) and "resized.safetensors" in str(e.value)

    nan = tmp_path / "nan.safetensors"
    save_file({**good, "fc2.bias": np.full(10, np.nan, np.float32)}, str(nan), meta)
    with pytest.raises(CheckpointError, match="'fc2.bias'.*not finite"):
        DigitsClassifier(nan)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError, match=f"cannot read.*garbage.safetensors.*{TRAIN_HINT}"):
        DigitsClassifier(garbage)

    copy = tmp_path / "copy.safetensors"  # the same tensors under the right names load and agree
    save_file(good, str(copy), meta)
    x = np.random.default_rng(0).integers(0, 17, size=(6, 8, 8))
    np.testing.assert_array_equal(DigitsClassifier(copy).logits(x), clf.logits(x))


def test_shipped_file_is_package_data():
    assert clf_mod.WEIGHTS_PATH.parent == Path(clf_mod.__file__).parent
    with open(Path(__file__).parents[2] / "pyproject.toml", "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    assert "ppgen.metrics" in setuptools["packages"]
    assert "*.safetensors" in setuptools["package-data"]["ppgen.metrics"]


# ------------------------------------------------------------------ frechet_distance


@pytest.mark.parametrize(("m1", "s1", "m2", "s2"), [(0.0, 1.0, 0.0, 1.0), (0.0, 1.0, 3.0, 2.0), (-1.5, 0.3, 2.0, 4.0)])
def test_frechet_1d_is_mean_and_std_gap(m1, s1, m2, s2):
    want = (m1 - m2) ** 2 + (s1 - s2) ** 2
    assert frechet_distance(m1, s1**2, m2, s2**2) == pytest.approx(want, abs=1e-12)
    assert frechet_distance([m1], [[s1**2]], [m2], [[s2**2]]) == pytest.approx(want, abs=1e-12)


def test_frechet_diagonal_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 5.0, 6), rng.uniform(0.0, 5.0, 6)
    b[2] = 0.0  # a degenerate direction
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(want, rel=1e-12)


def test_frechet_matches_scipy_sqrtm_on_random_spd():
    rng = np.random.default_rng(2)
    for d in (2, 7, 20):
        c1, c2 = random_spd(rng, d), random_spd(rng, d)
        m1, m2 = rng.normal(size=d), rng.normal(size=d)
        want = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2) - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2)).real
        got = frechet_distance(m1, c1, m2, c2)
        assert got == pytest.approx(want, rel=1e-9)
        assert frechet_distance(m2, c2, m1, c1) == pytest.approx(got, rel=1e-9)  # symmetric
        # invariant to a common rotation and translation
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        t = rng.normal(size=d)
        assert frechet_distance(q @ m1 + t, q @ c1 @ q.T, q @ m2 + t, q @ c2 @ q.T) == pytest.approx(got, rel=1e-8)


def test_frechet_of_a_gaussian_to_itself_is_zero():
    rng = np.random.default_rng(3)
    for c in (random_spd(rng, 30), random_spd(rng, 30, rank=5)):  # full rank and singular
        m = rng.normal(size=30)
        assert abs(frechet_distance(m, c, m, c)) < 1e-10 * np.trace(c)
    assert frechet_distance(np.zeros(4), np.zeros((4, 4)), np.ones(4), np.zeros((4, 4))) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)), "same dimension"),
        ((np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), r"cov1 has shape \(3, 3\)"),
        ((np.zeros((2, 2)), np.eye(2), np.zeros(2), np.eye(2)), r"mu1 has shape \(2, 2\)"),
        ((np.zeros(2), np.eye(2), np.zeros(2), [[1.0, 0.5], [0.0, 1.0]]), "cov2 is not symmetric"),
        ((np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2)), "cov1 is not positive semi-definite"),
        ((np.array([0.0, np.nan]), np.eye(2), np.zeros(2), np.eye(2)), "NaN/inf"),
    ],
)
def test_frechet_bad_input(args, match):
    with pytest.raises(DataError, match=match):
        frechet_distance(*args)


# ------------------------------------------------------------------ digits_frechet_distance


def test_digits_frechet_self_is_zero(ds):
    assert digits_frechet_distance(ds.test, ds.test) == pytest.approx(0.0, abs=1e-8)


def test_digits_frechet_real_digits_are_close_and_noise_is_far(ds, clf, test_features):
    rng = np.random.default_rng(0)
    real = digits_frechet_distance(ds.train, ds.test)
    noise = digits_frechet_distance(rng.integers(0, 17, size=ds.test.shape), ds.test)
    shuffled = np.stack([rng.permutation(x.ravel()) for x in ds.test])  # each image's pixels shuffled
    scrambled = digits_frechet_distance(shuffled, ds.test)
    assert 0 < real < 0.2 * noise and real < 0.2 * scrambled
    # the value is the closed form applied to the feature statistics
    f = clf.features(ds.train)
    want = frechet_distance(f.mean(0), np.cov(f, rowvar=False), test_features.mean(0), np.cov(test_features.T))
    assert real == pytest.approx(want, rel=1e-12)
    # scales per set: binary samples against a counts reference
    binary = datasets.load("digits", view="binary").test[:150]
    mixed = digits_frechet_distance(binary, ds.test[:150], scale="binary", reference_scale="counts")
    assert mixed == pytest.approx(digits_frechet_distance((ds.test[:150] > 8) * 16, ds.test[:150]), rel=1e-6)


def test_digits_frechet_needs_two_images(ds):
    with pytest.raises(DataError, match=r"samples has 1 image\(s\).*at least 2"):
        digits_frechet_distance(ds.test[:1], ds.test)
    with pytest.raises(DataError, match="shape"):
        digits_frechet_distance(ds.test, ds.test[0])


# ------------------------------------------------------------------ conditional_accuracy


def test_conditional_accuracy_of_real_digits(ds):
    acc = conditional_accuracy(ds.test, ds.labels.test)
    assert isinstance(acc, ConditionalAccuracy)
    assert acc.overall >= 0.97
    assert acc.per_class.shape == (10,) and (acc.per_class >= 0.9).all()
    np.testing.assert_array_equal(acc.counts, np.bincount(ds.labels.test, minlength=10))
    # overall is the count-weighted mean of the per-class rates
    assert acc.overall == pytest.approx(float(np.sum(acc.per_class * acc.counts) / acc.counts.sum()))
    assert conditional_accuracy(ds.test, (ds.labels.test + 1) % 10).overall < 0.05
    assert conditional_accuracy(ds.test, np.roll(ds.labels.test, 1)).overall < 0.2


def test_conditional_accuracy_missing_class_is_nan(ds):
    keep = ds.labels.test != 3
    acc = conditional_accuracy(ds.test[keep] / 16.0, ds.labels.test[keep].astype(np.float64), scale="unit")
    assert np.isnan(acc.per_class[3]) and acc.counts[3] == 0
    assert np.isfinite(np.delete(acc.per_class, 3)).all()


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros(4, np.int64), r"shape \(4,\).*shape \(5,\)"),
        (np.zeros((5, 1), np.int64), r"shape \(5, 1\)"),
        (np.array([0, 1, 2, 3, 10]), r"integer digits 0..9"),
        (np.array([0, 1, 2, 3, -1]), r"integer digits 0..9"),
        (np.array([0, 1, 2, 3, 0.5]), r"dtype float64"),
    ],
)
def test_conditional_accuracy_bad_labels(ds, labels, match):
    with pytest.raises(DataError, match=match):
        conditional_accuracy(ds.test[:5], labels)


# ------------------------------------------------------------------ the training script


def test_training_script_writes_a_loadable_file(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from ppgen.metrics import _train_classifier

    threads = torch.get_num_threads()
    out = tmp_path / "sub" / "clf.safetensors"
    _train_classifier.main(["--epochs", "2", "--out", str(out)])
    assert "accuracy: train" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["clf.safetensors"]  # no temporary file left
    assert out.stat().st_mode & 0o044  # readable by others like any installed file, not mkstemp's 0600
    clf = DigitsClassifier(out)
    assert clf.meta["epochs"] == 2 and clf.meta["seed"] == 0 and set(clf.meta["accuracy"]) >= {"train", "val", "test"}
    assert clf.meta["arch"] == {k: list(v) if isinstance(v, tuple) else v for k, v in clf_mod.ARCH.items()}
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
