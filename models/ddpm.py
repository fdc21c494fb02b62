r"""Denoising diffusion probabilistic models as a hierarchical latent chain (Ho et al. 2020).

The forward (noising) chain is fixed, with variances :math:`\beta_1, \dots, \beta_T`:

.. math::

    q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\, x_{t-1}, \beta_t I), \qquad
    q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1-\bar\alpha_t) I),

with :math:`\alpha_t = 1-\beta_t` and :math:`\bar\alpha_t = \prod_{s\le t}\alpha_s`. The learned
reverse chain is :math:`p(x_T) = \mathcal N(0, I)`, :math:`p_\theta(x_{t-1} \mid x_t) =
\mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)`, and the negative variational bound is a sum of KL
terms (course notes 000–003):

.. math::

    L = \underbrace{\mathrm{KL}(q(x_T|x_0)\,\|\,p(x_T))}_{L_T}
      + \sum_{t=2}^{T} \underbrace{\mathbb E_q\,\mathrm{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))}_{L_{t-1}}
      \underbrace{- \mathbb E_q \log p_\theta(x_0 \mid x_1)}_{L_0},

against the closed-form posterior :math:`q(x_{t-1}|x_t,x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t
I)`, :math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} x_0 +
\frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t`, :math:`\tilde\beta_t =
\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t`.

The network predicts ε (``prediction="epsilon"``, then :math:`\hat x_0 = (x_t -
\sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}`), :math:`x_0` itself, or
:math:`v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0` (Salimans & Ho 2022); the
reverse mean is :math:`\tilde\mu_t(\hat x_0, x_t)`, and the reverse variance is
:math:`\tilde\beta_t` (``"fixed_small"``) or :math:`\beta_t` (``"fixed_large"``). For data with
known levels (the 17-level digits, 8-bit images) :math:`L_0` is a discretised Gaussian over the
levels scaled to [−1, 1]; otherwise a Gaussian density.

**Indexing.** Arrays and timesteps are 0-based: index ``t`` holds the paper's step t + 1, so
``betas[0]`` is β₁ and ``t = 0`` is the last reverse step, the one that emits x₀.

**The programs.** The guide is the forward chain (no parameters); the model is the reverse
chain. Inside a ``data`` plate and a ``time`` plate over the T steps (which SVI may subsample,
``time_batch``), the sites are ``x_t`` (drawn from the forward jump q(x_t|x_0) in both
programs, so that the pair adds nothing to the ELBO and only carries x_t), ``x_prev``
(x_{t−1}: q(x_{t−1}|x_t, x_0) in the guide, p_θ(x_{t−1}|x_t) in the model, masked at t = 1)
and the observed ``x`` (log p_θ(x_0|x_1), masked to t = 1); outside the time plate ``x_T``
holds L_T. The backend's mean-field ELBO (analytic KL per step) on these programs is therefore
an unbiased estimate of the bound, exact in expectation over the subsampled steps. Generation
is by the samplers (``sample(..., sampler="ddpm" | "ddim")``), not by running the model.

References:
    Ho, J., Jain, A. & Abbeel, P. (2020). Denoising diffusion probabilistic models. NeurIPS.
    Nichol, A. & Dhariwal, P. (2021). Improved denoising diffusion probabilistic models. ICML.
    Song, J., Meng, C. & Ermon, S. (2021). Denoising diffusion implicit models. ICLR.
    Salimans, T. & Ho, J. (2022). Progressive distillation for fast sampling of diffusion models. ICLR.
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

from .nets import TimeMLP, UNet, check_network, ops_for

__all__ = ["DDPM", "SCHEDULES", "PREDICTIONS", "VARIANCES", "make_betas", "normal_kl",
           "discretized_gaussian_log_likelihood", "array_namespace"]

SCHEDULES = ("linear", "cosine", "sigmoid")
PREDICTIONS = ("epsilon", "x0", "v")
VARIANCES = ("fixed_small", "fixed_large")
SAMPLERS = ("ddpm", "ddim")
_NO_MCMC = "a DDPM's T latent layers per example and network weights are far too many to sample; use inference.SVI"


# ======================================================================================
# Schedules and the Gaussian algebra, generic over numpy / torch / jax arrays
# ======================================================================================
def make_betas(schedule: str, timesteps: int, beta_start: Optional[float] = None,
               beta_end: Optional[float] = None, max_beta: Optional[float] = 0.999,
               cosine_offset: float = 0.008) -> np.ndarray:
    """The variances β_1..β_T (float64, shape (T,)) of a named schedule.

    - ``"linear"``: evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al.: 1e-4 to 0.02
      for T = 1000; the defaults scale both by 1000/T, as Nichol & Dhariwal do, so that any T
      ends near pure noise);
    - ``"cosine"``: β_t = 1 − ᾱ_t/ᾱ_{t−1} with ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2),
      s = ``cosine_offset`` (Nichol & Dhariwal 2021), clipped at ``max_beta``;
    - ``"sigmoid"``: β_start + (β_end − β_start) · sigmoid(linspace(−6, 6, T)).

    ``max_beta`` clips the cosine schedule's β (None: no clipping, and a schedule reaching above
    0.999 is an error: β → 1 destroys the signal in one step and makes the posterior
    degenerate). Linear and sigmoid schedules are never clipped: a β outside (0, 1) is an error."""
    if schedule not in SCHEDULES:
        from ppgen.config import suggest

        raise ConfigError(f"unknown beta_schedule {schedule!r}; choose one of {list(SCHEDULES)}."
                          f"{suggest(schedule, SCHEDULES)}")
    T = int(timesteps)
    scale = 1000.0 / T
    start = scale * 1e-4 if beta_start is None else float(beta_start)
    end = scale * 0.02 if beta_end is None else float(beta_end)
    if schedule == "linear":
        betas = np.linspace(start, end, T, dtype=np.float64)
    elif schedule == "sigmoid":
        betas = start + (end - start) / (1.0 + np.exp(-np.linspace(-6.0, 6.0, T)))
    else:
        steps = np.arange(T + 1, dtype=np.float64) / T
        f = np.cos((steps + cosine_offset) / (1.0 + cosine_offset) * math.pi / 2.0) ** 2
        cumprod = f / f[0]
        betas = 1.0 - cumprod[1:] / cumprod[:-1]
    if schedule != "cosine":
        pass
    elif max_beta is not None:
        betas = np.minimum(betas, float(max_beta))
    elif betas.max() > 0.999:
        where = int(np.argmax(betas > 0.999))
        raise ConfigError(f"the {schedule} schedule with T={T} reaches beta={betas.max():.6g} (first above 0.999 at "
                          f"step t={where + 1}); unclipped, that step wipes out the signal. Keep max_beta=0.999 "
                          f"(the clip of Nichol & Dhariwal) or choose a gentler schedule")
    if betas.min() <= 0 or betas.max() >= 1:
        raise ConfigError(f"the {schedule} schedule with T={T}, beta_start={start:g}, beta_end={end:g} gives betas "
                          f"in [{betas.min():.4g}, {betas.max():.4g}]; every beta must lie in (0, 1). Lower beta_end, "
                          f"raise T, or use beta_schedule='cosine'")
    return betas


def array_namespace(x):
    """numpy, torch or jax.numpy: the array library of ``x``."""
    module = type(x).__module__
    if module.startswith("torch"):
        import torch

        return torch
    if module.startswith("jax") or module.startswith("jaxlib"):
        import jax.numpy as jnp

        return jnp
    return np


def normal_kl(mean1, log_var1, mean2, log_var2):
    """KL(N(mean1, e^{log_var1}) ‖ N(mean2, e^{log_var2})) elementwise, in nats."""
    xp = array_namespace(mean1)
    return 0.5 * (log_var2 - log_var1 + xp.exp(log_var1 - log_var2) + (mean1 - mean2) ** 2 * xp.exp(-log_var2) - 1.0)


def _std_normal_cdf(xp, x):
    if xp is np:
        from scipy.special import ndtr

        return ndtr(x)
    if hasattr(xp, "special") and hasattr(xp.special, "ndtr"):  # torch
        return xp.special.ndtr(x)
    import jax.scipy.special

    return jax.scipy.special.ndtr(x)


def discretized_gaussian_log_likelihood(x, mean, log_scale, num_levels: int):
    """log P(x) of levels scaled to [−1, 1] under N(mean, e^{2·log_scale}) integrated over each
    level's bin of width 2/(L − 1), the outer bins extended to ±∞ (Ho et al. 2020, eq. 13);
    elementwise, in nats."""
    xp = array_namespace(x)
    half = 1.0 / (num_levels - 1)
    inv_scale = xp.exp(-log_scale)
    upper = _std_normal_cdf(xp, (x - mean + half) * inv_scale)
    lower = _std_normal_cdf(xp, (x - mean - half) * inv_scale)
    floor = 1e-12
    log_cdf = xp.log(xp.clip(upper, floor, None))
    log_sf = xp.log(xp.clip(1.0 - lower, floor, None))
    log_mid = xp.log(xp.clip(upper - lower, floor, None))
    return xp.where(x < -1.0 + half, log_cdf, xp.where(x > 1.0 - half, log_sf, log_mid))


class Schedule:
    """The arrays of a beta schedule (float64 numpy), with names from the papers, and copies in
    other array types on demand (``like(x)``: the arrays as x's library, dtype and device)."""

    NAMES = ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
             "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
             "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
             "posterior_mean_coef2", "log_betas_clipped")

    def __init__(self, betas: np.ndarray):
        b = np.asarray(betas, dtype=np.float64)
        self.betas = b
        self.alphas = 1.0 - b
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)
        self.posterior_variance = b * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # β̃_1 = 0: its log is clipped to log β̃_2 (as in Ho et al.'s code)
        second = self.posterior_variance[1] if len(b) > 1 else b[0]
        self.posterior_log_variance_clipped = np.log(np.append(second, self.posterior_variance[1:]))
        self.log_betas_clipped = np.log(np.append(second, b[1:]))
        self.posterior_mean_coef1 = b * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = ((1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas)
                                     / (1.0 - self.alphas_cumprod))
        self._copies: dict = {}

    def like(self, x) -> dict:
        """The arrays by name in the array library, dtype and device of ``x``."""
        xp = array_namespace(x)
        if xp is np:
            return {n: getattr(self, n) for n in self.NAMES}
        if xp.__name__ == "torch":
            key = ("torch", x.dtype, x.device)
            if key not in self._copies:
                self._copies[key] = {n: xp.as_tensor(getattr(self, n), dtype=x.dtype, device=x.device)
                                     for n in self.NAMES}
            return self._copies[key]
        dtype = x.dtype if str(x.dtype) in ("float32", "float64") else np.float32
        return {n: xp.asarray(getattr(self, n), dtype=dtype) for n in self.NAMES}


def _at(array, t, x):
    """``array[t]`` shaped to broadcast against ``x`` (t has x's leading shape, or fewer dims)."""
    value = array[t]
    return value.reshape(tuple(value.shape) + (1,) * (x.ndim - value.ndim))


def _as_float(mask, like):
    """A boolean array as 0./1. in ``like``'s library and dtype."""
    xp = array_namespace(like)
    if xp is np:
        return np.asarray(mask, dtype=np.float64)
    if xp.__name__ == "torch":
        return mask.to(like.dtype)
    return mask.astype(like.dtype)


# ======================================================================================
# The spec
# ======================================================================================
@dataclasses.dataclass(frozen=True)
class DDPM(ModelSpec):
    """Denoising diffusion probabilistic model: a fixed forward chain, a learned reverse chain.

    Args:
        data_dim: D, values per example (images are flattened channels-last).
        timesteps: T, the number of diffusion steps (at least 2).
        beta_schedule: ``"linear"``, ``"cosine"`` or ``"sigmoid"`` (see :func:`make_betas`).
        beta_start, beta_end: ends of the linear and sigmoid schedules (None: 1e-4 and 0.02
            scaled by 1000/T).
        max_beta: clip of the cosine schedule's β (None: no clip; a β above 0.999 is then refused).
        prediction: what the network predicts: ``"epsilon"``, ``"x0"`` or ``"v"``.
        variance: reverse variance σ_t²: ``"fixed_small"`` (β̃_t) or ``"fixed_large"`` (β_t).
        likelihood: L_0's decoder: ``"discretized_gaussian"`` over ``num_levels`` levels (data are
            integer levels 0..L−1, scaled to [−1, 1] inside) or ``"gaussian"`` (real data).
        num_levels: L, the levels of a discretised likelihood (17 for the digits, 256 for 8-bit images).
        network: ``"mlp"`` (an MLP with a sinusoidal time embedding: toys, flattened digits) or
            ``"unet"`` (images; ``image_shape`` with sides the U-Net can halve).
        hidden_dims: the MLP's hidden widths.
        time_dim: width of the sinusoidal time embedding.
        image_shape: (height, width[, channels]) for ``network="unet"``.
        unet_channels: channels per U-Net resolution.
        clip_denoised: clip the predicted x_0 to [−1, 1] when sampling and in p_mean_variance
            (None: clip for a discretised likelihood, whose data live there).
        time_batch: steps of the ``time`` plate per evaluation of the program's ELBO (None: all T).
        mixed_precision: run the network in bfloat16 (torch autocast; bf16 arrays in JAX).
        denoiser: a network of your own in place of the built-in one (a ``torch.nn.Module`` binds
            the spec to the Pyro backend, an Equinox module to NumPyro; see :mod:`ppgen.networks`).
            It maps x_t (B, D) and the integer steps t (B,), 0-based, to the ``prediction`` (B, D).

    Example:
        >>> data = ppgen.datasets.load("ring")
        >>> fit = ppgen.fit(models.DDPM(2), data, inference.SVI(elbo="simple", steps=8000, lr=1e-3))
        >>> fit.sample(2000, sampler="ddim", steps=50)
    """

    data_dim: int
    timesteps: int = 1000
    beta_schedule: Literal["linear", "cosine", "sigmoid"] = "linear"
    beta_start: Optional[float] = None
    beta_end: Optional[float] = None
    max_beta: Optional[float] = 0.999
    prediction: Literal["epsilon", "x0", "v"] = "epsilon"
    variance: Literal["fixed_small", "fixed_large"] = "fixed_small"
    likelihood: Literal["gaussian", "discretized_gaussian"] = "gaussian"
    num_levels: Optional[int] = None
    network: Literal["mlp", "unet"] = "mlp"
    hidden_dims: tuple = (256, 256, 256)
    time_dim: int = 64
    image_shape: Optional[tuple] = None
    unet_channels: tuple = (32, 64)
    clip_denoised: Optional[bool] = None
    time_batch: Optional[int] = None
    mixed_precision: bool = False
    denoiser: Optional[Any] = None

    family: ClassVar[str] = "ddpm"
    network_fields: ClassVar[tuple] = ("denoiser",)
    forms: ClassVar[tuple] = ("latent",)
    local_guides: ClassVar[tuple] = ("forward",)
    methods: ClassVar[tuple] = ()
    refusals: ClassVar[dict] = {"nuts": f"NUTS cannot fit a DDPM: {_NO_MCMC}",
                                "hmc": f"HMC cannot fit a DDPM: {_NO_MCMC}",
                                "em": "EM needs closed-form E and M steps, and a DDPM's reverse chain has none",
                                "closed_form": "a DDPM has no closed-form maximum-likelihood solution"}
    elbo_refusals: ClassVar[dict] = {
        "iwae": "its bound is a sum over T steps estimated by subsampling; use elbo='simple', 'hybrid', 'vlb' or "
                "'meanfield'",
        "renyi": "its bound is a sum over T steps estimated by subsampling; use elbo='simple', 'hybrid', 'vlb' or "
                 "'meanfield'",
        "enum": "it has no discrete latents; use elbo='simple', 'hybrid', 'vlb' or 'meanfield'"}
    #: SVI's diffusion losses (inference/diffusion.py) serve this family
    diffusion: ClassVar[bool] = True
    estimated_likelihood: ClassVar[bool] = False
    capabilities: ClassVar[frozenset] = frozenset({"sample", "log_likelihood", "bits_per_dim"})

    def _validate(self):
        self._require(self.timesteps >= 2, f"timesteps must be at least 2 (T=1 is a one-layer VAE with a fixed "
                                           f"encoder); got {self.timesteps}")
        self._require(self.data_dim >= 1, f"data_dim must be at least 1; got {self.data_dim}")
        if self.max_beta is not None:
            self._require(0 < self.max_beta < 1, f"max_beta must lie in (0, 1) or be None; got {self.max_beta}")
        if self.likelihood == "discretized_gaussian":
            self._require(self.num_levels is not None and self.num_levels >= 2,
                          f"likelihood='discretized_gaussian' needs num_levels >= 2 (17 for the digits, 256 for "
                          f"8-bit images); got num_levels={self.num_levels}")
        else:
            self._require(self.num_levels is None, f"num_levels={self.num_levels} applies to "
                                                   f"likelihood='discretized_gaussian'")
        self._require(min(self.hidden_dims, default=1) >= 1, f"hidden_dims must be positive; got {self.hidden_dims}")
        self._require(self.time_dim >= 2 and self.time_dim % 2 == 0,
                      f"time_dim must be an even number >= 2 (sines and cosines); got {self.time_dim}")
        if self.time_batch is not None:
            self._require(1 <= self.time_batch <= self.timesteps,
                          f"time_batch must lie in 1..timesteps={self.timesteps} (or None for all); "
                          f"got {self.time_batch}")
        check_network(self, "denoiser", ((self.data_dim,), ()), (self.data_dim,))
        if self.network == "unet" and self.denoiser is None:
            self._network()  # raises with the fix for image sizes the U-Net cannot take
        elif self.image_shape is not None:
            self._require(False, f"image_shape={self.image_shape} applies to network='unet'; the MLP takes "
                                 f"flattened rows (drop image_shape)")
        self.schedule  # noqa: B018 (raises ConfigError for impossible schedules)

    # ---- schedule: arrays and functions named as in the papers ---------------------------
    @functools.cached_property
    def schedule(self) -> Schedule:
        return Schedule(make_betas(self.beta_schedule, self.timesteps, self.beta_start, self.beta_end, self.max_beta))

    @property
    def betas(self) -> np.ndarray:
        """β_1..β_T, float64 (index t is the paper's step t + 1)."""
        return self.schedule.betas

    @property
    def alphas(self) -> np.ndarray:
        """α_t = 1 − β_t."""
        return self.schedule.alphas

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """ᾱ_t = Π_{s ≤ t} α_s."""
        return self.schedule.alphas_cumprod

    @property
    def _clip(self) -> bool:
        return self.likelihood == "discretized_gaussian" if self.clip_denoised is None else self.clip_denoised

    def q_sample(self, x0, t, noise):
        """A draw of x_t ~ q(x_t | x_0): √ᾱ_t x_0 + √(1 − ᾱ_t) ε, for 0-based steps ``t``
        (numpy, torch or jax arrays; float64 numpy stays float64)."""
        s = self.schedule.like(x0)
        return _at(s["sqrt_alphas_cumprod"], t, x0) * x0 + _at(s["sqrt_one_minus_alphas_cumprod"], t, x0) * noise

    def q_posterior_mean_variance(self, x0, x_t, t):
        """Mean, variance and clipped log-variance of q(x_{t−1} | x_t, x_0) (0-based t)."""
        s = self.schedule.like(x_t)
        mean = _at(s["posterior_mean_coef1"], t, x_t) * x0 + _at(s["posterior_mean_coef2"], t, x_t) * x_t
        return mean, _at(s["posterior_variance"], t, x_t), _at(s["posterior_log_variance_clipped"], t, x_t)

    def predict_start(self, model_output, x_t, t):
        """x̂_0 from the network's output (ε, x_0 or v) at x_t, step t."""
        s = self.schedule.like(x_t)
        if self.prediction == "epsilon":
            return _at(s["sqrt_recip_alphas_cumprod"], t, x_t) * x_t - _at(s["sqrt_recipm1_alphas_cumprod"], t, x_t) \
                * model_output
        if self.prediction == "v":
            return _at(s["sqrt_alphas_cumprod"], t, x_t) * x_t - _at(s["sqrt_one_minus_alphas_cumprod"], t, x_t) \
                * model_output
        return model_output

    def predict_noise(self, x0, x_t, t):
        """ε̂ implied by x̂_0 at x_t: (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t)."""
        s = self.schedule.like(x_t)
        return (x_t - _at(s["sqrt_alphas_cumprod"], t, x_t) * x0) / _at(s["sqrt_one_minus_alphas_cumprod"], t, x_t)

    def target(self, x0, noise, t):
        """What the network should output at step t: ε, x_0, or v = √ᾱ_t ε − √(1 − ᾱ_t) x_0."""
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "x0":
            return x0
        s = self.schedule.like(x0)
        return _at(s["sqrt_alphas_cumprod"], t, x0) * noise - _at(s["sqrt_one_minus_alphas_cumprod"], t, x0) * x0

    def p_mean_variance(self, model_output, x_t, t, clip: Optional[bool] = None):
        """Mean, variance, log-variance of p_θ(x_{t−1} | x_t) and the x̂_0 behind the mean.

        The mean is q's posterior mean at x̂_0 (clipped to [−1, 1] when ``clip``; default:
        the spec's ``clip_denoised``); the variance is β̃_t (fixed_small, its log clipped at
        t = 1) or β_t (fixed_large, β̃_2 at t = 1, as in Ho et al.)."""
        x0 = self.predict_start(model_output, x_t, t)
        if self._clip if clip is None else clip:
            x0 = array_namespace(x0).clip(x0, -1.0, 1.0)
        mean, _, _ = self.q_posterior_mean_variance(x0, x_t, t)
        s = self.schedule.like(x_t)
        log_var = _at(s["posterior_log_variance_clipped" if self.variance == "fixed_small" else "log_betas_clipped"],
                      t, x_t)
        return mean, array_namespace(log_var).exp(log_var), log_var, x0

    # ---- samplers ---------------------------------------------------------------------
    def ddpm_step(self, model_output, x_t, t, noise):
        """One ancestral step (Algorithm 2): x_{t−1} = μ_θ(x_t, t) + σ_t z, no noise at t = 0."""
        mean, _, log_var, _ = self.p_mean_variance(model_output, x_t, t)
        xp = array_namespace(x_t)
        nonzero = _as_float(t > 0, x_t)
        nonzero = nonzero.reshape(tuple(nonzero.shape) + (1,) * (x_t.ndim - nonzero.ndim))
        return mean + nonzero * xp.exp(0.5 * log_var) * noise

    def ddim_timesteps(self, steps: int) -> np.ndarray:
        """The S = ``steps`` 0-based steps DDIM visits, T/S apart: [0, T/S, 2T/S, ...] (S must divide T)."""
        steps = int(steps)
        if not 1 <= steps <= self.timesteps or self.timesteps % steps:
            divisors = [d for d in (10, 20, 25, 50, 100, 200, 250, 500)
                        if self.timesteps % d == 0 and d <= self.timesteps]
            raise ConfigError(f"DDIM steps={steps} must divide T={self.timesteps} and not exceed it, so that the "
                              f"visited steps are evenly spaced; e.g. one of {divisors or [self.timesteps]}")
        return np.arange(0, self.timesteps, self.timesteps // steps)

    def ddim_step(self, model_output, x_t, t, t_prev, eta: float, noise):
        """One DDIM step (Song et al. 2021, eq. 12) from step t to step t_prev < t (t_prev = −1
        means x_0): x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z,
        σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev); η = 0 is deterministic."""
        xp = array_namespace(x_t)
        s = self.schedule.like(x_t)
        x0 = self.predict_start(model_output, x_t, t)
        if self._clip:
            x0 = xp.clip(x0, -1.0, 1.0)
        eps = self.predict_noise(x0, x_t, t)
        a_t = _at(s["alphas_cumprod"], t, x_t)
        a_prev = _at(s["alphas_cumprod_prev"], t_prev + 1, x_t)  # alphas_cumprod_prev[k] = ᾱ_{k−1}; ᾱ_{−1} = 1
        sigma = eta * ((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)) ** 0.5
        return a_prev ** 0.5 * x0 + xp.clip(1.0 - a_prev - sigma ** 2, 0.0, None) ** 0.5 * eps + sigma * noise

    # ---- data ---------------------------------------------------------------------------
    @classmethod
    def options_from_data(cls, meta: dict) -> dict:
        """Likelihood options matching a dataset's ``meta`` (used when the model is given by name)."""
        if meta.get("support") == "categorical" and meta.get("levels"):
            return {"likelihood": "discretized_gaussian", "num_levels": int(meta["levels"])}
        return {"likelihood": "gaussian"}

    def check_data(self, x, what: str = "data") -> np.ndarray:
        from ppgen.datasets import check_finite

        x = check_finite(self._rows(x, what).astype(np.float32, copy=False), what)
        if self.likelihood == "discretized_gaussian":
            bad = x[(x != np.round(x)) | (x < 0) | (x > self.num_levels - 1)]
            if bad.size:
                raise DataError(f"{what} has the value {bad[0]:g}, outside the levels 0..{self.num_levels - 1} of "
                                f"likelihood='discretized_gaussian' with num_levels={self.num_levels}; give integer "
                                f"levels (view='categorical') or use likelihood='gaussian' for real data")
        return x

    def to_model_space(self, x):
        """Data as the chain's x_0: levels k ↦ 2k/(L − 1) − 1 for a discretised likelihood."""
        if self.likelihood == "discretized_gaussian":
            return x * (2.0 / (self.num_levels - 1)) - 1.0
        return x

    def to_data(self, x0: np.ndarray) -> np.ndarray:
        """x_0 back to the data's format (nearest level for a discretised likelihood)."""
        x0 = np.asarray(x0, dtype=np.float64)
        if self.likelihood == "discretized_gaussian":
            levels = np.rint((np.clip(x0, -1.0, 1.0) + 1.0) * (self.num_levels - 1) / 2.0)
            return levels.astype(np.int64)
        return x0.astype(np.float32)

    def param_names(self, form: str) -> tuple:
        return tuple(self.param_shapes())

    def param_shapes(self) -> dict:
        return {f"denoiser.{k}": tuple(shape) for k, shape in self._network().shapes().items()}

    def num_parameters(self) -> int:
        return self._network().num_parameters()

    # ---- network -------------------------------------------------------------------------
    def networks(self) -> dict:
        return {"denoiser": self._network()}

    def _network(self):
        if self.denoiser is not None:
            return self.denoiser
        if self.network == "unet":
            return UNet(self._image_shape(), self.unet_channels, time_dim=self.time_dim)
        return TimeMLP(self.data_dim, self.hidden_dims, self.time_dim)

    def _image_shape(self) -> tuple:
        shape = self.image_shape
        if shape is None:
            side = int(round(math.sqrt(self.data_dim)))
            if side * side != self.data_dim:
                raise ConfigError(f"network='unet' needs image_shape=(height, width[, channels]) for data of "
                                  f"{self.data_dim} values (not a square grey image)")
            shape = (side, side)
        shape = tuple(int(v) for v in shape) + ((1,) if len(shape) == 2 else ())
        if len(shape) != 3 or int(np.prod(shape)) != self.data_dim:
            raise ConfigError(f"image_shape={self.image_shape} must be (height, width[, channels]) holding "
                              f"data_dim={self.data_dim} values")
        return shape

    def _denoiser(self, backend: str):
        """``denoise(weights, x_t, t, training=False)`` for ``backend``: the network's output at float32 (run in
        bfloat16 when ``mixed_precision``)."""
        net, ops = self._network(), ops_for(backend)
        if not self.mixed_precision:
            return lambda weights, x_t, t, training=False: net.apply(ops, weights, x_t, t, training=training)
        if backend == "pyro":
            import torch

            def denoise(weights, x_t, t, training=False):
                with torch.autocast(x_t.device.type, dtype=torch.bfloat16):
                    return net.apply(ops, weights, x_t, t, training=training).float()
            return denoise
        import jax.numpy as jnp

        def denoise(weights, x_t, t, training=False):
            low = {k: v.astype(jnp.bfloat16) for k, v in weights.items()}
            return net.apply(ops, low, x_t.astype(jnp.bfloat16), t, training=training).astype(jnp.float32)
        return denoise

    def _initial_values(self, be, device, seed: int) -> dict:
        return {k: be.asarray(v, "float32", device) for k, v in self._network().init(seed * 1009).items()}

    # ---- the programs --------------------------------------------------------------------
    def build(self, backend: str, form: str, *, data: np.ndarray, guide: str | None = None, seed: int = 0,
              device: str = "cpu") -> BuiltProgram:
        if form != "latent":
            raise ValueError(f"DDPM has no form {form!r}; it has {self.forms}")
        if guide not in (None, "forward"):
            raise ConfigError(f"DDPM's guide is the fixed forward chain ('forward'); got guide={guide!r}")
        self.check_backend(backend)
        be = get_backend(backend)
        ppl = be.ppl
        init = self._initial_values(be, device, seed)
        denoise = self._denoiser(backend)
        T, D = self.timesteps, self.data_dim
        time_batch = self.time_batch

        def weights():
            return ppl.network("denoiser", init)

        def chain(x):
            """x_0 (n, D), the time plate and its steps (k, 1) as 0-based integers."""
            x0 = self.to_model_space(x)
            plate = ppl.plate("time", T, subsample_size=time_batch if time_batch and time_batch < T else None,
                              dim=-2, like=x0)
            return x0, plate

        def jump(x0, t):
            """q(x_t | x_0) for steps t: (1,) → (n, D) values, (k, 1) → (k, n, D)."""
            s = self.schedule.like(x0)
            x0 = x0 if t.ndim < 2 else x0[None]
            return ppl.dist.Normal(_at(s["sqrt_alphas_cumprod"], t, x0) * x0,
                                   _at(s["sqrt_one_minus_alphas_cumprod"], t, x0), validate_args=False).to_event(1)

        def model(x, index=None, num_data=None, training=False):
            w = weights()
            n = x.shape[0]
            x0, time_plate = chain(x)
            with ppl.plate("data", num_data or n, index=index, subsample_size=n, dim=-1):
                ppl.sample("x_T", ppl.dist.Normal(ppl.zeros((n, D), x0), 1.0, validate_args=False).to_event(1))
                with time_plate as steps:
                    t = steps.reshape(-1, 1)                                         # (k, 1), 0-based
                    x_t = ppl.sample("x_t", jump(x0, t))                             # (k, n, D)
                    t_rows = ppl.broadcast_to(t, tuple(x_t.shape[:-1]))
                    mean, _, log_var, _ = self.p_mean_variance(denoise(w, x_t, t_rows, training), x_t, t, clip=False)
                    first = t == 0
                    scale = ppl.xp.exp(0.5 * log_var)
                    ppl.sample("x_prev", ppl.dist.Normal(mean, scale, validate_args=False).to_event(1).mask(~first))
                    ppl.sample("x", self._decoder(backend, ppl, mean, log_var).mask(first),
                               obs=ppl.broadcast_to(x0, tuple(x_t.shape)))

        def forward_guide(x, index=None, num_data=None):
            n = x.shape[0]
            x0, time_plate = chain(x)
            with ppl.plate("data", num_data or n, index=index, subsample_size=n, dim=-1):
                ppl.sample("x_T", jump(x0, ppl.index(np.array([T - 1]), like=x0)))
                with time_plate as steps:
                    t = steps.reshape(-1, 1)
                    x_t = ppl.sample("x_t", jump(x0, t))
                    mean, var, _ = self.q_posterior_mean_variance(x0, x_t, t)
                    first = t == 0
                    var = var + _as_float(first, var).reshape(tuple(var.shape))  # β̃_1 = 0: a placeholder 1, masked
                    ppl.sample("x_prev", ppl.dist.Normal(mean, var ** 0.5, validate_args=False).to_event(1)
                               .mask(~first))

        return BuiltProgram(backend, model, forward_guide, form, self, int(data.shape[0]), max_plate_nesting=2,
                            extras={"weights": weights, "denoise": denoise})

    def _decoder(self, backend, ppl, mean, log_var):
        """The distribution of L_0: log p_θ(x_0 | x_1) per example."""
        if self.likelihood == "discretized_gaussian":
            shape = tuple(np.broadcast_shapes(tuple(mean.shape), tuple(log_var.shape)))
            return _discretized_class(backend)(mean, ppl.broadcast_to(0.5 * log_var, shape),
                                               self.num_levels).to_event(1)
        return ppl.dist.Normal(mean, ppl.xp.exp(0.5 * log_var), validate_args=False).to_event(1)

    # ---- evaluation -----------------------------------------------------------------------
    def bound_terms(self, backend: str, params: dict, x, seed: int = 0, batch_size: int = 256,
                    device: str = "cpu") -> dict:
        """The negative variational bound of each row of ``x``, term by term, with exact KLs
        (one draw of x_t ~ q(x_t | x_0) per step; the network runs on ``device``):
        ``{"prior": L_T (N,), "steps": L_{t−1} (T−1, N) for t = 2..T, "decoder": L_0 (N,)}`` in
        nats, float64."""
        be = get_backend(backend)
        x = self.check_data(x, "x")
        rng = np.random.default_rng(seed)
        denoise = self._denoiser(backend)
        weights = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("denoiser.")}
        out = {"prior": [], "steps": [], "decoder": []}
        T = self.timesteps
        s = self.schedule
        for start in range(0, x.shape[0], batch_size):
            x0 = np.asarray(self.to_model_space(x[start:start + batch_size].astype(np.float64)))
            n = x0.shape[0]
            mean_T = s.sqrt_alphas_cumprod[-1] * x0
            out["prior"].append(normal_kl(mean_T, np.log(1.0 - s.alphas_cumprod[-1]), 0.0, 0.0).sum(-1))
            steps, decoder = np.zeros((T - 1, n)), None
            per_call = max(1, min(50, int(2e6 // (n * self.data_dim))))  # steps per network call
            for t0 in range(0, T, per_call):
                ts = np.arange(t0, min(T, t0 + per_call))
                noise = rng.standard_normal((len(ts), n, self.data_dim))
                x_t = self.q_sample(x0[None], ts[:, None], noise)                  # float64 (k, n, D)
                t_rows = np.broadcast_to(ts[:, None], (len(ts), n))
                output = _run_network(be, backend, denoise, weights, x_t, t_rows, device)
                mean, _, log_var, _ = self.p_mean_variance(output, x_t, ts[:, None], clip=False)
                true_mean, _, true_log_var = self.q_posterior_mean_variance(x0[None], x_t, ts[:, None])
                kl = normal_kl(true_mean, true_log_var, mean, log_var).sum(-1)     # (k, n)
                for j, t in enumerate(ts):
                    if t == 0:
                        if self.likelihood == "discretized_gaussian":
                            lp = discretized_gaussian_log_likelihood(x0, mean[j], 0.5 * log_var[j], self.num_levels)
                        else:
                            lp = -0.5 * (np.log(2 * np.pi) + log_var[j] + (x0 - mean[j]) ** 2 / np.exp(log_var[j]))
                        decoder = -lp.sum(-1)
                    else:
                        steps[t - 1] = kl[j]
            out["steps"].append(steps)
            out["decoder"].append(decoder)
        return {"prior": np.concatenate(out["prior"]), "steps": np.concatenate(out["steps"], axis=1),
                "decoder": np.concatenate(out["decoder"])}

    def log_likelihood(self, backend: str, params: dict, x, seed: int = 0, device: str = "cpu") -> np.ndarray:
        """The variational lower bound on log p(x) per row, −(L_T + Σ_t L_{t−1} + L_0), in nats:
        all T terms, KLs exact given one draw of each x_t (Ho et al. 2020, eq. 5). For a
        discretised likelihood it bounds the probability of the integer levels."""
        terms = self.bound_terms(backend, params, x, seed, device=device)
        return -(terms["prior"] + terms["steps"].sum(0) + terms["decoder"])

    def bits_per_dim(self, backend: str, params: dict, x, seed: int = 0, device: str = "cpu") -> np.ndarray:
        """−log₂ of the bound per value: −log_likelihood / (D ln 2), per row (discrete data)."""
        if self.likelihood != "discretized_gaussian":
            raise ConfigError("bits per dimension is the convention for discrete data (likelihood="
                              "'discretized_gaussian'); for real data use log_likelihood (nats)")
        return -self.log_likelihood(backend, params, x, seed, device) / (self.data_dim * math.log(2.0))

    def sample(self, backend: str, params: dict, num: int, seed: int = 0, sampler: str = "ddpm",
               steps: Optional[int] = None, eta: float = 0.0, return_chain: bool = False, device: str = "cpu"):
        """``num`` new examples by ancestral sampling (``"ddpm"``, Algorithm 2, all T steps) or
        DDIM (``"ddim"``, ``steps`` S dividing T, ``eta`` η ∈ [0, 1]); in the data's format.

        With ``return_chain`` also the states x_t before each step and the final x_0 as a
        (steps + 1, num, D) float array in model space ([−1, 1] for discretised data).
        ``device`` runs the chain there (e.g. ``"cuda"``; a fit passes its own)."""
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; choose 'ddpm' (ancestral) or 'ddim'")
        if sampler == "ddpm" and steps not in (None, self.timesteps):
            raise ConfigError(f"the ancestral sampler runs all T={self.timesteps} steps; got steps={steps}. Use "
                              f"sampler='ddim' for fewer")
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise); got {eta}")
        visits = np.arange(self.timesteps) if sampler == "ddpm" else self.ddim_timesteps(steps or 50)
        x, chain = _sample_loop(self, backend, params, int(num), seed, sampler, visits, float(eta), return_chain,
                                device)
        data = self.to_data(x)
        return (data, chain) if return_chain else data


@functools.lru_cache(maxsize=None)
def _discretized_class(backend: str):
    """The discretised Gaussian (levels scaled to [−1, 1]) as a distribution class of ``backend``:
    ``cls(loc, log_scale, num_levels)``, elementwise (use ``.to_event``)."""
    if backend == "pyro":
        import torch
        from pyro.distributions import TorchDistribution, constraints

        class DiscretizedGaussian(TorchDistribution):
            arg_constraints: dict = {}
            support = constraints.real
            has_rsample = False

            def __init__(self, loc, log_scale, num_levels, validate_args=False):
                self.loc, self.log_scale, self.num_levels = loc, log_scale, int(num_levels)
                super().__init__(torch.broadcast_shapes(loc.shape, log_scale.shape), torch.Size(),
                                 validate_args=False)

            def expand(self, batch_shape, _instance=None):
                return DiscretizedGaussian(self.loc.expand(batch_shape), self.log_scale.expand(batch_shape),
                                           self.num_levels)

            def log_prob(self, value):
                return discretized_gaussian_log_likelihood(value, self.loc, self.log_scale, self.num_levels)

            def sample(self, sample_shape=torch.Size()):
                shape = self._extended_shape(sample_shape)
                with torch.no_grad():
                    x = self.loc.expand(shape) + self.log_scale.exp().expand(shape) * torch.randn(
                        shape, dtype=self.loc.dtype, device=self.loc.device)
                    return _snap(x.clamp(-1.0, 1.0), self.num_levels)

        return DiscretizedGaussian
    import jax
    import jax.numpy as jnp
    from numpyro.distributions import Distribution, constraints

    class DiscretizedGaussianJax(Distribution):
        arg_constraints: dict = {}
        support = constraints.real

        def __init__(self, loc, log_scale, num_levels, validate_args=None):
            self.loc, self.log_scale, self.num_levels = loc, log_scale, int(num_levels)
            super().__init__(jnp.broadcast_shapes(jnp.shape(loc), jnp.shape(log_scale)), (), validate_args=False)

        def log_prob(self, value):
            return discretized_gaussian_log_likelihood(value, self.loc, self.log_scale, self.num_levels)

        def sample(self, key, sample_shape=()):
            shape = sample_shape + self.batch_shape
            x = self.loc + jnp.exp(self.log_scale) * jax.random.normal(key, shape)
            return _snap(jnp.clip(x, -1.0, 1.0), self.num_levels)

    return DiscretizedGaussianJax


def _snap(x, num_levels: int):
    """Values in [−1, 1] moved to the nearest of L evenly spaced levels."""
    xp = array_namespace(x)
    step = 2.0 / (num_levels - 1)
    return xp.round((x + 1.0) / step) * step - 1.0


def _run_network(be, backend, denoise, weights, x_t, t_rows, device="cpu") -> np.ndarray:
    """The network's output (float64 numpy) at numpy x_t, steps t_rows, on ``device``, without gradients."""
    if backend == "pyro":
        import torch

        with torch.no_grad():
            w = {k: be.asarray(v, "float32", device) for k, v in weights.items()}
            out = denoise(w, be.asarray(x_t, "float32", device), be.asarray(np.array(t_rows), "int64", device))
        return out.double().cpu().numpy()
    with be.placed(device):
        w = {k: be.asarray(v, "float32", device) for k, v in weights.items()}
        out = _jitted(denoise)(w, be.asarray(x_t, "float32", device), be.asarray(np.array(t_rows), "int32", device))
        return np.asarray(out, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _jitted(fn):
    import jax

    return jax.jit(fn)


def _sample_loop(spec: DDPM, backend: str, params: dict, num: int, seed: int, sampler: str, visits: np.ndarray,
                 eta: float, return_chain: bool, device: str = "cpu"):
    """Run a sampler from x_T ~ N(0, I) through ``visits`` (ascending 0-based steps, visited
    from the last); returns the final x_0 (numpy float64) and optionally the chain."""
    shapes = spec._network().shapes()
    weights = {}
    for k, v in params.items():
        if k.startswith("denoiser."):
            name, v = k.split(".", 1)[1], np.asarray(v)
            weights[name] = v.reshape(shapes[name]) if v.size == int(np.prod(shapes[name])) else v  # (1, ...) draws
    order = visits[::-1]
    previous = np.append(order[1:], -1)
    if backend == "pyro":
        import torch

        denoise = spec._denoiser(backend)
        dev = torch.device(device)
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        w = {k: torch.as_tensor(np.asarray(v), device=dev) for k, v in weights.items()}
        x = torch.randn((num, spec.data_dim), generator=gen, device=dev)
        chain = [x.double().cpu().numpy()] if return_chain else None
        with torch.no_grad():
            for t, t_prev in zip(order, previous):
                t_rows = torch.full((num,), int(t), dtype=torch.long, device=dev)
                out = denoise(w, x, t_rows)
                z = torch.randn(x.shape, generator=gen, device=dev)
                x = spec.ddpm_step(out, x, t_rows, z) if sampler == "ddpm" else \
                    spec.ddim_step(out, x, t_rows, t_rows * 0 + int(t_prev), eta, z)
                if return_chain:
                    chain.append(x.double().cpu().numpy())
        return x.double().cpu().numpy(), (np.stack(chain) if return_chain else None)
    import jax
    import jax.numpy as jnp

    from ppgen.backends import get_backend

    be = get_backend("numpyro")
    step = _jax_sampler_step(spec, sampler, eta)
    dev = be.device(device)
    with be.placed(device):
        w = {k: be.asarray(v, "float32", device) for k, v in weights.items()}
        key = jax.device_put(jax.random.PRNGKey(int(seed)), dev)
        key, sub = jax.random.split(key)
        x = jax.random.normal(sub, (num, spec.data_dim))
        chain = [np.asarray(x, np.float64)] if return_chain else None
        for t, t_prev in zip(order, previous):
            key, sub = jax.random.split(key)
            x = step(w, x, jax.device_put(jnp.int32(t), dev), jax.device_put(jnp.int32(t_prev), dev), sub)
            if return_chain:
                chain.append(np.asarray(x, np.float64))
        return np.asarray(x, np.float64), (np.stack(chain) if return_chain else None)


@functools.lru_cache(maxsize=16)
def _jax_sampler_step(spec: DDPM, sampler: str, eta: float):
    import jax
    import jax.numpy as jnp

    denoise = spec._denoiser("numpyro")

    def step(w, x, t, t_prev, key):
        t_rows = jnp.full((x.shape[0],), t)
        out = denoise(w, x, t_rows)
        z = jax.random.normal(key, x.shape)
        if sampler == "ddpm":
            return spec.ddpm_step(out, x, t_rows, z)
        return spec.ddim_step(out, x, t_rows, jnp.full((x.shape[0],), t_prev), eta, z)

    return jax.jit(step)
