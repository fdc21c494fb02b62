"""Everything ppgen asks of ArviZ, in one module that works with arviz 0.x and 1.x.

arviz 0.x (Python 3.11 and older) returns ``InferenceData``; arviz 1.x (Python 3.12+) returns an
xarray ``DataTree`` and changed ``from_dict``'s signature. Nothing else in ppgen imports arviz.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np

__all__ = ["build", "summary", "loo", "compare", "save_plots", "ARVIZ_MAJOR"]


def _az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def _major() -> int:
    return int(_az().__version__.split(".")[0])


ARVIZ_MAJOR = None  # resolved lazily by _major()


def _dims_for(name: str, value: np.ndarray, sample_ndim: int, example_dim: bool) -> list:
    rest = value.ndim - sample_ndim
    if rest <= 0:
        return []
    if example_dim:
        return ["example"] + [f"{name}_dim_{i}" for i in range(rest - 1)]
    return [f"{name}_dim_{i}" for i in range(rest)]


def build(*, posterior: dict, sample_stats=None, log_likelihood=None, posterior_predictive=None,
          observed_data=None, prior=None, model_name: str = "model", dims: dict | None = None):
    """InferenceData/DataTree from numpy dicts; draws have leading (chain, draw) axes.

    ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` share an ``example``
    dimension so that ``az.loo`` and posterior predictive plots line up.
    """
    az = _az()
    groups = {"posterior": posterior}
    dims_for_groups = {k: _dims_for(k, np.asarray(v), 2, False) for k, v in posterior.items()}
    if prior:
        groups["prior"] = prior
    if sample_stats:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in sample_stats.items()}
    if log_likelihood:
        groups["log_likelihood"] = log_likelihood
        dims_for_groups.update({k: _dims_for(k, np.asarray(v), 2, True) for k, v in log_likelihood.items()})
    if posterior_predictive:
        groups["posterior_predictive"] = posterior_predictive
        dims_for_groups.update({k: _dims_for(k, np.asarray(v), 2, True) for k, v in posterior_predictive.items()})
    if observed_data:
        groups["observed_data"] = observed_data
        for k, v in observed_data.items():
            dims_for_groups.setdefault(k, _dims_for(k, np.asarray(v), 0, True))
    dims = {**dims_for_groups, **(dims or {})}  # caller-named dims win (e.g. a VAE's example, latent)
    params = inspect.signature(az.from_dict).parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "data" in params:  # arviz 1.x
            return az.from_dict(groups, dims=dims, attrs={"model": model_name})
        return az.from_dict(**groups, dims=dims, attrs={"model": model_name})


def summary(data, var_names=None):
    """ArviZ's summary table (mean, sd, HDI, ESS, R-hat) as a pandas DataFrame."""
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.summary(data, var_names=var_names)


def loo(data):
    """Pareto-smoothed importance-sampling LOO (ArviZ's ``loo``)."""
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(data, pointwise=True)


def compare(named: dict):
    """ArviZ's LOO comparison of several fits of the same data: a pandas DataFrame, best first,
    with ``elpd_loo`` (arviz 0.x) or ``elpd`` (arviz 1.x), its standard error ``se``, the
    difference to the best ``elpd_diff`` with its standard error ``dse``, and stacking weights."""
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if _major() >= 1:
            return az.compare(named)
        return az.compare(named, ic="loo")


def elpd_column(table) -> str:
    """The name of the expected-log-predictive-density column of a ``compare`` table."""
    return "elpd_loo" if "elpd_loo" in table.columns else "elpd"


def _pair_coords(posterior, names, limit: int = 4) -> dict:
    """Coordinates that keep a pair plot to about ``limit`` scalars per multi-dimensional variable."""
    coords = {}
    for name in names:
        for dim in posterior[name].dims[2:]:
            coords[dim] = list(range(min(limit, posterior[name].sizes[dim])))
            limit = 1  # later dimensions of the same variable: first entry only
    return coords


def save_plots(data, folder, var_names=None, max_vars: int = 6) -> list[Path]:
    """Trace, posterior, pair, (for several chains) rank and (with a posterior predictive group)
    posterior predictive plots of ``var_names`` as PNG files in ``folder``.

    Uses ``plot_trace``/``plot_posterior``/``plot_pair``/``plot_rank`` on arviz 0.x and
    ``plot_trace``/``plot_dist``/``plot_pair``/``plot_rank`` on arviz 1.x; a plot ArviZ cannot
    draw is reported and skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    az = _az()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    new_api = _major() >= 1
    posterior = data["posterior"] if new_api else data.posterior
    names = var_names or [v for v in posterior.data_vars if int(np.prod(posterior[v].shape[2:])) <= 64]
    names = list(names)[:max_vars]
    pair_names = names[:2]
    pair_coords = _pair_coords(posterior, pair_names)
    if new_api:
        plots = {"trace": lambda: az.plot_trace(data, var_names=names),
                 "posterior": lambda: az.plot_dist(data, var_names=names[:2]),
                 "pair": lambda: az.plot_pair(data, var_names=pair_names, coords=pair_coords),
                 "rank": lambda: az.plot_rank(data, var_names=names)}
    else:
        plots = {"trace": lambda: az.plot_trace(data, var_names=names, compact=True),
                 "posterior": lambda: az.plot_posterior(data, var_names=names[:2]),
                 "pair": lambda: az.plot_pair(data, var_names=pair_names, coords=pair_coords, kind="kde"),
                 "rank": lambda: az.plot_rank(data, var_names=names)}
    groups = data.children if new_api else data.groups()
    if "posterior_predictive" in groups and "observed_data" in groups:
        plots["ppc"] = (lambda: az.plot_ppc_dist(data)) if new_api else (lambda: az.plot_ppc(data, num_pp_samples=50))
    if posterior.sizes.get("chain", 1) < 2 or posterior.sizes.get("draw", 1) < 2:
        plots.pop("rank")  # ranks compare chains; a single chain or draw has none to compare
    out = []
    for kind, draw in plots.items():
        path = folder / f"{kind}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = draw()
                if hasattr(result, "savefig"):      # arviz 1.x plot collections
                    result.savefig(path)
                else:
                    figure = plt.gcf()
                    figure.tight_layout()  # keeps ArviZ's titles off the neighbouring axes
                    figure.savefig(path, dpi=80, bbox_inches="tight")
            except Exception as e:  # a plot that ArviZ cannot draw for these shapes is skipped
                print(f"ppgen: skipped the {kind} plot ({type(e).__name__}: {e})")
                continue
            finally:
                plt.close("all")
        out.append(path)
    return out
