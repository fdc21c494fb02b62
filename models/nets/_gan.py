"""DCGAN generator and discriminator: the convolutional pair of a GAN, for images of sides divisible by 4.

Both follow the guidelines of Radford, Metz & Chintala (2016): strided (transposed) convolutions
instead of pooling and upsampling, batch normalisation in the generator, ReLU in the generator and
LeakyReLU(0.2) in the discriminator, and weights initialised from N(0, 0.02). Images are flattened
channels-last (…, H·W·C), the data's own layout, as in the other networks of this package.

Reference:
    Radford, Metz & Chintala (2016), "Unsupervised Representation Learning with Deep Convolutional
    Generative Adversarial Networks", ICLR.
"""

from __future__ import annotations

import numpy as np

from ppgen.errors import ConfigError

from ._layers import Network

__all__ = ["DCGANGenerator", "DCGANDiscriminator"]

#: kernel, stride and padding of every (transposed) convolution: each halves or doubles a side
_KERNEL, _STRIDE, _PADDING = 4, 2, 1


def _image_shape(image_shape, who: str) -> tuple:
    """(H, W, C) from (H, W) or (H, W, C); ConfigError unless the sides are positive and divisible by 4."""
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or any(int(s) != s or s < 1 for s in shape):
        raise ConfigError(f"{who} image_shape must be (height, width) or (height, width, channels) of positive "
                          f"integers; got {shape}")
    height, width, channels = (tuple(int(s) for s in shape) + (1,))[:3]
    if height % 4 or width % 4:
        raise ConfigError(f"{who} changes the image side twice by a factor 2: height and width must be divisible "
                          f"by 4; got {height}×{width}. Pad or crop the images to multiples of 4 "
                          f"(e.g. 28×28 MNIST, 32×32 CIFAR-10)")
    return height, width, channels


def _channels(channels, who: str) -> tuple:
    try:
        out = tuple(int(c) for c in channels)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 2 or min(out) < 1:
        raise ConfigError(f"{who} channels must be two positive widths, e.g. (128, 64); got {channels!r}")
    return out


def _positive(value, name: str, who: str, minimum: int = 1) -> int:
    try:
        ok = int(value) == value and value >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ConfigError(f"{who} {name} must be a {kind} integer; got {value!r}")
    return int(value)


class _DCGAN(Network):
    """DCGAN initial values; subclasses name their batch-norm layers "bn{i}"."""

    def init(self, seed: int) -> dict:
        """Initial parameters (float32 numpy) with the DCGAN scheme: every convolution, transposed
        convolution and linear weight ~ N(0, 0.02²), batch-norm weights ~ N(1, 0.02²), all biases 0.
        Draws come from ``np.random.default_rng(seed)`` in the order of :meth:`shapes`."""
        rng = np.random.default_rng(seed)
        out = {}
        for name, shape in self.shapes().items():
            if name.endswith(".bias"):
                value = np.zeros(shape)
            else:
                value = (1.0 if name.startswith("bn") else 0.0) + 0.02 * rng.standard_normal(shape)
            out[name] = value.astype(np.float32)
        return out


class DCGANGenerator(_DCGAN):
    """The DCGAN generator: latent codes (…, in_dim) → images (…, H·W·C), flattened channels-last.

    Architecture, with (c_0, c_1) = ``channels``, BN a batch normalisation and ConvT a transposed
    convolution of kernel 4, stride 2 and padding 1 (doubling H and W):

        h = Linear(concat[z, extra])                      (in_dim → c_0·(H/4)·(W/4))
        h = ReLU(BN(reshape(h)))                           (c_0, H/4, W/4)
        h = ReLU(BN(ConvT(h)))                             (c_1, H/2, W/2)
        out = ConvT(h)                                     (C, H, W)

    There is no output activation: the model family applies tanh (images in [-1, 1]).

    Batch normalisation uses the current batch's statistics, in training and when sampling alike
    (no running averages: the network is stateless), as DCGAN's reference code does: a sample is
    normalised over the codes drawn with it, so draw samples in batches of reasonable size (a few
    dozen or more), not one at a time. Leading dimensions of ``z`` (e.g. particles × batch) are
    flattened into one batch for the convolutions and the normalisation, and restored at the end.

    Parameters: "project.*" (linear), "bn0.*", "deconv0.*", "bn1.*", "deconv1.*"; a transposed
    convolution's weight is (in, out, 4, 4) (PyTorch's layout).

    Args:
        image_shape: (H, W) or (H, W, C) of the images, H and W divisible by 4; C defaults to 1.
        in_dim: size of the input: the latent dimension plus the size of ``extra`` (e.g. the number
            of classes of a one-hot label) when the generator is conditional.
        channels: (c_0, c_1), the widths of the H/4 and H/2 feature maps.

    Example:
        >>> import torch
        >>> from ppgen.models.nets import DCGANGenerator, ops_for
        >>> net = DCGANGenerator((28, 28), in_dim=100 + 10)   # 100 latents and a 10-class label
        >>> params = {k: torch.as_tensor(v) for k, v in net.init(seed=0).items()}
        >>> z, label = torch.randn(64, 100), torch.nn.functional.one_hot(torch.arange(64) % 10, 10).float()
        >>> tuple(net.apply(ops_for("pyro"), params, z, extra=label).shape)
        (64, 784)

    Reference: Radford, Metz & Chintala (2016), "Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks", ICLR.
    """

    def __init__(self, image_shape: tuple, in_dim: int, channels: tuple = (128, 64)):
        who = "DCGANGenerator"
        self.height, self.width, self.out_channels = _image_shape(image_shape, who)
        self.in_dim = _positive(in_dim, "in_dim (latent size plus extra size)", who)
        self.channels = _channels(channels, who)

    def shapes(self) -> dict:
        (c0, c1), k = self.channels, _KERNEL
        grid = c0 * (self.height // 4) * (self.width // 4)
        return {"project.weight": (grid, self.in_dim), "project.bias": (grid,),
                "bn0.weight": (c0,), "bn0.bias": (c0,),
                "deconv0.weight": (c0, c1, k, k), "deconv0.bias": (c1,),
                "bn1.weight": (c1,), "bn1.bias": (c1,),
                "deconv1.weight": (c1, self.out_channels, k, k), "deconv1.bias": (self.out_channels,)}

    def _project(self, ops, params: dict, z, extra=None):
        """The first stage before its ReLU: BN(reshape(Linear(concat[z, extra]))), (n, c_0, H/4, W/4)."""
        if extra is not None:
            extra = ops.xp.broadcast_to(extra, tuple(z.shape[:-1]) + (extra.shape[-1],))
            z = ops.concat([z, extra])
        if z.shape[-1] != self.in_dim:
            raise ConfigError(f"DCGANGenerator was built with in_dim={self.in_dim} but gets {z.shape[-1]} input "
                              f"features (latent plus extra); build it with in_dim={z.shape[-1]}")
        h = ops.linear(z, params["project.weight"], params["project.bias"])
        h = ops.reshape(h, (-1, self.channels[0], self.height // 4, self.width // 4))
        return ops.batch_norm(h, params["bn0.weight"], params["bn0.bias"])

    def apply(self, ops, params: dict, z, extra=None, training: bool = False):
        lead = tuple(z.shape[:-1])
        h = ops.activation("relu", self._project(ops, params, z, extra))
        h = ops.conv_transpose2d(h, params["deconv0.weight"], params["deconv0.bias"], _STRIDE, _PADDING)
        h = ops.activation("relu", ops.batch_norm(h, params["bn1.weight"], params["bn1.bias"]))
        h = ops.conv_transpose2d(h, params["deconv1.weight"], params["deconv1.bias"], _STRIDE, _PADDING)
        h = ops.transpose(h, (0, 2, 3, 1))                                     # (n, H, W, C)
        return ops.reshape(h, lead + (self.height * self.width * self.out_channels,))


class DCGANDiscriminator(_DCGAN):
    """The DCGAN discriminator (critic): images (…, H·W·C), flattened channels-last → scores (…, out_dim).

    Architecture, with (c_0, c_1) = ``channels`` and Conv a convolution of kernel 4, stride 2 and
    padding 1 (halving H and W):

        h = LeakyReLU_0.2(Conv(x))                         (C → c_0, H/2 × W/2)
        h = LeakyReLU_0.2(Conv(h))                         (c_0 → c_1, H/4 × W/4)
        out = Linear(concat[flatten(h), extra])            (c_1·(H/4)·(W/4) + extra_dim → out_dim)

    The output is a raw score (a logit for the standard GAN loss, a critic value for WGAN). Unlike
    DCGAN's original discriminator there is no batch normalisation: it couples the examples of a
    batch, which breaks the WGAN-GP gradient penalty (a per-example gradient norm) and makes an
    example's score depend on its batch.

    Parameters: "conv0.*", "conv1.*" (weights (out, in, 4, 4)), "out.*" (linear, weight (out, in)).

    Args:
        image_shape: (H, W) or (H, W, C) of the images, H and W divisible by 4; C defaults to 1.
        extra_dim: size of the ``extra`` features (e.g. a one-hot label) joined to the flattened
            convolutional features; 0 for an unconditional discriminator.
        channels: (c_0, c_1), the widths of the H/2 and H/4 feature maps.
        out_dim: number of scores per image.

    Reference: Radford, Metz & Chintala (2016), "Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks", ICLR; Gulrajani et al. (2017), "Improved Training
    of Wasserstein GANs", NeurIPS (why no batch normalisation in the critic).
    """

    def __init__(self, image_shape: tuple, extra_dim: int = 0, channels: tuple = (64, 128), out_dim: int = 1):
        who = "DCGANDiscriminator"
        self.height, self.width, self.in_channels = _image_shape(image_shape, who)
        self.extra_dim = _positive(extra_dim, "extra_dim", who, minimum=0)
        self.channels = _channels(channels, who)
        self.out_dim = _positive(out_dim, "out_dim", who)

    def shapes(self) -> dict:
        (c0, c1), k = self.channels, _KERNEL
        flat = c1 * (self.height // 4) * (self.width // 4)
        return {"conv0.weight": (c0, self.in_channels, k, k), "conv0.bias": (c0,),
                "conv1.weight": (c1, c0, k, k), "conv1.bias": (c1,),
                "out.weight": (self.out_dim, flat + self.extra_dim), "out.bias": (self.out_dim,)}

    def apply(self, ops, params: dict, x, extra=None, training: bool = False):
        lead = tuple(x.shape[:-1])
        h = ops.transpose(ops.reshape(x, (-1, self.height, self.width, self.in_channels)), (0, 3, 1, 2))
        for i in range(2):
            h = ops.conv2d(h, params[f"conv{i}.weight"], params[f"conv{i}.bias"], _STRIDE, _PADDING)
            h = ops.activation("leaky_relu", h)
        h = ops.reshape(h, lead + (-1,))
        got = 0 if extra is None else extra.shape[-1]
        if got != self.extra_dim:
            raise ConfigError(f"DCGANDiscriminator was built with extra_dim={self.extra_dim} but gets {got} extra "
                              f"features; build it with extra_dim={got}")
        if extra is not None:
            h = ops.concat([h, ops.xp.broadcast_to(extra, lead + (extra.shape[-1],))])
        return ops.linear(h, params["out.weight"], params["out.bias"])
