"""Writes ``arviz_draws.npz``: the draws of a small NUTS fit of PPCA, stored so that the ArviZ
adapter's tests (``tests/ppgen/test_arviz_adapter.py``) run in an environment without torch or
jax (``.ci/arviz1``: Python 3.12, arviz 1.x). Run from the repository root with the main
environment: ``.venv/bin/python tests/ppgen/data/make_arviz_draws.py``."""

from pathlib import Path

import numpy as np

import ppgen
from ppgen import inference, models


def main() -> None:
    rng = np.random.default_rng(7)
    W = rng.normal(0, 0.8, (3, 1))
    x = (rng.normal(size=(40, 1)) @ W.T + 0.5 * rng.normal(size=(40, 3))).astype(np.float32)
    fit = ppgen.fit(models.PPCA(data_dim=3, latent_dim=1), x,
                    inference.NUTS(num_samples=200, num_warmup=200, num_chains=2), backend="numpyro", seed=0)
    arrays = {f"posterior/{k}": v for k, v in fit.posterior.items()}
    arrays.update({f"sample_stats/{k}": v for k, v in fit.sample_stats.items()})
    arrays["log_likelihood/x"] = fit.log_likelihood(x, pointwise_draws=True).reshape(2, 200, 40)
    arrays["posterior_predictive/x"] = fit.sample(20 * 40, seed=1).reshape(1, 20, 40, 3)
    arrays["observed_data/x"] = x
    np.savez_compressed(Path(__file__).with_name("arviz_draws.npz"), **arrays)


if __name__ == "__main__":
    main()
