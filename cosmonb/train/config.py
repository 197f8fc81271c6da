"""The validated settings of a training run (:class:`TrainConfig`), counted in optimiser steps."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .._checks import check_float, check_int

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULERS"]

#: Optimizer names of ``TrainConfig.optimizer``.
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop}
#: Scheduler names: ``None``/"constant", "cosine" (to lr * min_lr_ratio), each after ``warmup_steps``.
SCHEDULERS = (None, "constant", "cosine")


@dataclass
class TrainConfig:
    """Settings of a :class:`~cosmonb.train.Trainer` run; validated on creation, JSON-able.

    Training is counted in **optimiser steps** (one step = ``grad_accum``
    batches). Give ``max_steps``, or ``epochs`` as a convenience: the trainer
    converts it to ``epochs * steps_per_epoch`` once it knows the data.

    ``batch_size`` is the **global** batch of one micro-step: under
    ``torchrun --nproc_per_node=N`` each process takes ``batch_size // N``
    rows (it must divide), so a run's batches, and its result up to float
    rounding, do not depend on the number of processes.

    Other fields: ``lr``, ``optimizer`` (adam, adamw, sgd, rmsprop),
    ``weight_decay``, ``scheduler`` (None/"constant" or "cosine", stepped every
    optimiser step, after a linear warm-up of ``warmup_steps``),
    ``min_lr_ratio``, ``grad_accum``, ``clip_grad`` (max total gradient
    norm), ``skip_grad_norm`` (skip the optimiser update of a step whose
    gradient norm, before clipping, exceeds it or is not finite; VDVAE's guard
    against exploding updates), ``momentum`` (sgd and rmsprop only),
    ``checkpoint_every_steps`` and/or ``checkpoint_every_minutes``,
    ``ema_decay`` (keep an exponential moving average of the weights),
    ``eval_every`` (steps between validation passes; default once per epoch),
    ``patience`` (early stopping after that many validation passes without an
    improvement of more than ``min_delta``), ``seed``, ``progress``.

    Example:
        >>> cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, ema_decay=0.999)
        >>> cfg.total_steps(steps_per_epoch=10), TrainConfig.from_dict(cfg.to_dict()) == cfg
        (20, True)
        >>> TrainConfig(max_steps=0)
        Traceback (most recent call last):
        ...
        ValueError: max_steps: expected an integer >= 1, got 0
    """

    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str | None = None
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    grad_accum: int = 1
    clip_grad: float | None = None
    skip_grad_norm: float | None = None
    momentum: float = 0.0
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = None
    ema_decay: float | None = None
    eval_every: int | None = None
    patience: int | None = None
    min_delta: float = 0.0
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("max_steps, epochs: give exactly one (epochs is converted to steps)")
        if self.max_steps is not None:
            self.max_steps = check_int(self.max_steps, "max_steps", 1)
        if self.epochs is not None:
            self.epochs = check_int(self.epochs, "epochs", 1)
        self.batch_size = check_int(self.batch_size, "batch_size", 1)
        self.lr = check_float(self.lr, "lr", positive=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        self.weight_decay = check_float(self.weight_decay, "weight_decay", positive=False)
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: expected one of {SCHEDULERS}, got {self.scheduler!r}")
        self.warmup_steps = check_int(self.warmup_steps, "warmup_steps", 0)
        self.min_lr_ratio = check_float(self.min_lr_ratio, "min_lr_ratio", positive=False)
        if self.min_lr_ratio > 1:
            raise ValueError(f"min_lr_ratio: expected a number in [0, 1], got {self.min_lr_ratio}")
        self.grad_accum = check_int(self.grad_accum, "grad_accum", 1)
        self.momentum = check_float(self.momentum, "momentum", positive=False)
        if self.momentum and self.optimizer not in ("sgd", "rmsprop"):
            raise ValueError(f"momentum: only sgd and rmsprop take a momentum, got {self.momentum} with "
                             f"optimizer {self.optimizer!r}")
        for name in ("clip_grad", "skip_grad_norm", "checkpoint_every_minutes"):
            if getattr(self, name) is not None:
                setattr(self, name, check_float(getattr(self, name), name, positive=True))
        for name in ("checkpoint_every_steps", "eval_every", "patience"):
            if getattr(self, name) is not None:
                setattr(self, name, check_int(getattr(self, name), name, 1))
        if self.ema_decay is not None:
            self.ema_decay = check_float(self.ema_decay, "ema_decay", positive=True)
            if not self.ema_decay < 1:
                raise ValueError(f"ema_decay: expected a number in (0, 1), got {self.ema_decay}")
        self.min_delta = check_float(self.min_delta, "min_delta", positive=False)
        self.seed = check_int(self.seed, "seed", 0)
        if not isinstance(self.progress, bool):
            raise ValueError(f"progress: expected True or False, got {self.progress!r}")

    def total_steps(self, steps_per_epoch: int | None = None) -> int:
        """``max_steps``, or ``epochs * steps_per_epoch``."""
        if self.max_steps is not None:
            return self.max_steps
        if steps_per_epoch is None:
            raise ValueError("steps_per_epoch: needed to convert epochs to steps (the data has no length?)")
        return self.epochs * check_int(steps_per_epoch, "steps_per_epoch", 1)

    def lr_factor(self, total: int):
        """The schedule as a function of the step (for ``LambdaLR``): warm-up, then constant or cosine."""
        warm, floor, cosine = self.warmup_steps, self.min_lr_ratio, self.scheduler == "cosine"

        def factor(step: int) -> float:
            f = min(1.0, (step + 1) / warm) if warm else 1.0
            if cosine:
                progress = min(max(step - warm, 0) / max(total - warm, 1), 1.0)
                f *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
            return f

        return factor

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Inverse of ``to_dict``; an unknown key raises ``ValueError`` naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"config: unknown TrainConfig keys {unknown}; known: {sorted(names)}")
        return cls(**data)
