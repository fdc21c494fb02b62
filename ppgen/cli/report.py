"""The run report: what a run folder gets after a fit, and what ``ppgen inspect`` shows.

Every choice is asked of the family contract (:class:`ppgen.program.ModelSpec`): which optional
methods the family provides (``fit.model.supports(...)``), whether it is conditional
(``fit.model.conditional``), a diffusion model (``fit.model.diffusion``) or an implicit one
(``fit.model.forms``); never of ``hasattr`` on the spec.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .data import data_label, split_labels

__all__ = ["SAMPLE_COUNT", "INSPECT_EXAMPLES", "title", "is_implicit", "split_metrics", "sample_metrics",
           "write_samples", "write_chain", "write_report", "inspect_fit", "point_estimate_table",
           "format_number", "format_table"]

SAMPLE_COUNT = 64


class _Scored:
    """Stands in for a fit whose log-likelihoods are already computed (for ppgen.metrics)."""

    def __init__(self, values):
        self.values = values

    def log_likelihood(self, x):
        return self.values


def split_metrics(fit, x, labels=None, num_samples=None) -> dict:
    """Mean log-likelihood per example (nats), its standard error, bits per dimension, count.

    For the amortised families the log-likelihood is importance-sampled with ``num_samples``
    (default 1000) encoder draws; a conditional family scores with the split's ``labels``."""
    from ..metrics import bits_per_dim

    x = np.asarray(x)
    kwargs: dict = {}
    if fit.model.estimated_likelihood:
        kwargs["num_samples"] = num_samples or 1000
    if fit.model.conditional:
        kwargs["labels"] = labels
    values = np.asarray(fit.log_likelihood(x, **kwargs), dtype=np.float64)
    n = int(values.shape[0])
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    discrete = fit.config.get("data", {}).get("support") in ("binary", "categorical")
    return {"log_likelihood": float(values.mean()), "log_likelihood_se": se,
            # bits of a probability; on real-valued data log p(x) is a density, and its "bits" can be negative
            "bits_per_dim": bits_per_dim(_Scored(values), x) if discrete else None, "num_examples": n}


def _save_npy(path: Path, array: np.ndarray) -> None:
    from ..checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def title(fit) -> str:
    """The figures' title: the family, the inference and the backend."""
    return f"{type(fit.model).__name__}, {fit.inference.title}, {fit.backend}"


def write_samples(fit, out, n: int, seed: int, reference=None, **options) -> tuple:
    """Draw ``n`` samples (``options`` go to the family's sampler); write ``out`` (PNG, when
    the data are images or 2-D points) and a .npy.

    Returns (png path or None, npy path)."""
    from .. import plots

    out = Path(out)
    x = np.asarray(fit.sample(n, seed=seed, **options))
    npy = out.with_suffix(".npy")
    _save_npy(npy, x)
    meta = fit.config.get("data", {}) or {}
    shape = list(meta.get("shape") or x.shape[1:])
    if len(shape) in (2, 3):
        low, high = meta.get("low"), meta.get("high")
        shown = np.clip(x, low, high) if (low is not None or high is not None) else x
        return plots.image_grid(shown.reshape((n,) + tuple(shape)), out, title=title(fit)), npy
    if shape == [2]:
        ref = None if reference is None else np.asarray(reference).reshape(-1, 2)
        return plots.scatter(x, out, reference=ref, title=title(fit)), npy
    return None, npy


def write_chain(fit, out: Path, seed: int, columns: int = 11, **options):
    """A diffusion model's chain from x_T (left) to x_0 (right) for one sample, as a strip of
    images (image data) or of scatter panels of 200 chains (2-D points); None otherwise."""
    from .. import plots

    if not fit.model.diffusion:
        return None
    meta = fit.config.get("data", {}) or {}
    shape = tuple(meta.get("shape") or ())
    if len(shape) not in (1, 2, 3) or (len(shape) == 1 and shape != (2,)):
        return None
    num = 200 if shape == (2,) else 1
    _, chain = fit.model.sample(fit.backend, fit.params, num, seed, return_chain=True, **options)
    keep = np.unique(np.linspace(0, len(chain) - 1, columns).round().astype(int))
    steps = len(chain) - 1
    names = [f"step {steps - k} of {steps}" for k in keep]
    if shape == (2,):
        return plots.scatter_strip([chain[k] for k in keep], out, names, title=f"{title(fit)}: the reverse chain")
    states = [np.clip(chain[k][0], -1.0, 1.0) if fit.model.likelihood == "discretized_gaussian" else chain[k][0]
              for k in keep]
    images = np.stack([fit.model.to_data(s) for s in states]).reshape((len(keep),) + shape)
    return plots.image_rows([images], out, shape, title=f"{title(fit)}: one chain, x_T (left) to x_0 (right)")


_CURVES = ("loss", "log_likelihood")
_GAME_CURVES = ("generator_loss", "discriminator_loss", "penalty", "reconstruction")


def _has_curves(history) -> bool:
    return len(history) > 1 and any(isinstance(r, dict) and any(k in r for k in _CURVES + _GAME_CURVES)
                                    for r in history)


def is_implicit(fit) -> bool:
    """Whether the fitted family is implicit (only samples, no likelihood): its forms are ("implicit",)."""
    return fit.model.forms == ("implicit",)


def sample_metrics(fit, x, labels, meta: dict, seed: int) -> dict:
    """How close samples are to a split ``x`` (implicit models have no likelihood): the energy
    distance, mode coverage on the Gaussian-mixture toys, and on the digits the classifier's
    Fréchet distance and, for a conditional model, its accuracy on the conditioning labels; for
    an AAE, the energy distance between its codes (the aggregated posterior) and the prior."""
    from .. import metrics as pm

    x = np.asarray(x)
    n = min(len(x), 2000)
    out: dict = {"num_examples": int(len(x))}
    conditional = fit.model.conditional
    if fit.model.supports("prior_sample"):
        codes = fit.encode(x[:n])
        out["latent_energy_distance"] = pm.energy_distance(codes, fit.model.prior_sample(n, seed))
    options = {"labels": np.asarray(labels)[:n]} if conditional else {}
    samples = np.asarray(fit.sample(n, seed=seed, **options)).reshape(n, -1)
    out["energy_distance"] = pm.energy_distance(samples, x[:n].reshape(n, -1))
    if meta.get("modes"):
        cover = pm.mode_coverage_for(fit.sample(2500, seed=seed + 1), meta)
        out.update(modes_covered=cover.covered, num_modes=cover.num_modes, high_quality=cover.high_quality)
    if meta.get("name") == "digits" and meta.get("view"):
        scale = pm.view_to_scale(meta["view"])
        shown = np.clip(samples, meta.get("low"), meta.get("high"))
        out["frechet_distance"] = pm.digits_frechet_distance(shown, x[:n], scale=scale)
        if conditional:
            out["conditional_accuracy"] = pm.conditional_accuracy(shown, options["labels"], scale=scale).overall
    return out


def _aae_figure(fit, dataset, run_dir: Path, seed: int) -> list:
    """For an AAE with a 2-D latent: the aggregated posterior (codes of the data, coloured by
    label) over draws of the prior."""
    from .. import plots

    if fit.model.latent_dim != 2:
        return []
    split = "test" if dataset.test is not None else "train"
    x = getattr(dataset, split)
    codes = fit.encode(x)
    prior = fit.model.prior_sample(max(len(x), 2000), seed)
    return [plots.aggregated_posterior(codes, prior, run_dir / "aggregated_posterior.png",
                                       labels=split_labels(dataset, split),
                                       title=f"{title(fit)}: codes of the {split} data over the prior")]


def _sample_count(fit) -> int:
    """How many samples a grid shows: for a conditional model, a square of its classes (one
    class per column), else SAMPLE_COUNT."""
    classes = fit.model.num_classes if fit.model.conditional else None
    return classes * classes if classes and classes <= 12 else SAMPLE_COUNT


def write_report(fit, dataset, run_dir: Path, seconds: float, seed: int,
                 splits=("train", "val", "test"), num_samples=None) -> tuple:
    """samples.png/.npy, curves.png, metrics.json (and for the VAE-like families,
    reconstructions and latent figures) in ``run_dir``; returns (metrics, files)."""
    from .. import plots
    from ..checkpoint import write_json

    png, npy = write_samples(fit, run_dir / "samples.png", _sample_count(fit), seed, reference=dataset.train)
    files = [p for p in (png, npy, write_chain(fit, run_dir / "chain.png", seed)) if p is not None]
    if _has_curves(fit.history):
        files.append(plots.curves(fit.history, run_dir / "curves.png",
                                  keys=_GAME_CURVES if is_implicit(fit) else _CURVES))
    if is_implicit(fit) and fit.model.supports("prior_sample"):
        files += _aae_figure(fit, dataset, run_dir, seed)
    elif fit.model.supports("reconstruct"):
        files += _latent_figures(fit, dataset, run_dir, seed)
    metrics: dict = {"fit_seconds": seconds, "data": data_label(dataset.meta)}
    for split in splits:
        x = getattr(dataset, split)
        if x is not None and is_implicit(fit):
            metrics[split] = sample_metrics(fit, x, split_labels(dataset, split), dict(dataset.meta), seed)
        elif x is not None:
            metrics[split] = split_metrics(fit, x, split_labels(dataset, split), num_samples)
    write_json(run_dir / "metrics.json", metrics)
    files.append(run_dir / "metrics.json")
    return metrics, files


def _latent_figures(fit, dataset, run_dir: Path, seed: int) -> list:
    """Figures of a VAE-like fit: reconstructions of held-out images, latent traversals, and
    for a 2-D latent the latent map (decoded grid and encoded points coloured by label)."""
    from .. import plots

    meta = fit.config.get("data", {}) or {}
    shape = tuple(meta.get("shape") or ())
    if len(shape) not in (2, 3):
        return []
    split = "test" if dataset.test is not None else "train"
    x, labels = getattr(dataset, split)[:16], split_labels(dataset, split)
    labels = labels[:16] if labels is not None else None
    cond = {"labels": labels} if fit.model.conditional else {}
    files = [plots.image_rows([x, fit.reconstruct(x, seed=seed, **cond)], run_dir / "reconstructions.png",
                              shape, row_names=["data", "reconstruction"], title=f"{title(fit)}: reconstructions")]
    steps = np.linspace(-2.5, 2.5, 9)
    rows = []
    # the most used latents first: the variance over the data of E[z|x] (active units, Burda et al. 2016)
    means = fit.encode(getattr(dataset, split)[:500], **({"labels": split_labels(dataset, split)[:500]}
                                                         if cond else {}))[0]
    size = means.shape[1]  # the latent that decode takes: the first layer's (fit.encode's contract)
    shown = [int(d) for d in np.argsort(-np.var(means, axis=0))[:min(size, 8)]]
    for dim in shown:
        z = np.zeros((len(steps), size))
        z[:, dim] = steps
        extra = {"labels": np.zeros(len(steps), np.int64)} if cond else {}
        rows.append(fit.decode(z, **extra))
    which = (f"all {size} latents" if len(shown) == size else
             f"the {len(shown)} of {size} latents that vary most over the data")
    files.append(plots.image_rows(rows, run_dir / "traversals.png", shape,
                                  row_names=[f"z[{d}]" for d in shown],
                                  title=f"{title(fit)}: latent traversals, -2.5 to 2.5, {which}"))
    if size == 2 and not cond:
        grid = np.stack(np.meshgrid(np.linspace(-2.5, 2.5, 12), np.linspace(2.5, -2.5, 12)), -1).reshape(-1, 2)
        decoded = fit.decode(grid)
        x_all = getattr(dataset, split)
        points = fit.encode(x_all)[0]
        files.append(plots.latent_map(points, split_labels(dataset, split), decoded.reshape((12, 12) + shape),
                                      run_dir / "latent_map.png", title=f"{title(fit)}: latent space"))
    return files


def format_number(value, digits: int = 4) -> str:
    """A number for printed tables: integers as they are, floats with ``digits`` decimals, "n/a" for None or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{value:.{digits}f}"


def format_table(rows: list, header: list) -> str:
    """A plain-text table of ``rows`` under ``header``, columns aligned."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ======================================================================================
# ppgen inspect
# ======================================================================================
def _default_vars(available: dict) -> list:
    for preferred in (("W_diag", "sigma"), ("sigma", "mu")):
        names = [n for n in preferred if n in available]
        if len(names) == len(preferred):
            return names
    by_size = sorted(available, key=lambda n: int(np.prod(np.shape(available[n])[2:] or (1,))))
    return by_size[:2]


INSPECT_EXAMPLES = 4  # examples whose q(z|x) draws a VAE-like fit's inspect shows


NETWORK_PREFIXES = ("encoder.", "decoder.", "denoiser.", "generator.", "discriminator.")


def point_estimate_table(params: dict, var_names=None):
    """A compact table of point estimates: one row per parameter (its shape, and its value when it
    is a scalar, else the mean, sd, min and max of its entries) and one row per network
    (``encoder``, ``decoder``, ...: its number of arrays and parameters, and its weights' spread).
    What ``ppgen inspect`` shows for closed-form, EM and SVI point estimates, GANs, AAEs and DDPMs."""
    import pandas as pd

    rows, networks = {}, {}
    for name, value in params.items():
        value = np.asarray(value, dtype=np.float64)
        prefix = next((p for p in NETWORK_PREFIXES if name.startswith(p)), None)
        if prefix is not None and not var_names:
            networks.setdefault(prefix[:-1], []).append(value.ravel())
            continue
        if var_names and name not in var_names:
            continue
        rows[name] = {"shape": "×".join(map(str, value.shape)) or "scalar", "size": int(value.size),
                      "mean": value.mean(), "sd": value.std() if value.size > 1 else np.nan,
                      "min": value.min(), "max": value.max()}
    for net, parts in networks.items():
        weights = np.concatenate(parts)
        rows[f"{net} (network)"] = {"shape": f"{len(parts)} arrays", "size": int(weights.size), "mean": weights.mean(),
                                    "sd": weights.std(), "min": weights.min(), "max": weights.max()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["shape", "size", "mean", "sd", "min", "max"])
    return table.round({"mean": 4, "sd": 4, "min": 4, "max": 4})


def inspect_fit(fit, x, folder: Path, var_names=None, num_predictive: int = 100, labels=None) -> tuple:
    """ArviZ summary table, plots and summary.csv of ``fit`` (for a point estimate: its compact
    table, and a mixture's components); returns (table, plot paths, names)."""
    from .. import arviz as ppaz
    from ..checkpoint import atomic_write_bytes

    if fit.posterior is None and not fit.model.supports("posterior_draws"):
        unknown = [n for n in (var_names or ()) if n not in fit.params]
        if unknown:
            raise ConfigError(f"this fit has no variable {unknown[0]!r}; it has {sorted(fit.params)}")
        table = point_estimate_table(fit.params, var_names)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        if fit.model.supports("covariances") and x is not None and np.asarray(x).reshape(len(x), -1).shape[1] >= 2:
            paths.append(_mixture_plot(fit, x, folder / "components.png"))
        csv = folder / "summary.csv"
        atomic_write_bytes(csv, table.to_csv().encode())
        return table, paths + [csv], list(table.index)
    if fit.model.supports("posterior_draws"):  # amortised latents: q(z|x) for a few examples
        x = np.asarray(x)[:INSPECT_EXAMPLES]
        labels = None if labels is None else np.asarray(labels)[:INSPECT_EXAMPLES]
        idata = fit.to_arviz(x=x, labels=labels, num_predictive=num_predictive)
        available = {name: None for name in idata.posterior.data_vars}
        names = list(var_names) if var_names else [fit.model.latent_site]
    else:
        available = fit.posterior if fit.posterior is not None else {k: np.asarray(v)[None, None]
                                                                   for k, v in fit.params.items()}
        names = list(var_names) if var_names else _default_vars(available)
        idata = None
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"this fit has no variable {unknown[0]!r}; it has {sorted(available)}")
    if idata is None:
        idata = fit.to_arviz(x=x, num_predictive=num_predictive)
    table = ppaz.summary(idata, var_names=names)
    paths = ppaz.save_plots(idata, folder, names)
    if fit.model.supports("covariances") and np.asarray(x).reshape(len(x), -1).shape[1] >= 2:
        paths.append(_mixture_plot(fit, x, folder / "components.png"))
    csv = folder / "summary.csv"
    atomic_write_bytes(csv, table.to_csv().encode())
    return table, paths + [csv], names


def _mixture_plot(fit, x, path: Path) -> Path:
    """The fitted components over the data (posterior means for a posterior), points coloured
    by their most probable component."""
    from .. import plots

    spec = fit.model
    if fit.posterior is None:
        point = fit.params
        covariances = spec.covariances(point)
    else:
        draws = {k: v.reshape((-1,) + v.shape[2:]) for k, v in fit.posterior.items()}
        keep = np.linspace(0, len(draws["weights"]) - 1, min(200, len(draws["weights"]))).astype(int)
        point = {k: draws[k].mean(0) for k in ("weights", "locs")}
        covariances = np.mean([spec.covariances({k: draws[k][i] for k in spec.param_names()}) for i in keep], 0)
    return plots.mixture(x, point["weights"], point["locs"], covariances, path, labels=fit.predict(x),
                         title=f"{title(fit)}: components")
