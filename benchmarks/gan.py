"""Time per adversarial training step: ppgen against plain loops doing the same work, as a ratio.

One step of ``inference.Adversarial(loss="wgan-gp", critic_steps=5)`` (λ = 10, Adam with lr 1e-4
and betas (0, 0.9) for each player) is five critic updates, each on its own minibatch of data
rows and fresh generator samples drawn under no_grad / stop_gradient, with the gradient penalty
on interpolates (a gradient of the critic's summed scores with respect to its input, taken with
create_graph), then one generator update on fresh latent draws. The workloads:

- ``ring``: the ring of 8 Gaussians (``datasets.load("ring", n=20000)``, 16 000 training rows),
  ``models.GAN(2, latent_dim=2, output="identity", hidden_dims=(256, 256, 256))``, batch 256;
- ``digits``: the 8×8 digits (``view="symmetric"``, 1000 training rows),
  ``models.GAN(64, latent_dim=32, hidden_dims=(256, 256))`` (tanh output), batch 64;
- ``dcgan`` (with ``--dcgan``): ``models.GAN(3072, network="dcgan", image_shape=(32, 32, 3))`` on
  random images in [-1, 1], batch 64, Pyro backend only (meaningful on a GPU: ``--device cuda``).

Each is timed four ways in one process:

- ppgen, Pyro backend: ``ppgen.fit(spec, data, Adversarial(...), backend="pyro")``;
- plain PyTorch: the same networks as ``torch.nn.Sequential`` (Linear / ReLU / LeakyReLU(0.2),
  the generator's tanh; for DCGAN ConvTranspose2d / BatchNorm2d without running statistics /
  Conv2d), the step written by hand with one ``torch.optim.Adam`` per player;
- ppgen, NumPyro backend (CPU);
- plain JAX: one ``jax.jit``-compiled step over dicts of arrays with the five critic updates
  unrolled, the penalty by ``jax.grad`` of the summed critic on the interpolates, the random
  key split inside the step, and ``jax.example_libraries.optimizers.adam``.

The plain loops draw rows as ppgen's loop does: a step reads one block of k·B rows of a
permutation drawn per epoch (``np.random.default_rng([seed, epoch])``) and cuts it into k
minibatches (the short last block of an epoch into k shorter ones, so JAX compiles two shapes
on both sides), and they record the generator's loss, the mean critic loss and the mean
penalty of each step as host floats, as ppgen's history does.

Time per step: ppgen's ``fit.history[i]["seconds"]`` (the minibatch draw plus ``alg.step``),
against the same span of the plain loops (drawing the rows, the step, the host floats), after
dropping warm-up steps (``--warmup``, at least one epoch, so the compilations of both block
shapes in JAX drop out). By default the two sides are interleaved: each plain step runs in
a callback of the fit right after ppgen's step (outside ppgen's timings), so both see the same
machine; ``--schedule sequential`` runs the whole fit and then the whole plain loop instead.
A repeat's ratio is ppgen's median step over the plain median step; the table shows the
medians over ``--repeats`` (and the range of the ratios). ``loop`` is the ratio of mean times
with everything else ppgen's loop does per step (history, finiteness checks), from the
callback's clock readings. ``--clock cpu`` measures the process's CPU time of each step
(ppgen's: its whole loop between callbacks) instead of wall time. Goal: ratio ≤ 1.1.

    python benchmarks/gan.py [--steps 100] [--repeats 3] [--only ring,pyro] [--device cuda] [--dcgan]

Torch runs one intra-op thread (``PPGEN_NUM_THREADS``, default 1) on both sides, and XLA one
thread (``--xla_cpu_multi_thread_eigen=false``). About 3 minutes on 2 cores (half of it JAX
compilations: each fit compiles its step).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import numpy as np

import ppgen
from ppgen import datasets, inference, models

K_CRITIC, LAMBDA, LR, BETAS = 5, 10.0, 1e-4, (0.0, 0.9)
BACKENDS = ("pyro", "numpyro")


# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------
def require_dcgan() -> None:
    """Exit with a message unless ppgen has its DCGAN networks."""
    try:
        from ppgen.models.nets import DCGANDiscriminator, DCGANGenerator  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"--dcgan: the DCGAN networks are not importable from ppgen.models.nets ({e}); "
                         f"run without --dcgan") from None


def workload(name: str, dcgan_rows: int = 3200):
    """(spec, dataset, training rows as float32 (N, D), batch size)."""
    if name == "ring":
        data = datasets.load("ring", n=20000)
        spec, batch = models.GAN(2, latent_dim=2, output="identity", hidden_dims=(256, 256, 256)), 256
    elif name == "digits":
        data = datasets.load("digits", view="symmetric")
        spec, batch = models.GAN(64, latent_dim=32, hidden_dims=(256, 256)), 64
    elif name == "dcgan":
        require_dcgan()
        x = np.random.default_rng(0).uniform(-1.0, 1.0, (dcgan_rows, 3072)).astype(np.float32)
        data = datasets.from_arrays(x, name="random-images", meta={"low": -1.0, "high": 1.0, "support": "real"})
        spec, batch = models.GAN(3072, network="dcgan", image_shape=(32, 32, 3)), 64
    else:
        raise SystemExit(f"unknown workload {name!r}")
    x = np.asarray(data.train, dtype=np.float32).reshape(len(data.train), -1)
    return spec, data, x, batch


def blocks(n: int, batch: int, k: int):
    """Rows per step (a block of k·B, at most n) and steps per epoch, as in ppgen's loop."""
    block = min(batch * k, n)
    return block, math.ceil(n / block)


def chunk_bounds(n: int, k: int, batch: int) -> list:
    """(start, stop) of the k minibatches a block of n rows is cut into (ppgen's rule: k of B
    rows; a shorter block into k pieces of n // k rows)."""
    if n >= k * batch:
        return [(i * batch, (i + 1) * batch) for i in range(k)]
    size = max(1, n // k) if n >= k else n
    return [((i * size) % n, (i * size) % n + size) for i in range(k)]


# --------------------------------------------------------------------------------------------
# clocks
# --------------------------------------------------------------------------------------------
def clocks() -> tuple:
    """(wall seconds, CPU seconds of this process)."""
    return time.perf_counter(), time.process_time()


def since(start: tuple) -> tuple:
    now = clocks()
    return now[0] - start[0], now[1] - start[1]


# --------------------------------------------------------------------------------------------
# plain PyTorch
# --------------------------------------------------------------------------------------------
def torch_networks(spec, device):
    import torch
    from torch import nn

    if spec.network == "dcgan":
        h, w, c = 32, 32, 3
        (g0, g1), (d0, d1) = spec.generator_channels, spec.discriminator_channels
        generator = nn.Sequential(
            nn.Linear(spec.latent_dim, g0 * (h // 4) * (w // 4)), nn.Unflatten(1, (g0, h // 4, w // 4)),
            nn.BatchNorm2d(g0, track_running_stats=False), nn.ReLU(),
            nn.ConvTranspose2d(g0, g1, 4, 2, 1), nn.BatchNorm2d(g1, track_running_stats=False), nn.ReLU(),
            nn.ConvTranspose2d(g1, c, 4, 2, 1), nn.Tanh())
        critic = nn.Sequential(
            nn.Conv2d(c, d0, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(d0, d1, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(d1 * (h // 4) * (w // 4), 1))
    else:
        def mlp(sizes, act, last=None):
            layers = []
            for i, (a, b) in enumerate(itertools.pairwise(sizes)):
                layers.append(nn.Linear(a, b))
                if i < len(sizes) - 2:
                    layers.append(act())
            if last is not None:
                layers.append(last)
            return nn.Sequential(*layers)

        out = {"tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "identity": None}[spec.output]
        generator = mlp((spec.latent_dim, *spec.hidden_dims, spec.data_dim), nn.ReLU, out)
        critic = mlp((spec.data_dim, *(spec.discriminator_hidden_dims or spec.hidden_dims), 1),
                     lambda: nn.LeakyReLU(0.2))
    torch.manual_seed(0)
    return generator.to(device), critic.to(device)


class TorchLoop:
    """A hand-written WGAN-GP loop with the same networks and work; ``step()`` runs one step."""

    def __init__(self, spec, x, batch: int, device: str):
        import torch

        torch.set_num_threads(int(os.environ.get("PPGEN_NUM_THREADS", "1")))
        self.torch, self.dev = torch, torch.device(device)
        self.generator, self.critic = torch_networks(spec, self.dev)
        self.g_params = list(self.generator.parameters())
        self.opt_g = torch.optim.Adam(self.g_params, lr=LR, betas=BETAS)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=LR, betas=BETAS)
        xs = torch.as_tensor(x, device=self.dev)
        if spec.network == "dcgan":  # the plain loop keeps images NCHW
            xs = xs.reshape(-1, 32, 32, 3).permute(0, 3, 1, 2).contiguous()
        self.xs, self.n, self.K, self.batch = xs, x.shape[0], spec.latent_dim, batch
        self.block, self.per_epoch = blocks(self.n, batch, K_CRITIC)
        self.gen = torch.Generator(self.dev).manual_seed(0)
        self.count, self.order, self.history = 0, None, []

    def step(self):
        torch, dev, gen, K = self.torch, self.dev, self.gen, self.K
        epoch, position = divmod(self.count, self.per_epoch)
        if position == 0:
            self.order = torch.as_tensor(np.random.default_rng([0, epoch]).permutation(self.n), device=dev)
        rows = self.xs[self.order[position * self.block:(position + 1) * self.block]]
        bounds = chunk_bounds(rows.shape[0], K_CRITIC, self.batch)
        d_sum = pen_sum = 0.0
        for start, stop in bounds:
            real = rows[start:stop]
            m = real.shape[0]
            with torch.no_grad():
                fake = self.generator(torch.randn(m, K, device=dev, generator=gen))
            alpha = torch.rand(m, device=dev, generator=gen).reshape((m,) + (1,) * (real.ndim - 1))
            mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(self.critic(mix).sum(), mix, create_graph=True)
            penalty = ((grad.pow(2).flatten(1).sum(1) + 1e-12).sqrt() - 1.0).pow(2).mean()
            loss = self.critic(fake).mean() - self.critic(real).mean() + LAMBDA * penalty
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
            d_sum = d_sum + loss.detach()
            pen_sum = pen_sum + penalty.detach()
        m = bounds[-1][1] - bounds[-1][0]
        g_loss = -self.critic(self.generator(torch.randn(m, K, device=dev, generator=gen))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=self.g_params)
        self.opt_g.step()
        self.history.append((g_loss.item(), d_sum.item() / K_CRITIC, pen_sum.item() / K_CRITIC))
        self.count += 1


# --------------------------------------------------------------------------------------------
# plain JAX
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def jax_step(spec, batch: int):
    """The plain jitted step ``(i, d_state, g_state, xs, rows, key) -> (d_state, g_state, key, g_loss,
    d_loss, penalty)`` and the two players' initial Adam states (cached: the repeats reuse its
    compilations, while each ppgen fit compiles its own step). The random key is split inside."""
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import optimizers

    rng = np.random.default_rng(0)

    def init(sizes):
        p = {}
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            bound = 1.0 / math.sqrt(a)
            p[f"w{i}"] = jnp.asarray(rng.uniform(-bound, bound, (a, b)), dtype=jnp.float32)
            p[f"b{i}"] = jnp.asarray(rng.uniform(-bound, bound, (b,)), dtype=jnp.float32)
        return p

    g_sizes = (spec.latent_dim, *spec.hidden_dims, spec.data_dim)
    d_sizes = (spec.data_dim, *(spec.discriminator_hidden_dims or spec.hidden_dims), 1)
    out = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda v: v}[spec.output]

    def mlp(p, h, layers, act):
        for i in range(layers):
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            if i < layers - 1:
                h = act(h)
        return h

    def generate(p, z):
        return out(mlp(p, z, len(g_sizes) - 1, jax.nn.relu))

    def critic(p, v):
        return mlp(p, v, len(d_sizes) - 1, lambda h: jax.nn.leaky_relu(h, 0.2))[:, 0]

    def critic_loss(dp, real, fake, alpha):
        mix = alpha[:, None] * real + (1 - alpha[:, None]) * fake
        grad = jax.grad(lambda v: critic(dp, v).sum())(mix)
        penalty = (((jnp.sum(grad * grad, axis=1) + 1e-12) ** 0.5 - 1.0) ** 2).mean()
        return critic(dp, fake).mean() - critic(dp, real).mean() + LAMBDA * penalty, penalty

    d_init, d_update, d_get = optimizers.adam(LR, b1=BETAS[0], b2=BETAS[1])
    g_init, g_update, g_get = optimizers.adam(LR, b1=BETAS[0], b2=BETAS[1])
    K = spec.latent_dim

    @jax.jit
    def step(i, d_state, g_state, xs, rows, key):
        block = xs[rows]
        bounds = chunk_bounds(block.shape[0], K_CRITIC, batch)
        key, *keys = jax.random.split(key, 2 * K_CRITIC + 2)
        gp = g_get(g_state)
        d_sum = pen_sum = 0.0
        for j, (start, stop) in enumerate(bounds):  # unrolled: five critic updates
            real = block[start:stop]
            m = real.shape[0]
            fake = jax.lax.stop_gradient(generate(gp, jax.random.normal(keys[2 * j], (m, K))))
            alpha = jax.random.uniform(keys[2 * j + 1], (m,))
            (loss, penalty), grads = jax.value_and_grad(critic_loss, has_aux=True)(d_get(d_state), real, fake, alpha)
            d_state = d_update(i * K_CRITIC + j, grads, d_state)
            d_sum, pen_sum = d_sum + loss, pen_sum + penalty
        dp = d_get(d_state)
        z = jax.random.normal(keys[-1], (bounds[-1][1] - bounds[-1][0], K))
        g_loss, grads = jax.value_and_grad(lambda p: -critic(dp, generate(p, z)).mean())(gp)
        return d_state, g_update(i, grads, g_state), key, g_loss, d_sum / K_CRITIC, pen_sum / K_CRITIC

    return step, d_init(init(d_sizes)), g_init(init(g_sizes))


class JaxLoop:
    """A hand-written loop around one jitted WGAN-GP step; ``step()`` runs one step."""

    def __init__(self, spec, x, batch: int):
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.update, self.d_state, self.g_state = jax_step(spec, batch)
        self.xs, self.n = jnp.asarray(x), x.shape[0]
        self.block, self.per_epoch = blocks(self.n, batch, K_CRITIC)
        self.key = jax.random.PRNGKey(0)
        self.count, self.order, self.history = 0, None, []

    def step(self):
        epoch, position = divmod(self.count, self.per_epoch)
        if position == 0:
            self.order = np.random.default_rng([0, epoch]).permutation(self.n)
        rows = self.order[position * self.block:(position + 1) * self.block]
        self.d_state, self.g_state, self.key, g, d, pen = self.update(self.count, self.d_state, self.g_state, self.xs,
                                                                      rows, self.key)
        self.history.append((float(g), float(d), float(pen)))
        self.count += 1


# --------------------------------------------------------------------------------------------
# one comparison
# --------------------------------------------------------------------------------------------
def run_pair(spec, data, x, batch: int, backend: str, steps: int, device: str, schedule: str):
    """One ppgen fit and the plain loop, ``steps`` each. Returns per-step times (steps, 2) of wall
    and CPU seconds: ppgen's step (wall: fit.history's ``seconds``), ppgen's whole loop between
    steps, and the plain step. Interleaved: each plain step runs in the fit's callback right after
    ppgen's step, so both sides see the same conditions (outside ppgen's timings)."""
    plain = TorchLoop(spec, x, batch, device) if backend == "pyro" else JaxLoop(spec, x, batch)
    plain_times, marks = [], []

    def callback(event):
        entered = clocks()
        if schedule == "interleaved":
            start = clocks()
            plain.step()
            plain_times.append(since(start))
        marks.append((entered, clocks()))

    fit = ppgen.fit(spec, data, inference.Adversarial(loss="wgan-gp", critic_steps=K_CRITIC, steps=steps,
                                                      batch_size=batch),
                    backend=backend, seed=0, progress=False, device=device if backend == "pyro" else "cpu",
                    callbacks=[callback])
    if schedule == "sequential":
        for _ in range(steps):
            start = clocks()
            plain.step()
            plain_times.append(since(start))
    entered = np.array([m[0] for m in marks])
    left = np.array([m[1] for m in marks])
    loop = np.full((steps, 2), np.nan)
    loop[1:] = entered[1:] - left[:-1]
    return np.array([r["seconds"] for r in fit.history]), loop, np.array(plain_times)


def compare(name, backend, args):
    spec, data, x, batch = workload(name, args.dcgan_rows)
    steps = args.dcgan_steps if name == "dcgan" else args.steps
    per_epoch = blocks(x.shape[0], batch, K_CRITIC)[1]
    warm = min(max(args.warmup, per_epoch), steps // 2)
    col = 0 if args.clock == "wall" else 1
    mine, plain, loop = [], [], []
    for _ in range(args.repeats):
        step_wall, between, base = run_pair(spec, data, x, batch, backend, steps, args.device, args.schedule)
        # wall: fit.history's seconds; cpu: the process's CPU time of ppgen's whole loop per step
        mine.append(np.median(step_wall[warm:] if col == 0 else between[warm:, 1]))
        plain.append(np.median(base[warm:, col]))
        loop.append(np.mean(between[warm:, col]) / np.mean(base[warm:, col]))
    ratios = np.array(mine) / np.array(plain)
    return {"workload": name, "backend": backend, "ppgen": float(np.median(mine)) * 1e3,
            "plain": float(np.median(plain)) * 1e3, "ratio": float(np.median(ratios)),
            "spread": (float(ratios.min()), float(ratios.max())), "loop": float(np.median(loop)), "warm": warm,
            "steps": steps}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="training steps per run (ring, digits)")
    parser.add_argument("--warmup", type=int, default=20, help="steps dropped at the start (at least one epoch)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side; the median is shown")
    parser.add_argument("--only", default="", help="comma-separated workloads (ring, digits, dcgan) and/or "
                                                    "backends (pyro, numpyro) to run; default all")
    parser.add_argument("--device", default="cpu", help="device of the Pyro side and its PyTorch baseline")
    parser.add_argument("--dcgan", action="store_true", help="also time the DCGAN (32×32×3, Pyro backend)")
    parser.add_argument("--dcgan-steps", type=int, default=100,
                        help="training steps per DCGAN run (about 1.4 s a step on one CPU core)")
    parser.add_argument("--dcgan-rows", type=int, default=3200, help="random training images of the DCGAN")
    parser.add_argument("--schedule", choices=("interleaved", "sequential"), default="interleaved",
                        help="interleaved: a plain step after each ppgen step (robust to other load); "
                             "sequential: the whole fit, then the whole plain loop")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: perf_counter (ppgen: fit.history seconds); cpu: the process's CPU time per "
                             "step, whole loop on both sides (steadier on a machine shared with other work)")
    args = parser.parse_args(argv)
    only = {t.strip() for t in args.only.split(",") if t.strip()}
    unknown = only - {"ring", "digits", "dcgan", *BACKENDS}
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; use ring, digits, dcgan, pyro, numpyro")
    names = [w for w in ("ring", "digits", "dcgan") if w in only] or ["ring", "digits"]
    if args.dcgan and "dcgan" not in names:
        names.append("dcgan")
    backends = [b for b in BACKENDS if b in only] or list(BACKENDS)
    if "dcgan" in names:
        require_dcgan()  # before any timing
    import torch

    print(f"WGAN-GP, k={K_CRITIC} critic updates + 1 generator update per step, λ={LAMBDA:g}, Adam lr {LR:g} "
          f"betas {BETAS}; torch {torch.__version__} ({os.environ.get('PPGEN_NUM_THREADS', '1')} thread), "
          f"Pyro side on {args.device}, NumPyro side on cpu; {args.schedule}, {args.clock} clock, "
          f"median of {args.repeats} repeats")
    print(f"{'workload':9s} {'backend':8s} {'ppgen ms/step':>14s} {'baseline ms/step':>17s} {'ratio':>6s} "
          f"{'(min-max)':>12s} {'loop':>6s} {'steps':>9s}")
    rows = []
    for name in names:
        for backend in (["pyro"] if name == "dcgan" else backends):
            r = compare(name, backend, args)
            rows.append(r)
            base = "torch" if backend == "pyro" else "jax.jit"
            print(f"{name:9s} {backend:8s} {r['ppgen']:14.2f} {r['plain']:9.2f} {base:>7s} {r['ratio']:6.3f} "
                  f"{r['spread'][0]:5.3f}-{r['spread'][1]:5.3f} {r['loop']:6.3f} {r['warm']:4d}-{r['steps']:<4d}",
                  flush=True)
    worst = max(r["ratio"] for r in rows)
    print(f"ratio = ppgen / baseline of the median step time over the steps shown (warm-up dropped), median over "
          f"repeats (goal <= 1.1; worst {worst:.3f}); loop = the same of mean times with ppgen's whole loop")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
