"""NumPyro / JAX backend."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from . import Backend, add_log_weight_term, finish_log_weights


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

    def plate(self, name, size, index=None, subsample_size=None, dim=None, like=None):
        """A plate of ``size`` (``like`` is for PyTorch's device; JAX makes the indices on its
        default device, which ``ppgen.fit`` sets to the fit's)."""
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
        """An integer index array, on ``like``'s device when ``like`` is given."""
        if like is None or not hasattr(like, "devices") or isinstance(like, jax.core.Tracer):
            return jnp.asarray(value)  # inside a traced function the computation's device applies
        device = next(iter(like.devices()))
        with jax.default_device(device):
            return jax.device_put(jnp.asarray(value), device)

    def take_rows(self, array, index):
        """``array[index]`` along the first axis, as one compiled gather (eager indexing
        dispatches several small operations, a millisecond per minibatch on a CPU)."""
        return _take_rows(array, index)

    def network(self, name: str, init: dict) -> dict:
        """A network's parameters, registered as ``"<name>.<parameter>"`` params."""
        import numpyro

        return {k: numpyro.param(f"{name}.{k}", v) for k, v in init.items()}

    def one_hot(self, labels, num_classes: int, like):
        return jax.nn.one_hot(labels, num_classes, dtype=like.dtype)

    def broadcast_to(self, value, shape):
        return jnp.broadcast_to(value, tuple(shape))

    def as_integer(self, x):
        return x.astype(jnp.int32)

@jax.jit
def _take_rows(array, index):
    return jnp.take(array, index, axis=0)


PPL = _NumPyroPPL()


def trace(fn, seed: int = 0, **kwargs) -> dict:
    """Run ``fn(**kwargs)`` once with a fixed seed; return its sample sites by name."""
    from numpyro import handlers

    tr = handlers.trace(handlers.seed(fn, rng_seed=int(seed))).get_trace(**kwargs)
    return {name: site for name, site in tr.items() if site["type"] == "sample"}


def precise():
    """Context in which JAX computes in float64 (closed forms, exact likelihoods)."""
    return jax.enable_x64(True)


def log_likelihood(model, draws: dict, params: dict, x, device="cpu") -> np.ndarray:
    """log p(x_n | draw s) summed over observed sites, shape (S, N), for a user program."""
    with BACKEND.placed(device):
        return _log_likelihood_here(model, draws, params, x)


def _log_likelihood_here(model, draws: dict, params: dict, x) -> np.ndarray:
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


def _site_terms(trace, sign: float, terms: dict) -> None:
    for site in trace.values():
        if site["type"] != "sample":
            continue
        lp = site["fn"].log_prob(site["value"])
        if site.get("mask") is not None:
            lp = jnp.where(site["mask"], lp, 0.0)
        scale = 1.0 if site.get("scale") is None else site["scale"]
        add_log_weight_term(terms, lp, scale, site["is_observed"], sign)


def log_weights(model, guide, batch: dict, num_particles: int, dim: int, rng_key=None, params=None) -> dict:
    """NumPyro twin of the pyro backend's ``log_weights`` (``params`` substituted, ``rng_key`` seeds)."""
    import numpyro
    from numpyro import handlers

    if params:
        model, guide = handlers.substitute(model, data=params), handlers.substitute(guide, data=params)
    guide_key, model_key = jax.random.split(rng_key if rng_key is not None else jax.random.PRNGKey(0))
    with numpyro.plate("_particles", num_particles, dim=dim):
        guide_trace = handlers.trace(handlers.seed(guide, guide_key)).get_trace(**batch)
        model_trace = handlers.trace(handlers.replay(handlers.seed(model, model_key), guide_trace)).get_trace(**batch)
    terms = {"local": 0.0, "global": 0.0, "scale": 1.0, "global_latent": False}
    _site_terms(model_trace, 1.0, terms)
    _site_terms(guide_trace, -1.0, terms)
    return finish_log_weights(terms)


_COMPILED: dict = {}


def importance_log_weights(model, guide, params: dict, batch: dict, num_particles: int, dim: int,
                           seed: int) -> np.ndarray:
    """``log_weights`` of ``num_particles`` draws with ``params`` (numpy), as float64 numpy
    (particles, examples); compiled once per program and particle count."""
    key = (model, guide, num_particles, dim)
    if key not in _COMPILED:
        if len(_COMPILED) > 16:
            _COMPILED.clear()

        def run(params, batch, rng_key):
            terms = log_weights(model, guide, batch, num_particles, dim, rng_key, params)
            glob = terms["global"]
            return terms["local"] + (glob[:, None] if hasattr(glob, "ndim") else glob)

        _COMPILED[key] = jax.jit(run)
    device = next(iter(batch["x"].devices()))
    with jax.default_device(device):
        params = {k: jax.device_put(jnp.asarray(v), device) for k, v in params.items()}
        out = _COMPILED[key](params, batch, jax.device_put(jax.random.PRNGKey(int(seed)), device))
    return np.asarray(out, dtype=np.float64)


def run_with_params(fn, params: dict, seed: int, device="cpu", num_particles=None, dim=-2,
                    condition=None, **kwargs) -> dict:
    """Trace ``fn(**kwargs)`` with ``params`` substituted and a seed, on ``device``; return its sample sites."""
    with BACKEND.placed(device):
        return _run_with_params_here(fn, params, seed, BACKEND.device(device), num_particles, dim, condition, **kwargs)


def _run_with_params_here(fn, params: dict, seed: int, device, num_particles, dim, condition, **kwargs) -> dict:
    import numpyro
    from numpyro import handlers

    run = handlers.substitute(fn, data={k: jax.device_put(jnp.asarray(v), device) for k, v in params.items()})
    if condition:
        run = handlers.condition(run, data=condition)
    run = handlers.seed(run, rng_seed=int(seed))
    if num_particles:
        with numpyro.plate("_particles", num_particles, dim=dim):
            tr = handlers.trace(run).get_trace(**kwargs)
    else:
        tr = handlers.trace(run).get_trace(**kwargs)
    return {name: site for name, site in tr.items() if site["type"] == "sample"}


class NumPyroBackend(Backend):
    """The numpyro backend: devices, arrays, RNG, tracing and the `ppl` facade."""

    name = "numpyro"
    ppl = PPL
    trace = staticmethod(trace)
    precise = staticmethod(precise)
    log_likelihood = staticmethod(log_likelihood)
    log_weights = staticmethod(log_weights)
    importance_log_weights = staticmethod(importance_log_weights)
    run_with_params = staticmethod(run_with_params)
    xp = jnp

    def setup(self, device: str = "cpu"):
        return self.device(device)

    def device(self, device="cpu"):
        """The JAX device for a device name (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"cpu:N"``);
        refuses one this machine does not have, with the fix."""
        if not isinstance(device, str):
            return device
        from . import check_device

        name = check_device(device)
        kind, _, index = name.partition(":")
        platform = "gpu" if kind == "cuda" else "cpu"
        try:
            devices = jax.devices(platform)
        except RuntimeError as e:
            raise ConfigError(f"device={device!r} but JAX {jax.__version__} has no GPU backend here (install a "
                              f"CUDA build of jaxlib on a machine with a GPU); use device='cpu', or "
                              f"ppgen.load(path, device='cpu') for a run fitted on a GPU") from e
        number = int(index or 0)
        if number >= len(devices):
            raise ConfigError(f"device={device!r} but JAX sees {len(devices)} {kind} device(s) here; use "
                              f"'{kind}:0' to '{kind}:{len(devices) - 1}'")
        return devices[number]

    def placed(self, device="cpu"):
        """Context in which JAX puts the arrays it makes (constants, random draws) on ``device``."""
        return jax.default_device(self.device(device))

    def asarray(self, x, dtype: str = "float32", device="cpu"):
        dev = self.device(device)
        with jax.default_device(dev):  # made on the device, then committed to it (no copy between devices)
            return jax.device_put(jnp.asarray(np.asarray(x), dtype=getattr(jnp, dtype)), dev)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)


BACKEND = NumPyroBackend()
