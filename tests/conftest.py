"""Shared fixtures: small data sets and the synthetic PPCA problem of the acceptance tests.

JAX gets two host devices for the whole session (before anything imports it), so that tests can
fit on ``"cpu:1"`` while ``"cpu:0"`` stays JAX's default: the shared table (``ppgen/test_table.py``)
checks that way that every array of a NumPyro fit lives on the fit's device. Every process of the
run shares one persistent JAX compilation cache (see ``_share_compiled_programs``)."""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()


def _pin_worker_to_a_core() -> None:
    """Under pytest-xdist, each worker runs on a core of its own. XLA's CPU runtime spreads one
    step of a small program over every core it sees, even with single-threaded Eigen kernels, so
    two workers that both run JAX fought over both cores (the NumPyro PPCA NUTS test took 213 s
    beside another worker against 37 s alone). Torch already runs one thread (PPGEN_NUM_THREADS)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if worker.startswith("gw") and worker[2:].isdigit() and 1 < count <= len(cores):
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})


_pin_worker_to_a_core()


def _share_compiled_programs() -> None:
    """Every process of the run (the xdist workers, the tutorials' kernels, the README's
    subprocesses) reads and writes one persistent JAX compilation cache. NumPyro initialises a
    model eagerly, compiling a few hundred tiny XLA programs per model shape, and the same shapes
    recur from process to process: a NumPyro NUTS fit of a GMM took 84 s with a cold cache and
    26 s with a warm one. Set PPGEN_TEST_JAX_CACHE=0 to turn it off."""
    if os.environ.get("PPGEN_TEST_JAX_CACHE", "1") == "0" or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    import tempfile

    user = os.getuid() if hasattr(os, "getuid") else "user"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"ppgen-test-jax-cache-{user}")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


_share_compiled_programs()

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
