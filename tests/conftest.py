"""Shared fixtures: execute a notebook once per session (papermill, quick mode) and read its records."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute_notebook(name: str, out_dir: Path, parameters: dict | None = None, timeout: int = 900):
    """Run notebooks/<name> headless with papermill in quick mode.

    Returns ``(records, seconds)``: the numbers the notebook gave ``cosmonb.record``.
    """
    from cosmonb.runtime import run_notebook

    return run_notebook(NOTEBOOKS / name, out_dir / name, quick=True, parameters=parameters, timeout=timeout)


@pytest.fixture(scope="session")
def notebook_run(tmp_path_factory):
    """notebook_run("00_fields_and_power_spectra.ipynb") -> (records, seconds), cached per session."""
    cache = {}
    out_dir = tmp_path_factory.mktemp("executed")

    def run(name, **parameters):
        key = (name, tuple(sorted(parameters.items())))
        if key not in cache:
            cache[key] = execute_notebook(name, out_dir, parameters)
        return cache[key]

    return run
