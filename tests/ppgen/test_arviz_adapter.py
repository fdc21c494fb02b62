"""The ArviZ adapter (``ppgen.arviz``) on stored and exact draws, with arviz 0.x and 1.x alike.

This file needs numpy, matplotlib, arviz and pytest only: ``.ci/arviz1`` runs it on Python 3.12
with arviz 1.x, the main suite with arviz 0.x. Every number is checked against numpy (means,
deviations, intervals), a closed form (leave-one-out predictive densities of a conjugate model)
or plain importance sampling, never against arviz itself.
"""

from pathlib import Path

import numpy as np
import pytest

from ppgen import arviz as ppaz

STORED = Path(__file__).with_name("data") / "arviz_draws.npz"


def _stored() -> dict:
    """The stored draws of a NUTS fit of PPCA (2 chains × 200 draws, 40 examples; see
    ``data/make_arviz_draws.py``), grouped by ArviZ group."""
    out: dict = {}
    with np.load(STORED, allow_pickle=False) as arrays:
        for key in arrays.files:
            group, _, name = key.partition("/")
            out.setdefault(group, {})[name] = arrays[key]
    return out


@pytest.fixture(scope="module")
def stored():
    return _stored()


@pytest.fixture(scope="module")
def stored_data(stored):
    return ppaz.build(**stored, model_name="ppca")


# ---- a conjugate model with exact posterior draws ------------------------------------------------
def _conjugate(n=20, chains=4, draws=1000, seed=3, tau=10.0):
    """y_i ~ N(m, 1), m ~ N(0, tau²): exact posterior draws of m, the (chain, draw, example)
    log-likelihood, and the exact leave-one-out predictive log densities log p(y_i | y_-i)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(1.5, 1.0, n)
    precision = 1 / tau**2 + n
    m = rng.normal(y.sum() / precision, precision ** -0.5, (chains, draws))
    log_lik = -0.5 * np.log(2 * np.pi) - 0.5 * (y - m[..., None]) ** 2
    loo_precision = 1 / tau**2 + (n - 1)
    loo_mean = (y.sum() - y) / loo_precision
    loo_var = 1 / loo_precision + 1.0
    exact = -0.5 * np.log(2 * np.pi * loo_var) - 0.5 * (y - loo_mean) ** 2 / loo_var
    return y, m, log_lik, exact


def _posterior_predictive_density(y, tau=10.0):
    """log p(y_i | y), all of y observed: the training score that LOO's ``p`` is measured from."""
    precision = 1 / tau**2 + y.size
    var = 1 / precision + 1.0
    return -0.5 * np.log(2 * np.pi * var) - 0.5 * (y - y.sum() / precision) ** 2 / var


def test_loo_matches_the_exact_leave_one_out_density_of_a_conjugate_model():
    y, m, log_lik, exact = _conjugate()
    data = ppaz.build(posterior={"m": m}, log_likelihood={"y": log_lik}, observed_data={"y": y})
    result = ppaz.loo(data)
    assert isinstance(result, ppaz.LOO)
    assert result.num_draws == 4000 and result.num_examples == 20
    assert abs(result.elpd - exact.sum()) < 0.05, (result.elpd, exact.sum())
    np.testing.assert_allclose(result.elpd_pointwise, exact, atol=0.02)
    # p: the training score (log of the posterior mean density) minus elpd
    train = np.log(np.exp(log_lik).reshape(-1, 20).mean(0)).sum()
    assert result.p == pytest.approx(train - result.elpd, abs=1e-6)
    assert result.p == pytest.approx(_posterior_predictive_density(y).sum() - exact.sum(), abs=0.05)
    assert result.se == pytest.approx(np.sqrt(20 * np.var(result.elpd_pointwise, ddof=1)), rel=1e-9)
    assert result.pareto_k.shape == (20,) and np.all(result.pareto_k < result.good_k) and not result.warning
    assert 0.5 < result.good_k <= 0.7


def test_loo_of_stored_nuts_draws_matches_plain_importance_sampling(stored, stored_data):
    result = ppaz.loo(stored_data)
    log_lik = stored["log_likelihood"]["x"].reshape(-1, 40)
    # plain importance sampling with weights 1 / p(y_i | θ_s): log p(y_i | y_-i) ≈ −log mean_s exp(−ℓ_is)
    top = (-log_lik).max(0)
    plain = -(top + np.log(np.mean(np.exp(-log_lik - top), axis=0)))
    np.testing.assert_allclose(result.elpd_pointwise, plain, atol=0.05)
    assert result.elpd == pytest.approx(result.elpd_pointwise.sum(), rel=1e-9)
    assert result.num_draws == 400 and result.num_examples == 40


def test_summary_has_the_same_columns_and_numbers_on_every_arviz(stored, stored_data):
    table = ppaz.summary(stored_data, var_names=["sigma", "mu"])
    assert tuple(table.columns) == ppaz.SUMMARY_COLUMNS
    assert list(table.index) == ["sigma", "mu[0]", "mu[1]", "mu[2]"]
    sigma = stored["posterior"]["sigma"].ravel().astype(np.float64)
    assert table.loc["sigma", "mean"] == pytest.approx(sigma.mean(), abs=1e-3)
    assert table.loc["sigma", "sd"] == pytest.approx(sigma.std(ddof=1), abs=2e-3)
    # the 94% highest-density interval: the shortest interval holding 94% of the draws
    ordered = np.sort(sigma)
    width = int(np.floor(0.94 * ordered.size))
    start = np.argmin(ordered[width:] - ordered[:-width])
    assert table.loc["sigma", "hdi_3%"] == pytest.approx(ordered[start], abs=0.01)
    assert table.loc["sigma", "hdi_97%"] == pytest.approx(ordered[start + width], abs=0.01)
    assert np.all(table["ess_bulk"] == np.round(table["ess_bulk"])) and np.all(table["ess_bulk"] > 50)
    assert np.all(table["r_hat"] == np.round(table["r_hat"], 2)) and table["r_hat"].max() < 1.05
    assert tuple(ppaz.summary(stored_data, var_names=["sigma"], kind="stats").columns) == ppaz.SUMMARY_COLUMNS[:4]
    assert tuple(ppaz.summary(stored_data, kind="diagnostics").columns) == ppaz.SUMMARY_COLUMNS[4:]


def test_summary_r_hat_flags_chains_that_disagree():
    rng = np.random.default_rng(0)
    apart = rng.normal(size=(2, 500)) + np.array([[0.0], [3.0]])
    table = ppaz.summary(ppaz.build(posterior={"a": apart, "b": rng.normal(size=(2, 500))}))
    assert table.loc["a", "r_hat"] > 1.5 and table.loc["b", "r_hat"] < 1.02


def test_summary_of_another_group(stored):
    data = ppaz.build(posterior=stored["posterior"], prior={"sigma": np.abs(np.random.default_rng(1).normal(
        size=(1, 300)))})
    prior = ppaz.summary(data, var_names=["sigma"], group="prior", kind="stats")
    assert prior.loc["sigma", "mean"] == pytest.approx(np.sqrt(2 / np.pi), abs=0.1)


def test_compare_has_stable_columns_and_ranks_the_better_model_first():
    y, m, log_lik, _ = _conjugate()
    good = ppaz.build(posterior={"m": m}, log_likelihood={"y": log_lik}, observed_data={"y": y})
    shifted = m + 1.0  # draws one unit off the posterior: a worse predictive density for every example
    bad_lik = -0.5 * np.log(2 * np.pi) - 0.5 * (y - shifted[..., None]) ** 2
    bad = ppaz.build(posterior={"m": shifted}, log_likelihood={"y": bad_lik}, observed_data={"y": y})
    table = ppaz.compare({"bad": bad, "good": good})
    assert tuple(table.columns) == ppaz.COMPARE_COLUMNS
    assert list(table.index) == ["good", "bad"] and list(table["rank"]) == [0, 1]
    assert table.loc["good", "elpd"] == pytest.approx(ppaz.loo(good).elpd, rel=1e-9)
    assert table.loc["bad", "se"] == pytest.approx(ppaz.loo(bad).se, rel=1e-9)
    assert table.loc["good", "elpd_diff"] == 0 and table.loc["bad", "elpd_diff"] > 5
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert not table["warning"].any()


def test_groups_and_group_read_both_data_types(stored_data):
    assert set(ppaz.groups(stored_data)) == {"posterior", "sample_stats", "log_likelihood", "posterior_predictive",
                                             "observed_data"}
    posterior = ppaz.group(stored_data, "posterior")
    assert posterior["W"].shape == (2, 200, 3, 1)
    assert "example" in ppaz.group(stored_data, "log_likelihood")["x"].dims
    assert ppaz.group(stored_data, "observed_data")["x"].shape == (40, 3)
    with pytest.raises(KeyError, match="no group 'prior'.*posterior"):
        ppaz.group(stored_data, "prior")


def _png_size(path: Path) -> tuple:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_save_plots_draws_every_plot_including_the_posterior_predictive(stored_data, tmp_path, capsys):
    paths = ppaz.save_plots(stored_data, tmp_path, var_names=["W_diag", "sigma"])
    assert "skipped" not in capsys.readouterr().out
    assert {p.name for p in paths} == {"trace.png", "posterior.png", "pair.png", "rank.png", "ppc.png"}
    for path in paths:
        width, height = _png_size(path)
        assert 100 < width < 4000 and 100 < height < 4000, (path.name, width, height)


def test_save_plots_with_fewer_replicas_than_curves(stored, tmp_path, capsys):
    few = dict(stored, posterior_predictive={"x": stored["posterior_predictive"]["x"][:, :2]})
    paths = ppaz.save_plots(ppaz.build(**few), tmp_path, var_names=["sigma"])
    assert "skipped" not in capsys.readouterr().out
    assert {p.name for p in paths} == {"trace.png", "posterior.png", "rank.png", "ppc.png"}  # one scalar: no pair


def test_plot_trace_returns_a_figure_of_the_asked_size(stored_data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = ppaz.plot_trace(stored_data, var_names=["W_diag", "sigma"], figsize=(9, 3.6))
    try:
        assert tuple(np.round(figure.get_size_inches(), 1)) == (9.0, 3.6)
        assert len(figure.axes) >= 4  # a density and a trace for each of the two variables
    finally:
        plt.close("all")
