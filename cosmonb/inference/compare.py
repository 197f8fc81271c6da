"""Compare an approximate posterior (samples, a grid, or moments) with the exact one.

Example:
    >>> x = np.linspace(-4, 4, 81)
    >>> exact = GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2))
    >>> round(compare_to_exact((np.zeros(2), np.eye(2)), exact)["area_ratio"], 2)
    1.0
"""
from __future__ import annotations

import numpy as np

from .._checks import as_finite_array, check_ndim
from ..posteriors import GridPosterior

__all__ = ["sample_grid_posterior", "sample_moments", "compare_to_exact"]


def sample_grid_posterior(post: GridPosterior, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples from a grid posterior: a cell by its mass, then uniform within the cell.

    Example:
        >>> x = np.linspace(-3, 3, 61)
        >>> post = GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2))
        >>> s = sample_grid_posterior(post, 20000, np.random.default_rng(0))
        >>> np.round(s.std(0), 1)
        array([1., 1.])
    """
    return post.sample(n, seed=rng)


def sample_moments(samples) -> tuple[np.ndarray, np.ndarray]:
    """Mean (P,) and covariance (P, P) of samples (N, P)."""
    s = as_finite_array(samples, "samples")
    check_ndim(s, "samples", 2, "samples of shape (N, P)")
    if len(s) < s.shape[1] + 2:
        raise ValueError(f"samples: {len(s)} samples are too few for a covariance; "
                         "accept more (larger epsilon or more simulations)")
    return s.mean(0), np.cov(s, rowvar=False)


def compare_to_exact(approx, exact: GridPosterior) -> dict:
    """How far an approximate posterior is from the exact one.

    ``approx``: samples (N, 2), a :class:`GridPosterior` on the same grid as
    ``exact``, or a ``(mean, cov)`` pair. Returns

    * ``mean_offset_sigma``: ``sqrt(dm^T Sigma_exact^-1 dm)``, the offset of the means
      in units of the exact posterior's standard deviations (Mahalanobis);
    * ``area_ratio``: ``sqrt(det Sigma_approx / det Sigma_exact)``, the ratio of the
      areas of the 68% covariance ellipses (1 = same size, > 1 = too wide);
    * ``std_ratio``: the ratio of the marginal standard deviations (2,);
    * for a grid posterior also ``hpd68_area_ratio`` (ratio of the areas of the
      68% highest-density regions, counted in grid cells) and ``kl`` = KL(exact || approx)
      in nats.

    Example:
        >>> x = np.linspace(-4, 4, 81)
        >>> exact = GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2))
        >>> r = compare_to_exact((np.array([0.5, 0.0]), 4 * np.eye(2)), exact)
        >>> round(r["mean_offset_sigma"], 2), round(r["area_ratio"], 2)
        (0.5, 4.0)
    """
    out = {}
    if isinstance(approx, GridPosterior):
        if approx.prob.shape != exact.prob.shape or not (np.allclose(approx.x, exact.x)
                                                        and np.allclose(approx.y, exact.y)):
            raise ValueError("approx: a grid posterior must use the same grid as exact")
        mean, cov = approx.mean, approx.cov
        cells = lambda post: int((post.prob >= post.level(0.68)).sum())
        out["hpd68_area_ratio"] = cells(approx) / cells(exact)
        p, q = exact.prob, np.maximum(approx.prob, 1e-300)
        mask = p > 0
        out["kl"] = float((p[mask] * (np.log(p[mask]) - np.log(q[mask]))).sum())
    elif isinstance(approx, tuple) and len(approx) == 2:
        mean, cov = (np.asarray(a, float) for a in approx)
    else:
        mean, cov = sample_moments(approx)
    dm = mean - exact.mean
    out["mean_offset_sigma"] = float(np.sqrt(dm @ np.linalg.solve(exact.cov, dm)))
    out["area_ratio"] = float(np.sqrt(np.linalg.det(cov) / np.linalg.det(exact.cov)))
    out["std_ratio"] = (np.sqrt(np.diag(cov)) / exact.std).tolist()
    return out
