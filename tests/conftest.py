"""Shared fixtures: small data sets and the synthetic PPCA problem of the acceptance tests."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits():
    from ppgen import datasets

    return datasets.load("digits")


def synthetic_ppca(seed: int = 0, n: int = 500, d: int = 10, k: int = 3, sigma: float = 0.3):
    """Data drawn from known W, mu, sigma; returns (x, truth dict)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.3, (d, k))
    mu = rng.normal(0, 1, d)
    x = rng.normal(size=(n, k)) @ W.T + mu + sigma * rng.normal(size=(n, d))
    return x.astype(np.float32), {"W": W, "mu": mu, "sigma": sigma, "C": W @ W.T + sigma**2 * np.eye(d)}


@pytest.fixture(scope="session")
def synthetic():
    return synthetic_ppca()
