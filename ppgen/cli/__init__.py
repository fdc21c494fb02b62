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

The package, one module per concern: :mod:`ppgen.cli.arguments` (options generated from the
config dataclasses), :mod:`ppgen.cli.data` (the data a command names or a run was fitted on),
:mod:`ppgen.cli.report` (what a run folder gets: figures, tables, metrics, asked of the family
contract), :mod:`ppgen.cli.commands` (fit, compare, sample, evaluate, inspect, models) and
:mod:`ppgen.cli.demo`.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import PPGenError
from . import commands, demo
from .arguments import formatter

__all__ = ["main"]


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


def _commands() -> dict:
    return {
        "fit": ("fit a model to data and write a run folder", commands.cmd_fit),
        "sample": ("draw new examples from a run (PNG figure and .npy)", commands.cmd_sample),
        "evaluate": ("log-likelihood of a data split under a run; updates metrics.json", commands.cmd_evaluate),
        "inspect": ("ArviZ summary table and trace/posterior/pair plots of a run", commands.cmd_inspect),
        "compare": ("fit a model for several values of one option and rank the fits (LOO or BIC)",
                    commands.cmd_compare),
        "models": ("list model families, the inference that fits them, and backends", commands.cmd_models),
        "demo": ("the main families end to end: PPCA (closed form, NUTS), a VAE, a DDPM and GANs", demo.cmd_demo),
    }


def _top_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="ppgen", formatter_class=formatter,
        description="Deep generative models as probabilistic programs (Pyro and NumPyro).",
        epilog="Run 'ppgen COMMAND --help' for the options of a command, e.g.\n"
               "  ppgen fit ppca --inference nuts --help")
    parser.add_argument("--version", action="version", version=f"ppgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (text, _) in _commands().items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _dispatch(argv: list) -> int:
    known = _commands()
    if argv and argv[0] in known:
        return known[argv[0]][1](argv[1:])
    parser = _top_parser()
    parser.parse_args(argv)  # prints help or version, or refuses an unknown command, and exits
    parser.error(f"choose a command: {', '.join(known)}")
    return 2
