"""Every run time the README and the notebooks state comes from a recorded measurement.

``make run`` (``scripts/run_notebooks.py``) merges each notebook's wall time, per mode,
into ``bench/results/notebooks.json``. The README's table and each notebook's
``**Run time:**`` line state those times; this test reads both and compares.
"""
import json
import re

import nbformat
import pytest

from conftest import NOTEBOOKS, ROOT

TIMES = ROOT / "bench" / "results" / "notebooks.json"
STATED = re.compile(r"(\d+(?:\.\d+)?) s full, (\d+(?:\.\d+)?) s quick")
RUN_WORDS = re.compile(r"\b(full run|quick mode|run time|runs? in|notebook takes)\b", re.I)
NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _measured(name):
    book = json.loads(TIMES.read_text())["notebooks"]
    assert name in book and {"full", "quick"} <= set(book[name]), \
        f"{name}: no full and quick time in {TIMES}; run `make run` and `make run QUICK=1`"
    return book[name]["full"]["seconds"], book[name]["quick"]["seconds"]


def _agrees(stated, measured):
    return abs(stated - measured) <= max(2.0, 0.1 * measured)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_states_its_measured_run_time(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = nb.cells[0].source
    assert "**Run time:**" in first, f"{name}: the first cell should state its run time"
    found = STATED.search(first.split("**Run time:**", 1)[1])
    assert found, f"{name}: expected '**Run time:** N s full, M s quick' in the first cell"
    full, quick = _measured(name)
    assert _agrees(float(found[1]), full) and _agrees(float(found[2]), quick), \
        f"{name} states {found[0]}; bench/results/notebooks.json has {full:.0f} s full, {quick:.0f} s quick"
    rest = [first.split("**Run time:**", 1)[0]] + [c.source for c in nb.cells[1:] if c.cell_type == "markdown"]
    for sentence in re.split(r"(?<=[.!?])\s+", "\n".join(rest)):  # one run-time statement, from the record
        assert not (RUN_WORDS.search(sentence) and re.search(r"\d+\s*s\b", sentence)), \
            f"{name}: a run time stated outside the '**Run time:**' line: {sentence!r}"


def test_readme_table_states_the_measured_run_times():
    readme = (ROOT / "README.md").read_text()
    for name in NAMES:
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name[:-6]}`")), None)
        assert row, f"README: no table row for {name}"
        found = STATED.search(row)
        assert found, f"README: the row of {name} should state 'N s full, M s quick'"
        full, quick = _measured(name)
        assert _agrees(float(found[1]), full) and _agrees(float(found[2]), quick), (row, full, quick)
