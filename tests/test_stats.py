"""Tests for cosmonb.stats: power spectra against Pylians and powerbox, pixel PDFs, reduced chi^2."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from cosmonb.stats import (
    cross_power_spectrum,
    expected_reduced_chi2,
    pixel_pdf,
    power_spectrum,
    power_spectrum_bins,
    reduced_chi2,
    reduced_chi2_leave_one_out,
)

BOX = 25.0


def lognormal_maps(n_maps, n, seed, sigma=0.5, k0=0.05):
    """Positive, spatially correlated maps: exp of a Gaussian field with P_g ~ 1 / (k^2 + k0^2).

    The spectrum falls by ~100 from the largest scales to the Nyquist frequency,
    enough structure to test binning without pushing Pylians' float32 FFT to its limits.
    """
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n_maps, n, n))
    k = np.fft.fftfreq(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    g = np.fft.ifft2(np.fft.fft2(g) / np.sqrt(k2 + k0**2)).real
    g *= sigma / g.std(axis=(-2, -1), keepdims=True)
    return np.exp(g)


def _quiet(fn, *args, **kwargs):
    """Pylians prints progress lines; keep the test log clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _delta(m):
    return m / m.mean() - 1.0


# ----------------------------------------------------------------------------
# agreement with Pylians (the convention we follow) and powerbox
# ----------------------------------------------------------------------------
# Pylians FFTs in single precision: a bin holding one small mode (the corner
# bin (N/2, N/2) holds exactly one) can then be off by more than 1e-4 relative;
# the absolute floor below is 1e-5 of the mean power, the float32 noise level.
def _assert_close_f32(ours, ref):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.mean(np.abs(ref)))


@pytest.mark.parametrize("n", [64, 32, 33])
def test_auto_power_matches_pylians(n):
    PKL = pytest.importorskip("Pk_library")
    maps = lognormal_maps(3, n, seed=n)
    k, pk = power_spectrum(maps, BOX)
    for m, p in zip(maps, pk):
        ref = _quiet(PKL.Pk_plane, _delta(m).astype(np.float32), BOX, "None", 1)
        assert ref.k.shape == k.shape  # Pylians returns bins 1 .. floor(sqrt(2) n//2)
        np.testing.assert_allclose(k, ref.k, rtol=1e-12)
        _assert_close_f32(p, ref.Pk)
    k_b, n_modes = power_spectrum_bins(n, BOX)
    np.testing.assert_array_equal(n_modes, ref.Nmodes)
    np.testing.assert_array_equal(k_b, k)


@pytest.mark.parametrize("n", [64, 33])
def test_cross_power_matches_pylians(n):
    PKL = pytest.importorskip("Pk_library")
    a = lognormal_maps(2, n, seed=1)
    b = a * lognormal_maps(2, n, seed=2, sigma=0.5)
    k, pab = cross_power_spectrum(a, b, BOX)
    _, paa = power_spectrum(a, BOX)
    _, pbb = power_spectrum(b, BOX)
    for i in range(2):
        da, db = _delta(a[i]).astype(np.float32), _delta(b[i]).astype(np.float32)
        ref = _quiet(PKL.XPk_plane, da, db, BOX, "None", "None", 1)
        np.testing.assert_allclose(k, ref.k, rtol=1e-12)
        # Pylians 0.12's XPk_plane normalises by (L / N^2)^3 instead of Pk_plane's
        # (L / N^2)^2 (both .XPk and .Pk): undo that factor before comparing.
        fix = n**2 / BOX
        _assert_close_f32(pab[i], ref.XPk * fix)
        _assert_close_f32(paa[i], ref.Pk[:, 0] * fix)
        _assert_close_f32(pbb[i], ref.Pk[:, 1] * fix)
        np.testing.assert_allclose(pab[i] / np.sqrt(paa[i] * pbb[i]), ref.r, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("n", [64, 33])
def test_auto_and_cross_power_match_powerbox(n):
    """powerbox averages over the full FFT plane; its bins can be made identical.

    We give powerbox explicit edges at (i - 1e-6) k_F, i = 1 .. floor(sqrt(2) n//2) + 1
    (so floor(|k| / k_F) decides the bin, as in Pylians, and the DC mode falls
    below the first edge), pass delta itself (powerbox's ``dimensionless`` only
    acts on particle input) and use its default cosmological FT convention,
    whose volume-normalised power is |delta_k|^2 (L / N^2)^2, our normalisation.
    The full plane counts every mode twice (k and -k) except the self-conjugate
    ones (0 or N/2 in each component), which the half plane counts once like the
    rest. With plain weights the two agree in every bin except, for even N, bin
    N/2 (which holds (N/2, 0) and (0, N/2)); weighting the self-conjugate modes by
    2 in powerbox (``k_weights``) reproduces the half-plane average in every bin.
    """
    pb = pytest.importorskip("powerbox")
    maps = lognormal_maps(2, n, seed=7)
    b = maps * lognormal_maps(2, n, seed=8, sigma=0.5)
    k, pk = power_spectrum(maps, BOX)
    _, pab = cross_power_spectrum(maps, b, BOX)
    k_F = 2 * np.pi / BOX
    edges = (np.arange(1, k.size + 2) - 1e-6) * k_F
    nyq = np.pi * n / BOX

    def self_conjugate_twice(freq, kmag):
        grids = np.meshgrid(*freq, indexing="ij")
        sc = np.all([np.isclose(f, 0) | np.isclose(np.abs(f), nyq) for f in grids], axis=0)
        return np.where(sc, 2.0, 1.0)

    for i in range(2):
        kw = dict(bins=edges, nthreads=1)
        plain = pb.get_power(_delta(maps[i]), BOX, **kw)
        weighted = pb.get_power(_delta(maps[i]), BOX, k_weights=self_conjugate_twice, **kw)
        cross = pb.get_power(_delta(maps[i]), BOX, deltax2=_delta(b[i]),
                             k_weights=self_conjugate_twice, **kw)
        np.testing.assert_allclose(weighted.power, pk[i], rtol=1e-8)
        np.testing.assert_allclose(weighted.bin_avg, k, rtol=1e-10)
        np.testing.assert_allclose(cross.power, pab[i], rtol=1e-8)
        same = np.ones(k.size, bool)
        if n % 2 == 0:
            same[n // 2 - 1] = False  # bin N/2 (index N/2 - 1): the half-/full-plane weighting differs
        np.testing.assert_allclose(plain.power[same], pk[i][same], rtol=1e-8)
        np.testing.assert_allclose(plain.bin_avg[same], k[same], rtol=1e-10)


# ----------------------------------------------------------------------------
# known spectrum, shapes, conventions
# ----------------------------------------------------------------------------
def test_white_noise_is_flat():
    """White noise of variance sigma^2 has P(k) = sigma^2 * pixel area at every k."""
    n, sigma, n_maps = 64, 0.3, 200
    rng = np.random.default_rng(42)
    noise = sigma * rng.normal(size=(n_maps, n, n))
    k, pk = power_spectrum(noise, BOX, normalize=False)
    expected = sigma**2 * (BOX / n) ** 2
    _, n_modes = power_spectrum_bins(n, BOX)
    # |delta_k|^2 is exponential (relative scatter 1) for a complex mode: the
    # mean over n_maps * n_modes modes has a relative error 1/sqrt(that) (x sqrt 2
    # for the single real mode of the corner bin).
    err = expected * np.sqrt(2.0 / (n_maps * n_modes))
    z = (pk.mean(axis=0) - expected) / err
    assert np.all(np.abs(z) < 5), z
    assert abs(pk.mean() / expected - 1) < 5 * np.sqrt(1.0 / (n_maps * n_modes.sum()))
    # the same noise around a mean of 10, through delta = map / mean - 1
    _, pk_norm = power_spectrum(10.0 + noise, BOX)
    assert abs(pk_norm.mean() / (expected / 100.0) - 1) < 0.01


def test_shapes_batch_and_single_agree_and_binning_cached():
    maps = lognormal_maps(4, 32, seed=3)
    k, pk = power_spectrum(maps, BOX)
    k1, pk1 = power_spectrum(maps[1], BOX)
    assert pk.shape == (4, 22) and pk1.shape == (22,) and k.shape == (22,)
    np.testing.assert_allclose(pk[1], pk1, rtol=1e-12)
    np.testing.assert_array_equal(k, k1)
    k[0] = -1.0  # the returned k is a copy: mutating it must not touch the cache
    assert power_spectrum(maps, BOX)[0][0] > 0
    # float32 input, int input and a different box size
    np.testing.assert_allclose(power_spectrum(maps.astype(np.float32), BOX)[1], pk, rtol=1e-4)
    k2, pk2 = power_spectrum(maps, 2 * BOX)
    np.testing.assert_allclose(k2, k1 / 2)
    np.testing.assert_allclose(pk2, 4 * pk)  # P scales as L^2 at fixed pixels
    ints = np.arange(1, 17 * 17 + 1).reshape(17, 17) % 7 + 1
    assert np.all(np.isfinite(power_spectrum(ints, BOX)[1]))


def test_batches_larger_than_one_chunk(monkeypatch):
    import cosmonb.stats as stats
    maps = lognormal_maps(5, 16, seed=4)
    _, full = power_spectrum(maps, BOX)
    monkeypatch.setattr(stats, "_CHUNK_PIXELS", 2 * 16 * 16)  # 2 maps per FFT call
    _, chunked = power_spectrum(maps, BOX)
    np.testing.assert_allclose(chunked, full, rtol=1e-12)
    _, cross = cross_power_spectrum(maps, maps, BOX)
    np.testing.assert_allclose(cross, full, rtol=1e-12)


def test_mean_of_map_does_not_matter_but_zero_mean_is_refused():
    maps = lognormal_maps(2, 32, seed=5)
    np.testing.assert_allclose(power_spectrum(7.0 * maps)[1], power_spectrum(maps)[1], rtol=1e-10)
    zero_mean = maps - maps.mean(axis=(-2, -1), keepdims=True)
    with pytest.raises(ValueError, match=r"maps: map \d has mean 0"):
        power_spectrum(np.zeros((32, 32)))
    # an overdensity field goes in with normalize=False: same spectrum as the map itself
    np.testing.assert_allclose(
        power_spectrum(zero_mean / maps.mean(axis=(-2, -1), keepdims=True), normalize=False)[1],
        power_spectrum(maps)[1], rtol=1e-10)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "maps, match",
    [
        (np.full((8, 8), np.nan), r"maps: expected finite values"),
        (np.ones((8, 9)), r"maps: expected square maps"),
        (np.ones(8), r"maps: expected one map"),
        (np.ones((2, 2, 8, 8)), r"maps: expected one map"),
        (np.ones((1, 1)), r"maps: expected maps of at least 2 x 2"),
        (np.ones((0, 8, 8)), r"maps: expected at least one map"),
        (np.ones((8, 8)) * 1j, r"maps: expected real numbers"),
        ("not a map", r"maps: expected"),
    ],
)
def test_power_spectrum_bad_maps(maps, match):
    with pytest.raises(ValueError, match=match):
        power_spectrum(maps)


@pytest.mark.parametrize("box", [0.0, -25.0, np.nan, np.inf, (25.0, 25.0), "big"])
def test_bad_box_size(box):
    with pytest.raises(ValueError, match=r"box_size: expected"):
        power_spectrum(np.ones((8, 8)) + np.eye(8), box_size=box)
    with pytest.raises(ValueError, match=r"box_size: expected"):
        power_spectrum_bins(8, box_size=box)


def test_cross_bad_input():
    a = lognormal_maps(2, 16, seed=6)
    with pytest.raises(ValueError, match=r"b: expected the same shape as a"):
        cross_power_spectrum(a, a[0])
    bad = a.copy()
    bad[1, 3, 3] = np.inf
    with pytest.raises(ValueError, match=r"b: expected finite values"):
        cross_power_spectrum(a, bad)
    with pytest.raises(ValueError, match=r"a: expected square maps"):
        cross_power_spectrum(a[:, :, :8], a[:, :, :8])
    with pytest.raises(ValueError, match=r"n: expected an integer"):
        power_spectrum_bins(1)


# ----------------------------------------------------------------------------
# pixel PDF
# ----------------------------------------------------------------------------
def test_pixel_pdf_lognormal():
    rng = np.random.default_rng(0)
    maps = 10 ** rng.normal(0.0, 0.5, size=(20, 32, 32))
    c, p = pixel_pdf(maps, bins=30, range=(-3.0, 3.0))
    assert c.shape == p.shape == (30,)
    assert np.sum(p * np.diff(np.linspace(-3, 3, 31))) == pytest.approx(1.0)
    gauss = np.exp(-0.5 * (c / 0.5) ** 2) / (0.5 * np.sqrt(2 * np.pi))
    assert np.max(np.abs(p - gauss)) < 0.05
    # a shared range: a set with pixels outside it loses probability instead of renormalising
    c2, p2 = pixel_pdf(maps * 10.0, bins=30, range=(-3.0, 1.0))
    assert np.sum(p2 * np.diff(np.linspace(-3, 1, 31))) == pytest.approx(0.5, abs=0.05)
    # linear pixels and explicit edges
    c3, p3 = pixel_pdf(np.log10(maps), bins=np.linspace(-3, 3, 31), log=False)
    np.testing.assert_allclose(p3, p)
    np.testing.assert_allclose(c3, c)


def test_pixel_pdf_bad_input():
    with pytest.raises(ValueError, match=r"maps: log=True needs positive pixels, found 1"):
        pixel_pdf(np.array([[1.0, 2.0], [0.0, 3.0]]))
    with pytest.raises(ValueError, match=r"maps: expected finite values"):
        pixel_pdf(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"range: expected \(low, high\)"):
        pixel_pdf(np.ones(4), range=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"bins: expected a positive integer"):
        pixel_pdf(np.ones(4), bins=0)
    with pytest.raises(ValueError, match=r"bins: expected at least 2 strictly increasing"):
        pixel_pdf(np.ones(4), bins=[1.0, 0.5])
    with pytest.raises(ValueError, match=r"range: must be None"):
        pixel_pdf(np.ones(4), bins=[0.0, 1.0], range=(0.0, 1.0))
    assert np.all(np.isfinite(pixel_pdf(-np.ones(4) - np.arange(4), log=False)[1]))


# ----------------------------------------------------------------------------
# reduced chi^2
# ----------------------------------------------------------------------------
def _brute_loo(pk):
    vals = []
    for j in range(pk.shape[0]):
        rest = np.delete(pk, j, axis=0)
        vals.append(np.mean((pk[j] - rest.mean(0)) ** 2 / rest.var(0, ddof=1)))
    return np.array(vals)


def test_chi2_identical_sets_and_leave_one_out_closed_form():
    pk = power_spectrum(lognormal_maps(15, 32, seed=9), BOX)[1]
    m = pk.shape[0]
    # Each field against a set that contains it: sum_j (P_j - mean)^2 = (m - 1) s^2 per bin,
    # so identical sets give exactly (m - 1) / m: close to 1, not 0, because the
    # statistic measures single fields against the field-to-field scatter.
    assert reduced_chi2(pk, pk) == pytest.approx((m - 1) / m, rel=1e-12)
    # the mean of the generated set equal to the true mean gives ~0 for that one spectrum
    assert reduced_chi2(pk.mean(axis=0), pk) == pytest.approx(0.0, abs=1e-20)
    per = reduced_chi2_leave_one_out(pk, per_field=True)
    np.testing.assert_allclose(per, _brute_loo(pk), rtol=1e-9)
    assert reduced_chi2_leave_one_out(pk) == pytest.approx(per.mean())
    assert reduced_chi2(pk[:4], pk, per_field=True).shape == (4,)


def test_chi2_gaussian_bins_match_expectation():
    rng = np.random.default_rng(0)
    mu, sd = np.linspace(5, 50, 400), np.linspace(0.5, 5, 400)
    true = rng.normal(mu, sd, size=(15, 400))
    gen = rng.normal(mu, sd, size=(300, 400))
    assert reduced_chi2(gen, true) == pytest.approx(expected_reduced_chi2(15), rel=0.1)
    assert reduced_chi2_leave_one_out(true) == pytest.approx(expected_reduced_chi2(14), rel=0.1)
    assert expected_reduced_chi2(3) == np.inf


def test_chi2_same_distribution_vs_biased_maps():
    """Generated maps from the same distribution score like the leave-one-out reference;
    maps whose log-field has 25% more scatter score far above it."""
    n = 32
    true = power_spectrum(lognormal_maps(15, n, seed=100), BOX)[1]
    same = power_spectrum(lognormal_maps(15, n, seed=200), BOX)[1]
    biased = power_spectrum(lognormal_maps(15, n, seed=300, sigma=0.5 * 1.25), BOX)[1]
    loo = reduced_chi2_leave_one_out(true)
    chi_same = reduced_chi2(same, true)
    chi_biased = reduced_chi2(biased, true)
    assert 0.5 < loo < 3.0
    assert 0.5 * loo < chi_same < 2.0 * loo
    assert chi_biased > 4 * loo  # ~15 here; a 1.3 vs 1.27 difference is what the paper saw


def test_chi2_bad_input():
    pk = np.random.default_rng(1).normal(10, 1, size=(5, 8))
    with pytest.raises(ValueError, match=r"pk_generated: expected 8 k bins"):
        reduced_chi2(pk[:, :7], pk)
    with pytest.raises(ValueError, match=r"pk_true: expected at least 2 spectra"):
        reduced_chi2(pk, pk[:1])
    with pytest.raises(ValueError, match=r"pk_true: expected power spectra of shape"):
        reduced_chi2(pk, pk[0])
    with pytest.raises(ValueError, match=r"pk_true: zero scatter in k bins \[0\]"):
        reduced_chi2(pk, np.column_stack([np.ones(5), pk[:, 1:]]))
    with pytest.raises(ValueError, match=r"pk_generated: expected finite values"):
        reduced_chi2(pk + np.nan, pk)
    with pytest.raises(ValueError, match=r"pk_true: expected at least 3 spectra"):
        reduced_chi2_leave_one_out(pk[:2])
    with pytest.raises(ValueError, match=r"pk_true: the spectra other than row 0 have zero scatter"):
        reduced_chi2_leave_one_out(np.vstack([pk[:1], np.ones((4, 8))]))
    with pytest.raises(ValueError, match=r"n_true: expected an integer"):
        expected_reduced_chi2(1.5)


def test_nearly_zero_mean_is_refused_relative_to_the_pixel_scale():
    """Issue 8: a mean-subtracted field (mean ~1e-17, not exactly 0) gave P(k) ~ 1e33."""
    maps = lognormal_maps(3, 32, seed=7)
    zero_mean = maps - maps.mean(axis=(-2, -1), keepdims=True)
    means = zero_mean.mean(axis=(-2, -1))
    assert np.all(np.abs(means) < 1e-12) and np.any(means != 0)  # rounding noise, not exactly 0
    with pytest.raises(ValueError, match=r"maps: map \d has mean .*normalize=False"):
        power_spectrum(zero_mean, BOX)
    with pytest.raises(ValueError, match=r"b: map \d has mean"):
        cross_power_spectrum(maps, zero_mean, BOX)
    # the same field moved 1e6 times its rounding noise off zero is still refused: relative check
    scale = np.abs(zero_mean[0]).mean()
    with pytest.raises(ValueError, match=r"maps: map 0 has mean"):
        power_spectrum(zero_mean[0] + 1e-4 * scale, BOX)
    # positive maps pass however heavy-tailed they are: one bright pixel carries 99.9% of the mass
    spike = np.full((32, 32), 1e-3)
    spike[3, 5] = 1e3
    k, pk = power_spectrum(spike, BOX)
    assert np.all(np.isfinite(pk)) and np.all(pk > 0)
    # and the overdensity itself goes in with normalize=False
    np.testing.assert_allclose(
        power_spectrum(zero_mean / maps.mean(axis=(-2, -1), keepdims=True), BOX, normalize=False)[1],
        power_spectrum(maps, BOX)[1], rtol=1e-10)


def test_pk_z_scores_are_standard_normal_for_one_distribution_and_catch_a_small_offset():
    from cosmonb.stats import pk_z_scores

    rng = np.random.default_rng(3)
    z = np.concatenate([pk_z_scores(*rng.lognormal(1.0, 0.3, size=(2, 200, 25))) for _ in range(40)])
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1.0) < 0.1
    a, b = rng.normal(10.0, 1.0, size=(2, 500, 25))
    assert np.all(pk_z_scores(a * 1.03, b) > 3)  # 3% of the mean, 30% of one map's scatter
    np.testing.assert_allclose(pk_z_scores(a + 0.5, b, of="scatter"), (a.mean(0) + 0.5 - b.mean(0)) / b.std(0, ddof=1))
    with pytest.raises(ValueError, match="k bins"):
        pk_z_scores(a[:, :3], b)
    with pytest.raises(ValueError, match="of:"):
        pk_z_scores(a, b, of="median")


def test_pk_agree_kmax_errors():
    from cosmonb.stats import pk_agree_kmax

    true = np.random.default_rng(0).normal(10.0, 1.0, size=(50, 4))
    assert pk_agree_kmax(np.arange(1.0, 5.0), true + 5.0, true) == 0.0
    assert pk_agree_kmax(np.arange(1.0, 5.0), true, true) == 4.0
    with pytest.raises(ValueError, match="same number of bins"):
        pk_agree_kmax(np.arange(3.0), true, true)
