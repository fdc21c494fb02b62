"""The protocol every inference algorithm follows, and the checks they share."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, NamedTuple, Optional

import numpy as np

from ppgen.config import Config
from ppgen.errors import IncompatibleInference

__all__ = ["Inference", "Kernel", "Result", "Plan", "info_with_metrics", "set_learning_rate", "torch_average_"]


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


class Plan(NamedTuple):
    """What a fit of one model by one algorithm is, settled once before any work
    (:meth:`Inference.plan`); ``ppgen.fit`` reads it and asks the algorithm nothing else about
    the model.

    Attributes:
        inference: the algorithm with the settings that depend on the model filled in
            (:meth:`Inference.resolve_for`); the run's config records this one.
        form: the form of the model it fits (:meth:`Inference.form_for`).
        guide: the family guide to build (:meth:`Inference.guide_for`), or None.
        build_options: extra keywords for ``model.build`` (:meth:`Inference.build_options`).
        num_data: the number of training examples.
        batch_size: examples per step (:meth:`Inference.batch_size_for`; ``num_data`` for a
            full-batch algorithm).
        num_steps: steps of the whole run (:meth:`Inference.num_steps`).
        steps_per_epoch: steps that see every training example once.
    """

    inference: Any
    form: str
    guide: Optional[str]
    build_options: dict
    num_data: int
    batch_size: int
    num_steps: int
    steps_per_epoch: int

    @property
    def num_epochs(self) -> int:
        """Epochs of the whole run (the last one may be partial)."""
        return math.ceil(self.num_steps / max(self.steps_per_epoch, 1))


@dataclasses.dataclass(frozen=True)
class Inference(Config):
    """Base of inference objects: frozen, typed, validated configuration plus init/step.

    ``step`` returns ``(state, info)`` with ``info`` a NamedTuple: its float fields become the
    step's record in ``Fit.history``; a boolean field ``done`` that is True ends the run (an
    algorithm that decides its own end, such as EM after its restarts: see :meth:`finished`).
    """

    kind: ClassVar[str] = "inference"
    #: True when every step sees the whole training set (closed form, EM, MCMC)
    full_batch: ClassVar[bool] = True
    #: what the algorithm needs from a family: a form, or a method such as "em"
    title: ClassVar[str] = "inference"
    #: options that shape the algorithm's state (which arrays a checkpoint holds): resuming a
    #: checkpoint with other values is refused; every other option (learning rate, its schedule,
    #: steps, epochs, batch size, ...) may change between a checkpoint and its resumption
    state_fields: ClassVar[tuple] = ()
    #: the options that set learning rates, which a diverged run is resumed with smaller values
    #: of; None (the default): those of the fields ``lr``, ``lr_generator`` and
    #: ``lr_discriminator`` that the class has (see :meth:`learning_rate_options`)
    learning_rates: ClassVar[Optional[tuple]] = None

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

    def refuse(self, model, what: str) -> None:
        """Raise IncompatibleInference: this algorithm cannot fit ``model`` because of ``what``
        (or the family's own reason in ``model.refusals``), naming the algorithms that can. For
        :meth:`form_for`, a person's own algorithm included."""
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

    def plan(self, model, num_data: int) -> Plan:
        """The :class:`Plan` of fitting ``model`` to ``num_data`` examples: the form (refusing a
        mismatch, with an error naming what would work, before any work), the settings that
        depend on the model, the guide and build options, and the loop's sizes."""
        form = self.form_for(model)
        resolved = self.resolve_for(model)
        batch_size = resolved.batch_size_for(num_data)
        return Plan(inference=resolved, form=form, guide=resolved.guide_for(model),
                    build_options=resolved.build_options(model), num_data=num_data, batch_size=batch_size,
                    num_steps=resolved.num_steps(num_data), steps_per_epoch=math.ceil(num_data / max(batch_size, 1)))

    def learning_rate_options(self) -> tuple:
        """The names of this algorithm's learning-rate options (:attr:`learning_rates`); empty
        when it has none (closed form, EM, MCMC)."""
        if self.learning_rates is not None:
            return tuple(self.learning_rates)
        fields = {f.name for f in dataclasses.fields(self)}
        return tuple(name for name in ("lr", "lr_generator", "lr_discriminator") if name in fields)

    def finished(self, info) -> bool:
        """Whether the step that returned ``info`` ends the run: its ``done`` field (False when
        the info has none; the loop then runs :meth:`num_steps` steps)."""
        return bool(info._asdict().get("done", False))

    # ---- the protocol --------------------------------------------------------------------
    def num_steps(self, num_data: int) -> int:
        return 1

    def batch_size_for(self, num_data: int) -> int:
        return num_data

    def bind(self, program) -> "Kernel":
        """This algorithm bound to ``program`` (a BuiltProgram): the :class:`Kernel` that makes,
        advances, reads and saves the fit's state. What is fixed for the whole run (the program,
        compiled functions, the optimiser's rule) lives on the kernel; what changes from step to
        step lives in the state, a NamedTuple of arrays and numbers."""
        raise NotImplementedError(f"{type(self).__name__} does not implement bind(program)")


class Kernel:
    """An inference algorithm bound to one built program (made by :meth:`Inference.bind`).

    The kernel keeps what is fixed for the run: the algorithm's settings (``inference``), the
    program, and whatever the algorithm compiles once (a jitted update, a loss, an optimiser's
    update rule), at ``bind`` or, where it needs the first batch's shapes, in :meth:`init`. The *state* it makes and advances is a NamedTuple of the changing data only
    (the step, parameters, optimiser moments, random-number state, ...): no classes, no
    closures, so it can be inspected, compared and checkpointed. ``ppgen.fit`` drives it::

        kernel = inference.bind(program)
        state = kernel.init(batch, seed)
        for step in range(plan.num_steps):
            state, info = kernel.step(state, next_batch)   # info: a NamedTuple of numbers
        result = kernel.result(state, full_batch)

    Attributes:
        inference: the algorithm (a frozen :class:`Inference`).
        program: the BuiltProgram it fits.
    """

    def __init__(self, inference: Inference, program):
        self.inference = inference
        self.program = program

    def init(self, batch: dict, seed: int) -> tuple:
        """The state before the first step (``batch``: the first batch, for shapes)."""
        raise NotImplementedError

    def step(self, state: tuple, batch: dict) -> tuple:
        """``(new state, info)``: one step on ``batch``; ``info`` is a NamedTuple whose float
        fields become the step's record in ``Fit.history`` (see :meth:`Inference.finished`)."""
        raise NotImplementedError

    def result(self, state: tuple, batch: Optional[dict] = None) -> Result:
        """The fit's Result; ``batch`` (the whole training set) is where posterior draws are taken."""
        raise NotImplementedError

    def evaluate(self, state: tuple, batch: dict) -> float:
        """The algorithm's loss per example on ``batch`` (for validation), or NaN."""
        return float("nan")

    # ---- checkpoints -----------------------------------------------------------------
    def state_arrays(self, state: tuple) -> tuple[dict, dict]:
        """(arrays, json-able meta) that :meth:`restore_state` turns back into a state."""
        params = self.result(state).params
        return {f"params/{k}": np.asarray(v) for k, v in params.items()}, {}

    def restore_state(self, state: tuple, arrays: dict, meta: dict) -> tuple:
        """``state`` with the values of a checkpoint (``state_arrays``' output); refuses arrays
        that do not fit this program."""
        raise NotImplementedError(f"{self.inference.title} cannot resume from a checkpoint")


@functools.lru_cache(maxsize=None)
def _info_class(base: type, names: tuple) -> type:
    reserved = set(base._fields) | {"step", "epoch", "seconds"}
    bad = [n for n in names if n in reserved or not n.isidentifier() or n.startswith("_")]
    if bad:
        from ppgen.errors import ConfigError

        raise ConfigError(f"a loss's metric {bad[0]!r} cannot be a history column: metric names are identifiers, "
                          f"not starting with '_', other than {sorted(reserved)}; rename it")
    return NamedTuple(base.__name__, [(f, base.__annotations__.get(f, float)) for f in base._fields]
                      + [(n, float) for n in names])


def info_with_metrics(info: tuple, metrics: dict) -> tuple:
    """``info`` (an algorithm's info NamedTuple) with a loss's ``metrics`` (numbers by name) as
    extra fields, which ``Fit.history`` records like the others; ``info`` itself when there are
    none. A metric named like a field of ``info`` or of the history (step, epoch, seconds), or
    that is not an identifier, is refused."""
    if not metrics:
        return info
    values = [float(v.detach()) if hasattr(v, "detach") else float(v) for v in metrics.values()]
    return _info_class(type(info), tuple(metrics))(*info, *values)


def set_learning_rate(optimizer, lr: float) -> None:
    """Set every parameter group of a torch optimiser to ``lr`` (the Pyro kernels' schedules)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def torch_average_(average: dict, params: dict, decay: float) -> None:
    """The moving average by name, in place: ``average ← decay · average + (1 − decay) · params``
    (one fused update over every tensor, without gradients)."""
    import torch

    names = list(average)
    with torch.no_grad():
        torch._foreach_lerp_([average[n] for n in names], [params[n].detach() for n in names], 1.0 - decay)


def _model_label(model) -> str:
    return "a user Program" if model.family == "program" else f"{type(model).__name__}"
