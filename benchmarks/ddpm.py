"""Training steps per second of a DDPM: ppgen against plain loops with the same network and loss.

From one run, on the ring of 8 Gaussians (2400 training points, batch 256, T = 1000, the MLP
with a sinusoidal time embedding of ``models.DDPM(2)``, the simple ε-loss of Algorithm 1, Adam):

- ppgen, Pyro backend (``ppgen.fit(models.DDPM(2), data, SVI(elbo="simple"), backend="pyro")``)
- a plain PyTorch loop: the same network (``ppgen.models.nets.TimeMLP``, same initial weights),
  t ~ U{1..T}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, the loss ‖ε − ε_θ(x_t, t)‖², Adam
- ppgen, NumPyro backend
- a plain jitted JAX loop with the same network and loss, ``jax.example_libraries``' Adam

Every loop shuffles per epoch and records each step's loss as a float on the host, as ppgen's
history does. A loop's time per step is the difference between a long and a short run divided
by the difference in steps, so start-up and compilation cancel. The ratios are ppgen / plain
(goal ≤ 1.05 for both backends).

    python benchmarks/ddpm.py [--steps 3000] [--batch 256] [--repeats 3]
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


def ppgen_seconds(spec, data, backend, steps, batch):
    t0 = time.perf_counter()
    ppgen.fit(spec, data, inference.SVI(elbo="simple", steps=steps, batch_size=batch, lr=1e-3), backend=backend,
              seed=0, progress=False)
    return time.perf_counter() - t0


def _initial(spec):
    return {k: v for k, v in spec.networks()["denoiser"].init(0 * 1009).items()}


def torch_seconds(spec, x, steps, batch):
    import torch

    torch.set_num_threads(int(os.environ.get("PPGEN_NUM_THREADS", "1")))
    net, ops = spec.networks()["denoiser"], ops_for("pyro")
    params = {k: torch.tensor(v, requires_grad=True) for k, v in _initial(spec).items()}
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    xs = torch.as_tensor(x, dtype=torch.float32)
    abar = torch.as_tensor(spec.alphas_cumprod, dtype=torch.float32)
    sqrt_abar, sqrt_one_minus = abar.sqrt(), (1 - abar).sqrt()
    n, T = x.shape[0], spec.timesteps
    per_epoch = math.ceil(n / batch)
    history = []
    t0 = time.perf_counter()
    for step in range(steps):
        epoch, position = divmod(step, per_epoch)
        if position == 0:
            order = torch.as_tensor(np.random.default_rng([0, epoch]).permutation(n))
        x0 = xs[order[position * batch:(position + 1) * batch]]
        t = torch.randint(0, T, (x0.shape[0],))
        noise = torch.randn_like(x0)
        x_t = sqrt_abar[t, None] * x0 + sqrt_one_minus[t, None] * noise
        loss = ((noise - net.apply(ops, params, x_t, t)) ** 2).mean(-1).sum() * (n / x0.shape[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item() / n)
    return time.perf_counter() - t0


def jax_seconds(spec, x, steps, batch):
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import optimizers

    net, ops = spec.networks()["denoiser"], ops_for("numpyro")
    n, T = x.shape[0], spec.timesteps
    abar = jnp.asarray(spec.alphas_cumprod, dtype=jnp.float32)
    sqrt_abar, sqrt_one_minus = jnp.sqrt(abar), jnp.sqrt(1 - abar)
    opt_init, opt_update, get_params = optimizers.adam(1e-3)

    def loss_fn(params, x0, key):
        key_t, key_noise = jax.random.split(key)
        t = jax.random.randint(key_t, (x0.shape[0],), 0, T)
        noise = jax.random.normal(key_noise, x0.shape)
        x_t = sqrt_abar[t, None] * x0 + sqrt_one_minus[t, None] * noise
        return ((noise - net.apply(ops, params, x_t, t)) ** 2).mean(-1).sum() * (n / x0.shape[0])

    @jax.jit
    def update(i, state, x0, key):
        loss, grads = jax.value_and_grad(loss_fn)(get_params(state), x0, key)
        return opt_update(i, grads, state), loss

    state = opt_init({k: jnp.asarray(v) for k, v in _initial(spec).items()})
    xs = jnp.asarray(x, dtype=jnp.float32)
    key = jax.random.PRNGKey(0)
    per_epoch = math.ceil(n / batch)
    history = []
    t0 = time.perf_counter()
    for step in range(steps):
        epoch, position = divmod(step, per_epoch)
        if position == 0:
            order = np.random.default_rng([0, epoch]).permutation(n)
        x0 = xs[jnp.asarray(order[position * batch:(position + 1) * batch])]
        key, sub = jax.random.split(key)
        state, loss = update(step, state, x0, sub)
        history.append(float(loss) / n)
    return time.perf_counter() - t0


def per_step(run, short: int, long: int, repeats: int) -> float:
    """Median over repeats of (time(long) − time(short)) / (long − short)."""
    run(short)  # warm-up: imports, first compilations
    values = []
    for _ in range(repeats):
        a, b = run(short), run(long)
        values.append((b - a) / (long - short))
    return float(np.median(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps of the long runs (short runs: a third)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    data = datasets.load("ring")
    x = data.train.astype(np.float32)
    spec = models.DDPM(2)
    short, long = max(1, args.steps // 3), args.steps
    print(f"DDPM(2) T={spec.timesteps}, MLP {spec.hidden_dims} + time embedding {spec.time_dim}, ring train {x.shape}, "
          f"batch {args.batch}, steps {short} vs {long}, median of {args.repeats}", flush=True)
    rows = [
        ("ppgen pyro", per_step(lambda s: ppgen_seconds(spec, data, "pyro", s, args.batch), short, long, args.repeats)),
        ("plain PyTorch", per_step(lambda s: torch_seconds(spec, x, s, args.batch), short, long, args.repeats)),
        ("ppgen numpyro", per_step(lambda s: ppgen_seconds(spec, data, "numpyro", s, args.batch), short, long,
                                   args.repeats)),
        ("plain JAX (jit)", per_step(lambda s: jax_seconds(spec, x, s, args.batch), short, long, args.repeats)),
    ]
    for name, seconds in rows:
        print(f"  {name:18s} {1.0 / seconds:8.1f} steps/s  ({seconds * 1e3:.3f} ms/step)")
    print(f"ratio pyro/torch   {rows[0][1] / rows[1][1]:.3f}  (time per step; goal <= 1.05)")
    print(f"ratio numpyro/jax  {rows[2][1] / rows[3][1]:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
