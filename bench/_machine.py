"""The machine a benchmark ran on, atomic JSON writers for bench/results/, and a timer of training steps."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from cosmonb import runtime

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """``cosmonb.runtime.machine_info()``: CPU model, torch's CPU capability, threads, versions.

    The same description the checkpoint manifest records, so a benchmark and a
    shipped checkpoint made on one machine say so in the same words.
    """
    return runtime.machine_info()


def write_results(name: str, results: dict, quiet: bool = False) -> Path:
    """Write bench/results/<name>.json atomically (``runtime.atomic_write``), with the machine attached."""
    path = RESULTS / f"{name}.json"
    with runtime.atomic_write(path, "w") as f:
        f.write(json.dumps({**results, "machine": machine()}, indent=2) + "\n")
    if not quiet:
        print(json.dumps(results, indent=2))
    print(f"-> {path}", flush=True)
    return path


def update_results(name: str, update, note: str) -> dict:
    """Change a written bench/results/<name>.json in place: ``update(result)`` edits the dict.

    The run's ``machine`` stays (it measured the rest); the change is listed under
    ``updates`` with its ``note`` and the machine that made it, and the file is rewritten
    atomically. Returns the new dict.

    Example (``bench/higlow.py --throughput --write``):
        update_results("higlow", lambda r: r.update(images_per_second=12.4), "throughput re-measured")
    """
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no written results to update; run the full benchmark first")
    result = json.loads(path.read_text())
    update(result)
    result.setdefault("updates", []).append({"note": note, "machine": machine(),
                                             "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    with runtime.atomic_write(path, "w") as f:
        f.write(json.dumps(result, indent=2) + "\n")
    print(f"-> {path}", flush=True)
    return result


def time_training_steps(step, model, *, batch: int, steps: int, warmup: int, profile: bool) -> dict:
    """Time ``steps`` calls of ``step()`` (one training step of ``batch`` images) after ``warmup`` calls.

    Returns images per second, wall and CPU seconds per step, the parameter count of
    ``model`` and the load average; with ``profile``, the top 12 ops of one more step by
    self CPU time (torch.profiler), so a throughput number comes with where it goes.
    """
    for _ in range(warmup):
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = {"images_per_second": batch * steps / wall, "params": int(sum(p.numel() for p in model.parameters())),
           "seconds_per_step": wall / steps, "cpu_seconds_per_step": cpu / steps, "batch": batch, "steps": steps,
           "warmup_steps": warmup, "load_average": list(os.getloadavg())}
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        out["profile_top_ops"] = [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2),
                                   "percent": round(100 * e.self_cpu_time_total / total, 1), "calls": int(e.count)}
                                  for e in events[:12]]
        out["profile_total_cpu_ms"] = round(total / 1e3, 1)
    return out


def checkpoint_summary(ckpt: dict, name: str, networks, preset: str, model_config: dict) -> dict:
    """What a benchmark records of the checkpoint it scored: file, size, sha256, whether the folder's
    MANIFEST.json lists it, the command and time that trained it, preset, model, steps and hardware.

    ``ckpt`` is a loaded checkpoint (``metadata.path`` set by ``checkpoints.load_pretrained``);
    ``networks`` the folder it came from (None: the shipped ``cosmonb/pretrained``).
    """
    from cosmonb import checkpoints

    path = Path(ckpt["metadata"]["path"])
    meta = ckpt["metadata"]
    return {"file": str(path), "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "in_manifest": name in checkpoints.read_manifest(networks), "command": meta["command"],
            "train_seconds": meta["seconds"], "preset": preset, "model": model_config,
            "steps": meta["metrics"].get("steps"), "hardware": meta["hardware"]}


def notebook_quick_time(notebook: str) -> dict:
    """``{notebook_quick_seconds, notebook_quick_measured}`` of ``notebook``'s quick mode as
    ``python -m cosmonb run --quick`` recorded it in bench/results/notebooks.json (empty if never run)."""
    times = RESULTS / "notebooks.json"
    book = json.loads(times.read_text()).get("notebooks", {}) if times.is_file() else {}
    quick = book.get(notebook, {}).get("quick")
    return {"notebook_quick_seconds": quick["seconds"], "notebook_quick_measured": quick["measured"]} if quick else {}
