"""Maximum likelihood by formula, for families that have one (PPCA: Tipping & Bishop 1999)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple, Optional

from ppgen.backends import get_backend

from .base import Inference, Kernel, Result

__all__ = ["ClosedForm", "ClosedFormState", "ClosedFormInfo"]


class ClosedFormState(NamedTuple):
    params: Optional[dict]   # numpy arrays by name once the step has run; None before


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
            self.refuse(model, "it has no closed-form maximum-likelihood solution")
        return "marginal"

    def bind(self, program) -> "ClosedFormKernel":
        return ClosedFormKernel(self, program)


class ClosedFormKernel(Kernel):
    """One step: the family's closed-form maximum-likelihood parameters."""

    def init(self, batch, seed) -> ClosedFormState:
        return ClosedFormState(params=None)

    def step(self, state, batch):
        program = self.program
        be = get_backend(program.backend)
        with be.precise():
            x = be.asarray(program.precise_data(batch), "float64", batch["x"].device)
            params = {k: be.to_numpy(v) for k, v in program.spec.closed_form(be.xp, x).items()}
            mean_ll = program.spec.log_likelihood(program.backend, params, be.to_numpy(x)).mean()
        return ClosedFormState(params=params), ClosedFormInfo(float(mean_ll))

    def result(self, state, batch=None) -> Result:
        return Result(params=dict(state.params or {}))
