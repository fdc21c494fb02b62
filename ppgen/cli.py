"""The ``ppgen`` command line: fit, sample, evaluate and inspect runs; list models; run a demo.

Every command works on run folders (what ``ppgen.fit(..., run_dir=...)`` and ``Fit.save`` write)
and prints plain text that reads well in a log. ``ppgen fit`` has one option per field of the
chosen model spec and inference class, generated from their type hints, so ``ppgen fit ppca
--inference nuts --help`` lists exactly what that pair accepts, with defaults.

Usage::

    ppgen fit MODEL [--data NAME] [--view VIEW] [--data-path PATH] [--inference NAME]
                    [--backend pyro|numpyro] [--device cpu] [--seed 0] [--out RUN_DIR]
                    [--progress | --no-progress] [one --option per model / inference field]
    ppgen sample RUN [-n 64] [--seed 0] [--out PATH]
    ppgen evaluate RUN [--split test|val|train] [--data NAME --view VIEW --data-path PATH]
    ppgen inspect RUN [--var NAME ...] [--data NAME --view VIEW --data-path PATH]
    ppgen compare MODEL --vary NAME=V1,V2,... [every option of ppgen fit]
    ppgen models
    ppgen demo [--out runs/demo] [--quick]

Errors ppgen raises on purpose (bad options, unreadable runs, missing files) are printed as
``ppgen: error: <message>`` with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Literal, get_args, get_origin

import numpy as np

from .errors import ConfigError, DataError, PPGenError

__all__ = ["main"]

SAMPLE_COUNT = 64
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


# ======================================================================================
# Entry point
# ======================================================================================
def main(argv=None) -> int:
    """Run the ``ppgen`` command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Example:
        >>> from ppgen.cli import main
        >>> main(["models"])
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except SystemExit as e:  # argparse after --help (0) or a usage error (2)
        return _exit_code(e.code)
    except (PPGenError, FileNotFoundError) as e:
        print(f"ppgen: error: {_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppgen: interrupted", file=sys.stderr)
        return 130


def _message(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"no such file or folder: {error.filename}"
    return str(error)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


class _Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions; keeps text with its own line breaks (examples) as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _formatter(prog):
    return _Formatter(prog, max_help_position=34)


def _commands() -> dict:
    return {
        "fit": ("fit a model to data and write a run folder", _cmd_fit),
        "sample": ("draw new examples from a run (PNG figure and .npy)", _cmd_sample),
        "evaluate": ("log-likelihood of a data split under a run; updates metrics.json", _cmd_evaluate),
        "inspect": ("ArviZ summary table and trace/posterior/pair plots of a run", _cmd_inspect),
        "compare": ("fit a model for several values of one option and rank the fits (LOO or BIC)",
                    _cmd_compare),
        "models": ("list model families, the inference that fits them, and backends", _cmd_models),
        "demo": ("the main families end to end: PPCA (closed form, NUTS), a VAE, a DDPM and GANs", _cmd_demo),
    }


def _top_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="ppgen", formatter_class=_formatter,
        description="Deep generative models as probabilistic programs (Pyro and NumPyro).",
        epilog="Run 'ppgen COMMAND --help' for the options of a command, e.g.\n"
               "  ppgen fit ppca --inference nuts --help")
    parser.add_argument("--version", action="version", version=f"ppgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (text, _) in _commands().items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _dispatch(argv: list) -> int:
    commands = _commands()
    if argv and argv[0] in commands:
        return commands[argv[0]][1](argv[1:])
    parser = _top_parser()
    parser.parse_args(argv)  # prints help or version, or refuses an unknown command, and exits
    parser.error(f"choose a command: {', '.join(commands)}")
    return 2


# ======================================================================================
# Options generated from Config fields
# ======================================================================================
def _special_choices() -> dict:
    """Fields typed loosely in Python (a callable is allowed) but plain choices on the CLI."""
    from ppgen.inference.em import INITS
    from ppgen.inference.svi import ELBOS

    return {("svi", "elbo"): tuple(ELBOS), ("em", "init_params"): tuple(INITS)}


def _arg_docs(cls) -> dict:
    """Field name -> its description from the ``Args:`` sections of the class's docstrings."""
    docs: dict = {}
    for klass in reversed(cls.__mro__):
        text = klass.__dict__.get("__doc__")
        if not text or "Args:" not in text:
            continue
        lines = inspect.cleandoc(text).splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
        base = len(lines[start]) - len(lines[start].lstrip())
        entry_indent, name = None, None
        for line in lines[start + 1:]:
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= base:
                break
            head, sep, rest = line.strip().partition(":")
            if entry_indent is None:
                entry_indent = indent
            if indent == entry_indent and sep and head.isidentifier():
                name = head
                docs[name] = rest.strip()
            elif name is not None:
                docs[name] += " " + line.strip()
    return docs


def _summary_line(cls) -> str:
    text = cls.__dict__.get("__doc__") or ""
    return inspect.cleandoc(text).splitlines()[0] if text.strip() else ""


def _converter(tp, optional: bool):
    def convert(text: str):
        if optional and text.strip().lower() == "none":
            return None
        if tp is str:
            return text
        if tp is tuple:  # "256,256" -> (256, 256)
            return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
        return tp(text)

    convert.__name__ = tp.__name__  # argparse says "invalid int value: 'x'"
    return convert


def _show_default(default, flag: str) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return flag if default else "--no-" + flag[2:]
    return str(default)


def _add_fields(parser, cls, kind: str, used: set) -> list:
    """One option per field of ``cls``; returns (dest, field name) pairs."""
    from ppgen.config import field_specs

    registry_name = cls.family if kind == "model" else cls.name
    title = f"{cls.__name__} options ({kind} '{registry_name}')"
    group = parser.add_argument_group(title, _summary_line(cls) or None)
    docs = _arg_docs(cls)
    special = _special_choices()
    added = []
    for name, tp, optional, default in field_specs(cls):
        flag = "--" + name.replace("_", "-")
        if flag in used:
            flag = f"--{kind}-{name.replace('_', '-')}"
        dest = f"{kind}:{name}"
        kwargs: dict = {"dest": dest, "default": argparse.SUPPRESS}
        choices = special.get((getattr(cls, "name", None), name))
        if choices is None and get_origin(tp) is Literal:
            choices = get_args(tp)
        if choices is not None:
            kinds = {type(c) for c in choices}
            kwargs["type"] = _converter(kinds.pop() if len(kinds) == 1 else str, optional)
            kwargs["choices"] = list(choices) + ([None] if optional else [])
            kwargs["metavar"] = "{" + ",".join(str(c) for c in choices) + (",none" if optional else "") + "}"
        elif tp is bool and not optional:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp in (int, float, str):
            kwargs["type"] = _converter(tp, optional)
            kwargs["metavar"] = tp.__name__.upper() + ("|none" if optional else "")
        elif tp is tuple:
            kwargs["type"] = _converter(tp, optional)
            kwargs["metavar"] = "INT,INT,..." + ("|none" if optional else "")
        else:
            continue  # not expressible as text (e.g. a function); set it from Python
        if default is dataclasses.MISSING:
            shown = "from the data" if name == "data_dim" else "required"
            kwargs["required"] = name != "data_dim"
        else:
            shown = _show_default(default, flag)
        text = docs.get(name, name.replace("_", " "))
        kwargs["help"] = f"{text.replace('``', '')} (default: {shown})".replace("%", "%%")
        group.add_argument(flag, **kwargs)
        used.add(flag)
        if kwargs.get("action") is argparse.BooleanOptionalAction:
            used.add("--no-" + flag[2:])
        added.append((dest, name))
    return added


def _add_data_options(parser, *, reload_note: bool) -> None:
    group = parser.add_argument_group("data")
    default = "the run's own data, reloaded" if reload_note else "digits"
    group.add_argument("--data", metavar="NAME", default=None if reload_note else "digits",
                       help=f"dataset name (digits, moons, ring, ..., mnist, cifar10, npz) or a .npz file "
                            f"(default: {default})")
    group.add_argument("--view", metavar="VIEW", default=None,
                       help="pixel view: unit, symmetric, binary, categorical (default: the dataset's)")
    group.add_argument("--data-path", metavar="PATH", default=None,
                       help="the file (npz) or folder (mnist, fashion-mnist, cifar10) to read")
    group.add_argument("--data-seed", metavar="INT", type=int, default=0,
                       help="seed of the generated 2-D toys (default: 0)")
    group.add_argument("--data-n", metavar="INT", type=int, default=None,
                       help="number of points of a generated 2-D toy (default: 3000)")


def _fit_parser(model_cls=None, inference_cls=None, add_help: bool = True):
    from .backends import BACKENDS
    from .registry import inference_classes, model_classes

    parser = argparse.ArgumentParser(
        prog="ppgen fit", add_help=add_help, allow_abbrev=False, formatter_class=_formatter,
        description="Fit MODEL to data and write a run folder: config.json, fit.safetensors,\n"
                    "history.json, samples.png, curves.png (when there is more than one step)\n"
                    "and metrics.json.",
        epilog="The model's and the inference's own options are listed when MODEL and --inference are\n"
               "given, e.g. 'ppgen fit ppca --inference nuts --help'. Options that may be None\n"
               "accept 'none'.\n\nExamples:\n"
               "  ppgen fit ppca --inference closed_form --latent-dim 8\n"
               "  ppgen fit ppca --inference nuts --num-samples 500 --backend numpyro\n"
               "  ppgen fit ppca --data npz --data-path my.npz --inference svi --steps 3000 --lr 0.01\n"
               "  ppgen fit gan --data ring --loss wgan-gp --steps 3000 --batch-size 256")
    parser.add_argument("model", metavar="MODEL", nargs=None if model_cls is not None else "?",
                        help=f"model family: {', '.join(sorted(model_classes()))}")
    _add_data_options(parser, reload_note=False)
    group = parser.add_argument_group("fitting")
    group.add_argument("--inference", metavar="NAME", default=None,
                       help=f"inference algorithm: {', '.join(inference_classes())} (default: adversarial for "
                            f"gan, cgan and aae, else svi)")
    group.add_argument("--backend", choices=list(BACKENDS), default="numpyro", help="(default: numpyro)")
    group.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    group.add_argument("--seed", type=int, default=0, help="seeds the fit and the samples (default: 0)")
    group.add_argument("--out", metavar="RUN_DIR", default=None,
                       help="run folder (default: runs/<model>-<inference>-<backend>)")
    group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show a progress bar on stderr (default: when stderr is a terminal)")
    group.add_argument("--eval-samples", metavar="INT", type=int, default=None,
                       help="importance samples per example for the log-likelihood of the VAE-like "
                            "families (default: 1000)")
    used = {s for action in parser._actions for s in action.option_strings}
    fields: list = []
    if model_cls is not None:
        fields += _add_fields(parser, model_cls, "model", used)
    if inference_cls is not None:
        fields += _add_fields(parser, inference_cls, "inference", used)
    return parser, fields


def _given_options(fields: list, values: dict) -> tuple[dict, dict]:
    """(model options, inference options) that were given on the command line."""
    given = [(dest.partition(":")[0], name, values[dest]) for dest, name in fields if dest in values]
    return ({n: v for kind, n, v in given if kind == "model"},
            {n: v for kind, n, v in given if kind == "inference"})


def _model_class(name: str):
    from .registry import model_classes, resolve_model

    classes = model_classes()
    key = name.lower().replace("-", "_")
    if key not in classes:
        resolve_model(name)  # raises the registry's "unknown model ... Did you mean ...?" error
        raise ConfigError(f"unknown model {name!r}; known models: {sorted(classes)}")
    return classes[key]


def _inference_class(name: str):
    from .registry import resolve_inference

    return type(resolve_inference(name))


# ======================================================================================
# Data
# ======================================================================================
def _load_data(name: str, view=None, path=None, seed: int = 0, n=None):
    from . import datasets

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


def _reload_data(meta: dict, run):
    """The data a run was fitted on, from the run's ``config['data']``."""
    from . import datasets

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


def _data_for_run(args, fit, run):
    if args.data is not None:
        return _load_data(args.data, args.view, args.data_path, args.data_seed, args.data_n)
    if args.view is not None or args.data_path is not None:
        raise ConfigError("--view and --data-path need --data NAME as well")
    return _reload_data(fit.config.get("data", {}), run)


def _data_label(meta: dict) -> str:
    name = meta.get("name", "data")
    return f"{name} ({meta['view']})" if meta.get("view") else str(name)


# ======================================================================================
# Shared pieces: samples, metrics, summaries
# ======================================================================================
class _Scored:
    """Stands in for a fit whose log-likelihoods are already computed (for ppgen.metrics)."""

    def __init__(self, values):
        self.values = values

    def log_likelihood(self, x):
        return self.values


def _split_metrics(fit, x, labels=None, num_samples=None) -> dict:
    """Mean log-likelihood per example (nats), its standard error, bits per dimension, count.

    For the amortised families the log-likelihood is importance-sampled with ``num_samples``
    (default 1000) encoder draws; a conditional family scores with the split's ``labels``."""
    from .metrics import bits_per_dim

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
    from .checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def _title(fit) -> str:
    return f"{type(fit.model).__name__}, {fit.inference.title}, {fit.backend}"


def _write_samples(fit, out, n: int, seed: int, reference=None, **options) -> tuple:
    """Draw ``n`` samples (``options`` go to the family's sampler); write ``out`` (PNG, when
    the data are images or 2-D points) and a .npy.

    Returns (png path or None, npy path)."""
    from . import plots

    out = Path(out)
    x = np.asarray(fit.sample(n, seed=seed, **options))
    npy = out.with_suffix(".npy")
    _save_npy(npy, x)
    meta = fit.config.get("data", {}) or {}
    shape = list(meta.get("shape") or x.shape[1:])
    if len(shape) in (2, 3):
        low, high = meta.get("low"), meta.get("high")
        shown = np.clip(x, low, high) if (low is not None or high is not None) else x
        return plots.image_grid(shown.reshape((n,) + tuple(shape)), out, title=_title(fit)), npy
    if shape == [2]:
        ref = None if reference is None else np.asarray(reference).reshape(-1, 2)
        return plots.scatter(x, out, reference=ref, title=_title(fit)), npy
    return None, npy


def _write_chain(fit, out: Path, seed: int, columns: int = 11, **options):
    """A diffusion model's chain from x_T (left) to x_0 (right) for one sample, as a strip of
    images (image data) or of scatter panels of 200 chains (2-D points); None otherwise."""
    from . import plots

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
        return plots.scatter_strip([chain[k] for k in keep], out, names, title=f"{_title(fit)}: the reverse chain")
    states = [np.clip(chain[k][0], -1.0, 1.0) if fit.model.likelihood == "discretized_gaussian" else chain[k][0]
              for k in keep]
    images = np.stack([fit.model.to_data(s) for s in states]).reshape((len(keep),) + shape)
    return plots.image_rows([images], out, shape, title=f"{_title(fit)}: one chain, x_T (left) to x_0 (right)")


_CURVES = ("loss", "log_likelihood")
_GAME_CURVES = ("generator_loss", "discriminator_loss", "penalty", "reconstruction")


def _has_curves(history) -> bool:
    return len(history) > 1 and any(isinstance(r, dict) and any(k in r for k in _CURVES + _GAME_CURVES)
                                    for r in history)


def _implicit(fit) -> bool:
    return fit.model.forms == ("implicit",)


def _sample_metrics(fit, x, labels, meta: dict, seed: int) -> dict:
    """How close samples are to a split ``x`` (implicit models have no likelihood): the energy
    distance, mode coverage on the Gaussian-mixture toys, and on the digits the classifier's
    Fréchet distance and, for a conditional model, its accuracy on the conditioning labels; for
    an AAE, the energy distance between its codes (the aggregated posterior) and the prior."""
    from . import metrics as pm

    x = np.asarray(x)
    n = min(len(x), 2000)
    out: dict = {"num_examples": int(len(x))}
    conditional = fit.model.conditional
    if fit.model.supports("prior_sample"):
        codes = fit.model.encode(fit.backend, fit.params, x[:n])
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
    from . import plots

    if fit.model.latent_dim != 2:
        return []
    split = "test" if dataset.test is not None else "train"
    x = getattr(dataset, split)
    codes = fit.model.encode(fit.backend, fit.params, x)
    prior = fit.model.prior_sample(max(len(x), 2000), seed)
    return [plots.aggregated_posterior(codes, prior, run_dir / "aggregated_posterior.png",
                                       labels=_split_labels(dataset, split),
                                       title=f"{_title(fit)}: codes of the {split} data over the prior")]


def _sample_count(fit) -> int:
    """How many samples a grid shows: for a conditional model, a square of its classes (one
    class per column), else SAMPLE_COUNT."""
    classes = getattr(fit.model, "num_classes", None) if fit.model.conditional else None
    return classes * classes if classes and classes <= 12 else SAMPLE_COUNT


def _split_labels(dataset, split: str):
    return getattr(dataset.labels, split) if dataset.labels is not None else None


def _after_fit(fit, dataset, run_dir: Path, seconds: float, seed: int,
               splits=("train", "val", "test"), num_samples=None) -> tuple:
    """samples.png/.npy, curves.png, metrics.json (and for the VAE-like families,
    reconstructions and latent figures) in ``run_dir``; returns (metrics, files)."""
    from . import plots
    from .checkpoint import write_json

    png, npy = _write_samples(fit, run_dir / "samples.png", _sample_count(fit), seed, reference=dataset.train)
    files = [p for p in (png, npy, _write_chain(fit, run_dir / "chain.png", seed)) if p is not None]
    if _has_curves(fit.history):
        files.append(plots.curves(fit.history, run_dir / "curves.png",
                                  keys=_GAME_CURVES if _implicit(fit) else _CURVES))
    if _implicit(fit) and fit.model.supports("prior_sample"):
        files += _aae_figure(fit, dataset, run_dir, seed)
    elif fit.model.supports("reconstruct"):
        files += _latent_figures(fit, dataset, run_dir, seed)
    metrics: dict = {"fit_seconds": seconds, "data": _data_label(dataset.meta)}
    for split in splits:
        x = getattr(dataset, split)
        if x is not None and _implicit(fit):
            metrics[split] = _sample_metrics(fit, x, _split_labels(dataset, split), dict(dataset.meta), seed)
        elif x is not None:
            metrics[split] = _split_metrics(fit, x, _split_labels(dataset, split), num_samples)
    write_json(run_dir / "metrics.json", metrics)
    files.append(run_dir / "metrics.json")
    return metrics, files


def _latent_figures(fit, dataset, run_dir: Path, seed: int) -> list:
    """Figures of a VAE-like fit: reconstructions of held-out images, latent traversals, and
    for a 2-D latent the latent map (decoded grid and encoded points coloured by label)."""
    from . import plots

    meta = fit.config.get("data", {}) or {}
    shape = tuple(meta.get("shape") or ())
    if len(shape) not in (2, 3):
        return []
    split = "test" if dataset.test is not None else "train"
    x, labels = getattr(dataset, split)[:16], _split_labels(dataset, split)
    labels = labels[:16] if labels is not None else None
    cond = {"labels": labels} if fit.model.conditional else {}
    files = [plots.image_rows([x, fit.reconstruct(x, seed=seed, **cond)], run_dir / "reconstructions.png",
                              shape, row_names=["data", "reconstruction"], title=f"{_title(fit)}: reconstructions")]
    size = fit.model._first_latent_dim
    steps = np.linspace(-2.5, 2.5, 9)
    rows = []
    # the most used latents first: the variance over the data of E[z|x] (active units, Burda et al. 2016)
    means = fit.encode(getattr(dataset, split)[:500], **({"labels": _split_labels(dataset, split)[:500]}
                                                         if cond else {}))[0]
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
                                  title=f"{_title(fit)}: latent traversals, -2.5 to 2.5, {which}"))
    if size == 2 and not cond:
        grid = np.stack(np.meshgrid(np.linspace(-2.5, 2.5, 12), np.linspace(2.5, -2.5, 12)), -1).reshape(-1, 2)
        decoded = fit.decode(grid)
        x_all = getattr(dataset, split)
        points = fit.encode(x_all)[0]
        files.append(plots.latent_map(points, _split_labels(dataset, split), decoded.reshape((12, 12) + shape),
                                      run_dir / "latent_map.png", title=f"{_title(fit)}: latent space"))
    return files


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{value:.{digits}f}"


def _table(rows: list, header: list) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _rel(path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ======================================================================================
# ppgen fit
# ======================================================================================
def _default_inference(model_cls) -> str:
    from .registry import default_inference

    return default_inference(model_cls)


def _cmd_fit(argv: list) -> int:
    import ppgen

    from .registry import resolve_inference, resolve_model

    first, _ = _fit_parser(add_help=False)[0].parse_known_args(argv)
    if first.model is None:
        parser, _ = _fit_parser()
        parser.parse_args(argv)  # prints the general help, or says MODEL is missing
        parser.error("the following arguments are required: MODEL")
    model_cls = _model_class(first.model)
    inference_cls = _inference_class(first.inference or _default_inference(model_cls))
    parser, fields = _fit_parser(model_cls, inference_cls)
    args = parser.parse_args(argv)
    values = vars(args)
    model_options, inference_options = _given_options(fields, values)

    dataset = _load_data(args.data, args.view, args.data_path, args.data_seed, args.data_n)
    spec = resolve_model(model_cls.family, data_dim=dataset.data_dim, meta=dataset.meta, **model_options)
    alg = resolve_inference(inference_cls.name, **inference_options)
    out = Path(args.out) if args.out else Path("runs") / f"{spec.family}-{alg.name}-{args.backend}"
    print(f"ppgen fit: {type(spec).__name__} on {_data_label(dataset.meta)} by {alg.title} "
          f"({args.backend}, {args.device}, seed {args.seed})", flush=True)
    start = time.perf_counter()
    fit = ppgen.fit(spec, dataset, alg, backend=args.backend, device=args.device, seed=args.seed,
                    run_dir=out, progress=args.progress)
    seconds = time.perf_counter() - start
    metrics, files = _after_fit(fit, dataset, out, seconds, args.seed, num_samples=args.eval_samples)
    print(f"run folder: {out}")
    for split in ("train", "val", "test"):
        if split in metrics and "log_likelihood" not in metrics[split]:
            shown = ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in metrics[split].items())
            print(f"{split + ':':26s}{shown}")
        elif split in metrics:
            m = metrics[split]
            print(f"{split + ' log-likelihood:':26s}{_fmt(m['log_likelihood'])} nats per example "
                  f"(+/- {_fmt(m['log_likelihood_se'])}, {m['num_examples']} examples)")
    print(f"{'time:':26s}{seconds:.1f} s")
    print("wrote: " + ", ".join(Path(f).name for f in files))
    return 0


# ======================================================================================
# ppgen compare
# ======================================================================================
def _parse_values(text: str, tp) -> list:
    """``"1,2,3"`` or ``"1..6"`` (integers, inclusive) as a list of ``tp`` values."""
    text = text.strip()
    if ".." in text and tp is int:
        low, _, high = text.partition("..")
        try:
            low, high = int(low), int(high)
        except ValueError:
            raise ConfigError(f"--vary range {text!r} must look like 1..6") from None
        if high < low:
            raise ConfigError(f"--vary range {text!r} is empty; write LOW..HIGH with LOW <= HIGH")
        return list(range(low, high + 1))
    values = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            values.append(tp(part) if tp in (int, float) else part)
        except ValueError:
            raise ConfigError(f"--vary value {part!r} is not a valid {tp.__name__}") from None
    return values


def _cmd_compare(argv: list) -> int:
    import ppgen

    from .checkpoint import atomic_write_bytes
    from .config import field_specs
    from .registry import resolve_inference, resolve_model

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--vary", default=None)
    known, rest = pre.parse_known_args(argv)
    first, _ = _fit_parser(add_help=False)[0].parse_known_args(rest)
    if first.model is None or known.vary is None:
        parser, _ = _fit_parser()
        parser.prog = "ppgen compare"
        parser.description = ("Fit MODEL once per value of one option (--vary NAME=V1,V2,... or NAME=LOW..HIGH), "
                              "write each run to OUT/NAME=VALUE/, and rank the fits: by ArviZ PSIS-LOO when the "
                              "inference gives posterior draws (nuts, hmc, svi with --guide normal), else by BIC "
                              "and AIC. The table is printed and written to OUT/comparison.csv.")
        parser.epilog = ("Examples:\n  ppgen compare gmm --data ring --vary num_components=1..6 --inference em\n"
                         "  ppgen compare gmm --data ring --vary num_components=1..6 --inference nuts "
                         "--num-samples 300")
        parser.parse_args(rest)
        parser.error("the following arguments are required: MODEL and --vary NAME=VALUES")
    name, sep, text = known.vary.partition("=")
    name = name.strip().replace("-", "_")
    model_cls = _model_class(first.model)
    inference_cls = _inference_class(first.inference or _default_inference(model_cls))
    types = {n: ("model", tp) for n, tp, _, _ in field_specs(model_cls)}
    types.update({n: ("inference", tp) for n, tp, _, _ in field_specs(inference_cls) if n not in types})
    if not sep or name not in types:
        from .config import suggest

        raise ConfigError(f"--vary {known.vary!r} must be NAME=VALUES with NAME an option of "
                          f"{model_cls.__name__} or {inference_cls.__name__}.{suggest(name, types)}")
    kind, tp = types[name]
    values = _parse_values(text, tp if tp in (int, float) else str)
    if len(values) < 2:
        raise ConfigError(f"--vary {known.vary!r} gives {len(values)} value(s); compare needs at least two")
    parser, fields = _fit_parser(model_cls, inference_cls)
    parser.prog = "ppgen compare"
    args = parser.parse_args(rest)
    chosen = vars(args)
    model_options, inference_options = _given_options(fields, chosen)
    dataset = _load_data(args.data, args.view, args.data_path, args.data_seed, args.data_n)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{model_cls.family}-{name}"
    print(f"ppgen compare: {model_cls.__name__} on {_data_label(dataset.meta)} by "
          f"{inference_cls.__name__} ({args.backend}), {name} in {values}", flush=True)
    fits, labels = [], []
    for value in values:
        options = dict(model_options if kind == "inference" else dict(model_options, **{name: value}))
        inf_options = dict(inference_options, **{name: value}) if kind == "inference" else inference_options
        spec = resolve_model(model_cls.family, data_dim=dataset.data_dim, **options)
        alg = resolve_inference(inference_cls.name, **inf_options)
        label = f"{name}={value}"
        start = time.perf_counter()
        fit = ppgen.fit(spec, dataset, alg, backend=args.backend, device=args.device, seed=args.seed,
                        run_dir=out / label, progress=args.progress)
        print(f"  {label}: fitted in {time.perf_counter() - start:.1f} s -> {out / label}", flush=True)
        fits.append(fit)
        labels.append(label)
    if all(f.posterior is not None for f in fits):
        table = ppgen.compare(fits, names=labels)
        print("ArviZ LOO comparison (best first; elpd_diff within dse of the best is a tie):")
    else:
        rows = [{"run": label, "log_likelihood": float(np.mean(f.log_likelihood(dataset.train))),
                 "bic": f.bic(), "aic": f.aic()} for label, f in zip(labels, fits)]
        import pandas as pd

        table = pd.DataFrame(rows).set_index("run").sort_values("bic")
        print("BIC and AIC on the training data (lower is better; best BIC first):")
    print(table.to_string())
    csv = out / "comparison.csv"
    atomic_write_bytes(csv, table.to_csv().encode())
    print(f"wrote {csv}")
    return 0


# ======================================================================================
# ppgen sample
# ======================================================================================
def _add_load_device(parser) -> None:
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: where the run was fitted if this machine has it, "
                             "else the best this machine has)")


def _cmd_sample(argv: list) -> int:
    import ppgen

    parser = argparse.ArgumentParser(
        prog="ppgen sample", formatter_class=_formatter,
        description="Draw new examples from a run. Images (data of shape HxW or CxHxW) become an "
                    "image grid, 2-D points a scatter plot over the training data; the raw samples "
                    "are saved next to the figure as a .npy file.")
    parser.add_argument("run", metavar="RUN", help="the run folder")
    parser.add_argument("-n", "--num", dest="n", type=int, default=SAMPLE_COUNT,
                        help=f"number of samples (default: {SAMPLE_COUNT})")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--out", metavar="PATH", default=None, help="the .png to write (default: RUN/samples.png)")
    _add_load_device(parser)
    diffusion = parser.add_argument_group("diffusion models (ddpm)")
    diffusion.add_argument("--sampler", choices=["ddpm", "ddim"], default=None,
                           help="ancestral sampling over all T steps, or DDIM (default: ddpm)")
    diffusion.add_argument("--steps", type=int, default=None, help="DDIM steps, dividing T (default: 50)")
    diffusion.add_argument("--eta", type=float, default=None, help="DDIM noise: 0 deterministic, 1 DDPM-like "
                                                                    "(default: 0)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"-n must be at least 1; got {args.n}")
    options = {k: v for k, v in (("sampler", args.sampler), ("steps", args.steps), ("eta", args.eta))
               if v is not None}
    run = Path(args.run)
    fit = ppgen.load(run, device=args.device)
    out = Path(args.out) if args.out else run / "samples.png"
    reference = None
    if list(fit.config.get("data", {}).get("shape") or []) == [2]:
        try:
            reference = _reload_data(fit.config["data"], run).train
        except (PPGenError, OSError):
            reference = None  # the scatter plot is still useful without the data behind it
    png, npy = _write_samples(fit, out, args.n, args.seed, reference=reference, **options)
    if png is None:
        shape = fit.config.get("data", {}).get("shape")
        print(f"no figure: examples of shape {shape} are neither images nor 2-D points")
    else:
        print(f"wrote {png}")
    chain = _write_chain(fit, out.with_name(out.stem + "_chain.png"), args.seed, **options)
    if chain is not None:
        print(f"wrote {chain} (the reverse chain of one sample)")
    print(f"wrote {npy} ({args.n} samples)")
    return 0


# ======================================================================================
# ppgen evaluate
# ======================================================================================
def _cmd_evaluate(argv: list) -> int:
    import ppgen

    from .checkpoint import read_json, write_json

    parser = argparse.ArgumentParser(
        prog="ppgen evaluate", formatter_class=_formatter,
        description="Mean log-likelihood per example (nats), its standard error, bits per dimension "
                    "and the number of examples of one data split; printed and merged into "
                    "RUN/metrics.json.")
    parser.add_argument("run", metavar="RUN", help="the run folder")
    parser.add_argument("--split", choices=["test", "val", "train"], default="test", help="(default: test)")
    parser.add_argument("--eval-samples", metavar="INT", type=int, default=None,
                        help="importance samples per example for the VAE-like families (default: 1000)")
    _add_load_device(parser)
    _add_data_options(parser, reload_note=True)
    args = parser.parse_args(argv)
    run = Path(args.run)
    fit = ppgen.load(run, device=args.device)
    dataset = _data_for_run(args, fit, run)
    x = dataset.split(args.split)
    if _implicit(fit):  # no likelihood: sample metrics
        result = dict(_sample_metrics(fit, x, _split_labels(dataset, args.split), dict(dataset.meta), 0),
                      data=_data_label(dataset.meta))
    else:
        result = dict(_split_metrics(fit, x, _split_labels(dataset, args.split), args.eval_samples),
                      data=_data_label(dataset.meta))
    path = run / "metrics.json"
    metrics = read_json(path) if path.exists() else {}
    if not isinstance(metrics, dict):
        metrics = {}
    metrics[args.split] = result
    write_json(path, metrics)
    print(f"run: {run}")
    print(f"data: {result['data']}, split {args.split} ({result['num_examples']} examples)")
    if _implicit(fit):
        for key, value in result.items():
            if key not in ("data", "num_examples"):
                print(f"{key.replace('_', ' ')}: {_fmt(value)}")
        print(f"wrote {path}")
        return 0
    print(f"log-likelihood: {_fmt(result['log_likelihood'])} nats per example "
          f"(standard error {_fmt(result['log_likelihood_se'])})")
    if result["bits_per_dim"] is None:
        print("bits per dimension: not reported (real-valued data: log p(x) is a density, not a probability)")
    else:
        print(f"bits per dimension: {_fmt(result['bits_per_dim'])}")
    print(f"wrote {path}")
    return 0


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


def _inspect(fit, x, folder: Path, var_names=None, num_predictive: int = 100, labels=None) -> tuple:
    """ArviZ summary table, plots and summary.csv of ``fit`` (for a point estimate: its compact
    table, and a mixture's components); returns (table, plot paths, names)."""
    from . import arviz as ppaz
    from .checkpoint import atomic_write_bytes

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
    from . import plots

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
                         title=f"{_title(fit)}: components")


def _cmd_inspect(argv: list) -> int:
    import ppgen

    parser = argparse.ArgumentParser(
        prog="ppgen inspect", formatter_class=_formatter,
        description="ArviZ summary (mean, sd, HDI, ESS, R-hat) of a run's parameters, and trace, "
                    "posterior, pair and (several chains) rank plots in RUN/plots/ (with summary.csv); "
                    "for a mixture, its components over the data (components.png: ellipses at 1 and 2 "
                    "standard deviations, a principal-component projection above 2-D). The run's "
                    "training data are reloaded to score the log-likelihood group.")
    parser.add_argument("run", metavar="RUN", help="the run folder")
    parser.add_argument("--var", dest="vars", metavar="NAME", action="extend", nargs="+", default=None,
                        help="variables to show (default: small ones, e.g. W_diag and sigma for PPCA)")
    _add_load_device(parser)
    _add_data_options(parser, reload_note=True)
    args = parser.parse_args(argv)
    run = Path(args.run)
    fit = ppgen.load(run, device=args.device)
    dataset = _data_for_run(args, fit, run)
    table, paths, _ = _inspect(fit, dataset.train, run / "plots", args.vars, labels=_split_labels(dataset, "train"))
    if fit.model.supports("posterior_draws"):
        print(f"q(z|x) for the first {INSPECT_EXAMPLES} training examples ({_title(fit)})")
    elif fit.posterior is None:
        hint = (" Fit with NUTS or HMC (or SVI with a posterior guide) for posterior plots."
                if "bayesian" in fit.model.forms else "")
        print(f"{fit.inference.title} gives a point estimate ({_title(fit)}): the parameters' values and spread, "
              f"networks by size.{hint}")
    else:
        chains, draws = next(iter(fit.posterior.values())).shape[:2]
        print(f"posterior: {chains} chain(s) x {draws} draws")
    print(table.to_string())
    for path in paths:
        print(f"wrote {path}")
    return 0


# ======================================================================================
# ppgen models
# ======================================================================================
def _cmd_models(argv: list) -> int:
    from .registry import support_table

    parser = argparse.ArgumentParser(prog="ppgen models", formatter_class=_formatter,
                                     description="Model families, the inference that fits each, and backends.")
    parser.parse_args(argv)
    print(_table([list(r) for r in support_table()], ["family", "inference", "backends"]))
    return 0


# ======================================================================================
# ppgen demo
# ======================================================================================
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

    from . import datasets
    from .inference import SVI
    from .models import VAE

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
    metrics, files = _after_fit(fit, data, run_dir, seconds, seed, splits=("val", "test"), num_samples=samples)
    stages.end(f"test NLL {_fmt(-metrics['test']['log_likelihood'], 2)} nats per image")
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

    from . import datasets
    from . import metrics as ppmetrics
    from .inference import SVI
    from .models import DDPM

    data = datasets.load("digits", view="categorical")
    spec = DDPM(data.data_dim, likelihood="discretized_gaussian", num_levels=17)
    steps = DEMO_QUICK_DDPM_STEPS if quick else DEMO_DDPM_STEPS
    svi = SVI(elbo="simple", steps=steps, batch_size=256, lr=2e-3, lr_decay=0.05, ema=0.999)
    stages.start(f"fit DDPM(T={spec.timesteps}, MLP {spec.hidden_dims}) to digits (17 levels) by the simple loss, "
                 f"{steps} steps, pyro")
    fit = ppgen.fit(spec, data, svi, backend="pyro", seed=seed, run_dir=run_dir, progress=False)
    seconds = stages.end(f"run folder {run_dir}")
    stages.start("samples (ancestral, 1000 steps), one reverse chain, test variational bound")
    metrics, files = _after_fit(fit, data, run_dir, seconds, seed, splits=("test",))
    stages.end(f"test bound {_fmt(-metrics['test']['log_likelihood'], 2)} nats per image")
    stages.start("Fréchet distance of 1000 DDIM-50 samples to the test images (shipped digits classifier)")
    frechet = ppmetrics.digits_frechet_distance(fit.sample(1000, seed=seed, sampler="ddim", steps=50), data.test)
    reference = ppmetrics.digits_frechet_distance(data.train, data.test)
    stages.end(f"{_fmt(frechet, 2)} (train vs test: {_fmt(reference, 2)})")
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

    from . import datasets
    from . import metrics as ppmetrics
    from .inference import Adversarial
    from .models import CGAN, GAN

    toy = datasets.load("ring", n=20000)
    spec = GAN(2, latent_dim=2, hidden_dims=(128, 128, 128), output="identity")
    steps = DEMO_QUICK_GAN_STEPS if quick else DEMO_GAN_TOY_STEPS
    alg = Adversarial(loss="wgan-gp", gradient_penalty=TOY_GRADIENT_PENALTY, steps=steps, batch_size=128,
                      ema=0.999, **TOY_ANNEALED)
    stages.start(f"fit GAN (MLP 3x128) to the ring of 8 Gaussians by WGAN-GP (k=5, λ={TOY_GRADIENT_PENALTY}, "
                 f"lr 1e-3 annealed to 1e-4), {steps} steps, numpyro")
    fit = ppgen.fit(spec, toy, alg, backend="numpyro", seed=seed, run_dir=out / "gan_ring", progress=False)
    seconds = stages.end(f"run folder {out / 'gan_ring'}")
    metrics, files = _after_fit(fit, toy, out / "gan_ring", seconds, seed, splits=("test",))
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
    cmetrics, cfiles = _after_fit(cfit, digits, out / "cgan_digits", cseconds, seed, splits=("test",))
    stages.end(f"accuracy {accuracy.overall:.3f} (worst label {np.nanmin(accuracy.per_class):.2f}), "
               f"Fréchet {_fmt(frechet, 2)}")
    cgan = {"run_dir": str(out / "cgan_digits"), "model": cspec.to_config(), "inference": cfit.inference.to_config(),
            "fit_seconds": cseconds, "conditional_accuracy": accuracy.overall,
            "worst_label_accuracy": float(np.nanmin(accuracy.per_class)), "frechet": frechet,
            "files": [str(f) for f in cfiles]}
    return {"gan_ring": ring, "cgan_digits": cgan}


def _cmd_demo(argv: list) -> int:
    import ppgen

    from . import datasets
    from .checkpoint import write_json
    from .inference import NUTS, ClosedForm
    from .models import PPCA

    parser = argparse.ArgumentParser(
        prog="ppgen demo", formatter_class=_formatter,
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
        metrics, files = _after_fit(fit, data, run_dir, seconds, args.seed, splits=("val", "test"))
        stages.end(f"test log-likelihood {_fmt(metrics['test']['log_likelihood'])} nats per example")
        entry = {"run_dir": str(run_dir), "inference": alg.to_config(), "fit_seconds": seconds,
                 "test_log_likelihood": metrics["test"]["log_likelihood"],
                 "test_log_likelihood_se": metrics["test"]["log_likelihood_se"],
                 "val_log_likelihood": metrics["val"]["log_likelihood"],
                 "test_bits_per_dim": metrics["test"]["bits_per_dim"],
                 "files": [str(f) for f in files]}
        if fit.sample_stats is not None:
            entry["divergences"] = int(np.sum(fit.sample_stats["diverging"]))
            stages.start("ArviZ summary and trace/posterior/pair plots of W_diag, sigma")
            table, paths, _ = _inspect(fit, None, run_dir / "plots", ["W_diag", "sigma"], num_predictive=20)
            entry["max_r_hat"] = float(table["r_hat"].max()) if "r_hat" in table else None
            entry["min_ess_bulk"] = float(table["ess_bulk"].min()) if "ess_bulk" in table else None
            entry["files"] += [str(p) for p in paths]
            stages.end(f"R-hat at most {_fmt(entry['max_r_hat'], 3)}, bulk ESS at least "
                       f"{_fmt(entry['min_ess_bulk'], 0)}; plots in {run_dir / 'plots'}")
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
        rows.append([key, _fmt(entry["test_log_likelihood"], 3), _fmt(entry["test_log_likelihood_se"], 3),
                     _fmt(entry["val_log_likelihood"], 3), f"{entry['fit_seconds']:.1f}",
                     str(entry.get("divergences", "-"))])
    print()
    print("PPCA(latent_dim=8) on digits, log-likelihood in nats per example (higher is better):")
    print(_table(rows, ["method", "test", "+/- se", "val", "fit seconds", "divergences"]))
    vae = report["runs"]["vae"]
    print(f"\nVAE on digits (17-level categorical): test NLL {_fmt(-vae['test_log_likelihood'], 2)} nats per image "
          f"(importance sampling, {vae['eval_samples']} samples), {vae['epochs']} epochs in "
          f"{vae['fit_seconds']:.1f} s; "
          f"grids in {vae['run_dir']}")
    ddpm = report["runs"]["ddpm"]
    print(f"DDPM on digits (discretised 17 levels): test bound {_fmt(-ddpm['test_log_likelihood'], 2)} nats per image "
          f"({_fmt(ddpm['test_bits_per_dim'], 3)} bits/dim), Fréchet(DDIM-50 samples, test) "
          f"{_fmt(ddpm['frechet_ddim50'], 2)} (train vs test {_fmt(ddpm['frechet_train_test'], 2)}), "
          f"{ddpm['steps']} steps in {ddpm['fit_seconds']:.1f} s; samples and chain in {ddpm['run_dir']}")
    ring, cgan = report["runs"]["gan_ring"], report["runs"]["cgan_digits"]
    print(f"GAN on the ring of 8 Gaussians (WGAN-GP): {ring['modes_covered']}/{ring['num_modes']} modes, "
          f"{100 * ring['high_quality']:.1f}% high-quality samples; conditional GAN on digits: "
          f"{100 * cgan['conditional_accuracy']:.1f}% of samples classified as their label (worst label "
          f"{100 * cgan['worst_label_accuracy']:.0f}%), Fréchet {_fmt(cgan['frechet'], 2)}")
    print(f"\nwrote {out / 'report.json'} (total {report['total_seconds']:.1f} s)")
    return 0
