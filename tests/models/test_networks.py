"""A person's own networks in the families (ppgen.networks): torch.nn.Module in Pyro, Equinox in NumPyro."""

import numpy as np
import pytest

import ppgen
from ppgen import datasets, inference, models
from ppgen.errors import CheckpointError, ConfigError
from ppgen.networks import EquinoxNetwork, TorchNetwork, as_network

torch = pytest.importorskip("torch")
eqx = pytest.importorskip("equinox")
jax = pytest.importorskip("jax")
jnp = jax.numpy


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", view="categorical")


def _torch_pair(latent=4, hidden=16, seed=0):
    torch.manual_seed(seed)
    encoder = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2 * latent))
    decoder = torch.nn.Sequential(torch.nn.Linear(latent, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 64 * 17))
    return encoder, decoder


def _equinox_pair(latent=4, hidden=16, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return eqx.nn.MLP(64, 2 * latent, hidden, 1, key=k1), eqx.nn.MLP(latent, 64 * 17, hidden, 1, key=k2)


def _vae(encoder, decoder, latent=4):
    return models.VAE(64, latent_dim=latent, likelihood="categorical", num_levels=17, encoder=encoder, decoder=decoder)


# ---- the adapters ------------------------------------------------------------------------------
def test_a_torch_module_runs_as_itself_over_any_leading_dimensions():
    encoder, _ = _torch_pair()
    net = as_network(encoder)
    assert isinstance(net, TorchNetwork) and net.backend == "pyro"
    assert net.shapes() == {"0.weight": (16, 64), "0.bias": (16,), "2.weight": (8, 16), "2.bias": (8,)}
    params = {k: torch.as_tensor(v) for k, v in net.init(0).items()}
    x = torch.randn(3, 5, 64)
    out = net.apply(models.nets.ops_for("pyro"), params, x)
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out, encoder(x.reshape(15, 64)).reshape(3, 5, 8).detach())
    # the parameters passed in are the ones used (not the module's own)
    doubled = {k: 2 * v for k, v in params.items()}
    assert not torch.allclose(net.apply(models.nets.ops_for("pyro"), doubled, x), out)


def test_an_equinox_module_runs_per_example_under_vmap_with_named_arrays():
    encoder, _ = _equinox_pair()
    net = as_network(encoder)
    assert isinstance(net, EquinoxNetwork) and net.backend == "numpyro"
    assert net.shapes() == {"layers.0.weight": (16, 64), "layers.0.bias": (16,),
                            "layers.1.weight": (8, 16), "layers.1.bias": (8,)}
    params = {k: jnp.asarray(v) for k, v in net.init(0).items()}
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 64))
    out = net.apply(models.nets.ops_for("numpyro"), params, x)
    assert out.shape == (3, 5, 8)
    expected = jax.vmap(jax.vmap(encoder))(x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_networks_of_the_wrong_kind_backend_or_shape_are_refused_with_the_fix(digits):
    encoder, decoder = _torch_pair()
    with pytest.raises(ConfigError, match=r"VAE.encoder is str, not a network: give a torch.nn.Module"):
        _vae("mlp", decoder)
    with pytest.raises(ConfigError, match=r"VAE.encoder \(TorchNetwork\(Sequential\)\) returns \(batch, 8\), and the "
                                          r"family needs \(batch, 10\); change its last layer to 10 outputs"):
        _vae(encoder, decoder, latent=5)
    bad_decoder = torch.nn.Linear(4, 64)
    with pytest.raises(ConfigError, match=r"VAE.decoder .*returns \(batch, 64\), and the family needs \(batch, 1088\)"):
        _vae(encoder, bad_decoder)
    with pytest.raises(ConfigError, match=r"VAE.encoder .*failed on inputs of shape \(batch, 64\)"):
        _vae(torch.nn.Linear(32, 8), decoder)
    eqx_encoder, _ = _equinox_pair()
    with pytest.raises(ConfigError, match="networks of two backends"):
        _vae(eqx_encoder, decoder)
    spec = _vae(encoder, decoder)
    assert spec.backend == "pyro" and models.VAE(64).backend is None
    with pytest.raises(ConfigError, match=r"holds networks of the 'pyro' backend .*fit it with backend='pyro', or give "
                                          r"Equinox or Flax module networks for 'numpyro'"):
        ppgen.fit(spec, digits, inference.SVI(steps=1), backend="numpyro", progress=False)
    with pytest.raises(ConfigError, match=r"TorchNetwork\(Sequential\) runs in the 'pyro' backend"):
        spec.networks()["encoder"].apply(models.nets.ops_for("numpyro"), {}, jnp.zeros((1, 64)))
    eqx_spec = _vae(*_equinox_pair())
    with pytest.raises(ConfigError, match=r"cannot run in 'pyro'.*give torch.nn.Module networks"):
        ppgen.fit(eqx_spec, digits, inference.SVI(steps=1), backend="pyro", progress=False)


# ---- fits, saves, loads ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["torch", "equinox"])
def test_a_vae_with_its_own_networks_fits_saves_and_loads(kind, digits, tmp_path):
    pair = _torch_pair() if kind == "torch" else _equinox_pair()
    spec = _vae(*pair)
    fit = ppgen.fit(spec, digits, inference.SVI(elbo="meanfield", steps=40, batch_size=100, lr=3e-3), progress=False)
    assert fit.backend == spec.backend
    prefix = "encoder.0.weight" if kind == "torch" else "encoder.layers.0.weight"
    assert fit.params[prefix].shape == (16, 64)
    losses = [h["loss"] for h in fit.history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    x = digits.test[:20]
    ll = fit.log_likelihood(x, num_samples=16, seed=3)
    assert np.all(np.isfinite(ll)) and fit.sample(3).shape == (3, 8, 8)
    fit.save(tmp_path / "run")
    config = (tmp_path / "run" / "config.json").read_text()
    assert ("TorchNetwork(Sequential)" if kind == "torch" else "EquinoxNetwork(MLP)") in config
    with pytest.raises(CheckpointError, match=r"fitted with your own encoder .*ppgen.load\(path, "
                                              r"model=models.VAE\(..., encoder=..., decoder=...\)\)"):
        ppgen.load(tmp_path / "run")
    # the same code, fresh weights: the loaded run carries the fitted ones
    loaded = ppgen.load(tmp_path / "run", model=_vae(*(_torch_pair(seed=7) if kind == "torch" else _equinox_pair(seed=7))))
    np.testing.assert_allclose(loaded.log_likelihood(x, num_samples=16, seed=3), ll, rtol=1e-5, atol=1e-4)
    with pytest.raises(CheckpointError, match=r"differs from the run .* latent_dim \(5 here, 4 in the run\)"):
        other = _torch_pair(latent=5) if kind == "torch" else _equinox_pair(latent=5)
        ppgen.load(tmp_path / "run", model=_vae(*other, latent=5))


def test_cvae_and_hvae_take_their_own_x_side_networks(digits):
    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(64 + 10, 8)

        def forward(self, x, y):
            return self.layer(torch.cat([x, y], -1))

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4 + 10, 64 * 17)

        def forward(self, z, y):
            return self.layer(torch.cat([z, y], -1))

    spec = models.CVAE(64, latent_dim=4, likelihood="categorical", num_levels=17, encoder=Encoder(), decoder=Decoder())
    fit = ppgen.fit(spec, digits, inference.SVI(steps=3, batch_size=50), progress=False)
    assert fit.sample(4, labels=[0, 1, 2, 3]).shape == (4, 8, 8)
    assert fit.log_likelihood(digits.test[:5], labels=digits.labels.test[:5], num_samples=4).shape == (5,)
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    hvae = models.HVAE(64, latent_dims=(4, 2), hidden_dims=(16,), likelihood="categorical", num_levels=17,
                       encoder=eqx.nn.MLP(64, 8, 16, 1, key=k1), decoder=eqx.nn.MLP(4, 64 * 17, 16, 1, key=k2))
    fit = ppgen.fit(hvae, digits, inference.SVI(steps=3, batch_size=50), progress=False)
    assert fit.backend == "numpyro" and "encoder_2.0.weight" in fit.params and "encoder.layers.0.weight" in fit.params
    assert fit.log_likelihood(digits.test[:5], num_samples=4).shape == (5,)


def test_gan_aae_and_ddpm_take_their_own_networks():
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    data = datasets.from_arrays(x)
    torch.manual_seed(0)
    generator = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    critic = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1))
    gan = models.GAN(2, latent_dim=3, output="identity", generator=generator, discriminator=critic)
    fit = ppgen.fit(gan, data, inference.Adversarial(steps=4), progress=False)
    assert fit.sample(5).shape == (5, 2) and "discriminator.2.weight" in fit.params
    with pytest.raises(ConfigError, match=r"GAN.discriminator .*returns \(batch, 2\), and the family needs \(batch, 1\)"):
        models.GAN(2, latent_dim=3, output="identity", discriminator=torch.nn.Linear(2, 2))

    aae = models.AAE(2, latent_dim=2, encoder=torch.nn.Linear(2, 2), decoder=torch.nn.Linear(2, 2),
                     discriminator=torch.nn.Linear(2, 1))
    fit = ppgen.fit(aae, data, inference.Adversarial(steps=4), progress=False)
    assert fit.encode(x[:3]).shape == (3, 2)
    with pytest.raises(ConfigError, match="WAE-MMD .*has no discriminator"):
        models.AAE(2, latent_dim=2, regularizer="mmd", discriminator=torch.nn.Linear(2, 1))

    class Denoiser(eqx.Module):
        mlp: eqx.nn.MLP

        def __init__(self, key):
            self.mlp = eqx.nn.MLP(3, 2, 16, 2, key=key)

        def __call__(self, x_t, t):
            return self.mlp(jnp.concatenate([x_t, jnp.atleast_1d(t / 50.0)]))

    ddpm = models.DDPM(2, timesteps=50, denoiser=Denoiser(jax.random.PRNGKey(0)))
    fit = ppgen.fit(ddpm, data, inference.SVI(elbo="simple", steps=4), progress=False)
    assert fit.sample(5).shape == (5, 2) and np.all(np.isfinite(fit.log_likelihood(x[:4])))
    assert "denoiser.mlp.layers.0.weight" in fit.params


def test_flax_linen_and_nnx_modules_run_as_themselves_and_fit_a_vae(digits):
    flax = pytest.importorskip("flax")
    from flax import linen, nnx

    from ppgen.networks import FlaxNetwork, NnxNetwork

    class Linen(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(8)(linen.relu(linen.Dense(16)(x)))

    with pytest.raises(ConfigError, match=r"Flax linen module \(Linen\), which holds no parameters.*FlaxNetwork"):
        as_network(Linen())
    variables = Linen().init(jax.random.PRNGKey(0), jnp.zeros((1, 64)))
    linen_net = FlaxNetwork(Linen(), variables)
    assert linen_net.shapes()["Dense_1.kernel"] == (64, 16)  # compact names layers in the order they are made
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 64))
    params = {k: jnp.asarray(v) for k, v in linen_net.init(0).items()}
    np.testing.assert_allclose(np.asarray(linen_net.apply(models.nets.ops_for("numpyro"), params, x)),
                               np.asarray(Linen().apply(variables, x)), rtol=1e-5, atol=1e-5)

    class Decoder(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(4, 16, rngs=rngs)
            self.out = nnx.Linear(16, 64 * 17, rngs=rngs)

        def __call__(self, z):
            return self.out(nnx.relu(self.hidden(z)))

    decoder = Decoder(nnx.Rngs(0))
    net = as_network(decoder)
    assert isinstance(net, NnxNetwork) and net.shapes()["hidden.kernel"] == (4, 16)
    z = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 4))
    params = {k: jnp.asarray(v) for k, v in net.init(0).items()}
    np.testing.assert_allclose(np.asarray(net.apply(models.nets.ops_for("numpyro"), params, z)),
                               np.asarray(decoder(z.reshape(6, 4)).reshape(2, 3, -1)), rtol=1e-5, atol=1e-5)

    class Encoder(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(8)(linen.relu(linen.Dense(16)(x)))

    encoder = FlaxNetwork(Encoder(), Encoder().init(jax.random.PRNGKey(3), jnp.zeros((1, 64))))
    spec = _vae(encoder, Decoder(nnx.Rngs(1)))
    assert spec.backend == "numpyro"
    fit = ppgen.fit(spec, digits, inference.SVI(elbo="meanfield", steps=30, batch_size=100, lr=3e-3), progress=False)
    losses = [h["loss"] for h in fit.history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert "encoder.Dense_0.kernel" in fit.params and "decoder.out.kernel" in fit.params
    assert np.all(np.isfinite(fit.log_likelihood(digits.test[:10], num_samples=8)))


def test_equinox_dropout_follows_the_training_flag():
    """Evaluation runs the module in inference mode; training mode drops units with a key per
    example from NumPyro's seed handler (and the module must take key=)."""
    import jax
    import jax.numpy as jnp
    import numpyro

    ops = models.nets.ops_for("numpyro")
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    module = eqx.nn.Sequential([eqx.nn.Linear(6, 200, key=k1), eqx.nn.Dropout(0.5), eqx.nn.Linear(200, 3, key=k2)])
    net = as_network(module)
    params = {k: jnp.asarray(v) for k, v in net.init(0).items()}
    x = jnp.ones((2, 5, 6))
    evaluation = net.apply(ops, params, x)
    np.testing.assert_allclose(np.asarray(evaluation), np.asarray(jax.vmap(jax.vmap(eqx.nn.inference_mode(module)))(x)),
                               rtol=1e-5, atol=1e-6)
    with numpyro.handlers.seed(rng_seed=1):
        trained = net.apply(ops, params, x, training=True)
    assert trained.shape == (2, 5, 3)
    flat = np.asarray(trained).reshape(10, 3)
    assert not np.allclose(flat, np.asarray(evaluation).reshape(10, 3), atol=1e-3)  # units were dropped
    assert not np.allclose(flat[0], flat[1], atol=1e-3)  # each example its own key (same input)
    # the expectation over dropout masks is the evaluation output (inverted dropout): average many draws
    with numpyro.handlers.seed(rng_seed=2):
        many = net.apply(ops, params, jnp.ones((4000, 6)), training=True)
    np.testing.assert_allclose(np.asarray(many).mean(0), np.asarray(evaluation)[0, 0], atol=0.1)
    with pytest.raises(RuntimeError, match="needs a random key"):
        net.apply(ops, params, x, training=True)

    class NoKey(eqx.Module):
        linear: eqx.nn.Linear
        drop: eqx.nn.Dropout

        def __call__(self, x):
            return self.drop(self.linear(x))

    with pytest.raises(ppgen.ConfigError, match=r"takes no key=; add `\*, key=None` to __call__"):
        as_network(NoKey(eqx.nn.Linear(2, 2, key=k1), eqx.nn.Dropout(0.3)))
