"""Input checks shared by every public function: clear ValueErrors that name the argument."""
from __future__ import annotations

import math
import numbers

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


def check_int(value, name: str, minimum: int) -> int:
    """An integer >= ``minimum`` (bools refused), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_float(value, name: str, positive: bool) -> float:
    """A finite number, > 0 (``positive``) or >= 0, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value}")
    if not positive and value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value}")
    return float(value)


def check_size(n, name: str) -> int:
    """A positive integer (a count or a grid size), else a ValueError naming ``name``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: expected a positive integer, got {n!r}")
    return int(n)


def check_box_size(box_size, name: str = "box_size") -> float:
    """box_size as a float: one finite side length > 0 in Mpc/h."""
    arr = as_finite_array(box_size, name)
    if arr.ndim != 0 or not arr > 0:
        raise ValueError(f"{name}: expected one finite side length > 0 in Mpc/h, got {box_size!r}")
    return float(arr)
