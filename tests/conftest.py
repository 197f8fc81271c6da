"""Shared fixtures: execute a notebook once per session (papermill, quick mode) and read its records."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def parameter_defaults(name: str) -> dict:
    """``{NAME: source text of its value}`` from the ``parameters`` cell of notebooks/<name> (papermill's defaults)."""
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return dict(re.findall(r"^(\w+) = (.+)$", cell.source, re.M))


@pytest.fixture
def one_torch_thread():
    """Tiny networks: one torch thread avoids oversubscription on a shared, busy machine (restored afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def execute_notebook(name: str, out_dir: Path, parameters: dict | None = None, timeout: int = 900):
    """Run notebooks/<name> headless with papermill in quick mode.

    Returns ``(records, seconds)``: the numbers the notebook gave ``cosmonb.record``.
    """
    from cosmonb.runtime import run_notebook

    return run_notebook(NOTEBOOKS / name, out_dir / name, quick=True, parameters=parameters, timeout=timeout)


def nbval_run(name: str):
    """``(records, seconds)`` of this session's nbval run of notebooks/<name> (the root conftest.py), or None.

    ``make test`` executes each notebook once, under nbval; a notebook that failed there
    fails its test here too, pointing at the cell, instead of running a second time.
    """
    folder = os.environ.get("COSMONB_NBVAL_DIR")
    stem = Path(name).stem
    if not folder or not (Path(folder) / f"{stem}.run.json").is_file():
        return None
    run = json.loads((Path(folder) / f"{stem}.run.json").read_text())
    if run["status"] != "ok":
        pytest.fail(f"{name} failed under nbval (cell {run['failed_cell']}); see that failure above")
    from cosmonb.runtime import read_records

    records_file = Path(folder) / f"{stem}.records.json"
    return (read_records(records_file) if records_file.is_file() else {}), run["seconds"]


@pytest.fixture(scope="session")
def notebook_run(tmp_path_factory):
    """notebook_run("00_fields_and_power_spectra.ipynb") -> (records, seconds), cached per session."""
    cache = {}
    out_dir = tmp_path_factory.mktemp("executed")

    def run(name, **parameters):
        key = (name, tuple(sorted(parameters.items())))
        if key not in cache:
            cache[key] = (None if parameters else nbval_run(name)) or execute_notebook(name, out_dir, parameters)
        return cache[key]

    return run
