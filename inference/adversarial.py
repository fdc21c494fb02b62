r"""Adversarial objectives as losses, and the alternating two-player step that optimises them.

A GAN (course notes 000, 003, 004; Goodfellow et al. 2014) is an implicit model
:math:`z \sim p(z),\ x = G_\theta(z)` trained against a discriminator (critic)
:math:`D_\phi(x)` that outputs one real score :math:`s` per example. The losses below are each
one argument apart, ``Adversarial(loss=...)``; with :math:`\sigma` the logistic function and
:math:`D = \sigma(s)` for the first two:

- ``"minimax"``: the two-player value
  :math:`V(\theta, \phi) = \mathbb E_{p_{data}}[\log D(x)] + \mathbb E_{p(z)}[\log(1 - D(G(z)))]`,
  maximised by the discriminator and minimised by the generator. At the optimal discriminator
  :math:`D^* = p_{data}/(p_{data} + p_\theta)` it equals :math:`2\,\mathrm{JS}(p_{data}\|p_\theta) - \log 4`.
- ``"non-saturating"``: the same discriminator; the generator minimises
  :math:`-\mathbb E[\log D(G(z))]`, which keeps its gradient when the discriminator wins early.
- ``"wasserstein"``: the critic maximises :math:`\mathbb E_{p_{data}}[s(x)] - \mathbb E_{p_\theta}[s(x)]`
  with its weights clipped to ``[-clip, clip]`` after every step (Arjovsky et al. 2017); the
  generator minimises :math:`-\mathbb E[s(G(z))]`.
- ``"wgan-gp"``: the Wasserstein critic with the gradient penalty
  :math:`\lambda\,\mathbb E_{\hat x}[(\|\nabla_{\hat x} s(\hat x)\|_2 - 1)^2]` on interpolates
  :math:`\hat x = \alpha x_{data} + (1-\alpha) x_g,\ \alpha \sim U(0, 1)` (Gulrajani et al. 2017).
- ``"hinge"``: the critic minimises :math:`\mathbb E[\max(0, 1 - s(x))] + \mathbb E[\max(0, 1 + s(G(z)))]`,
  the generator :math:`-\mathbb E[s(G(z))]` (Lim & Ye 2017; Miyato et al. 2018).

The step (notes 004, "a double-loop algorithm"): ``critic_steps`` = k updates of the
discriminator, each on its own minibatch of data and fresh generator samples, then one update
of the generator; the players have separate Adam optimisers and learning rates. One step thus
reads k minibatches, and an epoch is one pass of the data through the critic.

The same step trains an adversarial autoencoder (``models.AAE``), where the "data" of the
discriminator are prior draws z ~ p(z), its "samples" are codes of the encoder, and the
generator's loss adds the reconstruction term; and the WAE-MMD variant, which has no
discriminator (one player: the autoencoder with an MMD penalty).

The objectives are written once over array methods shared by PyTorch and JAX; the step runs in
PyTorch (Pyro backend, CPU or CUDA) or as one compiled JAX function (NumPyro backend).

References:
    Goodfellow, I. et al. (2014). Generative adversarial nets. NeurIPS.
    Arjovsky, M., Chintala, S. & Bottou, L. (2017). Wasserstein generative adversarial networks. ICML.
    Gulrajani, I. et al. (2017). Improved training of Wasserstein GANs. NeurIPS.
    Lim, J. H. & Ye, J. C. (2017). Geometric GAN. arXiv:1705.02894.
    Makhzani, A. et al. (2016). Adversarial autoencoders. ICLR workshop.
    Tolstikhin, I. et al. (2018). Wasserstein auto-encoders. ICLR.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar, Literal, NamedTuple, Optional

import numpy as np


from ppgen.backends import get_backend
from ppgen.config import Config, NameOrObject
from ppgen.errors import CheckpointError, ConfigError, DataError

from .base import Inference, Kernel, Result, info_with_metrics, set_learning_rate, torch_average_
from .losses import ADVERSARIAL_LOSSES, LossConfig, call_loss, loss_name, pyro_generator

__all__ = ["Adversarial", "AdversarialInfo", "TorchGameKernel", "TorchGameState", "JaxGameKernel", "JaxGameState",
           "AdversarialLoss", "GeneratorLoss", "DiscriminatorLoss", "Game", "LOSSES",
           "random_source",
           "discriminator_loss", "generator_loss", "minimax_value", "gradient_penalty", "mmd_penalty"]

LOSSES = ADVERSARIAL_LOSSES
_WASSERSTEIN = ("wasserstein", "wgan-gp")
#: per-loss defaults: (critic steps, lr of both players, Adam betas), from the papers
_DEFAULTS = {"minimax": (1, 2e-4, (0.5, 0.999)), "non-saturating": (1, 2e-4, (0.5, 0.999)),
             "wasserstein": (5, 5e-5, (0.5, 0.999)), "wgan-gp": (5, 1e-4, (0.0, 0.9)),
             "hinge": (1, 2e-4, (0.0, 0.9))}


def _loss_name(name) -> str:
    if not isinstance(name, str):
        raise ConfigError(f"loss={name!r} must be a name, one of {list(LOSSES)}")
    key = name.lower().replace("_", "-")
    key = {"ns": "non-saturating", "nonsaturating": "non-saturating", "gan": "minimax", "wgan": "wasserstein",
           "wgangp": "wgan-gp", "wgan-clip": "wasserstein"}.get(key, key)
    if key not in LOSSES:
        from ppgen.config import suggest

        raise ConfigError(f"unknown adversarial loss {name!r}; choose one of {list(LOSSES)}.{suggest(key, LOSSES)}")
    return key


def _scores(scores, what: str):
    """One score per example: (N,) as is, (N, 1) squeezed; anything else is refused."""
    shape = tuple(scores.shape)
    if len(shape) == 2 and shape[1] == 1:
        return scores[:, 0]
    if len(shape) != 1:
        raise DataError(f"the discriminator's {what} scores have shape {shape}; a discriminator must give one "
                        f"real score per example, shape (N,) or (N, 1). Make its last layer output a single "
                        f"unit (out_dim=1) and no activation")
    return scores


def _xp(x):
    """The array namespace of ``x``: torch for tensors, jax.numpy otherwise."""
    if hasattr(x, "detach"):
        import torch

        return torch
    import jax.numpy as jnp

    return jnp


def _softplus(x):
    """log(1 + eˣ) without overflow, with the right gradient σ(x) everywhere (also at 0, where a
    hand-written max(x, 0) + log1p(e^{−|x|}) gets a subgradient instead)."""
    if hasattr(x, "detach"):
        import torch

        return torch.nn.functional.softplus(x)
    import jax

    return jax.nn.softplus(x)


def discriminator_loss(loss: str, real_scores, fake_scores):
    """The discriminator's (critic's) loss to minimise, from its scores of data and of samples.

    ``"minimax"`` and ``"non-saturating"``: −E[log σ(s_real)] − E[log(1 − σ(s_fake))] (the
    binary cross-entropy, = −V); Wasserstein losses: E[s_fake] − E[s_real] (the gradient
    penalty is added by :func:`gradient_penalty`); ``"hinge"``: E[max(0, 1 − s_real)] +
    E[max(0, 1 + s_fake)]. Arrays are PyTorch or JAX, shape (N,) or (N, 1)."""
    loss = _loss_name(loss)
    real, fake = _scores(real_scores, "data"), _scores(fake_scores, "sample")
    if loss in ("minimax", "non-saturating"):
        return _softplus(-real).mean() + _softplus(fake).mean()
    if loss in _WASSERSTEIN:
        return fake.mean() - real.mean()
    xp = _xp(real)
    return xp.clip(1.0 - real, min=0).mean() + xp.clip(1.0 + fake, min=0).mean()


def generator_loss(loss: str, fake_scores):
    """The generator's loss to minimise from the discriminator's scores of its samples:
    ``"minimax"`` E[log(1 − σ(s))]; ``"non-saturating"`` −E[log σ(s)]; Wasserstein and hinge −E[s]."""
    loss = _loss_name(loss)
    fake = _scores(fake_scores, "sample")
    if loss == "minimax":
        return -_softplus(fake).mean()
    if loss == "non-saturating":
        return _softplus(-fake).mean()
    return -fake.mean()


def minimax_value(real_scores, fake_scores):
    """The GAN value V = E_data[log D(x)] + E_samples[log(1 − D(x))] with D = σ(score): Monte Carlo
    means over the given scores. At the optimal discriminator it is 2·JS(p_data‖p_model) − log 4."""
    return -discriminator_loss("minimax", real_scores, fake_scores)


def gradient_penalty(critic, real, fake, alpha):
    """WGAN-GP's penalty E[(‖∇ s(x̂)‖₂ − 1)²] on the interpolates x̂ = α·real + (1 − α)·fake.

    Args:
        critic: a function from a batch of inputs (N, ...) to scores (N,) or (N, 1), written
            in PyTorch or in JAX (each example's score depending on that example only).
        real, fake: batches of the same shape (N, ...).
        alpha: interpolation weights, shape (N,), in [0, 1].

    Returns:
        A scalar (differentiable with respect to the critic's parameters in PyTorch; a pure
        function of its inputs in JAX). Multiply it by λ for the loss.
    """
    if tuple(real.shape) != tuple(fake.shape):
        raise DataError(f"the gradient penalty interpolates data and samples of the same shape; got "
                        f"{tuple(real.shape)} "
                        f"and {tuple(fake.shape)}")
    a = alpha.reshape((-1,) + (1,) * (real.ndim - 1))
    if hasattr(real, "detach"):  # PyTorch
        import torch

        mix = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
        scores = _scores(critic(mix), "interpolate")
        (grad,) = torch.autograd.grad(scores.sum(), mix, create_graph=True)
    else:
        import jax

        mix = a * real + (1 - a) * fake
        grad = jax.grad(lambda v: _scores(critic(v), "interpolate").sum())(mix)
    sq = (grad * grad).reshape((grad.shape[0], -1)).sum(-1)
    return (((sq + 1e-12) ** 0.5 - 1.0) ** 2).mean()


def mmd_penalty(a, b, bandwidth: float):
    """The (biased, V-statistic) squared maximum mean discrepancy between two batches of codes with
    the inverse multiquadratic kernel k(u, v) = C / (C + ‖u − v‖²), C = ``bandwidth``, as in
    WAE-MMD (Tolstikhin et al. 2018). PyTorch or JAX arrays (N, K) and (M, K)."""

    def kernel(u, v):
        d = (u * u).sum(-1)[:, None] + (v * v).sum(-1)[None, :] - 2.0 * (u @ v.T)
        return bandwidth / (bandwidth + _xp(d).clip(d, min=0))

    return kernel(a, a).mean() + kernel(b, b).mean() - 2.0 * kernel(a, b).mean()


# ======================================================================================
# Each player's loss as a loss object
# ======================================================================================
def random_source(program, rng, like):
    """Random draws for a game's ``real``/``fake`` from a loss's ``rng``: a JAX key (NumPyro) or a
    torch.Generator (Pyro; None: torch's default generator)."""
    if program.backend == "numpyro":
        return _JaxRandom(rng)
    return _TorchRandom(like, rng)


_Kind = Literal["minimax", "non-saturating", "wasserstein", "wgan-gp", "hinge"]


@dataclasses.dataclass(frozen=True)
class _PlayerLoss(LossConfig):
    """One player's loss of a named game; its name is ``"<game>:<player>"``."""

    kind: _Kind = "non-saturating"

    player: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.player}"


@dataclasses.dataclass(frozen=True)
class DiscriminatorLoss(_PlayerLoss):
    """The discriminator's (critic's) loss as a loss object: on a minibatch of data it scores the
    game's ``real`` values and as many of the generator's ``fake`` values (held fixed), with
    :func:`discriminator_loss`, plus λ times :func:`gradient_penalty` on interpolates.
    Metrics: ``penalty`` (unweighted).

    Args:
        kind: the adversarial loss (``"minimax"``, ``"non-saturating"``, ``"wasserstein"``,
            ``"wgan-gp"``, ``"hinge"``).
        gradient_penalty: λ (0: none).
    """

    gradient_penalty: float = 0.0

    player: ClassVar[str] = "discriminator"

    def _validate(self):
        self._require(math.isfinite(self.gradient_penalty) and self.gradient_penalty >= 0,
                      f"gradient_penalty must be >= 0; got {self.gradient_penalty}")

    def __call__(self, program, params, batch: dict, rng):
        game = program.extras["game"]
        rand = random_source(program, rng, batch["x"])
        if program.backend == "numpyro":
            import jax

            fake, fake_cond = jax.lax.stop_gradient(game.fake(params, batch, rand))
        else:
            import torch

            with torch.no_grad():
                fake, fake_cond = game.fake(params, batch, rand)
        real, real_cond = game.real(params, batch, rand)
        loss = discriminator_loss(self.kind, game.critic(params, real, real_cond), game.critic(params, fake, fake_cond))
        penalty = 0.0 * loss
        if self.gradient_penalty > 0:
            alpha = rand.uniform((real.shape[0],))
            penalty = gradient_penalty(lambda v: game.critic(params, v, real_cond), real, fake, alpha)
            loss = loss + self.gradient_penalty * penalty
        return loss, {"penalty": penalty}


@dataclasses.dataclass(frozen=True)
class GeneratorLoss(_PlayerLoss):
    """The generator's loss as a loss object: the model's own terms (an autoencoder's
    reconstruction, WAE's MMD: the game's ``generator_terms``) plus, where the game has a
    discriminator, its weight times :func:`generator_loss` of the scores of the generator's
    samples. Metrics: the game's numbers (``reconstruction``, ``penalty``).

    Args:
        kind: the adversarial loss, as :class:`DiscriminatorLoss`.
    """

    player: ClassVar[str] = "generator"

    def __call__(self, program, params, batch: dict, rng):
        game = program.extras["game"]
        rand = random_source(program, rng, batch["x"])
        fake, fake_cond = game.fake(params, batch, rand)
        extra = dict(game.generator_terms(params, batch, fake, rand))
        loss = extra.pop("loss", 0.0)
        if game.has_discriminator:
            loss = loss + game.adversarial_weight * generator_loss(self.kind, game.critic(params, fake, fake_cond))
        return loss, extra


@dataclasses.dataclass(frozen=True)
class AdversarialLoss(Config):
    """An adversarial game's losses: the generator's and the discriminator's (each a loss object,
    ``loss(program, params, batch, rng) -> (value, metrics)``); ``inference.Adversarial`` adds
    the update schedule (k critic steps, two optimisers, weight clipping for ``"wasserstein"``).
    ``Adversarial(loss="hinge")`` is ``Adversarial(loss=AdversarialLoss("hinge"))``; a person's
    own game is any object with a ``name`` and ``generator`` and ``discriminator`` losses.

    Args:
        kind: ``"minimax"``, ``"non-saturating"``, ``"wasserstein"``, ``"wgan-gp"`` or ``"hinge"``.
        gradient_penalty: λ of the penalty added to the discriminator's loss (None: 10 for
            ``"wgan-gp"``, else 0).
    """

    kind: _Kind = "non-saturating"
    gradient_penalty: Optional[float] = None

    option_tag: ClassVar[str] = "loss"

    @property
    def name(self) -> str:
        return self.kind

    @property
    def penalty_weight(self) -> float:
        if self.gradient_penalty is not None:
            return float(self.gradient_penalty)
        return 10.0 if self.kind == "wgan-gp" else 0.0

    @property
    def weight_clipping(self) -> bool:
        """Whether the critic's weights are clipped after each of its updates (``"wasserstein"``)."""
        return self.kind == "wasserstein"

    @property
    def generator(self) -> GeneratorLoss:
        return GeneratorLoss(self.kind)

    @property
    def discriminator(self) -> DiscriminatorLoss:
        return DiscriminatorLoss(self.kind, self.penalty_weight)


@dataclasses.dataclass
class Game:
    """What adversarial training needs from a model, bound to one backend (a family's ``build``
    puts it in ``BuiltProgram.extras["game"]``).

    Parameters are one flat dict of arrays by name (``"generator.0.weight"``, ...), the same
    names as the program's ``param`` sites. ``rand`` has ``normal(shape)``, ``uniform(shape)`` and
    ``integers(high, shape)``.

    Attributes:
        init: initial values (numpy) of every parameter.
        players: ``{"generator": names, "discriminator": names}``; an autoencoder's encoder and
            decoder are its "generator".
        real: ``(params, batch, rand) -> (values, condition)``: what the discriminator should
            call real (data rows; for an AAE, prior draws of z); ``condition`` is a one-hot label or None.
        fake: ``(params, batch, rand) -> (values, condition)``: the generator's output for as
            many rows as ``batch`` (for an AAE, the codes of the batch).
        critic: ``(params, values, condition) -> scores``, one per example.
        generator_terms: ``(params, batch, fake, rand) -> dict`` with an optional extra ``"loss"``
            for the generator (an autoencoder's reconstruction, WAE's MMD) and the numbers to record.
        has_discriminator: False for WAE-MMD (one player).
        adversarial_weight: the weight of the generator's adversarial loss.
    """

    init: dict
    players: dict
    real: Callable
    fake: Callable
    critic: Optional[Callable]
    generator_terms: Callable = lambda params, batch, fake, rand: {}
    has_discriminator: bool = True
    adversarial_weight: float = 1.0


class AdversarialInfo(NamedTuple):
    generator_loss: float        # the generator's (for an AAE: the autoencoder's) loss this step
    discriminator_loss: float    # the discriminator's loss, averaged over the critic steps (penalty included)
    penalty: float = 0.0         # the gradient penalty (unweighted) or, for WAE-MMD, the MMD
    reconstruction: float = 0.0  # an autoencoder's reconstruction cost per example (AAE, WAE)


@dataclasses.dataclass(frozen=True)
class Adversarial(Inference):
    """Adversarial training of implicit models: GANs, conditional GANs and adversarial autoencoders.

    Each step makes ``critic_steps`` updates of the discriminator (each on its own minibatch),
    then one update of the generator, with separate Adam optimisers (see the module docstring
    for the losses).

    Args:
        loss: ``"minimax"``, ``"non-saturating"``, ``"wasserstein"`` (weight clipping), ``"wgan-gp"``
            or ``"hinge"``; None: ``"wgan-gp"`` for a GAN, ``"hinge"`` for an AAE. Or a game object:
            an :class:`AdversarialLoss`, or a person's own with a ``name`` and ``generator`` and
            ``discriminator`` loss objects (``loss(program, params, batch, rng) -> (value,
            metrics)``; ``program.extras["game"]`` is the model's :class:`Game`), which carries its
            own penalty (leave gradient_penalty None); its defaults of k, the learning rates and
            betas are those of ``"non-saturating"`` unless it is an AdversarialLoss.
        critic_steps: k, discriminator updates per generator update (None: 5 for the
            Wasserstein losses, else 1; at least 2 for an AAE).
        gradient_penalty: λ of WGAN-GP (None: 10 for ``"wgan-gp"``; 0 otherwise, where a
            positive value adds the penalty to any loss).
        clip: the weight-clipping bound of ``"wasserstein"``.
        lr_generator, lr_discriminator: Adam's learning rates (None: 1e-4 for WGAN-GP, 5e-5 for
            weight clipping, 2e-4 otherwise).
        beta1, beta2: Adam's decay rates for both players (None: 0 and 0.9 for WGAN-GP and hinge,
            else 0.5 and 0.999 as in DCGAN).
        steps: generator updates (ignored when ``epochs`` is set).
        epochs: passes of the data through the critic; one step reads ``critic_steps`` minibatches.
        batch_size: examples per minibatch (and generator samples per update).
        ema: decay of a moving average of the generator's parameters (0: none), used for the
            fit's parameters and samples (Yazıcı et al. 2019).
        lr_decay: both learning rates decay exponentially to ``lr * lr_decay`` at the last step
            (1: constant), as ``SVI(lr_decay=...)``; annealing sharpens the samples of a game
            that would otherwise keep circling its equilibrium.

    Example:
        >>> data = ppgen.datasets.load("ring")
        >>> # λ = 0.1 on unit-scale toys; both rates annealed from 1e-3 to 1e-4 over the run
        >>> alg = inference.Adversarial(loss="wgan-gp", gradient_penalty=0.1, steps=10000, batch_size=128,
        ...                             lr_generator=1e-3, lr_discriminator=1e-3, lr_decay=0.1, ema=0.999)
        >>> fit = ppgen.fit(models.GAN(2, latent_dim=2, output="identity"), data, alg)
        >>> ppgen.metrics.mode_coverage_for(fit.sample(2500), data.meta)
    """

    loss: Optional[NameOrObject] = None
    critic_steps: Optional[int] = None
    gradient_penalty: Optional[float] = None
    clip: float = 0.01
    lr_generator: Optional[float] = None
    lr_discriminator: Optional[float] = None
    beta1: Optional[float] = None
    beta2: Optional[float] = None
    steps: int = 5000
    epochs: Optional[int] = None
    batch_size: int = 64
    ema: float = 0.0
    lr_decay: float = 1.0

    name: ClassVar[str] = "adversarial"
    title: ClassVar[str] = "Adversarial"
    full_batch: ClassVar[bool] = False

    def _validate(self):
        if isinstance(self.loss, str):
            _loss_name(self.loss)
        elif self.loss is not None:
            if not (callable(getattr(self.loss, "generator", None)) and callable(getattr(self.loss, "discriminator",
                                                                                         None))):
                raise ConfigError(f"Adversarial(loss={self.loss!r}): a game object has a `generator` and a "
                                  f"`discriminator` loss, each called loss(program, params, batch, rng) -> (value, "
                                  f"metrics); or pass a name, one of {list(LOSSES)}")
            if self.gradient_penalty is not None and not isinstance(self.loss, AdversarialLoss):
                raise ConfigError(f"Adversarial(gradient_penalty=...) sets the penalty of a named loss; the game "
                                  f"{loss_name(self.loss)!r} carries its own (its discriminator loss adds it)")
        if self.critic_steps is not None:
            self._require(isinstance(self.critic_steps, int) and self.critic_steps >= 1,
                          f"critic_steps is k, the discriminator updates per generator update, and must be at "
                          f"least 1 (e.g. 5 for WGAN-GP, 1 for the minimax loss); got {self.critic_steps}")
        if self.gradient_penalty is not None:
            self._require(math.isfinite(self.gradient_penalty) and self.gradient_penalty >= 0,
                          f"gradient_penalty is the weight λ of WGAN-GP's penalty and must be >= 0 (10 in the "
                          f"paper); got {self.gradient_penalty}")
        self._require(self.clip > 0 and math.isfinite(self.clip), f"clip must be positive (e.g. 0.01); got {self.clip}")
        for name in ("lr_generator", "lr_discriminator"):
            value = getattr(self, name)
            self._require(value is None or (value > 0 and math.isfinite(value)),
                          f"{name} must be a positive learning rate (e.g. 1e-4); got {value}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            self._require(value is None or 0 <= value < 1, f"{name} is Adam's decay rate and must be in [0, 1) "
                                                           f"(e.g. 0.0 and 0.9 for WGAN-GP); got {value}")
        self._require(self.steps >= 1, f"steps must be at least 1; got {self.steps}")
        self._require(self.epochs is None or self.epochs >= 1, f"epochs must be at least 1 or None; got {self.epochs}")
        self._require(self.batch_size >= 1, f"batch_size must be at least 1; got {self.batch_size}")
        self._require(0 <= self.ema < 1, f"ema is a decay in [0, 1) (e.g. 0.999, or 0 for none); got {self.ema}")
        self._require(0 < self.lr_decay <= 1, f"lr_decay is the learning rate's factor at the last step and must be "
                                              f"in (0, 1] (e.g. 0.01, or 1 for a constant rate); got {self.lr_decay}")

    # ---- resolved settings ---------------------------------------------------------------
    def resolve_for(self, model) -> "Adversarial":
        """A copy with every None filled in for ``model`` (loss, k, λ, learning rates, betas), so
        that the run's config records the settings it used."""
        if not model.has_discriminator:  # WAE-MMD: one player
            return dataclasses.replace(self, critic_steps=1, gradient_penalty=0.0,
                                       lr_generator=self.lr_generator or 1e-3,
                                       beta1=_given(self.beta1, 0.9), beta2=_given(self.beta2, 0.999))
        if self.loss is None or isinstance(self.loss, str):
            loss = _loss_name(self.loss) if self.loss is not None else model.default_adversarial_loss
            k, lr, betas = _DEFAULTS[loss]
            penalty = AdversarialLoss(loss, self.gradient_penalty).penalty_weight
        else:  # a game object: its own penalty
            loss = self.loss
            k, lr, betas = _DEFAULTS.get(loss_name(loss) if isinstance(loss, AdversarialLoss) else "", _DEFAULTS[
                "non-saturating"])
            penalty = self.game().penalty_weight if isinstance(loss, AdversarialLoss) else None
        k = max(k, model.default_critic_steps)  # a family may need a stronger critic (AAE: 2)
        return dataclasses.replace(self, loss=loss, critic_steps=self.critic_steps or k,
                                   gradient_penalty=None if penalty is None else float(penalty),
                                   lr_generator=self.lr_generator or lr, lr_discriminator=self.lr_discriminator or lr,
                                   beta1=_given(self.beta1, betas[0]), beta2=_given(self.beta2, betas[1]))

    def game(self):
        """The game's losses (an :class:`AdversarialLoss`, or the person's own object)."""
        if self.loss is None or isinstance(self.loss, str):
            return AdversarialLoss(_loss_name(self.loss or "non-saturating"), self.gradient_penalty)
        if isinstance(self.loss, AdversarialLoss) and self.gradient_penalty is not None:
            return dataclasses.replace(self.loss, gradient_penalty=self.gradient_penalty)
        return self.loss

    def settings(self) -> dict:
        return {"loss": self.loss, "critic_steps": self.critic_steps or 1,
                "gradient_penalty": float(self.gradient_penalty or 0.0), "lr_generator": self.lr_generator,
                "lr_discriminator": self.lr_discriminator,
                "betas": (_given(self.beta1, 0.5), _given(self.beta2, 0.999))}

    # ---- compatibility ---------------------------------------------------------------
    def form_for(self, model) -> str:
        if model.family == "program" or "adversarial" not in model.methods:
            self.refuse(model, "adversarial training fits implicit models (models.GAN, models.CGAN) and "
                               "adversarial autoencoders (models.AAE)")
        if not model.has_discriminator and self.loss is not None:
            raise ConfigError(f"Adversarial(loss={self.loss!r}): {type(model).__name__}(regularizer='mmd') is WAE-MMD, "
                              f"which has no discriminator; drop loss= or use regularizer='adversarial'")
        return "implicit"

    # ---- loop sizes ------------------------------------------------------------------
    def batch_size_for(self, num_data: int) -> int:
        # a step reads k minibatches: the loop hands them over as one block
        return min(self.batch_size * (self.critic_steps or 1), num_data)

    def num_steps(self, num_data: int) -> int:
        if self.epochs is not None:
            return self.epochs * math.ceil(num_data / self.batch_size_for(num_data))
        return self.steps

    # ---- protocol --------------------------------------------------------------------
    def bind(self, program) -> "Kernel":
        """The game bound to ``program``: a :class:`TorchGameKernel` (Pyro) or a
        :class:`JaxGameKernel` (NumPyro)."""
        if program.backend == "pyro":
            return TorchGameKernel(self, program)
        return JaxGameKernel(self, program)


def _given(value, default: float) -> float:
    return float(default if value is None else value)


def _schedules(alg: Adversarial, settings: dict, num_data: int) -> dict:
    """Each player's learning rate as a function of its update count (the critic makes k updates
    per step), decaying exponentially to ``lr * lr_decay`` at the last step (constant for 1)."""
    total = max(alg.num_steps(num_data), 1)
    updates = {"generator": total, "discriminator": total * settings["critic_steps"]}
    return {p: (lambda i, lr=settings[f"lr_{p}"], n=n: lr * alg.lr_decay ** (i / n)) for p, n in updates.items()}


def _stacked_chunks(batch: dict, k: int, size: int) -> dict:
    """The step's block of rows as k minibatches stacked on a new first axis, (k, size, ...) (rows
    are reused, cyclically, when the data set holds fewer than k minibatches)."""
    import jax.numpy as jnp

    arrays = {key: v for key, v in batch.items() if hasattr(v, "shape")}
    n = batch["x"].shape[0]
    if n >= k * size:
        return {key: v[:k * size].reshape((k, size) + tuple(v.shape[1:])) for key, v in arrays.items()}
    size = max(1, n // k) if n >= k else n
    rows = (np.arange(k)[:, None] * size + np.arange(size)[None, :]) % n
    return {key: jnp.take(v, jnp.asarray(rows), axis=0) for key, v in arrays.items()}


def _chunks(batch: dict, k: int, size: int) -> list:
    """The step's block of rows cut into k minibatches (the last ones shorter or reused if the
    data set is smaller than k minibatches)."""
    n = batch["x"].shape[0]
    if n >= k * size:
        return [{key: v[i * size:(i + 1) * size] for key, v in batch.items() if hasattr(v, "shape")}
                for i in range(k)]
    size = max(1, n // k) if n >= k else n
    return [{key: v[(i * size) % n:(i * size) % n + size] for key, v in batch.items() if hasattr(v, "shape")}
            for i in range(k)]


# ======================================================================================
# PyTorch (Pyro backend)
# ======================================================================================
class _TorchRandom:
    """Random draws for a game step from torch's RNG (isolated per fit by ``be.rng``), or from
    ``generator``."""

    def __init__(self, like, generator=None):
        self.like, self.generator = like, generator

    def normal(self, shape):
        import torch

        return torch.randn(shape, dtype=self.like.dtype, device=self.like.device, generator=self.generator)

    def uniform(self, shape):
        import torch

        return torch.rand(shape, dtype=self.like.dtype, device=self.like.device, generator=self.generator)

    def integers(self, high: int, shape):
        import torch

        return torch.randint(0, high, shape, device=self.like.device, generator=self.generator)


class TorchGameState(NamedTuple):
    """The changing data of an adversarial fit in PyTorch (Pyro backend).

    The parameters are leaf tensors, and each player's optimiser is a ``torch.optim.Adam`` over
    its tensors of ``params``: torch's own idiom for an optimiser's state (Adam's moments, by
    parameter), kept here as data; the update's schedule and everything else fixed for the run
    live on the :class:`TorchGameKernel`. A step updates ``params``, ``optimizers`` and ``ema`` in
    place, as torch does, and returns the state with its new ``step`` and ``rng``; use
    :meth:`TorchGameKernel.state_arrays` for a copy.

    Attributes:
        step: generator updates made so far.
        params: every parameter by name (leaf tensors that require gradients).
        optimizers: ``{"generator": Adam, "discriminator": Adam}`` (WAE-MMD: the generator's only).
        ema: the moving average of the generator's parameters by name, or None.
        rng: torch's CPU random-number state after the last step (a uint8 tensor); None before
            the first step, which seeds torch with ``seed``.
        seed: the fit's seed.
    """

    step: int
    params: dict
    optimizers: dict
    ema: Optional[dict]
    rng: Any
    seed: int


class _GameKernel(Kernel):
    """What both backends' game kernels read once from the algorithm and the model's game."""

    def __init__(self, inference: Adversarial, program):
        super().__init__(inference, program)
        self.game = program.extras["game"]
        self.settings = inference.settings()
        self.losses = inference.game()
        self.generator_loss = self.losses.generator
        self.discriminator_loss = self.losses.discriminator if self.game.has_discriminator else None
        self.critic_steps = self.settings["critic_steps"]
        self.players = {p: tuple(names) for p, names in self.game.players.items()}
        self.schedules = _schedules(inference, self.settings, program.num_data)
        self.clip_weights = isinstance(self.losses, AdversarialLoss) and self.losses.weight_clipping


class TorchGameKernel(_GameKernel):
    """:class:`Adversarial` bound to a Pyro program: the alternating updates in PyTorch.

    Attributes (fixed for the run, besides ``inference`` and ``program``):
        game: the model's :class:`Game` (``program.extras["game"]``).
        settings: the resolved settings (:meth:`Adversarial.settings`).
        losses: the game's losses (:meth:`Adversarial.game`); ``generator_loss`` and
            ``discriminator_loss`` (None without a discriminator) its players, read once.
        critic_steps: k, the discriminator's updates per step.
        players: each player's parameter names.
        schedules: each player's learning rate as a function of its update count.
        clip_weights: whether the critic's weights are clipped to ``[-clip, clip]`` after each of
            its updates (``"wasserstein"``).

    The built-in players (:class:`GeneratorLoss`, :class:`DiscriminatorLoss`) are checked by
    ``call_loss`` on their first call and called directly afterwards (they return a 0-d value
    and a dict by construction); a person's own loss objects are checked on every call.
    """

    def __init__(self, inference: Adversarial, program):
        super().__init__(inference, program)
        self.be = get_backend("pyro")
        self._checked = set()  # the built-in players already checked once

    def init(self, batch, seed) -> TorchGameState:
        import torch

        game, s = self.game, self.settings
        dev = batch["x"].device
        params = {n: torch.as_tensor(v, device=dev).clone().requires_grad_(True) for n, v in game.init.items()}
        optimizers = {p: torch.optim.Adam([params[n] for n in names], lr=s[f"lr_{p}"], betas=s["betas"])
                      for p, names in self.players.items() if names}
        ema = {n: params[n].detach().clone() for n in self.players["generator"]} if self.inference.ema else None
        if game.has_discriminator:
            _check_critic_output(game, params, batch, _TorchRandom(batch["x"]))
        return TorchGameState(step=0, params=params, optimizers=optimizers, ema=ema, rng=None, seed=int(seed))

    def _call(self, loss, params, batch, rng):
        """``loss(program, params, batch, rng)``: checked (``call_loss``) but for a built-in player
        after its first call."""
        if id(loss) in self._checked:
            return loss(self.program, params, batch, rng)
        out = call_loss(loss, self.program, params, batch, rng)
        if type(loss) in (GeneratorLoss, DiscriminatorLoss):
            self._checked.add(id(loss))
        return out

    def step(self, state: TorchGameState, batch):
        import torch

        k, params, step = self.critic_steps, state.params, state.step
        chunks = _chunks(batch, k, self.inference.batch_size)
        device = batch["x"].device
        d_losses, penalties, d_metrics = [], [], {}
        holder = {"rng": state.rng}
        with self.be.rng(holder, state.seed):
            rng = pyro_generator(device)
            if self.game.has_discriminator:
                opt, lr = state.optimizers["discriminator"], self.schedules["discriminator"]
                critic = [params[n] for n in self.players["discriminator"]]
                for j, chunk in enumerate(chunks):
                    loss, metrics = self._call(self.discriminator_loss, params, chunk, rng)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    set_learning_rate(opt, lr(step * k + j))
                    opt.step()
                    if self.clip_weights:
                        with torch.no_grad():
                            for p in critic:
                                p.clamp_(-self.inference.clip, self.inference.clip)
                    d_losses.append(loss.detach())
                    penalty = metrics.get("penalty", 0.0)
                    penalties.append(penalty.detach() if isinstance(penalty, torch.Tensor) else penalty)
                    if len(metrics) > ("penalty" in metrics):  # a person's loss reporting more
                        for name, value in metrics.items():
                            if name != "penalty":
                                d_metrics.setdefault(name, []).append(
                                    value.detach() if isinstance(value, torch.Tensor) else value)
            g_loss, extra = self._call(self.generator_loss, params, chunks[-1], rng)
            opt = state.optimizers["generator"]
            generator = [params[n] for n in self.players["generator"]]
            opt.zero_grad(set_to_none=True)
            grads = torch.autograd.grad(g_loss, generator)
            for p, g in zip(generator, grads):
                p.grad = g
            set_learning_rate(opt, self.schedules["generator"](step))
            opt.step()
        if state.ema is not None:
            torch_average_(state.ema, params, self.inference.ema)
        # the step's numbers as floats, with one transfer from the device for all of them
        g_extra = {n: v for n, v in extra.items() if n not in ("reconstruction", "penalty")}
        d_extra = [v for values in d_metrics.values() for v in values]
        numbers = _host_floats(d_losses + penalties + d_extra + list(g_extra.values())
                               + [g_loss, extra.get("reconstruction", 0.0), extra.get("penalty", 0.0)], device)
        d_numbers, numbers = numbers[:len(d_losses)], numbers[len(d_losses):]
        p_numbers, numbers = numbers[:len(penalties)], numbers[len(penalties):]
        d_values, numbers = numbers[:len(d_extra)], numbers[len(d_extra):]
        g_values, (g, reconstruction, mmd) = numbers[:-3], numbers[-3:]
        if self.game.has_discriminator:
            info = AdversarialInfo(g, sum(d_numbers, 0.0) / k, sum(p_numbers, 0.0) / k, reconstruction)
        else:
            info = AdversarialInfo(g, 0.0, mmd * k / k, reconstruction)
        metrics = dict(zip(g_extra, g_values))
        for name, values in d_metrics.items():  # each averaged over the critic's updates
            metrics[f"discriminator_{name}"] = sum(d_values[:len(values)], 0.0) / len(values)
            d_values = d_values[len(values):]
        return state._replace(step=step + 1, rng=holder["rng"]), info_with_metrics(info, metrics)

    def result(self, state: TorchGameState, batch=None) -> Result:
        return Result(params=self.params(state, averaged=True))

    def params(self, state: TorchGameState, averaged: bool = True) -> dict:
        """The parameters as numpy arrays (copies); ``averaged``: the generator's moving average
        in place of its parameters when one is kept."""
        out = {n: p.detach().cpu().numpy().copy() for n, p in state.params.items()}
        if averaged and state.ema is not None:
            out.update({n: v.detach().cpu().numpy().copy() for n, v in state.ema.items()})
        return out

    # ---- checkpoints -----------------------------------------------------------------
    def state_arrays(self, state: TorchGameState):
        arrays = {f"params/{n}": p.detach().cpu().numpy() for n, p in state.params.items()}
        meta = {"step": state.step, "optimizers": {}}
        for player, opt in state.optimizers.items():
            sd = opt.state_dict()
            meta["optimizers"][player] = {"param_groups": sd["param_groups"], "keys": {}}
            for i, entry in sd["state"].items():
                meta["optimizers"][player]["keys"][str(i)] = sorted(entry)
                for key, value in entry.items():
                    arrays[f"optimizer/{player}/{i}/{key}"] = np.asarray(value.detach().cpu().numpy()
                                                                         if hasattr(value, "detach") else value)
        for n, v in (state.ema or {}).items():
            arrays[f"ema/{n}"] = v.detach().cpu().numpy()
        arrays["rng"] = (state.rng if state.rng is not None else _seeded_rng_state(state.seed)).numpy()
        return arrays, meta

    def restore_state(self, state: TorchGameState, arrays, meta) -> TorchGameState:
        """``state`` with a checkpoint's values: its parameters, moving average and optimisers
        are loaded in place (the optimisers hold the parameters' tensors)."""
        import torch

        _require_names(state.params, arrays)
        with torch.no_grad():
            for n, p in state.params.items():
                p.copy_(torch.as_tensor(arrays[f"params/{n}"]))
            for n, v in (state.ema or {}).items():
                v.copy_(torch.as_tensor(arrays.get(f"ema/{n}", arrays[f"params/{n}"])))
        for player, opt in state.optimizers.items():
            saved = meta["optimizers"][player]
            sd = {"param_groups": saved["param_groups"], "state": {}}
            for i, keys in saved["keys"].items():
                sd["state"][int(i)] = {key: torch.as_tensor(arrays[f"optimizer/{player}/{i}/{key}"]) for key in keys}
            opt.load_state_dict(sd)
        return state._replace(rng=torch.as_tensor(arrays["rng"]), step=int(meta.get("step", 0)))


def _host_floats(values: list, device) -> list:
    """``values`` (0-d tensors and numbers) as Python floats, the tensors' with one transfer from
    ``device`` (a GPU step then waits for the device once, not once per number)."""
    import torch

    tensors = [v.detach().reshape(()).to(device=device, dtype=torch.float64) for v in values
               if isinstance(v, torch.Tensor)]
    host = iter(torch.stack(tensors).tolist() if tensors else ())
    return [next(host) if isinstance(v, torch.Tensor) else float(v) for v in values]


def _seeded_rng_state(seed: int):
    """Torch's CPU random-number state right after ``torch.manual_seed(seed)`` (the caller's own
    state untouched)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.get_rng_state()


def _require_names(params: dict, arrays: dict) -> None:
    missing = [n for n in params if f"params/{n}" not in arrays]
    if missing:
        raise CheckpointError(f"the checkpoint has no values for {missing[:3]}: it was written by another model; "
                              f"resume with the same model and settings, or use a new run_dir")


def _check_critic_output(game, params, batch, rand) -> None:
    """Refuse, before training, a discriminator that does not give one score per example."""
    small = {k: v[:2] for k, v in batch.items() if hasattr(v, "shape")}
    real, cond = game.real(params, small, rand)
    _scores(game.critic(params, real, cond), "data")


# ======================================================================================
# JAX (NumPyro backend)
# ======================================================================================
class _JaxRandom:
    """Random draws for a game step from a JAX key, split at every draw (inside a traced step)."""

    def __init__(self, key):
        self.key = key

    def _next(self):
        import jax

        self.key, sub = jax.random.split(self.key)
        return sub

    def normal(self, shape):
        import jax

        return jax.random.normal(self._next(), shape)

    def uniform(self, shape):
        import jax

        return jax.random.uniform(self._next(), shape)

    def integers(self, high: int, shape):
        import jax

        return jax.random.randint(self._next(), shape, 0, high)


class JaxGameState(NamedTuple):
    """The changing data of an adversarial fit in JAX (NumPyro backend).

    Attributes:
        step: generator updates made so far.
        opt_state: each player's Adam state (``jax.example_libraries.optimizers``), which holds
            its parameters and moments.
        ema: the moving average of the generator's parameters by name, or None.
        key: the JAX random key of the next step.
    """

    step: int
    opt_state: dict
    ema: Optional[dict]
    key: Any


class JaxGameKernel(_GameKernel):
    """:class:`Adversarial` bound to a NumPyro program: each step one compiled JAX function.

    Attributes (fixed for the run, besides ``inference`` and ``program``):
        game, settings, losses, generator_loss, discriminator_loss, critic_steps, players,
            schedules, clip_weights: as :class:`TorchGameKernel`'s.
        optimizers: each player's Adam as the ``(init, update, get_params)`` triple of
            ``jax.example_libraries.optimizers``, with its learning-rate schedule.
        update: the jitted step ``(opt_state, ema, step, block, key) -> (opt_state, ema, key,
            numbers)``.
    """

    def __init__(self, inference: Adversarial, program):
        import jax
        from jax.example_libraries import optimizers

        super().__init__(inference, program)
        b1, b2 = self.settings["betas"]
        self.optimizers = {p: optimizers.adam(self.schedules[p], b1=b1, b2=b2)
                           for p, names in self.players.items() if names}
        self.update = jax.jit(self._update)

    def merged(self, opt_state) -> dict:
        """Every player's parameters in one dict, from their optimiser states."""
        out = {}
        for p in opt_state:
            out.update(self.optimizers[p][2](opt_state[p]))
        return out

    def _critic_update(self, carry, chunk):
        import jax
        import jax.numpy as jnp

        d_state, count, key, current = carry
        rng = jax.random.fold_in(key, count)
        _, update, get = self.optimizers["discriminator"]

        def d_objective(d_params):
            return call_loss(self.discriminator_loss, self.program, dict(current, **d_params), chunk, rng)

        (loss, metrics), grads = jax.value_and_grad(d_objective, has_aux=True)(get(d_state))
        metrics = {n: jnp.asarray(v, dtype=loss.dtype) for n, v in metrics.items()}
        metrics.setdefault("penalty", jnp.zeros((), dtype=loss.dtype))
        d_state = update(count, grads, d_state)
        if self.clip_weights:
            clip = self.inference.clip
            d_state = _replace_params(d_state, jax.tree_util.tree_map(lambda w: jnp.clip(w, -clip, clip), get(d_state)))
        return (d_state, count + 1, key, current), (loss, metrics)

    def _update(self, opt_state, ema, step, block, key):
        import jax
        import jax.numpy as jnp

        k = self.critic_steps
        chunks = _stacked_chunks(block, k, self.inference.batch_size)  # (k, B, ...): the critic's k minibatches
        key, key_d, key_g = jax.random.split(key, 3)
        d_loss = penalty = jnp.zeros(())
        d_metrics = {}
        if self.game.has_discriminator:
            carry = (opt_state["discriminator"], step * k, key_d, self.merged(opt_state))
            # unrolled: k is small, and XLA fuses across the updates (a rolled loop cost ~10%)
            (d_state, _, _, _), (losses, d_metrics) = jax.lax.scan(self._critic_update, carry, chunks, unroll=k)
            opt_state = dict(opt_state, discriminator=d_state)
            d_metrics = {n: v.mean() for n, v in d_metrics.items()}  # each over the critic's updates
            d_loss, penalty = losses.mean(), d_metrics.pop("penalty")
        current = self.merged(opt_state)
        last = {name: v[-1] for name, v in chunks.items()}
        _, g_update, g_get = self.optimizers["generator"]

        def g_objective(g_params):
            return call_loss(self.generator_loss, self.program, dict(current, **g_params), last, key_g)

        (g_loss, extra), grads = jax.value_and_grad(g_objective, has_aux=True)(g_get(opt_state["generator"]))
        opt_state = dict(opt_state, generator=g_update(step, grads, opt_state["generator"]))
        if ema is not None:
            raw, decay = g_get(opt_state["generator"]), self.inference.ema
            ema = jax.tree_util.tree_map(lambda e, p_: e + (1.0 - decay) * (p_ - e), ema, raw)
        numbers = {"g": g_loss, "d": d_loss, "penalty": penalty, **extra,
                   "metrics": {**{n: v for n, v in extra.items() if n not in ("reconstruction", "penalty")},
                               **{f"discriminator_{n}": v for n, v in d_metrics.items()}}}
        return opt_state, ema, key, numbers

    def init(self, batch, seed) -> JaxGameState:
        import jax
        import jax.numpy as jnp

        game = self.game
        params = {n: jnp.asarray(v) for n, v in game.init.items()}
        opt_state = {p: self.optimizers[p][0]({n: params[n] for n in self.players[p]}) for p in self.optimizers}
        if game.has_discriminator:
            _check_critic_output(game, params, batch, _JaxRandom(jax.random.PRNGKey(0)))
        ema = {n: params[n] for n in self.players["generator"]} if self.inference.ema else None
        # committed to the data's device like the step's outputs, so that the step compiles once
        device = next(iter(batch["x"].devices()))
        opt_state, ema = jax.device_put((opt_state, ema), device)
        return JaxGameState(step=0, opt_state=opt_state, ema=ema,
                            key=jax.device_put(jax.random.PRNGKey(seed), device))

    def step(self, state: JaxGameState, batch):
        import jax

        block = {k: v for k, v in batch.items() if hasattr(v, "shape") and k != "index"}  # games read x (and y)
        opt_state, ema, key, numbers = self.update(state.opt_state, state.ema, state.step, block, state.key)
        numbers = jax.device_get(numbers)  # one transfer for the step's numbers
        has_d = self.game.has_discriminator
        info = AdversarialInfo(float(numbers["g"]), float(numbers["d"]) if has_d else 0.0,
                               float(numbers["penalty"]), float(numbers.get("reconstruction", 0.0)))
        info = info_with_metrics(info, numbers["metrics"])
        return JaxGameState(step=state.step + 1, opt_state=opt_state, ema=ema, key=key), info

    def result(self, state: JaxGameState, batch=None) -> Result:
        return Result(params=self.params(state, averaged=True))

    def params(self, state: JaxGameState, averaged: bool = True) -> dict:
        """The parameters as numpy arrays; ``averaged``: the generator's moving average in place
        of its parameters when one is kept."""
        out = {n: np.asarray(v) for n, v in self.merged(state.opt_state).items()}
        if averaged and state.ema is not None:
            out.update({n: np.asarray(v) for n, v in state.ema.items()})
        return out

    # ---- checkpoints -----------------------------------------------------------------
    def state_arrays(self, state: JaxGameState):
        import jax

        leaves = jax.tree_util.tree_leaves(state.opt_state)
        arrays = {f"leaf/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        for n, v in (state.ema or {}).items():
            arrays[f"ema/{n}"] = np.asarray(v)
        key = state.key
        arrays["key"] = np.asarray(jax.random.key_data(key) if hasattr(jax.random, "key_data")
                                   and not isinstance(key, np.ndarray) and key.dtype != np.uint32 else key)
        return arrays, {"num_leaves": len(leaves), "step": state.step}

    def restore_state(self, state: JaxGameState, arrays, meta) -> JaxGameState:
        import jax
        import jax.numpy as jnp

        leaves, treedef = jax.tree_util.tree_flatten(state.opt_state)
        if len(leaves) != meta.get("num_leaves"):
            raise CheckpointError(f"the checkpoint has {meta.get('num_leaves')} optimiser arrays and this game "
                                  f"{len(leaves)}: it was written by another model; use a new run_dir")
        opt_state = jax.tree_util.tree_unflatten(
            treedef, [jnp.asarray(arrays[f"leaf/{i}"], dtype=leaf.dtype) for i, leaf in enumerate(leaves)])
        ema = state.ema
        if ema is not None:
            ema = {n: jnp.asarray(arrays.get(f"ema/{n}"), dtype=v.dtype) for n, v in ema.items()}
        return JaxGameState(step=int(meta.get("step", 0)), opt_state=opt_state, ema=ema,
                            key=jnp.asarray(arrays["key"], dtype=jnp.uint32))


def _replace_params(opt_state, new_params):
    """An Adam state of ``jax.example_libraries.optimizers`` with its parameters replaced (moments kept)."""
    import jax
    from jax.example_libraries.optimizers import OptimizerState

    packed, tree = opt_state.packed_state, opt_state.tree_def
    flat = jax.tree_util.tree_leaves(new_params)
    packed = type(packed)(type(rest)([x, *rest[1:]]) for x, rest in zip(flat, packed))
    return OptimizerState(packed, tree, opt_state.subtree_defs)
