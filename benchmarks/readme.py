"""How long each Python example of README.md takes, run as written, with its full settings.

Each snippet runs in a fresh process (after the first snippet's imports, as
``tests/e2e/test_readme.py`` runs it with shrunken settings), in a temporary folder, and the script
prints its wall time, the time of each ``ppgen.fit`` in it, and writes them as JSON. The README
quotes these numbers.

    python benchmarks/readme.py [--only 1,2,6] [--json readme.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PRELUDE = "import numpy as np\nimport ppgen\nfrom ppgen import datasets, models, inference\n"
#: wraps ppgen.fit in the child process to time each fit and say what it was
TIMER = '''
import json, sys, time
_fit, _fits = ppgen.fit, []
def _timed_fit(model, data, inference=None, **options):
    started = time.perf_counter()
    result = _fit(model, data, inference, **options)
    _fits.append({"fit": repr(result), "seconds": round(time.perf_counter() - started, 1)})
    print(f"  fit {_fits[-1]['seconds']:8.1f} s  {_fits[-1]['fit'][:100]}", file=sys.stderr, flush=True)
    return result
ppgen.fit = _timed_fit
'''


def python_snippets() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def run_snippet(number: int, code: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / f"snippet_{number}.py"
        report = Path(folder) / "fits.json"
        program.write_text(PRELUDE + TIMER + code + f"\njson.dump(_fits, open({str(report)!r}, 'w'))\n")
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(program)], cwd=folder, env=dict(os.environ))
        seconds = time.perf_counter() - started
        fits = json.loads(report.read_text()) if report.exists() else []
    return {"snippet": number, "first_line": code.strip().splitlines()[0], "seconds": round(seconds, 1),
            "returncode": result.returncode, "fits": fits}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated snippet numbers (1-based)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    snippets = python_snippets()
    chosen = [int(n) for n in args.only.split(",")] if args.only else range(1, len(snippets) + 1)
    results = []
    for number in chosen:
        print(f"snippet {number}: {snippets[number - 1].strip().splitlines()[0][:80]}", file=sys.stderr, flush=True)
        results.append(run_snippet(number, snippets[number - 1]))
        status = "" if results[-1]["returncode"] == 0 else f"  FAILED (exit {results[-1]['returncode']})"
        print(f"snippet {number}: {results[-1]['seconds'] / 60:.1f} min{status}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
