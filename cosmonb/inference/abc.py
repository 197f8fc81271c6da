r"""Rejection ABC on compressed summaries, and the box prior it draws from.

Once a field is compressed to one number per parameter (an IMNN's score estimate,
:mod:`cosmonb.models.imnn`), ABC (approximate Bayesian computation, rejection) draws
theta from the prior, simulates, compresses, and keeps theta when the summary lands
within epsilon of the observed one. With score-compressed summaries theta_hat the
natural distance is the Fisher metric, ``rho = sqrt((t - t_obs)^T F (t - t_obs))``,
which measures the gap in units of the expected error bars (:func:`abc_rejection`).

Example:
    >>> prior = BoxPrior([0.1, 0.6], [0.5, 1.0])
    >>> prior.dim
    2
"""
from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from .._checks import as_finite_array, check_int
from ..fisher import check_covariance
from ..runtime import check_seed

__all__ = ["BoxPrior", "ABCResult", "fisher_distance", "abc_rejection"]


class BoxPrior:
    """Uniform prior on a box ``low <= theta <= high``.

    Example:
        >>> prior = BoxPrior([0.1, 0.6], [0.5, 1.0])
        >>> prior.sample(3, np.random.default_rng(0)).shape
        (3, 2)
    """

    def __init__(self, low, high):
        self.low = as_finite_array(low, "low").ravel()
        self.high = as_finite_array(high, "high").ravel()
        if self.low.shape != self.high.shape or np.any(self.high <= self.low):
            raise ValueError(f"low, high: expected high > low elementwise, got {self.low} and {self.high}")

    @property
    def dim(self) -> int:
        return len(self.low)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.low + rng.random((n, self.dim)) * (self.high - self.low)

    def grid(self, n_grid: int):
        """Grids ``np.linspace(low_i, high_i, n_grid)`` per parameter (the grid of
        ``cosmonb.sims.exact_posterior``), for a 2D grid posterior."""
        return [np.linspace(lo, hi, int(n_grid)) for lo, hi in zip(self.low, self.high)]


@dataclass
class ABCResult:
    """Output of :func:`abc_rejection`.

    ``samples`` (n_accepted, P) accepted parameters; ``distances`` their Fisher
    distances; ``epsilon`` the acceptance threshold; ``n_sims`` simulations run;
    ``theta``, ``summaries``, ``all_distances`` of every simulation; ``seconds``.
    """

    samples: np.ndarray
    distances: np.ndarray
    epsilon: float
    n_sims: int
    theta: np.ndarray = field(repr=False)
    summaries: np.ndarray = field(repr=False)
    all_distances: np.ndarray = field(repr=False)
    seconds: float = 0.0

    @property
    def n_accepted(self) -> int:
        return len(self.samples)

    @property
    def acceptance_rate(self) -> float:
        return self.n_accepted / self.n_sims


def fisher_distance(summaries, observed, fisher) -> np.ndarray:
    """rho = sqrt((t - t_obs)^T F (t - t_obs)) for summaries t (N, P).

    Example:
        >>> fisher_distance([[1.0, 0.0]], [0.0, 0.0], [[4.0, 0.0], [0.0, 1.0]])
        array([2.])
    """
    t = np.atleast_2d(as_finite_array(summaries, "summaries"))
    obs = as_finite_array(observed, "observed").ravel()
    f = check_covariance(fisher, "fisher")
    d = t - obs
    return np.sqrt(np.einsum("ni,ij,nj->n", d, f, d))


def abc_rejection(simulate_compress, prior: BoxPrior, observed, fisher, *, n_sims: int,
                  epsilon: float | None = None, n_accept: int | None = None, batch_size: int = 1000,
                  seed: int = 0, progress: bool = False) -> ABCResult:
    """Rejection ABC with the Fisher-metric distance between score-compressed summaries.

    ``simulate_compress(theta (N, P), seed, indices) -> summaries (N, P)``: simulate
    and compress (simulation r uses the stream (seed, r)). Draws ``n_sims``
    parameters from ``prior`` and keeps those whose summary lies within
    ``epsilon`` of ``observed`` in the metric ``fisher`` (so epsilon = 1 means
    "within about one expected standard deviation"); or, with ``n_accept``, the
    ``n_accept`` closest (epsilon is then their largest distance).

    Example:
        >>> prior = BoxPrior([-3.0], [3.0])
        >>> sc = lambda th, seed, idx: th + np.random.default_rng(seed).normal(size=th.shape) * 0.1
        >>> res = abc_rejection(sc, prior, [0.5], [[100.0]], n_sims=2000, epsilon=1.0)
        >>> bool(abs(res.samples.mean() - 0.5) < 0.05), res.n_sims
        (True, 2000)
    """
    n_sims = check_int(n_sims, "n_sims", 1)
    if (epsilon is None) == (n_accept is None):
        raise ValueError("epsilon, n_accept: give exactly one (a distance threshold, or how many to keep)")
    if epsilon is not None and not (isinstance(epsilon, numbers.Real) and epsilon > 0):
        raise ValueError(f"epsilon: expected a distance > 0, got {epsilon!r}")
    if n_accept is not None and not (isinstance(n_accept, numbers.Integral) and 0 < n_accept <= n_sims):
        raise ValueError(f"n_accept: expected an integer in [1, n_sims={n_sims}], got {n_accept!r}")
    seed = check_seed(seed)
    obs = as_finite_array(observed, "observed").ravel()
    rng = np.random.default_rng([seed, 0xABC])
    theta = prior.sample(int(n_sims), rng)
    start = time.perf_counter()
    summaries = np.empty((n_sims, len(obs)))
    starts = range(0, n_sims, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="ABC", unit="batch")
    for s in starts:
        idx = np.arange(s, min(s + batch_size, n_sims))
        summaries[idx] = simulate_compress(theta[idx], seed, idx)
    dist = fisher_distance(summaries, obs, fisher)
    if n_accept is not None:
        order = np.argsort(dist)[:n_accept]
        keep = np.zeros(n_sims, bool)
        keep[order] = True
        epsilon = float(dist[order].max())
    else:
        keep = dist <= epsilon
    return ABCResult(samples=theta[keep], distances=dist[keep], epsilon=float(epsilon), n_sims=int(n_sims),
                     theta=theta, summaries=summaries, all_distances=dist,
                     seconds=time.perf_counter() - start)
