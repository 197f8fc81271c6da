"""The machine a benchmark ran on, and an atomic JSON writer for bench/results/."""
from __future__ import annotations

import json
from pathlib import Path

from cosmonb import runtime

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """``cosmonb.runtime.machine_info()``: CPU model, torch's CPU capability, threads, versions.

    The same description the checkpoint manifest records, so a benchmark and a
    shipped checkpoint made on one machine say so in the same words.
    """
    return runtime.machine_info()


def write_results(name: str, results: dict) -> Path:
    """Write bench/results/<name>.json atomically (``runtime.atomic_write``), with the machine attached."""
    path = RESULTS / f"{name}.json"
    with runtime.atomic_write(path, "w") as f:
        f.write(json.dumps({**results, "machine": machine()}, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"-> {path}")
    return path
