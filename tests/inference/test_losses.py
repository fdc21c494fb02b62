"""Losses as objects with one call shape, ``loss(program, params, batch, rng) -> (value, metrics)``:
the string shorthands equal their objects, a person's own losses (β-VAE, InfoVAE, a least-squares
GAN) fit in both backends, and bad losses are refused."""

import numpy as np
import pytest

import ppgen
from ppgen import inference, models
from ppgen.errors import ConfigError
from ppgen.inference.adversarial import mmd_penalty, random_source

BACKENDS = ["pyro", "numpyro"]
RNG = np.random.default_rng(0)
X = (RNG.random((96, 8)) < 0.3).astype(np.float32)          # binary rows for a tiny VAE
GMM_X = np.concatenate([RNG.normal(-2, 0.5, (40, 2)), RNG.normal(2, 0.5, (40, 2))]).astype(np.float32)
DDPM_X = RNG.normal(size=(64, 2)).astype(np.float32)


def _vae():
    return models.VAE(8, latent_dim=2, hidden_dims=(8,), likelihood="bernoulli")


# name -> (model, data, SVI options of the shorthand, the object it names)
CASES = {
    "trace": (_vae, X, {"num_particles": 2, "beta": 0.5}, inference.MonteCarloELBO(num_particles=2, beta=0.5)),
    "meanfield": (_vae, X, {"beta": 2.0}, inference.AnalyticKLELBO(beta=2.0)),
    "iwae": (_vae, X, {"num_particles": 3}, inference.ImportanceWeightedELBO(num_particles=3)),
    "renyi": (_vae, X, {"num_particles": 3, "alpha": 0.5}, inference.RenyiELBO(alpha=0.5, num_particles=3)),
    "enum": (lambda: models.GMM(2, 2), GMM_X, {}, inference.EnumeratedELBO()),
    "simple": (lambda: models.DDPM(2, timesteps=10, beta_schedule="cosine", hidden_dims=(8,), time_dim=4), DDPM_X, {},
               inference.DiffusionLoss("simple")),
    "hybrid": (lambda: models.DDPM(2, timesteps=10, beta_schedule="cosine", hidden_dims=(8,), time_dim=4), DDPM_X, {"hybrid_weight": 0.1},
               inference.DiffusionLoss("hybrid", hybrid_weight=0.1)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES) + ["vlb"])
def test_a_shorthand_equals_its_object_in_value_and_gradient(name, backend):
    """Two steps from the same seed: the same losses (values on the same draws) and the same
    parameters after Adam (the same gradients), and the same checkpoint signature."""
    make, x, options, obj = CASES.get(name, CASES["hybrid"])
    if name == "vlb":
        options, obj = {}, inference.DiffusionLoss("vlb")
    assert inference.resolve_loss(name, **options) == obj
    by_name = inference.SVI(elbo=name, steps=2, batch_size=32, lr=0.05, **options)
    by_object = inference.SVI(elbo=obj, steps=2, batch_size=32, lr=0.05)
    assert by_name.state_signature() == by_object.state_signature()
    a = ppgen.fit(make(), x, by_name, backend=backend, seed=3)
    b = ppgen.fit(make(), x, by_object, backend=backend, seed=3)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-6)
    assert np.isfinite(a.history[-1]["loss"])
    assert set(a.params) == set(b.params) and a.params
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_trace_object_is_the_backends_own_elbo_on_the_same_draws(backend):
    """Called by hand, MonteCarloELBO gives the backend's Trace_ELBO value and gradient."""
    spec = _vae()
    program = spec.build(backend, "latent", data=X)
    params = {}
    for i, (name, net) in enumerate(spec.networks().items()):
        params.update({f"{name}.{k}": v for k, v in net.init(i).items()})
    loss = inference.resolve_loss("trace")
    if backend == "numpyro":
        import jax
        import jax.numpy as jnp
        import numpyro.infer

        batch = {"x": jnp.asarray(X[:16]), "index": jnp.arange(16), "num_data": 96}
        jparams = {k: jnp.asarray(v) for k, v in params.items()}
        key = jax.random.PRNGKey(1)
        ours = jax.value_and_grad(lambda p: loss(program, p, batch, key)[0])(jparams)
        own = jax.value_and_grad(lambda p: numpyro.infer.Trace_ELBO().loss(key, p, program.model, program.guide,
                                                                          **batch))(jparams)
        np.testing.assert_allclose(ours[0], own[0], rtol=1e-6)
        for k in jparams:
            np.testing.assert_allclose(ours[1][k], own[1][k], rtol=1e-5, atol=1e-6)
        return
    import pyro
    import torch

    from ppgen.backends._pyro import params_in_store

    batch = {"x": torch.as_tensor(X[:16]), "index": torch.arange(16), "num_data": 96}
    with params_in_store(params):
        store = dict(pyro.get_param_store().items())
        results = []
        for fn in (lambda: loss(program, store, batch, 7)[0],
                   lambda: pyro.infer.Trace_ELBO().differentiable_loss(program.model, program.guide, **batch)):
            torch.manual_seed(7)
            value = fn()
            grads = torch.autograd.grad(value, list(store.values()))
            results.append((value.item(), grads))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for g0, g1 in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g0, g1)


# ---- a person's own losses ---------------------------------------------------------------------
class BetaVAE:
    """The β-VAE objective, −E[log p(x|z)] + β KL, from the ELBO's pieces."""

    name = "beta_vae"

    def __init__(self, beta):
        self.beta = beta

    def __call__(self, program, params, batch, rng):
        t = inference.elbo_terms(program, params, batch, rng)
        kl = t.log_guide - t.log_prior
        return -(t.log_likelihood - self.beta * kl), {"kl": kl}


class InfoVAE:
    """InfoVAE (Zhao et al. 2019): −E[log p(x|z)] + (1 − α) KL + (α + λ − 1) MMD, the MMD between the
    codes of the batch (samples of the aggregate q(z)) and as many prior draws, scaled to the data."""

    name = "info_vae"

    def __init__(self, alpha=0.0, lam=10.0):
        self.alpha, self.lam = alpha, lam

    def __call__(self, program, params, batch, rng):
        t = inference.elbo_terms(program, params, batch, rng)
        kl = t.log_guide - t.log_prior
        mmd = mmd_penalty(t.latents["z"], t.prior_draws["z"], bandwidth=2.0 * t.latents["z"].shape[-1])
        value = -t.log_likelihood + (1 - self.alpha) * kl + (self.alpha + self.lam - 1) * program.num_data * mmd
        return value, {"mmd": mmd}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", [BetaVAE(4.0), InfoVAE(alpha=0.0, lam=10.0)], ids=["beta_vae", "info_vae"])
def test_a_persons_own_loss_fits_a_vae(loss, backend):
    fit = ppgen.fit(_vae(), X, inference.SVI(elbo=loss, steps=150, batch_size=48, lr=0.03), backend=backend, seed=0)
    losses = np.array([h["loss"] for h in fit.history])
    assert np.isfinite(losses).all()
    assert losses[-20:].mean() < losses[:5].mean() - 0.3, (losses[:5].mean(), losses[-20:].mean())
    metric = "kl" if isinstance(loss, BetaVAE) else "mmd"
    assert np.isfinite(fit.history[-1][metric])
    assert fit.inference.state_signature()["elbo"] == loss.name


class WeightDecay:
    """The ELBO plus an L2 penalty on the decoder's weights, read from ``params`` (which, in Pyro,
    holds the parameters the program has made, from its very first call)."""

    name = "weight_decay"

    def __call__(self, program, params, batch, rng):
        value, _ = inference.resolve_loss("meanfield")(program, params, batch, rng)
        l2 = (params["decoder.0.weight"] ** 2).sum()  # by name, on the first call too
        return value + 1e-2 * l2, {"l2": l2}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_persons_loss_reads_the_parameters(backend):
    fit = ppgen.fit(_vae(), X, inference.SVI(elbo=WeightDecay(), steps=3, batch_size=32), backend=backend, seed=0)
    expected = float((fit.params["decoder.0.weight"] ** 2).sum())
    assert [h["l2"] > 0 for h in fit.history] == [True] * 3
    assert fit.history[-1]["l2"] == pytest.approx(expected, rel=0.05)  # one Adam step before the fit's end


def _svi_fit(loss, backend):
    return ppgen.fit(_vae(), X, inference.SVI(elbo=loss, steps=2, batch_size=32), backend=backend)


class PerExample:
    name = "per_example"

    def __call__(self, program, params, batch, rng):
        value, _ = inference.resolve_loss("trace")(program, params, batch, rng)
        return value * batch["x"][:, 0], {}  # one value per row: not a loss


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loss_that_is_not_one_number_is_refused(backend):
    with pytest.raises(ConfigError, match=r"'per_example' returned a value of shape \(32,\).*sum it"):
        _svi_fit(PerExample(), backend)

    def bare(program, params, batch, rng):
        return inference.resolve_loss("trace")(program, params, batch, rng)[0]

    with pytest.raises(ConfigError, match=r"'bare' returned an array of shape \(\).*\(value, metrics\)"):
        _svi_fit(bare, backend)


def test_unknown_names_and_misplaced_options_are_refused():
    with pytest.raises(ConfigError, match="unknown loss 'iwea'. Did you mean 'iwae'.*'meanfield'.*'hinge'"):
        inference.SVI(elbo="iwea")
    with pytest.raises(ConfigError, match="unknown loss 'hindge'. Did you mean 'hinge'"):
        inference.resolve_loss("hindge")
    with pytest.raises(ConfigError, match="Adversarial\\(loss='hinge'\\)"):
        inference.SVI(elbo="hinge")
    with pytest.raises(ConfigError, match="unknown adversarial loss 'trace'"):
        inference.Adversarial(loss="trace")
    with pytest.raises(ConfigError, match="carries its own options"):
        inference.SVI(elbo=BetaVAE(2.0), num_particles=4)
    with pytest.raises(ConfigError, match="has no option 'alpha'"):
        inference.resolve_loss("trace", alpha=0.5)
    with pytest.raises(ConfigError, match="a custom loss weights its own terms"):
        inference.SVI(elbo=BetaVAE(2.0), kl_warmup=10)


def test_a_persons_loss_is_recorded_by_name_and_built_ins_come_back():
    import json

    from ppgen.config import CodeReference
    from ppgen.registry import inference_from_config

    def back(obj):
        return inference_from_config(json.loads(json.dumps(obj.to_config())))

    svi = inference.SVI(elbo=inference.RenyiELBO(alpha=0.3, num_particles=4))
    assert back(svi) == svi
    mine = back(inference.SVI(elbo=BetaVAE(2.0)))
    assert mine.elbo == CodeReference("beta_vae") and mine.state_signature()["elbo"] == "beta_vae"
    game = inference.Adversarial(loss=inference.AdversarialLoss("wgan-gp", gradient_penalty=0.1))
    assert back(game) == game


# ---- adversarial games ----------------------------------------------------------------------------
class LeastSquaresGame:
    """LSGAN (Mao et al. 2017): the critic regresses data to 1 and samples to 0, the generator its
    samples to 1; written against the model's Game in a few lines, both backends."""

    name = "least_squares"

    class _Discriminator:
        name = "least_squares:discriminator"

        def __call__(self, program, params, batch, rng):
            game = program.extras["game"]
            rand = random_source(program, rng, batch["x"])
            fake, fake_cond = game.fake(params, batch, rand)
            real, real_cond = game.real(params, batch, rand)
            s_real, s_fake = game.critic(params, real, real_cond), game.critic(params, fake, fake_cond)
            return 0.5 * (((s_real - 1.0) ** 2).mean() + (s_fake ** 2).mean()), {"penalty": 0.0 * s_fake.mean(),
                                                                                  "real_score": s_real.mean()}

    class _Generator:
        name = "least_squares:generator"

        def __call__(self, program, params, batch, rng):
            game = program.extras["game"]
            fake, cond = game.fake(params, batch, random_source(program, rng, batch["x"]))
            scores = game.critic(params, fake, cond)
            return 0.5 * ((scores - 1.0) ** 2).mean(), {"fake_score": scores.mean()}

    discriminator = _Discriminator()
    generator = _Generator()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_persons_adversarial_game_trains_a_gan(backend):
    x = RNG.normal(1.5, 0.5, (512, 1)).astype(np.float32)
    spec = models.GAN(1, latent_dim=1, hidden_dims=(16,), output="identity")
    alg = inference.Adversarial(loss=LeastSquaresGame(), steps=150, batch_size=64, lr_generator=3e-3,
                                lr_discriminator=3e-3)
    fit = ppgen.fit(spec, x, alg, backend=backend, seed=0)
    assert fit.inference.critic_steps == 1 and fit.inference.loss.name == "least_squares"
    g = np.array([h["generator_loss"] for h in fit.history])
    d = np.array([h["discriminator_loss"] for h in fit.history])
    assert np.isfinite(g).all() and np.isfinite(d).all()
    # the players' own metrics join the history (the discriminator's averaged over its updates)
    fake_score = np.array([h["fake_score"] for h in fit.history])
    real_score = np.array([h["discriminator_real_score"] for h in fit.history])
    assert np.isfinite(real_score).all() and real_score.std() > 0
    assert (g >= 0.5 * (fake_score - 1.0) ** 2 - 1e-5).all()  # Jensen: mean of squares >= square of the mean
    untrained = {f"{name}.{k}": v for i, (name, net) in enumerate(spec.networks().items())
                 for k, v in net.init(i).items()}
    start = spec.sample(backend, untrained, 2000, seed=1)[:, 0]  # the untrained generator
    s = fit.sample(2000, seed=1)[:, 0]
    assert abs(s.mean() - 1.5) < abs(start.mean() - 1.5) - 0.3, (start.mean(), s.mean())
    with pytest.raises(ConfigError, match="carries its own"):
        inference.Adversarial(loss=LeastSquaresGame(), gradient_penalty=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_players_loss_is_a_loss_object(backend):
    """The built-in game's player losses have the one call shape; the string and the object agree."""
    game = inference.resolve_loss("wgan-gp")
    assert game == inference.AdversarialLoss("wgan-gp") and game.discriminator.gradient_penalty == 10.0
    spec = models.GAN(1, latent_dim=1, hidden_dims=(4,), output="identity")
    x = RNG.normal(size=(64, 1)).astype(np.float32)
    a = ppgen.fit(spec, x, inference.Adversarial(loss="wgan-gp", steps=2, batch_size=16), backend=backend, seed=1)
    b = ppgen.fit(spec, x, inference.Adversarial(loss=game, steps=2, batch_size=16), backend=backend, seed=1)
    assert a.inference.critic_steps == b.inference.critic_steps == 5
    assert a.inference.gradient_penalty == b.inference.gradient_penalty == 10.0
    for key in ("generator_loss", "discriminator_loss", "penalty"):
        assert [h[key] for h in a.history] == pytest.approx([h[key] for h in b.history], rel=1e-6)
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-6, atol=1e-7)
