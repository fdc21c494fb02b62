"""Denoising networks of diffusion models: noisy data and a timestep in, a prediction of the same shape out.

Both networks take ``apply(ops, params, x, t)`` with ``x`` of shape (…, D) and one timestep per
row, ``t`` of shape ``x.shape[:-1]`` (or a scalar, broadcast to every row), and return an array
of ``x``'s shape (e.g. the predicted noise ε_θ(x_t, t) of a DDPM). The timestep enters through
its sinusoidal embedding (:func:`timestep_embedding`) passed through a small MLP.

References:
    Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models", NeurIPS.
    Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI.
    Vaswani et al. (2017), "Attention Is All You Need", NeurIPS (the sinusoidal embedding).
"""

from __future__ import annotations

import math

import numpy as np

from ppgen.errors import ConfigError

from ._layers import Network, check_activation

__all__ = ["timestep_embedding", "TimeMLP", "UNet"]


def _check_time_dim(time_dim: int) -> int:
    time_dim = int(time_dim)
    if time_dim < 2 or time_dim % 2:
        raise ConfigError(f"the sinusoidal timestep embedding pairs a cosine with a sine: time_dim must be a "
                          f"positive even number; got {time_dim} (use {max(2, time_dim + 1)})")
    return time_dim


def timestep_embedding(ops, t, dim: int, max_period: float = 10000):
    """Sinusoidal embedding of timesteps: (…) → (…, dim), in float32.

    With half = dim/2 and frequencies f_k = exp(-log(max_period)·k/half), k = 0…half-1,
    the embedding is [cos(t·f_0), …, cos(t·f_{half-1}), sin(t·f_0), …, sin(t·f_{half-1})].

    Args:
        ops: the backend's primitives (``ops_for("pyro")`` or ``ops_for("numpyro")``).
        t: timesteps, integer or float, any shape (a tensor / array of that backend, or numbers).
        dim: size of the embedding; must be even.
        max_period: sets the slowest frequency: periods run from 2π to nearly 2π·max_period (10000, as in
            the Transformer).

    Reference: Vaswani et al. (2017), as used by Ho, Jain & Abbeel (2020).
    """
    half = _check_time_dim(dim) // 2
    t = ops.astype(ops.asarray(t, like=t), ops.xp.float32)
    freqs = ops.asarray(np.exp(-math.log(max_period) * np.arange(half) / half).astype(np.float32), like=t)
    args = t[..., None] * freqs
    return ops.concat([ops.xp.cos(args), ops.xp.sin(args)])


def _timesteps(ops, t, x):
    """``t`` as an array on ``x``'s device, broadcast to ``x.shape[:-1]``."""
    return ops.xp.broadcast_to(ops.asarray(t, like=x), tuple(x.shape[:-1]))


class _TimeEmbedded(Network):
    """Shared time MLP: temb = Linear(act(Linear(embedding(t)))), parameters "time.0.*" and "time.1.*"."""

    time_dim: int
    time_width: int
    activation: str

    def _time_shapes(self) -> dict:
        d, w = self.time_dim, self.time_width
        return {"time.0.weight": (w, d), "time.0.bias": (w,), "time.1.weight": (w, w), "time.1.bias": (w,)}

    def _time_features(self, ops, params, t, x):
        """act(temb) of shape (…, time_width), in ``x``'s dtype: what each layer projects."""
        emb = ops.astype(timestep_embedding(ops, _timesteps(ops, t, x), self.time_dim), x.dtype)
        h = ops.activation(self.activation, ops.linear(emb, params["time.0.weight"], params["time.0.bias"]))
        return ops.activation(self.activation, ops.linear(h, params["time.1.weight"], params["time.1.bias"]))


class TimeMLP(_TimeEmbedded):
    """A timestep-conditioned MLP for vector data (2-D toys, flattened digits): (…, D), t → (…, D).

    Architecture, with H_0…H_{L-1} = ``hidden_dims`` and a = ``activation``:

        temb = Linear(a(Linear(embedding(t))))          (time_dim → H_0 → H_0)
        h = Linear(x)                                    (D → H_0)
        h = a(Linear_i(h) + Linear_i^t(a(temb)))         for i = 0…L-1 (H_{i-1} → H_i; time at every layer)
        out = Linear(h)                                  (H_{L-1} → D)

    Parameters: "time.0.*", "time.1.*", "input.*", "hidden{i}.*", "hidden{i}_time.*", "out.*",
    each a ".weight" (out, in) and a ".bias".

    Args:
        data_dim: D, the size of a data vector.
        hidden_dims: widths of the time-conditioned hidden layers.
        time_dim: size of the sinusoidal embedding (even).
        activation: one of :data:`ACTIVATIONS`.

    Reference: Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models".
    """

    def __init__(self, data_dim: int, hidden_dims: tuple = (256, 256, 256), time_dim: int = 64,
                 activation: str = "silu"):
        check_activation(activation)
        self.time_dim = _check_time_dim(time_dim)
        self.data_dim, self.hidden_dims = int(data_dim), tuple(int(h) for h in hidden_dims)
        if self.data_dim < 1 or not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"TimeMLP needs a positive data_dim and at least one positive hidden width; got "
                              f"data_dim={data_dim}, hidden_dims={tuple(hidden_dims)}")
        self.time_width, self.activation = self.hidden_dims[0], activation

    def shapes(self) -> dict:
        out = self._time_shapes()
        widths = (self.hidden_dims[0],) + self.hidden_dims
        out.update({"input.weight": (widths[0], self.data_dim), "input.bias": (widths[0],)})
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            out.update({f"hidden{i}.weight": (b, a), f"hidden{i}.bias": (b,),
                        f"hidden{i}_time.weight": (b, self.time_width), f"hidden{i}_time.bias": (b,)})
        out.update({"out.weight": (self.data_dim, widths[-1]), "out.bias": (self.data_dim,)})
        return out

    def apply(self, ops, params: dict, x, t, training: bool = False):
        temb = self._time_features(ops, params, t, x)
        h = ops.linear(x, params["input.weight"], params["input.bias"])
        for i in range(len(self.hidden_dims)):
            h = ops.linear(h, params[f"hidden{i}.weight"], params[f"hidden{i}.bias"])
            h = ops.activation(self.activation, h + ops.linear(temb, params[f"hidden{i}_time.weight"],
                                                               params[f"hidden{i}_time.bias"]))
        return ops.linear(h, params["out.weight"], params["out.bias"])


class UNet(_TimeEmbedded):
    """A DDPM-style U-Net (no attention) for images: (…, H·W·C) channels-last, t → same shape.

    With c_0…c_{L-1} = ``channels``, a = ``activation``, GN = GroupNorm(``num_groups``) and
    ResBlock(h) = Conv3(a(GN(Conv3(a(GN(h))) + Linear(a(temb))))) + skip(h), where skip is a 1×1
    convolution when the channel count changes (the identity otherwise):

        temb = Linear(a(Linear(embedding(t))))                (time_dim → 4c_0 → 4c_0)
        h = Conv3(x)                                           (C → c_0)
        down, level i = 0…L-1:  h = s_i = ResBlock(h) (→ c_i); then, except at the last level,
                                h = Conv3 with stride 2 (halves H and W)
        middle:                 h = ResBlock(h)
        up, level i = L-1…0:    except at the last level, h = Conv3(Upsample2(h)) (doubles H and W);
                                h = ResBlock(concat[h, s_i]) (→ c_i)
        out = Conv3(a(GN(h)))                                  (c_0 → C)

    Parameters: "time.{0,1}.*"; "input.*"; "down{i}.*", "mid.*", "up{i}.*" for the residual
    blocks, each with "norm0", "conv0", "time", "norm1", "conv1" and (when channels change)
    "skip" layers; "down{i}.downsample.*", "up{i}.upsample.*"; "out.norm.*", "out.conv.*".
    GroupNorm weights start at 1 and biases at 0, the rest with PyTorch's default scheme.

    In reduced precision: under ``torch.autocast`` in PyTorch, and in JAX when ``params`` and ``x``
    are bfloat16 (the computation stays in bfloat16; group statistics are taken in float32).

    Args:
        image_shape: (H, W) or (H, W, C); C defaults to 1.
        channels: widths c_i of the resolution levels; the image is halved len(channels)-1 times.
        time_dim: size of the sinusoidal embedding (even).
        num_groups: GroupNorm groups; every entry of ``channels`` must be divisible by it.
        activation: one of :data:`ACTIVATIONS`.

    References: Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models";
    Ronneberger, Fischer & Brox (2015), "U-Net".
    """

    def __init__(self, image_shape: tuple, channels: tuple = (32, 64), time_dim: int = 128, num_groups: int = 8,
                 activation: str = "silu"):
        check_activation(activation)
        shape = tuple(image_shape)
        if len(shape) not in (2, 3) or any(int(s) != s or s < 1 for s in shape):
            raise ConfigError(f"image_shape must be (height, width) or (height, width, channels) of positive "
                              f"integers; got {shape}")
        self.height, self.width, self.in_channels = (tuple(int(s) for s in shape) + (1,))[:3]
        self.channels = tuple(int(c) for c in channels)
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"UNet channels must be one or more positive widths, e.g. (32, 64); got {channels}")
        self.num_groups = int(num_groups)
        if self.num_groups < 1:
            raise ConfigError(f"UNet num_groups must be a positive number of GroupNorm groups; got {num_groups}")
        bad = [c for c in self.channels if c % self.num_groups]
        if bad:
            raise ConfigError(f"UNet GroupNorm splits channels into num_groups={num_groups} groups, but channels "
                              f"{self.channels} has {bad} not divisible by {num_groups}; choose channels that are "
                              f"multiples of {num_groups} or a num_groups that divides them all")
        factor = 2 ** (len(self.channels) - 1)
        if self.height % factor or self.width % factor:
            raise ConfigError(f"UNet with channels {self.channels} halves the image {len(self.channels) - 1} "
                              f"time(s): height and width must be divisible by {factor}; got "
                              f"{self.height}×{self.width}. Use fewer levels or pad/crop the images")
        self.time_dim = _check_time_dim(time_dim)
        self.time_width, self.activation = 4 * self.channels[0], activation

    def _block_shapes(self, name: str, cin: int, cout: int) -> dict:
        out = {f"{name}.norm0.weight": (cin,), f"{name}.norm0.bias": (cin,),
               f"{name}.conv0.weight": (cout, cin, 3, 3), f"{name}.conv0.bias": (cout,),
               f"{name}.time.weight": (cout, self.time_width), f"{name}.time.bias": (cout,),
               f"{name}.norm1.weight": (cout,), f"{name}.norm1.bias": (cout,),
               f"{name}.conv1.weight": (cout, cout, 3, 3), f"{name}.conv1.bias": (cout,)}
        if cin != cout:
            out.update({f"{name}.skip.weight": (cout, cin, 1, 1), f"{name}.skip.bias": (cout,)})
        return out

    def shapes(self) -> dict:
        ch, last = self.channels, len(self.channels) - 1
        out = self._time_shapes()
        out.update({"input.weight": (ch[0], self.in_channels, 3, 3), "input.bias": (ch[0],)})
        for i, c in enumerate(ch):
            out.update(self._block_shapes(f"down{i}", ch[max(i - 1, 0)], c))
            if i < last:
                out.update({f"down{i}.downsample.weight": (c, c, 3, 3), f"down{i}.downsample.bias": (c,)})
        out.update(self._block_shapes("mid", ch[last], ch[last]))
        for i in reversed(range(len(ch))):
            below = ch[min(i + 1, last)]
            if i < last:
                out.update({f"up{i}.upsample.weight": (below, below, 3, 3), f"up{i}.upsample.bias": (below,)})
            out.update(self._block_shapes(f"up{i}", below + ch[i], ch[i]))
        out.update({"out.norm.weight": (ch[0],), "out.norm.bias": (ch[0],),
                    "out.conv.weight": (self.in_channels, ch[0], 3, 3), "out.conv.bias": (self.in_channels,)})
        return out

    def init(self, seed: int) -> dict:
        """PyTorch's default initial values, with GroupNorm weights 1 and biases 0."""
        params = super().init(seed)
        for name, value in params.items():
            if name.rsplit(".", 2)[-2].startswith("norm"):
                params[name] = (np.ones_like if name.endswith(".weight") else np.zeros_like)(value)
        return params

    def _norm_act(self, ops, params, name, h):
        h = ops.group_norm(h, self.num_groups, params[f"{name}.weight"], params[f"{name}.bias"])
        return ops.activation(self.activation, h)

    def _block(self, ops, params, name, h, temb):
        out = ops.conv2d(self._norm_act(ops, params, f"{name}.norm0", h), params[f"{name}.conv0.weight"],
                         params[f"{name}.conv0.bias"], 1)
        shift = ops.linear(temb, params[f"{name}.time.weight"], params[f"{name}.time.bias"])
        out = out + ops.reshape(shift, tuple(shift.shape) + (1, 1))
        out = ops.conv2d(self._norm_act(ops, params, f"{name}.norm1", out), params[f"{name}.conv1.weight"],
                         params[f"{name}.conv1.bias"], 1)
        if f"{name}.skip.weight" in params:
            h = ops.conv2d(h, params[f"{name}.skip.weight"], params[f"{name}.skip.bias"], 1)
        return h + out

    def apply(self, ops, params: dict, x, t, training: bool = False):
        lead, (H, W, C) = tuple(x.shape[:-1]), (self.height, self.width, self.in_channels)
        temb = ops.reshape(self._time_features(ops, params, t, x), (-1, self.time_width))
        h = ops.transpose(ops.reshape(x, (-1, H, W, C)), (0, 3, 1, 2))            # (n, C, H, W)
        h = ops.conv2d(h, params["input.weight"], params["input.bias"], 1)
        last, skips = len(self.channels) - 1, []
        for i in range(last + 1):
            h = self._block(ops, params, f"down{i}", h, temb)
            skips.append(h)
            if i < last:
                h = ops.conv2d(h, params[f"down{i}.downsample.weight"], params[f"down{i}.downsample.bias"], 2)
        h = self._block(ops, params, "mid", h, temb)
        for i in reversed(range(last + 1)):
            if i < last:
                h = ops.conv2d(ops.upsample2(h), params[f"up{i}.upsample.weight"], params[f"up{i}.upsample.bias"], 1)
            h = self._block(ops, params, f"up{i}", ops.concat([h, skips[i]], axis=1), temb)
        h = ops.conv2d(self._norm_act(ops, params, "out.norm", h), params["out.conv.weight"],
                       params["out.conv.bias"], 1)
        return ops.reshape(ops.transpose(h, (0, 2, 3, 1)), lead + (H * W * C,))
