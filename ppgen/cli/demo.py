"""``ppgen demo``: the main families end to end (PPCA by closed form and NUTS, a VAE, a DDPM,
a GAN on a 2-D toy and a conditional GAN on the digits), each with its run report."""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

from .arguments import formatter
from .report import format_number, format_table, inspect_fit, write_report

__all__ = ["cmd_demo"]

DEMO_LATENT_DIM = 8
DEMO_DRAWS = 300
DEMO_QUICK_DRAWS = 50
DEMO_VAE_EPOCHS = 300
DEMO_QUICK_VAE_EPOCHS = 3
DEMO_DDPM_STEPS = 4000
DEMO_QUICK_DDPM_STEPS = 30
DEMO_GAN_TOY_STEPS = 4000
#: λ of WGAN-GP on the unit-scale 2-D toys: the value of the WGAN-GP authors' own toy experiments
#: (λ = 10, the default, is for images; on the ring it locks the critic into the reversed sign)
TOY_GRADIENT_PENALTY = 0.1
#: the toys' learning rates: 1e-3 for both players annealed to 1e-4 (at the papers' 1e-4 the runs
#: are far from converged after thousands of steps; see benchmarks/gan_quality.py)
TOY_ANNEALED = {"lr_generator": 1e-3, "lr_discriminator": 1e-3, "lr_decay": 0.1}
#: the conditional GAN's discriminator wins until about epoch 150-200 (1000 images); 200 epochs give
#: 40% accuracy, 300 give 99%
DEMO_CGAN_EPOCHS = 300
DEMO_QUICK_GAN_STEPS = 20


class _Stages:
    """Prints one line when a stage starts and one when it ends, with elapsed seconds."""

    def __init__(self):
        self.origin = time.perf_counter()
        self.started = self.origin

    def _line(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.origin:6.1f} s] {text}", flush=True)

    def start(self, text: str) -> None:
        self.started = time.perf_counter()
        self._line(f"start: {text}")

    def end(self, text: str = "") -> float:
        took = time.perf_counter() - self.started
        self._line(f"done ({took:.1f} s){': ' + text if text else ''}")
        return took


def _truthy(value) -> bool:
    return str(value or "").strip().lower() not in ("", "0", "false", "no")


def _demo_vae(run_dir: Path, quick: bool, seed: int, stages) -> dict:
    """The demo's VAE stage: a VAE on the 17-level digits by SVI (Pyro backend), with early
    stopping on the validation ELBO; sample and reconstruction grids; test NLL by importance sampling."""
    import ppgen

    from .. import datasets
    from ..inference import SVI
    from ..models import VAE

    data = datasets.load("digits", view="categorical")
    spec = VAE(data.data_dim, latent_dim=16, hidden_dims=(256, 256), activation="elu", dropout=0.2,
               likelihood="categorical", num_levels=17)
    epochs, samples = (DEMO_QUICK_VAE_EPOCHS, 50) if quick else (DEMO_VAE_EPOCHS, 1000)
    steps = math.ceil(data.train.shape[0] / 64)
    svi = SVI(elbo="meanfield", epochs=epochs, batch_size=64, lr=1e-3, kl_warmup=30 * steps, ema=0.999)
    stages.start(f"fit {type(spec).__name__}(latent_dim=16, hidden (256, 256), dropout 0.2) to digits (categorical) "
                 f"by SVI(meanfield, KL warm-up, EMA of the weights), up to {epochs} epochs with early stopping, pyro")
    fit = ppgen.fit(spec, data, svi, backend="pyro", seed=seed, run_dir=run_dir, progress=False,
                    early_stopping=ppgen.EarlyStopping(every=steps, patience=50))
    seconds = stages.end(f"{fit.history[-1]['epoch'] + 1} epochs; run folder {run_dir}")
    stages.start(f"samples, reconstructions, traversals; test NLL by importance sampling ({samples} samples)")
    metrics, files = write_report(fit, data, run_dir, seconds, seed, splits=("val", "test"), num_samples=samples)
    stages.end(f"test NLL {format_number(-metrics['test']['log_likelihood'], 2)} nats per image")
    return {"run_dir": str(run_dir), "model": spec.to_config(), "inference": fit.inference.to_config(),
            "fit_seconds": seconds, "epochs": fit.history[-1]["epoch"] + 1, "eval_samples": samples,
            "test_log_likelihood": metrics["test"]["log_likelihood"],
            "test_log_likelihood_se": metrics["test"]["log_likelihood_se"],
            "val_log_likelihood": metrics["val"]["log_likelihood"], "files": [str(f) for f in files]}


def _demo_ddpm(run_dir: Path, quick: bool, seed: int, stages) -> dict:
    """The demo's DDPM stage: a DDPM (T = 1000, MLP with time embedding, discretised 17-level
    decoder) on the digits by the simple loss (pyro); sample grid and one reverse chain; the test
    variational bound; the Fréchet distance of 1000 DDIM-50 samples to the test set."""
    import ppgen

    from .. import datasets
    from .. import metrics as ppmetrics
    from ..inference import SVI
    from ..models import DDPM

    data = datasets.load("digits", view="categorical")
    spec = DDPM(data.data_dim, likelihood="discretized_gaussian", num_levels=17)
    steps = DEMO_QUICK_DDPM_STEPS if quick else DEMO_DDPM_STEPS
    svi = SVI(elbo="simple", steps=steps, batch_size=256, lr=2e-3, lr_decay=0.05, ema=0.999)
    stages.start(f"fit DDPM(T={spec.timesteps}, MLP {spec.hidden_dims}) to digits (17 levels) by the simple loss, "
                 f"{steps} steps, pyro")
    fit = ppgen.fit(spec, data, svi, backend="pyro", seed=seed, run_dir=run_dir, progress=False)
    seconds = stages.end(f"run folder {run_dir}")
    stages.start("samples (ancestral, 1000 steps), one reverse chain, test variational bound")
    metrics, files = write_report(fit, data, run_dir, seconds, seed, splits=("test",))
    stages.end(f"test bound {format_number(-metrics['test']['log_likelihood'], 2)} nats per image")
    stages.start("Fréchet distance of 1000 DDIM-50 samples to the test images (shipped digits classifier)")
    frechet = ppmetrics.digits_frechet_distance(fit.sample(1000, seed=seed, sampler="ddim", steps=50), data.test)
    reference = ppmetrics.digits_frechet_distance(data.train, data.test)
    stages.end(f"{format_number(frechet, 2)} (train vs test: {format_number(reference, 2)})")
    return {"run_dir": str(run_dir), "model": spec.to_config(), "inference": fit.inference.to_config(),
            "fit_seconds": seconds, "steps": steps, "test_log_likelihood": metrics["test"]["log_likelihood"],
            "test_bits_per_dim": metrics["test"]["bits_per_dim"], "frechet_ddim50": frechet,
            "frechet_train_test": reference, "files": [str(f) for f in files]}


def _demo_gan(out: Path, quick: bool, seed: int, stages) -> dict:
    """The demo's GAN stage: WGAN-GP on the ring of 8 Gaussians (mode coverage and high-quality
    fraction of 2500 samples), then a conditional GAN on the digits (the shipped classifier's
    accuracy on the conditioning labels, Fréchet distance). The ring runs on the NumPyro backend (one
    compiled step: 37 s against 89 s in PyTorch here), the conditional GAN on the Pyro backend
    (28 s; the same in JAX, whose compilation eats its gain on a run this short)."""
    import ppgen

    from .. import datasets
    from .. import metrics as ppmetrics
    from ..inference import Adversarial
    from ..models import CGAN, GAN

    toy = datasets.load("ring", n=20000)
    spec = GAN(2, latent_dim=2, hidden_dims=(128, 128, 128), output="identity")
    steps = DEMO_QUICK_GAN_STEPS if quick else DEMO_GAN_TOY_STEPS
    alg = Adversarial(loss="wgan-gp", gradient_penalty=TOY_GRADIENT_PENALTY, steps=steps, batch_size=128,
                      ema=0.999, **TOY_ANNEALED)
    stages.start(f"fit GAN (MLP 3x128) to the ring of 8 Gaussians by WGAN-GP (k=5, λ={TOY_GRADIENT_PENALTY}, "
                 f"lr 1e-3 annealed to 1e-4), {steps} steps, numpyro")
    fit = ppgen.fit(spec, toy, alg, backend="numpyro", seed=seed, run_dir=out / "gan_ring", progress=False)
    seconds = stages.end(f"run folder {out / 'gan_ring'}")
    metrics, files = write_report(fit, toy, out / "gan_ring", seconds, seed, splits=("test",))
    ring = {"run_dir": str(out / "gan_ring"), "model": spec.to_config(), "inference": fit.inference.to_config(),
            "fit_seconds": seconds, **{k: metrics["test"][k] for k in ("modes_covered", "num_modes", "high_quality",
                                                                         "energy_distance")},
            "files": [str(f) for f in files]}
    print(f"  {ring['modes_covered']}/{ring['num_modes']} modes covered, "
          f"{100 * ring['high_quality']:.1f}% of 2500 samples within 3σ of a mode", flush=True)

    digits = datasets.load("digits", view="symmetric")
    cspec = CGAN(digits.data_dim, num_classes=10, latent_dim=32, hidden_dims=(256, 256))
    epochs = 1 if quick else DEMO_CGAN_EPOCHS
    calg = Adversarial(loss="non-saturating", epochs=epochs, batch_size=64, ema=0.999)
    stages.start(f"fit a conditional GAN (MLP 2x256) to digits (view 'symmetric') by the non-saturating loss, "
                 f"{epochs} epochs, pyro")
    cfit = ppgen.fit(cspec, digits, calg, backend="pyro", seed=seed, run_dir=out / "cgan_digits", progress=False)
    cseconds = stages.end(f"run folder {out / 'cgan_digits'}")
    stages.start("samples per label; classifier accuracy on the conditioning labels and Fréchet distance")
    labels = np.repeat(np.arange(10), 100)
    samples = np.clip(cfit.sample(1000, seed=seed, labels=labels), -1, 1)
    accuracy = ppmetrics.conditional_accuracy(samples, labels, scale="symmetric")
    frechet = ppmetrics.digits_frechet_distance(samples, digits.test, scale="symmetric")
    cmetrics, cfiles = write_report(cfit, digits, out / "cgan_digits", cseconds, seed, splits=("test",))
    stages.end(f"accuracy {accuracy.overall:.3f} (worst label {np.nanmin(accuracy.per_class):.2f}), "
               f"Fréchet {format_number(frechet, 2)}")
    cgan = {"run_dir": str(out / "cgan_digits"), "model": cspec.to_config(), "inference": cfit.inference.to_config(),
            "fit_seconds": cseconds, "conditional_accuracy": accuracy.overall,
            "worst_label_accuracy": float(np.nanmin(accuracy.per_class)), "frechet": frechet,
            "files": [str(f) for f in cfiles]}
    return {"gan_ring": ring, "cgan_digits": cgan}


def cmd_demo(argv: list) -> int:
    """``ppgen demo``: PPCA (closed form, NUTS), a VAE, a DDPM and GANs end to end, with a report."""
    import ppgen

    from .. import datasets
    from ..checkpoint import write_json
    from ..inference import NUTS, ClosedForm
    from ..models import PPCA

    parser = argparse.ArgumentParser(
        prog="ppgen demo", formatter_class=formatter,
        description=f"Fit PPCA (latent_dim={DEMO_LATENT_DIM}) to the digits (view 'unit') by closed-form "
                    f"maximum likelihood and by NUTS ({DEMO_DRAWS} warm-up and {DEMO_DRAWS} draws, 2 chains), "
                    "both with numpyro; then a VAE on the 17-level digits by SVI (pyro, early stopping on "
                    "the validation ELBO) with sample, reconstruction and traversal grids; then a DDPM on the "
                    "digits (pyro) with samples, a reverse chain and its test bound; then a WGAN-GP on "
                    "the ring of 8 Gaussians and a conditional GAN on the digits (pyro). Writes the run "
                    "folders with samples, metrics and, for NUTS, ArviZ plots; prints a comparison and "
                    "writes OUT/report.json.")
    parser.add_argument("--out", metavar="DIR", default="runs/demo", help="(default: runs/demo)")
    parser.add_argument("--quick", action="store_true",
                        help=f"NUTS with {DEMO_QUICK_DRAWS}/{DEMO_QUICK_DRAWS} draws (also: env PPGEN_QUICK=1)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    args = parser.parse_args(argv)
    quick = args.quick or _truthy(os.environ.get("PPGEN_QUICK"))
    draws = DEMO_QUICK_DRAWS if quick else DEMO_DRAWS
    out = Path(args.out)
    stages = _Stages()
    print(f"ppgen demo: PPCA on the digits, closed form vs NUTS{' (quick)' if quick else ''}; output in {out}",
          flush=True)

    stages.start("load digits (view 'unit')")
    data = datasets.load("digits", view="unit")
    stages.end(f"{data.train.shape[0]} train, {data.val.shape[0]} val, {data.test.shape[0]} test images "
               f"of {data.shape[0]}x{data.shape[1]}")
    spec = PPCA(data_dim=data.data_dim, latent_dim=DEMO_LATENT_DIM)
    plans = [("closed_form", ClosedForm()),
             ("nuts", NUTS(num_samples=draws, num_warmup=draws, num_chains=2))]
    report: dict = {"model": spec.to_config(), "backend": "numpyro", "seed": args.seed, "quick": quick,
                    "data": {"name": "digits", "view": "unit", "train": int(data.train.shape[0]),
                             "val": int(data.val.shape[0]), "test": int(data.test.shape[0])},
                    "runs": {}}
    for key, alg in plans:
        run_dir = out / key
        what = alg.title if key == "closed_form" else (f"NUTS ({alg.num_warmup} warm-up + {alg.num_samples} "
                                                       f"draws x {alg.num_chains} chains)")
        stages.start(f"fit PPCA(latent_dim={spec.latent_dim}) by {what}, numpyro")
        fit = ppgen.fit(spec, data, alg, backend="numpyro", seed=args.seed, run_dir=run_dir, progress=False)
        seconds = stages.end(f"run folder {run_dir}")
        stages.start("samples.png and metrics.json")
        metrics, files = write_report(fit, data, run_dir, seconds, args.seed, splits=("val", "test"))
        stages.end(f"test log-likelihood {format_number(metrics['test']['log_likelihood'])} nats per example")
        entry = {"run_dir": str(run_dir), "inference": alg.to_config(), "fit_seconds": seconds,
                 "test_log_likelihood": metrics["test"]["log_likelihood"],
                 "test_log_likelihood_se": metrics["test"]["log_likelihood_se"],
                 "val_log_likelihood": metrics["val"]["log_likelihood"],
                 "test_bits_per_dim": metrics["test"]["bits_per_dim"],
                 "files": [str(f) for f in files]}
        if fit.sample_stats is not None:
            entry["divergences"] = int(np.sum(fit.sample_stats["diverging"]))
            stages.start("ArviZ summary and trace/posterior/pair plots of W_diag, sigma")
            table, paths, _ = inspect_fit(fit, None, run_dir / "plots", ["W_diag", "sigma"], num_predictive=20)
            entry["max_r_hat"] = float(table["r_hat"].max()) if "r_hat" in table else None
            entry["min_ess_bulk"] = float(table["ess_bulk"].min()) if "ess_bulk" in table else None
            entry["files"] += [str(p) for p in paths]
            stages.end(f"R-hat at most {format_number(entry['max_r_hat'], 3)}, bulk ESS at least "
                       f"{format_number(entry['min_ess_bulk'], 0)}; plots in {run_dir / 'plots'}")
            print(table.to_string(), flush=True)
        report["runs"][key] = entry
    report["runs"]["vae"] = _demo_vae(out / "vae", quick, args.seed, stages)
    report["runs"]["ddpm"] = _demo_ddpm(out / "ddpm", quick, args.seed, stages)
    report["runs"].update(_demo_gan(out, quick, args.seed, stages))
    report["total_seconds"] = time.perf_counter() - stages.origin
    write_json(out / "report.json", report)

    rows = []
    for key, entry in report["runs"].items():
        if key in ("vae", "ddpm", "gan_ring", "cgan_digits"):
            continue
        rows.append([key, format_number(entry["test_log_likelihood"], 3),
                     format_number(entry["test_log_likelihood_se"], 3),
                     format_number(entry["val_log_likelihood"], 3), f"{entry['fit_seconds']:.1f}",
                     str(entry.get("divergences", "-"))])
    print()
    print("PPCA(latent_dim=8) on digits, log-likelihood in nats per example (higher is better):")
    print(format_table(rows, ["method", "test", "+/- se", "val", "fit seconds", "divergences"]))
    vae = report["runs"]["vae"]
    print(f"\nVAE on digits (17-level categorical): test NLL {format_number(-vae['test_log_likelihood'], 2)} nats "
          f"per image (importance sampling, {vae['eval_samples']} samples), {vae['epochs']} epochs in "
          f"{vae['fit_seconds']:.1f} s; "
          f"grids in {vae['run_dir']}")
    ddpm = report["runs"]["ddpm"]
    print(f"DDPM on digits (discretised 17 levels): test bound {format_number(-ddpm['test_log_likelihood'], 2)} nats "
          f"per image ({format_number(ddpm['test_bits_per_dim'], 3)} bits/dim), Fréchet(DDIM-50 samples, test) "
          f"{format_number(ddpm['frechet_ddim50'], 2)} (train vs test {format_number(ddpm['frechet_train_test'], 2)}), "
          f"{ddpm['steps']} steps in {ddpm['fit_seconds']:.1f} s; samples and chain in {ddpm['run_dir']}")
    ring, cgan = report["runs"]["gan_ring"], report["runs"]["cgan_digits"]
    print(f"GAN on the ring of 8 Gaussians (WGAN-GP): {ring['modes_covered']}/{ring['num_modes']} modes, "
          f"{100 * ring['high_quality']:.1f}% high-quality samples; conditional GAN on digits: "
          f"{100 * cgan['conditional_accuracy']:.1f}% of samples classified as their label (worst label "
          f"{100 * cgan['worst_label_accuracy']:.0f}%), Fréchet {format_number(cgan['frechet'], 2)}")
    print(f"\nwrote {out / 'report.json'} (total {report['total_seconds']:.1f} s)")
    return 0
