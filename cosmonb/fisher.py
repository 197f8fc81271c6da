r"""Fisher information: analytic matrices, the Cramer-Rao bound, and score compression.

The Fisher matrix of a likelihood p(d | theta) is

    F_ij = < d_i ln p  d_j ln p > = - < d_i d_j ln p >,

the covariance of the score ``s = grad_theta ln p``. Its inverse bounds the
covariance of any unbiased estimator (Cramer-Rao): ``Cov(theta_hat) >= F^-1``,
so ``sqrt((F^-1)_ii)`` is the smallest error bar on theta_i once the other
parameters are marginalised, and ``1 / sqrt(F_ii)`` the smallest with them fixed.

Three Fisher matrices live here:

* **n normal draws** x_1..x_n ~ N(mu, sigma^2), theta = (mu, sigma):
  ``F = n diag(1 / sigma^2, 2 / sigma^2)`` (:func:`normal_fisher`).
* **A Gaussian random field with P(k) = A k^-B** on an n x n periodic grid
  (:func:`power_law_fisher`). The field is real, so its Fourier modes pair up,
  ``delta_-k = conj(delta_k)``. The independent modes are one half-plane of the
  FFT grid: each pair (k, -k) is one complex Gaussian mode (two real degrees of
  freedom, real and imaginary part, each of variance n^2 S_k / 2), and the
  self-conjugate modes at the Nyquist frequencies, (n/2, 0), (0, n/2) and
  (n/2, n/2) for even n, are real (one degree of freedom, variance n^2 S_k).
  The DC mode is zero. That is n^2 - 1 real degrees of freedom, and each one
  carries ``1/2 (d_i ln P)(d_j ln P)``, so

      F_ij = 1/2 sum_{k != 0 on the full n x n grid} d_i ln P(k) d_j ln P(k),

  with ``d_A ln P = 1 / A`` and ``d_B ln P = -ln k``. (Summing over the full
  grid and halving is the same as summing the independent half-plane with
  weight 1 per complex mode and 1/2 per real mode.)
* **Gaussian summaries** t with mean mu(theta) and a parameter-independent
  covariance C: ``F = (d mu)^T C^-1 (d mu)`` (:func:`gaussian_fisher`), estimated
  from simulations by :func:`summary_statistics` (mean and covariance from
  fiducial simulations, d mu / d theta from seed-matched finite differences).
  This is the Fisher matrix an IMNN maximises.

Score (quasi maximum-likelihood) compression (Alsing & Wandelt 2018) maps a
summary to a parameter estimate,

    theta_hat = theta_fid + F^-1 (d mu)^T C^-1 (t - mu),

which is unbiased to first order around theta_fid and, for summaries that keep
all the information, has covariance F^-1 (:func:`score_compress`).

Example:
    >>> F = normal_fisher(100, mu=0.0, sigma=2.0)
    >>> cramer_rao(F)["marginal_std"]
    array([0.2       , 0.14142136])
    >>> F = power_law_fisher(1.0, 0.5, n_pix=32, box_size=25.0)
    >>> bool(np.all(np.linalg.eigvalsh(F) > 0))
    True
"""
from __future__ import annotations


import numpy as np

from ._checks import as_finite_array, check_ndim, check_size
# the power-law field's exact likelihood lives beside its simulator; re-exported here
from .sims.simulators import power_law_fisher, power_law_log_likelihood, power_law_modes, power_law_score

__all__ = [
    "normal_fisher", "cramer_rao", "power_law_modes", "power_law_fisher",
    "power_law_log_likelihood", "power_law_score",
    "monte_carlo_fisher", "gaussian_fisher", "summary_statistics", "score_compress",
    "check_covariance", "check_step", "SummaryStatistics",
]

#: condition number above which a covariance is treated as singular
MAX_CONDITION = 1e12


# --------------------------------------------------------------------------- checks
def check_step(delta, n_params: int | None = None, name: str = "delta") -> np.ndarray:
    """Finite-difference steps as a positive array (n_params,); a scalar is broadcast.

    A zero or negative step raises ValueError saying what to change.

    Example:
        >>> check_step(0.1, 2)
        array([0.1, 0.1])
        >>> check_step([0.1, 0.0])
        Traceback (most recent call last):
        ...
        ValueError: delta: finite-difference steps must be > 0 (one per parameter), got [0.1 0. ]; use a small positive step such as 1-5% of the parameter's prior width
    """
    arr = as_finite_array(delta, name)
    if arr.ndim == 0 and n_params is not None:
        arr = np.full(n_params, float(arr))
    arr = np.atleast_1d(arr)
    check_ndim(arr, name, 1, "one step per parameter")
    if n_params is not None and arr.shape[0] != n_params:
        raise ValueError(f"{name}: expected {n_params} steps (one per parameter), got {arr.shape[0]}")
    if np.any(arr <= 0):
        raise ValueError(f"{name}: finite-difference steps must be > 0 (one per parameter), got {arr}; "
                         "use a small positive step such as 1-5% of the parameter's prior width")
    return arr


def check_covariance(cov, name: str = "cov") -> np.ndarray:
    """Return ``cov`` as a symmetric positive-definite matrix or raise ValueError.

    A singular (or nearly singular, condition number > 1e12) covariance means
    some summaries are constant or exact linear combinations of others: drop or
    combine them, or use more (and more varied) simulations.

    Example:
        >>> check_covariance([[1.0, 1.0], [1.0, 1.0]])
        Traceback (most recent call last):
        ...
        ValueError: cov: the covariance is singular (eigenvalues [0. 2.]): some summaries are constant or exact linear combinations of others; drop or combine them, or use more (and more varied) simulations
    """
    c = as_finite_array(cov, name)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"{name}: expected a square matrix, got shape {c.shape}")
    c = 0.5 * (c + c.T)
    eig = np.linalg.eigvalsh(c)
    if eig[-1] <= 0 or eig[0] <= eig[-1] / MAX_CONDITION:
        raise ValueError(f"{name}: the covariance is singular (eigenvalues {np.round(eig, 12) + 0.0}): "
                         "some summaries are constant or exact linear combinations of others; "
                         "drop or combine them, or use more (and more varied) simulations")
    return c


# --------------------------------------------------------------------------- simple cases
def normal_fisher(n, mu=0.0, sigma=1.0) -> np.ndarray:
    """Fisher matrix of n independent draws from N(mu, sigma^2) for theta = (mu, sigma).

    ``ln p = -n ln sigma - sum (x - mu)^2 / (2 sigma^2)``, so
    ``F = n diag(1 / sigma^2, 2 / sigma^2)`` (no mu-sigma correlation). It does
    not depend on mu; ``mu`` is accepted for readability.

    Example:
        >>> normal_fisher(10, sigma=1.0)
        array([[10.,  0.],
               [ 0., 20.]])
    """
    n = check_size(n, "n")
    as_finite_array(mu, "mu")
    sigma = float(as_finite_array(sigma, "sigma"))
    if sigma <= 0:
        raise ValueError(f"sigma: expected a standard deviation > 0, got {sigma}")
    return n * np.diag([1.0 / sigma**2, 2.0 / sigma**2])


def cramer_rao(fisher) -> dict:
    """The Cramer-Rao bound of a Fisher matrix.

    Returns ``{"covariance": F^-1, "marginal_std": sqrt(diag F^-1),
    "conditional_std": 1 / sqrt(diag F), "correlation": the correlation matrix of F^-1}``.
    No unbiased estimator has a smaller covariance than ``F^-1``.

    Example:
        >>> cramer_rao([[4.0, 0.0], [0.0, 1.0]])["marginal_std"]
        array([0.5, 1. ])
    """
    f = check_covariance(fisher, "fisher")
    inv = np.linalg.inv(f)
    std = np.sqrt(np.diag(inv))
    return {"covariance": inv, "marginal_std": std, "conditional_std": 1.0 / np.sqrt(np.diag(f)),
            "correlation": inv / np.outer(std, std)}


def monte_carlo_fisher(scores) -> np.ndarray:
    """Fisher matrix estimated as the covariance of simulated scores (N, P).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> F = monte_carlo_fisher(rng.normal(size=(20000, 2)) * [1.0, 2.0])
        >>> np.round(np.diag(F), 1)
        array([1., 4.])
    """
    s = as_finite_array(scores, "scores")
    check_ndim(s, "scores", 2, "scores of shape (n_sims, n_params)")
    if len(s) < s.shape[1] + 2:
        raise ValueError(f"scores: {len(s)} simulations are too few for a {s.shape[1]} x {s.shape[1]} "
                         f"covariance; use at least {s.shape[1] + 2} (and ideally hundreds)")
    return np.atleast_2d(np.cov(s, rowvar=False))


# --------------------------------------------------------------------------- Gaussian summaries
def gaussian_fisher(dmu_dtheta, cov) -> np.ndarray:
    """F = (d mu)^T C^-1 (d mu) for summaries with mean derivative (n_summaries, n_params).

    Example:
        >>> gaussian_fisher([[1.0, 0.0], [0.0, 2.0]], np.eye(2))
        array([[1., 0.],
               [0., 4.]])
    """
    dmu = as_finite_array(dmu_dtheta, "dmu_dtheta")
    if dmu.ndim == 1:
        dmu = dmu[:, None]
    check_ndim(dmu, "dmu_dtheta", 2, "an array (n_summaries, n_params)")
    c = check_covariance(cov, "cov")
    if c.shape[0] != dmu.shape[0]:
        raise ValueError(f"cov: expected {dmu.shape[0]} x {dmu.shape[0]} to match dmu_dtheta's "
                         f"{dmu.shape[0]} summaries, got {c.shape}")
    return dmu.T @ np.linalg.solve(c, dmu)


class SummaryStatistics:
    """Mean, covariance and mean derivative of summaries at a fiducial point, and their Fisher matrix.

    Made by :func:`summary_statistics`. Attributes: ``theta_fid`` (P,), ``mean``
    (S,), ``cov`` (S, S), ``dmu_dtheta`` (S, P), ``fisher`` (P, P), ``n_sims``,
    ``n_derivative_sims``. ``estimate(t)`` is score compression (quasi-MLE).
    """

    def __init__(self, theta_fid, mean, cov, dmu_dtheta, n_sims=0, n_derivative_sims=0):
        self.theta_fid = as_finite_array(theta_fid, "theta_fid").ravel()
        self.mean = as_finite_array(mean, "mean").ravel()
        self.cov = check_covariance(cov, "cov")
        self.dmu_dtheta = as_finite_array(dmu_dtheta, "dmu_dtheta").reshape(len(self.mean), -1)
        if self.dmu_dtheta.shape[1] != len(self.theta_fid):
            raise ValueError(f"dmu_dtheta: expected {len(self.theta_fid)} columns (one per parameter), "
                             f"got {self.dmu_dtheta.shape[1]}")
        self.fisher = gaussian_fisher(self.dmu_dtheta, self.cov)
        check_covariance(self.fisher, "fisher (of these summaries)")
        self.n_sims, self.n_derivative_sims = int(n_sims), int(n_derivative_sims)

    @property
    def det_fisher(self) -> float:
        """det F."""
        return float(np.linalg.det(self.fisher))

    def estimate(self, summaries) -> np.ndarray:
        """Score compression: theta_hat = theta_fid + F^-1 dmu^T C^-1 (t - mu), for t (N, S) or (S,)."""
        t = as_finite_array(summaries, "summaries")
        single = t.ndim == 1
        t = t[None] if single else t
        check_ndim(t, "summaries", 2, "summaries of shape (N, n_summaries) or (n_summaries,)")
        if t.shape[1] != len(self.mean):
            raise ValueError(f"summaries: expected {len(self.mean)} summaries per row, got {t.shape[1]}")
        est = self.theta_fid + np.linalg.solve(self.fisher,
                                               self.dmu_dtheta.T @ np.linalg.solve(self.cov, (t - self.mean).T)).T
        return est[0] if single else est

    def to_dict(self) -> dict:
        """Plain arrays (for checkpoints)."""
        return {"theta_fid": self.theta_fid, "mean": self.mean, "cov": self.cov,
                "dmu_dtheta": self.dmu_dtheta, "n_sims": self.n_sims,
                "n_derivative_sims": self.n_derivative_sims}

    @classmethod
    def from_dict(cls, data: dict) -> "SummaryStatistics":
        """Inverse of :meth:`to_dict` (tensors accepted)."""
        get = lambda key: np.asarray(data[key].numpy() if hasattr(data[key], "numpy") else data[key],
                                     dtype=float)
        return cls(get("theta_fid"), get("mean"), get("cov"), get("dmu_dtheta"),
                   int(data.get("n_sims", 0)), int(data.get("n_derivative_sims", 0)))

    def __repr__(self):
        return (f"SummaryStatistics(theta_fid={self.theta_fid}, det F={self.det_fisher:.6g}, "
                f"n_sims={self.n_sims}, n_derivative_sims={self.n_derivative_sims})")


def summary_statistics(fiducial, plus, minus, delta, theta_fid) -> SummaryStatistics:
    """Gaussian-summary statistics from simulations at a fiducial point.

    ``fiducial`` (n_s, S): summaries of simulations at theta_fid (mean and
    covariance); ``plus``, ``minus`` (P, n_d, S): summaries of seed-matched
    simulations at theta_fid +- delta_i e_i (row j of plus[i] and minus[i] share a
    seed), so ``d mu / d theta_i = mean_j (plus[i, j] - minus[i, j]) / (2 delta_i)``;
    ``delta`` (P,) the steps (> 0). Returns :class:`SummaryStatistics`.

    Too few fiducial simulations for the covariance (n_s <= S + 1), a zero or
    negative step, or a singular covariance raise ValueError saying what to change.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fid = rng.normal(size=(500, 2))
        >>> eps = rng.normal(size=(1, 100, 2))
        >>> stats = summary_statistics(fid, eps + [[[0.1, 0.0]]], eps - [[[0.1, 0.0]]], [0.1], [0.0])
        >>> np.round(stats.dmu_dtheta.ravel(), 6)
        array([1., 0.])
    """
    t = as_finite_array(fiducial, "fiducial")
    check_ndim(t, "fiducial", 2, "summaries of shape (n_sims, n_summaries)")
    n_s, n_sum = t.shape
    p = as_finite_array(plus, "plus")
    m = as_finite_array(minus, "minus")
    check_ndim(p, "plus", 3, "summaries of shape (n_params, n_derivative_sims, n_summaries)")
    if p.shape != m.shape:
        raise ValueError(f"minus: expected the shape of plus {p.shape} (seed-matched pairs), got {m.shape}")
    if p.shape[2] != n_sum:
        raise ValueError(f"plus: expected {n_sum} summaries per simulation like fiducial, got {p.shape[2]}")
    n_params, n_d = p.shape[:2]
    theta = as_finite_array(theta_fid, "theta_fid").ravel()
    if len(theta) != n_params:
        raise ValueError(f"theta_fid: expected {n_params} values (one per parameter), got {len(theta)}")
    step = check_step(delta, n_params)
    if n_s <= n_sum + 1:
        raise ValueError(f"fiducial: {n_s} simulations are too few to estimate a {n_sum} x {n_sum} "
                         f"covariance; use at least {n_sum + 2} (in practice hundreds, >> n_summaries)")
    if n_d < 1:
        raise ValueError("plus, minus: expected at least one derivative simulation per parameter")
    mean = t.mean(0)
    cov = np.atleast_2d(np.cov(t, rowvar=False))
    dmu = ((p - m).mean(1) / (2 * step[:, None])).T  # (S, P)
    return SummaryStatistics(theta, mean, cov, dmu, n_s, n_d)


def score_compress(summaries, theta_fid, mean, cov, dmu_dtheta) -> np.ndarray:
    """theta_hat = theta_fid + F^-1 (d mu)^T C^-1 (t - mu) for summaries t (N, S) or (S,).

    Example:
        >>> score_compress([1.0, 2.0], [0.0, 0.0], [0.0, 0.0], np.eye(2), 2 * np.eye(2))
        array([0.5, 1. ])
    """
    return SummaryStatistics(theta_fid, mean, cov, dmu_dtheta).estimate(summaries)
