"""GMM EM speed against scikit-learn's ``GaussianMixture`` (N=100 000, D=16, K=10).

Data: a planted mixture of K=10 Gaussians in D=16 (means ~ N(0, 1), random full covariances
with standard deviations in [0.5, 1.5]), numpy seed 0. For each covariance type (full, diag)
the script runs, in one process:

1. **Same start.** scikit-learn from ``weights_init``/``means_init``/``precisions_init`` and
   ppgen's ``inference.EM(init_params=...)`` from the same parameters, both with
   ``max_iter=100, tol=1e-3, reg_covar=1e-6`` (scikit-learn's defaults). Both then run the same
   E and M steps, so the iteration counts and final log-likelihoods must agree; the wall time is
   EM alone.
2. **Own start.** Each library's default initialisation (k-means), ``n_init=1``, same
   ``max_iter``/``tol``: what a user gets with defaults, initialisation included.

Each timing is the median of ``--repeats`` runs after one untimed warm-up (JAX compiles the EM
step on its first run; that time is printed separately). Ratios are scikit-learn time / ppgen
time (above 1: ppgen is faster). ppgen runs torch with one thread and XLA single-threaded
(``PPGEN_NUM_THREADS``, default 1); scikit-learn uses its BLAS thread pool as it comes.

Usage::

    python benchmarks/gmm.py [--repeats 3] [--n 100000] [--device cpu|cuda] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings

import numpy as np

import ppgen
from ppgen import inference, models

N, D, K = 100_000, 16, 10
MAX_ITER, TOL, REG = 100, 1e-3, 1e-6


def planted(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1.0, (K, D))   # overlapping clusters: EM needs tens of iterations
    tril = np.tril(rng.normal(0, 0.3, (K, D, D)), -1) + np.eye(D) * rng.uniform(0.5, 1.5, (K, 1, D))
    labels = rng.integers(0, K, n)
    return means[labels] + np.einsum("nde,ne->nd", tril[labels], rng.normal(size=(n, D)))


def start(x: np.ndarray, covariance: str, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    precisions = {"full": np.stack([np.eye(D)] * K), "diag": np.ones((K, D))}[covariance]
    return {"weights": np.full(K, 1.0 / K), "locs": x[rng.choice(len(x), K, replace=False)],
            "precisions": precisions}


def timed(fn, repeats: int):
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first, result


def run_sklearn(x, covariance, init=None):
    from sklearn.mixture import GaussianMixture

    options = dict(covariance_type=covariance, max_iter=MAX_ITER, tol=TOL, reg_covar=REG, random_state=0)
    if init is not None:
        options.update(weights_init=init["weights"], means_init=init["locs"], precisions_init=init["precisions"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(K, **options).fit(x)
    return gm


def run_ppgen(x, covariance, backend, device, init=None):
    em = inference.EM(max_iter=MAX_ITER, tol=TOL, reg_covar=REG, init_params=init or "kmeans")
    return ppgen.fit(models.GMM(D, K, covariance), x, em, backend=backend, device=device, seed=0, progress=False)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", nargs="+", default=["pyro", "numpyro"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    x = planted(args.n)
    rows, results = [], []
    print(f"GMM EM, N={args.n}, D={D}, K={K}, max_iter={MAX_ITER}, tol={TOL}; device {args.device}; "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}", flush=True)
    for covariance in ("full", "diag"):
        for mode in ("same start", "own start"):
            init = start(x, covariance) if mode == "same start" else None
            sk_time, _, gm = timed(lambda: run_sklearn(x, covariance, init), args.repeats)
            sk_ll = float(gm.score(x))
            for backend in args.backends:
                pp_time, first, fit = timed(lambda: run_ppgen(x, covariance, backend, args.device, init),
                                            args.repeats)
                pp_ll = float(fit.log_likelihood(x).mean())
                record = {"covariance": covariance, "mode": mode, "backend": backend,
                          "sklearn_seconds": sk_time, "ppgen_seconds": pp_time, "ppgen_first_seconds": first,
                          "speedup": sk_time / pp_time, "sklearn_iterations": int(gm.n_iter_),
                          "ppgen_iterations": len(fit.history), "sklearn_log_likelihood": sk_ll,
                          "ppgen_log_likelihood": pp_ll}
                results.append(record)
                rows.append([covariance, mode, backend, f"{sk_time:.3f}", f"{pp_time:.3f}", f"{first:.3f}",
                             f"{sk_time / pp_time:.2f}x", f"{gm.n_iter_}/{len(fit.history)}",
                             f"{sk_ll:.6f}", f"{pp_ll:.6f}"])
                print("  ".join(rows[-1]), flush=True)
    header = ["cov", "mode", "backend", "sklearn s", "ppgen s", "ppgen 1st s", "speedup", "iters sk/pp",
              "sklearn ll", "ppgen ll"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print()
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return {"results": results}


if __name__ == "__main__":
    main()
