"""fit.program for built-in families: the fitted model and guide, bound, run with the PPLs' own tools."""

import numpy as np
import pytest

import ppgen
from ppgen import datasets, inference, models


@pytest.fixture(scope="module")
def rows():
    data = datasets.load("digits", view="categorical")
    return data, data.test[:40].reshape(40, -1).astype(np.float32)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_vae_program_runs_with_the_ppl_elbo_and_predictive(backend, rows):
    data, x = rows
    spec = models.VAE(64, latent_dim=4, hidden_dims=(16,), likelihood="categorical", num_levels=17)
    fit = ppgen.fit(spec, data, inference.SVI(elbo="meanfield", steps=20, batch_size=100), backend=backend,
                    progress=False)
    bound = fit.program
    ours = float(fit.elbo(x, num_samples=400, seed=1).mean())
    if backend == "pyro":
        import pyro
        import torch

        elbo = pyro.infer.Trace_ELBO(num_particles=400, vectorize_particles=True, max_plate_nesting=1)
        theirs = -float(elbo.loss(bound.model, bound.guide, x=torch.as_tensor(x))) / len(x)
        draws = pyro.infer.Predictive(bound.model, num_samples=3)(x=None, num=5)
    else:
        import jax
        import numpyro

        elbo = numpyro.infer.Trace_ELBO(num_particles=400)
        theirs = -float(elbo.loss(jax.random.PRNGKey(0), {}, bound.model, bound.guide, x=jax.numpy.asarray(x))) / len(x)
        draws = numpyro.infer.Predictive(bound.model, num_samples=3)(jax.random.PRNGKey(1), x=None, num=5)
    # two Monte Carlo estimates of the same ELBO per example (about 110 nats; sd of each mean about 0.05)
    assert abs(ours - theirs) < 0.3, (ours, theirs)
    assert tuple(draws["x"].shape) == (3, 5, 64) and tuple(draws["z"].shape) == (3, 5, 4)


def test_a_gmm_marginal_program_scores_what_fit_log_likelihood_scores():
    import jax
    from numpyro.infer.util import log_density

    x = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    x[:30] += 4.0
    fit = ppgen.fit(models.GMM(2, 2), x, inference.EM(), backend="numpyro", progress=False)
    bound = fit.program
    total, _ = log_density(bound.model, (), {"x": jax.numpy.asarray(x)}, {})
    np.testing.assert_allclose(float(total), fit.log_likelihood(x).sum(), rtol=1e-4)


def test_a_posterior_fit_gives_its_model_for_predictive_with_the_draws():
    import pyro
    import torch

    x = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    fit = ppgen.fit(models.PPCA(3, 1), x, inference.SVI(guide="normal", steps=5, num_samples=6), backend="pyro",
                    progress=False)
    assert fit.posterior is not None and fit.program.guide is None
    draws = {k: torch.as_tensor(v.reshape((-1,) + v.shape[2:])) for k, v in fit.posterior.items()}
    replicated = pyro.infer.Predictive(fit.program.model, posterior_samples=draws)(x=torch.as_tensor(x))
    assert tuple(replicated["x"].shape)[:1] == (6,)
