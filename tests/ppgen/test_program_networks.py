"""A person's own networks inside a Program: Pyro's ``pyro.module`` with a ``torch.nn.Module`` and
NumPyro's ``eqx_module`` with an Equinox network, written as Pyro's and NumPyro's VAE examples
write them (``ppgen.examples``). Each trains on the binarised digits, saves, loads with its code,
samples and scores; its parameters come back as a flat dict of stable dotted names. (How close their test NLL comes
to the built-in VAE's is measured by ``benchmarks/programs.py``, with full training.)"""

import numpy as np
import pytest

import ppgen
from ppgen import datasets, examples, inference

PROGRAMS = {"pyro": examples.pyro_vae, "numpyro": examples.numpyro_vae}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_vae_with_its_own_networks_trains_saves_loads_samples_and_scores(backend, tmp_path):
    if backend == "numpyro":
        pytest.importorskip("equinox")
    data = datasets.load("digits", view="binary")
    fit = ppgen.fit(PROGRAMS[backend](), data, inference.SVI(steps=150, batch_size=64, lr=3e-3), seed=0)
    losses = [h["loss"] for h in fit.history]
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 5  # it learns
    names = sorted(fit.params)
    if backend == "pyro":
        assert "decoder$$$0.weight" in names and "encoder$$$loc.bias" in names
    else:
        assert "decoder$params.layers.0.weight" in names and "encoder$params.layers.1.bias" in names
    assert all(isinstance(v, np.ndarray) for v in fit.params.values())
    assert fit.posterior is None and fit.structure.local_latents == ("z",)

    fit.save(tmp_path / "run")
    loaded = ppgen.load(tmp_path / "run", program=PROGRAMS[backend]())
    test = data.test[:50]
    scored = loaded.log_likelihood(test, num_samples=20, seed=1)
    np.testing.assert_allclose(scored, fit.log_likelihood(test, num_samples=20, seed=1), rtol=1e-5)
    assert scored.shape == (50,) and np.all(scored < 0) and np.all(scored > -64 * np.log(2) - 20)
    samples = loaded.sample(6, seed=0)
    assert samples.shape == (6, 8, 8) and set(np.unique(samples)) <= {0.0, 1.0}
