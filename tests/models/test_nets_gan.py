"""DCGAN networks and their primitives: conv_transpose2d, batch_norm and padded conv2d against PyTorch,
output shapes, backend agreement, batch statistics, the DCGAN initialisation, and refused configurations."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ppgen.errors import ConfigError
from ppgen.models.nets import DCGANDiscriminator, DCGANGenerator, ops_for

RNG = np.random.default_rng(0)
TORCH, JAX = ops_for("pyro"), ops_for("numpyro")
IMAGES = {"28x28x1": (28, 28, 1), "32x32x3": (32, 32, 3)}
LATENT, LABELS = 8, 10
CHANNELS_G, CHANNELS_D = (16, 8), (8, 16)


def _randn(*shape, scale=1.0, shift=0.0):
    return (shift + scale * RNG.normal(size=shape)).astype(np.float32)


def _torch(tree):
    return {k: torch.as_tensor(v) for k, v in tree.items()}


def _jax(tree):
    return {k: jnp.asarray(v) for k, v in tree.items()}


@functools.lru_cache
def _jitted_apply():
    return jax.jit(lambda net, p, x, e: net.apply(JAX, p, x, e), static_argnums=0)


# ---------------------------------------------------------------- primitives


@pytest.mark.parametrize("kernel,stride,padding,size", [(4, 2, 1, (7, 7)), (3, 1, 0, (5, 6)), (5, 3, 2, (4, 3)),
                                                        (3, 2, 1, (6, 5)), (1, 1, 0, (3, 3))])
def test_jax_conv_transpose2d_matches_torch(kernel, stride, padding, size):
    x, w, b = _randn(2, 3, *size), _randn(3, 5, kernel, kernel), _randn(5)
    expected = F.conv_transpose2d(torch.as_tensor(x), torch.as_tensor(w), torch.as_tensor(b), stride=stride,
                                  padding=padding).numpy()
    got = np.asarray(JAX.conv_transpose2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b), stride, padding))
    assert got.shape == expected.shape == (2, 5, (size[0] - 1) * stride - 2 * padding + kernel,
                                           (size[1] - 1) * stride - 2 * padding + kernel)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    got_torch = TORCH.conv_transpose2d(torch.as_tensor(x), torch.as_tensor(w), torch.as_tensor(b), stride, padding)
    np.testing.assert_array_equal(got_torch.numpy(), expected)


@pytest.mark.parametrize("kernel,stride,padding", [(4, 2, 1), (3, 1, 1), (3, 2, 0), (5, 1, 2)])
def test_conv2d_with_explicit_padding_matches_torch(kernel, stride, padding):
    x, w, b = _randn(2, 3, 9, 8), _randn(4, 3, kernel, kernel), _randn(4)
    expected = F.conv2d(torch.as_tensor(x), torch.as_tensor(w), torch.as_tensor(b), stride=stride,
                        padding=padding).numpy()
    got = np.asarray(JAX.conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b), stride, padding=padding))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    got_torch = TORCH.conv2d(torch.as_tensor(x), torch.as_tensor(w), torch.as_tensor(b), stride, padding=padding)
    np.testing.assert_array_equal(got_torch.numpy(), expected)


def test_conv2d_without_padding_keeps_same_padding():
    x, w, b = _randn(2, 3, 8, 8), _randn(4, 3, 3, 3), _randn(4)
    expected = F.conv2d(torch.as_tensor(x), torch.as_tensor(w), torch.as_tensor(b), stride=2, padding=1).numpy()
    np.testing.assert_array_equal(TORCH.conv2d(*map(torch.as_tensor, (x, w, b)), 2).numpy(), expected)
    np.testing.assert_allclose(np.asarray(JAX.conv2d(*map(jnp.asarray, (x, w, b)), 2)), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 5, 6), (3, 2, 4)])
def test_batch_norm_matches_torch(shape):
    x, w, b = _randn(*shape, scale=3.0, shift=2.0), _randn(shape[1]), _randn(shape[1])
    expected = F.batch_norm(torch.as_tensor(x), None, None, torch.as_tensor(w), torch.as_tensor(b),
                            training=True).numpy()
    got = np.asarray(JAX.batch_norm(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(TORCH.batch_norm(*map(torch.as_tensor, (x, w, b))).numpy(), expected,
                               atol=1e-6, rtol=0)
    # normalised over every axis but 1: per-channel mean 0 and (biased) variance 1 before the affine map
    axes = (0,) + tuple(range(2, len(shape)))
    unit = np.asarray(JAX.batch_norm(jnp.asarray(x), jnp.ones(shape[1]), jnp.zeros(shape[1])))
    np.testing.assert_allclose(unit.mean(axes), 0, atol=1e-5)
    np.testing.assert_allclose(unit.var(axes), 1, atol=1e-3)


def test_torch_ops_match_torch_modules():
    """An independent check: the primitives against torch.nn layers holding the same weights."""
    x, w, b = _randn(3, 6, 5, 5), _randn(6, 4, 4, 4), _randn(4)
    deconv = torch.nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1)
    deconv.weight.data, deconv.bias.data = torch.as_tensor(w), torch.as_tensor(b)
    with torch.no_grad():
        expected = deconv(torch.as_tensor(x)).numpy()
    got = TORCH.conv_transpose2d(*map(torch.as_tensor, (x, w, b)), 2, 1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(JAX.conv_transpose2d(*map(jnp.asarray, (x, w, b)), 2, 1)), expected,
                               atol=1e-5, rtol=0)

    h, gamma, beta = _randn(4, 6, 5, 5, scale=2.0, shift=-1.0), _randn(6), _randn(6)
    norm = torch.nn.BatchNorm2d(6).train()
    norm.weight.data, norm.bias.data = torch.as_tensor(gamma), torch.as_tensor(beta)
    with torch.no_grad():
        expected = norm(torch.as_tensor(h)).numpy()
    got = TORCH.batch_norm(*map(torch.as_tensor, (h, gamma, beta))).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(JAX.batch_norm(*map(jnp.asarray, (h, gamma, beta)))), expected,
                               atol=1e-5, rtol=0)


def test_batch_norm_in_bfloat16_keeps_the_dtype():
    x, w, b = _randn(8, 4, 3, 3, scale=2.0, shift=5.0), _randn(4), _randn(4)
    reference = F.batch_norm(torch.as_tensor(x), None, None, torch.as_tensor(w), torch.as_tensor(b),
                             training=True).numpy()
    got_torch = TORCH.batch_norm(torch.as_tensor(x).bfloat16(), torch.as_tensor(w), torch.as_tensor(b))
    got_jax = JAX.batch_norm(jnp.asarray(x, jnp.bfloat16), jnp.asarray(w), jnp.asarray(b))
    assert got_torch.dtype == torch.bfloat16 and got_jax.dtype == jnp.bfloat16
    np.testing.assert_allclose(got_torch.float().numpy(), reference, atol=0.1)
    np.testing.assert_allclose(np.asarray(got_jax, np.float32), reference, atol=0.1)


# ---------------------------------------------------------------- networks


def _networks(image, conditional):
    shape = IMAGES[image]
    extra = LABELS if conditional else 0
    return (DCGANGenerator(shape, LATENT + extra, CHANNELS_G),
            DCGANDiscriminator(shape, extra_dim=extra, channels=CHANNELS_D, out_dim=2))


def _labels(*lead):
    return np.eye(LABELS, dtype=np.float32)[RNG.integers(LABELS, size=lead)]


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "label"])
@pytest.mark.parametrize("image", list(IMAGES))
def test_networks_shapes_and_backend_agreement(image, conditional):
    gen, disc = _networks(image, conditional)
    H, W, C = IMAGES[image]
    for lead in [(6,), (3, 4)]:                     # a batch; particles × batch
        z = _randn(*lead, LATENT)
        label = _labels(*lead[-1:]) if conditional else None   # shared by the particles: broadcast
        pg = gen.init(seed=1)
        out_t = gen.apply(TORCH, _torch(pg), torch.as_tensor(z), None if label is None else torch.as_tensor(label))
        out_j = _jitted_apply()(gen, _jax(pg), jnp.asarray(z), None if label is None else jnp.asarray(label))
        assert tuple(out_t.shape) == out_j.shape == lead + (H * W * C,)
        np.testing.assert_allclose(np.asarray(out_j), out_t.numpy(), atol=1e-4, rtol=0)

        x = np.tanh(out_t.numpy())
        pd = disc.init(seed=2)
        score_t = disc.apply(TORCH, _torch(pd), torch.as_tensor(x), None if label is None else torch.as_tensor(label))
        score_j = _jitted_apply()(disc, _jax(pd), jnp.asarray(x), None if label is None else jnp.asarray(label))
        assert tuple(score_t.shape) == score_j.shape == lead + (2,)
        np.testing.assert_allclose(np.asarray(score_j), score_t.numpy(), atol=1e-4, rtol=0)


def test_generator_normalises_leading_dims_as_one_batch_and_discriminator_per_example():
    gen, disc = _networks("28x28x1", conditional=False)
    pg, pd = _torch(gen.init(seed=0)), _torch(disc.init(seed=0))
    z = torch.as_tensor(_randn(3, 4, LATENT))
    np.testing.assert_allclose(gen.apply(TORCH, pg, z).reshape(12, -1).numpy(),
                               gen.apply(TORCH, pg, z.reshape(12, LATENT)).numpy(), atol=1e-6)
    x = torch.as_tensor(_randn(5, 784))
    np.testing.assert_allclose(disc.apply(TORCH, pd, x[:2]).numpy(), disc.apply(TORCH, pd, x)[:2].numpy(), atol=1e-6)


def test_generator_defaults_and_layout():
    gen = DCGANGenerator((32, 32, 3), in_dim=100)
    shapes = gen.shapes()
    assert shapes == {"project.weight": (128 * 8 * 8, 100), "project.bias": (128 * 8 * 8,),
                      "bn0.weight": (128,), "bn0.bias": (128,),
                      "deconv0.weight": (128, 64, 4, 4), "deconv0.bias": (64,),
                      "bn1.weight": (64,), "bn1.bias": (64,),
                      "deconv1.weight": (64, 3, 4, 4), "deconv1.bias": (3,)}
    disc = DCGANDiscriminator((28, 28), extra_dim=10)
    assert disc.shapes() == {"conv0.weight": (64, 1, 4, 4), "conv0.bias": (64,),
                             "conv1.weight": (128, 64, 4, 4), "conv1.bias": (128,),
                             "out.weight": (1, 128 * 7 * 7 + 10), "out.bias": (1,)}
    # the output is flattened channels-last: pixel (i, j), channel c at (i·W + j)·C + c
    params = _torch(gen.init(seed=0))
    z = torch.as_tensor(_randn(4, 100))
    out = gen.apply(TORCH, params, z).reshape(4, 32, 32, 3)
    h = F.relu(F.batch_norm(F.linear(z, params["project.weight"], params["project.bias"]).reshape(4, 128, 8, 8),
                            None, None, params["bn0.weight"], params["bn0.bias"], training=True))
    h = F.conv_transpose2d(h, params["deconv0.weight"], params["deconv0.bias"], 2, 1)
    h = F.relu(F.batch_norm(h, None, None, params["bn1.weight"], params["bn1.bias"], training=True))
    h = F.conv_transpose2d(h, params["deconv1.weight"], params["deconv1.bias"], 2, 1)
    np.testing.assert_allclose(out.numpy(), h.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_generator_first_stage_is_batch_normalised():
    gen = DCGANGenerator((28, 28), in_dim=LATENT + LABELS, channels=CHANNELS_G)
    params = gen.init(seed=3)
    params["bn0.weight"], params["bn0.bias"] = np.ones(CHANNELS_G[0], np.float32), np.zeros(CHANNELS_G[0], np.float32)
    z, label = _randn(2, 16, LATENT, scale=2.0, shift=0.5), _labels(16)
    for ops, conv in [(TORCH, torch.as_tensor), (JAX, jnp.asarray)]:
        h = np.asarray(gen._project(ops, {k: conv(v) for k, v in params.items()}, conv(z), conv(label)))
        assert h.shape == (32, CHANNELS_G[0], 7, 7)
        np.testing.assert_allclose(h.mean((0, 2, 3)), 0, atol=1e-5)
        np.testing.assert_allclose(h.var((0, 2, 3)), 1, atol=1e-3)


def test_dcgan_init_statistics():
    gen, disc = DCGANGenerator((32, 32, 3), in_dim=100), DCGANDiscriminator((32, 32, 3))
    pg, pd = gen.init(seed=0), disc.init(seed=0)
    for params, net in [(pg, gen), (pd, disc)]:
        assert {k: v.shape for k, v in params.items()} == net.shapes()
        assert all(v.dtype == np.float32 for v in params.values())
        assert all(not v.any() for k, v in params.items() if k.endswith(".bias"))
    for name in ["project.weight", "deconv0.weight"]:
        assert abs(pg[name].std() / 0.02 - 1) < 0.1 and abs(pg[name].mean()) < 0.002
    assert abs(pd["conv1.weight"].std() / 0.02 - 1) < 0.1
    assert abs(pg["bn0.weight"].mean() - 1) < 0.01 and 0.01 < pg["bn0.weight"].std() < 0.03
    # deterministic in the seed, different across seeds
    np.testing.assert_array_equal(gen.init(seed=0)["deconv1.weight"], pg["deconv1.weight"])
    assert not np.array_equal(gen.init(seed=1)["deconv1.weight"], pg["deconv1.weight"])


@pytest.mark.parametrize("build,match", [
    (lambda: DCGANGenerator((30, 30), in_dim=10), "divisible by 4; got 30×30"),
    (lambda: DCGANGenerator((28, 26, 3), in_dim=10), "divisible by 4; got 28×26"),
    (lambda: DCGANGenerator((28, 28, 1, 1), in_dim=10), "image_shape"),
    (lambda: DCGANGenerator((28, 28), in_dim=0), "in_dim"),
    (lambda: DCGANGenerator((28, 28), in_dim=10, channels=(64, 0)), "channels"),
    (lambda: DCGANGenerator((28, 28), in_dim=10, channels=(64,)), "channels"),
    (lambda: DCGANDiscriminator((28, 30)), "divisible by 4"),
    (lambda: DCGANDiscriminator((0, 28)), "image_shape"),
    (lambda: DCGANDiscriminator((28, 28), extra_dim=-1), "extra_dim"),
    (lambda: DCGANDiscriminator((28, 28), out_dim=0), "out_dim"),
    (lambda: DCGANDiscriminator((28, 28), channels=(-8, 16)), "channels"),
])
def test_bad_arguments_raise_config_error(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_mismatched_inputs_raise_config_error():
    gen = DCGANGenerator((28, 28), in_dim=LATENT + LABELS, channels=CHANNELS_G)
    with pytest.raises(ConfigError, match=f"in_dim={LATENT}"):
        gen.apply(TORCH, _torch(gen.init(0)), torch.zeros(2, LATENT))
    disc = DCGANDiscriminator((28, 28), extra_dim=LABELS, channels=CHANNELS_D)
    with pytest.raises(ConfigError, match="extra_dim=0"):
        disc.apply(TORCH, _torch(disc.init(0)), torch.zeros(2, 784))
