"""SVI's kernels keep data-only NamedTuple states: no classes, closures or programs in them;
two kernels of one program and seed take the same steps; a checkpoint's arrays give the
state back exactly."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest

from ppgen import inference, models
from ppgen.backends import get_backend
from ppgen.program import BuiltProgram

RNG = np.random.default_rng(0)
X_LEVELS = RNG.integers(0, 5, (30, 16)).astype(np.float32)
X_REAL = RNG.normal(size=(24, 4)).astype(np.float32)

CASES = {
    # a local (amortised) guide, minibatches, dropout, KL warm-up, a decaying rate, a moving average
    "vae": (lambda: models.VAE(16, latent_dim=2, hidden_dims=(8,), dropout=0.2, likelihood="categorical",
                               num_levels=5), X_LEVELS,
            inference.SVI(elbo="trace", steps=6, batch_size=10, lr=0.05, lr_decay=0.5, ema=0.6, kl_warmup=3,
                          optimizer="clipped_adam")),
    # an automatic global guide over a Bayesian form, full batches
    "ppca_bayes": (lambda: models.PPCA(4, 2), X_REAL, inference.SVI(guide="normal", steps=6, lr=0.05, num_samples=4)),
}


def _setup(backend: str, case: str):
    make, x, alg = CASES[case]
    spec = make()
    plan = alg.plan(spec, x.shape[0])
    program = spec.build(backend, plan.form, data=x, guide=plan.guide, **plan.build_options)
    be = get_backend(backend)
    xs = be.asarray(x, "float32")
    batches = []
    for start in range(0, x.shape[0], plan.batch_size):
        index = np.arange(start, min(start + plan.batch_size, x.shape[0]))
        idx = be.ppl.index(index, like=xs)
        batches.append({"x": be.ppl.take_rows(xs, idx) if len(index) < x.shape[0] else xs, "index": idx})
    return plan.inference, program, batches


def _code_or_program(value, path="state"):
    """The path of the first function, class, BuiltProgram or jitted function inside ``value``
    (through dicts, lists and tuples), or None. (Arrays, tensors and a torch optimiser are data.)"""
    if isinstance(value, (BuiltProgram, functools.partial)) or inspect.isclass(value) or inspect.isroutine(value):
        return f"{path}: {type(value).__name__}"
    if callable(value) and not hasattr(value, "shape") and not hasattr(value, "param_groups"):
        return f"{path}: callable {type(value).__name__}"  # a jitted function, a module, a closure object
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _code_or_program(item, f"{path}[{key!r}]" if isinstance(value, dict) else f"{path}.{key}")
        if found:
            return found
    return None


def _run(kernel, state, batches, steps):
    losses = []
    for i in range(steps):
        state, info = kernel.step(state, batches[i % len(batches)])
        losses.append(info.loss)
    return state, losses


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_svi_state_is_data_only_and_info_a_namedtuple(backend, case):
    alg, program, batches = _setup(backend, case)
    kernel = alg.bind(program)
    assert isinstance(kernel, inference.Kernel)
    assert isinstance(kernel, inference.PyroSVIKernel if backend == "pyro" else inference.NumPyroSVIKernel)
    state = kernel.init(batches[0], 0)
    state, info = kernel.step(state, batches[0])
    expected = inference.PyroSVIState if backend == "pyro" else inference.NumPyroSVIState
    assert type(state) is expected and hasattr(state, "_fields")
    assert hasattr(info, "_fields") and isinstance(info, tuple) and isinstance(info.loss, float)
    assert _code_or_program(tuple(state)) is None, _code_or_program(tuple(state))
    assert state.step == 1
    assert (state.ema is not None) == bool(alg.ema)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_two_kernels_of_one_program_and_seed_take_the_same_steps(backend, case):
    alg, program, batches = _setup(backend, case)
    first, second = alg.bind(program), alg.bind(program)
    a, b = first.init(batches[0], 7), second.init(batches[0], 7)
    losses_a, losses_b = [], []
    for i in range(5):  # interleaved: neither kernel's randomness leaks into the other's
        a, info_a = first.step(a, batches[i % len(batches)])
        b, info_b = second.step(b, batches[i % len(batches)])
        losses_a.append(info_a.loss)
        losses_b.append(info_b.loss)
    assert losses_a == losses_b
    assert first.evaluate(a, batches[0]) == second.evaluate(b, batches[0])
    for k, v in first.result(a).params.items():
        np.testing.assert_array_equal(v, second.result(b).params[k])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_state_arrays_round_trip_to_the_same_next_steps(backend, case):
    alg, program, batches = _setup(backend, case)
    kernel = alg.bind(program)
    state, _ = _run(kernel, kernel.init(batches[0], 0), batches, 3)
    arrays, meta = kernel.state_arrays(state)
    arrays = {k: np.array(v, copy=True) for k, v in arrays.items()}  # as ppgen.fit snapshots them
    state, ahead = _run(kernel, state, batches, 3)
    state = kernel.restore_state(state, arrays, meta)
    assert state.step == 3
    state, again = _run(kernel, state, batches, 3)
    assert again == ahead

    # into a fresh kernel of the same program, as a resumed run does
    fresh = alg.bind(program)
    restored = fresh.restore_state(fresh.init(batches[0], 1), arrays, meta)
    _, resumed = _run(fresh, restored, batches, 3)
    assert resumed == ahead
