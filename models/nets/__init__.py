"""Networks of the deep families (VAE, CVAE, hierarchical VAE, diffusion, GAN), written once for both backends.

A network here is a *description* — its layer sizes — with three things:

- ``shapes()``: the name and shape of every parameter (PyTorch's layout: a linear layer's
  ``weight`` is (out, in), a convolution's is (out, in, kh, kw));
- ``init(seed)``: numpy initial values with PyTorch's default scheme (uniform in
  ±1/sqrt(fan_in)), so the same spec and seed start both backends at the same weights;
- ``apply(ops, params, x, ...)``: the forward pass over a dict of named arrays, where ``ops`` is
  ``ops_for(backend)``, the primitives of PyTorch ("pyro") or JAX ("numpyro"); the third
  argument is extra features (a label) for :class:`MLP` and the convolutional networks, and the
  timesteps for the diffusion denoisers :class:`TimeMLP` and :class:`UNet`.

The GAN pair :class:`DCGANGenerator` (latent codes → images, batch-normalised over the current
batch, stateless) and :class:`DCGANDiscriminator` (images → scores, no batch normalisation) follow
Radford et al. (2016) and start from DCGAN's N(0, 0.02) weights rather than PyTorch's default.

A program registers each parameter with ``ppl.param("<network>.<name>", value)`` (see
``ppl.network``), so a fit's parameters carry the same names, shapes and meaning in Pyro and
NumPyro: one backend's weights run unchanged in the other. Inputs may carry any number of
leading dimensions (Monte Carlo particles, posterior draws): the last one holds the features
(images flattened channels-last, as the data are).

Example:
    >>> net = MLP(64, (256, 256), 32)
    >>> params = net.init(seed=0)
    >>> import torch
    >>> out = net.apply(ops_for("pyro"), {k: torch.as_tensor(v) for k, v in params.items()},
    ...                 torch.zeros(10, 64))
    >>> tuple(out.shape)
    (10, 32)
"""

from ._diffusion import TimeMLP, UNet, timestep_embedding
from ._gan import DCGANDiscriminator, DCGANGenerator
from ._layers import ACTIVATIONS, IMAGE_SIZES, ConvDecoder, ConvEncoder, MLP, image_layout, ops_for

from ppgen.networks import EquinoxNetwork, FlaxNetwork, Network, NnxNetwork, TorchNetwork, as_network


def check_network(spec, name: str, inputs: tuple, expected: tuple) -> None:
    """Refuse the person's network in ``spec``'s field ``name`` when, run once on zeros of the
    per-example shapes ``inputs``, its output per example is not ``expected`` (the shapes named)."""
    from ppgen.networks import check_output

    network = getattr(spec, name)
    if network is not None and network.backend is not None:
        check_output(network, f"{type(spec).__name__}.{name}", inputs, expected, ops_for(network.backend))


__all__ = ["Network", "TorchNetwork", "EquinoxNetwork", "FlaxNetwork", "NnxNetwork", "as_network", "check_network", "MLP", "ConvEncoder", "ConvDecoder", "TimeMLP", "UNet", "timestep_embedding",
           "DCGANGenerator", "DCGANDiscriminator", "ACTIVATIONS", "IMAGE_SIZES", "ops_for", "image_layout"]
