"""ArviZ export: groups, dims and the ArviZ functions users call on them, for NUTS and SVI."""

import numpy as np
import pytest

import ppgen
from ppgen import arviz as ppaz
from ppgen import inference, models


def _group(data, name):
    return ppaz.group(data, name)


@pytest.fixture(scope="module")
def problem():
    from tests.conftest import synthetic_ppca

    x, _ = synthetic_ppca(seed=2, n=120, d=5, k=2)
    return x


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("alg", ["nuts", "svi"])
def test_to_arviz_groups(problem, backend, alg):
    chosen = (inference.NUTS(num_samples=100, num_warmup=100, num_chains=2) if alg == "nuts"
              else inference.SVI(guide="multivariate_normal", steps=300, num_samples=150))
    fit = ppgen.fit(models.PPCA(data_dim=5, latent_dim=2), problem, chosen, backend=backend)
    data = fit.to_arviz(num_predictive=20)
    chains, draws = (2, 100) if alg == "nuts" else (1, 150)
    posterior = _group(data, "posterior")
    assert posterior["W"].shape == (chains, draws, 5, 2)
    assert posterior["sigma"].shape == (chains, draws)
    log_lik = _group(data, "log_likelihood")["x"]
    assert log_lik.shape == (chains, draws, 120)
    assert "example" in log_lik.dims
    np.testing.assert_allclose(np.asarray(log_lik).reshape(-1, 120),
                               fit.log_likelihood(problem, pointwise_draws=True), rtol=1e-6)
    assert _group(data, "posterior_predictive")["x"].shape == (1, 20, 120, 5)
    np.testing.assert_array_equal(np.asarray(_group(data, "observed_data")["x"]), problem)
    if alg == "nuts":
        stats = _group(data, "sample_stats")
        assert stats["diverging"].shape == (2, 100)
    table = ppaz.summary(data, var_names=["sigma", "mu"])
    assert {"mean", "sd", "r_hat", "ess_bulk"} <= set(table.columns)
    assert len(table) == 1 + 5
    loo = ppaz.loo(data)
    assert np.isfinite(loo.elpd) and loo.pareto_k.shape == (120,)
    np.testing.assert_allclose(loo.elpd, loo.elpd_pointwise.sum(), rtol=1e-9)


def test_point_estimate_exports_one_draw(problem):
    fit = ppgen.fit(models.PPCA(data_dim=5, latent_dim=2), problem, "closed_form", backend="numpyro")
    data = fit.to_arviz(num_predictive=3)
    assert _group(data, "posterior")["W"].shape == (1, 1, 5, 2)
    np.testing.assert_allclose(np.asarray(_group(data, "log_likelihood")["x"]).ravel(),
                               fit.log_likelihood(problem), rtol=1e-6)


def test_loaded_fit_needs_data(problem, tmp_path):
    fit = ppgen.fit(models.PPCA(data_dim=5, latent_dim=2), problem, "closed_form", backend="pyro")
    back = ppgen.load(fit.save(tmp_path / "run"))
    with pytest.raises(ppgen.ConfigError, match="pass x="):
        back.to_arviz()
    assert _group(back.to_arviz(x=problem), "observed_data")["x"].shape == (120, 5)


def test_save_plots_writes_pngs(problem, tmp_path):
    fit = ppgen.fit(models.PPCA(data_dim=5, latent_dim=2), problem,
                    inference.NUTS(num_samples=50, num_warmup=50, num_chains=2), backend="numpyro")
    paths = ppaz.save_plots(fit.to_arviz(num_predictive=2), tmp_path, var_names=["W_diag", "sigma"])
    assert {p.name for p in paths} == {"trace.png", "posterior.png", "pair.png", "rank.png", "ppc.png"}
    assert all(p.stat().st_size > 1000 for p in paths)
