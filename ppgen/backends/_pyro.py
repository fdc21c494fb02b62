"""Pyro / PyTorch backend."""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Optional

import numpy as np
import torch

from ..errors import ConfigError
from . import Backend, Site, add_log_weight_term, finish_log_weights, per_example

_THREADS_SET = False


def _default_threads() -> int:
    # Small models on few cores: one intra-op thread is far faster than several
    # (benchmarks/threads.py measures it). Override with PPGEN_NUM_THREADS.
    return int(os.environ.get("PPGEN_NUM_THREADS", "1"))


class _PyroPPL:
    """The probabilistic-programming primitives a ppgen program is written against.

    Pyro and NumPyro share names and semantics for these; a family writes its model once over
    ``ppl`` and runs in either backend (see ``models/ppca.py``)."""

    backend = "pyro"

    def __init__(self):
        import pyro
        import pyro.distributions as dist
        from pyro.distributions import constraints

        self.xp = torch
        self.sample = pyro.sample
        self.param = pyro.param
        self.deterministic = pyro.deterministic
        self.factor = pyro.factor
        self.dist = dist
        self.constraints = constraints

    def plate(self, name, size, index=None, subsample_size=None, dim=None, like=None):
        """A plate of ``size``; ``index`` (the minibatch's row numbers) scales it by size/len.
        Its own indices (a subsample, or the steps of a plate that is iterated over) are made on
        the device of ``index`` or of ``like``."""
        import pyro

        if index is not None:
            return pyro.plate(name, size, subsample=index, dim=dim)
        device = like.device if like is not None else None
        return pyro.plate(name, size, subsample_size=subsample_size, dim=dim, device=device)

    def constant(self, value, like):
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)

    def zeros(self, shape, like):
        return torch.zeros(shape, dtype=like.dtype, device=like.device)

    def ones(self, shape, like):
        return torch.ones(shape, dtype=like.dtype, device=like.device)


    def index(self, value, like=None):
        """An integer index array on ``like``'s device."""
        return torch.as_tensor(value, device=getattr(like, "device", None))

    def take_rows(self, array, index):
        """``array[index]`` along the first axis."""
        return array[index]

    def network(self, name: str, init: dict) -> dict:
        """A network's parameters, registered as ``"<name>.<parameter>"`` params."""
        import pyro

        return {k: pyro.param(f"{name}.{k}", v) for k, v in init.items()}

    def one_hot(self, labels, num_classes: int, like):
        return torch.nn.functional.one_hot(labels.long(), num_classes).to(like.dtype)

    def broadcast_to(self, value, shape):
        return value.expand(tuple(shape))

    def as_integer(self, x):
        return x.long()

PPL = _PyroPPL()


def trace(fn, seed: int = 0, **kwargs) -> dict:
    """Run ``fn(**kwargs)`` once with a fixed seed; return its sample sites by name."""
    from pyro import poutine

    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(int(seed))
        tr = poutine.trace(fn).get_trace(**kwargs)
    return {name: site for name, site in tr.nodes.items() if site["type"] == "sample"}


def precise():
    """Context for float64 work (a no-op for torch: dtypes are per tensor)."""
    return contextlib.nullcontext()


def _is_plate_site(site) -> bool:
    return type(site["fn"]).__name__ == "_Subsample" or site["infer"].get("_deterministic", False)


def _site_terms(trace_nodes, sign: float, terms: dict) -> None:
    """Add each sample site's log-density to ``terms`` (see ``log_weights``)."""
    for name, site in trace_nodes.items():
        if site["type"] != "sample" or _is_plate_site(site):
            continue
        lp = site["fn"].log_prob(site["value"])
        if site["mask"] is not None and site["mask"] is not True:
            lp = lp * site["mask"]
        add_log_weight_term(terms, lp, site["scale"], site["is_observed"], sign)


def log_weights(model, guide, batch: dict, num_particles: int, dim: int) -> dict:
    """Importance log-weights log p(x, z) − log q(z | x) of ``num_particles`` guide draws, drawn
    at once in a particle plate at ``dim``.

    Returns ``local`` (particles, examples): per-example terms without the minibatch's scale;
    ``scale``: that scale (N / batch size); ``global`` (particles,): scaled terms of sites
    outside the data plate; ``global_latent``: whether any such site is a latent. Uses the
    current param store and torch RNG; differentiable."""
    import pyro
    from pyro import poutine

    with pyro.plate("_particles", num_particles, dim=dim):
        guide_trace = poutine.trace(guide).get_trace(**batch)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(**batch)
    terms = {"local": 0.0, "global": 0.0, "scale": 1.0, "global_latent": False}
    _site_terms(model_trace.nodes, 1.0, terms)
    _site_terms(guide_trace.nodes, -1.0, terms)
    return finish_log_weights(terms)


def _latent(site) -> bool:
    return site["type"] == "sample" and not site["is_observed"] and not _is_plate_site(site)


def _scaled_sum(lp, site):
    if site["mask"] is not None and site["mask"] is not True:
        lp = torch.where(torch.as_tensor(site["mask"], device=lp.device), lp, lp.new_zeros(()))
    return (lp * site["scale"]).sum()


def all_reparameterized(model, guide, batch: dict) -> bool:
    """Whether every latent of ``model`` is drawn by ``guide`` from a distribution with a
    reparameterised sampler (no enumeration, no score-function terms): the programs
    :func:`reparam_elbo_loss` computes exactly (traced once)."""
    from pyro import poutine

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(**batch)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(**batch)
    guide_latents = {n: s for n, s in guide_trace.nodes.items() if _latent(s)}
    if any(not s["fn"].has_rsample or s["infer"].get("enumerate") for s in guide_latents.values()):
        return False
    return all(n in guide_latents for n, s in model_trace.nodes.items() if _latent(s))


def reparam_elbo_loss(model, guide, batch: dict, analytic_kl: bool, num_particles: int = 1):
    """The negative ELBO, differentiable, for programs where :func:`all_reparameterized` holds.

    Per particle: Σ scale·log p(x | z) over observed sites, minus for each latent either the
    closed-form KL(q ‖ p) (``analytic_kl`` and the pair has one registered) or the Monte
    Carlo log q(z) − log p(z); guide-only latents add −log q(z). The value and its gradient
    are those of Pyro's Trace_ELBO (``analytic_kl=False``) and TraceMeanField_ELBO
    (``analytic_kl=True``) with the same draws; it skips their graph and score-function
    bookkeeping, which with one small network per site costs a good share of a step."""
    from pyro import poutine
    from pyro.distributions.kl import kl_divergence

    total = 0.0
    for _ in range(num_particles):
        guide_trace = poutine.trace(guide).get_trace(**batch)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(**batch)
        elbo = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or _is_plate_site(site):
                continue
            if site["is_observed"]:
                elbo = elbo + _scaled_sum(site["fn"].log_prob(site["value"]), site)
                continue
            q = guide_trace.nodes[name]
            if analytic_kl:
                try:
                    kl = kl_divergence(q["fn"], site["fn"])
                except NotImplementedError:
                    pass
                else:
                    elbo = elbo - _scaled_sum(kl.expand(q["fn"].batch_shape), q)
                    continue
            elbo = elbo + _scaled_sum(site["fn"].log_prob(site["value"]), site) \
                - _scaled_sum(q["fn"].log_prob(site["value"]), q)
        for name, q in guide_trace.nodes.items():
            if _latent(q) and name not in model_trace.nodes:
                elbo = elbo - _scaled_sum(q["fn"].log_prob(q["value"]), q)
        total = total - elbo
    return total / num_particles


def importance_log_weights(model, guide, params: dict, batch: dict, num_particles: int, dim: int,
                           seed: int) -> np.ndarray:
    """``log_weights`` of ``num_particles`` draws with ``params`` (numpy), as float64 numpy
    (particles, examples), without gradients."""
    device = batch["x"].device
    with params_in_store(params, device), _fork_rng(device), torch.no_grad():
        torch.manual_seed(int(seed))
        terms = log_weights(model, guide, batch, num_particles, dim)
    local = terms["local"]
    glob = terms["global"]
    out = local.double() + (glob.double()[:, None] if torch.is_tensor(glob) else glob)
    return out.cpu().numpy()


def _fork_rng(device):
    """torch's RNG forked for the body: the CPU generator and, on a GPU, that device's."""
    dev = torch.device(device)
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    return torch.random.fork_rng(devices=devices, device_type=dev.type if dev.type == "cuda" else "cuda")


@contextlib.contextmanager
def params_in_store(params: dict, device="cpu"):
    """A private param store holding ``params`` (numpy arrays by name) for the body."""
    import pyro

    with pyro.get_param_store().scope():
        for name, value in params.items():
            pyro.param(name, torch.as_tensor(np.asarray(value), device=device))
        yield


def scale_latents(beta):
    """A handler that multiplies the scale of every latent (unobserved) sample site by ``beta``
    (the weight of the latent terms under KL warm-up); a plate's subsample site is left alone.

    Example:
        >>> with get_backend("pyro").scale_latents(0.3):
        ...     loss = elbo.differentiable_loss(model, guide, **batch)
    """
    return _latent_scaler()(beta)


@functools.lru_cache(maxsize=None)
def _latent_scaler():
    from pyro.poutine.messenger import Messenger

    class ScaleLatents(Messenger):
        def __init__(self, beta):
            super().__init__()
            self.beta = beta

        def _process_message(self, msg):
            if msg["type"] == "sample" and not msg["is_observed"] and type(msg["fn"]).__name__ != "_Subsample":
                msg["scale"] = self.beta * msg["scale"]

    return ScaleLatents


def run_with_params(fn, params: dict, seed: int, device="cpu", num_particles=None, dim=-2,
                    condition=None, **kwargs) -> dict:
    """Trace ``fn(**kwargs)`` with ``params`` (numpy, by name) as its parameters, seeded; return
    its sample sites. ``condition`` fixes latent values; ``num_particles`` draws in a plate."""
    import pyro
    from pyro import poutine

    device = BACKEND.device(device)
    with params_in_store(params, device), _fork_rng(device), torch.no_grad():
        torch.manual_seed(int(seed))
        run = poutine.condition(fn, condition) if condition else fn
        if num_particles:
            with pyro.plate("_particles", num_particles, dim=dim):
                tr = poutine.trace(run).get_trace(**kwargs)
        else:
            tr = poutine.trace(run).get_trace(**kwargs)
    return {name: site for name, site in tr.nodes.items() if site["type"] == "sample" and not _is_plate_site(site)}


@contextlib.contextmanager
def program_store(params: dict, fns, kwargs: dict, device="cpu"):
    """A private param store holding ``params`` for a user program's functions ``fns``.

    Each function runs once first, so that the parameters it registers exist; a
    ``pyro.module``'s parameters are then the module's own tensors, which take the values in
    place (``pyro.module`` reads its module, not the store, unless ``update_module_params``):
    a freshly built program computes with the fitted weights, as after ``load_state_dict``."""
    import pyro
    from pyro import poutine

    device = torch.device(device)
    with pyro.get_param_store().scope():
        store = pyro.get_param_store()
        with _fork_rng(device), torch.no_grad(), poutine.block():  # unseen by the caller's handlers
            for fn in fns:
                poutine.trace(fn).get_trace(**kwargs)
            for name, value in params.items():
                value = torch.as_tensor(np.asarray(value), device=device)
                if name in store and "$$$" in name:
                    pyro.param(name).data.copy_(value)
                else:
                    store[name] = value
        yield


def program_sites(fn, kwargs: dict, params: Optional[dict] = None, seed: int = 0) -> list:
    """The sites of one run of ``fn(**kwargs)`` (a :class:`ppgen.backends.Site` each), with
    ``params`` in a private param store (None: the program initialises its own there)."""
    import pyro
    from pyro import poutine

    x = kwargs.get("x")
    device = x.device if torch.is_tensor(x) else torch.device("cpu")
    store = params_in_store(params, device) if params is not None else pyro.get_param_store().scope()
    with store, _fork_rng(device), torch.no_grad():
        torch.manual_seed(int(seed))
        tr = poutine.trace(fn).get_trace(**kwargs)
    sites = []
    for name, site in tr.nodes.items():
        if site["type"] == "param":
            sites.append(Site(name, "param", (), tuple(site["value"].shape)))
        elif site["type"] == "sample" and type(site["fn"]).__name__ != "_Subsample":
            plates = tuple((f.name, f.dim) for f in site["cond_indep_stack"] if f.vectorized)
            if site["infer"].get("_deterministic", False):
                sites.append(Site(name, "deterministic", plates, tuple(site["value"].shape)))
                continue
            kind = "observed" if site["is_observed"] else "latent"
            discrete = bool(getattr(site["fn"].support, "is_discrete", False))
            sites.append(Site(name, kind, plates, tuple(site["value"].shape), discrete,
                              site["is_observed"] and site["value"] is x))
    return sites


def flatten_params(params: dict) -> dict:
    """Parameters by name as numpy arrays (Pyro's are flat already: a ``pyro.module``'s are
    ``"<module>$$$<parameter path>"``)."""
    return {name: np.asarray(BACKEND.to_numpy(v)) for name, v in params.items()}


def nest_params(flat: dict, skeleton: dict) -> dict:
    """The parameters ``skeleton`` names, from ``flat`` (the twin of the NumPyro backend's)."""
    return {name: flat[name] for name in skeleton}


def program_params(fn, kwargs: dict, seed: int = 0) -> dict:
    """The params ``fn(**kwargs)`` initialises, by name, as numpy arrays (in a private store)."""
    import pyro
    from pyro import poutine

    x = kwargs.get("x")
    device = x.device if torch.is_tensor(x) else torch.device("cpu")
    with pyro.get_param_store().scope(), _fork_rng(device), torch.no_grad():
        torch.manual_seed(int(seed))
        tr = poutine.trace(fn).get_trace(**kwargs)
    return {name: site["value"].detach().cpu().numpy() for name, site in tr.nodes.items() if site["type"] == "param"}


def _per_example_terms(trace, plates: dict, n: int, observed_only: bool = False):
    """Σ over the sample sites inside a data plate (``plates``: name -> dim) of their
    log-density, one value per example (n,)."""
    total = torch.zeros(n, dtype=torch.float64)
    for site in trace.nodes.values():
        if site["type"] != "sample" or _is_plate_site(site) or (observed_only and not site["is_observed"]):
            continue
        dims = [f.dim for f in site["cond_indep_stack"] if f.name in plates]
        if not dims:
            continue
        lp = site["fn"].log_prob(site["value"])
        if site["mask"] is not None and site["mask"] is not True:
            lp = torch.where(torch.as_tensor(site["mask"], device=lp.device), lp, lp.new_zeros(()))
        total = total + per_example(torch, lp, dims[0], n).double().cpu()
    return total


def program_log_weights(model, guide, params: dict, kwargs: dict, plates: dict, num_samples: int,
                        seed: int = 0) -> np.ndarray:
    """log p(x_n, z_n | θ) − log q(z_n | x_n) for ``num_samples`` guide draws, per example:
    (num_samples, N) float64. Only the sites inside a data plate (``plates``: name -> dim) count,
    so a global latent drawn by the guide is a draw θ_k, not a term; without a guide (no
    per-example latents) each row is log p(x_n | θ)."""
    from pyro import poutine

    x = kwargs["x"]
    n = int(x.shape[0])
    rows = []
    fns = (model,) if guide is None else (model, guide)
    with program_store(params, fns, kwargs, x.device), _fork_rng(x.device), torch.no_grad():
        torch.manual_seed(int(seed))
        for _ in range(num_samples):
            if guide is None:
                rows.append(_per_example_terms(poutine.trace(model).get_trace(**kwargs), plates, n, True))
                continue
            guide_trace = poutine.trace(guide).get_trace(**kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(**kwargs)
            rows.append(_per_example_terms(model_trace, plates, n) - _per_example_terms(guide_trace, plates, n))
    return torch.stack(rows).numpy()


def program_conditioned_log_likelihood(model, draws: dict, params: dict, kwargs: dict, plates: dict) -> np.ndarray:
    """log p(x_n | θ_s) per draw s of ``draws`` (site -> (S, ...)) and example n: (S, N)."""
    from pyro import poutine

    x = kwargs["x"]
    n = int(x.shape[0])
    num = next(iter(draws.values())).shape[0] if draws else 1
    rows = []
    with program_store(params, (model,), kwargs, x.device), torch.no_grad():
        for s in range(num):
            values = {k: torch.as_tensor(np.asarray(v[s]), device=x.device) for k, v in draws.items()}
            tr = poutine.trace(poutine.condition(model, values)).get_trace(**kwargs)
            rows.append(_per_example_terms(tr, plates, n, True))
    return torch.stack(rows).numpy()


def program_predictive(model, draws: Optional[dict], params: dict, kwargs: dict, sites,
                       seed: int = 0, device="cpu", num_runs: Optional[int] = None):
    """Draws of ``sites`` (a name, or a tuple of names for a dict) from ``model(**kwargs)`` with
    ``params``: one run; or one run per posterior draw in ``draws`` (site -> (S, ...)); or
    ``num_runs`` runs; stacked (S, ...) in the last two cases."""
    from pyro import poutine

    device = BACKEND.device(device)
    runs = range(next(iter(draws.values())).shape[0]) if draws else range(num_runs or 1)
    names = (sites,) if isinstance(sites, str) else tuple(sites)
    out: dict = {name: [] for name in names}
    with program_store(params, (model,), kwargs, device), _fork_rng(device), torch.no_grad():
        torch.manual_seed(int(seed))
        for s in runs:
            fn = model if not draws else poutine.condition(
                model, {k: torch.as_tensor(np.asarray(v[s]), device=device) for k, v in draws.items()})
            tr = poutine.trace(fn).get_trace(**kwargs)
            for name in names:
                out[name].append(tr.nodes[name]["value"].cpu().numpy())
    stacked = {name: np.stack(v) if (draws or num_runs) else v[0] for name, v in out.items()}
    return stacked[sites] if isinstance(sites, str) else stacked


def bind_params(fn, params: dict, device="cpu"):
    """``fn`` running with ``params`` (numpy, by name) in a private param store."""
    device = BACKEND.device(device)

    def bound(*args, **kwargs):
        with program_store(params, (fn,), kwargs, device):
            return fn(*args, **kwargs)

    bound.__name__ = getattr(fn, "__name__", "program")
    return bound


class PyroBackend(Backend):
    """The pyro backend: devices, arrays, RNG, tracing and the `ppl` facade."""

    name = "pyro"
    ppl = PPL
    trace = staticmethod(trace)
    precise = staticmethod(precise)
    log_weights = staticmethod(log_weights)
    importance_log_weights = staticmethod(importance_log_weights)
    all_reparameterized = staticmethod(all_reparameterized)
    reparam_elbo_loss = staticmethod(reparam_elbo_loss)
    run_with_params = staticmethod(run_with_params)
    program_sites = staticmethod(program_sites)
    program_log_weights = staticmethod(program_log_weights)
    program_conditioned_log_likelihood = staticmethod(program_conditioned_log_likelihood)
    program_predictive = staticmethod(program_predictive)
    program_params = staticmethod(program_params)
    bind_params = staticmethod(bind_params)
    params_in_store = staticmethod(params_in_store)
    scale_latents = staticmethod(scale_latents)
    flatten_params = staticmethod(flatten_params)
    nest_params = staticmethod(nest_params)
    xp = torch

    def setup(self, device: str = "cpu") -> torch.device:
        global _THREADS_SET
        if not _THREADS_SET:
            torch.set_num_threads(_default_threads())
            _THREADS_SET = True
        return self.device(device)

    def device(self, device="cpu") -> torch.device:
        """The ``torch.device`` for a device name; refuses one this machine does not have, with the fix."""
        if isinstance(device, torch.device):
            return device
        from . import check_device

        name = check_device(device)
        dev = torch.device(name.split(":")[0] if name.startswith("cpu") else name)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(f"device={device!r} but CUDA is not available here (torch "
                                  f"{torch.__version__}, torch.cuda.is_available() is False); use device='cpu', "
                                  f"or ppgen.load(path, device='cpu') for a run fitted on a GPU")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise ConfigError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA "
                                  f"device(s); use 'cuda:0' to 'cuda:{torch.cuda.device_count() - 1}'")
        return dev

    def placed(self, device="cpu"):
        """Context for work on ``device``: a no-op here, since every tensor ppgen makes in the pyro
        backend names its device (torch's own default-device context costs about a fifth of a small
        network's forward pass)."""
        return contextlib.nullcontext()

    def asarray(self, x, dtype: str = "float32", device="cpu"):
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device(str(device)), dtype=getattr(torch, dtype))
        return torch.as_tensor(np.asarray(x), dtype=getattr(torch, dtype), device=self.device(str(device)))

    def to_numpy(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    @contextlib.contextmanager
    def rng(self, state: dict, seed: int | None = None):
        """Run the body with torch's RNG set from ``state['rng']`` (or ``seed``), isolated from
        the caller's global RNG; the advanced RNG state is written back into ``state``.

        On a machine with CUDA the state is the CPU generator's state followed by the current
        CUDA device's, in one uint8 tensor, so that draws made on the GPU advance from step to
        step as those on the CPU do (a state saved on a machine without CUDA restores the CPU
        generator and leaves the CUDA one as it is)."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            saved = state.get("rng")
            if saved is not None:
                cpu_size = torch.get_rng_state().numel()
                torch.set_rng_state(saved[:cpu_size].clone())
                if devices and saved.numel() > cpu_size:
                    torch.cuda.set_rng_state(saved[cpu_size:].clone())
            else:
                torch.manual_seed(0 if seed is None else seed)  # seeds every CUDA device too
            yield
            after = torch.get_rng_state()
            state["rng"] = torch.cat([after, torch.cuda.get_rng_state()]) if devices else after


BACKEND = PyroBackend()
