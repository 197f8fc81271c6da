"""Training and shipping the IMNNs of notebook 01 (:mod:`cosmonb.models.imnn`).

``train_imnn`` trains an :class:`~cosmonb.models.imnn.IMNN` through
:func:`cosmonb.train.fit`, which calls ``IMNN.loss`` on a fresh simulation set
every step; ``save_imnn`` / ``load_imnn`` are
:func:`cosmonb.checkpoints.save_model` / :func:`~cosmonb.checkpoints.load_model`
with the fiducial summary statistics as the normaliser. They live here, not in
:mod:`cosmonb.models.imnn`: models never import ``train`` or ``checkpoints``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import checkpoints
from .._checks import check_int
from ..fisher import SummaryStatistics, check_step, summary_statistics
from ..constants import BOX_SIZE
from ..models.imnn import (IMNN, IMNNCompressor, exact_scores_of_set, make_simulation_set, measure_saturation,
                           stream_seed)
from ..runtime import seed_everything
from ..sims.simulators import make_simulator
from ..train import fit

__all__ = ["train_imnn", "IMNNTraining", "warmup_cosine", "save_imnn", "load_imnn", "IMNN_NAMES", "REFIT_TARGET", "refit_fiducial", "CLI_PRESETS",
           "PRESETS", "train_preset", "train_recipe",
           "train_imnn_recipe"]


# --------------------------------------------------------------------------- training
@dataclass
class IMNNTraining:
    """What :func:`train_imnn` returns.

    ``history`` (``cosmonb.train.History``), ``det_fisher`` det F on the
    validation set after each epoch, ``saturation`` det F_val / det F_reference
    per epoch (if a reference was given). The wall time is ``history.seconds``.
    """

    history: object
    det_fisher: list = field(default_factory=list)
    saturation: list = field(default_factory=list)


def train_imnn(model: IMNN, simulator, theta_fid, delta, *, n_s: int, n_d: int, epochs: int,
               lr: float = 1e-3, val_set: dict | None = None, n_s_val: int | None = None,
               n_d_val: int | None = None, reference_fisher=None, patience: int | None = None,
               lam: float = 10.0, eps: float = 0.1, seed: int = 0,
               clip_grad: float | None = 10.0, checkpoint=None, progress: bool = True,
               device=None, scheduler="cosine", warmup: int | None = None, initialise: bool = True,
               exact_score=None) -> IMNNTraining:
    """Train an IMNN at theta_fid with ``cosmonb.train.fit``.

    Each epoch is one optimiser step on a fresh simulation set (n_s fiducial + 2 P n_d seed-matched derivative maps, streams
    from ``seed`` and the epoch); the validation loss is the IMNN loss on
    ``val_set`` (made once from ``n_s_val``/``n_d_val`` with a separate seed if not
    given). ``patience`` stops early when the validation loss stalls and
    restores the best weights. ``reference_fisher`` (e.g. the analytic Fisher
    matrix) turns det F_val into a saturation curve. A fixed validation set of a
    few hundred maps estimates det F to about 10%, and that error shifts the whole
    curve; with ``exact_score(maps, theta) -> (N, P)`` instead, the curve is paired:
    det F_val(network) / det F_val(exact score) on the same validation maps, which
    cancels most of it (``measure_saturation`` explains the pairing).

    ``initialise=True`` first calls ``model.initialise`` on the validation set's
    fiducial maps (set it False to fine-tune a trained network, e.g. at a new
    fiducial point). ``scheduler="cosine"`` warms the learning rate up linearly over
    the first ``warmup`` steps (default: a tenth of ``epochs``, at least 5, at most
    50), then anneals it from ``lr`` to ``lr / 100`` (:func:`warmup_cosine`); or pass
    any ``fit`` scheduler, or None. The warm-up matters: Adam's first steps move every
    weight by about ``lr`` whatever its gradient (its second-moment estimate rests on
    one noisy gradient), which with a fresh simulation set per step threw short runs
    and every fine-tuning stage back to a saturation near 0.
    """
    theta = np.asarray(theta_fid, float).ravel()
    step = check_step(delta, len(theta))
    delta_t = torch.as_tensor(step)
    if val_set is None:
        val_set = make_simulation_set(simulator, theta, step, n_s_val or n_s, n_d_val or n_d,
                                      seed=stream_seed(seed, 999_983))
    if initialise:  # on its own simulations, so that the validation curve is not flattered
        init_set = make_simulation_set(simulator, theta, step, n_s_val or n_s, n_d_val or n_d,
                                       seed=stream_seed(seed, 424_243))
        model.initialise(init_set["fiducial"], init_set["plus"], init_set["minus"], step)
    if scheduler == "cosine":
        scheduler = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(epochs, warmup))
    ref_det = None
    if reference_fisher is not None:
        ref_det = float(np.linalg.det(np.asarray(reference_fisher, float)))
        if not ref_det > 0:
            raise ValueError("reference_fisher: expected a positive-definite matrix")
    if exact_score is not None:  # the paired reference: the optimal compressor on the same maps
        ref_det = summary_statistics(*exact_scores_of_set(exact_score, val_set, theta), step, theta).det_fisher
    model.set_regulariser(lam, eps)  # IMNN.loss reads lambda and eps from the network's config
    val_set = dict(val_set, delta=delta_t)  # the loss needs the steps beside the maps

    def train_data(epoch):
        sims = make_simulation_set(simulator, theta, step, n_s, n_d, seed=stream_seed(seed, epoch * 131))
        return [dict(sims, delta=delta_t)]

    result = IMNNTraining(history=None)

    def callback(epoch, history):
        # the validation pass runs after the training step: last_info is the validation set's
        det = float(np.linalg.det(model.last_info["fisher"].cpu().numpy()))
        result.det_fisher.append(det)
        if ref_det is not None:
            result.saturation.append(det / ref_det)

    result.history = fit(model, None, train_data, [val_set], epochs=epochs, lr=lr, patience=patience,
                         clip_grad=clip_grad, checkpoint=checkpoint, progress=progress, device=device,
                         callback=callback, scheduler=scheduler)
    return result


def warmup_cosine(epochs: int, warmup: int | None = None, floor: float = 0.01):
    """The learning-rate factor of step e: a linear warm-up, then a cosine down to ``floor``.

        f(e) = min(1, (e + 1) / warmup) * (floor + (1 - floor) (1 + cos(pi e / epochs)) / 2)

    ``warmup`` defaults to ``epochs // 10`` clipped to [5, 50] (and at most ``epochs``). For ``torch.optim.lr_scheduler.LambdaLR``.

    Example:
        >>> f = warmup_cosine(100, 10)
        >>> round(f(0), 3), round(f(9), 3), round(f(99), 3)
        (0.1, 0.98, 0.01)
    """
    check_int(epochs, "epochs", 1)
    warmup = min(epochs, 50, max(5, epochs // 10)) if warmup is None else check_int(warmup, "warmup", 1)

    def factor(e: int) -> float:
        return min(1.0, (e + 1) / warmup) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs)))

    return factor




# --------------------------------------------------------------------------- checkpoints
def save_imnn(name: str, model: IMNN, stats: SummaryStatistics, *, simulator_config: dict, delta,
              metrics: dict, command: str, seconds: float, directory=None, extra: dict | None = None):
    """Ship a trained IMNN with ``cosmonb.checkpoints.save_pretrained``.

    The fiducial statistics (theta_fid, mu, C, dmu/dtheta) and delta go into the
    normaliser, so a loaded compressor gives score estimates without new simulations.
    ``extra``: more JSON-like provenance stored beside the simulator's config.
    """
    norm = {k: np.asarray(v, float) for k, v in stats.to_dict().items()}
    norm["delta"] = np.asarray(delta, float)
    return checkpoints.save_model(name, model, metrics=metrics, command=command, seconds=seconds,
                                  normaliser=norm, extra={"simulator": dict(simulator_config), **(extra or {})},
                                  directory=directory)


def load_imnn(name: str, directory=None):
    """Load a shipped IMNN -> ``(IMNNCompressor, checkpoint dict)`` (sha256-checked)."""
    # the shipped networks predate save_model (no "kind"); IMNN.upgrade_config fills linear_skip=False for
    # those saved before the skip existed
    model, ckpt = checkpoints.load_model(name, directory, kind="imnn")
    norm = ckpt["normaliser"]
    stats = SummaryStatistics.from_dict(norm)
    return IMNNCompressor(model, stats), ckpt


# --------------------------------------------------------------------------- notebook 01's presets
#: estimate; ``quick`` is the seconds-long smoke test of the notebook's quick mode.
_MODEL = {"widths": [8, 16, 16, 16, 16], "hidden": 64, "activation": "silu", "convs_per_level": 1, "moments": True}
# "polish" continues a trained network on larger fresh simulation sets per step (3x the grf and 5x the lognormal
# full stage) with a 5x smaller step
_POLISH = {"n_s": 1000, "n_d": 500, "epochs": 400, "lr": 2e-3, "lam": 2.0, "n_s_val": 1000, "n_d_val": 500}
# quick: a smaller step than the full stage's; 1e-2 left a 60-step run anywhere between 0.1 and 0.8
_QUICK = {"n_s": 60, "n_d": 30, "epochs": 60, "lr": 3e-3, "lam": 2.0, "n_s_val": 150, "n_d_val": 75}
_TEST = {"test": {"n_s": 20000, "n_d": 2500}, "quick_test": {"n_s": 600, "n_d": 100}}
PRESETS = {
    "grf": {
        "simulator": {"kind": "power_law", "n_pix": 32, "box_size": 25.0},
        "theta_fid": [1.0, 0.5], "delta": [0.05, 0.05],
        "prior": {"low": [0.5, 0.1], "high": [1.5, 0.9]},
        "model": _MODEL,
        "full": {"n_s": 300, "n_d": 150, "epochs": 1500, "lr": 1e-2, "lam": 2.0, "n_s_val": 500, "n_d_val": 250},
        "polish": _POLISH, "quick": _QUICK, **_TEST,
    },
    "lognormal": {
        "simulator": {"kind": "lognormal", "n_pix": 32, "box_size": float(BOX_SIZE)},
        "theta_fid": [0.3, 0.8], "delta": [0.01, 0.01],
        "prior": {"low": [0.1, 0.6], "high": [0.5, 1.0]},
        "model": _MODEL,
        "full": {"n_s": 200, "n_d": 100, "epochs": 800, "lr": 1e-2, "lam": 2.0, "n_s_val": 500, "n_d_val": 250},
        "polish": _POLISH,
        "refit": {"n_s": 200, "n_d": 100, "epochs": 200, "lr": 2e-3, "lam": 2.0, "n_s_val": 500, "n_d_val": 250},
        "quick": _QUICK, **_TEST,
    },
}


def train_preset(name: str, stage: str = "full", *, theta_fid=None, init_model=None, seed: int = 0,
                 test_seed: int = 10_000, progress: bool = True, epochs: int | None = None):
    """Train one of :data:`PRESETS` and measure its Fisher saturation on an independent test set.

    ``stage``: ``"full"`` (train from scratch), ``"polish"`` (continue ``init_model``
    with larger simulation sets and a smaller step), ``"refit"`` (fine-tune
    ``init_model`` at a new ``theta_fid``, the slides' second step) or ``"quick"``
    (seconds). Returns ``(compressor, training, metrics)``: an
    :class:`~cosmonb.models.imnn.IMNNCompressor` whose statistics come from the
    test set, the :class:`IMNNTraining`, and a dict with
    ``saturation`` (det F_IMNN / det F_exact on the test set), ``det_fisher``,
    ``det_fisher_exact``, ``train_seconds``, ``epochs`` and ``saturation_curve``
    (the validation saturation per epoch, paired with the exact score, at most 200
    points); ``saturation_paired``
    is the same ratio paired with the exact score (see ``imnn.measure_saturation``).
    """
    if name not in PRESETS:
        raise ValueError(f"name: expected one of {sorted(PRESETS)}, got {name!r}")
    preset = PRESETS[name]
    stages = [k for k, v in preset.items() if isinstance(v, dict) and "epochs" in v]  # the training stages
    if stage not in stages:
        raise ValueError(f"stage: expected one of {stages}, got {stage!r}")
    if stage in ("polish", "refit") and init_model is None:
        raise ValueError(f"init_model: the {stage!r} stage continues a trained network; pass it")
    cfg = dict(preset[stage])
    if epochs is not None:
        cfg["epochs"] = int(epochs)
    sim = make_simulator(preset["simulator"])
    theta = np.asarray(preset["theta_fid"] if theta_fid is None else theta_fid, float)
    delta = np.asarray(preset["delta"], float)
    seed_everything(seed)  # the initial weights
    if init_model is not None:
        model = copy.deepcopy(init_model)
    else:
        model = IMNN(n_params=2, in_channels=1, **preset["model"])
    reference = sim.fisher(theta)
    training = train_imnn(model, sim, theta, delta, n_s=cfg["n_s"], n_d=cfg["n_d"], epochs=cfg["epochs"],
                          lr=cfg["lr"], lam=cfg.get("lam", 10.0), n_s_val=cfg["n_s_val"], n_d_val=cfg["n_d_val"],
                          exact_score=sim.score, seed=seed, progress=progress,
                          device="cpu", initialise=init_model is None)
    test_cfg = preset["quick_test" if stage == "quick" else "test"]
    measured = measure_saturation(model, sim, theta, delta, reference, n_s=test_cfg["n_s"],
                                       n_d=test_cfg["n_d"], seed=test_seed, exact_score=sim.score)
    stats = measured["stats"]
    curve = np.asarray(training.saturation)
    stride = max(1, int(np.ceil(len(curve) / 200)))
    metrics = {"saturation": measured["saturation"], "saturation_stderr": measured["stderr"],
               "saturation_paired": measured["saturation_paired"], "saturation_paired_stderr": measured["stderr_paired"],
               "test_sims": {"fiducial": stats.n_sims, "derivative_pairs_per_param": stats.n_derivative_sims},
               "det_fisher": stats.det_fisher, "det_fisher_exact": float(np.linalg.det(reference)),
               "train_seconds": training.history.seconds, "epochs": training.history.epochs,
               "saturation_curve": curve[::stride].tolist(), "saturation_curve_stride": stride,
               "theta_fid": theta.tolist()}
    return IMNNCompressor(model, stats), training, metrics


def train_recipe(name: str, *, quick: bool = False, seed: int = 0, resume=None, progress: bool = True):
    """Train one network of notebook 01 the way the shipped one was made.

    The ``full`` stage of :data:`PRESETS` from scratch, then ``polish`` (seed + 7);
    ``quick=True``: the ``quick`` stage alone (seconds). ``resume=(model, metrics)``
    (as :func:`load_imnn` gives them) skips the full stage and polishes ``model``.
    Returns ``(compressor, metrics)``: the last stage's metrics with ``epochs`` and
    ``train_seconds`` summed over the stages, ``train_seconds_by_stage``, the full
    stage's ``saturation_curve`` and the polish stage's ``polish_saturation_curve``.
    """
    if quick:
        comp, _, metrics = train_preset(name, "quick", seed=seed, progress=progress)
        return comp, metrics
    if resume is None:
        comp, _, first = train_preset(name, "full", seed=seed, progress=progress)
        model = comp.model
    else:
        model, first = resume
    comp, _, metrics = train_preset(name, "polish", init_model=model, seed=seed + 7, progress=progress)
    by_stage = dict(first.get("train_seconds_by_stage", {"full": first["train_seconds"]}))
    by_stage["polish"] = by_stage.get("polish", 0.0) + metrics["train_seconds"]  # polishing again adds up
    # polishing a polished network again continues its polish curve
    metrics.update(polish_saturation_curve=first.get("polish_saturation_curve", []) + metrics.pop("saturation_curve"),
                   polish_saturation_curve_stride=metrics.pop("saturation_curve_stride"),
                   polish_epochs=first.get("polish_epochs", 0) + metrics["epochs"],
                   epochs=first["epochs"] + metrics["epochs"],
                   saturation_curve=first["saturation_curve"], saturation_curve_stride=first["saturation_curve_stride"],
                   train_seconds=sum(by_stage.values()), train_seconds_by_stage=by_stage)
    return comp, metrics


# --------------------------------------------------------------------------- the command's recipe
#: The shipped IMNNs that ``python -m cosmonb train`` makes: checkpoint name -> preset of
#: ``PRESETS``. ``imnn_lognormal_refit`` fine-tunes ``imnn_lognormal`` (the one in ``--out``,
#: else the shipped one) at its score estimate of the benchmark's observed map
#: (:data:`REFIT_TARGET`): the second step of the IMNN recipe (Charnock et al. 2018, sec. 4).
IMNN_NAMES = {"imnn_grf": "grf", "imnn_lognormal": "lognormal", "imnn_lognormal_refit": "lognormal"}
#: The observed lognormal map that ``imnn_lognormal_refit`` is refitted for (``bench/imnn.py`` measures
#: it there): its true (Omega_m, sigma_8) and the random stream of ``make_simulator(...)(theta, seed)``.
REFIT_TARGET = {"theta": (0.35, 0.75), "seed": 777}


def refit_fiducial(compressor: IMNNCompressor, simulator=None) -> np.ndarray:
    """The refit's fiducial point: ``compressor``'s estimate of :data:`REFIT_TARGET`'s map, kept 0.02 inside the prior.

    Example:
        >>> comp, _ = load_imnn("imnn_lognormal")
        >>> theta = refit_fiducial(comp)
        >>> bool(np.all(theta >= np.array(PRESETS["lognormal"]["prior"]["low"]) + 0.02))
        True
    """
    preset = PRESETS["lognormal"]
    sim = simulator if simulator is not None else make_simulator(preset["simulator"])
    target = sim([np.asarray(REFIT_TARGET["theta"], float)], seed=REFIT_TARGET["seed"])[0]
    low, high = (np.asarray(preset["prior"][k], float) for k in ("low", "high"))
    return np.clip(compressor([target])[0], low + 0.02, high - 0.02)

#: ``--preset`` -> the stages of ``PRESETS[...]`` it runs (each step one fresh simulation set):
#:
#: * ``quick``: the ``quick`` stage alone (60 steps on small sets; seconds), as notebook 01's quick mode.
#: * ``cpu``: what was shipped: ``full`` from scratch, then ``polish`` (``train_recipe``), on
#:   32^2 maps; for ``imnn_lognormal_refit`` the ``refit`` stage. (The shipped files predate the
#:   command: the benchmark script made them with these stages, as their manifest says.)
#: * ``paper``: the same stages. The paper (Charnock et al. 2018) trained on 128^2 Gaussian fields and
#:   reached det F_IMNN / det F = 0.971; its grid is 16x more pixels per map and its test sets would
#:   take hours on a CPU, so this preset keeps the shipped 32^2 simulator (not yet a larger grid).
CLI_PRESETS = {"quick": ("quick",), "cpu": ("full", "polish"), "paper": ("full", "polish")}


def train_imnn_recipe(name: str, preset: str = "quick", *, out, resume: bool = False, max_steps: int | None = None,
                      seed: int = 0, progress: bool = False, command: str | None = None, log=print):
    """Train the shipped IMNN ``name`` with ``preset`` and save it to the folder ``out``; returns the path.

    ``out/<name>.pt`` loads with :func:`load_imnn` (``directory=out``) or
    ``checkpoints.load_model``. ``max_steps`` caps the optimiser steps of all stages
    together, counting those of a resumed network (each step trains on a fresh
    simulation set), as it caps a flow's steps. ``resume=True`` continues
    the network in ``out``: with the ``quick`` stage for ``--preset quick``, else with
    ``polish`` (``imnn_lognormal_refit``: ``refit`` again at its fiducial point). Runs in one process.
    """
    if name not in IMNN_NAMES:
        raise ValueError(f"name: expected one of {sorted(IMNN_NAMES)}, got {name!r}")
    if preset not in CLI_PRESETS:
        raise ValueError(f"preset: expected one of {sorted(CLI_PRESETS)}, got {preset!r}")
    out = Path(out)
    key = IMNN_NAMES[name]
    stages = list(CLI_PRESETS[preset])
    init, earlier = None, {}
    if resume:
        if not (out / f"{name}.pt").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint {out / (name + '.pt')} to continue from; train "
                                    "without --resume first (into the same --out)")
        comp, ckpt = load_imnn(name, out)
        saved = ckpt["config"].get("train", {}).get("preset")
        if saved not in (None, preset):
            raise ValueError(f"--preset: {out / (name + '.pt')} was trained with --preset {saved}, not {preset}; "
                             f"resume with --preset {saved}")
        init, earlier = comp.model, ckpt["metadata"]["metrics"]
        stages = stages[-1:]  # quick continues quick; cpu / paper polish again
    left = None if max_steps is None else int(max_steps) - int(earlier.get("epochs", 0))  # a cap on all steps
    if left is not None and left < 1:
        log(f"[cosmonb train] {name}: already trained {earlier.get('epochs')} steps >= --max-steps {max_steps}; "
            "nothing to do (raise --max-steps to continue)")
        return out / f"{name}.pt"
    theta_fid, seed_offset = None, 0
    if name == "imnn_lognormal_refit":  # fine-tune imnn_lognormal at its estimate of the observed map
        stages, seed_offset = ["quick" if preset == "quick" else "refit"], 3
        if init is None:
            has_base = (out / "imnn_lognormal.pt").is_file()
            base, _ = load_imnn("imnn_lognormal", out if has_base else None)
            log(f"[cosmonb train] {name}: refitting imnn_lognormal from {out if has_base else 'the shipped networks'}")
            init = base.model
            theta_fid = refit_fiducial(base)
        else:
            theta_fid = np.asarray(comp.theta_fid, float)  # resumed: keep the refit's fiducial point
    comp, metrics, seconds, done = None, {}, float(earlier.get("train_seconds", 0.0)), []
    for i, stage in enumerate(stages):
        epochs = PRESETS[key][stage]["epochs"]
        if left is not None:
            if left < 1:
                break
            epochs = min(epochs, left)
            left -= epochs
        log(f"[cosmonb train] {name} ({preset}): stage {stage!r}, {epochs} steps"
            + ("" if theta_fid is None else f" at theta_fid {np.round(theta_fid, 4).tolist()}"))
        comp, _, metrics = train_preset(key, stage, theta_fid=theta_fid, init_model=init, seed=seed + seed_offset + 7 * i,
                                        progress=progress, epochs=epochs)
        init = comp.model
        seconds += metrics["train_seconds"]
        done.append({"stage": stage, "epochs": epochs})
    metrics = dict(metrics, train_seconds=seconds, epochs=int(earlier.get("epochs", 0)) + sum(d["epochs"] for d in done))
    sim = make_simulator(PRESETS[key]["simulator"])
    cmd = command or f"python -m cosmonb train {name} --preset {preset}"
    path = save_imnn(name, comp.model, comp.stats, simulator_config=sim.config(), delta=PRESETS[key]["delta"],
                     metrics=metrics, command=cmd, seconds=seconds, directory=out,
                     extra={"train": {"preset": preset, "stages": done, "resumed": bool(resume)}})
    log(f"[cosmonb train] {name}: saturation {metrics['saturation']:.3f} (det F_IMNN / det F_exact) after "
        f"{metrics['epochs']} steps -> {path}")
    return path
