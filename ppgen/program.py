"""What a model must provide: the spec of a built-in family, or a user's own model/guide.

A *spec* (:class:`ModelSpec`) is a frozen, typed description of a model family's
hyperparameters with no backend inside. ``ppgen.fit`` asks it to :meth:`ModelSpec.build` a
:class:`BuiltProgram` for one backend and one *form* of the model:

- ``"latent"``: per-example latents are sample sites (``z``); global parameters are point
  estimates (``param`` sites). Served by SVI with a local (amortised or per-example) guide.
- ``"marginal"``: per-example latents integrated out; global parameters are point estimates.
  Served by closed-form and EM fits, and used for exact ``log_likelihood``.
- ``"bayesian"``: global parameters are sample sites with priors; per-example latents are
  integrated out. Served by NUTS/HMC and by SVI with a global (auto) guide.
- ``"implicit"``: a sampler without a tractable density (GANs, adversarial autoencoders),
  fitted by a two-player game. Served by ``inference.Adversarial``.

A user's own program (:class:`Program`) is first-class: ``ppgen.fit`` runs it with any
inference that needs no family-specific math (SVI, NUTS, HMC).

Programs receive one minibatch as keyword arguments: ``x`` (the data rows), ``index`` (their row
numbers in the training set) and ``num_data`` (the training-set size), so that
``ppl.plate("data", num_data, index=index)`` scales a minibatch to the whole data set. A user
program gets only the keywords its signature names.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, ClassVar, NamedTuple, Optional

import numpy as np

from .config import Config
from .errors import ConfigError

__all__ = ["ModelSpec", "CAPABILITIES", "Program", "BuiltProgram", "FORMS", "ProgramStructure", "PROGRAM_KEYWORDS", "Bound"]

#: the keywords ppgen calls a program with (a program names those it needs)
PROGRAM_KEYWORDS = ("x", "index", "num_data")

FORMS = ("latent", "marginal", "bayesian", "implicit")


@dataclasses.dataclass
class BuiltProgram:
    """A model (and optionally a guide) ready to run in one backend.

    Attributes:
        backend: backend name, "pyro" or "numpyro".
        model: callable taking the batch keywords (``x``, ``index``, ``num_data``).
        guide: callable with the same signature, or None (inference may build an auto guide).
        form: which form of the family this is (see module docstring), "user" for a Program.
        spec: the ModelSpec it came from, or None for a user Program.
        num_data: number of training examples the plate scales to.
        init_values: optional ``chain -> {site: numpy value}``, where MCMC chains should start.
        discrete_sites: discrete latent sites the model enumerates; automatic guides leave them out.
        max_plate_nesting: how many plates nest in the model (None: the ELBO works it out).
        train: the training data as given (numpy, float64 kept), for algorithms that compute in
            float64 (closed form, EM); ``ppgen.fit`` sets it.
        extras: family-specific callables that custom losses use (e.g. a DDPM's ``denoise``).
    """

    backend: str
    model: Callable
    guide: Optional[Callable]
    form: str
    spec: Any
    num_data: int
    init_values: Optional[Callable[[int], dict]] = None
    discrete_sites: tuple = ()
    max_plate_nesting: Optional[int] = None
    train: Optional[np.ndarray] = None
    extras: dict = dataclasses.field(default_factory=dict)

    def precise_data(self, batch: dict):
        """The training data as float64 numpy (full precision when the user gave float64)."""
        if self.train is not None:
            return np.asarray(self.train, dtype=np.float64)
        x = batch["x"]
        return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)

    def call_args(self, fn: Callable, batch: dict) -> dict:
        """The subset of ``batch`` that ``fn`` accepts (all of it if it takes ``**kwargs``)."""
        return accepted_keywords(fn, batch)

    def for_batches(self, fn: Optional[Callable], training: bool = False) -> Optional[Callable]:
        """``fn`` (the model or the guide) as a function of a batch's keywords, the way inference
        runs it: called with those it accepts plus ``num_data`` (and ``training``, True in an
        optimisation step: networks in training mode, dropout on); a ``beta`` in the batch weights
        its latent sites (KL warm-up, :meth:`Backend.scale_latents`). None stays None.

        Example:
            >>> program = spec.build("pyro", "latent", data=x)
            >>> model, guide = program.for_batches(program.model), program.for_batches(program.guide)
            >>> pyro.infer.TraceMeanField_ELBO().loss(model, guide, x=torch.as_tensor(x), index=torch.arange(len(x)))
        """
        if fn is None:
            return None

        def bound(**batch):
            beta = batch.pop("beta", None)
            args = self.call_args(fn, dict(batch, num_data=self.num_data, training=training))
            if beta is None:
                return fn(**args)
            from .backends import get_backend

            with get_backend(self.backend).scale_latents(beta):
                return fn(**args)

        bound.__name__ = getattr(fn, "__name__", "program")
        return bound


def accepted_names(fn: Callable) -> Optional[frozenset]:
    """The keyword names ``fn`` accepts, or None when it takes ``**kwargs`` (any name)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(params)


def accepted_keywords(fn: Callable, kwargs: dict, names: Optional[frozenset] = None) -> dict:
    """The subset of ``kwargs`` that ``fn`` accepts (all of it if it takes ``**kwargs``);
    ``names``: :func:`accepted_names` of ``fn``, when already known."""
    names = accepted_names(fn) if names is None else names
    return dict(kwargs) if names is None else {k: v for k, v in kwargs.items() if k in names}


#: What a family's spec may compute beyond building programs, each the name of a
#: :class:`ModelSpec` method. A family lists those it provides in ``capabilities``; the fit
#: loop, the CLI, the run report and the ArviZ export ask :meth:`ModelSpec.supports`.
CAPABILITIES = {
    "sample": "new examples from the model (Fit.sample)",
    "log_likelihood": "log p(x) per example, exact or estimated (see estimated_likelihood)",
    "bits_per_dim": "the negative log-likelihood in bits per value (Fit.bits_per_dim)",
    "encode": "a per-example latent code of x (Fit.encode)",
    "decode": "x given a latent code (Fit.decode)",
    "reconstruct": "x through its code and back (Fit.reconstruct)",
    "posterior_draws": "draws of q(z|x) per example, with replicated x and log p(x|z) (to_arviz(x=...))",
    "prior_sample": "draws of the latent prior p(z) (an adversarial autoencoder's target)",
    "arviz_groups": "a family's own ArviZ groups (an AAE's aggregated posterior and prior)",
    "elbo": "the Monte Carlo evidence lower bound per example (Fit.elbo)",
    "covariances": "component covariance matrices (GMM)",
    "predict_proba": "the posterior over a discrete latent per example (GMM responsibilities)",
}


@dataclasses.dataclass(frozen=True)
class ModelSpec(Config):
    """The family contract: what a built-in family declares and provides.

    A family is a frozen dataclass of hyperparameters. It declares:

    - ``family``: its registry name; ``forms``: the forms it builds (module docstring);
    - ``methods``: fits it does itself ("closed_form", "em", "adversarial");
    - ``refusals``: ``{inference name: reason}`` for algorithms that cannot fit it;
    - ``capabilities``: the optional methods of :data:`CAPABILITIES` it implements — a family
      overrides exactly those (checked when the class is defined), the base refuses the others
      with :meth:`unsupported`;
    - flags the inference and the fit loop read: ``conditional`` (labels per example),
      ``estimated_likelihood``, ``diffusion``, ``local_guides``, ``discrete_latents``,
      ``elbo_refusals``, ``latent_site``, and for adversarial fits ``has_discriminator``,
      ``default_adversarial_loss``, ``default_critic_steps``.

    It provides :meth:`check_data`, :meth:`build` (a :class:`BuiltProgram` per backend and
    form), :meth:`param_shapes`, :meth:`num_parameters`, its networks (:meth:`networks`), and the
    hooks :meth:`options_from_data`, :meth:`relabel` and :meth:`em_data` whose defaults do
    nothing.
    """

    kind: ClassVar[str] = "model"
    family: ClassVar[str] = "model"
    #: forms this family can build, see module docstring
    forms: ClassVar[tuple] = ()
    #: fits the family does itself: "closed_form", "em", "adversarial"
    methods: ClassVar[tuple] = ()
    #: per-inference refusal reasons, e.g. {"nuts": "NUTS cannot sample ..."}
    refusals: ClassVar[dict] = {}
    #: the optional methods (keys of CAPABILITIES) this family implements
    capabilities: ClassVar[frozenset] = frozenset()
    #: whether programs, sampling and scoring take an integer label per example
    conditional: ClassVar[bool] = False
    #: log_likelihood is a Monte Carlo estimate taking ``num_samples`` (else exact)
    estimated_likelihood: ClassVar[bool] = False
    #: a diffusion chain, fitted by SVI with the diffusion losses
    diffusion: ClassVar[bool] = False
    #: local guides the family builds itself ("amortized", "per_example", "forward")
    local_guides: ClassVar[tuple] = ()
    #: discrete per-example latents (enumerated, never in an automatic guide)
    discrete_latents: ClassVar[tuple] = ()
    #: ``{elbo name: reason}`` for SVI objectives the family refuses
    elbo_refusals: ClassVar[dict] = {}
    #: the latent site encode/decode and the latent plots refer to (None: no such latent)
    latent_site: ClassVar[Optional[str]] = None
    #: adversarial fits: whether a discriminator plays (False: one player, e.g. WAE-MMD)
    has_discriminator: ClassVar[bool] = True
    #: adversarial fits: the loss when none is named, and the fewest critic steps per step
    default_adversarial_loss: ClassVar[str] = "wgan-gp"
    default_critic_steps: ClassVar[int] = 1
    #: fields that may hold a person's own network (a torch.nn.Module, an Equinox or Flax module,
    #: or a ppgen.networks.Network; None: the built-in network)
    network_fields: ClassVar[tuple] = ()
    #: ``{capability: message}``: why this family lacks a capability, where that says more than the default
    unsupported_hints: ClassVar[dict] = {}
    #: what an EM step that leaves the valid range should tell the user
    em_failure_hint: ClassVar[str] = ("the parameters left their valid range; check the data for "
                                      "degenerate values")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        unknown = set(cls.capabilities) - set(CAPABILITIES)
        if unknown:
            raise TypeError(f"{cls.__name__}.capabilities names {sorted(unknown)}, not among {sorted(CAPABILITIES)}")
        for name in CAPABILITIES:
            overridden = getattr(cls, name) is not getattr(ModelSpec, name)
            if overridden != (name in cls.capabilities):
                raise TypeError(f"{cls.__name__} {'defines' if overridden else 'lacks'} {name}() but "
                                f"{'does not list' if overridden else 'lists'} it in capabilities")

    def supports(self, capability: str) -> bool:
        """Whether this family provides ``capability`` (a key of :data:`CAPABILITIES`)."""
        if capability not in CAPABILITIES:
            raise ConfigError(f"unknown capability {capability!r}; known: {sorted(CAPABILITIES)}")
        return capability in self.capabilities

    def unsupported(self, capability: str, *args, **kwargs):
        """The refusal of a capability this family lacks, naming the families that have it."""
        if capability in self.unsupported_hints:
            raise ConfigError(f"{type(self).__name__} has no {capability}: {self.unsupported_hints[capability]}")
        from ppgen.registry import model_classes

        having = sorted(name for name, cls in model_classes().items() if capability in cls.capabilities)
        raise ConfigError(f"{type(self).__name__} has no {capability}: {CAPABILITIES[capability]} is provided by "
                          f"{', '.join(having) or 'no built-in family'}")

    def num_parameters(self) -> int:
        """The number of scalar parameters the family fits."""
        raise NotImplementedError(f"{type(self).__name__} does not count its parameters")

    @classmethod
    def options_from_data(cls, meta: dict) -> dict:
        """Options read from a dataset's ``meta`` when the family is named by a string (default: none)."""
        return {}

    def relabel(self, posterior: dict) -> dict:
        """Posterior draws with label switching undone (default: as they are)."""
        return posterior

    def em_data(self, xp, x):
        """What EM steps read of the data ``x`` (default: ``x`` itself)."""
        return x

    @property
    def name(self) -> str:  # registry name == family
        return self.family

    # ---- data -------------------------------------------------------------------------
    def check_data(self, x: np.ndarray, what: str = "data") -> np.ndarray:
        """Validate ``x`` (N, ...) for this family; return it as a float array (N, data_dim)."""
        raise NotImplementedError

    def _rows(self, x, what: str) -> np.ndarray:
        """``x`` as (N, data_dim) rows, examples flattened; a DataError naming the fix when ``x``
        has no example axis or the wrong number of values per example."""
        from ppgen.errors import DataError

        x = np.asarray(x)
        name = type(self).__name__
        if x.ndim < 2:
            hint = (" (these look like scalar examples: pass x.reshape(-1, 1))" if self.data_dim == 1
                    else " (a single example: pass x[None])")
            raise DataError(f"{what} has shape {x.shape}; {name} needs one row per example, shape "
                            f"(N, {self.data_dim}){hint}")
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.data_dim:
            raise DataError(f"{what} has {x.shape[1]} values per example but {name}(data_dim={self.data_dim}); "
                            f"build the spec with data_dim={x.shape[1]}")
        return x

    # ---- programs ---------------------------------------------------------------------
    def build(self, backend: str, form: str, *, data: np.ndarray, guide: str | None = None,
              seed: int = 0, device: str = "cpu") -> BuiltProgram:
        """The program of ``form`` for ``backend``; ``data`` (the training rows) sets the plate
        size and data-dependent initial values."""
        raise NotImplementedError

    def param_names(self, form: str) -> tuple:
        """Names of the parameters a point-estimate fit stores (checked when loading)."""
        return ()

    def param_shapes(self) -> dict:
        """The shape of each parameter the family's likelihood and sampler use, by name (a
        posterior draw of it has two leading axes more); ``ppgen.load`` checks a run folder's
        arrays against it."""
        raise NotImplementedError(f"{type(self).__name__} does not state its parameters' shapes")

    def network_shapes(self) -> dict:
        """``"<network>.<parameter>"`` → shape for the family's networks (families without
        networks: none)."""
        return {f"{net}.{k}": tuple(shape) for net, n in self.networks().items() for k, shape in n.shapes().items()}

    def networks(self) -> dict:
        """The family's networks by name (``{"encoder": ..., "decoder": ...}``), each a
        :class:`ppgen.networks.Network`: the person's own where a network field holds one, else
        the built-in one the string options describe. Families without networks: none."""
        return {}

    # ---- a person's own networks ----------------------------------------------------------
    def __post_init__(self):
        from .networks import as_network

        for name in self.network_fields:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_network(value, f"{type(self).__name__}.{name}"))
        kinds = {getattr(self, n).describe(): getattr(self, n).backend for n in self.network_fields
                 if getattr(self, n) is not None and getattr(self, n).backend is not None}
        if len(set(kinds.values())) > 1:
            raise ConfigError(f"{type(self).__name__} holds networks of two backends ({', '.join(f'{k}: {v}' for k, v in kinds.items())}); "
                              f"give every network for the same backend")
        super().__post_init__()

    @property
    def backend(self) -> Optional[str]:
        """The backend the spec's own networks bind it to (``"pyro"`` for torch modules,
        ``"numpyro"`` for Equinox and Flax ones), or None when it runs in both."""
        for name in self.network_fields:
            value = getattr(self, name)
            if value is not None and value.backend is not None:
                return value.backend
        return None

    def check_backend(self, backend: str) -> None:
        """Refuse ``backend`` when the spec's own networks run in the other one."""
        if self.backend is not None and backend != self.backend:
            own = [f"{n}={getattr(self, n).describe()}" for n in self.network_fields
                   if getattr(self, n) is not None and getattr(self, n).backend is not None]
            kind = {"pyro": "torch.nn.Module", "numpyro": "Equinox or Flax module"}[backend]
            raise ConfigError(f"{type(self).__name__} holds networks of the {self.backend!r} backend ({', '.join(own)}) "
                              f"and cannot run in {backend!r}; fit it with backend={self.backend!r}, or give "
                              f"{kind} networks for {backend!r}")

    def own_network(self, name: str, built_in):
        """The network field ``name`` when the person gave one, else ``built_in()``."""
        value = getattr(self, name)
        return built_in() if value is None else value


def _unsupported_method(capability: str):
    def method(self, *args, **kwargs):
        return self.unsupported(capability)

    method.__name__ = capability
    method.__doc__ = f"{CAPABILITIES[capability][0].upper()}{CAPABILITIES[capability][1:]}; refused unless the family lists {capability!r} in capabilities."
    return method


for _name in CAPABILITIES:
    setattr(ModelSpec, _name, _unsupported_method(_name))
del _name


class ProgramStructure(NamedTuple):
    """What one run of a user's program shows (see :meth:`Program.structure`).

    Attributes:
        data_site: the observed site that receives ``x``.
        observed: every observed site.
        data_plates: ``{name: dim}`` of the plates around ``data_site`` that run over its rows.
        global_latents: latent sites outside those plates (one value for the data set).
        local_latents: latent sites inside them (one value per example, e.g. a VAE's ``z``).
        deterministic: deterministic sites outside the data plates.
        params: names of the model's and the guide's params.
    """

    data_site: str
    observed: tuple
    data_plates: dict
    global_latents: tuple
    local_latents: tuple
    deterministic: tuple
    params: tuple


class Bound(NamedTuple):
    """A fitted program's model and guide with the fitted parameters bound (``Fit.program``):
    plain Pyro or NumPyro functions of the keywords ``x``, ``index``, ``num_data`` (those the
    program names), to run with the framework's own tools (``Predictive``, ELBOs, handlers).
    ``guide`` is None where the fit has no guide of its own."""

    model: Callable
    guide: Optional[Callable]
    backend: str


def _check_signature(fn, what: str) -> None:
    params = inspect.signature(fn).parameters.values()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    required = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in PROGRAM_KEYWORDS]
    if required:
        raise ConfigError(
            f"Program {what} {getattr(fn, '__name__', fn)}({', '.join(inspect.signature(fn).parameters)}) needs "
            f"{required}; ppgen calls a program with the keywords x (the minibatch of data), index (its row "
            f"numbers) and num_data (the training-set size), each only if the signature names it. Rename "
            f"{required[0]!r} to x, or give it a default")
    if what == "model" and not takes_any and "x" not in inspect.signature(fn).parameters:
        raise ConfigError(f"Program model {getattr(fn, '__name__', fn)} takes no argument x; ppgen passes the "
                          f"data as x=, to be observed with obs=x")


class Program:
    """A user's own probabilistic program: ``ppgen.Program(model=fn, guide=fn_or_None, backend=...)``.

    ``model`` and ``guide`` are ordinary Pyro or NumPyro functions. ppgen calls them with the
    keywords their signatures name among ``x`` (the minibatch), ``index`` (its row numbers) and
    ``num_data`` (the training-set size); ``Fit.sample`` calls the model with ``x=None``, so a
    model that should draw new data sizes its data plate by ``num_data`` when ``x`` is None.

    ppgen traces the program once before fitting (:meth:`structure`): the observed site that
    receives ``x`` and the plates around it (the data plates) tell the global latents (outside)
    from the per-example ones (inside). Global latents make the posterior; per-example latents
    are drawn by the guide for given rows (``Fit.to_arviz(x=...)``) and integrated out by
    importance sampling in ``Fit.log_likelihood``. Networks registered with ``pyro.module``,
    ``numpyro.module``, ``flax_module``, ``eqx_module`` or ``nnx_module`` are parameters like any
    other; a fit keeps them as a flat dict of dotted names (``"decoder$params.layers.0.weight"``).

    Args:
        model: the generative program; observed data must be a sample site with ``obs=x``.
        guide: a guide for SVI, or None (then SVI builds an auto guide, and NUTS/HMC can run).
        backend: "pyro" or "numpyro", the framework ``model`` is written in.
        name: a label for tables, run folders and ArviZ.

    Example:
        >>> def model(x):
        ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
        ...     with numpyro.plate("data", x.shape[0]):
        ...         numpyro.sample("x", dist.Normal(mu, 1), obs=x[:, 0])
        >>> fit = ppgen.fit(ppgen.Program(model, backend="numpyro"), data, "nuts")
    """

    kind = "model"
    family = "program"
    forms = ("user",)
    methods = ()
    refusals = {
        "closed_form": "a closed-form fit needs a model family with known maximum-likelihood "
                       "formulas (ppca); a user Program has none",
        "em": "EM needs a model family with closed-form E and M steps (ppca, gmm); "
              "a user Program has none",
    }
    #: the family contract's flags, as a Program has them (its likelihood, sampling and ArviZ
    #: export are Fit's program paths, not family methods)
    capabilities = frozenset()
    conditional = False
    estimated_likelihood = False
    diffusion = False
    local_guides = ()
    discrete_latents = ()
    elbo_refusals = {}
    latent_site = None

    def supports(self, capability: str) -> bool:
        """Family capabilities (:data:`CAPABILITIES`): a Program has none of them."""
        if capability not in CAPABILITIES:
            raise ConfigError(f"unknown capability {capability!r}; known: {sorted(CAPABILITIES)}")
        return False

    def unsupported(self, capability: str, *args, **kwargs):
        raise ConfigError(f"a user Program has no {capability}: {CAPABILITIES[capability]} is a method of the "
                          f"built-in families; run your own code on fit.program (the model and guide with the "
                          f"fitted parameters bound)")

    def relabel(self, posterior: dict) -> dict:
        return posterior

    def __init__(self, model: Callable, guide: Callable | None = None, *, backend: str,
                 name: str = "program"):
        from .backends import BACKENDS

        if not callable(model):
            raise ConfigError(f"Program(model=...) must be a function; got {model!r}")
        if guide is not None and not callable(guide):
            raise ConfigError(f"Program(guide=...) must be a function or None; got {guide!r}")
        if backend not in BACKENDS:
            raise ConfigError(f"Program(backend={backend!r}) must be one of {list(BACKENDS)}")
        _check_signature(model, "model")
        if guide is not None:
            _check_signature(guide, "guide")
        self.model, self.guide, self.backend, self.label = model, guide, backend, name

    @property
    def name(self) -> str:
        return self.label

    def __repr__(self):
        return f"Program(model={getattr(self.model, '__name__', self.model)}, backend={self.backend!r})"

    def check_data(self, x: np.ndarray, what: str = "data") -> np.ndarray:
        from .datasets import check_finite

        return check_finite(np.asarray(x), what)

    def build(self, backend: str, form: str, *, data: np.ndarray, guide=None, seed: int = 0,
              device: str = "cpu") -> BuiltProgram:
        if backend != self.backend:
            raise ConfigError(
                f"this Program is written for backend={self.backend!r}; got backend={backend!r}. "
                f"Pass backend={self.backend!r} to ppgen.fit")
        structure = self.structure(data, device=device)
        return BuiltProgram(backend, self.model, self.guide, "user", None, int(data.shape[0]),
                            extras={"structure": structure})

    # ---- what the program is --------------------------------------------------------------
    def keywords(self, x, num_data: Optional[int] = None, device: str = "cpu") -> dict:
        """The keywords of a call on all rows of ``x`` (numpy): ``x`` as the backend's array,
        ``index`` (0..N-1) and ``num_data`` (default: N)."""
        from .backends import get_backend

        be = get_backend(self.backend)
        xs = be.asarray(x, "float32", device)
        n = int(xs.shape[0])
        return {"x": xs, "index": be.ppl.index(np.arange(n), like=xs), "num_data": int(num_data or n)}

    def call(self, fn: Callable) -> Callable:
        """``fn`` as a function of the full keywords, called with those its signature names."""
        names = accepted_names(fn)
        if names is None:
            return fn

        def called(**kw):
            return fn(**accepted_keywords(fn, kw, names))

        called.__name__ = getattr(fn, "__name__", "program")
        return called

    def structure(self, data, device: str = "cpu") -> ProgramStructure:
        """Run the model (and the guide) once on the first rows of ``data`` and say what they
        hold; refuses, with the fix, a model without an observed site, a guide that misses a
        latent of the model or names a site the model does not have."""
        from .backends import get_backend

        be = get_backend(self.backend)
        rows = np.asarray(data)[:min(len(data), 8)]
        kwargs = self.keywords(rows, num_data=len(data), device=device)
        model_sites = be.program_sites(self.call(self.model), kwargs)
        observed = [s for s in model_sites if s.kind == "observed"]
        if not observed:
            raise ConfigError(f"Program model {getattr(self.model, '__name__', '')} has no observed site: nothing "
                              f"ties it to the data. Observe the data with obs=x in the sample site of x")
        data_site = next((s for s in observed if s.is_x), max(observed, key=lambda s: int(np.prod(s.shape or (1,)))))
        data_plates = {name: dim for name, dim in data_site.plates}
        latents = [s for s in model_sites if s.kind == "latent"]
        local = tuple(s.name for s in latents if any(name in data_plates for name, _ in s.plates))
        global_ = tuple(s.name for s in latents if s.name not in local)
        deterministic = tuple(s.name for s in model_sites if s.kind == "deterministic"
                              and not any(name in data_plates for name, _ in s.plates))
        params = [s.name for s in model_sites if s.kind == "param"]
        if self.guide is not None:
            guide_sites = be.program_sites(self.call(self.guide), kwargs)
            drawn = {s.name for s in guide_sites if s.kind == "latent"}
            model_latents = {s.name for s in latents if not s.discrete}
            unknown = sorted(drawn - {s.name for s in latents})
            if unknown:
                raise ConfigError(f"the guide draws {unknown}, which the model does not have (its latents: "
                                  f"{sorted(s.name for s in latents)}); a guide's sites take the names of the "
                                  f"model's latent sites")
            missing = sorted(model_latents - drawn)
            if missing:
                raise ConfigError(f"the guide draws no {missing}, latent in the model: every continuous latent "
                                  f"needs a site of that name in the guide (or pass guide=None for an automatic "
                                  f"guide)")
            params += [s.name for s in guide_sites if s.kind == "param" and s.name not in params]
        return ProgramStructure(data_site.name, tuple(s.name for s in observed), data_plates, global_, local,
                                deterministic, tuple(params))

    def initial_params(self, kwargs: dict) -> dict:
        """The params the model and the guide initialise on a call with ``kwargs``, by site (a
        network's as the pytree its module registers)."""
        from .backends import get_backend

        be = get_backend(self.backend)
        params = dict(be.program_params(self.call(self.model), kwargs))
        if self.guide is not None:
            params.update(be.program_params(self.call(self.guide), kwargs))
        return params

    def _nested(self, params: dict, kwargs: dict) -> dict:
        """``params`` (flat, as a fit stores them) in the form the backend's program runs take."""
        from .backends import get_backend

        be = get_backend(self.backend)
        skeleton = self.initial_params(kwargs)
        missing = sorted(k for k in be.flatten_params(skeleton) if k not in params)
        if missing:
            raise ConfigError(f"the program has parameters the fit does not: {missing[:5]}; rebind the code the "
                              f"run was fitted with")
        return be.nest_params(params, skeleton)

    def bind(self, params: dict, data_shape: tuple = (), device: str = "cpu") -> Bound:
        """The model and guide with ``params`` (flat, as a fit stores them) bound (see :class:`Bound`)."""
        from .backends import get_backend

        be = get_backend(self.backend)
        like = np.zeros((2,) + tuple(data_shape), dtype=np.float32)
        nested = self._nested(params, self.keywords(like, device=device))
        return Bound(be.bind_params(self.call(self.model), nested, device),
                     None if self.guide is None else be.bind_params(self.call(self.guide), nested, device),
                     self.backend)

    def log_likelihood(self, params: dict, draws: Optional[dict], x, *, num_samples: Optional[int] = None,
                       seed: int = 0, device: str = "cpu", structure: Optional[ProgramStructure] = None) -> np.ndarray:
        """log p(x_n | θ) per draw and example, (S, N) (S = 1 for point estimates).

        Exact where the program has no per-example latents; otherwise the importance-sampled
        estimate log (1/K) Σ_k p(x_n, z_k | θ_k) / q(z_k | x_n) with the guide as proposal and
        K = ``num_samples`` (default 1000), returned as one row (global latents the guide draws
        are drawn with each z_k, so this averages over them too)."""
        from .backends import get_backend

        be = get_backend(self.backend)
        structure = structure or self.structure(x, device=device)
        if structure.local_latents and self.guide is None:
            raise ConfigError(
                f"the model has per-example latents {list(structure.local_latents)} and no guide of its own: "
                f"an automatic guide keeps one set of values per training row, so it cannot propose z for new "
                f"rows. Write an amortised guide (z drawn from a network of x) and pass Program(model, guide)")
        kwargs = self.keywords(x, device=device)
        nested = self._nested(params, kwargs)
        if structure.local_latents:
            weights = be.program_log_weights(self.call(self.model), self.call(self.guide), nested, kwargs,
                                             structure.data_plates, 1000 if num_samples is None else int(num_samples),
                                             seed)
            top = weights.max(0)
            return (top + np.log(np.mean(np.exp(weights - top), axis=0)))[None]
        if num_samples is not None:
            raise ConfigError("this program has no per-example latents: its log-likelihood is exact; drop "
                              "num_samples=")
        keep = {k: v for k, v in (draws or {}).items() if k in structure.global_latents}
        return be.program_conditioned_log_likelihood(self.call(self.model), keep, nested, kwargs,
                                                     structure.data_plates)

    def sample(self, params: dict, draws: Optional[dict], n: int, *, seed: int = 0, device: str = "cpu",
               structure: Optional[ProgramStructure] = None, data_shape: tuple = ()) -> np.ndarray:
        """``n`` draws of the data site from the model (prior predictive with the fitted
        parameters, or one posterior draw per example): the model runs with ``x=None`` and
        ``num_data=n`` (one run per draw, ``num_data=1``, for a posterior)."""
        from .backends import get_backend

        be = get_backend(self.backend)
        like = np.zeros((1,) + tuple(data_shape), dtype=np.float32)
        nested = self._nested(params, self.keywords(like, device=device))
        site = structure.data_site
        fn = self.call(self.model)
        try:
            if draws:
                total = next(iter(draws.values())).shape[0]
                pick = np.random.default_rng(seed).integers(0, total, size=n)
                keep = {k: v[pick] for k, v in draws.items() if k in structure.global_latents}
                out = be.program_predictive(fn, keep, nested, {"x": None, "index": None, "num_data": 1}, site,
                                            seed, device)
            else:
                out = be.program_predictive(fn, None, nested, {"x": None, "index": None, "num_data": int(n)}, site,
                                            seed, device)
        except (TypeError, AttributeError, ValueError, RuntimeError) as error:
            raise ConfigError(f"sample() runs the model with x=None and num_data=n to draw its site "
                              f"{site!r}; the model failed there ({type(error).__name__}: {error}). Let the model "
                              f"draw x when x is None, sizing its data plate by num_data, e.g. "
                              f"plate('data', num_data if x is None else x.shape[0])") from error
        return np.asarray(out).reshape((n,) + tuple(data_shape))

    def local_draws(self, params: dict, x, num: int, *, seed: int = 0, device: str = "cpu",
                    structure: Optional[ProgramStructure] = None) -> dict:
        """``num`` draws of the guide's per-example latents for the rows of ``x``: site ->
        (num, N, ...), and ``log_likelihood`` (num, N): log p(x_n | z_n, θ) of each draw."""
        from .backends import get_backend

        be = get_backend(self.backend)
        if self.guide is None:
            raise ConfigError("the model's per-example latents have no guide of their own to draw them for new rows "
                              "(an automatic guide keeps one value per training row); pass Program(model, guide)")
        kwargs = self.keywords(x, device=device)
        nested = self._nested(params, kwargs)
        names = tuple(structure.local_latents) + tuple(structure.global_latents)
        drawn = be.program_predictive(self.call(self.guide), None, nested, kwargs, names, seed, device, num_runs=num)
        local = {k: drawn[k] for k in structure.local_latents}
        log_lik = be.program_conditioned_log_likelihood(self.call(self.model), drawn, nested, kwargs,
                                                        structure.data_plates)
        return {"latents": local, "log_likelihood": log_lik}

    def to_config(self) -> dict:
        return {"kind": "model", "name": "program", "options": {"name": self.label,
                                                                 "backend": self.backend}}
