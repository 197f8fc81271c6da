r"""The built-in CAMELS-like simulator (v2), which knows its exact likelihood.

A map of CAMELS's Multifield Dataset (CMD; Villaescusa-Navarro et al. 2022, ApJS 259, 61)
is a 5 Mpc/h slab of a periodic (25 Mpc/h)^3 box, projected onto a 2D grid. This module
imitates one with fields whose logs are exactly Gaussian, with a covariance diagonal in
Fourier space (a C x C block per mode for C channels), so the likelihood of any subset
of channels given all six CAMELS parameters can be written down and evaluated.

**Dark matter** (all spectra in (Mpc/h)^2, k in h/Mpc). ``y = ln Mcdm = mu + g`` with g a
Gaussian field of continuum spectrum

    P_g(k) = A_L T(k; Omega_m) exp(-(k / K_L)^2) + P_S(k; Omega_m, sigma_8),

* ``T`` is the linear spectrum (Eisenstein-Hu, :mod:`cosmonb.cosmology`) at unit sigma_8,
  projected through the slab: only k_z = 2 pi m / L exist in the periodic box, so
  ``T_2D(k) = (1/L) sum_m T_3D(sqrt(k^2 + k_z^2)) sinc^2(k_z d / 2)``; tabulated on Omega_m
  nodes and splined. ``A_L = sigma_8^2 ln(1 + s^2) / s^2`` with ``s^2`` the linear variance
  smoothed over R_SAT = 0.5 Mpc/h: the log of a non-linear density field keeps about the
  linear shape at a reduced amplitude (Neyrinck, Szapudi & Szalay 2009), and the log
  transform erases the linear shape beyond K_L = 2 h/Mpc.
* ``P_S`` is the collapsed-structure (halo) term: a variance per ln k,
  ``k^2 P_S / 2 pi = A_S (k / 2)^0.3 (1 - e^{-(k/2)^2}) e^{-(0.02 k)^2}``, which rises from
  zero below k = 2 h/Mpc (halo scales) and then grows only slowly, with
  ``A_S = 0.25 (Omega_m / 0.3)^1.5 (sigma_8 / 0.8)^1.5``: more small-scale power with more
  matter at fixed sigma_8, as in linear theory (Omega_m^~1 at k = 2-10 h/Mpc) and steeper.
* On an n x n grid each mode has variance ``S_k = n^2 P_g(|k|) w(|k|) / L^2`` with the
  cell-average window ``w = exp(-k^2 a^2 / 12)``, a = L / n: maps are pixel averages, so
  ``simulate(n_pix=64)`` and a 256^2 map block-averaged to 64^2 have the same statistics.
* ``Mcdm = rho_cdm exp(g - Var(g) / 2)``, ``rho_cdm = (Omega_m - Omega_b) rho_crit d`` in
  (Msun/h)/(Mpc/h)^2: the map's normalisation carries Omega_m.

Why this spectrum. v1 (a lognormal transform of a toy non-linear P(k)) put most of the
log field's variance at the pixel scale (its k^2 P(k) rose to the Nyquist frequency):
neighbouring pixels correlated at 0.37 and maps looked like static. CMD maps are a cosmic
web whose structure is resolved: the variance per ln k of the log field sits at the
scales of filaments and haloes, below the Nyquist frequency of the map. Here
``k^2 P_g / 2 pi`` peaks at k ~ 0.7 h/Mpc (0.60), stays at 0.3-0.45 from 1.5 to 20 h/Mpc
and falls to 0.09 at 40 h/Mpc (256^2: k_Ny = 32 h/Mpc), and neighbouring pixels correlate
at 0.85-0.86 at 64^2, 128^2 and 256^2 (``bench/results/foundation.json``). The balance of
information follows the DDPM paper (Mudur, Cuesta-Lazaro & Finkbeiner 2023) on CMD Mcdm
maps, "constraints on Omega_m are much tighter than those on sigma_8": the mean density
and the halo term's Omega_m dependence carry Omega_m, and sigma_8 is degenerate with it.

**Channels** (Mgas, HI, B). With ``x = log2 (A_SN1, A_AGN1, A_SN2, A_AGN2)`` (0 at the
fiducial), every channel's log is

    ln X_c = a_c(theta) + (W_c * g) + n_c,   W_c(k) = b_c exp(-k^2 R_c^2 / 2),

a biased, feedback-smoothed copy of the dark-matter log field plus its own Gaussian noise
field n_c of spectrum ``v_c 4 pi r_c^2 exp(-k^2 r_c^2)`` (gas physics the dark matter does
not determine). The feedback radius ``R_fb = 0.3 Mpc/h 2^(0.4 x_SN1 + 0.01 x_AGN1 +
0.3 x_SN2 + 0.017 x_AGN2)`` sets ``R_c`` (``CHANNELS``): supernova feedback redistributes
gas strongly, AGN feedback barely, as in the IllustrisTNG suite of CAMELS
(Villaescusa-Navarro et al. 2021, ApJ 915, 71, whose 1P set varies one parameter at a
time), and as the VDVAE paper's linear probe on Mgas, HI and B reads it (Andrianomena &
Hassan: R^2 = 0.93, 0.64, 0.72, -0.01, 0.85, 0.20 for Omega_m, sigma_8, A_SN1, A_AGN1,
A_SN2, A_AGN2). HI is biased (1.6, lower with A_SN2) and noisier (0.25 nats^2); B follows
gas^(2/3) (flux freezing) with an amplitude rising with A_SN1. The per-mode covariance of
the channels is ``S_k w w^T + diag(noise)`` (:func:`channel_spectra`), so

    ln p(maps | theta) = sum over modes of a C-dimensional Gaussian (real and imaginary
                         parts, Hermitian pairs counted once) - sum_x sum_c y_c(x),

exact for any subset of channels (:func:`multifield_log_likelihood`; the last term is the
Jacobian of the logs). :func:`cosmonb.sims.exact.marginal_posterior` samples it with emcee to marginalise
the four astrophysical parameters over their log-uniform CAMELS prior, and
:func:`information_ceiling` turns those posteriors into the best R^2 any estimator can
reach on a set of maps.

For one dark-matter map the likelihood is the C = 1 case,

    ln p(map | theta) = -1/2 sum_k |Y_k - n^2 mu delta_k0|^2 / (n^2 S_k)
                        -1/2 sum_k ln S_k - (n^2/2) ln 2 pi - sum_x y_x,

(:func:`log_likelihood`, :func:`cosmonb.sims.exact.exact_posterior`, :func:`fisher_matrix`).

What it is not: a simulation. Parameters are calibrated to published orderings and
qualitative responses, not fitted to CAMELS spectra; no non-Gaussian statistics (peaks,
voids, a pixel PDF other than lognormal) carry information here, and they do in CMD.

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

from .. import cosmology
from .._checks import as_finite_array, check_box_size, check_in_range, check_ndim, check_size
from ..constants import (BOX_SIZE, FIDUCIAL, FIELDS, LOG_UNIFORM, MAPS_PER_SIM, PARAM_NAMES, PRIOR_HIGH,
                         PRIOR_LOW, SLAB_THICKNESS)
from ..runtime import check_seed  # the package's one seed check
from ..stats import bin_mode_power

N_PIX = 64

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
def projected_linear_power(k_perp, omega_m, box_size=BOX_SIZE, slab=SLAB_THICKNESS):
    """T(k; Omega_m): the linear spectrum at sigma_8 = 1 projected through a slab, shape (M, K).

    T(k_perp) = (1 / L) sum_m P_lin(sqrt(k_perp^2 + k_m^2)) sinc^2(k_m d / 2), k_m = 2 pi m / L,
    for |m| <= 48 (the slab window and P(k) make later terms negligible); the k = 0 mode of
    the 3D spectrum is dropped. ``k_perp`` (K,) in h/Mpc, ``omega_m`` (M,).

    Example:
        >>> t = projected_linear_power(np.array([0.5, 2.0]), np.array([0.3]))
        >>> t.shape, bool(t[0, 0] > t[0, 1] > 0)
        ((1, 2), True)
    """
    m = np.arange(-_KZ_TERMS, _KZ_TERMS + 1)
    kz = 2 * np.pi * m / box_size
    weight = np.sinc(kz * slab / (2 * np.pi)) ** 2  # np.sinc(x) = sin(pi x)/(pi x)
    k_perp = np.asarray(k_perp, float)
    k3 = np.sqrt(k_perp[:, None] ** 2 + kz[None, :] ** 2)  # (K, Z)
    positive = k3 > 0
    k3s = np.where(positive, k3, 1.0)
    om = np.asarray(omega_m, float)
    p_unit = cosmology.linear_power(k3s, om, np.ones_like(om))  # (M, K, Z), sigma_8 = 1
    p_unit = np.where(positive, p_unit, 0.0)
    return (p_unit * weight).sum(-1) / box_size


@lru_cache(maxsize=16)
def fourier_grid(n_pix, box_size):
    """Unique |k| on an n x n FFT grid: (k_unique, inverse index (n, n), counts)."""
    freq = np.fft.fftfreq(n_pix, d=1.0 / n_pix)
    k2_int = (freq[:, None] ** 2 + freq[None, :] ** 2).astype(np.int64)
    uniq, inverse, counts = np.unique(k2_int.ravel(), return_inverse=True, return_counts=True)
    k_unique = 2 * np.pi / box_size * np.sqrt(uniq)
    return k_unique, inverse.reshape(n_pix, n_pix), counts


#: v2 log-field model (module doc, "Simulator v2"): large-scale term ``A_L T(k; Omega_m)`` with
#: ``A_L = sigma_8^2 ln(1 + s^2) / s^2``; small-scale term with variance per ln k
#: ``A_S (k / K_P)^BETA_S (1 - exp(-(k / K_P)^2)) exp(-(k R_RES)^2)``,
#: ``A_S = A_S0 (Omega_m / 0.3)^M_S (sigma_8 / 0.8)^S_S``: at fixed sigma_8 the linear power at
#: k = 2-10 h/Mpc grows as Omega_m^0.9-1.1 (the turnover k_eq moves with Omega_m h); non-linear
#: collapse steepens that, so M_S = 1.5. (An earlier draft had Omega_m^-2: the wrong sign.)
A_S0, BETA_S, K_P, R_RES, M_S, S_S = 0.25, 0.3, 2.0, 0.02, 1.5, 1.5
#: smoothing radius (Mpc/h) of the linear variance s^2 that sets the log-field saturation
R_SAT = 0.5
#: the log transform suppresses the linear shape beyond K_L (h/Mpc): A_L T(k) exp(-(k / K_L)^2)
K_L = 2.0
#: Omega_m nodes of the cubic spline through the projected linear spectra
_OM_NODES = np.linspace(0.06, 0.9, 85)
_K_MASTER = np.geomspace(0.02, 400.0, 400)


@lru_cache(maxsize=4)
def _master_tables(box_size):
    """ln T(k) of the projected unit-sigma_8 linear spectrum at the Omega_m nodes.

    Returns ``(ln_t (nodes, 1 + K_master), u (nodes,))``: column 0 is k = 0 (the slab
    mean's variance through the k_z != 0 modes), ``u`` the continuum variance of T
    smoothed over R_SAT (so s^2 = sigma_8^2 u).
    """
    k = np.concatenate([[0.0], _K_MASTER])
    t0 = projected_linear_power(k, _OM_NODES, box_size, SLAB_THICKNESS)
    kk = _K_MASTER
    u = np.trapezoid(t0[:, 1:] * np.exp(-(kk * R_SAT) ** 2) * kk, kk, axis=-1) / (2 * np.pi)
    return np.log(t0), u


@lru_cache(maxsize=16)
def _node_spline(n_pix, box_size):
    """Cubic splines in Omega_m of ln T on the unique |k| of the grid, and of ln u."""
    from scipy.interpolate import CubicSpline

    k_unique, _, _ = fourier_grid(n_pix, box_size)
    ln_t, u = _master_tables(box_size)
    lk = np.log(_K_MASTER)
    on_grid = np.empty((len(_OM_NODES), len(k_unique)))
    on_grid[:, 0] = ln_t[:, 0]
    for j in range(len(_OM_NODES)):  # log-log interpolation in k, node by node
        on_grid[j, 1:] = np.interp(np.log(k_unique[1:]), lk, ln_t[j, 1:])
    return CubicSpline(_OM_NODES, on_grid, axis=0), CubicSpline(_OM_NODES, np.log(u))


def small_scale_power(k, omega_m, sigma_8):
    """The small-scale (collapsed-structure) term of the log-field spectrum, (Mpc/h)^2.

    ``2 pi / k^2 * A_S (k / K_P)^BETA_S (1 - e^{-(k/K_P)^2}) e^{-(k R_RES)^2}``: a variance
    per ln k that rises from zero below K_P = 2 h/Mpc (halo scales, 0.5 Mpc/h) and then
    grows slowly (BETA_S = 0.3) down to the resolution R_RES.
    """
    k = np.asarray(k, float)
    om, s8 = np.asarray(omega_m, float)[..., None], np.asarray(sigma_8, float)[..., None]
    a_s = A_S0 * (om / 0.3) ** M_S * (s8 / 0.8) ** S_S
    ks = np.where(k > 0, k, 1.0)
    per_lnk = (ks / K_P) ** BETA_S * -np.expm1(-(ks / K_P) ** 2) * np.exp(-(ks * R_RES) ** 2)
    return np.where(k > 0, a_s * 2 * np.pi / ks**2 * per_lnk, 0.0)


def pixel_window(k, n_pix, box_size=BOX_SIZE):
    """Isotropic cell-average window exp(-k^2 a^2 / 12), a = box_size / n_pix (a pixel's
    top hat has variance a^2 / 12 per axis): maps are pixel averages, not point samples."""
    a = box_size / n_pix
    return np.exp(-np.asarray(k, float) ** 2 * a**2 / 12)


def log_field_spectrum(omega_m, sigma_8, n_pix=N_PIX, box_size=BOX_SIZE):
    """Per-mode variance S^g of the Gaussian log field on the unique |k| of the grid.

    ``S^g_k = n^2 / L^2 P_g(|k|) w(|k|)`` with the continuum spectrum
    ``P_g = A_L T(k; Omega_m) + small_scale_power`` (module doc) and the cell-average
    window ``w`` (:func:`pixel_window`). Returns ``(s_g, var_g)``: ``s_g`` of shape
    ``S + (n_unique,)`` for parameters of broadcast shape S (index with
    ``fourier_grid(n_pix, box_size)[1]`` to get the n x n grid), and the pixel variance
    ``var_g = sum_k S^g_k / n^2``.

    Example:
        >>> s_g, var_g = log_field_spectrum(0.3, 0.8, n_pix=16)
        >>> bool(var_g > 0)
        True
    """
    om, s8 = np.broadcast_arrays(np.asarray(omega_m, float), np.asarray(sigma_8, float))
    k_unique, _, counts = fourier_grid(n_pix, box_size)
    spline_t, spline_u = _node_spline(n_pix, box_size)
    flat_om, flat_s8 = om.ravel(), s8.ravel()
    t = np.exp(spline_t(flat_om))  # (P, K)
    s2 = flat_s8**2 * np.exp(spline_u(flat_om))
    a_l = flat_s8**2 * np.log1p(s2) / s2
    p_g = a_l[:, None] * t * np.exp(-(k_unique / K_L) ** 2) + small_scale_power(k_unique, flat_om, flat_s8)
    s_g = n_pix**2 / box_size**2 * p_g * pixel_window(k_unique, n_pix, box_size)
    var_g = (s_g * counts).sum(-1) / n_pix**2
    return s_g.reshape(om.shape + k_unique.shape), var_g.reshape(om.shape)


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


# ---------------------------------------------------------------- multifield (v2)
#: Channel model, continuum (module doc, "Channels"): ln X_c = a_c + (W_c * g) + n_c with
#: W_c(k) = b_c exp(-k^2 R_c^2 / 2) and n_c of spectrum v_c 4 pi r_c^2 exp(-k^2 r_c^2).
#: Feedback smoothing radius R_fb = R_FB0 2^(sum_j FB_EXP[j] x_j), x = log2 (A_SN1, A_AGN1, A_SN2, A_AGN2).
R_FB0 = 0.3
FB_EXP = np.array([0.4, 0.01, 0.3, 0.017])
#: per channel: (bias b0, bias exponents on x, R_c / R_fb, noise variance v0, v exponents on x,
#: noise scale r (Mpc/h), ln-mean offset exponents on x (in ln 2 units))
CHANNELS = {
    "Mgas": dict(b0=1.0, b_exp=(0.0, 0.0, 0.0, 0.0), r_ratio=1.0, v0=0.08, v_exp=(0.0, 0.0, 0.0, 0.0),
                 r_noise=0.4, mean_exp=(0.0, -0.01, 0.0, 0.0)),
    "HI": dict(b0=1.6, b_exp=(0.0, 0.0, -0.2, 0.0), r_ratio=0.7, v0=0.25, v_exp=(0.0, 0.0, 0.3, 0.0),
               r_noise=0.25, mean_exp=(0.0, 0.0, -0.3, -0.017)),
    "B": dict(b0=0.67, b_exp=(0.0, 0.0, 0.0, 0.033), r_ratio=1.3, v0=0.15, v_exp=(0.0, 0.0, 0.0, 0.0),
              r_noise=0.5, mean_exp=(0.5, 0.0, 0.0, 0.05)),
}
#: mean of each channel at the fiducial: gas 0.85 rho_b, HI 10^-4.5 of the gas, B 1e-8 Gauss
_RHO_B = cosmology.OMEGA_B * cosmology.RHO_CRIT * SLAB_THICKNESS
CHANNEL_MEAN = {"Mgas": 0.85 * _RHO_B, "HI": 10**-4.5 * 0.85 * _RHO_B, "B": 1e-8}


def channel_spectra(params, fields, n_pix=N_PIX, box_size=BOX_SIZE):
    """Per-mode model of the log channels on the unique |k| of the grid, for params (P, 6).

    Returns ``(s_g (P, K), w (P, C, K), noise (P, C, K), mean (P, C))``: the dark-matter
    log field's per-mode variance, each channel's filter of it (1 for Mcdm), the per-mode
    variance of its own noise field (0 for Mcdm) and the mean of ln X_c. The per-mode
    covariance of the channels is ``s_g w w^T + diag(noise)``.
    """
    params = np.asarray(params, float)
    k, _, counts = fourier_grid(n_pix, box_size)
    s_g, var_g = log_field_spectrum(params[:, 0], params[:, 1], n_pix, box_size)
    x = np.log2(params[:, 2:6])
    r_fb = R_FB0 * 2 ** (x @ FB_EXP)
    window = n_pix**2 / box_size**2 * pixel_window(k, n_pix, box_size)
    P, C = len(params), len(fields)
    w = np.empty((P, C, len(k)))
    noise = np.zeros((P, C, len(k)))
    mean = np.empty((P, C))
    for c, name in enumerate(fields):
        if name == "Mcdm":
            w[:, c] = 1.0
            mean[:, c] = mean_log_density(params[:, 0], var_g)
            continue
        spec = CHANNELS[name]
        b = spec["b0"] * 2 ** (x @ np.array(spec["b_exp"]))
        radius = spec["r_ratio"] * r_fb
        w[:, c] = b[:, None] * np.exp(-0.5 * k[None] ** 2 * radius[:, None] ** 2)
        v = spec["v0"] * 2 ** (x @ np.array(spec["v_exp"]))
        r = spec["r_noise"]
        noise[:, c] = v[:, None] * 4 * np.pi * r**2 * np.exp(-(k * r) ** 2)[None] * window[None]
        var_c = ((w[:, c] ** 2 * s_g + noise[:, c]) * counts).sum(-1) / n_pix**2
        mean[:, c] = (np.log(CHANNEL_MEAN[name]) + np.log(2) * (x @ np.array(spec["mean_exp"]))
                      - (var_c / 2 if name != "B" else 0.0))
    return s_g, w, noise, mean


def _multifield_rows(params, fields, n_pix, seed, box_size, indices):
    """ln X for each row of params: (N, C, n, n) float64 (see :func:`simulate`)."""
    n = n_pix
    _, inverse, _ = fourier_grid(n, box_size)
    half = inverse[:, : n // 2 + 1]
    s_g, w, noise, mean = channel_spectra(params, fields, n, box_size)
    out = np.empty((len(params), len(fields), n, n))
    order = {f: i for i, f in enumerate(FIELDS[1:])}
    g_k = np.fft.rfft2(np.stack([white_noise(seed, i, n) for i in indices])) * np.sqrt(s_g)[:, half]
    if any(f != "Mcdm" for f in fields):  # all three noise fields, so a channel never depends on the others asked for
        white = np.stack([np.random.default_rng([seed, i, 1]).standard_normal((3, n, n)) for i in indices])
    for c, name in enumerate(fields):
        y_k = g_k * w[:, c][:, half]
        if name != "Mcdm":
            y_k = y_k + np.fft.rfft2(white[:, order[name]]) * np.sqrt(noise[:, c])[:, half]
        out[:, c] = np.fft.irfft2(y_k, s=(n, n)) + mean[:, c, None, None]
    return out


class _MapData:
    """Binned cross powers of one set of log maps (N, C, n, n), computed once."""

    def __init__(self, y, box_size):
        n = y.shape[-1]
        self.n, self.C = n, y.shape[1]
        _, inverse, counts = fourier_grid(n, box_size)
        self.counts = counts
        y_k = np.fft.fft2(y)  # (N, C, n, n)
        flat = inverse.ravel()
        N, C = y.shape[:2]
        self.binned = np.zeros((N, len(counts), C, C))
        for a in range(C):
            for b in range(a, C):
                prod = (y_k[:, a] * np.conj(y_k[:, b])).real.reshape(N, -1)
                for i in range(N):
                    self.binned[i, :, a, b] = np.bincount(flat, weights=prod[i], minlength=len(counts))
                self.binned[:, :, b, a] = self.binned[:, :, a, b]
        self.y0 = y_k[:, :, 0, 0].real  # (N, C)
        self.sum_y = y.sum(axis=(1, 2, 3))


def _gaussian_ll(data, rows, params, fields, box_size):
    """ln p(log maps | params) for map rows ``rows`` (P,) paired with params (P, 6)."""
    n, C = data.n, data.C
    s_g, w, noise, mean = channel_spectra(params, fields, n, box_size)
    binned = data.binned[rows].copy()  # (P, K, C, C)
    resid = data.y0[rows] - n**2 * mean  # (P, C)
    binned[:, 0] += resid[:, :, None] * resid[:, None, :] - data.y0[rows][:, :, None] * data.y0[rows][:, None, :]
    if "Mcdm" not in fields:
        # Sigma = D + s w w^T with D > 0 diagonal: Sherman-Morrison and the determinant lemma
        w_k, d_k = w.transpose(0, 2, 1), noise.transpose(0, 2, 1)  # (P, K, C)
        u = w_k / d_k
        denom = 1 + s_g * (w_k * u).sum(-1)
        log_det = np.log(d_k).sum(-1) + np.log(denom)
        diag = np.einsum("pkaa->pka", binned)
        quad = ((diag / d_k).sum(-1) - s_g * np.einsum("pka,pkab,pkb->pk", u, binned, u) / denom)
        quad = quad.sum(-1) / n**2
        return (-0.5 * quad - 0.5 * (log_det * data.counts).sum(-1)
                - 0.5 * C * n**2 * np.log(2 * np.pi) - data.sum_y[rows])
    cov = s_g[:, :, None, None] * w.transpose(0, 2, 1)[..., :, None] * w.transpose(0, 2, 1)[..., None, :]
    cov = cov + noise.transpose(0, 2, 1)[..., :, None] * np.eye(C)
    chol = np.linalg.cholesky(cov)  # (P, K, C, C)
    log_det = 2 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)  # (P, K)
    inv = np.linalg.inv(cov)
    quad = np.einsum("pkab,pkba->p", inv, binned) / n**2
    return (-0.5 * quad - 0.5 * (log_det * data.counts).sum(-1)
            - 0.5 * C * n**2 * np.log(2 * np.pi) - data.sum_y[rows])


def _check_multifield_maps(maps, fields):
    arr = as_finite_array(maps, "maps")
    if arr.ndim == 3:
        arr = arr[None]
    check_ndim(arr, "maps", 4, f"maps of shape (N, C, n, n) with C = {len(fields)} channels {fields}")
    if arr.shape[1] != len(fields):
        raise ValueError(f"maps: expected {len(fields)} channels {fields} in axis 1, got {arr.shape[1]}")
    if arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"maps: expected square maps, got {arr.shape[-2]} x {arr.shape[-1]}")
    if np.any(arr <= 0):
        raise ValueError("maps: expected positive maps (the likelihood is of ln map)")
    return arr


def multifield_log_likelihood(maps, params, fields=FIELDS, box_size=BOX_SIZE):
    r"""Exact ln p(maps | all six parameters) for any subset of channels.

    ``maps``: (N, C, n, n) positive maps as :func:`simulate` makes them, channels in the
    order of ``fields``; ``params``: (N, 6) (one row per map) or (M, 6) with one map
    (N = 1, or maps (C, n, n)), giving M log-likelihoods. Per Fourier mode the C log
    channels are jointly Gaussian with covariance ``S^g_k w_k w_k^T + diag(N_k)``
    (:func:`channel_spectra`), so

        ln p = -1/2 sum_k [ R_k^H Sigma_k^{-1} R_k / n^2 + ln det(2 pi Sigma_k) ] - sum ln X,

    R_k the FFT of ln X minus its mean (which sits in k = 0 only).

    Example:
        >>> m = simulate([FIDUCIAL], ["Mgas", "HI"], n_pix=16, seed=1)
        >>> multifield_log_likelihood(m, np.tile(FIDUCIAL, (3, 1)), ["Mgas", "HI"]).shape
        (3,)
    """
    fields = check_fields(fields)
    arr = _check_multifield_maps(maps, fields)
    params = check_params(params)
    if len(arr) == 1:
        rows = np.zeros(len(params), int)
    elif len(params) == len(arr):
        rows = np.arange(len(arr))
    else:
        raise ValueError(f"params: expected one row per map ({len(arr)}) or any number of rows with "
                         f"one map, got {len(params)} rows")
    data = _MapData(np.log(arr.astype(np.float64)), box_size)
    out = np.empty(len(params))
    for start in range(0, len(params), 256):
        sl = slice(start, start + 256)
        out[sl] = _gaussian_ll(data, rows[sl], params[sl], fields, box_size)
    return out


def multifield_fisher(params, fields=FIELDS, n_pix=N_PIX, box_size=BOX_SIZE, step=1e-4):
    """Fisher matrix (6, 6) of one multifield map at ``params`` (6,), in the physical parameters.

    ``F_ij = 1/2 sum_k tr(Sigma^-1 d_i Sigma Sigma^-1 d_j Sigma) + n^2 d_i a^T Sigma_0^-1 d_j a``
    (central differences of relative step ``step``).

    Example:
        >>> F = multifield_fisher(FIDUCIAL, ["Mgas", "HI"], n_pix=16)
        >>> F.shape
        (6, 6)
    """
    fields = check_fields(fields)
    theta = check_params(params)[0]
    _, _, counts = fourier_grid(n_pix, box_size)
    pts = [theta]
    for i in range(6):
        for sgn in (1, -1):
            p = theta.copy()
            p[i] *= 1 + sgn * step
            pts.append(p)
    s_g, w, noise, mean = channel_spectra(np.array(pts), fields, n_pix, box_size)
    C = len(fields)
    cov = (s_g[:, :, None, None] * w.transpose(0, 2, 1)[..., :, None] * w.transpose(0, 2, 1)[..., None, :]
           + noise.transpose(0, 2, 1)[..., :, None] * np.eye(C))
    inv0 = np.linalg.inv(cov[0])
    h = theta * step
    d_cov = [(cov[1 + 2 * i] - cov[2 + 2 * i]) / (2 * h[i]) for i in range(6)]
    d_mean = [(mean[1 + 2 * i] - mean[2 + 2 * i]) / (2 * h[i]) for i in range(6)]
    a = [inv0 @ d for d in d_cov]
    fisher = np.empty((6, 6))
    for i in range(6):
        for j in range(6):
            tr = np.einsum("kab,kba->k", a[i], a[j])
            fisher[i, j] = 0.5 * (counts * tr).sum() + n_pix**2 * d_mean[i] @ inv0[0] @ d_mean[j]
    return fisher


# ---------------------------------------------------------------- marginal posterior, ceilings
PARAM_KEYS = ("omega_m", "sigma_8", "a_sn1", "a_agn1", "a_sn2", "a_agn2")


def _to_sampler_space(params):
    return np.where(LOG_UNIFORM, np.log(params), params)


def _from_sampler_space(u):
    return np.where(LOG_UNIFORM, np.exp(u), u)


def posterior_samples(maps, fields=FIELDS, n_walkers=32, n_steps=1000, burn=300, seed=0,
                      start=None, box_size=BOX_SIZE):
    """Samples (S, 6) of p(all six parameters | one multifield map), CAMELS prior, with emcee.

    The sampler works in (Omega_m, sigma_8, ln A_SN1, ln A_AGN1, ln A_SN2, ln A_AGN2), where
    the LH prior is uniform on a box, and uses the exact :func:`multifield_log_likelihood`
    (vectorised over walkers). ``start`` (6,) centres a small initial ball (default: a
    ball over 60% of the prior about its centre; the burn-in of ``burn`` steps is
    discarded). Never start at the truth when measuring calibration or R^2: chains of a
    few autocorrelation times remember their start, which inflates both. Returns ``(samples, info)`` with
    the mean acceptance fraction and the autocorrelation time estimate.
    """
    import emcee

    fields = check_fields(fields)
    arr = _check_multifield_maps(maps, fields)
    if len(arr) != 1:
        raise ValueError(f"maps: expected one multifield map, got {len(arr)}")
    data = _MapData(np.log(arr.astype(np.float64)), box_size)
    lo, hi = _to_sampler_space(PRIOR_LOW), _to_sampler_space(PRIOR_HIGH)
    rows = np.zeros(n_walkers, int)

    def log_prob(u):
        inside = np.all((u > lo) & (u < hi), axis=1)
        out = np.full(len(u), -np.inf)
        if inside.any():
            out[inside] = _gaussian_ll(data, rows[: inside.sum()], _from_sampler_space(u[inside]),
                                       fields, box_size)
        return out

    rng = np.random.default_rng(check_seed(seed))
    centre = _to_sampler_space(np.asarray(start, float)) if start is not None else (lo + hi) / 2
    width = 0.02 * (hi - lo) if start is not None else 0.3 * (hi - lo)
    p0 = np.clip(centre + width * rng.uniform(-1, 1, (n_walkers, 6)), lo + 1e-6 * (hi - lo),
                 hi - 1e-6 * (hi - lo))
    sampler = emcee.EnsembleSampler(n_walkers, 6, log_prob, vectorize=True)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()  # reproducible
    sampler.run_mcmc(p0, n_steps, progress=False)
    chain = sampler.get_chain(discard=burn, flat=True)
    import logging

    logging.getLogger("emcee").setLevel(logging.ERROR)  # short-chain tau warnings: info["autocorr_time"]
    tau = sampler.get_autocorr_time(discard=burn, quiet=True)
    info = {"acceptance": float(np.mean(sampler.acceptance_fraction)), "autocorr_time": tau,
            "n_walkers": n_walkers, "n_steps": n_steps, "burn": burn}
    return _from_sampler_space(chain), info


def information_ceiling(maps, params, fields=FIELDS, n_walkers=32, n_steps=600, burn=200, seed=0,
                        box_size=BOX_SIZE, progress=False, return_means=False):
    """R^2 of the exact posterior mean of each of the six parameters over a set of maps.

    ``maps`` (N, C, n, n) with true ``params`` (N, 6). For each map the six-parameter
    posterior (CAMELS prior) is sampled with emcee (:func:`posterior_samples`, started
    from a wide ball about the prior centre: a start at the truth would pull short chains
    towards it and inflate R^2) and its mean taken: the minimum
    mean-squared-error estimate, so ``R^2 = 1 - sum (mean - truth)^2 / sum (truth -
    <truth>)^2`` (physical units) is the best any estimator can reach on these maps, up
    to the sampler's noise and the finite set. Returns a dict keyed ``PARAM_KEYS``
    (and the means (N, 6) with ``return_means=True``).
    """
    fields = check_fields(fields)
    arr = _check_multifield_maps(maps, fields)
    params = check_params(params)
    if len(params) != len(arr):
        raise ValueError(f"params: expected one row per map ({len(arr)}), got {len(params)}")
    means = np.empty_like(params)
    it = range(len(arr))
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="information_ceiling")
    for i in it:
        samples, _ = posterior_samples(arr[i:i + 1], fields, n_walkers, n_steps, burn,
                                       seed=check_seed(seed) + i, box_size=box_size)
        means[i] = samples.mean(0)
    resid = ((means - params) ** 2).sum(0)
    total = ((params - params.mean(0)) ** 2).sum(0)
    r2 = {key: float(1 - r / t) for key, r, t in zip(PARAM_KEYS, resid, total)}
    return (r2, means) if return_means else r2


# ---------------------------------------------------------------- entry point
def simulate(params, fields=("Mcdm",), n_pix=N_PIX, seed=0, box_size=BOX_SIZE, progress=False, indices=None,
             outside_prior=False):
    """Multifield maps, shape (N, C, n_pix, n_pix) float32, for params (N, 6) in CAMELS order.

    ``fields``: one name or a list from ``FIELDS`` (Mcdm, Mgas, HI, B), stacked as
    channels in the order given. Map i uses the random streams (seed, i), so the same
    call gives the same maps bit for bit, and all channels of map i come from one
    underlying field. Mass maps are in (Msun/h)/(Mpc/h)^2, B in Gauss. ``indices`` (N,)
    gives row r the streams (seed, indices[r]) instead: some maps of a larger set, alone
    (``simulate(params[idx], ..., indices=idx)`` equals ``simulate(params, ...)[idx]``).
    ``outside_prior=True`` accepts feedback parameters beyond the LH prior (any positive
    A's; Omega_m and sigma_8 still inside it): misspecified maps for notebook 06, which no
    model trained on the LH set has seen.

    ``n_pix`` must be even and at least ``MIN_N_PIX`` (8), as CMD maps block-averaged
    from 256^2 are; ``seed`` an integer in [0, 2**32); ``box_size`` (Mpc/h) finite and
    > 0. Calls that would need more than ``MAX_SIMULATE_BYTES`` (16 GiB) of memory are
    refused up front: simulate in batches instead.

    Example:
        >>> maps = simulate(np.tile(FIDUCIAL, (3, 1)), "Mcdm", n_pix=16)
        >>> maps.shape, maps.dtype
        ((3, 1, 16, 16), dtype('float32'))
    """
    if outside_prior:
        params = as_finite_array(params, "params")
        params = params[None] if params.ndim == 1 else params
        if params.ndim != 2 or params.shape[1] != 6 or np.any(params[:, 2:] <= 0):
            raise ValueError(f"params: expected shape (N, 6) with positive feedback parameters, got {params.shape}")
        check_params(np.concatenate([params[:, :2], np.ones((len(params), 4))], 1))
    else:
        params = check_params(params)
    fields = check_fields(fields)
    n_pix = check_n_pix(n_pix)
    seed = check_seed(seed)
    box_size = check_box_size(box_size)
    _check_memory(len(params), len(fields), n_pix)
    if indices is None:
        streams = np.arange(len(params))
    else:
        streams = np.asarray(indices)
        if streams.shape != (len(params),) or streams.dtype.kind not in "iu" or np.any(streams < 0):
            raise ValueError(f"indices: expected {len(params)} non-negative integers (one stream per row of "
                             f"params), got shape {streams.shape} of {streams.dtype}")
    out = np.empty((len(params), len(fields), n_pix, n_pix), dtype=np.float32)
    chunk = _CHUNK_MAPS
    starts = range(0, len(params), chunk)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="simulate", unit_scale=chunk)
    for start in starts:
        idx = np.arange(start, min(start + chunk, len(params)))
        out[idx] = np.exp(_multifield_rows(params[idx], fields, n_pix, seed, box_size, streams[idx]))
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


def check_range(rng, name):
    """A pair (low, high) of finite numbers with low < high, as two floats."""
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
    check_cosmology(omega_m, sigma_8)
    n_pix = check_size(n_pix, "n_pix")
    _, inverse, _ = fourier_grid(n_pix, box_size)
    s_g = log_field_spectrum(float(omega_m), float(sigma_8), n_pix, box_size)[0][inverse]
    if log_field:
        return bin_mode_power(n_pix**2 * s_g, box_size)
    xi_delta = np.expm1(np.fft.ifft2(s_g).real)
    s_delta = np.fft.fft2(xi_delta).real
    return bin_mode_power(n_pix**2 * s_delta, box_size)
