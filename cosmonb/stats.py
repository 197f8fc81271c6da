r"""Summary statistics that judge maps: power spectra, pixel PDFs, reduced chi^2.

Power spectra follow the convention of Pylians' ``Pk_library.Pk_plane``, the one
CAMELS uses, mode for mode:

* ``delta = map / mean(map) - 1`` for each map (``normalize=False`` skips this);
* ``P(k) = < |delta_k|^2 > (L / N^2)^2`` with numpy's unnormalised FFT, i.e. the
  power per unit area in (Mpc/h)^2 when ``L`` is in Mpc/h;
* modes are the independent half plane of ``rfft2``: ``k_y >= 0``, and on the
  rows ``k_y = 0`` and (even ``N``) ``k_y = N/2`` only ``k_x >= 0``, where the
  Nyquist index ``N/2`` counts as positive; each self-conjugate mode
  ((0, 0), (N/2, 0), (0, N/2), (N/2, N/2)) is counted once, every other mode
  once for the pair (k, -k);
* bin ``i = floor(|k| / k_F)`` with ``k_F = 2 pi / L``; bins ``1 .. floor(sqrt(2) (N//2))``
  are returned, so bin 0 (the DC mode alone) is dropped and the corner modes
  beyond the Nyquist circle are kept;
* the reported ``k`` of a bin is the mean ``|k|`` of its modes, not the bin centre;
* no mass-assignment correction (Pylians ``MAS='None'``).

All functions take numpy arrays and raise ``ValueError`` naming the argument on
bad input.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import scipy.fft

from cosmonb._checks import as_finite_array, check_box_size, check_ndim

__all__ = [
    "power_spectrum",
    "cross_power_spectrum",
    "power_spectrum_bins",
    "pixel_pdf",
    "reduced_chi2",
    "reduced_chi2_leave_one_out",
    "expected_reduced_chi2",
    "pk_z_scores",
    "pk_agree_kmax",
]

# How many pixels go through one FFT call: bounds the memory of a big batch
# (2**22 float64 pixels = 32 MiB in, about as much out).
_CHUNK_PIXELS = 2**22

# normalize=True refuses a map whose |mean| is at most this fraction of mean(|map|): never
# the case for a positive map (the ratio is 1), always for a mean-subtracted field
_MIN_RELATIVE_MEAN = 1e-3


# ----------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------
def _as_real_array(x, name: str) -> np.ndarray:
    """A finite real array, without copying float/int input (maps can be large)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:  # ragged lists etc.
        raise ValueError(f"{name}: expected an array of numbers, got {type(x).__name__}") from err
    if arr.dtype.kind == "c":
        raise ValueError(f"{name}: expected real numbers, got complex dtype {arr.dtype}")
    if arr.dtype.kind in "fiub":
        return as_finite_array(arr, name, dtype=arr.dtype)
    return as_finite_array(arr, name)


def _check_maps(maps, name: str) -> np.ndarray:
    arr = _as_real_array(maps, name)
    check_ndim(arr, name, (2, 3), "one map (H, W) or a batch of maps (N, H, W)")
    h, w = arr.shape[-2:]
    if h != w:
        raise ValueError(f"{name}: expected square maps (H == W), got shape {tuple(arr.shape)}")
    if h < 2:
        raise ValueError(f"{name}: expected maps of at least 2 x 2 pixels, got shape {tuple(arr.shape)}")
    if arr.ndim == 3 and arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one map, got shape {tuple(arr.shape)}")
    return arr




# ----------------------------------------------------------------------------
# power spectra
# ----------------------------------------------------------------------------
class _Binning(NamedTuple):
    order: np.ndarray     # flat indices into the (n, n//2+1) rfft2 grid, sorted by bin
    starts: np.ndarray    # first position of each bin in ``order`` (for np.add.reduceat)
    n_modes: np.ndarray   # independent modes per bin (float)
    k: np.ndarray         # mean |k| of the modes of each bin, in h/Mpc
    norm: float           # (L / N^2)^2


@functools.lru_cache(maxsize=32)
def _binning(n: int, box_size: float) -> _Binning:
    """Mode selection and bin bookkeeping for an n x n map of side box_size (cached)."""
    middle = n // 2
    kx = np.arange(n)
    kx = np.where(kx > middle, kx - n, kx)            # Nyquist index n/2 counts as +n/2
    ky = np.arange(middle + 1)                         # rfft2 half plane: ky >= 0
    KX, KY = np.meshgrid(kx, ky, indexing="ij")
    special_row = (KY == 0) | ((KY == middle) & (n % 2 == 0))
    keep = ~(special_row & (KX < 0))                   # drop the conjugates of k_x > 0
    kmod = np.sqrt(KX * KX + KY * KY).ravel()          # in units of k_F
    index = np.floor(kmod).astype(np.int64)
    keep = keep.ravel() & (index >= 1)                 # bin 0 is the DC mode alone: dropped
    n_bins = int(np.sqrt(2.0 * middle * middle))       # Pylians' kmax
    flat = np.flatnonzero(keep)
    order = flat[np.argsort(index[flat], kind="stable")]
    counts = np.bincount(index[order], minlength=n_bins + 1)[1:]
    if np.any(counts == 0):  # never seen for n <= 1024; guard against a silent NaN
        raise RuntimeError(f"empty k bin for n = {n}")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k_sum = np.bincount(index[order], weights=kmod[order], minlength=n_bins + 1)[1:]
    k_F = 2.0 * np.pi / box_size
    binning = _Binning(order=order, starts=starts, n_modes=counts.astype(float),
                       k=k_sum / counts * k_F, norm=(box_size / n**2) ** 2)
    for arr in binning[:4]:
        arr.setflags(write=False)
    return binning


def _fourier(chunk: np.ndarray, normalize: bool, name: str, first: int) -> np.ndarray:
    """rfft2 of a chunk (m, n, n) of maps, divided by each map's mean if normalize."""
    x = np.asarray(chunk, dtype=np.float64)
    fk = scipy.fft.rfft2(x)  # same unnormalised transform as np.fft.rfft2, ~25% faster
    if normalize:
        mean = x.mean(axis=(-2, -1))
        bad = np.flatnonzero(mean == 0)
        if bad.size:
            raise ValueError(
                f"{name}: map {first + int(bad[0])} has mean 0, so delta = map / mean - 1 is "
                "undefined; pass normalize=False for fields that are already overdensities")
        # relative check: a mean that is rounding noise next to the pixel values (a field with
        # its mean subtracted) would scale P(k) by (scale / mean)^2, e.g. 1e33, silently
        scale = np.abs(x).mean(axis=(-2, -1))
        tiny = np.flatnonzero(np.abs(mean) <= _MIN_RELATIVE_MEAN * scale)
        if tiny.size:
            i = int(tiny[0])
            raise ValueError(
                f"{name}: map {first + i} has mean {mean[i]:.3g}, tiny next to its typical pixel "
                f"size mean(|map|) = {scale[i]:.3g} (ratio below {_MIN_RELATIVE_MEAN:g}), so "
                "delta = map / mean - 1 would blow P(k) up by (mean(|map|) / mean)^2; it looks like "
                "a field with its mean subtracted: pass normalize=False for fields that are "
                "already overdensities")
        fk /= mean[:, None, None]
    return fk


def _binned(p: np.ndarray, binning: _Binning) -> np.ndarray:
    p = p.reshape(p.shape[0], -1)[:, binning.order]
    return np.add.reduceat(p, binning.starts, axis=1) * (binning.norm / binning.n_modes)


def _spectra(a: np.ndarray, b: np.ndarray | None, box_size: float, normalize: bool):
    single = a.ndim == 2
    a3 = a[None] if single else a
    b3 = None if b is None else (b[None] if single else b)
    n = a3.shape[-1]
    binning = _binning(n, box_size)
    out = np.empty((a3.shape[0], binning.k.size))
    step = max(1, _CHUNK_PIXELS // (n * n))
    for i in range(0, a3.shape[0], step):
        fa = _fourier(a3[i:i + step], normalize, "maps" if b is None else "a", i)
        if b3 is None:
            p = fa.real**2 + fa.imag**2
        else:
            fb = _fourier(b3[i:i + step], normalize, "b", i)
            p = fa.real * fb.real + fa.imag * fb.imag        # Re(a_k conj(b_k))
        out[i:i + step] = _binned(p, binning)
    return binning.k.copy(), (out[0] if single else out)


def power_spectrum(maps, box_size=25.0, *, normalize=True):
    r"""Angle-averaged power spectrum of one map or a batch, Pylians ``Pk_plane`` convention.

    .. math::

        \delta = m / \bar m - 1, \qquad
        P(k_i) = \Big(\frac{L}{N^2}\Big)^2 \frac{1}{N_i}\sum_{\mathbf{k}\in i} |\delta_{\mathbf{k}}|^2,
        \qquad i = \lfloor |\mathbf{k}| / k_F \rfloor,\ k_F = 2\pi/L,

    with :math:`\delta_{\mathbf{k}}` numpy's unnormalised FFT, the sum over the
    independent half plane, bins ``i = 1 .. floor(sqrt(2) (N//2))``, and
    :math:`k_i` the mean :math:`|\mathbf{k}|` of the modes of bin ``i``. Equal to
    ``Pk_library.Pk_plane(delta, L, MAS='None').Pk`` (to float32 rounding).

    Args:
        maps: one square map ``(N, N)`` or a batch ``(B, N, N)``.
        box_size: side ``L`` of the map in Mpc/h (CAMELS: 25).
        normalize: form ``map / mean - 1`` per map (default); ``False`` uses the
            maps as given, e.g. a field that is already an overdensity or a log-field.
            A map whose mean is 0, or below 1e-3 of its mean ``|map|`` (a field with
            its mean subtracted), is refused with a ValueError rather than divided by it.

    Returns:
        ``(k, pk)``: ``k`` of shape ``(n_bins,)`` in h/Mpc, ``pk`` of shape
        ``(n_bins,)`` for one map or ``(B, n_bins)`` for a batch, in (Mpc/h)^2.

    Example:
        >>> maps = np.exp(np.random.default_rng(0).normal(size=(10, 64, 64)))
        >>> k, pk = power_spectrum(maps, box_size=25.0)
        >>> k.shape, pk.shape, round(float(k[0]) / (2 * np.pi / 25.0), 3)  # mean |k| / k_F of bin 1
        ((45,), (10, 45), 1.207)
    """
    arr = _check_maps(maps, "maps")
    return _spectra(arr, None, check_box_size(box_size), bool(normalize))


def cross_power_spectrum(a, b, box_size=25.0, *, normalize=True):
    r"""Cross power spectrum of paired maps, Pylians convention (see :func:`power_spectrum`).

    .. math::

        P_{ab}(k_i) = \Big(\frac{L}{N^2}\Big)^2 \frac{1}{N_i}
        \sum_{\mathbf{k}\in i} \mathrm{Re}\big(\delta^a_{\mathbf{k}}\,\overline{\delta^b_{\mathbf{k}}}\big),

    same modes, bins and ``k`` as :func:`power_spectrum`, so
    ``cross_power_spectrum(m, m)`` equals ``power_spectrum(m)``. The cross
    correlation coefficient is ``P_ab / sqrt(P_aa P_bb)``.

    Note: Pylians 0.12's ``XPk_plane`` multiplies by ``(L / N^2)^3`` instead of
    ``(L / N^2)^2`` (its ``.XPk`` and ``.Pk`` are both ``L / N^2`` times smaller than
    ``Pk_plane``'s); we use the ``Pk_plane`` normalisation for both.

    Args:
        a, b: maps of the same shape, ``(N, N)`` or a batch ``(B, N, N)`` (map
            ``i`` of ``a`` is paired with map ``i`` of ``b``).
        box_size: side of the maps in Mpc/h.
        normalize: form ``map / mean - 1`` for each map first (default).

    Returns:
        ``(k, pk_ab)`` with the shapes of :func:`power_spectrum`.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> a = np.exp(rng.normal(size=(64, 64))); b = a * np.exp(0.1 * rng.normal(size=(64, 64)))
        >>> k, pab = cross_power_spectrum(a, b)
        >>> bool(np.allclose(cross_power_spectrum(a, a)[1], power_spectrum(a)[1]))
        True
    """
    arr_a = _check_maps(a, "a")
    arr_b = _check_maps(b, "b")
    if arr_a.shape != arr_b.shape:
        raise ValueError(f"b: expected the same shape as a {tuple(arr_a.shape)}, got {tuple(arr_b.shape)}")
    return _spectra(arr_a, arr_b, check_box_size(box_size), bool(normalize))


def power_spectrum_bins(n, box_size=25.0):
    r"""The k bins of :func:`power_spectrum` for ``n x n`` maps: mean ``|k|`` and mode counts.

    ``n_modes[i]`` counts the independent modes of bin ``i`` (half plane); for a
    Gaussian field the scatter of one map's ``P(k_i)`` is about
    :math:`P/\sqrt{N_i}`.

    Args:
        n: pixels per side (>= 2).
        box_size: side of the map in Mpc/h.

    Returns:
        ``(k, n_modes)``, both of shape ``(n_bins,)``, ``n_bins = floor(sqrt(2) (n // 2))``.

    Example:
        >>> k, n_modes = power_spectrum_bins(64, box_size=25.0)
        >>> k.size, int(n_modes.sum()) == (64 * 64 - 4) // 2 + 4 - 1
        (45, True)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n: expected an integer number of pixels >= 2, got {n!r}")
    binning = _binning(int(n), check_box_size(box_size))
    return binning.k.copy(), binning.n_modes.copy()


def bin_mode_power(mode_power, box_size=25.0):
    r"""Bin an expected per-mode power :math:`E|\delta_k|^2` (unnormalised FFT) like :func:`power_spectrum`.

    ``mode_power``: (n, n) on numpy's full FFT grid, or a batch (B, n, n). Use it to put a
    model's expected spectrum in exactly the bins that :func:`power_spectrum` measures.

    Example:
        >>> k, p = bin_mode_power(np.full((16, 16), 16.0**2), box_size=16.0)
        >>> bool(np.allclose(p, 1.0))
        True
    """
    arr = as_finite_array(mode_power, "mode_power")
    single = arr.ndim == 2
    arr = arr[None] if single else arr
    check_ndim(arr, "mode_power", 3, "per-mode power of shape (n, n) or (B, n, n)")
    n = arr.shape[-1]
    if arr.shape[-2] != n:
        raise ValueError(f"mode_power: expected a square grid, got {arr.shape[-2:]}")
    binning = _binning(n, check_box_size(box_size))
    pk = _binned(arr[..., : n // 2 + 1], binning)
    return binning.k.copy(), pk[0] if single else pk


# ----------------------------------------------------------------------------
# pixel PDFs
# ----------------------------------------------------------------------------
def pixel_pdf(maps, bins=50, log=True, range=None):
    r"""Histogram density of the pixel values of a set of maps (of ``log10`` pixels by default).

    With ``x = log10(pixel)`` (``log=True``) or ``x = pixel``, and ``n_j`` the
    number of pixels of all maps in bin ``j`` of width ``w_j``,

    .. math::  p_j = \frac{n_j}{N_\mathrm{pix}\, w_j},

    where :math:`N_\mathrm{pix}` counts *all* pixels, so :math:`\sum_j p_j w_j` is
    the fraction of pixels inside the range (1 when ``range`` is ``None``). To
    compare two sets, give both the same ``range`` (and ``bins``): pixels of one
    set outside it then show up as missing probability rather than being
    silently renormalised away.

    Args:
        maps: array of any shape (one map, a batch, several channels): all pixels
            are pooled.
        bins: number of equal-width bins, or a 1D increasing array of edges (then
            ``range`` must be ``None``).
        log: histogram ``log10(maps)`` (the pixels must be positive).
        range: ``(low, high)`` of the histogram, in ``log10`` units when
            ``log=True``; default the min and max of the data.

    Returns:
        ``(centres, density)``, both of shape ``(n_bins,)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> true, fake = np.exp(rng.normal(size=(2, 8, 32, 32)))
        >>> c, p_true = pixel_pdf(true, bins=40, range=(-2.0, 2.0))
        >>> c, p_fake = pixel_pdf(fake, bins=40, range=(-2.0, 2.0))
        >>> float(np.abs(p_true - p_fake).max()) < 0.1
        True
    """
    values = _as_real_array(maps, "maps")
    if values.size == 0:
        raise ValueError("maps: expected at least one pixel, got an empty array")
    if log:
        n_bad = int(np.count_nonzero(values <= 0))
        if n_bad:
            raise ValueError(
                f"maps: log=True needs positive pixels, found {n_bad} <= 0 (min {values.min():.4g}); "
                "pass log=False or add an offset")
        values = np.log10(values.astype(np.float64, copy=False))
    else:
        values = values.astype(np.float64, copy=False)

    if np.ndim(bins) == 0:
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"bins: expected a positive integer or an array of edges, got {bins!r}")
    else:
        edges = as_finite_array(bins, "bins")
        check_ndim(edges, "bins", 1, "a 1D array of bin edges")
        if edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bins: expected at least 2 strictly increasing edges")
        if range is not None:
            raise ValueError("range: must be None when bins is an array of edges")
        bins = edges
    if range is not None:
        lim = as_finite_array(range, "range")
        if lim.shape != (2,) or not lim[0] < lim[1]:
            raise ValueError(f"range: expected (low, high) with low < high, got {np.ravel(lim).tolist()}")
        range = (float(lim[0]), float(lim[1]))

    counts, edges = np.histogram(values, bins=bins, range=range)
    density = counts / (values.size * np.diff(edges))
    return 0.5 * (edges[1:] + edges[:-1]), density


# ----------------------------------------------------------------------------
# reduced chi^2 (Mudur & Finkbeiner 2022)
# ----------------------------------------------------------------------------
def _check_spectra(pk, name: str, min_rows: int, allow_1d: bool) -> np.ndarray:
    arr = as_finite_array(pk, name)
    what = "power spectra of shape (N, n_bins)" + (" or one spectrum (n_bins,)" if allow_1d else "")
    check_ndim(arr, name, (1, 2) if allow_1d else 2, what)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one k bin, got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} spectra (rows), got {arr.shape[0]}")
    return arr


def reduced_chi2(pk_generated, pk_true, *, per_field=False):
    r"""Reduced :math:`\chi^2` of generated power spectra against a set of true ones.

    The statistic of Mudur & Finkbeiner (2022, arXiv:2211.12444) as computed in
    the first author's code (``leave_one_out_chisq_z`` in nmudur/diffusion-hmc):
    each generated spectrum :math:`P^g_j` is compared with the mean
    :math:`\bar P^t` and the sample variance :math:`s_t^2` (``ddof=1``) of the
    ``m`` true spectra at the same parameters, bin by bin, and the result is
    averaged over the generated fields:

    .. math::

        \chi^2_j = \frac{1}{n_k}\sum_{i=1}^{n_k}
        \frac{\big(P^g_j(k_i) - \bar P^t(k_i)\big)^2}{s_t^2(k_i)}, \qquad
        \chi^2_\mathrm{red} = \frac{1}{n_g}\sum_j \chi^2_j .

    It measures one field against the field-to-field scatter, so a perfect
    generator gives about 1, not 0. For independent Gaussian bins it gives on
    average :func:`expected_reduced_chi2` ``(m) = (1 + 1/m)(m - 1)/(m - 3)``;
    the paper reads it against :func:`reduced_chi2_leave_one_out` of the true
    set (1.30 against 1.27 for 15 CAMELS maps). Their code divides by
    ``n_k - 1`` because its bin list starts at k = 0; ours has no DC bin.

    Args:
        pk_generated: ``(n_g, n_k)`` spectra of generated maps (or one ``(n_k,)``).
        pk_true: ``(m, n_k)`` spectra of true maps, ``m >= 2``, same k bins.
        per_field: return the ``n_g`` values :math:`\chi^2_j` instead of their mean.

    Returns:
        a float, or an array of shape ``(n_g,)`` when ``per_field``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> true, gen = rng.normal(10.0, 1.0, size=(2, 200, 30))
        >>> round(reduced_chi2(gen, true), 1), round(reduced_chi2(gen + 3.0, true), 1)
        (1.0, 10.2)
    """
    gen = _check_spectra(pk_generated, "pk_generated", 1, allow_1d=True)
    true = _check_spectra(pk_true, "pk_true", 2, allow_1d=False)
    if gen.shape[1] != true.shape[1]:
        raise ValueError(
            f"pk_generated: expected {true.shape[1]} k bins like pk_true, got shape {gen.shape}")
    mean = true.mean(axis=0)
    var = true.var(axis=0, ddof=1)
    bad = np.flatnonzero(~(var > 0))
    if bad.size:
        raise ValueError(f"pk_true: zero scatter in k bins {bad[:10].tolist()}; the chi^2 is undefined there")
    chi2 = np.mean((gen - mean) ** 2 / var, axis=1)
    return chi2 if per_field else float(chi2.mean())


def reduced_chi2_leave_one_out(pk_true, *, per_field=False):
    r"""Cosmic-variance reference for :func:`reduced_chi2`: each true field against the others.

    For each true spectrum :math:`P_j`, the :func:`reduced_chi2` of that one
    spectrum against the other ``m - 1`` (their mean and ``ddof=1`` variance
    leave :math:`P_j` out), averaged over ``j``:

    .. math::

        \chi^2_\mathrm{LOO} = \frac{1}{m}\sum_{j=1}^{m}\frac{1}{n_k}\sum_i
        \frac{\big(P_j(k_i) - \bar P_{-j}(k_i)\big)^2}{s_{-j}^2(k_i)} .

    This is what a generator that samples the true distribution exactly would
    score against ``m - 1`` true maps; for Gaussian bins it averages
    ``expected_reduced_chi2(m - 1)`` (1.27 for the 15 maps of a CAMELS
    simulation). The leave-one-out means and variances are computed in closed
    form, so it costs about as much as one :func:`reduced_chi2`.

    Args:
        pk_true: ``(m, n_k)`` spectra of true maps at one parameter point, ``m >= 3``.
        per_field: return the ``m`` values instead of their mean.

    Returns:
        a float, or an array of shape ``(m,)`` when ``per_field``.

    Example:
        >>> true = np.random.default_rng(0).normal(10.0, 1.0, size=(15, 2000))
        >>> round(reduced_chi2_leave_one_out(true), 2), round(expected_reduced_chi2(14), 2)
        (1.27, 1.27)
    """
    true = _check_spectra(pk_true, "pk_true", 3, allow_1d=False)
    m = true.shape[0]
    y = true - true.mean(axis=0)                     # centred: the mean of the others is -y_j / (m - 1)
    q = np.sum(y * y, axis=0)
    resid2 = (y * (m / (m - 1.0))) ** 2              # (P_j - mean_{-j})^2
    var_loo = (q - y * y * (m / (m - 1.0))) / (m - 2.0)
    tiny = 1e-12 * q / (m - 2.0)
    bad = np.argwhere(~(var_loo > tiny))
    if bad.size:
        j, i = bad[0]
        raise ValueError(
            f"pk_true: the spectra other than row {j} have zero scatter in k bin {i}; "
            "the chi^2 is undefined there")
    chi2 = np.mean(resid2 / var_loo, axis=1)
    return chi2 if per_field else float(chi2.mean())


def expected_reduced_chi2(n_true):
    r"""Mean of :func:`reduced_chi2` for a perfect generator, if bins were Gaussian.

    With ``m = n_true`` reference spectra, a new draw differs from their mean
    with variance :math:`\sigma^2(1 + 1/m)`, and
    :math:`E[1/s^2] = (m - 1)/((m - 3)\sigma^2)`, so

    .. math::  E[\chi^2_\mathrm{red}] = \Big(1 + \frac{1}{m}\Big)\frac{m - 1}{m - 3}\quad (m > 3),

    infinite for ``m <= 3``. Use ``m - 1`` for the leave-one-out value of ``m``
    true maps. Real P(k) bins with few modes are skewed, so treat this as a guide.

    Example:
        >>> round(expected_reduced_chi2(14), 3)
        1.266
    """
    if isinstance(n_true, bool) or not isinstance(n_true, (int, np.integer)) or n_true < 2:
        raise ValueError(f"n_true: expected an integer >= 2, got {n_true!r}")
    m = float(n_true)
    return float("inf") if m <= 3 else (1.0 + 1.0 / m) * (m - 1.0) / (m - 3.0)


def pk_z_scores(pk_generated, pk_true, *, of="mean"):
    r"""Per-k-bin z-scores of generated power spectra against true ones (how the generative notebooks score P(k)).

    ``of="mean"``: the difference of the two sets' means in units of its standard error,

    .. math::  z_i = \frac{\bar P^g_i - \bar P^t_i}{\sqrt{s_{g,i}^2 / n_g + s_{t,i}^2 / n_t}},

    which is N(0, 1) per bin when both sets come from the same distribution (so a max |z|
    over ~30 bins above ~3 is a real mismatch of the mean spectrum). ``of="scatter"``:
    :math:`(\bar P^g_i - \bar P^t_i) / s_{t,i}`, the mean offset in units of one map's
    scatter (the paper-style z-score, which does not shrink with the number of maps).

    Args:
        pk_generated: ``(n_g, n_k)`` spectra, ``n_g >= 2``.
        pk_true: ``(n_t, n_k)`` spectra on the same bins, ``n_t >= 2``.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> a, b = rng.normal(10.0, 1.0, size=(2, 500, 20))
        >>> bool(np.abs(pk_z_scores(a, b)).max() < 4), bool(pk_z_scores(a + 0.5, b).min() > 5)
        (True, True)
    """
    gen = _check_spectra(pk_generated, "pk_generated", 2, allow_1d=False)
    true = _check_spectra(pk_true, "pk_true", 2, allow_1d=False)
    if gen.shape[1] != true.shape[1]:
        raise ValueError(f"pk_generated: expected {true.shape[1]} k bins like pk_true, got shape {gen.shape}")
    if of not in ("mean", "scatter"):
        raise ValueError(f"of: expected 'mean' or 'scatter', got {of!r}")
    diff = gen.mean(axis=0) - true.mean(axis=0)
    var_t = true.var(axis=0, ddof=1)
    scale = var_t if of == "scatter" else gen.var(axis=0, ddof=1) / len(gen) + var_t / len(true)
    if np.any(~(scale > 0)):
        raise ValueError("pk_true: zero scatter in some k bin; the z-score is undefined there")
    return diff / np.sqrt(scale)


def pk_agree_kmax(k, pk_generated, pk_true, *, n_sigma=1.0):
    r"""The largest k up to which the generated mean P(k) stays inside the true mean +- ``n_sigma`` scatter.

    Bins are scanned from the lowest k; the first bin where
    :math:`|\bar P^g - \bar P^t| > n_\sigma s_t` ends the agreement, and the ``k`` of the
    bin before it is returned (0.0 if even the first bin disagrees; ``k[-1]`` if none does).
    This is the "agree up to k ~ 4-5 h/Mpc" of Andrianomena & Hassan's figure 3.

    Example:
        >>> k = np.arange(1.0, 11.0)
        >>> true = np.random.default_rng(0).normal(10.0, 1.0, size=(400, 10))
        >>> gen = true + np.where(k > 6.5, 3.0, 0.0)
        >>> pk_agree_kmax(k, gen, true)
        6.0
    """
    k = as_finite_array(k, "k")
    check_ndim(k, "k", 1, "a 1D array of bin wavenumbers")
    gen = _check_spectra(pk_generated, "pk_generated", 1, allow_1d=True)
    true = _check_spectra(pk_true, "pk_true", 2, allow_1d=False)
    if not gen.shape[1] == true.shape[1] == len(k):
        raise ValueError(f"k, pk_generated, pk_true: expected the same number of bins, got {len(k)}, "
                         f"{gen.shape[1]}, {true.shape[1]}")
    outside = np.abs(gen.mean(axis=0) - true.mean(axis=0)) > n_sigma * true.std(axis=0, ddof=1)
    if not outside.any():
        return float(k[-1])
    first = int(np.argmax(outside))
    return float(k[first - 1]) if first > 0 else 0.0

