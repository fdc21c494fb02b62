"""VAE, CVAE and HVAE: bounds against exact likelihoods, backend agreement, networks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import ppgen
from ppgen import datasets, inference, models
from ppgen.errors import ConfigError, DataError, IncompatibleInference
from ppgen.models.nets import MLP, ConvDecoder, ConvEncoder, ops_for

RNG = np.random.default_rng(0)


def _linear_vae():
    """A VAE with linear networks and a fixed Gaussian noise: its marginal is PPCA's,
    x ~ N(b, W Wᵀ + σ² I) with W, b the decoder's weight and bias."""
    spec = models.VAE(3, latent_dim=2, hidden_dims=(), likelihood="gaussian", observation_scale=0.7)
    rng = np.random.default_rng(1)
    params = {"encoder.0.weight": rng.normal(0, 0.3, (4, 3)).astype(np.float32),
              "encoder.0.bias": np.array([0.1, -0.2, 0.3, 0.0], np.float32),
              "decoder.0.weight": rng.normal(0, 1.0, (3, 2)).astype(np.float32),
              "decoder.0.bias": np.array([0.5, -1.0, 0.2], np.float32)}
    W, b = params["decoder.0.weight"].astype(np.float64), params["decoder.0.bias"].astype(np.float64)
    x = rng.multivariate_normal(b, W @ W.T + 0.49 * np.eye(3), size=40).astype(np.float32)
    exact = scipy.stats.multivariate_normal(b, W @ W.T + 0.49 * np.eye(3)).logpdf(x.astype(np.float64))
    return spec, params, x, exact


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_iwae_bound_below_exact_likelihood_and_tightens_with_k(backend):
    spec, params, x, exact = _linear_vae()
    repeats = 200
    gaps, errors = [], []
    for k in (1, 10, 100):
        lw = spec.log_weights(backend, params, x, k * repeats, seed=k).reshape(repeats, k, -1)
        top = lw.max(axis=1, keepdims=True)
        bound = (top[:, 0] + np.log(np.mean(np.exp(lw - top), axis=1))).mean(axis=1)  # (repeats,) batch means
        gap = exact.mean() - bound
        gaps.append(gap.mean())
        errors.append(gap.std(ddof=1) / np.sqrt(repeats))
        assert gap.mean() > -3 * errors[-1], f"IWAE_{k} exceeds log p(x): gap {gap.mean()} ± {errors[-1]}"
    assert gaps[0] > gaps[1] + 3 * (errors[0] + errors[1])
    assert gaps[1] > gaps[2] + 3 * (errors[1] + errors[2])
    assert gaps[2] < 0.25 * gaps[0]
    # log_likelihood with more samples is tighter still, and still a lower bound
    ll = spec.log_likelihood(backend, params, x, num_samples=5000, seed=3)
    assert -0.05 < exact.mean() - ll.mean() < gaps[2] + 3 * errors[2]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_iwae_loss_is_per_example_not_pooled_over_the_batch(backend):
    """SVI(elbo="iwae") evaluates -mean_n log (1/K) Σ_k w_nk; the pooled bound of the backends'
    RenyiELBO, log (1/K) Σ_k Π_n w_nk, is far looser on a batch of 40 examples."""
    spec, params, x, _ = _linear_vae()
    data = datasets.from_arrays(x)
    k = 2000
    fit = ppgen.fit(spec, data, inference.SVI(elbo="iwae", num_particles=k, steps=1, lr=1e-9), backend=backend)
    lw = spec.log_weights(backend, fit.params, x, k, seed=11)
    top = lw.max(axis=0)
    per_example = np.mean(top + np.log(np.mean(np.exp(lw - top), axis=0)))
    total = lw.sum(axis=1)
    pooled = (total.max() + np.log(np.mean(np.exp(total - total.max())))) / x.shape[0]
    loss = fit.history[-1]["loss"]  # -bound per example, with the parameters before the (tiny) step
    np.testing.assert_allclose(-loss, per_example, atol=0.05)
    assert per_example - pooled > 0.2


def test_backends_agree_on_the_same_parameters():
    spec = models.CVAE(64, latent_dim=4, hidden_dims=(32,), likelihood="categorical", num_levels=17)
    rng = np.random.default_rng(2)
    params = {}
    for i, (name, net) in enumerate(spec.networks().items()):
        params.update({f"{name}.{k}": v for k, v in net.init(i).items()})
    x = rng.integers(0, 17, (20, 64))
    y = rng.integers(0, 10, 20)
    z = rng.normal(size=(20, 4))
    for what in ("encode",):
        a = getattr(spec, what)("pyro", params, x, labels=y)
        b = getattr(spec, what)("numpyro", params, x, labels=y)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(spec.decode("pyro", params, z, labels=y), spec.decode("numpyro", params, z, labels=y),
                               rtol=1e-4, atol=1e-4)
    ll_pyro = spec.log_likelihood("pyro", params, x, num_samples=1000, labels=y)
    ll_jax = spec.log_likelihood("numpyro", params, x, num_samples=1000, labels=y, seed=5)
    np.testing.assert_allclose(ll_pyro.mean(), ll_jax.mean(), atol=0.3)


def test_networks_match_across_backends():
    import jax.numpy as jnp
    import torch

    x = RNG.normal(size=(2, 3, 28 * 28)).astype(np.float32)  # two leading (particle) dims
    for net, inp in [(MLP(784, (16, 8), 5, "gelu"), x),
                     (ConvEncoder((28, 28, 1), 6, (4, 8), extra_dim=3, hidden_dim=16), x),
                     (ConvDecoder((32, 32, 3), 5, values_per_pixel=4, channels=(4, 8), hidden_dim=16),
                      RNG.normal(size=(2, 3, 5)).astype(np.float32))]:
        params = net.init(seed=0)
        extra = RNG.normal(size=inp.shape[:-1] + (3,)).astype(np.float32) if isinstance(net, ConvEncoder) else None
        a = net.apply(ops_for("pyro"), {k: torch.as_tensor(v) for k, v in params.items()}, torch.as_tensor(inp),
                      None if extra is None else torch.as_tensor(extra)).numpy()
        b = np.asarray(net.apply(ops_for("numpyro"), {k: jnp.asarray(v) for k, v in params.items()},
                                 jnp.asarray(inp), None if extra is None else jnp.asarray(extra)))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert a.shape == (2, 3, 32 * 32 * 3, 4)


def test_conv_vae_fits_images_channels_last():
    x = (RNG.random((64, 32, 32, 3)) > 0.5).astype(np.float32)
    spec = models.VAE(32 * 32 * 3, latent_dim=4, hidden_dims=(32,), network="conv", image_shape=(32, 32, 3),
                      conv_channels=(4, 8))
    fit = ppgen.fit(spec, x, inference.SVI(elbo="meanfield", steps=3, batch_size=32), backend="pyro")
    assert fit.sample(2).shape == (2, 32, 32, 3)
    assert fit.reconstruct(x[:2]).shape == (2, 32, 32, 3)
    assert np.isfinite(fit.log_likelihood(x[:4], num_samples=4)).all()


def test_kl_warmup_schedule_in_history():
    data = datasets.load("digits", view="binary")
    spec = models.VAE(64, latent_dim=2, hidden_dims=(16,))
    fit = ppgen.fit(spec, data, inference.SVI(elbo="meanfield", steps=6, batch_size=100, kl_warmup=4, beta=0.5),
                    backend="pyro")
    np.testing.assert_allclose([h["beta"] for h in fit.history], [0.125, 0.25, 0.375, 0.5, 0.5, 0.5])


def test_cvae_learns_its_labels_and_arviz_export():
    """A short CVAE fit already makes samples the shipped classifier reads as their labels."""
    data = datasets.load("digits", view="categorical")
    spec = models.CVAE(64, latent_dim=8, hidden_dims=(128,), likelihood="categorical", num_levels=17)
    fit = ppgen.fit(spec, data, inference.SVI(elbo="meanfield", epochs=40, batch_size=50, lr=3e-3), backend="pyro")
    labels = np.repeat(np.arange(10), 20)
    samples = fit.sample(200, labels=labels, seed=1)
    assert samples.shape == (200, 8, 8) and samples.dtype == np.int64
    accuracy = ppgen.metrics.conditional_accuracy(samples, labels)
    assert accuracy.overall >= 0.8, accuracy
    means = fit.sample(200, labels=labels, seed=1, mean=True)   # the decoder's expected image given z, y
    assert means.shape == (200, 8, 8) and means.dtype == np.float64 and 0 <= means.min() <= means.max() <= 16
    assert ppgen.metrics.conditional_accuracy(means, labels).overall >= accuracy.overall
    ll = fit.log_likelihood(data.test[:50], labels=data.labels.test[:50], num_samples=100)
    assert np.isfinite(ll).all() and -150 < ll.mean() < -60
    idata = fit.to_arviz(x=data.test[:6], labels=data.labels.test[:6], num_predictive=30)
    assert idata.posterior["z"].dims == ("chain", "draw", "example", "latent")
    assert idata.posterior["z"].shape == (1, 30, 6, 8)
    assert idata.posterior_predictive["x"].shape == (1, 30, 6, 64)
    summary = ppgen.arviz.summary(idata, var_names=["z"])
    assert len(summary) == 6 * 8


def test_save_load_round_trip(tmp_path):
    data = datasets.load("digits", view="binary")
    fit = ppgen.fit("vae", data, inference.SVI(steps=3, batch_size=100), backend="pyro", latent_dim=2,
                    hidden_dims=(16,), run_dir=tmp_path / "run")
    assert fit.model.likelihood == "bernoulli"  # from the data's meta
    loaded = ppgen.load(tmp_path / "run")
    np.testing.assert_allclose(loaded.log_likelihood(data.test[:5], num_samples=20),
                               fit.log_likelihood(data.test[:5], num_samples=20), rtol=1e-6)


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(DataError, match="values other than 0 and 1.*view='binary'"):
        ppgen.fit(models.VAE(64), datasets.load("digits"), "svi", backend="pyro")
    spec = models.VAE(64, likelihood="categorical", num_levels=10)
    with pytest.raises(DataError, match="value 1[0-6].*outside the levels 0..9.*raise num_levels"):
        ppgen.fit(spec, datasets.load("digits", view="categorical"), "svi", backend="pyro")
    with pytest.raises(DataError, match="0..16.*integer codes"):
        models.VAE(64, likelihood="categorical", num_levels=17).check_data(np.full((2, 64), 0.5))
    cvae = models.CVAE(64, likelihood="categorical", num_levels=17)
    x = datasets.load("digits", view="categorical").train
    with pytest.raises(DataError, match="needs a label per example.*labels"):
        ppgen.fit(cvae, datasets.from_arrays(x), "svi", backend="pyro")
    with pytest.raises(DataError, match="contain 12, outside 0..9"):
        ppgen.fit(cvae, datasets.from_arrays(x, labels=np.full(len(x), 12)), "svi", backend="pyro")
    with pytest.raises(ConfigError, match="num_levels >= 2"):
        models.VAE(64, likelihood="categorical")
    with pytest.raises(ConfigError, match="image_shape.*divisible by 4|height and width divisible by 4"):
        models.VAE(30 * 30, network="conv", image_shape=(30, 30))
    with pytest.raises(ConfigError, match="holds 784 values but the data have 1024"):
        models.VAE(1024, network="conv", image_shape=(28, 28))
    with pytest.raises(ConfigError, match="at least two layers"):
        models.HVAE(64, latent_dims=(8,))
    with pytest.raises(ConfigError, match="no closed form.*elbo='trace'"):
        ppgen.fit(models.HVAE(64), datasets.load("digits", view="binary"), inference.SVI(elbo="meanfield"))
    with pytest.raises(IncompatibleInference, match="NUTS cannot sample a VAE's per-example latents.*SVI"):
        ppgen.fit(models.VAE(64), datasets.load("digits", view="binary"), "nuts")
    with pytest.raises(ConfigError, match=r"mean=True\) applies to families with a decoder"):
        ppgen.fit(models.PPCA(64, 2), datasets.load("digits"), "closed_form").sample(3, mean=True)
    with pytest.raises(ConfigError, match="sums discrete latents out"):
        inference.SVI(elbo="enum", kl_warmup=100)
    with pytest.raises(ConfigError, match="not one of"):
        models.VAE(64, activation="swish")


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs CUDA")
def test_cuda_training_keeps_data_and_parameters_on_the_gpu():
    data = datasets.load("digits", view="binary")
    seen = []

    def check(event):
        seen.append(event.step)

    fit = ppgen.fit(models.VAE(64, latent_dim=4, hidden_dims=(32,)), data, inference.SVI(steps=5, batch_size=100),
                    backend="pyro", device="cuda", callbacks=[check])
    assert seen == [1, 2, 3, 4, 5]
    assert np.isfinite(fit.log_likelihood(data.test[:10], num_samples=10)).all()


@pytest.mark.parametrize("elbo", ["meanfield", "trace"])
def test_lean_pyro_elbo_equals_pyros_own_loss_and_gradient(elbo):
    """The reparameterised fast path gives Pyro's Trace(MeanField)_ELBO value and gradient on
    the same draws: a minibatch (plate scaling), a β weight, and a two-layer HVAE."""
    import pyro
    import torch

    from ppgen.backends import get_backend

    be = get_backend("pyro")
    x = RNG.integers(0, 17, (30, 64)).astype(np.float32)
    own = {"meanfield": pyro.infer.TraceMeanField_ELBO(), "trace": pyro.infer.Trace_ELBO()}[elbo]
    specs = [models.VAE(64, latent_dim=3, hidden_dims=(16,), likelihood="categorical", num_levels=17)]
    if elbo == "trace":
        specs.append(models.HVAE(64, latent_dims=(4, 2), hidden_dims=(8,), likelihood="categorical", num_levels=17))
    for spec in specs:
        program = spec.build("pyro", "latent", data=np.zeros((300, 64), np.float32))
        model, guide = program.for_batches(program.model), program.for_batches(program.guide)
        batch = {"x": torch.as_tensor(x), "index": torch.arange(30)}
        with pyro.get_param_store().scope():
            assert be.all_reparameterized(model, guide, batch)
            results = []
            for fn in (lambda: own.differentiable_loss(model, guide, **batch),
                       lambda: be.reparam_elbo_loss(model, guide, batch, elbo == "meanfield")):
                torch.manual_seed(3)
                with be.scale_latents(0.3):
                    loss = fn()
                params = list(pyro.get_param_store()._params.values())
                grads = torch.autograd.grad(loss, params)
                results.append((loss.item(), torch.cat([g.flatten() for g in grads])))
        assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-3)


def test_lean_pyro_elbo_is_not_used_for_discrete_or_score_function_guides():
    import pyro
    import pyro.distributions as dist
    import torch

    from ppgen.backends import get_backend

    def model(x):
        k = pyro.sample("k", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(k, 1.0), obs=x)

    def guide(x):
        pyro.sample("k", dist.Bernoulli(pyro.param("p", torch.tensor(0.5))))

    with pyro.get_param_store().scope():
        assert not get_backend("pyro").all_reparameterized(model, guide, {"x": torch.tensor(0.0)})


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_ema_of_parameters_is_the_fits_result(backend):
    """With SVI(ema=d) the fit's parameters are e_t = d·e_{t−1} + (1 − d)·θ_t, e_0 = θ_0, over
    the raw parameters θ_t the optimiser produced (recomputed here from the raw trajectory)."""
    from ppgen.backends import get_backend

    spec = models.VAE(64, latent_dim=2, hidden_dims=(8,), dropout=0.2, likelihood="categorical", num_levels=17)
    x = RNG.integers(0, 17, (40, 64)).astype(np.float32)
    alg = inference.SVI(elbo="meanfield", steps=5, batch_size=20, lr=0.05, ema=0.6)
    be = get_backend(backend)
    program = spec.build(backend, "latent", data=x)
    batch = {"x": be.asarray(x[:20]), "index": be.ppl.index(np.arange(20))}

    kernel = alg.bind(program)

    def raw(state):
        if backend == "pyro":
            return {k: v.detach().numpy().copy() for k, v in state.params.items()}
        return {k: np.asarray(v) for k, v in kernel.engine.optim.get_params(state.svi_state.optim_state).items()}

    state = kernel.init(batch, seed=0)
    ema = raw(state)
    for _ in range(5):
        state, _ = kernel.step(state, batch)
        ema = {k: 0.6 * ema[k] + 0.4 * v for k, v in raw(state).items()}
        assert not np.allclose(raw(state)["decoder.0.weight"], ema["decoder.0.weight"])
    params = kernel.result(state).params
    for k in ema:
        np.testing.assert_allclose(params[k], ema[k], rtol=1e-5, atol=1e-6)
    assert alg.ema_decay_at(0) == 0.6
    assert inference.SVI(ema=0.999, ema_warmup=True).ema_decay_at(0) == pytest.approx(0.1)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_dropout_only_in_training_mode(backend):
    net = MLP(10, (400,), 400, "relu", dropout=0.25)
    ops = ops_for(backend)
    params = {k: ops.xp.asarray(v) for k, v in net.init(seed=1).items()}
    x = ops.xp.asarray(RNG.normal(size=(50, 10)).astype(np.float32))
    hidden = MLP(10, (400,), 400, "relu")
    assert np.allclose(np.asarray(net.apply(ops, params, x)), np.asarray(hidden.apply(ops, params, x)))
    if backend == "numpyro":
        import numpyro

        with pytest.raises(RuntimeError, match="random key"):
            net.apply(ops, params, x, training=True)
        seeded = numpyro.handlers.seed(rng_seed=0)
    else:
        import contextlib

        seeded = contextlib.nullcontext()
    with seeded:
        a, b = np.asarray(net.apply(ops, params, x, training=True)), np.asarray(net.apply(ops, params, x, training=True))
        h = np.asarray(ops.dropout(ops.xp.ones((200, 400)), 0.25, training=True))
        assert np.allclose(np.asarray(net.apply(ops, params, x)), np.asarray(hidden.apply(ops, params, x)))
    assert not np.allclose(a, b)
    assert np.mean(h == 0) == pytest.approx(0.25, abs=0.01)
    assert set(np.unique(h)) == {0.0, np.float32(1 / 0.75)}
    with pytest.raises(ConfigError, match="dropout"):
        MLP(3, (4,), 2, dropout=1.0)
    with pytest.raises(ConfigError, match="dropout"):
        models.VAE(64, dropout=-0.1)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_iwae_weights_with_warmup_weight_only_the_latent_terms(backend):
    """Under KL warm-up, log w = log p(x|z) + β (log p(z) − log q(z|x)) per example: linear in β
    on the same draws, and the latent terms count (β = 0 and β = 1 differ)."""
    import contextlib

    from ppgen.backends import get_backend

    be = get_backend(backend)
    spec = models.VAE(64, latent_dim=3, hidden_dims=(8,), likelihood="categorical", num_levels=17)
    x = RNG.integers(0, 17, (12, 64)).astype(np.float32)
    program = spec.build(backend, "latent", data=np.zeros((120, 64), np.float32))
    model, guide = program.for_batches(program.model), program.for_batches(program.guide)
    batch = {"x": be.asarray(x), "index": be.ppl.index(np.arange(12))}
    params = {}
    for i, (name, net) in enumerate(spec.networks().items()):
        params.update({f"{name}.{k}": v for k, v in net.init(i).items()})

    def local(beta):
        with be.scale_latents(beta) if beta is not None else contextlib.nullcontext():
            if backend == "pyro":
                import torch

                with be.params_in_store(params), torch.no_grad():
                    torch.manual_seed(0)
                    return be.log_weights(model, guide, batch, 4, -2)["local"].numpy()
            import jax

            jparams = {k: jax.numpy.asarray(v) for k, v in params.items()}
            return np.asarray(be.log_weights(model, guide, batch, 4, -2, jax.random.PRNGKey(0), jparams)["local"])

    w0, w1, w3 = local(0.0), local(None), local(0.3)
    assert w0.shape == (4, 12)
    np.testing.assert_allclose(w3, w0 + 0.3 * (w1 - w0), rtol=1e-4, atol=1e-3)
    assert not np.allclose(w1, w0)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_svi_steps_run_the_networks_in_training_mode_and_evaluation_does_not(backend, digits):
    """The training flag reaches the networks explicitly: at the same seed and (almost) the same
    parameters, dropout changes the loss of the optimisation steps, and no score after the fit."""
    data = datasets.from_arrays(digits.train[:200].reshape(200, -1) // 2, labels=None)

    def fitted(rate):
        spec = models.VAE(64, latent_dim=4, hidden_dims=(32,), dropout=rate, likelihood="categorical", num_levels=9)
        return ppgen.fit(spec, data, inference.SVI(elbo="meanfield", steps=2, batch_size=100, lr=1e-7),
                         backend=backend, seed=0, progress=False)

    plain, dropped = fitted(0.0), fitted(0.5)
    assert abs(plain.history[0]["loss"] - dropped.history[0]["loss"]) > 0.1  # identical if dropout were off
    x = data.train[:20]
    np.testing.assert_allclose(dropped.log_likelihood(x, num_samples=8, seed=1),
                               dropped.log_likelihood(x, num_samples=8, seed=1))
    np.testing.assert_allclose(dropped.log_likelihood(x, num_samples=8, seed=1),
                               plain.log_likelihood(x, num_samples=8, seed=1), atol=0.05)


def test_for_batches_passes_training_to_the_functions_that_take_it():
    program = models.VAE(4, latent_dim=2, hidden_dims=(3,)).build("pyro", "latent", data=np.zeros((5, 4), np.float32))
    seen = {}

    def takes(x, training=False):
        seen["takes"] = training

    def ignores(x):
        seen["ignores"] = True

    program.for_batches(takes, training=True)(x=1)
    program.for_batches(ignores, training=True)(x=1)
    program.for_batches(takes)(x=1, index=None)
    assert seen == {"takes": False, "ignores": True}
    program.for_batches(takes, training=True)(x=1)
    assert seen["takes"] is True
