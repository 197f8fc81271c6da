"""The CAMELS Multifield Dataset (CMD) 2D maps and their parameter tables.

:func:`load_cmd` reads ``Maps_{field}_{suite}_{set}_z=0.00.npy`` (memory-mapped;
only the maps asked for are read) and ``params_{set}_{suite}.txt``. Maps always come
back as ``(N, C, H, W)``, one channel per field; parameters come back repeated per
map, ``(N, 6)``, since map ``i`` belongs to simulation ``i // 15``. ``n_pix``
block-averages (e.g. 256 -> 64 by 4 x 4 means).

Example:
    >>> cmd_map_filename("HI"), cmd_params_filename()
    ('Maps_HI_IllustrisTNG_LH_z=0.00.npy', 'params_LH_IllustrisTNG.txt')
"""
from __future__ import annotations

import builtins
import os
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .._checks import as_finite_array, check_int
from ..constants import CMD_FIELDS, MAPS_PER_SIM, PARAM_NAMES, PRIOR_HIGH, PRIOR_LOW
from . import files as file_limits
from .files import CorruptFileError
from .splits import sim_indices

__all__ = ["CMDMaps", "load_cmd", "write_cmd", "read_params", "COSMOLOGY_PRIOR", "cmd_map_filename",
           "cmd_params_filename"]


_CMD_HINT = (
    "CAMELS distributes these files in the CAMELS Multifield Dataset (CMD, "
    "https://camels-multifield-dataset.readthedocs.io): download them from the "
    "CMD/2D_maps/data/ folder of the CAMELS data release (e.g. via Globus or the "
    "Flatiron binder) and pass that folder as `root`, or use the built-in "
    "simulator (cosmonb.sims) instead.")


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


def write_cmd(root, maps: dict, params, suite: str = "IllustrisTNG", set: str = "LH") -> list[Path]:
    """Write maps and a parameter table in the exact CMD formats (for tests, and to share a simulated set).

    ``maps``: field name -> ``(N, n, n)`` array (``N`` a multiple of 15: map ``i`` is
    simulation ``i // 15``); ``params``: ``(N // 15, 6)`` in CAMELS order. Writes
    ``Maps_{field}_{suite}_{set}_z=0.00.npy`` (float32) and ``params_{set}_{suite}.txt``
    (a ``#`` header and one row per simulation, as CAMELS distributes it) into ``root``;
    returns the paths.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> rng = np.random.default_rng(0)
        >>> _ = write_cmd(tmp.name, {"HI": rng.lognormal(size=(15, 8, 8))}, [[0.3, 0.8, 1, 1, 1, 1]])
        >>> load_cmd(tmp.name, "HI")[0].shape
        (15, 1, 8, 8)
        >>> tmp.cleanup()
    """
    root = Path(root)
    params = as_finite_array(params, "params")
    if params.ndim != 2 or params.shape[1] != len(PARAM_NAMES):
        raise ValueError(f"params: expected (n_sims, {len(PARAM_NAMES)}) in CAMELS order, got shape {params.shape}")
    if not isinstance(maps, dict) or not maps:
        raise ValueError("maps: expected a dict field name -> (N, n, n) array")
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for field, arr in maps.items():
        if field not in CMD_FIELDS:
            raise ValueError(f"maps: unknown field {field!r}; CMD fields are {CMD_FIELDS}")
        arr = as_finite_array(arr, f"maps[{field!r}]").astype(np.float32)
        if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or len(arr) != MAPS_PER_SIM * len(params):
            raise ValueError(f"maps[{field!r}]: expected ({MAPS_PER_SIM * len(params)}, n, n) for {len(params)} "
                             f"simulations, got shape {arr.shape}")
        path = root / cmd_map_filename(field, suite, set)
        np.save(path, arr)
        paths.append(path)
    path = root / cmd_params_filename(suite, set)
    np.savetxt(path, params, fmt="%.6f", header=" ".join(PARAM_NAMES))
    return paths + [path]


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
        step = file_limits.chunk_len(int(np.prod(self._arrays[0].shape[1:])) * 4 * len(self._arrays))
        for a in range(0, len(self), step):
            out[a:a + step] = self[a:a + step]
        return out if dtype is None else out.astype(dtype)


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
    step = file_limits.chunk_len(h * w * 4 * len(arrays))
    starts = range(0, len(rows), step)
    if progress is None:
        progress = len(rows) * h * w * 4 * len(arrays) > 4 * file_limits.CHUNK_BYTES
    for a in tqdm(starts, desc="load_cmd", unit="chunk", disable=not progress):
        out[a:a + step] = maps[a:a + step]
    return out, params
