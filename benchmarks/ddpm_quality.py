"""Sample quality and test bound of the DDPM on the toys and the digits.

- Ring of 8 Gaussians (radius 1, σ 0.02): mode coverage and the high-quality fraction (within
  3σ of a mode) of 2000 samples, ancestral (DDPM) and DDIM-50, both backends.
- Swiss roll: the energy distance (V-statistic) of 2000 samples to 2000 held-out points (a
  fresh draw of the toy, seed 1), next to the energy distance between two held-out sets of 2000.
- Digits (17 levels, the DESIGN split, a discretised Gaussian L_0): the test variational bound
  (nats per image, all T terms with exact KLs) and bits per dimension, and the Fréchet distance
  of the shipped classifier's features between 1000 samples (DDPM and DDIM-50) and the test
  set, next to the distance between train and test.

Defaults (``models.DDPM(D)``: T = 1000, linear schedule, ε-prediction, fixed-small variance,
an MLP 3×256 with a 64-wide sinusoidal time embedding): the simple loss, Adam with the learning
rate decaying exponentially from 2e-3 to 1e-4, batch 256, an EMA of the weights (0.999) for
sampling and scoring.

    python benchmarks/ddpm_quality.py [--only ring,swiss_roll,digits] [--backends pyro,numpyro]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ppgen
from ppgen import datasets, inference, metrics, models


def train(spec, data, backend, args, steps):
    alg = inference.SVI(elbo=args.loss, steps=steps, batch_size=args.batch, lr=args.lr, lr_decay=args.lr_decay,
                        ema=args.ema)
    t0 = time.perf_counter()
    fit = ppgen.fit(spec, data, alg, backend=backend, seed=args.seed, progress=False)
    return fit, time.perf_counter() - t0


def ring(args, backend):
    data = datasets.load("ring")
    fit, seconds = train(models.DDPM(2), data, backend, args, args.toy_steps)
    for sampler, steps in (("ddpm", None), ("ddim", 50)):
        samples = fit.sample(2000, seed=1, sampler=sampler, steps=steps)
        c = metrics.mode_coverage_for(samples, data.meta)
        print(f"ring        {backend:8s} {sampler}{steps or '':<3}  modes {c.covered}/{c.num_modes}  high quality "
              f"{c.high_quality:.3f}  ({args.toy_steps} steps, {seconds:.0f} s)", flush=True)


def swiss_roll(args, backend):
    data = datasets.load("swiss_roll")
    fit, seconds = train(models.DDPM(2), data, backend, args, args.toy_steps)
    held_out = datasets.load("swiss_roll", seed=1, n=5000, val_fraction=0.0, test_fraction=0.0).train[:4000]
    # the V-statistic (plug-in) form: positive, with the finite-sample floor that two held-out
    # sets of 2000 show; the unbiased U-statistic of both is ~0 and its ratio is noise
    reference = metrics.energy_distance(held_out[:2000], held_out[2000:], unbiased=False)
    for sampler, steps in (("ddpm", None), ("ddim", 50)):
        samples = fit.sample(2000, seed=1, sampler=sampler, steps=steps)
        value = metrics.energy_distance(samples, held_out[:2000], unbiased=False)
        unbiased = metrics.energy_distance(samples, held_out[:2000])
        print(f"swiss_roll  {backend:8s} {sampler}{steps or '':<3}  energy distance {value:.5f}  (held-out vs "
              f"held-out {reference:.5f}; ratio {value / reference:.2f}; unbiased form {unbiased:.5f}; "
              f"{seconds:.0f} s)", flush=True)


def digits(args, backend):
    data = datasets.load("digits", view="categorical")
    spec = models.DDPM(64, likelihood="discretized_gaussian", num_levels=17)
    fit, seconds = train(spec, data, backend, args, args.digits_steps)
    bound = fit.log_likelihood(data.test)
    bpd = fit.bits_per_dim(data.test)
    print(f"digits      {backend:8s} test bound {-bound.mean():.2f} ± {bound.std(ddof=1) / np.sqrt(len(bound)):.2f} "
          f"nats per image, {bpd.mean():.3f} bits/dim  ({args.digits_steps} steps, {seconds:.0f} s)", flush=True)
    for sampler, steps in (("ddpm", None), ("ddim", 50)):
        samples = fit.sample(1000, seed=1, sampler=sampler, steps=steps)
        fd = metrics.digits_frechet_distance(samples, data.test)
        print(f"digits      {backend:8s} {sampler}{steps or '':<3}  Fréchet(samples, test) {fd:.2f}", flush=True)
    print(f"digits      reference Fréchet(train, test) {metrics.digits_frechet_distance(data.train, data.test):.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="ring,swiss_roll,digits")
    parser.add_argument("--backends", default="pyro,numpyro", help="backends of the ring runs (others: the first)")
    parser.add_argument("--loss", default="simple", choices=["simple", "hybrid", "vlb"])
    parser.add_argument("--toy-steps", type=int, default=15000)
    parser.add_argument("--digits-steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--lr-decay", type=float, default=0.05, help="final lr = lr * lr_decay")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    for name in args.only.split(","):
        for backend in (backends if name == "ring" else backends[:1]):
            {"ring": ring, "swiss_roll": swiss_roll, "digits": digits}[name](args, backend)


if __name__ == "__main__":
    main()
