r"""The adversarial autoencoder and the Wasserstein autoencoder (WAE-MMD).

An autoencoder with a deterministic encoder :math:`z = E_\phi(x)` and a decoder likelihood
:math:`p_\theta(x \mid z)` is regularised so that the *aggregated posterior*
:math:`q(z) = \int q(z \mid x)\, p_{data}(x)\, dx` matches a prior :math:`p(z)` that only has
to be sampled (course notes 000, 004; Makhzani et al. 2016):

.. math::

    \min_{\theta, \phi}\ \mathbb E_{p_{data}}[-\log p_\theta(x \mid E_\phi(x))] / D
    \;+\; \lambda\, \mathcal D\big(q(z), p(z)\big).

- ``regularizer="adversarial"`` (AAE): :math:`\mathcal D` is estimated by a discriminator on
  z that calls prior draws real and codes fake; the encoder is its generator
  (``inference.Adversarial``, any of its losses; the hinge loss with k = 2 critic updates per
  step by default). With the Jensen–Shannon game this is the
  WAE with :math:`\mathcal D_{JS}` (notes 000).
- ``regularizer="mmd"`` (WAE-MMD, Tolstikhin et al. 2018): :math:`\mathcal D` is the maximum
  mean discrepancy between a minibatch of codes and as many prior draws, with the inverse
  multiquadratic kernel; one player, no discriminator.

The reconstruction term is the decoder's negative log-likelihood per value (Bernoulli,
17-level categorical for the digits, or Gaussian), so λ weighs it against the regulariser on
a scale that does not grow with the image size.

Priors (all can be sampled; the AAE never needs their density): ``"normal"`` N(0, I);
``"mixture"``: ``prior_components`` Gaussians of standard deviation ``prior_scale`` with
means evenly spaced on a circle of radius ``prior_radius`` in the first two latent
dimensions (the AAE paper's 10-component prior for the digits); ``"ring"``: uniform over
the angle, with the radius uniform in ``prior_radius ± prior_scale`` (a 2-D latent).

Sites: ``z`` (latent; for the ring prior, ``angle`` and ``radius`` with ``z`` deterministic)
and ``x``; parameters ``encoder.*``, ``decoder.*``, ``discriminator.*``.

Example:
    >>> data = ppgen.datasets.load("digits", view="categorical")
    >>> spec = models.AAE(64, latent_dim=2, prior="mixture", likelihood="categorical", num_levels=17)
    >>> fit = ppgen.fit(spec, data, inference.Adversarial(epochs=300))
    >>> fit.to_arviz()   # the aggregated posterior next to the prior

References:
    Makhzani, A. et al. (2016). Adversarial autoencoders. ICLR workshop (arXiv:1511.05644).
    Tolstikhin, I. et al. (2018). Wasserstein auto-encoders. ICLR.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Literal, Optional

import numpy as np

from ppgen.errors import ConfigError, DataError
from ppgen.program import BuiltProgram

from .gan import ImplicitFamily, network_params
from .nets import MLP, check_network
from .vae import AmortizedFamily

__all__ = ["AAE", "PRIORS"]

PRIORS = ("normal", "mixture", "ring")


@dataclasses.dataclass(frozen=True)
class AAE(ImplicitFamily):
    """Adversarial autoencoder (and WAE-MMD): a deterministic autoencoder whose codes are matched
    to a prior that can be sampled.

    Args:
        data_dim: D, values per example.
        latent_dim: K, the size of z (2 for pictures of the latent space).
        hidden_dims: widths of the encoder's hidden layers (the decoder mirrors them).
        discriminator_hidden_dims: widths of the discriminator on z.
        activation: nonlinearity of the encoder and decoder (the discriminator uses LeakyReLU).
        dropout: dropout rate of the encoder and decoder while training.
        likelihood: the decoder's ``"bernoulli"``, ``"categorical"`` or ``"gaussian"`` likelihood.
        num_levels: levels of a categorical likelihood (17 for the digits).
        observation_scale: the Gaussian likelihood's standard deviation (None: 1).
        network: ``"mlp"`` or ``"conv"`` (the VAE's convolutional encoder and decoder).
        image_shape, conv_channels: as for :class:`VAE` with ``network="conv"``.
        prior: ``"normal"``, ``"mixture"`` or ``"ring"`` (see the module docstring).
        prior_components, prior_radius, prior_scale: the mixture's (or ring's) layout.
        regularizer: ``"adversarial"`` (AAE) or ``"mmd"`` (WAE-MMD).
        regularization_weight: λ, the weight of the regulariser.
        mmd_bandwidth: C of the MMD's kernel C/(C + ‖u − v‖²) (None: 2·K·s², with s² the
            prior's variance per dimension, as the WAE paper).
        encoder, decoder, discriminator: networks of your own in place of the built-in ones (a
            ``torch.nn.Module`` binds the spec to the Pyro backend, an Equinox module to NumPyro;
            see :mod:`ppgen.networks`): the encoder maps (B, D) to the codes (B, K), the decoder
            (B, K) to the likelihood's parameters (B, D) or (B, D·L), the discriminator (B, K) to
            scores (B, 1).
    """

    data_dim: int
    latent_dim: int = 2
    hidden_dims: tuple = (256, 256)
    discriminator_hidden_dims: tuple = (256, 256)
    activation: Literal["relu", "gelu", "elu", "leaky_relu", "silu", "tanh", "softplus"] = "relu"
    dropout: float = 0.0
    likelihood: Literal["bernoulli", "categorical", "gaussian"] = "gaussian"
    num_levels: Optional[int] = None
    observation_scale: Optional[float] = None
    network: Literal["mlp", "conv"] = "mlp"
    image_shape: Optional[tuple] = None
    conv_channels: tuple = (32, 64)
    prior: Literal["normal", "mixture", "ring"] = "normal"
    prior_components: int = 10
    prior_radius: float = 2.0
    prior_scale: float = 0.3
    regularizer: Literal["adversarial", "mmd"] = "adversarial"
    regularization_weight: float = 1.0
    mmd_bandwidth: Optional[float] = None
    encoder: Optional[Any] = None
    decoder: Optional[Any] = None
    discriminator: Optional[Any] = None

    family: ClassVar[str] = "aae"
    network_fields: ClassVar[tuple] = ("encoder", "decoder", "discriminator")
    #: on the digits' 2-D codes against the 10-component prior, the non-saturating game collapsed
    #: the codes onto one component (energy distance to the prior 1.8 after 300 epochs), the hinge
    #: game spread them over the prior (0.25 after 150); see benchmarks/gan_quality.py
    default_adversarial_loss: ClassVar[str] = "hinge"
    #: k when none is given (or the loss's own default, when larger: 5 for WGAN-GP). Over seeds 0-9
    #: on the digits (2-D codes, 10-component prior, hinge, 300 epochs), one critic update per step
    #: collapsed the codes of one seed onto an arc (energy distance 0.53; median 0.026), two gave
    #: median 0.012 and worst 0.072, at 2.4 nats more reconstruction (half the autoencoder updates)
    default_critic_steps: ClassVar[int] = 2
    capabilities: ClassVar[frozenset] = frozenset({"sample", "encode", "decode", "reconstruct", "prior_sample",
                                                   "arviz_groups"})

    # shared with the VAE family: likelihood checks, data checks, networks
    _validate_likelihood = AmortizedFamily._validate_likelihood
    options_from_data = classmethod(AmortizedFamily.options_from_data.__func__)
    check_data = AmortizedFamily.check_data
    _make_encoder = AmortizedFamily._make_encoder
    _make_decoder = AmortizedFamily._make_decoder
    _encoder_input = AmortizedFamily._encoder_input
    _values_per_dim = AmortizedFamily._values_per_dim

    @property
    def has_discriminator(self) -> bool:  # WAE-MMD has one player
        return self.regularizer == "adversarial"

    def _validate(self):
        self._require(self.latent_dim >= 1, f"latent_dim must be at least 1; got {self.latent_dim}")
        self._require(min(self.hidden_dims, default=1) >= 1, f"hidden_dims must be positive; got {self.hidden_dims}")
        self._validate_likelihood()
        check_network(self, "encoder", ((self.data_dim,),), (self.latent_dim,))
        check_network(self, "decoder", ((self.latent_dim,),), (self.data_dim * self._values_per_dim,))
        check_network(self, "discriminator", ((self.latent_dim,),), (1,))
        self._require(self.discriminator is None or self.regularizer == "adversarial",
                      "discriminator= plays in regularizer='adversarial' only; WAE-MMD (regularizer='mmd') has "
                      "no discriminator: drop it")
        self._require(self.prior_components >= 1, f"prior_components must be at least 1; got {self.prior_components}")
        self._require(self.prior_radius >= 0 and math.isfinite(self.prior_radius),
                      f"prior_radius must be >= 0; got {self.prior_radius}")
        self._require(self.prior_scale > 0 and math.isfinite(self.prior_scale),
                      f"prior_scale must be positive; got {self.prior_scale}")
        if self.prior in ("mixture", "ring"):
            self._require(self.latent_dim >= 2 if self.prior == "mixture" else self.latent_dim == 2,
                          f"prior={self.prior!r} lays its mass out in a 2-D plane and needs latent_dim "
                          f"{'>= 2' if self.prior == 'mixture' else '= 2'}; got latent_dim={self.latent_dim}")
        self._require(self.regularization_weight >= 0 and math.isfinite(self.regularization_weight),
                      f"regularization_weight must be >= 0; got {self.regularization_weight}")
        self._require(self.mmd_bandwidth is None or self.mmd_bandwidth > 0,
                      f"mmd_bandwidth must be positive (or None); got {self.mmd_bandwidth}")

    @functools.lru_cache(maxsize=2)
    def networks(self) -> dict:
        nets = {"encoder": self._make_encoder(self.latent_dim, 0), "decoder": self._make_decoder(self.latent_dim)}
        if self.regularizer == "adversarial":
            nets["discriminator"] = self.own_network(
                "discriminator", lambda: MLP(self.latent_dim, self.discriminator_hidden_dims, 1, "leaky_relu"))
        return nets

    # ---- the prior ---------------------------------------------------------------------------
    def prior_means(self) -> np.ndarray:
        """The mixture prior's component means (components, K)."""
        angles = 2 * np.pi * np.arange(self.prior_components) / self.prior_components
        means = np.zeros((self.prior_components, self.latent_dim), np.float32)
        means[:, 0], means[:, 1] = self.prior_radius * np.cos(angles), self.prior_radius * np.sin(angles)
        return means

    def _prior_draws(self, rand, n: int, means=None):
        """n prior draws with ``rand`` (normal/uniform/integers), in the backend of ``means``."""
        K = self.latent_dim
        if self.prior == "normal":
            return rand.normal((n, K))
        if self.prior == "mixture":
            component = rand.integers(self.prior_components, (n,))
            return means[component] + self.prior_scale * rand.normal((n, K))
        u = rand.uniform((n, 2))
        angle = 2 * math.pi * u[:, 0]
        radius = self.prior_radius + self.prior_scale * (2 * u[:, 1] - 1)
        xp = array_namespace(u)
        return xp.stack([radius * xp.cos(angle), radius * xp.sin(angle)], -1)

    def prior_sample(self, num: int, seed: int = 0) -> np.ndarray:
        """``num`` draws of the prior p(z), shape (num, K)."""
        return self._prior_draws(_NumpyRandom(seed), int(num), self.prior_means()).astype(np.float32)

    @property
    def _bandwidth(self) -> float:
        if self.mmd_bandwidth is not None:
            return float(self.mmd_bandwidth)
        var = {"normal": 1.0, "mixture": self.prior_scale ** 2 + self.prior_radius ** 2 / 2,
               "ring": self.prior_radius ** 2 / 2}[self.prior]
        return 2.0 * self.latent_dim * var

    # ---- networks over a flat parameter dict ------------------------------------------------------
    def encode_codes(self, ops, params: dict, x, training: bool = False):
        return self.networks()["encoder"].apply(ops, network_params(params, "encoder"), self._encoder_input(x), training=training)

    def _decoder_dist(self, ppl, ops, params: dict, z, training: bool = False):
        out = self.networks()["decoder"].apply(ops, network_params(params, "decoder"), z, training=training)
        d = ppl.dist
        if self.likelihood == "bernoulli":
            return d.Bernoulli(logits=out, validate_args=False).to_event(1)
        if self.likelihood == "categorical":
            out = out.reshape(tuple(out.shape[:-1]) + (self.data_dim, self.num_levels)) \
                if out.shape[-1] != self.num_levels else out
            return d.Categorical(logits=out, validate_args=False).to_event(1)
        return d.Normal(out, self.observation_scale or 1.0, validate_args=False).to_event(1)

    def _observed(self, ppl, x):
        return ppl.as_integer(x) if self.likelihood == "categorical" else x

    # ---- the program -----------------------------------------------------------------------
    def build(self, backend: str, form: str, *, data: np.ndarray, guide: str | None = None, seed: int = 0,
              device: str = "cpu") -> BuiltProgram:
        from ppgen.inference.adversarial import Game, mmd_penalty

        be, ppl, ops, init, decoder_init, encoder_init = self._build_parts(backend, form, seed, device,
                                                                          "decoder", "encoder")
        K = self.latent_dim
        means_np = self.prior_means()
        means = be.asarray(means_np, "float32", device)

        def prior_site(n, like):
            d = ppl.dist
            if self.prior == "normal":
                return ppl.sample("z", d.Normal(ppl.zeros((n, K), like), 1.0).to_event(1))
            if self.prior == "mixture":
                C = self.prior_components
                mix = d.Categorical(logits=ppl.zeros((C,), like))
                comp = d.Normal(ppl.constant(means_np, like), self.prior_scale).to_event(1)
                return ppl.sample("z", d.MixtureSameFamily(mix, comp).expand([n]))
            angle = ppl.sample("angle", d.Uniform(ppl.zeros((n,), like), 2 * math.pi))
            radius = ppl.sample("radius", d.Uniform(ppl.zeros((n,), like) + self.prior_radius - self.prior_scale,
                                                    self.prior_radius + self.prior_scale))
            xp = array_namespace(angle)
            return ppl.deterministic("z", xp.stack([radius * xp.cos(angle), radius * xp.sin(angle)], -1))

        def model(x=None, index=None, num_data=None, num=None):
            weights = ppl.network("decoder", decoder_init)
            like = next(iter(weights.values()))
            n = x.shape[0] if x is not None else num
            with ppl.plate("data", num_data or n, index=index, subsample_size=n):
                z = prior_site(n, like)
                dist = self._decoder_dist(ppl, ops, {f"decoder.{k}": v for k, v in weights.items()}, z)
                ppl.sample("x", dist, obs=None if x is None else self._observed(ppl, x))

        def encoder_guide(x, index=None, num_data=None, num=None):
            weights = ppl.network("encoder", encoder_init)
            with ppl.plate("data", num_data or x.shape[0], index=index, subsample_size=x.shape[0]):
                code = self.encode_codes(ops, {f"encoder.{k}": v for k, v in weights.items()}, x)
                ppl.sample("z", ppl.dist.Delta(code, event_dim=1))

        def real(params, batch, rand):
            return self._prior_draws(rand, batch["x"].shape[0], means), None

        def fake(params, batch, rand):
            return self.encode_codes(ops, params, batch["x"], training=True), None

        def critic(params, values, condition):
            return self.networks()["discriminator"].apply(ops, network_params(params, "discriminator"), values, training=True)

        def generator_terms(params, batch, codes, rand):
            x = batch["x"]
            nll = -self._decoder_dist(ppl, ops, params, codes, training=True).log_prob(self._observed(ppl, x)).mean()
            loss = nll / self.data_dim
            out = {"reconstruction": nll}
            if self.regularizer == "mmd":
                penalty = mmd_penalty(codes, self._prior_draws(rand, x.shape[0], means), self._bandwidth)
                loss = loss + self.regularization_weight * penalty
                out["penalty"] = penalty
            out = {k: _detached(v) for k, v in out.items()}
            out["loss"] = loss
            return out

        nets = self.networks()
        players = {"generator": tuple(f"{p}.{k}" for p in ("encoder", "decoder") for k in nets[p].shapes()),
                   "discriminator": tuple(f"discriminator.{k}" for k in nets["discriminator"].shapes())
                   if "discriminator" in nets else ()}
        game = Game(init=init, players=players, real=real, fake=fake,
                    critic=critic if self.has_discriminator else None, generator_terms=generator_terms,
                    has_discriminator=self.has_discriminator, adversarial_weight=self.regularization_weight)
        return BuiltProgram(backend, model, encoder_guide, form, self, int(data.shape[0]), max_plate_nesting=1,
                            extras={"game": game})

    # ---- evaluation ------------------------------------------------------------------------
    def encode(self, backend: str, params: dict, x, labels=None, device: str = "cpu") -> np.ndarray:
        """The codes z = E(x), computed on ``device``, shape (N, K)."""
        x = self.check_data(x, "x")
        return self._run(backend, params, lambda be, ops, p: self.encode_codes(ops, p, be.asarray(x, "float32", device)),
                         device)

    def decode(self, backend: str, params: dict, z, labels=None, seed: int = 0, mean: bool = True,
               device: str = "cpu") -> np.ndarray:
        """The decoder's expected x given codes ``z`` (N, K), or a draw (``mean=False``); (N, D)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DataError(f"z has shape {z.shape}; decode takes (N, {self.latent_dim})")

        def forward(be, ops, p):
            dist = self._decoder_dist(be.ppl, ops, p, be.asarray(z, "float32", device))
            base = getattr(dist, "base_dist", dist)
            if not mean:
                return base.sample(_key(backend, seed)) if backend == "numpyro" else _torch_sample(base, seed)
            if self.likelihood == "categorical":
                return (base.probs * array_namespace(base.probs).arange(self.num_levels)).sum(-1)
            return base.probs if self.likelihood == "bernoulli" else base.loc

        out = self._run(backend, params, forward, device)
        return out.astype(np.int64) if (self.likelihood == "categorical" and not mean) else out

    def reconstruct(self, backend: str, params: dict, x, labels=None, seed: int = 0, mean: bool = True,
                    device: str = "cpu") -> np.ndarray:
        """x → E(x) → the decoder's expected x (or a draw); (N, D)."""
        return self.decode(backend, params, self.encode(backend, params, x, device=device), seed=seed, mean=mean,
                           device=device)

    def sample(self, backend: str, params: dict, num: int, seed: int = 0, labels=None,
               mean: bool = False, device: str = "cpu") -> np.ndarray:
        """``num`` new examples: z ~ p(z), then x ~ p(x | z) (``mean=True``: the decoder's expected x)."""
        if labels is not None:
            raise ConfigError("AAE is not conditional; drop labels=")
        return self.decode(backend, params, self.prior_sample(num, seed), seed=seed + 1, mean=mean, device=device)

    def arviz_groups(self, backend: str, params: dict, x, seed: int = 0, device: str = "cpu") -> dict:
        """ArviZ groups: ``posterior`` = the aggregated posterior (the code of each row of ``x``,
        one draw per row), ``prior`` = as many prior draws, ``observed_data`` = x."""
        codes = self.encode(backend, params, x, device=device)
        prior = self.prior_sample(codes.shape[0], seed)
        return {"posterior": {"z": codes[None]}, "prior": {"z": prior[None]}, "observed_data": {"x": x},
                "dims": {"z": ["latent"]}}


def array_namespace(x):
    if hasattr(x, "detach"):
        import torch

        return torch
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def _detached(v):
    if hasattr(v, "detach"):
        return v.detach()
    try:
        import jax

        return jax.lax.stop_gradient(v)
    except ImportError:  # pragma: no cover
        return v


def _key(backend, seed):
    import jax

    return jax.random.PRNGKey(int(seed))


def _torch_sample(dist, seed):
    import torch

    device = dist.mean.device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        return dist.sample()


class _NumpyRandom:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def normal(self, shape):
        return self.rng.standard_normal(shape).astype(np.float32)

    def uniform(self, shape):
        return self.rng.uniform(size=shape).astype(np.float32)

    def integers(self, high, shape):
        return self.rng.integers(0, high, shape)
