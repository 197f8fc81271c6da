"""Callbacks of the step-based :class:`~cosmonb.train.Trainer`: early stopping, checkpoints, EMA, progress.

A callback may define ``on_train_start(trainer)``, ``on_step_end(trainer,
loss)`` (after each optimiser step; ``trainer.step`` counts them),
``on_eval_end(trainer, val_loss)``, ``on_train_end(trainer)``, and
``state_dict()`` / ``load_state_dict(state)`` to travel in the trainer's
checkpoint (so early stopping and the EMA resume exactly). Set
``trainer.should_stop = True`` to end the run. Under DDP every process runs
the callbacks (their decisions must agree); only rank 0 writes.
"""
from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from . import distributed
from .state import cpu_state

__all__ = ["Callback", "EarlyStopping", "PeriodicCheckpoint", "EMA", "Progress"]


class Callback:
    """Base class: every hook does nothing."""

    def on_train_start(self, trainer) -> None: ...

    def on_step_end(self, trainer, loss: float) -> None: ...

    def on_eval_end(self, trainer, val_loss: float) -> None: ...

    def on_train_end(self, trainer) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class EarlyStopping(Callback):
    """Stop after ``patience`` validation passes without an improvement of more than ``min_delta``;
    the best weights are restored at the end.

    Example:
        >>> es = EarlyStopping(patience=2)
        >>> class T: should_stop = False; step = 0; model = torch.nn.Linear(1, 1)
        >>> t = T()
        >>> for v in (1.0, 0.5, 0.6, 0.7):
        ...     es.on_eval_end(t, v)
        >>> t.should_stop, es.best
        (True, 0.5)
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best, self.best_step, self.since_best, self.best_state = math.inf, None, 0, None

    def on_eval_end(self, trainer, val_loss):
        if val_loss < self.best - self.min_delta:
            self.best, self.best_step, self.since_best = val_loss, trainer.step, 0
            self.best_state = cpu_state(distributed.unwrap(trainer.model))
        else:
            self.since_best += 1
            if self.since_best >= self.patience:
                trainer.should_stop = True
                trainer.stop_reason = (f"early stopping at step {trainer.step}: no improvement for "
                                       f"{self.patience} validation passes since step {self.best_step}")

    def on_train_end(self, trainer):
        if self.best_state is not None:
            distributed.unwrap(trainer.model).load_state_dict(self.best_state)

    def state_dict(self):
        return {"best": None if math.isinf(self.best) else self.best, "best_step": self.best_step,
                "since_best": self.since_best, "best_state": self.best_state}

    def load_state_dict(self, state):
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.best_step, self.since_best, self.best_state = state["best_step"], state["since_best"], state["best_state"]


class PeriodicCheckpoint(Callback):
    """Write the trainer's checkpoint every ``every_steps`` steps and/or ``every_minutes`` minutes, and at
    the end. Rank 0 decides (clocks differ between processes) and writes."""

    def __init__(self, every_steps: int | None = None, every_minutes: float | None = None):
        self.every_steps, self.every_minutes = every_steps, every_minutes
        self._last = time.monotonic()

    def on_train_start(self, trainer):
        self._last = time.monotonic()

    def on_step_end(self, trainer, loss):
        due = self.every_steps is not None and trainer.step % self.every_steps == 0
        if self.every_minutes is not None and time.monotonic() - self._last >= 60 * self.every_minutes:
            due = True
        if distributed.broadcast_object(due):
            trainer.save_checkpoint()
            self._last = time.monotonic()

    def on_train_end(self, trainer):
        trainer.save_checkpoint()


class EMA(Callback):
    """Exponential moving average of the weights, ``w_ema <- decay w_ema + (1 - decay) w`` after every step.

    ``ema.copy_to(model)`` loads the averaged weights (what diffusion models
    sample with); ``ema.shadow`` holds them. Buffers are copied as they are.
    """

    def __init__(self, decay: float):
        self.decay = float(decay)
        self.shadow: dict | None = None

    def on_train_start(self, trainer):
        if self.shadow is None:
            self.shadow = cpu_state(distributed.unwrap(trainer.model))

    @torch.no_grad()
    def on_step_end(self, trainer, loss):
        for k, v in distributed.unwrap(trainer.model).state_dict().items():
            v = v.detach().to("cpu")
            if v.is_floating_point():
                self.shadow[k].lerp_(v, 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model) -> None:
        distributed.unwrap(model).load_state_dict(self.shadow)

    def state_dict(self):
        return {"shadow": self.shadow}

    def load_state_dict(self, state):
        self.shadow = state["shadow"]


class Progress(Callback):
    """A tqdm bar over steps on rank 0 (loss in the postfix); silent elsewhere or when disabled."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.bar = enabled, None

    def on_train_start(self, trainer):
        self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc="train", unit="step",
                        disable=not (self.enabled and distributed.is_main()), dynamic_ncols=True)

    def on_step_end(self, trainer, loss):
        self.bar.set_postfix({"loss": f"{loss:.4g}"}, refresh=False)
        self.bar.update(1)

    def on_eval_end(self, trainer, val_loss):
        self.bar.set_postfix({"val": f"{val_loss:.4g}"}, refresh=False)

    def on_train_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
