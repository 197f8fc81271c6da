r"""Training and shipping the DDPM of notebook 05 (:class:`cosmonb.models.diffusion.DDPM`, name ``"ddpm"``).

Mudur, Cuesta-Lazaro & Finkbeiner (2023) train a conditional DDPM on log10
dark-matter (Mcdm) maps of the CAMELS IllustrisTNG LH set (15 maps x 1000
parameter points, random rotations and flips), at 64^2 for 60k iterations and
then at 256^2, initialised from the 64^2 weights, for over 500k. They select
checkpoints by the reduced chi^2 of the power spectrum: 50 generated fields at
each of 10 validation parameter points against the 15 true fields there
(best 1.30, against 1.27 for true fields left out one at a time).

:func:`train_ddpm_recipe` does the same at a chosen preset: the data come from
:func:`cosmonb.recipes.maps.map_sets` (the built-in simulator, or CMD files via
``data_root`` / ``$DATA_ROOT``), the model trains with :class:`cosmonb.train.Trainer`
(constant learning rate after a warm-up, gradient clipping, an EMA of the
weights, a trainer state every N steps / minutes for ``resume=True``), the
validation metric is the epsilon-MSE on the validation maps at fixed steps and
noise (deterministic), and the shipped weights are the EMA weights with the best
:func:`pk_chi2` among those scored during training.

**Augmentation.** Each training map comes in one of the 8 orientations of the square
(4 rotations x flip), drawn with the epoch's shuffle from ``(seed, epoch)`` and sharded
by rank (:class:`~cosmonb.recipes.maps.AugmentedBatches`): the batches depend on nothing
but the step, so a resumed run (even mid-epoch) sees exactly the batches of an
uninterrupted one.

Example:
    >>> import tempfile
    >>> from cosmonb import checkpoints
    >>> out = tempfile.mkdtemp()
    >>> path = train_ddpm_recipe("quick", out=out, max_steps=2, log=lambda *a: None)
    >>> model, ckpt = checkpoints.load_model("ddpm", directory=out)
    >>> type(model).__name__, sorted(ckpt["metadata"]["metrics"])[:3]
    ('DDPM', ['chi2_loo', 'pk_chi2', 'pk_chi2_history'])
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch

from .. import checkpoints, data, stats
from .._checks import check_int
from ..constants import BOX_SIZE
from ..models.diffusion import DDPM
from ..train import TrainConfig, Trainer, distributed
from ..train.callbacks import EMA, Callback
from .maps import AugmentedBatches, MapSets, map_sets, resolve_data_root

__all__ = ["PRESETS", "train_ddpm_recipe", "pk_chi2", "score_pk_chi2", "validation_batches", "load_init_weights",
           "DiffusionEmulator", "hpd_area"]

#: Presets of :func:`train_ddpm_recipe`: the model (``DDPM`` config), the training (``TrainConfig``
#: settings; ``ema_decay`` is the EMA of the shipped weights), the data (``map_sets``
#: arguments) and the checkpoint scoring (``score``: every how many steps, how many
#: validation parameter points, generated maps per point, DDIM steps; ``every=None``
#: scores only the end).
#:
#: * ``quick``: seconds on one core, for tests and quick mode: a two-level U-Net of
#:   width 8 on 16^2 maps of 8 simulations x 4 maps.
#: * ``cpu``: what ``cosmonb/pretrained/ddpm.pt`` is meant to be: 32^2 maps of 1000
#:   simulations x 15 maps, the paper's U-Net shape (4 levels, 2 ResNet blocks each,
#:   attention at 8^2, circular padding) at width 16 (0.57M parameters, a 2.3 MB file,
#:   under the 5 MB limit; width 32 would be 9 MB). 32^2 because one training step at
#:   batch 32 took 1.5 s (fastest) to 2.4 s (median, on a machine shared by four jobs)
#:   on one thread, and the same network at 64^2 about 3.5 times as long. 10,000 steps
#:   (about 27 passes over the 12,000 training maps, each in a random orientation) are then 3-4
#:   hours on 2 cores: enough for the EMA weights to settle at a constant learning rate.
#:   The network predicts v (``prediction="v"``), not the paper's eps: a first cpu run
#:   with eps, at step 3,500 (EMA weights), had eps-MSE 0.017 at t = 950, so its clean-map
#:   estimate there was off by 1.7 standard deviations (x0-MSE 2.9; 0.0075 and 1.3 at step
#:   4,000), and the error divided by sqrt(abar_t) at the first sampling steps put 28% of
#:   the pixels of every DDIM sample at the clamp: samples with 7 times the data's standard
#:   deviation, P(k) chi^2_r 6e1 to 1.5e6 against 2.6 for true maps. v keeps the clean-map
#:   error bounded at every step (``cosmonb.models.diffusion``); the paper's 7.7M training
#:   samples (60k x 128) can afford eps, our 320k cannot. ``quick`` uses v as well.
#: * ``paper``: the paper's first stage, 64^2 maps for 60k iterations, with the
#:   U-Net of Ho et al. (2020) for CIFAR-10 (width 128, mults 1-2-2-2, attention at
#:   16^2, dropout 0.1, Adam 2e-4, 5k warm-up steps, EMA 0.9999, batch 128); a GPU job.
#: * ``paper_256``: the second stage, 256^2 for 500k iterations, initialised from the
#:   ``paper`` checkpoint (``init_from``, default ``out/ddpm.pt``); attention at 64^2,
#:   the same level of the network as 16^2 at 64^2, so every weight carries over.
_QUICK_MODEL = {"n_pix": 16, "channels": 8, "channel_mults": [1, 2], "attention_resolutions": [8],
                "n_res_blocks": 1, "dropout": 0.0, "norm_groups": 4, "timesteps": 1000, "schedule": "cosine",
                "prediction": "v"}
_PAPER_MODEL = {"n_pix": 64, "channels": 128, "channel_mults": [1, 2, 2, 2], "attention_resolutions": [16],
                "n_res_blocks": 2, "dropout": 0.1, "norm_groups": 32, "timesteps": 1000, "schedule": "cosine"}
PRESETS = {
    "quick": {
        "name": "ddpm",
        "model": _QUICK_MODEL,
        "train": {"max_steps": 30, "batch_size": 8, "lr": 2e-3, "warmup_steps": 0, "clip_grad": 1.0,
                  "ema_decay": 0.9, "eval_every": 10, "checkpoint_every_steps": 10, "checkpoint_every_minutes": None},
        "data": {"n_pix": 16, "n_sims": 8, "maps_per_sim": 4},
        "score": {"every": 10, "n_sims": 1, "n_generated": 4, "ddim_steps": 5},
    },
    "cpu": {
        "name": "ddpm",
        "model": {"n_pix": 32, "channels": 16, "channel_mults": [1, 2, 2, 2], "attention_resolutions": [8],
                  "n_res_blocks": 2, "dropout": 0.0, "norm_groups": 8, "timesteps": 1000, "schedule": "cosine",
                  "prediction": "v"},
        "train": {"max_steps": 10000, "batch_size": 32, "lr": 5e-4, "warmup_steps": 500, "clip_grad": 1.0,
                  "ema_decay": 0.999, "eval_every": 500, "checkpoint_every_steps": 500,
                  "checkpoint_every_minutes": 10.0},
        "data": {"n_pix": 32, "n_sims": 1000, "maps_per_sim": 15},
        "score": {"every": 2000, "n_sims": 4, "n_generated": 15, "ddim_steps": 50},
    },
    "paper": {
        "name": "ddpm",
        "model": _PAPER_MODEL,
        "train": {"max_steps": 60000, "batch_size": 128, "lr": 2e-4, "warmup_steps": 5000, "clip_grad": 1.0,
                  "ema_decay": 0.9999, "eval_every": 2000, "checkpoint_every_steps": 2000,
                  "checkpoint_every_minutes": 30.0},
        "data": {"n_pix": 64, "n_sims": 1000, "maps_per_sim": 15},
        "score": {"every": 5000, "n_sims": 10, "n_generated": 50, "ddim_steps": 100},
    },
    "paper_256": {
        "name": "ddpm_256",
        "init_from": "ddpm",
        "model": dict(_PAPER_MODEL, n_pix=256, attention_resolutions=[64]),
        "train": {"max_steps": 500000, "batch_size": 32, "lr": 2e-5, "warmup_steps": 1000, "clip_grad": 1.0,
                  "ema_decay": 0.9999, "eval_every": 10000, "checkpoint_every_steps": 5000,
                  "checkpoint_every_minutes": 30.0},
        "data": {"n_pix": 256, "n_sims": 1000, "maps_per_sim": 15},
        "score": {"every": 25000, "n_sims": 10, "n_generated": 50, "ddim_steps": 100},
    },
}

#: Seeds of the fixed validation noise and of the scoring samples (offsets of ``seed``).
_VAL_SEED, _SCORE_SEED = 7919, 104729
#: Scoring samples clamp the predicted clean map at this many standard deviations of the
#: training log-maps: harmless for a trained model, keeps an early one's maps finite.
_CLIP_X0 = 10.0


# --------------------------------------------------------------------------- data
def validation_batches(dataset, timesteps: int, batch_size: int, seed: int = 0) -> list:
    """Fixed ``(x0, theta, t, noise)`` batches of a validation set: a deterministic epsilon-MSE.

    The steps ``t`` cover ``0 .. timesteps - 1`` evenly over the maps; the noise comes
    from ``seed``. ``DDPM.loss`` on these batches is the validation metric.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset: the validation set is empty (more simulations, or other fractions)")
    g = torch.Generator().manual_seed(_VAL_SEED + int(seed))
    xs = torch.stack([dataset[i][0] for i in range(n)])
    thetas = torch.stack([dataset[i][1] for i in range(n)])
    t = ((torch.arange(n) + 0.5) * timesteps / n).long().clamp_max(timesteps - 1)
    noise = torch.randn(xs.shape, generator=g)
    return [(xs[i:i + batch_size], thetas[i:i + batch_size], t[i:i + batch_size], noise[i:i + batch_size])
            for i in range(0, n, batch_size)]


# --------------------------------------------------------------------------- scoring
def pk_chi2(generated, simulated, box_size: float = BOX_SIZE) -> float:
    r"""Reduced chi^2 of the power spectra of ``generated`` maps against ``simulated`` ones (one parameter point).

    Both in physical units (positive maps, ``(n, N, N)`` or ``(n, 1, N, N)``); P(k) of
    ``map / mean - 1`` (:func:`cosmonb.stats.power_spectrum`), then
    :func:`cosmonb.stats.reduced_chi2`: each generated spectrum against the mean and
    scatter of the simulated ones, averaged. A perfect generator scores about
    :func:`cosmonb.stats.reduced_chi2_leave_one_out` of the simulated maps (1.27 for 15).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> true = np.exp(rng.normal(size=(15, 16, 16)))
        >>> round(pk_chi2(np.exp(rng.normal(size=(20, 16, 16))), true), 1) < 3
        True
    """
    gen, sim = (np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
                for a in (generated, simulated))
    gen, sim = (a[:, 0] if a.ndim == 4 and a.shape[1] == 1 else a for a in (gen, sim))
    if gen.ndim != 3 or sim.ndim != 3 or gen.shape[1:] != sim.shape[1:]:
        raise ValueError(f"generated, simulated: expected maps (n, N, N) of the same size, got shapes "
                         f"{gen.shape} and {sim.shape}")
    _, pk_gen = stats.power_spectrum(gen, box_size)
    _, pk_sim = stats.power_spectrum(sim, box_size)
    return stats.reduced_chi2(pk_gen, pk_sim)


def _score_points(sets: MapSets, n_sims: int, maps_per_sim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(normalised theta (2,), true maps (m, N, N))`` of the first ``n_sims`` validation simulations."""
    sims = sorted({int(i) // maps_per_sim for i in sets.splits["val"]})[:n_sims]
    points = []
    for s in sims:
        rows = slice(s * maps_per_sim, (s + 1) * maps_per_sim)
        u = data.normalise_params(sets.params[s * maps_per_sim, :2], sets.normaliser)
        points.append((np.asarray(u, dtype=np.float32), np.asarray(sets.maps[rows, 0], dtype=np.float64)))
    return points


def score_pk_chi2(model: DDPM, points, normaliser: dict, *, n_generated: int, ddim_steps: int,
                  seed: int = 0) -> dict:
    """Mean :func:`pk_chi2` of ``n_generated`` DDIM samples at each point against its true maps.

    ``points``: ``(theta scaled to [0, 1], true maps in physical units)`` pairs.
    Returns ``{"pk_chi2": mean, "chi2_loo": mean leave-one-out value of the true maps,
    "per_point": [...]}``.
    """
    per, loo = [], []
    for j, (u, true) in enumerate(points):
        z = model.sample(n_generated, torch.as_tensor(u)[None], seed=_SCORE_SEED + 1000 * int(seed) + j,
                         method="ddim", steps=ddim_steps, clip_x0=_CLIP_X0)
        gen = data.denormalise_maps(z.double().cpu(), normaliser).numpy()
        per.append(pk_chi2(gen, true) if np.all(np.isfinite(gen)) else float("inf"))
        loo.append(stats.reduced_chi2_leave_one_out(stats.power_spectrum(true, BOX_SIZE)[1]))
    return {"pk_chi2": float(np.mean(per)), "chi2_loo": float(np.mean(loo)), "per_point": per}


class _Chi2Selection(Callback):
    """Every ``every`` steps (and at the last step) score the EMA weights with :func:`score_pk_chi2`;
    keep the best (they travel in the trainer's checkpoint)."""

    def __init__(self, ema: EMA, score, every: int | None):
        self.ema, self.score, self.every = ema, score, every
        self.best, self.best_step, self.best_state, self.history = math.inf, None, None, []

    def on_step_end(self, trainer, loss):
        due = self.every is not None and trainer.step % self.every == 0
        if due or trainer.step == trainer.total_steps:
            scratch = copy.deepcopy(distributed.unwrap(trainer.model))
            scratch.load_state_dict(self.ema.shadow)
            result = self.score(scratch)
            self.history.append([trainer.step, result["pk_chi2"]])
            if result["pk_chi2"] < self.best:
                self.best, self.best_step = result["pk_chi2"], trainer.step
                self.best_state = {k: v.clone() for k, v in self.ema.shadow.items()}

    def state_dict(self):
        return {"best": None if math.isinf(self.best) else self.best, "best_step": self.best_step,
                "best_state": self.best_state, "history": self.history}

    def load_state_dict(self, state):
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.best_step, self.best_state, self.history = state["best_step"], state["best_state"], state["history"]


# --------------------------------------------------------------------------- the recipe
def load_init_weights(model: DDPM, init_from, out: Path) -> str:
    """Load the weights of a saved DDPM into ``model`` (same network, any ``n_pix``); returns where from.

    ``init_from``: a ``.pt`` file, or a name saved in ``out`` or shipped in
    ``cosmonb/pretrained``. A checkpoint whose tensors do not fit raises ``ValueError``
    naming them.
    """
    path = Path(init_from)
    if path.suffix == ".pt":
        if not path.is_file():
            raise FileNotFoundError(f"init_from: no checkpoint {path}")
        name, directory = path.stem, path.parent
    else:
        name = str(init_from)
        directory = out if (out / f"{name}.pt").is_file() else None
    source, ckpt = checkpoints.load_model(name, directory=directory, kind="ddpm")
    problems = checkpoints.state_dict_mismatches(model, source.state_dict())
    if problems:
        raise ValueError(f"init_from: {name} ({directory or 'shipped'}) does not fit this preset's network "
                         f"({len(problems)} tensor(s) differ):{checkpoints.format_mismatches(problems)}")
    model.load_state_dict(source.state_dict())
    return str(Path(directory or checkpoints.PRETRAINED_DIR) / f"{name}.pt")


def train_ddpm_recipe(preset: str = "quick", *, out, data_root=None, resume: bool = False,
                      max_steps: int | None = None, seed: int = 0, progress: bool = False, device=None,
                      init_from=None, command: str | None = None, log=print) -> Path:
    """Train the DDPM of notebook 05 with ``preset`` (see :data:`PRESETS`) and save it in ``out``; returns the path.

    ``out/<name>.pt`` (name ``"ddpm"``; ``"ddpm_256"`` for ``paper_256``) loads with
    ``checkpoints.load_model(name, directory=out)``; its weights are the EMA weights
    with the best P(k) chi^2 among those scored, its normaliser the training set's.
    ``out/<name>.state.pt`` is the trainer's state: ``resume=True`` continues a killed
    run from it (and ``max_steps`` may then extend a finished one). ``init_from``: a
    checkpoint (path or name) whose weights start the run (``paper_256`` defaults
    to ``ddpm`` in ``out``). Under ``torchrun`` every process runs this; rank 0 writes.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    spec = PRESETS[preset]
    name = spec["name"]
    out = Path(out)
    if distributed.is_launched() and not distributed.is_initialized():
        distributed.setup(device)  # ranks are needed before the Trainer (data shards, who writes)
    state = out / f"{name}.state.pt"
    main = distributed.is_main()
    if resume and not state.is_file():
        raise FileNotFoundError(f"resume: no training state {state} to continue from; train without resume first "
                                "(into the same out folder)")
    if resume:
        saved = checkpoints.read_manifest(out).get(name, {}).get("config", {})
        if saved.get("preset") not in (None, preset):
            raise ValueError(f"preset: {state} was trained with preset {saved['preset']!r}, not {preset!r}; "
                             f"resume with preset={saved['preset']!r}")
    d = spec["data"]
    maps_per_sim = 15 if resolve_data_root(data_root) is not None else d["maps_per_sim"]
    sets = map_sets(("Mcdm",), d["n_pix"], n_sims=d["n_sims"], maps_per_sim=maps_per_sim, n_params=2,
                    data_root=data_root, seed=seed, augment=False)
    tr = dict(spec["train"])
    total = tr.pop("max_steps")
    total = total if max_steps is None else check_int(max_steps, "max_steps", 1)
    ema_decay = tr.pop("ema_decay")
    config = TrainConfig(max_steps=total, seed=seed, progress=bool(progress and main), **tr)
    train_batches = AugmentedBatches(sets.train, config.batch_size, seed=seed, rank=distributed.rank(),
                                 world_size=distributed.world_size())
    torch.manual_seed(seed)
    model = DDPM(**spec["model"])
    val = validation_batches(sets.val, model.timesteps, config.batch_size, seed=seed)
    init_from = spec.get("init_from") if init_from is None else init_from
    start = None
    if init_from is not None and not (resume and state.is_file()):
        start = load_init_weights(model, init_from, out)
    if not resume and main:
        state.unlink(missing_ok=True)  # a fresh run replaces an earlier run's state
    distributed.barrier()
    # the EMA is passed as a callback (not TrainConfig.ema_decay) so that it is updated
    # before the scoring callback looks at it in the same step
    ema = EMA(ema_decay)
    sc = spec["score"]
    points = _score_points(sets, sc["n_sims"], maps_per_sim)
    score = lambda m: score_pk_chi2(m, points, sets.normaliser, n_generated=sc["n_generated"],  # noqa: E731
                                    ddim_steps=sc["ddim_steps"], seed=seed)
    selection = _Chi2Selection(ema, score, sc["every"])
    if main:
        log(f"[cosmonb train] {name} ({preset}): {len(sets.train)} training maps (random orientations) from "
            f"{sets.source}; {total} steps of {config.batch_size} on {distributed.world_size()} process(es)"
            + (f", initialised from {start}" if start else ""))
    trainer = Trainer(model, config, checkpoint=state, callbacks=[ema, selection], device=device)
    t0 = time.perf_counter()
    result = trainer.fit(train_batches, val)
    path = out / f"{name}.pt"
    if main:
        shipped = DDPM(**spec["model"])
        shipped.load_state_dict(selection.best_state if selection.best_state is not None else ema.shadow)
        shipped.eval()
        with torch.no_grad():
            val_mse = float(np.average([float(shipped.loss(b)) for b in val], weights=[len(b[0]) for b in val]))
        scored = [(step, chi2) for step, chi2 in selection.history if math.isfinite(chi2)]
        metrics = {"val_eps_mse": val_mse, "chi2_loo": score(shipped)["chi2_loo"],
                   "pk_chi2_steps": [step for step, _ in scored], "pk_chi2_history": [c for _, c in scored],
                   "steps": int(result["steps"]), "train_loss_last": float(np.mean(result["train_loss"][-50:])),
                   "val_loss": result["val_loss"], "val_steps": result["val_steps"],
                   "world_size": int(result["world_size"])}
        if selection.best_state is not None:  # else no scored weights made finite maps: the last EMA ships
            metrics.update(pk_chi2=selection.best, selected_step=selection.best_step)
        extra = {"preset": preset, "data": sets.source, "n_pix": d["n_pix"], "ema_decay": ema_decay,
                 "trainer": config.to_dict(), "init_from": start,
                 "score": dict(sc), "split": {k: [int(i) for i in v] for k, v in sets.splits.items()}}
        cmd = command or f"python -m cosmonb train ddpm --preset {preset}"
        checkpoints.save_model(name, shipped, metrics=metrics, command=cmd, seconds=float(result["seconds"]),
                               normaliser=sets.normaliser, extra=extra, directory=out)
        log(f"[cosmonb train] {name}: {result['steps']} steps ({result['stop_reason'] or 'stopped'}) in "
            f"{time.perf_counter() - t0:.1f} s, val eps-MSE {val_mse:.4f}, P(k) chi2_r {selection.best:.3g} "
            f"(step {selection.best_step}; true maps {metrics['chi2_loo']:.3g}) -> {path}")
    distributed.barrier()
    return path


# --------------------------------------------------------------------------- the emulator of notebook 05
def hpd_area(post, mass: float = 0.68) -> float:
    """Area in the (Omega_m, sigma_8) plane of the highest-density region of a grid posterior holding ``mass``.

    The cells whose mass is at least :meth:`~cosmonb.posteriors.GridPosterior.level` count, each with its
    area (cell edges half-way between grid points), so posteriors on different grids compare.

    Example:
        >>> from cosmonb.posteriors import GridPosterior
        >>> x = np.linspace(-4, 4, 161)
        >>> post = GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2))
        >>> round(hpd_area(post, 0.68) / (2 * np.pi * 1.1394), 1)  # pi r^2 with r^2 = -2 ln(0.32)
        1.0
    """
    widths = [np.gradient(g) for g in (post.x, post.y)]
    cells = widths[0][:, None] * widths[1][None, :]
    return float(cells[post.prob >= post.level(mass)].sum())


class DiffusionEmulator:
    """A trained :class:`~cosmonb.models.diffusion.DDPM` of log10 Mcdm maps, in physical units.

    Maps go in and come out in (Msun/h)/(Mpc/h)^2 and parameters as (Omega_m, sigma_8);
    the checkpoint's normaliser converts to the model's standardised log10 maps and to
    parameters scaled to [0, 1] over the prior. Wrong input raises ``ValueError``: maps of
    another size than the model's, parameters outside the prior, a sampler step count the
    schedule cannot take.

    Example:
        >>> import tempfile
        >>> out = tempfile.mkdtemp()
        >>> _ = train_ddpm_recipe("quick", out=out, max_steps=2, log=lambda *a: None)
        >>> emu = DiffusionEmulator.load(out)
        >>> emu.sample([0.3, 0.8], n=2, steps=4, seed=0).shape
        (2, 16, 16)
        >>> emu.sample([0.6, 0.8], n=1, steps=4)
        Traceback (most recent call last):
        ...
        ValueError: theta: expected Omega_m in [0.1, 0.5] (the prior), got 0.6
    """

    def __init__(self, model: DDPM, checkpoint: dict):
        self.model, self.checkpoint = model, checkpoint
        self.normaliser = checkpoint["normaliser"]
        self.low = np.asarray(self.normaliser["param_shift"], dtype=np.float64)
        self.high = self.low + np.asarray(self.normaliser["param_scale"], dtype=np.float64)

    @classmethod
    def load(cls, directory=None, name: str = "ddpm") -> "DiffusionEmulator":
        """The checkpoint ``name`` in ``directory`` (None: the shipped ``cosmonb/pretrained``), sha256-checked."""
        model, ckpt = checkpoints.load_model(name, directory=directory, kind="ddpm")
        return cls(model, ckpt)

    @property
    def n_pix(self) -> int:
        return int(self.model.net.n_pix)

    # ------------------------------------------------------------------ conversions and checks
    def check_theta(self, theta, name: str = "theta") -> np.ndarray:
        """``theta`` as an (n, 2) float array of (Omega_m, sigma_8) inside the prior, else ``ValueError``."""
        arr = np.asarray(theta, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
            raise ValueError(f"{name}: expected (Omega_m, sigma_8) pairs of shape (2,) or (n, 2), "
                             f"got shape {np.shape(theta)}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: expected finite parameters, found NaN/inf")
        for j, label in enumerate(("Omega_m", "sigma_8")):
            bad = arr[(arr[:, j] < self.low[j] - 1e-9) | (arr[:, j] > self.high[j] + 1e-9), j]
            if bad.size:
                raise ValueError(f"{name}: expected {label} in [{self.low[j]:.4g}, {self.high[j]:.4g}] "
                                 f"(the prior), got {bad[0]:.4g}")
        return arr

    def to_unit(self, theta) -> torch.Tensor:
        """Physical (Omega_m, sigma_8) -> the model's condition in [0, 1] (checked against the prior)."""
        return torch.as_tensor((self.check_theta(theta) - self.low) / (self.high - self.low), dtype=torch.float32)

    def to_model_units(self, maps) -> torch.Tensor:
        """Positive Mcdm maps ``(N, N)``, ``(n, N, N)`` or ``(n, 1, N, N)`` -> standardised log10 ``(n, 1, N, N)``."""
        arr = np.asarray(maps.detach().cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 3 or arr.shape[1:] != (self.n_pix, self.n_pix):
            raise ValueError(f"maps: expected Mcdm maps of {self.n_pix} x {self.n_pix} pixels (the model's size), "
                             f"got shape {arr.shape}; block-average or cut them to {self.n_pix}^2 first")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError("maps: expected finite, positive Mcdm densities in (Msun/h)/(Mpc/h)^2")
        return torch.as_tensor(data.normalise_maps(arr[:, None], self.normaliser))

    def to_physical(self, z) -> np.ndarray:
        """Standardised log10 maps ``(n, 1, N, N)`` -> physical maps ``(n, N, N)`` (float64)."""
        return data.denormalise_maps(torch.as_tensor(z).double().cpu(), self.normaliser).numpy()[:, 0]

    def check_steps(self, steps, method: str = "ddim") -> int | None:
        """A sampler's step count: DDIM takes 1 .. T evenly spaced steps, ancestral sampling exactly T."""
        T = self.model.timesteps
        if method == "ancestral":
            if steps not in (None, T):
                raise ValueError(f"steps: ancestral sampling runs all {T} steps of the schedule, got {steps!r}; "
                                 f"use method='ddim' for fewer")
            return None
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= T:
            raise ValueError(f"steps: the {self.model.schedule} schedule has {T} steps, so DDIM takes an integer "
                             f"from 1 to {T}, got {steps!r}")
        return int(steps)

    # ------------------------------------------------------------------ the emulator
    def sample(self, theta, n: int = 1, *, seed: int | None = None, steps: int = 50, method: str = "ddim",
               batch_size: int = 64) -> np.ndarray:
        """``n`` maps ``(n, N, N)`` in physical units at (Omega_m, sigma_8) ``theta`` (one pair, or ``n`` pairs).

        ``method="ddim"`` (deterministic, ``steps`` evenly spaced steps) or ``"ancestral"`` (all T).
        """
        n = check_int(n, "n", 1)
        cond = self.to_unit(theta)
        if len(cond) not in (1, n):
            raise ValueError(f"theta: expected one pair or {n} pairs, got {len(cond)}")
        steps = self.check_steps(steps, method)
        cond = cond.expand(n, 2)
        out = []
        for j, lo in enumerate(range(0, n, batch_size)):
            hi = min(lo + batch_size, n)
            s = None if seed is None else int(seed) + 7919 * j
            z = self.model.sample(hi - lo, cond[lo:hi], seed=s, steps=steps, method=method, clip_x0=_CLIP_X0)
            out.append(self.to_physical(z))
        return np.concatenate(out)

    # ------------------------------------------------------------------ the likelihood
    def grid(self, centre, n_grid: int = 50, half_width: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """The paper's grid: ``n_grid`` points per parameter over ``centre +- half_width``, clipped to the prior."""
        centre = self.check_theta(centre, "centre")[0]
        n_grid = check_int(n_grid, "n_grid", 3)
        if not half_width > 0:
            raise ValueError(f"half_width: expected a number > 0, got {half_width!r}")
        return tuple(np.linspace(max(self.low[j], centre[j] - half_width), min(self.high[j], centre[j] + half_width),
                                 n_grid) for j in range(2))

    def vlb_posteriors(self, x, centre, timesteps=(0,), *, n_grid: int = 50, half_width: float = 0.1,
                       seed: int = 0, n_noise: int = 1, batch_size: int = 256) -> dict:
        """Posteriors ``p(theta | x) ~ exp(-L_t(x, theta))`` on the paper's grid, one per step index in ``timesteps``.

        ``x``: one Mcdm map in physical units; ``centre``: the grid's centre (the truth, in the paper).
        The terms come from :meth:`DDPM.vlb_terms` (common random numbers over the grid, ``n_noise``
        draws from ``seed``). Returns ``{t: GridPosterior}`` (flat prior on the grid).
        """
        from ..posteriors import GridPosterior

        z = self.to_model_units(x)
        if len(z) != 1:
            raise ValueError(f"x: expected one map, got {len(z)}")
        gx, gy = self.grid(centre, n_grid, half_width)
        mesh = np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
        terms = self.model.vlb_terms(z[0], self.to_unit(mesh), list(timesteps), seed=seed, n_noise=n_noise,
                                     batch_size=batch_size).double().numpy()
        return {int(t): GridPosterior(gx, gy, -terms[:, j].reshape(len(gx), len(gy)), names=("Omega_m", "sigma_8"))
                for j, t in enumerate(timesteps)}
