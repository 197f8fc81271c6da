"""Input checks shared by every public function: clear ValueErrors that name the argument."""
from __future__ import annotations

import numpy as np


def as_finite_array(x, name: str, dtype=float) -> np.ndarray:
    """Return ``x`` as an array, raising ValueError if it has NaN or inf."""
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected numbers, got {type(x).__name__}") from err
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, found {bad} NaN/inf")
    return arr


def check_in_range(arr, name: str, low: float, high: float) -> None:
    """Raise ValueError unless every value lies in [low, high]."""
    arr = np.asarray(arr)
    if arr.size and (arr.min() < low or arr.max() > high):
        raise ValueError(
            f"{name}: expected values in [{low}, {high}], got range "
            f"[{arr.min():.4g}, {arr.max():.4g}]")


def check_ndim(arr, name: str, ndims, what: str) -> None:
    """Raise ValueError unless ``arr.ndim`` is one of ``ndims``."""
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if arr.ndim not in ndims:
        raise ValueError(f"{name}: expected {what}, got shape {tuple(arr.shape)}")
