"""Programs written the way Pyro's and NumPyro's own examples write them, for tests, benchmarks
and tutorials: a VAE as a plain ``ppgen.Program`` with a person's own networks, and the same
networks handed to the built-in VAE family.

- :func:`pyro_vae`: ``pyro.module`` with ``torch.nn`` networks (Pyro's ``examples/vae``);
- :func:`numpyro_vae`: ``numpyro.contrib.module.eqx_module`` with Equinox MLPs (NumPyro's
  ``examples/vae.py`` uses Flax through ``numpyro.module``; Equinox is the lighter install).

Both observe binary pixels (``datasets.load("digits", view="binary")``) with a Bernoulli
likelihood, have a standard-normal prior over ``latent_dim`` latents per example and an
amortised Gaussian guide, and take ``hidden_dim`` units in one hidden layer (ReLU) on each side.

- :func:`torch_vae_networks` and :func:`equinox_vae_networks`: an (encoder, decoder) pair of
  one hidden layer each, shaped for ``models.VAE(data_dim, latent_dim=..., encoder=...,
  decoder=...)`` (the encoder returns 2·latent_dim values: mean and pre-softplus scale).
"""

from __future__ import annotations

from .program import Program

__all__ = ["pyro_vae", "numpyro_vae", "torch_vae_networks", "equinox_vae_networks"]


def pyro_vae(data_dim: int = 64, latent_dim: int = 4, hidden_dim: int = 32, seed: int = 0) -> Program:
    """A VAE program with ``torch.nn`` encoder and decoder registered by ``pyro.module``."""
    import pyro
    import pyro.distributions as dist
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(data_dim, hidden_dim)
            self.loc = nn.Linear(hidden_dim, latent_dim)
            self.log_scale = nn.Linear(hidden_dim, latent_dim)

        def forward(self, x):
            h = torch.relu(self.hidden(x))
            return self.loc(h), torch.exp(self.log_scale(h))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = Encoder()
        decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, data_dim))

    def model(x, index, num_data):
        pyro.module("decoder", decoder)
        with pyro.plate("data", num_data, subsample=index) as rows:
            z = pyro.sample("z", dist.Normal(torch.zeros(len(rows), latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1),
                        obs=None if x is None else x.reshape(-1, data_dim))

    def guide(x, index, num_data):
        pyro.module("encoder", encoder)
        loc, scale = encoder(x.reshape(-1, data_dim))
        with pyro.plate("data", num_data, subsample=index):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return Program(model, guide, backend="pyro", name="vae-torch")


def numpyro_vae(data_dim: int = 64, latent_dim: int = 4, hidden_dim: int = 32, seed: int = 0) -> Program:
    """A VAE program with Equinox MLPs registered by ``eqx_module`` (needs ``equinox``)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.contrib.module import eqx_module

    encoder_key, decoder_key = jax.random.split(jax.random.PRNGKey(seed))
    encoder_net = eqx.nn.MLP(data_dim, 2 * latent_dim, hidden_dim, 1, key=encoder_key)
    decoder_net = eqx.nn.MLP(latent_dim, data_dim, hidden_dim, 1, key=decoder_key)

    def model(x, num_data):
        decoder = eqx_module("decoder", decoder_net)
        with numpyro.plate("data", num_data, subsample_size=None if x is None else x.shape[0]) as rows:
            z = numpyro.sample("z", dist.Normal(jnp.zeros((len(rows), latent_dim)), 1.0).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=jax.vmap(decoder)(z)).to_event(1),
                           obs=None if x is None else x.reshape(-1, data_dim))

    def guide(x, num_data):
        encoder = eqx_module("encoder", encoder_net)
        out = jax.vmap(encoder)(x.reshape(-1, data_dim))
        with numpyro.plate("data", num_data, subsample_size=x.shape[0]):
            numpyro.sample("z", dist.Normal(out[:, :latent_dim], jnp.exp(out[:, latent_dim:])).to_event(1))

    return Program(model, guide, backend="numpyro", name="vae-equinox")


def torch_vae_networks(data_dim: int = 64, latent_dim: int = 4, hidden_dim: int = 32, outputs_per_value: int = 1,
                       seed: int = 0) -> tuple:
    """A ``torch.nn`` (encoder, decoder) pair for ``models.VAE(..., encoder=, decoder=)``: one hidden
    layer of ``hidden_dim`` ReLU units each; the decoder gives ``outputs_per_value`` numbers per
    value (17 for a categorical likelihood over the digits' levels)."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = nn.Sequential(nn.Linear(data_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 2 * latent_dim))
        decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
                                nn.Linear(hidden_dim, data_dim * outputs_per_value))
    return encoder, decoder


def equinox_vae_networks(data_dim: int = 64, latent_dim: int = 4, hidden_dim: int = 32, outputs_per_value: int = 1,
                         seed: int = 0) -> tuple:
    """An Equinox (encoder, decoder) pair of ``eqx.nn.MLP`` for ``models.VAE(..., encoder=, decoder=)``,
    sized as :func:`torch_vae_networks` (needs ``equinox``)."""
    import equinox as eqx
    import jax

    encoder_key, decoder_key = jax.random.split(jax.random.PRNGKey(seed))
    return (eqx.nn.MLP(data_dim, 2 * latent_dim, hidden_dim, 1, key=encoder_key),
            eqx.nn.MLP(latent_dim, data_dim * outputs_per_value, hidden_dim, 1, key=decoder_key))
