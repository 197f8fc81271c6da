"""Real CAMELS data: CMD map and Subfind catalog readers, splits, transforms, datasets, cache.

All of it lives in :mod:`cosmonb.data.core` today and is re-exported here
(``from cosmonb import data; data.load_cmd(...)``). ``data`` depends only on
``constants``, ``_checks`` and ``runtime``: the built-in simulators (:mod:`cosmonb.sims`)
write their catalogs through it, never the other way round.

Example:
    >>> from cosmonb import data
    >>> data.cmd_map_filename("HI")
    'Maps_HI_IllustrisTNG_LH_z=0.00.npy'
"""
from . import core
from .core import *  # noqa: F401,F403  (the names in core.__all__)
from .core import (KPC_PER_MPC, SNAPSHOT_ALIASES, SUBFIND_HINT, SUBFIND_MASS_UNIT)  # noqa: F401

__all__ = list(core.__all__) + ["SNAPSHOT_ALIASES", "SUBFIND_HINT", "SUBFIND_MASS_UNIT", "KPC_PER_MPC"]
