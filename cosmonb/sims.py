r"""The built-in CAMELS-like simulator, which knows its exact likelihood.

A map of CAMELS's Multifield Dataset (CMD) is a 5 Mpc/h slab of a periodic
(25 Mpc/h)^3 box, projected onto a 2D grid. This module imitates one with a
lognormal field whose log is exactly Gaussian, so the likelihood of a dark
matter map given (Omega_m, sigma_8) can be written down and evaluated.

The model, step by step (all spectra in (Mpc/h)^n, k in h/Mpc):

1. **Non-linear 3D spectrum.** ``P_nl(k) = P_lin(k) [1 + (k / k_nl)^1.5]``
   with ``k_nl = 1 h/Mpc (sigma_8 / 0.8)^-2 (Omega_m / 0.3)^0.5``. A toy of
   non-linear growth, not fitted to N-body: its scale moves with sigma_8
   differently from how the linear amplitude does, which (with the mean
   density) is what lets a map separate Omega_m from sigma_8.
2. **Projection through a slab** of thickness d = 5 Mpc/h in a periodic box
   of side L: only k_z = 2 pi m / L exist, so
   ``P_2D(k) = (1/L) sum_m P_nl(sqrt(k^2 + k_z^2)) sinc^2(k_z d / 2)``,
   whose L -> infinity limit is the integral
   ``(1/pi) int_0^inf P_nl(sqrt(k^2 + k_z^2)) sinc^2(k_z d / 2) dk_z``.
   The m = 0, k = 0 term is zero: the box mean is fixed, but a slab's mean
   scatters through the k_z != 0 modes.
3. **On the grid.** An n x n map with the unnormalised FFT has per-mode
   variance ``S_k = n^2 P_2D(|k|) / L^2`` (the DC mode included).
   The linear pixel variance is ``s^2 = sum_k S_k / n^2``.
4. **Log field.** The Gaussian log field g has spectrum
   ``S^g_k = S_k ln(1 + s^2) / s^2``: the shape of the linear spectrum, its
   amplitude reduced so that Var(g) = ln(1 + s^2), as for a lognormal field
   of variance s^2 (the log-density of N-body fields has about the linear
   shape with a lower amplitude; Neyrinck, Szapudi & Szalay 2009).
5. **Dark matter.** ``Mcdm = rho_cdm exp(g - Var(g)/2)`` with
   ``rho_cdm = (Omega_m - Omega_b) rho_crit d`` in (Msun/h)/(Mpc/h)^2: the
   map's normalisation carries Omega_m, the slab mean scatters about it.

So ``y = ln Mcdm`` is Gaussian with mean ``mu = ln rho_cdm - Var(g)/2`` and a
covariance diagonal in Fourier space, and the exact log-likelihood is

    ln p(map | theta) = -1/2 sum_k |Y_k - n^2 mu delta_k0|^2 / (n^2 S^g_k)
                        -1/2 sum_k ln S^g_k - (n^2/2) ln 2 pi - sum_x y_x,

(Y = FFT(y); the last term is the Jacobian of the log). The gas, HI and
magnetic-field channels are deterministic, documented functions of the same
g (plus a little channel noise) that depend on the four astrophysical
parameters; see :func:`baryon_channels`.

Example:
    >>> maps = simulate([[0.3, 0.8, 1, 1, 1, 1]], ["Mcdm", "HI"], n_pix=32, seed=1)
    >>> maps.shape
    (1, 2, 32, 32)
    >>> float(log_likelihood(maps[:, 0], 0.3, 0.8)[0]) < 0
    True
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import cosmology
from ._checks import as_finite_array, check_box_size, check_in_range, check_ndim, check_size
from .runtime import check_seed  # the package's one seed check

BOX_SIZE = 25.0
SLAB_THICKNESS = 5.0
N_PIX = 64
MAPS_PER_SIM = 15

PARAM_NAMES = ("Omega_m", "sigma_8", "A_SN1", "A_AGN1", "A_SN2", "A_AGN2")
FIDUCIAL = np.array([0.3, 0.8, 1.0, 1.0, 1.0, 1.0])
PRIOR_LOW = np.array([0.1, 0.6, 0.25, 0.25, 0.5, 0.5])
PRIOR_HIGH = np.array([0.5, 1.0, 4.0, 4.0, 2.0, 2.0])
LOG_UNIFORM = np.array([False, False, True, True, True, True])
FIELDS = ("Mcdm", "Mgas", "HI", "B")

#: non-linear boost P_nl = P_lin [1 + (k / k_nl)^NL_SLOPE]
NL_SCALE, NL_SLOPE, NL_SIGMA8_POWER, NL_OMEGAM_POWER = 1.0, 1.5, -2.0, 0.5
_KZ_TERMS = 48  # |m| <= 48 slab modes; sinc^2 and P(k) make later terms negligible

#: smallest map :func:`simulate` makes: 8 x 8 pixels of 3.1 Mpc/h (smaller maps have
#: fewer than 10 power-spectrum bins and pixels wider than the 0.2 Mpc/h gas smoothing)
MIN_N_PIX = 8
#: :func:`simulate` refuses calls whose output plus working arrays would exceed this
#: (bytes), with a ValueError naming n_pix instead of a MemoryError midway; raise it
#: deliberately if the machine has the memory
MAX_SIMULATE_BYTES = 16 * 2**30
# float64 (n, n) working arrays per map of a chunk in simulate (g, ln Mcdm, noise, FFTs,
# 3 baryon noise channels and their smoothed copies, gas, HI, B): measured peaks with
# tracemalloc are 12.6 (Mcdm alone) and 16 (all four fields) per map, at 64^2
_WORK_ARRAYS_PER_MAP = 18
_CHUNK_MAPS = 500


# ---------------------------------------------------------------- spectra
def nonlinear_scale(omega_m, sigma_8):
    """k_nl = 1 h/Mpc (sigma_8/0.8)^-2 (Omega_m/0.3)^0.5 of the toy non-linear boost."""
    return (NL_SCALE * (np.asarray(sigma_8) / 0.8) ** NL_SIGMA8_POWER
            * (np.asarray(omega_m) / 0.3) ** NL_OMEGAM_POWER)


def nonlinear_power(k, omega_m, sigma_8):
    """The simulator's 3D spectrum P_nl(k) = P_lin(k) [1 + (k / k_nl)^1.5].

    Example:
        >>> k = np.array([0.1, 10.0])
        >>> bool(np.all(nonlinear_power(k, 0.3, 0.8) >= cosmology.linear_power(k, 0.3, 0.8)))
        True
    """
    plin = cosmology.linear_power(k, omega_m, sigma_8)
    om, s8 = np.broadcast_arrays(np.asarray(omega_m, float), np.asarray(sigma_8, float))
    knl = nonlinear_scale(om, s8).reshape(om.shape + (1,) * np.ndim(k))
    return plin * (1.0 + (np.asarray(k, float) / knl) ** NL_SLOPE)


def _projected_tables(k_perp, omega_m, box_size, slab):
    """Projected unit-sigma_8 tables T0, T1 with P_2D = s8^2 (T0 + k_nl^-1.5 T1).

    ``k_perp`` (K,), ``omega_m`` (M,) -> two arrays (M, K).
    """
    m = np.arange(-_KZ_TERMS, _KZ_TERMS + 1)
    kz = 2 * np.pi * m / box_size
    weight = np.sinc(kz * slab / (2 * np.pi)) ** 2  # np.sinc(x) = sin(pi x)/(pi x)
    k3 = np.sqrt(k_perp[:, None] ** 2 + kz[None, :] ** 2)  # (K, Z)
    positive = k3 > 0
    k3s = np.where(positive, k3, 1.0)
    om = np.asarray(omega_m, float)
    p_unit = cosmology.linear_power(k3s, om, np.ones_like(om))  # (M, K, Z), sigma_8 = 1
    p_unit = np.where(positive, p_unit, 0.0)
    t0 = (p_unit * weight).sum(-1) / box_size
    t1 = (p_unit * k3s**NL_SLOPE * weight).sum(-1) / box_size
    return t0, t1


def projected_power(k, omega_m, sigma_8, box_size=BOX_SIZE, slab=SLAB_THICKNESS):
    """2D spectrum of a slab of thickness ``slab`` projected from P_nl (module doc, step 2).

    Shape: ``broadcast(omega_m, sigma_8).shape + k.shape``.

    Example:
        >>> p = projected_power(np.array([0.5, 2.0]), 0.3, 0.8)
        >>> bool(p[0] > p[1] > 0)
        True
    """
    k = as_finite_array(k, "k")
    if np.any(k < 0):
        raise ValueError("k: expected wavenumbers >= 0 in h/Mpc")
    om, s8 = check_cosmology(omega_m, sigma_8)
    flat_om, flat_s8 = om.ravel(), s8.ravel()
    # sigma_8 enters algebraically: tabulate once per distinct Omega_m
    uniq_om, which = np.unique(flat_om, return_inverse=True)
    t0, t1 = _projected_tables(k.ravel(), uniq_om, box_size, slab)
    knl = nonlinear_scale(flat_om, flat_s8)[:, None]
    p2d = flat_s8[:, None] ** 2 * (t0[which] + knl**-NL_SLOPE * t1[which])
    return p2d.reshape(om.shape + k.shape)


@lru_cache(maxsize=16)
def fourier_grid(n_pix, box_size):
    """Unique |k| on an n x n FFT grid: (k_unique, inverse index (n, n), counts)."""
    freq = np.fft.fftfreq(n_pix, d=1.0 / n_pix)
    k2_int = (freq[:, None] ** 2 + freq[None, :] ** 2).astype(np.int64)
    uniq, inverse, counts = np.unique(k2_int.ravel(), return_inverse=True, return_counts=True)
    k_unique = 2 * np.pi / box_size * np.sqrt(uniq)
    return k_unique, inverse.reshape(n_pix, n_pix), counts


def log_field_spectrum(omega_m, sigma_8, n_pix=N_PIX, box_size=BOX_SIZE):
    """Per-mode variance S^g of the Gaussian log field on the unique |k| of the grid.

    Returns ``(s_g, var_g)``: ``s_g`` of shape ``S + (n_unique,)`` for parameters of
    broadcast shape S (index with ``fourier_grid(n_pix, box_size)[1]`` to get the n x n
    grid), and the pixel variance ``var_g = ln(1 + s^2)``.

    Example:
        >>> s_g, var_g = log_field_spectrum(0.3, 0.8, n_pix=16)
        >>> bool(var_g > 0)
        True
    """
    k_unique, _, counts = fourier_grid(n_pix, box_size)
    p2d = projected_power(k_unique, omega_m, sigma_8, box_size)
    s_lin = n_pix**2 * p2d / box_size**2
    var_lin = (s_lin * counts).sum(-1) / n_pix**2
    var_g = np.log1p(var_lin)
    return s_lin * (var_g / var_lin)[..., None], var_g


def mean_density(omega_m):
    """rho_cdm = (Omega_m - Omega_b) rho_crit d, the mean of an Mcdm map in (Msun/h)/(Mpc/h)^2."""
    return (np.asarray(omega_m, float) - cosmology.OMEGA_B) * cosmology.RHO_CRIT * SLAB_THICKNESS


def mean_log_density(omega_m, var_g):
    """mu = ln[(Omega_m - Omega_b) rho_crit d] - Var(g)/2, the mean of ln Mcdm."""
    return np.log(mean_density(omega_m)) - var_g / 2


# ---------------------------------------------------------------- fields
def white_noise(seed, index, n_pix):
    return np.random.default_rng([seed, index]).standard_normal((n_pix, n_pix))


def colour_noise(noise, sqrt_s_half):
    """g = IFFT(sqrt(S) FFT(w)) for a batch of white-noise maps (real FFTs)."""
    n = noise.shape[-1]
    return np.fft.irfft2(np.fft.rfft2(noise) * sqrt_s_half, s=(n, n))


def gaussian_field(power, n_pix=N_PIX, box_size=BOX_SIZE, n_maps=1, seed=0):
    """Zero-mean Gaussian random fields with 2D spectrum ``power(k)`` on a periodic grid.

    ``power`` is a callable of k in h/Mpc (k > 0) returning P_2D in (Mpc/h)^2, so that
    ``stats.power_spectrum`` of ``1 + field`` recovers it. The DC mode is zero.
    Map i uses the random stream (seed, i): the same seed gives the same maps.

    Example:
        >>> g = gaussian_field(lambda k: cosmology.power_law(k, 1.0, 2.0)[0], n_pix=32, n_maps=2)
        >>> g.shape
        (2, 32, 32)
    """
    n_pix, n_maps = check_size(n_pix, "n_pix"), check_size(n_maps, "n_maps")
    seed = check_seed(seed)
    box_size = check_box_size(box_size)
    k_unique, inverse, _ = fourier_grid(n_pix, box_size)
    p = np.zeros_like(k_unique)
    p[1:] = as_finite_array(power(k_unique[1:]), "power(k)")
    if np.any(p < 0):
        raise ValueError("power: expected P(k) >= 0")
    sqrt_s = np.sqrt(n_pix**2 * p / box_size**2)[inverse][:, : n_pix // 2 + 1]
    noise = np.stack([white_noise(seed, i, n_pix) for i in range(n_maps)])
    return colour_noise(noise, sqrt_s)


def lognormal_transform(g, variance):
    """delta = exp(g - variance/2) - 1: a positive density (1 + delta > 0) with <delta> = 0.

    Example:
        >>> float(lognormal_transform(0.0, 0.0))
        0.0
    """
    g = as_finite_array(g, "g")
    variance = as_finite_array(variance, "variance")
    if np.any(variance < 0):
        raise ValueError("variance: expected the variance of g, >= 0")
    return np.exp(g - variance / 2) - 1.0


def log_dark_matter(params, n_pix=N_PIX, seed=0, box_size=BOX_SIZE, indices=None):
    """The Gaussian field g and ln Mcdm for each row of params (N, >= 2).

    Returns ``(g, ln_mcdm)``, each (N, n, n). Rows that share (Omega_m, sigma_8)
    share one spectrum computation. Row r uses the random stream (seed, indices[r]).
    """
    params = np.asarray(params, float)
    indices = np.arange(len(params)) if indices is None else np.asarray(indices)
    k_unique, inverse, _ = fourier_grid(n_pix, box_size)
    cosmo, which = np.unique(params[:, :2], axis=0, return_inverse=True)
    which = which.ravel()
    s_g, var_g = log_field_spectrum(cosmo[:, 0], cosmo[:, 1], n_pix, box_size)
    mu = mean_log_density(cosmo[:, 0], var_g)
    g = np.empty((len(params), n_pix, n_pix))
    for j in range(len(cosmo)):
        rows = np.flatnonzero(which == j)
        sqrt_s = np.sqrt(s_g[j])[inverse][:, : n_pix // 2 + 1]
        noise = np.stack([white_noise(seed, i, n_pix) for i in indices[rows]])
        g[rows] = colour_noise(noise, sqrt_s)
    ln_mcdm = g + mu[which, None, None]
    return g, ln_mcdm


# ---------------------------------------------------------------- baryons
def _smooth(field, radius_px):
    """Gaussian smoothing (periodic) of a batch (N, n, n) with per-map radius (N,) in pixels."""
    n = field.shape[-1]
    fx = np.fft.fftfreq(n)[:, None]
    fy = np.fft.rfftfreq(n)[None, :]
    k2 = (2 * np.pi) ** 2 * (fx**2 + fy**2)
    kernel = np.exp(-0.5 * k2[None] * np.asarray(radius_px)[:, None, None] ** 2)
    return np.fft.irfft2(np.fft.rfft2(field) * kernel, s=(n, n))


def baryon_channels(g, params, fields, box_size=BOX_SIZE, seed=0, indices=None):
    r"""Gas, HI and magnetic-field maps as functions of the dark-matter log field g.

    With ``x = log2 A`` for each astrophysical parameter (0 at the fiducial):

    * **Mgas** (Msun/h)/(Mpc/h)^2: the baryons follow the dark matter, smoothed by
      feedback over ``R = 0.2 Mpc/h * 2^(0.35 x_SN1 + 0.08 x_AGN1)``; the dense tail
      is flattened, ``h = g_s - t max(g_s - 1, 0)`` with ``t = 0.25 + 0.05 x_SN2 +
      0.04 x_AGN2``; the mean is ``0.85 Omega_b rho_crit d (1 - 0.03 x_AGN1)``
      (only baryons, so its mean does not track Omega_m: the gas-to-dark-matter ratio does).
    * **HI**: photo-ionised gas has n_HI ~ rho^2 in the diffuse phase, capped in
      the densest cells where star formation and AGN remove it:
      ``ln HI = 1.6 h - (0.3 + 0.1 x_SN2 + 0.03 x_AGN2) max(h - 1.5, 0)`` + const,
      with amplitude 10^-4.5 of the gas times ``2^(-0.2 x_SN2)``.
    * **B** (Gauss): flux freezing, ``B ~ rho_gas^(2/3)``, amplified by feedback-driven
      turbulence, ``B0 = 1e-8 * 2^(0.5 x_SN1 + 0.15 x_AGN2)``.

    Each channel also gets its own smoothed noise (0.15, 0.4 and 0.3 nats). The AGN
    parameters enter weakly and the supernova ones strongly, as in CAMELS.
    """
    n_pix = g.shape[-1]
    indices = np.arange(len(g)) if indices is None else indices
    x = np.log2(params[:, 2:6])
    x_sn1, x_agn1, x_sn2, x_agn2 = (x[:, i, None, None] for i in range(4))
    pix = box_size / n_pix
    radius = 0.2 / pix * 2 ** (0.35 * x[:, 0] + 0.08 * x[:, 1])
    g_s = _smooth(g, radius)
    tail = 0.25 + 0.05 * x_sn2 + 0.04 * x_agn2
    h = g_s - tail * np.maximum(g_s - 1.0, 0.0)
    white = np.stack([np.random.default_rng([seed, i, 1]).standard_normal((3, n_pix, n_pix))
                      for i in indices])
    noise = {f: _smooth(white[:, c], np.full(len(g), 1.0)) for c, f in enumerate(FIELDS[1:])}
    g_mean = g.mean(axis=(-2, -1), keepdims=True)  # the slab's own large-scale overdensity

    def normalised(log_field, mean):
        # mean * exp(log_field) / <exp(log_field - g_mean)>: the map's small-scale structure
        # is normalised, its slab-mean fluctuation (shared with the dark matter) is kept
        norm = np.mean(np.exp(log_field - g_mean), axis=(-2, -1), keepdims=True)
        return mean * np.exp(log_field - g_mean) / norm * np.exp(g_mean)

    rho_b = cosmology.OMEGA_B * cosmology.RHO_CRIT * SLAB_THICKNESS
    out = {}
    gas = None
    if {"Mgas", "HI", "B"} & set(fields):
        gas = normalised(h + 0.15 * noise["Mgas"], 0.85 * rho_b * (1 - 0.03 * x_agn1))
    if "Mgas" in fields:
        out["Mgas"] = gas
    if "HI" in fields:
        ln_hi = 1.6 * h - (0.3 + 0.1 * x_sn2 + 0.03 * x_agn2) * np.maximum(h - 1.5, 0.0)
        out["HI"] = normalised(ln_hi + 0.4 * noise["HI"], 10**-4.5 * 0.85 * rho_b * 2 ** (-0.2 * x_sn2))
    if "B" in fields:
        ln_b = (2.0 / 3.0) * np.log(gas / (0.85 * rho_b)) + 0.3 * noise["B"]
        out["B"] = 1e-8 * 2 ** (0.5 * x_sn1 + 0.15 * x_agn2) * np.exp(ln_b)
    return out


# ---------------------------------------------------------------- entry point
def simulate(params, fields=("Mcdm",), n_pix=N_PIX, seed=0, box_size=BOX_SIZE, progress=False):
    """Multifield maps, shape (N, C, n_pix, n_pix) float32, for params (N, 6) in CAMELS order.

    ``fields``: one name or a list from ``FIELDS`` (Mcdm, Mgas, HI, B), stacked as
    channels in the order given. Map i uses the random streams (seed, i), so the same
    call gives the same maps bit for bit, and all channels of map i come from one
    underlying field. Mass maps are in (Msun/h)/(Mpc/h)^2, B in Gauss.

    ``n_pix`` must be even and at least ``MIN_N_PIX`` (8), as CMD maps block-averaged
    from 256^2 are; ``seed`` an integer in [0, 2**32); ``box_size`` (Mpc/h) finite and
    > 0. Calls that would need more than ``MAX_SIMULATE_BYTES`` (16 GiB) of memory are
    refused up front: simulate in batches instead.

    Example:
        >>> maps = simulate(np.tile(FIDUCIAL, (3, 1)), "Mcdm", n_pix=16)
        >>> maps.shape, maps.dtype
        ((3, 1, 16, 16), dtype('float32'))
    """
    params = check_params(params)
    fields = check_fields(fields)
    n_pix = check_n_pix(n_pix)
    seed = check_seed(seed)
    box_size = check_box_size(box_size)
    _check_memory(len(params), len(fields), n_pix)
    out = np.empty((len(params), len(fields), n_pix, n_pix), dtype=np.float32)
    chunk = _CHUNK_MAPS
    starts = range(0, len(params), chunk)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="simulate", unit_scale=chunk)
    for start in starts:
        idx = np.arange(start, min(start + chunk, len(params)))
        g, ln_mcdm = log_dark_matter(params[idx], n_pix, seed, box_size, indices=idx)
        baryons = baryon_channels(g, params[idx], fields, box_size, seed, indices=idx)
        for c, name in enumerate(fields):
            out[idx, c] = np.exp(ln_mcdm) if name == "Mcdm" else baryons[name]
    return out


# ---------------------------------------------------------------- parameter sets
def sample_prior(n, seed=0, latin_hypercube=False):
    """n parameter rows (n, 6) from CAMELS's LH prior.

    Omega_m and sigma_8 uniform, the A's log-uniform. ``latin_hypercube=True``
    stratifies each parameter into n equal-probability bins, as CAMELS's LH set does.
    """
    n = check_size(n, "n")
    rng = np.random.default_rng(check_seed(seed))
    if latin_hypercube:
        u = (np.argsort(rng.random((6, n)), axis=1).T + rng.random((n, 6))) / n
    else:
        u = rng.random((n, 6))
    lo = np.where(LOG_UNIFORM, np.log(PRIOR_LOW), PRIOR_LOW)
    hi = np.where(LOG_UNIFORM, np.log(PRIOR_HIGH), PRIOR_HIGH)
    x = lo + u * (hi - lo)
    return np.where(LOG_UNIFORM, np.exp(x), x)


def lh_set(n_sims=1000, maps_per_sim=MAPS_PER_SIM, seed=0):
    """CAMELS-style LH set: per-map params (n_sims * maps_per_sim, 6) and simulation ids.

    Map i belongs to simulation i // maps_per_sim, as in CMD.
    """
    maps_per_sim = check_size(maps_per_sim, "maps_per_sim")
    sims = sample_prior(n_sims, seed=seed, latin_hypercube=True)
    return np.repeat(sims, maps_per_sim, axis=0), np.repeat(np.arange(n_sims), maps_per_sim)


def one_p_set(n_values=11, maps_per_sim=MAPS_PER_SIM):
    """1P set: each parameter varied alone over its prior (n_values each), others fiducial.

    Returns per-map params (6 * n_values * maps_per_sim, 6) and simulation ids; values are
    linear in Omega_m and sigma_8 and logarithmic in the A's.
    """
    n_values = check_size(n_values, "n_values")
    maps_per_sim = check_size(maps_per_sim, "maps_per_sim")
    rows = []
    for j in range(6):
        if LOG_UNIFORM[j]:
            values = np.geomspace(PRIOR_LOW[j], PRIOR_HIGH[j], n_values)
        else:
            values = np.linspace(PRIOR_LOW[j], PRIOR_HIGH[j], n_values)
        block = np.tile(FIDUCIAL, (n_values, 1))
        block[:, j] = values
        rows.append(block)
    sims = np.concatenate(rows)
    return np.repeat(sims, maps_per_sim, axis=0), np.repeat(np.arange(len(sims)), maps_per_sim)


def cv_set(n_sims=27, maps_per_sim=MAPS_PER_SIM):
    """CV set: the fiducial parameters, n_sims simulations (different seeds via the map index)."""
    n = check_size(n_sims, "n_sims") * maps_per_sim
    return np.tile(FIDUCIAL, (n, 1)), np.repeat(np.arange(n_sims), maps_per_sim)


# ---------------------------------------------------------------- exact likelihood
def binned_mode_power(y, box_size):
    """Fields y (N, n, n) -> (|Y_k|^2 summed per unique |k| (N, K), the FFTs Y_k (N, n, n))."""
    y_k = np.fft.fft2(y)
    _, inverse, counts = fourier_grid(y.shape[-1], box_size)
    power = np.abs(y_k) ** 2
    binned = np.zeros((len(y), len(counts)))
    for i in range(len(y)):
        binned[i] = np.bincount(inverse.ravel(), weights=power[i].ravel(), minlength=len(counts))
    return binned, y_k


def _binned_log_power(y, box_size):
    """ln maps y (N, n, n) -> (|Y_k|^2 summed per unique |k| (N, K), Y_0 (N,), sum of y (N,))."""
    binned, y_k = binned_mode_power(y, box_size)
    return binned, y_k[:, 0, 0].real, y.sum(axis=(-2, -1))


def log_likelihood(maps, omega_m, sigma_8, box_size=BOX_SIZE, log_maps=False):
    """Exact ln p(map | Omega_m, sigma_8) of dark-matter maps as :func:`simulate` returns them.

    ``maps``: (n, n), (N, n, n) or (N, 1, n, n) positive Mcdm maps (``log_maps=True``:
    their natural log, ln Mcdm, as given; the density is still that of Mcdm). ``omega_m``,
    ``sigma_8``: broadcastable arrays of shape S. Returns shape (N,) + S (or S for
    one map). See the module docstring for the formula.

    Example:
        >>> m = simulate([FIDUCIAL], "Mcdm", n_pix=16, seed=3)[:, 0]
        >>> ll = log_likelihood(m, [0.2, 0.3], 0.8)
        >>> ll.shape
        (1, 2)
    """
    maps, single = _check_maps(maps, positive=not log_maps)
    om, s8 = check_cosmology(omega_m, sigma_8)
    n = maps.shape[-1]
    y = maps.astype(np.float64) if log_maps else np.log(maps.astype(np.float64))
    binned, y0, sum_y = _binned_log_power(y, box_size)
    _, _, counts = fourier_grid(n, box_size)
    om_f, s8_f = om.ravel(), s8.ravel()
    out = np.empty((len(maps), om_f.size))
    chunk = 2000
    for start in range(0, om_f.size, chunk):
        sl = slice(start, start + chunk)
        s_g, var_g = log_field_spectrum(om_f[sl], s8_f[sl], n, box_size)  # (P, K)
        mu = mean_log_density(om_f[sl], var_g)  # (P,)
        inv = 1.0 / (n**2 * s_g)
        quad = binned @ inv.T  # (N, P), includes |Y_0|^2 / (n^2 S_0)
        dc = ((y0[:, None] - n**2 * mu[None]) ** 2 - y0[:, None] ** 2) * inv[None, :, 0]
        log_det = (counts * np.log(s_g)).sum(-1)
        out[:, sl] = -0.5 * (quad + dc) - 0.5 * log_det[None]
    out += -0.5 * n**2 * np.log(2 * np.pi) - sum_y[:, None]
    out = out.reshape((len(maps),) + om.shape)
    return out[0] if single else out


def exact_posterior(map_, n_grid=100, omega_m_range=cosmology.OMEGA_M_RANGE,
                    sigma_8_range=cosmology.SIGMA_8_RANGE, box_size=BOX_SIZE):
    """Exact posterior of (Omega_m, sigma_8) for one Mcdm map on a grid, flat prior.

    Returns a :class:`cosmonb.inference.GridPosterior` (means, standard deviations,
    correlation, 68% / 95% regions). ``n_grid`` >= 3; each range a pair (low, high)
    with low < high. Warns (``PosteriorGridWarning``) when the grid does not resolve
    the posterior: most of its mass on the grid edge or in one cell, as for an HI map
    or a map in the wrong units, whose mean and std would otherwise look like answers.

    Example:
        >>> m = simulate([FIDUCIAL], "Mcdm", n_pix=16, seed=3)[0, 0]
        >>> post = exact_posterior(m, n_grid=30)
        >>> post.mean.shape
        (2,)
    """
    from .inference import GridPosterior

    n_grid = check_size(n_grid, "n_grid")
    if n_grid < 3:
        raise ValueError(f"n_grid: expected at least 3 grid points per parameter, got {n_grid}")
    if np.ndim(map_) != 2:
        raise ValueError(f"map_: expected one Mcdm map (n, n), got shape {np.shape(map_)}")
    om = np.linspace(*_check_range(omega_m_range, "omega_m_range"), n_grid)
    s8 = np.linspace(*_check_range(sigma_8_range, "sigma_8_range"), n_grid)
    ll = log_likelihood(np.asarray(map_)[None], om[:, None], s8[None, :], box_size)[0]
    post = GridPosterior(om, s8, ll, names=("Omega_m", "sigma_8"))
    post.warn_if_unresolved("exact_posterior (is map_ an Mcdm map in (Msun/h)/(Mpc/h)^2, "
                            "as simulate makes it?)")
    return post


def fisher_matrix(omega_m, sigma_8, n_pix=N_PIX, box_size=BOX_SIZE, step=1e-4):
    """Analytic Fisher matrix of (Omega_m, sigma_8) for one Mcdm map.

    For a Gaussian y with mean mu(theta) on every pixel and Fourier-diagonal covariance,
    ``F_ij = 1/2 sum_k d_i ln S_k d_j ln S_k + n^2 d_i mu d_j mu / S_0``; the derivatives
    of the model's spectra are taken by central differences of step ``step``.

    Example:
        >>> F = fisher_matrix(0.3, 0.8, n_pix=32)
        >>> bool(np.all(np.linalg.eigvalsh(F) > 0))
        True
    """
    check_cosmology(omega_m, sigma_8)
    n_pix = check_size(n_pix, "n_pix")
    if not step > 0:
        raise ValueError(f"step: expected a finite-difference step > 0, got {step}")
    theta = np.array([omega_m, sigma_8], float)
    _, _, counts = fourier_grid(n_pix, box_size)
    d_ln_s, d_mu = [], []
    for i in range(2):
        pts = np.array([theta, theta])
        pts[0, i] += step
        pts[1, i] -= step
        s_g, var_g = log_field_spectrum(pts[:, 0], pts[:, 1], n_pix, box_size)
        mu = mean_log_density(pts[:, 0], var_g)
        d_ln_s.append((np.log(s_g[0]) - np.log(s_g[1])) / (2 * step))
        d_mu.append((mu[0] - mu[1]) / (2 * step))
    s0 = log_field_spectrum(theta[0], theta[1], n_pix, box_size)[0][0]
    fisher = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            fisher[i, j] = (0.5 * (counts * d_ln_s[i] * d_ln_s[j]).sum()
                            + n_pix**2 * d_mu[i] * d_mu[j] / s0)
    return fisher


# ---------------------------------------------------------------- checks
def check_params(params, name="params"):
    """params as a float array (N, 6) in CAMELS order, inside the LH prior."""
    arr = as_finite_array(params, name)
    if arr.ndim == 1 and arr.shape[0] == 6:
        arr = arr[None]
    check_ndim(arr, name, 2, "an array of shape (N, 6) in CAMELS order " + str(PARAM_NAMES))
    if arr.shape[1] != 6:
        raise ValueError(f"{name}: expected 6 columns {PARAM_NAMES}, got {arr.shape[1]}")
    for j, pname in enumerate(PARAM_NAMES):
        check_in_range(arr[:, j], f"{name}[:, {j}] ({pname})", PRIOR_LOW[j] - 1e-9, PRIOR_HIGH[j] + 1e-9)
    return arr


def check_fields(fields):
    """fields as a tuple of names from FIELDS."""
    if isinstance(fields, str):
        fields = (fields,)
    fields = tuple(fields)
    if not fields:
        raise ValueError(f"fields: expected at least one of {FIELDS}")
    bad = [f for f in fields if f not in FIELDS]
    if bad:
        raise ValueError(f"fields: unknown {bad}; the simulator makes {FIELDS}")
    return fields


def check_cosmology(omega_m, sigma_8):
    om = as_finite_array(omega_m, "omega_m")
    s8 = as_finite_array(sigma_8, "sigma_8")
    check_in_range(om, "omega_m", 0.06, 0.9)
    check_in_range(s8, "sigma_8", 0.2, 1.5)
    return np.broadcast_arrays(om, s8)


def square_maps(maps, name="maps", what="Mcdm maps"):
    """(n, n), (N, n, n) or (N, 1, n, n) finite square maps -> ((N, n, n) array, was it one map)."""
    arr = as_finite_array(maps, name)
    single = arr.ndim == 2
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    arr = arr[None] if single else arr
    check_ndim(arr, name, 3, f"{what} of shape (n, n), (N, n, n) or (N, 1, n, n)")
    if arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"{name}: expected square maps, got {arr.shape[-2]} x {arr.shape[-1]}")
    return arr, single


def _check_maps(maps, positive=True):
    arr, single = square_maps(maps)
    if positive and np.any(arr <= 0):
        raise ValueError("maps: expected positive dark-matter densities (the likelihood is of ln map)")
    return arr, single


def _check_range(rng, name):
    arr = as_finite_array(rng, name)
    if arr.shape != (2,) or not arr[0] < arr[1]:
        raise ValueError(f"{name}: expected a pair (low, high) with low < high, got {rng!r}")
    return float(arr[0]), float(arr[1])


def check_n_pix(n_pix, name="n_pix"):
    """n_pix as an int: even and at least MIN_N_PIX (the map sizes :func:`simulate` makes).

    Example:
        >>> check_n_pix(64)
        64
    """
    if isinstance(n_pix, bool) or not isinstance(n_pix, (int, np.integer)):
        raise ValueError(f"{name}: expected an even integer >= {MIN_N_PIX}, got {n_pix!r}")
    if n_pix < MIN_N_PIX or n_pix % 2:
        raise ValueError(f"{name}: expected an even number of pixels >= {MIN_N_PIX} (CMD maps are "
                         f"256 and its block averages 128, 64, ...), got {n_pix}")
    return int(n_pix)




def _check_memory(n_maps, n_channels, n_pix):
    """Refuse a simulate call whose arrays would not fit in MAX_SIMULATE_BYTES."""
    out_bytes = 4 * n_maps * n_channels * n_pix**2
    work_bytes = 8 * _WORK_ARRAYS_PER_MAP * min(n_maps, _CHUNK_MAPS) * n_pix**2
    need = out_bytes + work_bytes
    if need > MAX_SIMULATE_BYTES:
        gib = 2**30
        raise ValueError(
            f"n_pix: {n_maps} map(s) x {n_channels} channel(s) of {n_pix} x {n_pix} pixels need "
            f"about {need / gib:.3g} GiB (the float32 output alone {out_bytes / gib:.3g} GiB), above "
            f"the {MAX_SIMULATE_BYTES / gib:.3g} GiB limit (cosmonb.sims.MAX_SIMULATE_BYTES); "
            "use a smaller n_pix, or simulate fewer maps per call")




def map_power_spectrum(omega_m, sigma_8, n_pix=N_PIX, box_size=BOX_SIZE, log_field=False):
    """Expected P(k) of a simulated Mcdm map, in the bins of :func:`cosmonb.stats.power_spectrum`.

    For the lognormal map, delta = Mcdm / rho - 1 has correlation function
    ``xi_delta(r) = exp(xi_g(r)) - 1`` (exact), with ``xi_g`` the inverse FFT of S^g, and
    rho = (Omega_m - Omega_b) rho_crit d the true mean. Measure it with
    ``power_spectrum(maps / rho - 1, normalize=False)``; the maps are heavy-tailed, so
    rare extreme peaks carry much of this expectation and sample means converge slowly.
    The Pylians convention divides each map by its own mean instead, which gives lower
    P(k) still. ``log_field=True`` gives the spectrum of g = ln Mcdm itself, whose sample
    mean converges as for any Gaussian field. Returns ``(k, pk)``.

    Example:
        >>> k, pk = map_power_spectrum(0.3, 0.8, n_pix=32)
        >>> k.shape == pk.shape
        True
    """
    from .stats import bin_mode_power

    check_cosmology(omega_m, sigma_8)
    n_pix = check_size(n_pix, "n_pix")
    _, inverse, _ = fourier_grid(n_pix, box_size)
    s_g = log_field_spectrum(float(omega_m), float(sigma_8), n_pix, box_size)[0][inverse]
    if log_field:
        return bin_mode_power(n_pix**2 * s_g, box_size)
    xi_delta = np.expm1(np.fft.ifft2(s_g).real)
    s_delta = np.fft.fft2(xi_delta).real
    return bin_mode_power(n_pix**2 * s_delta, box_size)
