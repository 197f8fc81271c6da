"""Real CAMELS data: CMD maps, Subfind catalogs, splits, torch Datasets and an HDF5 cache.

Everything that touches a file lives here; models only ever see tensors.

* :func:`load_cmd` reads the CAMELS Multifield Dataset (CMD) 2D maps
  (``Maps_{field}_{suite}_{set}_z=0.00.npy``) and their parameter table
  (``params_{set}_{suite}.txt``). Maps always come back as ``(N, C, H, W)``,
  one channel per field; parameters come back repeated per map, ``(N, 6)``,
  since map ``i`` belongs to simulation ``i // 15``.
* :func:`load_subfind` / :func:`write_subfind` read and write Subfind HDF5
  group catalogs (masses in Msun/h, positions in Mpc/h on the Python side).
* :func:`split_by_simulation` splits map indices into train / validation /
  test without ever splitting one simulation across sets.
* :class:`CMDDataset` turns maps + parameters into ``(x, theta)`` float32
  tensors (log10, per-channel standardisation, parameter scaling, the 8
  symmetries of the square as augmentation). Its ``.normaliser`` is a plain
  dict, safe to store in a checkpoint.
* :func:`save_cache` / :func:`load_cache` / :func:`cached` keep simulated sets
  in HDF5, written atomically.

Example:
    >>> train, val, test = split_by_simulation(150, seed=0)
    >>> len(train), len(val), len(test)
    (120, 15, 15)
"""
from __future__ import annotations

import builtins
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .._checks import as_finite_array, check_int, check_ndim
from ..constants import CMD_FIELDS, MAPS_PER_SIM, PARAM_NAMES, PRIOR_HIGH, PRIOR_LOW
from ..runtime import atomic_path  # temp file named by PID; a killed writer's orphan goes at the next write

__all__ = [
    "PARAM_NAMES", "CMD_FIELDS", "MAPS_PER_SIM", "SNAPSHOT_REDSHIFTS",
    "CorruptFileError", "CMDMaps", "load_cmd", "read_params", "COSMOLOGY_PRIOR",
    "cmd_map_filename", "cmd_params_filename",
    "load_subfind", "write_subfind", "snapshot_path",
    "split_by_simulation", "sim_indices",
    "compute_normaliser", "normalise_maps", "denormalise_maps",
    "normalise_params", "denormalise_params", "CMDDataset",
    "save_cache", "load_cache", "read_cache_attrs", "cached",
]

# PARAM_NAMES, CMD_FIELDS and MAPS_PER_SIM come from cosmonb.constants (re-exported here).

#: Redshifts of the Subfind snapshots used by the galaxy notebooks: the 34-snapshot numbering of
#: the original IllustrisTNG/SIMBA releases (030-033), and 090, z = 0 in the uniform 91-snapshot
#: numbering of the 2024 reorganisation (camels.readthedocs.io, "Simulations" / "SUBFIND
#: catalogs": "where 33 used to be the z=0 snapshot, now it is 90 uniformly for all suites").
#: The new numbers of z = 0.05-0.15 are not listed there, so they are not guessed here.
SNAPSHOT_REDSHIFTS = {30: 0.15, 31: 0.10, 32: 0.05, 33: 0.00, 90: 0.00}
#: the same z = 0 catalog under its old and its new number
SNAPSHOT_ALIASES = {33: 90, 90: 33}

#: Subfind stores masses in 1e10 Msun/h and lengths in kpc/h.
SUBFIND_MASS_UNIT = 1e10
KPC_PER_MPC = 1e3

_CMD_HINT = (
    "CAMELS distributes these files in the CAMELS Multifield Dataset (CMD, "
    "https://camels-multifield-dataset.readthedocs.io): download them from the "
    "CMD/2D_maps/data/ folder of the CAMELS data release (e.g. via Globus or the "
    "Flatiron binder) and pass that folder as `root`, or use the built-in "
    "simulator (cosmonb.sims) instead.")

SUBFIND_HINT = (
    "CAMELS distributes Subfind catalogs under FOF_Subfind/<suite>/<set>/<set>_<n>/ "
    "of the CAMELS data release (https://camels.readthedocs.io, e.g. via Globus "
    "or the Flatiron binder).")

# Bytes of map data read at once by load_cmd and the normaliser (~64 MB).
_CHUNK_BYTES = 64 * 2**20


class CorruptFileError(OSError):
    """A cache, catalog or map file exists but cannot be read (truncated or not HDF5/npy).

    Example:
        >>> issubclass(CorruptFileError, OSError)
        True
    """


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------


def _redshift_tag(redshift):
    if isinstance(redshift, str):
        if not re.fullmatch(r"\d+\.\d\d", redshift):
            raise ValueError(f"redshift: expected a string like '0.00' or a number, got {redshift!r}")
        return redshift
    try:
        z = float(redshift)
    except (TypeError, ValueError) as err:
        raise ValueError(f"redshift: expected a string like '0.00' or a number, got {redshift!r}") from err
    if not np.isfinite(z) or z < 0:
        raise ValueError(f"redshift: expected a finite number >= 0, got {redshift!r}")
    return f"{z:.2f}"


def _block_mean(x, factor):
    """Block-average the last two axes of ``x`` by ``factor`` (float64 sums, float32 out)."""
    if factor == 1:
        return np.asarray(x, dtype=np.float32)
    *lead, h, w = x.shape
    y = x.reshape(*lead, h // factor, factor, w // factor, factor)
    return y.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


def _chunk_len(bytes_per_item):
    return max(1, int(_CHUNK_BYTES // max(1, bytes_per_item)))


# ----------------------------------------------------------------------------
# CMD maps
# ----------------------------------------------------------------------------

def cmd_map_filename(field: str, suite: str = "IllustrisTNG", set: str = "LH",
                     redshift="0.00") -> str:
    """The CMD file name of one field, e.g. ``Maps_HI_IllustrisTNG_LH_z=0.00.npy``.

    Example:
        >>> cmd_map_filename("HI")
        'Maps_HI_IllustrisTNG_LH_z=0.00.npy'
    """
    return f"Maps_{field}_{suite}_{set}_z={_redshift_tag(redshift)}.npy"


def cmd_params_filename(suite: str = "IllustrisTNG", set: str = "LH") -> str:
    """The CMD parameter table name, e.g. ``params_LH_IllustrisTNG.txt``.

    Example:
        >>> cmd_params_filename("SIMBA", "CV")
        'params_CV_SIMBA.txt'
    """
    return f"params_{set}_{suite}.txt"


def _is_number(token):
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_params(path, n_params: int = 6) -> np.ndarray:
    """Read a CAMELS parameter table: one row per simulation, the first 6 numeric columns.

    Copies of the table differ: some start with a header line (``# Omega_m ...``
    or bare text), some carry a simulation-name column (``LH_0``) or an extra
    seed column after the six parameters. Comment lines and leading text lines
    are skipped, non-numeric tokens in a row are ignored, and the first
    ``n_params`` numbers of each row are kept (CAMELS order, see PARAM_NAMES).

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> fname = os.path.join(tmp.name, "params_LH_IllustrisTNG.txt")
        >>> _ = open(fname, "w").write("# Omega_m sigma_8 A_SN1 A_AGN1 A_SN2 A_AGN2 seed\\n"
        ...                            "0.3 0.8 1 1 1 1 1234\\n")
        >>> read_params(fname)
        array([[0.3, 0.8, 1. , 1. , 1. , 1. ]])
        >>> tmp.cleanup()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: expected '{path.name}' in {path.parent}. {_CMD_HINT}")
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line or line.startswith(("#", "%", "//")):
                continue
            tokens = [t for t in re.split(r"[\s,;]+", line) if t]
            numbers = [float(t) for t in tokens if _is_number(t)]
            if len(numbers) < n_params:
                if not rows:  # a text header before the data
                    continue
                raise ValueError(
                    f"params file {path}: line {lineno} has {len(numbers)} numeric columns, "
                    f"expected at least {n_params} ({', '.join(PARAM_NAMES[:n_params])})")
            rows.append(numbers[:n_params])
    if not rows:
        raise ValueError(f"params file {path}: no rows with {n_params} numeric columns found")
    params = np.array(rows, dtype=np.float64)
    as_finite_array(params, f"params file {path}")
    _check_cosmology_columns(params, path)
    return params


#: Omega_m and sigma_8 of every CAMELS set (LH, 1P, CV, EX) lie in the LH prior. The two
#: ranges do not overlap, so a table with the two columns swapped fails the check.
COSMOLOGY_PRIOR = {name: (float(lo), float(hi)) for name, lo, hi in
                   zip(PARAM_NAMES[:2], PRIOR_LOW[:2], PRIOR_HIGH[:2])}


def _check_cosmology_columns(params, path):
    """Refuse a table whose Omega_m / sigma_8 columns lie outside the LH prior (e.g. swapped)."""
    bad = []
    for j, name in enumerate(PARAM_NAMES[:min(2, params.shape[1])]):
        low, high = COSMOLOGY_PRIOR[name]
        col = params[:, j]
        outside = (col < low - 1e-6) | (col > high + 1e-6)
        if outside.any():
            row = int(np.argmax(outside))
            bad.append(f"column {j} ({name}) has {int(outside.sum())} of {len(col)} values outside "
                       f"the CAMELS prior [{low}, {high}], e.g. {col[row]:.6g} in row {row}")
    if not bad:
        return
    hint = ""
    if params.shape[1] >= 2:
        (om_lo, om_hi), (s8_lo, s8_hi) = COSMOLOGY_PRIOR["Omega_m"], COSMOLOGY_PRIOR["sigma_8"]
        om, s8 = params[:, 0], params[:, 1]
        swapped = ((om >= s8_lo - 1e-6) & (om <= s8_hi + 1e-6)
                   & (s8 >= om_lo - 1e-6) & (s8 <= om_hi + 1e-6))
        if swapped.mean() > 0.5:
            hint = " The first two columns look swapped: sigma_8 first, then Omega_m."
    raise ValueError(f"params file {path}: {'; '.join(bad)}. Expected the columns in CAMELS order "
                     f"{PARAM_NAMES}.{hint}")


def _open_npy(path):
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise CorruptFileError(f"map file {path} is empty (0 bytes), not a .npy array; "
                                   f"the download may have failed. {_CMD_HINT}")
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        if isinstance(err, CorruptFileError):
            raise
        raise CorruptFileError(f"cannot read map file {path} as a .npy array "
                               f"({type(err).__name__}: {err}); the download may be truncated. "
                               f"{_CMD_HINT}") from err


class CMDMaps:
    """Lazy ``(N, C, H, W)`` float32 view of memory-mapped CMD files (from ``load_cmd(lazy=True)``).

    Nothing is read until indexed: ``maps[i]`` reads map ``i`` of every field
    (``(C, H, W)``), ``maps[a:b]`` or ``maps[[i, j]]`` read only those maps
    (``(n, C, H, W)``); block-averaging and the NaN check are applied to what
    is read. ``np.asarray(maps)`` reads everything.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> np.save(os.path.join(tmp.name, "Maps_HI_IllustrisTNG_LH_z=0.00.npy"),
        ...         np.ones((15, 8, 8), np.float32))
        >>> np.savetxt(os.path.join(tmp.name, "params_LH_IllustrisTNG.txt"), [[0.3, 0.8, 1, 1, 1, 1]])
        >>> maps, params = load_cmd(tmp.name, "HI", lazy=True, n_pix=4)
        >>> maps.shape, maps[3].shape
        ((15, 1, 4, 4), (1, 4, 4))
        >>> del maps; tmp.cleanup()
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, arrays, files, rows, factor=1):
        self._arrays = list(arrays)
        self.files = [str(f) for f in files]
        self.rows = np.asarray(rows, dtype=np.int64)
        self.factor = int(factor)
        _, h, w = self._arrays[0].shape
        self.shape = (len(self.rows), len(self._arrays), h // self.factor, w // self.factor)

    def __len__(self):
        return self.shape[0]

    def __getstate__(self):
        # pickle (DataLoader workers under spawn) by file name, never by content
        state = self.__dict__.copy()
        del state["_arrays"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._arrays = [_open_npy(f) for f in self.files]

    def __repr__(self):
        return f"CMDMaps(shape={self.shape}, files={[Path(f).name for f in self.files]})"

    def _read(self, idx):
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")  # read the file forwards
        sorted_rows = rows[order]
        out = np.empty((len(rows),) + self.shape[1:], dtype=np.float32)
        for c, (arr, fname) in enumerate(zip(self._arrays, self.files)):
            block = np.asarray(arr[sorted_rows])
            finite = np.isfinite(block)
            if not finite.all():
                bad = sorted_rows[np.nonzero(~finite.reshape(len(block), -1).all(axis=1))[0]]
                raise ValueError(
                    f"map file {fname}: NaN/inf pixels in map(s) {bad[:10].tolist()}"
                    f"{' ...' if len(bad) > 10 else ''} (simulation(s) "
                    f"{sorted(set((bad // MAPS_PER_SIM).tolist()))[:10]})")
            out[order, c] = _block_mean(block, self.factor)
        return out

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            idx = np.arange(len(self))[key]
            out = self._read(np.array([idx]))[0]
        else:
            idx = np.arange(len(self))[key]
            out = self._read(np.atleast_1d(idx))
            if rest:
                rest = (slice(None),) + rest
        return out[rest] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, dtype=np.float32)
        step = _chunk_len(int(np.prod(self._arrays[0].shape[1:])) * 4 * len(self._arrays))
        for a in range(0, len(self), step):
            out[a:a + step] = self[a:a + step]
        return out if dtype is None else out.astype(dtype)


def sim_indices(sims, maps_per_sim: int = MAPS_PER_SIM) -> np.ndarray:
    """Map indices of the given simulations: sim ``s`` owns maps ``15 s ... 15 s + 14``.

    Example:
        >>> sim_indices([0, 2], maps_per_sim=3)
        array([0, 1, 2, 6, 7, 8])
    """
    sims = np.atleast_1d(np.asarray(sims))
    if sims.dtype.kind not in "iu":
        raise ValueError(f"sims: expected integer simulation indices, got dtype {sims.dtype}")
    return (sims[:, None] * maps_per_sim + np.arange(maps_per_sim)).ravel()


def load_cmd(root, fields, suite: str = "IllustrisTNG", set: str = "LH",
             n_pix: int | None = None, redshift="0.00", sims=None, *,
             lazy: bool = False, params_file=None, progress: bool | None = None):
    """Load CMD 2D maps and their parameters: ``(maps (N, C, H, W) float32, params (N, 6) float64)``.

    ``fields`` is one field name or a list of them (see CMD_FIELDS); maps always
    come back with a channel axis, ``C = len(fields)`` (1 for a single name), so
    every model sees the same layout. Map ``i`` of the file belongs to simulation
    ``i // 15``; ``params`` holds that simulation's row for every map.

    The ``.npy`` files are memory-mapped: only the maps asked for are read.

    Args:
        root: folder holding ``Maps_{field}_{suite}_{set}_z=0.00.npy`` and
            ``params_{set}_{suite}.txt``.
        fields: a name or list of names from CMD_FIELDS (``B``: IllustrisTNG only).
        suite, set: e.g. ``"IllustrisTNG"`` / ``"SIMBA"`` / ``"Astrid"``; ``"LH"``, ``"CV"``, ``"1P"``, ``"EX"``.
        n_pix: output size; the maps are block-averaged (e.g. 256 -> 64 by 4x4
            means), which must divide the stored size. ``None`` keeps the stored size.
        redshift: ``"0.00"`` (CMD 2D maps are z = 0) or a number.
        sims: simulation indices to read (int or sequence); ``None`` reads all.
            The maps come back grouped by simulation in the order given.
        lazy: return a :class:`CMDMaps` view instead of reading the maps now
            (for sets that do not fit in memory; ``CMDDataset`` accepts it).
        params_file: path of the parameter table if it is not in ``root``.
        progress: show a progress bar (default: when reading more than ~256 MB).

    Maps are read in chunks of ~64 MB; each chunk is checked for NaN/inf.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for f in ("Mcdm", "HI"):
        ...     np.save(os.path.join(tmp.name, f"Maps_{f}_IllustrisTNG_LH_z=0.00.npy"),
        ...             np.ones((30, 8, 8), np.float32))
        >>> np.savetxt(os.path.join(tmp.name, "params_LH_IllustrisTNG.txt"),
        ...            [[0.3, 0.8, 1, 1, 1, 1], [0.2, 0.7, 1, 1, 1, 1]])
        >>> maps, params = load_cmd(tmp.name, ["Mcdm", "HI"], n_pix=4)
        >>> maps.shape, params.shape, params[15, 0].item()
        ((30, 2, 4, 4), (30, 6), 0.2)
        >>> load_cmd(tmp.name, "HI", sims=[1])[0].shape
        (15, 1, 8, 8)
        >>> tmp.cleanup()
    """
    # ---- arguments
    names = [fields] if isinstance(fields, str) else list(fields)
    if not names:
        raise ValueError("fields: expected a field name or a non-empty list of names")
    for f in names:
        if f not in CMD_FIELDS:
            raise ValueError(f"fields: unknown CMD field {f!r}; expected one of {CMD_FIELDS}")
    if len(builtins.set(names)) != len(names):
        raise ValueError(f"fields: each field may appear once, got {names}")
    if "B" in names and suite != "IllustrisTNG":
        raise ValueError(f"fields: the magnetic field map 'B' exists only for suite "
                         f"'IllustrisTNG', not {suite!r}")
    if not isinstance(suite, str) or not isinstance(set, str):
        raise ValueError(f"suite, set: expected strings such as 'IllustrisTNG', 'LH'; "
                         f"got {suite!r}, {set!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: folder {root} does not exist. {_CMD_HINT}")

    # ---- files
    files = [root / cmd_map_filename(f, suite, set, redshift) for f in names]
    for f in files:
        if not f.is_file():
            present = sorted(p.name for p in root.glob("Maps_*.npy"))[:8]
            found = f" Map files present there: {present}." if present else ""
            raise FileNotFoundError(f"CMD map file not found: expected '{f.name}' in {root}."
                                    f"{found} {_CMD_HINT}")
    pfile = Path(params_file) if params_file is not None else root / cmd_params_filename(suite, set)
    if not pfile.is_file():
        raise FileNotFoundError(f"CMD params file not found: expected '{pfile.name}' in "
                                f"{pfile.parent}. {_CMD_HINT}")
    table = read_params(pfile)

    arrays = [_open_npy(f) for f in files]
    shape = arrays[0].shape
    for f, a in zip(files, arrays):
        if a.ndim != 3:
            raise ValueError(f"map file {f.name}: expected shape (n_maps, H, W), got {a.shape}")
        if a.shape != shape:
            raise ValueError(f"fields: map files differ in shape: {files[0].name} is {shape}, "
                             f"{f.name} is {a.shape}; fields stack as channels only if equal")
    n_maps, h, w = shape
    if n_maps % MAPS_PER_SIM:
        raise ValueError(f"map file {files[0].name}: {n_maps} maps is not a multiple of "
                         f"{MAPS_PER_SIM} maps per simulation")
    if n_maps != MAPS_PER_SIM * len(table):
        raise ValueError(f"map file {files[0].name} holds {n_maps} maps = {n_maps // MAPS_PER_SIM} "
                         f"simulations, but {pfile.name} has {len(table)} rows; expected "
                         f"{MAPS_PER_SIM} maps per parameter row")

    if n_pix is None:
        factor = 1
    else:
        n_pix = check_int(n_pix, "n_pix", 1)
        if h != w or h % n_pix:
            raise ValueError(f"n_pix: expected a divisor of the stored map size {h}x{w}, got {n_pix}")
        factor = h // n_pix

    n_sims = len(table)
    if sims is None:
        sim_ids = np.arange(n_sims)
    else:
        sim_ids = np.atleast_1d(np.asarray(sims))
        if sim_ids.dtype.kind not in "iu" or sim_ids.ndim != 1:
            raise ValueError(f"sims: expected simulation indices (integers), got {sims!r}")
        if sim_ids.size and (sim_ids.min() < 0 or sim_ids.max() >= n_sims):
            raise ValueError(f"sims: expected indices in [0, {n_sims - 1}], got {sim_ids.tolist()[:10]}")
    rows = sim_indices(sim_ids)
    params = np.repeat(table[sim_ids], MAPS_PER_SIM, axis=0)

    maps = CMDMaps(arrays, files, rows, factor)
    if lazy:
        return maps, params

    out = np.empty(maps.shape, dtype=np.float32)
    step = _chunk_len(h * w * 4 * len(arrays))
    starts = range(0, len(rows), step)
    if progress is None:
        progress = len(rows) * h * w * 4 * len(arrays) > 4 * _CHUNK_BYTES
    for a in tqdm(starts, desc="load_cmd", unit="chunk", disable=not progress):
        out[a:a + step] = maps[a:a + step]
    return out, params


# ----------------------------------------------------------------------------
# Subfind catalogs
# ----------------------------------------------------------------------------

def snapshot_path(root, snap: int) -> Path:
    """Path of the Subfind catalog of snapshot ``snap`` in one simulation folder.

    Looks for the current name ``groups_0XX.hdf5``, then the old
    ``fof_subhalo_tab_0XX.hdf5``; for z = 0 under either number, 033 (old) or 090
    (the 2024 renumbering, SNAPSHOT_ALIASES). SNAPSHOT_REDSHIFTS gives the redshifts.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = open(os.path.join(tmp.name, "fof_subhalo_tab_033.hdf5"), "w")
        >>> snapshot_path(tmp.name, 33).name
        'fof_subhalo_tab_033.hdf5'
        >>> tmp.cleanup()
    """
    snap = check_int(snap, "snap", 0)
    root = Path(root)
    names = [f"groups_{snap:03d}.hdf5", f"fof_subhalo_tab_{snap:03d}.hdf5"]
    if snap in SNAPSHOT_ALIASES:
        alias = SNAPSHOT_ALIASES[snap]
        names += [f"groups_{alias:03d}.hdf5", f"fof_subhalo_tab_{alias:03d}.hdf5"]
    for name in names:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"Subfind catalog of snapshot {snap} not found: expected "
                            f"'{names[0]}' or '{names[1]}' in {root}. {SUBFIND_HINT}")


def _header_count(f, *keys):
    """The first of ``keys`` found in the Header attributes, as an int; None if none is."""
    header = f.get("Header")
    if header is None:
        return None
    for k in keys:
        if k in header.attrs:
            return int(np.asarray(header.attrs[k]).ravel()[0])
    return None


def load_subfind(path, galaxies_only: bool = False) -> dict:
    """Read a Subfind HDF5 catalog into physical units (Msun/h, Mpc/h).

    Returns a dict of arrays, one entry per subhalo unless noted:

    * ``stellar_mass``: ``SubhaloMassType[:, 4]`` in Msun/h
    * ``total_mass``: ``SubhaloMass`` in Msun/h
    * ``mass_type``: ``SubhaloMassType`` (N, 6) in Msun/h
    * ``position``: ``SubhaloPos`` converted from kpc/h to **Mpc/h**, (N, 3)
    * ``group_mass``, ``group_m200c``: ``Group/GroupMass`` and
      ``Group/Group_M_Crit200`` in Msun/h (one per FoF group)
    * ``redshift``, ``box_size`` (Mpc/h): from the header when present, else NaN
    * ``n_dropped``: subhalos removed by ``galaxies_only`` (0 otherwise)

    ``galaxies_only=True`` keeps subhalos with stellar mass > 0 (the CAMELS
    definition of a galaxy); how many were dropped is in ``n_dropped``.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> fname = os.path.join(tmp.name, "groups_033.hdf5")
        >>> write_subfind(fname, stellar_mass=[1e9, 0.0], total_mass=[1e12, 1e10],
        ...               position=[[1, 2, 3], [4, 5, 6]])
        >>> cat = load_subfind(fname, galaxies_only=True)
        >>> cat["stellar_mass"].tolist(), cat["position"][0].tolist(), cat["n_dropped"]
        ([1000000000.0], [1.0, 2.0, 3.0], 1)
        >>> tmp.cleanup()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Subfind catalog not found: expected '{path.name}' in "
                                f"{path.parent}. {SUBFIND_HINT}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CorruptFileError(f"cannot read Subfind catalog {path} as HDF5 ({err}); "
                               f"the file may be truncated") from err

    def read(name, ncols, count):
        if name in f:
            try:
                arr = np.asarray(f[name][...], dtype=np.float64)
            except OSError as err:
                raise CorruptFileError(f"Subfind catalog {path}: cannot read {name} ({err})") from err
        elif count == 0:  # Subfind omits the datasets of empty tables
            arr = np.zeros((0, ncols) if ncols else (0,))
        else:
            raise ValueError(f"Subfind catalog {path}: missing dataset '{name}' "
                             f"(expected the Subfind layout Subhalo/..., Group/...)")
        want = (arr.shape[0], ncols) if ncols else (arr.shape[0],)
        if arr.shape != want:
            raise ValueError(f"Subfind catalog {path}: {name} has shape {arr.shape}, expected "
                             f"{'(N, %d)' % ncols if ncols else '(N,)'}")
        return arr

    with f:
        # a catalog split over files counts this file's part in *_ThisFile, the whole in *_Total
        n_sub = _header_count(f, "Nsubhalos_ThisFile", "Nsubgroups_ThisFile",
                              "Nsubhalos_Total", "Nsubgroups_Total")
        n_grp = _header_count(f, "Ngroups_ThisFile", "Ngroups_Total")
        mass = read("Subhalo/SubhaloMass", 0, n_sub)
        mtype = read("Subhalo/SubhaloMassType", 6, n_sub)
        pos = read("Subhalo/SubhaloPos", 3, n_sub)
        gmass = read("Group/GroupMass", 0, n_grp)
        gm200 = read("Group/Group_M_Crit200", 0, n_grp)
        header = f["Header"].attrs if "Header" in f else {}
        redshift = float(np.asarray(header["Redshift"]).ravel()[0]) if "Redshift" in header else np.nan
        box = (float(np.asarray(header["BoxSize"]).ravel()[0]) / KPC_PER_MPC
               if "BoxSize" in header else np.nan)
    if not (len(mass) == len(mtype) == len(pos)):
        raise ValueError(f"Subfind catalog {path}: SubhaloMass, SubhaloMassType and SubhaloPos "
                         f"have different lengths {len(mass)}, {len(mtype)}, {len(pos)}")
    if len(gmass) != len(gm200):
        raise ValueError(f"Subfind catalog {path}: Group/GroupMass and Group/Group_M_Crit200 have "
                         f"different lengths {len(gmass)}, {len(gm200)}")
    for what, count, n in (("subhalos", n_sub, len(mass)), ("groups", n_grp, len(gmass))):
        if count is not None and count != n:
            raise ValueError(f"Subfind catalog {path}: the Header counts {count} {what}, but the "
                             f"{'Subhalo' if what == 'subhalos' else 'Group'}/ datasets hold {n}; "
                             "the file is inconsistent (truncated or mixed from two catalogs)")
    for name, arr in (("SubhaloMass", mass), ("SubhaloMassType", mtype), ("SubhaloPos", pos),
                      ("GroupMass", gmass), ("Group_M_Crit200", gm200)):
        as_finite_array(arr, f"Subfind catalog {path}: {name}")
    for name, arr in (("SubhaloMass", mass), ("SubhaloMassType", mtype),
                      ("GroupMass", gmass), ("Group_M_Crit200", gm200)):
        neg = int(np.count_nonzero(arr < 0))
        if neg:
            raise ValueError(f"Subfind catalog {path}: {name} has {neg} negative masses "
                             f"(min {arr.min():.4g} x 1e10 Msun/h); masses must be >= 0")

    out = {
        "stellar_mass": mtype[:, 4] * SUBFIND_MASS_UNIT,
        "total_mass": mass * SUBFIND_MASS_UNIT,
        "mass_type": mtype * SUBFIND_MASS_UNIT,
        "position": pos / KPC_PER_MPC,
    }
    n_dropped = 0
    if galaxies_only:
        keep = out["stellar_mass"] > 0
        n_dropped = int(np.count_nonzero(~keep))
        out = {k: v[keep] for k, v in out.items()}
    out["group_mass"] = gmass * SUBFIND_MASS_UNIT
    out["group_m200c"] = gm200 * SUBFIND_MASS_UNIT
    out["redshift"] = redshift
    out["box_size"] = box
    out["n_dropped"] = n_dropped
    return out


def write_subfind(path, stellar_mass, total_mass, position, group_mass=None,
                  group_m200c=None, *, redshift: float | None = None,
                  box_size: float = 25.0, mass_type=None, attrs: dict | None = None,
                  dtype=np.float64) -> None:
    """Write a catalog in the Subfind HDF5 layout that :func:`load_subfind` (and CAMELS code) reads.

    Inputs are in the units load_subfind returns: masses in Msun/h, positions
    and ``box_size`` in Mpc/h; they are stored as Subfind does (1e10 Msun/h,
    kpc/h). Without ``mass_type`` the (N, 6) ``SubhaloMassType`` gets the stellar
    mass in column 4 and the rest of the total mass in column 1 (dark matter),
    so it sums to ``SubhaloMass``. ``attrs`` go to the ``Header`` (e.g. the
    simulator's seed and parameters). The file is written atomically.
    ``dtype=np.float32`` stores what CAMELS stores; the float64 default makes a
    write/read round trip exact.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> fname = os.path.join(tmp.name, "groups_033.hdf5")
        >>> write_subfind(fname, [1e9], [1e12], [[1.0, 2.0, 3.0]], group_mass=[2e12], redshift=0.0)
        >>> h5py.File(fname, "r")["Subhalo/SubhaloPos"][0].tolist()
        [1000.0, 2000.0, 3000.0]
        >>> tmp.cleanup()
    """
    ms = as_finite_array(stellar_mass, "stellar_mass")
    mt = as_finite_array(total_mass, "total_mass")
    pos = as_finite_array(position, "position")
    check_ndim(ms, "stellar_mass", 1, "a 1D array of stellar masses (Msun/h)")
    check_ndim(mt, "total_mass", 1, "a 1D array of total masses (Msun/h)")
    if pos.shape != (len(ms), 3):
        raise ValueError(f"position: expected shape ({len(ms)}, 3) in Mpc/h, got {pos.shape}")
    if mt.shape != ms.shape:
        raise ValueError(f"total_mass: expected shape {ms.shape} like stellar_mass, got {mt.shape}")
    if np.any(ms < 0) or np.any(mt < 0):
        raise ValueError("stellar_mass, total_mass: expected masses >= 0 (Msun/h)")
    if mass_type is None:
        if np.any(mt < ms):
            raise ValueError("total_mass: expected total_mass >= stellar_mass for every subhalo")
        mtype = np.zeros((len(ms), 6))
        mtype[:, 4] = ms
        mtype[:, 1] = mt - ms
    else:
        mtype = as_finite_array(mass_type, "mass_type")
        if mtype.shape != (len(ms), 6):
            raise ValueError(f"mass_type: expected shape ({len(ms)}, 6) in Msun/h, got {mtype.shape}")
    groups = {}
    for name, arr in (("GroupMass", group_mass), ("Group_M_Crit200", group_m200c)):
        arr = np.zeros(0) if arr is None else as_finite_array(arr, name)
        check_ndim(arr, name, 1, "a 1D array of group masses (Msun/h)")
        groups[name] = arr
    if group_mass is not None and group_m200c is None:
        groups["Group_M_Crit200"] = np.zeros_like(groups["GroupMass"])
    if group_m200c is not None and group_mass is None:
        groups["GroupMass"] = np.zeros_like(groups["Group_M_Crit200"])
    if len(groups["GroupMass"]) != len(groups["Group_M_Crit200"]):
        raise ValueError("group_mass, group_m200c: expected the same length")
    box_size = float(as_finite_array(box_size, "box_size"))

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            hdr = f.create_group("Header")
            hdr.attrs["BoxSize"] = box_size * KPC_PER_MPC
            if redshift is not None:
                hdr.attrs["Redshift"] = float(redshift)
                hdr.attrs["Time"] = 1.0 / (1.0 + float(redshift))
            hdr.attrs["Nsubhalos_Total"] = len(ms)
            hdr.attrs["Ngroups_Total"] = len(groups["GroupMass"])
            hdr.attrs["cosmonb_units_note"] = "masses 1e10 Msun/h, lengths kpc/h (Subfind units)"
            for k, v in (attrs or {}).items():
                hdr.attrs[k] = v
            sub = f.create_group("Subhalo")
            sub["SubhaloMass"] = (mt / SUBFIND_MASS_UNIT).astype(dtype)
            sub["SubhaloMassType"] = (mtype / SUBFIND_MASS_UNIT).astype(dtype)
            sub["SubhaloPos"] = (pos * KPC_PER_MPC).astype(dtype)
            grp = f.create_group("Group")
            for name, arr in groups.items():
                grp[name] = (arr / SUBFIND_MASS_UNIT).astype(dtype)


# ----------------------------------------------------------------------------
# splits
# ----------------------------------------------------------------------------

def split_by_simulation(n_maps: int, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                        maps_per_sim: int = MAPS_PER_SIM):
    """Split map indices ``0..n_maps-1`` into sets that never share a simulation.

    Map ``i`` belongs to simulation ``i // maps_per_sim``; simulations are
    shuffled with ``seed`` and dealt to the sets in proportion to
    ``fractions`` (any number of sets; they must sum to 1). Every set with a
    positive fraction gets at least one simulation when there are enough.
    Returns one sorted int64 index array per fraction.

    Example:
        >>> train, val, test = split_by_simulation(45, (0.6, 0.2, 0.2), seed=1)
        >>> len(train), len(val), len(test)
        (15, 15, 15)
        >>> np.unique(np.concatenate([train, val, test]) // 15).tolist()
        [0, 1, 2]
    """
    n_maps = check_int(n_maps, "n_maps", 1)
    maps_per_sim = check_int(maps_per_sim, "maps_per_sim", 1)
    if n_maps % maps_per_sim:
        raise ValueError(f"n_maps: expected a multiple of maps_per_sim={maps_per_sim}, got {n_maps}")
    frac = as_finite_array(fractions, "fractions")
    check_ndim(frac, "fractions", 1, "a sequence of fractions such as (0.8, 0.1, 0.1)")
    if np.any(frac < 0) or abs(frac.sum() - 1) > 1e-6:
        raise ValueError(f"fractions: expected non-negative fractions summing to 1, got {frac.tolist()}")
    n_sims = n_maps // maps_per_sim
    # largest-remainder allocation, then lift empty positive sets if possible
    raw = frac * n_sims
    counts = np.floor(raw).astype(int)
    for j in np.argsort(-(raw - counts), kind="stable")[: n_sims - counts.sum()]:
        counts[j] += 1
    for j in np.nonzero((frac > 0) & (counts == 0))[0]:
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[j] += 1
    perm = np.random.default_rng(seed).permutation(n_sims)
    out, start = [], 0
    for c in counts:
        sims = np.sort(perm[start:start + c])
        out.append(sim_indices(sims, maps_per_sim).astype(np.int64))
        start += c
    return tuple(out)


# ----------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------

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
        step = _chunk_len(per_map)
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


# ----------------------------------------------------------------------------
# torch Dataset
# ----------------------------------------------------------------------------

def _dihedral(x, k):
    """Symmetry ``k`` in 0..7 of the square on the last two axes: rot90^(k % 4), then a flip if k >= 4."""
    y = np.rot90(x, k % 4, axes=(-2, -1))
    if k >= 4:
        y = y[..., ::-1]
    return np.ascontiguousarray(y)


class CMDDataset(Dataset):
    """Maps + parameters as a torch Dataset of ``(x (C, H, W), theta (P,))`` float32 tensors.

    ``maps`` is ``(N, C, H, W)`` (numpy, memmap or the lazy :class:`CMDMaps`);
    ``params`` is ``(N, P)`` in physical units; ``indices`` picks this set's
    maps (from :func:`split_by_simulation`) without copying. Each item is
    ``normalise_maps(maps[i])`` (log10, then per-channel standardisation) and
    ``normalise_params(params[i])``.

    Without a ``normaliser`` the statistics are computed on this dataset (so
    build the training set first) and kept in ``.normaliser``, a plain dict to
    store in a checkpoint; pass it to the validation / test sets, or use
    :meth:`like`. ``augment=True`` applies one of the 8 symmetries of the square
    (rotations by 90 degrees and flips), drawn from a generator seeded with
    ``seed`` (and the DataLoader worker's seed inside workers); ``roll=True``
    also shifts the map periodically by a random (dy, dx), which the periodic
    simulation box allows. For DataLoader
    workers started with "spawn" (macOS, Windows) pass the lazy ``CMDMaps``,
    which pickles by file name, rather than a raw ``np.memmap``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> maps = rng.lognormal(size=(45, 2, 8, 8)).astype(np.float32)
        >>> params = np.repeat(rng.uniform(0.1, 0.9, (3, 6)), 15, axis=0)
        >>> tr, va, te = split_by_simulation(45, (0.4, 0.3, 0.3))
        >>> train = CMDDataset(maps, params, tr, augment=True)
        >>> val = CMDDataset.like(train, maps, params, va)
        >>> x, theta = train[0]
        >>> x.shape, theta.shape, x.dtype
        (torch.Size([2, 8, 8]), torch.Size([6]), torch.float32)
    """

    def __init__(self, maps, params, indices=None, *, log10: bool = True,
                 log10_offset: float = 0.0, standardise: bool = True,
                 param_norm: str | None = "minmax", param_range=None,
                 normaliser: dict | None = None, augment: bool = False, roll: bool = False,
                 seed: int = 0):
        shape = getattr(maps, "shape", None)
        if shape is None:
            maps = np.asarray(maps)
            shape = maps.shape
        if len(shape) != 4:
            raise ValueError(f"maps: expected a (N, C, H, W) array (use maps[:, None] for a "
                             f"single field), got shape {tuple(shape)}")
        params = as_finite_array(params, "params")
        if params.ndim == 1:
            params = params[:, None]
        check_ndim(params, "params", 2, "a (N, n_params) array")
        if len(params) != shape[0]:
            raise ValueError(f"params: expected {shape[0]} rows (one per map), got {len(params)}")
        if indices is None:
            indices = np.arange(shape[0])
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise ValueError("indices: expected a 1D array of integer map indices")
        if indices.size and (indices.min() < 0 or indices.max() >= shape[0]):
            raise ValueError(f"indices: expected values in [0, {shape[0] - 1}]")
        self.maps, self.params, self.indices = maps, params, indices.astype(np.int64)
        if normaliser is None:
            normaliser = compute_normaliser(maps, params, self.indices, log10=log10,
                                            log10_offset=log10_offset, standardise=standardise,
                                            param_norm=param_norm, param_range=param_range)
        else:
            normaliser = dict(normaliser)
            if len(normaliser["mean"]) != shape[1]:
                raise ValueError(f"normaliser: made for {len(normaliser['mean'])} channel(s), "
                                 f"maps have {shape[1]}")
            if len(normaliser["param_shift"]) != params.shape[1]:
                raise ValueError(f"normaliser: made for {len(normaliser['param_shift'])} "
                                 f"parameters, params have {params.shape[1]}")
        self.normaliser = normaliser
        self.augment = bool(augment)
        self.roll = bool(roll)
        self.seed = seed
        self._rng = None
        self._rng_key = None

    @classmethod
    def like(cls, other: "CMDDataset", maps, params, indices=None, *,
             augment: bool = False, roll: bool = False, seed: int = 0) -> "CMDDataset":
        """A dataset on other maps with ``other``'s normaliser (validation / test sets).

        Example:
            >>> maps = np.ones((15, 1, 4, 4)) + np.arange(15)[:, None, None, None]
            >>> train = CMDDataset(maps, np.ones((15, 6)), np.arange(10))
            >>> CMDDataset.like(train, maps, np.ones((15, 6)), np.arange(10, 15)).normaliser == train.normaliser
            True
        """
        return cls(maps, params, indices, normaliser=other.normaliser, augment=augment, roll=roll, seed=seed)

    def __len__(self):
        return len(self.indices)

    def _generator(self):
        info = torch.utils.data.get_worker_info()
        key = None if info is None else (info.id, info.seed)
        if self._rng is None or key != self._rng_key:
            entropy = [int(self.seed)] + ([] if info is None else [int(info.seed) % 2**63])
            self._rng, self._rng_key = np.random.default_rng(entropy), key
        return self._rng

    def __getitem__(self, i):
        j = int(self.indices[i])
        try:
            x = normalise_maps(np.asarray(self.maps[j], dtype=np.float64), self.normaliser)
        except ValueError as err:
            raise ValueError(f"maps[{j}]: {err}") from err
        if self.augment:
            x = _dihedral(x, int(self._generator().integers(8)))
        if self.roll:
            shift = self._generator().integers(0, x.shape[-2:])
            x = np.roll(x, (int(shift[0]), int(shift[1])), axis=(-2, -1))
        theta = normalise_params(self.params[j], self.normaliser)
        return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                torch.from_numpy(np.asarray(theta, dtype=np.float32)))

    def denormalise_params(self, u):
        """Normalised parameters back to physical units (see :func:`denormalise_params`)."""
        return denormalise_params(u, self.normaliser)

    def denormalise_maps(self, z):
        """Normalised maps back to physical units (see :func:`denormalise_maps`)."""
        return denormalise_maps(z, self.normaliser)


# ----------------------------------------------------------------------------
# HDF5 cache
# ----------------------------------------------------------------------------

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
    step = _chunk_len(int(np.prod(shape[1:])) * dtype.itemsize)

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
