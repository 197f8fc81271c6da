"""cosmonb.cosmology against colossus (Diemer 2018), an independent implementation."""
import numpy as np
import pytest

from cosmonb import cosmology

CORNERS_AND_CENTRE = [(0.1, 0.6), (0.1, 1.0), (0.5, 0.6), (0.5, 1.0), (0.3, 0.8)]


@pytest.mark.parametrize("omega_m, sigma_8", CORNERS_AND_CENTRE)
def test_linear_power_matches_colossus_eisenstein98(omega_m, sigma_8):
    colossus_cosmology = pytest.importorskip("colossus.cosmology.cosmology")
    cosmo = colossus_cosmology.setCosmology(
        f"camels_{omega_m}_{sigma_8}",
        params=dict(flat=True, H0=100 * cosmology.HUBBLE, Om0=omega_m, Ob0=cosmology.OMEGA_B,
                    sigma8=sigma_8, ns=cosmology.N_S, Tcmb0=cosmology.T_CMB),
        persistence="")
    k = np.logspace(np.log10(0.05), np.log10(30.0), 80)
    reference = cosmo.matterPowerSpectrum(k, z=0.0, model="eisenstein98")
    ours = cosmology.linear_power(k, omega_m, sigma_8)
    assert np.max(np.abs(ours / reference - 1)) < 0.01


def test_sigma_8_normalisation_is_exact():
    k = cosmology._K_NORM
    p = cosmology.linear_power(k, 0.25, 0.9)
    integrand = k**3 * p * cosmology.tophat_window(8.0 * k) ** 2 / (2 * np.pi**2)
    assert np.sqrt(np.trapezoid(integrand, np.log(k))) == pytest.approx(0.9, rel=1e-10)


def test_vectorised_over_parameter_sets_equals_loop():
    k = np.logspace(-2, 1, 7)
    om = np.array([0.1, 0.3, 0.5])
    s8 = np.array([0.6, 0.8, 1.0])
    table = cosmology.linear_power(k, om, s8)
    assert table.shape == (3, 7)
    for i in range(3):
        np.testing.assert_allclose(table[i], cosmology.linear_power(k, om[i], s8[i]), rtol=1e-12)
    assert cosmology.linear_power(k, om[:, None], s8[None, :]).shape == (3, 3, 7)


def test_power_law():
    k = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(cosmology.power_law(k, 2.0, 3.0), 2.0 * k**-3.0)
    assert cosmology.power_law(k, [1.0, 2.0], 1.0).shape == (2, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=[0.1, -1.0], omega_m=0.3, sigma_8=0.8), "k"),
    (dict(k=[0.1, np.nan], omega_m=0.3, sigma_8=0.8), "k"),
    (dict(k=[0.1], omega_m=1.5, sigma_8=0.8), "omega_m"),
    (dict(k=[0.1], omega_m=0.3, sigma_8=np.inf), "sigma_8"),
])
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cosmology.linear_power(**kwargs)
    with pytest.raises(ValueError, match="amplitude"):
        cosmology.power_law([1.0], -1.0, 2.0)
