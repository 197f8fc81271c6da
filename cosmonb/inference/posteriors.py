"""Posteriors on a grid: moments, highest-density credible regions, coverage.

A posterior on a rectangular grid over two parameters is p_ij proportional to
exp(log_post_ij); its credible region at level c is the set of cells of highest
density whose total mass reaches c (highest posterior density, HPD).

Example:
    >>> import numpy as np
    >>> x, y = np.linspace(-6, 6, 121), np.linspace(-6, 6, 121)
    >>> post = GridPosterior(x, y, -0.5 * (x[:, None] ** 2 + y[None, :] ** 2))
    >>> np.round(post.std, 2)
    array([1., 1.])
"""
from __future__ import annotations

import warnings

import numpy as np

from .._checks import as_finite_array, check_ndim

__all__ = ["GridPosterior", "PosteriorGridWarning", "check_grid"]


class PosteriorGridWarning(UserWarning):
    """The grid does not resolve the posterior: its mass sits on the grid edge or in one cell."""


def check_grid(grid, name: str) -> np.ndarray:
    """``grid`` as a 1D float array of at least 3 finite, strictly increasing points.

    Example:
        >>> check_grid([0.1, 0.2, 0.3], "x")
        array([0.1, 0.2, 0.3])
        >>> check_grid([0.1, 0.3, 0.2], "x")
        Traceback (most recent call last):
        ...
        ValueError: x: expected a strictly increasing grid, but x[2] = 0.2 <= x[1] = 0.3
    """
    arr = as_finite_array(grid, name)
    check_ndim(arr, name, 1, "a 1D grid of parameter values")
    if arr.size < 3:
        raise ValueError(f"{name}: expected a grid of at least 3 points, got {arr.size}")
    step = np.diff(arr)
    if np.any(step <= 0):
        i = int(np.argmax(step <= 0)) + 1
        raise ValueError(f"{name}: expected a strictly increasing grid, but "
                         f"{name}[{i}] = {arr[i]:.6g} <= {name}[{i - 1}] = {arr[i - 1]:.6g}")
    return arr


class GridPosterior:
    """A 2D posterior tabulated on the grid ``x`` (n,) by ``y`` (m,) from ``log_post`` (n, m).

    Attributes: ``prob`` (normalised cell masses), ``mean`` (2,), ``cov`` (2, 2),
    ``std`` (2,), ``corr``, ``map_estimate`` (2,).

    ``x`` and ``y`` must each hold at least 3 strictly increasing points. Moments on a
    grid are only as good as the grid: :meth:`warn_if_unresolved` warns when the mass
    sits on the grid edge or at one grid value.
    """

    def __init__(self, x, y, log_post, names=("x", "y")):
        x = as_finite_array(x, "x")
        y = as_finite_array(y, "y")
        check_ndim(x, "x", 1, "a 1D grid of parameter values")
        check_ndim(y, "y", 1, "a 1D grid of parameter values")
        lp = np.asarray(log_post, dtype=float)
        if lp.shape != (x.size, y.size):
            raise ValueError(f"log_post: expected shape {(x.size, y.size)}, got {lp.shape}")
        if np.isnan(lp).any() or not np.isfinite(lp.max()):
            raise ValueError("log_post: expected finite values (and no NaN)")
        self.x = check_grid(x, "x")
        self.y = check_grid(y, "y")
        self.names = tuple(names)
        self.log_post = lp
        p = np.exp(lp - lp.max())
        self.prob = p / p.sum()
        gx, gy = np.meshgrid(self.x, self.y, indexing="ij")
        self.mean = np.array([(self.prob * gx).sum(), (self.prob * gy).sum()])
        dx, dy = gx - self.mean[0], gy - self.mean[1]
        self.cov = np.array([[(self.prob * dx * dx).sum(), (self.prob * dx * dy).sum()],
                             [(self.prob * dx * dy).sum(), (self.prob * dy * dy).sum()]])
        self.std = np.sqrt(np.diag(self.cov))
        spread = self.std[0] * self.std[1]
        self.corr = float(self.cov[0, 1] / spread) if spread > 0 else float("nan")  # one-cell width
        i, j = np.unravel_index(np.argmax(self.prob), self.prob.shape)
        self.map_estimate = np.array([self.x[i], self.y[j]])

    def level(self, mass):
        """Density threshold of the HPD region holding ``mass`` (e.g. 0.68) of the probability."""
        if not 0 < mass < 1:
            raise ValueError(f"mass: expected a probability in (0, 1), got {mass}")
        flat = np.sort(self.prob.ravel())[::-1]
        cum = np.cumsum(flat)
        return flat[min(np.searchsorted(cum, mass), flat.size - 1)]

    def credible_mass(self, point):
        """Posterior mass of the cells denser than the cell holding ``point`` (its HPD rank).

        The truth lies in the c-credible region exactly when this is <= c, so for a
        calibrated posterior it is uniform on [0, 1] over repeated experiments.
        """
        point = as_finite_array(point, "point")
        if point.shape != (2,):
            raise ValueError(f"point: expected one ({self.names[0]}, {self.names[1]}) pair, "
                             f"shape (2,), got shape {point.shape}")
        i = np.argmin(np.abs(self.x - point[0]))
        j = np.argmin(np.abs(self.y - point[1]))
        return float(self.prob[self.prob > self.prob[i, j]].sum())

    @property
    def edge_mass(self) -> float:
        """Posterior mass in the outermost rows and columns of the grid."""
        return float(max(0.0, 1.0 - self.prob[1:-1, 1:-1].sum()))

    def warn_if_unresolved(self, what="posterior", threshold=0.99, stacklevel=2) -> bool:
        """Warn (:class:`PosteriorGridWarning`) if the grid does not resolve the posterior.

        That is, if more than ``threshold`` of a parameter's marginal mass sits at one
        grid value (the posterior is narrower than a cell: its std is meaningless; at
        the first or last value the data want values beyond the grid, and the mean is
        the grid's edge), or more than ``threshold`` of the mass on the grid's edge.
        Returns True if it warned.

        Example:
            >>> import warnings
            >>> x = np.linspace(0, 1, 11)
            >>> pinned = GridPosterior(x, x, -1e4 * x[:, None] - 0.5 * (x[None, :] - 0.5) ** 2 / 0.1**2)
            >>> with warnings.catch_warnings(record=True) as caught:
            ...     warnings.simplefilter("always")
            ...     pinned.warn_if_unresolved()
            True
            >>> "100.0% of the mass of x sits on the edge of the grid" in str(caught[0].message)
            True
        """
        problems = []
        for axis, (name, grid) in enumerate(zip(self.names, (self.x, self.y))):
            marginal = self.prob.sum(axis=1 - axis)
            i = int(np.argmax(marginal))
            if marginal[i] > threshold:
                where = ("on the edge of the grid" if i in (0, grid.size - 1)
                         else "at one grid value")
                problems.append(f"{marginal[i]:.1%} of the mass of {name} sits {where}, "
                                f"{name} = {grid[i]:.4g} (grid {grid[0]:.4g} to {grid[-1]:.4g} "
                                f"in {grid.size} points)")
        if not problems and self.edge_mass > threshold:
            problems.append(f"{self.edge_mass:.1%} of the mass sits on the edge of the grid")
        if problems:
            warnings.warn(
                f"{what}: the grid does not resolve the posterior: " + "; ".join(problems)
                + f". Its mean {[float(f'{m:.4g}') for m in self.mean]} and std "
                f"{[float(f'{s:.3g}') for s in self.std]} describe the grid, not the posterior. "
                "Mass pinned to the edge means the data want values outside the grid: check that "
                "the input is what the likelihood expects; otherwise refine the grid.",
                PosteriorGridWarning, stacklevel=stacklevel + 1)
        return bool(problems)

    def contains(self, point, mass):
        """True if ``point`` lies in the HPD region of probability ``mass``."""
        return self.credible_mass(point) <= mass

    def marginal(self, axis):
        """Marginal density of parameter ``axis`` (0 or 1) on its grid, integrating to 1."""
        p = self.prob.sum(axis=1 - axis)
        grid = self.x if axis == 0 else self.y
        return p / np.gradient(grid)

    def plot(self, ax=None, truth=None, color="C0", label=None, levels=(0.68, 0.95)):
        """Filled 1 and 2 sigma HPD contours (68%, 95%), the truth as a star."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        thresholds = sorted(self.level(m) for m in levels)
        top = self.prob.max() * 1.01
        for i, t in enumerate(thresholds):  # outer region light, inner region darker
            ax.contourf(self.x, self.y, self.prob.T, levels=[t, top], colors=[color], alpha=0.18)
        ax.contour(self.x, self.y, self.prob.T, levels=thresholds, colors=[color], linewidths=1.2)
        if label:
            ax.plot([], [], color=color, label=label)
        if truth is not None:
            ax.plot(truth[0], truth[1], "k*", ms=12, label="truth")
        ax.set_xlabel(self.names[0])
        ax.set_ylabel(self.names[1])
        return ax


class SamplePosterior:
    """A posterior represented by samples ``(S, d)`` (e.g. from MCMC), with names.

    Attributes: ``samples``, ``mean``, ``cov``, ``std``, ``corr`` (d x d). The credible
    region at level c is the highest-density region of a Gaussian kernel density
    estimate of the samples (:meth:`credible_mass`), as :class:`GridPosterior` uses the
    highest-density cells. Extra information (all parameters' samples, the sampler's
    acceptance and autocorrelation times) sits in ``info``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> post = SamplePosterior(rng.normal(size=(4000, 2)), names=("a", "b"))
        >>> np.round(post.std, 1)
        array([1., 1.])
    """

    def __init__(self, samples, names=None, info=None):
        arr = as_finite_array(samples, "samples")
        check_ndim(arr, "samples", 2, "samples of shape (S, d)")
        if len(arr) < 10:
            raise ValueError(f"samples: expected at least 10 samples, got {len(arr)}")
        self.samples = arr
        self.names = tuple(names) if names is not None else tuple(f"x{i}" for i in range(arr.shape[1]))
        self.info = dict(info or {})
        self.mean = arr.mean(0)
        self.cov = np.atleast_2d(np.cov(arr.T))
        self.std = np.sqrt(np.diag(self.cov))
        self.corr = self.cov / np.outer(self.std, self.std)
        self._kde = None

    def interval(self, mass=0.68):
        """Central credible intervals (d, 2) of each parameter's marginal."""
        if not 0 < mass < 1:
            raise ValueError(f"mass: expected a probability in (0, 1), got {mass}")
        q = np.quantile(self.samples, [(1 - mass) / 2, (1 + mass) / 2], axis=0)
        return q.T

    def credible_mass(self, point, max_samples=2000):
        """Posterior mass denser than ``point`` under the samples' KDE (its HPD rank).

        Uniform on [0, 1] over repeated experiments for a calibrated posterior.
        """
        from scipy.stats import gaussian_kde

        point = as_finite_array(point, "point")
        if point.shape != (self.samples.shape[1],):
            raise ValueError(f"point: expected shape ({self.samples.shape[1]},), got {point.shape}")
        if self._kde is None:
            step = max(1, len(self.samples) // max_samples)
            thin = self.samples[::step]
            self._kde = (gaussian_kde(thin.T), thin)
        kde, thin = self._kde
        dens = kde(thin.T)
        return float(np.mean(dens > kde(point[:, None])[0]))

    def contains(self, point, mass):
        """True if ``point`` lies in the HPD region of probability ``mass``."""
        return self.credible_mass(point) <= mass


__all__.append("SamplePosterior")
