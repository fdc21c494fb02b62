"""The only place that knows torch from jax: devices, RNG, dtypes, (de)serialising arrays.

A backend is looked up by name (``"pyro"`` or ``"numpyro"``) with :func:`get_backend`. Its
framework is imported on first use, so ``import ppgen`` stays cheap and a user with only one of
the two frameworks installed can use that one.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError

__all__ = ["BACKENDS", "get_backend", "Backend"]

BACKENDS = ("pyro", "numpyro")
_CACHE: dict = {}


class Backend:
    """Interface every backend implements (see ``_pyro.py`` and ``_numpyro.py``)."""

    name: str
    xp: object  # array namespace (torch or jax.numpy)

    def setup(self, device: str = "cpu") -> None: ...
    def asarray(self, x, dtype="float32", device="cpu"): ...
    def to_numpy(self, x): ...


def get_backend(name: str) -> "Backend":
    """Return the backend object for ``name`` ("pyro" or "numpyro")."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    if name not in _CACHE:
        module = importlib.import_module(f"ppgen.backends._{name}")
        _CACHE[name] = module.BACKEND
    return _CACHE[name]
