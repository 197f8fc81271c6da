"""Execute every notebook headless with papermill; print each one's time and headline numbers.

Usage: python scripts/run_notebooks.py [--quick] [notebooks ...]
Executed copies (with figures) go to build/, records to build/<name>.records.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook paths (default: notebooks/*.ipynb)")
    parser.add_argument("--quick", action="store_true", help="quick mode (QUICK=True), as in the tests")
    parser.add_argument("--out", default=str(ROOT / "build"), help="folder for executed notebooks")
    args = parser.parse_args(argv)

    from cosmonb.runtime import run_notebook

    quick = args.quick or os.environ.get("COSMONB_QUICK", "0").lower() in {"1", "true", "yes"}
    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    out = Path(args.out)
    failures, summary = [], []
    for path in paths:
        print(f"\n=== {path.name} ({'quick' if quick else 'full'} mode)", flush=True)
        start = time.perf_counter()
        try:
            records, seconds = run_notebook(path, out / path.name, quick=quick)
            status = "ok"
        except Exception as err:  # report and carry on with the next notebook
            status = f"FAILED: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            failures.append(path.name)
            seconds = time.perf_counter() - start
            records_file = out / f"{path.stem}.records.json"
            records = json.loads(records_file.read_text()) if records_file.exists() else {}
        print(f"    {status} in {seconds:.1f} s -> {out / path.name}")
        for name, value in records.items():
            print(f"    {name} = {value}")
        summary.append({"notebook": path.name, "seconds": round(seconds, 2), "status": status,
                        "records": records})
    (out / "run_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{len(paths) - len(failures)}/{len(paths)} notebooks ran; summary in {out / 'run_summary.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
