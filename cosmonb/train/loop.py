"""The step-based trainer: one loop for every model, on one process or N under ``torchrun``.

:class:`Trainer` calls nothing but ``model.loss(batch)`` (the contract of
:mod:`cosmonb.models.base`). One optimiser step averages the gradients of
``grad_accum`` micro-batches,

    g = (1 / grad_accum) sum_m grad loss(batch_m),

(and, under DDP, over the processes too: DDP averages the gradients of the
``world_size`` shards, so a step sees the same ``batch_size`` rows whatever
the number of processes). The learning-rate schedule is stepped after every
optimiser step. A checkpoint (``cosmonb.trainer/1``) holds the unwrapped
model, optimizer, scheduler, callbacks (early stopping, EMA), the position in
the data (epoch, batches consumed) and every process's RNG states, so a
resumed run, on one process or N, ends with the same weights as one that
was never interrupted (bit for bit on CPU for the same number of processes).

Data: a map-style ``torch.utils.data.Dataset`` (sharded with a
``DistributedSampler``, reshuffled each epoch from ``config.seed``; the last
incomplete batch is dropped), or a callable ``epoch -> iterable of batches``
(each process must then give its own shard).

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from cosmonb.models.flows import DensityFlow
    >>> _ = torch.manual_seed(0)
    >>> flow = DensityFlow(1, transforms=1, bins=4)
    >>> data = TensorDataset(torch.randn(256, 1) * 0.5 + 3)
    >>> flow.set_normaliser(data.tensors[0])
    >>> result = Trainer(flow, TrainConfig(epochs=3, batch_size=64, lr=1e-2, progress=False)).fit(data)
    >>> result["steps"], result["train_loss"][-1] < result["train_loss"][0]
    (12, True)
"""
from __future__ import annotations

import collections.abc
import inspect
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .. import runtime
from . import distributed
from .callbacks import EMA, Callback, EarlyStopping, PeriodicCheckpoint, Progress
from .config import OPTIMIZERS, TrainConfig
from .state import (CheckpointError, NonFiniteLossError, apply_new_lr, batch_size_of, check_loss, get_rng_state,
                    load_checkpoint, optimizer_name, requested_lrs, restore_states, set_rng_state, to_device)

__all__ = ["Trainer", "TRAINER_FORMAT"]

TRAINER_FORMAT = "cosmonb.trainer/1"
_REQUIRED = {"format", "step", "epoch", "batches_done", "model", "optimizer", "scheduler", "rng", "callbacks",
             "history"}


class Trainer:
    """Train ``model`` (a :class:`~cosmonb.models.base.Model`) with ``config`` (:class:`TrainConfig`).

    ``checkpoint``: a file path; written (atomically, by rank 0) as the
    config's checkpoint settings ask and at the end, and resumed from if it
    exists (a corrupt or mismatched file raises ``CheckpointError``).
    ``callbacks``: more :class:`~cosmonb.train.callbacks.Callback` objects;
    those the config asks for (progress, checkpoints, EMA, early stopping)
    are added. ``device``: None picks ``cuda:LOCAL_RANK`` under torchrun with
    CUDA, else ``cosmonb.device()``.

    ``fit(train_data, val_data=None)`` returns a dict: ``steps``,
    ``train_loss`` (mean per step), ``val_loss`` and ``val_steps``,
    ``stop_reason``, ``seconds``, ``world_size``, ``skipped_steps`` (updates
    left out by ``config.skip_grad_norm``). ``trainer.ema`` holds the
    EMA callback (or None); ``trainer.model`` the unwrapped model.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, *, checkpoint=None, callbacks=(), device=None):
        if not isinstance(model, nn.Module) or not callable(getattr(model, "loss", None)):
            raise ValueError(f"model: expected a cosmonb model (an nn.Module with loss(batch)), got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config: expected a TrainConfig, got {type(config).__name__}")
        if checkpoint is not None:
            if not isinstance(checkpoint, (str, os.PathLike)) or Path(checkpoint).is_dir():
                raise ValueError(f"checkpoint: expected a file path such as run.pt, got {checkpoint!r}")
            checkpoint = Path(checkpoint)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise ValueError(f"callbacks: expected Callback objects, got {type(cb).__name__}")
        self.config, self.checkpoint = config, checkpoint
        if distributed.is_launched() or distributed.is_initialized():
            self.device = distributed.setup(device)
        else:
            self.device = runtime.select_device(device, "device")
        self.world, self.rank = distributed.world_size(), distributed.rank()
        if config.batch_size % self.world:
            raise ValueError(f"batch_size: the global batch ({config.batch_size}) must divide among "
                             f"{self.world} processes")
        self.model = model.to(self.device)
        self.ema = EMA(config.ema_decay) if config.ema_decay is not None else None
        self.early = EarlyStopping(config.patience, config.min_delta) if config.patience is not None else None
        self.callbacks = [Progress(config.progress)] + list(callbacks) + [
            cb for cb in (self.ema, self.early) if cb is not None]
        if checkpoint is not None:
            self.callbacks.append(PeriodicCheckpoint(config.checkpoint_every_steps, config.checkpoint_every_minutes))
        self.step, self.epoch, self.batches_done = 0, 0, 0
        self.should_stop, self.stop_reason = False, ""
        self.history = {"train_loss": [], "val_loss": [], "val_steps": [], "seconds": 0.0, "resumed_at": []}
        self.total_steps = None

    # ------------------------------------------------------------------ data
    def _loader(self, data, train: bool):
        if isinstance(data, Dataset) and hasattr(data, "__len__"):
            sampler = DistributedSampler(data, num_replicas=self.world, rank=self.rank, shuffle=train,
                                         seed=self.config.seed, drop_last=train)
            return DataLoader(data, batch_size=self.config.batch_size // self.world, sampler=sampler,
                              drop_last=train)
        if callable(data) and not isinstance(data, collections.abc.Iterable):
            return data
        if isinstance(data, collections.abc.Iterable) and not isinstance(data, (str, bytes, collections.abc.Iterator)):
            return data
        raise ValueError("data: expected a map-style Dataset, a callable epoch -> iterable of batches, or a list "
                         f"of batches, got {type(data).__name__}")

    @staticmethod
    def _epoch_batches(loader, epoch: int):
        if isinstance(loader, DataLoader):
            loader.sampler.set_epoch(epoch)
            return loader
        if callable(loader) and not isinstance(loader, collections.abc.Iterable):
            try:
                inspect.signature(loader).bind(epoch)
                return loader(epoch)
            except TypeError:
                return loader()
        return loader

    # ------------------------------------------------------------------ checkpoints
    def _make_optimizer(self):
        cfg = self.config
        kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if cfg.momentum:
            kwargs["momentum"] = cfg.momentum
        return OPTIMIZERS[cfg.optimizer](self.model.parameters(), **kwargs)

    def save_checkpoint(self) -> None:
        """Write the checkpoint (every process gathers its RNG state; rank 0 writes)."""
        rngs = distributed.all_gather_object(get_rng_state({}))
        if self.checkpoint is None or not distributed.is_main():
            distributed.barrier()
            return
        ckpt = {"format": TRAINER_FORMAT, "step": self.step, "epoch": self.epoch, "batches_done": self.batches_done,
                "total_steps": self.total_steps, "model": distributed.unwrap(self.model).state_dict(),
                "optimizer": self.opt.state_dict(), "optimizer_class": optimizer_name(self.opt),
                "requested_lr": requested_lrs(self.opt), "scheduler": self.sched.state_dict(),
                "rng": rngs[0], "rng_ranks": rngs, "world_size": self.world,
                "callbacks": [cb.state_dict() for cb in self.callbacks], "history": dict(self.history),
                "stop_reason": self.stop_reason, "should_stop": self.should_stop,
                "config": self.config.to_dict(), "torch_version": str(torch.__version__)}
        with runtime.atomic_write(self.checkpoint, "wb") as f:
            torch.save(ckpt, f)
        distributed.barrier()

    def _resume(self) -> bool:
        ckpt = load_checkpoint(self.checkpoint, TRAINER_FORMAT, _REQUIRED)
        requested = requested_lrs(self.opt)  # this config's lr, before the checkpoint's replaces it
        restore_states(ckpt, self.checkpoint, distributed.unwrap(self.model), self.opt, self.sched, {})
        # a changed lr takes effect (scaled schedule, same progress) with a warning, as in fit
        apply_new_lr(ckpt, self.checkpoint, self.opt, self.sched, requested, int(ckpt["step"]),
                     caller="Trainer", unit="step", stacklevel=4)
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(ranks) == self.world:  # same number of processes: each continues its own streams
            set_rng_state(ranks[self.rank], {})
        saved_cbs = ckpt["callbacks"]
        if len(saved_cbs) != len(self.callbacks):
            raise CheckpointError(f"checkpoint {self.checkpoint} was written with {len(saved_cbs)} callbacks, "
                                  f"this run has {len(self.callbacks)} (another patience / ema_decay / callbacks?)")
        for cb, state in zip(self.callbacks, saved_cbs):
            cb.load_state_dict(state)
        self.step, self.epoch, self.batches_done = int(ckpt["step"]), int(ckpt["epoch"]), int(ckpt["batches_done"])
        self.history = ckpt["history"]
        self.stop_reason, self.should_stop = ckpt["stop_reason"], bool(ckpt["should_stop"])
        return True

    # ------------------------------------------------------------------ loop
    @torch.no_grad()
    def evaluate(self, data) -> float:
        """Mean ``model.loss`` over ``data`` (weighted by batch size, summed over the processes), eval mode."""
        model = distributed.unwrap(self.model)
        was = model.training
        model.eval()
        total = torch.zeros(2, dtype=torch.float64)
        try:
            for batch in self._epoch_batches(self._loader(data, train=False), 0):
                batch = to_device(batch, self.device)
                n = batch_size_of(batch)
                total += torch.tensor([check_loss(model.loss(batch), self.epoch + 1, self.step, "validation") * n, n],
                                      dtype=torch.float64)
        finally:
            model.train(was)
        total = distributed.all_reduce_sum(total.to(self.device)).cpu()
        if total[1] == 0:
            raise ValueError("val_data: yielded no batches")
        return float(total[0] / total[1])

    def fit(self, train_data, val_data=None) -> dict:
        cfg = self.config
        if cfg.patience is not None and val_data is None:
            raise ValueError("patience: early stopping watches the validation loss, so it needs val_data")
        runtime.seed_everything(cfg.seed + self.rank)  # each process its own streams (dropout, noise levels)
        loader = self._loader(train_data, train=True)
        per_epoch = len(loader) // cfg.grad_accum if hasattr(loader, "__len__") else None
        if per_epoch == 0:
            raise ValueError(f"train_data: fewer batches per epoch than grad_accum={cfg.grad_accum} "
                             f"(batch_size {cfg.batch_size}, {self.world} process(es))")
        self.total_steps = cfg.total_steps(per_epoch)
        eval_every = cfg.eval_every or per_epoch or self.total_steps
        self.opt = self._make_optimizer()
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, cfg.lr_factor(self.total_steps))
        resumed = self.checkpoint is not None and self.checkpoint.exists() and self._resume()
        if resumed:
            self.history.setdefault("resumed_at", []).append(self.step)
            if distributed.is_main():
                print(f"[cosmonb.train] resumed from {self.checkpoint} at step {self.step} of {self.total_steps}")
        core = distributed.LossModule(distributed.unwrap(self.model))
        net = core
        if distributed.is_initialized():
            net = nn.parallel.DistributedDataParallel(
                core, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        params = [p for p in core.parameters() if p.requires_grad]
        for cb in self.callbacks:
            cb.on_train_start(self)
        t0, seconds_before = time.perf_counter(), float(self.history.get("seconds", 0.0))
        try:
            while self.step < self.total_steps and not self.should_stop:
                core.train()
                self.opt.zero_grad(set_to_none=True)  # drop a partial accumulation left by the last epoch
                micro, running = 0, 0.0
                for i, batch in enumerate(self._epoch_batches(loader, self.epoch)):
                    if i < self.batches_done:  # resumed mid-epoch: these batches were used already
                        continue
                    batch = to_device(batch, self.device)
                    micro += 1
                    last = micro == cfg.grad_accum
                    sync = net.no_sync() if (not last and isinstance(net, nn.parallel.DistributedDataParallel)) \
                        else _nullcontext()
                    with sync:
                        loss = net(batch)
                        running += check_loss(loss, self.epoch + 1, self.step + 1, "training") / cfg.grad_accum
                        (loss / cfg.grad_accum).backward()
                    self.batches_done = i + 1
                    if not last:
                        continue
                    skip = False
                    if cfg.clip_grad is not None or cfg.skip_grad_norm is not None:
                        norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad or float("inf")))
                        finite = norm == norm and norm != float("inf")
                        skip = cfg.skip_grad_norm is not None and not (finite and norm <= cfg.skip_grad_norm)
                        if not finite and not skip:
                            raise NonFiniteLossError(f"gradient norm is {norm} at step {self.step + 1}")
                    if skip:  # the step counts (schedule, data) but the weights stay
                        self.history["skipped_steps"] = self.history.get("skipped_steps", 0) + 1
                    else:
                        self.opt.step()
                    self.opt.zero_grad(set_to_none=True)
                    self.sched.step()
                    self.step += 1
                    mean = distributed.all_reduce_sum(torch.tensor([running], dtype=torch.float64,
                                                                   device=self.device)).item() / self.world
                    self.history["train_loss"].append(mean)
                    micro, running = 0, 0.0
                    if val_data is not None and (self.step % eval_every == 0 or self.step == self.total_steps):
                        val = self.evaluate(val_data)
                        self.history["val_loss"].append(val)
                        self.history["val_steps"].append(self.step)
                        for cb in self.callbacks:
                            cb.on_eval_end(self, val)
                    if self.step >= self.total_steps and not self.should_stop:
                        self.stop_reason = f"completed {self.total_steps} steps"
                    self.history["seconds"] = seconds_before + time.perf_counter() - t0
                    for cb in self.callbacks:
                        cb.on_step_end(self, mean)
                    if self.step >= self.total_steps or self.should_stop:
                        break
                else:
                    self.epoch, self.batches_done = self.epoch + 1, 0
                    continue
                if self.batches_done >= _len_or_none(loader, self.batches_done + 1):
                    self.epoch, self.batches_done = self.epoch + 1, 0
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
        distributed.unwrap(self.model).eval()
        return {"steps": self.step, "train_loss": list(self.history["train_loss"]),
                "val_loss": list(self.history["val_loss"]), "val_steps": list(self.history["val_steps"]),
                "stop_reason": self.stop_reason, "seconds": self.history["seconds"], "world_size": self.world,
                "resumed_at": list(self.history.get("resumed_at", [])),
                "skipped_steps": int(self.history.get("skipped_steps", 0))}


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _len_or_none(loader, default):
    return len(loader) if hasattr(loader, "__len__") else default
