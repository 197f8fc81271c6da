"""Map and parameter normalisation: log10 and per-channel standardisation, parameter scaling.

``normalise_maps(x) = (log10(x + offset) - mean_c) / std_c`` with the statistics of
a training set (:func:`compute_normaliser`); parameters are scaled to [0, 1] over
a range (``"minmax"``) or standardised. The normaliser is a plain dict, safe to
store in a checkpoint.

Example:
    >>> norm = compute_normaliser(np.full((2, 1, 4, 4), 100.0), np.ones((2, 6)), standardise=False)
    >>> float(normalise_maps(np.full((1, 4, 4), 100.0), norm)[0, 0, 0])
    2.0
"""
from __future__ import annotations

import numpy as np
import torch

from .._checks import as_finite_array, check_ndim
from . import files

__all__ = ["compute_normaliser", "normalise_maps", "denormalise_maps", "normalise_params", "denormalise_params"]


def _maps_to_log(x, offset=0.0, where="maps"):
    x = np.asarray(x, dtype=np.float64) + offset
    if np.any(x <= 0):
        raise ValueError(f"{where}: log10=True needs positive pixels, found {int(np.sum(x <= 0))} "
                         f"pixel(s) <= 0 (after adding log10_offset={offset}); pass "
                         f"log10_offset > 0 or log10=False")
    return np.log10(x)


def compute_normaliser(maps, params, indices=None, *, log10: bool = True,
                       log10_offset: float = 0.0, standardise: bool = True,
                       param_norm: str | None = "minmax", param_range=None) -> dict:
    """Per-channel map statistics and parameter scaling of a training set, as a plain dict.

    The maps are (optionally) turned into ``log10(map + log10_offset)`` and
    their per-channel mean and std are computed over ``indices`` (the training
    set), streaming in chunks so a memmap is never read whole. Parameters are
    scaled to [0, 1] (``param_norm="minmax"``, from the training min/max or
    from ``param_range=(low, high)``, e.g. the prior), standardised
    (``"standard"``) or left alone (``None``); a constant parameter (the CV set)
    maps to 0. The dict holds only floats, lists and strings: store it in a
    checkpoint and reuse it with :func:`normalise_maps` / :func:`normalise_params`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> maps = rng.lognormal(size=(30, 2, 8, 8))
        >>> params = rng.uniform(0.1, 0.9, size=(30, 6))
        >>> norm = compute_normaliser(maps, params)
        >>> z = normalise_maps(maps, norm)
        >>> np.allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-6), np.allclose(z.std(axis=(0, 2, 3)), 1)
        (True, True)
    """
    if not hasattr(maps, "shape"):
        maps = np.asarray(maps)
    if len(maps.shape) != 4:
        raise ValueError(f"maps: expected a (N, C, H, W) array (use maps[:, None] for a single "
                         f"field), got shape {tuple(maps.shape)}")
    params = as_finite_array(params, "params")
    check_ndim(params, "params", 2, "a (N, n_params) array")
    n, c = maps.shape[:2]
    if len(params) != n:
        raise ValueError(f"params: expected {n} rows (one per map), got {len(params)}")
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        raise ValueError("indices: expected at least one training map")
    offset = float(as_finite_array(log10_offset, "log10_offset"))

    norm = {"version": 1, "log10": bool(log10), "log10_offset": offset,
            "standardise": bool(standardise), "n_channels": int(c),
            "mean": [0.0] * c, "std": [1.0] * c}
    if standardise:
        count, mean, m2 = 0, np.zeros(c), np.zeros(c)
        per_map = int(np.prod(maps.shape[1:])) * 8
        step = files.chunk_len(per_map)
        for a in range(0, len(idx), step):
            sel = idx[a:a + step]
            x = np.asarray(maps[sel], dtype=np.float64)
            if not np.all(np.isfinite(x)):
                raise ValueError("maps: expected finite values, found NaN/inf in the training maps")
            if log10:
                x = _maps_to_log(x, offset)
            xb = x.transpose(1, 0, 2, 3).reshape(c, -1)
            nb = xb.shape[1]
            mb = xb.mean(axis=1)
            m2b = ((xb - mb[:, None]) ** 2).sum(axis=1)
            delta = mb - mean
            tot = count + nb
            mean = mean + delta * nb / tot
            m2 = m2 + m2b + delta**2 * count * nb / tot
            count = tot
        std = np.sqrt(m2 / count)
        if np.any(std == 0):
            raise ValueError(f"maps: channel(s) {np.nonzero(std == 0)[0].tolist()} are constant "
                             f"on the training set; cannot standardise (pass standardise=False)")
        norm["mean"], norm["std"] = mean.tolist(), std.tolist()

    p = params[idx]
    norm["param_norm"] = param_norm
    if param_norm is None:
        shift, scale = np.zeros(p.shape[1]), np.ones(p.shape[1])
    elif param_norm == "minmax":
        if param_range is not None:
            low, high = (as_finite_array(b, "param_range") * np.ones(p.shape[1]) for b in param_range)
        else:
            low, high = p.min(axis=0), p.max(axis=0)
        shift, scale = low, high - low
    elif param_norm == "standard":
        shift, scale = p.mean(axis=0), p.std(axis=0)
    else:
        raise ValueError(f"param_norm: expected 'minmax', 'standard' or None, got {param_norm!r}")
    scale = np.where(scale > 0, scale, 1.0)
    norm["param_shift"], norm["param_scale"] = shift.tolist(), scale.tolist()
    return norm


def _like(x, values):
    """``values`` as an array broadcastable against x (numpy or torch)."""
    if torch.is_tensor(x):
        return torch.as_tensor(values, dtype=x.dtype if x.is_floating_point() else torch.float32,
                               device=x.device)
    return np.asarray(values, dtype=np.float64)


def _channel_view(values, ndim):
    """Reshape a per-channel vector to broadcast over (..., C, H, W)."""
    return values.reshape((-1, 1, 1)) if ndim >= 3 else values


def normalise_maps(x, normaliser: dict):
    """Apply a normaliser to maps ``(..., C, H, W)``: log10 (if set), then ``(x - mean) / std``.

    Works on numpy arrays (returns float32) and torch tensors.

    Example:
        >>> norm = {"log10": True, "log10_offset": 0.0, "mean": [1.0], "std": [2.0]}
        >>> normalise_maps(np.full((1, 2, 2), 1000.0), norm)[0, 0, 0].item()
        1.0
    """
    mean = _channel_view(_like(x, normaliser["mean"]), np.ndim(x))
    std = _channel_view(_like(x, normaliser["std"]), np.ndim(x))
    if torch.is_tensor(x):
        x = x.float() if not x.is_floating_point() else x
        if normaliser["log10"]:
            x = x + normaliser.get("log10_offset", 0.0)
            if torch.any(x <= 0):
                raise ValueError("x: log10 normaliser needs positive pixels")
            x = torch.log10(x)
        return (x - mean) / std
    x = np.asarray(x, dtype=np.float64)
    if normaliser["log10"]:
        x = _maps_to_log(x, normaliser.get("log10_offset", 0.0), where="x")
    return ((x - mean) / std).astype(np.float32)


def denormalise_maps(z, normaliser: dict):
    """Invert :func:`normalise_maps`: back to physical maps (e.g. for model samples).

    Example:
        >>> norm = {"log10": True, "log10_offset": 0.0, "mean": [1.0], "std": [2.0]}
        >>> float(denormalise_maps(np.ones((1, 1, 1)), norm)[0, 0, 0])
        1000.0
    """
    mean = _channel_view(_like(z, normaliser["mean"]), np.ndim(z))
    std = _channel_view(_like(z, normaliser["std"]), np.ndim(z))
    x = z * std + mean if torch.is_tensor(z) else np.asarray(z, dtype=np.float64) * std + mean
    if normaliser["log10"]:
        x = (10.0 ** x) - normaliser.get("log10_offset", 0.0)
    return x if torch.is_tensor(x) else x.astype(np.float32)


def _param_affine(x, normaliser: dict, name: str):
    """(x as an array or tensor, shift, scale) for the parameter normaliser, checking the last axis."""
    if not torch.is_tensor(x):
        x = np.asarray(x, dtype=np.float64)
    n = len(normaliser["param_shift"])
    if x.ndim == 0 or x.shape[-1] != n:
        raise ValueError(f"{name}: expected {n} parameters in the last axis, got shape {tuple(x.shape)}")
    return x, _like(x, normaliser["param_shift"]), _like(x, normaliser["param_scale"])


def normalise_params(theta, normaliser: dict):
    """Scale physical parameters ``(..., P)`` with a normaliser: ``(theta - shift) / scale``.

    Example:
        >>> norm = {"param_shift": [0.1, 0.6], "param_scale": [0.4, 0.4]}
        >>> normalise_params(np.array([0.3, 0.8]), norm)
        array([0.5, 0.5])
    """
    theta, shift, scale = _param_affine(theta, normaliser, "theta")
    return (theta - shift) / scale


def denormalise_params(u, normaliser: dict):
    """Invert :func:`normalise_params`: back to physical units (e.g. posterior samples).

    Example:
        >>> norm = {"param_shift": [0.1, 0.6], "param_scale": [0.4, 0.4]}
        >>> denormalise_params(np.array([0.5, 0.5]), norm)
        array([0.3, 0.8])
    """
    u, shift, scale = _param_affine(u, normaliser, "u")
    return u * scale + shift
