"""Training and shipping the galaxy-catalog flows of notebook 02 (:mod:`cosmonb.models.flows`).

``fit_flow`` trains a :class:`~cosmonb.models.flows.DensityFlow` by maximum
likelihood through :func:`cosmonb.train.fit` (which calls ``model.loss``);
``save_flow`` / ``load_flow`` are :func:`cosmonb.checkpoints.save_model` /
:func:`~cosmonb.checkpoints.load_model` for flows. The old names
``cosmonb.models.flows.fit_flow`` etc. still reach these functions.
"""
from __future__ import annotations

from functools import partial

import torch

from .. import checkpoints
from .._checks import check_float
from ..models.flows import DensityFlow, check_rows, make_batches
from ..train import fit

__all__ = ["fit_flow", "save_flow", "load_flow"]


def fit_flow(model: DensityFlow, x, c=None, x_val=None, c_val=None, *, epochs: int, lr: float = 1e-3,
             batch_size: int = 512, patience: int | None = None, seed: int = 0, progress: bool = False,
             checkpoint=None, weight_decay: float = 0.0, clip_grad: float | None = 5.0,
             set_normaliser: bool = True):
    """Train ``model`` by maximum likelihood with :func:`cosmonb.train.fit`; returns its History.

    Adam with a cosine learning-rate decay over ``epochs``; ``patience``
    (needs validation data) stops early and restores the best weights.
    The standardisation is fitted to ``x`` (and ``c``) first unless
    ``set_normaliser=False`` (e.g. when resuming).

    Example:
        >>> _ = torch.manual_seed(0); x = torch.randn(256, 1) * 0.5 + 9.0
        >>> flow = DensityFlow(1, transforms=1, bins=4)
        >>> h = fit_flow(flow, x, epochs=3, batch_size=64)
        >>> h.epochs
        3
    """
    if not isinstance(model, DensityFlow):
        raise ValueError(f"model: expected a DensityFlow, got {type(model).__name__}")
    x = check_rows(x, "x", model.features)
    if model.context:
        c = check_rows(c, "c", model.context)
        if len(c) != len(x):
            raise ValueError(f"c: expected {len(x)} rows like x, got {len(c)}")
    elif c is not None:
        raise ValueError("c: this flow is unconditional (context=0); pass c=None")
    val = None
    if x_val is not None:
        x_val = check_rows(x_val, "x_val", model.features)
        if model.context:
            c_val = check_rows(c_val, "c_val", model.context)
        val = make_batches(x_val, c_val, batch_size=max(4096, batch_size), shuffle=False)(0)
    if set_normaliser:
        model.set_normaliser(x, c)
    train_batches = make_batches(x, c, batch_size=batch_size, seed=seed)
    lr = check_float(lr, "lr", positive=True)  # lr reaches fit through the optimizer factory
    optimizer = partial(torch.optim.Adam, lr=lr, weight_decay=weight_decay)
    scheduler = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=epochs, eta_min=lr / 50)
    return fit(model, None, train_batches, val, epochs=epochs, optimizer=optimizer,
                      scheduler=scheduler, patience=patience, clip_grad=clip_grad, seed=seed,
                      progress=progress, checkpoint=checkpoint)




# --------------------------------------------------------------------------- checkpoints
def save_flow(name: str, model: DensityFlow, metrics: dict, command: str, seconds: float,
              directory=None, extra_config: dict | None = None):
    """Save a flow with :func:`cosmonb.checkpoints.save_model` (kind, config, weights, normaliser)."""
    if not isinstance(model, DensityFlow):
        raise ValueError(f"model: expected a DensityFlow, got {type(model).__name__}")
    extra = {"extra": dict(extra_config)} if extra_config else None
    # save_pretrained copies the tensors to the CPU and records the device they were trained on
    return checkpoints.save_model(name, model, metrics=metrics, command=command, seconds=seconds,
                                  normaliser=model.normaliser(), extra=extra, directory=directory)


def load_flow(name: str, directory=None):
    """Load a shipped flow (sha256-checked); returns ``(model in eval mode, checkpoint dict)``.

    A missing or corrupt file raises (see :func:`cosmonb.checkpoints.load_pretrained`);
    there is no silent retraining.
    """
    # the shipped flows predate save_model: their config is DensityFlow's arguments (+ "extra")
    return checkpoints.load_model(name, directory, kind="density_flow")
