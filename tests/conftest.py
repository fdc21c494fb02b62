"""Shared fixtures: small data sets and the synthetic PPCA problem of the acceptance tests.

JAX gets two host devices for the whole session (before anything imports it), so that tests can
fit on ``"cpu:1"`` while ``"cpu:0"`` stays JAX's default: the shared table (``ppgen/test_table.py``)
checks that way that every array of a NumPyro fit lives on the fit's device."""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()

import numpy as np  # noqa: E402
import pytest  # noqa: E402


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
