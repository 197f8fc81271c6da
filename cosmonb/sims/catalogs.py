r"""Built-in galaxy catalogs whose density is known exactly, and the halo mass function.

Notebook 02 follows the CAMELS galaxy-catalog flows project (normalizing flows on
stellar mass against total mass of the subhalos in the IllustrisTNG CV set,
snapshots 030-033). This module makes catalogs of the same shape from a model
simple enough that the true density of ``(log10 M_total, log10 M_star)`` can be
written down, so a flow can be scored against it in nats.

The model, step by step (masses in Msun/h, lengths in Mpc/h, ``x = log10 M_total``,
``y = log10 M_star``):

1. **Halo mass function.** Sheth & Tormen (1999), as in colossus's ``sheth99``::

       dn/dlnM = (rho_m / M) f(sigma) |dln sigma / dln M|,
       f = A sqrt(2 a nu^2 / pi) [1 + (a nu^2)^-p] exp(-a nu^2 / 2),   nu = delta_c / sigma(M, z),

   with A = 0.3222, a = 0.707, p = 0.3, delta_c = 1.68647, sigma(M, z) the rms of
   the linear density (:func:`cosmonb.cosmology.linear_power`) in a top-hat sphere
   of mass M at the mean matter density, times the linear growth factor D(z) of
   flat LCDM. Press & Schechter (1974) is available as ``model="press74"``.
2. **Subhalos.** Each catalog is a Poisson draw of halos with density
   ``V dn/dlog10 M`` on ``[x_min, 15.5]`` in a periodic box of side 25 Mpc/h,
   placed uniformly. One subhalo per group (no satellites): ``SubhaloMass`` =
   ``GroupMass`` = M.
3. **Stellar-to-halo-mass relation** (SHMR): the double power law of Moster,
   Naab & White (2013), with its redshift evolution, and a toy dependence on the
   CAMELS feedback parameters (stronger supernova feedback, A_SN1, steepens the
   low-mass slope and lowers the normalisation; stronger AGN feedback, A_AGN1,
   steepens the high-mass slope)::

       M_star / M = 2 N [(M / M_1)^-beta + (M / M_1)^gamma]^-1,
       beta  = beta_0  + 0.35 ln A_SN1,   N = N_0 A_SN1^-0.2,
       gamma = gamma_0 + 0.12 ln A_AGN1.

   ``y = f(x) + sigma(x) eps`` with ``eps ~ N(0, 1)`` (log-normal scatter),
   ``sigma(x)`` from 0.25 dex in small halos to 0.15 dex in large ones.
4. **Resolution.** A subhalo hosts a *galaxy* (``SubhaloMassType[:, 4] > 0``,
   the CAMELS definition) with probability ``S(y) = Phi((y - 8) / 0.15)``, a soft
   threshold of about ten star particles; the others are written with zero
   stellar mass, as dark subhalos are in real Subfind catalogs.

So the galaxies of one catalog have the exact density

    p(x, y) = n(x) N(y; f(x), sigma(x)) S(y) / Lambda,
    Lambda  = int n(x) Phi((f(x) - 8) / sqrt(sigma(x)^2 + 0.15^2)) dx,

with ``n = dn/dlog10 M``; ``Lambda`` times the volume is the expected number of
galaxies. Its marginals and the conditional ``p(y | x)`` follow in closed form
or by a 1D quadrature (:class:`GalaxyModel`). Catalogs pooled over snapshots or
simulations are a mixture weighted by the expected counts (:class:`GalaxyMixture`).

Catalogs are written in the Subfind HDF5 layout (``<root>/CV_<i>/groups_0XX.hdf5``,
via :func:`cosmonb.data.write_subfind`), so :func:`load_galaxies` reads the built-in
ones and real CAMELS catalogs the same way.

Example:
    >>> model = GalaxyModel(redshift=0.0)
    >>> 500 < model.expected_galaxies < 5000
    True
    >>> cat = simulate_catalog(seed=1)
    >>> float(model.log_prob(np.log10(cat["total_mass"][:1]), 10.0)[0]) < 0
    True
"""
from __future__ import annotations

import functools
import zlib
from pathlib import Path

import numpy as np
from scipy import special

from .. import data
from ..constants import BOX_SIZE, FIDUCIAL, PARAM_NAMES, PRIOR_HIGH, PRIOR_LOW
from .fields import check_params
from .._checks import as_finite_array, check_in_range, check_ndim, check_size
from ..cosmology import RHO_CRIT, linear_power, tophat_window

__all__ = [
    "BOX_SIZE", "SNAPSHOTS", "SNAPSHOT_REDSHIFTS", "DELTA_C",
    "growth_factor", "lagrangian_radius", "sigma_mass", "mass_function",
    "stellar_mass_relation", "scatter_dex", "detection_probability",
    "GalaxyModel", "GalaxyMixture",
    "simulate_catalog", "write_catalogs", "write_cv_catalogs", "feedback_set", "load_galaxies",
    "subset", "split_simulations", "CV_SPLIT", "FEEDBACK_SPLIT", "log_masses", "inject_outliers",
]

#: The four snapshots of the flows project and their redshifts.
SNAPSHOTS = (30, 31, 32, 33)
SNAPSHOT_REDSHIFTS = dict(data.SNAPSHOT_REDSHIFTS)

#: Spherical-collapse threshold (colossus's ``DELTA_COLLAPSE``, no cosmology correction).
DELTA_C = 1.68647
_SHETH_TORMEN = (0.3222, 0.707, 0.3)  # A, a, p

#: Moster, Naab & White (2013) SHMR, z = 0 values and their z/(1+z) evolution
#: (their Table 1); masses read here in Msun/h.
SHMR = {
    "log_m1": 11.590, "log_m1_z": 1.195,
    "norm": 0.0351, "norm_z": -0.0247,
    "beta": 1.376, "beta_z": -0.826,
    "gamma": 0.608, "gamma_z": 0.329,
    # toy feedback dependence (this package's choice, not fitted to CAMELS)
    "beta_sn": 0.35, "norm_sn": -0.2, "gamma_agn": 0.12,
}
#: Log-normal scatter of log10 M_star at fixed halo mass: SCATTER_LOW in small
#: halos to SCATTER_HIGH in large ones, switching around 10^11 Msun/h.
SCATTER_LOW, SCATTER_HIGH, SCATTER_PIVOT, SCATTER_WIDTH = 0.25, 0.15, 11.0, 0.4
#: Soft resolution threshold on log10 M_star: S(y) = Phi((y - cut) / width).
DETECTION_CUT, DETECTION_WIDTH = 8.0, 0.15

#: Train / validation / test simulations of the 27-simulation CV set (split by simulation).
CV_SPLIT = {"train": tuple(range(20)), "val": (20, 21, 22), "test": (23, 24, 25, 26)}
#: The same for the 60-simulation ``feedback_set`` of notebook 02's conditional flow.
FEEDBACK_SPLIT = {"train": tuple(range(48)), "val": (48, 49, 50, 51), "test": tuple(range(52, 60))}

LOG_MASS_MAX = 15.5          # upper end of the halo mass range (log10 Msun/h)
_LOG_MASS_FLOOR = 7.0        # lowest halo mass ever considered
_GRID_STEP = 0.002           # dex, the tabulation step of every density
_MIN_GALAXY_PROB = 1e-9      # x_min: where a halo's chance of hosting a galaxy drops below this
_K = np.logspace(-4, 3.5, 3000)  # h/Mpc, for sigma(M)


# --------------------------------------------------------------------------- cosmology
def _check_redshift(z, name="redshift"):
    z = as_finite_array(z, name)
    check_in_range(z, name, 0.0, 10.0)
    return z


def _check_cosmology(omega_m, sigma_8):
    # Wider than the LH prior (cosmonb.constants) and than sims.check_cosmology (0.06-0.9,
    # 0.2-1.5, the span of the simulator's spline tables): the halo model here is analytic
    # (Eisenstein-Hu, Sheth-Tormen), checked against colossus beyond the prior.
    om = float(as_finite_array(omega_m, "omega_m"))
    s8 = float(as_finite_array(sigma_8, "sigma_8"))
    check_in_range(om, "omega_m", 0.05, 1.0)
    check_in_range(s8, "sigma_8", 0.1, 2.0)
    return om, s8


def growth_factor(z, omega_m):
    """Linear growth factor D(z) of flat LCDM, normalised to D(0) = 1.

    ``D(a) ∝ H(a) int_0^a da' / (a' H(a'))^3`` (Heath 1977), no radiation.

    Example:
        >>> round(float(growth_factor(0.0, 0.3)), 6), bool(growth_factor(1.0, 0.3) < 1)
        (1.0, True)
    """
    z = _check_redshift(z, "z")
    om = float(as_finite_array(omega_m, "omega_m"))
    check_in_range(om, "omega_m", 0.05, 1.0)
    a = 1.0 / (1.0 + np.atleast_1d(z).ravel())

    def unnormalised(a):
        u = np.linspace(0.0, 1.0, 4001)[1:][None, :] * a[:, None]
        e = np.sqrt(om / u**3 + 1.0 - om)
        integral = np.trapezoid(1.0 / (u * e) ** 3, u, axis=1)
        # the integrand -> a'^{3/2} / om^{3/2} near 0: add the missing first sliver exactly
        first = u[:, 0]
        integral += 0.4 * first**2.5 / om**1.5
        return np.sqrt(om / a**3 + 1.0 - om) * integral

    d = unnormalised(a) / unnormalised(np.array([1.0]))
    return d.reshape(np.shape(z))


def lagrangian_radius(mass, omega_m):
    """Radius (Mpc/h) of a sphere holding ``mass`` (Msun/h) at the mean matter density.

    Example:
        >>> round(float(lagrangian_radius(1e12, 0.3)), 3)
        1.421
    """
    mass = as_finite_array(mass, "mass")
    if np.any(mass <= 0):
        raise ValueError("mass: expected halo masses > 0 in Msun/h")
    return (3.0 * mass / (4.0 * np.pi * omega_m * RHO_CRIT)) ** (1.0 / 3.0)


def sigma_mass(mass, omega_m, sigma_8, z=0.0, return_slope=False):
    """rms linear overdensity sigma(M, z) in a top-hat of mass ``mass`` (Msun/h).

    ``sigma^2(R) = 1/(2 pi^2) int k^3 P(k) W^2(kR) dln k`` with
    :func:`cosmonb.cosmology.linear_power`, times ``growth_factor(z)``. With
    ``return_slope=True`` also returns ``dln sigma / dln M`` (analytic in W).

    Example:
        >>> R8_mass = 4 / 3 * np.pi * 8.0**3 * 0.3 * RHO_CRIT   # the mass of an 8 Mpc/h sphere
        >>> round(float(sigma_mass(R8_mass, 0.3, 0.8)), 3)
        0.8
    """
    om, s8 = _check_cosmology(omega_m, sigma_8)
    zz = float(_check_redshift(z, "z"))
    mass = as_finite_array(mass, "mass")
    shape = mass.shape
    radius = lagrangian_radius(mass, om).ravel()
    power = linear_power(_K, om, s8)
    x = _K[None, :] * radius[:, None]
    window = tophat_window(x)
    base = _K**3 * power / (2 * np.pi**2)
    s2 = np.trapezoid(base * window**2, np.log(_K), axis=1)
    sigma = np.sqrt(s2) * float(growth_factor(zz, om))
    if not return_slope:
        return sigma.reshape(shape)
    xs = np.maximum(x, 1e-3)
    dwindow = np.where(x < 1e-3, -x / 5.0,
                       3.0 * ((xs**2 - 3.0) * np.sin(xs) + 3.0 * xs * np.cos(xs)) / xs**4)
    ds2_dlnr = np.trapezoid(base * 2.0 * window * dwindow * x, np.log(_K), axis=1)
    slope = ds2_dlnr / s2 / 6.0  # dln sigma / dln M = (1/2)(1/3) dln sigma^2 / dln R
    return sigma.reshape(shape), slope.reshape(shape)


def mass_function(mass, omega_m, sigma_8, z=0.0, model="sheth99"):
    """Halo mass function dn/dlnM in (Mpc/h)^-3 at masses ``mass`` (Msun/h).

    ``model``: ``"sheth99"`` (Sheth & Tormen 1999, FoF masses) or ``"press74"``
    (Press & Schechter 1974). Agrees with ``colossus.lss.mass_function.massFunction(
    M, z, mdef='fof', model=model, q_out='dndlnM')`` for the same cosmology
    (tests check 5%; it agrees to 0.5% from 1e9 to 1e14 Msun/h, and to 3% at 1e15).

    Example:
        >>> n = mass_function([1e11, 1e13], 0.3, 0.8)
        >>> bool(n[0] > 10 * n[1] > 0)
        True
    """
    if model not in ("sheth99", "press74"):
        raise ValueError(f"model: expected 'sheth99' or 'press74', got {model!r}")
    mass = as_finite_array(mass, "mass")
    om, s8 = _check_cosmology(omega_m, sigma_8)
    sigma, slope = sigma_mass(mass, om, s8, z, return_slope=True)
    nu = DELTA_C / sigma
    if model == "sheth99":
        f = _sheth_tormen_f(nu)
    else:
        f = np.sqrt(2.0 / np.pi) * nu * np.exp(-0.5 * nu**2)
    return om * RHO_CRIT / mass * f * np.abs(slope)


def _sheth_tormen_f(nu):
    amp, a, p = _SHETH_TORMEN
    nu_p = a * nu**2
    return amp * np.sqrt(2.0 * nu_p / np.pi) * np.exp(-0.5 * nu_p) * (1.0 + nu_p**-p)


@functools.lru_cache(maxsize=32)
def _sigma_table(omega_m, sigma_8):
    """Cubic splines of ln sigma(M, z=0) and dln sigma/dln M in x = log10 M (cached per cosmology)."""
    from scipy.interpolate import CubicSpline

    x = np.arange(_LOG_MASS_FLOOR - 0.1, LOG_MASS_MAX + 0.1 + 1e-9, 0.01)
    sigma, slope = sigma_mass(10.0**x, omega_m, sigma_8, 0.0, return_slope=True)
    return CubicSpline(x, np.log(sigma)), CubicSpline(x, slope)


@functools.lru_cache(maxsize=64)
def _log_mass_function_table(omega_m, sigma_8, z):
    """ln(dn/dlog10 M) of Sheth-Tormen on the fine grid x = log10 M (cached per cosmology and z).

    sigma(M) is computed every 0.01 dex and interpolated by a cubic spline
    (relative error < 1e-5 against :func:`mass_function`).
    """
    x = np.arange(_LOG_MASS_FLOOR, LOG_MASS_MAX + _GRID_STEP / 2, _GRID_STEP)
    ln_sigma, slope = _sigma_table(omega_m, sigma_8)
    sigma = np.exp(ln_sigma(x)) * float(growth_factor(z, omega_m))
    n = omega_m * RHO_CRIT / 10.0**x * _sheth_tormen_f(DELTA_C / sigma) * np.abs(slope(x))
    return x, np.log(n * np.log(10.0))


# --------------------------------------------------------------------------- galaxies
def _shmr_parameters(a_sn1, a_agn1, z):
    zeta = z / (1.0 + z)
    s = SHMR
    log_m1 = s["log_m1"] + s["log_m1_z"] * zeta
    norm = (s["norm"] + s["norm_z"] * zeta) * a_sn1 ** s["norm_sn"]
    beta = s["beta"] + s["beta_z"] * zeta + s["beta_sn"] * np.log(a_sn1)
    gamma = s["gamma"] + s["gamma_z"] * zeta + s["gamma_agn"] * np.log(a_agn1)
    return log_m1, norm, beta, gamma


def stellar_mass_relation(log_mass, a_sn1=1.0, a_agn1=1.0, z=0.0):
    """Mean log10 M_star (Msun/h) at halo mass log10 M (module doc, step 3).

    Example:
        >>> y = stellar_mass_relation([11.0, 12.0])
        >>> bool(y[1] - y[0] > 1)               # steep below the knee at ~10^11.6
        True
        >>> bool(stellar_mass_relation(11.0, a_sn1=4.0) < stellar_mass_relation(11.0))
        True
    """
    x = as_finite_array(log_mass, "log_mass")
    a_sn1 = float(as_finite_array(a_sn1, "a_sn1"))
    a_agn1 = float(as_finite_array(a_agn1, "a_agn1"))
    if a_sn1 <= 0 or a_agn1 <= 0:
        raise ValueError("a_sn1, a_agn1: expected feedback amplitudes > 0")
    z = float(_check_redshift(z, "z"))
    log_m1, norm, beta, gamma = _shmr_parameters(a_sn1, a_agn1, z)
    d = x - log_m1
    # log10 of (M/M1)^-beta + (M/M1)^gamma, computed stably
    log_sum = np.logaddexp(-beta * d * np.log(10), gamma * d * np.log(10)) / np.log(10)
    return np.log10(2.0 * norm) + x - log_sum


def scatter_dex(log_mass):
    """Scatter (dex) of log10 M_star at fixed log10 M_total: 0.25 dex in small halos, 0.15 in large.

    Example:
        >>> np.round(scatter_dex([9.0, 11.0, 14.0]), 3)
        array([0.249, 0.2  , 0.15 ])
    """
    x = as_finite_array(log_mass, "log_mass")
    t = special.expit((SCATTER_PIVOT - x) / SCATTER_WIDTH)
    return SCATTER_HIGH + (SCATTER_LOW - SCATTER_HIGH) * t


def detection_probability(log_mstar):
    """Probability that a subhalo of stellar mass 10^y is resolved as a galaxy: Phi((y - 8) / 0.15).

    Example:
        >>> np.round(detection_probability([7.7, 8.0, 8.3]), 3)
        array([0.023, 0.5  , 0.977])
    """
    y = as_finite_array(log_mstar, "log_mstar")
    return special.ndtr((y - DETECTION_CUT) / DETECTION_WIDTH)


def _log_detection(y):
    return special.log_ndtr((y - DETECTION_CUT) / DETECTION_WIDTH)


def _log_occupation(mean_log_mstar, scatter):
    """ln P(a halo hosts a galaxy) = ln Phi((f - cut) / sqrt(sigma^2 + width^2)), given f(x) and sigma(x)."""
    return special.log_ndtr((mean_log_mstar - DETECTION_CUT) / np.hypot(scatter, DETECTION_WIDTH))


def _params_row(params):
    row = check_params(params, "params")
    if row.shape[0] != 1:
        raise ValueError(f"params: expected one parameter set (6 values in CAMELS order "
                         f"{PARAM_NAMES}), got {row.shape[0]} rows")
    return row[0]


class _DensityMethods:
    """Shared checks of the density methods of GalaxyModel and GalaxyMixture."""

    @staticmethod
    def _xy(log_mtot, log_mstar):
        x = as_finite_array(log_mtot, "log_mtot")
        y = as_finite_array(log_mstar, "log_mstar")
        try:
            x, y = np.broadcast_arrays(x, y)
        except ValueError as err:
            raise ValueError(f"log_mtot, log_mstar: shapes {x.shape} and {y.shape} "
                             "do not broadcast") from err
        return x, y

    def log_prob_conditional(self, log_mstar, log_mtot):
        """ln p(log10 M_star | log10 M_total) of galaxies (per dex)."""
        x, y = self._xy(log_mtot, log_mstar)
        return self.log_prob(x, y) - self.log_prob_total(x)


class GalaxyModel(_DensityMethods):
    """The exact distribution of the built-in galaxies for one parameter set and redshift.

    ``params``: 6 values in CAMELS order (only Omega_m, sigma_8, A_SN1 and
    A_AGN1 act); ``redshift`` >= 0; ``box_size`` in Mpc/h. Densities are per dex
    of ``x = log10 M_total`` and ``y = log10 M_star`` (Msun/h) and are natural
    logs (nats).

    Attributes: ``x_min`` (lowest halo mass sampled), ``expected_halos``,
    ``expected_galaxies`` (per catalog), ``params``, ``redshift``.

    Example:
        >>> m = GalaxyModel([0.3, 0.8, 1.0, 1.0, 1.0, 1.0], redshift=0.0)
        >>> x, y = np.array([11.0, 12.0]), np.array([8.8, 10.3])
        >>> lp = m.log_prob(x, y)
        >>> np.allclose(lp, m.log_prob_total(x) + m.log_prob_conditional(y, x))
        True
    """

    def __init__(self, params=FIDUCIAL, redshift=0.0, box_size=BOX_SIZE):
        self.params = _params_row(params)
        self.redshift = float(_check_redshift(redshift))
        self.box_size = float(as_finite_array(box_size, "box_size"))
        if self.box_size <= 0:
            raise ValueError(f"box_size: expected a side > 0 in Mpc/h, got {self.box_size}")
        om, s8, a_sn1, a_agn1 = (float(v) for v in self.params[:4])
        x, ln_n = _log_mass_function_table(om, s8, self.redshift)
        f = stellar_mass_relation(x, a_sn1, a_agn1, self.redshift)
        sig = scatter_dex(x)
        ln_occ = _log_occupation(f, sig)
        keep = np.nonzero(ln_occ > np.log(_MIN_GALAXY_PROB))[0]
        start = keep[0] if len(keep) else len(x) - 1
        self._x, self._ln_n, self._f, self._sig = x[start:], ln_n[start:], f[start:], sig[start:]
        self._ln_occ = ln_occ[start:]
        self.x_min = float(self._x[0])
        self._a_sn1, self._a_agn1 = a_sn1, a_agn1
        volume = self.box_size**3
        halo_density = np.trapezoid(np.exp(self._ln_n), self._x)
        galaxy_density = np.trapezoid(np.exp(self._ln_n + self._ln_occ), self._x)
        self.expected_halos = float(volume * halo_density)
        self.expected_galaxies = float(volume * galaxy_density)
        self._ln_norm = np.log(galaxy_density)
        # halo sampling: inverse CDF of n(x) on the grid (piecewise-linear CDF)
        w = np.exp(self._ln_n)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(self._x))])
        self._cdf = cdf / cdf[-1]
        self._y_table = None

    def __repr__(self):
        p = ", ".join(f"{n}={v:g}" for n, v in zip(PARAM_NAMES[:4], self.params[:4]))
        return (f"GalaxyModel({p}, z={self.redshift:g}; "
                f"{self.expected_galaxies:.0f} galaxies per ({self.box_size:g} Mpc/h)^3)")

    # ---- the pieces
    def mean_log_mstar(self, log_mtot):
        """The SHMR f(x) of this model (log10 M_star at log10 M_total)."""
        return stellar_mass_relation(log_mtot, self._a_sn1, self._a_agn1, self.redshift)

    def _ln_n_at(self, x):
        """ln n(x) by linear interpolation of the table; -inf outside [x_min, x_max]."""
        inside = (x >= self._x[0]) & (x <= self._x[-1])
        out = np.interp(x, self._x, self._ln_n)
        return np.where(inside, out, -np.inf)

    def _log_gauss(self, y, x):
        sig = scatter_dex(x)
        r = (y - self.mean_log_mstar(x)) / sig
        return -0.5 * r**2 - np.log(sig) - 0.5 * np.log(2 * np.pi)

    # ---- densities
    def log_prob(self, log_mtot, log_mstar):
        """ln p(x, y) of a galaxy (joint density per dex^2)."""
        x, y = self._xy(log_mtot, log_mstar)
        return self._ln_n_at(x) + self._log_gauss(y, x) + _log_detection(y) - self._ln_norm

    def log_prob_total(self, log_mtot):
        """ln p(x): the density of log10 M_total of galaxies (per dex)."""
        x = as_finite_array(log_mtot, "log_mtot")
        return self._ln_n_at(x) + _log_occupation(self.mean_log_mstar(x), scatter_dex(x)) - self._ln_norm

    def _stellar_table(self):
        """ln p(y) on a fine y grid, by quadrature over the x grid (cached)."""
        if self._y_table is None:
            y = np.arange(DETECTION_CUT - 8 * DETECTION_WIDTH, self._f.max() + 8 * SCATTER_HIGH + 1.0,
                          _GRID_STEP)
            ln_w = self._ln_n + np.log(np.gradient(self._x))  # quadrature weights in ln
            out = np.empty_like(y)
            for a in range(0, len(y), 512):
                yy = y[a:a + 512, None]
                r = (yy - self._f[None, :]) / self._sig[None, :]
                terms = ln_w[None, :] - 0.5 * r**2 - np.log(self._sig)[None, :] - 0.5 * np.log(2 * np.pi)
                out[a:a + 512] = special.logsumexp(terms, axis=1)
            self._y_table = (y, out + _log_detection(y) - self._ln_norm)
        return self._y_table

    def log_prob_stellar(self, log_mstar):
        """ln p(y): the density of log10 M_star of galaxies (per dex)."""
        y = as_finite_array(log_mstar, "log_mstar")
        grid, table = self._stellar_table()
        inside = (y >= grid[0]) & (y <= grid[-1])
        below = y < grid[0]
        out = np.interp(y, grid, table)
        # below the table S(y) ~ 0 (the exact value is -inf to double precision); above, p ~ 0
        return np.where(inside, out, np.where(below, table[0] + _log_detection(y) - _log_detection(grid[0]),
                                              -np.inf))

    # ---- sampling
    def sample(self, seed=0):
        """One catalog: Poisson halos, their stellar masses, detection; see :func:`simulate_catalog`."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        n = int(rng.poisson(self.expected_halos))
        x = np.interp(rng.random(n), self._cdf, self._x)
        y = self.mean_log_mstar(x) + scatter_dex(x) * rng.standard_normal(n)
        detected = rng.random(n) < detection_probability(y)
        pos = rng.random((n, 3)) * self.box_size
        total = 10.0**x
        stellar = np.where(detected, 10.0**y, 0.0)
        order = np.argsort(-total, kind="stable")  # Subfind orders groups by mass
        return {"total_mass": total[order], "stellar_mass": stellar[order], "position": pos[order],
                "group_mass": total[order], "redshift": self.redshift, "box_size": self.box_size,
                "params": self.params.copy()}


class GalaxyMixture(_DensityMethods):
    """Galaxies pooled from several :class:`GalaxyModel` s: a mixture weighted by expected counts.

    ``weights`` default to ``counts * model.expected_galaxies`` with ``counts``
    the number of catalogs of each model (default 1 each), which is the exact
    density of galaxies pooled from Poisson catalogs.

    Example:
        >>> mix = GalaxyMixture([GalaxyModel(redshift=z) for z in (0.0, 0.15)])
        >>> x = np.array([11.5]); y = np.array([9.5])
        >>> bool(np.isfinite(mix.log_prob(x, y)).all())
        True
    """

    def __init__(self, models, counts=None, weights=None):
        self.models = list(models)
        if not self.models or not all(isinstance(m, GalaxyModel) for m in self.models):
            raise ValueError("models: expected a non-empty list of GalaxyModel")
        if weights is None:
            counts = np.ones(len(self.models)) if counts is None else as_finite_array(counts, "counts")
            if counts.shape != (len(self.models),) or np.any(counts < 0) or counts.sum() <= 0:
                raise ValueError(f"counts: expected {len(self.models)} non-negative numbers, not all 0")
            weights = counts * np.array([m.expected_galaxies for m in self.models])
        weights = as_finite_array(weights, "weights")
        if weights.shape != (len(self.models),) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights: expected {len(self.models)} non-negative numbers, not all 0")
        self.weights = weights / weights.sum()
        self._ln_w = np.log(np.where(self.weights > 0, self.weights, 1e-300))

    def __repr__(self):
        return f"GalaxyMixture({len(self.models)} models)"

    def _mix(self, values):
        return special.logsumexp(np.stack(values) + self._ln_w.reshape((-1,) + (1,) * values[0].ndim),
                                 axis=0)

    def log_prob(self, log_mtot, log_mstar):
        x, y = self._xy(log_mtot, log_mstar)
        return self._mix([m.log_prob(x, y) for m in self.models])

    def log_prob_total(self, log_mtot):
        x = as_finite_array(log_mtot, "log_mtot")
        return self._mix([m.log_prob_total(x) for m in self.models])

    def log_prob_stellar(self, log_mstar):
        y = as_finite_array(log_mstar, "log_mstar")
        return self._mix([m.log_prob_stellar(y) for m in self.models])


# --------------------------------------------------------------------------- catalogs on disk
def simulate_catalog(params=FIDUCIAL, redshift=0.0, seed=0, box_size=BOX_SIZE):
    """One built-in Subfind-like catalog as a dict (Msun/h, Mpc/h).

    Keys: ``total_mass``, ``stellar_mass`` (0 for dark subhalos), ``position``
    (N, 3), ``group_mass``, ``redshift``, ``box_size``, ``params``. ``seed`` is
    an int, a sequence of ints (e.g. ``[seed, sim, snap]``) or a Generator;
    the same seed gives the same catalog bit for bit.

    Example:
        >>> a = simulate_catalog(seed=[0, 3, 33]); b = simulate_catalog(seed=[0, 3, 33])
        >>> bool(np.array_equal(a["stellar_mass"], b["stellar_mass"]))
        True
    """
    return GalaxyModel(params, redshift, box_size).sample(seed)


def write_catalogs(root, params, snapshots=SNAPSHOTS, seed=0, prefix="CV", box_size=BOX_SIZE,
                   overwrite=False, progress=False):
    """Write built-in catalogs as ``<root>/<prefix>_<i>/groups_0XX.hdf5`` (Subfind layout).

    ``params`` (n_sims, 6): one row per simulation, in CAMELS order. Catalog
    (i, snap) uses the random stream ``[seed, crc32(prefix), i, snap]`` and redshift
    ``SNAPSHOT_REDSHIFTS[snap]``. The header records the parameters
    (``cosmonb_params``) and the seed. Existing files are kept unless
    ``overwrite``; writes are atomic. Returns the list of paths.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> paths = write_catalogs(root, [FIDUCIAL], snapshots=[33])
        >>> paths[0].relative_to(root).as_posix()
        'CV_0/groups_033.hdf5'
    """
    from tqdm.auto import tqdm

    params = check_params(params, "params")
    snapshots = _check_snapshots(snapshots)
    if not isinstance(prefix, str) or not prefix or "/" in prefix:
        raise ValueError(f"prefix: expected a folder prefix such as 'CV', got {prefix!r}")
    root = Path(root)
    paths = []
    jobs = [(i, s) for i in range(len(params)) for s in snapshots]
    models = {}
    for i, snap in tqdm(jobs, desc="catalogs", disable=not progress):
        path = root / f"{prefix}_{i}" / f"groups_{snap:03d}.hdf5"
        paths.append(path)
        if path.exists() and not overwrite:
            continue
        key = (tuple(params[i]), snap)
        if key not in models:
            models[key] = GalaxyModel(params[i], SNAPSHOT_REDSHIFTS[snap], box_size)
        stream = [int(seed), zlib.crc32(prefix.encode()), i, snap]
        cat = models[key].sample(np.random.default_rng(stream))
        data.write_subfind(path, cat["stellar_mass"], cat["total_mass"], cat["position"],
                           group_mass=cat["group_mass"], redshift=cat["redshift"], box_size=box_size,
                           attrs={"cosmonb_params": params[i], "cosmonb_seed": stream,
                                  "cosmonb_simulator": "cosmonb.catalogs (see module doc)"})
    return paths


def write_cv_catalogs(root, n_sims=27, snapshots=SNAPSHOTS, seed=0, **kwargs):
    """The built-in CV set: ``n_sims`` fiducial simulations x ``snapshots`` (see write_catalogs)."""
    n_sims = check_size(n_sims, "n_sims")
    return write_catalogs(root, np.tile(FIDUCIAL, (n_sims, 1)), snapshots, seed, prefix="CV", **kwargs)


def feedback_set(n_sims, parameter="A_SN1", seed=0):
    """Parameters (n_sims, 6) varying one feedback parameter over its prior, the rest fiducial.

    The values are log-uniform and stratified (one per equal-width bin of the log,
    in shuffled order), like one column of CAMELS's LH set.

    Example:
        >>> p = feedback_set(4, "A_SN1", seed=0)
        >>> p.shape, bool(np.all((p[:, 2] >= 0.25) & (p[:, 2] <= 4))), bool(np.all(p[:, 3] == 1))
        ((4, 6), True, True)
    """
    n_sims = check_size(n_sims, "n_sims")
    if parameter not in PARAM_NAMES[2:]:
        raise ValueError(f"parameter: expected one of {PARAM_NAMES[2:]}, got {parameter!r}")
    j = PARAM_NAMES.index(parameter)
    rng = np.random.default_rng(seed)
    u = (rng.permutation(n_sims) + rng.random(n_sims)) / n_sims
    lo, hi = np.log(PRIOR_LOW[j]), np.log(PRIOR_HIGH[j])
    params = np.tile(FIDUCIAL, (n_sims, 1))
    params[:, j] = np.exp(lo + u * (hi - lo))
    return params


def subset(galaxies, simulations):
    """The rows of a :func:`load_galaxies` dict that belong to the given simulations.

    Example:
        >>> gal = {"log_mtot": np.arange(4.0), "sim": np.array([0, 1, 2, 1]), "n_dropped": 3}
        >>> subset(gal, [1])["log_mtot"].tolist()
        [1.0, 3.0]
    """
    keep = np.isin(galaxies["sim"], np.atleast_1d(simulations))
    if not keep.any():
        raise ValueError(f"simulations: none of {list(np.atleast_1d(simulations))} is in the catalog "
                         f"(it has {sorted(set(np.asarray(galaxies['sim']).tolist()))[:10]}...)")
    n = len(galaxies["sim"])
    return {k: (v[keep] if isinstance(v, np.ndarray) and v.shape[:1] == (n,) else v)
            for k, v in galaxies.items()}


def split_simulations(simulations, val_fraction=0.11, test_fraction=0.15):
    """Split simulation ids into train / val / test (the last ones go to test, then val).

    For the 27 CV simulations this is :data:`CV_SPLIT` (20 / 3 / 4). Splitting by
    simulation keeps every galaxy of a box on one side. Each fraction lies in (0, 1)
    and their sum below 1; val and test get at least one simulation each, train
    keeps at least one, and the three sets never overlap.

    Example:
        >>> s = split_simulations(range(27))
        >>> s == {k: list(v) for k, v in CV_SPLIT.items()}
        True
    """
    fractions = {}
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        value = as_finite_array(value, name)
        if value.ndim != 0 or not 0 < value < 1:
            raise ValueError(f"{name}: expected a fraction in (0, 1), got {value.tolist()!r}")
        fractions[name] = float(value)
    if fractions["val_fraction"] + fractions["test_fraction"] >= 1:
        raise ValueError(f"val_fraction, test_fraction: expected a sum below 1 (the rest trains), "
                         f"got {fractions['val_fraction']} + {fractions['test_fraction']}")
    arr = as_finite_array(np.atleast_1d(simulations), "simulations")
    if arr.ndim != 1 or np.any(arr != np.round(arr)) or np.any(arr < 0):
        raise ValueError(f"simulations: expected simulation ids (integers >= 0), got {arr.tolist()[:10]}")
    ids = sorted(set(int(i) for i in arr))
    n = len(ids)
    if n < 3:
        raise ValueError(f"simulations: need at least 3 simulations to split, got {n}")
    n_test = max(1, int(round(fractions["test_fraction"] * n)))
    n_val = max(1, int(round(fractions["val_fraction"] * n)))
    if n_test + n_val >= n:
        raise ValueError(f"simulations: {n} simulations leave none to train on with "
                         f"val_fraction={val_fraction}, test_fraction={test_fraction} "
                         f"({n_val} val + {n_test} test); use smaller fractions or more simulations")
    split = {"train": ids[:n - n_test - n_val], "val": ids[n - n_test - n_val:n - n_test],
             "test": ids[n - n_test:]}
    assert sum(map(len, split.values())) == n  # disjoint by construction, and complete
    return split


def _check_snapshots(snapshots):
    snapshots = [int(s) for s in np.atleast_1d(snapshots)]
    bad = [s for s in snapshots if s not in SNAPSHOT_REDSHIFTS]
    if not snapshots or bad:
        raise ValueError(f"snapshots: expected some of {sorted(SNAPSHOT_REDSHIFTS)}, got {snapshots}")
    return snapshots


def log_masses(total_mass, stellar_mass, where="catalog"):
    """log10 of total and stellar masses (Msun/h), refusing empty, NaN/inf or non-positive input.

    Rows are never dropped here: a non-positive mass is an error that says how
    many rows are affected (select galaxies first, e.g. ``load_subfind(...,
    galaxies_only=True)``, which reports how many it dropped).

    Example:
        >>> log_masses([1e12], [1e10])
        (array([12.]), array([10.]))
        >>> log_masses([1e12, 1e11], [1e10, 0.0])
        Traceback (most recent call last):
        ...
        ValueError: stellar_mass (catalog): 1 of 2 values are <= 0, so log10 is undefined; keep galaxies only (stellar mass > 0) before taking logs
    """
    out = []
    for name, arr in (("total_mass", total_mass), ("stellar_mass", stellar_mass)):
        arr = as_finite_array(arr, f"{name} ({where})")
        check_ndim(arr, f"{name} ({where})", 1, "a 1D array of masses in Msun/h")
        if arr.size == 0:
            raise ValueError(f"{name} ({where}): the catalog is empty (no galaxies)")
        bad = int(np.count_nonzero(arr <= 0))
        if bad:
            raise ValueError(f"{name} ({where}): {bad} of {arr.size} values are <= 0, so log10 is "
                             "undefined; keep galaxies only (stellar mass > 0) before taking logs")
        out.append(np.log10(arr))
    if out[0].shape != out[1].shape:
        raise ValueError(f"total_mass, stellar_mass ({where}): expected the same length, "
                         f"got {out[0].shape} and {out[1].shape}")
    return out[0], out[1]


def load_galaxies(root, simulations=None, snapshots=SNAPSHOTS, prefix="CV", min_stellar_mass=None,
                  verbose=True):
    """Read galaxies from ``<root>/<prefix>_<i>/`` Subfind catalogs (built-in or real CAMELS).

    ``simulations``: simulation indices (default: every ``<prefix>_<i>`` folder);
    ``snapshots``: some of 30-33. Galaxies are subhalos with stellar mass > 0
    (and >= ``min_stellar_mass`` Msun/h if given); the number of subhalos left out
    is returned and printed, never dropped silently.

    Returns a dict of 1D arrays, one entry per galaxy: ``log_mtot``,
    ``log_mstar`` (log10 Msun/h), ``redshift``, ``sim``, ``snapshot``,
    ``params`` (N, 6; NaN when the file does not record them, as real CAMELS
    files do not), plus ``n_subhalos``, ``n_dropped`` (ints) and ``files``.
    Raises ValueError if no galaxy is found.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> _ = write_catalogs(root, [FIDUCIAL], snapshots=[33], seed=2)
        >>> gal = load_galaxies(root, snapshots=[33], verbose=False)
        >>> gal["log_mtot"].shape == gal["log_mstar"].shape, bool(gal["n_dropped"] > 0)
        (True, True)
    """
    import h5py

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: catalog folder {root} does not exist. {data.SUBFIND_HINT}")
    snapshots = _check_snapshots(snapshots)
    if simulations is None:
        found = sorted(int(p.name.split("_")[-1]) for p in root.glob(f"{prefix}_*")
                       if p.is_dir() and p.name.split("_")[-1].isdigit())
        if not found:
            raise FileNotFoundError(f"root: no '{prefix}_<i>' simulation folders in {root}. "
                                    f"{data.SUBFIND_HINT}")
        simulations = found
    simulations = [int(s) for s in np.atleast_1d(simulations)]
    if min_stellar_mass is not None:
        min_stellar_mass = float(as_finite_array(min_stellar_mass, "min_stellar_mass"))
    cols = {k: [] for k in ("log_mtot", "log_mstar", "redshift", "sim", "snapshot", "params")}
    n_sub = n_drop = 0
    files = []
    for i in simulations:
        for snap in snapshots:
            path = data.snapshot_path(root / f"{prefix}_{i}", snap)
            cat = data.load_subfind(path, galaxies_only=True)
            n_sub += len(cat["stellar_mass"]) + cat["n_dropped"]
            n_drop += cat["n_dropped"]
            ms, mt = cat["stellar_mass"], cat["total_mass"]
            if min_stellar_mass is not None:
                keep = ms >= min_stellar_mass
                n_drop += int(np.count_nonzero(~keep))
                ms, mt = ms[keep], mt[keep]
            files.append(str(path))
            if len(ms) == 0:
                continue
            x, y = log_masses(mt, ms, where=str(path))
            z = cat["redshift"] if np.isfinite(cat["redshift"]) else SNAPSHOT_REDSHIFTS[snap]
            with h5py.File(path, "r") as f:
                p = f["Header"].attrs.get("cosmonb_params") if "Header" in f else None
            p = np.full(6, np.nan) if p is None else np.asarray(p, float)
            cols["log_mtot"].append(x)
            cols["log_mstar"].append(y)
            cols["redshift"].append(np.full(len(x), z))
            cols["sim"].append(np.full(len(x), i))
            cols["snapshot"].append(np.full(len(x), snap))
            cols["params"].append(np.tile(p, (len(x), 1)))
    if not cols["log_mtot"]:
        raise ValueError(f"root: no galaxies (subhalos with stellar mass > 0"
                         f"{'' if min_stellar_mass is None else f' and >= {min_stellar_mass:g}'}) "
                         f"in {len(files)} catalog(s) under {root}")
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out.update(n_subhalos=n_sub, n_dropped=n_drop, files=files)
    if verbose:
        print(f"[cosmonb.catalogs] {len(out['log_mtot'])} galaxies from {len(files)} catalogs; "
              f"{n_drop} of {n_sub} subhalos left out (stellar mass 0"
              f"{'' if min_stellar_mass is None else f' or < {min_stellar_mass:g}'})")
    return out


def inject_outliers(log_mtot, log_mstar, n_outliers, shift=(0.5, 1.0), seed=0):
    """Copy a catalog and move ``n_outliers`` random galaxies off the SHMR.

    Each chosen galaxy's log10 M_star moves by ``s * U(shift)`` dex with a
    random sign ``s``: a galaxy with 3-10 times too much or too little stellar
    mass for its halo. Returns ``(log_mtot, log_mstar, is_outlier)``; the
    number of rows is unchanged.

    Example:
        >>> x, y, bad = inject_outliers(np.full(10, 11.0), np.full(10, 9.0), 3, seed=0)
        >>> int(bad.sum()), bool(np.all(np.abs(y[bad] - 9.0) >= 0.5))
        (3, True)
    """
    x = as_finite_array(log_mtot, "log_mtot").copy()
    y = as_finite_array(log_mstar, "log_mstar").copy()
    check_ndim(x, "log_mtot", 1, "a 1D array")
    if y.shape != x.shape:
        raise ValueError(f"log_mstar: expected shape {x.shape} like log_mtot, got {y.shape}")
    if x.size == 0:
        raise ValueError("log_mtot: the catalog is empty (no galaxies)")
    if isinstance(n_outliers, bool) or not isinstance(n_outliers, (int, np.integer)) \
            or not 0 < n_outliers <= x.size:
        raise ValueError(f"n_outliers: expected an integer in [1, {x.size}], got {n_outliers!r}")
    lo, hi = (float(v) for v in as_finite_array(shift, "shift"))
    if not 0 <= lo <= hi:
        raise ValueError(f"shift: expected (low, high) with 0 <= low <= high dex, got {shift}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(x.size, size=int(n_outliers), replace=False)
    sign = rng.choice([-1.0, 1.0], size=len(idx))
    y[idx] += sign * rng.uniform(lo, hi, size=len(idx))
    bad = np.zeros(x.size, bool)
    bad[idx] = True
    return x, y, bad
