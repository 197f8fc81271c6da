"""Execute every notebook headless with papermill; print each one's time and headline numbers.

Usage: python scripts/run_notebooks.py [--quick] [notebooks ...]
Executed copies (with figures) go to build/, records to build/<name>.records.json.
Each notebook's wall time is also merged into bench/results/notebooks.json (per mode,
with the machine), the one source of every run time that the README and the notebooks
state (tests/test_run_times.py checks them against it); ``--no-record`` skips that.
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
    parser.add_argument("--no-record", action="store_true",
                        help="do not merge the times into bench/results/notebooks.json")
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
    if not args.no_record:
        record_times(summary, "quick" if quick else "full")
    print(f"\n{len(paths) - len(failures)}/{len(paths)} notebooks ran; summary in {out / 'run_summary.json'}")
    return 1 if failures else 0


def record_times(summary: list[dict], mode: str, path: Path = ROOT / "bench" / "results" / "notebooks.json") -> None:
    """Merge the wall times of the notebooks that ran ok into ``path``: notebooks.<name>.<mode>."""
    from cosmonb.runtime import atomic_write, machine_info

    data = json.loads(path.read_text()) if path.is_file() else {}
    book = data.setdefault("notebooks", {})
    for run in summary:
        if run["status"] == "ok":
            book.setdefault(run["notebook"], {})[mode] = {
                "seconds": run["seconds"], "measured": time.strftime("%Y-%m-%d"), "machine": machine_info()}
    with atomic_write(path, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"run times -> {path}")


if __name__ == "__main__":
    sys.exit(main())
