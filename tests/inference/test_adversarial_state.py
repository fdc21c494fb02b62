"""The adversarial kernels keep what is fixed for the run and hand out states of data only: a
NamedTuple with no functions, classes, programs or compiled functions in it, whose checkpoint
arrays restore to the same next step."""

import copy
import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ppgen import inference, models
from ppgen.inference.adversarial import JaxGameKernel, JaxGameState, TorchGameKernel, TorchGameState
from ppgen.program import BuiltProgram

SPECS = {
    "gan": lambda: models.GAN(6, latent_dim=2, hidden_dims=(8,), output="identity"),
    "aae": lambda: models.AAE(6, latent_dim=2, hidden_dims=(8,)),
    "wae": lambda: models.AAE(6, latent_dim=2, hidden_dims=(8,), regularizer="mmd"),
}
ALGORITHMS = {  # wgan-gp with a moving average; weight clipping; the AAE's and WAE's defaults
    "gan": inference.Adversarial(loss="wgan-gp", critic_steps=2, batch_size=16, ema=0.9, steps=10),
    "aae": inference.Adversarial(batch_size=16, steps=10),
    "wae": inference.Adversarial(batch_size=16, steps=10),
}


def _setup(backend: str, family: str):
    spec = SPECS[family]()
    x = np.random.default_rng(0).normal(size=(96, 6)).astype(np.float32)
    program = spec.build(backend, "implicit", data=x, seed=0)
    alg = ALGORITHMS[family].resolve_for(spec)
    rows = alg.batch_size_for(len(x))
    xs = torch.as_tensor(x) if backend == "pyro" else jnp.asarray(x)
    batches = [{"x": xs[i * rows:(i + 1) * rows]} for i in range(3)]
    return alg, program, batches


def _bad_leaves(value, path="state"):
    """Paths of the functions, classes, programs and compiled functions anywhere in ``value``
    (through dicts, tuples and lists)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _bad_leaves(v, f"{path}[{k!r}]")]
    if isinstance(value, (tuple, list)):
        fields = getattr(value, "_fields", None) or range(len(value))
        return [p for k, v in zip(fields, value) for p in _bad_leaves(v, f"{path}.{k}")]
    if isinstance(value, (type, BuiltProgram)) or callable(value):
        return [f"{path}: {type(value).__name__}"]
    return []


def _snapshot(kernel, state):
    """(arrays, meta) as a checkpoint keeps them: copied arrays, meta through JSON."""
    arrays, meta = kernel.state_arrays(state)
    return {k: np.array(v, copy=True) for k, v in arrays.items()}, json.loads(json.dumps(meta))


@pytest.mark.parametrize("family", ["gan", "aae", "wae"])
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_state_of_data_only_whose_checkpoint_restores_the_same_next_steps(backend, family):
    alg, program, batches = _setup(backend, family)
    kernel = alg.bind(program)
    assert isinstance(kernel, TorchGameKernel if backend == "pyro" else JaxGameKernel)
    assert kernel.inference is alg and kernel.program is program
    state, info = kernel.step(kernel.init(batches[0], 5), batches[0])
    assert isinstance(state, TorchGameState if backend == "pyro" else JaxGameState)
    assert hasattr(state, "_fields") and hasattr(info, "_fields")
    assert _bad_leaves(state) == []
    assert state.step == 1 and (state.ema is not None) == (family == "gan")
    assert all(isinstance(v, float) and np.isfinite(v) for v in info)

    arrays, meta = _snapshot(kernel, state)
    expected = []
    for batch in batches[1:]:
        state, info = kernel.step(state, batch)
        expected.append(info)
    after = kernel.result(state).params
    # restored into the advanced state, and into a fresh kernel's initial state (a resumed run)
    fresh = alg.bind(program)
    for k, start in ((kernel, state), (fresh, fresh.init(batches[0], 0))):
        restored = k.restore_state(start, copy.deepcopy(arrays), meta)
        assert restored.step == 1
        infos = []
        for batch in batches[1:]:
            restored, info = k.step(restored, batch)
            infos.append(info)
        assert infos == expected
        params = k.result(restored).params
        assert set(params) == set(after) and all(np.array_equal(params[n], after[n]) for n in after)


def test_the_state_check_finds_functions_classes_and_programs():
    alg, program, batches = _setup("pyro", "wae")
    assert _bad_leaves({"a": [1, (np.zeros(2), print)], "b": TorchGameKernel, "c": program, "d": lambda: 0}) == \
        ["state['a'].1.1: builtin_function_or_method", "state['b']: type", "state['c']: BuiltProgram",
         "state['d']: function"]


def test_a_checkpoint_before_the_first_step_resumes_the_seeded_stream():
    """Pyro's state has no random-number state before its first step (the step seeds torch);
    its checkpoint holds the state that seed gives."""
    alg, program, batches = _setup("pyro", "gan")
    kernel = alg.bind(program)
    state = kernel.init(batches[0], 3)
    assert state.rng is None and state.seed == 3
    arrays, meta = _snapshot(kernel, state)
    _, expected = kernel.step(state, batches[0])
    fresh = alg.bind(program)
    restored = fresh.restore_state(fresh.init(batches[0], 0), arrays, meta)
    assert fresh.step(restored, batches[0])[1] == expected
