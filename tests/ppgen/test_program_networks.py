"""A person's own networks inside a Program: Pyro's ``pyro.module`` with a ``torch.nn.Module`` and
NumPyro's ``eqx_module`` with an Equinox network, written as Pyro's and NumPyro's VAE examples
write them. Each trains on the binarised digits, saves, loads with its code, samples and scores;
its parameters come back as a flat dict of stable dotted names. (How close their test NLL comes
to the built-in VAE's is measured by ``benchmarks/programs.py``, with full training.)"""

import numpy as np
import pytest

import ppgen
from ppgen import datasets, inference

LATENT, HIDDEN = 4, 32


def pyro_vae():
    import pyro
    import pyro.distributions as dist
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(64, HIDDEN)
            self.loc = nn.Linear(HIDDEN, LATENT)
            self.log_scale = nn.Linear(HIDDEN, LATENT)

        def forward(self, x):
            h = torch.relu(self.hidden(x))
            return self.loc(h), torch.exp(self.log_scale(h))

    torch.manual_seed(0)
    encoder = Encoder()
    decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 64))

    def model(x, index, num_data):
        pyro.module("decoder", decoder)
        with pyro.plate("data", num_data, subsample=index) as rows:
            z = pyro.sample("z", dist.Normal(torch.zeros(len(rows), LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1),
                        obs=None if x is None else x.reshape(-1, 64))

    def guide(x, index, num_data):
        pyro.module("encoder", encoder)
        loc, scale = encoder(x.reshape(-1, 64))
        with pyro.plate("data", num_data, subsample=index):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return ppgen.Program(model, guide, backend="pyro", name="vae-torch")


def numpyro_vae():
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.contrib.module import eqx_module

    encoder_net = eqx.nn.MLP(64, 2 * LATENT, HIDDEN, 1, key=jax.random.PRNGKey(0))
    decoder_net = eqx.nn.MLP(LATENT, 64, HIDDEN, 1, key=jax.random.PRNGKey(1))

    def model(x, num_data):
        decoder = eqx_module("decoder", decoder_net)
        with numpyro.plate("data", num_data, subsample_size=None if x is None else x.shape[0]) as rows:
            z = numpyro.sample("z", dist.Normal(jnp.zeros((len(rows), LATENT)), 1.0).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=jax.vmap(decoder)(z)).to_event(1),
                           obs=None if x is None else x.reshape(-1, 64))

    def guide(x, num_data):
        encoder = eqx_module("encoder", encoder_net)
        out = jax.vmap(encoder)(x.reshape(-1, 64))
        with numpyro.plate("data", num_data, subsample_size=x.shape[0]):
            numpyro.sample("z", dist.Normal(out[:, :LATENT], jnp.exp(out[:, LATENT:])).to_event(1))

    return ppgen.Program(model, guide, backend="numpyro", name="vae-equinox")


PROGRAMS = {"pyro": pyro_vae, "numpyro": numpyro_vae}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_vae_with_its_own_networks_trains_saves_loads_samples_and_scores(backend, tmp_path):
    pytest.importorskip("equinox") if backend == "numpyro" else None
    data = datasets.load("digits", view="binary")
    fit = ppgen.fit(PROGRAMS[backend](), data, inference.SVI(steps=150, batch_size=64, lr=3e-3), seed=0)
    losses = [h["loss"] for h in fit.history]
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 5  # it learns
    names = sorted(fit.params)
    if backend == "pyro":
        assert "decoder$$$0.weight" in names and "encoder$$$loc.bias" in names
    else:
        assert "decoder$params.layers.0.weight" in names and "encoder$params.layers.1.bias" in names
    assert all(isinstance(v, np.ndarray) for v in fit.params.values())
    assert fit.posterior is None and fit.structure.local_latents == ("z",)

    fit.save(tmp_path / "run")
    loaded = ppgen.load(tmp_path / "run", program=PROGRAMS[backend]())
    test = data.test[:50]
    scored = loaded.log_likelihood(test, num_samples=20, seed=1)
    np.testing.assert_allclose(scored, fit.log_likelihood(test, num_samples=20, seed=1), rtol=1e-5)
    assert scored.shape == (50,) and np.all(scored < 0) and np.all(scored > -64 * np.log(2) - 20)
    samples = loaded.sample(6, seed=0)
    assert samples.shape == (6, 8, 8) and set(np.unique(samples)) <= {0.0, 1.0}
