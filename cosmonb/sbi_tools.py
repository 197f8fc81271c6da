r"""Simulation-based inference on compressed summaries: simulators, ABC and DELFI.

Once a field is compressed to one number per parameter (an IMNN's score
estimate, :mod:`cosmonb.models.imnn`), two likelihood-free methods turn
summaries of simulations into a posterior:

* **ABC** (approximate Bayesian computation, rejection): draw theta from the
  prior, simulate, compress, keep theta when the summary lands within epsilon of
  the observed one. With score-compressed summaries theta_hat the natural
  distance is the Fisher metric,
  ``rho = sqrt((t - t_obs)^T F (t - t_obs))``, which measures the gap in units
  of the expected error bars (:func:`abc_rejection`).
* **DELFI** (density-estimation likelihood-free inference; Alsing, Wandelt &
  Feeney 2018; Alsing, Charnock, Feeney & Wandelt 2019): fit a conditional
  density q(t | theta) (here a masked autoregressive flow from zuko) to pairs
  (theta, t) and read the posterior as ``q(t_obs | theta) p(theta)``. In
  sequential rounds the next thetas are drawn from the current posterior, so
  simulations concentrate where the posterior lives (:class:`Delfi`). With two
  parameters the posterior is tabulated exactly on a grid, no MCMC needed.

The simulators here give maps for a batch of parameters, every row with its own
random stream ``(seed, indices[r])``, so seed-matched finite differences are
``sim(theta + delta, seed, idx)`` and ``sim(theta - delta, seed, idx)``:

* :class:`PowerLawSimulator` -- Gaussian fields with P(k) = A k^-B, the same maps
  as ``cosmonb.sims.gaussian_field`` for the same seed and index.
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

import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import sims
from ._checks import as_finite_array, check_ndim
from .inference import GridPosterior
from .runtime import check_seed
from ._checks import check_int, check_size

__all__ = ["PowerLawSimulator", "LogNormalSimulator", "BoxPrior", "abc_rejection", "ABCResult",
           "Delfi", "fisher_distance", "sample_grid_posterior", "compare_to_exact", "sample_moments", "PRESETS", "train_preset",
           "train_recipe", "make_simulator"]


# --------------------------------------------------------------------------- simulators
def _check_theta(theta, n_params, name="theta"):
    arr = as_finite_array(theta, name)
    if arr.ndim == 1 and arr.shape[0] == n_params:
        arr = arr[None]
    check_ndim(arr, name, 2, f"parameters of shape (N, {n_params})")
    if arr.shape[1] != n_params:
        raise ValueError(f"{name}: expected {n_params} columns, got {arr.shape[1]}")
    return arr


def _check_indices(indices, n, name="indices"):
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
        theta = _check_theta(theta, 2)
        if np.any(theta[:, 0] <= 0):
            raise ValueError("theta[:, 0] (A): expected amplitudes A > 0")
        seed = check_seed(seed)
        idx = _check_indices(indices, len(theta))
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
        from .fisher import power_law_fisher

        return power_law_fisher(theta[0], theta[1], self.n_pix, self.box_size)

    def score(self, maps, theta) -> np.ndarray:
        """Exact score d ln p(map | theta) / d theta of maps (N, 1, n, n) -> (N, 2)
        (``cosmonb.fisher.power_law_score``): the optimal compression at theta."""
        from .fisher import power_law_score

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
        theta = _check_theta(theta, 2)
        sims.check_cosmology(theta[:, 0], theta[:, 1])
        seed = check_seed(seed)
        idx = _check_indices(indices, len(theta))
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


# --------------------------------------------------------------------------- prior
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


# --------------------------------------------------------------------------- ABC
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
    from .fisher import check_covariance

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


# --------------------------------------------------------------------------- posteriors
def sample_grid_posterior(post: GridPosterior, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples from a grid posterior: a cell by its mass, then uniform within the cell.

    Example:
        >>> x = np.linspace(-3, 3, 61)
        >>> post = GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2))
        >>> s = sample_grid_posterior(post, 20000, np.random.default_rng(0))
        >>> np.round(s.std(0), 1)
        array([1., 1.])
    """
    flat = post.prob.ravel()
    cells = rng.choice(flat.size, size=n, p=flat / flat.sum())
    i, j = np.unravel_index(cells, post.prob.shape)
    dx = np.gradient(post.x)[i]
    dy = np.gradient(post.y)[j]
    return np.stack([post.x[i] + (rng.random(n) - 0.5) * dx, post.y[j] + (rng.random(n) - 0.5) * dy], 1)


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


# --------------------------------------------------------------------------- DELFI
class Delfi:
    """Sequential neural likelihood estimation on compressed summaries (DELFI).

    ``Delfi(prior, simulate_compress, scale, ...)`` with ``simulate_compress(theta
    (N, P), seed, indices) -> t (N, P)`` and ``scale`` (P,): typical error bars of
    the summaries (e.g. the Fisher errors), used to standardise parameters and
    summaries for the flow. ``run(observed, rounds, sims_per_round)`` does

        round 1: theta ~ prior; round r > 1: theta ~ current posterior (on the grid)
        simulate + compress -> train q(t | theta) on all pairs so far -> posterior
        p(theta | t_obs) proportional to q(t_obs | theta) p(theta) on an n_grid^2 grid.

    q is a conditional masked autoregressive flow
    (:class:`cosmonb.models.flows.ConditionalMAF`, zuko's ``MAF``) trained with
    ``cosmonb.train.fit`` (through its ``loss``) by maximum likelihood, with early stopping on a
    held-out 10%. A likelihood estimate is valid whatever the proposal, so
    every round retrains on all simulations run so far.

    Example:
        >>> prior = BoxPrior([-2.0, -2.0], [2.0, 2.0])
        >>> sc = lambda th, seed, idx: th + 0.2 * np.random.default_rng([seed, int(idx[0])]).normal(size=th.shape)
        >>> d = Delfi(prior, sc, scale=[0.2, 0.2], n_grid=40, epochs=100, seed=0)
        >>> posts = d.run([0.3, -0.5], rounds=1, sims_per_round=300)
        >>> bool(np.all(np.abs(posts[-1].mean - [0.3, -0.5]) < 0.15))
        True
    """

    def __init__(self, prior: BoxPrior, simulate_compress, scale, *, n_grid: int = 80,
                 hidden: int = 32, transforms: int = 3, epochs: int = 300, lr: float = 3e-3,
                 batch_size: int = 128, patience: int = 20, seed: int = 0, progress: bool = False,
                 names=("theta_0", "theta_1")):
        self.prior = prior
        self.simulate_compress = simulate_compress
        self.scale = as_finite_array(scale, "scale").ravel()
        if np.any(self.scale <= 0) or len(self.scale) != prior.dim:
            raise ValueError(f"scale: expected {prior.dim} positive error bars, got {self.scale}")
        self.n_grid, self.hidden, self.transforms = int(n_grid), int(hidden), int(transforms)
        self.epochs, self.lr, self.batch_size, self.patience = int(epochs), float(lr), int(batch_size), int(patience)
        self.seed = check_seed(seed)
        self.progress = progress
        self.names = tuple(names)
        self.theta = np.empty((0, prior.dim))
        self.summaries = np.empty((0, prior.dim))
        self.posteriors: list[GridPosterior] = []
        self.sims_per_round: list[int] = []
        self.flow = None
        self.seconds = 0.0
        self._centre = 0.5 * (prior.low + prior.high)

    @property
    def n_sims(self) -> int:
        return len(self.theta)

    def _standardise(self, theta, t):
        th = torch.as_tensor((theta - self._centre) / (self.prior.high - self.prior.low) * 4, dtype=torch.float32)
        tt = torch.as_tensor((t - self._centre) / self.scale, dtype=torch.float32)
        return th, tt

    def _train(self):
        from .models.flows import ConditionalMAF
        from .train import fit

        torch.manual_seed(self.seed + 7919 * len(self.sims_per_round))
        self.flow = ConditionalMAF(features=self.prior.dim, context=self.prior.dim,
                                   transforms=self.transforms, hidden=(self.hidden, self.hidden))
        th, tt = self._standardise(self.theta, self.summaries)
        rng = np.random.default_rng([self.seed, len(self.sims_per_round)])
        perm = rng.permutation(len(th))
        n_val = max(len(th) // 10, 1)
        val, train = perm[:n_val], perm[n_val:]
        val_data = [(tt[val], th[val])]  # (x, cond): q(t | theta)
        batch = self.batch_size

        def train_data(epoch):
            order = train[np.random.default_rng([self.seed, len(self.sims_per_round), epoch]).permutation(len(train))]
            return [(tt[order[i:i + batch]], th[order[i:i + batch]]) for i in range(0, len(order), batch)]

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny MLP: extra threads only add overhead
        try:
            self.history = fit(self.flow, None, train_data, val_data, epochs=self.epochs, lr=self.lr,
                               patience=self.patience, device="cpu", progress=self.progress)
        finally:
            torch.set_num_threads(threads)

    def log_likelihood(self, observed, theta) -> np.ndarray:
        """ln q(t_obs | theta) for theta (M, P), up to the constant Jacobian of the standardisation."""
        if self.flow is None:
            raise RuntimeError("Delfi: no flow trained yet; call run() first")
        th, tt = self._standardise(np.atleast_2d(theta), np.broadcast_to(observed, np.atleast_2d(theta).shape))
        with torch.no_grad():
            return self.flow.log_prob(tt, th).double().numpy()

    def posterior(self, observed) -> GridPosterior:
        """The current posterior of ``observed`` on the prior's n_grid^2 grid (flat prior)."""
        x, y = self.prior.grid(self.n_grid)
        gx, gy = np.meshgrid(x, y, indexing="ij")
        ll = self.log_likelihood(observed, np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gx.shape)
        return GridPosterior(x, y, ll, names=self.names)

    def run(self, observed, rounds: int = 3, sims_per_round=500) -> list[GridPosterior]:
        """Run ``rounds`` rounds (appending to earlier ones); returns the posterior after each."""
        obs = as_finite_array(observed, "observed").ravel()
        if len(obs) != self.prior.dim:
            raise ValueError(f"observed: expected {self.prior.dim} summaries, got {len(obs)}")
        check_int(rounds, "rounds", 1)
        per_round = [sims_per_round] * rounds if np.ndim(sims_per_round) == 0 else list(sims_per_round)
        if len(per_round) != rounds or any(int(n) < 20 for n in per_round):
            raise ValueError("sims_per_round: expected one count >= 20 per round (a flow needs data)")
        start = time.perf_counter()
        for n in per_round:
            r = len(self.sims_per_round)
            rng = np.random.default_rng([self.seed, 0xDE1F, r])
            if r == 0:
                theta = self.prior.sample(int(n), rng)
            else:
                theta = sample_grid_posterior(self.posteriors[-1], int(n), rng)
                theta = np.clip(theta, self.prior.low, self.prior.high)
            idx = np.arange(self.n_sims, self.n_sims + int(n))
            t = np.asarray(self.simulate_compress(theta, self.seed, idx), float)
            self.theta = np.concatenate([self.theta, theta])
            self.summaries = np.concatenate([self.summaries, t])
            self.sims_per_round.append(int(n))
            self._train()
            self.posteriors.append(self.posterior(obs))
        self.seconds += time.perf_counter() - start
        return self.posteriors


# --------------------------------------------------------------------------- IMNN presets
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
#: estimate; ``quick`` is the seconds-long smoke test of the notebook's quick mode.
_MODEL = {"widths": [8, 16, 16, 16, 16], "hidden": 64, "activation": "silu", "convs_per_level": 1, "moments": True}
# "polish" continues a trained network on larger fresh simulation sets per step (3x the grf and 5x the lognormal
# full stage) with a 5x smaller step
_POLISH = {"n_s": 1000, "n_d": 500, "epochs": 400, "lr": 2e-3, "lam": 2.0, "n_s_val": 1000, "n_d_val": 500}
# quick: a smaller step than the full stage's; 1e-2 left a 60-step run anywhere between 0.1 and 0.8
_QUICK = {"n_s": 60, "n_d": 30, "epochs": 60, "lr": 3e-3, "lam": 2.0, "n_s_val": 150, "n_d_val": 75}
_TEST = {"test": {"n_s": 20000, "n_d": 2500}, "quick_test": {"n_s": 600, "n_d": 100}}
PRESETS = {
    "grf": {
        "simulator": {"kind": "power_law", "n_pix": 32, "box_size": 25.0},
        "theta_fid": [1.0, 0.5], "delta": [0.05, 0.05],
        "prior": {"low": [0.5, 0.1], "high": [1.5, 0.9]},
        "model": _MODEL,
        "full": {"n_s": 300, "n_d": 150, "epochs": 1500, "lr": 1e-2, "lam": 2.0, "n_s_val": 500, "n_d_val": 250},
        "polish": _POLISH, "quick": _QUICK, **_TEST,
    },
    "lognormal": {
        "simulator": {"kind": "lognormal", "n_pix": 32, "box_size": float(sims.BOX_SIZE)},
        "theta_fid": [0.3, 0.8], "delta": [0.01, 0.01],
        "prior": {"low": [0.1, 0.6], "high": [0.5, 1.0]},
        "model": _MODEL,
        "full": {"n_s": 200, "n_d": 100, "epochs": 800, "lr": 1e-2, "lam": 2.0, "n_s_val": 500, "n_d_val": 250},
        "polish": _POLISH,
        "refit": {"n_s": 200, "n_d": 100, "epochs": 200, "lr": 2e-3, "lam": 2.0, "n_s_val": 500, "n_d_val": 250},
        "quick": _QUICK, **_TEST,
    },
}


def train_preset(name: str, stage: str = "full", *, theta_fid=None, init_model=None, seed: int = 0,
                 test_seed: int = 10_000, progress: bool = True, epochs: int | None = None):
    """Train one of :data:`PRESETS` and measure its Fisher saturation on an independent test set.

    ``stage``: ``"full"`` (train from scratch), ``"polish"`` (continue ``init_model``
    with larger simulation sets and a smaller step), ``"refit"`` (fine-tune
    ``init_model`` at a new ``theta_fid``, the slides' second step) or ``"quick"``
    (seconds). Returns ``(compressor, training, metrics)``: an
    :class:`~cosmonb.models.imnn.IMNNCompressor` whose statistics come from the
    test set, the :class:`~cosmonb.models.imnn.IMNNTraining`, and a dict with
    ``saturation`` (det F_IMNN / det F_exact on the test set), ``det_fisher``,
    ``det_fisher_exact``, ``train_seconds``, ``epochs`` and ``saturation_curve``
    (the validation saturation per epoch, paired with the exact score, at most 200
    points); ``saturation_paired``
    is the same ratio paired with the exact score (see ``imnn.measure_saturation``).
    """
    import copy

    from .models import imnn

    if name not in PRESETS:
        raise ValueError(f"name: expected one of {sorted(PRESETS)}, got {name!r}")
    preset = PRESETS[name]
    stages = [k for k, v in preset.items() if isinstance(v, dict) and "epochs" in v]  # the training stages
    if stage not in stages:
        raise ValueError(f"stage: expected one of {stages}, got {stage!r}")
    if stage in ("polish", "refit") and init_model is None:
        raise ValueError(f"init_model: the {stage!r} stage continues a trained network; pass it")
    cfg = dict(preset[stage])
    if epochs is not None:
        cfg["epochs"] = int(epochs)
    sim = make_simulator(preset["simulator"])
    theta = np.asarray(preset["theta_fid"] if theta_fid is None else theta_fid, float)
    delta = np.asarray(preset["delta"], float)
    from .runtime import seed_everything

    seed_everything(seed)  # the initial weights
    if init_model is not None:
        model = copy.deepcopy(init_model)
    else:
        model = imnn.IMNN(n_params=2, in_channels=1, **preset["model"])
    reference = sim.fisher(theta)
    from .recipes.imnn import train_imnn

    training = train_imnn(model, sim, theta, delta, n_s=cfg["n_s"], n_d=cfg["n_d"], epochs=cfg["epochs"],
                          lr=cfg["lr"], lam=cfg.get("lam", 10.0), n_s_val=cfg["n_s_val"], n_d_val=cfg["n_d_val"],
                          exact_score=sim.score, seed=seed, progress=progress,
                          device="cpu", initialise=init_model is None)
    test_cfg = preset["quick_test" if stage == "quick" else "test"]
    measured = imnn.measure_saturation(model, sim, theta, delta, reference, n_s=test_cfg["n_s"],
                                       n_d=test_cfg["n_d"], seed=test_seed, exact_score=sim.score)
    stats = measured["stats"]
    curve = np.asarray(training.saturation)
    stride = max(1, int(np.ceil(len(curve) / 200)))
    metrics = {"saturation": measured["saturation"], "saturation_stderr": measured["stderr"],
               "saturation_paired": measured["saturation_paired"], "saturation_paired_stderr": measured["stderr_paired"],
               "test_sims": {"fiducial": stats.n_sims, "derivative_pairs_per_param": stats.n_derivative_sims},
               "det_fisher": stats.det_fisher, "det_fisher_exact": float(np.linalg.det(reference)),
               "train_seconds": training.history.seconds, "epochs": training.history.epochs,
               "saturation_curve": curve[::stride].tolist(), "saturation_curve_stride": stride,
               "theta_fid": theta.tolist()}
    return imnn.IMNNCompressor(model, stats), training, metrics


def train_recipe(name: str, *, quick: bool = False, seed: int = 0, resume=None, progress: bool = True):
    """Train one network of notebook 01 the way the shipped one was made.

    The ``full`` stage of :data:`PRESETS` from scratch, then ``polish`` (seed + 7);
    ``quick=True``: the ``quick`` stage alone (seconds). ``resume=(model, metrics)``
    (as ``imnn.load_imnn`` gives them) skips the full stage and polishes ``model``.
    Returns ``(compressor, metrics)``: the last stage's metrics with ``epochs`` and
    ``train_seconds`` summed over the stages, ``train_seconds_by_stage``, the full
    stage's ``saturation_curve`` and the polish stage's ``polish_saturation_curve``.
    """
    if quick:
        comp, _, metrics = train_preset(name, "quick", seed=seed, progress=progress)
        return comp, metrics
    if resume is None:
        comp, _, first = train_preset(name, "full", seed=seed, progress=progress)
        model = comp.model
    else:
        model, first = resume
    comp, _, metrics = train_preset(name, "polish", init_model=model, seed=seed + 7, progress=progress)
    by_stage = dict(first.get("train_seconds_by_stage", {"full": first["train_seconds"]}))
    by_stage["polish"] = by_stage.get("polish", 0.0) + metrics["train_seconds"]  # polishing again adds up
    # polishing a polished network again continues its polish curve
    metrics.update(polish_saturation_curve=first.get("polish_saturation_curve", []) + metrics.pop("saturation_curve"),
                   polish_saturation_curve_stride=metrics.pop("saturation_curve_stride"),
                   polish_epochs=first.get("polish_epochs", 0) + metrics["epochs"],
                   epochs=first["epochs"] + metrics["epochs"],
                   saturation_curve=first["saturation_curve"], saturation_curve_stride=first["saturation_curve_stride"],
                   train_seconds=sum(by_stage.values()), train_seconds_by_stage=by_stage)
    return comp, metrics
