"""Execute every notebook headless with papermill; print each one's time and headline numbers.

This is ``python -m cosmonb run [--quick] [notebooks ...]`` (and ``make run``, and
``scripts/run_notebooks.py``, which both call it). Executed copies (with figures) go
to ``build/``, records to ``build/<name>.records.json``, each run's status and time to
``build/<name>.run.json``; then :func:`cosmonb.gallery.build_gallery` writes
``build/index.html`` (one card per executed notebook: key figure, time, headline
numbers, a link to ``build/<name>.html``). ``-p NAME VALUE`` passes a papermill
parameter (e.g. ``-p TRAIN True``). Each notebook's wall time is
also merged into ``bench/results/notebooks.json`` (per mode, with the machine), the
one source of every run time that the README and the notebooks state
(tests/test_run_times.py checks them against it); ``--no-record`` skips that. A run
with parameters is recorded under its own mode, e.g. ``full TRAIN=True``.

The notebooks, ``build/`` and ``bench/`` are those of the source checkout this
package lives in (``ROOT``): the command runs from a clone (``pip install -e .``).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import time
from pathlib import Path

__all__ = ["ROOT", "main", "add_arguments", "run", "record_times", "default_notebooks", "parse_parameters",
           "mode_name"]

#: The source checkout: the folder holding ``cosmonb/``, ``notebooks/`` and ``bench/``.
ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = "Execute every notebook headless with papermill; print each one's time and headline numbers."


def default_notebooks(root: Path = ROOT) -> list[Path]:
    """``notebooks/NN_*.ipynb`` of the checkout, in teaching order (raises if there is none)."""
    paths = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks found in {root / 'notebooks'}: `cosmonb run` executes the "
                                "notebooks of a source checkout (git clone, then pip install -e .); "
                                "or pass notebook paths")
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``run`` (shared by ``python -m cosmonb run`` and ``scripts/run_notebooks.py``)."""
    parser.add_argument("notebooks", nargs="*", help="notebook paths (default: notebooks/*.ipynb)")
    parser.add_argument("--quick", action="store_true", help="quick mode (QUICK=True), as in the tests")
    parser.add_argument("--out", default=str(ROOT / "build"), help="folder for executed notebooks")
    parser.add_argument("--no-record", action="store_true",
                        help="do not merge the times into bench/results/notebooks.json")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                        help="a papermill parameter for every notebook, e.g. -p TRAIN True (VALUE is read as a "
                             "Python literal, else kept as a string); times go under their own mode")
    parser.add_argument("--no-gallery", action="store_true",
                        help="do not write build/index.html and the notebooks' HTML pages")
    return parser


def parse_parameters(pairs) -> dict:
    """``[(NAME, VALUE), ...]`` from ``-p`` to papermill parameters; VALUE is a Python literal or a string.

    Example:
        >>> parse_parameters([("TRAIN", "True"), ("DATA_ROOT", "/data/CMD"), ("EPOCHS", "3")])
        {'TRAIN': True, 'DATA_ROOT': '/data/CMD', 'EPOCHS': 3}
    """
    params = {}
    for name, value in pairs:
        if not name.isidentifier():
            raise ValueError(f"-p {name}: expected a Python name for the parameter")
        if name == "QUICK":
            raise ValueError("-p QUICK: use --quick (it also sets COSMONB_QUICK for the kernel)")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    return params


def mode_name(quick: bool, parameters: dict | None = None) -> str:
    """The key a run's times are recorded under: ``full``, ``quick``, or e.g. ``full TRAIN=True``.

    Example:
        >>> mode_name(False, {"TRAIN": True})
        'full TRAIN=True'
    """
    mode = "quick" if quick else "full"
    return " ".join([mode] + [f"{k}={v}" for k, v in sorted((parameters or {}).items())])


def run(args: argparse.Namespace) -> int:
    """Run the notebooks the parsed ``args`` name; returns the exit status (1 if any failed)."""
    from .runtime import run_notebook

    quick = args.quick or os.environ.get("COSMONB_QUICK", "0").lower() in {"1", "true", "yes"}
    parameters = parse_parameters(getattr(args, "parameter", None) or [])
    mode = mode_name(quick, parameters)
    paths = [Path(p) for p in args.notebooks] or default_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"notebooks: not found: {', '.join(missing)}")
    out = Path(args.out)
    failures, summary = [], []
    for path in paths:
        print(f"\n=== {path.name} ({mode} mode)", flush=True)
        start = time.perf_counter()
        try:
            records, seconds = run_notebook(path, out / path.name, quick=quick, parameters=parameters)
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
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{path.stem}.run.json").write_text(json.dumps(
            {"notebook": path.name, "seconds": round(seconds, 2), "status": status, "mode": mode,
             "parameters": parameters, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_summary.json").write_text(json.dumps(summary, indent=2))
    if not args.no_record:
        record_times(summary, mode)
    print(f"\n{len(paths) - len(failures)}/{len(paths)} notebooks ran; summary in {out / 'run_summary.json'}")
    if not getattr(args, "no_gallery", False):
        from .gallery import build_gallery

        try:
            print(f"gallery -> {build_gallery(out)}")
        except Exception as err:  # the notebooks' results stand; the failed gallery fails the command
            print(f"gallery FAILED: {type(err).__name__}: {err}")
            return 1
    return 1 if failures else 0


def main(argv=None, prog: str | None = None) -> int:
    """``scripts/run_notebooks.py`` entry point: parse ``argv`` and :func:`run`."""
    parser = add_arguments(argparse.ArgumentParser(prog=prog, description=DESCRIPTION))
    return run(parser.parse_args(argv))


def record_times(summary: list[dict], mode: str, path: Path = ROOT / "bench" / "results" / "notebooks.json") -> None:
    """Merge the wall times of the notebooks that ran ok into ``path``: notebooks.<name>.<mode>."""
    from .runtime import atomic_write, machine_info

    data = json.loads(path.read_text()) if path.is_file() else {}
    book = data.setdefault("notebooks", {})
    # the machine's 1/5/15-minute load when the run ended: a busy shared machine inflates the times
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    for run_ in summary:
        if run_["status"] == "ok":
            book.setdefault(run_["notebook"], {})[mode] = {
                "seconds": run_["seconds"], "measured": time.strftime("%Y-%m-%d"), "machine": machine_info(),
                "load_average": load}
    with atomic_write(path, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"run times -> {path}")
