"""DDP under torchrun (2 CPU processes, gloo) gives the parameters of one process on the same global batch.

The trainer's ``batch_size`` is the global batch: under ``--nproc_per_node=2``
each process takes half of every batch (DistributedSampler, rank r gets rows
r, r + 2, ... of the same shuffled order), and DDP averages the two
gradients, which is the gradient of the mean loss over the whole batch. The
runs differ only in the order of float32 sums, so the parameters agree to
~1e-6 (compared with atol 1e-5), not bit for bit. Resuming from a rank-0
checkpoint (DDP -> DDP and DDP -> one process) continues the same run.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from cosmonb.models.flows import DensityFlow
from cosmonb.train import Trainer, TrainConfig

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import torch
from torch.utils.data import TensorDataset
from cosmonb.models.flows import DensityFlow
from cosmonb.train import Trainer, TrainConfig

def make(max_steps, checkpoint=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=g) * torch.tensor([0.5, 0.3]) + torch.tensor([11.0, 9.0])
    torch.manual_seed(1)
    flow = DensityFlow(2, transforms=2, bins=4, hidden=(8,))
    flow.set_normaliser(x)
    cfg = TrainConfig(max_steps=max_steps, batch_size=32, lr=1e-2, seed=0, progress=False,
                      checkpoint_every_steps=3, ema_decay=0.9)
    return Trainer(flow, cfg, checkpoint=checkpoint, device="cpu"), TensorDataset(x)
"""

WORKER = SETUP + """
import sys
from cosmonb.train import distributed
steps, ckpt, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
trainer, data = make(steps, ckpt)
result = trainer.fit(data)
assert result["world_size"] == 2, result
if distributed.is_main():
    torch.save({"state": trainer.model.state_dict(), "ema": trainer.ema.shadow, "result": result}, out)
distributed.cleanup()
"""

namespace: dict = {}
exec(SETUP, namespace)  # the same model, data and config in this process
make = namespace["make"]


def _torchrun(tmp_path: Path, steps: int, ckpt: Path, out: Path) -> dict:
    script = tmp_path / "ddp_worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("COSMONB_DEVICE", None)
    with socket.socket() as sock:  # a free port (torchrun's static rendezvous does not take port 0)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(script), str(steps), str(ckpt), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out, weights_only=False)


def _assert_same(a: dict, b: dict, atol: float):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f"{k}: {m}")


def test_single_process_resume_is_bit_exact(tmp_path):
    trainer, data = make(6)
    trainer.fit(data)
    first, data = make(3, tmp_path / "run.pt")
    first.fit(data)
    again, data = make(6, tmp_path / "run.pt")
    result = again.fit(data)
    assert result["resumed_at"] == [3] and result["steps"] == 6
    _assert_same(again.model.state_dict(), trainer.model.state_dict(), atol=0)
    _assert_same(again.ema.shadow, trainer.ema.shadow, atol=0)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_ddp_two_processes_match_one_process_and_resume(tmp_path):
    single, data = make(6)
    single.fit(data)
    ckpt = tmp_path / "ddp.pt"
    # 3 steps on 2 processes, a rank-0 checkpoint, then a second launch resumes it to step 6
    _torchrun(tmp_path, 3, ckpt, tmp_path / "half.pt")
    blob = torch.load(ckpt, weights_only=False)
    assert blob["step"] == 3 and blob["world_size"] == 2 and len(blob["rng_ranks"]) == 2
    assert not any(k.startswith(("module.", "model.")) for k in blob["model"])  # the unwrapped module's state
    copy = tmp_path / "ddp_copy.pt"
    copy.write_bytes(ckpt.read_bytes())
    ddp = _torchrun(tmp_path, 6, ckpt, tmp_path / "full.pt")
    assert ddp["result"]["resumed_at"] == [3] and ddp["result"]["steps"] == 6
    # float32 sums in another order: ~1e-6 apart, not bit for bit
    _assert_same(ddp["state"], single.model.state_dict(), atol=1e-5)
    _assert_same(ddp["ema"], single.ema.shadow, atol=1e-5)
    # the rank-0 checkpoint of the DDP run also resumes on one process
    one, data = make(6, copy)
    result = one.fit(data)
    assert result["resumed_at"] == [3] and result["world_size"] == 1
    _assert_same(one.model.state_dict(), single.model.state_dict(), atol=1e-5)


def test_setup_refuses_more_processes_than_gpus(monkeypatch):
    """nccl cannot share one GPU between two processes: a clear error instead of a hang in nccl."""
    from cosmonb.train import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("COSMONB_DEVICE", raising=False)
    with pytest.raises(ValueError, match="nproc_per_node=1"):
        distributed.setup("cuda")
    monkeypatch.setenv("COSMONB_DEVICE", "cpu")
    assert distributed.setup(None) == torch.device("cpu")  # not launched: no process group is joined
