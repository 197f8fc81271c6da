"""From simulations and trained models to posteriors, and how to judge them.

* :mod:`cosmonb.posteriors` (re-exported here) -- the :class:`Posterior` interface, :class:`GridPosterior`
  and :class:`SamplePosterior`;
* :mod:`cosmonb.sims.exact` (re-exported here) -- exact posteriors of the built-in simulators;
* :mod:`~cosmonb.inference.abc` -- rejection ABC and the box prior;
* :mod:`~cosmonb.inference.delfi` -- DELFI (sequential neural likelihood estimation);
* :mod:`~cosmonb.inference.compare` -- an approximate posterior against the exact one;
* :mod:`~cosmonb.inference.diagnostics` -- calibration: HPD coverage, SBC ranks, TARP.

``inference`` is the top of the data flow: it imports ``sims``, ``fisher``, ``models`` and
``train``; none of them imports it.

Example:
    >>> import numpy as np
    >>> from cosmonb.inference import GridPosterior
    >>> x = np.linspace(-5, 5, 101)
    >>> GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2)).std.round(2)
    array([1., 1.])
"""
from .abc import ABCResult, BoxPrior, abc_rejection, fisher_distance
from .compare import compare_to_exact, sample_grid_posterior, sample_moments
from .delfi import Delfi
from .diagnostics import credible_masses, fit_temperature, hpd_coverage, sbc_ranks, sbc_uniformity, tarp
from ..sims.exact import MAX_ZOOM_POINTS, exact_posterior, marginal_posterior, power_law_posterior
from ..posteriors import GaussianPosterior, GridPosterior, Posterior, PosteriorGridWarning, SamplePosterior, check_grid

__all__ = ["Posterior", "GridPosterior", "SamplePosterior", "GaussianPosterior", "PosteriorGridWarning", "check_grid", "exact_posterior",
           "marginal_posterior", "power_law_posterior", "MAX_ZOOM_POINTS", "BoxPrior", "ABCResult",
           "abc_rejection", "fisher_distance", "Delfi", "compare_to_exact", "sample_grid_posterior",
           "sample_moments", "credible_masses", "fit_temperature", "hpd_coverage", "sbc_ranks", "sbc_uniformity",
           "tarp"]
