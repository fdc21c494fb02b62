"""The only place that knows torch from jax: devices, RNG, dtypes, (de)serialising arrays.

A backend is looked up by name (``"pyro"`` or ``"numpyro"``) with :func:`get_backend`. Its
framework is imported on first use, so ``import ppgen`` stays cheap and a user with only one of
the two frameworks installed can use that one.
"""

from __future__ import annotations

import importlib
import os
from typing import NamedTuple, Optional

from ..errors import ConfigError

__all__ = ["BACKENDS", "get_backend", "Backend", "check_device", "Site"]

BACKENDS = ("pyro", "numpyro")
_CACHE: dict = {}


class Site(NamedTuple):
    """One site of a traced program, as both backends report it (:meth:`Backend.program_sites`).

    Attributes:
        name: the site's name.
        kind: ``"latent"``, ``"observed"``, ``"param"`` or ``"deterministic"`` (a plate's
            subsample index is never a site here).
        plates: ``(name, dim)`` of each plate around it.
        shape: the shape of its value (for a param holding a pytree: None).
        discrete: a latent or observed site with a discrete support.
        is_x: an observed site whose value is the ``x`` the program was called with.
    """

    name: str
    kind: str
    plates: tuple
    shape: Optional[tuple]
    discrete: bool = False
    is_x: bool = False


def per_example(xp, lp, dim: int, n: int):
    """A site's log-density ``lp`` summed to one value per example of the plate at ``dim``
    (negative, as plates count it) of size ``n``: the other batch axes are summed."""
    missing = -dim - lp.ndim
    if missing > 0:
        lp = lp.reshape((1,) * missing + tuple(lp.shape))
    axis = lp.ndim + dim
    shape = list(lp.shape)
    shape[axis] = n
    lp = xp.broadcast_to(lp, tuple(shape))
    lp = xp.moveaxis(lp, axis, 0)
    return lp.reshape(n, -1).sum(-1)


def check_device(device) -> str:
    """``device`` as a name both backends take: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (also
    ``"cpu:N"``, for JAX's several host devices). Refuses other spellings with the fix, without
    importing a framework (whether the device exists is the backend's question)."""
    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind == "gpu":
        raise ConfigError(f"device={device!r}: ppgen names GPUs as in PyTorch; use device='cuda' "
                          f"(or 'cuda:{index or 0}' for a particular one)")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise ConfigError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return text


class Backend:
    """Interface every backend implements (see ``_pyro.py`` and ``_numpyro.py``)."""

    name: str
    xp: object  # array namespace (torch or jax.numpy)

    def setup(self, device: str = "cpu") -> None: ...
    def device(self, device: str = "cpu"): ...
    def placed(self, device: str = "cpu"): ...
    def asarray(self, x, dtype="float32", device="cpu"): ...
    def to_numpy(self, x): ...
    def scale_latents(self, beta):
        """A handler weighting every latent (unobserved) sample site's log-density by ``beta``."""

    def available(self, device) -> bool:
        """Whether this machine has ``device`` (``device`` would not refuse it)."""
        try:
            self.device(device)
        except ConfigError:
            return False
        return True


def add_log_weight_term(terms: dict, lp, scale, observed: bool, sign: float) -> None:
    """Add one site's log-density ``lp`` (batch shape (particles, ...)) to the importance-weight
    ``terms`` of a backend's ``log_weights``: per-example terms (particles, examples) in
    ``local``, terms outside the data plate in ``global``, each times its site's ``scale``.
    :func:`finish_log_weights` then divides ``local`` by the observed sites' scale (the
    minibatch's N / batch size), so per-example terms come out unscaled except for a weight
    on the latent sites alone (β of KL warm-up). Written once for torch and jax arrays."""
    if lp.ndim >= 2:  # (particles, examples, ...): a per-example term
        terms["local"] = terms["local"] + sign * scale * lp.reshape(lp.shape[0], lp.shape[1], -1).sum(-1)
        if observed:
            terms["scale"] = scale
    else:
        terms["global"] = terms["global"] + sign * lp * scale
        terms["global_latent"] = terms["global_latent"] or not observed


def finish_log_weights(terms: dict) -> dict:
    """``terms`` with ``local`` divided by the minibatch scale (see :func:`add_log_weight_term`)."""
    if hasattr(terms["local"], "shape"):
        terms["local"] = terms["local"] / terms["scale"]
    return terms


def get_backend(name: str) -> "Backend":
    """Return the backend object for ``name`` ("pyro" or "numpyro")."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    if name not in _CACHE:
        if name == "numpyro":
            _configure_jax_threads()
        module = importlib.import_module(f"ppgen.backends._{name}")
        _CACHE[name] = module.BACKEND
    return _CACHE[name]


def _configure_jax_threads() -> None:
    """Single-threaded XLA CPU kernels when ``PPGEN_NUM_THREADS`` is 1 (the default).

    The twin of the pyro backend's ``torch.set_num_threads``. On a 2-core machine that other
    processes keep busy, XLA's multi-threaded Eigen kernels made one NUTS gradient of PPCA on the
    digits up to 30 times slower; on an idle machine the flag changes nothing measurable. XLA
    reads it when its CPU client starts, so it applies if no JAX computation ran before the
    first numpyro fit; XLA_FLAGS the user set are left alone."""
    if os.environ.get("PPGEN_NUM_THREADS", "1").strip() != "1":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
