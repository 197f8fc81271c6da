"""The posterior interface and its implementations: on a grid, from samples, Gaussian.

Every posterior (:class:`Posterior`) offers ``sample(n, seed=None)``, ``mean``, ``cov``,
``std``, highest-posterior-density (HPD) credible regions through
``credible_mass(point)`` (the mass of the region denser than ``point``; uniform on [0, 1]
over repeated experiments when the posterior is calibrated) and
``contains(point, mass)``, and ``log_prob(theta)`` where a density exists.

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

import abc
import warnings

import numpy as np

from ._checks import as_finite_array, check_ndim, check_size

__all__ = ["Posterior", "GridPosterior", "SamplePosterior", "GaussianPosterior", "PosteriorGridWarning",
           "check_grid"]


class Posterior(abc.ABC):
    """What every posterior offers: samples, moments, HPD credible regions, a density where one exists.

    Subclasses set ``mean`` (d,), ``cov`` (d, d) and ``names``, and implement
    :meth:`sample` and :meth:`credible_mass`; :meth:`log_prob` is optional
    (``has_log_prob`` says whether it exists).

    Example:
        >>> post = GaussianPosterior([0.3, 0.8], np.diag([0.01, 0.0004]))
        >>> isinstance(post, Posterior), post.sample(5, seed=0).shape, post.std.round(2)
        (True, (5, 2), array([0.1 , 0.02]))
    """

    mean: np.ndarray
    cov: np.ndarray
    names: tuple
    #: True if :meth:`log_prob` gives the (normalised) log density
    has_log_prob: bool = False

    @property
    def dim(self) -> int:
        """Number of parameters."""
        return int(np.size(self.mean))

    @property
    def std(self) -> np.ndarray:
        """Marginal standard deviations (d,)."""
        return np.sqrt(np.diag(self.cov))

    @abc.abstractmethod
    def sample(self, n: int, seed=None) -> np.ndarray:
        """``n`` draws (n, d); ``seed`` an int, a ``numpy.random.Generator`` or None (fresh entropy)."""

    @abc.abstractmethod
    def credible_mass(self, point) -> float:
        """Posterior mass of the HPD region whose edge passes through ``point`` (its HPD rank)."""

    def contains(self, point, mass) -> bool:
        """True if ``point`` lies in the HPD region of probability ``mass``."""
        return self.credible_mass(point) <= mass

    def log_prob(self, theta) -> np.ndarray:
        """Log density at ``theta`` (n, d) or (d,); only where the posterior has a density."""
        raise NotImplementedError(f"{type(self).__name__} has no density (has_log_prob is False)")

    def _check_points(self, theta, name="theta"):
        arr = as_finite_array(theta, name)
        single = arr.ndim == 1
        arr = np.atleast_2d(arr)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"{name}: expected points of shape (n, {self.dim}) or ({self.dim},), "
                             f"got shape {np.shape(theta)}")
        return arr, single


def _rng(seed):
    """A Generator from an int seed, a Generator (used as is) or None."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(int(seed))


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


class GridPosterior(Posterior):
    """A 2D posterior tabulated on the grid ``x`` (n,) by ``y`` (m,) from ``log_post`` (n, m).

    The density is constant within each cell (cell edges half-way between grid points):
    :meth:`sample` draws a cell by its mass, then uniformly within it, and :meth:`log_prob`
    is the log of that piecewise-constant density (-inf off the grid).

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

    def tempered(self, temperature: float) -> "GridPosterior":
        """The posterior with its log-density divided by ``temperature``: ``p_T ∝ p^(1/T)``.

        Under a uniform prior this tempers the likelihood, ``L^(1/T)``: T > 1 widens a
        posterior that is too confident (a Gaussian's std grows by sqrt(T)) and leaves its
        mode where it is. :func:`cosmonb.inference.fit_temperature` picks T from held-out maps.

        Example:
            >>> x = np.linspace(-5, 5, 201)
            >>> narrow = GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2) / 0.5 ** 2)
            >>> [round(float(s), 3) for s in narrow.tempered(4.0).std]
            [1.0, 1.0]
        """
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature: expected a finite number > 0, got {temperature}")
        return GridPosterior(self.x, self.y, self.log_post / temperature, names=self.names)

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

    has_log_prob = True

    def sample(self, n, seed=None):
        """``n`` draws (n, 2): a cell by its mass, then uniform within the cell.

        Example:
            >>> x = np.linspace(-3, 3, 61)
            >>> post = GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2))
            >>> np.round(post.sample(20000, seed=0).std(0), 1)
            array([1., 1.])
        """
        n = check_size(n, "n")
        rng = _rng(seed)
        flat = self.prob.ravel()
        cells = rng.choice(flat.size, size=n, p=flat / flat.sum())
        i, j = np.unravel_index(cells, self.prob.shape)
        dx = np.gradient(self.x)[i]
        dy = np.gradient(self.y)[j]
        return np.stack([self.x[i] + (rng.random(n) - 0.5) * dx, self.y[j] + (rng.random(n) - 0.5) * dy], 1)

    def log_prob(self, theta):
        """Log of the piecewise-constant density (cell mass / cell area) at ``theta``; -inf off the grid."""
        pts, single = self._check_points(theta)
        out = np.full(len(pts), -np.inf)
        edges = [np.concatenate([[g[0] - 0.5 * (g[1] - g[0])], 0.5 * (g[1:] + g[:-1]),
                                 [g[-1] + 0.5 * (g[-1] - g[-2])]]) for g in (self.x, self.y)]
        idx = [np.searchsorted(e, pts[:, a], side="right") - 1 for a, e in enumerate(edges)]
        inside = (idx[0] >= 0) & (idx[0] < self.x.size) & (idx[1] >= 0) & (idx[1] < self.y.size)
        i, j = idx[0][inside], idx[1][inside]
        area = np.diff(edges[0])[i] * np.diff(edges[1])[j]
        with np.errstate(divide="ignore"):
            out[inside] = np.log(self.prob[i, j] / area)
        return out[0] if single else out

    def marginal(self, axis):
        """Marginal density of parameter ``axis`` (0 or 1) on its grid, integrating to 1."""
        p = self.prob.sum(axis=1 - axis)
        grid = self.x if axis == 0 else self.y
        return p / np.gradient(grid)

    def plot(self, ax=None, truth=None, color="C0", label=None, levels=(0.68, 0.95)):
        """Filled 1 and 2 sigma HPD contours (68%, 95%), the truth as a star."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        thresholds = sorted({self.level(m) for m in levels})  # one value when a cell holds both masses
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


class SamplePosterior(Posterior):
    """A posterior represented by samples ``(S, d)`` (e.g. from MCMC), with names.

    :meth:`sample` resamples the stored samples with replacement; there is no
    :meth:`log_prob` (a kernel density estimate is an estimate, not the posterior's density).

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

    def sample(self, n, seed=None):
        """``n`` rows drawn with replacement from the stored samples (n, d)."""
        n = check_size(n, "n")
        return self.samples[_rng(seed).integers(0, len(self.samples), n)]


class GaussianPosterior(Posterior):
    """A Gaussian posterior N(mean, cov): e.g. the Fisher (Laplace) approximation.

    HPD regions are ellipses: ``credible_mass(point)`` is the chi^2 (d degrees of freedom)
    CDF of the squared Mahalanobis distance of ``point`` from the mean.

    Example:
        >>> post = GaussianPosterior([0.0, 0.0], np.eye(2))
        >>> round(post.credible_mass([1.0, 1.0]), 3), bool(post.contains([0.5, 0.0], 0.68))
        (0.632, True)
    """

    has_log_prob = True

    def __init__(self, mean, cov, names=None):
        self.mean = as_finite_array(mean, "mean").ravel()
        d = self.mean.size
        cov = as_finite_array(cov, "cov")
        if cov.shape != (d, d) or not np.allclose(cov, cov.T) or np.any(np.linalg.eigvalsh(cov) <= 0):
            raise ValueError(f"cov: expected a symmetric positive-definite ({d}, {d}) matrix, got shape {cov.shape}")
        self.cov = cov
        self.names = tuple(names) if names is not None else tuple(f"x{i}" for i in range(d))
        self._chol = np.linalg.cholesky(cov)

    def _mahalanobis2(self, pts):
        z = np.linalg.solve(self._chol, (pts - self.mean).T)
        return (z**2).sum(0)

    def sample(self, n, seed=None):
        n = check_size(n, "n")
        return self.mean + _rng(seed).standard_normal((n, self.dim)) @ self._chol.T

    def credible_mass(self, point):
        from scipy.stats import chi2

        pts, _ = self._check_points(point, "point")
        return float(chi2.cdf(self._mahalanobis2(pts)[0], self.dim))

    def log_prob(self, theta):
        pts, single = self._check_points(theta)
        log_det = 2 * np.log(np.diag(self._chol)).sum()
        out = -0.5 * (self._mahalanobis2(pts) + log_det + self.dim * np.log(2 * np.pi))
        return out[0] if single else out
