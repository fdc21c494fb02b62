r"""Losses as objects with one call shape, in both backends.

Every loss ppgen optimises — the ELBOs, the diffusion losses, each player's adversarial
objective — and every loss a person writes is an object called as

.. code-block:: python

    value, metrics = loss(program, params, batch, rng)

- ``program``: the :class:`ppgen.program.BuiltProgram` being fitted (``model``, ``guide``,
  ``spec``, ``backend``, ``num_data``, ``extras``). SVI passes its own copy, whose model and
  guide take the batch keywords (``num_data`` bound, an automatic guide in place).
- ``params``: the current parameters by name. Pyro: the torch tensors of the param store
  (constrained values, the ones ``pyro.param`` returns; the model and guide read the same
  store, so gradients reach them either way). NumPyro: a dict of JAX arrays (constrained), which
  the loss substitutes into the model and guide (``numpyro.handlers.substitute``); the loss
  must be a pure function of its arguments, since SVI differentiates and compiles it.
- ``batch``: the minibatch keywords (``x``, ``index``, ``num_data``, ``y``, ...). Under SVI's
  ``kl_warmup`` it also holds ``beta``, the weight of the latent terms at this step, which
  the built-in ELBOs honour.
- ``rng``: NumPyro: a JAX PRNG key for this call. Pyro: a ``torch.Generator``. Pyro's
  sample sites draw from torch's default generator, so SVI passes that one (set to the fit's own
  stream for the length of the step): ``torch.randn(..., generator=rng)`` and ``pyro.sample``
  draw from the same stream. Called by hand, a loss also takes an int seed or any other
  generator: the built-in losses then run the program on that stream (and advance it).

It returns ``value``, a 0-d array of the backend to **minimise** (differentiable in Pyro), and
``metrics``, a dict of floats or 0-d arrays that the fit's history records next to ``loss``.
Like SVI's ELBOs, a loss over a minibatch is scaled to the whole data set (the model's data
plate does this); the history divides ``value`` by the number of training examples.

Objects, not strings and not subclasses: any object with a ``name`` and that ``__call__``
works (a plain class, or a function). Strings are shorthands, resolved by
:func:`resolve_loss`: ``"trace"`` → :class:`MonteCarloELBO`, ``"meanfield"`` →
:class:`AnalyticKLELBO`, ``"iwae"`` → :class:`ImportanceWeightedELBO`, ``"renyi"`` →
:class:`RenyiELBO`, ``"enum"`` → :class:`EnumeratedELBO`, ``"simple"``/``"vlb"``/``"hybrid"``
→ :class:`~ppgen.inference.DiffusionLoss`, and the adversarial games ``"minimax"``,
``"non-saturating"``, ``"wasserstein"``, ``"wgan-gp"``, ``"hinge"`` →
:class:`~ppgen.inference.AdversarialLoss` (two player losses: an adversarial game is two
such losses plus the update schedule).

The built-in losses are frozen :class:`ppgen.config.Config` dataclasses: a run's JSON config
records them by name and options, and loading the run gives the same object back. A person's
own loss is recorded by its name; run folders never store code, so loading gives a
:class:`ppgen.config.CodeReference` that says how to pass the object again.

:func:`elbo_terms` gives a person's loss the pieces of the ELBO (log-likelihood, log-prior,
log-guide and the latent draws) in either backend, so a β-VAE or an InfoVAE is a few lines:

.. code-block:: python

    class BetaVAE:
        name = "beta_vae"

        def __init__(self, beta):
            self.beta = beta

        def __call__(self, program, params, batch, rng):
            t = inference.elbo_terms(program, params, batch, rng)
            kl = t.log_guide - t.log_prior
            return -(t.log_likelihood - self.beta * kl), {"kl": kl}
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from ppgen.backends import get_backend
from ppgen.config import Config, CodeReference, register_option_object, suggest
from ppgen.errors import ConfigError

__all__ = ["Loss", "LossConfig", "ELBOLoss", "MonteCarloELBO", "AnalyticKLELBO", "ImportanceWeightedELBO", "RenyiELBO",
           "EnumeratedELBO", "ELBOTerms", "elbo_terms", "resolve_loss", "loss_name", "call_loss", "loss_class",
           "SVI_LOSSES", "ADVERSARIAL_LOSSES", "importance_bound", "latent_weight", "scale_latents",
           "pyro_generator", "pyro_stream", "loss_options"]

#: the shorthands SVI takes, and the adversarial games Adversarial takes
SVI_LOSSES = ("trace", "meanfield", "iwae", "renyi", "enum", "simple", "vlb", "hybrid")
ADVERSARIAL_LOSSES = ("minimax", "non-saturating", "wasserstein", "wgan-gp", "hinge")


@runtime_checkable
class Loss(Protocol):
    """What ppgen calls a loss (see the module docstring): a ``name`` and
    ``__call__(program, params, batch, rng) -> (value, metrics)``, ``value`` a 0-d array to
    minimise and ``metrics`` a dict of floats or 0-d arrays."""

    name: str

    def __call__(self, program, params, batch: dict, rng) -> tuple[Any, dict]:
        ...


@dataclasses.dataclass(frozen=True)
class LossConfig(Config):
    """Base of the built-in losses: frozen, validated options; recorded in a run's config by
    name and options."""

    kind: ClassVar[str] = "loss"
    option_tag: ClassVar[str] = "loss"

    def __call__(self, program, params, batch: dict, rng):
        raise NotImplementedError


def loss_name(loss) -> str:
    """The name a loss is recorded by: a string as given, an object's ``name``, a function's
    ``__name__``."""
    if isinstance(loss, str):
        return loss
    name = getattr(loss, "name", None)
    if isinstance(name, str):
        return name
    return getattr(loss, "__name__", None) or type(loss).__name__


def call_loss(loss, program, params, batch: dict, rng):
    """``loss(program, params, batch, rng)``, checked: a (0-d value, dict) pair comes back, else
    a ConfigError that names what came back and the fix. (Shapes are static, so this costs
    nothing inside a compiled JAX step.)"""
    out = loss(program, params, batch, rng)
    name = loss_name(loss)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        what = f"an array of shape {tuple(out.shape)}" if hasattr(out, "shape") else f"{type(out).__name__}"
        raise ConfigError(f"the loss {name!r} returned {what}; a loss returns a pair (value, metrics): a 0-d array to "
                          f"minimise and a dict of numbers to record, e.g. `return value, {{}}`")
    value, metrics = out
    shape = tuple(getattr(value, "shape", (None,)))
    if shape != ():
        what = f"shape {shape}" if hasattr(value, "shape") else f"a {type(value).__name__}"
        raise ConfigError(f"the loss {name!r} returned a value of {what}; a loss returns one number to minimise, "
                          f"a 0-d array of the backend (differentiable): sum it over the examples (value.sum(), "
                          f"scaled to the data set as the ELBOs are) or average it (value.mean())")
    return value, metrics


# ======================================================================================
# Randomness
# ======================================================================================
def pyro_generator(device=None):
    """The ``torch.Generator`` that Pyro's sample sites draw from on ``device`` (torch's default
    generator): what SVI passes as ``rng`` in the Pyro backend."""
    import torch

    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index or torch.cuda.current_device()]
    return torch.default_generator


@contextlib.contextmanager
def pyro_stream(rng):
    """Run Pyro's sample sites on ``rng``'s stream: nothing to do for torch's default generator
    (or None); an int seed runs on a fresh stream from that seed; another CPU generator lends its
    state to torch's default one and gets the advanced state back. (A CUDA generator is taken to
    be the device's default one, the one SVI passes for data on a GPU.)"""
    import torch

    if rng is None or (isinstance(rng, torch.Generator) and rng.device.type != "cpu") \
            or rng is torch.default_generator:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        if isinstance(rng, torch.Generator):
            torch.set_rng_state(rng.get_state())
        else:
            torch.manual_seed(int(rng))
        yield
        if isinstance(rng, torch.Generator):
            rng.set_state(torch.get_rng_state())


# ======================================================================================
# The latent weight β
# ======================================================================================
def latent_weight(backend: str, beta):
    """A handler (a context manager) that multiplies the log-density of every latent
    (unobserved) sample site by ``beta``: the β of a β-VAE and of KL warm-up (the backend's
    :meth:`scale_latents`)."""
    return get_backend(backend).scale_latents(beta)


def scale_latents(backend: str, fn, beta):
    """``fn`` with its latent sites weighted by ``beta`` (see :func:`latent_weight`); ``fn``
    itself when ``beta`` is the number 1."""
    if fn is None or (isinstance(beta, (int, float)) and beta == 1):
        return fn
    if backend == "numpyro":
        return get_backend(backend).scale_latents(beta, fn)

    def scaled(*args, **kwargs):
        with latent_weight(backend, beta):
            return fn(*args, **kwargs)

    return scaled


# ======================================================================================
# The ELBOs
# ======================================================================================
def _cache(program) -> dict:
    """Per-program memo of things a loss works out once (a backend ELBO, plate nesting)."""
    return program.extras.setdefault("loss_cache", {})


def _plate_nesting(program, model, batch) -> int:
    if program.max_plate_nesting is not None:
        return program.max_plate_nesting
    cache = _cache(program)
    if "plate_nesting" not in cache:
        sites = get_backend(program.backend).trace(model, 0, **batch)
        cache["plate_nesting"] = max([len(s.get("cond_indep_stack", ())) for s in sites.values()] + [0])
    return cache["plate_nesting"]


def importance_bound(terms: dict, alpha: float, num_particles: int, logsumexp):
    """The IWAE (alpha=0) or Rényi bound from a backend's ``log_weights`` terms.

    Per example, (log (1/K) Σ_k w_nk^{1−α}) / (1−α), summed over the minibatch and scaled to
    the data set; when the program has latents outside the data plate, the pooled bound over
    whole-batch weights instead."""
    local, glob, scale = terms["local"], terms["global"], terms["scale"]
    k = math.log(num_particles)
    if terms["global_latent"] or not hasattr(local, "shape"):
        total = (scale * local.sum(-1) if hasattr(local, "shape") else 0.0) + glob
        return (logsumexp((1 - alpha) * total, 0) - k) / (1 - alpha)
    per_example = (logsumexp((1 - alpha) * local, 0) - k) / (1 - alpha)
    rest = glob.mean(0) if hasattr(glob, "shape") else glob
    return scale * per_example.sum() + rest


@dataclasses.dataclass(frozen=True)
class ELBOLoss(LossConfig):
    """Shared by the built-in ELBOs: the negative ELBO of the program's model and guide."""

    num_particles: int = 1

    #: whether ``beta`` (and SVI's kl_warmup) weight the latent terms of this loss
    weighs_latents: ClassVar[bool] = False

    def _validate(self):
        self._require(self.num_particles >= 1, f"num_particles must be at least 1; got {self.num_particles}")
        beta = getattr(self, "beta", 1.0)
        self._require(beta > 0 and math.isfinite(beta), f"beta must be positive; got {beta}")

    def _programs(self, program, batch: dict):
        """(model, guide, batch) with the latent terms weighted by the step's β (SVI's warm-up
        puts it in the batch) or the loss's own."""
        batch = dict(batch)
        beta = batch.pop("beta", getattr(self, "beta", 1.0))
        if not self.weighs_latents:
            beta = 1.0
        return (scale_latents(program.backend, program.model, beta),
                scale_latents(program.backend, program.guide, beta), batch)

    def __call__(self, program, params, batch: dict, rng):
        model, guide, batch = self._programs(program, batch)
        if program.backend == "numpyro":
            return self._numpyro(program, model, guide, params, batch, rng), {}
        with pyro_stream(rng):
            return self._pyro(program, model, guide, batch), {}

    # ---- the backends' own ELBO classes (same names and arguments in both) ------------------
    backend_class: ClassVar[str] = "Trace_ELBO"

    def _backend_elbo(self, module, program):
        cls = getattr(module, self.backend_class)
        if self.backend_class == "TraceEnum_ELBO" and program.max_plate_nesting is not None:
            return cls(num_particles=self.num_particles, max_plate_nesting=program.max_plate_nesting)
        return cls(num_particles=self.num_particles)

    def _numpyro(self, program, model, guide, params, batch, rng):
        import numpyro.infer

        return self._backend_elbo(numpyro.infer, program).loss(rng, params, model, guide, **batch)

    def _pyro(self, program, model, guide, batch):
        import pyro.infer

        cache = _cache(program)
        key = ("pyro", self)
        if key not in cache:  # one ELBO per program: it works out the plate nesting once
            elbo = self._backend_elbo(pyro.infer, program)
            value = elbo.differentiable_loss(model, guide, **batch)
            fast = self.backend_class in ("Trace_ELBO", "TraceMeanField_ELBO") and \
                get_backend("pyro").all_reparameterized(model, guide, batch)
            cache[key] = "reparameterized" if fast else elbo
            return value
        elbo = cache[key]
        if isinstance(elbo, str):  # "reparameterized"
            # fully reparameterised programs: the same value and gradient, leaner (see the backend)
            return get_backend("pyro").reparam_elbo_loss(model, guide, batch, self.backend_class != "Trace_ELBO",
                                                         self.num_particles)
        return elbo.differentiable_loss(model, guide, **batch)


@dataclasses.dataclass(frozen=True)
class MonteCarloELBO(ELBOLoss):
    """The negative ELBO, E_q[log p(x, z) − log q(z | x)], by Monte Carlo (``"trace"``).

    Args:
        num_particles: guide draws per step.
        beta: weight of the latent terms log p(z) − log q(z | x) (1: the ELBO; else a β-VAE).
    """

    beta: float = 1.0

    name: ClassVar[str] = "trace"
    weighs_latents: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True)
class AnalyticKLELBO(ELBOLoss):
    """The negative ELBO with the closed-form KL(q ‖ p) where the backend has it, Monte Carlo
    elsewhere (``"meanfield"``). Args as :class:`MonteCarloELBO`."""

    beta: float = 1.0

    name: ClassVar[str] = "meanfield"
    weighs_latents: ClassVar[bool] = True
    backend_class: ClassVar[str] = "TraceMeanField_ELBO"


@dataclasses.dataclass(frozen=True)
class EnumeratedELBO(ELBOLoss):
    """The negative ELBO with the model's discrete latents summed out exactly (``"enum"``); the
    family builds its program with enumeration on.

    Args:
        num_particles: guide draws of the continuous latents per step.
    """

    name: ClassVar[str] = "enum"
    backend_class: ClassVar[str] = "TraceEnum_ELBO"


@dataclasses.dataclass(frozen=True)
class RenyiELBO(ELBOLoss):
    r"""The Rényi bound, per example (``"renyi"``): with K guide draws z_k ~ q(z | x_n) and
    log-weights log w_nk = log p(x_n, z_nk) − log q(z_nk | x_n),
    :math:`\sum_n [\log \frac1K \sum_k w_{nk}^{1-\alpha}] / (1 - \alpha)` — a log-mean-exp for
    each data point, never over the whole minibatch (the backends' own ``RenyiELBO`` pools the
    batch: a looser, different bound for per-example latents). Models whose latents are all
    global get the pooled bound, which is then the right one. With β ≠ 1 the latent terms are
    weighted inside every weight, log w = log p(x|z) + β (log p(z) − log q(z|x)).

    Args:
        alpha: the divergence's α (0: the IWAE bound; 1 is the ELBO, use MonteCarloELBO).
        num_particles: K, the guide draws per example.
        beta: weight of the latent terms.
    """

    alpha: float = 0.0
    beta: float = 1.0

    name: ClassVar[str] = "renyi"
    weighs_latents: ClassVar[bool] = True

    def _validate(self):
        super()._validate()
        self._require(self.alpha != 1, "alpha=1 is the ordinary ELBO; use MonteCarloELBO (elbo='trace')")

    def __call__(self, program, params, batch: dict, rng):
        model, guide, batch = self._programs(program, batch)
        be = get_backend(program.backend)
        dim = -1 - _plate_nesting(program, model, batch)
        if program.backend == "numpyro":
            import jax

            terms = be.log_weights(model, guide, batch, self.num_particles, dim, rng, params)
            return -importance_bound(terms, self.alpha, self.num_particles, jax.nn.logsumexp), {}
        import torch

        with pyro_stream(rng):
            terms = be.log_weights(model, guide, batch, self.num_particles, dim)
        return -importance_bound(terms, self.alpha, self.num_particles, torch.logsumexp), {}


@dataclasses.dataclass(frozen=True)
class ImportanceWeightedELBO(RenyiELBO):
    """The importance-weighted bound of Burda et al. (2016), per example (``"iwae"``): the Rényi
    bound at α = 0.

    Args:
        num_particles: K, the guide draws per example.
        beta: weight of the latent terms.
    """

    alpha: float = dataclasses.field(default=0.0, init=False, repr=False)

    name: ClassVar[str] = "iwae"


# ======================================================================================
# The pieces of the ELBO, for a person's own loss
# ======================================================================================
class ELBOTerms(NamedTuple):
    """One draw of the ELBO's pieces (each summed over sites and examples, scaled to the data
    set as the model's plates say), from :func:`elbo_terms`.

    Attributes:
        log_likelihood: Σ log p(x | z) over the observed sites.
        log_prior: Σ log p(z) over the model's latent sites.
        log_guide: Σ log q(z | x) over the guide's latent sites.
        latents: the guide's draws by site name (for a VAE, ``latents["z"]`` is (batch, latent_dim)).
        prior_draws: for each latent site, a fresh draw from the model's distribution there (given
            the guide's draws of the sites it depends on): for a VAE, draws of p(z).
    """

    log_likelihood: Any
    log_prior: Any
    log_guide: Any
    latents: dict
    prior_draws: dict


def elbo_terms(program, params, batch: dict, rng) -> ELBOTerms:
    """The pieces of the ELBO on one guide draw, differentiable, in either backend: run the guide,
    replay the model on its draws, and sum the log-densities (see :class:`ELBOTerms`). A person's
    loss object builds on it, e.g. the β-VAE's ``-(t.log_likelihood - β (t.log_guide - t.log_prior))``."""
    batch = {k: v for k, v in batch.items() if k != "beta"}
    if program.backend == "numpyro":
        import jax
        from numpyro import handlers

        keys = jax.random.split(rng, 3)
        guide = handlers.substitute(program.guide, data=params)
        model = handlers.substitute(program.model, data=params)
        guide_trace = handlers.trace(handlers.seed(guide, keys[0])).get_trace(**batch)
        model_trace = handlers.trace(handlers.replay(handlers.seed(model, keys[1]), guide_trace)).get_trace(**batch)
        draw_keys = iter(jax.random.split(keys[2], max(len(model_trace), 1)))

        def log_density(site):
            lp = site["fn"].log_prob(site["value"])
            return (lp if site["scale"] is None else site["scale"] * lp).sum()

        def fresh(site):
            return site["fn"].sample(next(draw_keys))

        sites = lambda tr: [(n, s) for n, s in tr.items() if s["type"] == "sample"]  # noqa: E731
    else:
        from pyro import poutine

        with pyro_stream(rng):
            guide_trace = poutine.trace(program.guide).get_trace(**batch)
            model_trace = poutine.trace(poutine.replay(program.model, trace=guide_trace)).get_trace(**batch)

        def log_density(site):
            return (site["scale"] * site["fn"].log_prob(site["value"])).sum()

        def fresh(site):
            with pyro_stream(rng):
                return site["fn"].sample()

        def sites(tr):
            return [(n, s) for n, s in tr.nodes.items() if s["type"] == "sample"
                    and type(s["fn"]).__name__ != "_Subsample"]
    log_lik = log_prior = log_guide = 0.0
    latents, prior_draws = {}, {}
    for name, site in sites(model_trace):
        if site["is_observed"]:
            log_lik = log_lik + log_density(site)
        else:
            log_prior = log_prior + log_density(site)
            prior_draws[name] = fresh(site)
    for name, site in sites(guide_trace):
        if not site["is_observed"]:
            log_guide = log_guide + log_density(site)
            latents[name] = site["value"]
    return ELBOTerms(log_lik, log_prior, log_guide, latents, prior_draws)


# ======================================================================================
# Names
# ======================================================================================
def _classes() -> dict:
    from .adversarial import AdversarialLoss
    from .diffusion import DiffusionLoss

    out = {"trace": MonteCarloELBO, "meanfield": AnalyticKLELBO, "iwae": ImportanceWeightedELBO,
           "renyi": RenyiELBO, "enum": EnumeratedELBO}
    out.update({name: DiffusionLoss for name in ("simple", "vlb", "hybrid")})
    out.update({name: AdversarialLoss for name in ADVERSARIAL_LOSSES})
    return out


def loss_class(name: str):
    """The class a shorthand resolves to (see :func:`resolve_loss`)."""
    classes = _classes()
    if not isinstance(name, str) or name not in classes:
        raise ConfigError(f"unknown loss {name!r}.{suggest(name, classes)} The known losses are "
                          f"{list(SVI_LOSSES)} (SVI) and {list(ADVERSARIAL_LOSSES)} (Adversarial); or pass a "
                          f"loss object: loss(program, params, batch, rng) -> (value, metrics)")
    return classes[name]


def loss_options(name: str) -> tuple:
    """The options a shorthand's object takes (``num_particles``, ``beta``, ...)."""
    cls = loss_class(name)
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name != "kind")


def resolve_loss(name, **options):
    """The loss object a shorthand names, with ``options``; an object is returned as it is.

    >>> inference.resolve_loss("iwae", num_particles=8)
    ImportanceWeightedELBO(num_particles=8, beta=1.0)

    Unknown names are refused naming the nearest and listing the known ones; an option the
    loss does not have is refused with the options it has."""
    if not isinstance(name, str):
        if options:
            raise ConfigError(f"resolve_loss: options {sorted(options)} go to a shorthand; the object "
                              f"{loss_name(name)!r} carries its own")
        return name
    cls = loss_class(name)
    if cls.__name__ in ("DiffusionLoss", "AdversarialLoss"):
        options = dict(options, kind=name)
    return cls(**options)


def _loss_from_config(name: str, options: dict):
    classes = _classes()
    if name not in classes:
        return CodeReference(name)
    cls = classes[name]
    if cls.__name__ in ("DiffusionLoss", "AdversarialLoss"):
        options = dict(options, kind=name)
    return cls.from_options(options)


register_option_object("loss", _loss_from_config)
