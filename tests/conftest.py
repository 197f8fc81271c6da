"""Shared fixtures: execute a notebook once per session (papermill, quick mode) and read its records."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute_notebook(name: str, out_dir: Path, parameters: dict | None = None, timeout: int = 900):
    """Run notebooks/<name> headless with papermill in quick mode.

    Returns ``(records, seconds)``: the numbers the notebook gave ``cosmonb.record``.
    """
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    records_file = out_dir / (Path(name).stem + ".records.json")
    if records_file.exists():
        records_file.unlink()
    env_before = {k: os.environ.get(k) for k in ("COSMONB_QUICK", "COSMONB_RECORDS")}
    os.environ.update(COSMONB_QUICK="1", COSMONB_RECORDS=str(records_file))
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(NOTEBOOKS / name), str(out_dir / name),
                            parameters={"QUICK": True, **(parameters or {})},
                            cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False,
                            execution_timeout=timeout)
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    records = json.loads(records_file.read_text()) if records_file.exists() else {}
    return records, seconds


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
