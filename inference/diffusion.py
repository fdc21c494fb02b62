r"""Diffusion objectives as SVI losses: the simple ε-loss, the variational bound, and their hybrid.

For a diffusion family (``models.DDPM``) with data :math:`x_0`, a step :math:`t` drawn
uniformly from the T steps for each example, noise :math:`\epsilon \sim \mathcal N(0, I)` and
:math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`:

- ``"simple"`` (Ho et al. 2020, Algorithm 1): :math:`\lVert y - f_\theta(x_t, t)\rVert^2`,
  averaged over the D values, where the target y is ε, :math:`x_0` or
  :math:`v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0` as the spec's
  ``prediction`` says;
- ``"vlb"``: the negative variational bound, estimated per example with one step,
  :math:`L_T + T \cdot L_{t-1}` where :math:`L_{t-1}` is the exact Gaussian KL
  :math:`\mathrm{KL}(q(x_{t-1}|x_t,x_0) \| p_\theta(x_{t-1}|x_t))` for t ≥ 2 and the decoder's
  :math:`-\log p_\theta(x_0|x_1)` for t = 1 — an unbiased estimate of the bound in nats;
- ``"hybrid"`` (Nichol & Dhariwal 2021): ``simple + hybrid_weight · vlb``.

Each is passed by name, ``inference.SVI(elbo="simple")`` (``hybrid_weight=`` on SVI), or as
an object, ``inference.SVI(elbo=inference.DiffusionLoss("hybrid", hybrid_weight=0.01))``, a
loss object called ``loss(program, params, batch, rng)`` like every loss (``inference.losses``). The
loss is summed over the minibatch and scaled to the data set (N / batch size), as SVI's ELBOs
are, so ``fit.history``'s per-example ``loss`` is the mean MSE (simple) or the bound in nats
per example (vlb). It runs wherever the data are (CPU or GPU), in both backends. An EMA of
the weights for sampling is ``SVI(ema=0.9999, ema_warmup=True)``.

The program's own ELBO is the other way to the bound: ``SVI(elbo="meanfield")`` on the DDPM's
model and guide (the time plate subsampled by the spec's ``time_batch``) takes the backend's
analytic KL at every step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from ppgen.errors import ConfigError

from .losses import LossConfig, pyro_stream

__all__ = ["DiffusionLoss", "DIFFUSION_LOSSES"]

DIFFUSION_LOSSES = ("simple", "vlb", "hybrid")


@dataclasses.dataclass(frozen=True)
class DiffusionLoss(LossConfig):
    """A diffusion objective for ``inference.SVI(elbo=...)`` (see the module docstring), a loss
    object of ``inference.losses``: ``loss(program, params, batch, rng) -> (value, {})``.

    Args:
        kind: ``"simple"``, ``"vlb"`` or ``"hybrid"`` (also its ``name``).
        hybrid_weight: λ of ``simple + λ·vlb`` (Nichol & Dhariwal use 0.001).

    Example:
        >>> inference.SVI(elbo=inference.DiffusionLoss("hybrid", hybrid_weight=0.001), steps=10_000)
    """

    kind: Literal["simple", "vlb", "hybrid"] = "simple"
    hybrid_weight: float = 0.001

    def _validate(self):
        self._require(self.hybrid_weight >= 0 and math.isfinite(self.hybrid_weight),
                      f"hybrid_weight must be a finite number >= 0; got {self.hybrid_weight}")

    @property
    def name(self) -> str:  # the shorthand it stands for
        return self.kind

    def __call__(self, program, params, batch: dict, rng):
        """The loss on one minibatch of a diffusion family's BuiltProgram: in Pyro the denoiser's
        weights come from the param store and the draws from ``rng`` (a torch.Generator or None:
        torch's default); in NumPyro from ``params`` and the JAX key ``rng``."""
        spec = program.spec
        if spec is None or not spec.diffusion:
            raise ConfigError(f"the diffusion loss {self.kind!r} needs a diffusion model (models.DDPM); got "
                              f"{type(spec).__name__}")
        x = batch["x"]
        n, T = x.shape[0], spec.timesteps
        x0 = spec.to_model_space(x)
        if program.backend == "pyro":
            import torch

            weights = program.extras["weights"]()
            generator = rng if isinstance(rng, torch.Generator) else None
            with pyro_stream(None if generator is not None else rng):
                t = torch.randint(0, T, (n,), device=x.device, generator=generator)
                noise = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
        else:
            import jax

            weights = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("denoiser.")}
            key_t, key_noise = jax.random.split(rng)
            t = jax.random.randint(key_t, (n,), 0, T)
            noise = jax.random.normal(key_noise, x0.shape, dtype=x0.dtype)
        x_t = spec.q_sample(x0, t, noise)
        output = program.extras["denoise"](weights, x_t, t)
        per_example = 0.0
        if self.kind in ("simple", "hybrid"):
            per_example = ((spec.target(x0, noise, t) - output) ** 2).mean(-1)
        if self.kind in ("vlb", "hybrid"):
            bound = variational_bound_estimate(spec, x0, x_t, t, output)
            per_example = per_example + (bound if self.kind == "vlb" else self.hybrid_weight * bound)
        return per_example.sum() * (program.num_data / n), {}


def variational_bound_estimate(spec, x0, x_t, t, output):
    """Per example, L_T + T·L_{t−1} at the example's step t (0-based; t = 0 gives the decoder
    term −log p(x_0 | x_1)): an unbiased one-step estimate of the negative bound, in nats."""
    from ppgen.models.ddpm import array_namespace, discretized_gaussian_log_likelihood, normal_kl

    xp = array_namespace(x0)
    mean, _, log_var, _ = spec.p_mean_variance(output, x_t, t, clip=False)
    true_mean, _, true_log_var = spec.q_posterior_mean_variance(x0, x_t, t)
    kl = normal_kl(true_mean, true_log_var, mean, log_var).sum(-1)
    if spec.likelihood == "discretized_gaussian":
        log_p = discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var, spec.num_levels)
    else:
        log_p = -0.5 * (math.log(2 * math.pi) + log_var + (x0 - mean) ** 2 * xp.exp(-log_var))
    step = xp.where(t == 0, -log_p.sum(-1), kl)
    last = spec.schedule.alphas_cumprod[-1]
    prior = normal_kl(math.sqrt(last) * x0, math.log(1.0 - last) + 0.0 * x0, 0.0 * x0, 0.0 * x0).sum(-1)
    return spec.timesteps * step + prior
