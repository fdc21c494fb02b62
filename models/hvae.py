r"""The Markovian hierarchical VAE: a chain of stochastic layers (course notes 001).

With L latent layers :math:`z_1, \dots, z_L` (:math:`z_1` next to the data), the generative
model is a Markov chain from the top,

.. math::

    p(x, z_{1:L}) = p(z_L) \prod_{l=1}^{L-1} p_\theta(z_l \mid z_{l+1}) \; p_\theta(x \mid z_1),
    \qquad p(z_L) = \mathcal N(0, I),

with Gaussian transitions whose mean and standard deviation come from networks, and the
encoder is a Markov chain from the data,

.. math::

    q_\phi(z_{1:L} \mid x) = q_\phi(z_1 \mid x) \prod_{l=2}^{L} q_\phi(z_l \mid z_{l-1}).

The ELBO is :math:`\mathbb E_q[\log p(x|z_1) + \sum_l \log p(z_l|z_{l+1}) - \log q(z_l|z_{l-1})]`
(with :math:`z_0 = x` and :math:`p(z_L|z_{L+1}) = p(z_L)`). With a bottom-up encoder,
:math:`z_2` is drawn from :math:`z_1`, so the expectation of :math:`\log p(z_1|z_2)` has no
closed form and the ELBO is estimated by Monte Carlo
(``SVI(elbo="trace")``) or tightened by importance weighting (``elbo="iwae"``). A DDPM is this
model with a fixed encoder (notes 001–003).

Sites, identical in both backends: ``z_1`` … ``z_L`` and ``x``. Networks: ``encoder``
(x → z_1), ``encoder_l`` (z_{l−1} → z_l), ``decoder`` (z_1 → x), ``decoder_l``
(z_l → z_{l−1}).

Example:
    >>> spec = models.HVAE(64, latent_dims=(32, 16), likelihood="categorical", num_levels=17)
    >>> fit = ppgen.fit(spec, data, inference.SVI(elbo="trace", epochs=300, batch_size=100))

References:
    Sønderby, C. K. et al. (2016). Ladder variational autoencoders. NeurIPS.
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR
    (two stochastic layers, section 5).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Literal, Optional

import numpy as np

from ppgen.backends import get_backend
from ppgen.errors import ConfigError
from ppgen.program import BuiltProgram

from .nets import MLP, ops_for
from .vae import MIN_SCALE, AmortizedFamily

__all__ = ["HVAE"]


@dataclasses.dataclass(frozen=True)
class HVAE(AmortizedFamily):
    """Hierarchical VAE with a Markov chain of Gaussian latent layers in both directions.

    Args:
        data_dim: D, values per example.
        latent_dims: sizes of z_1 (next to the data), z_2, …, z_L (top); at least two layers.
        hidden_dims: hidden widths of every network (the x-side networks for ``network="conv"``
            use the last one as their dense width).
        activation, dropout, likelihood, num_levels, observation_scale, network, image_shape,
        conv_channels: as for :class:`VAE`.
        encoder, decoder: the x-side networks of your own, as for :class:`VAE` (the encoder maps
            (B, D) to (B, 2·K_1), the decoder (B, K_1) to the likelihood's parameters); the
            networks between latent layers stay the built-in MLPs.

    Example:
        >>> spec = models.HVAE(64, latent_dims=(32, 16), likelihood="categorical", num_levels=17)
    """

    data_dim: int
    latent_dims: tuple = (32, 16)
    hidden_dims: tuple = (256, 256)
    activation: Literal["relu", "gelu", "elu", "leaky_relu", "silu", "tanh", "softplus"] = "relu"
    dropout: float = 0.0
    likelihood: Literal["bernoulli", "categorical", "gaussian"] = "bernoulli"
    num_levels: Optional[int] = None
    observation_scale: Optional[float] = None
    network: Literal["mlp", "conv"] = "mlp"
    image_shape: Optional[tuple] = None
    conv_channels: tuple = (32, 64)
    encoder: Optional[Any] = None
    decoder: Optional[Any] = None

    family: ClassVar[str] = "hvae"
    network_fields: ClassVar[tuple] = ("encoder", "decoder")
    latent_site: ClassVar[str] = "z_1"
    elbo_refusals: ClassVar[dict] = {
        "meanfield": "its encoder draws z_2 from z_1, and the model's p(z_1 | z_2) depends on that draw, so the "
                     "KL of z_1 has no closed form (TraceMeanField's analytic KL would be biased); use "
                     "elbo='trace' or 'iwae'"}

    def _validate(self):
        self._require(len(self.latent_dims) >= 2,
                      f"latent_dims needs at least two layers, e.g. (32, 16); got {self.latent_dims}. "
                      f"For one layer use models.VAE")
        self._require(min(self.latent_dims) >= 1, f"latent_dims must be positive; got {self.latent_dims}")
        self._require(min(self.hidden_dims, default=1) >= 1, f"hidden_dims must be positive; got {self.hidden_dims}")
        self._validate_likelihood()
        self._check_own_networks(2 * self.latent_dims[0], self.latent_dims[0])

    @property
    def _first_latent_dim(self) -> int:
        return self.latent_dims[0]

    def networks(self) -> dict:
        dims = self.latent_dims
        nets = {"encoder": self._make_encoder(2 * dims[0], 0), "decoder": self._make_decoder(dims[0])}
        for layer in range(2, len(dims) + 1):
            below, above = dims[layer - 2], dims[layer - 1]
            nets[f"encoder_{layer}"] = MLP(below, self.hidden_dims, 2 * above, self.activation, self.dropout)
            nets[f"decoder_{layer}"] = MLP(above, self.hidden_dims, 2 * below, self.activation, self.dropout)
        return nets

    def build(self, backend: str, form: str, *, data: np.ndarray, guide: str | None = None, seed: int = 0,
              device: str = "cpu") -> BuiltProgram:
        if form != "latent":
            raise ValueError(f"HVAE has no form {form!r}; it has {self.forms}")
        if guide not in (None, "amortized"):
            raise ConfigError(f"HVAE has the amortized guide only; got guide={guide!r}")
        self.check_backend(backend)
        be = get_backend(backend)
        ppl, ops = be.ppl, ops_for(backend)
        nets = self.networks()
        init = self._initial_values(be, device, seed)
        dims = self.latent_dims
        top = len(dims)
        softplus = functools.partial(ops.activation, "softplus")

        def gaussian(out, size):
            return ppl.dist.Normal(out[..., :size], softplus(out[..., size:]) + MIN_SCALE,
                                   validate_args=False).to_event(1)

        def model(x=None, index=None, num_data=None, num=None, training=False):
            weights = {name: ppl.network(name, init[name]) for name in nets if name.startswith("decoder")}
            like = next(iter(weights["decoder"].values()))
            n = x.shape[0] if x is not None else num
            x_scale = self._x_scale(ppl, init)
            with ppl.plate("data", num_data or n, index=index, subsample_size=n):
                z = ppl.sample(f"z_{top}", ppl.dist.Normal(ppl.zeros((n, dims[-1]), like), 1.0,
                                                           validate_args=False).to_event(1))
                for layer in range(top, 1, -1):
                    out = nets[f"decoder_{layer}"].apply(ops, weights[f"decoder_{layer}"], z, training=training)
                    z = ppl.sample(f"z_{layer - 1}", gaussian(out, dims[layer - 2]))
                out = nets["decoder"].apply(ops, weights["decoder"], z, training=training)
                ppl.sample("x", self._observation(ppl, out, x_scale), obs=self._observed(ppl, x))

        def amortized_guide(x, index=None, num_data=None, num=None, training=False):
            weights = {name: ppl.network(name, init[name]) for name in nets if name.startswith("encoder")}
            n = x.shape[0]
            with ppl.plate("data", num_data or n, index=index, subsample_size=n):
                out = nets["encoder"].apply(ops, weights["encoder"], self._encoder_input(x), training=training)
                z = ppl.sample("z_1", gaussian(out, dims[0]))
                for layer in range(2, top + 1):
                    out = nets[f"encoder_{layer}"].apply(ops, weights[f"encoder_{layer}"], z, training=training)
                    z = ppl.sample(f"z_{layer}", gaussian(out, dims[layer - 1]))

        return BuiltProgram(backend, model, amortized_guide, form, self, int(data.shape[0]), max_plate_nesting=1)
