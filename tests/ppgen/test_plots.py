"""ppgen.plots: image grids, scatter plots and training curves written as real PNG files."""

import os

import matplotlib.image
import numpy as np
import pytest

from ppgen import plots
from ppgen.errors import ConfigError, DataError


def read_png(path):
    assert path.exists() and path.stat().st_size > 0
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 10 and image.shape[1] > 10
    assert len(np.unique(image)) > 1
    return image


def no_temporary_files(folder):
    return [p for p in os.listdir(folder) if p.endswith(".tmp")] == []


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(10, 8, 8), (7, 3, 6, 5), (5, 1, 4, 4)])
def test_image_grid_shapes(tmp_path, rng, shape):
    path = plots.image_grid(rng.uniform(size=shape), tmp_path / "grid.png", title="t")
    assert path == tmp_path / "grid.png"
    read_png(path)
    assert no_temporary_files(tmp_path)


def test_image_grid_flat_with_shape_and_square(tmp_path, rng):
    read_png(plots.image_grid(rng.normal(size=(6, 12)), tmp_path / "a.png", shape=(3, 4)))
    read_png(plots.image_grid(rng.normal(size=(6, 3 * 4 * 4)), tmp_path / "b.png", shape=(3, 4, 4)))
    read_png(plots.image_grid(rng.normal(size=(6, 16)), tmp_path / "c.png"))  # square: 4x4


def test_image_grid_creates_folders_and_replaces(tmp_path, rng):
    path = tmp_path / "deep" / "er" / "grid.png"
    plots.image_grid(rng.uniform(size=(4, 5, 5)), path)
    first = path.read_bytes()
    plots.image_grid(rng.uniform(size=(9, 5, 5)), path)
    assert path.read_bytes() != first
    assert no_temporary_files(path.parent)


def test_image_grid_refuses_bad_input(tmp_path, rng):
    with pytest.raises(DataError, match="shape="):
        plots.image_grid(rng.normal(size=(4, 10)), tmp_path / "x.png")
    with pytest.raises(DataError, match="values each"):
        plots.image_grid(rng.normal(size=(4, 10)), tmp_path / "x.png", shape=(3, 3))
    with pytest.raises(DataError, match="channels"):
        plots.image_grid(rng.normal(size=(4, 5, 6, 6)), tmp_path / "x.png")
    with pytest.raises(DataError, match="NaN"):
        plots.image_grid(np.full((2, 3, 3), np.nan), tmp_path / "x.png")
    with pytest.raises(ConfigError, match=".png"):
        plots.image_grid(rng.normal(size=(2, 3, 3)), tmp_path / "x.jpg")
    assert not (tmp_path / "x.png").exists()


def test_scatter_with_and_without_reference(tmp_path, rng):
    read_png(plots.scatter(rng.normal(size=(300, 2)), tmp_path / "s.png", title="samples"))
    read_png(plots.scatter(rng.normal(size=(300, 2)), tmp_path / "r.png", reference=rng.normal(size=(500, 2))))
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        plots.scatter(rng.normal(size=(10, 3)), tmp_path / "bad.png")
    with pytest.raises(DataError, match="reference"):
        plots.scatter(rng.normal(size=(10, 2)), tmp_path / "bad.png", reference=np.zeros(5))


def test_curves_skips_missing_keys(tmp_path):
    history = [{"step": i + 1, "loss": 10.0 / (i + 1), "seconds": 0.01} for i in range(120)]
    read_png(plots.curves(history, tmp_path / "loss.png"))
    em = [{"step": i + 1, "log_likelihood": -5 + 4 * (1 - 0.8**i), "change": 0.1} for i in range(20)]
    read_png(plots.curves(em, tmp_path / "ll.png"))
    both = [dict(a, log_likelihood=-a["loss"]) for a in history]
    read_png(plots.curves(both, tmp_path / "both.png", keys=("loss", "log_likelihood", "missing")))


def test_curves_ignores_non_finite_and_refuses_empty(tmp_path):
    history = [{"step": 1, "loss": float("nan")}, {"step": 2, "loss": 3.0}, {"step": 3, "loss": 2.0}]
    read_png(plots.curves(history, tmp_path / "c.png"))
    with pytest.raises(DataError, match="records none of"):
        plots.curves([{"step": 1, "divergences": 0.0}], tmp_path / "none.png")


def test_importing_ppgen_does_not_load_pyplot():
    import subprocess
    import sys

    code = "import sys, ppgen, ppgen.plots, ppgen.cli; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
