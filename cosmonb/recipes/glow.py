"""Training and shipping HIGlow (notebook 03): the presets and the recipe that trains ``higlow``.

:func:`train_glow_recipe` builds HI maps of the LH set with
:func:`cosmonb.recipes.maps.map_sets` (built-in simulator, or CMD files via
``data_root`` / ``$DATA_ROOT``), split by simulation, conditioned on
(Omega_m, sigma_8) scaled to [0, 1] over the prior; trains a
:class:`~cosmonb.models.glow.ConditionalGlow` by maximum likelihood with
:class:`cosmonb.train.Trainer` (so it runs under ``torchrun`` too); measures
bits per dimension on the validation and test maps; and saves it with
:func:`cosmonb.checkpoints.save_model` and the data normaliser.

Augmentation (one of the 8 symmetries of the square and a random periodic
roll per map, the training set only) comes from
:class:`~cosmonb.recipes.maps.AugmentedBatches`, drawn from ``(seed, epoch)``, so the
batches are a function of the step alone: a
killed run resumed from ``<out>/higlow.state.pt`` ends with the same weights
as one that was never stopped, and a run on N processes sees the same global
batches as one on one process.

Example:
    >>> sorted(PRESETS), PRESETS["paper"]["model"]["levels"], PRESETS["paper"]["model"]["steps"]
    (['cpu', 'paper', 'quick'], 6, 20)
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .. import checkpoints
from .._checks import check_int
from ..models.glow import ConditionalGlow
from ..runtime import seed_everything
from .maps import AugmentedBatches, map_sets

__all__ = ["GLOW_NAME", "PRESETS", "glow_data", "mean_bits_per_dim", "train_glow_recipe"]

#: The checkpoint name of the shipped HIGlow.
GLOW_NAME = "higlow"

#: Presets of :func:`train_glow_recipe`: the model (``ConditionalGlow`` arguments),
#: the data (``map_sets`` sizes) and the training (``TrainConfig`` settings; ``max_steps``
#: or ``epochs``). Every preset trains with Adam at lr 1e-3 after a linear warm-up and a
#: constant rate after it (Glow's recipe: no decay), gradient clipping at 50 and an EMA
#: of the weights, which the saved model uses.
#:
#: * ``quick``: seconds on one core, for tests and quick-mode notebooks: 16 x 16 maps,
#:   2 levels x 2 steps, hidden 8, 12 simulations x 4 maps.
#: * ``cpu``: what can be trained on a laptop or 2 CPU cores in about two hours and
#:   ships: 64 x 64 maps (the paper's size, so the posterior numbers compare), the
#:   paper's 6 levels, 4 steps per level instead of 20 and hidden 16 (the paper's
#:   width; 465k parameters, a 2 MB checkpoint). Measured on one thread (a shared
#:   2-core machine): 0.66-0.72 s per step of 32 maps, so 8,000 steps (71 epochs of the
#:   3,600 training maps of 240 simulations; 300 simulations x 15 maps in all) take
#:   ~1.5 h on one core, under two hours with the data (~1 min) and validation; 60 steps
#:   already take the loss from 1.41 to 0.76 nats per pixel. 8 steps per level would
#:   double the time (1.35 s per step), the paper's 20 five-fold (3.4 s). Fewer steps per
#:   level costs depth (fewer couplings per scale); width and resolution stay the paper's.
#: * ``paper``: the paper's model, 6 levels x 20 steps, hidden 16, on 64 x 64 HI maps of
#:   all 1,000 LH simulations, 1000 epochs (their run: one GPU). The batch size and the
#:   warm-up are not among the paper's stated facts: 64 and Adam 1e-3 are Glow's
#:   defaults (Kingma & Dhariwal 2018), used here.
PRESETS = {
    "quick": {
        "model": {"in_channels": 1, "n_pix": 16, "cond_dim": 2, "levels": 2, "steps": 2, "hidden": 8},
        "data": {"n_pix": 16, "n_sims": 12, "maps_per_sim": 4},
        "train": {"max_steps": 20, "batch_size": 8, "lr": 1e-3, "warmup_steps": 5, "clip_grad": 50.0,
                  "ema_decay": 0.9, "eval_every": 10, "checkpoint_every_steps": 10},
    },
    "cpu": {
        "model": {"in_channels": 1, "n_pix": 64, "cond_dim": 2, "levels": 6, "steps": 4, "hidden": 16},
        "data": {"n_pix": 64, "n_sims": 300, "maps_per_sim": 15},
        "train": {"max_steps": 8000, "batch_size": 32, "lr": 1e-3, "warmup_steps": 200, "clip_grad": 50.0,
                  "ema_decay": 0.999, "eval_every": 500, "checkpoint_every_steps": 500,
                  "checkpoint_every_minutes": 10.0},
    },
    "paper": {
        "model": {"in_channels": 1, "n_pix": 64, "cond_dim": 2, "levels": 6, "steps": 20, "hidden": 16},
        "data": {"n_pix": 64, "n_sims": 1000, "maps_per_sim": 15},
        "train": {"epochs": 1000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 1000, "clip_grad": 50.0,
                  "ema_decay": 0.999, "checkpoint_every_steps": 2000, "checkpoint_every_minutes": 30.0},
    },
}


def glow_data(preset: str = "quick", data_root=None, *, seed: int = 0, progress: bool = False):
    """The HI map sets of ``preset`` (:func:`~cosmonb.recipes.maps.map_sets`, 2 parameters, split by simulation)."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    sizes = PRESETS[preset]["data"]
    return map_sets(("HI",), sizes["n_pix"], n_sims=sizes["n_sims"], maps_per_sim=sizes["maps_per_sim"],
                    n_params=2, data_root=data_root, seed=seed, progress=progress)


@torch.no_grad()
def mean_bits_per_dim(model: ConditionalGlow, dataset, *, batch_size: int = 64) -> float:
    """The mean of ``model.bits_per_dim`` over a map dataset of ``(x, theta)`` items (eval mode)."""
    was = model.training
    model.eval()
    like = next(model.parameters())
    total, count = 0.0, 0
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            x = torch.stack([x for x, _ in items]).to(like)
            theta = torch.stack([t for _, t in items]).to(like)
            total += float(model.bits_per_dim(x, theta).double().sum())
            count += len(items)
    finally:
        model.train(was)
    if count == 0:
        raise ValueError("dataset: holds no maps")
    return total / count


def train_glow_recipe(preset: str = "quick", *, out, data_root=None, resume: bool = False,
                      max_steps: int | None = None, seed: int = 0, progress: bool = False, device=None,
                      command: str | None = None, log=print) -> Path:
    """Train HIGlow with ``preset`` and save it as ``out/higlow.pt``; returns the path.

    ``out/higlow.pt`` (with its ``MANIFEST.json`` entry) loads with
    ``checkpoints.load_model("higlow", directory=out)``; its normaliser is the data
    set's (log10 map statistics and the parameter scaling). ``out/higlow.state.pt``
    holds the trainer's state, written every ``checkpoint_every_steps`` /
    ``checkpoint_every_minutes`` and at the end; ``resume=True`` continues it.
    ``max_steps`` caps the optimiser steps (the preset's otherwise). The saved
    weights are the EMA's; the metrics are bits per dimension on the validation and
    test maps (``val_bits_per_dim``, ``test_bits_per_dim``) and the training curve.
    """
    from ..train import TrainConfig, Trainer, distributed

    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    if max_steps is not None:
        max_steps = check_int(max_steps, "max_steps", 1)
    out = Path(out)
    state = out / f"{GLOW_NAME}.state.pt"
    if distributed.is_launched():
        device = distributed.setup(device)  # join the process group first: rank and world size below
    main = distributed.is_main()
    if resume and not state.is_file():
        raise FileNotFoundError(f"resume: no training state {state} to continue from; train without resume "
                                "first (into the same out folder)")
    spec = PRESETS[preset]
    t0 = time.perf_counter()
    sets = glow_data(preset, data_root, seed=seed, progress=bool(progress and main))
    train_cfg = dict(spec["train"])
    bs = int(train_cfg["batch_size"])
    per_epoch = len(sets.splits["train"]) // bs
    if per_epoch < 1:
        raise ValueError(f"data: {len(sets.splits['train'])} training maps are fewer than one batch of {bs}")
    total = int(train_cfg.pop("max_steps")) if "max_steps" in train_cfg else int(train_cfg.pop("epochs")) * per_epoch
    if max_steps is not None:
        total = min(total, max_steps)
    train_cfg.setdefault("eval_every", per_epoch)
    config = TrainConfig(max_steps=total, seed=seed, progress=bool(progress and main), **train_cfg)
    seed_everything(seed)
    model = ConditionalGlow(**spec["model"])
    out.mkdir(parents=True, exist_ok=True)
    if not resume and main:
        state.unlink(missing_ok=True)  # a fresh run replaces an earlier run's state
    distributed.barrier()
    world = distributed.world_size()
    if main:
        log(f"[cosmonb train] {GLOW_NAME} ({preset}): {len(sets.splits['train'])} training maps "
            f"({sets.source}); {total} steps of {bs} on {world} process(es)")
    trainer = Trainer(model, config, checkpoint=state, device=device)
    batches = AugmentedBatches(sets.train, bs, seed=seed, roll=True, rank=distributed.rank(), world_size=world)
    result = trainer.fit(batches, sets.val)
    path = out / f"{GLOW_NAME}.pt"
    if main:
        glow = distributed.unwrap(trainer.model).to("cpu")
        if trainer.ema is not None:
            trainer.ema.copy_to(glow)
        glow.eval()
        ln2 = math.log(2.0)
        metrics = {"steps": int(result["steps"]), "epochs": round(result["steps"] / per_epoch, 3),
                   "train_loss": [float(v) for v in result["train_loss"][-200:]],
                   "val_bits_per_dim_curve": [float(v) / ln2 for v in result["val_loss"]],
                   "val_steps": list(result["val_steps"]), "world_size": int(result["world_size"]),
                   "val_bits_per_dim": mean_bits_per_dim(glow, sets.val),
                   "test_bits_per_dim": mean_bits_per_dim(glow, sets.test),
                   "seconds_per_step": float(result["seconds"]) / max(int(result["steps"]), 1)}
        extra = {"extra": {"preset": preset, "data": sets.source, "fields": list(sets.fields),
                           "data_sizes": dict(spec["data"]), "trainer": config.to_dict(),
                           "split": {k: [int(i) for i in np.unique(np.asarray(v) // spec["data"]["maps_per_sim"])]
                                     for k, v in sets.splits.items()},
                           "ema": trainer.ema is not None}}
        cmd = command or f"python -m cosmonb train {GLOW_NAME} --preset {preset}"
        checkpoints.save_model(GLOW_NAME, glow, metrics=metrics, command=cmd, seconds=float(result["seconds"]),
                               normaliser=sets.normaliser, extra=extra, directory=out)
        log(f"[cosmonb train] {GLOW_NAME}: {result['steps']} steps ({result['stop_reason'] or 'stopped'}) in "
            f"{time.perf_counter() - t0:.1f} s, val {metrics['val_bits_per_dim']:.4f} bits/dim -> {path}")
    distributed.barrier()
    return path
