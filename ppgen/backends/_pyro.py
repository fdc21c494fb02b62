"""Pyro / PyTorch backend."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch

from ..errors import ConfigError

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

    def plate(self, name, size, index=None, subsample_size=None, dim=None):
        """A plate of ``size``; ``index`` (the minibatch's row numbers) scales it by size/len."""
        import pyro

        if index is not None:
            return pyro.plate(name, size, subsample=index, dim=dim)
        return pyro.plate(name, size, subsample_size=subsample_size, dim=dim)

    def constant(self, value, like):
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)

    def zeros(self, shape, like):
        return torch.zeros(shape, dtype=like.dtype, device=like.device)

    def ones(self, shape, like):
        return torch.ones(shape, dtype=like.dtype, device=like.device)


    def index(self, value, like=None):
        """An integer index array on ``like``'s device."""
        return torch.as_tensor(value, device=getattr(like, "device", None))

PPL = _PyroPPL()


def trace(fn, seed: int = 0, **kwargs) -> dict:
    """Run ``fn(**kwargs)`` once with a fixed seed; return its sample sites by name."""
    from pyro import poutine

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        tr = poutine.trace(fn).get_trace(**kwargs)
    return {name: site for name, site in tr.nodes.items() if site["type"] == "sample"}


def precise():
    """Context for float64 work (a no-op for torch: dtypes are per tensor)."""
    return contextlib.nullcontext()


def log_likelihood(model, draws: dict, params: dict, x) -> np.ndarray:
    """log p(x_n | draw s) summed over observed sites, shape (S, N), for a user program."""
    import pyro
    from pyro import poutine

    xs = torch.as_tensor(np.asarray(x, dtype=np.float32))
    num = next(iter(draws.values())).shape[0] if draws else 1
    rows = []
    with pyro.get_param_store().scope() as _scope, torch.no_grad():
        for name, value in params.items():
            pyro.param(name, torch.as_tensor(value))
        for s in range(num):
            values = {k: torch.as_tensor(v[s]) for k, v in draws.items()}
            tr = poutine.trace(poutine.condition(model, values)).get_trace(x=xs)
            total = 0.0
            for name, site in tr.nodes.items():  # the data's sites, not the conditioned latents
                if site["type"] == "sample" and site["is_observed"] and name not in values:
                    lp = site["fn"].log_prob(site["value"])
                    total = total + lp.reshape(lp.shape[0], -1).sum(-1) if lp.dim() else total + lp
            rows.append(np.asarray(total))
    return np.stack(rows)


class PyroBackend:
    """The pyro backend: devices, arrays, RNG, tracing and the `ppl` facade."""

    name = "pyro"
    ppl = PPL
    trace = staticmethod(trace)
    precise = staticmethod(precise)
    log_likelihood = staticmethod(log_likelihood)
    xp = torch

    def setup(self, device: str = "cpu") -> torch.device:
        global _THREADS_SET
        if not _THREADS_SET:
            torch.set_num_threads(_default_threads())
            _THREADS_SET = True
        return self.device(device)

    def device(self, device: str = "cpu") -> torch.device:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ConfigError(f"unknown device {device!r} for the pyro backend; use 'cpu' or 'cuda'") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but CUDA is not available here; use device='cpu'")
        return dev

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
