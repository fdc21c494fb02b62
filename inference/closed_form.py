"""Maximum likelihood by formula, for families that have one (PPCA: Tipping & Bishop 1999)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

from ppgen.backends import get_backend

from .base import Inference, Result

__all__ = ["ClosedForm"]


class ClosedFormInfo(NamedTuple):
    log_likelihood: float   # mean per training example


@dataclasses.dataclass(frozen=True)
class ClosedForm(Inference):
    """Closed-form maximum-likelihood fit, computed in float64 in the backend's own arrays.

    Example:
        >>> fit = ppgen.fit(models.PPCA(64, 8), data, inference.ClosedForm())
    """

    name: ClassVar[str] = "closed_form"
    title: ClassVar[str] = "ClosedForm"

    def form_for(self, model) -> str:
        if "closed_form" not in model.methods:
            self._refuse(model, "it has no closed-form maximum-likelihood solution")
        return "marginal"

    def init(self, program, batch, seed):
        return {"program": program, "params": None}

    def step(self, state, batch):
        program = state["program"]
        be = get_backend(program.backend)
        with be.precise():
            x = be.asarray(program.precise_data(batch), "float64", batch["x"].device)
            params = program.spec.closed_form(be.xp, x)
            mean_ll = program.spec.log_likelihood(program.backend, {k: be.to_numpy(v) for k, v in params.items()},
                                                  be.to_numpy(x)).mean()
        state = {"program": program, "params": {k: be.to_numpy(v) for k, v in params.items()}}
        return state, ClosedFormInfo(float(mean_ll))

    def result(self, state, batch=None) -> Result:
        return Result(params=dict(state["params"]))

