"""Devices: names, loading a run on another machine, and the whole path on a real GPU.

That every array of a fit lives on the fit's device is checked on every pair of the shared table
without a GPU (``test_table.py``: a second device per backend). ``test_cuda_path`` runs the same
path, fit → evaluate → sample → save → ``load(device=...)`` → sample, on CUDA when there is one.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import ppgen
from ppgen import datasets
from ppgen.registry import inference_classes, support_table

from tests.ppgen.test_table import EXAMPLES, TINY

PAIRS = [(family, name) for family, name, _ in support_table() if family in EXAMPLES]


def _data():
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.5, (6, 2))
    draw = lambda n: (rng.normal(size=(n, 2)) @ W.T + 0.3 * rng.normal(size=(n, 6))).astype(np.float32)  # noqa: E731
    labels = tuple(rng.integers(0, 3, n) for n in (200, 50, 50))
    return datasets.from_arrays(draw(200), val=draw(50), test=draw(50), labels=labels)


def device_path(family: str, name: str, backend: str, device: str, run_dir: Path) -> dict:
    """fit → evaluate → sample → save → load(device) → sample; returns what was computed."""
    data = _data()
    spec = EXAMPLES[family]()
    alg = inference_classes()[name](**dict(TINY[name], **({"steps": 20} if name in ("svi", "adversarial") else {})))
    fit = ppgen.fit(spec, data, alg, backend=backend, device=device, seed=0, run_dir=run_dir)
    conditional = getattr(spec, "conditional", False)
    labels = {"labels": np.arange(7) % 3} if conditional else {}
    out = {"sample": fit.sample(7, seed=3, **labels)}
    if "implicit" not in spec.forms:
        extra = {"labels": data.labels.test} if conditional else {}
        if getattr(spec, "estimated_likelihood", False):
            extra["num_samples"] = 8
        out["log_likelihood"] = fit.log_likelihood(data.test, **extra)
        ppgen.arviz.groups(fit.to_arviz(data.test[:10], num_predictive=3,
                                        **({"labels": data.labels.test[:10]} if conditional else {})))
    elif family == "aae":
        out["codes"] = fit.encode(data.test)
        ppgen.arviz.groups(fit.to_arviz(data.test[:10]))
    back = ppgen.load(run_dir, device=device)
    assert back.device == device
    out["loaded_sample"] = back.sample(7, seed=3, **labels)
    return out


# ---- names, loading, and machines without the device ------------------------------------------
def test_gpu_is_not_a_device_name():
    with pytest.raises(ppgen.ConfigError, match="use device='cuda'"):
        ppgen.fit("ppca", np.zeros((10, 3)), "closed_form", device="gpu", latent_dim=1)
    with pytest.raises(ppgen.ConfigError, match="unknown device 'tpu'"):
        ppgen.fit("ppca", np.zeros((10, 3)), "closed_form", device="tpu", latent_dim=1)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_load_on_a_missing_device_names_the_fix(backend, tmp_path):
    fit = ppgen.fit("ppca", _data(), "closed_form", backend=backend, latent_dim=2)
    fit.save(tmp_path / "run")
    if ppgen.backends.get_backend(backend).available("cuda"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ppgen.ConfigError, match="device='cpu'"):
        ppgen.load(tmp_path / "run", device="cuda")
    with pytest.raises(ppgen.ConfigError, match="use device='cuda'"):
        ppgen.load(tmp_path / "run", device="gpu")
    with pytest.raises(ppgen.ConfigError, match="use device='cpu'"):
        ppgen.fit("ppca", _data(), "closed_form", backend=backend, latent_dim=2, device="cuda")


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_run_fitted_on_a_gpu_loads_on_this_machine(backend, tmp_path, capsys):
    data = _data()
    fit = ppgen.fit("ppca", data, "closed_form", backend=backend, latent_dim=2)
    run = fit.save(tmp_path / "run")
    if ppgen.backends.get_backend(backend).available("cuda"):
        pytest.skip("this machine has a GPU")
    config = json.loads((run / "config.json").read_text())
    config["device"] = "cuda"  # as written by a fit on a GPU
    (run / "config.json").write_text(json.dumps(config))
    back = ppgen.load(run)
    assert back.device == "cpu"
    assert "fitted on 'cuda', which this machine lacks; loaded on 'cpu'" in capsys.readouterr().err
    np.testing.assert_allclose(back.log_likelihood(data.test), fit.log_likelihood(data.test), rtol=1e-6)
    np.testing.assert_array_equal(back.sample(5, seed=1), fit.sample(5, seed=1))
    assert ppgen.load(run, device="cpu").device == "cpu"
    assert "lacks" not in capsys.readouterr().err  # asked for: no note


def test_sample_refuses_a_device_option(tmp_path):
    fit = ppgen.fit("ppca", _data(), "closed_form", backend="numpyro", latent_dim=2)
    with pytest.raises(ppgen.ConfigError, match="ppgen.load\\(path, device=...\\)"):
        fit.sample(3, device="cpu")


# ---- a real GPU ---------------------------------------------------------------------------------
def _has_cuda(backend: str) -> bool:
    try:
        return ppgen.backends.get_backend(backend).available("cuda")
    except Exception:  # noqa: BLE001 - a framework that fails to start has no GPU for us
        return False


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("family,name", PAIRS)
def test_cuda_path(family, name, backend, tmp_path):
    if not _has_cuda(backend):
        pytest.skip(f"no CUDA device for the {backend} backend")
    out = device_path(family, name, backend, "cuda", tmp_path / "run")
    np.testing.assert_array_equal(out["loaded_sample"], out["sample"])
    back = ppgen.load(tmp_path / "run", device="cpu")
    assert back.sample(7, seed=3, **({"labels": np.arange(7) % 3} if getattr(back.model, "conditional", False)
                                     else {})).shape[0] == 7


def test_pyro_rng_state_carries_the_cuda_generator(monkeypatch):
    """On a CUDA machine the state written back by the Pyro backend's rng context holds the CUDA
    generator after the CPU one, and the next step starts the CUDA generator from it (a fake CUDA
    generator here: a counter that each body advances), so GPU draws differ from step to step."""
    import torch

    from ppgen.backends import get_backend

    fake = {"state": torch.zeros(16, dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": fake["state"].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda value, device="cuda": fake.update(state=value.clone()))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: fake.update(state=torch.full((16,), seed % 7, dtype=torch.uint8)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: fake.update(state=torch.full((16,), seed % 7, dtype=torch.uint8)))
    be = get_backend("pyro")
    cpu_size = torch.get_rng_state().numel()
    holder = {"rng": None}
    seen = []
    for _ in range(3):
        with be.rng(holder, seed=3):
            seen.append(int(fake["state"][0]))
            fake["state"] = fake["state"] + 1  # the body's draws advance the CUDA generator
            torch.rand(1)
        assert holder["rng"].numel() == cpu_size + 16
    assert seen == [3, 4, 5]  # seeded once, then continued from the saved state
    assert int(fake["state"][0]) == 0  # and the caller's CUDA generator is as it was before the first step
    # a state saved without CUDA (CPU only) restores the CPU generator and leaves CUDA alone
    with be.rng({"rng": holder["rng"][:cpu_size]}):
        assert int(fake["state"][0]) == 0
