"""The one home of the constants that the simulator, the readers and the catalogs share.

CAMELS (Villaescusa-Navarro et al. 2021, 2022): six parameters in the order of every
CAMELS parameter table, the LH prior (Omega_m and sigma_8 uniform, the four feedback
amplitudes log-uniform), a periodic (25 Mpc/h)^3 box cut into 5 Mpc/h slabs, 15 maps per
simulation in the Multifield Dataset.

Example:
    >>> from cosmonb.constants import PARAM_NAMES, PRIOR_LOW, PRIOR_HIGH
    >>> from cosmonb.constants import OMEGA_M_RANGE
    >>> PARAM_NAMES[0], OMEGA_M_RANGE
    ('Omega_m', (0.1, 0.5))
"""
from __future__ import annotations

import numpy as np

__all__ = ["PARAM_NAMES", "FIDUCIAL", "PRIOR_LOW", "PRIOR_HIGH", "LOG_UNIFORM", "OMEGA_M_RANGE",
           "SIGMA_8_RANGE", "BOX_SIZE", "SLAB_THICKNESS", "MAPS_PER_SIM", "FIELDS", "CMD_FIELDS"]

#: The six CAMELS parameters, in the order of every CAMELS parameter table.
PARAM_NAMES = ("Omega_m", "sigma_8", "A_SN1", "A_AGN1", "A_SN2", "A_AGN2")
#: The fiducial point (the CV set).
FIDUCIAL = np.array([0.3, 0.8, 1.0, 1.0, 1.0, 1.0])
#: The LH prior: uniform in Omega_m, sigma_8; log-uniform in the four feedback amplitudes.
PRIOR_LOW = np.array([0.1, 0.6, 0.25, 0.25, 0.5, 0.5])
PRIOR_HIGH = np.array([0.5, 1.0, 4.0, 4.0, 2.0, 2.0])
LOG_UNIFORM = np.array([False, False, True, True, True, True])
#: The LH prior ranges for (Omega_m, sigma_8), as pairs.
OMEGA_M_RANGE = (float(PRIOR_LOW[0]), float(PRIOR_HIGH[0]))
SIGMA_8_RANGE = (float(PRIOR_LOW[1]), float(PRIOR_HIGH[1]))

#: Side of the CAMELS boxes and thickness of a CMD slab, Mpc/h.
BOX_SIZE = 25.0
SLAB_THICKNESS = 5.0
#: CMD makes 15 maps (5 slabs along each of the 3 axes) per simulation.
MAPS_PER_SIM = 15

#: The fields the built-in simulator makes (:mod:`cosmonb.sims`).
FIELDS = ("Mcdm", "Mgas", "HI", "B")
#: Fields of the CMD 2D maps. ``B`` exists for IllustrisTNG only.
CMD_FIELDS = ("Mgas", "Vgas", "T", "P", "Z", "HI", "ne", "B", "MgFe",
              "Mcdm", "Vcdm", "Mstar", "Mtot")
