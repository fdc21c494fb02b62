r"""Variational autoencoders trained by amortised SVI: the VAE and the conditional VAE.

The model (course notes 000–004; Kingma & Welling 2014; Rezende et al. 2014):

.. math::

    z_n \sim \mathcal N(0, I_K), \qquad x_n \mid z_n \sim p_\theta(x_n \mid z_n),

with a decoder network giving the likelihood's parameters: Bernoulli logits (binary data),
Categorical logits over L levels per value (e.g. the 17 grey levels of the digits), or a
Gaussian mean with a learned per-value or fixed standard deviation. An encoder network
amortises inference, :math:`q_\phi(z_n \mid x_n) = \mathcal N(\mu_\phi(x_n),
\operatorname{diag}\sigma^2_\phi(x_n))`, and SVI maximises the evidence lower bound

.. math::

    \mathcal L(\theta, \phi) = \sum_n \mathbb E_{q_\phi(z_n|x_n)}[\log p_\theta(x_n|z_n)]
    - \mathrm{KL}(q_\phi(z_n|x_n) \,\|\, \mathcal N(0, I)),

whose KL has a closed form (``SVI(elbo="meanfield")``), with the reparameterisation
:math:`z = \mu + \sigma \odot \epsilon` for low-variance gradients. ``SVI(elbo="trace")``
estimates the KL by Monte Carlo, ``SVI(elbo="iwae", num_particles=K)`` maximises the
importance-weighted bound (Burda et al. 2016), and ``SVI(kl_warmup=steps)`` anneals the KL.

The conditional VAE (Sohn et al. 2015; notes 004) gives a label :math:`y_n` to both networks:
:math:`p_\theta(x|z, y)` and :math:`q_\phi(z|x, y)` with :math:`z \sim \mathcal N(0, I)`.

Sites, identical in both backends: ``z`` (per-example latent) and ``x`` (data); the networks'
parameters are ``encoder.<layer>.weight`` etc. (same names, shapes and initial values in Pyro
and NumPyro), plus ``x_scale`` for a Gaussian likelihood with learned scale.

``log_likelihood`` is the importance-sampled estimate with the encoder as proposal,
:math:`\log \frac1S \sum_s p(x, z_s)/q(z_s|x)`, a stochastic lower bound on log p(x) that
tightens as S grows (Burda et al. 2016, section 5).

Example:
    >>> data = ppgen.datasets.load("digits", view="categorical")
    >>> spec = models.VAE(64, latent_dim=16, likelihood="categorical", num_levels=17)
    >>> fit = ppgen.fit(spec, data, inference.SVI(elbo="meanfield", epochs=200, batch_size=100))
    >>> fit.log_likelihood(data.test, num_samples=1000).mean()

References:
    Kingma, D. P. & Welling, M. (2014). Auto-encoding variational Bayes. ICLR.
    Rezende, D. J., Mohamed, S. & Wierstra, D. (2014). Stochastic backpropagation and
    approximate inference in deep generative models. ICML.
    Sohn, K., Lee, H. & Yan, X. (2015). Learning structured output representation using deep
    conditional generative models. NeurIPS.
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Literal, Optional

import numpy as np

from ppgen.backends import get_backend
from ppgen.errors import ConfigError, DataError
from ppgen.program import BuiltProgram, ModelSpec

from .nets import ACTIVATIONS, MLP, ConvDecoder, ConvEncoder, check_network, image_layout, ops_for

__all__ = ["VAE", "CVAE", "LIKELIHOODS", "AmortizedFamily", "MIN_SCALE"]

LIKELIHOODS = ("bernoulli", "categorical", "gaussian")
MIN_SCALE = 1e-5
_NO_MCMC = ("cannot sample a VAE's per-example latents and network weights (thousands of "
            "correlated dimensions); use inference.SVI")


class AmortizedFamily(ModelSpec):
    """What the VAE-like families share: the likelihood, data checks, labels, evaluation by
    importance sampling, sampling, reconstruction and ArviZ export. Subclasses define
    ``networks()`` and the programs in ``build``."""

    forms: ClassVar[tuple] = ("latent",)
    local_guides: ClassVar[tuple] = ("amortized",)
    methods: ClassVar[tuple] = ()
    refusals: ClassVar[dict] = {"nuts": f"NUTS {_NO_MCMC}", "hmc": f"HMC {_NO_MCMC}",
                                "em": "EM needs closed-form E and M steps, and a VAE's posterior has none",
                                "closed_form": "a VAE has no closed-form maximum-likelihood solution"}
    #: whether programs take a label ``y`` per example
    conditional: ClassVar[bool] = False
    #: the latent site that ``encode``/``decode`` and the latent plots refer to
    latent_site: ClassVar[str] = "z"
    #: log_likelihood is an estimate with ``num_samples`` (not exact)
    estimated_likelihood: ClassVar[bool] = True
    capabilities: ClassVar[frozenset] = frozenset({"sample", "log_likelihood", "encode", "decode", "reconstruct",
                                                   "posterior_draws", "elbo"})

    # ---- hyperparameter checks shared by the subclasses ----------------------------------
    def _validate_likelihood(self):
        if self.likelihood == "categorical":
            self._require(self.num_levels is not None and self.num_levels >= 2,
                          f"likelihood='categorical' needs num_levels >= 2 (e.g. 17 for the digits' grey "
                          f"levels); got num_levels={self.num_levels}")
        elif self.num_levels is not None:
            self._require(False, f"num_levels={self.num_levels} applies to likelihood='categorical' only; "
                                 f"got likelihood={self.likelihood!r}")
        if self.observation_scale is not None:
            self._require(self.likelihood == "gaussian",
                          f"observation_scale applies to likelihood='gaussian'; got {self.likelihood!r}")
            self._require(self.observation_scale > 0 and math.isfinite(self.observation_scale),
                          f"observation_scale must be positive (or None to learn it); got {self.observation_scale}")
        self._require(self.data_dim >= 1, f"data_dim must be at least 1; got {self.data_dim}")
        self._require(self.activation in ACTIVATIONS,
                      f"activation={self.activation!r} is not one of {list(ACTIVATIONS)}")
        self._require(0.0 <= self.dropout < 1.0,
                      f"dropout must be a rate in [0, 1) (e.g. 0.2, or 0 for none); got {self.dropout}")
        if self.network == "conv":
            image_layout(self.data_dim, self.image_shape)  # raises with the fix
        elif self.image_shape is not None:
            self._require(False, f"image_shape={self.image_shape} applies to network='conv'; the MLP takes "
                                 f"flattened rows (drop image_shape)")

    @classmethod
    def options_from_data(cls, meta: dict) -> dict:
        """Likelihood options matching a dataset's ``meta`` (used when the model is given by name)."""
        support = meta.get("support")
        if support == "binary":
            return {"likelihood": "bernoulli"}
        if support == "categorical" and meta.get("levels"):
            return {"likelihood": "categorical", "num_levels": int(meta["levels"])}
        if support == "real":
            return {"likelihood": "gaussian"}
        return {}

    @property
    def _values_per_dim(self) -> int:
        return self.num_levels if self.likelihood == "categorical" else 1

    # ---- data ------------------------------------------------------------------------------
    def check_data(self, x, what: str = "data") -> np.ndarray:
        from ppgen.datasets import check_finite

        x = check_finite(self._rows(x, what).astype(np.float32, copy=False), what)
        if self.likelihood == "bernoulli":
            bad = x[(x != 0) & (x != 1)]
            if bad.size:
                raise DataError(f"{what} has values other than 0 and 1 (e.g. {bad[0]:g}); a Bernoulli likelihood "
                                f"needs binary data: load it with view='binary', or use likelihood='categorical' "
                                f"or 'gaussian'")
        elif self.likelihood == "categorical":
            bad = x[(x != np.round(x)) | (x < 0) | (x > self.num_levels - 1)]
            if bad.size:
                raise DataError(f"{what} has the value {bad[0]:g}, outside the levels 0..{self.num_levels - 1} of "
                                f"likelihood='categorical' with num_levels={self.num_levels}; give integer codes "
                                f"(view='categorical') or raise num_levels")
        return x

    def check_labels(self, labels, num: int, what: str = "labels") -> Optional[np.ndarray]:
        """Integer labels 0..num_classes-1, one per example (conditional families), else None."""
        if not self.conditional:
            return None
        if labels is None:
            raise DataError(f"{type(self).__name__} is conditional and needs a label per example, and {what} are "
                            f"missing; use a dataset with labels (datasets.load('digits')) or "
                            f"datasets.from_arrays(x, labels=y), and pass labels= to sample/log_likelihood")
        y = np.asarray(labels)
        if y.ndim != 1 or y.shape[0] != num:
            raise DataError(f"{what} have shape {y.shape}; give one integer label per example, shape ({num},)")
        if y.size and (not np.all(np.isfinite(y.astype(np.float64))) or np.any(y != np.round(y))
                       or y.min() < 0 or y.max() >= self.num_classes):
            bad = y[(y < 0) | (y >= self.num_classes) | (y != np.round(y))]
            raise DataError(f"{what} contain {np.asarray(bad[0]).item()!r}, outside 0..{self.num_classes - 1} "
                            f"(num_classes={self.num_classes}); relabel to 0..{self.num_classes - 1} or raise "
                            f"num_classes")
        return y.astype(np.int64)

    def param_names(self, form: str) -> tuple:
        return tuple(self.param_shapes())

    def param_shapes(self) -> dict:
        shapes = self.network_shapes()
        if self.likelihood == "gaussian" and self.observation_scale is None:
            shapes["x_scale"] = (self.data_dim,)
        return shapes

    # ---- program pieces --------------------------------------------------------------------
    def _check_own_networks(self, encoder_out: int, decoder_in: int, extra: int = 0) -> None:
        """Refuse a person's encoder/decoder whose output does not fit (the shapes named)."""
        labels = ((extra,),) if extra else ()
        check_network(self, "encoder", ((self.data_dim,),) + labels, (encoder_out,))
        check_network(self, "decoder", ((decoder_in,),) + labels, (self.data_dim * self._values_per_dim,))

    def _make_encoder(self, out_dim: int, extra: int):
        if self.encoder is not None:
            return self.encoder
        if self.network == "conv":
            return ConvEncoder(image_layout(self.data_dim, self.image_shape), out_dim, self.conv_channels, extra,
                               self.hidden_dims[-1], self.activation, self.dropout)
        return MLP(self.data_dim + extra, self.hidden_dims, out_dim, self.activation, self.dropout)

    def _make_decoder(self, in_dim: int):
        if self.decoder is not None:
            return self.decoder
        if self.network == "conv":
            return ConvDecoder(image_layout(self.data_dim, self.image_shape), in_dim, self._values_per_dim,
                               self.conv_channels, self.hidden_dims[-1], self.activation, self.dropout)
        return MLP(in_dim, tuple(reversed(self.hidden_dims)), self.data_dim * self._values_per_dim, self.activation,
                   self.dropout)

    def _initial_values(self, be, device, seed: int) -> dict:
        init = {}
        for i, (name, net) in enumerate(self.networks().items()):
            init[name] = {k: be.asarray(v, "float32", device) for k, v in net.init(seed * 1009 + i).items()}
        if self.likelihood == "gaussian" and self.observation_scale is None:
            init["x_scale"] = be.asarray(np.full(self.data_dim, 0.5, np.float32), "float32", device)
        return init

    def _encoder_input(self, x):
        if self.likelihood == "categorical":
            return x * (1.0 / (self.num_levels - 1))
        return x

    def _label_features(self, ppl, y, like, lead_shape=None):
        """One-hot labels (…, num_classes), broadcast to ``lead_shape`` (particle dims), or None."""
        if not self.conditional:
            return None
        if y is None:
            raise DataError(f"{type(self).__name__} needs labels y for every example; pass labels")
        onehot = ppl.one_hot(y, self.num_classes, like)
        if lead_shape is not None and tuple(lead_shape) != tuple(onehot.shape[:-1]):
            onehot = ppl.broadcast_to(onehot, tuple(lead_shape) + (self.num_classes,))
        return onehot

    def _observation(self, ppl, out, x_scale):
        d = ppl.dist
        if self.likelihood == "bernoulli":
            return d.Bernoulli(logits=out, validate_args=False).to_event(1)
        if self.likelihood == "categorical":
            if out.shape[-1] != self.num_levels or out.ndim < 2 or out.shape[-2] != self.data_dim:
                out = out.reshape(tuple(out.shape[:-1]) + (self.data_dim, self.num_levels))
            return d.Categorical(logits=out, validate_args=False).to_event(1)
        return d.Normal(out, x_scale, validate_args=False).to_event(1)

    def _observed(self, ppl, x):
        if x is None or self.likelihood != "categorical":
            return x
        return ppl.as_integer(x)

    def _x_scale(self, ppl, init):
        if self.likelihood != "gaussian":
            return None
        if self.observation_scale is not None:
            return self.observation_scale
        return ppl.param("x_scale", init["x_scale"], constraint=ppl.constraints.positive)

    # ---- evaluation (backend-generic through the backends' run_with_params / log_weights) --
    @functools.lru_cache(maxsize=4)
    def _eval_program(self, backend: str) -> BuiltProgram:
        return self.build(backend, "latent", data=np.zeros((1, self.data_dim), np.float32))

    def _batch(self, be, x, y, device: str = "cpu") -> dict:
        batch = {"x": be.asarray(x, "float32", device)}
        if self.conditional:
            batch["y"] = be.ppl.index(y, like=batch["x"])
        return batch

    def _rows_per_pass(self, num_examples: int) -> int:
        """Particles per pass so that decoder outputs stay near 2e7 numbers (memory bound)."""
        width = self.data_dim * self._values_per_dim + sum(self.hidden_dims)
        return max(1, int(2e7 // max(1, num_examples * width)))

    def log_weights(self, backend: str, params: dict, x, num_samples: int, seed: int = 0, labels=None,
                    device: str = "cpu") -> np.ndarray:
        """log p(x_n, z_s) − log q(z_s | x_n) for S = ``num_samples`` encoder draws per row,
        computed on ``device``: float64 array of shape (S, N)."""
        be = get_backend(backend)
        x = self.check_data(x, "x")
        y = self.check_labels(labels, x.shape[0], "labels")
        program = self._eval_program(backend)
        out = []
        chunk = 512
        for start in range(0, x.shape[0], chunk):
            stop = min(start + chunk, x.shape[0])
            batch = self._batch(be, x[start:stop], None if y is None else y[start:stop], device)
            per_pass = min(num_samples, self._rows_per_pass(stop - start))
            columns, done = [], 0
            while done < num_samples:
                p = min(per_pass, num_samples - done)
                columns.append(be.importance_log_weights(program.model, program.guide, params, batch, p, -2,
                                                         seed * 7919 + start * 31 + done))
                done += p
            out.append(np.concatenate(columns, axis=0))
        return np.concatenate(out, axis=1)

    def log_likelihood(self, backend: str, params: dict, x, num_samples: int = 1000, seed: int = 0,
                       labels=None, device: str = "cpu") -> np.ndarray:
        """Importance-sampled log p(x) per example with the encoder as proposal:
        log (1/S) Σ_s p(x, z_s)/q(z_s|x), z_s ~ q(z|x); shape (N,). A lower bound in
        expectation that tightens as ``num_samples`` grows (IWAE bound with K = S)."""
        if int(num_samples) < 1:
            raise ConfigError(f"num_samples must be at least 1; got {num_samples}")
        lw = self.log_weights(backend, params, x, int(num_samples), seed, labels, device)
        top = lw.max(axis=0)
        return top + np.log(np.mean(np.exp(lw - top), axis=0))

    def elbo(self, backend: str, params: dict, x, num_samples: int = 10, seed: int = 0, labels=None,
             device: str = "cpu") -> np.ndarray:
        """Monte Carlo ELBO per example, the mean over ``num_samples`` of the log-weights; shape (N,)."""
        return self.log_weights(backend, params, x, int(num_samples), seed, labels, device).mean(axis=0)

    def _x_mean(self, be, site) -> np.ndarray:
        fn = site["fn"]
        base = getattr(fn, "base_dist", fn)
        if self.likelihood == "categorical":
            probs = be.to_numpy(base.probs).astype(np.float64)
            return (probs * np.arange(self.num_levels)).sum(-1)
        if self.likelihood == "bernoulli":
            return be.to_numpy(base.probs).astype(np.float64)
        return be.to_numpy(base.loc).astype(np.float64)

    def sample(self, backend: str, params: dict, num: int, seed: int = 0, labels=None,
               mean: bool = False, device: str = "cpu") -> np.ndarray:
        """``num`` new examples from the prior through the decoder, drawn on ``device``, shape
        (num, data_dim) (integer codes for a categorical likelihood); ``mean=True`` returns the
        decoder's expected value instead of a draw."""
        be = get_backend(backend)
        y = self.check_labels(labels, num, "labels")
        program = self._eval_program(backend)
        kwargs = {"x": None, "num": int(num)}
        if self.conditional:
            kwargs["y"] = be.asarray(y, "int32", device)
        sites = be.run_with_params(program.model, params, seed, device, **kwargs)
        return self._x_mean(be, sites["x"]) if mean else self._as_data(be.to_numpy(sites["x"]["value"]))

    def _as_data(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.int64) if self.likelihood == "categorical" else x.astype(np.float32)

    def encode(self, backend: str, params: dict, x, labels=None, device: str = "cpu") -> tuple:
        """Mean and standard deviation of q(z|x) (the first latent layer), each (N, latent)."""
        be = get_backend(backend)
        x = self.check_data(x, "x")
        y = self.check_labels(labels, x.shape[0], "labels")
        program = self._eval_program(backend)
        site = be.run_with_params(program.guide, params, 0, device, **self._batch(be, x, y, device))[self.latent_site]
        base = getattr(site["fn"], "base_dist", site["fn"])
        return be.to_numpy(base.loc), be.to_numpy(base.scale)

    def decode(self, backend: str, params: dict, z, labels=None, seed: int = 0, mean: bool = True,
               device: str = "cpu") -> np.ndarray:
        """The decoder's expected x (``mean=True``) or a draw of x given the latent ``z``
        (N, latent) of the first layer; shape (N, data_dim)."""
        be = get_backend(backend)
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self._first_latent_dim:
            raise DataError(f"z has shape {z.shape}; decode takes (N, {self._first_latent_dim})")
        y = self.check_labels(labels, z.shape[0], "labels")
        program = self._eval_program(backend)
        kwargs = {"x": None, "num": z.shape[0]}
        if self.conditional:
            kwargs["y"] = be.asarray(y, "int32", device)
        sites = be.run_with_params(program.model, params, seed, device,
                                   condition={self.latent_site: be.asarray(z, "float32", device)}, **kwargs)
        return self._x_mean(be, sites["x"]) if mean else self._as_data(be.to_numpy(sites["x"]["value"]))

    def reconstruct(self, backend: str, params: dict, x, labels=None, seed: int = 0, mean: bool = True,
                    device: str = "cpu") -> np.ndarray:
        """Reconstructions: z ~ q(z|x), then the decoder's expected x (or a draw); (N, data_dim)."""
        be = get_backend(backend)
        x = self.check_data(x, "x")
        y = self.check_labels(labels, x.shape[0], "labels")
        program = self._eval_program(backend)
        batch = self._batch(be, x, y, device)
        guide_sites = be.run_with_params(program.guide, params, seed, device, **batch)
        values = {k: s["value"] for k, s in guide_sites.items() if not s["is_observed"]}
        kwargs = dict(batch, x=None, num=x.shape[0])
        sites = be.run_with_params(program.model, params, seed + 1, device, condition=values, **kwargs)
        return self._x_mean(be, sites["x"]) if mean else self._as_data(be.to_numpy(sites["x"]["value"]))

    def posterior_draws(self, backend: str, params: dict, x, num_draws: int, seed: int = 0, labels=None,
                        device: str = "cpu") -> dict:
        """Draws of q(z|x) for each row of ``x``, reconstructions drawn from p(x|z), and
        log p(x|z) per draw: ``{"latents": {site: (S, N, ...)}, "x": (S, N, D),
        "log_likelihood": (S, N)}``."""
        be = get_backend(backend)
        x = self.check_data(x, "x")
        y = self.check_labels(labels, x.shape[0], "labels")
        program = self._eval_program(backend)
        batch = self._batch(be, x, y, device)
        guide_sites = be.run_with_params(program.guide, params, seed, device, num_particles=num_draws, **batch)
        values = {k: s["value"] for k, s in guide_sites.items() if not s["is_observed"]}
        scored = be.run_with_params(program.model, params, seed + 1, device, num_particles=num_draws,
                                    condition=values, **batch)
        fn = scored["x"]["fn"]
        with be.placed(device):
            log_lik = be.to_numpy(fn.log_prob(scored["x"]["value"])).astype(np.float64)
        replicated = be.run_with_params(program.model, params, seed + 2, device, num_particles=num_draws,
                                        condition=values, **dict(batch, x=None, num=x.shape[0]))
        return {"latents": {k: be.to_numpy(v) for k, v in values.items()},
                "x": self._as_data(be.to_numpy(replicated["x"]["value"])),
                "log_likelihood": np.broadcast_to(log_lik, (num_draws, x.shape[0])).copy()}

    @property
    def _first_latent_dim(self) -> int:
        return self.latent_dim

    def num_parameters(self) -> int:
        total = sum(n.num_parameters() for n in self.networks().values())
        return total + (self.data_dim if self.likelihood == "gaussian" and self.observation_scale is None else 0)


@dataclasses.dataclass(frozen=True)
class VAE(AmortizedFamily):
    """Variational autoencoder: z ~ N(0, I), x ~ p(x | decoder(z)), q(z | x) = N(encoder(x)).

    Args:
        data_dim: D, values per example (images are flattened channels-last).
        latent_dim: K, the size of z.
        hidden_dims: widths of the MLP's hidden layers (encoder; the decoder mirrors them). For
            ``network="conv"`` the last one is the width of the dense layer after the convolutions.
        activation: nonlinearity between layers.
        dropout: rate of dropout after every hidden layer while training (0: none; 0.2 regularises
            the small digits set well). Evaluation, sampling and likelihoods use the whole network.
        likelihood: ``"bernoulli"`` (binary data), ``"categorical"`` (integer levels
            0..num_levels-1), or ``"gaussian"``.
        num_levels: L, the number of levels of a categorical likelihood (17 for the digits).
        observation_scale: fixed standard deviation of a Gaussian likelihood; None learns one per value.
        network: ``"mlp"`` or ``"conv"`` (images with height and width divisible by 4).
        image_shape: (height, width[, channels]) of the images for ``network="conv"``.
        conv_channels: channels of the two convolution stages.
        encoder, decoder: a network of your own in place of the built-in one (a ``torch.nn.Module``
            binds the spec to the Pyro backend, an Equinox module to NumPyro; see
            :mod:`ppgen.networks`). The encoder maps a batch of rows (B, D) to (B, 2K): the mean
            and the pre-softplus scale of q(z|x); the decoder maps (B, K) to the likelihood's
            parameters per row, (B, D) (Bernoulli logits, Gaussian means) or (B, D·L) (categorical
            logits). A conditional VAE passes the one-hot label (B, num_classes) as a second input.

    Example:
        >>> spec = models.VAE(64, latent_dim=16, likelihood="categorical", num_levels=17)
    """

    data_dim: int
    latent_dim: int = 16
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

    family: ClassVar[str] = "vae"
    network_fields: ClassVar[tuple] = ("encoder", "decoder")

    def _validate(self):
        self._require(self.latent_dim >= 1, f"latent_dim must be at least 1; got {self.latent_dim}")
        self._require(min(self.hidden_dims, default=1) >= 1, f"hidden_dims must be positive; got {self.hidden_dims}")
        self._validate_likelihood()
        extra = self.num_classes if self.conditional else 0
        self._check_own_networks(2 * self.latent_dim, self.latent_dim, extra)

    def networks(self) -> dict:
        extra = self.num_classes if self.conditional else 0
        return {"encoder": self._make_encoder(2 * self.latent_dim, extra),
                "decoder": self._make_decoder(self.latent_dim + extra)}

    def build(self, backend: str, form: str, *, data: np.ndarray, guide: str | None = None, seed: int = 0,
              device: str = "cpu") -> BuiltProgram:
        if form != "latent":
            raise ValueError(f"{type(self).__name__} has no form {form!r}; it has {self.forms}")
        if guide not in (None, "amortized"):
            raise ConfigError(f"{type(self).__name__} has the amortized guide only; got guide={guide!r}")
        self.check_backend(backend)
        be = get_backend(backend)
        ppl, ops = be.ppl, ops_for(backend)
        nets = self.networks()
        encoder, decoder = nets["encoder"], nets["decoder"]
        init = self._initial_values(be, device, seed)
        K = self.latent_dim
        softplus = functools.partial(ops.activation, "softplus")

        def model(x=None, y=None, index=None, num_data=None, num=None, training=False):
            weights = ppl.network("decoder", init["decoder"])
            like = next(iter(weights.values()))
            n = x.shape[0] if x is not None else num
            x_scale = self._x_scale(ppl, init)
            with ppl.plate("data", num_data or n, index=index, subsample_size=n):
                z = ppl.sample("z", ppl.dist.Normal(ppl.zeros((n, K), like), 1.0, validate_args=False).to_event(1))
                out = decoder.apply(ops, weights, z, self._label_features(ppl, y, like, z.shape[:-1]), training=training)
                ppl.sample("x", self._observation(ppl, out, x_scale), obs=self._observed(ppl, x))

        def amortized_guide(x, y=None, index=None, num_data=None, num=None, training=False):
            weights = ppl.network("encoder", init["encoder"])
            n = x.shape[0]
            with ppl.plate("data", num_data or n, index=index, subsample_size=n):
                out = encoder.apply(ops, weights, self._encoder_input(x), self._label_features(ppl, y, x), training=training)
                loc, scale = out[..., :K], softplus(out[..., K:]) + MIN_SCALE
                ppl.sample("z", ppl.dist.Normal(loc, scale, validate_args=False).to_event(1))

        return BuiltProgram(backend, model, amortized_guide, form, self, int(data.shape[0]), max_plate_nesting=1)


@dataclasses.dataclass(frozen=True)
class CVAE(VAE):
    """Conditional VAE: z ~ N(0, I), x ~ p(x | decoder(z, y)), q(z | x, y) = N(encoder(x, y)).

    The label y (an integer 0..num_classes-1 per example, one-hot into both networks) comes
    from the dataset's labels when fitting, and from ``labels=`` when sampling or scoring.

    Args:
        num_classes: the number of label values.
        (the other arguments are :class:`VAE`'s)

    Example:
        >>> spec = models.CVAE(64, num_classes=10, likelihood="categorical", num_levels=17)
        >>> fit = ppgen.fit(spec, ppgen.datasets.load("digits", view="categorical"), "svi")
        >>> fit.sample(10, labels=np.arange(10))
    """

    num_classes: int = 10

    family: ClassVar[str] = "cvae"
    conditional: ClassVar[bool] = True

    def _validate(self):
        self._require(self.num_classes >= 2, f"num_classes must be at least 2; got {self.num_classes}")
        super()._validate()
