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
from typing import Any, Callable, ClassVar, Optional

import numpy as np

from .config import Config
from .errors import ConfigError

__all__ = ["ModelSpec", "Program", "BuiltProgram", "FORMS"]

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
        params = inspect.signature(fn).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return dict(batch)
        return {k: v for k, v in batch.items() if k in params}


@dataclasses.dataclass(frozen=True)
class ModelSpec(Config):
    """Base class of built-in model families. Subclasses are frozen dataclasses."""

    kind: ClassVar[str] = "model"
    family: ClassVar[str] = "model"
    #: forms this family can build, see module docstring
    forms: ClassVar[tuple] = ()
    #: extra capabilities: "closed_form", "em"
    methods: ClassVar[tuple] = ()
    #: per-inference refusal reasons, e.g. {"nuts": "NUTS cannot sample ..."}
    refusals: ClassVar[dict] = {}

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
        return {f"{net}.{k}": tuple(shape) for net, n in self._networks().items() for k, shape in n.shapes().items()}

    def _networks(self) -> dict:
        return {}


class Program:
    """A user's own probabilistic program: ``ppgen.Program(model=fn, guide=fn_or_None, backend=...)``.

    ``model`` and ``guide`` are ordinary Pyro or NumPyro functions. ppgen calls them with the
    keywords their signatures name among ``x`` (the minibatch), ``index`` (its row numbers) and
    ``num_data`` (the training-set size).

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

    def __init__(self, model: Callable, guide: Callable | None = None, *, backend: str,
                 name: str = "program"):
        from .backends import BACKENDS

        if not callable(model):
            raise ConfigError(f"Program(model=...) must be a function; got {model!r}")
        if guide is not None and not callable(guide):
            raise ConfigError(f"Program(guide=...) must be a function or None; got {guide!r}")
        if backend not in BACKENDS:
            raise ConfigError(f"Program(backend={backend!r}) must be one of {list(BACKENDS)}")
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
        return BuiltProgram(backend, self.model, self.guide, "user", None, int(data.shape[0]))

    def to_config(self) -> dict:
        return {"kind": "model", "name": "program", "options": {"name": self.label,
                                                                 "backend": self.backend}}
