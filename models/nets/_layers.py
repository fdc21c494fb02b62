"""Layer descriptions and the two array backends they run on (see the package docstring)."""

from __future__ import annotations

import math
import numpy as np

from ppgen.errors import ConfigError
from ppgen.networks import Network

ACTIVATIONS = ("relu", "gelu", "elu", "leaky_relu", "silu", "tanh", "softplus")
#: image sides the convolutional networks take: two stride-2 stages need sides divisible by 4
IMAGE_SIZES = "height and width divisible by 4 (e.g. 28×28 MNIST, 32×32 CIFAR-10)"


class _TorchOps:
    """Forward-pass primitives in PyTorch (inputs channels-first)."""

    name = "torch"

    def __init__(self):
        import torch
        import torch.nn.functional as F

        self.xp, self.F = torch, F

    def linear(self, x, w, b):
        return self.F.linear(x, w, b)

    def conv2d(self, x, w, b, stride: int, padding: int | None = None):
        """2-D convolution of (N, C, H, W) by an (out, in, kh, kw) kernel; ``padding`` on every side,
        kernel//2 ("same" for odd kernels at stride 1) when None."""
        return self.F.conv2d(x, w, b, stride=stride, padding=w.shape[-1] // 2 if padding is None else padding)

    def conv_transpose2d(self, x, w, b, stride: int, padding: int):
        """Transposed convolution of (N, C_in, H, W) by an (in, out, kh, kw) kernel (PyTorch's layout):
        ``torch.nn.functional.conv_transpose2d``; the output side is (H-1)·stride - 2·padding + kh."""
        return self.F.conv_transpose2d(x, w, b, stride=stride, padding=padding)

    def upsample2(self, x):
        return self.F.interpolate(x, scale_factor=2, mode="nearest")

    def activation(self, name: str, x):
        F = self.F
        if name == "leaky_relu":
            return F.leaky_relu(x, 0.2)
        return {"relu": F.relu, "gelu": F.gelu, "elu": F.elu, "silu": F.silu, "tanh": self.xp.tanh,
                "softplus": F.softplus}[name](x)

    def dropout(self, x, rate: float, training: bool = False):
        """Inverted dropout of ``rate`` when ``training`` (torch's global RNG); identity otherwise."""
        if rate <= 0 or not training:
            return x
        return self.F.dropout(x, rate, training=True)

    def reshape(self, x, shape):
        return x.reshape(shape)

    def transpose(self, x, axes):
        return x.permute(*axes)

    def concat(self, parts, axis: int = -1):
        return self.xp.cat(parts, dim=axis)

    def group_norm(self, x, num_groups: int, weight, bias, eps: float = 1e-5):
        """Group normalisation of (N, C, ...) over each group of C/num_groups channels (and all
        positions), then a per-channel affine map: ``torch.nn.functional.group_norm``."""
        return self.F.group_norm(x, num_groups, weight, bias, eps)

    def batch_norm(self, x, weight, bias, eps: float = 1e-5):
        """Batch normalisation of (N, C) or (N, C, ...) with the current batch's statistics: over every
        axis but the channel axis 1, mean and biased variance, then a per-channel affine map, as
        ``torch.nn.functional.batch_norm(..., training=True)``. Stateless (no running statistics); the
        statistics of a half-precision ``x`` are taken in float32, the result has ``x``'s dtype."""
        torch, F = self.xp, self.F
        if x.dtype not in (torch.float16, torch.bfloat16):
            return F.batch_norm(x, None, None, weight.to(x.dtype), bias.to(x.dtype), training=True, eps=eps)
        y = F.batch_norm(x.float(), None, None, None, None, training=True, eps=eps).to(x.dtype)
        affine = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        return y * weight.to(x.dtype).reshape(affine) + bias.to(x.dtype).reshape(affine)

    def asarray(self, value, like):
        """``value`` (a number, numpy array or tensor) as a tensor on ``like``'s device (if it has one),
        its dtype kept."""
        return self.xp.as_tensor(value, device=getattr(like, "device", None))

    def astype(self, x, dtype):
        return x.to(dtype)


class _JaxOps:
    """Forward-pass primitives in JAX with PyTorch's conventions (NCHW, OIHW, same padding)."""

    name = "jax"

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.jax, self.xp = jax, jnp

    def linear(self, x, w, b):
        return x @ w.T + b

    def conv2d(self, x, w, b, stride: int, padding: int | None = None):
        """2-D convolution as ``torch.nn.functional.conv2d``; ``padding`` on every side, kernel//2 when None."""
        pad = w.shape[-1] // 2 if padding is None else int(padding)
        out = self.jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)],
                                                dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + b[:, None, None]

    def conv_transpose2d(self, x, w, b, stride: int, padding: int):
        """Transposed convolution as ``torch.nn.functional.conv_transpose2d`` with its (in, out, kh, kw)
        kernel: a stride-1 convolution of the input dilated by ``stride`` (stride − 1 zeros between
        pixels), padded by kernel-1-padding on each side, with the spatially flipped kernel read as
        (in, out) rather than (out, in)."""
        kh, kw = w.shape[-2:]
        pads = [(kh - 1 - padding, kh - 1 - padding), (kw - 1 - padding, kw - 1 - padding)]
        out = self.jax.lax.conv_general_dilated(x, self.xp.flip(w, (2, 3)), (1, 1), pads,
                                                lhs_dilation=(stride, stride),
                                                dimension_numbers=("NCHW", "IOHW", "NCHW"))
        return out + b[:, None, None]

    def upsample2(self, x):
        return self.xp.repeat(self.xp.repeat(x, 2, axis=-2), 2, axis=-1)

    def activation(self, name: str, x):
        nn = self.jax.nn
        if name == "leaky_relu":
            return nn.leaky_relu(x, 0.2)
        if name == "gelu":
            return nn.gelu(x, approximate=False)  # PyTorch's default (erf) form
        return {"relu": nn.relu, "elu": nn.elu, "silu": nn.silu, "tanh": self.xp.tanh,
                "softplus": nn.softplus}[name](x)

    def dropout(self, x, rate: float, training: bool = False):
        """Inverted dropout of ``rate`` when ``training``, with a key from NumPyro's seed handler
        (``numpyro.prng_key()``); identity otherwise."""
        if rate <= 0 or not training:
            return x
        import warnings

        import numpyro

        with warnings.catch_warnings():  # outside a seed handler: the error below says what to do
            warnings.simplefilter("ignore", UserWarning)
            key = numpyro.prng_key()
        if key is None:
            raise RuntimeError("dropout in training mode needs a random key: run the network inside a "
                               "seeded NumPyro program (numpyro.handlers.seed), as SVI does")
        keep = self.jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return self.xp.where(keep, x / (1.0 - rate), 0.0)

    def reshape(self, x, shape):
        return x.reshape(shape)

    def transpose(self, x, axes):
        return x.transpose(axes)

    def concat(self, parts, axis: int = -1):
        return self.xp.concatenate(parts, axis=axis)

    def group_norm(self, x, num_groups: int, weight, bias, eps: float = 1e-5):
        """Group normalisation of (N, C, ...) as ``torch.nn.functional.group_norm`` (biased variance);
        the statistics of a half-precision ``x`` are taken in float32, the result has ``x``'s dtype."""
        jnp = self.xp
        n, c = x.shape[:2]
        g = x.reshape((n, num_groups, -1)).astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = g.mean(-1, keepdims=True)
        var = jnp.square(g - mean).mean(-1, keepdims=True)
        y = ((g - mean) * self.jax.lax.rsqrt(var + eps)).reshape(x.shape).astype(x.dtype)
        affine = (1, c) + (1,) * (x.ndim - 2)
        return y * weight.reshape(affine) + bias.reshape(affine)

    def batch_norm(self, x, weight, bias, eps: float = 1e-5):
        """Batch normalisation of (N, C) or (N, C, ...) with the current batch's statistics, as
        ``torch.nn.functional.batch_norm(..., training=True)``: over every axis but the channel axis 1,
        mean and biased variance, then a per-channel affine map. Stateless (no running statistics);
        the statistics of a half-precision ``x`` are taken in float32, the result has ``x``'s dtype."""
        jnp = self.xp
        axes = (0,) + tuple(range(2, x.ndim))
        g = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = g.mean(axes, keepdims=True)
        var = jnp.square(g - mean).mean(axes, keepdims=True)
        y = ((g - mean) * self.jax.lax.rsqrt(var + eps)).astype(x.dtype)
        affine = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        return y * weight.astype(x.dtype).reshape(affine) + bias.astype(x.dtype).reshape(affine)

    def asarray(self, value, like):
        """``value`` (a number or array) as a JAX array, its dtype kept (``like`` is for PyTorch's device)."""
        return self.xp.asarray(value)

    def astype(self, x, dtype):
        return x.astype(dtype)


_OPS: dict = {}


def ops_for(backend: str):
    """The forward-pass primitives of ``backend`` ("pyro" → PyTorch, "numpyro" → JAX)."""
    key = {"pyro": "torch", "torch": "torch", "numpyro": "jax", "jax": "jax"}.get(backend)
    if key is None:
        raise ConfigError(f"no network operations for backend {backend!r}; use 'pyro' or 'numpyro'")
    if key not in _OPS:
        _OPS[key] = _TorchOps() if key == "torch" else _JaxOps()
    return _OPS[key]


def _check_dropout(rate: float) -> float:
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"dropout must be a rate in [0, 1); got {rate}")
    return rate


def check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        from ppgen.config import suggest

        raise ConfigError(f"unknown activation {activation!r}; choose one of {list(ACTIVATIONS)}."
                          f"{suggest(activation, ACTIVATIONS)}")


class MLP(Network):
    """A multilayer perceptron: ``in_dim → hidden_dims... → out_dim`` with ``activation``
    between layers (none after the last), each hidden activation followed by dropout of rate
    ``dropout`` in training mode.

    Parameters ``"{i}.weight"`` (out, in) and ``"{i}.bias"`` for layer i."""

    def __init__(self, in_dim: int, hidden_dims: tuple, out_dim: int, activation: str = "relu",
                 dropout: float = 0.0):
        check_activation(activation)
        self.dropout = _check_dropout(dropout)
        self.sizes = (int(in_dim), *map(int, hidden_dims), int(out_dim))
        if min(self.sizes) < 1:
            raise ConfigError(f"MLP layer sizes must be positive; got {self.sizes}")
        self.activation = activation

    def shapes(self) -> dict:
        out = {}
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            out[f"{i}.weight"] = (b, a)
            out[f"{i}.bias"] = (b,)
        return out

    def apply(self, ops, params: dict, x, extra=None, training: bool = False):
        h = x if extra is None else ops.concat([x, extra])
        last = len(self.sizes) - 2
        for i in range(last + 1):
            h = ops.linear(h, params[f"{i}.weight"], params[f"{i}.bias"])
            if i < last:
                h = ops.dropout(ops.activation(self.activation, h), self.dropout, training)
        return h


def image_layout(data_dim: int, image_shape) -> tuple:
    """(height, width, channels) of flattened images of ``data_dim`` values; raise ConfigError
    unless the shape multiplies out to ``data_dim`` and both sides are divisible by 4."""
    if image_shape is None:
        side = int(round(math.sqrt(data_dim)))
        if side * side != data_dim:
            raise ConfigError(f"network='conv' needs image_shape=(height, width[, channels]) for data of "
                              f"{data_dim} values (not a square grey image)")
        image_shape = (side, side)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"image_shape={tuple(image_shape)} must be (height, width) or (height, width, channels)")
    if int(np.prod(shape)) != data_dim:
        raise ConfigError(f"image_shape={tuple(image_shape)} holds {int(np.prod(shape))} values but the data "
                          f"have {data_dim} per example; give the images' own shape")
    if shape[0] % 4 or shape[1] % 4:
        raise ConfigError(f"the convolutional networks take images with {IMAGE_SIZES}; got "
                          f"{shape[0]}×{shape[1]}. Use network='mlp' for other sizes")
    return shape


class ConvEncoder(Network):
    """Two stride-2 3×3 convolutions, then a linear layer: images (…, H·W·C) → (…, out_dim).

    The input is flattened channels-last (the data's own layout, ``x.reshape(N, -1)`` of
    (N, H, W, C) or (N, H, W) images); ``extra`` features (e.g. a one-hot label) join the
    flattened convolutional features before the linear layer; ``dropout`` follows that dense
    hidden layer in training mode."""

    def __init__(self, image_shape: tuple, out_dim: int, channels: tuple = (32, 64), extra_dim: int = 0,
                 hidden_dim: int = 256, activation: str = "relu", dropout: float = 0.0):
        check_activation(activation)
        self.dropout = _check_dropout(dropout)
        self.height, self.width, self.in_channels = image_shape
        self.channels = tuple(int(c) for c in channels)
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ConfigError(f"conv channels must be two positive numbers; got {channels}")
        self.out_dim, self.extra_dim, self.hidden_dim = int(out_dim), int(extra_dim), int(hidden_dim)
        self.activation = activation

    def shapes(self) -> dict:
        c1, c2 = self.channels
        flat = c2 * (self.height // 4) * (self.width // 4)
        return {"conv0.weight": (c1, self.in_channels, 3, 3), "conv0.bias": (c1,),
                "conv1.weight": (c2, c1, 3, 3), "conv1.bias": (c2,),
                "hidden.weight": (self.hidden_dim, flat + self.extra_dim), "hidden.bias": (self.hidden_dim,),
                "out.weight": (self.out_dim, self.hidden_dim), "out.bias": (self.out_dim,)}

    def apply(self, ops, params: dict, x, extra=None, training: bool = False):
        lead = tuple(x.shape[:-1])
        h = ops.reshape(x, (-1, self.height, self.width, self.in_channels))
        h = ops.transpose(h, (0, 3, 1, 2))
        for i in range(2):
            h = ops.activation(self.activation, ops.conv2d(h, params[f"conv{i}.weight"], params[f"conv{i}.bias"], 2))
        h = ops.reshape(h, lead + (-1,))
        if extra is not None:
            h = ops.concat([h, extra])
        h = ops.activation(self.activation, ops.linear(h, params["hidden.weight"], params["hidden.bias"]))
        return ops.linear(ops.dropout(h, self.dropout, training), params["out.weight"], params["out.bias"])


class ConvDecoder(Network):
    """A linear layer to a (C₂, H/4, W/4) grid, then two (2× nearest upsampling, 3×3
    convolution) stages: (…, in_dim) → (…, H·W·C, values_per_pixel), in the data's
    channels-last order (the last axis is dropped when ``values_per_pixel`` is 1); ``dropout``
    follows the first dense layer in training mode."""

    def __init__(self, image_shape: tuple, in_dim: int, values_per_pixel: int = 1, channels: tuple = (32, 64),
                 hidden_dim: int = 256, activation: str = "relu", dropout: float = 0.0):
        check_activation(activation)
        self.dropout = _check_dropout(dropout)
        self.height, self.width, self.out_channels = image_shape
        self.channels = tuple(int(c) for c in channels)
        self.in_dim, self.values, self.hidden_dim = int(in_dim), int(values_per_pixel), int(hidden_dim)
        self.activation = activation

    def shapes(self) -> dict:
        c1, c2 = self.channels
        flat = c2 * (self.height // 4) * (self.width // 4)
        return {"hidden.weight": (self.hidden_dim, self.in_dim), "hidden.bias": (self.hidden_dim,),
                "grid.weight": (flat, self.hidden_dim), "grid.bias": (flat,),
                "conv0.weight": (c1, c2, 3, 3), "conv0.bias": (c1,),
                "conv1.weight": (self.out_channels * self.values, c1, 3, 3),
                "conv1.bias": (self.out_channels * self.values,)}

    def apply(self, ops, params: dict, z, extra=None, training: bool = False):
        c1, c2 = self.channels
        lead = tuple(z.shape[:-1])
        h = z if extra is None else ops.concat([z, extra])
        h = ops.activation(self.activation, ops.linear(h, params["hidden.weight"], params["hidden.bias"]))
        h = ops.dropout(h, self.dropout, training)
        h = ops.activation(self.activation, ops.linear(h, params["grid.weight"], params["grid.bias"]))
        h = ops.reshape(h, (-1, c2, self.height // 4, self.width // 4))
        h = ops.activation(self.activation, ops.conv2d(ops.upsample2(h), params["conv0.weight"],
                                                       params["conv0.bias"], 1))
        h = ops.conv2d(ops.upsample2(h), params["conv1.weight"], params["conv1.bias"], 1)
        C, L = self.out_channels, self.values
        h = ops.reshape(h, (-1, C, L, self.height, self.width))
        h = ops.transpose(h, (0, 3, 4, 1, 2))                      # (n, H, W, C, L)
        shape = lead + ((self.height * self.width * C,) if L == 1 else (self.height * self.width * C, L))
        return ops.reshape(h, shape)

