"""NumPyro / JAX backend."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError


class _NumPyroPPL:
    """NumPyro twin of ``ppgen.backends._pyro.PPL`` (same names, same semantics)."""

    backend = "numpyro"

    def __init__(self):
        import numpyro
        import numpyro.distributions as dist
        from numpyro.distributions import constraints

        self.xp = jnp
        self.sample = numpyro.sample
        self.param = numpyro.param
        self.deterministic = numpyro.deterministic
        self.factor = numpyro.factor
        self.dist = dist
        self.constraints = constraints

    def plate(self, name, size, index=None, subsample_size=None, dim=None):
        import numpyro

        if index is not None:
            subsample_size = index.shape[0]
        return numpyro.plate(name, size, subsample_size=subsample_size, dim=dim)

    def constant(self, value, like):
        return jnp.asarray(value, dtype=like.dtype)

    def zeros(self, shape, like):
        return jnp.zeros(shape, dtype=like.dtype)

    def ones(self, shape, like):
        return jnp.ones(shape, dtype=like.dtype)


    def index(self, value, like=None):
        """An integer index array."""
        return jnp.asarray(value)

PPL = _NumPyroPPL()


def trace(fn, seed: int = 0, **kwargs) -> dict:
    """Run ``fn(**kwargs)`` once with a fixed seed; return its sample sites by name."""
    from numpyro import handlers

    tr = handlers.trace(handlers.seed(fn, rng_seed=int(seed))).get_trace(**kwargs)
    return {name: site for name, site in tr.items() if site["type"] == "sample"}


def precise():
    """Context in which JAX computes in float64 (closed forms, exact likelihoods)."""
    return jax.enable_x64(True)


def log_likelihood(model, draws: dict, params: dict, x) -> np.ndarray:
    """log p(x_n | draw s) summed over observed sites, shape (S, N), for a user program."""
    from numpyro import handlers
    from numpyro.infer.util import log_likelihood as _log_likelihood

    fn = handlers.substitute(model, data={k: jnp.asarray(v) for k, v in params.items()}) if params else model
    xs = jnp.asarray(np.asarray(x, dtype=np.float32))
    if not draws:
        sites = trace(fn, 0, x=xs)
        out = [site["fn"].log_prob(site["value"]) for site in sites.values() if site["is_observed"]]
        total = sum(o.reshape(o.shape[0], -1).sum(-1) if o.ndim else o for o in out)
        return np.asarray(total)[None]
    per_site = _log_likelihood(fn, {k: jnp.asarray(v) for k, v in draws.items()}, x=xs)
    total = sum(v.reshape(v.shape[0], v.shape[1], -1).sum(-1) if v.ndim > 2 else v for v in per_site.values())
    return np.asarray(total)


class NumPyroBackend:
    """The numpyro backend: devices, arrays, RNG, tracing and the `ppl` facade."""

    name = "numpyro"
    ppl = PPL
    trace = staticmethod(trace)
    precise = staticmethod(precise)
    log_likelihood = staticmethod(log_likelihood)
    xp = jnp

    def setup(self, device: str = "cpu"):
        return self.device(device)

    def device(self, device: str = "cpu"):
        kind = {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu"}.get(str(device).split(":")[0])
        if kind is None:
            raise ConfigError(f"unknown device {device!r} for the numpyro backend; use 'cpu' or 'cuda'")
        try:
            devices = jax.devices(kind)
        except RuntimeError as e:
            raise ConfigError(f"device={device!r} but JAX has no {kind} here; use device='cpu'") from e
        index = int(str(device).split(":")[1]) if ":" in str(device) else 0
        return devices[index]

    def asarray(self, x, dtype: str = "float32", device="cpu"):
        dev = device if not isinstance(device, str) else self.device(device)
        return jax.device_put(jnp.asarray(np.asarray(x), dtype=getattr(jnp, dtype)), dev)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)


BACKEND = NumPyroBackend()
