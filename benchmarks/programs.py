"""A person's own VAE program, and the built-in VAE with a person's own networks, against the
built-in VAE of the same sizes: test NLL on the digits.

The programs are ``ppgen.examples.pyro_vae`` (``pyro.module`` with ``torch.nn`` networks) and
``ppgen.examples.numpyro_vae`` (``eqx_module`` with Equinox MLPs), the built-in one
``models.VAE(64, latent_dim=L, hidden_dims=(H,), likelihood="bernoulli")``; all four (two
backends × program or family) train with the same SVI settings on the binarised digits
(``view="binary"``). The third model in each backend is the built-in family with networks of
one's own, ``models.VAE(..., encoder=, decoder=)`` with ``ppgen.examples.torch_vae_networks`` (a
``torch.nn.Sequential`` pair) in Pyro and ``equinox_vae_networks`` (``eqx.nn.MLP``) in NumPyro.
Each test NLL is ``-fit.log_likelihood(test, num_samples=1000)``
averaged over the test rows (importance sampling with the encoder as proposal). The issue's goals:
each program within 3 nats, and the family with one's own networks within 2 nats, of the built-in
VAE in its backend.

    python benchmarks/programs.py [--epochs 200] [--latent 8] [--hidden 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import numpy as np  # noqa: E402

import ppgen  # noqa: E402
from ppgen import datasets, examples, inference, models  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--samples", type=int, default=1000, help="importance samples per test row")
    parser.add_argument("--only", choices=("family", "program", "networks"), nargs="*", default=None,
                        help="fit only these models (default: all three)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    data = datasets.load("digits", view="binary")
    svi = inference.SVI(elbo="trace", epochs=args.epochs, batch_size=64, lr=1e-3)
    builds = {
        "family": lambda backend: models.VAE(64, latent_dim=args.latent, hidden_dims=(args.hidden,),
                                             likelihood="bernoulli"),
        "program": lambda backend: (examples.pyro_vae if backend == "pyro" else examples.numpyro_vae)(
            latent_dim=args.latent, hidden_dim=args.hidden),
        "networks": lambda backend: models.VAE(64, latent_dim=args.latent, likelihood="bernoulli", **dict(zip(
            ("encoder", "decoder"), (examples.torch_vae_networks if backend == "pyro" else examples.equinox_vae_networks)(
                latent_dim=args.latent, hidden_dim=args.hidden)))),
    }
    rows = []
    for backend in ("pyro", "numpyro"):
        for kind, build in builds.items():
            if args.only and kind not in args.only:
                continue
            started = time.perf_counter()
            fit = ppgen.fit(build(backend), data, svi, backend=backend, seed=0)
            seconds = time.perf_counter() - started
            nll = -float(np.mean(fit.log_likelihood(data.test, num_samples=args.samples)))
            rows.append({"backend": backend, "model": kind, "test_nll": round(nll, 2), "fit_seconds": round(seconds, 1)})
            print(f"{backend:8s} {kind:8s} test NLL {nll:7.2f} nats  ({seconds:.0f} s to fit)", flush=True)
    for backend in ("pyro", "numpyro") if not args.only else ():
        family, program, networks = (next(r["test_nll"] for r in rows if r["backend"] == backend and r["model"] == k)
                                     for k in ("family", "program", "networks"))
        print(f"{backend:8s} program − family: {program - family:+.2f} nats (goal: within 3); "
              f"own networks − family: {networks - family:+.2f} nats (goal: within 2)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
