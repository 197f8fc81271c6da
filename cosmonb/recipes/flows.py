"""Training and shipping the galaxy-catalog flows of notebook 02 (:mod:`cosmonb.models.flows`).

``fit_flow`` trains a :class:`~cosmonb.models.flows.DensityFlow` by maximum
likelihood through :func:`cosmonb.train.fit` (which calls ``model.loss``);
``save_flow`` / ``load_flow`` are :func:`cosmonb.checkpoints.save_model` /
:func:`~cosmonb.checkpoints.load_model` for flows. They live here, not in
:mod:`cosmonb.models.flows`: models never import ``train`` or ``checkpoints``.
"""
from __future__ import annotations

from functools import partial

import torch

from .. import checkpoints
from .._checks import check_float
from ..models.flows import PRESETS, DensityFlow, check_rows, make_batches
from ..runtime import seed_everything
from ..train import fit

__all__ = ["fit_flow", "save_flow", "load_flow", "FLOW_NAMES", "CLI_PRESETS", "flow_data", "train_flow_recipe"]


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


# --------------------------------------------------------------------------- the command's recipe
#: The shipped flows of notebook 02, in the order ``python -m cosmonb train flow`` trains them.
FLOW_NAMES = ("flows_1d", "flows_2d", "flows_cond")

#: Presets of ``python -m cosmonb train <flow> --preset P``: per preset, the data
#: (``n_cv`` fiducial CV simulations x snapshots 030-033, ``n_asn1`` simulations
#: varying A_SN1 at snapshot 033) and, per flow, the model and training settings.
#:
#: * ``quick``: a seconds-long smoke test (tiny flows, 5 + 8 simulations, 2 epochs).
#: * ``cpu``: what was shipped (``cosmonb/pretrained/flows_*.pt``): the models and
#:   epochs of :data:`cosmonb.models.flows.PRESETS` on the 27 CV simulations and
#:   60 A_SN1 simulations, split by simulation as :data:`cosmonb.sims.catalogs.CV_SPLIT`
#:   and :data:`~cosmonb.sims.catalogs.FEEDBACK_SPLIT`.
#: * ``paper``: the same as ``cpu``. The paper's flows (a 1D neural spline flow with
#:   batch norm, a 2D autoregressive neural spline flow with 3 layers, on the CAMELS
#:   CV set, snapshots 030-033) are what was shipped; there is no larger size to train.
#:
#: The command trains with the step-based :class:`cosmonb.train.Trainer` (Adam, a
#: cosine decay to lr / 50 over all steps, gradient clipping at 5, one validation
#: pass per epoch), so it runs unchanged under ``torchrun``. The shipped files predate
#: the command: the benchmark script made them (their manifest says so) through
#: :func:`fit_flow` with the ``cpu`` presets (the cosine stepped per epoch, the last
#: short batch kept), so a retrained flow matches them in quality, not bit for bit.
_TINY = {"transforms": 1, "bins": 4, "hidden": [16, 16], "bound": 8.0}
_QUICK_TRAIN = {"epochs": 2, "lr": 3e-3, "batch_size": 256}
CLI_PRESETS = {
    "quick": {"data": {"n_cv": 5, "n_asn1": 8},
              "flows_1d": {"model": {"features": 1, "transforms": 1, "bins": 4, "batch_norm": True, "bound": 8.0},
                           "train": _QUICK_TRAIN},
              "flows_2d": {"model": {"features": 2, "order": "fixed", **_TINY}, "train": _QUICK_TRAIN},
              "flows_cond": {"model": {"features": 2, "context": 1, "order": "fixed", **_TINY},
                             "train": _QUICK_TRAIN}},
}
CLI_PRESETS["cpu"] = {"data": {"n_cv": 27, "n_asn1": 60}}
CLI_PRESETS["cpu"].update({name: {"model": dict(p["model"]), "train": dict(p["train"])}
                           for name, p in PRESETS.items()})
CLI_PRESETS["paper"] = CLI_PRESETS["cpu"]


def flow_data(name: str, preset: str, data_root=None, *, seed: int = 0, workdir=None, verbose: bool = True):
    """``{"train": (x, c), "val": (x, c), "test": (x, c), "source": str}`` for one shipped flow.

    Without ``data_root``: the built-in catalogs (:mod:`cosmonb.sims.catalogs`), written in
    the Subfind layout into ``workdir`` and read back, as notebook 02 and
    ``bench/flows.py`` do. With ``data_root``: real CAMELS Subfind catalogs
    ``<data_root>/CV_<i>/groups_0XX.hdf5`` (or ``fof_subhalo_tab_0XX.hdf5``), read with
    :func:`cosmonb.sims.catalogs.load_galaxies` and split by simulation
    (:func:`cosmonb.sims.catalogs.split_simulations`). ``flows_cond`` needs each
    simulation's A_SN1: ``<data_root>/ASN1_<i>/`` folders whose headers record it
    (``cosmonb_params``, as :func:`cosmonb.sims.catalogs.write_catalogs` writes); real
    CAMELS files do not, so that raises a ``ValueError`` saying so.
    """
    import tempfile
    from pathlib import Path

    import numpy as np

    from ..sims import catalogs as C

    if name not in FLOW_NAMES:
        raise ValueError(f"name: expected one of {FLOW_NAMES}, got {name!r}")
    if preset not in CLI_PRESETS:
        raise ValueError(f"preset: expected one of {sorted(CLI_PRESETS)}, got {preset!r}")
    sizes = CLI_PRESETS[preset]["data"]
    cond = name == "flows_cond"
    if data_root is not None:
        root = Path(data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"data_root: folder {root} does not exist (expected CAMELS Subfind catalogs "
                                    "<data_root>/CV_<i>/groups_0XX.hdf5)")
        source = f"Subfind catalogs in {root}"
    else:
        root = Path(workdir if workdir is not None else tempfile.mkdtemp(prefix="cosmonb_train_"))
        if cond:
            C.write_catalogs(root, C.feedback_set(sizes["n_asn1"], "A_SN1", seed=seed), snapshots=[33],
                             seed=seed, prefix="ASN1")
            source = f"catalogs.feedback_set({sizes['n_asn1']}, 'A_SN1', seed={seed}), snapshot 33"
        else:
            C.write_cv_catalogs(root, sizes["n_cv"], seed=seed)
            source = f"catalogs.write_cv_catalogs({sizes['n_cv']}, seed={seed})"
    if cond:
        if data_root is not None and not any(root.glob("ASN1_*")):
            raise ValueError(f"data_root: flows_cond is conditioned on A_SN1 and needs {root}/ASN1_<i>/ folders "
                             "whose catalogs record each simulation's parameters (cosmonb_params); real CAMELS "
                             "CV catalogs all have A_SN1 = 1. Train flows_1d or flows_2d on them instead")
        gal = C.load_galaxies(root, prefix="ASN1", snapshots=[33], verbose=verbose)
        if not np.all(np.isfinite(gal["params"][:, 2])):
            raise ValueError(f"data_root: the ASN1 catalogs in {root} do not record A_SN1 (cosmonb_params)")
    else:
        gal = C.load_galaxies(root, prefix="CV", verbose=verbose)
    sims_present = np.unique(gal["sim"])
    standard = C.FEEDBACK_SPLIT if cond else C.CV_SPLIT
    if data_root is None and len(sims_present) == sum(map(len, standard.values())):
        split_ids = {k: list(v) for k, v in standard.items()}  # what the shipped flows used
    else:
        split_ids = C.split_simulations(sims_present)
    out = {"source": source, "split": {k: [int(i) for i in v] for k, v in split_ids.items()}}
    for k, ids in split_ids.items():
        part = C.subset(gal, ids)
        if name == "flows_1d":
            x, c = part["log_mstar"][:, None], None
        else:
            x = np.stack([part["log_mtot"], part["log_mstar"]], 1)
            c = np.log10(part["params"][:, 2:3]) if cond else None
        out[k] = (x, c)
    return out


def train_flow_recipe(name: str, preset: str = "quick", *, out, data_root=None, resume: bool = False,
                      max_steps: int | None = None, seed: int = 0, progress: bool = False, command: str | None = None,
                      device=None, workdir=None, log=print):
    """Train the shipped flow ``name`` with ``preset`` and save it to ``out`` (a folder); returns the path.

    ``out/<name>.pt`` and its ``MANIFEST.json`` entry load with
    ``checkpoints.load_model(name, directory=out)`` or ``load_flow(name, out)``;
    ``out/<name>.state.pt`` holds the trainer's state (optimizer, RNG, position)
    for ``resume=True``. ``max_steps`` caps the optimiser steps (the preset's epochs
    otherwise). Under ``torchrun`` every process runs this; :class:`~cosmonb.train.Trainer`
    trains with DDP and only rank 0 writes. ``workdir``: where the built-in catalogs are
    written (and reused if already there; default a temporary folder).
    """
    import time
    from pathlib import Path

    import numpy as np
    from torch.utils.data import TensorDataset

    from ..models.flows import per_sample_nll
    from ..train import TrainConfig, Trainer, distributed

    if name not in FLOW_NAMES:
        raise ValueError(f"name: expected one of {FLOW_NAMES}, got {name!r}")
    if preset not in CLI_PRESETS:
        raise ValueError(f"preset: expected one of {sorted(CLI_PRESETS)}, got {preset!r}")
    out = Path(out)
    state = out / f"{name}.state.pt"
    main = distributed.is_main()
    if resume and not state.is_file():
        raise FileNotFoundError(f"--resume: no training state {state} to continue from; train without --resume "
                                "first (into the same --out)")
    if resume:
        saved = checkpoints.read_manifest(out).get(name, {}).get("config", {}).get("extra", {})
        if saved.get("preset") not in (None, preset):
            raise ValueError(f"--preset: {state} was trained with --preset {saved['preset']}, not {preset}; "
                             f"resume with --preset {saved['preset']}")
    spec = CLI_PRESETS[preset][name]
    train_cfg = spec["train"]
    import tempfile

    if workdir is not None:
        data = flow_data(name, preset, data_root, seed=seed, workdir=workdir, verbose=main)
    else:
        with tempfile.TemporaryDirectory(prefix="cosmonb_train_") as tmp:
            data = flow_data(name, preset, data_root, seed=seed, workdir=tmp, verbose=main)
    (x, c), (xv, cv), (xt, ct) = data["train"], data["val"], data["test"]
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    train_set = TensorDataset(as_t(x)) if c is None else TensorDataset(as_t(x), as_t(c))
    val_set = TensorDataset(as_t(xv)) if cv is None else TensorDataset(as_t(xv), as_t(cv))
    bs = int(train_cfg["batch_size"])
    per_epoch = len(x) // bs
    if per_epoch < 1:
        raise ValueError(f"data: {len(x)} training galaxies are fewer than one batch of {bs}")
    total = int(train_cfg["epochs"]) * per_epoch
    if max_steps is not None:
        total = min(total, int(max_steps))
    config = TrainConfig(max_steps=total, batch_size=bs, lr=float(train_cfg["lr"]), scheduler="cosine",
                         min_lr_ratio=1 / 50, clip_grad=5.0, eval_every=per_epoch, seed=seed,
                         progress=bool(progress and main))
    seed_everything(seed)
    model = DensityFlow(**spec["model"])
    model.set_normaliser(x, c)  # the same on every process and on resume (the state then restores it)
    if not resume and main:
        state.unlink(missing_ok=True)  # a fresh run replaces an earlier run's state
    distributed.barrier()
    if main:
        log(f"[cosmonb train] {name} ({preset}): {len(x)} training galaxies from {data['source']}; "
            f"{total} steps of {bs} on {distributed.world_size()} process(es)")
    trainer = Trainer(model, config, checkpoint=state, device=device)
    t0 = time.perf_counter()
    result = trainer.fit(train_set, val_set)
    seconds = float(result["seconds"])
    path = out / f"{name}.pt"
    if main:
        flow = distributed.unwrap(trainer.model).to("cpu").eval()
        steps = result["train_loss"]
        epochs = [float(np.mean(steps[i:i + per_epoch])) for i in range(0, len(steps), per_epoch)]
        metrics = {"steps": int(result["steps"]), "epochs": round(result["steps"] / per_epoch, 3),
                   "train_loss": epochs, "val_loss": result["val_loss"], "world_size": int(result["world_size"]),
                   "nll_model_test": float(per_sample_nll(flow, xt, ct).mean())}
        extra = {"preset": preset, "train": dict(train_cfg, max_steps=total), "data": data["source"],
                 "split": data["split"], "trainer": config.to_dict()}
        cmd = command or f"python -m cosmonb train {name} --preset {preset}"
        save_flow(name, flow, metrics, cmd, seconds, directory=out, extra_config=extra)
        log(f"[cosmonb train] {name}: {result['steps']} steps ({result['stop_reason'] or 'stopped'}) in "
            f"{time.perf_counter() - t0:.1f} s, val NLL {result['val_loss'][-1] if result['val_loss'] else float('nan'):.4f}"
            f" -> {path}")
    distributed.barrier()
    return path

