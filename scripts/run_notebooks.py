"""Execute every notebook headless with papermill; print each one's time and headline numbers.

Usage: python scripts/run_notebooks.py [--quick] [notebooks ...]

The same as ``python -m cosmonb run`` (and ``make run``): the one implementation
is :mod:`cosmonb.notebooks_runner`. Executed copies (with figures) go to build/,
records to build/<name>.records.json, wall times into bench/results/notebooks.json
(``--no-record`` skips that).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from cosmonb.notebooks_runner import main, record_times  # noqa: E402,F401  (record_times: old import path)

if __name__ == "__main__":
    sys.exit(main(prog="scripts/run_notebooks.py"))
