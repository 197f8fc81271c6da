"""The built-in simulators: CAMELS-like fields with exact likelihoods, the SBI simulators, galaxy catalogs.

* :mod:`cosmonb.sims.fields` -- multifield maps (Mcdm, Mgas, HI, B) whose logs are exactly
  Gaussian, their exact likelihoods and Fisher matrices, and the CAMELS-like parameter sets.
* :mod:`cosmonb.sims.simulators` -- batch simulators for simulation-based inference
  (Gaussian power-law fields, lognormal dark matter), one random stream per row.
* :mod:`cosmonb.sims.catalogs` -- galaxy catalogs from a halo model, written as Subfind files.

The public names of ``fields`` and ``simulators`` are re-exported here, so
``from cosmonb import sims; sims.simulate(...)`` works. Posteriors built on these
likelihoods live in :mod:`cosmonb.sims.exact`: ``sims`` never imports ``inference``.

Example:
    >>> from cosmonb import sims
    >>> sims.simulate([sims.FIDUCIAL], ("Mcdm", "HI"), n_pix=16).shape
    (1, 2, 16, 16)
"""
from ..constants import (BOX_SIZE, FIDUCIAL, FIELDS, LOG_UNIFORM, MAPS_PER_SIM, PARAM_NAMES, PRIOR_HIGH,
                         PRIOR_LOW, SLAB_THICKNESS)
from . import catalogs, fields, simulators
from .fields import (CHANNEL_MEAN, CHANNELS, FB_EXP, K_L, MAX_SIMULATE_BYTES, MIN_N_PIX, N_PIX, PARAM_KEYS,
                     R_FB0, R_SAT, binned_mode_power,
                     channel_spectra, check_cosmology, check_fields, check_n_pix, check_params, check_range,
                     colour_noise, cv_set, fisher_matrix, fourier_grid, gaussian_field, information_ceiling,
                     lh_set, log_dark_matter, log_field_spectrum, log_likelihood, lognormal_transform,
                     map_power_spectrum, mean_density, mean_log_density, multifield_fisher,
                     multifield_log_likelihood, one_p_set, pixel_window,
                     posterior_samples, projected_linear_power, sample_prior, simulate, small_scale_power, square_maps,
                     white_noise)
from .simulators import LogNormalSimulator, PowerLawSimulator, make_simulator
from . import exact
from .exact import MAX_ZOOM_POINTS, exact_posterior, marginal_posterior, power_law_posterior

__all__ = [name for name in dir() if not name.startswith("_")]
