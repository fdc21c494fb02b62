"""Everything ppgen asks of ArviZ, in one module that works with arviz 0.x and 1.x.

arviz 0.x (Python 3.11 and older) returns ``InferenceData``; arviz 1.x (Python 3.12+) returns an
xarray ``DataTree``, moved its statistics to arviz-stats (other names for the LOO fields, an
equal-tailed interval in ``summary``) and its plots to arviz-plots (plot collections instead of
axes). Nothing else in ppgen imports arviz, and what this module returns has one shape on both:

- :func:`build` makes the data object from numpy dicts; :func:`groups` and :func:`group` read it;
- :func:`summary` is a table with the same columns (``mean``, ``sd``, ``hdi_3%``, ``hdi_97%``,
  ``mcse_mean``, ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``) and the same rounding;
- :func:`loo` is a :class:`LOO` named tuple; :func:`compare` a table with the columns
  :data:`COMPARE_COLUMNS`;
- :func:`plot_trace` returns a matplotlib figure; :func:`save_plots` writes PNG files.

The module needs numpy, arviz and matplotlib only (no torch, no jax), so its tests run in a small
environment with arviz 1.x (``.ci/arviz1``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

__all__ = ["build", "groups", "group", "summary", "LOO", "loo", "compare", "COMPARE_COLUMNS", "SUMMARY_COLUMNS",
           "plot_trace", "save_plots", "arviz_major"]

#: the columns of :func:`summary` (``kind="all"``), in order, on both arviz versions
SUMMARY_COLUMNS = ("mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")
#: the columns of :func:`compare`, in order, on both arviz versions
COMPARE_COLUMNS = ("rank", "elpd", "se", "p", "elpd_diff", "dse", "weight", "warning")


def _az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz 0.23 announces the 1.0 refactor on import
        import arviz

    return arviz


def arviz_major() -> int:
    """The installed arviz's major version (0 or 1)."""
    return int(_az().__version__.split(".")[0])


def _dims_for(name: str, value: np.ndarray, sample_ndim: int, example_dim: bool) -> list:
    rest = value.ndim - sample_ndim
    if rest <= 0:
        return []
    if example_dim:
        return ["example"] + [f"{name}_dim_{i}" for i in range(rest - 1)]
    return [f"{name}_dim_{i}" for i in range(rest)]


def build(*, posterior: dict, sample_stats=None, log_likelihood=None, posterior_predictive=None,
          observed_data=None, prior=None, model_name: str = "model", dims: dict | None = None):
    """InferenceData (arviz 0.x) or DataTree (arviz 1.x) from numpy dicts; draws have leading
    (chain, draw) axes.

    ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` share an ``example``
    dimension so that LOO and posterior predictive plots line up.
    """
    az = _az()
    parts = {"posterior": posterior}
    dims_for_groups = {k: _dims_for(k, np.asarray(v), 2, False) for k, v in posterior.items()}
    if prior:
        parts["prior"] = prior
    if sample_stats:
        parts["sample_stats"] = {k: np.asarray(v) for k, v in sample_stats.items()}
    if log_likelihood:
        parts["log_likelihood"] = log_likelihood
        dims_for_groups.update({k: _dims_for(k, np.asarray(v), 2, True) for k, v in log_likelihood.items()})
    if posterior_predictive:
        parts["posterior_predictive"] = posterior_predictive
        dims_for_groups.update({k: _dims_for(k, np.asarray(v), 2, True) for k, v in posterior_predictive.items()})
    if observed_data:
        parts["observed_data"] = observed_data
        for k, v in observed_data.items():
            dims_for_groups.setdefault(k, _dims_for(k, np.asarray(v), 0, True))
    dims = {**dims_for_groups, **(dims or {})}  # caller-named dims win (e.g. a VAE's example, latent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arviz_major() >= 1:
            return az.from_dict(parts, dims=dims, attrs={"model": model_name})
        return az.from_dict(**parts, dims=dims, attrs={"model": model_name})


def groups(data) -> list[str]:
    """The names of the groups of ``data`` (``posterior``, ``log_likelihood``, ...)."""
    if hasattr(data, "children"):  # DataTree
        return list(data.children)
    return list(data.groups())


def group(data, name: str):
    """One group of ``data`` as an ``xarray.Dataset``."""
    if name not in groups(data):
        raise KeyError(f"no group {name!r} in this ArviZ data; its groups are {groups(data)}")
    if hasattr(data, "children"):
        return data[name].to_dataset()
    return getattr(data, name)


# ---- statistics ------------------------------------------------------------------------
def summary(data, var_names=None, *, group: str = "posterior", kind: str = "all"):
    """ArviZ's summary table as a pandas DataFrame, with the same columns on both arviz versions.

    ``kind="all"``: ``mean``, ``sd``, ``hdi_3%``, ``hdi_97%`` (the 94% highest-density interval),
    ``mcse_mean``, ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``; ``kind="stats"``: the
    first four; ``kind="diagnostics"``: the last five. Means, deviations and intervals are
    rounded to 3 decimals, effective sample sizes to integers, R-hat to 2 decimals.
    """
    if kind not in ("all", "stats", "diagnostics"):
        raise ValueError(f"kind={kind!r}; use 'all', 'stats' or 'diagnostics'")
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arviz_major() >= 1:
            table = az.summary(data, var_names=var_names, group=group, kind="all", ci_kind="hdi", ci_prob=0.94,
                               round_to="none")
            table = table.rename(columns={"hdi94_lb": "hdi_3%", "hdi94_ub": "hdi_97%"})
        else:
            table = az.summary(data, var_names=var_names, group=group, kind="all", hdi_prob=0.94,
                               round_to="none")
    table = table[list(SUMMARY_COLUMNS)].astype(float)
    for column in ("mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "mcse_sd"):
        table[column] = table[column].round(3)
    for column in ("ess_bulk", "ess_tail"):
        table[column] = table[column].round(0)
    table["r_hat"] = table["r_hat"].round(2)
    if kind == "stats":
        return table[list(SUMMARY_COLUMNS[:4])]
    if kind == "diagnostics":
        return table[list(SUMMARY_COLUMNS[4:])]
    return table


class LOO(NamedTuple):
    """Pareto-smoothed importance-sampling leave-one-out cross-validation (Vehtari et al. 2017).

    Attributes:
        elpd: the estimated expected log pointwise predictive density, Σ_n log p(x_n | x_{-n}).
        se: its standard error √(N·V), V the sample variance of the pointwise terms.
        p: the effective number of parameters (the training score minus ``elpd``).
        elpd_pointwise: the per-example terms, shape (N,).
        pareto_k: the Pareto shape estimate of each example's importance weights, shape (N,);
            above ``good_k`` the example's term cannot be trusted.
        good_k: the threshold for ``pareto_k`` at this number of draws (0.7 or less).
        warning: whether some ``pareto_k`` lie above ``good_k``.
        num_draws: posterior draws used.
        num_examples: examples scored.
    """

    elpd: float
    se: float
    p: float
    elpd_pointwise: np.ndarray
    pareto_k: np.ndarray
    good_k: float
    warning: bool
    num_draws: int
    num_examples: int


def _raw_loo(data):
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(data, pointwise=True)


def _as_loo(raw) -> LOO:
    if arviz_major() >= 1:
        elpd, p = raw.elpd, raw.p
        pointwise, draws, examples = raw.elpd_i, raw.n_samples, raw.n_data_points
    else:
        elpd, p = raw["elpd_loo"], raw["p_loo"]
        pointwise, draws, examples = raw["loo_i"], raw["n_samples"], raw["n_data_points"]
    good_k = float(getattr(raw, "good_k", None) or min(1 - 1 / math.log10(draws), 0.7))
    pareto_k = np.asarray(getattr(raw, "pareto_k"), dtype=np.float64).ravel()
    pointwise = np.asarray(pointwise, dtype=np.float64).ravel()
    # the standard error √(N·V), V the sample variance of the terms (Vehtari et al. 2017, eq. 23);
    # arviz 0.x divides V by N instead of N − 1
    se = math.sqrt(pointwise.size * np.var(pointwise, ddof=1)) if pointwise.size > 1 else float("nan")
    return LOO(elpd=float(elpd), se=float(se), p=float(p), elpd_pointwise=pointwise, pareto_k=pareto_k, good_k=good_k,
               warning=bool(np.any(pareto_k > good_k)), num_draws=int(draws), num_examples=int(examples))


def loo(data) -> LOO:
    """PSIS-LOO of ``data`` (which needs a ``log_likelihood`` group) as a :class:`LOO`.

    Example:
        >>> result = ppgen.arviz.loo(fit.to_arviz())
        >>> result.elpd, result.se, (result.pareto_k > result.good_k).mean()
    """
    return _as_loo(_raw_loo(data))


def compare(named: dict):
    """PSIS-LOO comparison of several fits of the same data: a pandas DataFrame, best first, with
    the columns :data:`COMPARE_COLUMNS`: ``rank``, ``elpd`` and its standard error ``se``, the
    effective number of parameters ``p``, how far each lies below the best, ``elpd_diff`` (0 for
    the best, positive for the others, on both arviz versions) with its standard error ``dse``, the stacking ``weight``, and ``warning`` (some Pareto k too high)."""
    az = _az()
    raws = {name: _raw_loo(data) for name, data in named.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arviz_major() >= 1:
            table = az.compare(raws, round_to="none") if "round_to" in _parameters(az.compare) else az.compare(raws)
        else:
            table = az.compare(raws, ic="loo")
    table = table.rename(columns={"elpd_loo": "elpd", "p_loo": "p"})
    results = {name: _as_loo(raw) for name, raw in raws.items()}
    table["warning"] = [results[name].warning for name in table.index]
    table["se"] = [results[name].se for name in table.index]
    # how far below the best, a non-negative number (arviz 1.x reports it with the opposite sign)
    table["elpd_diff"] = float(table["elpd"].max()) - table["elpd"].astype(float)
    table["rank"] = table["rank"].astype(int)
    for column in ("elpd", "se", "p", "elpd_diff", "dse", "weight"):
        table[column] = table[column].astype(float)
    return table[list(COMPARE_COLUMNS)]


def _parameters(fn) -> set:
    import inspect

    return set(inspect.signature(fn).parameters)


# ---- plots -----------------------------------------------------------------------------
def _figure_of(result):
    """The matplotlib figure behind what an arviz plot returned (axes, an array of them, or an
    arviz 1.x plot collection)."""
    import matplotlib.pyplot as plt

    if hasattr(result, "viz"):  # arviz-plots PlotCollection
        return result.viz["figure"].item()
    if isinstance(result, np.ndarray):
        return result.ravel()[0].figure
    if hasattr(result, "figure"):
        return result.figure
    return plt.gcf()


def plot_trace(data, var_names=None, *, figsize: Optional[tuple] = None):
    """Marginal densities (left) and traces (right) of ``var_names``, one row per variable, the
    chains overlaid; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arviz_major() >= 1:
            result = az.plot_trace_dist(data, var_names=var_names, compact=True,
                                        figure_kwargs={"figsize": figsize} if figsize else {})
        else:
            result = az.plot_trace(data, var_names=var_names, compact=True, figsize=figsize)
    figure = _figure_of(result)
    figure.tight_layout()
    plt.figure(figure.number)  # the current figure, for plt.show() in notebooks
    return figure


def _pair_coords(posterior, names, limit: int = 4) -> dict:
    """Coordinates that keep a pair plot to about ``limit`` scalars per multi-dimensional variable."""
    coords = {}
    for name in names:
        for dim in posterior[name].dims[2:]:
            coords[dim] = list(range(min(limit, posterior[name].sizes[dim])))
            limit = 1  # later dimensions of the same variable: first entry only
    return coords


def save_plots(data, folder, var_names=None, max_vars: int = 6) -> list[Path]:
    """Trace, posterior, (for two or more scalars) pair, (for several chains) rank and (with a
    posterior predictive group) posterior predictive plots of ``var_names`` as PNG files in ``folder``.

    Uses ``plot_trace``/``plot_posterior``/``plot_pair``/``plot_rank``/``plot_ppc`` on arviz 0.x
    and ``plot_trace_dist``/``plot_dist``/``plot_pair``/``plot_rank``/``plot_ppc_dist`` on arviz
    1.x; every figure gets a tight layout. A plot that ArviZ cannot draw for these shapes is
    reported and skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    az = _az()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    new_api = arviz_major() >= 1
    posterior = group(data, "posterior")
    names = var_names or [v for v in posterior.data_vars if int(np.prod(posterior[v].shape[2:])) <= 64]
    names = list(names)[:max_vars]
    pair_names = names[:2]
    pair_coords = _pair_coords(posterior, pair_names)
    pair_scalars = sum(int(np.prod([len(pair_coords.get(d, range(posterior[n].sizes[d]))) for d in posterior[n].dims[2:]]))
                       for n in pair_names)
    if new_api:
        plots = {"trace": lambda: az.plot_trace_dist(data, var_names=names, compact=True),
                 "posterior": lambda: az.plot_dist(data, var_names=names[:2]),
                 "pair": lambda: az.plot_pair(data, var_names=pair_names, coords=pair_coords),
                 "rank": lambda: az.plot_rank(data, var_names=names)}
    else:
        plots = {"trace": lambda: az.plot_trace(data, var_names=names, compact=True),
                 "posterior": lambda: az.plot_posterior(data, var_names=names[:2]),
                 "pair": lambda: az.plot_pair(data, var_names=pair_names, coords=pair_coords, kind="kde"),
                 "rank": lambda: az.plot_rank(data, var_names=names)}
    present = groups(data)
    if "posterior_predictive" in present and "observed_data" in present:
        predictive = group(data, "posterior_predictive")
        replicas = int(predictive.sizes.get("chain", 1) * predictive.sizes.get("draw", 1))
        shown = min(50, replicas)  # arviz 0.x refuses more curves than there are replicated data sets
        plots["ppc"] = ((lambda: az.plot_ppc_dist(data, num_samples=shown)) if new_api
                        else (lambda: az.plot_ppc(data, num_pp_samples=shown)))
    if pair_scalars < 2:
        plots.pop("pair")  # a pair plot needs two scalars to set against each other
    if posterior.sizes.get("chain", 1) < 2 or posterior.sizes.get("draw", 1) < 2:
        plots.pop("rank")  # ranks compare chains; a single chain or draw has none to compare
    out = []
    for kind, draw in plots.items():
        path = folder / f"{kind}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                figure = _figure_of(draw())
                figure.tight_layout()  # keeps the titles off the neighbouring axes
                figure.savefig(path, dpi=80, bbox_inches="tight")
            except Exception as e:  # a plot that ArviZ cannot draw for these shapes is skipped
                print(f"ppgen: skipped the {kind} plot ({type(e).__name__}: {e})")
                continue
            finally:
                plt.close("all")
        out.append(path)
    return out
