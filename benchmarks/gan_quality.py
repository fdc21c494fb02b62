"""Sample quality of the adversarial families, over seeds (mean and worst).

- ``toys``: GANs on the ring of 8 Gaussians (radius 1, σ 0.02) and the grid of 25 Gaussians
  (σ 0.05, spacing 1), with WGAN-GP, the non-saturating and the minimax losses: modes covered
  and the fraction of 2 500 samples within 3σ of a mode (PacGAN's metrics; PacGAN reports
  7.9 modes / 95.6% and 24.8 / 93.6%).
- ``cgan``: a conditional GAN on the 8×8 digits (view "symmetric"): the shipped classifier's
  accuracy on the conditioning labels (100 samples per label) and the Fréchet distance of its
  features to the test images.
- ``aae``: an adversarial autoencoder (hinge game) and WAE-MMD (λ = 10) with a 2-D latent and
  a 10-component Gaussian-mixture prior on the digits: the energy distance between the codes of
  the test images (the aggregated posterior) and as many prior draws, with a picture of both.

Usage:
    python benchmarks/gan_quality.py                       # everything, 3 seeds
    python benchmarks/gan_quality.py --only toys --losses wgan-gp --seeds 0
    python benchmarks/gan_quality.py --only cgan,aae --out runs/gan_quality
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import ppgen
from ppgen import datasets, inference, metrics, models, plots

#: the toy settings. Every loss keeps its paper's k and Adam betas, with a learning rate of 1e-3
#: for both players annealed to 1e-4 (lr_decay=0.1): at the papers' rates (1e-4, 2e-4) these runs
#: had not converged (WGAN-GP on the grid: 29% high quality after 10 000 steps, against 88-94%
#: annealed from 1e-3, and 97% for the worst of those seeds after 20 000 steps). WGAN-GP uses
#: λ = 0.1, as the WGAN-GP authors' own toy experiments (λ = 10, the default for images, locks the
#: critic into the reversed sign on these unit-scale data).
ANNEALED = {"lr_generator": 1e-3, "lr_discriminator": 1e-3, "lr_decay": 0.1}
TOY = {"steps": {"ring": 10000, "grid": 20000}, "batch_size": 128, "hidden_dims": (128, 128, 128), "latent_dim": 2,
       "ema": 0.999,
       "losses": {"wgan-gp": {"gradient_penalty": 0.1, **ANNEALED}, "non-saturating": ANNEALED,
                  "minimax": ANNEALED}}
CGAN = {"epochs": 300, "batch_size": 64, "latent_dim": 32, "hidden_dims": (256, 256), "loss": "non-saturating",
        "ema": 0.999}
AAE = {"epochs": 300, "batch_size": 64, "hidden_dims": (256, 256), "loss": "hinge", "mmd_weight": 10.0}


def toy_run(name: str, loss: str, seed: int, out: Path, backend: str) -> dict:
    data = datasets.load(name, n=20000)
    spec = models.GAN(2, latent_dim=TOY["latent_dim"], hidden_dims=TOY["hidden_dims"], output="identity")
    alg = inference.Adversarial(loss=loss, steps=TOY["steps"][name], batch_size=TOY["batch_size"], ema=TOY["ema"],
                                **TOY["losses"][loss])
    start = time.perf_counter()
    fit = ppgen.fit(spec, data, alg, backend=backend, seed=seed)
    seconds = time.perf_counter() - start
    x = fit.sample(2500, seed=1000 + seed)
    cover = metrics.mode_coverage_for(x, data.meta)
    plots.scatter(x, out / f"{name}_{loss}_seed{seed}.png", reference=data.test,
                  title=f"{name}, {loss}, seed {seed}: {cover.covered}/{cover.num_modes} modes, "
                        f"{100 * cover.high_quality:.1f}% high quality")
    return {"modes": cover.covered, "num_modes": cover.num_modes, "high_quality": cover.high_quality,
            "seconds": seconds}


def cgan_run(seed: int, out: Path, backend: str) -> dict:
    data = datasets.load("digits", view="symmetric")
    spec = models.CGAN(data.data_dim, num_classes=10, latent_dim=CGAN["latent_dim"], hidden_dims=CGAN["hidden_dims"])
    alg = inference.Adversarial(loss=CGAN["loss"], epochs=CGAN["epochs"], batch_size=CGAN["batch_size"],
                                ema=CGAN["ema"])
    start = time.perf_counter()
    fit = ppgen.fit(spec, data, alg, backend=backend, seed=seed)
    seconds = time.perf_counter() - start
    labels = np.repeat(np.arange(10), 100)
    x = np.clip(fit.sample(1000, seed=1000 + seed, labels=labels), -1, 1)
    acc = metrics.conditional_accuracy(x, labels, scale="symmetric")
    frechet = metrics.digits_frechet_distance(x, data.test, scale="symmetric")
    plots.image_grid(x.reshape(10, 100, 8, 8)[:, :10].transpose(1, 0, 2, 3).reshape(100, 8, 8),
                     out / f"cgan_seed{seed}.png", title=f"conditional GAN, seed {seed}: accuracy {acc.overall:.3f}")
    return {"accuracy": acc.overall, "worst_label": float(np.nanmin(acc.per_class)), "frechet": frechet,
            "seconds": seconds}


def aae_run(seed: int, out: Path, backend: str, regularizer: str = "adversarial") -> dict:
    data = datasets.load("digits", view="categorical")
    spec = models.AAE(data.data_dim, latent_dim=2, hidden_dims=AAE["hidden_dims"], prior="mixture",
                      likelihood="categorical", num_levels=17, regularizer=regularizer,
                      regularization_weight=AAE["mmd_weight"] if regularizer == "mmd" else 1.0)
    loss = AAE["loss"] if regularizer == "adversarial" else None
    alg = inference.Adversarial(loss=loss, epochs=AAE["epochs"], batch_size=AAE["batch_size"])
    start = time.perf_counter()
    fit = ppgen.fit(spec, data, alg, backend=backend, seed=seed)
    seconds = time.perf_counter() - start
    codes = fit.model.encode(backend, fit.params, data.test)
    prior = spec.prior_sample(len(codes), seed=1000 + seed)
    distance = metrics.energy_distance(codes, prior)
    reference = metrics.energy_distance(spec.prior_sample(len(codes), seed=2000 + seed), prior)
    plots.aggregated_posterior(codes, spec.prior_sample(3000, seed), out / f"aae_{regularizer}_seed{seed}.png",
                               labels=data.labels.test,
                               title=f"AAE ({regularizer}), seed {seed}: energy distance {distance:.4f}")
    return {"energy_distance": distance, "prior_vs_prior": reference, "seconds": seconds,
            "reconstruction": fit.history[-1]["reconstruction"]}


def summary(values: list, worst: str) -> str:
    arr = np.asarray(values, dtype=float)
    pick = arr.min() if worst == "min" else arr.max()
    return f"{arr.mean():.4g} (worst {pick:.4g})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="toys,cgan,aae", help="comma-separated: toys, cgan, aae")
    parser.add_argument("--toys", default="ring,grid")
    parser.add_argument("--losses", default="wgan-gp,non-saturating,minimax")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--backend", default="numpyro", choices=["numpyro", "pyro"])
    parser.add_argument("--out", default="runs/gan_quality", help="pictures and results.json go here")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if "toys" in only:
        for name in args.toys.split(","):
            for loss in args.losses.split(","):
                runs = [toy_run(name, loss, s, out, args.backend) for s in seeds]
                results[f"{name}/{loss}"] = runs
                print(f"{name:5s} {loss:15s} modes {summary([r['modes'] for r in runs], 'min')} of "
                      f"{runs[0]['num_modes']}; high quality {summary([r['high_quality'] for r in runs], 'min')}; "
                      f"{np.mean([r['seconds'] for r in runs]):.0f} s per fit", flush=True)
    if "cgan" in only:
        runs = [cgan_run(s, out, args.backend) for s in seeds]
        results["cgan"] = runs
        print(f"cgan  accuracy {summary([r['accuracy'] for r in runs], 'min')}; worst label "
              f"{summary([r['worst_label'] for r in runs], 'min')}; "
              f"Fréchet {summary([r['frechet'] for r in runs], 'max')}"
              f"; {np.mean([r['seconds'] for r in runs]):.0f} s per fit", flush=True)
    if "aae" in only:
        for regularizer in ("adversarial", "mmd"):
            runs = [aae_run(s, out, args.backend, regularizer) for s in seeds]
            results[f"aae/{regularizer}"] = runs
            print(f"aae ({regularizer}) energy distance (test codes vs prior) "
                  f"{summary([r['energy_distance'] for r in runs], 'max')}; prior vs prior "
                  f"{summary([r['prior_vs_prior'] for r in runs], 'max')}; reconstruction "
                  f"{summary([r['reconstruction'] for r in runs], 'max')} nats; "
                  f"{np.mean([r['seconds'] for r in runs]):.0f} s per fit", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
