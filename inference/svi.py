r"""Stochastic variational inference: one algorithm, swappable ELBOs and guides, both backends.

The loss and the guide are arguments, not subclasses:

- ``elbo``: ``"trace"`` (Monte Carlo ELBO), ``"meanfield"`` (analytic KL where the backend
  has it), ``"iwae"`` (the importance-weighted bound with ``num_particles`` = K samples),
  ``"renyi"`` (the Rényi bound with ``alpha``; alpha=0 is the IWAE bound), ``"enum"``
  (discrete latents summed out), the diffusion losses ``"simple"``, ``"vlb"``, ``"hybrid"``
  of ``inference/diffusion.py`` (diffusion families), or a loss object (see below).
- ``ema``: an exponential moving average of the parameters (Polyak averaging), kept next to
  the optimised ones and used for everything after the step: validation (early stopping),
  the fit's parameters, likelihoods and samples.
- Networks run in training mode (dropout active) inside the optimisation steps only.
- ``kl_warmup``/``beta``: the latent terms log p(z) − log q(z|x) (the KL of the mean-field
  ELBO) are weighted by β, which rises linearly from 0 to ``beta`` over the first
  ``kl_warmup`` steps (Bowman et al. 2016; Sønderby et al. 2016); ``beta`` alone is a β-VAE.
  With ``elbo="iwae"`` or ``"renyi"`` β weights the latent terms inside every importance
  weight, log w = log p(x|z) + β (log p(z) − log q(z|x)).

The IWAE and Rényi bounds are computed per example (Burda et al. 2016, eq. 8): with K guide
draws z_k ~ q(z | x_n) and log-weights log w_nk = log p(x_n, z_nk) − log q(z_nk | x_n),

.. math::

    \mathcal L_K = \sum_n \Big[\log \tfrac1K \sum_k w_{nk}^{1-\alpha}\Big] / (1 - \alpha),

a log-mean-exp for each data point, never over the whole minibatch (the backends' own
``RenyiELBO`` pools the batch, which for per-example latents is a looser, different bound:
pyro issue 3104). Models whose latents are all global get the pooled bound, which is then
the right one.
- ``guide``: a family's local guides (``"amortized"``, ``"per_example"``: point estimates of
  the global parameters, a distribution over each example's latent), or an automatic guide over
  the global latents of a Bayesian form (``"normal"``, ``"multivariate_normal"`` (full rank),
  ``"low_rank_normal"``, ``"delta"`` (MAP)). ``"auto"`` picks the family's first local guide,
  else ``"normal"``; a user Program's own guide is used when it has one.

Every loss is an object with one call shape, ``loss(program, params, batch, rng) -> (value,
metrics)`` (``inference/losses.py``): the names above are shorthands that
:func:`~ppgen.inference.resolve_loss` turns into :class:`~ppgen.inference.MonteCarloELBO`,
:class:`~ppgen.inference.AnalyticKLELBO`, :class:`~ppgen.inference.ImportanceWeightedELBO`,
:class:`~ppgen.inference.RenyiELBO`, :class:`~ppgen.inference.EnumeratedELBO` and
:class:`~ppgen.inference.DiffusionLoss` with this SVI's ``num_particles``, ``beta``, ``alpha``
and ``hybrid_weight``. ``SVI(elbo=obj)`` takes such an object, or a person's own: it then
carries its own options, and its ``metrics`` join the fit's history. SVI passes the program with
its bound model and guide, the constrained parameters (NumPyro) or the param store's (Pyro),
the minibatch, and a JAX key (NumPyro) or torch's default generator set to the fit's stream (Pyro).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, NamedTuple, Optional

import numpy as np

from ppgen.backends import get_backend
from ppgen.errors import ConfigError

from .base import Inference, Kernel, Result, info_with_metrics, set_learning_rate, torch_average_
from .diffusion import DiffusionLoss
from .losses import (SVI_LOSSES, ELBOLoss, EnumeratedELBO, call_loss, importance_bound, latent_weight, loss_class,
                     loss_name, loss_options, pyro_generator, resolve_loss)

__all__ = ["SVI", "SVIInfo", "PyroSVIState", "PyroSVIKernel", "NumPyroSVIState", "NumPyroSVIKernel", "ELBOS",
           "LOCAL_GUIDES", "GLOBAL_GUIDES", "importance_bound"]

ELBOS = SVI_LOSSES
LOCAL_GUIDES = ("amortized", "per_example")
GLOBAL_GUIDES = ("normal", "multivariate_normal", "low_rank_normal", "delta")


class SVIInfo(NamedTuple):
    loss: float  # negative ELBO of the minibatch, scaled to the data set, per training example
    beta: float = 1.0  # weight of the latent (KL) terms at this step


@dataclasses.dataclass(frozen=True)
class SVI(Inference):
    """Stochastic variational inference (Hoffman et al. 2013; Kingma & Welling 2014).

    Maximises an evidence lower bound over the guide's (and the model's) parameters with
    Adam on minibatches.

    Args:
        elbo: ``"trace"``, ``"meanfield"``, ``"iwae"``, ``"renyi"``, ``"enum"``, a diffusion loss
            (``"simple"``, ``"vlb"``, ``"hybrid"``) or a loss object
            (``loss(program, params, batch, rng) -> (value, metrics)``, see ``inference.losses``),
            which then carries its own num_particles, beta, alpha and hybrid_weight.
        hybrid_weight: λ of the diffusion loss ``"hybrid"`` (simple + λ·vlb).
        guide: ``"auto"``, a local guide of the family, or an automatic global guide.
        steps: optimisation steps (ignored when ``epochs`` is set).
        epochs: passes over the training set; sets ``steps = epochs * ceil(N / batch_size)``.
        batch_size: examples per step; None means the whole training set.
        lr: Adam's learning rate.
        lr_decay: the learning rate decays exponentially to ``lr * lr_decay`` at the last step.
        optimizer: ``"adam"`` or ``"clipped_adam"`` (gradient norm clipped to ``clip_norm``).
        clip_norm: the clipping norm of ``"clipped_adam"``.
        num_particles: Monte Carlo samples of the ELBO per step; K of the IWAE and Rényi bounds.
        ema: decay of an exponential moving average of the parameters (e.g. 0.999; 0: none),
            which starts at the initial parameters. Validation, the fit's parameters and
            samples use the average; the optimiser keeps working on the raw parameters.
        ema_warmup: use the decay min(ema, (1 + t) / (10 + t)) at step t, so that the average
            forgets the initial parameters within a few hundred steps (for decays near 0.9999
            and runs too short for a fixed decay to settle); False keeps the decay fixed.
        kl_warmup: steps over which the weight β of the latent (KL) terms rises linearly from 0
            to ``beta`` (0: no warm-up).
        beta: the final weight of the latent terms (1: the ELBO; other values: a β-VAE).
        alpha: the Rényi divergence's alpha (``elbo="renyi"``); 0 gives the IWAE bound.
        rank: rank of ``"low_rank_normal"`` (None: about sqrt of the number of latents).
        init_scale: initial standard deviation of automatic guides.
        num_samples: guide draws kept as the posterior (Bayesian forms).

    Example:
        >>> fit = ppgen.fit(models.PPCA(64, 8), data, inference.SVI(elbo="meanfield", steps=3000))
    """

    elbo: Any = "trace"
    hybrid_weight: float = 0.001
    guide: Literal["auto", "amortized", "per_example", "normal", "multivariate_normal",
                   "low_rank_normal", "delta"] = "auto"
    steps: int = 2000
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: float = 1e-2
    lr_decay: float = 1.0
    optimizer: Literal["adam", "clipped_adam"] = "adam"
    clip_norm: float = 10.0
    num_particles: int = 1
    alpha: float = 0.0
    rank: Optional[int] = None
    init_scale: float = 0.1
    num_samples: int = 1000
    kl_warmup: int = 0
    beta: float = 1.0
    ema: float = 0.0
    ema_warmup: bool = False

    name: ClassVar[str] = "svi"
    title: ClassVar[str] = "SVI"
    full_batch: ClassVar[bool] = False
    state_fields: ClassVar[tuple] = ("elbo", "guide", "optimizer", "rank")

    def _validate(self):
        if isinstance(self.elbo, str):
            if self.elbo not in ELBOS:
                loss_class(self.elbo)  # unknown: refused naming the nearest and the known ones
                raise ConfigError(f"SVI.elbo={self.elbo!r} is an adversarial game, which SVI does not play; use "
                                  f"inference.Adversarial(loss={self.elbo!r}), or one of {list(ELBOS)}")
        elif not callable(self.elbo):
            raise ConfigError(f"SVI.elbo must be one of {list(ELBOS)} or a loss object "
                              f"(loss(program, params, batch, rng) -> (value, metrics)); got {self.elbo!r}")
        else:
            defaults = {"num_particles": 1, "alpha": 0.0, "beta": 1.0, "hybrid_weight": 0.001}
            changed = [k for k, v in defaults.items() if getattr(self, k) != v]
            if changed:
                raise ConfigError(f"SVI({changed[0]}=...) is an option of a shorthand loss such as elbo='trace'; the "
                                  f"loss object {loss_name(self.elbo)!r} carries its own options: set it there, e.g. "
                                  f"elbo=inference.MonteCarloELBO(num_particles=8, beta=4.0)")
        for name in ("steps", "num_particles", "num_samples"):
            self._require(getattr(self, name) >= 1, f"{name} must be at least 1; got {getattr(self, name)}")
        for name in ("epochs", "batch_size", "rank"):
            value = getattr(self, name)
            self._require(value is None or value >= 1, f"{name} must be at least 1 or None; got {value}")
        self._require(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive; got {self.lr}")
        self._require(0 < self.lr_decay <= 1, f"lr_decay must be in (0, 1]; got {self.lr_decay}")
        self._require(self.clip_norm > 0, f"clip_norm must be positive; got {self.clip_norm}")
        self._require(self.init_scale > 0, f"init_scale must be positive; got {self.init_scale}")
        self._require(self.alpha != 1, "alpha=1 is the ordinary ELBO; use elbo='trace'")
        self._require(self.kl_warmup >= 0, f"kl_warmup must be >= 0 steps; got {self.kl_warmup}")
        self._require(self.beta > 0 and math.isfinite(self.beta), f"beta must be positive; got {self.beta}")
        self._require(0 <= self.ema < 1, f"ema is a decay in [0, 1) (e.g. 0.999, or 0 for none); got {self.ema}")
        self._require(self.hybrid_weight >= 0, f"hybrid_weight must be >= 0; got {self.hybrid_weight}")
        loss = self._resolve_loss()
        object.__setattr__(self, "_loss", loss)  # resolved once: beta_at reads it at every step
        if not (self.kl_warmup or self.beta != 1) or (isinstance(loss, ELBOLoss) and loss.weighs_latents):
            return
        if isinstance(loss, DiffusionLoss):
            raise ConfigError(f"SVI: kl_warmup and beta weight latent terms of an ELBO; the diffusion loss "
                              f"{loss.name!r} has none. Drop kl_warmup/beta")
        if isinstance(loss, EnumeratedELBO):
            raise ConfigError("SVI: kl_warmup and beta weight the latent terms of elbo='trace', 'meanfield', "
                              "'iwae' or 'renyi'; elbo='enum' sums discrete latents out exactly. Drop "
                              "kl_warmup/beta or use elbo='trace'")
        raise ConfigError("SVI: kl_warmup and beta apply to the built-in ELBOs; a custom loss weights "
                          "its own terms")

    def loss(self):
        """The loss object this SVI minimises: ``elbo`` itself, or the shorthand resolved with
        this SVI's ``num_particles``, ``beta``, ``alpha`` and ``hybrid_weight`` (those it takes)."""
        return self._loss

    def _resolve_loss(self):
        if not isinstance(self.elbo, str):
            return self.elbo
        options = {"num_particles": self.num_particles, "beta": self.beta, "alpha": self.alpha,
                   "hybrid_weight": self.hybrid_weight}
        names = loss_options(self.elbo)
        return resolve_loss(self.elbo, **{k: v for k, v in options.items() if k in names})

    # ---- compatibility ---------------------------------------------------------------
    def form_for(self, model) -> str:
        if model.family == "program":
            if self.guide in LOCAL_GUIDES:
                raise ConfigError(
                    f"SVI(guide={self.guide!r}) is a guide of ppgen's model families; a user Program "
                    f"brings its own guide, or uses guide='auto' or one of {list(GLOBAL_GUIDES)}")
            return "user"
        local = model.local_guides
        loss = self.loss()
        name = loss_name(loss)
        if isinstance(loss, DiffusionLoss) and not model.diffusion:
            self.refuse(model, f"elbo={name!r} is a diffusion loss (simple ε-MSE, variational bound, hybrid), "
                               f"and {type(model).__name__} is not a diffusion model; use models.DDPM, or an ELBO "
                               f"such as 'meanfield'")
        refusal = model.elbo_refusals.get(name) if isinstance(loss, (ELBOLoss, DiffusionLoss)) else None
        if refusal:
            raise ConfigError(f"SVI(elbo={name!r}) cannot fit {type(model).__name__}: {refusal}")
        if model.discrete_latents:
            # discrete per-example latents: enumerated (elbo="enum") or summed out, never guided
            if self.guide in LOCAL_GUIDES:
                self.refuse(model, f"its discrete latents {list(model.discrete_latents)} are enumerated or "
                                   f"summed out, not guided, so it has no guide {self.guide!r}; use "
                                   f"guide='auto' (point estimates) or one of {list(GLOBAL_GUIDES)} (posterior)")
            if self.guide == "auto":
                return "latent" if isinstance(loss, EnumeratedELBO) else "marginal"
            return "bayesian"
        if self.guide in LOCAL_GUIDES or (self.guide == "auto" and "latent" in model.forms):
            if self.guide != "auto" and self.guide not in local:
                self.refuse(model, f"it has no guide {self.guide!r} (its local guides: {list(local)})")
            if "latent" not in model.forms:
                self.refuse(model, "it has no per-example latent form")
            return "latent"
        if "bayesian" not in model.forms:
            self.refuse(model, f"guide={self.guide!r} needs priors on the global parameters, and "
                               f"this family has none; use guide='auto'")
        return "bayesian"

    def guide_for(self, model) -> Optional[str]:
        if self.guide in LOCAL_GUIDES:
            return self.guide
        local = model.local_guides
        return local[0] if (self.guide == "auto" and local) else None

    def build_options(self, model) -> dict:
        if isinstance(self.loss(), EnumeratedELBO) and model.discrete_latents:
            return {"enumerate": True}
        return {}

    def beta_at(self, step: int) -> float:
        """The weight β of the latent terms at (0-based) ``step``: linear warm-up, then ``beta``."""
        loss = self.loss()
        beta = loss.beta if isinstance(loss, ELBOLoss) and loss.weighs_latents else 1.0
        if self.kl_warmup <= 0:
            return beta
        return beta * min(1.0, (step + 1) / self.kl_warmup)

    def ema_decay_at(self, step: int) -> float:
        """The moving average's decay after (0-based) ``step``: ``ema``, or with ``ema_warmup``
        min(ema, (1 + t) / (10 + t))."""
        return min(self.ema, (1.0 + step) / (10.0 + step)) if self.ema_warmup else self.ema

    @property
    def _weighs_latents(self) -> bool:
        return self.kl_warmup > 0 or self.beta_at(self.kl_warmup) != 1

    def _auto_guide_name(self, program) -> Optional[str]:
        if program.guide is not None:
            return None
        return "normal" if self.guide in ("auto",) + LOCAL_GUIDES else self.guide

    # ---- loop sizes ------------------------------------------------------------------
    def batch_size_for(self, num_data: int) -> int:
        return min(self.batch_size or num_data, num_data)

    def num_steps(self, num_data: int) -> int:
        if self.epochs is not None:
            return self.epochs * math.ceil(num_data / self.batch_size_for(num_data))
        return self.steps

    # ---- protocol ----------------------------------------------------------------------
    def bind(self, program) -> Kernel:
        """This SVI bound to ``program``: a :class:`PyroSVIKernel` or :class:`NumPyroSVIKernel`.
        Refuses, before any work, an automatic guide over per-example latents with minibatches."""
        structure = program.extras.get("structure")
        if (structure is not None and structure.local_latents and program.guide is None
                and self.batch_size_for(program.num_data) < program.num_data):
            raise ConfigError(
                f"an automatic guide keeps one value of {list(structure.local_latents)} per training row, and "
                f"minibatches cannot say which rows they hold to it: pass batch_size=None (full batches), or write "
                f"a guide that draws them from x (amortised) and pass Program(model, guide)")
        kernel = PyroSVIKernel if program.backend == "pyro" else NumPyroSVIKernel
        return kernel(self, program)


_AUTO_GUIDE_CLASSES = {"normal": "AutoNormal", "multivariate_normal": "AutoMultivariateNormal",
                       "low_rank_normal": "AutoLowRankMultivariateNormal", "delta": "AutoDelta"}


def _make_auto_guide(svi: SVI, name: str, model, autoguide_module, init_loc_fn):
    """An automatic guide from either backend's ``autoguide`` module (same names and arguments).

    ``init_loc_fn`` sets where the guide starts; for a family that knows a good starting point
    (``BuiltProgram.init_values``, e.g. the maximum-likelihood fit) it starts there."""
    kwargs = {"init_loc_fn": init_loc_fn}
    if name != "delta":
        kwargs["init_scale"] = svi.init_scale
    if name == "low_rank_normal":
        kwargs["rank"] = svi.rank
    return getattr(autoguide_module, _AUTO_GUIDE_CLASSES[name])(model, **kwargs)


def _blocked(model, program):
    """``model`` with the program's enumerated discrete sites hidden, so that an automatic guide
    covers the continuous latents only."""
    if not program.discrete_sites:
        return model
    if program.backend == "numpyro":
        from numpyro import handlers

        return handlers.block(model, hide=list(program.discrete_sites))
    from pyro import poutine

    return poutine.block(model, hide=list(program.discrete_sites))


def _loss_programs(svi, program, auto_guide) -> tuple:
    """The BuiltPrograms a loss object sees, for evaluation and for an optimisation step:
    ``program`` with SVI's model and guide (the batch keywords and ``num_data`` bound, an
    automatic guide in place), the second running its networks in training mode
    (``training=True`` to the model and guide, and to a DDPM's ``denoise``; dropout on), each
    with extras of its own. ``auto_guide(name, model)`` builds an automatic guide: one, over the
    evaluation model, serves both (it runs the model only to find its sites)."""
    name = svi._auto_guide_name(program)
    models = [program.for_batches(program.model, training=training) for training in (False, True)]
    if name:
        guides = [auto_guide(name, _blocked(models[0], program))] * 2
    else:
        guides = [program.for_batches(program.guide, training=training) for training in (False, True)]
    cache = {}  # what a loss works out once (plate nesting, its fast path) holds in both modes
    extras = [dict(program.extras, loss_cache=cache), dict(program.extras, loss_cache=cache)]
    if "denoise" in extras[1]:
        extras[1]["denoise"] = functools.partial(extras[1]["denoise"], training=True)
    return tuple(dataclasses.replace(program, model=m, guide=g, extras=e) for m, g, e in zip(models, guides, extras))


class _StoreParams(Mapping):
    """The Pyro parameters a loss object sees: those of the param store in use (the fit's,
    within its scope), by name, constrained (what ``pyro.param(name)`` returns), read when looked
    up. A parameter the program creates during the call (the first call, at ``init``) is there
    as soon as the program has made it."""

    def __getitem__(self, name):
        import pyro

        if name not in pyro.get_param_store():
            raise KeyError(name)
        return pyro.param(name)

    def __iter__(self):
        import pyro

        return iter(list(pyro.get_param_store().keys()))

    def __len__(self):
        import pyro

        return len(pyro.get_param_store())


def _latent_site_names(be, model, batch):
    sites = be.trace(model, 0, **batch)
    return [n for n, s in sites.items() if not s.get("is_observed") and not n.startswith("_")]


# ======================================================================================
# Pyro
# ======================================================================================
class PyroSVIState(NamedTuple):
    """SVI's changing data in the Pyro backend.

    The optimiser is torch's own object, which holds its moments and the parameters it updates
    in place (torch's idiom: data, like the tensors it holds, not a rule; the learning rate of
    each step is set from ``step`` by the kernel). Like the parameters, it is updated in place,
    so an earlier state shares its arrays with the later ones.

    Attributes:
        step: optimisation steps taken.
        params: the param store's unconstrained parameters by name (torch tensors).
        optimizer: ``torch.optim.Adam`` (or Pyro's ``ClippedAdam``) over ``params``.
        ema: the moving average of ``params`` by name, or None (``SVI(ema=0)``).
        rng: torch's RNG state (a uint8 tensor) that the next step draws from.
    """

    step: int
    params: dict
    optimizer: Any
    ema: Optional[dict]
    rng: Any


class PyroSVIKernel(Kernel):
    """SVI bound to a Pyro program. What the first batch settles (the device of an automatic
    guide, the parameters' constraints) is made by :meth:`init`.

    Attributes:
        be: the Pyro backend.
        loss: the loss object (``SVI.loss()``).
        gamma: the learning rate's decay per step (``lr * gamma**step`` at ``step``).
        evaluation, training: the BuiltPrograms the loss sees outside and inside optimisation
            steps (networks in evaluation and training mode; an automatic guide in place).
        model, guide: the evaluation program's model and guide (posterior draws).
        constraints: the param store's constraints by parameter name.
        generator: the ``torch.Generator`` the loss draws from (torch's default one on the device).
        batch: the first batch (where :meth:`result` draws a posterior when given none).
    """

    def __init__(self, inference: SVI, program):
        super().__init__(inference, program)
        self.be = get_backend("pyro")
        self.loss = inference.loss()
        self.gamma = inference.lr_decay ** (1.0 / max(inference.num_steps(program.num_data), 1))
        self.evaluation = self.training = self.model = self.guide = None
        self.constraints: dict = {}
        self.generator = self.batch = None

    def _auto_guide(self, name: str, model, device="cpu"):
        import pyro.infer.autoguide as autoguide

        init = autoguide.init_to_median
        if self.program.init_values is not None:
            values = {k: self.be.asarray(v, "float32", device) for k, v in self.program.init_values(0).items()}
            init = autoguide.initialization.init_to_value(values=values, fallback=init)
        return _make_auto_guide(self.inference, name, model, autoguide, init)

    def _store(self, state: PyroSVIState) -> dict:
        """The param store's state that ``pyro.get_param_store().scope`` takes."""
        return {"params": state.params, "constraints": self.constraints}

    def _loss(self, batch, training: bool = False):
        """The loss object on ``batch`` (within the fit's param store and RNG): (value, metrics);
        ``training``: on the program whose networks run in training mode (an optimisation step)."""
        program = self.training if training else self.evaluation
        return call_loss(self.loss, program, _StoreParams(), batch, self.generator)

    def lr_at(self, step: int) -> float:
        """The learning rate of (0-based) ``step``: ``lr`` decayed exponentially to ``lr * lr_decay``."""
        return self.inference.lr * self.gamma ** step

    def init(self, batch, seed) -> PyroSVIState:
        import pyro
        import torch

        svi = self.inference
        device = batch["x"].device
        self.evaluation, self.training = _loss_programs(
            svi, self.program, lambda name, model: self._auto_guide(name, model, device))
        self.model, self.guide = self.evaluation.model, self.evaluation.guide
        self.generator = pyro_generator(device)
        self.batch = batch
        store, rng = {"params": {}, "constraints": {}}, {"rng": None}
        with pyro.get_param_store().scope(store), self.be.rng(rng, seed):
            self._loss(batch)  # the first call creates the parameters
        # the store takes a program's initial tensor itself as an unconstrained parameter: the fit
        # optimises a copy, so the program keeps its initial values (another kernel of it starts
        # from them too); nn.Parameters (pyro.module, automatic guides) are their modules' own
        params = {n: (p.detach().clone() if type(p) is torch.Tensor else p).requires_grad_(True)
                  for n, p in store["params"].items()}
        self.constraints = store["constraints"]
        if svi.optimizer == "adam":
            opt = torch.optim.Adam(list(params.values()), lr=svi.lr)
        else:
            from pyro.optim.clipped_adam import ClippedAdam

            opt = ClippedAdam(list(params.values()), lr=svi.lr, clip_norm=svi.clip_norm)
        ema = {n: p.detach().clone() for n, p in params.items()} if svi.ema else None
        return PyroSVIState(step=0, params=params, optimizer=opt, ema=ema, rng=rng["rng"])

    @contextlib.contextmanager
    def _averaged(self, state: PyroSVIState):
        """The parameters hold the moving average (if any) within this context."""
        import torch

        if not state.ema:
            yield
            return
        params = state.params
        with torch.no_grad():
            saved = {n: p.detach().clone() for n, p in params.items()}
            for n, p in params.items():
                p.copy_(state.ema[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(saved[n])

    def step(self, state, batch):
        import pyro

        svi = self.inference
        opt = state.optimizer
        beta = svi.beta_at(state.step)
        if svi._weighs_latents:
            batch = dict(batch, beta=beta)
        set_learning_rate(opt, self.lr_at(state.step))
        rng = {"rng": state.rng}
        with pyro.get_param_store().scope(self._store(state)), self.be.rng(rng):
            opt.zero_grad(set_to_none=True)
            loss, metrics = self._loss(batch, training=True)
            loss.backward()
            value = loss.item()
            opt.step()
        if state.ema is not None:
            torch_average_(state.ema, state.params, svi.ema_decay_at(state.step))
        state = state._replace(step=state.step + 1, rng=rng["rng"])
        return state, info_with_metrics(SVIInfo(value / self.program.num_data, beta), metrics)

    def evaluate(self, state, batch) -> float:
        import pyro
        import torch

        with pyro.get_param_store().scope(self._store(state)), self.be.rng({"rng": None}, 0), torch.no_grad(), \
                self._averaged(state):
            value = float(self._loss(batch)[0])
        return value / self.program.num_data

    def result(self, state, batch=None) -> Result:
        import pyro

        be, program = self.be, self.program
        with pyro.get_param_store().scope(self._store(state)), self._averaged(state):
            # copies: the parameters get their raw values back when the average is swapped out
            params = {name: np.array(be.to_numpy(pyro.param(name))) for name in state.params}
            posterior = None
            if program.form in ("bayesian", "user"):
                batch = batch or self.batch
                posterior = _pyro_guide_draws(self.model, self.guide, batch, self.inference.num_samples)
        return Result(params=_model_params(program, params), posterior=_global_draws(program, posterior))

    # ---- checkpoints -------------------------------------------------------------------
    def state_arrays(self, state):
        be = self.be
        arrays = {f"store/{n}": be.to_numpy(p) for n, p in state.params.items()}
        opt_state = state.optimizer.state_dict()
        meta = {"names": list(state.params), "param_groups": opt_state["param_groups"], "optimizer_keys": {},
                "step": state.step}
        for i, entry in opt_state["state"].items():
            meta["optimizer_keys"][str(i)] = {}
            for key, value in entry.items():
                arr = be.to_numpy(value) if hasattr(value, "detach") else np.asarray(value)
                arrays[f"optimizer/{i}/{key}"] = arr
                meta["optimizer_keys"][str(i)][key] = bool(hasattr(value, "detach"))
        arrays["rng"] = be.to_numpy(state.rng)
        for n, value in (state.ema or {}).items():
            arrays[f"ema/{n}"] = be.to_numpy(value)
        return arrays, meta

    def restore_state(self, state, arrays, meta):
        """``state`` with a checkpoint's values, continuing on this run's learning rate and
        schedule (a checkpoint's ``meta["schedule"]``, written before the rate was set from the
        step, is not needed)."""
        import torch

        params = state.params
        if list(params) != meta["names"]:
            from ppgen.errors import CheckpointError

            raise CheckpointError(f"checkpoint parameters {meta['names']} do not match this "
                                  f"program's {list(params)}")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(torch.as_tensor(arrays[f"store/{n}"]))
        opt_state = {"state": {}, "param_groups": meta["param_groups"]}
        for i, keys in meta["optimizer_keys"].items():
            opt_state["state"][int(i)] = {
                k: (torch.tensor(arrays[f"optimizer/{i}/{k}"]) if is_tensor  # copies: updated in place
                    else arrays[f"optimizer/{i}/{k}"].item()) for k, is_tensor in keys.items()}
        state.optimizer.load_state_dict(opt_state)
        step = int(meta.get("step", 0))
        set_learning_rate(state.optimizer, self.lr_at(step))
        for group in state.optimizer.param_groups:
            if "clip_norm" in group:
                group["clip_norm"] = self.inference.clip_norm
        if state.ema is not None:
            _require_ema(arrays, state.ema)
            with torch.no_grad():
                for n, value in state.ema.items():
                    value.copy_(torch.as_tensor(arrays[f"ema/{n}"]))
        return state._replace(step=step, rng=torch.as_tensor(arrays["rng"]))


def _require_ema(arrays: dict, names) -> None:
    missing = [n for n in names if f"ema/{n}" not in arrays]
    if missing:
        from ppgen.errors import CheckpointError

        raise CheckpointError(f"the checkpoint has no moving average of {missing[:3]}; it was written by "
                              f"SVI without ema. Resume with the same SVI settings")


def _model_params(program, params: dict) -> dict:
    """The parameters a fit keeps: an automatic guide's internals are not the model's (a
    family's Bayesian form keeps none; a user program keeps its own model's and guide's)."""
    if program.form == "bayesian":
        return {}
    if program.form == "user" and program.guide is None:
        structure = program.extras.get("structure")
        own = set(structure.params) if structure is not None else set()
        return {k: v for k, v in params.items() if k in own}
    return params


def _global_draws(program, posterior):
    """A user program's posterior holds its global latents and deterministic sites, not the
    per-example latents of the training rows (``Fit.to_arviz(x=...)`` draws those for any rows)."""
    structure = program.extras.get("structure")
    if posterior is None or structure is None:
        return posterior
    keep = set(structure.global_latents) | set(structure.deterministic)
    return {k: v for k, v in posterior.items() if k in keep} or None


def _pyro_guide_draws(model, guide, batch, num: int) -> dict:
    """``num`` draws of the guide's latent sites plus the model's deterministic sites, each
    shaped (1, num, ...) (one chain)."""
    import torch
    from pyro import poutine

    be = get_backend("pyro")
    out: dict = {}
    with be.rng({"rng": None}, 0), torch.no_grad():
        for _ in range(num):
            guide_trace = poutine.trace(guide).get_trace(**batch)
            values = {name: site["value"] for name, site in guide_trace.nodes.items()
                      if site["type"] == "sample" and not site["is_observed"] and not name.startswith("_")}
            model_trace = poutine.trace(poutine.condition(model, values)).get_trace(**batch)
            for name, site in model_trace.nodes.items():
                if site["type"] == "sample" and (name in values or site["infer"].get("_deterministic")):
                    out.setdefault(name, []).append(be.to_numpy(site["value"]))
    return {name: np.stack(v)[None] for name, v in out.items()}


# ======================================================================================
# NumPyro
# ======================================================================================
class NumPyroSVIState(NamedTuple):
    """SVI's changing data in the NumPyro backend.

    Attributes:
        step: optimisation steps taken.
        svi_state: ``numpyro.infer.svi.SVIState``: the optimiser's state (the unconstrained
            parameters and Adam's moments), the mutable state and the JAX key of the next step.
        ema: the moving average of the unconstrained parameters by name, or None (``SVI(ema=0)``).
    """

    step: int
    svi_state: Any
    ema: Optional[dict]


class NumPyroSVIKernel(Kernel):
    """SVI bound to a NumPyro program: the programs the loss sees, NumPyro's SVI engine and the
    jitted update and evaluation, made once for the run.

    Attributes:
        loss: the loss object (``SVI.loss()``).
        evaluation, training: the BuiltPrograms the loss sees outside and inside optimisation
            steps (networks in evaluation and training mode; an automatic guide in place).
        model, guide: the evaluation program's model and guide.
        engine: ``numpyro.infer.SVI`` over them (its optimiser, and after :meth:`init` the map
            from unconstrained to constrained parameters).
        update: jitted ``(svi_state, ema, batch, decay) -> (svi_state, ema, loss, metrics)``.
        loss_of: jitted ``(svi_state, ema, batch) -> loss`` (evaluation mode, averaged parameters).
        batch: the first batch (where :meth:`result` draws a posterior when given none).
    """

    def __init__(self, inference: SVI, program):
        import jax
        import numpyro
        import numpyro.infer as ni
        from numpyro.infer.svi import SVIState

        super().__init__(inference, program)
        svi = inference
        self.evaluation, self.training = _loss_programs(svi, program, self._auto_guide)
        self.model, self.guide = self.evaluation.model, self.evaluation.guide
        total = max(svi.num_steps(program.num_data), 1)
        schedule = (lambda i: svi.lr * svi.lr_decay ** (i / total)) if svi.lr_decay < 1 else svi.lr
        if svi.optimizer == "adam":
            optim = numpyro.optim.Adam(step_size=schedule)
        else:
            optim = numpyro.optim.ClippedAdam(step_size=schedule, clip_norm=svi.clip_norm)
        self.loss = loss = svi.loss()
        self.engine = engine = ni.SVI(self.model, self.guide, optim, _NumPyroLoss(loss, self.evaluation))
        self.batch = None
        evaluation, training = self.evaluation, self.training

        def objective(raw, b, key, on=evaluation):
            return call_loss(loss, on, engine.constrain_fn(raw), b, key)

        def update(st, ema, b, decay):
            rng_key, key = jax.random.split(st.rng_key)  # as numpyro's SVI.update splits it
            (value, metrics), optim_state = engine.optim.eval_and_update(
                lambda raw: objective(raw, b, key, training), st.optim_state)  # networks in training mode
            st = SVIState(optim_state, st.mutable_state, rng_key)
            if ema is not None:
                raw = engine.optim.get_params(st.optim_state)
                ema = jax.tree_util.tree_map(lambda e, p: e + (1.0 - decay) * (p - e), ema, raw)
            return st, ema, value, metrics

        def evaluate(st, ema, b):
            _, key = jax.random.split(st.rng_key)  # as numpyro's SVI.evaluate does
            raw = engine.optim.get_params(st.optim_state) if ema is None else ema
            return objective(raw, b, key)[0]

        self.update = jax.jit(update)
        self.loss_of = jax.jit(evaluate)

    def _auto_guide(self, name: str, model):
        import jax.numpy as jnp
        import numpyro.infer.autoguide as autoguide
        from numpyro.infer import init_to_median, init_to_value

        init = init_to_median
        if self.program.init_values is not None:
            values = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in self.program.init_values(0).items()}
            init = init_to_value(values=values)
        return _make_auto_guide(self.inference, name, model, autoguide, init)

    def init(self, batch, seed) -> NumPyroSVIState:
        import jax

        # a diffusion model's program runs all T steps per example: find its parameters on one row
        first = {k: (v[:1] if hasattr(v, "shape") and v.ndim else v) for k, v in batch.items()} \
            if isinstance(self.loss, DiffusionLoss) else batch
        svi_state = self.engine.init(jax.random.PRNGKey(seed), **first)
        self.batch = batch
        ema = self.engine.optim.get_params(svi_state.optim_state) if self.inference.ema else None
        return NumPyroSVIState(step=0, svi_state=svi_state, ema=ema)

    def step(self, state, batch):
        svi = self.inference
        beta = svi.beta_at(state.step)
        if svi._weighs_latents:  # Python floats: traced as weakly typed scalars, no recompilation, no transfer
            batch = dict(batch, beta=beta)
        decay = svi.ema_decay_at(state.step)
        svi_state, ema, loss, metrics = self.update(state.svi_state, state.ema, batch, decay)
        if metrics:
            import jax

            metrics = jax.device_get(metrics)
        state = NumPyroSVIState(step=state.step + 1, svi_state=svi_state, ema=ema)
        return state, info_with_metrics(SVIInfo(float(loss) / self.program.num_data, beta), metrics)

    def evaluate(self, state, batch) -> float:
        return float(self.loss_of(state.svi_state, state.ema, batch)) / self.program.num_data

    def result(self, state, batch=None) -> Result:
        import jax
        from numpyro import handlers
        from numpyro.infer import Predictive

        program, engine = self.program, self.engine
        params = engine.get_params(state.svi_state) if state.ema is None else engine.constrain_fn(state.ema)
        posterior = None
        if program.form in ("bayesian", "user"):
            batch = batch or self.batch
            be = get_backend("numpyro")
            latent = _latent_site_names(be, _substituted(self.guide, params), batch)
            tr = handlers.trace(handlers.seed(handlers.substitute(self.model, params), 0)).get_trace(**batch)
            deterministic = [n for n, s in tr.items() if s["type"] == "deterministic"]
            draws = Predictive(self.model, guide=self.guide, params=params, num_samples=self.inference.num_samples,
                               return_sites=latent + deterministic)(jax.random.PRNGKey(0), **batch)
            posterior = {k: np.asarray(v)[None] for k, v in draws.items()}
        return Result(params=get_backend("numpyro").flatten_params(_model_params(program, params)),
                      posterior=_global_draws(program, posterior))

    # ---- checkpoints -------------------------------------------------------------------
    def state_arrays(self, state):
        import jax

        leaves = jax.tree_util.tree_leaves(state.svi_state)
        arrays = {f"leaf/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        for n, value in (state.ema or {}).items():
            arrays[f"ema/{n}"] = np.asarray(value)
        return arrays, {"num_leaves": len(leaves), "step": state.step}

    def restore_state(self, state, arrays, meta):
        import jax
        import jax.numpy as jnp

        leaves, treedef = jax.tree_util.tree_flatten(state.svi_state)
        if len(leaves) != meta["num_leaves"]:
            from ppgen.errors import CheckpointError

            raise CheckpointError(f"checkpoint has {meta['num_leaves']} optimiser arrays; this program "
                                  f"has {len(leaves)}: it was written by a different model or guide")
        new = [jnp.asarray(arrays[f"leaf/{i}"], dtype=leaf.dtype) for i, leaf in enumerate(leaves)]
        ema = state.ema
        if ema is not None:
            _require_ema(arrays, ema)
            ema = {n: jnp.asarray(arrays[f"ema/{n}"], dtype=v.dtype) for n, v in ema.items()}
        return NumPyroSVIState(step=int(meta.get("step", 0)), svi_state=jax.tree_util.tree_unflatten(treedef, new),
                               ema=ema)


def _substituted(fn, params):
    from numpyro import handlers

    return handlers.substitute(fn, data=params)


class _NumPyroLoss:
    """A loss object through NumPyro's ELBO interface, for ``numpyro.infer.SVI`` (its init, and
    its update/evaluate where a caller uses them)."""

    def __init__(self, fn, program):
        self.fn, self.program = fn, program
        # numpyro.infer.SVI warns about discrete latents for ELBOs that cannot sum them out
        self.can_infer_discrete = isinstance(fn, EnumeratedELBO) or not isinstance(fn, ELBOLoss)

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        return call_loss(self.fn, self.program, param_map, kwargs, rng_key)[0]
