"""NumPyro / JAX backend."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from typing import Optional

from . import Backend, Site, add_log_weight_term, finish_log_weights, per_example


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


def flatten_params(params: dict) -> dict:
    """Parameters by name as numpy arrays; a param holding a pytree (``numpyro.module``,
    ``flax_module``, ``eqx_module``, ``nnx_module``) becomes one array per leaf, named
    ``"<site>.<path>"`` by its keys, attributes and positions (stable across runs)."""
    flat = {}
    for name, value in params.items():
        leaves = jax.tree_util.tree_flatten_with_path(value)[0]
        if len(leaves) == 1 and not leaves[0][0]:
            flat[name] = np.asarray(value)
            continue
        for path, leaf in leaves:
            flat[f"{name}.{_path_name(path)}"] = np.asarray(leaf)
    return flat


def _path_name(path) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


def nest_params(flat: dict, skeleton: dict) -> dict:
    """The inverse of :func:`flatten_params`: ``skeleton`` (params by name, as a program
    initialises them) gives each pytree's structure, ``flat`` the values."""
    out = {}
    for name, value in skeleton.items():
        leaves, treedef = jax.tree_util.tree_flatten_with_path(value)
        if len(leaves) == 1 and not leaves[0][0]:
            out[name] = jnp.asarray(flat[name])
            continue
        out[name] = jax.tree_util.tree_unflatten(
            treedef, [jnp.asarray(flat[f"{name}.{_path_name(path)}"]) for path, _ in leaves])
    return out


def program_params(fn, kwargs: dict, seed: int = 0) -> dict:
    """The params ``fn(**kwargs)`` initialises, by site (values as the program makes them)."""
    from numpyro import handlers

    tr = handlers.trace(handlers.seed(fn, rng_seed=int(seed))).get_trace(**kwargs)
    return {name: site["value"] for name, site in tr.items() if site["type"] == "param"}


def program_sites(fn, kwargs: dict, params: Optional[dict] = None, seed: int = 0) -> list:
    """The sites of one run of ``fn(**kwargs)`` (a :class:`ppgen.backends.Site` each), with
    ``params`` (nested, see :func:`nest_params`) substituted when given."""
    from numpyro import handlers

    run = handlers.substitute(fn, data=params) if params else fn
    tr = handlers.trace(handlers.seed(run, rng_seed=int(seed))).get_trace(**kwargs)
    x = kwargs.get("x")
    sites = []
    for name, site in tr.items():
        if site["type"] == "param":
            value = site["value"]
            sites.append(Site(name, "param", (), tuple(value.shape) if hasattr(value, "shape") else None))
        elif site["type"] == "deterministic":
            sites.append(Site(name, "deterministic", _plates(site), tuple(jnp.shape(site["value"]))))
        elif site["type"] == "sample":
            discrete = bool(getattr(site["fn"].support, "is_discrete", False))
            sites.append(Site(name, "observed" if site["is_observed"] else "latent", _plates(site),
                              tuple(jnp.shape(site["value"])), discrete,
                              site["is_observed"] and site["value"] is x))
    return sites


def _plates(site) -> tuple:
    return tuple((f.name, f.dim) for f in site.get("cond_indep_stack", ()))


def _per_example_terms(trace, plates: dict, n: int, observed_only: bool = False):
    total = jnp.zeros(n)
    for site in trace.values():
        if site["type"] != "sample" or (observed_only and not site["is_observed"]):
            continue
        dims = [f.dim for f in site.get("cond_indep_stack", ()) if f.name in plates]
        if not dims:
            continue
        lp = site["fn"].log_prob(site["value"])
        if site.get("mask") is not None:
            lp = jnp.where(site["mask"], lp, 0.0)
        total = total + per_example(jnp, lp, dims[0], n)
    return total


#: particles per compiled call of :func:`program_log_weights` (bounds its memory)
PARTICLE_CHUNK = 100


def program_log_weights(model, guide, params: dict, kwargs: dict, plates: dict, num_samples: int,
                        seed: int = 0) -> np.ndarray:
    """NumPyro twin of the pyro backend's ``program_log_weights`` (``params`` nested); the
    particles run vectorised, :data:`PARTICLE_CHUNK` per compiled call."""
    from numpyro import handlers

    arrays = {k: v for k, v in kwargs.items() if hasattr(v, "shape")}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    n = int(kwargs["x"].shape[0])

    def one(p, arr, key):
        guide_key, model_key = jax.random.split(key)
        kw = dict(arr, **static)
        m = handlers.substitute(model, data=p)
        if guide is None:
            tr = handlers.trace(handlers.seed(m, model_key)).get_trace(**kw)
            return _per_example_terms(tr, plates, n, True)
        g = handlers.substitute(guide, data=p)
        guide_trace = handlers.trace(handlers.seed(g, guide_key)).get_trace(**kw)
        model_trace = handlers.trace(handlers.replay(handlers.seed(m, model_key), guide_trace)).get_trace(**kw)
        return _per_example_terms(model_trace, plates, n) - _per_example_terms(guide_trace, plates, n)

    run = jax.jit(jax.vmap(one, in_axes=(None, None, 0)))
    keys = jax.random.split(jax.random.PRNGKey(int(seed)), num_samples)
    chunks = [np.asarray(run(params, arrays, keys[i:i + PARTICLE_CHUNK]), dtype=np.float64)
              for i in range(0, num_samples, PARTICLE_CHUNK)]
    return np.concatenate(chunks)


def program_conditioned_log_likelihood(model, draws: dict, params: dict, kwargs: dict, plates: dict) -> np.ndarray:
    """log p(x_n | θ_s) per draw s of ``draws`` (site -> (S, ...)) and example n: (S, N)."""
    from numpyro import handlers

    arrays = {k: v for k, v in kwargs.items() if hasattr(v, "shape")}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    n = int(kwargs["x"].shape[0])

    def one(p, arr, draw):
        fn = handlers.condition(handlers.substitute(model, data=p), data=draw)
        tr = handlers.trace(handlers.seed(fn, 0)).get_trace(**dict(arr, **static))
        return _per_example_terms(tr, plates, n, True)

    if not draws:
        return np.asarray(jax.jit(one)(params, arrays, {}), dtype=np.float64)[None]
    draws = {k: jnp.asarray(v) for k, v in draws.items()}
    return np.asarray(jax.jit(jax.vmap(one, in_axes=(None, None, 0)))(params, arrays, draws), dtype=np.float64)


def program_predictive(model, draws: Optional[dict], params: dict, kwargs: dict, sites,
                       seed: int = 0, device="cpu", num_runs: Optional[int] = None):
    """Draws of ``sites`` (a name, or a tuple of names for a dict) from ``model(**kwargs)`` with
    ``params``: one run; or one run per posterior draw in ``draws`` (site -> (S, ...)); or
    ``num_runs`` runs; stacked (S, ...) in the last two cases."""
    from numpyro import handlers

    names = (sites,) if isinstance(sites, str) else tuple(sites)

    def one(draw, key):
        fn = handlers.substitute(model, data=params)
        if draw:
            fn = handlers.condition(fn, data=draw)
        tr = handlers.trace(handlers.seed(fn, key)).get_trace(**kwargs)
        return {name: tr[name]["value"] for name in names}

    with BACKEND.placed(device):
        key = jax.random.PRNGKey(int(seed))
        if draws:
            draws = {k: jnp.asarray(v) for k, v in draws.items()}
            out = jax.vmap(one)(draws, jax.random.split(key, next(iter(draws.values())).shape[0]))
        elif num_runs:
            out = jax.vmap(lambda k: one({}, k))(jax.random.split(key, num_runs))
        else:
            out = one({}, key)
    out = {name: np.asarray(v) for name, v in out.items()}
    return out[sites] if isinstance(sites, str) else out


def scale_latents(beta, fn=None):
    """A handler that multiplies the scale of every latent (unobserved) sample site by ``beta``
    (the weight of the latent terms under KL warm-up); with ``fn``, ``fn`` under that handler.

    Example:
        >>> with get_backend("numpyro").scale_latents(0.3):
        ...     loss = elbo.loss(key, params, model, guide, **batch)
    """
    return _latent_scaler()(beta, fn)


@functools.lru_cache(maxsize=None)
def _latent_scaler():
    from numpyro.primitives import Messenger

    class ScaleLatents(Messenger):
        def __init__(self, beta, fn=None):
            super().__init__(fn)
            self.beta = beta

        def process_message(self, msg):
            if msg["type"] == "sample" and not msg["is_observed"]:
                msg["scale"] = self.beta if msg.get("scale") is None else self.beta * msg["scale"]

    return ScaleLatents


def bind_params(fn, params: dict, device="cpu"):
    """``fn`` with ``params`` (nested, see :func:`nest_params`) substituted for its params."""
    from numpyro import handlers

    return handlers.substitute(fn, data=params)


class NumPyroBackend(Backend):
    """The numpyro backend: devices, arrays, RNG, tracing and the `ppl` facade."""

    name = "numpyro"
    ppl = PPL
    trace = staticmethod(trace)
    precise = staticmethod(precise)
    log_weights = staticmethod(log_weights)
    importance_log_weights = staticmethod(importance_log_weights)
    run_with_params = staticmethod(run_with_params)
    program_sites = staticmethod(program_sites)
    program_params = staticmethod(program_params)
    bind_params = staticmethod(bind_params)
    scale_latents = staticmethod(scale_latents)
    program_log_weights = staticmethod(program_log_weights)
    program_conditioned_log_likelihood = staticmethod(program_conditioned_log_likelihood)
    program_predictive = staticmethod(program_predictive)
    flatten_params = staticmethod(flatten_params)
    nest_params = staticmethod(nest_params)
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
