"""Expectation–maximisation for families with closed-form E and M steps (PPCA)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import numpy as np

from ppgen.backends import get_backend

from .base import Inference, Result

__all__ = ["EM"]


class EMInfo(NamedTuple):
    log_likelihood: float   # mean per example, of the parameters before this step
    change: float           # change of the mean log-likelihood since the last step
    converged: bool


@dataclasses.dataclass(frozen=True)
class EM(Inference):
    """EM in the backend's own arrays (float64), so the same code runs on CPU or GPU.

    Each step is one E-step and one M-step. It stops when the mean log-likelihood per
    example changes by less than ``tol`` or after ``max_iter`` steps.

    Args:
        max_iter: most EM iterations.
        tol: stop when the mean log-likelihood improves by less than this (nats per example).

    Example:
        >>> fit = ppgen.fit(models.PPCA(64, 8), data, inference.EM(tol=1e-8))
        >>> fit.history[-1]["log_likelihood"]
    """

    max_iter: int = 1000
    tol: float = 1e-7

    name: ClassVar[str] = "em"
    title: ClassVar[str] = "EM"

    def _validate(self):
        self._require(self.max_iter >= 1, f"max_iter must be at least 1; got {self.max_iter}")
        self._require(self.tol >= 0 and math.isfinite(self.tol), f"tol must be >= 0; got {self.tol}")

    def form_for(self, model) -> str:
        if "em" not in model.methods:
            self._refuse(model, "it has no closed-form E and M steps")
        return "marginal"

    def num_steps(self, num_data: int) -> int:
        return self.max_iter

    def init(self, program, batch, seed):
        be = get_backend(program.backend)
        with be.precise():
            x = be.asarray(be.to_numpy(batch["x"]), "float64", batch["x"].device)
            params = program.spec.em_init(be.xp, x, seed)
        return {"program": program, "params": params, "x": x, "stats": None, "last": -math.inf}

    def step(self, state, batch):
        program = state["program"]
        be = get_backend(program.backend)
        with be.precise():
            params, mean_ll, stats = program.spec.em_step(be.xp, state["x"], state["params"], state["stats"])
            mean_ll = float(mean_ll)
        change = mean_ll - state["last"]
        new = dict(state, params=params, stats=stats, last=mean_ll)
        return new, EMInfo(mean_ll, change, bool(abs(change) < self.tol))

    def result(self, state, batch=None) -> Result:
        be = get_backend(state["program"].backend)
        return Result(params={k: np.asarray(be.to_numpy(v)) for k, v in state["params"].items()})

    def restore_state(self, state, arrays, meta):
        be = get_backend(state["program"].backend)
        with be.precise():
            params = {k.split("/", 1)[1]: be.asarray(v, "float64", state["x"].device)
                      for k, v in arrays.items() if k.startswith("params/")}
        return dict(state, params=params, last=meta.get("last", -math.inf))

    def state_arrays(self, state):
        arrays, _ = super().state_arrays(state)
        return arrays, {"last": state["last"] if math.isfinite(state["last"]) else None}
