r"""Every way notebooks 00-05 infer (Omega_m, sigma_8), as ``method.posterior(map) -> Posterior``, and a scorer.

Notebook 06 puts them side by side on the same held-out parameter draws, against the
exact posterior the built-in simulator knows. Each method sees the maps it was built
for (fields and resolution) and is scored against the exact posterior of *those* maps:

* ``exact`` (Mcdm, 32^2): ``sims.exact_posterior``, the exact likelihood with a flat prior;
* ``power_spectrum`` (Mcdm, 32^2): a Gaussian likelihood of the binned log P(k) (emulated mean,
  covariance at the fiducial point): the classical baseline;
* ``imnn_delfi`` (Mcdm, 32^2): the shipped IMNN (Makinen et al. 2021) compresses, DELFI (Alsing
  et al. 2019) fits q(t | theta);
* ``imnn_npe`` (Mcdm, 32^2): ``sbi`` NPE q(theta | t) on the same simulations and summaries;
* ``cnn_moments`` (Mcdm, 32^2): a CNN trained on maps for the posterior mean and covariance (a
  moment network, Jeffrey & Wandelt 2020; a Gaussian posterior);
* ``ddpm_l0`` (Mcdm at the emulator's size): the L_0 term of the DDPM emulator (Mudur et al. 2023)
  on a grid over the prior, against ``exact_ddpm`` (the exact posterior of those maps);
* ``higlow`` (HI, 64^2): HIGlow's eq. 2 (Friedman & Hassan 2022) on a grid over the prior, against
  ``exact_marginalised_hi`` (``sims.marginal_posterior``: the feedback marginalised by emcee);
* ``vdvae_npe`` (Mgas, HI, B, 64^2): NPE on the VDVAE's latent code (Andrianomena & Hassan 2023),
  against ``exact_marginalised_gas``.

:func:`score_methods` turns posteriors into the table of notebook 06 and ``bench/inference.py``:
the RMSE of the posterior mean and its ratio to the exact posterior's on the same maps,
HPD coverage at 68% and 95%, the area of the 68% region relative to the exact one, TARP
(Lemos et al. 2023) and SBC (Talts et al. 2018), seconds per map and simulations used.

Example:
    >>> import numpy as np
    >>> truths = np.random.default_rng(1).uniform([0.1, 0.6], [0.5, 1.0], size=(40, 2))
    >>> exact = [GaussianPosterior(t + 0.02 * np.random.default_rng(i).normal(size=2), 4e-4 * np.eye(2))
    ...          for i, t in enumerate(truths)]
    >>> table = score_methods({"exact": exact}, truths, exact)
    >>> table["exact"]["rmse_ratio"], table["exact"]["width_ratio"]
    (1.0, 1.0)
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import time
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import sims, stats
from .._checks import as_finite_array, check_int
from ..constants import PRIOR_HIGH, PRIOR_LOW
from ..posteriors import GaussianPosterior, GridPosterior, Posterior, SamplePosterior
from .abc import BoxPrior
from .delfi import Delfi
from .diagnostics import sbc_ranks, sbc_uniformity, tarp

__all__ = ["NAMES", "PRIOR", "MethodUnavailable", "Method", "held_out_params", "simulate_maps", "add_noise",
           "ExactMethod", "MarginalisedMethod", "PowerSpectrumMethod", "IMNNMethods", "MomentCNN", "CNNMethod",
           "HIGlowMethod", "DDPMMethod", "VDVAENPEMethod", "fit_npe", "prior_grid_posterior", "hpd_area",
           "truth_credible_mass", "score_methods", "TARP_MIN_PVALUE", "PRESETS", "ORDER", "build_methods", "MapBank",
           "run_methods", "comparison_table", "misspecification_summary", "as_grid"]

NAMES = ("Omega_m", "sigma_8")
#: the flat prior of (Omega_m, sigma_8): CAMELS's LH box
PRIOR = BoxPrior(PRIOR_LOW[:2], PRIOR_HIGH[:2])
#: TARP's Kolmogorov-Smirnov p-value below which a method's table row says ``tarp_ok = False``
TARP_MIN_PVALUE = 0.01


class MethodUnavailable(RuntimeError):
    """A method cannot run here (its checkpoint is missing): the message says why, notebook 06 prints it and skips."""


# --------------------------------------------------------------------------- the held-out maps
def held_out_params(n_maps: int, seed: int = 2026) -> np.ndarray:
    """``n_maps`` parameter rows (n, 6) from the LH prior: the held-out draws every method is scored on.

    The seed is none of those the shipped models trained on (their data use seeds 0-3 and their own
    streams), and the maps of any field set come from :func:`simulate_maps` with the same seed.
    """
    return sims.sample_prior(check_int(n_maps, "n_maps", 1), seed=seed)


def simulate_maps(params, fields, n_pix: int, seed: int = 2026) -> np.ndarray:
    """The held-out maps (N, C, n_pix, n_pix) of ``fields`` at ``params`` (N, 6), streams ``(seed, i)``."""
    return sims.simulate(params, fields, n_pix=n_pix, seed=seed)


def add_noise(maps, level: float, seed: int = 0) -> np.ndarray:
    """Misspecified maps: each pixel times ``exp(level n - level^2 / 2)``, n standard normal (mean kept, positive).

    None of the methods (nor the exact likelihood) knows about this noise: it is the
    instrument or the pipeline that the simulator left out.
    """
    arr = as_finite_array(maps, "maps")
    if not level >= 0:
        raise ValueError(f"level: expected a noise level >= 0, got {level!r}")
    n = np.random.default_rng([seed, 0xA0D]).standard_normal(arr.shape)
    return (arr * np.exp(level * n - 0.5 * level ** 2)).astype(np.asarray(maps).dtype)


# --------------------------------------------------------------------------- helpers
def prior_grid_posterior(log_density, n_grid: int) -> GridPosterior:
    """A :class:`GridPosterior` over the prior box from ``log_density(theta (M, 2)) -> (M,)`` on ``n_grid``^2 points."""
    x, y = PRIOR.grid(check_int(n_grid, "n_grid", 3))
    mesh = np.stack(np.meshgrid(x, y, indexing="ij"), -1).reshape(-1, 2)
    lp = np.asarray(log_density(mesh), float).reshape(len(x), len(y))
    lp = np.where(np.isfinite(lp), lp, -np.inf)
    return GridPosterior(x, y, lp, names=NAMES)


def _flat_maps(maps, n_channels, n_pix, name="maps"):
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim == 2 and n_channels == 1:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (n_channels, n_pix, n_pix):
        raise ValueError(f"{name}: expected one map of shape ({n_channels}, {n_pix}, {n_pix}), got {np.shape(maps)}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name}: expected finite, positive maps (densities in the simulator's units)")
    return arr


@dataclass
class Method:
    """What every method states: its key, the maps it takes, the simulations it used, how it is scored.

    Subclasses implement :meth:`posterior`; :meth:`posteriors` times it over many maps.
    """

    name: str
    fields: tuple
    n_pix: int
    reference: str  # the key of the exact method it is scored against
    simulations: int = 0
    train_seconds: float = 0.0
    note: str = ""
    seconds: list = field(default_factory=list)

    def posterior(self, map_) -> Posterior:  # pragma: no cover - abstract
        raise NotImplementedError

    def posteriors(self, maps, progress: bool = False) -> list:
        """One posterior per map of ``maps`` (N, C, n, n); wall time per map into ``self.seconds``."""
        loop = range(len(maps))
        if progress:
            from tqdm.auto import tqdm
            loop = tqdm(loop, desc=self.name, leave=False)
        out = []
        for i in loop:
            t = time.perf_counter()
            out.append(self.posterior(maps[i]))
            self.seconds.append(time.perf_counter() - t)
        return out

    @property
    def seconds_per_map(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else float("nan")


# --------------------------------------------------------------------------- exact
class ExactMethod(Method):
    """The exact dark-matter posterior (``sims.exact_posterior``, zoomed grid, flat prior)."""

    def __init__(self, n_pix: int = 32, n_grid: int = 60, name: str = "exact"):
        super().__init__(name, ("Mcdm",), n_pix, name, simulations=0,
                         note="exact likelihood of the log-normal field; no simulations")
        self.n_grid = n_grid

    def posterior(self, map_):
        return sims.exact_posterior(_flat_maps(map_, 1, self.n_pix)[0], n_grid=self.n_grid)


class MarginalisedMethod(Method):
    """The exact posterior of (Omega_m, sigma_8) with the four feedback parameters marginalised (emcee)."""

    def __init__(self, fields, n_pix: int = 64, n_steps: int = 1000, seed: int = 0, name: str | None = None):
        fields = tuple(fields)
        key = name or "exact_marginalised_" + ("hi" if fields == ("HI",) else "gas")
        super().__init__(key, fields, n_pix, key, simulations=0,
                         note=f"exact six-parameter likelihood, emcee 32 walkers x {n_steps} steps")
        self.n_steps, self.seed = n_steps, seed
        self._count = 0

    def posterior(self, map_):
        self._count += 1
        return sims.marginal_posterior(_flat_maps(map_, len(self.fields), self.n_pix), self.fields,
                                       n_steps=self.n_steps, burn=int(0.3 * self.n_steps), seed=self.seed + self._count)


# --------------------------------------------------------------------------- the power spectrum
class PowerSpectrumMethod(Method):
    r"""Gaussian likelihood of the binned log power spectrum of the map's overdensity (the classical analysis).

    ``ln P(k_b)`` of ``delta = map / mean - 1`` (bins up to Nyquist) is modelled as Gaussian:
    its mean an emulator (a cubic polynomial in (Omega_m, sigma_8) fitted per bin to
    ``n_sims`` simulations over the prior), its covariance measured from ``n_fid``
    simulations at the fiducial point and held fixed. The mean density is not used, as in a
    P(k) analysis of an overdensity field, so Omega_m and sigma_8 stay degenerate.
    """

    def __init__(self, n_pix: int = 32, n_sims: int = 2000, n_fid: int = 500, n_grid: int = 60, seed: int = 11):
        super().__init__("power_spectrum", ("Mcdm",), n_pix, "exact", simulations=n_sims + n_fid,
                         note=f"ln P(k) up to Nyquist; cubic emulator from {n_sims} sims, covariance from {n_fid}")
        self.n_grid = n_grid
        t0 = time.perf_counter()
        k, _ = stats.power_spectrum_bins(n_pix, sims.BOX_SIZE)
        self.keep = k <= math.pi * n_pix / sims.BOX_SIZE
        theta = sims.sample_prior(n_sims, seed=seed, latin_hypercube=True)
        y = self.summaries(sims.simulate(theta, "Mcdm", n_pix=n_pix, seed=seed)[:, 0])
        self._coef = np.linalg.lstsq(self._design(theta[:, :2]), y, rcond=None)[0]
        fid = np.tile(sims.FIDUCIAL, (n_fid, 1))
        y_fid = self.summaries(sims.simulate(fid, "Mcdm", n_pix=n_pix, seed=seed + 1)[:, 0])
        cov = np.cov(y_fid, rowvar=False)
        # Hartlap et al. (2007): the inverse of an estimated covariance is biased high
        hartlap = (n_fid - len(cov) - 2) / (n_fid - 1)
        self.precision = hartlap * np.linalg.inv(cov)
        self.train_seconds = time.perf_counter() - t0

    def summaries(self, maps) -> np.ndarray:
        """ln P(k) (N, bins) of maps (N, n, n), bins up to Nyquist."""
        _, pk = stats.power_spectrum(np.asarray(maps, float))
        return np.log(np.atleast_2d(pk)[:, self.keep])

    @staticmethod
    def _design(theta):
        u = (np.asarray(theta, float) - PRIOR.low) / (PRIOR.high - PRIOR.low) * 2 - 1
        a, b = u[:, 0], u[:, 1]
        return np.stack([np.ones_like(a), a, b, a * a, a * b, b * b, a ** 3, a * a * b, a * b * b, b ** 3], 1)

    def mean(self, theta) -> np.ndarray:
        return self._design(np.atleast_2d(theta)) @ self._coef

    def posterior(self, map_):
        y = self.summaries(_flat_maps(map_, 1, self.n_pix))[0]

        def log_like(theta):
            r = y - self.mean(theta)
            return -0.5 * np.einsum("ij,jk,ik->i", r, self.precision, r)

        return prior_grid_posterior(log_like, self.n_grid)


# --------------------------------------------------------------------------- NPE (sbi)
class _NoTracker:
    """sbi's experiment tracker, doing nothing: its default writes TensorBoard logs to ./sbi-logs."""

    log_dir = None

    def log_metric(self, name, value, step=None):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_params(self, params):
        pass

    def add_figure(self, name, figure, step=None):
        pass

    def flush(self):
        pass


def fit_npe(theta, x, *, seed: int = 0, max_epochs: int = 300, hidden: int = 50, transforms: int = 5):
    """Neural posterior estimation with ``sbi`` (a masked autoregressive flow q(theta | x)), uniform prior box.

    Returns ``log_q(theta_grid (M, 2), x_obs (d,)) -> (M,)``: the flow's log density, not
    renormalised for mass outside the prior (the grid posterior renormalises on the prior box).
    """
    try:
        from sbi.inference import NPE
        from sbi.neural_nets import posterior_nn
        from sbi.utils import BoxUniform
    except ImportError as err:  # pragma: no cover - sbi is a dependency
        raise MethodUnavailable(f"NPE needs the sbi package ({err})") from err
    torch.manual_seed(seed)
    prior = BoxUniform(torch.as_tensor(PRIOR.low, dtype=torch.float32), torch.as_tensor(PRIOR.high, dtype=torch.float32))
    builder = posterior_nn(model="maf", hidden_features=hidden, num_transforms=transforms)
    npe = NPE(prior=prior, density_estimator=builder, show_progress_bars=False, tracker=_NoTracker())
    with contextlib.redirect_stdout(io.StringIO()):  # sbi prints "converged after N epochs"
        estimator = npe.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                                           torch.as_tensor(x, dtype=torch.float32)).train(
            max_num_epochs=max_epochs, show_train_summary=False)
    estimator.eval()

    @torch.no_grad()
    def log_q(grid, x_obs):
        g = torch.as_tensor(grid, dtype=torch.float32)
        xo = torch.as_tensor(np.asarray(x_obs, float)[None], dtype=torch.float32)
        return estimator.log_prob(g[None], condition=xo)[0].double().numpy()

    return log_q


# --------------------------------------------------------------------------- IMNN summaries: DELFI and NPE
class IMNNMethods:
    """The shipped IMNN (``imnn_lognormal``, 32^2 ln Mcdm maps) as a compressor, with DELFI and NPE on top.

    ``n_sims`` simulations from the prior, compressed to score estimates t (2 numbers per
    map), train both: DELFI's conditional MAF q(t | theta) (one round: amortised over all
    maps, as the held-out maps share it) and ``sbi``'s NPE q(theta | t) on the same pairs.
    ``.delfi`` and ``.npe`` are the two :class:`Method` objects.
    """

    def __init__(self, n_sims: int = 4000, n_grid: int = 60, seed: int = 21, epochs: int = 300, compressor=None):
        from ..recipes.imnn import load_imnn

        n_pix = 32  # the lognormal preset of recipes.imnn
        if compressor is None:
            try:
                compressor, ckpt = load_imnn("imnn_lognormal")
            except Exception as err:  # a missing or corrupt shipped file
                raise MethodUnavailable(f"the shipped IMNN imnn_lognormal did not load: {err}") from err
            n_pix = int(ckpt.get("config", {}).get("simulator", {}).get("n_pix", n_pix))
        self.compressor = compressor
        self.n_pix = n_pix
        self.simulator = sims.LogNormalSimulator(n_pix=self.n_pix)
        scale = np.sqrt(np.diag(np.linalg.inv(compressor.fisher)))
        t0 = time.perf_counter()
        self._delfi = Delfi(PRIOR, lambda th, s, idx: self.compressor(self.simulator(th, s, idx)), scale=scale,
                            n_grid=n_grid, epochs=epochs, seed=seed, names=NAMES)
        self._delfi.run(compressor.theta_fid, rounds=1, sims_per_round=n_sims)
        t1 = time.perf_counter()
        self._log_q = fit_npe(self._delfi.theta, self._delfi.summaries, seed=seed)
        t2 = time.perf_counter()
        self.delfi = _Summaries("imnn_delfi", self, lambda t: self._delfi.posterior(t), n_sims, t1 - t0,
                                f"IMNN summaries, DELFI (MAF q(t|theta)) on {n_sims} prior simulations")
        self.npe = _Summaries("imnn_npe", self, lambda t: prior_grid_posterior(lambda g: self._log_q(g, t), n_grid),
                              n_sims, t2 - t1 + (t1 - t0), f"IMNN summaries, sbi NPE (MAF q(theta|t)) on the same {n_sims}")

    def summaries(self, map_) -> np.ndarray:
        return self.compressor(np.log(_flat_maps(map_, 1, self.n_pix))[None])[0]


class _Summaries(Method):
    def __init__(self, name, owner, post, n_sims, seconds, note):
        super().__init__(name, ("Mcdm",), owner.n_pix, "exact", simulations=n_sims, train_seconds=seconds, note=note)
        self._owner, self._post = owner, post

    def posterior(self, map_):
        return self._post(self._owner.summaries(map_))


# --------------------------------------------------------------------------- a CNN on maps: moment network
class MomentCNN(torch.nn.Module):
    """A small CNN from a standardised ln Mcdm map (1, n, n) to a Gaussian posterior: mean (2,) and Cholesky factor.

    Trained by the Gaussian negative log-likelihood of the truth, its outputs estimate the
    posterior mean and covariance (moment networks, Jeffrey & Wandelt 2020).
    """

    def __init__(self, width: int = 16, n_pix: int = 32):
        super().__init__()
        layers, c = [], 1
        for w in (width, 2 * width, 2 * width):
            layers += [torch.nn.Conv2d(c, w, 3, padding=1, padding_mode="circular"), torch.nn.SiLU(),
                       torch.nn.Conv2d(w, w, 3, padding=1, padding_mode="circular"), torch.nn.SiLU(),
                       torch.nn.AvgPool2d(2)]
            c = w
        self.features = torch.nn.Sequential(*layers)
        # global mean and variance of the last feature maps, plus the map's mean and variance
        self.head = torch.nn.Sequential(torch.nn.Linear(2 * c + 2, 64), torch.nn.SiLU(), torch.nn.Linear(64, 5))
        self.n_pix = n_pix

    def forward(self, x):
        h = self.features(x)
        pooled = torch.cat([h.mean((2, 3)), h.var((2, 3)), x.mean((2, 3)), x.var((2, 3))], 1)
        out = self.head(pooled)
        mean = out[:, :2]
        l11, l22 = torch.nn.functional.softplus(out[:, 2]) + 1e-3, torch.nn.functional.softplus(out[:, 3]) + 1e-3
        return mean, l11, out[:, 4], l22

    def loss(self, batch):
        x, u = batch
        mean, l11, l21, l22 = self(x)
        # Sigma = L L^T with L = [[l11, 0], [l21, l22]]; NLL = ln det L + |L^-1 (u - mean)|^2 / 2
        r = u - mean
        z1 = r[:, 0] / l11
        z2 = (r[:, 1] - l21 * z1) / l22
        return (torch.log(l11) + torch.log(l22) + 0.5 * (z1 ** 2 + z2 ** 2)).mean()


class CNNMethod(Method):
    """A :class:`MomentCNN` trained on ``n_sims`` ln Mcdm maps from the prior; a :class:`GaussianPosterior` per map."""

    def __init__(self, n_pix: int = 32, n_sims: int = 4000, epochs: int = 30, width: int = 16, seed: int = 31,
                 lr: float = 2e-3, progress: bool = False):
        from ..train import fit

        super().__init__("cnn_moments", ("Mcdm",), n_pix, "exact", simulations=n_sims,
                         note=f"moment-network CNN (Gaussian NLL) on {n_sims} maps, {epochs} epochs")
        t0 = time.perf_counter()
        theta = sims.sample_prior(n_sims, seed=seed)
        x = np.log(sims.simulate(theta, "Mcdm", n_pix=n_pix, seed=seed)).astype(np.float32)
        self.shift, self.scale = float(x.mean()), float(x.std())
        xt = torch.as_tensor((x - self.shift) / self.scale)
        ut = torch.as_tensor(self._to_unit(theta[:, :2]), dtype=torch.float32)
        n_val = max(n_sims // 10, 1)
        torch.manual_seed(seed)
        self.net = MomentCNN(width, n_pix)
        val = [(xt[:n_val], ut[:n_val])]

        def train_data(epoch):
            order = n_val + np.random.default_rng([seed, epoch]).permutation(n_sims - n_val)
            return [(xt[order[i:i + 64]], ut[order[i:i + 64]]) for i in range(0, len(order), 64)]

        self.history = fit(self.net, None, train_data, val, epochs=epochs, lr=lr, patience=8, device="cpu",
                           progress=progress)
        self.net.eval()
        self.train_seconds = time.perf_counter() - t0

    @staticmethod
    def _to_unit(theta):
        return (np.asarray(theta, float) - PRIOR.low) / (PRIOR.high - PRIOR.low) * 2 - 1

    @torch.no_grad()
    def posterior(self, map_):
        x = np.log(_flat_maps(map_, 1, self.n_pix))
        xt = torch.as_tensor((x[None] - self.shift) / self.scale, dtype=torch.float32)
        mean, l11, l21, l22 = (v.double().numpy()[0] for v in self.net(xt))
        L = np.array([[l11, 0.0], [l21, l22]])
        half = (PRIOR.high - PRIOR.low) / 2
        return GaussianPosterior((mean + 1) * half + PRIOR.low, (half[:, None] * (L @ L.T)) * half[None, :],
                                 names=NAMES)


# --------------------------------------------------------------------------- the generative models
class HIGlowMethod(Method):
    """HIGlow's posterior (eq. 2 on an ``n_grid``^2 grid over the prior) of one HI map; the shipped checkpoint."""

    def __init__(self, n_grid: int = 50, directory=None):
        from ..recipes.glow import HIGlow

        try:
            self.glow = HIGlow.load(directory)
        except Exception as err:
            raise MethodUnavailable(f"HIGlow checkpoint did not load ({directory or 'cosmonb/pretrained'}): {err}") from err
        cfg = self.glow.checkpoint.get("config", {})
        extra = cfg.get("extra", cfg)
        split = extra.get("split", {})
        per_sim = extra.get("data_sizes", {}).get("maps_per_sim", 15)
        n_train = len(split.get("train", [])) * per_sim
        super().__init__("higlow", ("HI",), self.glow.n_pix, "exact_marginalised_hi", simulations=n_train,
                         train_seconds=float(self.glow.checkpoint.get("metadata", {}).get("seconds", 0.0) or 0.0),
                         note=f"shipped HIGlow; eq. 2 on a {n_grid}x{n_grid} grid over the prior")
        self.n_grid = n_grid

    def posterior(self, map_):
        return self.glow.posterior(_flat_maps(map_, 1, self.n_pix)[None], self.n_grid)


class DDPMMethod(Method):
    """The DDPM emulator's L_0 posterior ``exp(-L_0(x, theta))`` on a grid over the whole prior (not centred on the truth).

    The paper (Mudur et al. 2023) centres a 50 x 50 grid of +-0.1 on the true parameters;
    here the grid spans the prior (``n_grid``^2 points), so the truth gives the method no hint.
    ``directory``: a folder with ``ddpm.pt`` (notebook 05's ``COSMONB_DDPM_DIR``); None tries
    the shipped ``cosmonb/pretrained/ddpm.pt``.
    """

    def __init__(self, n_grid: int = 20, directory=None, n_noise: int = 1, seed: int = 0):
        from ..recipes.diffusion import DiffusionEmulator

        try:
            self.emulator = DiffusionEmulator.load(directory)
        except Exception as err:
            raise MethodUnavailable(f"DDPM checkpoint ddpm.pt did not load ({directory or 'cosmonb/pretrained'}; "
                                    f"set COSMONB_DDPM_DIR to a folder from `python -m cosmonb train ddpm`): {err}") from err
        ckpt = self.emulator.checkpoint
        n_train = len(ckpt.get("config", {}).get("split", {}).get("train", [])) * _maps_per_sim(ckpt)
        super().__init__("ddpm_l0", ("Mcdm",), self.emulator.n_pix, "exact_ddpm", simulations=n_train,
                         train_seconds=float(ckpt.get("metadata", {}).get("seconds", 0.0) or 0.0),
                         note=f"DDPM L_0 on a {n_grid}x{n_grid} grid over the prior, {self.emulator.n_pix}^2 maps")
        self.n_grid, self.n_noise, self.seed = n_grid, n_noise, seed

    def posterior(self, map_):
        centre = 0.5 * (PRIOR.low + PRIOR.high)
        half = float((PRIOR.high - PRIOR.low).max() / 2)
        return self.emulator.vlb_posteriors(_flat_maps(map_, 1, self.n_pix)[0], centre, (0,), n_grid=self.n_grid,
                                            half_width=half, seed=self.seed, n_noise=self.n_noise)[0]


def _maps_per_sim(ckpt) -> int:
    """Maps per simulation from a checkpoint's config (the MANIFEST's free-text ``data`` as a fallback: 15)."""
    text = str(ckpt.get("config", {}).get("data", ""))
    m = re.search(r"x (\d+) maps", text)
    return int(m.group(1)) if m else 15


class VDVAENPEMethod(Method):
    """NPE on the latent code of the VDVAE (notebook 04) of (Mgas, HI, B) maps.

    ``n_sims`` maps simulated over the full six-parameter prior are encoded (the hierarchy
    code, ``VDVAE.encode(x, "hierarchy")``: every latent group's posterior mean, pixel mean and
    std per channel; notebook 04 shows the top latent alone knows little at this size), the
    codes standardised and reduced to ``n_components`` principal components, and ``sbi``'s NPE learns
    q(Omega_m, sigma_8 | code): the feedback parameters are marginalised by the training set.
    ``directory``: a folder with ``vdvae.pt`` (notebook 04's ``COSMONB_VDVAE_DIR``); None tries
    the shipped ``cosmonb/pretrained/vdvae.pt``.
    """

    CODE = "hierarchy"

    def __init__(self, n_sims: int = 4000, n_components: int = 16, n_grid: int = 60, directory=None, seed: int = 41):
        from ..recipes.vdvae import VDVAEMaps

        try:
            self.vae = VDVAEMaps.load(directory)
        except Exception as err:
            raise MethodUnavailable(f"VDVAE checkpoint vdvae.pt did not load ({directory or 'cosmonb/pretrained'}; "
                                    f"set COSMONB_VDVAE_DIR to a folder from `python -m cosmonb train vdvae`): {err}") from err
        sizes = self.vae.checkpoint.get("config", {}).get("split_sizes", {})
        super().__init__("vdvae_npe", tuple(self.vae.fields), self.vae.n_pix, "exact_marginalised_gas",
                         simulations=n_sims + int(sizes.get("train", 0)),
                         note=f"VDVAE hierarchy code -> {n_components} PCs -> sbi NPE on {n_sims} maps "
                              f"(+ {int(sizes.get('train', 0))} VDVAE training maps)")
        t0 = time.perf_counter()
        theta = sims.sample_prior(n_sims, seed=seed)
        codes = self.vae.encode(sims.simulate(theta, self.fields, n_pix=self.n_pix, seed=seed), code=self.CODE)
        self.code_mean, self.code_std = codes.mean(0), codes.std(0) + 1e-8
        _, s, vt = np.linalg.svd((codes - self.code_mean) / self.code_std, full_matrices=False)
        self.components = vt[:n_components] / (s[:n_components, None] / np.sqrt(len(codes)))
        self._log_q = fit_npe(theta[:, :2], self.features(codes), seed=seed)
        self.n_grid = n_grid
        self.train_seconds = time.perf_counter() - t0

    def features(self, codes) -> np.ndarray:
        return ((np.atleast_2d(codes) - self.code_mean) / self.code_std) @ self.components.T

    def posterior(self, map_):
        f = self.features(self.vae.encode(_flat_maps(map_, len(self.fields), self.n_pix)[None], code=self.CODE))[0]
        return prior_grid_posterior(lambda g: self._log_q(g, f), self.n_grid)


# --------------------------------------------------------------------------- scoring
def truth_credible_mass(post: Posterior, truth) -> float:
    """``post.credible_mass(truth)``, but 1 for a grid posterior whose grid does not reach the truth.

    :meth:`GridPosterior.credible_mass` uses the nearest cell, so a truth beyond the grid
    would borrow an edge cell's rank: a grid that excludes the truth excludes it from every region.
    """
    t = as_finite_array(truth, "truth").ravel()
    if isinstance(post, GridPosterior):
        for g, v in zip((post.x, post.y), t):
            if v < g[0] - 0.5 * (g[1] - g[0]) or v > g[-1] + 0.5 * (g[-1] - g[-2]):
                return 1.0
    return float(post.credible_mass(t))


def hpd_area(post: Posterior, mass: float = 0.68, n_kde: int = 1000) -> float:
    """Area in the (Omega_m, sigma_8) plane of the highest-density region holding ``mass``.

    A grid posterior: the cells at or above :meth:`GridPosterior.level` (cell edges half-way
    between grid points). A Gaussian: the ellipse, ``pi (-2 ln(1 - mass)) sqrt(det cov)``.
    Samples: the region of a Gaussian kernel density estimate above the density that
    ``mass`` of the samples exceed, counted on a 60 x 60 grid over mean +- 5 std (at most ``n_kde``
    samples). Computed once per posterior object.

    Example:
        >>> x = np.linspace(-5, 5, 201)
        >>> grid = GridPosterior(x, x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2))
        >>> gauss = GaussianPosterior([0, 0], np.eye(2))
        >>> round(hpd_area(grid) / hpd_area(gauss), 2)
        1.0
    """
    if not 0 < mass < 1:
        raise ValueError(f"mass: expected a probability in (0, 1), got {mass}")
    key = (mass, n_kde)
    cache = _AREAS.setdefault(post, {})
    if key not in cache:
        cache[key] = _hpd_area(post, mass, n_kde)
    return cache[key]


#: areas already computed, per posterior object (a posterior is immutable once made)
_AREAS = weakref.WeakKeyDictionary()


def _hpd_area(post, mass, n_kde):
    if isinstance(post, GridPosterior):
        cells = np.gradient(post.x)[:, None] * np.gradient(post.y)[None, :]
        return float(cells[post.prob >= post.level(mass)].sum())
    if isinstance(post, GaussianPosterior):
        return float(math.pi * -2 * math.log(1 - mass) * math.sqrt(np.linalg.det(post.cov)))
    if isinstance(post, SamplePosterior):
        from scipy.stats import gaussian_kde

        s = post.samples[:, :2][:: max(1, len(post.samples) // n_kde)]
        kde = gaussian_kde(s.T)
        threshold = np.quantile(kde(s.T), 1 - mass)
        axes = [np.linspace(m - 5 * sd, m + 5 * sd, 60) for m, sd in zip(s.mean(0), s.std(0))]
        gx, gy = np.meshgrid(*axes, indexing="ij")
        dens = kde(np.stack([gx.ravel(), gy.ravel()]))
        return float((dens >= threshold).sum() * (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0]))
    raise ValueError(f"post: expected a GridPosterior, GaussianPosterior or SamplePosterior, got {type(post).__name__}")


def score_methods(posteriors_by_method: dict, truths, exact, *, seconds_per_map: dict | None = None,
                  simulations: dict | None = None, tarp_samples: int = 500, sbc_samples: int = 100,
                  seed: int = 0) -> dict:
    """The table of notebook 06: one row (a dict) per method.

    ``posteriors_by_method``: ``{name: [Posterior, ...]}``, one per held-out map; ``truths``
    (N, 2) or (N, 6) (the first two columns are used); ``exact``: the exact posteriors of the
    same maps, a list or ``{name: list}`` (each method against the exact posterior of the maps
    it saw). Per method:

    * ``rmse`` (2,) of the posterior mean, ``rmse_exact`` (2,) of the exact posterior mean on
      the same maps, ``rmse_ratio_omega_m``, ``rmse_ratio_sigma_8`` and ``rmse_ratio``, the larger
      of the two (1 is the best any estimator can do, on average);
    * ``coverage_68``, ``coverage_95``: the fraction of truths inside the HPD regions, with
      ``coverage_stderr`` (binomial, at the nominal levels);
    * ``width_ratio``: the median over maps of the 68% HPD area over the exact one (:func:`hpd_area`);
    * ``tarp_atc``, ``tarp_pvalue`` and ``tarp_ok`` (p >= ``TARP_MIN_PVALUE``);
      ``sbc_pvalue`` (2,) (chi^2 uniformity of the SBC ranks); the curves and ranks behind them
      (``tarp_alpha``, ``tarp_ecp``, ``sbc_ranks`` (N, 2)) and each truth's HPD rank (``credible_masses``);
    * ``seconds_per_map`` and ``simulations`` when given; ``n_maps``.
    """
    t = as_finite_array(truths, "truths")
    if t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"truths: expected shape (N, 2) or (N, 6), got {t.shape}")
    t = t[:, :2]
    table = {}
    for name, posts in posteriors_by_method.items():
        posts = list(posts)
        ref = list(exact[name] if isinstance(exact, dict) else exact)
        if len(posts) != len(t) or len(ref) != len(t):
            raise ValueError(f"{name}: expected {len(t)} posteriors (one per truth) and as many exact ones, "
                             f"got {len(posts)} and {len(ref)}")
        if not all(isinstance(p, Posterior) for p in posts + ref):
            raise ValueError(f"{name}: expected cosmonb Posterior objects")
        means = np.array([p.mean[:2] for p in posts])
        exact_means = np.array([p.mean[:2] for p in ref])
        rmse = np.sqrt(((means - t) ** 2).mean(0))
        rmse_exact = np.sqrt(((exact_means - t) ** 2).mean(0))
        ratio = rmse / rmse_exact
        masses = np.array([truth_credible_mass(p, x) for p, x in zip(posts, t)])
        widths = np.array([hpd_area(p) / hpd_area(r) for p, r in zip(posts, ref)])
        tp = tarp(posts, t, n_samples=tarp_samples, seed=seed)
        ranks = sbc_ranks(posts, t, n_samples=sbc_samples, seed=seed)
        row = {
            "n_maps": len(t),
            "rmse": rmse.tolist(), "rmse_exact": rmse_exact.tolist(),
            "rmse_ratio_omega_m": float(ratio[0]), "rmse_ratio_sigma_8": float(ratio[1]),
            "rmse_ratio": float(ratio.max()),
            "coverage_68": float((masses <= 0.68).mean()), "coverage_95": float((masses <= 0.95).mean()),
            "coverage_stderr": [math.sqrt(0.68 * 0.32 / len(t)), math.sqrt(0.95 * 0.05 / len(t))],
            "width_ratio": float(np.median(widths)),
            "tarp_atc": tp["atc"], "tarp_pvalue": tp["ks_pvalue"], "tarp_ok": bool(tp["ks_pvalue"] >= TARP_MIN_PVALUE),
            "sbc_pvalue": sbc_uniformity(ranks, sbc_samples).tolist(),
            "credible_masses": masses.tolist(),
            "tarp_alpha": tp["alpha"].tolist(), "tarp_ecp": tp["ecp"].tolist(), "sbc_ranks": ranks.tolist(),
        }
        if seconds_per_map and name in seconds_per_map:
            row["seconds_per_map"] = float(seconds_per_map[name])
        if simulations and name in simulations:
            row["simulations"] = int(simulations[name])
        table[name] = row
    return table


# --------------------------------------------------------------------------- running every method on the held-out maps
#: Settings of :func:`build_methods`: ``quick`` (notebook 06's quick mode: seconds, few maps, coarse grids,
#: small trainings) and ``full`` (the notebook's full run and ``bench/inference.py``).
PRESETS = {
    "quick": {"n_maps": 6, "exact_grid": 40, "grid": 40, "ps_sims": 400, "ps_fid": 150,
              "imnn_sims": 500, "imnn_epochs": 40, "cnn_sims": 600, "cnn_epochs": 3, "cnn_width": 8,
              "higlow_grid": 15, "ddpm_grid": 8, "vdvae_sims": 400, "vdvae_components": 8, "mcmc_steps": 300},
    "full": {"n_maps": 100, "exact_grid": 60, "grid": 60, "ps_sims": 2000, "ps_fid": 500,
             "imnn_sims": 4000, "imnn_epochs": 300, "cnn_sims": 4000, "cnn_epochs": 30, "cnn_width": 16,
             "higlow_grid": 50, "ddpm_grid": 20, "vdvae_sims": 4000, "vdvae_components": 16, "mcmc_steps": 1000},
}

#: the order of the table: exact first, then each family's learned methods after its exact reference
ORDER = ("exact", "power_spectrum", "imnn_delfi", "imnn_npe", "cnn_moments", "exact_ddpm", "ddpm_l0",
         "exact_marginalised_hi", "higlow", "exact_marginalised_gas", "vdvae_npe")


def build_methods(preset="quick", *, ddpm_dir=None, vdvae_dir=None, higlow_dir=None, only=None, log=print):
    """Every method of the comparison, trained or loaded: ``(methods {key: Method}, skipped {key: reason})``.

    ``preset``: a key of :data:`PRESETS` or a dict of the same settings. A method whose
    checkpoint does not load is skipped (``log`` prints why); ``only``: a subset of keys.
    The exact references (``exact``, ``exact_ddpm``, ``exact_marginalised_*``) come with the
    methods that need them.
    """
    cfg = dict(PRESETS[preset] if isinstance(preset, str) else preset)
    want = set(ORDER if only is None else only)
    methods, skipped = {}, {}

    def attempt(key, make):
        if key not in want:
            return None
        try:
            t = time.perf_counter()
            m = make()
            log(f"{key}: ready in {time.perf_counter() - t:.1f} s ({m.note})")
            methods[key] = m
            return m
        except MethodUnavailable as err:
            skipped[key] = str(err)
            log(f"{key}: SKIPPED: {err}")
            return None

    attempt("exact", lambda: ExactMethod(n_grid=cfg["exact_grid"]))
    attempt("power_spectrum", lambda: PowerSpectrumMethod(n_sims=cfg["ps_sims"], n_fid=cfg["ps_fid"], n_grid=cfg["grid"]))
    if want & {"imnn_delfi", "imnn_npe"}:
        try:
            t = time.perf_counter()
            both = IMNNMethods(n_sims=cfg["imnn_sims"], n_grid=cfg["grid"], epochs=cfg["imnn_epochs"])
            for m in (both.delfi, both.npe):
                if m.name in want:
                    methods[m.name] = m
                    log(f"{m.name}: ready ({m.note})")
            log(f"  IMNN methods trained in {time.perf_counter() - t:.1f} s")
        except MethodUnavailable as err:
            for key in ("imnn_delfi", "imnn_npe"):
                skipped[key] = str(err)
                log(f"{key}: SKIPPED: {err}")
    attempt("cnn_moments", lambda: CNNMethod(n_sims=cfg["cnn_sims"], epochs=cfg["cnn_epochs"], width=cfg["cnn_width"]))
    ddpm = attempt("ddpm_l0", lambda: DDPMMethod(n_grid=cfg["ddpm_grid"], directory=ddpm_dir))
    if ddpm is not None:
        methods["exact_ddpm"] = ExactMethod(n_pix=ddpm.n_pix, n_grid=cfg["exact_grid"], name="exact_ddpm")
    glow = attempt("higlow", lambda: HIGlowMethod(n_grid=cfg["higlow_grid"], directory=higlow_dir))
    if glow is not None or "exact_marginalised_hi" in (only or ()):
        methods["exact_marginalised_hi"] = MarginalisedMethod(("HI",), glow.n_pix if glow else 64, cfg["mcmc_steps"])
    vae = attempt("vdvae_npe", lambda: VDVAENPEMethod(n_sims=cfg["vdvae_sims"], n_components=cfg["vdvae_components"],
                                                      n_grid=cfg["grid"], directory=vdvae_dir))
    if vae is not None:
        methods["exact_marginalised_gas"] = MarginalisedMethod(vae.fields, vae.n_pix, cfg["mcmc_steps"])
    return {k: methods[k] for k in ORDER if k in methods}, skipped


class MapBank:
    """The held-out maps at ``params`` (N, 6), simulated once per (fields, n_pix) and cached; ``transform`` (e.g.
    :func:`add_noise`) applied to every set; ``outside_prior`` passes feedback parameters beyond the prior."""

    def __init__(self, params, seed: int = 2026, transform=None, outside_prior: bool = False):
        self.params, self.seed, self.transform, self.outside_prior = np.asarray(params, float), seed, transform, outside_prior
        self._maps = {}

    def __call__(self, fields, n_pix) -> np.ndarray:
        key = (tuple(fields), int(n_pix))
        if key not in self._maps:
            m = sims.simulate(self.params, key[0], n_pix=key[1], seed=self.seed, outside_prior=self.outside_prior)
            self._maps[key] = self.transform(m) if self.transform is not None else m
        return self._maps[key]


def run_methods(methods: dict, bank: MapBank, *, progress: bool = False) -> dict:
    """``{key: [Posterior per map]}`` for every method on the maps it takes (``bank(method.fields, method.n_pix)``)."""
    out = {}
    for key, m in methods.items():
        m.seconds = []
        with np.errstate(all="ignore"):
            with warnings.catch_warnings():  # coarse grids warn when a posterior is narrower than a cell
                warnings.simplefilter("ignore")
                out[key] = m.posteriors(bank(m.fields, m.n_pix), progress=progress)
    return out


def comparison_table(methods: dict, posteriors: dict, truths, **kwargs) -> dict:
    """:func:`score_methods` with each method against its exact reference, seconds and simulations filled in."""
    refs = {k: posteriors[m.reference] for k, m in methods.items() if m.reference in posteriors}
    posts = {k: posteriors[k] for k in refs}
    return score_methods(posts, truths, refs, seconds_per_map={k: methods[k].seconds_per_map for k in posts},
                         simulations={k: methods[k].simulations for k in posts}, **kwargs)


def misspecification_summary(posteriors: dict, truths, clean: dict, *, collapse: float = 0.5) -> dict:
    """How each method behaves on misspecified maps, against itself on the clean maps of the same parameters.

    Per key of ``posteriors`` (and of ``clean``): ``coverage_68``, ``coverage_95``, ``rmse`` (2,),
    ``rmse_clean`` (2,), ``width_change`` (median over maps of the 68% area on the misspecified map
    over the area on the clean map) and ``verdict``: ``"holds up"`` (coverage_68 >= ``collapse``), ``"fails confidently"`` (coverage_68 < ``collapse`` with the 68% region
    less than 1.5 times its clean area: wrong and sure of it), or ``"widens but misses"``
    (coverage below ``collapse`` although the region grew).
    """
    t = as_finite_array(truths, "truths")[:, :2]
    out = {}
    for key, posts in posteriors.items():
        masses = np.array([truth_credible_mass(p, x) for p, x in zip(posts, t)])
        means = np.array([p.mean[:2] for p in posts])
        clean_means = np.array([p.mean[:2] for p in clean[key]])
        change = float(np.median([hpd_area(p) / hpd_area(c) for p, c in zip(posts, clean[key])]))
        c68 = float((masses <= 0.68).mean())
        verdict = ("holds up" if c68 >= collapse else "fails confidently" if change < 1.5 else "widens but misses")
        out[key] = {"n_maps": len(t), "coverage_68": c68, "coverage_95": float((masses <= 0.95).mean()),
                    "rmse": np.sqrt(((means - t) ** 2).mean(0)).tolist(),
                    "rmse_clean": np.sqrt(((clean_means - t) ** 2).mean(0)).tolist(),
                    "width_change": change, "verdict": verdict}
    return out


def as_grid(post: Posterior, like: GridPosterior) -> GridPosterior:
    """Any posterior tabulated on the grid of ``like`` (to draw every method's contours the same way).

    A grid posterior on another grid: its piecewise-constant density; a Gaussian: its density;
    samples: a Gaussian kernel density estimate. Mass beyond the grid is cut off.
    """
    gx, gy = np.meshgrid(like.x, like.y, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    if isinstance(post, SamplePosterior):
        from scipy.stats import gaussian_kde

        s = post.samples[:, :2][:: max(1, len(post.samples) // 1500)]
        with np.errstate(divide="ignore"):
            lp = np.log(gaussian_kde(s.T)(pts.T))
    elif post.has_log_prob:
        lp = np.asarray(post.log_prob(pts), float)
    else:
        raise ValueError(f"post: cannot tabulate a {type(post).__name__}")
    lp = lp.reshape(gx.shape)
    if not np.isfinite(lp.max()):  # no mass on this grid at all: a single cell at the nearest point
        lp = np.full(gx.shape, -np.inf)
        lp[np.argmin(np.abs(like.x - post.mean[0])), np.argmin(np.abs(like.y - post.mean[1]))] = 0.0
    return GridPosterior(like.x, like.y, lp, names=like.names)
