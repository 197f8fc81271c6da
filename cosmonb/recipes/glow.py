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

from .. import checkpoints, data, sims
from .._checks import check_float, check_int
from ..models.glow import ConditionalGlow, higlow_posterior
from ..posteriors import GridPosterior
from ..runtime import seed_everything
from .maps import AugmentedBatches, fixed_batches, map_sets, resolve_data_root

__all__ = ["GLOW_NAME", "PRESETS", "glow_data", "mean_bits_per_dim", "train_glow_recipe",
           "HIGlow", "load_higlow", "prior_grid", "exact_bits_per_dim", "glow_split", "glow_split_index",
           "SPLIT_FRACTIONS"]

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


#: Training / validation / test fractions of the simulations (:func:`cosmonb.data.split_by_simulation`).
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def glow_data(preset: str = "quick", data_root=None, *, seed: int = 0, progress: bool = False):
    """The HI map sets of ``preset`` (:func:`~cosmonb.recipes.maps.map_sets`, 2 parameters, split by simulation)."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    sizes = PRESETS[preset]["data"]
    return map_sets(("HI",), sizes["n_pix"], n_sims=sizes["n_sims"], maps_per_sim=sizes["maps_per_sim"],
                    n_params=2, data_root=data_root, seed=seed, fractions=SPLIT_FRACTIONS, progress=progress)


def glow_split_index(preset: str = "quick", *, seed: int = 0) -> dict:
    """``{"train", "val", "test"} -> map indices`` of :func:`glow_data`'s split (by simulation), without any maps.

    Example:
        >>> {k: len(v) for k, v in glow_split_index("cpu").items()}
        {'train': 3600, 'val': 450, 'test': 450}
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    sizes = PRESETS[preset]["data"]
    parts = data.split_by_simulation(sizes["n_sims"] * sizes["maps_per_sim"], SPLIT_FRACTIONS, seed=seed,
                                     maps_per_sim=sizes["maps_per_sim"])
    return dict(zip(("train", "val", "test"), parts))


def glow_split(preset: str = "quick", split: str = "test", data_root=None, *, seed: int = 0, select=None):
    """The maps of one split of :func:`glow_data` without making the others: ``(maps, params, index)``.

    ``maps`` (n, 1, H, W) in physical units, ``params`` (n, 6) and ``index`` (n,) their
    positions in the whole LH set (map i of simulation i // maps_per_sim), the same maps
    ``glow_data(preset, data_root, seed=seed)`` puts in ``split``. ``select`` picks
    positions within the split (e.g. ``np.arange(0, 450, 3)``); default all. With the
    built-in simulator only those maps are simulated (``sims.simulate(..., indices=)``), so
    a notebook or a benchmark gets its held-out maps in a second or two.

    Example:
        >>> maps, params, index = glow_split("quick", "test")
        >>> full = glow_data("quick")
        >>> bool(np.array_equal(index, full.splits["test"])), bool(np.array_equal(maps, full.maps[index]))
        (True, True)
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    names = ("train", "val", "test")
    if split not in names:
        raise ValueError(f"split: expected one of {names}, got {split!r}")
    sizes = PRESETS[preset]["data"]
    index = glow_split_index(preset, seed=seed)[split]
    index = index if select is None else index[np.asarray(select, dtype=np.int64)]
    if resolve_data_root(data_root) is not None:
        sets = glow_data(preset, data_root, seed=seed)
        return np.asarray(sets.maps[index]), sets.params[index], index
    params, _ = sims.lh_set(sizes["n_sims"], sizes["maps_per_sim"], seed=seed)
    maps = sims.simulate(params[index], ("HI",), n_pix=sizes["n_pix"], seed=seed, indices=index)
    return maps, params[index], index


@torch.no_grad()
def mean_bits_per_dim(model: ConditionalGlow, dataset, *, batch_size: int = 64) -> float:
    """The mean of ``model.bits_per_dim`` over a map dataset of ``(x, theta)`` items (eval mode)."""
    was = model.training
    model.eval()
    like = next(model.parameters())
    total, count = 0.0, 0
    try:
        for x, theta in fixed_batches(dataset, batch_size):
            total += float(model.bits_per_dim(x.to(like), theta.to(like)).double().sum())
            count += len(x)
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


# --------------------------------------------------------------------------- the trained model in physical units
def prior_grid(n_grid: int) -> np.ndarray:
    """The mid-points ``(i + 1/2) / n_grid`` of ``n_grid`` equal cells of [0, 1]: one axis of a grid over the prior.

    An ``n x n`` grid of these (in the model's scaled units) is a stratified sample of
    the uniform prior, so HIGlow's eq. 2 (a sum over prior samples) is a grid posterior.

    Example:
        >>> prior_grid(4)
        array([0.125, 0.375, 0.625, 0.875])
    """
    n_grid = check_int(n_grid, "n_grid", 2)
    return (np.arange(n_grid) + 0.5) / n_grid


class HIGlow:
    r"""A trained :class:`~cosmonb.models.glow.ConditionalGlow` with its data normaliser: physical units in and out.

    The network sees ``z = (log10 x - mean) / std`` and ``u = (theta - low) / (high - low)``
    (the training set's normaliser, stored in the checkpoint); this wrapper takes maps
    ``x`` in the simulator's (or CMD's) units and ``theta = (Omega_m, sigma_8)`` in
    physical units, refuses parameters outside the prior the model was trained on and
    maps of the wrong size, and returns physical maps and posteriors.

    Densities: ``log_prob(maps, theta)`` is ``ln q(z | u)`` of the model's own variable
    ``z`` (nats per map) and ``bits_per_dim`` its ``-ln q / (D ln 2)``; the density of the
    map itself follows by the change of variables, ``ln q(x) = ln q(z) - sum ln|dx/dz|``
    with ``dx/dz = x ln(10) std`` per pixel (:meth:`log_abs_det_dx_dz`).

    Example:
        >>> import tempfile
        >>> out = tempfile.mkdtemp()
        >>> _ = train_glow_recipe("quick", out=out, max_steps=2, log=lambda *a: None)
        >>> glow = HIGlow.load(out)
        >>> glow.sample([0.3, 0.8], n=2, seed=0).shape
        (2, 1, 16, 16)
        >>> glow.sample([0.6, 0.8])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: theta: Omega_m = 0.6 is outside the prior [0.1, 0.5] the model was trained on...
    """

    names = ("Omega_m", "sigma_8")
    redrawn = 0

    def __init__(self, model: ConditionalGlow, normaliser: dict):
        if not isinstance(model, ConditionalGlow):
            raise ValueError(f"model: expected a ConditionalGlow, got {type(model).__name__}")
        _check_normaliser(normaliser, model)
        self.model = model.eval()
        self.normaliser = dict(normaliser)
        self.low = np.asarray(normaliser["param_shift"], float)
        self.high = self.low + np.asarray(normaliser["param_scale"], float)
        self.mean = np.asarray(normaliser["mean"], float)
        self.std = np.asarray(normaliser["std"], float)

    @classmethod
    def load(cls, directory=None, *, expect: dict | None = None) -> "HIGlow":
        """:func:`load_higlow` wrapped: the shipped model (``directory=None``) or one in ``directory``."""
        model, ckpt = load_higlow(directory, expect=expect)
        glow = cls(model, ckpt["normaliser"])
        glow.checkpoint = ckpt
        return glow

    @property
    def n_pix(self) -> int:
        return self.model.n_pix

    # ------------------------------------------------------------------ units
    def scale(self, theta, name: str = "theta") -> np.ndarray:
        """Physical ``(..., 2)`` parameters -> the model's ``u`` in [0, 1]; outside the prior raises."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != len(self.low):
            raise ValueError(f"{name}: expected (Omega_m, sigma_8) pairs, shape (..., {len(self.low)}), "
                             f"got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: expected finite parameters, found NaN/inf")
        tol = 1e-9 * (self.high - self.low)
        for i, label in enumerate(self.names[:len(self.low)]):
            bad = (arr[..., i] < self.low[i] - tol[i]) | (arr[..., i] > self.high[i] + tol[i])
            if bad.any():
                value = float(arr[..., i][bad].ravel()[0])
                raise ValueError(f"{name}: {label} = {value:g} is outside the prior [{self.low[i]:g}, "
                                 f"{self.high[i]:g}] the model was trained on (parameters are in physical units)")
        return np.clip((arr - self.low) / (self.high - self.low), 0.0, 1.0)

    def unscale(self, u) -> np.ndarray:
        """The model's ``u`` -> physical parameters."""
        return np.asarray(u, dtype=np.float64) * (self.high - self.low) + self.low

    def to_model_units(self, maps, name: str = "maps") -> torch.Tensor:
        """Physical maps (N, C, H, W), (C, H, W) or (H, W) -> the model's (N, C, H, W) tensor ``z``."""
        arr = np.asarray(maps, dtype=np.float64)
        c, n = self.model.in_channels, self.model.n_pix
        if arr.ndim == 2 and c == 1:
            arr = arr[None, None]
        elif arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (c, n, n):
            raise ValueError(f"{name}: this HIGlow models {c} x {n} x {n} maps; got shape {np.shape(maps)} "
                             f"(block-average larger maps to {n} x {n} first, e.g. data.load_cmd(..., n_pix={n}))")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name}: expected positive, finite maps in physical units (the model takes log10)")
        z = data.normalise_maps(arr, self.normaliser)
        return torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))

    def log_abs_det_dx_dz(self, maps) -> np.ndarray:
        """``sum over pixels of ln|dx/dz|`` per map, ``x = 10^(mean + std z)``: ``ln(x ln(10) std)`` summed."""
        arr = np.asarray(maps, dtype=np.float64)
        arr = arr.reshape(-1, self.model.in_channels, self.n_pix, self.n_pix)
        per_channel = math.log(math.log(10.0)) + np.log(self.std)
        return np.log(arr).sum((1, 2, 3)) + (per_channel * self.n_pix ** 2).sum()

    # ------------------------------------------------------------------ the model
    def sample(self, theta, n: int = 1, *, seed: int | None = None, temperature: float = 1.0,
               redraw: bool = False) -> np.ndarray:
        """``n`` maps (n, C, H, W) in physical units (float64) at ``theta`` (one pair, or n pairs).

        An inverse flow can send an unlucky latent to inf/NaN, or so far that ``10^z`` is 0. Such maps raise a
        ``FloatingPointError`` unless ``redraw=True``, which draws each of them again with a
        new latent (up to 10 times) and says so with a ``RuntimeWarning``; ``self.redrawn``
        holds how many maps the last call redrew (0 when none), so a caller can report it.
        """
        n = check_int(n, "n", 1)
        temperature = check_float(temperature, "temperature", positive=True)
        u = torch.as_tensor(self.scale(theta), dtype=torch.float32)
        u = u.expand(n, -1) if u.ndim == 1 or len(u) == 1 else u
        maps = self._draw(n, u, seed, temperature)
        bad = self._unphysical(maps)
        self.redrawn = int(bad.sum())
        if bad.any() and not redraw:
            raise FloatingPointError(f"sample: {int(bad.sum())} of {n} maps came out non-finite or zero (the "
                                     "inverse flow sent their latents beyond what a float holds); pass redraw=True "
                                     "to draw them again (and report how many), or use a lower temperature")
        for attempt in range(1, 11):
            if not bad.any():
                break
            rows = np.flatnonzero(bad)
            again = None if seed is None else int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])
            maps[rows] = self._draw(len(rows), u[rows], again, temperature)
            bad = self._unphysical(maps)
        if bad.any():
            raise FloatingPointError(f"sample: {int(bad.sum())} of {n} maps stayed non-finite or zero after 10 redraws")
        if self.redrawn:
            import warnings

            warnings.warn(f"HIGlow.sample: {self.redrawn} of {n} maps came out non-finite or zero and were drawn "
                          "again with new latents", RuntimeWarning, stacklevel=2)
        return maps

    def _unphysical(self, maps) -> np.ndarray:
        """Maps with a pixel the float64 exponential cannot hold: inf/NaN, or 0 (``z`` beyond about +-300/std)."""
        bad = ~np.isfinite(maps).all(axis=(1, 2, 3))
        if self.normaliser["log10"]:  # 10^y underflowed to 0
            bad |= (maps + self.normaliser.get("log10_offset", 0.0) <= 0).any(axis=(1, 2, 3))
        return bad

    def _draw(self, n, u, seed, temperature) -> np.ndarray:
        z = self.model.sample(n, u, seed=seed, temperature=temperature).cpu().numpy().astype(np.float64)
        return self.from_model_units(z)

    def from_model_units(self, z) -> np.ndarray:
        """The model's ``z`` (N, C, H, W) -> physical maps, in float64 (``x = 10^(mean + std z)``)."""
        z = np.asarray(z, dtype=np.float64)
        x = z * self.std[None, :, None, None] + self.mean[None, :, None, None]
        if self.normaliser["log10"]:
            with np.errstate(over="ignore"):
                x = 10.0 ** x - self.normaliser.get("log10_offset", 0.0)
        return x

    @torch.no_grad()
    def log_prob(self, maps, theta) -> np.ndarray:
        """``ln q(z | u)`` per map (nats), maps and theta in physical units (one theta shared, or one per map)."""
        z = self.to_model_units(maps)
        u = torch.as_tensor(self.scale(theta), dtype=torch.float32)
        return self.model.log_prob(z, u).double().numpy()

    def bits_per_dim(self, maps, theta) -> np.ndarray:
        """``-ln q(z | u) / (D ln 2)`` per map: HIGlow's bits per dimension of its own variable ``z``."""
        return -self.log_prob(maps, theta) / (self.model.dim * math.log(2.0))

    def posterior(self, map_, n_grid: int = 50, *, chunk_size: int = 256) -> GridPosterior:
        """HIGlow's eq. 2 for one map on an ``n_grid x n_grid`` grid over the (uniform) prior.

        The grid points (:func:`prior_grid`, in the model's units) are prior samples, so the
        weights ``q(x | theta_i) / sum_j q(x | theta_j)`` are the posterior on the grid; it is
        returned as a :class:`~cosmonb.posteriors.GridPosterior` in physical units, whose
        ``mean`` is the paper's MMSE estimate and ``credible_mass`` the HPD rank of a truth.
        ``.raw`` holds the :class:`~cosmonb.models.glow.HIGlowPosterior` (ESS, weights).
        """
        z = self.to_model_units(map_, "map_")
        if len(z) != 1:
            raise ValueError(f"map_: expected one map, got {len(z)}")
        g = prior_grid(n_grid)
        uu = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        raw = higlow_posterior(self.model, z, uu, chunk_size=chunk_size)
        axes = self.unscale(np.stack([g, g], 1))
        post = GridPosterior(axes[:, 0], axes[:, 1], raw.log_weights.reshape(n_grid, n_grid), names=self.names)
        post.raw = raw
        return post


def _check_normaliser(normaliser, model: ConditionalGlow) -> None:
    need = {"mean", "std", "param_shift", "param_scale", "log10"}
    if not isinstance(normaliser, dict) or not need <= set(normaliser):
        raise checkpoints.PretrainedError(f"normaliser: expected the data set's normaliser with keys {sorted(need)}, "
                                          f"got {sorted(normaliser) if isinstance(normaliser, dict) else normaliser!r}")
    if len(normaliser["mean"]) != model.in_channels or len(normaliser["param_shift"]) != model.cond_dim:
        raise checkpoints.PretrainedError(
            f"normaliser: made for {len(normaliser['mean'])} channel(s) and {len(normaliser['param_shift'])} "
            f"parameters, but the model has {model.in_channels} and {model.cond_dim}: the checkpoint's config "
            "does not match its normaliser")


def load_higlow(directory=None, *, expect: dict | None = None):
    """Load ``higlow.pt`` (sha256-checked against MANIFEST.json) and check its config; ``(model, checkpoint)``.

    ``directory=None`` is the shipped ``cosmonb/pretrained``; a folder written by
    ``python -m cosmonb train higlow --out DIR`` loads the same way. Beyond
    :func:`cosmonb.checkpoints.load_model` (missing file, sha256 mismatch, a tensor that
    does not fit), a :class:`~cosmonb.checkpoints.PretrainedError` is raised when the model
    config in the file differs from the one MANIFEST.json records, when the normaliser
    does not fit the model, or when ``expect`` (e.g. ``{"n_pix": 64}``) names a config
    value the file does not have.
    """
    model, ckpt = checkpoints.load_model(GLOW_NAME, directory=directory, kind="glow")
    entry = checkpoints.read_manifest(directory).get(GLOW_NAME, {})
    where = ckpt["metadata"].get("path", GLOW_NAME)
    if "config" in entry and entry["config"] != ckpt["config"]:
        diff = sorted(k for k in set(entry["config"]) | set(ckpt["config"])
                      if entry["config"].get(k) != ckpt["config"].get(k))
        raise checkpoints.PretrainedError(f"config mismatch for {where}: MANIFEST.json records a different config "
                                          f"(differs in {diff}) than the file holds; retrain or restore both")
    for key, value in (expect or {}).items():
        if model.config.get(key) != value:
            raise checkpoints.PretrainedError(f"config mismatch for {where}: expected {key} = {value!r}, "
                                              f"the checkpoint has {model.config.get(key)!r}")
    _check_normaliser(ckpt["normaliser"], model)
    return model, ckpt


def exact_bits_per_dim(glow: HIGlow, maps, params) -> np.ndarray:
    r"""The simulator's exact bits per dimension of ``z`` for HI maps, given all six parameters.

    ``-ln p(z | theta_6) / (D ln 2)`` with ``ln p(z) = ln p(x) + sum ln|dx/dz|``:
    :func:`cosmonb.sims.multifield_log_likelihood` gives ``ln p(x | theta_6)`` of the HI
    maps (N, 1, H, W) at their true parameters ``params`` (N, 6), and
    :meth:`HIGlow.log_abs_det_dx_dz` the Jacobian of ``x = 10^(mean + std z)``. A model
    conditioned on (Omega_m, sigma_8) alone cannot do better on average: it is the entropy
    floor (the gap is the information the map carries about the astrophysics).
    """
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[1] != 1:
        raise ValueError(f"maps: expected HI maps (N, 1, H, W), got shape {arr.shape}")
    ln_px = sims.multifield_log_likelihood(arr, params, ("HI",))
    ln_pz = ln_px + glow.log_abs_det_dx_dz(arr)
    return -ln_pz / (glow.model.dim * math.log(2.0))
