"""The data a command names (``--data``, ``--view``, ``--data-path``), or the data a run was fitted on."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, DataError

__all__ = ["load_data", "reload_data", "data_for_run", "data_label", "split_labels"]


def load_data(name: str, view=None, path=None, seed: int = 0, n=None):
    """The dataset ``name`` (a path ending in .npz is read as one); ``seed`` and ``n`` shape the 2-D toys."""
    from .. import datasets

    if path is not None:
        path = str(Path(path).expanduser().resolve())
    elif name.lower().endswith(".npz") or (os.path.sep in name and os.path.exists(name)):
        name, path = "npz", str(Path(name).expanduser().resolve())
    kwargs = {"view": view, "path": path}
    toys = {"moons", "swiss_roll", "ring", "grid", "pinwheel"}
    if name.strip().lower().replace("-", "_") in toys:
        kwargs.update(seed=seed, n=n)
    elif n is not None:
        raise ConfigError(f"--data-n only applies to the generated 2-D toys {sorted(toys)}, not {name!r}")
    return datasets.load(name, **kwargs)


def reload_data(meta: dict, run):
    """The data a run was fitted on, from the run's ``config['data']``."""
    from .. import datasets

    name, source = meta.get("name"), meta.get("source")
    if not name or name == "arrays" or source == "arrays":
        raise DataError(f"the run in {run} was fitted on arrays passed from Python, which a run folder "
                        f"does not keep; pass the data with --data NAME (and --data-path PATH, --view VIEW)")
    kwargs: dict = {}
    if meta.get("view") is not None:
        kwargs["view"] = meta["view"]
    if source == "generated":
        kwargs.update(seed=meta.get("seed", 0), n=meta.get("n"), noise=meta.get("noise"))
    elif source not in (None, "scikit-learn"):
        kwargs["path"] = source
    data = datasets.load(name, **kwargs)
    if meta.get("shape") is not None and list(data.shape) != list(meta["shape"]):
        raise DataError(f"reloading {name!r} for {run} gave examples of shape {list(data.shape)}, but the "
                        f"run was fitted on shape {meta['shape']}; pass the right data with --data")
    return data


def data_for_run(args, fit, run):
    """The data named on the command line, else the data the run was fitted on, reloaded."""
    if args.data is not None:
        return load_data(args.data, args.view, args.data_path, args.data_seed, args.data_n)
    if args.view is not None or args.data_path is not None:
        raise ConfigError("--view and --data-path need --data NAME as well")
    return reload_data(fit.config.get("data", {}), run)


def data_label(meta: dict) -> str:
    """"digits (unit)": a dataset's name and view, for printed lines."""
    name = meta.get("name", "data")
    return f"{name} ({meta['view']})" if meta.get("view") else str(name)


def split_labels(dataset, split: str):
    """The labels of ``split`` ("train", "val" or "test"), or None when the data have none."""
    return getattr(dataset.labels, split) if dataset.labels is not None else None
