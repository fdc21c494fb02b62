"""PPCA quality numbers of issue 2, measured in one run against independent computations.

    .venv/bin/python benchmarks/ppca_quality.py [--json PATH]

Prints, for digits in [0, 1] with latent_dim 8:
- the closed-form fit's per-example test log-likelihood against an independent float64
  Tipping–Bishop + scipy computation (max relative difference), each backend;
- EM's and SVI's (amortised and per-example guides) train log-likelihood gap to the closed form;
- the Pyro vs NumPyro log-likelihood difference for identical parameters;
and for NUTS on synthetic data (N=500, D=10, K=3) in each backend: divergences, max R-hat, min
bulk ESS, and the max abs error of the posterior mean of W Wᵀ + σ² I against the truth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ppgen  # noqa: E402
from ppgen import datasets, inference, models  # noqa: E402


def tipping_bishop_log_likelihood(train, test, k):
    x = train.reshape(len(train), -1).astype(np.float64)
    mu = x.mean(0)
    values, vectors = np.linalg.eigh(np.cov(x.T, bias=True))
    values, vectors = values[::-1], vectors[:, ::-1]
    sigma2 = values[k:].mean()
    W = vectors[:, :k] * np.sqrt(values[:k] - sigma2)
    C = W @ W.T + sigma2 * np.eye(x.shape[1])
    return scipy.stats.multivariate_normal(mu, C).logpdf(test.reshape(len(test), -1).astype(np.float64))


def synthetic(seed=0, n=500, d=10, k=3, sigma=0.3):
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.3, (d, k))
    mu = rng.normal(0, 1, d)
    x = rng.normal(size=(n, k)) @ W.T + mu + sigma * rng.normal(size=(n, d))
    return x.astype(np.float32), W @ W.T + sigma**2 * np.eye(d)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    out: dict = {}
    data = datasets.load("digits")
    spec = models.PPCA(data_dim=64, latent_dim=8)
    independent = tipping_bishop_log_likelihood(data.train, data.test, 8)
    print("PPCA on digits ([0, 1], latent_dim 8)")
    closed = {}
    for backend in ("pyro", "numpyro"):
        closed[backend] = ppgen.fit(spec, data, inference.ClosedForm(), backend=backend)
        got = closed[backend].log_likelihood(data.test)
        rel = float(np.max(np.abs(got - independent) / np.abs(independent)))
        out[f"closed_form_vs_independent_max_rel_{backend}"] = rel
        print(f"  closed form ({backend:7s}) test log-lik {got.mean():.6f}/example; "
              f"max rel diff to independent: {rel:.2e}")
    target = closed["pyro"].log_likelihood(data.train).mean()
    out["closed_form_train_log_likelihood"] = float(target)
    runs = [("em", "pyro", inference.EM()), ("em", "numpyro", inference.EM()),
            ("svi_amortized", "pyro", inference.SVI(elbo="meanfield", guide="amortized", steps=4000, lr=0.03,
                                                    lr_decay=0.03)),
            ("svi_amortized", "numpyro", inference.SVI(elbo="meanfield", guide="amortized", steps=4000, lr=0.03,
                                                       lr_decay=0.03)),
            ("svi_per_example", "numpyro", inference.SVI(elbo="meanfield", guide="per_example", steps=6000,
                                                         lr=0.1, lr_decay=0.01))]
    for name, backend, alg in runs:
        t0 = time.perf_counter()
        fit = ppgen.fit(spec, data, alg, backend=backend)
        ll = fit.log_likelihood(data.train).mean()
        gap = float((target - ll) / abs(target))
        out[f"{name}_gap_{backend}"] = gap
        print(f"  {name:16s} ({backend:7s}) train log-lik {ll:.6f}; gap to closed form {100 * gap:.4f}% "
              f"({time.perf_counter() - t0:.1f} s)")

    rng = np.random.default_rng(3)
    params = {"W": rng.normal(size=(64, 8)), "mu": rng.normal(size=64), "sigma": np.asarray(0.4)}
    a, b = spec.log_likelihood("pyro", params, data.test), spec.log_likelihood("numpyro", params, data.test)
    out["pyro_vs_numpyro_max_rel"] = float(np.max(np.abs(a - b) / np.abs(b)))
    print(f"  pyro vs numpyro log-lik for identical parameters: max rel diff {out['pyro_vs_numpyro_max_rel']:.2e}")

    from ppgen import arviz as ppaz

    x, C = synthetic()
    print("NUTS on synthetic PPCA (N=500, D=10, K=3), 2 chains")
    for backend, draws in (("numpyro", 700), ("pyro", 600)):
        t0 = time.perf_counter()
        fit = ppgen.fit(models.PPCA(data_dim=10, latent_dim=3), x,
                        inference.NUTS(num_samples=draws, num_warmup=draws, num_chains=2), backend=backend)
        seconds = time.perf_counter() - t0
        table = ppaz.summary(fit.to_arviz(num_predictive=2), var_names=["W_diag", "W_lower", "mu", "sigma"])
        W = fit.posterior["W"].reshape(-1, 10, 3)
        s = fit.posterior["sigma"].reshape(-1)
        err = float(np.abs((np.einsum("sdk,sek->sde", W, W) + s[:, None, None] ** 2 * np.eye(10)).mean(0) - C).max())
        row = {"draws_per_chain": draws, "divergences": int(fit.sample_stats["diverging"].sum()),
               "r_hat_max": float(table["r_hat"].max()), "ess_bulk_min": float(table["ess_bulk"].min()),
               "cov_max_abs_error": err, "seconds": seconds}
        out[f"nuts_{backend}"] = row
        print(f"  {backend:7s}: {draws} draws/chain, divergences {row['divergences']}, max R-hat "
              f"{row['r_hat_max']:.3f}, min bulk ESS {row['ess_bulk_min']:.0f}, max |E[C] - C| {err:.3f}, "
              f"{seconds:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
