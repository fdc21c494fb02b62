"""``ppgen.fit``: the one training loop, and ``Fit``, the result people inspect.

The loop is written once for every algorithm and backend: it validates the request, builds the
model's program for the backend, draws minibatches, calls the algorithm's ``step``, records
``history``, shows progress, evaluates on validation data for early stopping, runs callbacks,
writes atomic checkpoints, resumes from them, and stops on a diverging loss with the last good
checkpoint kept.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple, Optional, Sequence

import numpy as np

from . import checkpoint as ckpt
from .backends import BACKENDS, check_device, get_backend
from .config import Config
from .errors import CheckpointError, ConfigError, DataError, Diverged
from .registry import (default_inference, inference_classes, inference_from_config, model_from_config,
                       resolve_inference, resolve_model)

__all__ = ["fit", "load", "compare", "Fit", "EarlyStopping", "StepEvent"]

DEFAULT_BACKEND = "numpyro"


@dataclasses.dataclass(frozen=True)
class EarlyStopping(Config):
    """Stop when a validation metric stops improving; keep the best state.

    Args:
        metric: ``"val_loss"`` (the algorithm's loss per example on the validation split) or
            ``"val_log_likelihood"`` (the family's log-likelihood per example).
        every: evaluate every this many steps.
        patience: stop after this many evaluations without improvement.
        min_delta: an improvement smaller than this does not count.
        restore_best: end with the state of the best evaluation.
    """

    metric: Literal["val_loss", "val_log_likelihood"] = "val_loss"
    every: int = 100
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True

    name = "early_stopping"

    def _validate(self):
        self._require(self.every >= 1, f"every must be at least 1; got {self.every}")
        self._require(self.patience >= 1, f"patience must be at least 1; got {self.patience}")
        self._require(self.min_delta >= 0, f"min_delta must be >= 0; got {self.min_delta}")


class StepEvent(NamedTuple):
    """What a callback receives after each step. Return True from the callback to stop."""

    step: int
    epoch: int
    info: Any
    history: list


def _as_dataset(data):
    from .datasets import Dataset, from_arrays

    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        from .datasets import load as load_dataset

        return load_dataset(str(data))
    if isinstance(data, dict):
        raise DataError(f"data is a dict with keys {sorted(map(str, data))}; ppgen.fit takes a Dataset, a dataset "
                        f"name or one array (all of it training data). For splits pass "
                        f"datasets.from_arrays(train, val=..., test=..., labels=...)")
    if isinstance(data, (tuple, list)) and data and all(np.ndim(part) >= 2 for part in data):
        raise DataError(f"data is a {type(data).__name__} of {len(data)} arrays; ppgen.fit takes one array (all of "
                        f"it training data) or a Dataset. For splits pass datasets.from_arrays(train, val, test)")
    return from_arrays(data)


def fit(model, data, inference=None, *, backend: Optional[str] = None, device: str = "cpu",
        seed: int = 0, progress: Optional[bool] = None, callbacks: Sequence[Callable] = (),
        early_stopping: Optional[EarlyStopping] = None, run_dir=None,
        checkpoint_every: Optional[int] = None, resume: bool = False, samples_every: Optional[int] = None,
        **model_options) -> "Fit":
    """Fit ``model`` to ``data`` with ``inference`` and return a :class:`Fit`.

    Args:
        model: a spec (``models.PPCA(...)``), a family name (``"ppca"``, with options as keyword
            arguments; ``data_dim`` is read from the data), or a ``ppgen.Program``.
        data: a ``Dataset``, a dataset name, or an array (all of it training data).
        inference: an inference object or a name ("closed_form", "em", "svi", "nuts", "hmc",
            "adversarial"); default: the family's own (adversarial for GANs and AAEs, else SVI).
        backend: "pyro" or "numpyro" (default: a Program's own backend, else "numpyro").
        device: "cpu", "cuda" or "cuda:N": where the data, parameters and every array of the fit,
            its evaluations and its samples live.
        seed: seeds everything: initial values, minibatch order, the algorithm's randomness.
        progress: None (default): a bar in a terminal, tqdm's display in a notebook, and
            otherwise (a batch job, a log file) a line every ``PPGEN_LOG_EVERY`` seconds (30);
            True forces a bar, False shows nothing.
        callbacks: functions called with a :class:`StepEvent` after each step; returning True stops.
        early_stopping: an :class:`EarlyStopping` rule on the validation split.
        run_dir: a folder for checkpoints and the finished run (``Fit.save``).
        checkpoint_every: write a checkpoint to ``run_dir`` every this many steps.
        resume: continue from the checkpoint in ``run_dir``, or start afresh when it holds none
            yet (so a pre-emptible job can always pass it). The model, the backend and the
            options that shape the algorithm's state must be those of the checkpoint; the
            learning rate and its schedule, steps, epochs, batch size, early stopping and seed
            may change (more steps extend a finished run; a smaller learning rate continues
            a diverged one).
        samples_every: write a picture of samples (an image grid, or a scatter of 2-D points) to
            ``run_dir/samples/epoch_<E>.png`` every this many epochs, with the same latent draws
            each time. Default (with ``run_dir``): for implicit models (GANs, AAEs), about 20
            pictures over the run; none for the other families.

    Returns:
        Fit: parameters and/or posterior draws, history, and methods to sample, score and inspect.

    Example:
        >>> data = ppgen.datasets.load("digits")
        >>> fit = ppgen.fit("ppca", data, "closed_form", latent_dim=8)
        >>> fit.log_likelihood(data.test).mean()
    """
    dataset = _as_dataset(data)
    spec = resolve_model(model, data_dim=dataset.data_dim, meta=dataset.meta, **model_options)
    alg = resolve_inference(default_inference(spec) if inference is None else inference)
    device = check_device(device)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r}: a seed is a non-negative integer, such as 0 or 1234")
    backend = backend or spec.backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    # settled once: the form (refusing a mismatch before any work), the model-dependent settings
    # (recorded in the config), the guide, the build options and the loop's sizes
    plan = alg.plan(spec, int(np.shape(dataset.train)[0]))
    if resume and run_dir is None:
        raise ConfigError("resume=True needs run_dir=, the folder that holds the checkpoint")
    if checkpoint_every is not None and (checkpoint_every < 1 or run_dir is None):
        raise ConfigError(f"checkpoint_every={checkpoint_every} needs run_dir= and a value >= 1")
    if samples_every is not None and (samples_every < 1 or run_dir is None):
        raise ConfigError(f"samples_every={samples_every} needs run_dir= (where the pictures go) and a value >= 1")

    x = spec.check_data(dataset.train, "training data")
    y = _labels(spec, dataset, "train", x.shape[0])
    x_val = y_val = None
    if early_stopping is not None:
        if dataset.val is None:
            raise DataError("early_stopping needs a validation split; this data has none. Pass "
                            "datasets.from_arrays(train, val=...) or drop early_stopping")
        x_val = spec.check_data(dataset.val, "validation data")
        y_val = _labels(spec, dataset, "val", x_val.shape[0])

    be = get_backend(backend)
    dev = be.setup(device)
    with be.placed(device):  # JAX makes its arrays (keys, constants) on the fit's device
        return _train(spec, plan, dataset, x, y, x_val, y_val, backend, be, dev, device, seed, progress,
                      callbacks, early_stopping, run_dir, checkpoint_every, resume, samples_every)


def _train(spec, plan, dataset, x, y, x_val, y_val, backend, be, dev, device, seed, progress, callbacks,
           early_stopping, run_dir, checkpoint_every, resume, samples_every) -> "Fit":
    """The loop of :func:`fit` following ``plan`` (:class:`ppgen.inference.base.Plan`), after
    its checks, on the fit's device."""
    alg = plan.inference
    program = spec.build(backend, plan.form, data=x, guide=plan.guide, seed=seed, device=device,
                         **plan.build_options)
    program.train = x
    num_data, batch_size, steps_per_epoch = plan.num_data, plan.batch_size, plan.steps_per_epoch
    total_steps = plan.num_steps
    xs = be.asarray(x, "float32", dev)
    ys = be.ppl.index(y, like=xs) if y is not None else None
    full_batch = _make_batch(be, xs, np.arange(num_data), dev, ys)

    orders: dict = {}

    def batch_at(step: int) -> dict:
        if batch_size >= num_data:
            return full_batch
        epoch, position = divmod(step, steps_per_epoch)
        if epoch not in orders:  # one permutation per epoch, drawn once
            orders.clear()
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(num_data)
        return _make_batch(be, xs, orders[epoch][position * batch_size:(position + 1) * batch_size], dev, ys)

    config = _run_config(spec, alg, backend, device, seed, dataset)
    kernel = alg.bind(program)
    state = kernel.init(batch_at(0), seed)
    history: list = []
    start = 0
    ckpt_dir = Path(run_dir) / "checkpoint" if run_dir is not None else None
    if resume:
        state, history, start = _restore_checkpoint(ckpt_dir, config, kernel, state)
    elif ckpt_dir is not None and (ckpt_dir / ckpt.CHECKPOINT_FILE).exists():
        (ckpt_dir / ckpt.CHECKPOINT_FILE).unlink()  # a fresh run: another run's checkpoint must not be resumed

    val_batch = None
    if x_val is not None:
        xs_val = be.asarray(x_val, "float32", dev)
        val_batch = _make_batch(be, xs_val, np.arange(x_val.shape[0]), dev,
                                be.ppl.index(y_val, like=xs_val) if y_val is not None else None)
    best = {"value": -math.inf, "arrays": None, "bad": 0}
    show = progress
    if samples_every is None and run_dir is not None and plan.form == "implicit":
        samples_every = max(1, plan.num_epochs // 20)
    bar = _progress(total_steps, start, show, f"{spec.name} · {alg.title} · {backend}")
    last_checkpoint = ckpt_dir if (resume and start > 0) else None
    step = start
    pending = None
    try:
        for step in range(start, total_steps):
            t0 = time.perf_counter()
            try:
                state, info = kernel.step(state, batch_at(step))
            except ValueError as e:  # a distribution refusing parameters that left their support
                if "constraint" not in str(e) and "invalid values" not in str(e):
                    raise
                raise Diverged(f"{alg.title} diverged at step {step + 1}: its parameters left their support "
                               f"({str(e).splitlines()[0][:200]}). {_divergence_advice(alg, last_checkpoint)}") from e
            record = {"step": step + 1, "epoch": step // steps_per_epoch, **info._asdict(),
                      "seconds": time.perf_counter() - t0}
            problem = _divergence(record, history[0] if history else None)
            if problem:
                raise Diverged(f"{alg.title} diverged at step {step + 1}: {problem}. "
                               f"{_divergence_advice(alg, last_checkpoint)}")
            history.append(record)
            if pending is not None:  # its state has now produced a finite loss: a good checkpoint
                _write_checkpoint(ckpt_dir, config, *pending)
                last_checkpoint, pending = ckpt_dir, None
            stop = alg.finished(info)
            if early_stopping is not None and (step + 1) % early_stopping.every == 0:
                value = _validation_metric(early_stopping.metric, kernel, state, val_batch, spec, backend, x_val, y_val,
                                           device)
                record[early_stopping.metric] = value
                score = -value if early_stopping.metric == "val_loss" else value
                if score > best["value"] + early_stopping.min_delta:
                    best.update(value=score, bad=0, step=step + 1,
                                arrays=_snapshot(kernel, state) if early_stopping.restore_best else None)
                else:
                    best["bad"] += 1
                    stop = stop or best["bad"] >= early_stopping.patience
            for callback in callbacks:
                stop = bool(callback(StepEvent(step + 1, record["epoch"], info, history))) or stop
            if checkpoint_every and (step + 1) % checkpoint_every == 0:
                pending = (_snapshot(kernel, state), list(history), step + 1)
            epoch_done = (step + 1) % steps_per_epoch == 0 or step + 1 == total_steps
            if samples_every and epoch_done and (math.ceil((step + 1) / steps_per_epoch) % samples_every == 0
                                                 or step + 1 == total_steps):
                _write_epoch_samples(Path(run_dir) / "samples", spec, kernel, state, backend, dataset.meta,
                                     math.ceil((step + 1) / steps_per_epoch), seed, device, x)
            bar.set_postfix({k: f"{v:.4g}" for k, v in info._asdict().items()
                             if isinstance(v, float) and k != "seconds"}, refresh=False)
            bar.update(1)
            if stop:
                break
    finally:
        bar.close()
    if early_stopping is not None and early_stopping.restore_best and best["arrays"] is not None:
        state = kernel.restore_state(state, *best["arrays"])
    result = kernel.result(state, full_batch)
    if result.posterior is not None:
        result = result._replace(posterior=spec.relabel(result.posterior))
    out = Fit(spec, alg, backend, result, history, config, train=x, device=device, train_labels=y)
    if run_dir is not None:
        if checkpoint_every:
            _write_checkpoint(ckpt_dir, config, _snapshot(kernel, state), history, len(history))
        out.save(run_dir)
    return out


#: a loss this many times larger than at the first step (or than 1) counts as a blow-up
BLOWUP_FACTOR = 1e4


def _divergence(record: dict, first: Optional[dict]) -> str:
    """What is wrong with a step's record: a loss or log-likelihood that is not finite, or a loss
    more than :data:`BLOWUP_FACTOR` times its first value (and than 1); '' when nothing is."""
    for key, value in record.items():
        if not isinstance(value, float) or not (key.endswith("loss") or key == "log_likelihood"):
            continue
        if not math.isfinite(value):
            return f"{key}={value}"
        start = first.get(key) if first else None
        if key.endswith("loss") and isinstance(start, float) and abs(value) > BLOWUP_FACTOR * max(1.0, abs(start)):
            return f"{key}={value:.3g} blew up (it was {start:.3g} at the first step)"
    return ""


def _divergence_advice(alg, last_checkpoint) -> str:
    fix = "a smaller learning rate" if alg.learning_rate_options() else "other settings or cleaner data"
    if last_checkpoint:
        return (f"The last good checkpoint is in {last_checkpoint}; resume from it with resume=True and {fix} "
                f"(e.g. inference.replace(lr=...)).")
    return f"Pass run_dir= and checkpoint_every= to keep checkpoints, and try {fix}."


def _write_epoch_samples(folder: Path, spec, kernel, state, backend, meta, epoch: int, seed: int, device,
                         train=None) -> None:
    """A picture of samples of the current state: an image grid, or 2-D points over (up to 2000
    of) the training data, on axes that stay the same from epoch to epoch."""
    from . import plots

    if not spec.supports("sample"):
        return
    params = kernel.result(state).params
    n = 64 if len(meta.get("shape") or ()) in (2, 3) else 1000
    options = {"labels": np.arange(n) % spec.num_classes} if spec.conditional else {}
    x = np.asarray(spec.sample(backend, params, n, seed, device=device, **options))
    shape = list(meta.get("shape") or x.shape[1:])
    title = f"{spec.name} · epoch {epoch}"
    if len(shape) in (2, 3):
        low, high = meta.get("low"), meta.get("high")
        shown = np.clip(x, low, high) if (low is not None or high is not None) else x
        plots.image_grid(shown.reshape((n,) + tuple(shape)), folder / f"epoch_{epoch:05d}.png", title=title)
    elif shape == [2]:
        reference = None if train is None else np.asarray(train)[:2000].reshape(-1, 2)
        limits = None
        if reference is not None:
            low, high = reference.min(0), reference.max(0)
            pad = 0.25 * (high - low) + 1e-6
            limits = ((low[0] - pad[0], high[0] + pad[0]), (low[1] - pad[1], high[1] + pad[1]))
        plots.scatter(x.reshape(n, 2), folder / f"epoch_{epoch:05d}.png", reference=reference, title=title,
                      limits=limits)


def _make_batch(be, xs, index: np.ndarray, dev, ys=None) -> dict:
    idx = be.ppl.index(index, like=xs)
    whole = len(index) == xs.shape[0]
    batch = {"x": xs if whole else be.ppl.take_rows(xs, idx), "index": idx}
    if ys is not None:
        batch["y"] = ys if whole else be.ppl.take_rows(ys, idx)
    return batch


def _labels(spec, dataset, split: str, num: int):
    """The split's labels for a conditional family (checked), else None."""
    if not spec.conditional:
        return None
    labels = getattr(dataset.labels, split) if dataset.labels is not None else None
    return spec.check_labels(labels, num, f"the {split} labels")


def _validation_metric(metric, kernel, state, val_batch, spec, backend, x_val, y_val=None, device="cpu") -> float:
    if metric == "val_loss":
        return kernel.evaluate(state, val_batch)
    if not spec.supports("log_likelihood"):
        raise ConfigError("metric='val_log_likelihood' needs a family with a likelihood; use 'val_loss'")
    result = kernel.result(state)
    params = result.params if result.posterior is None else {
        k: v.reshape((-1,) + v.shape[2:]) for k, v in result.posterior.items()}
    return float(_mean_log_likelihood(spec, backend, params, result.posterior is not None, x_val, y_val,
                                      device).mean())


def _mean_log_likelihood(spec, backend, params, is_draws: bool, x, y=None, device="cpu") -> np.ndarray:
    if spec.estimated_likelihood:  # importance sampling: enough to rank states
        return spec.log_likelihood(backend, params, x, num_samples=100, labels=y, device=device)
    ll = spec.log_likelihood(backend, params, x, device=device)
    return _log_mean_exp(ll) if is_draws else ll


def _log_mean_exp(ll: np.ndarray) -> np.ndarray:
    """Posterior predictive density log (1/S) Σ_s p(x | θ_s) from the (S, N) matrix log p(x_n | θ_s)."""
    m = ll.max(axis=0)
    return m + np.log(np.mean(np.exp(ll - m), axis=0))


class _NoProgress:
    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


class _LogProgress:
    """Progress without a terminal or notebook (a batch job, a log file): one line to stderr every
    ``every`` seconds, with the step, the time so far and left, and the latest numbers."""

    def __init__(self, total: int, start: int, desc: str, every: float):
        self.total, self.done, self.desc, self.every = total, start, desc, every
        self.begun = self.last = time.perf_counter()
        self.first, self.postfix = start, {}

    def update(self, n=1):
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            rate = (now - self.begun) / max(self.done - self.first, 1)
            numbers = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
            print(f"ppgen: {self.desc}: step {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), "
                  f"{now - self.begun:.0f} s so far, about {rate * (self.total - self.done):.0f} s left"
                  f"{'; ' + numbers if numbers else ''}", file=sys.stderr, flush=True)

    def set_postfix(self, postfix, refresh=False):
        self.postfix = dict(postfix)

    def close(self):
        if time.perf_counter() - self.begun >= self.every:  # a run long enough to have reported
            print(f"ppgen: {self.desc}: done, {self.done} steps in {time.perf_counter() - self.begun:.0f} s",
                  file=sys.stderr, flush=True)


def display() -> str:
    """Where progress goes: ``"notebook"`` (a Jupyter kernel), ``"terminal"`` (stderr is a
    terminal) or ``"log"`` (anything else: a batch job, a log file, a test runner)."""
    shell = sys.modules.get("IPython")
    try:
        if shell is not None and shell.get_ipython() is not None and hasattr(shell.get_ipython(), "kernel"):
            return "notebook"
    except Exception:  # noqa: BLE001 - an unusual IPython: treat as no notebook
        pass
    return "terminal" if sys.stderr.isatty() else "log"


def _progress(total, start, show, desc):
    """A progress display: tqdm's notebook widget in Jupyter (its text bar without ipywidgets), a
    tqdm bar in a terminal, else a line every ``PPGEN_LOG_EVERY`` seconds (default 30). ``show``:
    None chooses by :func:`display`; False shows nothing; True forces a bar."""
    if show is False:
        return _NoProgress()
    where = "terminal" if show is True else display()
    if where == "log":
        import os

        return _LogProgress(total, start, desc, float(os.environ.get("PPGEN_LOG_EVERY", "30")))
    if where == "notebook":
        import importlib.util

        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar(total=total, initial=start, desc=desc, leave=False)
    from tqdm import tqdm  # the text bar (tqdm.auto would warn in a notebook without ipywidgets)

    return tqdm(total=total, initial=start, desc=desc, leave=False, dynamic_ncols=True)


def _run_config(spec, alg, backend, device, seed, dataset) -> dict:
    import ppgen

    return {"format": ckpt.FORMAT, "ppgen_version": ppgen.__version__, "model": spec.to_config(),
            "inference": alg.to_config(), "backend": backend, "device": device, "seed": seed,
            "data": dict(dataset.meta), "state": _jsonable_signature(alg.state_signature())}


def _jsonable_signature(signature: dict) -> dict:
    from .config import CodeReference

    return {k: (f"function {v.name}" if isinstance(v, CodeReference) else
                f"function {getattr(v, '__qualname__', type(v).__name__)}" if callable(v) and not isinstance(v, str)
                else v) for k, v in signature.items()}


def _snapshot(kernel, state) -> tuple:
    """A copy of the algorithm's state as (arrays, meta), safe from later in-place updates."""
    arrays, meta = kernel.state_arrays(state)
    return {k: np.array(v, copy=True) for k, v in arrays.items()}, meta


def _write_checkpoint(folder: Path, config, snapshot, history, step: int) -> None:
    arrays, meta = snapshot
    ckpt.write_checkpoint(folder, arrays, {"config": config, "step": step, "meta": meta, "history": history,
                                           "state": config.get("state", {})})


def _differs(what: str, theirs, mine) -> str:
    """'latent_dim=2 in the checkpoint, 3 here' for the first option that differs, else ''."""
    if isinstance(theirs, dict) and isinstance(mine, dict):
        if theirs.get("name") != mine.get("name"):
            return f"{what} {theirs.get('name')!r} in the checkpoint, {mine.get('name')!r} here"
        theirs, mine = theirs.get("options", theirs), mine.get("options", mine)
        for key in sorted(set(theirs) | set(mine)):
            if theirs.get(key) != mine.get(key):
                return f"{what} option {key}={theirs.get(key)!r} in the checkpoint, {mine.get(key)!r} here"
        return ""
    return "" if theirs == mine else f"{what} {theirs!r} in the checkpoint, {mine!r} here"


def _restore_checkpoint(folder: Path, config, kernel, state):
    """The state, history and step of the checkpoint in ``folder`` (a fresh start when it holds
    none). The model, the backend and the options that shape the algorithm's state must match;
    the optimisation settings (learning rate and schedule, steps, epochs, early stopping, seed)
    may differ: the run continues from the checkpoint with this fit's settings."""
    found = ckpt.read_checkpoint(folder)
    if found is None:
        print(f"ppgen: no checkpoint in {folder} yet; starting the run from step 0", file=sys.stderr)
        return state, [], 0
    arrays, info = found
    saved = info.get("config", {})
    for what, key in (("model", "model"), ("backend", "backend"), ("inference", "inference")):
        if key == "inference" and saved.get(key, {}).get("name") == config[key]["name"]:
            difference = _differs("inference", info.get("state", {}), config.get("state", {}))
        else:
            difference = _differs(what, saved.get(key), config[key])
        if difference:
            raise CheckpointError(f"the checkpoint in {folder} does not fit this run: {difference}. A resumed run "
                                  f"keeps the model, the backend and the options that shape the algorithm's state "
                                  f"({', '.join(sorted(config.get('state', {}))) or 'none'}); change those in a new "
                                  f"run_dir")
    state = kernel.restore_state(state, arrays, info.get("meta", {}))
    return state, list(info["history"]), int(info["step"])


# ======================================================================================
# The result
# ======================================================================================
class Fit:
    """A finished fit: parameters and/or posterior draws, with ways to use and inspect them.

    Attributes:
        model: the spec (or Program) that was fitted.
        inference: the inference object used.
        backend: "pyro" or "numpyro".
        params: point estimates by name (numpy), e.g. ``W``, ``mu``, ``sigma`` for PPCA.
        posterior: posterior draws by site name, shape (chains, draws, ...), or None.
        sample_stats: MCMC statistics (``diverging``, ``accept_prob``, ...), or None.
        history: one dict per step (``loss``, ``log_likelihood``, ...).
        config: the JSON that rebuilds the run.
    """

    def __init__(self, model, inference, backend, result, history, config, train=None, device="cpu",
                 train_labels=None):
        self.model, self.inference, self.backend = model, inference, backend
        self.params = dict(result.params)
        self.posterior = result.posterior
        self.sample_stats = result.sample_stats
        self.history = history
        self.config = config
        self.device = device
        self._train = train
        self._train_labels = train_labels
        self._structure = None  # a user program's ProgramStructure, traced on first use

    def __repr__(self):
        what = (f"{next(iter(self.posterior.values())).shape[:2]} (chains, draws)" if self.posterior
                else f"params {sorted(self.params)}")
        return f"Fit({self.model.name}, {self.inference.title}, backend={self.backend!r}, {what})"

    @property
    def program(self):
        """The fitted model and guide with the fitted parameters bound
        (:class:`ppgen.program.Bound`), to run with Pyro's or NumPyro's own ``Predictive``,
        ELBOs and handlers.

        For a user Program: its own functions, called with the keywords it names (``x``,
        ``index``, ``num_data``). For a family: the program of the form it was fitted in, called
        with ``x`` (None to draw new data, with ``num=`` rows), ``index``, ``num_data`` and a
        conditional family's labels ``y``; its guide where the family builds one (an amortised
        encoder), else None (an automatic guide lives inside SVI; MCMC has none). For a
        posterior fit (NUTS, HMC, a Bayesian guide) the model is returned unbound: pass the
        draws, ``Predictive(fit.program.model, posterior_samples=...)``.
        """
        if self.model.family == "program":
            return self.model.bind(self.params, self.data_shape, self.device)
        from .backends import get_backend
        from .program import Bound

        alg, spec = self.inference, self.model
        data = self._train if self._train is not None else np.zeros((2, spec.data_dim), np.float32)
        built = spec.build(self.backend, alg.form_for(spec), data=data, guide=alg.guide_for(spec), seed=0,
                           device=self.device, **alg.build_options(spec))
        if self.posterior is not None:
            return Bound(built.model, None, self.backend)
        be = get_backend(self.backend)
        params = {k: np.asarray(v) for k, v in self.params.items()}
        return Bound(be.bind_params(built.model, params, self.device),
                     None if built.guide is None else be.bind_params(built.guide, params, self.device), self.backend)

    @property
    def structure(self):
        """A user program's :class:`ppgen.program.ProgramStructure` (None for a family)."""
        if self.model.family != "program":
            return None
        if self._structure is None:
            like = self._train[:8] if self._train is not None else np.zeros((2,) + self.data_shape, dtype=np.float32)
            self._structure = self.model.structure(like, device=self.device)
        return self._structure

    @property
    def data_shape(self) -> tuple:
        shape = self.config.get("data", {}).get("shape")
        if shape is not None:
            return tuple(shape)
        if self.model.family == "program":
            return tuple(np.shape(self._train)[1:]) if self._train is not None else ()
        return (self.model.data_dim,)

    def _draws(self) -> dict:
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.posterior.items()}

    def log_likelihood(self, x, *, pointwise_draws: bool = False, num_samples: Optional[int] = None,
                       labels=None, seed: int = 0) -> np.ndarray:
        """Per-example log p(x), exact for families with a closed-form marginal likelihood.

        For a posterior (MCMC or a Bayesian guide) it is the posterior predictive density
        log (1/S) Σ_s p(x | θ_s). With ``pointwise_draws=True`` it returns the (S, N) matrix
        of log p(x_n | θ_s) instead.

        For families with per-example latents and no closed form (VAE, CVAE, HVAE) it is the
        importance-sampled estimate log (1/K) Σ_k p(x, z_k)/q(z_k|x), z_k ~ q(z|x), with
        K = ``num_samples`` (default 1000) encoder draws per example; ``labels`` are a
        conditional model's labels.
        """
        x = self.model.check_data(x, "x")
        if self.model.estimated_likelihood:
            ll = self.model.log_likelihood(self.backend, self.params, x,
                                           num_samples=1000 if num_samples is None else num_samples,
                                           seed=seed, labels=labels, device=self.device)
            return ll[None] if pointwise_draws else ll
        if self.model.family == "program":
            ll = self.model.log_likelihood(self.params, self._draws() if self.posterior else None, x,
                                           num_samples=num_samples, seed=seed, device=self.device,
                                           structure=self.structure)
            return ll if pointwise_draws else _log_mean_exp(ll)
        if num_samples is not None or labels is not None:
            raise ConfigError(f"{type(self.model).__name__}'s log-likelihood is computed without sampling and "
                              f"without labels; drop num_samples= and labels=")
        if self.posterior is not None:
            ll = self.model.log_likelihood(self.backend, self._draws(), x, device=self.device)
        else:
            ll = self.model.log_likelihood(self.backend, self.params, x, device=self.device)
            return ll if not pointwise_draws else ll[None]
        return ll if pointwise_draws else _log_mean_exp(ll)

    def _params_or_draws(self) -> dict:
        return self._draws() if self.posterior is not None else self.params

    def predict_proba(self, x) -> np.ndarray:
        """p(assignment = k | x) for each row of ``x``: shape (N, K), rows sum to one.

        The closed-form E-step under the fitted parameters; for a posterior, averaged over the
        draws (which ppgen relabels, so component k means the same thing in every draw)."""
        if not self.model.supports("predict_proba"):
            raise ConfigError(f"{type(self.model).__name__} has no discrete assignments to predict; "
                              f"predict and predict_proba are for mixture models (gmm)")
        x = self.model.check_data(x, "x")
        return self.model.predict_proba(self.backend, self._params_or_draws(), x, device=self.device)

    def predict(self, x) -> np.ndarray:
        """The most probable component of each row of ``x`` (hard assignments), shape (N,)."""
        return self.predict_proba(x).argmax(-1)

    def _information_criterion(self, x, penalty_per_parameter) -> float:
        if self.posterior is not None:
            raise ConfigError("BIC and AIC score a point estimate, and this fit is a posterior; compare "
                              "posterior fits with ppgen.compare([...]) (ArviZ LOO)")
        if self.model.family == "program":
            raise ConfigError(f"{self.model.name} has no parameter count; BIC and AIC are not available")
        x = self._train if x is None else x
        if x is None:
            raise ConfigError("this fit holds no training data (it was loaded from disk); pass x=")
        total = float(np.sum(self.log_likelihood(x)))
        return -2.0 * total + penalty_per_parameter(len(x)) * self.model.num_parameters()

    def bic(self, x=None) -> float:
        """Bayesian information criterion −2 log p(x | θ̂) + p log N on ``x`` (default: the
        training data); lower is better. Point-estimate fits only (EM, closed form, SVI)."""
        return self._information_criterion(x, lambda n: math.log(n))

    def aic(self, x=None) -> float:
        """Akaike information criterion −2 log p(x | θ̂) + 2p on ``x`` (default: the training
        data); lower is better. Point-estimate fits only."""
        return self._information_criterion(x, lambda n: 2.0)

    def sample(self, n: int, seed: int = 0, *, labels=None, mean: bool = False, **options) -> np.ndarray:
        """``n`` new examples as a numpy array shaped like the training data (n, *shape).

        For a conditional family (CVAE) ``labels`` gives each sample's label; by default they
        cycle through the classes 0, 1, ..., so that consecutive samples show every class.
        ``mean=True`` (VAE families) draws the latents and returns the decoder's expected
        x given them (the images VAE papers show) instead of a draw of every value.

        ``options`` go to the family's sampler, e.g. a DDPM's ``sampler="ddim", steps=50, eta=0``."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"sample(n={n!r}) needs a positive integer")
        if self.model.family == "program":
            if labels is not None or mean or options:
                raise ConfigError("sample() of a user Program takes n and seed only (the model's own data site is "
                                  "drawn)")
            return self.model.sample(self.params, self._draws() if self.posterior else None, int(n), seed=seed,
                                     device=self.device, structure=self.structure, data_shape=self.data_shape)
        extra = dict(options)
        if options:
            import inspect

            accepted = inspect.signature(self.model.sample).parameters
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                raise ConfigError(f"{type(self.model).__name__}.sample takes no option {unknown[0]!r}; its options: "
                                  f"{[p for p in accepted if p not in ('backend', 'params', 'num', 'seed', 'device')]}")
        if "device" in extra:
            raise ConfigError("sample() runs on the fit's device; load the run on another one with "
                              "ppgen.load(path, device=...) instead of passing device=")
        extra["device"] = self.device
        if mean:
            import inspect

            if "mean" not in inspect.signature(self.model.sample).parameters:
                raise ConfigError(f"sample(mean=True) applies to families with a decoder (VAE, CVAE, HVAE); "
                                  f"{type(self.model).__name__} samples are draws (drop mean=)")
            extra["mean"] = True
        if self.model.conditional:
            labels = np.arange(n) % self.model.num_classes if labels is None else labels
            out = self.model.sample(self.backend, self.params, int(n), seed, labels=labels, **extra)
            return out.reshape((n,) + self.data_shape)
        if labels is not None:
            raise ConfigError(f"{type(self.model).__name__} is not conditional; drop labels= (a CVAE takes them)")
        if self.posterior is None:
            out = self.model.sample(self.backend, self.params, int(n), seed, **extra)
        else:
            draws = self._draws()  # one posterior draw per new example
            total = next(iter(draws.values())).shape[0]
            pick = np.random.default_rng(seed).integers(0, total, size=n)
            out = self.model.sample(self.backend, {k: v[pick] for k, v in draws.items()}, 1, seed, **extra)
        return out.reshape((n,) + self.data_shape)

    def bits_per_dim(self, x, *, seed: int = 0) -> np.ndarray:
        """−log₂ p(x) per value for discrete data (a DDPM's bound / (D ln 2)), per row."""
        if not self.model.supports("bits_per_dim"):
            raise ConfigError(f"{type(self.model).__name__} reports nats (log_likelihood); bits per dimension is "
                              f"offered by models.DDPM on discrete data")
        return self.model.bits_per_dim(self.backend, self.params, self.model.check_data(x, "x"), seed=seed,
                                       device=self.device)

    def to_arviz(self, x=None, *, num_predictive: int = 100, seed: int = 0, labels=None,
                 max_examples: int = 100):
        """ArviZ InferenceData (arviz 0.x) or DataTree (arviz 1.x) of this fit.

        Groups: ``posterior`` (draws, or the point estimate as one draw), ``sample_stats``
        (MCMC), ``log_likelihood`` (per draw and example, site ``x``), ``posterior_predictive``
        (``num_predictive`` draws of a replicated data set) and ``observed_data``.

        For families with amortised per-example latents (VAE, CVAE, HVAE) the posterior is
        ``num_predictive`` draws of q(z|x) for each row of ``x`` (dims chain, draw, example,
        latent), the posterior predictive holds reconstructions x ~ p(x|z) for those draws,
        and the log-likelihood log p(x|z) per draw and example.

        Args:
            x: the observed data to score (default: the training data of this fit; for the
                amortised families, its first ``max_examples`` rows).
            num_predictive: posterior draws used for the posterior predictive group (0: no
                such group).
            labels: a conditional family's labels for ``x``.
            max_examples: amortised families: how many training rows when ``x`` is not given.
        """
        from . import arviz as ppaz

        if self.model.supports("arviz_groups"):  # implicit models with codes (AAE): aggregated posterior and prior
            if x is None:
                if self._train is None:
                    raise ConfigError("this fit holds no training data (it was loaded from disk); pass x=")
                x = self._train[:max(max_examples, 1000)]
            groups = self.model.arviz_groups(self.backend, self.params, self.model.check_data(x, "x"), seed=seed,
                                             device=self.device)
            dims = groups.pop("dims", None)
            return ppaz.build(**groups, model_name=self.model.name, dims=dims)
        if self.model.forms == ("implicit",):
            raise ConfigError(f"{type(self.model).__name__} is an implicit model: it has no posterior or likelihood "
                              f"for ArviZ. Draw samples with fit.sample(n) and score them with ppgen.metrics")
        if self.model.supports("posterior_draws"):
            return self._local_arviz(x, labels, num_predictive or 100, seed, max_examples)
        if self.model.family == "program" and self.structure.local_latents:
            return self._program_local_arviz(x, num_predictive or 100, seed, max_examples)
        x = self._train if x is None else self.model.check_data(x, "x")
        if x is None:
            raise ConfigError("this fit holds no training data (it was loaded from disk); pass x=")
        if self.posterior is not None:
            posterior = self.posterior
        else:
            posterior = {k: np.asarray(v)[None, None] for k, v in self.params.items()}
        log_lik = self.log_likelihood(x, pointwise_draws=True)
        chains, draws = next(iter(posterior.values())).shape[:2]
        log_lik = log_lik.reshape(chains, draws, -1)
        predictive = None
        if self.model.family != "program" and num_predictive > 0:
            flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in posterior.items()}
            total = chains * draws
            keep = np.linspace(0, total - 1, min(num_predictive, total)).astype(int)
            predictive = self.model.sample(self.backend, {k: v[keep] for k, v in flat.items()}, x.shape[0], seed,
                                           device=self.device)
            predictive = predictive.reshape((1, len(keep)) + x.shape)
        return ppaz.build(posterior=posterior, sample_stats=self.sample_stats, log_likelihood={"x": log_lik},
                          posterior_predictive={"x": predictive} if predictive is not None else None,
                          observed_data={"x": x}, model_name=self.model.name)

    def _program_local_arviz(self, x, num_draws: int, seed: int, max_examples: int):
        """A program with per-example latents: the global latents' draws (if any) and, for the
        rows of ``x`` (default: the first ``max_examples`` training rows), draws of the guide's
        per-example latents (dims chain, draw, example, ...) with log p(x_n | z_n, θ)."""
        from . import arviz as ppaz

        if x is None:
            if self._train is None:
                raise ConfigError("this fit holds no training data (it was loaded from disk); pass x=")
            x = self._train[:max_examples]
        x = self.model.check_data(x, "x")
        draws = self.model.local_draws(self.params, x, num_draws, seed=seed, device=self.device,
                                       structure=self.structure)
        posterior = {k: v[None] for k, v in draws["latents"].items()}
        dims = {k: ["example"] + [f"{k}_dim_{i}" for i in range(v.ndim - 3)] for k, v in posterior.items()}
        return ppaz.build(posterior=posterior, log_likelihood={"x": draws["log_likelihood"][None]},
                          observed_data={"x": x}, model_name=self.model.name, dims=dims)

    def _local_arviz(self, x, labels, num_draws: int, seed: int, max_examples: int):
        from . import arviz as ppaz

        if x is None:
            if self._train is None:
                raise ConfigError("this fit holds no training data (it was loaded from disk); pass x=")
            x = self._train[:max_examples]
            if labels is None and self._train_labels is not None:
                labels = self._train_labels[:max_examples]
        x = self.model.check_data(x, "x")
        draws = self.model.posterior_draws(self.backend, self.params, x, num_draws, seed, labels=labels,
                                           device=self.device)
        posterior = {k: v[None] for k, v in draws["latents"].items()}
        dims = {k: ["example", "latent"] for k in posterior}
        return ppaz.build(posterior=posterior, log_likelihood={"x": draws["log_likelihood"][None]},
                          posterior_predictive={"x": draws["x"][None]}, observed_data={"x": x},
                          model_name=self.model.name, dims=dims)

    def _family_method(self, name: str, what: str):
        if not self.model.supports(name):
            self.model.unsupported(name)
        return getattr(self.model, name)

    def encode(self, x, *, labels=None) -> tuple:
        """Mean and standard deviation of q(z|x) (the first latent layer) per row: two (N, K) arrays;
        for an AAE, whose encoder is deterministic, the codes z = E(x): one (N, K) array."""
        return self._family_method("encode", "encode")(self.backend, self.params, x, labels=labels, device=self.device)

    def decode(self, z, *, labels=None, mean: bool = True, seed: int = 0) -> np.ndarray:
        """The decoder's expected x given latents ``z`` (N, K), or a draw (``mean=False``),
        shaped like the data."""
        out = self._family_method("decode", "decode")(self.backend, self.params, z, labels=labels, seed=seed,
                                                      mean=mean, device=self.device)
        return out.reshape((-1,) + self.data_shape)

    def reconstruct(self, x, *, labels=None, mean: bool = True, seed: int = 0) -> np.ndarray:
        """Reconstructions of ``x``: z ~ q(z|x), then the decoder's expected x (or a draw with
        ``mean=False``), shaped like the data."""
        out = self._family_method("reconstruct", "reconstruct")(self.backend, self.params, x, labels=labels,
                                                                seed=seed, mean=mean, device=self.device)
        return out.reshape((-1,) + self.data_shape)

    def elbo(self, x, *, num_samples: int = 10, labels=None, seed: int = 0) -> np.ndarray:
        """The evidence lower bound per example on any split, a Monte Carlo mean over
        ``num_samples`` encoder draws; shape (N,)."""
        return self._family_method("elbo", "elbo")(self.backend, self.params, x, num_samples=num_samples, seed=seed,
                                                   labels=labels, device=self.device)

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the run folder: config.json, params.safetensors, posterior.safetensors, history.json."""
        path = Path(path)
        arrays = {f"params/{k}": v for k, v in self.params.items()}
        if self.posterior is not None:
            arrays.update({f"posterior/{k}": v for k, v in self.posterior.items()})
        if self.sample_stats is not None:
            arrays.update({f"sample_stats/{k}": v for k, v in self.sample_stats.items()})
        ckpt.write_arrays(path / "fit.safetensors", arrays)
        ckpt.write_json(path / "history.json", self.history)
        ckpt.write_json(path / "config.json", dict(self.config, family=self.model.family))
        return path


def load(path, *, model=None, device: Optional[str] = None, inference=None, program=None) -> Fit:
    """Load a run folder written by ``Fit.save`` (or by ``ppgen.fit(..., run_dir=...)``).

    Args:
        path: the run folder.
        model: optionally, the family name (or spec) you expect; a run of another family is refused.
        device: where the loaded fit samples, scores and exports ("cpu", "cuda", "cuda:N").
            Default: the device it was fitted on when this machine has it, else the best this
            machine has (a GPU if there is one, else the CPU), with a note saying so.
        inference: the inference object to attach, for a run whose inference held a function of
            yours (e.g. ``SVI(elbo=my_loss)``): run folders keep only its name, so the loaded
            run otherwise holds a ``ppgen.config.CodeReference`` in its place.
        program: for the run of a user ``ppgen.Program``, that program (run folders never hold
            code): its parameters and latent sites must have the names and shapes the run
            stored.

    Example:
        >>> fit = ppgen.load("runs/ddpm", device="cpu")   # a run fitted on a GPU, used on a laptop
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no run folder at {path}; pass the folder that fit.save() wrote")
    config = ckpt.read_json(path / "config.json")
    _check_format(config, path / "config.json")
    family = config["model"]["name"]
    expected = model if model is None or isinstance(model, str) else model.family
    if expected is not None and expected != family:
        raise CheckpointError(f"{path} holds a {family!r} fit, not a {expected!r} one; load the matching run folder")
    if family == "program":
        return _load_program(path, config, program, device, inference)
    if program is not None:
        raise ConfigError(f"{path} holds a {family!r} fit, not a user Program's; drop program=")
    try:
        spec = model_from_config(config["model"])
        alg = _run_inference(path, config, inference)
    except (ConfigError, KeyError, TypeError) as e:
        if isinstance(e, ConfigError) and inference is not None or "ppgen.load(path, inference=" in str(e):
            raise
        raise CheckpointError(f"the run folder {path} is inconsistent: its config.json does not describe a "
                              f"{family!r} model and its inference ({e}). Was it edited? Fit again, or restore "
                              f"the config.json that fit.save wrote") from None
    spec = _own_network_spec(spec, model, path)
    groups = _read_groups(path)
    expected_params = set(spec.param_names("marginal"))
    if groups["params"] and not set(groups["params"]) >= expected_params:
        raise CheckpointError(f"{path} holds parameters {sorted(groups['params'])}, not those of "
                              f"{family} ({sorted(expected_params)}); the file belongs to another model")
    _check_shapes(spec, groups, path)
    from ppgen.inference import Result

    result = Result(groups["params"], groups["posterior"] or None, groups["sample_stats"] or None)
    history = ckpt.read_json(path / "history.json") if (path / "history.json").exists() else []
    return Fit(spec, alg, config["backend"], result, history, config, train=None,
               device=_load_device(config["backend"], config.get("device", "cpu"), device, path))


def _own_network_spec(stored, model, path: Path):
    """The spec to load: ``model`` where the person passed a spec (its options, networks
    described by their kind, must be the run's), else the stored one, which must not hold a
    person's network (run folders never store code)."""
    from .networks import NetworkReference
    from .program import ModelSpec

    if isinstance(model, ModelSpec):
        given, kept = model.to_config()["options"], stored.to_config()["options"]
        differ = sorted(k for k in set(given) | set(kept) if given.get(k) != kept.get(k))
        if differ:
            raise CheckpointError(f"the spec passed as model= differs from the run in {path} in "
                                  + ", ".join(f"{k} ({given.get(k)!r} here, {kept.get(k)!r} in the run)" for k in differ)
                                  + "; pass the spec the run was fitted with")
        return model
    own = [name for name in stored.network_fields if isinstance(getattr(stored, name), NetworkReference)]
    if own:
        raise CheckpointError(f"{path} holds a {type(stored).__name__} fitted with your own "
                              + ", ".join(f"{n} ({getattr(stored, n).describe()})" for n in own)
                              + f", and run folders never store code: build the spec again with those networks and "
                                f"pass it, ppgen.load(path, model=models.{type(stored).__name__}(..., "
                              + ", ".join(f"{n}=..." for n in own) + "))")
    return stored


def _read_groups(path: Path) -> dict:
    arrays = ckpt.read_arrays(path / "fit.safetensors")
    groups: dict = {"params": {}, "posterior": {}, "sample_stats": {}}
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        if group not in groups:
            raise CheckpointError(f"{path / 'fit.safetensors'} has an unexpected entry {key!r}")
        groups[group][name] = value
    return groups


def _run_inference(path: Path, config: dict, inference):
    """The inference of the run in ``path``: rebuilt from its config, or ``inference`` (an object
    or name) where the person passes one, which must be of the run's kind. It is needed where the
    run's algorithm holds a person's code (a custom loss) or is itself a person's own."""
    saved = config["inference"]
    if inference is None:
        if isinstance(saved, dict) and saved.get("name") not in inference_classes():
            raise ConfigError(f"{path} was fitted with {saved.get('name')!r}, which is not one of ppgen's inference "
                              f"algorithms ({sorted(inference_classes())}): run folders keep its options, never its "
                              f"code. If it is your own algorithm, pass it again: ppgen.load(path, inference="
                              f"YourAlgorithm(...))")
        return inference_from_config(saved)
    alg = resolve_inference(inference)
    if alg.name != saved.get("name"):
        known = inference_classes().get(saved.get("name"))
        kind = f"an inference.{known.__name__}" if known else f"the algorithm named {saved.get('name')!r}"
        raise ConfigError(f"{path} was fitted with {saved.get('name')!r}; inference= must be {kind}, "
                          f"not {type(alg).__name__}")
    return alg


def _load_program(path: Path, config: dict, program, device, inference) -> Fit:
    """A user Program's run, rebound to ``program`` after checking it has the run's parameters
    (names and shapes) and latent sites."""
    from ppgen.inference import Result

    from .program import Program

    if not isinstance(program, Program):
        raise CheckpointError(f"{path} holds the fit of a user Program, and run folders never store code: pass "
                              f"the program, ppgen.load(path, program=ppgen.Program(model, guide, backend=...))")
    if program.backend != config["backend"]:
        raise CheckpointError(f"{path} was fitted in backend {config['backend']!r}; this Program is written for "
                              f"{program.backend!r}")
    alg = _run_inference(path, config, inference)
    groups = _read_groups(path)
    device = _load_device(config["backend"], config.get("device", "cpu"), device, path)
    shape = tuple(config.get("data", {}).get("shape") or ())
    like = np.zeros((2,) + shape, dtype=np.float32)
    structure = program.structure(like, device=device)
    be = get_backend(program.backend)
    kwargs = program.keywords(like, device=device)
    skeleton = program.initial_params(kwargs)
    if groups["params"]:
        expected = {k: tuple(np.shape(v)) for k, v in be.flatten_params(skeleton).items()}
        stored = {k: tuple(v.shape) for k, v in groups["params"].items()}
        if set(expected) != set(stored):
            raise CheckpointError(f"this Program's parameters {sorted(expected)[:8]} are not the run's "
                                  f"{sorted(stored)[:8]}; pass the program {path} was fitted with")
        wrong = [k for k in stored if stored[k] != expected[k]]
        if wrong:
            raise CheckpointError(f"parameter {wrong[0]!r} of this Program has shape {expected[wrong[0]]}, the run's "
                                  f"{stored[wrong[0]]}; pass the program {path} was fitted with")
    unknown = sorted(set(groups["posterior"]) - set(structure.global_latents) - set(structure.deterministic))
    if unknown:
        raise CheckpointError(f"the run has posterior draws of {unknown}, which this Program does not have as "
                              f"global latents; pass the program {path} was fitted with")
    result = Result(groups["params"], groups["posterior"] or None, groups["sample_stats"] or None)
    history = ckpt.read_json(path / "history.json") if (path / "history.json").exists() else []
    return Fit(program, alg, config["backend"], result, history, config, train=None, device=device)


def _check_format(config, where: Path) -> None:
    """Refuse a config.json that is not a ppgen run, or one written by a newer ppgen (naming its version)."""
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{where} is not a ppgen run (it has no model)")
    found = config.get("format")
    if found == ckpt.FORMAT:
        return
    name, _, version = str(found).partition("/")
    ours = int(ckpt.FORMAT.partition("/")[2])
    if name == ckpt.FORMAT.partition("/")[0] and version.isdigit() and int(version) > ours:
        raise CheckpointError(f"{where} was written by a newer ppgen (run format version {version}; this ppgen "
                              f"{_version()} reads version {ours}); upgrade ppgen to load it")
    raise CheckpointError(f"{where} is not a ppgen run (format {found!r} instead of {ckpt.FORMAT!r})")


def _version() -> str:
    import ppgen

    return ppgen.__version__


def _check_shapes(spec, groups: dict, path: Path) -> None:
    """Every stored parameter (and posterior draw) has the shape the spec in config.json gives it."""
    expected = spec.param_shapes()
    options = ", ".join(f"{k}={v}" for k, v in spec.to_config()["options"].items()
                        if k in ("data_dim", "latent_dim", "latent_dims", "num_components", "hidden_dims"))
    for group, lead in (("params", 0), ("posterior", 2)):
        for name, value in groups[group].items():
            if name in expected and tuple(value.shape[lead:]) != tuple(expected[name]):
                raise CheckpointError(
                    f"the run folder {path} is inconsistent: {group} {name!r} in fit.safetensors has shape "
                    f"{tuple(value.shape[lead:])}, but the {spec.name} of config.json ({options}) needs "
                    f"{tuple(expected[name])}. Was config.json or fit.safetensors edited? Fit again, or restore "
                    f"the files that fit.save wrote")


def _load_device(backend: str, fitted_on: str, asked: Optional[str], path: Path) -> str:
    """The device a loaded run works on: ``asked`` (checked), else where it was fitted if this
    machine has it, else the best this machine has, with a note."""
    be = get_backend(backend)
    if asked is not None:
        asked = check_device(asked)
        be.device(asked)  # refuses a device this machine lacks, naming the fix
        return asked
    if be.available(fitted_on):
        return fitted_on
    best = "cuda" if be.available("cuda") else "cpu"
    print(f"ppgen: {path} was fitted on {fitted_on!r}, which this machine lacks; loaded on {best!r} "
          f"(pass ppgen.load(path, device=...) to choose)", file=sys.stderr)
    return best


def compare(fits, *, names=None, x=None):
    """Rank fits of the same data by ArviZ's PSIS-LOO and return ArviZ's comparison table.

    Every fit needs posterior draws (NUTS, HMC, or SVI with a global guide such as
    ``guide="normal"``): LOO averages the likelihood over them. Point estimates (EM, closed
    form) are compared with ``Fit.bic``/``Fit.aic`` instead.

    Args:
        fits: a list of ``Fit`` objects (or a dict name -> Fit).
        names: labels for the table (default: ``"<family>[<varying option>=<value>]"``, e.g.
            ``"gmm[num_components=3]"``, or the position).
        x: the data to score (default: each fit's own training data, which must be the same).

    Returns:
        pandas.DataFrame: ArviZ's comparison, best first, with the same columns on every arviz
        version (``ppgen.arviz.COMPARE_COLUMNS``: ``rank``, ``elpd``, ``se``, ``p``,
        ``elpd_diff``, ``dse``, ``weight``, ``warning``).

    Example:
        >>> fits = [ppgen.fit(models.GMM(2, k), x, inference.NUTS(num_chains=2)) for k in (1, 2, 3)]
        >>> ppgen.compare(fits)
    """
    from . import arviz as ppaz

    if isinstance(fits, dict):
        names, fits = list(fits), list(fits.values())
    fits = list(fits)
    if len(fits) < 2:
        raise ConfigError(f"compare needs at least two fits; got {len(fits)}")
    for i, f in enumerate(fits):
        if not isinstance(f, Fit):
            raise ConfigError(f"compare takes Fit objects; item {i} is {type(f).__name__}")
        if f.posterior is None:
            raise ConfigError(f"fit {i} ({f!r}) is a point estimate; LOO needs posterior draws. Fit it with "
                              f"inference.NUTS or SVI(guide='normal'), or compare point estimates with "
                              f"fit.bic() / fit.aic()")
    if names is None:
        names = _comparison_names(fits)
    if len(set(names)) != len(names):
        raise ConfigError(f"compare needs distinct names; got {names}")
    if x is None:
        if any(f._train is None for f in fits):
            raise ConfigError("a fit loaded from disk holds no training data; pass x=, the data to score")
        if len({np.shape(f._train) for f in fits}) > 1:
            raise ConfigError("the fits were trained on data of different shapes; LOO compares fits of "
                              "the same data: pass x=")
    named = {name: f.to_arviz(x=x, num_predictive=0) for name, f in zip(names, fits)}
    return ppaz.compare(named)


def _comparison_names(fits) -> list:
    configs = [f.model.to_config()["options"] if f.model.family != "program" else {} for f in fits]
    keys = sorted({k for c in configs for k in c if len({repr(c2.get(k)) for c2 in configs}) > 1})
    names = []
    for i, (f, c) in enumerate(zip(fits, configs)):
        label = ",".join(f"{k}={c.get(k)}" for k in keys)
        names.append(f"{f.model.name}[{label}]" if label else f"{f.model.name}[{i}]")
    if len(set(names)) != len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return names
