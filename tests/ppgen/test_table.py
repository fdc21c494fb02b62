"""Every (model, inference, backend) pair the registry declares to work, through the same checks:
it runs, its loss or likelihood is finite and improves, its run folder round-trips (every option
of the model and the inference rebuilt as it was), it samples data of the right shape, and every
array it makes lives on the fit's device.

Devices without a GPU: each backend gets a second device that catches an array made without the
fit's device.

- Pyro: torch's default device is ``meta`` (a device without data) while the fit runs on
  ``"cpu"``; a tensor that ppgen (or Pyro on its behalf) makes without naming the fit's device
  lands on ``meta``, and the first operation that mixes it with the fit's tensors fails.
- NumPyro: the fit runs on ``"cpu:1"`` (``conftest.py`` gives JAX two host devices) while
  ``"cpu:0"`` stays JAX's default, with implicit transfers between devices disallowed; an array
  made on the default device and mixed with the fit's arrays fails.

The path is fit → evaluate (log-likelihood, ArviZ export) → sample → save → ``load(device=...)``
→ sample. ``test_devices.py`` runs the same path on a real GPU when there is one.
"""

import contextlib

import numpy as np
import pytest

import ppgen
from ppgen import datasets
from ppgen.backends import BACKENDS
from ppgen.registry import inference_classes, model_classes, support_table

#: the smallest settings that still exercise each algorithm
TINY = {
    "closed_form": {},
    "em": {"max_iter": 60},
    "svi": {"steps": 150, "lr": 0.05},
    "nuts": {"num_samples": 40, "num_warmup": 40, "num_chains": 1},
    "hmc": {"num_samples": 40, "num_warmup": 40, "num_chains": 1},
    "adversarial": {"steps": 60, "batch_size": 50, "loss": "hinge"},
}
#: a small instance of each family, for data of dimension 6
EXAMPLES = {"ppca": lambda: model_classes()["ppca"](data_dim=6, latent_dim=2),
            "gmm": lambda: model_classes()["gmm"](data_dim=6, num_components=2, covariance="diag"),
            "vae": lambda: model_classes()["vae"](data_dim=6, latent_dim=2, hidden_dims=(16,), likelihood="gaussian"),
            "cvae": lambda: model_classes()["cvae"](data_dim=6, latent_dim=2, hidden_dims=(16,), num_classes=3,
                                                    likelihood="gaussian"),
            "hvae": lambda: model_classes()["hvae"](data_dim=6, latent_dims=(2, 2), hidden_dims=(16,),
                                                    likelihood="gaussian"),
            "ddpm": lambda: model_classes()["ddpm"](data_dim=6, timesteps=10, beta_schedule="cosine",
                                                    hidden_dims=(16,), time_dim=8),
            "gan": lambda: model_classes()["gan"](data_dim=6, latent_dim=2, hidden_dims=(16,), output="identity"),
            "cgan": lambda: model_classes()["cgan"](data_dim=6, latent_dim=2, hidden_dims=(16,), num_classes=3,
                                                    output="identity"),
            "aae": lambda: model_classes()["aae"](data_dim=6, latent_dim=2, hidden_dims=(16,),
                                                  discriminator_hidden_dims=(16,))}

PAIRS = [(family, name, backend) for family, name, _ in support_table() if family in model_classes()
         for backend in BACKENDS]


def test_every_family_and_algorithm_has_tiny_settings():
    assert set(EXAMPLES) == set(model_classes())
    assert set(TINY) == set(inference_classes())
    assert len(PAIRS) >= 18


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.5, (6, 2))
    draw = lambda n: (rng.normal(size=(n, 2)) @ W.T + 0.3 * rng.normal(size=(n, 6))).astype(np.float32)  # noqa: E731
    labels = tuple(rng.integers(0, 3, n) for n in (200, 50, 50))  # for the conditional families
    return datasets.from_arrays(draw(200), val=draw(50), test=draw(50), labels=labels)


@contextlib.contextmanager
def second_device(backend: str):
    """The device a table fit runs on, with the other device as the framework's default (see above)."""
    if backend == "pyro":
        import torch

        torch.set_default_device("meta")
        try:
            yield "cpu"
        finally:
            torch.set_default_device(None)
        return
    import jax

    if len(jax.devices("cpu")) < 2:
        pytest.skip("JAX was started with one host device (tests/conftest.py sets XLA_FLAGS for two)")
    with jax.transfer_guard_device_to_device("disallow"):
        yield "cpu:1"


@pytest.mark.parametrize("family,name,backend", PAIRS)
def test_pair(family, name, backend, data, tmp_path):
    with second_device(backend) as device:
        _check_pair(family, name, backend, device, data, tmp_path)


def _check_pair(family, name, backend, device, data, tmp_path):
    spec = EXAMPLES[family]()
    alg = inference_classes()[name](**TINY[name])
    fit = ppgen.fit(spec, data, alg, backend=backend, device=device, seed=0, run_dir=tmp_path / "run")
    assert fit.history, "no step was recorded"
    for record in fit.history:
        assert all(np.isfinite(record[k]) for k in ("loss", "log_likelihood") if k in record)
    if "loss" in fit.history[0] and len(fit.history) > 20:
        assert np.mean([h["loss"] for h in fit.history[-10:]]) < np.mean([h["loss"] for h in fit.history[:10]])
    if "log_likelihood" in fit.history[0] and len(fit.history) > 1:
        assert fit.history[-1]["log_likelihood"] > fit.history[0]["log_likelihood"]
    if "reconstruction" in fit.history[0] and spec.family == "aae":  # the autoencoder's own loss improves
        assert np.mean([h["reconstruction"] for h in fit.history[-10:]]) < fit.history[0]["reconstruction"]
    back = ppgen.load(tmp_path / "run", device=device)
    assert back.device == device
    assert back.model == spec and back.inference == alg.resolve_for(spec) == fit.inference
    if "implicit" in spec.forms:  # no likelihood: samples, run folder and parameters round-trip
        assert set(back.params) == set(fit.params) == set(spec.param_names())
        options = {"labels": np.arange(7) % 3} if getattr(spec, "conditional", False) else {}
        assert back.sample(7, seed=3, **options).shape == (7, 6)
        np.testing.assert_array_equal(back.sample(7, seed=3, **options), fit.sample(7, seed=3, **options))
        if family == "aae":
            assert fit.encode(data.test).shape == (50, spec.latent_dim)
            assert set(ppgen.arviz.groups(fit.to_arviz(data.test[:10]))) >= {"posterior", "prior"}
        return
    conditional = getattr(spec, "conditional", False)
    extra = {"labels": data.labels.test} if conditional else {}
    ll = fit.log_likelihood(data.test, **extra)
    assert ll.shape == (50,) and np.all(np.isfinite(ll))
    np.testing.assert_allclose(back.log_likelihood(data.test, **extra), ll, rtol=1e-6)
    # the export's predictive draws are fit.sample's, checked below; VAE-like families draw q(z|x) here
    exported = fit.to_arviz(data.test[:10], num_predictive=0 if not hasattr(spec, "posterior_draws") else 3,
                            **({"labels": data.labels.test[:10]} if conditional else {}))
    assert {"posterior", "log_likelihood"} <= set(ppgen.arviz.groups(exported))
    assert back.sample(7, seed=3).shape == (7, 6)
    np.testing.assert_array_equal(back.sample(7, seed=3), fit.sample(7, seed=3))


# ---- every option round-trips through a run folder's JSON -------------------------------------
def _my_loss(program, batch, **extra):  # a person's own loss: its name is what a run folder keeps
    raise AssertionError("never called")


#: for each inference algorithm, one object whose every option differs from its default
TWISTED_INFERENCE = {
    "closed_form": {},
    "em": {"max_iter": 7, "tol": 1e-3, "n_init": 3, "init_params": "random", "reg_covar": 1e-4},
    "svi": {"elbo": "renyi", "hybrid_weight": 0.5, "guide": "low_rank_normal", "steps": 17, "epochs": 3,
            "batch_size": 9, "lr": 0.5, "lr_decay": 0.25, "optimizer": "clipped_adam", "clip_norm": 3.0,
            "num_particles": 4, "alpha": 0.5, "rank": 2, "init_scale": 0.3, "num_samples": 11, "kl_warmup": 5,
            "beta": 0.5, "ema": 0.9, "ema_warmup": True},
    "nuts": {"num_samples": 3, "num_warmup": 4, "num_chains": 3, "target_accept_prob": 0.9, "dense_mass": True,
             "progress_bar": False, "max_tree_depth": 6, "chain_method": "vectorized"},
    "hmc": {"num_samples": 3, "num_warmup": 4, "num_chains": 3, "target_accept_prob": 0.9, "dense_mass": True,
            "progress_bar": True, "step_size": 0.05, "trajectory_length": 2.0, "chain_method": "parallel"},
    "adversarial": {"loss": "wgan-gp", "critic_steps": 3, "gradient_penalty": 0.5, "clip": 0.02,
                    "lr_generator": 3e-4, "lr_discriminator": 5e-4, "beta1": 0.1, "beta2": 0.8, "steps": 11,
                    "epochs": 2, "batch_size": 32, "ema": 0.99, "lr_decay": 0.5},
}
#: for each family, one spec whose every option (but data_dim) differs from its default
TWISTED_MODELS = {
    "ppca": {"latent_dim": 3, "w_prior_scale": 2.0, "mu_prior_scale": 4.0, "sigma_prior_scale": 0.5,
             "identification": "first"},
    "gmm": {"num_components": 3, "covariance": "tied", "weight_concentration": 2.0, "loc_prior_scale": 3.0,
            "scale_prior_scale": 2.0, "correlation_concentration": 3.0},
    "vae": {"latent_dim": 3, "hidden_dims": (8, 4), "activation": "elu", "dropout": 0.1, "likelihood": "gaussian",
            "num_levels": None, "observation_scale": 0.5, "network": "conv", "image_shape": (8, 8),
            "conv_channels": (4, 8)},
    "cvae": {"latent_dim": 3, "hidden_dims": (8,), "activation": "tanh", "dropout": 0.2, "likelihood": "categorical",
             "num_levels": 5, "network": "conv", "image_shape": (8, 8), "conv_channels": (4,), "num_classes": 4},
    "hvae": {"latent_dims": (4, 2), "hidden_dims": (8,), "activation": "elu", "dropout": 0.1,
             "likelihood": "gaussian", "observation_scale": 0.2, "network": "conv", "image_shape": (8, 8),
             "conv_channels": (4, 8)},
    "ddpm": {"timesteps": 20, "beta_schedule": "sigmoid", "beta_start": 1e-3, "beta_end": 0.05, "max_beta": 0.9,
             "prediction": "v", "variance": "fixed_large", "likelihood": "discretized_gaussian", "num_levels": 5,
             "network": "unet", "hidden_dims": (8,), "time_dim": 8, "image_shape": (8, 8), "unet_channels": (8, 16),
             "clip_denoised": False, "time_batch": 4, "mixed_precision": True},
    "gan": {"latent_dim": 3, "hidden_dims": (8,), "discriminator_hidden_dims": (4,), "activation": "leaky_relu",
            "output": "sigmoid", "network": "dcgan", "image_shape": (8, 8), "generator_channels": (8, 4),
            "discriminator_channels": (4, 8)},
    "cgan": {"latent_dim": 3, "hidden_dims": (8,), "discriminator_hidden_dims": (4,), "activation": "elu",
             "output": "identity", "network": "dcgan", "image_shape": (8, 8), "generator_channels": (8, 4),
             "discriminator_channels": (4, 8), "num_classes": 4},
    "aae": {"latent_dim": 3, "hidden_dims": (8,), "discriminator_hidden_dims": (4,), "activation": "elu",
            "dropout": 0.1, "likelihood": "categorical", "num_levels": 5, "observation_scale": None,
            "network": "conv", "image_shape": (8, 8), "conv_channels": (4,), "prior": "mixture",
            "prior_components": 5, "prior_radius": 3.0, "prior_scale": 0.2, "regularizer": "mmd",
            "regularization_weight": 2.0, "mmd_bandwidth": 1.5},
}


def _defaults(cls) -> dict:
    from ppgen.config import field_specs

    return {name: default for name, _, _, default in field_specs(cls)}


def _json_round_trip(obj, rebuild):
    import json

    return rebuild(json.loads(json.dumps(obj.to_config())))


@pytest.mark.parametrize("name", sorted(inference_classes()))
def test_every_inference_option_round_trips(name):
    from ppgen.registry import inference_from_config

    cls = inference_classes()[name]
    twisted = cls(**TWISTED_INFERENCE[name])
    differing = {k for k, v in _defaults(cls).items() if getattr(twisted, k) != v}
    assert differing == set(_defaults(cls)), f"TWISTED_INFERENCE[{name!r}] leaves {set(_defaults(cls)) - differing}"
    assert _json_round_trip(twisted, inference_from_config) == twisted


@pytest.mark.parametrize("family", sorted(model_classes()))
def test_every_model_option_round_trips(family):
    from ppgen.registry import model_from_config

    cls = model_classes()[family]
    twisted = cls(data_dim=64, **TWISTED_MODELS[family])
    # a person's own networks are objects, kept in a run's JSON by their kind only
    # (tests/models/test_networks.py: loading needs the spec with the code)
    defaults = {k: v for k, v in _defaults(cls).items() if k != "data_dim" and k not in cls.network_fields}
    same = {k for k, v in defaults.items() if getattr(twisted, k) == v}
    # num_levels/observation_scale stay None where the chosen likelihood has no use for them
    assert same <= {"num_levels", "observation_scale"}, f"TWISTED_MODELS[{family!r}] leaves {same}"
    assert _json_round_trip(twisted, model_from_config) == twisted


@pytest.mark.parametrize("elbo", ["trace", "meanfield", "iwae", "renyi", "enum", "simple", "vlb", "hybrid"])
def test_every_elbo_name_round_trips(elbo):
    from ppgen.registry import inference_from_config

    svi = inference_classes()["svi"](elbo=elbo)
    assert _json_round_trip(svi, inference_from_config).elbo == elbo


def test_a_loss_function_comes_back_as_a_reference_that_says_how_to_restore_it(data, tmp_path):
    from ppgen.config import CodeReference
    from ppgen.registry import inference_from_config

    svi = inference_classes()["svi"](elbo=_my_loss)
    back = _json_round_trip(svi, inference_from_config)
    assert back.elbo == CodeReference("_my_loss") and _json_round_trip(back, inference_from_config) == back
    with pytest.raises(ppgen.ConfigError, match="ppgen.load\\(path, inference=SVI\\(elbo=_my_loss"):
        back.elbo(None, {})


def test_a_diffusion_loss_survives_save_and_load(tmp_path):
    """ppgen.load once turned a DDPM fitted with elbo='simple' back into elbo='trace'."""
    spec = EXAMPLES["ddpm"]()
    svi = inference_classes()["svi"](elbo="hybrid", hybrid_weight=0.01, steps=3, ema=0.5)
    fit = ppgen.fit(spec, np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32), svi,
                    backend="numpyro", run_dir=tmp_path / "run")
    back = ppgen.load(tmp_path / "run")
    assert back.inference == fit.inference == svi
    with pytest.raises(ppgen.ConfigError, match="inference= must be an inference.SVI"):
        ppgen.load(tmp_path / "run", inference=inference_classes()["nuts"]())
    assert ppgen.load(tmp_path / "run", inference=svi.replace(lr=0.5)).inference.lr == 0.5
