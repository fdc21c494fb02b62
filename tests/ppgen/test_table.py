"""Every (model, inference, backend) pair the registry declares to work, through the same checks:
it runs, its loss or likelihood is finite and improves, its run folder round-trips, and it samples
data of the right shape."""

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


@pytest.mark.parametrize("family,name,backend", PAIRS)
def test_pair(family, name, backend, data, tmp_path):
    spec = EXAMPLES[family]()
    alg = inference_classes()[name](**TINY[name])
    fit = ppgen.fit(spec, data, alg, backend=backend, seed=0, run_dir=tmp_path / "run")
    assert fit.history, "no step was recorded"
    for record in fit.history:
        assert all(np.isfinite(record[k]) for k in ("loss", "log_likelihood") if k in record)
    if "loss" in fit.history[0] and len(fit.history) > 20:
        assert np.mean([h["loss"] for h in fit.history[-10:]]) < np.mean([h["loss"] for h in fit.history[:10]])
    if "log_likelihood" in fit.history[0] and len(fit.history) > 1:
        assert fit.history[-1]["log_likelihood"] > fit.history[0]["log_likelihood"]
    if "reconstruction" in fit.history[0] and spec.family == "aae":  # the autoencoder's own loss improves
        assert np.mean([h["reconstruction"] for h in fit.history[-10:]]) < fit.history[0]["reconstruction"]
    if "implicit" in spec.forms:  # no likelihood: samples, run folder and parameters round-trip
        back = ppgen.load(tmp_path / "run")
        assert set(back.params) == set(fit.params) == set(spec.param_names())
        options = {"labels": np.arange(7) % 3} if getattr(spec, "conditional", False) else {}
        assert back.sample(7, seed=3, **options).shape == (7, 6)
        np.testing.assert_array_equal(back.sample(7, seed=3, **options), fit.sample(7, seed=3, **options))
        return
    extra = {"labels": data.labels.test} if getattr(spec, "conditional", False) else {}
    ll = fit.log_likelihood(data.test, **extra)
    assert ll.shape == (50,) and np.all(np.isfinite(ll))
    back = ppgen.load(tmp_path / "run")
    np.testing.assert_allclose(back.log_likelihood(data.test, **extra), ll, rtol=1e-6)
    assert back.sample(7, seed=3).shape == (7, 6)
    np.testing.assert_array_equal(back.sample(7, seed=3), fit.sample(7, seed=3))
