"""An HDF5 cache of simulated sets, written atomically and keyed by the settings that made it.

Example:
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> save_cache(os.path.join(tmp.name, "s.h5"), np.ones((2, 1, 4, 4)), np.ones((2, 6)), {"seed": 0})
    >>> read_cache_attrs(os.path.join(tmp.name, "s.h5"))
    {'seed': 0}
    >>> tmp.cleanup()
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from .._checks import as_finite_array, check_ndim
from ..runtime import atomic_path  # temp file named by PID; a killed writer's orphan goes at the next write
from . import files
from .files import CorruptFileError

__all__ = ["save_cache", "load_cache", "read_cache_attrs", "cached"]


_ATTRS_KEY = "cosmonb_attrs"


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"attrs: cannot store a value of type {type(v).__name__} ({v!r}); "
                    f"use numbers, strings, lists or dicts")


def _canonical_attrs(attrs):
    return json.loads(json.dumps(attrs or {}, sort_keys=True, default=_json_default))


def save_cache(path, maps, params, attrs: dict | None = None) -> None:
    """Save a simulated set (``maps (N, ...)``, ``params (N, P)``, ``attrs``) to HDF5, atomically.

    The file is written to a temporary file in the same folder and renamed onto
    ``path`` only when complete, so a killed run never leaves a half-written
    cache; if anything fails (NaN in the maps, a full disk) an existing file at
    ``path`` is untouched. ``attrs`` (numbers, strings, lists) describe how the
    set was made (seed, n_pix, set name...) and are what :func:`cached` compares.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> fname = os.path.join(tmp.name, "lh.h5")
        >>> save_cache(fname, np.zeros((2, 1, 4, 4), np.float32), np.ones((2, 6)), {"seed": 0})
        >>> maps, params, attrs = load_cache(fname, return_attrs=True)
        >>> maps.shape, attrs
        ((2, 1, 4, 4), {'seed': 0})
        >>> tmp.cleanup()
    """
    shape = getattr(maps, "shape", None)
    if shape is None:
        maps = np.asarray(maps)
        shape = maps.shape
    if len(shape) < 2:
        raise ValueError(f"maps: expected an (N, ...) array of maps, got shape {tuple(shape)}")
    params = as_finite_array(params, "params")
    if params.ndim == 1:
        params = params[:, None]
    check_ndim(params, "params", 2, "a (N, n_params) array")
    if len(params) != shape[0]:
        raise ValueError(f"params: expected {shape[0]} rows (one per map), got {len(params)}")
    attrs_json = json.dumps(_canonical_attrs(attrs), sort_keys=True)
    dtype = np.dtype(getattr(maps, "dtype", np.float32))
    if dtype.kind != "f":
        dtype = np.dtype(np.float32)
    step = files.chunk_len(int(np.prod(shape[1:])) * dtype.itemsize)

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["cosmonb_format"] = 1
            f.attrs[_ATTRS_KEY] = attrs_json
            dset = f.create_dataset("maps", shape=tuple(shape), dtype=dtype)
            for a in range(0, shape[0], step):
                block = np.asarray(maps[a:a + step], dtype=dtype)
                if not np.all(np.isfinite(block)):
                    raise ValueError(f"maps: expected finite values, found NaN/inf in maps "
                                     f"{a}..{a + len(block) - 1}")
                dset[a:a + len(block)] = block
            f.create_dataset("params", data=params)
            f.attrs["complete"] = True


def _open_cache(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cache file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CorruptFileError(f"cache file {path} is corrupt or truncated ({err}); delete it "
                               f"and it will be regenerated") from err
    if not f.attrs.get("complete", False) or "maps" not in f or "params" not in f:
        f.close()
        raise CorruptFileError(f"cache file {path} is incomplete (no 'maps'/'params' or not "
                               f"marked complete); delete it and it will be regenerated")
    return f


def read_cache_attrs(path) -> dict:
    """The ``attrs`` a cache file was saved with (without reading the maps).

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> fname = os.path.join(tmp.name, "c.h5")
        >>> save_cache(fname, np.zeros((1, 2, 2)), np.zeros((1, 6)), {"n_pix": 2})
        >>> read_cache_attrs(fname)
        {'n_pix': 2}
        >>> tmp.cleanup()
    """
    with _open_cache(path) as f:
        return json.loads(f.attrs[_ATTRS_KEY])


def load_cache(path, return_attrs: bool = False):
    """Load a cache written by :func:`save_cache`: ``(maps, params)`` or ``(maps, params, attrs)``.

    A truncated or corrupt file raises :class:`CorruptFileError` (an OSError)
    that names the file.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> fname = os.path.join(tmp.name, "c.h5")
        >>> save_cache(fname, np.arange(8.0).reshape(2, 2, 2), np.zeros((2, 6)))
        >>> load_cache(fname)[0][1].tolist()
        [[4.0, 5.0], [6.0, 7.0]]
        >>> tmp.cleanup()
    """
    with _open_cache(path) as f:
        try:
            maps = f["maps"][...]
            params = f["params"][...]
            attrs = json.loads(f.attrs[_ATTRS_KEY])
        except (OSError, KeyError, ValueError) as err:
            raise CorruptFileError(f"cache file {path} is corrupt or truncated ({err}); delete "
                                   f"it and it will be regenerated") from err
    return (maps, params, attrs) if return_attrs else (maps, params)


def cached(path, make_fn: Callable[[], tuple], **attrs):
    """Return the set cached at ``path`` if it was made with the same ``attrs``, else make and save it.

    ``make_fn()`` must return ``(maps, params)``. If the file is missing it is
    made; if its attrs differ, or it is corrupt, a warning says so and it is
    remade and replaced (atomically: if ``make_fn`` raises, the old file stays).
    The result always comes from the file, so the first and later calls return
    identical arrays.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> make = lambda: (np.ones((15, 1, 4, 4), np.float32), np.ones((15, 6)))
        >>> maps, params = cached(os.path.join(tmp.name, "lh.h5"), make, seed=0, n_pix=4)
        >>> maps.shape
        (15, 1, 4, 4)
        >>> tmp.cleanup()
    """
    path = Path(path)
    want = _canonical_attrs(attrs)
    if path.exists():
        try:
            have = read_cache_attrs(path)
            if have == want:
                return load_cache(path)
            diff = {k: (have.get(k), want.get(k)) for k in sorted(set(have) | set(want))
                    if have.get(k) != want.get(k)}
            warnings.warn(f"cache {path} was made with different settings "
                          f"(cached, requested): {diff}; regenerating it", stacklevel=2)
        except CorruptFileError as err:
            warnings.warn(f"{err}; regenerating it", stacklevel=2)
    out = make_fn()
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError("make_fn: expected it to return a (maps, params) pair")
    save_cache(path, out[0], out[1], attrs)
    del out
    return load_cache(path)
