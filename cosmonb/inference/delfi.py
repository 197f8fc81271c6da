r"""DELFI: density-estimation likelihood-free inference on compressed summaries.

DELFI (Alsing, Wandelt & Feeney 2018; Alsing, Charnock, Feeney & Wandelt 2019) fits a
conditional density q(t | theta) (here a masked autoregressive flow from zuko) to pairs
(theta, t) and reads the posterior as ``q(t_obs | theta) p(theta)``. In sequential
rounds the next thetas are drawn from the current posterior, so simulations
concentrate where the posterior lives (:class:`Delfi`). With two parameters the
posterior is tabulated exactly on a grid, no MCMC needed.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .._checks import as_finite_array, check_int
from ..models.flows import ConditionalMAF
from ..runtime import check_seed
from ..train import fit
from .abc import BoxPrior
from .compare import sample_grid_posterior
from ..posteriors import GridPosterior

__all__ = ["Delfi"]


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
