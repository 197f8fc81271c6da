"""Training for every model in cosmonb: one step-based loop, callbacks, and DDP under ``torchrun``.

* :class:`TrainConfig` (``config.py``): the validated settings of a run,
  counted in optimiser steps (``epochs`` is a convenience converted to steps).
* :class:`Trainer` (``loop.py``): calls nothing but ``model.loss(batch)``;
  gradient accumulation and clipping, a scheduler stepped per step,
  checkpoints every N steps and/or minutes, bit-exact resume; the same code
  runs as N processes under ``torchrun`` (``distributed.py``).
* callbacks (``callbacks.py``): early stopping, checkpointing, EMA, progress.
* :func:`fit` / :func:`evaluate` / :class:`History` (``epochs.py``): the
  epoch-based loop that notebooks 01 and 02 use (``loss_fn=None`` means
  ``model.loss``); shared state helpers in ``state.py``.
"""
from . import distributed
from .callbacks import EMA, Callback, EarlyStopping, PeriodicCheckpoint, Progress
from .config import TrainConfig
from .epochs import History, evaluate, fit, model_loss
from .loop import Trainer
from .state import CheckpointError, NonFiniteLossError

__all__ = ["fit", "evaluate", "History", "NonFiniteLossError", "CheckpointError", "model_loss", "TrainConfig",
           "Trainer", "Callback", "EarlyStopping", "PeriodicCheckpoint", "EMA", "Progress", "distributed"]
