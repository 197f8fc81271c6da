"""Execute every notebook once per ``make test``: nbval runs it, the notebook tests read its numbers.

``make test`` passes ``notebooks/`` (``--nbval-lax``) before ``tests/``. While nbval
runs a notebook's cells, the kernel writes what the notebook gives ``cosmonb.record``
to ``<dir>/<stem>.records.json`` (``COSMONB_RECORDS``), and these hooks write
``<dir>/<stem>.run.json`` (status and wall seconds, kernel start included), with
``<dir>`` named by ``COSMONB_NBVAL_DIR``. ``tests/conftest.py``'s ``notebook_run``
reads them instead of executing the notebook a second time under papermill; run
alone (``pytest tests/test_notebook_01.py``) it executes the notebook itself.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

_RUNS: dict[str, dict] = {}


def _notebook_of(item) -> Path | None:
    """The notebook an nbval cell item belongs to, or None for any other test item."""
    if type(item).__name__ != "IPyNbCell":
        return None
    return Path(str(item.parent.fspath))


def pytest_configure(config):
    if getattr(config.option, "nbval_lax", False) or getattr(config.option, "nbval", False):
        os.environ.setdefault("COSMONB_NBVAL_DIR", tempfile.mkdtemp(prefix="cosmonb-nbval-"))


def _write(nb: Path) -> None:
    run = _RUNS[str(nb)]
    out = Path(os.environ["COSMONB_NBVAL_DIR"]) / f"{nb.stem}.run.json"
    out.write_text(json.dumps({"status": run["status"], "seconds": time.perf_counter() - run["start"],
                               "failed_cell": run.get("failed_cell")}))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    nb = _notebook_of(item)
    if nb is None or "COSMONB_NBVAL_DIR" not in os.environ or str(nb) in _RUNS:
        return
    # before nbval starts this notebook's kernel (in the notebook's own setup), so the kernel inherits it
    records = Path(os.environ["COSMONB_NBVAL_DIR"]) / f"{nb.stem}.records.json"
    records.unlink(missing_ok=True)
    os.environ["COSMONB_RECORDS"] = str(records)
    _RUNS[str(nb)] = {"status": "ok", "start": time.perf_counter()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    nb = _notebook_of(item)
    if nb is None or str(nb) not in _RUNS:
        return
    report = outcome.get_result()
    if report.failed and _RUNS[str(nb)]["status"] == "ok":
        _RUNS[str(nb)].update(status="failed", failed_cell=item.name)
    if call.when == "teardown":
        _write(nb)
