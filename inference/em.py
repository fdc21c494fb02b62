"""Expectation–maximisation for families with closed-form E and M steps (PPCA, GMM)."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, NamedTuple, Optional

import numpy as np

from ppgen.backends import get_backend
from ppgen.errors import ConfigError, DataError

from .base import Inference, Kernel, Result

__all__ = ["EM", "EMInfo", "EMState"]

INITS = ("auto", "kmeans", "kmeans++", "random")


class EMState(NamedTuple):
    params: dict            # the current run's parameters, backend arrays (float64)
    last: float             # the mean log-likelihood of the last step of this run (-inf at its start)
    iteration: int          # steps taken in this run
    restart: int            # which of the n_init runs this is (0-based)
    best: Optional[tuple]   # (final mean log-likelihood, params) of the best finished run, or None


class EMInfo(NamedTuple):
    log_likelihood: float   # mean per example, of the parameters before this step
    change: float           # change of the mean log-likelihood since the last step of this restart
    converged: bool         # this restart changed by less than tol
    restart: int            # which of the n_init runs this step belongs to (0-based)
    done: bool              # every restart has finished: the fit is over


@dataclasses.dataclass(frozen=True)
class EM(Inference):
    """EM in the backend's own arrays (float64), so the same code runs on CPU or GPU.

    Each step is one E-step and one M-step. A run stops when the mean log-likelihood per
    example changes by less than ``tol`` or after ``max_iter`` steps. With ``n_init > 1``
    EM runs that many times from different starting points and keeps the run with the highest
    final log-likelihood; ``history`` records every step of every run (``restart``).

    Args:
        max_iter: most EM iterations per run.
        tol: a run stops when its mean log-likelihood changes by less than this (nats per example).
        n_init: independent runs; the best is kept.
        init_params: starting point: ``"auto"`` (the family's default: ``"kmeans"`` for mixtures,
            ``"random"`` for PPCA), ``"kmeans"`` (responsibilities from k-means++ then Lloyd's
            k-means), ``"kmeans++"`` (from the k-means++ seeding alone), ``"random"``, or a
            dict of starting parameters (for a GMM: ``weights``, ``locs`` and ``scale_tril`` /
            ``scales`` / ``covariances`` / scikit-learn-style ``precisions``).
        reg_covar: added to the diagonal of every covariance in the M-step, so components stay
            positive definite (mixtures; scikit-learn's ``reg_covar``).

    Example:
        >>> fit = ppgen.fit(models.GMM(data_dim=2, num_components=3), x, inference.EM(n_init=5))
        >>> [r["log_likelihood"] for r in fit.history]
    """

    max_iter: int = 1000
    tol: float = 1e-7
    n_init: int = 1
    init_params: Any = "auto"
    reg_covar: float = 1e-6

    name: ClassVar[str] = "em"
    title: ClassVar[str] = "EM"

    def _validate(self):
        self._require(self.max_iter >= 1, f"max_iter must be at least 1; got {self.max_iter}")
        self._require(self.tol >= 0 and math.isfinite(self.tol), f"tol must be >= 0; got {self.tol}")
        self._require(self.n_init >= 1, f"n_init must be at least 1; got {self.n_init}")
        self._require(self.reg_covar >= 0 and math.isfinite(self.reg_covar),
                      f"reg_covar must be >= 0; got {self.reg_covar}")
        if not isinstance(self.init_params, dict) and self.init_params not in INITS:
            from ppgen.config import suggest

            raise ConfigError(f"EM.init_params={self.init_params!r} is not one of {list(INITS)} or a dict of starting "
                              f"parameters.{suggest(str(self.init_params), INITS)}")
        self._require(not (isinstance(self.init_params, dict) and self.n_init > 1),
                      f"n_init={self.n_init} restarts from one given starting point would repeat the same "
                      f"run; use n_init=1 with init_params=dict")

    def to_config(self) -> dict:
        config = super().to_config()
        if isinstance(self.init_params, dict):
            config["options"]["init_params"] = {k: np.asarray(v).tolist() for k, v in self.init_params.items()}
        return config

    def form_for(self, model) -> str:
        if "em" not in model.methods:
            self.refuse(model, "it has no closed-form E and M steps")
        return "marginal"

    def num_steps(self, num_data: int) -> int:
        return self.max_iter * self.n_init

    def bind(self, program) -> "EMKernel":
        return EMKernel(self, program)


class EMKernel(Kernel):
    """EM bound to a program: the data in float64 and the compiled E+M step, kept for the run."""

    def __init__(self, inference: EM, program):
        super().__init__(inference, program)
        self.be = get_backend(program.backend)
        self.em_step = _compiled_step(program.backend, program.spec, inference.reg_covar)
        self.x = self.data = None
        self.seed = 0

    def init(self, batch, seed) -> EMState:
        be, spec, em = self.be, self.program.spec, self.inference
        with be.precise():
            self.x = be.asarray(self.program.precise_data(batch), "float64", batch["x"].device)
            self.data = spec.em_data(be.xp, self.x)
            params = spec.em_init(be.xp, self.x, seed, em.init_params, em.reg_covar)
        self.seed = seed
        return EMState(params=params, last=-math.inf, iteration=0, restart=0, best=None)

    def step(self, state, batch):
        em = self.inference
        with self.be.precise():
            params, mean_ll = self.em_step(self.data, state.params)
            mean_ll = float(mean_ll)
        if not math.isfinite(mean_ll):
            raise DataError(f"EM step {state.iteration + 1} of run {state.restart} gave log-likelihood "
                            f"{mean_ll}: " + self.program.spec.em_failure_hint)
        change = mean_ll - state.last
        converged = abs(change) < em.tol
        restart, done = state.restart, False
        state = state._replace(params=params, last=mean_ll, iteration=state.iteration + 1)
        if converged or state.iteration >= em.max_iter:
            state = self._finish_run(state)
            done = state.restart == restart  # no new run was started
        return state, EMInfo(mean_ll, change, bool(converged), restart, done)

    def _finish_run(self, state: EMState) -> EMState:
        """Keep the better of this run and the best so far; start the next run if any remain."""
        em, be = self.inference, self.be
        if em.n_init > 1:
            with be.precise():
                final = float(self.em_step(self.data, state.params)[1])
            if state.best is None or final > state.best[0]:
                state = state._replace(best=(final, state.params))
        if state.restart + 1 >= em.n_init:
            return state if state.best is None else state._replace(params=state.best[1])
        restart = state.restart + 1
        with be.precise():
            params = self.program.spec.em_init(be.xp, self.x, self.seed + 7919 * restart, em.init_params,
                                               em.reg_covar)
        return state._replace(params=params, restart=restart, iteration=0, last=-math.inf)

    def result(self, state, batch=None) -> Result:
        params = state.params
        if state.best is not None and state.restart + 1 < self.inference.n_init:
            params = state.best[1]  # stopped early (a callback): the best finished run so far
        return Result(params={k: np.asarray(self.be.to_numpy(v)) for k, v in params.items()})

    # ---- checkpoints ---------------------------------------------------------------------
    def state_arrays(self, state):
        be = self.be
        arrays = {f"params/{k}": np.asarray(be.to_numpy(v)) for k, v in state.params.items()}
        meta = {"last": state.last if math.isfinite(state.last) else None,
                "iteration": state.iteration, "restart": state.restart, "best": None}
        if state.best is not None:
            arrays.update({f"best/{k}": np.asarray(be.to_numpy(v)) for k, v in state.best[1].items()})
            meta["best"] = state.best[0]
        return arrays, meta

    def restore_state(self, state, arrays, meta):
        be, device = self.be, self.x.device

        def group(prefix):
            return {k.split("/", 1)[1]: be.asarray(v, "float64", device) for k, v in arrays.items()
                    if k.startswith(prefix + "/")}

        with be.precise():
            params = group("params")
            best = (meta["best"], group("best")) if meta.get("best") is not None else None
        last = meta.get("last")
        return EMState(params=params, last=-math.inf if last is None else last,
                       iteration=meta.get("iteration", 0), restart=meta.get("restart", 0), best=best)


@functools.lru_cache(maxsize=32)
def _compiled_step(backend: str, spec, reg_covar: float):
    """``(data, params) -> (new params, mean log-likelihood)``; compiled with ``jax.jit`` for numpyro.

    Cached per (backend, spec, reg_covar), so that fitting the same family again (restarts, a
    range of seeds) reuses the compiled step instead of compiling it anew."""
    be = get_backend(backend)
    xp = be.xp

    def step(data, params):
        return spec.em_step(xp, data, params, reg_covar)

    if backend == "numpyro":
        import jax

        return jax.jit(step)
    return step
