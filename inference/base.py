"""The protocol every inference algorithm follows, and the checks they share."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple, Optional

import numpy as np

from ppgen.config import Config
from ppgen.errors import IncompatibleInference

__all__ = ["Inference", "Result"]


class Result(NamedTuple):
    """What a finished fit keeps, backend-free.

    Attributes:
        params: point estimates by name (numpy arrays); may be empty.
        posterior: draws by site name, each of shape (chains, draws, ...); or None.
        sample_stats: MCMC statistics by name, each (chains, draws); or None.
    """

    params: dict
    posterior: Optional[dict] = None
    sample_stats: Optional[dict] = None


@dataclasses.dataclass(frozen=True)
class Inference(Config):
    """Base of inference objects: frozen, typed, validated configuration plus init/step."""

    kind: ClassVar[str] = "inference"
    #: True when every step sees the whole training set (closed form, EM, MCMC)
    full_batch: ClassVar[bool] = True
    #: what the algorithm needs from a family: a form, or a method such as "em"
    title: ClassVar[str] = "inference"
    #: options that shape the algorithm's state (which arrays a checkpoint holds): resuming a
    #: checkpoint with other values is refused; every other option (learning rate, its schedule,
    #: steps, epochs, batch size, ...) may change between a checkpoint and its resumption
    state_fields: ClassVar[tuple] = ()

    def state_signature(self) -> dict:
        """The values of :attr:`state_fields` (and whether a moving average is kept), which a
        resumed run must share with its checkpoint."""
        out = {name: getattr(self, name) for name in self.state_fields}
        if hasattr(self, "ema"):
            out["ema"] = bool(getattr(self, "ema"))
        return {k: (v.name if hasattr(v, "name") and not isinstance(v, str) else v) for k, v in out.items()}

    # ---- compatibility ---------------------------------------------------------------
    def form_for(self, model) -> str:
        """The form of ``model`` this algorithm fits; raise IncompatibleInference otherwise."""
        raise NotImplementedError

    def guide_for(self, model) -> Optional[str]:
        """The family guide the algorithm wants built (local guides), or None."""
        return None

    def _refuse(self, model, what: str) -> None:
        from ppgen.registry import working_inference

        reason = model.refusals.get(self.name) or what
        options = working_inference(model)
        hint = f"; use {' or '.join(options)}" if options else ""
        raise IncompatibleInference(f"{self.title} cannot fit {_model_label(model)}: {reason}{hint}")

    def resolve_for(self, model) -> "Inference":
        """This object with settings that depend on ``model`` filled in (default: itself)."""
        return self

    def build_options(self, model) -> dict:
        """Extra keywords for ``model.build`` (e.g. ``enumerate=True`` for an enumerated ELBO)."""
        return {}

    # ---- the protocol --------------------------------------------------------------------
    def num_steps(self, num_data: int) -> int:
        return 1

    def batch_size_for(self, num_data: int) -> int:
        return num_data

    def init(self, program, batch: dict, seed: int) -> Any:
        raise NotImplementedError

    def step(self, state, batch: dict):
        raise NotImplementedError

    def result(self, state, batch=None) -> Result:
        """The fit's Result; ``batch`` (the whole training set) is where posterior draws are taken."""
        raise NotImplementedError

    def evaluate(self, state, batch: dict) -> float:
        """The algorithm's loss per example on ``batch`` (for validation), or NaN."""
        return float("nan")

    # ---- checkpoints -----------------------------------------------------------------
    def state_arrays(self, state) -> tuple[dict, dict]:
        """(arrays, json-able meta) that ``restore_state`` turns back into ``state``."""
        params = self.result(state).params
        return {f"params/{k}": np.asarray(v) for k, v in params.items()}, {}

    def restore_state(self, state, arrays: dict, meta: dict):
        raise NotImplementedError(f"{self.title} cannot resume from a checkpoint")


def _model_label(model) -> str:
    return "a user Program" if model.family == "program" else f"{type(model).__name__}"
