"""Shipped pretrained models: save with provenance, load with a sha256 check.

Each shipped model is ``cosmonb/pretrained/<name>.pt``, a dict

    {"config": ..., "state_dict": ..., "normaliser": ..., "metadata": ...}

and ``cosmonb/pretrained/MANIFEST.json`` records, for each name, its
sha256, size, the command that made it, wall time, hardware, metrics,
config and date. ``load_pretrained`` refuses a file whose hash does not
match the manifest, and a missing file raises: a notebook never falls back
to a silent retraining (the weakness GUIDE section 5 warns about). The
train-or-load cell of a notebook reads

    if TRAIN or QUICK:
        ...  # train with cosmonb.train.fit, then (full runs) save_pretrained(...)
    else:
        ckpt = load_pretrained("glow_hi")   # raises with instructions if missing
        model = load_weights(Glow(**ckpt["config"]), ckpt)   # names any mismatched tensor

or, for any model registered with ``cosmonb.models.base.register_model``, the
two generic calls :func:`save_model` / :func:`load_model`, which store the
model's registry name and ``config`` and rebuild it from them.

Keep each checkpoint under ~5 MB and all of them under ~30 MB (a warning
fires otherwise).

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> model = torch.nn.Linear(2, 1)
    >>> _ = save_pretrained("demo", {"width": 2}, model.state_dict(), None, {"rmse": 0.1},
    ...                     command="python make_demo.py", seconds=1.5, directory=d)
    >>> ckpt = load_pretrained("demo", directory=d)
    >>> sorted(ckpt), ckpt["config"], ckpt["metadata"]["metrics"]
    (['config', 'metadata', 'normaliser', 'state_dict'], {'width': 2}, {'rmse': 0.1})
"""
from __future__ import annotations

import datetime
import hashlib
import io
import math
import numbers
import os
import re
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from . import runtime

__all__ = ["save_model", "load_model", "save_pretrained", "load_pretrained", "load_weights", "state_dict_mismatches", "format_mismatches",
           "pretrained_available", "read_manifest", "PretrainedError", "PretrainedMissingError",
           "PRETRAINED_DIR"]

#: Folder of the shipped checkpoints.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
MANIFEST_NAME = "MANIFEST.json"
FORMAT = "cosmonb.pretrained/1"
#: Warn above these sizes (GUIDE section 3).
MAX_FILE_BYTES = 5_000_000
MAX_TOTAL_BYTES = 30_000_000

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PretrainedError(RuntimeError):
    """A shipped checkpoint cannot be used (hash mismatch, not in the manifest, unreadable)."""


class PretrainedMissingError(PretrainedError, FileNotFoundError):
    """The checkpoint file of a shipped model is missing."""


# --------------------------------------------------------------------------- helpers
def _directory(directory) -> Path:
    if directory is None:
        return PRETRAINED_DIR
    if not isinstance(directory, (str, os.PathLike)):
        raise ValueError(f"directory: expected a folder path or None, got {type(directory).__name__}")
    return Path(directory)


def _check_name(name) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith(".pt") \
            or name == Path(MANIFEST_NAME).stem:
        raise ValueError(f"name: expected a file-safe model name such as 'glow_hi' "
                         f"(letters, digits, _ . -; no '.pt'), got {name!r}")
    return name


def _jsonable(value, what: str):
    """Return ``value`` as plain JSON types (numpy scalars/arrays and tuples converted)."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{what}: expected finite numbers, got {value}")
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{what}: keys must be strings, got {k!r}")
            out[k] = _jsonable(v, f"{what}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{what}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{what}: expected JSON-like values (numbers, strings, lists, dicts), "
                     f"got {type(value).__name__}")


def _clean_state_dict(state_dict) -> tuple[dict, str]:
    """CPU copies of the tensors, and the device they were on."""
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ValueError("state_dict: expected a non-empty mapping name -> tensor (model.state_dict())")
    out, dev = {}, "cpu"
    for key, t in state_dict.items():
        if not isinstance(key, str) or not isinstance(t, torch.Tensor):
            raise ValueError(f"state_dict: expected str -> tensor entries, got {key!r}: {type(t).__name__}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"state_dict: tensor {key!r} has NaN/inf values; refusing to ship it")
        if t.device.type != "cpu":
            dev = str(t.device)
        out[key] = t.detach().to("cpu", copy=True).contiguous()
    return out, dev


def _clean_normaliser(normaliser):
    """Tensors/arrays -> CPU tensors, numbers -> python numbers, validated finite."""
    if normaliser is None:
        return None
    if not isinstance(normaliser, Mapping):
        raise ValueError(f"normaliser: expected a dict or None, got {type(normaliser).__name__}")

    def clean(v, what):
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if isinstance(v, torch.Tensor):
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise ValueError(f"{what}: has NaN/inf values")
            return v.detach().to("cpu", copy=True)
        if isinstance(v, Mapping):
            return {str(k): clean(x, f"{what}[{k!r}]") for k, x in v.items()}
        return _jsonable(v, what)

    return {str(k): clean(v, f"normaliser[{k!r}]") for k, v in normaliser.items()}


def _hardware(device: str) -> dict:
    """``runtime.machine_info()`` (CPU model, CPU capability, threads, versions) plus the device."""
    hw = {**runtime.machine_info(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return hw


def state_dict_mismatches(model: nn.Module, state_dict: Mapping) -> list[str]:
    """Why ``state_dict`` does not fit ``model``, one line per tensor (``[]`` when it fits).

    Lists tensors whose shapes differ (``'name': checkpoint (a, b) vs model (c, d)``),
    tensors the model expects but the checkpoint lacks, and tensors the
    checkpoint has but the model does not. Used before every
    ``load_state_dict`` of a saved file, so a mismatch is reported by name
    rather than as torch's size-mismatch traceback.

    Example:
        >>> state_dict_mismatches(torch.nn.Linear(3, 1), torch.nn.Linear(2, 1).state_dict())
        ["'weight': checkpoint (1, 2) vs model (1, 3)"]
        >>> state_dict_mismatches(torch.nn.Linear(2, 1), torch.nn.Linear(2, 1).state_dict())
        []
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict: expected a mapping name -> tensor, got {type(state_dict).__name__}")
    own = model.state_dict()
    problems = []
    for key, t in own.items():
        if key not in state_dict:
            problems.append(f"{key!r}: missing from the checkpoint (model {tuple(t.shape)})")
            continue
        saved = state_dict[key]
        shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
        if shape != tuple(t.shape):
            problems.append(f"{key!r}: checkpoint {shape} vs model {tuple(t.shape)}")
    for key, saved in state_dict.items():
        if key not in own:
            shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
            problems.append(f"{key!r}: in the checkpoint {shape} but not in the model")
    return problems


def format_mismatches(problems: list[str], limit: int = 20) -> str:
    """The lines of ``state_dict_mismatches`` as one indented block (at most ``limit`` lines)."""
    lines = problems[:limit] + ([f"... and {len(problems) - limit} more"] if len(problems) > limit else [])
    return "\n  " + "\n  ".join(lines)


def load_weights(model: nn.Module, ckpt: Mapping) -> nn.Module:
    """Load ``ckpt["state_dict"]`` (from :func:`load_pretrained`) into ``model``; returns ``model``.

    A checkpoint whose hash is valid but whose tensors do not fit the model
    (the model's code changed since the file was made) raises
    ``PretrainedError`` naming the file and every mismatched tensor with both
    shapes, and how to fix it, instead of torch's size-mismatch traceback.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = save_pretrained("w", {"n": 2}, torch.nn.Linear(2, 1), None, {}, "make w", 0.0, directory=d)
        >>> ckpt = load_pretrained("w", directory=d)
        >>> load_weights(torch.nn.Linear(ckpt["config"]["n"], 1), ckpt)
        Linear(in_features=2, out_features=1, bias=True)
        >>> load_weights(torch.nn.Linear(3, 1), ckpt)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cosmonb.checkpoints.PretrainedError: pretrained checkpoint ...w.pt does not fit Linear: ...
    """
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise ValueError("ckpt: expected the dict load_pretrained returns (with a 'state_dict' key)")
    meta = ckpt.get("metadata") if isinstance(ckpt.get("metadata"), Mapping) else {}
    source = meta.get("path") or f"{meta.get('name', '?')!r}"
    problems = state_dict_mismatches(model, ckpt["state_dict"])
    fix = ("The model's code or config changed since the file was made: rebuild the model from "
           "ckpt['config'], or retrain (run its notebook with TRAIN=True) and save it again.")
    if problems:
        raise PretrainedError(f"pretrained checkpoint {source} does not fit {type(model).__name__}: "
                              f"{len(problems)} tensor(s) differ:{format_mismatches(problems)}\n{fix}")
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, ValueError, TypeError) as err:
        raise PretrainedError(f"pretrained checkpoint {source} does not load into "
                              f"{type(model).__name__} ({err}). {fix}") from err
    return model


def read_manifest(directory=None) -> dict:
    """The manifest of the shipped checkpoints, ``name -> entry`` (``{}`` if it does not exist).

    Example:
        >>> import tempfile
        >>> read_manifest(tempfile.mkdtemp())
        {}
    """
    path = _directory(directory) / MANIFEST_NAME
    if not path.exists():
        return {}
    return runtime.read_json(path, "MANIFEST.json")


# --------------------------------------------------------------------------- public API
def save_pretrained(name: str, model_config: dict, state_dict, normaliser: dict | None,
                    metrics: dict, command: str, seconds: float, directory=None, *,
                    device=None) -> Path:
    """Write ``<directory>/<name>.pt`` atomically and record it in MANIFEST.json.

    ``model_config``: JSON-like dict that rebuilds the model; ``state_dict``:
    ``model.state_dict()`` (or the module); ``normaliser``: dict of
    tensors/arrays/numbers (arrays come back as tensors) or None;
    ``metrics``: dict of headline numbers; ``command``: how to remake the
    file; ``seconds``: training wall time; ``directory``: default the
    package's ``pretrained/`` folder; ``device``: the device it was trained
    on (default: where the state_dict tensors live). Returns the path.
    Warns when the file is over 5 MB or all checkpoints over 30 MB.

    Example:
        >>> import tempfile, torch
        >>> d = tempfile.mkdtemp()
        >>> p = save_pretrained("tiny", {"n": 1}, torch.nn.Linear(1, 1).state_dict(), None,
        ...                     {"loss": 0.5}, "make tiny", 0.1, directory=d)
        >>> p.name, read_manifest(d)["tiny"]["metrics"]
        ('tiny.pt', {'loss': 0.5})
    """
    name = _check_name(name)
    if not isinstance(model_config, Mapping):
        raise ValueError(f"model_config: expected a dict, got {type(model_config).__name__}")
    config = _jsonable(model_config, "model_config")
    sd, sd_device = _clean_state_dict(state_dict)
    norm = _clean_normaliser(normaliser)
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics: expected a dict of numbers, got {type(metrics).__name__}")
    metrics = runtime.clean_record_value(dict(metrics), "metrics")
    if not isinstance(command, str) or not command.strip():
        raise ValueError("command: expected the non-empty command that (re)creates this checkpoint")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) \
            or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds: expected a finite number >= 0, got {seconds!r}")
    dev = str(runtime.select_device(device, "device")) if device is not None else sd_device
    folder = _directory(directory)

    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    hardware = _hardware(dev)
    metadata = {"format": FORMAT, "name": name, "command": command, "seconds": float(seconds),
                "metrics": metrics, "hardware": hardware, "date": date}
    buf = io.BytesIO()
    torch.save({"config": config, "state_dict": sd, "normaliser": norm, "metadata": metadata}, buf)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    path = folder / f"{name}.pt"
    with runtime.atomic_write(path, "wb") as f:
        f.write(data)
    entry = {"file": path.name, "sha256": sha, "size_bytes": len(data), "command": command,
             "seconds": float(seconds), "hardware": hardware, "metrics": metrics,
             "config": config, "date": date}
    manifest = runtime.update_json(folder / MANIFEST_NAME, {name: entry}, "MANIFEST.json")
    if len(data) > MAX_FILE_BYTES:
        warnings.warn(f"pretrained checkpoint {path} is {len(data) / 1e6:.1f} MB, over the "
                      f"{MAX_FILE_BYTES / 1e6:.0f} MB guideline; use a smaller model or float16 weights",
                      UserWarning, stacklevel=2)
    total = sum(int(e.get("size_bytes", 0)) for e in manifest.values() if isinstance(e, dict))
    if total > MAX_TOTAL_BYTES:
        warnings.warn(f"all pretrained checkpoints in {folder} total {total / 1e6:.1f} MB, over the "
                      f"{MAX_TOTAL_BYTES / 1e6:.0f} MB guideline", UserWarning, stacklevel=2)
    return path


def load_pretrained(name: str, directory=None, *, map_location="cpu") -> dict:
    """Load ``<directory>/<name>.pt`` after checking its sha256 against MANIFEST.json.

    Returns ``{"config", "state_dict", "normaliser", "metadata"}`` (``metadata["path"]``
    is the file it was read from); load the weights with :func:`load_weights`, which
    names any tensor whose shape does not fit the model. A missing
    file raises ``PretrainedMissingError`` and a hash mismatch, a name absent
    from the manifest or an unreadable file raise ``PretrainedError``, each
    saying to retrain (run the notebook with ``TRAIN=True``) or restore the
    file; there is no silent fallback to training.

    Example:
        >>> import tempfile, torch
        >>> d = tempfile.mkdtemp()
        >>> _ = save_pretrained("lin", {}, torch.nn.Linear(1, 1).state_dict(), {"mean": 2.0},
        ...                     {"loss": 0.5}, "make lin", 0.1, directory=d)
        >>> load_pretrained("lin", directory=d)["normaliser"]
        {'mean': 2.0}
        >>> load_pretrained("nope", directory=d)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cosmonb.checkpoints.PretrainedMissingError: pretrained checkpoint 'nope' not found ...
    """
    name = _check_name(name)
    folder = _directory(directory)
    path = folder / f"{name}.pt"
    fix = (f"Retrain it by running its notebook with TRAIN=True (which calls save_pretrained), "
           f"or restore the shipped file (e.g. `git checkout -- {path.name}` in {folder}).")
    if not path.is_file():
        raise PretrainedMissingError(f"pretrained checkpoint {name!r} not found at {path}. {fix}")
    manifest = read_manifest(folder)
    entry = manifest.get(name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise PretrainedError(f"pretrained checkpoint {name!r} ({path}) has no sha256 entry in "
                              f"{folder / MANIFEST_NAME}, so it cannot be verified. {fix}")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != entry["sha256"]:
        hint = (" The file is a Git LFS pointer: run `git lfs pull`." if data.startswith(b"version https://git-lfs")
                else "")
        raise PretrainedError(f"sha256 mismatch for pretrained checkpoint {name!r}: {path} has {sha}, "
                              f"MANIFEST.json records {entry['sha256']} (size {len(data)} vs "
                              f"{entry.get('size_bytes')} bytes). The file is corrupt or was changed "
                              f"without save_pretrained.{hint} {fix}")
    try:
        ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise PretrainedError(f"pretrained checkpoint {path} matches its hash but does not load "
                              f"({type(err).__name__}: {err}). {fix}") from err
    if not isinstance(ckpt, dict) or not {"config", "state_dict", "normaliser", "metadata"} <= set(ckpt):
        raise PretrainedError(f"{path} is not a cosmonb pretrained checkpoint "
                              "(expected keys config, state_dict, normaliser, metadata). " + fix)
    if isinstance(ckpt["metadata"], dict):
        ckpt["metadata"]["path"] = str(path)  # where it was read from (not stored in the file)
    return ckpt


def pretrained_available(name: str, directory=None) -> bool:
    """True if ``<name>.pt`` exists and MANIFEST.json records it with a matching size.

    The full sha256 check happens in ``load_pretrained``. Do not use this
    to decide silently to retrain: a notebook should call ``load_pretrained``
    unless ``TRAIN`` or ``QUICK``, so a missing file is an error, not a
    surprise hour of training.

    Example:
        >>> import tempfile
        >>> pretrained_available("glow_hi", directory=tempfile.mkdtemp())
        False
    """
    name = _check_name(name)
    folder = _directory(directory)
    path = folder / f"{name}.pt"
    if not path.is_file():
        return False
    try:
        entry = read_manifest(folder).get(name)
    except ValueError:
        return False
    return isinstance(entry, dict) and entry.get("size_bytes") == path.stat().st_size


# --------------------------------------------------------------------------- any registered model
_RESERVED = ("kind", "model")


def save_model(name: str, model: nn.Module, *, metrics: dict | None = None, command: str, seconds: float,
               normaliser: dict | None = None, extra: dict | None = None, directory=None, device=None) -> Path:
    """Save a registered model (:mod:`cosmonb.models.base`) with :func:`save_pretrained`.

    The stored config is ``{"kind": <registry name>, "model": model.config, **extra}``,
    so :func:`load_model` rebuilds the model without being told its class.
    ``normaliser`` (default: ``model.normaliser()`` if the model has one) and
    ``extra`` (more JSON-like provenance, e.g. the simulator's config) are
    stored beside it. Returns the path.

    Example:
        >>> import tempfile
        >>> from cosmonb.models.flows import DensityFlow
        >>> d, flow = tempfile.mkdtemp(), DensityFlow(1, transforms=1, bins=4)
        >>> _ = save_model("tiny_flow", flow, metrics={"nll": 1.0}, command="doctest", seconds=0.0, directory=d)
        >>> back, ckpt = load_model("tiny_flow", directory=d)
        >>> type(back).__name__, ckpt["config"]["kind"], torch.equal(back.sample(3, seed=0), flow.sample(3, seed=0))
        ('DensityFlow', 'density_flow', True)
    """
    from .models.base import model_name

    kind = model_name(model)
    extra = {} if extra is None else extra
    if not isinstance(extra, Mapping) or any(k in extra for k in _RESERVED):
        raise ValueError(f"extra: expected a dict without the keys {_RESERVED}, got {extra!r}")
    if normaliser is None and callable(getattr(model, "normaliser", None)):
        normaliser = model.normaliser()
    config = {"kind": kind, "model": model.config, **extra}
    return save_pretrained(name, config, model.state_dict(), normaliser, {} if metrics is None else metrics,
                           command, seconds, directory, device=device)


def load_model(name: str, directory=None, *, kind: str | None = None, map_location="cpu"):
    """Load a saved model (sha256-checked) and rebuild it; returns ``(model in eval mode, checkpoint)``.

    The class comes from the checkpoint's ``config["kind"]`` (its registry
    name). Files written before :func:`save_model` existed carry no kind:
    pass ``kind`` (e.g. ``"density_flow"``); their model config is
    ``config["model"]`` if present, else the config itself without ``"extra"``.
    A missing or corrupt file, an unknown kind or a shape mismatch raises;
    nothing falls back to training.
    """
    from .models.base import build_model

    ckpt = load_pretrained(name, directory, map_location=map_location)
    config = ckpt["config"]
    saved_kind = config.get("kind") if isinstance(config, dict) else None
    if saved_kind is not None and kind is not None and saved_kind != kind:
        raise PretrainedError(f"pretrained checkpoint {name!r} holds a {saved_kind!r} model, not {kind!r}")
    kind = saved_kind or kind
    if kind is None:
        raise PretrainedError(f"pretrained checkpoint {name!r} does not record its model kind (written "
                              "before save_model); pass kind=..., e.g. load_model(name, kind='density_flow')")
    if isinstance(config.get("model"), dict):
        model_config = dict(config["model"])
    else:
        model_config = {k: v for k, v in config.items() if k not in ("extra", "kind")}
    try:
        model = build_model(kind, model_config)
    except (KeyError, ValueError) as err:
        raise PretrainedError(f"pretrained checkpoint {name!r}: cannot rebuild the model ({err})") from err
    load_weights(model, ckpt)  # a shape mismatch names the file and the tensors
    model.eval()
    return model, ckpt
