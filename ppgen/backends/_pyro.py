"""Pyro / PyTorch backend."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch

from ..errors import ConfigError
from . import Backend, add_log_weight_term, finish_log_weights

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


def log_likelihood(model, draws: dict, params: dict, x, device="cpu") -> np.ndarray:
    """log p(x_n | draw s) summed over observed sites, shape (S, N), for a user program."""
    import pyro
    from pyro import poutine

    dev = BACKEND.device(device)
    xs = torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev)
    num = next(iter(draws.values())).shape[0] if draws else 1
    rows = []
    with pyro.get_param_store().scope() as _scope, torch.no_grad():
        for name, value in params.items():
            pyro.param(name, torch.as_tensor(value, device=dev))
        for s in range(num):
            values = {k: torch.as_tensor(v[s], device=dev) for k, v in draws.items()}
            tr = poutine.trace(poutine.condition(model, values)).get_trace(x=xs)
            total = 0.0
            for name, site in tr.nodes.items():  # the data's sites, not the conditioned latents
                if site["type"] == "sample" and site["is_observed"] and name not in values:
                    lp = site["fn"].log_prob(site["value"])
                    total = total + lp.reshape(lp.shape[0], -1).sum(-1) if lp.dim() else total + lp
            rows.append(total.cpu().numpy() if torch.is_tensor(total) else np.asarray(total))
    return np.stack(rows)


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


class PyroBackend(Backend):
    """The pyro backend: devices, arrays, RNG, tracing and the `ppl` facade."""

    name = "pyro"
    ppl = PPL
    trace = staticmethod(trace)
    precise = staticmethod(precise)
    log_likelihood = staticmethod(log_likelihood)
    log_weights = staticmethod(log_weights)
    importance_log_weights = staticmethod(importance_log_weights)
    all_reparameterized = staticmethod(all_reparameterized)
    reparam_elbo_loss = staticmethod(reparam_elbo_loss)
    run_with_params = staticmethod(run_with_params)
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
        the caller's global RNG; the advanced RNG state is written back into ``state``."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            if state.get("rng") is not None:
                torch.set_rng_state(state["rng"])
            else:
                torch.manual_seed(0 if seed is None else seed)
            yield
            state["rng"] = torch.get_rng_state()


BACKEND = PyroBackend()
