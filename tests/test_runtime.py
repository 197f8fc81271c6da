"""cosmonb.runtime: atomic writes that clean up after killed writers, and machine_info (issue 8)."""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from cosmonb import runtime, train

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs fork and SIGKILL")
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- killed writers
# Each runs in a forked child and SIGKILLs itself half-way through a write, as a kill -9
# (or the OOM killer) would: no except/finally runs, so the temporary file stays behind.
def _die_in_atomic_write(target):
    with runtime.atomic_write(target, "wb") as f:
        f.write(b"x" * 100_000)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _die_in_checkpoint_save(target):
    def save_then_die(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die  # only in this child
    _fit_once(target)


def _die_in_record(target):
    def dump_then_die(obj, f, **kwargs):
        f.write('{"half": ')
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    json.dump = dump_then_die  # only in this child
    os.environ["COSMONB_RECORDS"] = str(target)
    runtime.record("killed", 1.0)


def _live_writer(target, ready, finish):
    with runtime.atomic_write(target, "wb") as f:
        f.write(b"live")
        f.flush()
        ready.set()
        finish.wait(20)


def _fit_once(target=None):
    model = torch.nn.Linear(1, 1)
    train.fit(model, lambda m, b: (m(b) ** 2).mean(), [torch.ones(2, 1)], epochs=1, checkpoint=target,
              progress=False, device="cpu")


def _run_killed(fn, target, n):
    if fn is _die_in_checkpoint_save:
        _fit_once()  # torch's lazy imports on a first optimizer step (~2 s) happen once, here, not per child
    ctx = multiprocessing.get_context("fork")
    for _ in range(n):
        p = ctx.Process(target=fn, args=(target,))
        p.start()
        p.join(20)  # joined, so the dead child is reaped (not a zombie whose PID still answers)
        assert p.exitcode == -signal.SIGKILL


def _temps(folder: Path, name: str) -> set:
    return set(folder.glob(f".{name}.*.tmp"))


@pytest.mark.parametrize("writer", [_die_in_atomic_write, _die_in_checkpoint_save, _die_in_record])
def test_next_write_removes_orphans_of_killed_writers(tmp_path, writer):
    # the old atomic_write left every killed writer's temporary file behind for good
    target = tmp_path / ("records.json" if writer is _die_in_record else "run.pt")
    if writer is not _die_in_checkpoint_save:  # (fit would resume from an existing file)
        target.write_bytes(b"{}" if writer is _die_in_record else b"old")
    before = target.read_bytes() if target.exists() else None
    _run_killed(writer, target, 2)
    # each killed writer's own write already removed the orphan of the one before it (the old
    # code kept both); the last one's stays until the next write
    orphans = _temps(tmp_path, target.name)
    assert len(orphans) == 1  # and the target itself is intact (or still absent):
    assert (target.read_bytes() if target.exists() else None) == before
    other = tmp_path / "other.pt"
    _run_killed(_die_in_atomic_write, other, 1)  # an orphan of another target: not this write's business
    other_orphans = _temps(tmp_path, other.name)

    ctx = multiprocessing.get_context("fork")
    ready, finish = ctx.Event(), ctx.Event()
    live = ctx.Process(target=_live_writer, args=(target, ready, finish))
    live.start()
    try:
        assert ready.wait(20)
        live_tmp = _temps(tmp_path, target.name) - orphans
        assert len(live_tmp) == 1 and str(live.pid) in next(iter(live_tmp)).name
        with runtime.atomic_write(target, "wb") as f:  # the next write to the same target
            f.write(b"new")
        assert target.read_bytes() == b"new"
        assert _temps(tmp_path, target.name) == live_tmp  # orphans gone, the live writer's file kept
    finally:
        finish.set()
        live.join(20)
    assert live.exitcode == 0 and target.read_bytes() == b"live"  # the live writer finished normally
    assert _temps(tmp_path, target.name) == set() and _temps(tmp_path, other.name) == other_orphans


def test_orphans_without_a_pid_are_removed_only_when_old(tmp_path):
    target = tmp_path / "cache.npy"
    old = tmp_path / ".cache.npy.abcd1234.tmp"  # the name the previous atomic_write used
    fresh = tmp_path / ".cache.npy.wxyz_789.tmp"
    unrelated = tmp_path / ".cache.npy.backup.tmp"
    for p in (old, fresh, unrelated):
        p.write_bytes(b"x")
    hour_ago = time.time() - runtime.ORPHAN_AGE_SECONDS - 60
    os.utime(old, (hour_ago, hour_ago))
    os.utime(unrelated, (hour_ago, hour_ago))
    with runtime.atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert not old.exists() and fresh.exists() and unrelated.exists()


def test_atomic_path_removes_its_file_on_error(tmp_path):
    target = tmp_path / "x.h5"
    target.write_bytes(b"old")
    with pytest.raises(KeyError):
        with runtime.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyError("boom")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]
    with pytest.raises(ValueError, match="path: expected a file path"):
        with runtime.atomic_path(3):
            pass


# --------------------------------------------------------------------------- machine_info
def test_machine_info_records_cpu_model_and_capability(tmp_path):
    info = runtime.machine_info()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(info["cpu"], str) and info["cpu"]
    json.dumps(info)  # plain JSON
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    assert runtime._cpu_model(cpuinfo) == "AMD EPYC 7B13 64-Core Processor"
    assert runtime._cpu_model(tmp_path / "missing")  # falls back to platform.processor()


def test_bench_metadata_uses_machine_info(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_machine", ROOT / "bench" / "_machine.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    path = bench.write_results("demo", {"seconds": 1.5})
    data = json.loads(path.read_text())
    assert data["seconds"] == 1.5
    assert data["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert data["machine"]["cpu"] == runtime.machine_info()["cpu"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json"]

    # a later change keeps the run's machine and lists itself under "updates"
    run_machine = {**data["machine"], "cpu": "the machine of the run"}
    path.write_text(json.dumps({**data, "machine": run_machine}))
    out = bench.update_results("demo", lambda r: r.update(seconds=2.5), "re-timed")
    assert out == json.loads(path.read_text())
    assert out["seconds"] == 2.5 and out["machine"] == run_machine
    assert [u["note"] for u in out["updates"]] == ["re-timed"]
    assert out["updates"][0]["machine"]["cpu"] == runtime.machine_info()["cpu"]
    with pytest.raises(FileNotFoundError, match="run the full benchmark first"):
        bench.update_results("missing", lambda r: None, "never")
