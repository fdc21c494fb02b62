"""DDPM: the schedules and Gaussian algebra against the papers' formulas (float64), the
program's ELBO against the bound summed term by term, the losses, the samplers, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr

import ppgen
from ppgen import datasets, inference, models
from ppgen.errors import ConfigError, DataError, IncompatibleInference

RNG = np.random.default_rng(0)


# ---- an independent implementation of the papers' formulas, 1-based as in the papers -------
def paper_betas(schedule, T, start=None, end=None):
    if schedule == "linear":
        start, end = start or 1e-4 * 1000 / T, end or 0.02 * 1000 / T
        return np.array([start + (end - start) * (t - 1) / (T - 1) for t in range(1, T + 1)])
    if schedule == "sigmoid":
        start, end = start or 1e-4 * 1000 / T, end or 0.02 * 1000 / T
        xs = [-6 + 12 * (t - 1) / (T - 1) for t in range(1, T + 1)]
        return np.array([start + (end - start) / (1 + math.exp(-v)) for v in xs])
    f = [math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(T + 1)]
    return np.array([min(1 - (f[t] / f[0]) / (f[t - 1] / f[0]), 0.999) for t in range(1, T + 1)])


def paper_abar(betas, t):  # ᾱ_t, t = 0..T (ᾱ_0 = 1)
    return float(np.prod([1 - betas[s - 1] for s in range(1, t + 1)]))


def paper_posterior(betas, x0, xt, t):  # q(x_{t-1} | x_t, x_0), t >= 1
    ab, ab_prev, beta = paper_abar(betas, t), paper_abar(betas, t - 1), betas[t - 1]
    mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0 + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * xt
    return mean, (1 - ab_prev) / (1 - ab) * beta


def paper_x0(betas, out, xt, t, prediction):
    ab = paper_abar(betas, t)
    if prediction == "epsilon":
        return (xt - math.sqrt(1 - ab) * out) / math.sqrt(ab)
    if prediction == "v":
        return math.sqrt(ab) * xt - math.sqrt(1 - ab) * out
    return out


def gauss_kl(m1, v1, m2, v2):
    return 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "sigmoid"])
def test_schedules_match_the_papers(schedule):
    for T in (10, 1000):
        if schedule != "cosine" and T == 10:  # the default ends scale by 1000/T: above 1 for T = 10
            spec = models.DDPM(2, timesteps=T, beta_schedule=schedule, beta_start=1e-3, beta_end=0.3)
            want = paper_betas(schedule, T, 1e-3, 0.3)
        else:
            spec = models.DDPM(2, timesteps=T, beta_schedule=schedule)
            want = paper_betas(schedule, T)
        np.testing.assert_allclose(spec.betas, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(spec.alphas, 1 - want, rtol=1e-12)
        np.testing.assert_allclose(spec.alphas_cumprod, [paper_abar(want, t) for t in range(1, T + 1)], rtol=1e-9)
        assert spec.betas.dtype == np.float64


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_q_sample_posterior_and_p_mean_variance_match_the_formulas(prediction, variance):
    spec = models.DDPM(3, timesteps=20, beta_schedule="cosine", prediction=prediction, variance=variance)
    betas = spec.betas
    x0, noise, out = RNG.normal(size=(3, 5, 3))
    for t0 in (0, 1, 7, 19):           # 0-based steps; the paper's t = t0 + 1
        t = t0 + 1
        ts = np.full(5, t0)
        ab = paper_abar(betas, t)
        xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise
        np.testing.assert_allclose(spec.q_sample(x0, ts, noise), xt, rtol=1e-6, atol=1e-12)
        mean, var = paper_posterior(betas, x0, xt, t)
        got_mean, got_var, got_log_var = spec.q_posterior_mean_variance(x0, xt, ts)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(got_var.ravel(), var, rtol=1e-6, atol=1e-15)
        x0_hat = np.clip(paper_x0(betas, out, xt, t, prediction), -1, 1)
        p_mean, _ = paper_posterior(betas, x0_hat, xt, t)
        small_first = paper_posterior(betas, 0, 0, 2)[1]  # β̃_2: the clip of β̃_1 = 0
        p_var = small_first if t == 1 else (var if variance == "fixed_small" else betas[t - 1])
        got = spec.p_mean_variance(out, xt, ts, clip=True)
        np.testing.assert_allclose(got[0], p_mean, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(got[1].ravel(), p_var, rtol=1e-6)
        np.testing.assert_allclose(got[3], x0_hat, rtol=1e-6, atol=1e-12)
        if t > 1:
            np.testing.assert_allclose(got_log_var.ravel(), math.log(var), rtol=1e-9)


def test_one_step_of_each_sampler_matches_the_formulas():
    spec = models.DDPM(4, timesteps=50, beta_schedule="linear", beta_start=1e-3, beta_end=0.2)
    betas = spec.betas
    xt, out, z = RNG.normal(size=(3, 6, 4))
    for t0 in (0, 9, 49):
        t = t0 + 1
        ts = np.full(6, t0)
        # Algorithm 2: x_{t-1} = 1/sqrt(α_t) (x_t − β_t/sqrt(1−ᾱ_t) ε) + σ_t z, σ_t² = β̃_t, no noise at t = 1
        ab, beta = paper_abar(betas, t), betas[t - 1]
        sigma = math.sqrt(paper_posterior(betas, 0, 0, t)[1]) if t > 1 else 0.0
        want = (xt - beta / math.sqrt(1 - ab) * out) / math.sqrt(1 - beta) + sigma * z
        np.testing.assert_allclose(spec.replace(clip_denoised=False).ddpm_step(out, xt, ts, z), want, rtol=1e-6,
                                   atol=1e-10)
    # DDIM (Song et al. eq. 12) from t to s < t with η
    for t0, s0, eta in ((49, 39, 0.0), (49, 39, 0.7), (9, -1, 0.5)):
        t, s = t0 + 1, s0 + 1
        ab, ab_s = paper_abar(betas, t), paper_abar(betas, s)
        x0_hat = (xt - math.sqrt(1 - ab) * out) / math.sqrt(ab)
        sigma = eta * math.sqrt((1 - ab_s) / (1 - ab)) * math.sqrt(1 - ab / ab_s)
        want = math.sqrt(ab_s) * x0_hat + math.sqrt(1 - ab_s - sigma ** 2) * out + sigma * z
        got = spec.ddim_step(out, xt, np.full(6, t0), np.full(6, s0), eta, z)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-10)
    # η = 1 between consecutive steps is the ancestral step with σ² = β̃_t
    np.testing.assert_allclose(spec.ddim_step(out, xt, np.full(6, 9), np.full(6, 8), 1.0, z),
                               spec.ddpm_step(out, xt, np.full(6, 9), z), rtol=1e-6, atol=1e-10)
    np.testing.assert_array_equal(spec.ddim_timesteps(10), np.arange(0, 50, 5))


def test_discretized_gaussian_matches_the_cdf_formula():
    from ppgen.models.ddpm import discretized_gaussian_log_likelihood

    levels = 5
    x = np.linspace(-1, 1, levels)[None].repeat(3, 0)
    mean = RNG.normal(size=(3, levels)) * 0.5
    log_scale = np.log(np.array([0.1, 0.3, 1.0]))[:, None] + 0 * mean
    got = discretized_gaussian_log_likelihood(x, mean, log_scale, levels)
    s = np.exp(log_scale)
    edges = np.linspace(-1, 1, levels)
    half = 1 / (levels - 1)
    want = np.empty_like(got)
    for i in range(3):
        for j, v in enumerate(edges):
            lo = -np.inf if j == 0 else (v - half - mean[i, j]) / s[i, j]
            hi = np.inf if j == levels - 1 else (v + half - mean[i, j]) / s[i, j]
            want[i, j] = np.log(max(ndtr(hi) - ndtr(lo), 1e-300))
    tiny = want < math.log(1e-12)  # probabilities below 1e-12 are floored there (as in Ho et al.'s code)
    assert tiny.any() and (~tiny).sum() >= 10
    np.testing.assert_allclose(got[~tiny], want[~tiny], rtol=1e-9)
    np.testing.assert_allclose(got[tiny], math.log(1e-12))


# ---- the program's ELBO (the backends' own TraceMeanField machinery) against the bound ------
def _fixed_params(spec):
    return {f"denoiser.{k}": v for k, v in spec.networks()["denoiser"].init(seed=3).items()}


def _network_output(spec, params, x_t, t_rows):
    import torch

    from ppgen.models.nets import ops_for

    weights = {k.split(".", 1)[1]: torch.as_tensor(v) for k, v in params.items()}
    with torch.no_grad():
        out = spec.networks()["denoiser"].apply(ops_for("pyro"), weights, torch.as_tensor(x_t, dtype=torch.float32),
                                    torch.as_tensor(np.array(t_rows)))
    return out.double().numpy()


def bound_from_draws(spec, params, x0, x_t):
    """−ELBO summed over examples from the guide's draws x_t (T, n, D), term by term in float64
    with the papers' formulas: L_T + Σ_{t≥2} KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) − log p_θ(x_0|x_1)."""
    T = spec.timesteps
    betas = spec.betas
    ab_T = paper_abar(betas, T)
    total = gauss_kl(math.sqrt(ab_T) * x0, 1 - ab_T, 0.0, 1.0).sum()
    small_first = paper_posterior(betas, 0, 0, 2)[1]
    for t in range(1, T + 1):
        xt = x_t[t - 1]
        out = _network_output(spec, params, xt, np.full(xt.shape[0], t - 1))
        x0_hat = paper_x0(betas, out, xt, t, spec.prediction)
        mean_p, var = paper_posterior(betas, x0_hat, xt, t)
        var_p = var if t > 1 else small_first
        if t == 1:
            total += (0.5 * (np.log(2 * np.pi * var_p) + (x0 - mean_p) ** 2 / var_p)).sum()
        else:
            mean_q, var_q = paper_posterior(betas, x0, xt, t)
            total += gauss_kl(mean_q, var_q, mean_p, var_p).sum()
    return total


def _program_elbo(backend, spec, params, x, seeds, with_draws=False):
    """The backend's TraceMeanField_ELBO loss (−ELBO, summed over the batch) on the DDPM
    program for each seed, and (``with_draws``) the guide's draws of x_t for each."""
    program = spec.build(backend, "latent", data=x)
    model, guide = program.for_batches(program.model), program.for_batches(program.guide)
    losses, draws = [], []
    if backend == "pyro":
        import pyro
        import torch
        from pyro import poutine

        from ppgen.backends import get_backend

        params_in_store = get_backend("pyro").params_in_store
        batch = {"x": torch.as_tensor(x, dtype=torch.float32), "index": torch.arange(len(x))}
        elbo = pyro.infer.TraceMeanField_ELBO()
        with params_in_store(params):
            for s in seeds:
                torch.manual_seed(s)
                losses.append(elbo.loss(model, guide, **batch))
                if with_draws:
                    torch.manual_seed(s)
                    draws.append(poutine.trace(guide).get_trace(**batch).nodes["x_t"]["value"].double().numpy())
        return np.array(losses), draws
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro import handlers

    batch = {"x": jnp.asarray(x, dtype=jnp.float32), "index": jnp.arange(len(x))}
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    elbo = numpyro.infer.TraceMeanField_ELBO()
    loss = jax.jit(lambda key: elbo.loss(key, jparams, model, guide, **batch))

    def x_t_of(key):
        guide_key = jax.random.split(key)[1]
        return handlers.trace(handlers.seed(guide, guide_key)).get_trace(**batch)["x_t"]["value"]

    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    losses = np.asarray(jax.lax.map(loss, keys))
    if with_draws:
        draws = [np.asarray(x_t_of(key), dtype=np.float64) for key in keys]
    return losses, draws


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_program_elbo_is_the_variational_bound(backend):
    """With the time plate whole, the backend's mean-field ELBO on the program equals the bound
    summed term by term on the same draws (1e-5); subsampled (3 of 10 steps), its average over
    draws equals the bound's average within 3 standard errors."""
    spec = models.DDPM(2, timesteps=10, beta_schedule="cosine", hidden_dims=(16, 16), time_dim=8)
    params = _fixed_params(spec)
    x = RNG.normal(size=(6, 2)) * 0.7
    losses, draws = _program_elbo(backend, spec, params, x, seeds=range(3), with_draws=True)
    for loss, x_t in zip(losses, draws):
        assert x_t.shape == (10, 6, 2)
        np.testing.assert_allclose(loss, bound_from_draws(spec, params, x, x_t), rtol=1e-5)
    full, _ = _program_elbo(backend, spec, params, x, seeds=range(100, 400))
    sub, _ = _program_elbo(backend, spec.replace(time_batch=3), params, x, seeds=range(1000, 1600))
    se = math.sqrt(full.var(ddof=1) / len(full) + sub.var(ddof=1) / len(sub))
    assert abs(full.mean() - sub.mean()) < 3 * se, (full.mean(), sub.mean(), se)
    assert sub.std() > 2 * full.std()  # the subsampled estimate is noisier: the plate really subsamples


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_losses_simple_and_vlb(backend):
    """'simple' is the mean squared error of the network's ε against the drawn noise, recomputed
    here from the same draws; 'vlb' averaged over draws is the bound (3 standard errors)."""
    spec = models.DDPM(2, timesteps=10, beta_schedule="cosine", hidden_dims=(16, 16), time_dim=8)
    params = _fixed_params(spec)
    x = RNG.normal(size=(40, 2)) * 0.7
    program = spec.build(backend, "latent", data=x)
    if backend == "pyro":
        import torch

        from ppgen.backends import get_backend

        params_in_store = get_backend("pyro").params_in_store
        batch = {"x": torch.as_tensor(x, dtype=torch.float32), "index": torch.arange(40)}
        with params_in_store(params), torch.no_grad():
            torch.manual_seed(5)
            simple = float(inference.DiffusionLoss("simple")(program, {}, batch, None)[0])
            torch.manual_seed(5)
            t = torch.randint(0, 10, (40,))
            noise = torch.randn(40, 2).double().numpy()
            vlb = np.array([float(inference.DiffusionLoss("vlb")(program, {}, batch, None)[0]) for _ in range(400)])
        t = t.numpy()
    else:
        import jax
        import jax.numpy as jnp

        batch = {"x": jnp.asarray(x, dtype=jnp.float32), "index": jnp.arange(40)}
        jparams = {k: jnp.asarray(v) for k, v in params.items()}
        key = jax.random.PRNGKey(5)
        simple = float(inference.DiffusionLoss("simple")(program, jparams, batch, key)[0])
        key_t, key_noise = jax.random.split(key)
        t = np.asarray(jax.random.randint(key_t, (40,), 0, 10))
        noise = np.asarray(jax.random.normal(key_noise, (40, 2)), dtype=np.float64)
        vlb_fn = jax.jit(lambda k: inference.DiffusionLoss("vlb")(program, jparams, batch, k)[0])
        vlb = np.asarray(jax.lax.map(vlb_fn, jax.random.split(jax.random.PRNGKey(9), 400)))
    x_t = np.stack([math.sqrt(paper_abar(spec.betas, s + 1)) * x[i] + math.sqrt(1 - paper_abar(spec.betas, s + 1))
                    * noise[i] for i, s in enumerate(t)])
    out = _network_output(spec, params, x_t, t)
    np.testing.assert_allclose(simple, ((noise - out) ** 2).mean(-1).sum(), rtol=1e-5)
    full, _ = _program_elbo(backend, spec, params, x, seeds=range(200))
    se = math.sqrt(vlb.var(ddof=1) / len(vlb) + full.var(ddof=1) / len(full))
    assert abs(vlb.mean() - full.mean()) < 3 * se, (vlb.mean(), full.mean(), se)


def test_backends_agree_on_bound_and_samples():
    spec = models.DDPM(2, timesteps=20, beta_schedule="cosine", hidden_dims=(16,), time_dim=8)
    params = _fixed_params(spec)
    x = RNG.normal(size=(8, 2))
    a = spec.log_likelihood("pyro", params, x, seed=1)
    b = spec.log_likelihood("numpyro", params, x, seed=1)
    np.testing.assert_allclose(a, b, rtol=1e-4)   # same draws of x_t (numpy), same network
    terms = spec.bound_terms("pyro", params, x, seed=1)
    assert terms["steps"].shape == (19, 8)
    np.testing.assert_allclose(-a, terms["prior"] + terms["steps"].sum(0) + terms["decoder"])
    for sampler, steps in (("ddpm", None), ("ddim", 5)):
        s_p, chain = spec.sample("pyro", params, 7, seed=0, sampler=sampler, steps=steps, return_chain=True)
        s_j = spec.sample("numpyro", params, 7, seed=0, sampler=sampler, steps=steps)
        assert s_p.shape == s_j.shape == (7, 2) and np.isfinite(s_p).all() and np.isfinite(s_j).all()
        assert chain.shape == ((20 if sampler == "ddpm" else 5) + 1, 7, 2)
        np.testing.assert_allclose(chain[-1], s_p, rtol=1e-5, atol=1e-6)
    # deterministic DDIM (η = 0) from the same x_T is the same map in both backends
    from ppgen.models.ddpm import _sample_loop

    visits = spec.ddim_timesteps(5)
    x_p, chain_p = _sample_loop(spec, "pyro", params, 4, 0, "ddim", visits, 0.0, True)
    assert np.isfinite(x_p).all() and chain_p.shape == (6, 4, 2)


def test_ring_quality_with_a_short_run_and_discretised_digits():
    """A quick fit already puts most samples near the ring's modes; the digits' DDPM samples
    integer levels and scores a finite bound in nats and bits per dimension."""
    data = datasets.load("ring")
    spec = models.DDPM(2, timesteps=100, hidden_dims=(64, 64))
    fit = ppgen.fit(spec, data, inference.SVI(elbo="simple", steps=1500, batch_size=256, lr=2e-3, ema=0.99),
                    backend="pyro")
    samples = fit.sample(500, seed=1, sampler="ddim", steps=20)
    coverage = ppgen.metrics.mode_coverage_for(samples, data.meta)
    assert coverage.covered >= 7, coverage
    untrained = spec.sample("pyro", _fixed_params(spec), 500, seed=1, sampler="ddim", steps=20)
    near, far = (ppgen.metrics.energy_distance(s, data.test) for s in (samples, untrained))
    assert near < 0.1 * far, (near, far)
    assert fit.history[-1]["loss"] < fit.history[0]["loss"]
    digits = datasets.load("digits", view="categorical")
    spec = ppgen.registry.resolve_model("ddpm", 64, digits.meta, timesteps=20, beta_schedule="cosine",
                                        hidden_dims=(32,), time_dim=8)
    assert spec.likelihood == "discretized_gaussian" and spec.num_levels == 17
    fit = ppgen.fit(spec, digits, inference.SVI(elbo="hybrid", steps=20, batch_size=64), backend="numpyro")
    x = fit.sample(6, seed=0)
    assert x.shape == (6, 8, 8) and x.dtype == np.int64 and 0 <= x.min() <= x.max() <= 16
    ll = fit.log_likelihood(digits.test[:20])
    bpd = fit.model.bits_per_dim("numpyro", fit.params, digits.test[:20])
    assert np.isfinite(ll).all() and (ll < 0).all()
    np.testing.assert_allclose(bpd, -ll / (64 * math.log(2)), rtol=1e-9)


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="timesteps must be at least 2"):
        models.DDPM(2, timesteps=1)
    with pytest.raises(ConfigError, match="cosine schedule.*reaches beta=1.*max_beta=0.999"):
        models.DDPM(2, beta_schedule="cosine", max_beta=None)
    with pytest.raises(ConfigError, match=r"every beta must lie in \(0, 1\)"):
        models.DDPM(2, timesteps=10)      # the linear defaults scaled by 1000/T reach 2.0
    spec = models.DDPM(2, timesteps=100, beta_schedule="cosine")
    for steps in (30, 200, 0):
        with pytest.raises(ConfigError, match="must divide T=100"):
            spec.ddim_timesteps(steps)
    with pytest.raises(ConfigError, match="halves the image"):
        models.DDPM(27 * 27, network="unet", unet_channels=(8, 16), image_shape=(27, 27))
    with pytest.raises(ConfigError, match="needs image_shape"):
        models.DDPM(50, network="unet")
    with pytest.raises(ConfigError, match="num_levels >= 2"):
        models.DDPM(64, likelihood="discretized_gaussian")
    with pytest.raises(DataError, match="outside the levels 0..16"):
        models.DDPM(64, likelihood="discretized_gaussian", num_levels=17).check_data(np.full((2, 64), 17.0))
    with pytest.raises(IncompatibleInference, match="not a diffusion model"):
        ppgen.fit(models.VAE(64), datasets.load("digits", view="binary"), inference.SVI(elbo="simple"))
    with pytest.raises(ConfigError, match="iwae.*elbo='simple'"):
        ppgen.fit(models.DDPM(2), datasets.load("ring"), inference.SVI(elbo="iwae"))
    with pytest.raises(ConfigError, match="kl_warmup/beta"):
        inference.SVI(elbo="simple", kl_warmup=10)
    with pytest.raises(ConfigError, match="sampler='ddim' for fewer"):
        spec.sample("pyro", _fixed_params(spec), 2, steps=10)
    with pytest.raises(ConfigError, match="eta must lie in"):
        spec.sample("pyro", _fixed_params(spec), 2, sampler="ddim", steps=10, eta=2.0)
    with pytest.raises(IncompatibleInference, match="NUTS cannot fit a DDPM"):
        ppgen.fit(models.DDPM(2), datasets.load("ring"), "nuts")


@pytest.mark.parametrize("backend", ["pyro"])  # the JAX bf16 U-Net: tests/models/test_nets_diffusion.py
def test_unet_ddpm_trains_in_bfloat16_and_samples_images(backend):
    """The U-Net DDPM on 28×28 images, its network in bfloat16 (torch autocast): finite losses,
    the same parameter names as float32, samples of the images' shape."""
    x = RNG.normal(size=(16, 28, 28)).clip(-1, 1).astype(np.float32)
    spec = models.DDPM(28 * 28, timesteps=10, beta_schedule="cosine", network="unet", image_shape=(28, 28),
                       unet_channels=(8, 16), time_dim=16, mixed_precision=True)
    fit = ppgen.fit(spec, x, inference.SVI(elbo="hybrid", steps=2, batch_size=8, lr=1e-3), backend=backend)
    assert all(np.isfinite(h["loss"]) for h in fit.history)
    assert set(fit.params) == set(spec.replace(mixed_precision=False).param_names("latent"))
    assert all(v.dtype == np.float32 for v in fit.params.values())
    samples = fit.sample(2, seed=0, sampler="ddim", steps=5)
    assert samples.shape == (2, 28, 28) and np.isfinite(samples).all()


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs CUDA")
def test_cuda_training_with_the_diffusion_losses():
    import torch

    data = datasets.load("ring")
    spec = models.DDPM(2, timesteps=100, hidden_dims=(32,))
    for loss in ("simple", "vlb", "hybrid"):
        fit = ppgen.fit(spec, data, inference.SVI(elbo=loss, steps=5, batch_size=64), backend="pyro", device="cuda")
        assert all(np.isfinite(h["loss"]) for h in fit.history)
    assert torch.cuda.is_available() and fit.sample(4, seed=0).shape == (4, 2)


def test_arviz_export_scores_the_bound_and_replicates_data():
    data = datasets.load("ring")
    spec = models.DDPM(2, timesteps=20, beta_schedule="cosine", hidden_dims=(16,), time_dim=8)
    fit = ppgen.fit(spec, data, inference.SVI(elbo="simple", steps=5, batch_size=64), backend="pyro")
    idata = fit.to_arviz(x=data.test[:30], num_predictive=1)
    np.testing.assert_allclose(np.asarray(idata.log_likelihood["x"]).reshape(-1), fit.log_likelihood(data.test[:30]))
    assert np.asarray(idata.posterior_predictive["x"]).shape == (1, 1, 30, 2)
