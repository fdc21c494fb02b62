"""Step time of small torch workloads with 1 and with 2 intra-op threads.

ppgen's Pyro backend runs torch with one intra-op thread unless ``PPGEN_NUM_THREADS`` says
otherwise. This script measures, in one run, why: the median time of

- one PPCA SVI step (Pyro backend, digits, latent_dim 8, amortised guide, mean-field ELBO),
  full batch (1000 images) and minibatches of 128;
- one training step of a 64-256-256-64 MLP (torch, Adam, squared error, batch 128),

with ``torch.set_num_threads(1)`` and ``(2)``, and prints the ratio (2 threads / 1 thread; below
1 means the extra thread helps). The two settings alternate over ``--rounds`` rounds and each
reports the median of its rounds, so a change of machine load during the run hits both alike.
Numbers depend on the machine and on what else runs on it.

Usage::

    python benchmarks/threads.py [--steps 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import ppgen
from ppgen import datasets, inference, models

THREADS = (1, 2)


def ppca_svi_step(batch_size, steps: int) -> float:
    """Median seconds per SVI step, as recorded by ppgen.fit's history."""
    data = datasets.load("digits", view="unit")
    spec = models.PPCA(data_dim=64, latent_dim=8)
    algorithm = inference.SVI(elbo="meanfield", guide="amortized", steps=steps, lr=1e-2, batch_size=batch_size)
    fit = ppgen.fit(spec, data, algorithm, backend="pyro", seed=0, progress=False)
    return statistics.median(record["seconds"] for record in fit.history[steps // 5:])


def mlp_step(steps: int) -> float:
    """Median seconds per training step of a 64-256-256-64 MLP on random data, batch 128."""
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 64))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(128, 64, generator=generator)
    target = torch.randn(128, 64, generator=generator)
    times = []
    for step in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(x), target)
        loss.backward()
        optimizer.step()
        if step >= steps // 5:  # the first steps warm up allocators and caches
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per thread count")
    args = parser.parse_args(argv)

    # ppgen sets torch's thread count once, at the first fit; run one so that the
    # set_num_threads calls below are not overridden.
    ppca_svi_step(None, 10)
    workloads = {
        "PPCA SVI step, pyro, batch 1000": lambda: ppca_svi_step(None, args.steps),
        "PPCA SVI step, pyro, batch 128": lambda: ppca_svi_step(128, args.steps),
        "MLP 64-256-256-64 step, batch 128": lambda: mlp_step(args.steps),
    }
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, {args.steps} steps per measurement, "
          f"{args.rounds} rounds")
    print(f"{'workload':36s} {'1 thread ms':>12s} {'2 threads ms':>13s} {'2 / 1':>7s}")
    for name, run in workloads.items():
        rounds: dict = {threads: [] for threads in THREADS}
        for _ in range(args.rounds):
            for threads in THREADS:
                torch.set_num_threads(threads)
                rounds[threads].append(1000 * run())
        ms = {threads: statistics.median(values) for threads, values in rounds.items()}
        print(f"{name:36s} {ms[1]:12.3f} {ms[2]:13.3f} {ms[2] / ms[1]:7.2f}", flush=True)
    torch.set_num_threads(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
