"""Linear matter power spectra for the CAMELS cosmology.

CAMELS varies only Omega_m and sigma_8; Omega_b = 0.049, h = 0.6711 and
n_s = 0.9624 are fixed (GUIDE section 6). The z = 0 linear spectrum is

    P(k) = A k^{n_s} T^2(k),

with T(k) the Eisenstein & Hu (1998, ApJ 496, 605) transfer function with
baryon wiggles, and A fixed by sigma_8, the rms of the linear density in
a top-hat sphere of 8 Mpc/h:

    sigma_8^2 = 1 / (2 pi^2) int k^2 P(k) W^2(8 k) dk,
    W(x) = 3 (sin x - x cos x) / x^3.

Units: k in h/Mpc, P in (Mpc/h)^3.

Example:
    >>> import numpy as np
    >>> k = np.logspace(-2, 1, 5)
    >>> linear_power(k, [0.3, 0.4], [0.8, 0.8]).shape
    (2, 5)
"""
from __future__ import annotations

import numpy as np

from ._checks import as_finite_array, check_in_range
from .constants import OMEGA_M_RANGE, SIGMA_8_RANGE  # noqa: F401  (re-exported: the LH prior ranges)

OMEGA_B = 0.049
HUBBLE = 0.6711
N_S = 0.9624
T_CMB = 2.7255
#: critical density today in (Msun/h) / (Mpc/h)^3
RHO_CRIT = 2.77536627e11



def eisenstein_hu_transfer(k, omega_m, omega_b=OMEGA_B, h=HUBBLE, t_cmb=T_CMB):
    """Eisenstein & Hu (1998) transfer function with baryon acoustic wiggles.

    ``k`` in h/Mpc; ``omega_m`` may be an array, broadcast against ``k``
    (pass ``omega_m[:, None]`` for a table). Returns T(k), with T -> 1 as k -> 0.

    Example:
        >>> float(eisenstein_hu_transfer(1e-5, 0.3)) > 0.999
        True
    """
    k = np.asarray(k, dtype=float) * h  # 1/Mpc
    om = np.asarray(omega_m, dtype=float)
    theta = t_cmb / 2.7
    wm = om * h**2
    wb = omega_b * h**2
    fb = omega_b / om
    fc = 1.0 - fb

    z_eq = 2.50e4 * wm * theta**-4
    k_eq = 7.46e-2 * wm * theta**-2
    b1 = 0.313 * wm**-0.419 * (1 + 0.607 * wm**0.674)
    b2 = 0.238 * wm**0.223
    z_d = 1291 * wm**0.251 / (1 + 0.659 * wm**0.828) * (1 + b1 * wb**b2)
    r_d = 31.5 * wb * theta**-4 * (1e3 / z_d)
    r_eq = 31.5 * wb * theta**-4 * (1e3 / z_eq)
    s = (2.0 / (3.0 * k_eq) * np.sqrt(6.0 / r_eq)
         * np.log((np.sqrt(1 + r_d) + np.sqrt(r_d + r_eq)) / (1 + np.sqrt(r_eq))))
    k_silk = 1.6 * wb**0.52 * wm**0.73 * (1 + (10.4 * wm) ** -0.95)
    q = k / (13.41 * k_eq)

    a1 = (46.9 * wm) ** 0.670 * (1 + (32.1 * wm) ** -0.532)
    a2 = (12.0 * wm) ** 0.424 * (1 + (45.0 * wm) ** -0.582)
    alpha_c = a1**-fb * a2 ** -(fb**3)
    bb1 = 0.944 / (1 + (458 * wm) ** -0.708)
    bb2 = (0.395 * wm) ** -0.0266
    beta_c = 1.0 / (1 + bb1 * (fc**bb2 - 1))

    def t0(alpha, beta):
        ln = np.log(np.e + 1.8 * beta * q)
        c = 14.2 / alpha + 386.0 / (1 + 69.9 * q**1.08)
        return ln / (ln + c * q**2)

    ks = k * s
    f = 1.0 / (1 + (ks / 5.4) ** 4)
    t_cdm = f * t0(1.0, beta_c) + (1 - f) * t0(alpha_c, beta_c)

    y = (1 + z_eq) / (1 + z_d)
    sq = np.sqrt(1 + y)
    g = y * (-6 * sq + (2 + 3 * y) * np.log((sq + 1) / (sq - 1)))
    alpha_b = 2.07 * k_eq * s * (1 + r_d) ** -0.75 * g
    beta_node = 8.41 * wm**0.435
    beta_b = 0.5 + fb + (3 - 2 * fb) * np.sqrt((17.2 * wm) ** 2 + 1)
    s_tilde = s / (1 + (beta_node / ks) ** 3) ** (1.0 / 3.0)
    t_bar = (t0(1.0, 1.0) / (1 + (ks / 5.2) ** 2)
             + alpha_b / (1 + (beta_b / ks) ** 3) * np.exp(-((k / k_silk) ** 1.4)))
    t_bar = t_bar * np.sinc(k * s_tilde / np.pi)
    return fb * t_bar + fc * t_cdm


def tophat_window(x):
    """Fourier transform of a 3D top-hat: W(x) = 3 (sin x - x cos x) / x^3."""
    x = np.asarray(x, dtype=float)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    w = 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3
    return np.where(small, 1.0 - x**2 / 10.0, w)


_K_NORM = np.logspace(-5, 3, 4000)


def _unnormalised(k, omega_m):
    return k**N_S * eisenstein_hu_transfer(k, omega_m) ** 2


def _sigma_r_squared(omega_m, radius=8.0):
    """sigma_R^2 of the unnormalised spectrum (A = 1), per omega_m (any shape)."""
    om = np.asarray(omega_m, dtype=float)[..., None]
    k = _K_NORM
    integrand = k**3 * _unnormalised(k, om) * tophat_window(k * radius) ** 2 / (2 * np.pi**2)
    return np.trapezoid(integrand, np.log(k), axis=-1)


def linear_power(k, omega_m, sigma_8):
    """Linear z = 0 matter power spectrum P(k) in (Mpc/h)^3 for k in h/Mpc.

    ``omega_m`` and ``sigma_8`` broadcast against each other (scalars or arrays
    of shape S); the result has shape ``S + k.shape``.

    Example:
        >>> p = linear_power([0.1, 1.0], 0.3, 0.8)
        >>> bool(p[0] > p[1])
        True
    """
    k = as_finite_array(k, "k")
    if np.any(k <= 0):
        raise ValueError("k: expected wavenumbers > 0 in h/Mpc")
    om = as_finite_array(omega_m, "omega_m")
    s8 = as_finite_array(sigma_8, "sigma_8")
    check_in_range(om, "omega_m", 0.05, 1.0)
    check_in_range(s8, "sigma_8", 0.1, 2.0)
    om, s8 = np.broadcast_arrays(om, s8)
    amp = s8**2 / _sigma_r_squared(om)
    shape = om.shape + (1,) * k.ndim
    return amp.reshape(shape) * _unnormalised(k, om.reshape(shape))


def power_law(k, amplitude, slope):
    """The power law P(k) = A k^{-B} used for the IMNN notebook's Gaussian fields.

    Example:
        >>> float(power_law(2.0, 1.0, 2.0))
        0.25
    """
    k = as_finite_array(k, "k")
    if np.any(k <= 0):
        raise ValueError("k: expected wavenumbers > 0")
    a = as_finite_array(amplitude, "amplitude")
    b = as_finite_array(slope, "slope")
    if np.any(a <= 0):
        raise ValueError("amplitude: expected A > 0")
    a, b = np.broadcast_arrays(a, b)
    shape = a.shape + (1,) * k.ndim
    return a.reshape(shape) * k ** (-b.reshape(shape))
