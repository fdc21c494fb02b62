"""Hamiltonian Monte Carlo: NUTS (Hoffman & Gelman 2014) and fixed-length HMC, both backends.

MCMC serves models whose latent variables are all global (a family's Bayesian form, or a user
Program). One ``step`` runs warm-up and sampling for every chain; the draws keep a chain axis,
so ArviZ's R-hat and ESS apply directly.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar, Literal, NamedTuple, Optional

import numpy as np

from ppgen.backends import get_backend
from ppgen.errors import ConfigError

from .base import Inference, Kernel, Result

__all__ = ["NUTS", "HMC", "MCMCInfo", "MCMCState"]


class MCMCState(NamedTuple):
    seed: int                       # the chains' seed (chain c of Pyro's runs uses seed * 1000 + c)
    samples: Optional[dict] = None  # draws by site, each (chains, draws, ...), once the step has run
    stats: Optional[dict] = None    # sampler statistics by name, each (chains, draws)


class MCMCInfo(NamedTuple):
    divergences: float        # divergent transitions after warm-up, all chains
    accept_prob: float        # mean acceptance probability (NaN where the backend keeps none)
    seconds: float            # wall time of warm-up and sampling


@dataclasses.dataclass(frozen=True)
class _MCMC(Inference):
    num_samples: int = 1000
    num_warmup: int = 1000
    num_chains: int = 2
    target_accept_prob: float = 0.8
    dense_mass: bool = False
    progress_bar: Optional[bool] = None

    title: ClassVar[str] = "MCMC"

    def _validate(self):
        for name in ("num_samples", "num_chains"):
            self._require(getattr(self, name) >= 1, f"{name} must be at least 1; got {getattr(self, name)}")
        self._require(self.num_warmup >= 0, f"num_warmup must be >= 0; got {self.num_warmup}")
        self._require(0 < self.target_accept_prob < 1,
                      f"target_accept_prob must be in (0, 1); got {self.target_accept_prob}")

    def form_for(self, model) -> str:
        if model.family == "program":
            return "user"
        if "bayesian" not in model.forms:
            self.refuse(model, "it has per-example latents and network weights, which "
                               "Hamiltonian Monte Carlo cannot sample")
        return "bayesian"

    def bind(self, program) -> "MCMCKernel":
        structure = program.extras.get("structure")
        if structure is not None and structure.local_latents:
            raise ConfigError(
                f"{self.title} would sample {list(structure.local_latents)} once per training row, and could then "
                f"score no new data. Fit this program with inference.SVI and a guide that draws them from x (an "
                f"amortised guide), or integrate them out of the model")
        return MCMCKernel(self, program)


class MCMCKernel(Kernel):
    """One step: warm-up and sampling of every chain, by the backend's own NUTS or HMC."""

    def __init__(self, inference, program):
        super().__init__(inference, program)
        self.model = program.for_batches(program.model)

    def init(self, batch, seed) -> MCMCState:
        return MCMCState(seed=int(seed))

    def step(self, state, batch):
        start = time.perf_counter()
        run = _run_pyro if self.program.backend == "pyro" else _run_numpyro
        samples, stats = run(self.inference, self.model, batch, state.seed, self.program.init_values)
        accept = float(np.mean(stats["accept_prob"])) if "accept_prob" in stats else float("nan")
        return (state._replace(samples=samples, stats=stats),
                MCMCInfo(float(np.sum(stats["diverging"])), accept, time.perf_counter() - start))

    def result(self, state, batch=None) -> Result:
        return Result(params={}, posterior=state.samples, sample_stats=state.stats)

    def state_arrays(self, state):
        return {}, {}


@dataclasses.dataclass(frozen=True)
class NUTS(_MCMC):
    """The No-U-Turn Sampler with step-size and mass-matrix adaptation during warm-up.

    Args:
        num_samples: draws kept per chain.
        num_warmup: adaptation steps per chain (discarded).
        num_chains: independent chains, each from its own initial point.
        target_accept_prob: the acceptance rate step-size adaptation aims at.
        max_tree_depth: trajectories have at most 2**max_tree_depth leapfrog steps.
        dense_mass: adapt a dense (full) mass matrix instead of a diagonal one.
        chain_method: NumPyro only: "sequential", "vectorized" (chains in one batched program)
            or "parallel" (one device per chain).
        progress_bar: show the backend's own progress bar (default: when stderr is a terminal).

    Example:
        >>> fit = ppgen.fit(models.PPCA(10, 3), x, inference.NUTS(num_samples=500), backend="numpyro")
        >>> az.summary(fit.to_arviz())
    """

    max_tree_depth: int = 10
    chain_method: Literal["sequential", "vectorized", "parallel"] = "sequential"

    name: ClassVar[str] = "nuts"
    title: ClassVar[str] = "NUTS"

    def _validate(self):
        super()._validate()
        self._require(1 <= self.max_tree_depth <= 15, f"max_tree_depth must be in 1..15; got {self.max_tree_depth}")


@dataclasses.dataclass(frozen=True)
class HMC(_MCMC):
    """Hamiltonian Monte Carlo with a fixed trajectory length (Neal 2011).

    Args:
        step_size: initial leapfrog step size (adapted during warm-up).
        trajectory_length: integration time of each trajectory (num_steps = length / step).
        (other arguments as :class:`NUTS`)
    """

    step_size: float = 0.1
    trajectory_length: float = 1.0
    chain_method: Literal["sequential", "vectorized", "parallel"] = "sequential"

    name: ClassVar[str] = "hmc"
    title: ClassVar[str] = "HMC"

    def _validate(self):
        super()._validate()
        self._require(self.step_size > 0, f"step_size must be positive; got {self.step_size}")
        self._require(self.trajectory_length > 0, f"trajectory_length must be positive; got {self.trajectory_length}")


def _show_progress(alg) -> bool:
    """The sampler's own bar: in a terminal or a notebook unless ``progress_bar`` says otherwise."""
    from ppgen.fit import display

    return display() != "log" if alg.progress_bar is None else alg.progress_bar


def _chain_done(alg, backend: str, chain: int, seconds: float) -> None:
    import sys

    if alg.progress_bar is None and not _show_progress(alg):
        which = f"chain {chain + 1} of {alg.num_chains}" if backend == "pyro" else f"all {alg.num_chains} chain(s)"
        print(f"ppgen: {alg.title} · {backend}: {which} done, {seconds:.0f} s so far", file=sys.stderr, flush=True)


def _announce(alg, backend: str, chains: int) -> None:
    """Without a bar (a batch job, a log file): say what runs, since one step may take minutes."""
    import sys

    if alg.progress_bar is None and not _show_progress(alg):
        print(f"ppgen: {alg.title} · {backend}: {chains} chain(s) of {alg.num_warmup} warm-up and {alg.num_samples} "
              f"draws started (progress_bar=True draws a bar)", file=sys.stderr, flush=True)


def _run_pyro(alg: _MCMC, model, batch, seed, init_values=None):
    import pyro.infer as pi
    from pyro.infer.autoguide.initialization import init_to_median, init_to_value

    be = get_backend("pyro")
    chains, diverging, accept = [], [], []
    _announce(alg, "pyro", alg.num_chains)
    started = time.perf_counter()
    for chain in range(alg.num_chains):
        init = init_to_median
        if init_values is not None:
            values = {k: be.asarray(v, "float32", batch["x"].device) for k, v in init_values(chain).items()}
            init = init_to_value(values=values)
        if isinstance(alg, NUTS):
            kernel = pi.NUTS(model, target_accept_prob=alg.target_accept_prob, max_tree_depth=alg.max_tree_depth,
                             full_mass=alg.dense_mass, jit_compile=True, ignore_jit_warnings=True,
                             init_strategy=init)
        else:
            kernel = pi.HMC(model, step_size=alg.step_size, trajectory_length=alg.trajectory_length,
                            target_accept_prob=alg.target_accept_prob, full_mass=alg.dense_mass,
                            jit_compile=True, ignore_jit_warnings=True, init_strategy=init)
        mcmc = pi.MCMC(kernel, num_samples=alg.num_samples, warmup_steps=alg.num_warmup,
                       disable_progbar=not _show_progress(alg))
        rng = {"rng": None}
        with be.rng(rng, seed * 1000 + chain), _pyro_default_device(batch["x"].device):
            mcmc.run(**batch)
            samples = mcmc.get_samples()
            samples.update(_pyro_deterministic(model, samples, batch))
        chains.append({k: be.to_numpy(v) for k, v in samples.items()})
        diag = mcmc.diagnostics()
        flags = np.zeros(alg.num_samples, dtype=bool)
        flags[np.asarray(diag["divergences"]["chain 0"], dtype=int)] = True
        diverging.append(flags)
        accept.append(np.full(alg.num_samples, float(diag["acceptance rate"]["chain 0"])))
        _chain_done(alg, "pyro", chain, time.perf_counter() - started)
    posterior = {k: np.stack([c[k] for c in chains]) for k in chains[0]}
    return posterior, {"diverging": np.stack(diverging), "accept_prob": np.stack(accept)}


def _pyro_default_device(device):
    """Pyro's HMC and NUTS make some of their tensors (step-size adaptation, traced potential) on
    torch's default device; when that is not the fit's device (a GPU), they run under torch's
    device context, which puts them on the fit's device. On the default device nothing changes
    (the context costs about a fifth of each small operation)."""
    import contextlib

    import torch

    if torch.get_default_device() == device:
        return contextlib.nullcontext()
    return torch.device(device)


def _pyro_deterministic(model, samples: dict, batch: dict) -> dict:
    """Values of the model's deterministic sites for each draw (Pyro's MCMC keeps only latents)."""
    import torch
    from pyro import poutine

    num = next(iter(samples.values())).shape[0]
    out: dict = {}
    with torch.no_grad():
        for i in range(num):
            tr = poutine.trace(poutine.condition(model, {k: v[i] for k, v in samples.items()})).get_trace(**batch)
            for name, site in tr.nodes.items():
                if site["type"] == "sample" and site["infer"].get("_deterministic"):
                    out.setdefault(name, []).append(site["value"])
    return {k: torch.stack(v) for k, v in out.items()}


def _run_numpyro(alg: _MCMC, model, batch, seed, init_values=None):
    import jax
    import numpyro.infer as ni
    from numpyro.infer import init_to_median

    if isinstance(alg, NUTS):
        kernel = ni.NUTS(model, target_accept_prob=alg.target_accept_prob, max_tree_depth=alg.max_tree_depth,
                         dense_mass=alg.dense_mass, init_strategy=init_to_median)
    else:
        kernel = ni.HMC(model, step_size=alg.step_size, trajectory_length=alg.trajectory_length,
                        target_accept_prob=alg.target_accept_prob, dense_mass=alg.dense_mass,
                        init_strategy=init_to_median)
    mcmc = ni.MCMC(kernel, num_warmup=alg.num_warmup, num_samples=alg.num_samples, num_chains=alg.num_chains,
                   chain_method=alg.chain_method if alg.num_chains > 1 else "sequential",
                   progress_bar=_show_progress(alg))
    fields = ("diverging", "accept_prob", "num_steps", "energy", "potential_energy")
    init_params = None
    if init_values is not None:
        import jax.numpy as jnp
        from numpyro.infer.util import unconstrain_fn

        starts = [unconstrain_fn(model, (), batch, {k: jnp.asarray(v, dtype=jnp.float32) for k, v in
                                                    init_values(chain).items()}) for chain in range(alg.num_chains)]
        init_params = starts[0] if alg.num_chains == 1 else jax.tree_util.tree_map(lambda *a: jnp.stack(a), *starts)
    _announce(alg, "numpyro", alg.num_chains)
    started = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), extra_fields=fields, init_params=init_params, **batch)
    _chain_done(alg, "numpyro", alg.num_chains - 1, time.perf_counter() - started)  # its chains end together
    posterior = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    stats = {"diverging": extra["diverging"], "accept_prob": extra["accept_prob"],
             "n_steps": extra["num_steps"], "energy": extra["energy"], "lp": -extra["potential_energy"]}
    return posterior, stats

