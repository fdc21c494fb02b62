"""The commands that fit and use run folders: ``ppgen fit``, ``compare``, ``sample``,
``evaluate``, ``inspect`` and ``models``. Each takes its argument list and returns the exit status."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, PPGenError
from ..registry import default_inference
from .arguments import (add_data_options, add_load_device, fit_parser, formatter, given_options, inference_class,
                        model_class)
from .data import data_for_run, data_label, load_data, reload_data, split_labels
from .report import (INSPECT_EXAMPLES, SAMPLE_COUNT, format_number, format_table, inspect_fit, is_implicit,
                     sample_metrics, split_metrics, title, write_chain, write_report, write_samples)

__all__ = ["cmd_fit", "cmd_compare", "cmd_sample", "cmd_evaluate", "cmd_inspect", "cmd_models"]


# ======================================================================================
# ppgen fit
# ======================================================================================
def cmd_fit(argv: list) -> int:
    """``ppgen fit MODEL ...``: fit, write the run folder and its report, print the metrics."""
    import ppgen

    from ..registry import resolve_inference, resolve_model

    first, _ = fit_parser(add_help=False)[0].parse_known_args(argv)
    if first.model is None:
        parser, _ = fit_parser()
        parser.parse_args(argv)  # prints the general help, or says MODEL is missing
        parser.error("the following arguments are required: MODEL")
    model_cls = model_class(first.model)
    inference_cls = inference_class(first.inference or default_inference(model_cls))
    parser, fields = fit_parser(model_cls, inference_cls)
    args = parser.parse_args(argv)
    values = vars(args)
    model_options, inference_options = given_options(fields, values)

    dataset = load_data(args.data, args.view, args.data_path, args.data_seed, args.data_n)
    spec = resolve_model(model_cls.family, data_dim=dataset.data_dim, meta=dataset.meta, **model_options)
    alg = resolve_inference(inference_cls.name, **inference_options)
    out = Path(args.out) if args.out else Path("runs") / f"{spec.family}-{alg.name}-{args.backend}"
    print(f"ppgen fit: {type(spec).__name__} on {data_label(dataset.meta)} by {alg.title} "
          f"({args.backend}, {args.device}, seed {args.seed})", flush=True)
    start = time.perf_counter()
    fit = ppgen.fit(spec, dataset, alg, backend=args.backend, device=args.device, seed=args.seed,
                    run_dir=out, progress=args.progress)
    seconds = time.perf_counter() - start
    metrics, files = write_report(fit, dataset, out, seconds, args.seed, num_samples=args.eval_samples)
    print(f"run folder: {out}")
    for split in ("train", "val", "test"):
        if split in metrics and "log_likelihood" not in metrics[split]:
            shown = ", ".join(f"{k.replace('_', ' ')} {format_number(v)}" for k, v in metrics[split].items())
            print(f"{split + ':':26s}{shown}")
        elif split in metrics:
            m = metrics[split]
            print(f"{split + ' log-likelihood:':26s}{format_number(m['log_likelihood'])} nats per example "
                  f"(+/- {format_number(m['log_likelihood_se'])}, {m['num_examples']} examples)")
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


def cmd_compare(argv: list) -> int:
    """``ppgen compare MODEL --vary NAME=VALUES ...``: one fit per value, ranked by LOO or BIC."""
    import ppgen

    from ..checkpoint import atomic_write_bytes
    from ..config import field_specs
    from ..registry import resolve_inference, resolve_model

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--vary", default=None)
    known, rest = pre.parse_known_args(argv)
    first, _ = fit_parser(add_help=False)[0].parse_known_args(rest)
    if first.model is None or known.vary is None:
        parser, _ = fit_parser()
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
    model_cls = model_class(first.model)
    inference_cls = inference_class(first.inference or default_inference(model_cls))
    types = {n: ("model", tp) for n, tp, _, _ in field_specs(model_cls)}
    types.update({n: ("inference", tp) for n, tp, _, _ in field_specs(inference_cls) if n not in types})
    if not sep or name not in types:
        from ..config import suggest

        raise ConfigError(f"--vary {known.vary!r} must be NAME=VALUES with NAME an option of "
                          f"{model_cls.__name__} or {inference_cls.__name__}.{suggest(name, types)}")
    kind, tp = types[name]
    values = _parse_values(text, tp if tp in (int, float) else str)
    if len(values) < 2:
        raise ConfigError(f"--vary {known.vary!r} gives {len(values)} value(s); compare needs at least two")
    parser, fields = fit_parser(model_cls, inference_cls)
    parser.prog = "ppgen compare"
    args = parser.parse_args(rest)
    chosen = vars(args)
    model_options, inference_options = given_options(fields, chosen)
    dataset = load_data(args.data, args.view, args.data_path, args.data_seed, args.data_n)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{model_cls.family}-{name}"
    print(f"ppgen compare: {model_cls.__name__} on {data_label(dataset.meta)} by "
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
def cmd_sample(argv: list) -> int:
    """``ppgen sample RUN``: new examples as a figure and a .npy (and a diffusion model's chain)."""
    import ppgen

    parser = argparse.ArgumentParser(
        prog="ppgen sample", formatter_class=formatter,
        description="Draw new examples from a run. Images (data of shape HxW or CxHxW) become an "
                    "image grid, 2-D points a scatter plot over the training data; the raw samples "
                    "are saved next to the figure as a .npy file.")
    parser.add_argument("run", metavar="RUN", help="the run folder")
    parser.add_argument("-n", "--num", dest="n", type=int, default=SAMPLE_COUNT,
                        help=f"number of samples (default: {SAMPLE_COUNT})")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--out", metavar="PATH", default=None, help="the .png to write (default: RUN/samples.png)")
    add_load_device(parser)
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
            reference = reload_data(fit.config["data"], run).train
        except (PPGenError, OSError):
            reference = None  # the scatter plot is still useful without the data behind it
    png, npy = write_samples(fit, out, args.n, args.seed, reference=reference, **options)
    if png is None:
        shape = fit.config.get("data", {}).get("shape")
        print(f"no figure: examples of shape {shape} are neither images nor 2-D points")
    else:
        print(f"wrote {png}")
    chain = write_chain(fit, out.with_name(out.stem + "_chain.png"), args.seed, **options)
    if chain is not None:
        print(f"wrote {chain} (the reverse chain of one sample)")
    print(f"wrote {npy} ({args.n} samples)")
    return 0


# ======================================================================================
# ppgen evaluate
# ======================================================================================
def cmd_evaluate(argv: list) -> int:
    """``ppgen evaluate RUN``: the metrics of one split, printed and merged into metrics.json."""
    import ppgen

    from ..checkpoint import read_json, write_json

    parser = argparse.ArgumentParser(
        prog="ppgen evaluate", formatter_class=formatter,
        description="Mean log-likelihood per example (nats), its standard error, bits per dimension "
                    "and the number of examples of one data split; printed and merged into "
                    "RUN/metrics.json.")
    parser.add_argument("run", metavar="RUN", help="the run folder")
    parser.add_argument("--split", choices=["test", "val", "train"], default="test", help="(default: test)")
    parser.add_argument("--eval-samples", metavar="INT", type=int, default=None,
                        help="importance samples per example for the VAE-like families (default: 1000)")
    add_load_device(parser)
    add_data_options(parser, reload_note=True)
    args = parser.parse_args(argv)
    run = Path(args.run)
    fit = ppgen.load(run, device=args.device)
    dataset = data_for_run(args, fit, run)
    x = dataset.split(args.split)
    if is_implicit(fit):  # no likelihood: sample metrics
        result = dict(sample_metrics(fit, x, split_labels(dataset, args.split), dict(dataset.meta), 0),
                      data=data_label(dataset.meta))
    else:
        result = dict(split_metrics(fit, x, split_labels(dataset, args.split), args.eval_samples),
                      data=data_label(dataset.meta))
    path = run / "metrics.json"
    metrics = read_json(path) if path.exists() else {}
    if not isinstance(metrics, dict):
        metrics = {}
    metrics[args.split] = result
    write_json(path, metrics)
    print(f"run: {run}")
    print(f"data: {result['data']}, split {args.split} ({result['num_examples']} examples)")
    if is_implicit(fit):
        for key, value in result.items():
            if key not in ("data", "num_examples"):
                print(f"{key.replace('_', ' ')}: {format_number(value)}")
        print(f"wrote {path}")
        return 0
    print(f"log-likelihood: {format_number(result['log_likelihood'])} nats per example "
          f"(standard error {format_number(result['log_likelihood_se'])})")
    if result["bits_per_dim"] is None:
        print("bits per dimension: not reported (real-valued data: log p(x) is a density, not a probability)")
    else:
        print(f"bits per dimension: {format_number(result['bits_per_dim'])}")
    print(f"wrote {path}")
    return 0


# ======================================================================================
# ppgen inspect
# ======================================================================================
def cmd_inspect(argv: list) -> int:
    """``ppgen inspect RUN``: the ArviZ summary and plots (a point estimate's table)."""
    import ppgen

    parser = argparse.ArgumentParser(
        prog="ppgen inspect", formatter_class=formatter,
        description="ArviZ summary (mean, sd, HDI, ESS, R-hat) of a run's parameters, and trace, "
                    "posterior, pair and (several chains) rank plots in RUN/plots/ (with summary.csv); "
                    "for a mixture, its components over the data (components.png: ellipses at 1 and 2 "
                    "standard deviations, a principal-component projection above 2-D). The run's "
                    "training data are reloaded to score the log-likelihood group.")
    parser.add_argument("run", metavar="RUN", help="the run folder")
    parser.add_argument("--var", dest="vars", metavar="NAME", action="extend", nargs="+", default=None,
                        help="variables to show (default: small ones, e.g. W_diag and sigma for PPCA)")
    add_load_device(parser)
    add_data_options(parser, reload_note=True)
    args = parser.parse_args(argv)
    run = Path(args.run)
    fit = ppgen.load(run, device=args.device)
    dataset = data_for_run(args, fit, run)
    table, paths, _ = inspect_fit(fit, dataset.train, run / "plots", args.vars, labels=split_labels(dataset, "train"))
    if fit.model.supports("posterior_draws"):
        print(f"q(z|x) for the first {INSPECT_EXAMPLES} training examples ({title(fit)})")
    elif fit.posterior is None:
        hint = (" Fit with NUTS or HMC (or SVI with a posterior guide) for posterior plots."
                if "bayesian" in fit.model.forms else "")
        print(f"{fit.inference.title} gives a point estimate ({title(fit)}): the parameters' values and spread, "
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
def cmd_models(argv: list) -> int:
    """``ppgen models``: the families, the inference that fits each, and backends."""
    from ..registry import support_table

    parser = argparse.ArgumentParser(prog="ppgen models", formatter_class=formatter,
                                     description="Model families, the inference that fits each, and backends.")
    parser.parse_args(argv)
    print(format_table([list(r) for r in support_table()], ["family", "inference", "backends"]))
    return 0
