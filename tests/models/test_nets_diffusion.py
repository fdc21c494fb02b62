"""Diffusion denoisers (timestep embedding, TimeMLP, UNet): formulas, backend agreement, gradients,
bfloat16, and refused configurations."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from ppgen.errors import ConfigError
from ppgen.models.nets import TimeMLP, UNet, ops_for, timestep_embedding

RNG = np.random.default_rng(0)
UNETS = {"28x28x1": ((28, 28), (8, 16, 16)), "32x32x3": ((32, 32, 3), (8, 16))}


def _torch(tree):
    import torch

    return {k: torch.as_tensor(v) for k, v in tree.items()}


def _jax(tree, dtype=None):
    import jax.numpy as jnp

    return {k: jnp.asarray(v, dtype) for k, v in tree.items()}


@functools.lru_cache
def _jitted_apply():
    import jax

    return jax.jit(lambda net, p, x, t: net.apply(ops_for("numpyro"), p, x, t), static_argnums=0)


def _run_jax(net, params, x, t):
    """The JAX forward pass, compiled once per network and dtype (faster than op by op on the CPU)."""
    return _jitted_apply()(net, params, x, t)


@functools.lru_cache
def _unet(name):
    shape, channels = UNETS[name]
    net = UNet(shape, channels, time_dim=16, num_groups=4)
    size = int(np.prod(shape))
    return net, RNG.normal(size=(3, size)).astype(np.float32), np.array([0, 17, 999])


def test_timestep_embedding_matches_the_sinusoid_formula():
    t = np.array([[0, 1, 7], [250, 999, 500]])
    half = 8
    angles = t[..., None] * np.exp(-np.log(10000.0) * np.arange(half) / half)   # float64 reference
    expected = np.concatenate([np.cos(angles), np.sin(angles)], axis=-1)
    import jax.numpy as jnp
    import torch

    got_torch = timestep_embedding(ops_for("pyro"), torch.as_tensor(t), 16).numpy()
    got_jax = np.asarray(timestep_embedding(ops_for("numpyro"), jnp.asarray(t), 16))
    assert got_torch.shape == got_jax.shape == (2, 3, 16) and got_torch.dtype == np.float32
    # float32 angles up to ~1000 carry a rounding error of ~1e-4
    np.testing.assert_allclose(got_torch, expected, atol=2e-4)
    np.testing.assert_allclose(got_jax, expected, atol=2e-4)
    small = timestep_embedding(ops_for("pyro"), 2.5, 6, max_period=100).numpy()
    angles = 2.5 * 100.0 ** (-np.arange(3) / 3)
    np.testing.assert_allclose(small, np.concatenate([np.cos(angles), np.sin(angles)]), atol=1e-6)


@pytest.mark.parametrize("ops_name", ["pyro", "numpyro"])
def test_group_norm_op_equals_torch(ops_name):
    import torch

    x = RNG.normal(2.0, 3.0, size=(2, 8, 5, 6)).astype(np.float32)
    weight, bias = RNG.normal(size=8).astype(np.float32), RNG.normal(size=8).astype(np.float32)
    expected = torch.nn.functional.group_norm(torch.as_tensor(x), 4, torch.as_tensor(weight),
                                              torch.as_tensor(bias), eps=1e-5).numpy()
    convert = _torch if ops_name == "pyro" else _jax
    arrays = convert({"x": x, "weight": weight, "bias": bias})
    got = ops_for(ops_name).group_norm(arrays["x"], 4, arrays["weight"], arrays["bias"])
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_time_mlp_matches_numpy_and_both_backends():
    net = TimeMLP(3, (16, 12), time_dim=8, activation="silu")
    params = net.init(seed=1)
    x = RNG.normal(size=(2, 4, 3)).astype(np.float32)          # two leading dims
    t = RNG.integers(0, 1000, size=(2, 4))

    def silu(v):
        return v / (1 + np.exp(-v))

    def dense(v, name):
        return v @ params[f"{name}.weight"].T.astype(np.float64) + params[f"{name}.bias"]

    angles = t[..., None] * np.exp(-np.log(10000.0) * np.arange(4) / 4)
    temb = silu(dense(silu(dense(np.concatenate([np.cos(angles), np.sin(angles)], -1), "time.0")), "time.1"))
    h = dense(x, "input")
    for i in range(2):
        h = silu(dense(h, f"hidden{i}") + dense(temb, f"hidden{i}_time"))
    expected = dense(h, "out")

    import torch

    a = net.apply(ops_for("pyro"), _torch(params), torch.as_tensor(x), torch.as_tensor(t)).numpy()
    b = np.asarray(_run_jax(net, _jax(params), x, t))
    assert a.shape == b.shape == (2, 4, 3)
    np.testing.assert_allclose(a, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # a scalar timestep is broadcast to every row
    same = net.apply(ops_for("pyro"), _torch(params), torch.as_tensor(x), 5).numpy()
    full = net.apply(ops_for("pyro"), _torch(params), torch.as_tensor(x), torch.full((2, 4), 5)).numpy()
    np.testing.assert_allclose(same, full, rtol=1e-6)


@pytest.mark.parametrize("name", list(UNETS))
def test_unet_backends_agree(name):
    import torch

    net, x, t = _unet(name)
    params = net.init(seed=2)
    assert all(np.all(v == (1.0 if k.endswith("weight") else 0.0)) for k, v in params.items() if ".norm" in k)
    a = net.apply(ops_for("pyro"), _torch(params), torch.as_tensor(x), torch.as_tensor(t)).numpy()
    b = np.asarray(_run_jax(net, _jax(params), x, t))
    assert a.shape == b.shape == x.shape
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert np.abs(a[0] - a[1]).max() > 1e-3       # the timestep (and input) changes the output


@pytest.mark.parametrize("net", [TimeMLP(2, (16, 16), time_dim=8), UNet((8, 8), (4, 8), time_dim=8, num_groups=2)],
                         ids=["TimeMLP", "UNet"])
def test_gradients_reach_every_parameter(net):
    import torch

    params = {k: torch.tensor(v, requires_grad=True) for k, v in net.init(seed=3).items()}
    data_dim = net.data_dim if isinstance(net, TimeMLP) else 64
    x = torch.as_tensor(RNG.normal(size=(4, data_dim)).astype(np.float32))
    out = net.apply(ops_for("pyro"), params, x, torch.tensor([1, 40, 300, 999]))
    (out * torch.as_tensor(RNG.normal(size=tuple(out.shape)).astype(np.float32))).sum().backward()
    assert set(params) == set(net.shapes())
    dead = [k for k, v in params.items() if v.grad is None or not torch.any(v.grad != 0)]
    assert not dead, f"no gradient for {dead}"


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_bfloat16_output_close_to_float32(backend):
    for net, x, t in [(TimeMLP(2, (32, 32), time_dim=16), RNG.normal(size=(8, 2)).astype(np.float32),
                       RNG.integers(0, 1000, 8)), _unet("28x28x1")]:
        params = net.init(seed=4)
        if backend == "pyro":
            import torch

            args = _torch(params), torch.as_tensor(x), torch.as_tensor(t)
            full = net.apply(ops_for("pyro"), *args).numpy()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = net.apply(ops_for("pyro"), *args)
            assert low.dtype == torch.bfloat16
            low = low.float().numpy()
        else:
            import jax.numpy as jnp

            full = np.asarray(_run_jax(net, _jax(params), x, t))
            low = _run_jax(net, _jax(params, jnp.bfloat16), jnp.asarray(x, jnp.bfloat16), t)
            assert low.dtype == jnp.bfloat16
            low = np.asarray(low, np.float32)
        assert np.isfinite(low).all()
        assert np.linalg.norm(low - full) / np.linalg.norm(full) < 5e-2


@pytest.mark.parametrize("make, match", [
    (lambda: UNet((27, 27), (32, 64)), r"halves the image 1 time\(s\): height and width must be divisible by 2; "
                                       r"got 27×27"),
    (lambda: UNet((28, 28), (8, 16, 32, 64)), "must be divisible by 8; got 28×28. Use fewer levels"),
    (lambda: UNet((28, 28), (12, 20), num_groups=8), r"channels \(12, 20\) has \[12, 20\] not divisible by 8"),
    (lambda: UNet((28, 28), (8, 16), num_groups=0), "num_groups must be a positive"),
    (lambda: UNet((28,), (8, 16)), r"image_shape must be \(height, width\) or \(height, width, channels\)"),
    (lambda: UNet((28, 28, 0), (8, 16)), r"positive integers; got \(28, 28, 0\)"),
    (lambda: UNet((28, 28), ()), "one or more positive widths"),
    (lambda: UNet((28, 28), time_dim=7), "time_dim must be a positive even number; got 7 \\(use 8\\)"),
    (lambda: UNet((28, 28), activation="swish"), "unknown activation 'swish'"),
    (lambda: TimeMLP(2, time_dim=3), "time_dim must be a positive even number; got 3"),
    (lambda: TimeMLP(2, ()), "at least one positive hidden width"),
    (lambda: timestep_embedding(ops_for("pyro"), 3, 5), "even number; got 5"),
])
def test_bad_configurations_are_refused_with_the_fix(make, match):
    with pytest.raises(ConfigError, match=match):
        make()
