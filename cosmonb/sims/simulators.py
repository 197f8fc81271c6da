r"""Simulators for simulation-based inference: batches of maps with one random stream per row.

The simulators give maps for a batch of parameters, every row with its own
random stream ``(seed, indices[r])``, so seed-matched finite differences are
``sim(theta + delta, seed, idx)`` and ``sim(theta - delta, seed, idx)``:

* :class:`PowerLawSimulator` -- Gaussian fields with P(k) = A k^-B, the same maps
  as ``cosmonb.sims.gaussian_field`` for the same seed and index; its exact
  likelihood, score and Fisher matrix are here too (:func:`power_law_log_likelihood`,
  :func:`power_law_score`, :func:`power_law_fisher`; the derivation is in
  :mod:`cosmonb.fisher`).
* :class:`LogNormalSimulator` -- ln Mcdm of ``cosmonb.sims`` at (Omega_m, sigma_8),
  astrophysical parameters at the fiducial; the log is applied, so the maps are
  Gaussian and the exact Fisher matrix is ``cosmonb.sims.fisher_matrix``.

Example:
    >>> sim = PowerLawSimulator(n_pix=16)
    >>> maps = sim([[1.0, 0.5], [0.8, 0.7]], seed=0)
    >>> maps.shape, maps.dtype
    ((2, 1, 16, 16), dtype('float32'))
"""
from __future__ import annotations

import numpy as np

from .._checks import as_finite_array, check_box_size, check_ndim, check_size
from ..runtime import check_seed
from . import fields as sims
from .fields import binned_mode_power, fourier_grid, square_maps

__all__ = ["PowerLawSimulator", "LogNormalSimulator", "make_simulator", "check_theta", "check_indices",
           "power_law_modes", "power_law_fisher", "power_law_log_likelihood", "power_law_score",
           "check_amplitude_slope"]


# --------------------------------------------------------------------------- power-law GRF
def power_law_modes(n_pix: int, box_size: float = 25.0):
    """The non-zero wavenumbers of an n x n grid: ``(k_unique, counts)``.

    ``k_unique`` (K,) in units of 2 pi / box_size times integers, ``counts`` the
    number of grid modes (over the full n x n FFT grid) with that |k|;
    ``counts.sum() == n_pix**2 - 1`` (the DC mode is excluded). See the module
    docstring for why the full grid with a factor 1/2 counts each independent
    real degree of freedom once.

    Example:
        >>> k, c = power_law_modes(4, box_size=2 * np.pi)
        >>> k[:2], int(c.sum())
        (array([1.        , 1.41421356]), 15)
    """
    n_pix = check_size(n_pix, "n_pix")
    box_size = check_box_size(box_size)
    k, _, counts = fourier_grid(n_pix, box_size)
    return k[1:].copy(), counts[1:].copy()


def check_amplitude_slope(amplitude, slope):
    """(A, B) broadcast together as arrays, A > 0, else a ValueError naming the argument."""
    a = as_finite_array(amplitude, "amplitude")
    b = as_finite_array(slope, "slope")
    if np.any(a <= 0):
        raise ValueError("amplitude: expected A > 0")
    return np.broadcast_arrays(a, b)


def power_law_fisher(amplitude, slope, n_pix: int, box_size: float = 25.0) -> np.ndarray:
    """Analytic Fisher matrix of (A, B) for one n x n Gaussian field with P(k) = A k^-B.

    ``F_ij = 1/2 sum_{k != 0} d_i ln P d_j ln P`` over the full FFT grid (module
    docstring), with ``d_A ln P = 1/A``, ``d_B ln P = -ln k``. k in the units of
    ``cosmonb.sims`` (h/Mpc for a box in Mpc/h), so ``box_size`` matters for B's
    pivot (the A-B correlation) but not for the information on B.

    Example:
        >>> F = power_law_fisher(1.0, 0.5, n_pix=8)
        >>> float(F[0, 0])  # (n^2 - 1) / (2 A^2)
        31.5
    """
    a, b = check_amplitude_slope(amplitude, slope)
    if a.ndim:
        raise ValueError("amplitude, slope: expected scalars (one fiducial point)")
    k, counts = power_law_modes(n_pix, box_size)
    d = np.stack([np.full_like(k, 1.0 / float(a)), -np.log(k)])  # (2, K)
    return 0.5 * np.einsum("ik,jk,k->ij", d, d, counts)


def _field_power(fields, box_size):
    """|delta_k|^2 summed per unique |k| (N, K) for fields (N, n, n), DC excluded."""
    arr, single = square_maps(fields, "fields", "fields")
    binned, _ = binned_mode_power(arr, box_size)
    return binned[:, 1:], arr.shape[-1], single


def power_law_log_likelihood(fields, amplitude, slope, box_size: float = 25.0):
    """Exact ln p(field | A, B) of zero-mean Gaussian fields with P(k) = A k^-B.

    ``fields`` (n, n) or (N, n, n) as ``cosmonb.sims.gaussian_field`` makes them;
    ``amplitude``, ``slope`` broadcastable arrays of shape S. Returns (N,) + S
    (or S for one field). Over the n^2 - 1 non-DC modes, with per-mode variance
    ``S_k = n^2 P(k) / L^2`` of the unnormalised FFT coefficients divided by n:

        ln p = -1/2 sum_k [ |delta_k|^2 / (n^2 S_k) + ln S_k ] + const.

    Example:
        >>> from cosmonb.sims import gaussian_field
        >>> f = gaussian_field(lambda k: 1.0 * k ** -0.5, n_pix=16, n_maps=1, seed=1)
        >>> ll = power_law_log_likelihood(f, [0.5, 1.0], 0.5)
        >>> ll.shape
        (1, 2)
    """
    box_size = check_box_size(box_size)
    binned, n, single = _field_power(fields, box_size)
    a, b = check_amplitude_slope(amplitude, slope)
    k, counts = power_law_modes(n, box_size)
    a_f, b_f = a.ravel(), b.ravel()
    ln_s = (np.log(a_f)[:, None] - b_f[:, None] * np.log(k)[None, :]
            + np.log(n**2 / box_size**2))  # (P, K)
    quad = binned @ np.exp(-ln_s).T / n**2  # (N, P)
    out = -0.5 * (quad + (counts * ln_s).sum(-1)[None] + (n**2 - 1) * np.log(2 * np.pi))
    out = out.reshape((len(binned),) + a.shape)
    return out[0] if single else out


def power_law_score(fields, amplitude, slope, box_size: float = 25.0) -> np.ndarray:
    """Exact score d ln p / d(A, B) of each field, shape (N, 2) (or (2,) for one field).

    ``s_i = 1/2 sum_k (|delta_k|^2 / (n^2 S_k) - 1) d_i ln S_k``: zero mean and
    covariance equal to :func:`power_law_fisher` at the true parameters, which
    is how a Monte Carlo check of the Fisher matrix works.

    Example:
        >>> from cosmonb.sims import gaussian_field
        >>> f = gaussian_field(lambda k: 1.0 * k ** -0.5, n_pix=16, n_maps=3, seed=1)
        >>> power_law_score(f, 1.0, 0.5).shape
        (3, 2)
    """
    box_size = check_box_size(box_size)
    binned, n, single = _field_power(fields, box_size)
    a, b = check_amplitude_slope(amplitude, slope)
    if a.ndim:
        raise ValueError("amplitude, slope: expected scalars (the point where the score is taken)")
    a, b = float(a), float(b)
    k, counts = power_law_modes(n, box_size)
    s_k = n**2 * a * k ** (-b) / box_size**2
    x = binned / (n**2 * s_k) - counts  # sum over the modes of one |k| of (|d|^2/var - 1)
    d = np.stack([np.full_like(k, 1.0 / a), -np.log(k)])  # (2, K)
    score = 0.5 * x @ d.T
    return score[0] if single else score


# --------------------------------------------------------------------------- simulators
def check_theta(theta, n_params, name="theta"):
    """theta as a float array (N, n_params); one row (n_params,) becomes (1, n_params)."""
    arr = as_finite_array(theta, name)
    if arr.ndim == 1 and arr.shape[0] == n_params:
        arr = arr[None]
    check_ndim(arr, name, 2, f"parameters of shape (N, {n_params})")
    if arr.shape[1] != n_params:
        raise ValueError(f"{name}: expected {n_params} columns, got {arr.shape[1]}")
    return arr


def check_indices(indices, n, name="indices"):
    """One non-negative integer random-stream index per row (default 0..n-1)."""
    if indices is None:
        return np.arange(n)
    idx = np.asarray(indices)
    if idx.shape != (n,) or not np.issubdtype(idx.dtype, np.integer) or np.any(idx < 0):
        raise ValueError(f"{name}: expected {n} non-negative integers (one random stream per row)")
    return idx


class PowerLawSimulator:
    """Gaussian random fields with P(k) = A k^-B, one (A, B) per map.

    ``sim(theta (N, 2), seed, indices=None) -> (N, 1, n, n) float32``; row r uses
    the random stream (seed, indices[r]) (default indices 0..N-1), the stream of
    ``cosmonb.sims.gaussian_field``, so the same seed and index give the same
    white noise at every (A, B): that is what makes finite differences
    seed-matched. k in h/Mpc for a box of ``box_size`` Mpc/h.

    Example:
        >>> sim = PowerLawSimulator(n_pix=16)
        >>> a = sim([[1.0, 0.5]], seed=3, indices=[7])
        >>> b = sims.gaussian_field(lambda k: 1.0 * k ** -0.5, n_pix=16, n_maps=8, seed=3)[7]
        >>> bool(np.allclose(a[0, 0], b, atol=1e-6))
        True
    """

    def __init__(self, n_pix: int = 32, box_size: float = 25.0):
        self.n_pix = check_size(n_pix, "n_pix")
        self.box_size = float(box_size)

    def config(self) -> dict:
        return {"kind": "power_law", "n_pix": self.n_pix, "box_size": self.box_size}

    def __call__(self, theta, seed: int = 0, indices=None) -> np.ndarray:
        theta = check_theta(theta, 2)
        if np.any(theta[:, 0] <= 0):
            raise ValueError("theta[:, 0] (A): expected amplitudes A > 0")
        seed = check_seed(seed)
        idx = check_indices(indices, len(theta))
        n = self.n_pix
        k_unique, inverse, _ = sims.fourier_grid(n, self.box_size)
        half = inverse[:, : n // 2 + 1]
        out = np.empty((len(theta), 1, n, n), dtype=np.float32)
        for start in range(0, len(theta), 1000):
            sl = slice(start, start + 1000)
            a, b = theta[sl, 0], theta[sl, 1]
            p = np.zeros((len(a), len(k_unique)))
            p[:, 1:] = a[:, None] * k_unique[None, 1:] ** (-b[:, None])
            sqrt_s = np.sqrt(n**2 * p / self.box_size**2)[:, half]
            noise = np.stack([sims.white_noise(seed, i, n) for i in idx[sl]])
            out[sl, 0] = sims.colour_noise(noise, sqrt_s)
        return out

    def fisher(self, theta) -> np.ndarray:
        """Analytic Fisher matrix of one map at theta (``cosmonb.fisher.power_law_fisher``)."""
        return power_law_fisher(theta[0], theta[1], self.n_pix, self.box_size)

    def score(self, maps, theta) -> np.ndarray:
        """Exact score d ln p(map | theta) / d theta of maps (N, 1, n, n) -> (N, 2)
        (``cosmonb.fisher.power_law_score``): the optimal compression at theta."""
        maps = np.asarray(maps, float)
        return power_law_score(maps.reshape(len(maps), self.n_pix, self.n_pix), theta[0], theta[1], self.box_size)


class LogNormalSimulator:
    """ln Mcdm maps of ``cosmonb.sims`` at (Omega_m, sigma_8), astrophysics at the fiducial.

    ``sim(theta (N, 2), seed, indices=None) -> (N, 1, n, n) float32`` of
    ``ln Mcdm`` (the log transform applied, so the maps are exactly Gaussian);
    row r uses the stream (seed, indices[r]) of ``cosmonb.sims.log_dark_matter``.
    Its exact Fisher matrix is ``cosmonb.sims.fisher_matrix``.

    Example:
        >>> sim = LogNormalSimulator(n_pix=16)
        >>> y = sim([[0.3, 0.8]], seed=1)
        >>> m = sims.simulate([sims.FIDUCIAL], "Mcdm", n_pix=16, seed=1)
        >>> bool(np.allclose(y, np.log(m), atol=1e-4))
        True
    """

    def __init__(self, n_pix: int = 32, box_size: float = sims.BOX_SIZE):
        self.n_pix = check_size(n_pix, "n_pix")
        self.box_size = float(box_size)

    def config(self) -> dict:
        return {"kind": "lognormal", "n_pix": self.n_pix, "box_size": self.box_size}

    def __call__(self, theta, seed: int = 0, indices=None) -> np.ndarray:
        theta = check_theta(theta, 2)
        sims.check_cosmology(theta[:, 0], theta[:, 1])
        seed = check_seed(seed)
        idx = check_indices(indices, len(theta))
        params = np.tile(sims.FIDUCIAL, (len(theta), 1))
        params[:, :2] = theta
        out = np.empty((len(theta), 1, self.n_pix, self.n_pix), dtype=np.float32)
        for start in range(0, len(theta), 500):  # bounds the memory of the spectrum tables
            sl = slice(start, start + 500)
            _, ln_mcdm = sims.log_dark_matter(params[sl], self.n_pix, seed, self.box_size, indices=idx[sl])
            out[sl, 0] = ln_mcdm
        return out

    def fisher(self, theta) -> np.ndarray:
        """Exact Fisher matrix of one ln Mcdm map at theta (``cosmonb.sims.fisher_matrix``)."""
        return sims.fisher_matrix(theta[0], theta[1], self.n_pix, self.box_size)

    def score(self, maps, theta, step: float = 1e-4) -> np.ndarray:
        """Exact score d ln p(map | theta) / d theta of ln Mcdm maps (N, 1, n, n) -> (N, 2):
        central differences (step ``step``) of the exact ``cosmonb.sims.log_likelihood``."""
        om, s8 = float(theta[0]), float(theta[1])
        ll = sims.log_likelihood(np.asarray(maps, float), [om + step, om - step, om, om],
                                 [s8, s8, s8 + step, s8 - step], self.box_size, log_maps=True)
        return np.stack([ll[:, 0] - ll[:, 1], ll[:, 2] - ll[:, 3]], 1) / (2 * step)


def make_simulator(config: dict):
    """A simulator from its config (``sim.config()``): ``{"kind": "power_law" | "lognormal", "n_pix", "box_size"}``.

    Example:
        >>> make_simulator({"kind": "lognormal", "n_pix": 16, "box_size": 25.0}).n_pix
        16
    """
    kinds = {"power_law": PowerLawSimulator, "lognormal": LogNormalSimulator}
    if not isinstance(config, dict) or config.get("kind") not in kinds:
        raise ValueError(f"config: expected a dict with 'kind' in {sorted(kinds)}, got {config!r}")
    return kinds[config["kind"]](n_pix=config["n_pix"], box_size=config["box_size"])


#: The two IMNNs of notebook 01. ``full`` then ``polish`` train the shipped networks
#: (bench/imnn.py), ``refit`` fine-tunes the lognormal one at the observed map's score
