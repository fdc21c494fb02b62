"""The network protocol of the deep families, and adapters that bring a person's own networks in.

A family's network (a VAE's encoder and decoder, a GAN's generator and discriminator, a DDPM's
denoiser) is anything with

- ``shapes()``: the name and shape of every parameter;
- ``init(seed)``: their initial values as float32 numpy arrays;
- ``apply(ops, params, x, extra=None, training=False)``: the forward pass over a dict of named
  backend arrays; ``training`` says whether it runs in training mode (dropout on), which the
  programs receive from the inference as their ``training`` keyword.
  ``ops`` is ``models.nets.ops_for(backend)`` (whose ``name`` is ``"torch"`` or ``"jax"``);
  ``extra`` is the second input, where the family has one (one-hot labels of a conditional
  family, the timesteps of a denoiser). Inputs may carry leading dimensions beyond the batch
  (Monte Carlo particles, posterior draws); the last dimension holds the features;
- ``backend``: the one backend it runs in (``"pyro"`` or ``"numpyro"``), or None when it runs in
  both (ppgen's built-in networks in ``models.nets``).

A family registers each parameter as ``"<network>.<name>"`` (``encoder.0.weight``), saves it in
safetensors and restores it by that name. Families take networks beside their string shorthand
(``models.VAE(64, encoder=..., decoder=...)``) and wrap what they are given with
:func:`as_network`:

- a ``torch.nn.Module`` becomes a :class:`TorchNetwork` (Pyro backend): its parameters are
  ``module.named_parameters()``, starting from the module's own values, and it runs through
  ``torch.func.functional_call``;
- an Equinox module becomes an :class:`EquinoxNetwork` (NumPyro backend): its parameters are the
  module's floating-point arrays, named by their path (``layers.0.weight``), and it runs on one
  example at a time under ``jax.vmap`` (Equinox's convention);
- a Flax NNX module becomes an :class:`NnxNetwork` (NumPyro backend), its ``nnx.Param``
  variables named by path; a Flax linen module, which holds no parameters, comes in as
  ``FlaxNetwork(module, module.init(key, example_input))``; both run on a batch (Flax's
  convention);
- an object with ``shapes``, ``init`` and ``apply`` (a subclass of :class:`Network`, or a
  ``models.nets`` network) is used as it is.

A spec holding a backend-specific network is bound to that backend: ``spec.backend`` names it,
``ppgen.fit`` uses it by default, and any other backend is refused with the fix.

Example:
    >>> import torch
    >>> encoder = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32))
    >>> decoder = torch.nn.Sequential(torch.nn.Linear(16, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64 * 17))
    >>> spec = models.VAE(64, latent_dim=16, likelihood="categorical", num_levels=17,
    ...                   encoder=encoder, decoder=decoder)
    >>> spec.backend
    'pyro'
"""

from __future__ import annotations

import math
import sys
from typing import Optional

import numpy as np

from .errors import CheckpointError, ConfigError

__all__ = ["Network", "TorchNetwork", "EquinoxNetwork", "FlaxNetwork", "NnxNetwork", "NetworkReference", "as_network",
           "check_output"]


class Network:
    """Base of network descriptions: named parameter shapes, initial values, a forward pass.

    Subclasses define :meth:`shapes` and :meth:`apply`; the default :meth:`init` is PyTorch's
    default scheme (weights and biases uniform in ±1/sqrt(fan_in), fan_in counting a weight's
    inputs times its kernel), for parameters named ``"<layer>.weight"``/``"<layer>.bias"``."""

    #: the backend this network runs in, or None for both
    backend: Optional[str] = None

    def shapes(self) -> dict:
        raise NotImplementedError

    def init(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        shapes = self.shapes()
        out = {}
        for name, shape in shapes.items():
            layer = name.rsplit(".", 1)[0]
            fan_in = int(np.prod(shapes[f"{layer}.weight"][1:]))
            bound = 1.0 / math.sqrt(fan_in)
            out[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
        return out

    def num_parameters(self) -> int:
        return int(sum(np.prod(s) for s in self.shapes().values()))

    def apply(self, ops, params: dict, x, extra=None, training: bool = False):
        raise NotImplementedError

    def describe(self) -> str:
        """What a run's config.json records of this network."""
        return type(self).__name__

    def _require_ops(self, ops) -> None:
        want = {"pyro": "torch", "numpyro": "jax"}[self.backend]
        if ops.name != want:
            other = "numpyro" if self.backend == "pyro" else "pyro"
            raise ConfigError(f"{self.describe()} runs in the {self.backend!r} backend and was asked to run in "
                              f"{other!r}; fit the spec with backend={self.backend!r}, or give a network for "
                              f"{other!r} ({_KINDS[other]})")


_KINDS = {"pyro": "a torch.nn.Module", "numpyro": "an Equinox or Flax module"}


def _flat(value, lead: tuple):
    """``value`` with the leading dimensions ``lead`` merged into one batch dimension."""
    return value.reshape((-1,) + tuple(value.shape[len(lead):]))


class TorchNetwork(Network):
    """A ``torch.nn.Module`` as a network of the Pyro backend.

    Its parameters are ``module.named_parameters()`` (names such as ``"0.weight"``) and start
    from the module's values as given (build the module after ``torch.manual_seed`` for a
    reproducible start; ``init``'s seed is not used). The forward pass is
    ``torch.func.functional_call(module, params, (x,) or (x, extra))`` with every leading
    dimension of ``x`` merged into one batch dimension, in the module's training mode
    (``module.train()``: dropout on) when ``training`` and in its evaluation mode otherwise, so
    that likelihoods, samples and encodings are deterministic functions of the parameters.
    Buffers (running statistics) are the module's own.

    Args:
        module: the ``torch.nn.Module``; it takes a batch (B, ...) of inputs and returns (B, ...).
    """

    backend = "pyro"

    def __init__(self, module):
        import torch

        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"TorchNetwork takes a torch.nn.Module; got {type(module).__name__}")
        if not any(True for _ in module.parameters()):
            raise ConfigError(f"the torch module {type(module).__name__} has no parameters to fit")
        self.module = module

    def describe(self) -> str:
        return f"TorchNetwork({type(self.module).__name__})"

    def shapes(self) -> dict:
        return {name: tuple(p.shape) for name, p in self.module.named_parameters()}

    def init(self, seed: int) -> dict:
        return {name: p.detach().cpu().numpy().astype(np.float32).copy()
                for name, p in self.module.named_parameters()}

    def apply(self, ops, params: dict, x, extra=None, training: bool = False):
        import torch

        self._require_ops(ops)
        lead = tuple(x.shape[:-1])
        args = (_flat(x, lead),) if extra is None else (_flat(x, lead), _flat(extra, lead))
        was_training = self.module.training
        self.module.train(bool(training))
        try:
            out = torch.func.functional_call(self.module, params, args)
        finally:
            self.module.train(was_training)
        return out.reshape(lead + tuple(out.shape[1:]))


class _PytreeNetwork(Network):
    """What the JAX adapters share: a pytree of fitted arrays named by path, its initial values,
    and a call over every leading dimension of ``x`` merged into one batch."""

    backend = "numpyro"

    def _keep(self, tree, named=None) -> None:
        """Remember ``tree``'s structure and values; ``named`` (a pytree with the same leaves in the
        same order, e.g. Flax's pure dict of an NNX state) gives the names when ``tree``'s own
        paths would be unreadable."""
        import jax

        leaves, self._treedef = jax.tree_util.tree_flatten(tree)
        paths = jax.tree_util.tree_flatten_with_path(tree if named is None else named)[0]
        if not leaves or len(paths) != len(leaves):
            raise ConfigError(f"{type(self.module).__name__} has no floating-point arrays ppgen can name and fit")
        self._names = [_path_name(path) for path, _ in paths]
        self._values = [np.asarray(leaf, dtype=np.float32) for leaf in leaves]

    def _tree(self, params: dict):
        import jax

        return jax.tree_util.tree_unflatten(self._treedef, [params[name] for name in self._names])

    def describe(self) -> str:
        return f"{type(self).__name__}({type(self.module).__name__})"

    def shapes(self) -> dict:
        return {name: tuple(v.shape) for name, v in zip(self._names, self._values)}

    def init(self, seed: int) -> dict:
        return {name: v.copy() for name, v in zip(self._names, self._values)}

    @staticmethod
    def _batched(call, x, extra, per_example: bool = False):
        """``call`` on ``x`` (and ``extra``) with the leading dimensions merged, under ``jax.vmap``
        when the module takes one example at a time."""
        import jax

        lead = tuple(x.shape[:-1])
        args = (_flat(x, lead),) if extra is None else (_flat(x, lead), _flat(extra, lead))
        out = jax.vmap(call)(*args) if per_example else call(*args)
        return out.reshape(lead + tuple(out.shape[1:]))


class EquinoxNetwork(_PytreeNetwork):
    """An Equinox module as a network of the NumPyro backend.

    Its parameters are the module's floating-point arrays (``eqx.partition(module,
    eqx.is_inexact_array)``), named by their path in the module (``"layers.0.weight"``), and
    start from the module's values as given. The module is called on one example at a time, as
    Equinox modules are written (``eqx.nn.MLP`` takes a vector), under ``jax.vmap`` over every
    leading dimension of ``x``; ``extra`` (labels, timesteps) is the second argument.

    Layers with an inference switch (``eqx.nn.Dropout``) follow ``training``: in evaluation they
    run in inference mode; in training mode (SVI's optimisation steps) the module runs with
    ``eqx.nn.inference_mode(module, False)`` and gets ``key=``, one key per example split from
    ``numpyro.prng_key()``, as Equinox modules take their randomness. Such a module's
    ``__call__`` must therefore accept ``key``.

    Args:
        module: the ``equinox.Module``.
    """

    def __init__(self, module):
        import equinox as eqx

        if not isinstance(module, eqx.Module):
            raise ConfigError(f"EquinoxNetwork takes an equinox.Module; got {type(module).__name__}")
        self.module = eqx.nn.inference_mode(module, True)
        arrays, self._static = eqx.partition(self.module, eqx.is_inexact_array)
        self._keep(arrays)
        training = eqx.nn.inference_mode(module, False)
        self._switches = not eqx.tree_equal(training, self.module)
        self._training_static = eqx.partition(training, eqx.is_inexact_array)[1] if self._switches else None
        if self._switches and not _takes_key(module):
            raise ConfigError(f"{type(module).__name__} has layers with an inference switch (dropout) but its "
                              f"__call__ takes no key=; add `*, key=None` to __call__ and pass it on to those layers, "
                              f"as eqx.nn.MLP and eqx.nn.Sequential do")

    def apply(self, ops, params: dict, x, extra=None, training: bool = False):
        import equinox as eqx

        self._require_ops(ops)
        if not (training and self._switches):
            return self._batched(eqx.combine(self._tree(params), self._static), x, extra, per_example=True)
        import warnings

        import jax
        import numpyro

        with warnings.catch_warnings():  # outside a seed handler: the error below says what to do
            warnings.simplefilter("ignore", UserWarning)
            key = numpyro.prng_key()
        if key is None:
            raise RuntimeError(f"{type(self.module).__name__} in training mode (dropout) needs a random key: run it "
                               f"inside a seeded NumPyro program (numpyro.handlers.seed), as SVI does")
        module = eqx.combine(self._tree(params), self._training_static)
        lead = tuple(x.shape[:-1])
        keys = jax.random.split(key, int(np.prod(lead, dtype=int)))
        if extra is None:
            out = jax.vmap(lambda xi, ki: module(xi, key=ki))(_flat(x, lead), keys)
        else:
            out = jax.vmap(lambda xi, ei, ki: module(xi, ei, key=ki))(_flat(x, lead), _flat(extra, lead), keys)
        return out.reshape(lead + tuple(out.shape[1:]))


def _takes_key(module) -> bool:
    import inspect

    try:
        parameters = inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return True  # cannot tell: let the call say
    return "key" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


class FlaxNetwork(_PytreeNetwork):
    """A Flax linen module and its variables as a network of the NumPyro backend.

    A linen module holds no parameters, so it comes with the variables its ``init`` made:
    ``FlaxNetwork(module, module.init(key, example_input))``. The ``"params"`` collection is
    fitted, named by its path (``"Dense_0.kernel"``, Flax's (in, out) layout); other collections
    (batch statistics) stay as given. The module is called on a batch, as linen modules are
    written, with every leading dimension of ``x`` merged into one; ``extra`` is the second
    argument. The module runs as written (pass ``deterministic`` switches through its own
    attributes); ``training`` is not forwarded.

    Args:
        module: the ``flax.linen.Module``.
        variables: what ``module.init`` returned (a dict with a ``"params"`` entry).
    """

    def __init__(self, module, variables):
        if not _is_flax_linen(module):
            raise ConfigError(f"FlaxNetwork takes a flax.linen.Module; got {type(module).__name__}")
        self.module = module
        try:
            fitted = variables["params"]
            self._rest = {k: v for k, v in variables.items() if k != "params"}
        except (TypeError, KeyError, AttributeError):
            raise ConfigError(f"FlaxNetwork(module, variables): variables must be what module.init(key, x) returned, "
                              f"a dict with 'params'; got {type(variables).__name__}") from None
        self._keep(fitted)

    def apply(self, ops, params: dict, x, extra=None, training: bool = False):
        self._require_ops(ops)
        variables = {"params": self._tree(params), **self._rest}
        return self._batched(lambda *args: self.module.apply(variables, *args), x, extra)


class NnxNetwork(_PytreeNetwork):
    """A Flax NNX module as a network of the NumPyro backend.

    Its ``nnx.Param`` variables are fitted, named by their path (``"linear1.kernel"``), starting
    from the module's values; every other state stays as given. The module is called on a batch,
    as NNX modules are written, with every leading dimension of ``x`` merged into one; ``extra``
    is the second argument. The module runs in the mode it is in (``module.eval()`` or
    ``module.train()`` before handing it over); ``training`` is not forwarded.

    Args:
        module: the ``flax.nnx.Module``.
    """

    def __init__(self, module):
        from flax import nnx

        if not isinstance(module, nnx.Module):
            raise ConfigError(f"NnxNetwork takes a flax.nnx.Module; got {type(module).__name__}")
        self.module = module
        self._graph, params, self._rest = nnx.split(module, nnx.Param, ...)
        self._keep(params, named=nnx.to_pure_dict(params))

    def apply(self, ops, params: dict, x, extra=None, training: bool = False):
        from flax import nnx

        self._require_ops(ops)
        return self._batched(nnx.merge(self._graph, self._tree(params), self._rest), x, extra)


def _path_name(path) -> str:
    parts = []
    for key in path:
        for attr in ("name", "key", "idx"):
            value = getattr(key, attr, None)  # jax's GetAttrKey / DictKey / SequenceKey
            if value is not None:
                parts.append(str(value))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


class NetworkReference(Network):
    """What a run folder's config keeps of a person's own network: its description. Code is
    never stored; using it says how to bring the network back."""

    def __init__(self, description: str):
        self.description = str(description)

    def describe(self) -> str:
        return self.description

    def _refuse(self, *args, **kwargs):
        raise CheckpointError(f"this run used your own network {self.description}, and run folders never store "
                              f"code; build the spec again with that network and pass it: "
                              f"ppgen.load(path, model=models.<Family>(..., <network>=...))")

    shapes = init = apply = _refuse

    def __eq__(self, other):
        return isinstance(other, NetworkReference) and other.description == self.description

    def __hash__(self):
        return hash(self.description)


def _is_torch_module(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def _is_equinox_module(value) -> bool:
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(value, eqx.Module)


def _is_flax_linen(value) -> bool:
    linen = sys.modules.get("flax.linen")
    return linen is not None and isinstance(value, linen.Module)


def _is_flax_nnx(value) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(value, nnx.Module)


def as_network(value, role: str = "network") -> Network:
    """``value`` as a :class:`Network`: a torch module becomes a :class:`TorchNetwork`, an
    Equinox module an :class:`EquinoxNetwork`, a Network stays as it is; anything else is
    refused naming what is accepted. ``role`` (e.g. ``"VAE.encoder"``) names the slot in errors."""
    if isinstance(value, Network):
        return value
    if _is_torch_module(value):
        return TorchNetwork(value)
    if _is_equinox_module(value):
        return EquinoxNetwork(value)
    if _is_flax_nnx(value):
        return NnxNetwork(value)
    if _is_flax_linen(value):
        raise ConfigError(f"{role} is a Flax linen module ({type(value).__name__}), which holds no parameters; pass it "
                          f"with the variables its init made: ppgen.networks.FlaxNetwork(module, "
                          f"module.init(jax.random.PRNGKey(0), example_input))")
    raise ConfigError(f"{role} is {type(value).__name__}, not a network: give a torch.nn.Module (Pyro backend), an "
                      f"equinox.Module or a Flax NNX module (NumPyro backend), a ppgen.networks.FlaxNetwork(linen "
                      f"module, variables), or a ppgen.networks.Network (shapes, init, apply)")


def check_output(network: Network, role: str, inputs: tuple, expected: tuple, ops) -> None:
    """Run ``network`` once on zeros of the shapes ``inputs`` (each with a batch of 2 in front),
    with ``ops`` (``models.nets.ops_for(network.backend)``; an input of shape () per example is an
    integer, a denoiser's timestep),
    and refuse, naming the expected and the given shapes, an output whose shape per example is
    not ``expected``. A no-op for networks that run in both backends (ppgen's own)."""
    if network.backend is None or isinstance(network, NetworkReference):
        return
    from .backends import get_backend

    be = get_backend(network.backend)
    params = {k: be.asarray(v, "float32", "cpu") for k, v in network.init(0).items()}
    integer = "int64" if network.backend == "pyro" else "int32"  # a scalar per example is a timestep
    args = [be.asarray(np.zeros((2,) + tuple(shape)), integer if not shape else "float32", "cpu") for shape in inputs]
    try:
        out = network.apply(ops, params, *args)
    except Exception as e:  # the person's module rejected the input the family gives it
        shown = " and ".join(f"(batch, {', '.join(map(str, s))})" for s in inputs)
        raise ConfigError(f"{role} ({network.describe()}) failed on inputs of shape {shown}, which the family "
                          f"gives it: {type(e).__name__}: {e}") from None
    given = tuple(out.shape[1:])
    if given != tuple(expected):
        raise ConfigError(f"{role} ({network.describe()}) returns (batch, {', '.join(map(str, given))}), "
                          f"and the family needs (batch, {', '.join(map(str, expected))}); change its last "
                          f"layer to {expected[-1] if expected else 'a scalar'} outputs")
