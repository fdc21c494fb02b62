"""GMM quality checks against scikit-learn and planted truth, in one run.

1. **EM from scikit-learn's start.** For full, diag, spherical and tied covariances and both
   backends: ``GaussianMixture(weights_init, means_init, precisions_init, max_iter=300,
   tol=1e-6)`` and ``inference.EM(init_params=...)`` from the same parameters on overlapping
   planted clusters (N=3000, D=5, K=4, seed 1); prints both iteration counts and the relative
   difference of the mean log-likelihoods.
2. **Restarts.** ``EM(n_init=5, max_iter=500, tol=1e-4)`` (own k-means initialisation) against
   ``GaussianMixture(n_init=5, ...)`` with seeds 0..5 on planted clusters, the pinwheel and
   moons toys and the digits (diagonal, K=10); prints ppgen − scikit-learn per seed (nats per
   example).
3. **Planted recovery.** Well-separated clusters (N=3000, D=5, K=4, seed 0, diagonal
   covariances): adjusted Rand index and the largest error of a component mean for EM, SVI
   (enumerated, marginal, enumerated with a normal posterior guide, MAP) and NUTS (2 chains,
   500 draws after 400 warm-up), both backends; for NUTS also divergences and the largest R-hat.
4. **Choosing K.** PSIS-LOO over K = 1..6 (SVI normal guide, Pyro) on data from K=3: ArviZ's
   comparison table from ``ppgen.compare``.

Usage::

    python benchmarks/gmm_quality.py [--skip-nuts]      # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

import ppgen
from ppgen import datasets, inference, models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from test_gmm import RECOVERY, _sklearn_start, planted  # noqa: E402  (the tests' own data)


def _mean_error(locs, means) -> float:
    rows, cols = linear_sum_assignment(((locs[:, None] - means[None]) ** 2).sum(-1))
    return float(np.abs(locs[rows] - means[cols]).max())


def same_start() -> None:
    print("1. EM from scikit-learn's starting parameters (N=3000, D=5, K=4)")
    x = planted(seed=1, spread=1.5, noise=1.0)[0]
    for covariance in ("full", "diag", "spherical", "tied"):
        start = _sklearn_start(x, 4, covariance)
        gm = GaussianMixture(4, covariance_type=covariance, weights_init=start["weights"],
                             means_init=start["locs"], precisions_init=start["precisions"], max_iter=300,
                             tol=1e-6).fit(x)
        for backend in ("pyro", "numpyro"):
            fit = ppgen.fit(models.GMM(5, 4, covariance), x,
                            inference.EM(max_iter=300, tol=1e-6, init_params=start), backend=backend)
            ours, theirs = fit.log_likelihood(x).mean(), gm.score(x)
            print(f"   {covariance:9s} {backend:8s} iterations {len(fit.history):3d} / sklearn {gm.n_iter_:3d}   "
                  f"log-lik {ours:.10f} / {theirs:.10f}   relative difference {abs(ours - theirs) / abs(theirs):.1e}")


def restarts() -> None:
    print("2. EM(n_init=5) - GaussianMixture(n_init=5), nats per example, seeds 0..5")
    digits = datasets.load("digits")
    sets = {"planted K=4 full": (planted(seed=2, spread=2.0, noise=1.0)[0], "full", 4),
            "pinwheel K=5 full": (datasets.load("pinwheel", n=2000, seed=0).train.astype(np.float64), "full", 5),
            "moons K=8 full": (datasets.load("moons", n=2000, seed=0).train.astype(np.float64), "full", 8),
            "digits K=10 diag": (digits.train.reshape(1000, -1).astype(np.float64), "diag", 10)}
    for name, (x, covariance, k) in sets.items():
        diffs = []
        for seed in range(6):
            gm = GaussianMixture(k, covariance_type=covariance, n_init=5, max_iter=500, tol=1e-4,
                                 random_state=seed).fit(x)
            fit = ppgen.fit(models.GMM(x.shape[1], k, covariance), x,
                            inference.EM(n_init=5, max_iter=500, tol=1e-4), backend="pyro", seed=seed)
            diffs.append(fit.log_likelihood(x).mean() - gm.score(x))
        print(f"   {name:18s} " + " ".join(f"{d:+.4f}" for d in diffs) + f"   mean {np.mean(diffs):+.4f}")


def recovery(skip_nuts: bool) -> None:
    print("3. Planted clusters (N=3000, D=5, K=4): adjusted Rand index, largest error of a mean")
    x, labels, means = planted()
    algorithms = {name: make for name, make in sorted(RECOVERY.items())}
    if not skip_nuts:
        algorithms["nuts"] = lambda: inference.NUTS(num_samples=500, num_warmup=400, num_chains=2)
    for name, make in algorithms.items():
        for backend in ("pyro", "numpyro"):
            start = time.perf_counter()
            fit = ppgen.fit(models.GMM(5, 4, "diag"), x, make(), backend=backend, seed=0 if name != "nuts" else 1)
            locs = fit.params["locs"] if fit.posterior is None else fit.posterior["locs"].mean((0, 1))
            line = (f"   {name:26s} {backend:8s} ARI {adjusted_rand_score(labels, fit.predict(x)):.4f}   "
                    f"mean error {_mean_error(locs, means):.3f}   {time.perf_counter() - start:5.1f} s")
            if fit.sample_stats is not None:
                table = ppgen.arviz.summary(fit.to_arviz(num_predictive=0), var_names=["weights", "locs", "scales"])
                line += (f"   divergences {int(fit.sample_stats['diverging'].sum())}   "
                         f"max R-hat {table['r_hat'].max():.3f}")
            print(line, flush=True)


def choose_k() -> None:
    print("4. PSIS-LOO over K = 1..6 on data from K = 3 (N=300, D=2; SVI normal guide, 200 draws)")
    x = planted(seed=4, n=300, d=2, k=3, spread=3.0, noise=0.6)[0]
    alg = inference.SVI(guide="normal", steps=600, lr=0.05, num_samples=200)
    fits = [ppgen.fit(models.GMM(2, k, "diag"), x, alg, backend="pyro", seed=0) for k in range(1, 7)]
    table = ppgen.compare(fits)
    print(table[["rank", "elpd", "se", "elpd_diff", "dse", "weight"]].to_string())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-nuts", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    same_start()
    restarts()
    recovery(args.skip_nuts)
    choose_k()


if __name__ == "__main__":
    main()
