"""Every snippet of README.md runs as written.

The Python snippets run top to bottom in one namespace, as a reader pasting them would, and the
command lines of its "Command line" section run through ``ppgen.cli.main`` in the same folder. The
code is the README's, untouched; only the amount of work shrinks, as ``PPGEN_QUICK=1`` shrinks the
tutorials: each ``ppgen.fit`` gets a copy of its inference object with at most :data:`QUICK` of
each setting and a diffusion chain of :data:`QUICK_TIMESTEPS` steps, and each command line gets the
same numbers as flags.
"""

import dataclasses
import re
import shlex
import time
from pathlib import Path

import pytest

import ppgen
from ppgen.cli import main
from ppgen.registry import default_inference, resolve_inference, resolve_model

README = Path(__file__).resolve().parents[2] / "README.md"
#: the most of each inference setting a snippet gets in the test
QUICK = {"steps": 6, "num_samples": 10, "num_warmup": 10, "max_iter": 8, "n_init": 2, "kl_warmup": 3,
         "num_chains": 2, "num_particles": 2}
#: the length of a diffusion chain in the test (the README's is 1000)
QUICK_TIMESTEPS = 50


def python_snippets() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def command_lines() -> list:
    """The ``ppgen ...`` commands of the README's "Command line" section, one per line."""
    section = README.read_text().split("## Command line", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("ppgen ")]


def shrink(inference):
    """A copy of ``inference`` with at most :data:`QUICK` of each setting (steps instead of epochs)."""
    alg = resolve_inference(inference)
    fields = {field.name for field in dataclasses.fields(alg)}
    changes = {name: min(getattr(alg, name), most) for name, most in QUICK.items()
               if name in fields and getattr(alg, name) is not None}
    if getattr(alg, "epochs", None) is not None:
        changes.update(epochs=None, steps=QUICK["steps"])
    return dataclasses.replace(alg, **changes)


def shrink_model(spec):
    """A diffusion chain of :data:`QUICK_TIMESTEPS` steps; any other model as it is."""
    if dataclasses.is_dataclass(spec) and "timesteps" in {field.name for field in dataclasses.fields(spec)}:
        return dataclasses.replace(spec, timesteps=QUICK_TIMESTEPS)
    return spec


#: each numeric flag of a command line and the most it gets in the test
QUICK_FLAGS = {"--steps": 6, "--num-samples": 10, "--epochs": 1, "--n-init": 2, "--data-n": 400, "-n": 16}
#: flags added to every ``ppgen fit`` of the test (the defaults it would otherwise run)
QUICK_FIT_FLAGS = {"nuts": ["--num-warmup", "10", "--num-chains", "2"], "svi": [], "em": ["--max-iter", "8"],
                   "adversarial": []}


def shrink_command(line: str) -> list:
    args = shlex.split(line)[1:]
    for index, arg in enumerate(args[:-1]):
        if args[0] == "sample" and arg == "--steps":  # a sampler's steps, not training
            continue
        if arg in QUICK_FLAGS and re.fullmatch(r"[0-9_]+", args[index + 1]):
            args[index + 1] = str(min(int(args[index + 1]), QUICK_FLAGS[arg]))
    if args[0] == "fit":
        if "--inference" in args:
            algorithm = args[args.index("--inference") + 1]
        else:
            algorithm = resolve_inference(default_inference(resolve_model(args[1], data_dim=2))).name
        args += QUICK_FIT_FLAGS.get(algorithm, [])
        if "--epochs" in args:  # a step budget instead of whole epochs
            position = args.index("--epochs")
            args[position:position + 2] = ["--steps", str(QUICK_FLAGS["--steps"])]
        args += ["--eval-samples", "8"]  # importance samples of the metrics written after the fit
        if args[1] == "ddpm":
            args += ["--timesteps", str(QUICK_TIMESTEPS)]
    if args[0] == "compare":  # two values of the varied option, few iterations
        vary = args.index("--vary") + 1
        args[vary] = re.sub(r"=(\d+)\.\.\d+$", lambda m: f"={m.group(1)}..{int(m.group(1)) + 1}", args[vary])
        args += ["--max-iter", "8"]
    return args


@pytest.fixture
def quick_fits(monkeypatch, tmp_path):
    real_fit = ppgen.fit

    def quick_fit(model, data, inference=None, **options):
        spec = resolve_model(model, data_dim=2) if isinstance(model, str) else model
        if not isinstance(model, str):
            model = shrink_model(model)
        chosen = inference if inference is not None else default_inference(spec)
        if options.get("early_stopping") is not None:
            options["early_stopping"] = dataclasses.replace(options["early_stopping"], every=2, patience=1)
        return real_fit(model, data, shrink(chosen), **options)

    monkeypatch.setattr(ppgen, "fit", quick_fit)
    monkeypatch.chdir(tmp_path)  # the snippets write run folders under runs/
    monkeypatch.setenv("PPGEN_QUICK", "1")
    return tmp_path


def test_the_readme_has_snippets_and_commands():
    assert len(python_snippets()) >= 6
    assert len(command_lines()) >= 12


#: what a reader has imported after the first snippet (each later snippet assumes it)
PRELUDE = "import numpy as np\nimport ppgen\nfrom ppgen import datasets, models, inference\n"


@pytest.mark.parametrize("number", range(1, len(python_snippets()) + 1))
def test_python_snippet_runs_as_written(quick_fits, number):
    """Snippet ``number`` after the first snippet's imports (the snippets share nothing else)."""
    code = python_snippets()[number - 1]
    namespace: dict = {}
    exec(PRELUDE, namespace)  # noqa: S102 - constant text
    try:
        exec(compile(code, f"README.md snippet {number}", "exec"), namespace)  # noqa: S102 - our README
    except Exception as error:  # noqa: BLE001 - say which snippet failed, and how
        pytest.fail(f"README snippet {number} failed: {type(error).__name__}: {error}\n\n{code}")
    if number == 1:
        assert (quick_fits / "runs" / "ppca" / "config.json").exists()


def test_every_command_line_runs_as_written(quick_fits, capsys):
    for line in command_lines():
        if line == "ppgen demo":  # the demo in quick mode has its own test (test_cli.py::test_demo_quick)
            continue
        args = shrink_command(line)
        started = time.perf_counter()
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 0, f"README command failed: {line}\n(run as {' '.join(args)})\n{out}\n{err}"
        with capsys.disabled():
            print(f"{time.perf_counter() - started:6.1f} s  {line[:90]}")
