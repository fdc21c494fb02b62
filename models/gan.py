r"""Generative adversarial networks: the implicit model and its conditional version.

The model (course notes 000, 003, 004; Goodfellow et al. 2014) is implicit — it can be
sampled but has no tractable density:

.. math::

    z_n \sim \mathcal N(0, I_K), \qquad x_n = G_\theta(z_n)\ (\text{a deterministic site}),

and it is fitted by a two-player game against a discriminator :math:`D_\phi(x)` (one real
score per example): ``inference.Adversarial(loss=...)`` with the minimax, non-saturating,
Wasserstein (weight clipping), WGAN-GP or hinge objective. The conditional GAN (Mirza &
Osindero 2014; notes 004) feeds a label :math:`y` to both players, :math:`x = G_\theta(z, y)`
and :math:`D_\phi(x, y)`; samples of the generator take labels drawn from the data's labels.

Networks: MLPs (toys, flattened digits) or DCGAN's convolutional pair (Radford et al. 2016;
``network="dcgan"``, images with sides divisible by 4): strided transposed convolutions with
batch norm and ReLU in the generator, strided convolutions with LeakyReLU in the
discriminator. Batch norm uses the statistics of the batch it is given, while training and
when sampling (draw samples in batches of dozens or more).

Sites, identical in both backends: ``z`` (latent), ``x`` (deterministic output); parameters
``generator.<layer>.<weight|bias>`` and ``discriminator.<...>``.

Example:
    >>> data = ppgen.datasets.load("ring")
    >>> # λ = 0.1 on unit-scale toys; both rates annealed from 1e-3 to 1e-4 over the run
    >>> alg = inference.Adversarial("wgan-gp", gradient_penalty=0.1, steps=10000, batch_size=128,
    ...                             lr_generator=1e-3, lr_discriminator=1e-3, lr_decay=0.1, ema=0.999)
    >>> fit = ppgen.fit(models.GAN(2, latent_dim=2, output="identity"), data, alg)
    >>> ppgen.metrics.mode_coverage_for(fit.sample(2500), data.meta)

References:
    Goodfellow, I. et al. (2014). Generative adversarial nets. NeurIPS.
    Mirza, M. & Osindero, S. (2014). Conditional generative adversarial nets. arXiv:1411.1784.
    Radford, A., Metz, L. & Chintala, S. (2016). Unsupervised representation learning with deep
    convolutional generative adversarial networks. ICLR.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Literal, Optional

import numpy as np

from ppgen.backends import get_backend
from ppgen.errors import ConfigError, DataError
from ppgen.program import BuiltProgram, ModelSpec

from .nets import ACTIVATIONS, MLP, check_network, image_layout, ops_for

__all__ = ["GAN", "CGAN", "OUTPUTS", "ImplicitFamily", "network_params"]

OUTPUTS = ("tanh", "sigmoid", "identity")
_IMPLICIT = "it is an implicit model: it can be sampled but has no likelihood to {what}"


def network_params(params: dict, prefix: str) -> dict:
    """The parameters of one network, named within it (``"generator.0.weight"`` -> ``"0.weight"``)."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in params.items() if k.startswith(prefix + ".")}


class ImplicitFamily(ModelSpec):
    """What the adversarially trained families share: data and label checks, networks over a flat
    parameter dict, and evaluation by pure forward passes."""

    forms: ClassVar[tuple] = ("implicit",)
    methods: ClassVar[tuple] = ("adversarial",)
    refusals: ClassVar[dict] = {"svi": _IMPLICIT.format(what="bound"),
                                "nuts": _IMPLICIT.format(what="sample from"),
                                "hmc": _IMPLICIT.format(what="sample from"),
                                "em": _IMPLICIT.format(what="maximise"),
                                "closed_form": _IMPLICIT.format(what="maximise")}
    conditional: ClassVar[bool] = False
    has_discriminator: ClassVar[bool] = True
    unsupported_hints: ClassVar[dict] = {
        "log_likelihood": "it is an implicit model: it can be sampled but has no likelihood to evaluate. Judge "
                          "its samples with ppgen.metrics: mode_coverage, energy_distance, conditional_accuracy, "
                          "digits_frechet_distance"}

    def check_labels(self, labels, num: int, what: str = "labels"):
        from .vae import AmortizedFamily

        return AmortizedFamily.check_labels(self, labels, num, what)

    def param_names(self, form: str = "implicit") -> tuple:
        return tuple(self.param_shapes())

    def param_shapes(self) -> dict:
        return self.network_shapes()

    def num_parameters(self) -> int:
        return sum(n.num_parameters() for n in self.networks().values())

    def _initial(self, seed: int) -> dict:
        """Initial parameters; the discriminator's score layer starts at zero.

        A critic that starts as a constant takes the sign of its first gradient steps from the
        adversarial term rather than from a random start. This does not remove the deeper trap:
        WGAN-GP's two-sided penalty with λ = 10 can still lock the critic into the reversed sign
        (scores higher on samples than on data) later in training whenever the distance between
        the distributions is small next to λ, as on the unit-scale toys; use λ = 0.1 there."""
        init = {}
        for i, (name, net) in enumerate(self.networks().items()):
            values = net.init(seed * 1009 + i)
            if name == "discriminator" and self.discriminator is None:  # the built-in critic only
                last = [k for k in net.shapes() if k.endswith(".weight")][-1]
                values[last] = np.zeros_like(values[last])
                values[last[:-len("weight")] + "bias"] = np.zeros_like(values[last[:-len("weight")] + "bias"])
            init.update({f"{name}.{k}": v for k, v in values.items()})
        return init

    def _build_parts(self, backend: str, form: str, seed: int, device: str, *networks: str) -> tuple:
        """What a ``build`` starts from: the backend, its ppl and ops, the initial parameters, and
        those of the named networks as backend arrays (the program's ``network`` sites)."""
        if form != "implicit":
            raise ValueError(f"{type(self).__name__} has no form {form!r}; it has {self.forms}")
        self.check_backend(backend)
        be = get_backend(backend)
        init = self._initial(seed)
        arrays = [{k: be.asarray(v, "float32", device) for k, v in network_params(init, net).items()} for net in networks]
        return (be, be.ppl, ops_for(backend), init, *arrays)

    def _onehot(self, ppl, y, like):
        if not self.conditional:
            return None
        if y is None:
            raise DataError(f"{type(self).__name__} is conditional and needs a label per example; pass labels "
                            f"(datasets with labels, or labels= to sample)")
        return ppl.one_hot(y, self.num_classes, like)

    def _run(self, backend: str, params: dict, fn, device: str = "cpu"):
        """``fn(be, ops, arrays)`` with ``params`` as backend arrays, without gradients; numpy out."""
        be = get_backend(backend)
        ops = ops_for(backend)
        with be.placed(device):
            arrays = {k: be.asarray(np.asarray(v), "float32", device) for k, v in params.items()}
            if backend == "pyro":
                import torch

                with torch.no_grad():
                    return be.to_numpy(fn(be, ops, arrays)).astype(np.float32)
            return be.to_numpy(fn(be, ops, arrays)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class GAN(ImplicitFamily):
    """Generative adversarial network: z ~ N(0, I), x = G(z), fitted against a discriminator D(x).

    Args:
        data_dim: D, values per example (images flattened channels-last).
        latent_dim: K, the size of z.
        hidden_dims: the generator MLP's hidden widths.
        discriminator_hidden_dims: the discriminator MLP's hidden widths (None: ``hidden_dims``).
        activation: the generator's nonlinearity (the discriminator uses LeakyReLU(0.2), as DCGAN).
        output: the generator's last activation: ``"tanh"`` (data in [-1, 1], e.g. the digits'
            ``view="symmetric"``), ``"sigmoid"`` (data in [0, 1]) or ``"identity"`` (unbounded
            data such as the 2-D toys). By name (``ppgen.fit("gan", data)``) it is read from the data.
        network: ``"mlp"`` or ``"dcgan"`` (images with sides divisible by 4).
        image_shape: (height, width[, channels]) for ``network="dcgan"``.
        generator_channels, discriminator_channels: DCGAN's channels at the two resolutions.
        generator, discriminator: networks of your own in place of the built-in ones (a
            ``torch.nn.Module`` binds the spec to the Pyro backend, an Equinox module to NumPyro;
            see :mod:`ppgen.networks`): the generator maps (B, K) to (B, D) before the ``output``
            activation, the discriminator (B, D) to scores (B, 1); a conditional GAN gives both the
            one-hot label (B, num_classes) as a second input.

    Example:
        >>> spec = models.GAN(64, latent_dim=32, output="tanh")
    """

    data_dim: int
    latent_dim: int = 16
    hidden_dims: tuple = (256, 256)
    discriminator_hidden_dims: Optional[tuple] = None
    activation: Literal["relu", "gelu", "elu", "leaky_relu", "silu", "tanh", "softplus"] = "relu"
    output: Literal["tanh", "sigmoid", "identity"] = "tanh"
    network: Literal["mlp", "dcgan"] = "mlp"
    image_shape: Optional[tuple] = None
    generator_channels: tuple = (128, 64)
    discriminator_channels: tuple = (64, 128)
    generator: Optional[Any] = None
    discriminator: Optional[Any] = None

    family: ClassVar[str] = "gan"
    network_fields: ClassVar[tuple] = ("generator", "discriminator")
    default_adversarial_loss: ClassVar[str] = "wgan-gp"
    capabilities: ClassVar[frozenset] = frozenset({"sample"})

    def _validate(self):
        self._require(self.data_dim >= 1, f"data_dim must be at least 1; got {self.data_dim}")
        self._require(self.latent_dim >= 1, f"latent_dim must be at least 1; got {self.latent_dim}")
        for name in ("hidden_dims", "discriminator_hidden_dims"):
            value = getattr(self, name)
            self._require(value is None or min(value, default=1) >= 1, f"{name} must be positive widths; got {value}")
        self._require(self.activation in ACTIVATIONS,
                      f"activation={self.activation!r} is not one of {list(ACTIVATIONS)}")
        if self.network == "dcgan":
            image_layout(self.data_dim, self.image_shape)  # raises with the fix
        elif self.image_shape is not None:
            self._require(False, f"image_shape={self.image_shape} applies to network='dcgan'; the MLP takes "
                                 f"flattened rows (drop image_shape)")
        if self.conditional:
            self._require(self.num_classes >= 2, f"num_classes must be at least 2; got {self.num_classes}")
        labels = ((self.num_classes,),) if self.conditional else ()
        check_network(self, "generator", ((self.latent_dim,),) + labels, (self.data_dim,))
        check_network(self, "discriminator", ((self.data_dim,),) + labels, (1,))

    @classmethod
    def options_from_data(cls, meta: dict) -> dict:
        """The output activation matching a dataset's range (used when the model is given by name)."""
        low, high = meta.get("low"), meta.get("high")
        if meta.get("support") != "real":
            return {}
        if low == -1.0 and high == 1.0:
            return {"output": "tanh"}
        if low == 0.0 and high == 1.0:
            return {"output": "sigmoid"}
        return {"output": "identity"}

    @property
    def _label_dim(self) -> int:
        return self.num_classes if self.conditional else 0

    @functools.lru_cache(maxsize=2)
    def networks(self) -> dict:
        extra = self._label_dim
        if self.network == "dcgan":
            from .nets import DCGANDiscriminator, DCGANGenerator

            shape = image_layout(self.data_dim, self.image_shape)
            built = {"generator": lambda: DCGANGenerator(shape, self.latent_dim + extra, self.generator_channels),
                     "discriminator": lambda: DCGANDiscriminator(shape, extra, self.discriminator_channels)}
        else:
            built = {"generator": lambda: MLP(self.latent_dim + extra, self.hidden_dims, self.data_dim,
                                              self.activation),
                     "discriminator": lambda: MLP(self.data_dim + extra,
                                                  self.discriminator_hidden_dims or self.hidden_dims, 1, "leaky_relu")}
        return {name: self.own_network(name, make) for name, make in built.items()}

    # ---- data --------------------------------------------------------------------------
    def check_data(self, x, what: str = "data") -> np.ndarray:
        from ppgen.datasets import check_finite

        x = check_finite(self._rows(x, what).astype(np.float32, copy=False), what)
        bounds = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}.get(self.output)
        if bounds is not None and x.size and (x.min() < bounds[0] - 1e-6 or x.max() > bounds[1] + 1e-6):
            view = "symmetric" if self.output == "tanh" else "unit"
            raise DataError(f"{what} spans [{x.min():g}, {x.max():g}], but "
                            f"{type(self).__name__}(output={self.output!r}) "
                            f"generates values in [{bounds[0]:g}, {bounds[1]:g}]; rescale the data (the digits' "
                            f"view={view!r}) or choose output='identity'")
        return x

    # ---- the networks as functions of a flat parameter dict -----------------------------------
    def generate(self, ops, params: dict, z, condition=None, training: bool = False):
        """x = G(z[, y]) with the output activation; ``params`` holds ``generator.*``; ``training``:
        the networks' training mode (the game's updates)."""
        nets = self.networks()
        out = nets["generator"].apply(ops, network_params(params, "generator"), z, condition, training=training)
        if self.output == "tanh":
            return ops.activation("tanh", out)
        if self.output == "sigmoid":
            return 0.5 * ops.activation("tanh", 0.5 * out) + 0.5
        return out

    def discriminate(self, ops, params: dict, x, condition=None, training: bool = False):
        """The discriminator's score per example, shape (N, 1); ``params`` holds ``discriminator.*``."""
        return self.networks()["discriminator"].apply(ops, network_params(params, "discriminator"), x, condition,
                                                      training=training)

    # ---- the program ---------------------------------------------------------------------
    def build(self, backend: str, form: str, *, data: np.ndarray, guide: str | None = None, seed: int = 0,
              device: str = "cpu") -> BuiltProgram:
        from ppgen.inference.adversarial import Game

        be, ppl, ops, init, generator_init = self._build_parts(backend, form, seed, device, "generator")
        K = self.latent_dim

        def model(x=None, y=None, index=None, num_data=None, num=None):
            weights = ppl.network("generator", generator_init)
            like = next(iter(weights.values()))
            n = x.shape[0] if x is not None else num
            with ppl.plate("data", num_data or n, index=index, subsample_size=n):
                z = ppl.sample("z", ppl.dist.Normal(ppl.zeros((n, K), like), 1.0, validate_args=False).to_event(1))
                out = self.generate(ops, {f"generator.{k}": v for k, v in weights.items()}, z,
                                    self._onehot(ppl, y, like))
                return ppl.deterministic("x", out)

        def real(params, batch, rand):
            x = batch["x"]
            return x, self._onehot(ppl, batch.get("y"), x)

        def fake(params, batch, rand):
            x = batch["x"]
            cond = self._onehot(ppl, batch.get("y"), x)
            return self.generate(ops, params, rand.normal((x.shape[0], K)), cond, training=True), cond

        def critic(params, values, condition):
            return self.discriminate(ops, params, values, condition, training=True)

        nets = self.networks()
        players = {p: tuple(f"{p}.{k}" for k in nets[p].shapes()) for p in ("generator", "discriminator")}
        game = Game(init=init, players=players, real=real, fake=fake, critic=critic)
        return BuiltProgram(backend, model, None, form, self, int(data.shape[0]), max_plate_nesting=1,
                            extras={"game": game})

    # ---- evaluation ------------------------------------------------------------------------
    def sample(self, backend: str, params: dict, num: int, seed: int = 0, labels=None, device: str = "cpu",
               latents=None) -> np.ndarray:
        """``num`` draws x = G(z), z ~ N(0, I), shape (num, data_dim); a conditional GAN takes one
        label per draw. ``latents`` (num, K) replaces the draws of z (e.g. interpolations)."""
        y = self.check_labels(labels, num, "labels") if self.conditional else None
        if latents is None:
            z = np.random.default_rng(seed).standard_normal((int(num), self.latent_dim)).astype(np.float32)
        else:
            z = np.asarray(latents, dtype=np.float32)
            if z.shape != (int(num), self.latent_dim):
                raise DataError(f"latents have shape {z.shape}; give ({num}, {self.latent_dim})")

        def forward(be, ops, arrays):
            zz = be.asarray(z, "float32", device)
            cond = self._onehot(be.ppl, be.ppl.index(y, like=zz), zz) if y is not None else None
            return self.generate(ops, arrays, zz, cond)

        return self._run(backend, params, forward, device)

    def scores(self, backend: str, params: dict, x, labels=None, device: str = "cpu") -> np.ndarray:
        """The trained discriminator's score of each row of ``x``, computed on ``device``, shape (N,)."""
        x = self.check_data(x, "x")
        y = self.check_labels(labels, x.shape[0], "labels") if self.conditional else None

        def forward(be, ops, arrays):
            xx = be.asarray(x, "float32", device)
            cond = self._onehot(be.ppl, be.ppl.index(y, like=xx), xx) if y is not None else None
            return self.discriminate(ops, arrays, xx, cond)[..., 0]

        return self._run(backend, params, forward, device)


@dataclasses.dataclass(frozen=True)
class CGAN(GAN):
    """Conditional GAN: x = G(z, y) and D(x, y), with y a one-hot label (Mirza & Osindero 2014).

    The labels come from the dataset when fitting (fake examples take the minibatch's labels,
    so y ~ p_data(y)), and from ``labels=`` when sampling (by default they cycle 0, 1, ...).

    Args:
        num_classes: the number of label values.
        (the other arguments are :class:`GAN`'s)

    Example:
        >>> data = ppgen.datasets.load("digits", view="symmetric")
        >>> fit = ppgen.fit(models.CGAN(64, num_classes=10), data, inference.Adversarial(epochs=300))
        >>> fit.sample(10, labels=np.arange(10))
    """

    num_classes: int = 10

    family: ClassVar[str] = "cgan"
    conditional: ClassVar[bool] = True

