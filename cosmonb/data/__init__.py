"""Real CAMELS data: CMD map and Subfind catalog readers, splits, transforms, datasets, cache.

Everything that touches a file lives here; models only ever see tensors. One module per concern,
re-exported here (``from cosmonb import data; data.load_cmd(...)``):

* :mod:`~cosmonb.data.cmd` -- CMD 2D maps ``Maps_{field}_{suite}_{set}_z=0.00.npy`` and ``params_{set}_{suite}.txt``;
* :mod:`~cosmonb.data.subfind` -- Subfind HDF5 group catalogs, read and written;
* :mod:`~cosmonb.data.splits` -- train / validation / test by simulation;
* :mod:`~cosmonb.data.transforms` -- log10, per-channel standardisation, parameter scaling;
* :mod:`~cosmonb.data.dataset` -- :class:`CMDDataset` (augmentation: the 8 symmetries of the square, periodic rolls);
* :mod:`~cosmonb.data.cache` -- an HDF5 cache of simulated sets;
* :mod:`~cosmonb.data.files` -- what the readers share (``CorruptFileError``, chunk size).

``data`` depends only on ``constants``, ``_checks`` and ``runtime``: the built-in simulators
(:mod:`cosmonb.sims`) write their catalogs through it, never the other way round.

Example:
    >>> from cosmonb import data
    >>> data.cmd_map_filename("HI")
    'Maps_HI_IllustrisTNG_LH_z=0.00.npy'
"""
from ..constants import CMD_FIELDS, MAPS_PER_SIM, PARAM_NAMES
from . import cache, cmd, dataset, files, splits, subfind, transforms
from .cache import cached, load_cache, read_cache_attrs, save_cache
from .cmd import (COSMOLOGY_PRIOR, CMDMaps, cmd_map_filename, cmd_params_filename, load_cmd, read_params,
                  write_cmd)
from .dataset import CMDDataset
from .files import CorruptFileError
from .splits import sim_indices, split_by_simulation
from .subfind import (KPC_PER_MPC, SNAPSHOT_ALIASES, SNAPSHOT_REDSHIFTS, SUBFIND_HINT, SUBFIND_MASS_UNIT,
                      load_subfind, snapshot_path, write_subfind)
from .transforms import compute_normaliser, denormalise_maps, denormalise_params, normalise_maps, normalise_params

__all__ = [
    "PARAM_NAMES", "CMD_FIELDS", "MAPS_PER_SIM", "SNAPSHOT_REDSHIFTS", "SNAPSHOT_ALIASES", "SUBFIND_HINT",
    "SUBFIND_MASS_UNIT", "KPC_PER_MPC",
    "CorruptFileError", "CMDMaps", "load_cmd", "write_cmd", "read_params", "COSMOLOGY_PRIOR",
    "cmd_map_filename", "cmd_params_filename",
    "load_subfind", "write_subfind", "snapshot_path",
    "split_by_simulation", "sim_indices",
    "compute_normaliser", "normalise_maps", "denormalise_maps",
    "normalise_params", "denormalise_params", "CMDDataset",
    "save_cache", "load_cache", "read_cache_attrs", "cached",
]
