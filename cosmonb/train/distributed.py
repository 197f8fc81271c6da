"""Data-parallel training with ``torch.distributed`` when launched by ``torchrun``.

``torchrun --nproc_per_node=N script.py`` starts N processes and sets
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` in each. :func:`setup` sees them and joins the process group
(``gloo`` on CPU, ``nccl`` on CUDA, each process on ``cuda:LOCAL_RANK``);
without them everything here is a no-op for one process. The trainer wraps
the model in ``DistributedDataParallel`` (gradients are averaged over the
processes at every backward pass), shards the data with a
``DistributedSampler``, and logs, checkpoints and writes on rank 0 only,
saving the unwrapped module's state so a checkpoint loads into a plain model.

Example:
    >>> is_launched({}), world_size(), rank(), is_main()
    (False, 1, 0, True)
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from .. import runtime

__all__ = ["is_launched", "setup", "cleanup", "is_initialized", "rank", "world_size", "is_main", "barrier",
           "all_reduce_sum", "all_gather_object", "broadcast_object", "LossModule", "unwrap"]

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def is_launched(environ=None) -> bool:
    """True when the process was started by ``torchrun`` (its environment variables are set)."""
    env = os.environ if environ is None else environ
    return all(k in env for k in _ENV)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup(device=None) -> torch.device:
    """Join the process group if launched by torchrun; returns this process's device.

    ``device`` None: ``COSMONB_DEVICE`` if set, else ``cuda:LOCAL_RANK`` when CUDA is
    available, else the CPU. The backend is nccl for CUDA and gloo otherwise. nccl
    needs one GPU per process: more local processes than GPUs raise ``ValueError``
    (say ``COSMONB_DEVICE=cpu`` to run them on the CPU with gloo).
    """
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = runtime.select_device(device, "device")  # None: COSMONB_DEVICE, else cuda, mps or cpu
    if device.type == "mps":  # no process-group backend for mps: the processes run on the CPU (gloo)
        device = torch.device("cpu")
    if device.type == "cuda" and device.index is None:
        n_gpus, n_local = torch.cuda.device_count(), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        if n_local > n_gpus:  # nccl cannot run two processes on one GPU
            raise ValueError(f"torchrun started {n_local} processes on this machine but it has {n_gpus} GPU(s): "
                             f"use --nproc_per_node={n_gpus} (one process per GPU), or COSMONB_DEVICE=cpu for "
                             "CPU processes (gloo)")
        device = torch.device(f"cuda:{local}")
    if is_launched() and not is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def cleanup() -> None:
    """Leave the process group (end of a run)."""
    if is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (the process that logs and writes)."""
    return rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over the processes (in place; ``t`` itself for one process)."""
    if is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects)."""
    if not is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every process (so that all take the same decision)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class LossModule(nn.Module):
    """``forward(batch) = model.loss(batch)``: what DDP wraps, so its gradient hooks see the loss.

    DDP synchronises gradients only through its own ``forward``; calling
    ``ddp.module.loss(batch)`` would bypass it. Wrapping this module instead
    keeps the contract (the trainer calls nothing but ``loss``).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def unwrap(module: nn.Module) -> nn.Module:
    """The user's model inside a DDP and/or :class:`LossModule` wrapper."""
    while isinstance(module, (nn.parallel.DistributedDataParallel, LossModule)):
        module = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module.model
    return module
