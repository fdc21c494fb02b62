"""Gaussian mixtures: EM against scikit-learn, every inference on planted clusters, NUTS
diagnostics, LOO model choice, responsibilities, relabelling, and bad input."""

import warnings

import numpy as np
import pytest
import scipy.stats
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

import ppgen
from ppgen import datasets, inference, models
from ppgen.errors import ConfigError, DataError, IncompatibleInference

BACKENDS = ("pyro", "numpyro")
COVARIANCES = ("full", "diag", "spherical", "tied")


def planted(seed=0, n=3000, d=5, k=4, spread=4.0, noise=0.5):
    """Well-separated clusters with known means and labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, spread, (k, d))
    labels = rng.integers(0, k, n)
    x = means[labels] + noise * rng.normal(size=(n, d)) * rng.uniform(0.7, 1.3, (k, d))[labels]
    return x, labels, means


@pytest.fixture(scope="module")
def clusters():
    return planted()


def _sklearn_start(x, k, covariance, seed=5):
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    weights = rng.dirichlet(np.full(k, 5.0))
    locs = x[rng.choice(len(x), k, replace=False)]
    precisions = {"full": np.stack([np.eye(d)] * k), "diag": np.ones((k, d)), "spherical": np.ones(k),
                  "tied": np.eye(d)}[covariance]
    return {"weights": weights, "locs": locs, "precisions": precisions}


def _sklearn(x, k, covariance, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on purpose-limited runs
        return GaussianMixture(k, covariance_type=covariance, **options).fit(x)


def _mean_error(locs, means) -> float:
    cost = ((locs[:, None] - means[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.abs(locs[rows] - means[cols]).max())


# ---- EM against scikit-learn -------------------------------------------------------------------
@pytest.mark.parametrize("covariance", COVARIANCES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_em_matches_sklearn_from_the_same_start(covariance, backend):
    x, _, _ = planted(seed=1, spread=1.5, noise=1.0)   # overlapping: many iterations to converge
    start = _sklearn_start(x, 4, covariance)
    reference = _sklearn(x, 4, covariance, weights_init=start["weights"], means_init=start["locs"],
                         precisions_init=start["precisions"], max_iter=300, tol=1e-6, reg_covar=1e-6)
    fit = ppgen.fit(models.GMM(5, 4, covariance), x,
                    inference.EM(max_iter=300, tol=1e-6, reg_covar=1e-6, init_params=start), backend=backend)
    assert len(fit.history) == reference.n_iter_ > 10
    ours, theirs = fit.log_likelihood(x).mean(), reference.score(x)
    assert abs(ours - theirs) <= 1e-6 * abs(theirs)
    np.testing.assert_allclose(fit.params["weights"], reference.weights_, atol=1e-6)
    np.testing.assert_allclose(fit.params["locs"], reference.means_, atol=1e-6)
    np.testing.assert_allclose(fit.model.covariances(fit.params),
                               models.GMM(5, 4, "full").covariances(_as_full(reference, covariance)), atol=1e-6)
    # the log-likelihood EM records never decreases
    lls = [r["log_likelihood"] for r in fit.history]
    assert np.all(np.diff(lls) > -1e-10)


def _as_full(gm, covariance):
    """scikit-learn's covariances as the full-covariance GMM's scale_tril."""
    k, d = gm.means_.shape
    if covariance == "full":
        cov = gm.covariances_
    elif covariance == "tied":
        cov = np.broadcast_to(gm.covariances_, (k, d, d))
    elif covariance == "diag":
        cov = np.stack([np.diag(c) for c in gm.covariances_])
    else:
        cov = gm.covariances_[:, None, None] * np.eye(d)
    return {"weights": gm.weights_, "locs": gm.means_, "scale_tril": np.linalg.cholesky(cov)}


@pytest.mark.parametrize("name,covariance,k", [("planted", "full", 4), ("pinwheel", "full", 5),
                                               ("moons", "full", 8)])
def test_em_with_restarts_is_not_worse_than_sklearn(name, covariance, k):
    if name == "planted":
        x = planted(seed=2, spread=2.0, noise=1.0)[0]
    else:
        x = datasets.load(name, n=2000, seed=0).train.astype(np.float64)
    reference = _sklearn(x, k, covariance, n_init=5, max_iter=500, tol=1e-4, random_state=0)
    fit = ppgen.fit(models.GMM(x.shape[1], k, covariance), x,
                    inference.EM(n_init=5, max_iter=500, tol=1e-4), backend="pyro", seed=0)
    assert {r["restart"] for r in fit.history} == set(range(5))
    assert fit.log_likelihood(x).mean() >= reference.score(x) - 1e-3


def test_restarts_keep_the_best_run():
    x = planted(seed=3, spread=1.0, noise=1.0)[0]
    em = inference.EM(n_init=4, max_iter=200, tol=1e-5)
    fit = ppgen.fit(models.GMM(5, 4, "diag"), x, em, backend="pyro", seed=0)
    assert sorted({r["restart"] for r in fit.history}) == [0, 1, 2, 3]
    # run r of the restarts is the single run seeded 0 + 7919 r
    finals = [ppgen.fit(models.GMM(5, 4, "diag"), x, em.replace(n_init=1), backend="pyro", seed=7919 * r)
              .log_likelihood(x).mean() for r in range(4)]
    assert fit.log_likelihood(x).mean() == pytest.approx(max(finals), abs=1e-9)
    assert len(set(np.round(finals, 6))) > 1, "the restarts should reach different optima on this data"


# ---- every inference choice on planted clusters --------------------------------------------------
RECOVERY = {
    "em": lambda: inference.EM(tol=1e-6),
    "svi-enumerated": lambda: inference.SVI(elbo="enum", steps=300, lr=0.05, lr_decay=0.05),
    "svi-marginal": lambda: inference.SVI(elbo="trace", steps=300, lr=0.05, lr_decay=0.05),
    "svi-enumerated-posterior": lambda: inference.SVI(elbo="enum", guide="normal", steps=400, lr=0.05,
                                                      lr_decay=0.05, num_samples=200),
    "svi-marginal-map": lambda: inference.SVI(guide="delta", steps=300, lr=0.05, lr_decay=0.05, num_samples=10),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(RECOVERY))
def test_every_inference_recovers_planted_clusters(name, backend, clusters):
    x, labels, means = clusters
    fit = ppgen.fit(models.GMM(5, 4, "diag"), x, RECOVERY[name](), backend=backend, seed=0)
    assert adjusted_rand_score(labels, fit.predict(x)) >= 0.98
    locs = fit.params["locs"] if fit.posterior is None else fit.posterior["locs"].mean((0, 1))
    assert _mean_error(locs, means) <= 0.1
    proba = fit.predict_proba(x[:50])
    assert proba.shape == (50, 4)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)


@pytest.fixture(scope="module", params=BACKENDS)
def nuts_fit(request, clusters):
    x, _, _ = clusters
    alg = inference.NUTS(num_samples=500, num_warmup=400, num_chains=2)
    return ppgen.fit(models.GMM(5, 4, "diag"), x, alg, backend=request.param, seed=1)


def test_nuts_recovers_planted_clusters_with_clean_diagnostics(nuts_fit, clusters):
    x, labels, means = clusters
    assert adjusted_rand_score(labels, nuts_fit.predict(x)) >= 0.98
    assert _mean_error(nuts_fit.posterior["locs"].mean((0, 1)), means) <= 0.1
    assert nuts_fit.posterior["locs"].shape == (2, 500, 4, 5)
    assert int(nuts_fit.sample_stats["diverging"].sum()) == 0
    table = ppgen.arviz.summary(nuts_fit.to_arviz(num_predictive=0), var_names=["weights", "locs", "scales"])
    assert table["r_hat"].max() <= 1.01, table.sort_values("r_hat").tail()


# ---- model choice -----------------------------------------------------------------------------------
def test_loo_picks_the_planted_number_of_components():
    x, _, _ = planted(seed=4, n=300, d=2, k=3, spread=3.0, noise=0.6)
    alg = inference.SVI(guide="normal", steps=600, lr=0.05, num_samples=200)   # posterior draws for LOO
    fits = [ppgen.fit(models.GMM(2, k, "diag"), x, alg, backend="pyro", seed=0) for k in range(1, 7)]
    table = ppgen.compare(fits)
    assert len(table) == 6 and {"elpd_diff", "dse", "weight"} <= set(table.columns)
    best = table.index[0]
    three = "gmm[num_components=3]"
    assert best == three or table.loc[three, "elpd_diff"] <= table.loc[three, "dse"]
    assert table.loc["gmm[num_components=1]", "elpd"] < table.loc["gmm[num_components=2]", "elpd"] < table.loc[three, "elpd"]


def test_bic_and_aic(clusters):
    x, _, _ = clusters
    bics = []
    for k in (2, 4, 6):
        fit = ppgen.fit(models.GMM(5, k, "diag"), x, inference.EM(tol=1e-6), backend="pyro")
        p = (k - 1) + 2 * k * 5
        total = fit.log_likelihood(x).sum()
        assert fit.bic() == pytest.approx(-2 * total + p * np.log(len(x)))
        assert fit.aic() == pytest.approx(-2 * total + 2 * p)
        bics.append(fit.bic())
    assert int(np.argmin(bics)) == 1   # K = 4, the planted number
    reference = _sklearn(x, 4, "diag", tol=1e-6, random_state=0)
    fit = ppgen.fit(models.GMM(5, 4, "diag"), x, inference.EM(tol=1e-6), backend="pyro")
    assert fit.bic() == pytest.approx(reference.bic(x), rel=1e-6)
    nuts_like = ppgen.fit(models.GMM(5, 2, "diag"), x[:200], inference.SVI(guide="normal", steps=5, num_samples=3),
                          backend="pyro")
    with pytest.raises(ConfigError, match="ppgen.compare"):
        nuts_like.bic()


def test_compare_refuses_point_estimates(clusters):
    x, _, _ = clusters
    fits = [ppgen.fit(models.GMM(5, k, "diag"), x, "em", backend="pyro") for k in (2, 3)]
    with pytest.raises(ConfigError, match="LOO needs posterior draws"):
        ppgen.compare(fits)
    with pytest.raises(ConfigError, match="at least two"):
        ppgen.compare(fits[:1])


# ---- the likelihood, both backends, against an independent implementation ---------------------------
@pytest.mark.parametrize("covariance", COVARIANCES)
def test_log_likelihood_matches_scipy_in_both_backends(covariance):
    rng = np.random.default_rng(0)
    k, d = 3, 4
    spec = models.GMM(d, k, covariance)
    tril = np.tril(rng.normal(0, 0.3, (k, d, d)), -1) + np.eye(d) * rng.uniform(0.5, 1.5, (k, 1, d))
    cov_param = {"full": tril, "tied": tril[0], "diag": rng.uniform(0.5, 1.5, (k, d)),
                 "spherical": rng.uniform(0.5, 1.5, k)}[covariance]
    params = {"weights": np.array([0.2, 0.5, 0.3]), "locs": rng.normal(0, 2, (k, d)), spec.covariance_param: cov_param}
    x = rng.normal(0, 2, (20, d))
    covs = spec.covariances(params)
    expected = scipy.special.logsumexp(
        [np.log(params["weights"][j]) + scipy.stats.multivariate_normal(params["locs"][j], covs[j]).logpdf(x)
         for j in range(k)], axis=0)
    for backend in BACKENDS:
        np.testing.assert_allclose(spec.log_likelihood(backend, params, x), expected, rtol=1e-10)
    # leading draw axes are kept
    stacked = {n: np.stack([v, v]) for n, v in params.items()}
    assert spec.log_likelihood("numpyro", stacked, x).shape == (2, 20)


@pytest.mark.parametrize("backend", BACKENDS)
def test_samples_follow_the_mixture(backend):
    spec = models.GMM(2, 2, "diag")
    params = {"weights": np.array([0.25, 0.75]), "locs": np.array([[-5.0, 0.0], [5.0, 1.0]]),
              "scales": np.array([[1.0, 0.5], [0.5, 2.0]])}
    x = spec.sample(backend, params, 4000, seed=0)
    assert x.shape == (4000, 2)
    right = x[:, 0] > 0
    assert abs(right.mean() - 0.75) < 0.03
    np.testing.assert_allclose(x[right].std(0), [0.5, 2.0], rtol=0.08)


# ---- label switching ---------------------------------------------------------------------------------
def test_relabel_undoes_permuted_draws():
    rng = np.random.default_rng(0)
    spec = models.GMM(2, 3, "diag")
    true_locs = np.array([[-4.0, 0.0], [0.0, 3.0], [4.0, -1.0]])
    chains, draws = 2, 50
    locs = true_locs + 0.1 * rng.normal(size=(chains, draws, 3, 2))
    weights = np.broadcast_to([0.2, 0.3, 0.5], (chains, draws, 3)).copy()
    scales = np.broadcast_to([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], (chains, draws, 3, 2)).copy()
    perms = np.array([rng.permutation(3) for _ in range(chains * draws)]).reshape(chains, draws, 3)
    switched = {"locs": np.take_along_axis(locs, perms[..., None], 2),
                "weights": np.take_along_axis(weights, perms, 2),
                "scales": np.take_along_axis(scales, perms[..., None], 2)}
    out = spec.relabel(switched)
    np.testing.assert_allclose(out["locs"], locs)        # back in order (sorted by the first coordinate)
    np.testing.assert_allclose(out["weights"], weights)
    np.testing.assert_allclose(out["scales"], scales)


# ---- refusals and bad input -------------------------------------------------------------------------
def test_bad_hyperparameters_and_data(clusters):
    x, _, _ = clusters
    with pytest.raises(ConfigError, match="num_components must be at least 1"):
        models.GMM(5, 0)
    with pytest.raises(ConfigError, match="not one of"):
        models.GMM(5, 2, "ful")
    with pytest.raises(DataError, match="num_components=5 is more than the 4 training examples"):
        ppgen.fit(models.GMM(5, 5), x[:4], "em")
    with pytest.raises(DataError, match="only 1 distinct row"):
        ppgen.fit(models.GMM(5, 2), np.ones((50, 5)), "em")
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        ppgen.fit(models.GMM(5, 2), bad, "em")
    with pytest.raises(DataError, match="flat vector"):
        ppgen.fit("gmm", np.arange(10.0), "em")
    with pytest.raises(DataError, match=r"reshape\(-1, 1\)"):
        models.GMM(1, 2).log_likelihood("pyro", {}, np.arange(10.0))
    with pytest.raises(DataError, match="data_dim=5"):
        ppgen.fit(models.GMM(3, 2), x, "em")
    with pytest.raises(ConfigError, match="reg_covar must be >= 0"):
        inference.EM(reg_covar=-1.0)
    with pytest.raises(ConfigError, match="init_params"):
        inference.EM(init_params="kmean")


def test_scalar_examples_as_a_column():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.5, 300), rng.normal(3, 1.0, 700)])[:, None]
    fit = ppgen.fit("gmm", x, inference.EM(tol=1e-8), num_components=2, covariance="diag", backend="pyro")
    order = np.argsort(fit.params["locs"][:, 0])
    np.testing.assert_allclose(fit.params["locs"][order, 0], [-3, 3], atol=0.1)
    np.testing.assert_allclose(fit.params["weights"][order], [0.3, 0.7], atol=0.01)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_constant_column_is_floored_by_reg_covar(backend, clusters):
    x = clusters[0].copy()
    x[:, 1] = 2.5
    fit = ppgen.fit(models.GMM(5, 4, "diag"), x, inference.EM(reg_covar=1e-4), backend=backend)
    np.testing.assert_allclose(fit.params["scales"][:, 1], 1e-2, rtol=1e-6)
    assert np.all(np.isfinite(fit.log_likelihood(x)))
    with pytest.raises(DataError, match="reg_covar"):
        ppgen.fit(models.GMM(5, 4, "full"), x, inference.EM(reg_covar=0.0), backend=backend)


def test_refusals_name_what_works(clusters):
    x, _, _ = clusters
    with pytest.raises(IncompatibleInference, match="guide 'amortized'"):
        ppgen.fit(models.GMM(5, 2), x, inference.SVI(guide="amortized"))
    with pytest.raises(IncompatibleInference, match="inference.EM"):
        ppgen.fit(models.GMM(5, 2), x, "closed_form")
    ppca = ppgen.fit(models.PPCA(5, 2), x, "closed_form")
    with pytest.raises(ConfigError, match="no discrete assignments"):
        ppca.predict(x)


def test_em_fit_round_trips_through_a_run_folder(clusters, tmp_path):
    x, labels, _ = clusters
    fit = ppgen.fit(models.GMM(5, 4, "full"), x, inference.EM(n_init=2), backend="numpyro", run_dir=tmp_path / "run")
    back = ppgen.load(tmp_path / "run")
    np.testing.assert_array_equal(back.predict(x), fit.predict(x))
    np.testing.assert_allclose(back.log_likelihood(x[:100]), fit.log_likelihood(x[:100]), rtol=1e-12)
    assert back.inference.n_init == 2
