"""The inference protocol's states: an algorithm binds a program into a Kernel, and what it
advances is a NamedTuple of data (no classes, closures or programs), which round-trips
through a checkpoint's arrays. ClosedForm, EM and NUTS here; SVI and Adversarial have their own
files."""

import types

import numpy as np
import pytest

from ppgen import inference, models
from ppgen.backends import get_backend
from ppgen.program import BuiltProgram

BACKENDS = ("pyro", "numpyro")


def plain_data(value, where="state") -> None:
    """Fail when ``value`` holds (through tuples, lists and dicts) a function, a class, a
    program or anything else callable."""
    if isinstance(value, dict):
        for k, v in value.items():
            plain_data(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            plain_data(v, f"{where}[{i}]")
        return
    assert not isinstance(value, (type, types.FunctionType, types.MethodType, BuiltProgram)), where
    assert not callable(value), f"{where} holds a callable: {type(value).__name__}"


def _batch(backend, x):
    be = get_backend(backend)
    return {"x": be.asarray(x), "index": be.ppl.index(np.arange(len(x)))}


def _clusters(n=120):
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(-3, 1, (n // 2, 2)), rng.normal(3, 1, (n // 2, 2))]).astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_em_state_is_plain_data_and_round_trips(backend):
    x = _clusters()
    spec = models.GMM(data_dim=2, num_components=2)
    kernel = inference.EM(max_iter=3, n_init=2).bind(spec.build(backend, "marginal", data=x))
    assert isinstance(kernel, inference.Kernel)
    batch = _batch(backend, x)
    state = kernel.init(batch, 0)
    assert isinstance(state, inference.EMState)
    for _ in range(4):  # into the second restart, so a best run is kept
        state, info = kernel.step(state, batch)
        plain_data(state)
        assert info._fields == ("log_likelihood", "change", "converged", "restart", "done")
    assert state.restart == 1 and state.best is not None
    arrays, meta = kernel.state_arrays(state)
    restored = kernel.restore_state(kernel.init(batch, 0), arrays, meta)
    assert (restored.iteration, restored.restart, restored.last) == (state.iteration, state.restart, state.last)
    nxt, info = kernel.step(state, batch)
    again, info_again = kernel.step(restored, batch)
    assert info == info_again
    for k in nxt.params:
        np.testing.assert_array_equal(np.asarray(nxt.params[k]), np.asarray(again.params[k]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_form_state(backend):
    x = np.random.default_rng(1).normal(size=(50, 5)).astype(np.float32)
    kernel = inference.ClosedForm().bind(models.PPCA(5, 2).build(backend, "marginal", data=x))
    state = kernel.init(_batch(backend, x), 0)
    assert state == inference.ClosedFormState(params=None)
    state, info = kernel.step(state, _batch(backend, x))
    plain_data(state)
    assert set(state.params) == set(kernel.result(state).params) and np.isfinite(info.log_likelihood)


def test_mcmc_state(backend="pyro"):
    """(The kernel is the same for both backends; NumPyro's NUTS would add 30 s of compilation,
    and its fits run through this kernel in tests/models.)"""
    x = np.random.default_rng(2).normal(size=(30, 3)).astype(np.float32)
    spec = models.PPCA(3, 1)
    nuts = inference.NUTS(num_samples=4, num_warmup=4, num_chains=1, max_tree_depth=2, progress_bar=False)
    kernel = nuts.bind(spec.build(backend, "bayesian", data=x))
    state = kernel.init(_batch(backend, x), 7)
    assert state == inference.MCMCState(seed=7)
    state, info = kernel.step(state, _batch(backend, x))
    plain_data(state)
    assert isinstance(info, inference.mcmc.MCMCInfo)
    assert all(v.shape[:2] == (1, 4) for v in kernel.result(state).posterior.values())


def test_the_checker_catches_closures():
    with pytest.raises(AssertionError):
        plain_data({"update": lambda s: s})
    with pytest.raises(AssertionError):
        plain_data((1, [inference.EM]))
