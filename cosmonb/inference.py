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

import numpy as np

from ._checks import as_finite_array


class GridPosterior:
    """A 2D posterior tabulated on the grid ``x`` (n,) by ``y`` (m,) from ``log_post`` (n, m).

    Attributes: ``prob`` (normalised cell masses), ``mean`` (2,), ``cov`` (2, 2),
    ``std`` (2,), ``corr``, ``map_estimate`` (2,).
    """

    def __init__(self, x, y, log_post, names=("x", "y")):
        self.x = as_finite_array(x, "x")
        self.y = as_finite_array(y, "y")
        lp = np.asarray(log_post, dtype=float)
        if lp.shape != (self.x.size, self.y.size):
            raise ValueError(f"log_post: expected shape {(self.x.size, self.y.size)}, got {lp.shape}")
        if np.isnan(lp).any() or not np.isfinite(lp.max()):
            raise ValueError("log_post: expected finite values (and no NaN)")
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
        self.corr = float(self.cov[0, 1] / (self.std[0] * self.std[1]))
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
        i = np.argmin(np.abs(self.x - point[0]))
        j = np.argmin(np.abs(self.y - point[1]))
        return float(self.prob[self.prob > self.prob[i, j]].sum())

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
