"""The command line's options, generated from the config dataclasses.

``ppgen fit`` has one option per field of the chosen model spec and inference class: the type
hints give the option's type and choices (``Literal``), the defaults its default, and the
``Args:`` sections of the classes' docstrings its help.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from typing import Literal, get_args, get_origin

from ..errors import ConfigError

__all__ = ["formatter", "add_data_options", "add_load_device", "fit_parser", "given_options", "model_class",
           "inference_class"]


class _Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions; keeps text with its own line breaks (examples) as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def formatter(prog):
    """The help formatter of every ppgen command (wide option column; examples kept as written)."""
    return _Formatter(prog, max_help_position=34)


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


def add_data_options(parser, *, reload_note: bool) -> None:
    """The data options (--data, --view, --data-path, --data-seed, --data-n); ``reload_note``: the
    default is the run's own data, reloaded (evaluate, inspect), instead of the digits."""
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


def fit_parser(model_cls=None, inference_cls=None, add_help: bool = True):
    """The parser of ``ppgen fit`` with one option per field of ``model_cls`` and ``inference_cls``
    (when given); returns (parser, the (dest, field name) pairs of those options)."""
    from ..backends import BACKENDS
    from ..registry import inference_classes, model_classes

    parser = argparse.ArgumentParser(
        prog="ppgen fit", add_help=add_help, allow_abbrev=False, formatter_class=formatter,
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
    add_data_options(parser, reload_note=False)
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


def given_options(fields: list, values: dict) -> tuple[dict, dict]:
    """(model options, inference options) that were given on the command line."""
    given = [(dest.partition(":")[0], name, values[dest]) for dest, name in fields if dest in values]
    return ({n: v for kind, n, v in given if kind == "model"},
            {n: v for kind, n, v in given if kind == "inference"})


def model_class(name: str):
    """The spec class of the family ``name``; an unknown name is refused with the registry's suggestion."""
    from ..registry import model_classes, resolve_model

    classes = model_classes()
    key = name.lower().replace("-", "_")
    if key not in classes:
        resolve_model(name)  # raises the registry's "unknown model ... Did you mean ...?" error
        raise ConfigError(f"unknown model {name!r}; known models: {sorted(classes)}")
    return classes[key]


def inference_class(name: str):
    """The inference class of ``name`` (a name or a shorthand such as "nuts")."""
    from ..registry import resolve_inference

    return type(resolve_inference(name))


def add_load_device(parser) -> None:
    """The --device option of the commands that load a run."""
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: where the run was fitted if this machine has it, "
                             "else the best this machine has)")
