"""Training state shared by the loops of :mod:`cosmonb.train`: RNG states, checkpoint files, optimizers.

A checkpoint of a training run holds the model, optimizer and scheduler
states, every RNG state (python, numpy, torch, CUDA and the generators that
drive a DataLoader's shuffling) and the loop's own counters; restoring all of
them is what makes a resumed run end with the same weights, bit for bit on
CPU, as one that was never interrupted. Errors name the file and what does
not fit (another model, listing the tensors; another optimizer).
"""
from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import checkpoints

__all__ = ["NonFiniteLossError", "CheckpointError", "CHECKPOINT_FORMAT", "to_device", "batch_size_of",
           "check_loss", "make_optimizer", "make_scheduler", "data_generators", "get_rng_state",
           "set_rng_state", "cpu_state", "load_checkpoint", "optimizer_name", "requested_lrs",
           "restore_states", "apply_new_lr"]

#: Format tag stored in every ``fit`` checkpoint.
CHECKPOINT_FORMAT = "cosmonb.fit/1"
_REQUIRED_KEYS = {"format", "epoch", "model", "optimizer", "scheduler", "history",
                  "best_val_loss", "best_state", "epochs_since_best", "rng"}



class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite during ``fit``."""


class CheckpointError(RuntimeError):
    """A ``fit`` checkpoint exists but cannot be used to resume."""



def to_device(obj, dev: torch.device):
    """Move tensors (also inside tuples, lists, dicts) to ``dev``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dev)
    if isinstance(obj, dict):
        return {k: to_device(v, dev) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(v, dev) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, dev) for v in obj)
    return obj


def batch_size_of(obj) -> int:
    """Leading dimension of the first tensor in ``obj`` (1 if there is none)."""
    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0]) if obj.ndim else 1
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else ()
    for v in values:
        if isinstance(v, (torch.Tensor, dict, tuple, list)):
            return batch_size_of(v)
    return 1


def check_loss(loss, epoch: int, step: int, phase: str) -> float:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        what = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn: expected a scalar tensor, got {what} ({phase}, epoch {epoch}, step {step})")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"{phase} loss is {value} at epoch {epoch}, step {step} (steps counted from 1 within the "
            "epoch). Try a lower lr, clip_grad=1.0, or check the batch for NaN/inf values.")
    return value


def make_optimizer(optimizer, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if optimizer is None:
        return torch.optim.Adam(model.parameters(), lr=lr)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        opt = optimizer(model.parameters())
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(f"optimizer: the factory should return a torch.optim.Optimizer, "
                             f"got {type(opt).__name__}")
        return opt
    raise ValueError("optimizer: expected None, a torch.optim.Optimizer, or a callable "
                     f"params -> Optimizer, got {type(optimizer).__name__}")


def make_scheduler(scheduler, opt):
    if scheduler is None:
        return None
    if hasattr(scheduler, "step") and hasattr(scheduler, "state_dict"):
        sched = scheduler
    elif callable(scheduler):
        sched = scheduler(opt)
        if not (hasattr(sched, "step") and hasattr(sched, "state_dict")):
            raise ValueError("scheduler: the factory should return an LR scheduler, "
                             f"got {type(sched).__name__}")
    else:
        raise ValueError("scheduler: expected None, an LR scheduler, or a callable "
                         f"optimizer -> scheduler, got {type(scheduler).__name__}")
    if getattr(sched, "optimizer", opt) is not opt:
        raise ValueError("scheduler: it wraps a different optimizer than the one fit uses; "
                         "pass optimizer= too, or pass a factory lambda opt: Scheduler(opt, ...)")
    return sched


def data_generators(data) -> dict:
    """torch.Generators that drive a DataLoader's shuffling, so resume restores them too."""
    gens = {}
    if isinstance(data, torch.utils.data.DataLoader):
        candidates = {
            "generator": getattr(data, "generator", None),
            "sampler": getattr(data.sampler, "generator", None),
            "batch_sampler": getattr(getattr(data.batch_sampler, "sampler", None), "generator", None),
        }
        seen = set()
        for key, gen in candidates.items():
            if isinstance(gen, torch.Generator) and id(gen) not in seen:
                seen.add(id(gen))
                gens[key] = gen
    return gens


def get_rng_state(loaders: dict) -> dict:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": np_state["state"]["key"].tolist(),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "data": {f"{name}.{key}": gen.get_state()
                 for name, loader in loaders.items() for key, gen in data_generators(loader).items()},
    }


def set_rng_state(state: dict, loaders: dict) -> None:
    random.setstate(state["python"])
    s = state["numpy"]
    np.random.set_state({"bit_generator": s["bit_generator"],
                         "state": {"key": np.asarray(s["key"], dtype=np.uint32), "pos": s["pos"]},
                         "has_gauss": s["has_gauss"], "gauss": s["gauss"]})
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("data") or {}
    for name, loader in loaders.items():
        for key, gen in data_generators(loader).items():
            if f"{name}.{key}" in saved:
                gen.set_state(saved[f"{name}.{key}"])


def cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_checkpoint(path: Path, fmt: str = CHECKPOINT_FORMAT, required=None) -> dict:
    """Read a training checkpoint; ``CheckpointError`` naming the file if it is corrupt, of another
    format than ``fmt``, or lacks one of the ``required`` keys (default: those ``fit`` writes)."""
    required = _REQUIRED_KEYS if required is None else set(required)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means the file cannot be used
        raise CheckpointError(
            f"checkpoint {path} exists but cannot be loaded ({type(err).__name__}: {err}). "
            "It is corrupt or not a cosmonb.fit checkpoint. fit does not silently start over: "
            "delete the file to train from scratch, or restore it.") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise CheckpointError(f"checkpoint {path} is not a cosmonb.fit checkpoint (format "
                              f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r}, "
                              f"expected {fmt!r}); delete it or pass another path")
    missing = required - set(ckpt)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}; delete it or restore it")
    return ckpt


def optimizer_name(opt) -> str:
    cls = type(opt)
    return f"{cls.__module__}.{cls.__qualname__}"


def requested_lrs(opt) -> list[float]:
    """The learning rate asked for in each param group (before any scheduler changed it)."""
    return [float(g.get("initial_lr", g["lr"])) for g in opt.param_groups]


def restore_states(ckpt: dict, path: Path, model, opt, sched, loaders) -> None:
    problems = checkpoints.state_dict_mismatches(model, ckpt["model"])
    if problems:
        raise CheckpointError(f"checkpoint {path} was written for a different model: {len(problems)} "
                              f"tensor(s) differ:{checkpoints.format_mismatches(problems)}\n"
                              "Use the model of the interrupted run, another checkpoint path, "
                              "or delete the file to train from scratch.")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} was written for a different model: {err}. "
                              "Use another checkpoint path or delete the file.") from err
    this = optimizer_name(opt)
    saved = ckpt.get("optimizer_class")  # absent in checkpoints written before it was recorded
    if saved is not None and saved != this:
        raise CheckpointError(f"checkpoint {path} was written with optimizer {saved}, but this call "
                              f"uses {this}; resume with the same optimizer as the interrupted run, "
                              "or delete the file (or pass another checkpoint path) to start over")
    what = f"optimizer {saved}" if saved is not None else "the interrupted run's optimizer"
    try:
        opt.load_state_dict(ckpt["optimizer"])
    except Exception as err:  # noqa: BLE001 - any failure means the state does not fit
        raise CheckpointError(f"checkpoint {path}: the state of {what} does not load into {this} "
                              f"({type(err).__name__}: {err}); resume with the same optimizer as "
                              "the interrupted run, or delete the file") from err
    # an optimizer of another class takes the foreign param groups without complaint and
    # fails only at its first step (SGD over Adam: KeyError 'momentum'); for files that do not
    # record the class, catch it here (with the class recorded and equal, a setting new in this
    # torch version is the optimizer's own business: its __setstate__ fills the default)
    lacking = [] if saved is not None else \
        sorted({k for g in opt.param_groups for k in opt.defaults if k not in g})
    if lacking:
        raise CheckpointError(f"checkpoint {path}: the state of {what} lacks the settings {lacking} "
                              f"that {this} needs, so it was written by another optimizer; resume "
                              "with the same optimizer as the interrupted run, or delete the file")
    if (sched is None) != (ckpt["scheduler"] is None):
        raise CheckpointError(f"checkpoint {path} was written "
                              f"{'without' if ckpt['scheduler'] is None else 'with'} a scheduler, "
                              f"but this call has {'one' if sched is not None else 'none'}; "
                              "resume with the same setup or delete the file")
    if sched is not None:
        try:
            sched.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(f"checkpoint {path}: scheduler state does not load ({err})") from err
    try:
        set_rng_state(ckpt["rng"], loaders)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path}: RNG states do not load ({err})") from err


def apply_new_lr(ckpt: dict, path: Path, opt, sched, requested: list[float], start: int, *,
                 caller: str = "fit", unit: str = "epoch", stacklevel: int = 3) -> None:
    """If this call asks for another lr than the checkpoint's run, switch to it with a warning.

    Each param group's lr is scaled by new / old, and so are the scheduler's
    base lrs, so the schedule keeps its progress (epoch, milestones, plateau
    reductions) at the new scale. ``requested`` is :func:`requested_lrs` of the
    optimizer *before* the checkpoint's state was loaded into it; ``start`` the
    epochs (``unit="epoch"``, :func:`~cosmonb.train.fit`) or steps
    (``unit="step"``, :class:`~cosmonb.train.Trainer`) already done; ``caller``
    names the API in the warning, which points ``stacklevel`` frames up.
    """
    saved = ckpt.get("requested_lr")
    if saved is None:  # written before requested_lr was recorded: read it off the optimizer state
        if sched is not None and not hasattr(sched, "base_lrs"):
            return  # e.g. ReduceLROnPlateau: its current lr may be reduced, the original is unknown
        saved = [g.get("initial_lr", g["lr"]) for g in ckpt["optimizer"]["param_groups"]]
    saved = [float(x) for x in saved]
    if len(saved) != len(requested) or len(requested) != len(opt.param_groups):
        return  # load_state_dict has refused a different number of groups already
    changes = []
    for i, (old, new) in enumerate(zip(saved, requested)):
        if math.isclose(old, new, rel_tol=1e-9, abs_tol=0.0):
            continue
        group = opt.param_groups[i]
        group["lr"] = float(group["lr"]) * new / old if old > 0 else new
        if "initial_lr" in group:
            group["initial_lr"] = new
        base = getattr(sched, "base_lrs", None)
        if isinstance(base, list) and i < len(base):
            base[i] = new
        last = getattr(sched, "_last_lr", None)
        if isinstance(last, list) and i < len(last):
            last[i] = group["lr"]
        changes.append(f"lr={new:g} (was {old:g}" + (f", param group {i})" if len(saved) > 1 else ")"))
    if changes:
        warnings.warn(f"{caller}: resuming {path} with a different learning rate: {'; '.join(changes)}. "
                      f"The new value takes effect from {unit} {start + 1}"
                      + (" (the scheduler keeps its progress, scaled to the new lr)" if sched is not None
                         else "") + "; pass the old lr to continue the original run exactly.",
                      UserWarning, stacklevel=stacklevel)
