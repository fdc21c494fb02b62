"""Test negative log-likelihood of the VAE family on the digits, and CVAE sample quality.

The DESIGN.md split (train 1000 / val 350 / test 447), the 17-level categorical likelihood,
early stopping on the validation ELBO (state of the best epoch kept), and the test NLL in nats
per image by importance sampling with 1000 samples (``fit.log_likelihood(x, num_samples=1000)``).
Runs:

- VAE trained by the ELBO (``elbo="meanfield"``), Pyro and NumPyro, same hyperparameters;
- the same VAE trained by the IWAE bound with K = 8 (``elbo="iwae", num_particles=8``);
- the hierarchical VAE (two stochastic layers (16, 8), ``elbo="trace"``, hidden (512, 512),
  dropout 0.3);
- the CVAE (KL weight β = 2): the shipped classifier's accuracy on 100 samples per label,
  for mean images (z ~ p(z), the decoder's expected image given z and the label) and for
  pixel draws x ~ p(x | z, y), and the Fréchet distance of classifier features (samples vs
  test) next to train vs test.

Defaults: hidden (256, 256) ELU with dropout 0.2, latent 16, batch 64, Adam 1e-3, KL warm-up over
30 epochs, an EMA of the parameters (decay 0.999) for validation and evaluation,
patience 50 epochs.

    python benchmarks/vae_quality.py [--max-epochs 500] [--only vae,iwae,hvae,cvae] [--backends pyro,numpyro]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import ppgen
from ppgen import datasets, inference, metrics, models


def settings(args):
    common = dict(hidden_dims=args.hidden, activation=args.activation, dropout=args.dropout,
                  likelihood="categorical", num_levels=17)
    return {"vae": models.VAE(64, latent_dim=args.latent, **common),
            "iwae": models.VAE(64, latent_dim=args.latent, **common),
            "hvae": models.HVAE(64, latent_dims=args.hvae_latents,
                                **dict(common, hidden_dims=args.hvae_hidden, dropout=args.hvae_dropout)),
            "cvae": models.CVAE(64, latent_dim=args.latent, **common)}


def train(spec, data, elbo, backend, args, particles=1, beta=1.0):
    steps_per_epoch = math.ceil(len(data.train) / args.batch)
    alg = inference.SVI(elbo=elbo, epochs=args.max_epochs, batch_size=args.batch, lr=args.lr,
                        num_particles=particles, kl_warmup=args.warmup * steps_per_epoch, beta=beta, ema=args.ema)
    stop = ppgen.EarlyStopping(every=steps_per_epoch, patience=args.patience)
    t0 = time.perf_counter()
    fit = ppgen.fit(spec, data, alg, backend=backend, seed=args.seed, early_stopping=stop, progress=False)
    return fit, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-epochs", type=int, default=500)
    parser.add_argument("--patience", type=int, default=50, help="epochs without a better validation ELBO")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30, help="KL warm-up epochs (ELBO runs)")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout after every hidden layer")
    parser.add_argument("--ema", type=float, default=0.999, help="decay of the parameters' moving average")
    parser.add_argument("--hvae-hidden", type=lambda s: tuple(int(v) for v in s.split(",")), default=(512, 512))
    parser.add_argument("--hvae-dropout", type=float, default=0.3)
    parser.add_argument("--cvae-beta", type=float, default=2.0, help="weight of the CVAE's KL term (a β-VAE)")
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--hvae-latents", type=lambda s: tuple(int(v) for v in s.split(",")), default=(16, 8))
    parser.add_argument("--hidden", type=lambda s: tuple(int(v) for v in s.split(",")), default=(256, 256))
    parser.add_argument("--activation", default="elu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="vae,iwae,hvae,cvae")
    parser.add_argument("--backends", default="pyro,numpyro", help="backends of the plain VAE run")
    args = parser.parse_args(argv)
    data = datasets.load("digits", view="categorical")
    specs = settings(args)
    print(f"digits (categorical, 17 levels); hidden {args.hidden}, {args.activation}, dropout {args.dropout}, "
          f"latent {args.latent}, batch {args.batch}, lr {args.lr}, KL warm-up {args.warmup} epochs, EMA {args.ema}, "
          f"early stopping patience {args.patience} epochs", flush=True)
    rows = []
    for name in args.only.split(","):
        backends = args.backends.split(",") if name == "vae" else ["pyro"]
        for backend in backends:
            elbo, particles = {"vae": ("meanfield", 1), "iwae": ("iwae", 8), "hvae": ("trace", 1),
                               "cvae": ("meanfield", 1)}[name]
            beta = args.cvae_beta if name == "cvae" else 1.0
            fit, seconds = train(specs[name], data, elbo, backend, args, particles, beta)
            labels = data.labels.test if name == "cvae" else None
            nll = -fit.log_likelihood(data.test, num_samples=1000, labels=labels)
            epochs = fit.history[-1]["epoch"] + 1
            line = (f"{name:5s} {backend:8s} elbo={elbo:9s} K={particles}  test NLL {nll.mean():7.2f} "
                    f"± {nll.std(ddof=1) / math.sqrt(len(nll)):.2f}  ({epochs} epochs, {seconds:.0f} s)")
            if name in ("vae", "cvae"):
                per_label = 100
                sample_labels = np.repeat(np.arange(10), per_label)
                samples = fit.sample(1000, seed=1, labels=sample_labels if name == "cvae" else None)
                fd = metrics.digits_frechet_distance(samples, data.test)
                line += f"  Fréchet(samples, test) {fd:.2f}"
                if name == "cvae":
                    acc = metrics.conditional_accuracy(samples, sample_labels)
                    means = fit.sample(1000, seed=1, labels=sample_labels, mean=True)
                    acc_mean = metrics.conditional_accuracy(means, sample_labels)
                    line += (f"\n      beta={beta:g}; conditional accuracy of mean images {acc_mean.overall:.3f} "
                             f"(worst label {np.nanmin(acc_mean.per_class):.2f}), of pixel draws "
                             f"{acc.overall:.3f} (worst {np.nanmin(acc.per_class):.2f}); Fréchet(mean images, test) "
                             f"{metrics.digits_frechet_distance(means, data.test):.2f}")
            print(line, flush=True)
            rows.append(line)
    print(f"reference: Fréchet(train, test) {metrics.digits_frechet_distance(data.train, data.test):.2f}")


if __name__ == "__main__":
    main()
