"""Exact posteriors of the built-in simulators, as posterior objects.

The simulators (:mod:`cosmonb.sims`) know their likelihoods exactly; this module turns
them into :class:`~cosmonb.posteriors.GridPosterior` (a grid over two parameters,
flat prior) or :class:`~cosmonb.posteriors.SamplePosterior` (emcee samples with
the four astrophysical parameters marginalised). It lives in ``inference`` rather than
``sims`` so that data flow one way: ``sims`` never imports ``inference``.

Example:
    >>> from cosmonb.sims import FIDUCIAL, simulate
    >>> m = simulate([FIDUCIAL], "Mcdm", n_pix=16, seed=3)[0, 0]
    >>> exact_posterior(m, n_grid=30).mean.shape
    (2,)
"""
from __future__ import annotations

import numpy as np

from .._checks import as_finite_array, check_ndim, check_size
from ..constants import BOX_SIZE, FIELDS, OMEGA_M_RANGE, SIGMA_8_RANGE
from .fields import check_range, fisher_matrix, log_likelihood, posterior_samples
from .simulators import power_law_log_likelihood
from ..posteriors import GridPosterior, SamplePosterior

__all__ = ["exact_posterior", "marginal_posterior", "power_law_posterior", "MAX_ZOOM_POINTS"]

#: most grid points per axis of a zoomed :func:`exact_posterior` (a 256^2 map needs ~400 in Omega_m)
MAX_ZOOM_POINTS = 500


def exact_posterior(map_, n_grid=100, omega_m_range=OMEGA_M_RANGE,
                    sigma_8_range=SIGMA_8_RANGE, box_size=BOX_SIZE, zoom=True):
    """Exact posterior of (Omega_m, sigma_8) for one Mcdm map on a grid, flat prior.

    Returns a :class:`~cosmonb.posteriors.GridPosterior` (means, standard deviations,
    correlation, 68% / 95% regions). ``n_grid`` >= 3; each range a pair (low, high)
    with low < high.

    The posterior can be far narrower than a grid cell across its degeneracy direction
    (a 256^2 map: Omega_m to 0.0008 at fixed sigma_8, against cells of 0.004 for
    n_grid = 100), and HPD regions drawn from a few cells are not calibrated. With
    ``zoom=True`` a first pass over the ranges locates the mass; the returned grid then
    spans its mean +- 7 standard deviations (of that pass or of the Fisher matrix at that
    mean, the larger), clipped to the ranges, with at least ``n_grid`` points per axis and
    a spacing of at most 0.4 of the conditional widths ``1 / sqrt(F_ii)``, up to
    ``MAX_ZOOM_POINTS`` per axis. ``zoom=False`` keeps the first pass's grid (to compare
    with another posterior on the same grid).

    Warns (``PosteriorGridWarning``) when the grid does not resolve the posterior: most of
    its mass on the grid edge or in one cell, as for an HI map or a map in the wrong
    units, whose mean and std would otherwise look like answers.

    Example:
        >>> from cosmonb.sims import FIDUCIAL, simulate
        >>> m = simulate([FIDUCIAL], "Mcdm", n_pix=16, seed=3)[0, 0]
        >>> post = exact_posterior(m, n_grid=30)
        >>> post.mean.shape
        (2,)
    """
    n_grid = check_size(n_grid, "n_grid")
    if n_grid < 3:
        raise ValueError(f"n_grid: expected at least 3 grid points per parameter, got {n_grid}")
    if np.ndim(map_) != 2:
        raise ValueError(f"map_: expected one Mcdm map (n, n), got shape {np.shape(map_)}")
    ranges = [check_range(omega_m_range, "omega_m_range"), check_range(sigma_8_range, "sigma_8_range")]
    maps = np.asarray(map_)[None]
    axes = [np.linspace(*r, n_grid) for r in ranges]
    ll = log_likelihood(maps, axes[0][:, None], axes[1][None, :], box_size)[0]
    post = GridPosterior(*axes, ll, names=("Omega_m", "sigma_8"))
    if zoom:  # also when the mass sits at a range edge (Omega_m near 0.1): the box clips to the range
        centre = np.clip(post.mean, [r[0] for r in ranges], [r[1] for r in ranges])
        try:
            fisher = fisher_matrix(*np.clip(centre, [0.06, 0.1], [0.9, 1.5]), n_pix=maps.shape[-1],
                                   box_size=box_size)
            spread = np.maximum(post.std, np.sqrt(np.diag(np.linalg.inv(fisher))))
            conditional = 1 / np.sqrt(np.diag(fisher))
        except (ValueError, np.linalg.LinAlgError):
            spread, conditional = post.std, post.std
        axes = []
        for (low, high), c, s, w in zip(ranges, centre, spread, conditional):
            lo, hi = max(low, c - 7 * s), min(high, c + 7 * s)
            n = int(np.clip(np.ceil((hi - lo) / (0.4 * w)) + 1, n_grid, max(n_grid, MAX_ZOOM_POINTS)))
            axes.append(np.linspace(lo, hi, n))
        ll = _banded_log_likelihood(maps, axes, box_size)
        post = GridPosterior(*axes, ll, names=("Omega_m", "sigma_8"))
    post.warn_if_unresolved("exact_posterior (is map_ an Mcdm map in (Msun/h)/(Mpc/h)^2, "
                            "as simulate makes it?)")
    return post


def _banded_log_likelihood(maps, axes, box_size, stride=4, drop=40.0):
    """ln L on the grid ``axes`` (-inf where negligible), evaluated exactly only near the mass.

    A zoomed grid around a narrow, curved ridge is mostly empty: every ``stride``-th point
    of each axis is evaluated first (the zoom's spacing of 0.4 conditional widths makes
    that 1.6, so the ridge cannot fall between them), then every fine point within one
    coarse cell of a coarse value above ``max - drop``. Falls back to every point if the
    exact values on the rim of that region are not negligible (e^-20 of the peak).
    """
    from scipy.ndimage import binary_dilation

    coarse = log_likelihood(maps, axes[0][::stride, None], axes[1][None, ::stride], box_size)[0]
    keep = binary_dilation(coarse > coarse.max() - drop, np.ones((3, 3), bool))
    idx = [np.minimum(np.round(np.arange(len(a)) / stride).astype(int), k - 1)
           for a, k in zip(axes, keep.shape)]
    inside = keep[np.ix_(*idx)]
    gx, gy = np.meshgrid(*axes, indexing="ij")
    ll = np.full(gx.shape, -np.inf)
    ll[inside] = log_likelihood(maps, gx[inside], gy[inside], box_size)[0]
    rim = inside & ~_erode(inside)
    if np.all(ll[rim] < ll.max() - 20):
        return ll
    return log_likelihood(maps, axes[0][:, None], axes[1][None, :], box_size)[0]


def _erode(mask):
    """Cells of ``mask`` whose four neighbours are all in ``mask`` (beyond the grid counts as
    in: the grid's own edge is not a rim of the evaluated region)."""
    padded = np.pad(mask, 1, mode="edge")
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
            & padded[1:-1, :-2] & padded[1:-1, 2:])


def marginal_posterior(maps, fields=FIELDS, n_walkers=32, n_steps=1000, burn=300, seed=0,
                       start=None, box_size=BOX_SIZE):
    """Posterior of (Omega_m, sigma_8) from one multifield map, astrophysics marginalised.

    ``maps`` (C, n, n) or (1, C, n, n) in the order of ``fields`` (any subset of
    ``FIELDS``). The four astrophysical parameters are marginalised over their CAMELS prior
    (log-uniform) by sampling the exact six-parameter posterior with emcee
    (:func:`posterior_samples`) and keeping (Omega_m, sigma_8). Returns a
    :class:`~cosmonb.posteriors.SamplePosterior` (``mean``, ``std``, ``interval``,
    ``credible_mass``); ``info["samples_all"]`` holds all six parameters.

    Precision: with the defaults (32 walkers x 700 kept steps, autocorrelation times of
    ~40-80 steps, so ~300-500 independent samples) posterior means are good to ~0.05
    posterior standard deviations and standard deviations to ~5%; the test suite compares
    it with a brute-force grid on a small map (tests/test_sims.py).

    Example:
        >>> from cosmonb.sims import FIDUCIAL, simulate
        >>> m = simulate([FIDUCIAL], ["Mgas", "HI"], n_pix=16, seed=1)[0]
        >>> post = marginal_posterior(m, ["Mgas", "HI"], n_walkers=16, n_steps=200, burn=100)
        >>> post.mean.shape
        (2,)
    """
    samples, info = posterior_samples(maps, fields, n_walkers, n_steps, burn, seed, start, box_size)
    info["samples_all"] = samples
    return SamplePosterior(samples[:, :2], names=("Omega_m", "sigma_8"), info=info)


def power_law_posterior(field, amplitude_range=(0.5, 1.5), slope_range=(0.1, 0.9), n_grid=100,
                        box_size: float = 25.0):
    """Exact posterior of (A, B) for one Gaussian field on an n_grid^2 grid, flat prior.

    Returns a :class:`cosmonb.inference.GridPosterior`.

    Example:
        >>> from cosmonb.sims import gaussian_field
        >>> f = gaussian_field(lambda k: 1.0 * k ** -0.5, n_pix=32, seed=2)[0]
        >>> post = power_law_posterior(f, n_grid=40)
        >>> bool(abs(post.mean[0] - 1.0) < 0.4)
        True
    """

    field = as_finite_array(field, "field")
    if field.ndim == 3 and field.shape[0] == 1:
        field = field[0]
    check_ndim(field, "field", 2, "one field of shape (n, n)")
    n_grid = check_size(n_grid, "n_grid")
    a = np.linspace(*amplitude_range, n_grid)
    b = np.linspace(*slope_range, n_grid)
    ll = power_law_log_likelihood(field, a[:, None], b[None, :], box_size)
    return GridPosterior(a, b, ll, names=("A", "B"))
