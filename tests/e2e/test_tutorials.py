"""Every tutorial notebook runs from top to bottom without an error, with tiny settings.

Each ``tutorials/*.ipynb`` is executed with nbclient in a fresh kernel, with ``PPGEN_QUICK=1`` in
the environment (the notebooks read it and shrink steps, draws and chains). The kernel is a
``python3`` kernelspec written to a temporary folder and put first on ``JUPYTER_PATH``, so it
runs this interpreter (the one with ppgen installed), whatever kernels the machine has.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory) -> str:
    """A JUPYTER_PATH entry whose ``python3`` kernel runs ``sys.executable``."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="python3", prefix=str(prefix))
    kernel_json = prefix / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    assert sys.executable in kernel_json.read_text()
    return str(prefix / "share" / "jupyter")


def test_there_are_tutorials():
    assert NOTEBOOKS, f"no notebooks found in {TUTORIALS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_runs(path: Path, kernel_path: str, monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("PPGEN_QUICK", "1")
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [kernel_path, os.environ.get("JUPYTER_PATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:  # the message holds the cell and traceback
        pytest.fail(f"{path.name} failed in quick mode:\n{error}", pytrace=False)
    errors = [output for cell in nb.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, f"{path.name} produced error outputs: {errors}"
