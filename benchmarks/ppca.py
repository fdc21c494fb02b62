"""PPCA speed and quality: ppgen's closed form against scikit-learn, and NUTS in both backends.

Part A fits PPCA to the digits (``unit`` view, latent_dim 8) with ``inference.ClosedForm`` in
each backend and with scikit-learn's ``PCA(n_components=8)``, whose ``score_samples`` is the
same PPCA log-likelihood (Tipping & Bishop 1999). It reports the median wall time of
fit + test scoring over ``--repeats`` runs (after one untimed warm-up run, so JAX compilation
is excluded), their ratio, and the mean train/test log-likelihood of each. scikit-learn is timed
twice: with its BLAS thread pool as it comes, and limited to one thread (threadpoolctl), the
budget ppgen gives torch by default; on a small or busy machine the difference is large. scikit-learn
estimates the covariance with 1/(N-1) instead of the maximum-likelihood 1/N, so its model
covariance is exactly N/(N-1) times ppgen's and its log-likelihoods differ slightly; the script
checks that this factor accounts for the whole difference.

Part B runs NUTS on synthetic data (N=500, D=10, K=3; W ~ N(0, 0.3^2), mu ~ N(0, 1),
sigma = 0.3, numpy seed 0) with 2 chains of 1000 draws after 1000 warm-up steps in each
backend (``--quick``: 300/300 for Pyro), and reports the wall time of ``ppgen.fit`` and the
bulk effective sample size per second (min and median over the scalar components of the
sampled sites), computed by ArviZ through ``ppgen.arviz.summary``.

Usage::

    python benchmarks/ppca.py [--quick] [--repeats 7] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings

import numpy as np

import ppgen
import ppgen.arviz
from ppgen import datasets, inference, models

BACKENDS = ("numpyro", "pyro")
SAMPLED_SITES = ["W_diag", "W_lower", "mu", "sigma"]


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: imports, JIT compilation, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _gaussian_log_likelihood(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x; mean, cov) per row, in float64 with a Cholesky factor (an independent check)."""
    x = np.asarray(x, dtype=np.float64)
    chol = np.linalg.cholesky(cov)
    solved = np.linalg.solve(chol, (x - mean).T)
    logdet = 2 * np.log(np.diag(chol)).sum()
    return -0.5 * (x.shape[1] * math.log(2 * math.pi) + logdet + (solved**2).sum(0))


def closed_form_vs_sklearn(repeats: int) -> dict:
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    data = datasets.load("digits", view="unit")
    spec = models.PPCA(data_dim=64, latent_dim=8)
    train, test = data.flat("train"), data.flat("test")
    train64, test64 = train.astype(np.float64), test.astype(np.float64)
    num = train.shape[0]

    def run_sklearn():
        pca = PCA(n_components=8).fit(train64)
        return pca, pca.score_samples(test64)

    pca, _ = run_sklearn()
    sk_seconds = _median_seconds(run_sklearn, repeats)
    with threadpool_limits(1):  # the same thread budget as ppgen's torch default
        sk_seconds_1 = _median_seconds(run_sklearn, repeats)
    sk_train, sk_test = float(pca.score_samples(train64).mean()), float(pca.score_samples(test64).mean())
    out = {"sklearn": {"seconds": sk_seconds, "seconds_1_blas_thread": sk_seconds_1,
                       "train_log_likelihood": sk_train, "test_log_likelihood": sk_test}}

    for backend in BACKENDS:
        def run_ppgen():
            fit = ppgen.fit(spec, data, inference.ClosedForm(), backend=backend, seed=0)
            return fit, fit.log_likelihood(test)

        start = time.perf_counter()
        fit, _ = run_ppgen()
        first = time.perf_counter() - start
        seconds = _median_seconds(run_ppgen, repeats)
        train_ll, test_ll = float(fit.log_likelihood(train).mean()), float(fit.log_likelihood(test).mean())
        W, mu, sigma = (np.asarray(fit.params[k], dtype=np.float64) for k in ("W", "mu", "sigma"))
        cov = W @ W.T + sigma**2 * np.eye(64)
        # scikit-learn's model covariance is the ML one times N/(N-1); check, then score with it.
        rescaled = cov * num / (num - 1)
        cov_gap = float(np.abs(pca.get_covariance() - rescaled).max())
        rescaled_test = float(_gaussian_log_likelihood(test, mu, rescaled).mean())
        out[backend] = {
            "seconds": seconds, "first_call_seconds": first, "ratio_to_sklearn": seconds / sk_seconds,
            "ratio_to_sklearn_1_blas_thread": seconds / sk_seconds_1,
            "train_log_likelihood": train_ll, "test_log_likelihood": test_ll,
            "test_minus_sklearn": test_ll - sk_test, "train_minus_sklearn": train_ll - sk_train,
            "max_abs_cov_gap_after_n_minus_1_rescaling": cov_gap,
            "rescaled_test_minus_sklearn": rescaled_test - sk_test,
        }
    return out


def synthetic(num: int = 500, dim: int = 10, latent: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 0.3, (dim, latent))
    mu = rng.normal(0.0, 1.0, dim)
    z = rng.normal(size=(num, latent))
    return (z @ W.T + mu + 0.3 * rng.normal(size=(num, dim))).astype(np.float32)


def nuts(quick: bool) -> dict:
    x = synthetic()
    spec = models.PPCA(data_dim=10, latent_dim=3)
    out = {}
    for backend in BACKENDS:
        draws = 300 if (quick and backend == "pyro") else 1000
        algorithm = inference.NUTS(num_samples=draws, num_warmup=draws, num_chains=2)
        start = time.perf_counter()
        fit = ppgen.fit(spec, x, algorithm, backend=backend, seed=0)
        seconds = time.perf_counter() - start
        table = ppgen.arviz.summary(fit.to_arviz(), var_names=SAMPLED_SITES)
        ess = table["ess_bulk"].to_numpy(dtype=float)
        out[backend] = {
            "num_samples": draws, "num_warmup": draws, "num_chains": 2,
            "seconds": seconds, "sampler_seconds": float(fit.history[-1]["seconds"]),
            "num_parameters": int(len(ess)),
            "ess_bulk_min": float(ess.min()), "ess_bulk_median": float(np.median(ess)),
            "ess_bulk_per_second_min": float(ess.min() / seconds),
            "ess_bulk_per_second_median": float(np.median(ess) / seconds),
            "r_hat_max": float(table["r_hat"].max()),
            "divergences": int(np.sum(fit.sample_stats["diverging"])),
            "posterior_mean": {name: np.asarray(fit.posterior[name]).mean(axis=(0, 1)).tolist()
                               for name in SAMPLED_SITES},
            "posterior_sd": {name: np.asarray(fit.posterior[name]).std(axis=(0, 1)).tolist()
                             for name in SAMPLED_SITES},
        }
    # The two samplers target the same posterior: their means should agree within Monte Carlo error.
    gaps = []
    for name in SAMPLED_SITES:
        a, b = (np.asarray(out[k]["posterior_mean"][name]) for k in BACKENDS)
        sd = np.asarray(out["numpyro"]["posterior_sd"][name])
        gaps.append(np.max(np.abs(a - b) / sd))
    out["max_mean_gap_in_posterior_sd"] = float(max(gaps))
    return out


def print_report(cf: dict, mc: dict, args) -> None:
    line = "-" * 96
    print(line)
    print("A. Closed-form PPCA on digits (unit view, K=8): fit + score the test set; median of "
          f"{args.repeats} runs")
    print(line)
    print(f"{'':16s} {'seconds':>9s} {'x sklearn':>10s} {'x sk 1thr':>10s} {'1st call s':>11s} {'train ll':>9s} "
          f"{'test ll':>9s} {'test - sklearn':>15s}")
    sk = cf["sklearn"]
    print(f"{'sklearn':16s} {sk['seconds']:9.4f} {1.0:10.2f} {sk['seconds'] / sk['seconds_1_blas_thread']:10.2f} "
          f"{'':>11s} {sk['train_log_likelihood']:9.4f} {sk['test_log_likelihood']:9.4f} {'':>15s}")
    print(f"{'sklearn 1 thread':16s} {sk['seconds_1_blas_thread']:9.4f} {sk['seconds_1_blas_thread'] / sk['seconds']:10.2f} "
          f"{1.0:10.2f} {'':>11s} {'(same)':>9s} {'(same)':>9s} {'':>15s}")
    for backend in BACKENDS:
        r = cf[backend]
        print(f"{'ppgen ' + backend:16s} {r['seconds']:9.4f} {r['ratio_to_sklearn']:10.2f} "
              f"{r['ratio_to_sklearn_1_blas_thread']:10.2f} {r['first_call_seconds']:11.2f} "
              f"{r['train_log_likelihood']:9.4f} {r['test_log_likelihood']:9.4f} {r['test_minus_sklearn']:+15.5f}")
    for backend in BACKENDS:
        r = cf[backend]
        print(f"  {backend}: sklearn's covariance = ppgen's x N/(N-1) up to {r['max_abs_cov_gap_after_n_minus_1_rescaling']:.1e}; "
              f"scored with that covariance, test ll - sklearn = {r['rescaled_test_minus_sklearn']:+.1e}")
    print(line)
    print("B. NUTS on synthetic PPCA data (N=500, D=10, K=3), 2 chains; wall time of ppgen.fit "
          "(compilation included)")
    print(line)
    print(f"{'':10s} {'draws/warm':>11s} {'seconds':>9s} {'sampler s':>10s} {'params':>7s} {'ESS min':>8s} "
          f"{'ESS med':>8s} {'ESS/s min':>10s} {'ESS/s med':>10s} {'R-hat max':>10s} {'div':>4s}")
    for backend in BACKENDS:
        r = mc[backend]
        print(f"{backend:10s} {r['num_samples']:>5d}/{r['num_warmup']:<5d} {r['seconds']:9.1f} "
              f"{r['sampler_seconds']:10.1f} {r['num_parameters']:7d} {r['ess_bulk_min']:8.0f} "
              f"{r['ess_bulk_median']:8.0f} {r['ess_bulk_per_second_min']:10.1f} "
              f"{r['ess_bulk_per_second_median']:10.1f} {r['r_hat_max']:10.3f} {r['divergences']:4d}")
    ratio = mc["numpyro"]["ess_bulk_per_second_median"] / mc["pyro"]["ess_bulk_per_second_median"]
    print(f"numpyro / pyro median ESS per second: {ratio:.1f}x; largest gap between the backends' "
          f"posterior means: {mc['max_mean_gap_in_posterior_sd']:.2f} posterior sd")
    print(line)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Pyro NUTS with 300 draws / 300 warm-up")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of the closed-form fits")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)

    import torch

    import os

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"ppgen {ppgen.__version__}, python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {usable} usable by this process", flush=True)
    cf = closed_form_vs_sklearn(args.repeats)
    mc = nuts(args.quick)
    print(f"torch intra-op threads during the run: {torch.get_num_threads()} (PPGEN_NUM_THREADS, default 1)")
    print_report(cf, mc, args)
    if args.json:
        import jax
        import numpyro
        import pyro
        import sklearn

        record = {"closed_form": cf, "nuts": mc, "quick": args.quick, "repeats": args.repeats,
                  "versions": {"ppgen": ppgen.__version__, "torch": torch.__version__, "pyro": pyro.__version__,
                               "jax": jax.__version__, "numpyro": numpyro.__version__,
                               "sklearn": sklearn.__version__, "python": platform.python_version()},
                  "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "usable_cpus": usable}
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
