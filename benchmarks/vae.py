"""Seconds per epoch of VAE training: ppgen against plain loops with identical networks.

From one run, on the digits (17-level categorical likelihood, the DESIGN.md training split of
1000 images, batch 100, the analytic-KL ELBO, Adam):

- ppgen, Pyro backend (``ppgen.fit(..., SVI(elbo="meanfield"), backend="pyro")``)
- a plain PyTorch loop: the same networks (``ppgen.models.nets`` with the same initial
  weights), the ELBO written by hand, ``torch.optim.Adam``
- ppgen, NumPyro backend
- a plain jitted JAX loop: the same networks, the ELBO by hand, ``jax.example_libraries``' Adam

Every loop shuffles per epoch and records the loss of every step (a float on the host), as
ppgen's history does. A loop's time per epoch is the difference between a long and a short
run divided by the difference in epochs, so compilation and start-up cancel. The ratios
are ppgen / plain (goals: Pyro ≤ 1.3×, NumPyro ≤ 1.1×).

    python benchmarks/vae.py [--epochs 60] [--hidden 256,256] [--latent 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import numpy as np  # noqa: E402

import ppgen  # noqa: E402
from ppgen import datasets, inference, models  # noqa: E402
from ppgen.models.nets import ops_for  # noqa: E402


def spec_for(args):
    return models.VAE(64, latent_dim=args.latent, hidden_dims=args.hidden, likelihood="categorical",
                      num_levels=17)


def ppgen_seconds(spec, data, backend, epochs, batch):
    t0 = time.perf_counter()
    ppgen.fit(spec, data, inference.SVI(elbo="meanfield", epochs=epochs, batch_size=batch, lr=1e-3),
              backend=backend, seed=0, progress=False)
    return time.perf_counter() - t0


def _initial(spec):
    nets = spec.networks()
    return nets, {f"{name}.{k}": v for i, (name, net) in enumerate(nets.items())
                  for k, v in net.init(0 * 1009 + i).items()}


def torch_seconds(spec, x, epochs, batch):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(os.environ.get("PPGEN_NUM_THREADS", "1")))
    nets, init = _initial(spec)
    ops = ops_for("pyro")
    params = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    enc = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("encoder.")}
    dec = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("decoder.")}
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    xs = torch.as_tensor(x, dtype=torch.float32)
    K, L, n = spec.latent_dim, spec.num_levels, x.shape[0]
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    history = []
    for epoch in range(epochs):
        order = torch.as_tensor(np.random.default_rng([0, epoch]).permutation(n))
        for start in range(0, n, batch):
            xb = xs[order[start:start + batch]]
            out = nets["encoder"].apply(ops, enc, xb / (L - 1))
            loc, scale = out[:, :K], F.softplus(out[:, K:]) + 1e-5
            z = loc + scale * torch.randn(loc.shape, generator=gen)
            logits = nets["decoder"].apply(ops, dec, z).reshape(-1, 64, L)
            log_px = torch.distributions.Categorical(logits=logits).log_prob(xb.long()).sum(-1)
            kl = (0.5 * (loc**2 + scale**2 - 1) - torch.log(scale)).sum(-1)
            loss = -(log_px - kl).sum() * (n / xb.shape[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(loss.item() / n)
    return time.perf_counter() - t0


def jax_seconds(spec, x, epochs, batch):
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import optimizers

    nets, init = _initial(spec)
    ops = ops_for("numpyro")
    K, L, n = spec.latent_dim, spec.num_levels, x.shape[0]
    opt_init, opt_update, get_params = optimizers.adam(1e-3)

    def loss_fn(params, xb, key):
        enc = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("encoder.")}
        dec = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("decoder.")}
        out = nets["encoder"].apply(ops, enc, xb / (L - 1))
        loc, scale = out[:, :K], jax.nn.softplus(out[:, K:]) + 1e-5
        z = loc + scale * jax.random.normal(key, loc.shape)
        logits = nets["decoder"].apply(ops, dec, z).reshape(-1, 64, L)
        logp = jax.nn.log_softmax(logits, -1)
        log_px = jnp.take_along_axis(logp, xb.astype(jnp.int32)[..., None], -1)[..., 0].sum(-1)
        kl = (0.5 * (loc**2 + scale**2 - 1) - jnp.log(scale)).sum(-1)
        return -(log_px - kl).sum() * (n / xb.shape[0])

    @jax.jit
    def update(i, state, xb, key):
        loss, grads = jax.value_and_grad(loss_fn)(get_params(state), xb, key)
        return opt_update(i, grads, state), loss

    state = opt_init({k: jnp.asarray(v) for k, v in init.items()})
    xs = jnp.asarray(x, dtype=jnp.float32)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    history, step = [], 0
    for epoch in range(epochs):
        order = np.random.default_rng([0, epoch]).permutation(n)
        for start in range(0, n, batch):
            xb = xs[jnp.asarray(order[start:start + batch])]
            key, sub = jax.random.split(key)
            state, loss = update(step, state, xb, sub)
            history.append(float(loss) / n)
            step += 1
    return time.perf_counter() - t0


def per_epoch(run, short: int, long: int, repeats: int) -> float:
    """Median over repeats of (time(long) − time(short)) / (long − short)."""
    run(1)  # warm-up: imports, first compilations
    values = []
    for _ in range(repeats):
        a, b = run(short), run(long)
        values.append((b - a) / (long - short))
    return float(np.median(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60, help="epochs of the long runs (short runs: a third)")
    parser.add_argument("--hidden", type=lambda s: tuple(int(v) for v in s.split(",")), default=(256, 256))
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    data = datasets.load("digits", view="categorical")
    x = data.train.reshape(len(data.train), -1).astype(np.float32)
    spec = spec_for(args)
    short, long = max(1, args.epochs // 3), args.epochs
    steps = math.ceil(x.shape[0] / args.batch)
    print(f"VAE {spec.hidden_dims} latent {spec.latent_dim}, digits train {x.shape}, batch {args.batch} "
          f"({steps} steps per epoch), epochs {short} vs {long}, median of {args.repeats}")
    rows = [
        ("ppgen pyro", per_epoch(lambda e: ppgen_seconds(spec, data, "pyro", e, args.batch), short, long,
                                 args.repeats)),
        ("plain PyTorch", per_epoch(lambda e: torch_seconds(spec, x, e, args.batch), short, long, args.repeats)),
        ("ppgen numpyro", per_epoch(lambda e: ppgen_seconds(spec, data, "numpyro", e, args.batch), short, long,
                                    args.repeats)),
        ("plain JAX (jit)", per_epoch(lambda e: jax_seconds(spec, x, e, args.batch), short, long, args.repeats)),
    ]
    for name, seconds in rows:
        print(f"  {name:18s} {seconds * 1e3:8.1f} ms/epoch")
    print(f"ratio pyro/torch   {rows[0][1] / rows[1][1]:.2f}  (goal <= 1.3)")
    print(f"ratio numpyro/jax  {rows[2][1] / rows[3][1]:.2f}  (goal <= 1.1)")


if __name__ == "__main__":
    main()
