"""Tests of cosmonb.sims.catalogs: the mass function against colossus, the exact galaxy density, the files."""
from __future__ import annotations

import zlib

import h5py
import numpy as np
import pytest

from cosmonb.sims import catalogs as C
from cosmonb import data, sims

FID = sims.FIDUCIAL


# --------------------------------------------------------------------------- mass function
@pytest.fixture(scope="module")
def colossus_cosmo():
    cosmology = pytest.importorskip("colossus.cosmology.cosmology")

    def set_cosmo(om, s8):
        return cosmology.setCosmology("cosmonb_test", {"flat": True, "H0": 67.11, "Om0": om, "Ob0": 0.049,
                                                       "sigma8": s8, "ns": 0.9624})
    return set_cosmo


@pytest.mark.parametrize("om,s8", [(0.3, 0.8), (0.1, 0.6), (0.5, 1.0)])
@pytest.mark.parametrize("z", [0.0, 0.15])
@pytest.mark.parametrize("model", ["sheth99", "press74"])
def test_mass_function_matches_colossus(colossus_cosmo, om, s8, z, model):
    from colossus.lss import mass_function as cmf

    colossus_cosmo(om, s8)
    mass = np.logspace(9.5, 15, 23)
    ref = cmf.massFunction(mass, z, mdef="fof", model=model, q_out="dndlnM")
    mine = C.mass_function(mass, om, s8, z, model=model)
    np.testing.assert_allclose(mine, ref, rtol=0.05)


def test_growth_factor_matches_colossus(colossus_cosmo):
    cosmo = colossus_cosmo(0.3, 0.8)
    z = np.array([0.0, 0.05, 0.1, 0.15, 1.0])
    np.testing.assert_allclose(C.growth_factor(z, 0.3), cosmo.growthFactor(z), rtol=2e-3)


def test_sigma_mass_is_sigma_8_at_8_mpc():
    mass = 4 / 3 * np.pi * 8.0**3 * 0.4 * C.RHO_CRIT
    assert C.sigma_mass(mass, 0.4, 0.7) == pytest.approx(0.7, rel=1e-3)
    # the slope is negative and the mass function falls with mass
    _, slope = C.sigma_mass(np.array([1e10, 1e13]), 0.3, 0.8, return_slope=True)
    assert np.all(slope < 0)


def test_mass_function_bad_input():
    with pytest.raises(ValueError, match="mass"):
        C.mass_function([1e12, -1.0], 0.3, 0.8)
    with pytest.raises(ValueError, match="mass"):
        C.mass_function([np.nan], 0.3, 0.8)
    with pytest.raises(ValueError, match="model"):
        C.mass_function([1e12], 0.3, 0.8, model="tinker")
    with pytest.raises(ValueError, match="omega_m"):
        C.mass_function([1e12], 3.0, 0.8)


# --------------------------------------------------------------------------- the SHMR
def test_feedback_moves_the_relation_where_it_should():
    low, high = 10.8, 13.5
    f = C.stellar_mass_relation
    # supernovae act on small halos, AGN on large ones; both lower the stellar mass
    assert f(low, a_sn1=4.0) < f(low) - 0.3
    assert abs(f(high, a_sn1=4.0) - f(high)) < abs(f(low, a_sn1=4.0) - f(low)) / 2
    assert f(high, a_agn1=4.0) < f(high) - 0.2
    assert abs(f(low, a_agn1=4.0) - f(low)) < 0.05
    # redshift acts weakly over 0 <= z <= 0.15
    dz = np.abs(f(np.array([11.0, 12.0, 13.0]), z=0.15) - f(np.array([11.0, 12.0, 13.0])))
    assert dz.max() > 0.05 and np.all(dz < 0.2)


# --------------------------------------------------------------------------- the exact density
@pytest.fixture(scope="module")
def model():
    return C.GalaxyModel(FID, redshift=0.05)


def test_densities_are_normalised(model):
    x = np.arange(model.x_min, C.LOG_MASS_MAX, 0.002)
    assert np.trapezoid(np.exp(model.log_prob_total(x)), x) == pytest.approx(1.0, abs=1e-4)
    y = np.arange(6.5, 12.5, 0.002)
    assert np.trapezoid(np.exp(model.log_prob_stellar(y)), y) == pytest.approx(1.0, abs=1e-4)
    X, Y = np.meshgrid(np.arange(model.x_min, 15.0, 0.01), np.arange(6.5, 12.5, 0.01), indexing="ij")
    assert np.exp(model.log_prob(X, Y)).sum() * 1e-4 == pytest.approx(1.0, abs=2e-3)


def test_marginals_and_conditional_are_consistent(model):
    # integrating the joint over y gives p(x); over x gives p(y)
    y = np.arange(6.5, 12.5, 0.002)
    for x0 in (10.6, 11.5, 13.0):
        marg = np.trapezoid(np.exp(model.log_prob(np.full_like(y, x0), y)), y)
        assert np.log(marg) == pytest.approx(float(model.log_prob_total(x0)), abs=1e-3)
        cond = np.trapezoid(np.exp(model.log_prob_conditional(y, np.full_like(y, x0))), y)
        assert cond == pytest.approx(1.0, abs=1e-3)
    x = np.arange(model.x_min, C.LOG_MASS_MAX, 0.002)
    for y0 in (8.2, 9.5, 11.0):
        marg = np.trapezoid(np.exp(model.log_prob(x, np.full_like(x, y0))), x)
        assert np.log(marg) == pytest.approx(float(model.log_prob_stellar(y0)), abs=1e-3)


def test_samples_follow_the_density(model):
    """Pooled samples of 40 catalogs against the exact marginals (a chi^2 test each)."""
    xs, ys, counts = [], [], []
    for s in range(40):
        cat = model.sample([7, s])
        gal = cat["stellar_mass"] > 0
        counts.append(gal.sum())
        xs.append(np.log10(cat["total_mass"][gal]))
        ys.append(np.log10(cat["stellar_mass"][gal]))
    x, y = np.concatenate(xs), np.concatenate(ys)
    # Poisson counts: the mean agrees with the expected number
    assert abs(np.mean(counts) - model.expected_galaxies) < 5 * np.sqrt(model.expected_galaxies / 40)
    for values, logp, lo, hi in ((x, model.log_prob_total, 10.2, 13.0), (y, model.log_prob_stellar, 7.6, 11.0)):
        edges = np.linspace(lo, hi, 29)
        hist, _ = np.histogram(values, edges)
        fine = np.linspace(lo, hi, 2801)
        cdf = np.concatenate([[0], np.cumsum(np.exp(logp(0.5 * (fine[1:] + fine[:-1]))) * np.diff(fine))])
        expected = len(values) * np.diff(np.interp(edges, fine, cdf))
        chi2 = np.sum((hist - expected) ** 2 / expected)
        assert chi2 < 28 + 6 * np.sqrt(2 * 28), chi2
    # the scatter about the relation is the model's
    resid = (y - model.mean_log_mstar(x)) / C.scatter_dex(x)
    big = x > 11.5  # above the detection threshold's reach, residuals are plain N(0, 1)
    assert np.std(resid[big]) == pytest.approx(1.0, abs=0.05)
    # a wrong relation would be caught: the true density beats a shifted one on these samples
    assert np.mean(model.log_prob(x, y)) > np.mean(model.log_prob(x, y - 0.05))


def test_mixture_is_the_weighted_sum():
    a, b = C.GalaxyModel(FID, 0.0), C.GalaxyModel(FID, 0.15)
    mix = C.GalaxyMixture([a, b], counts=[2, 1])
    x, y = np.array([11.0, 12.5]), np.array([8.9, 10.6])
    wa, wb = 2 * a.expected_galaxies, b.expected_galaxies
    manual = np.log((wa * np.exp(a.log_prob(x, y)) + wb * np.exp(b.log_prob(x, y))) / (wa + wb))
    np.testing.assert_allclose(mix.log_prob(x, y), manual, rtol=1e-10)
    with pytest.raises(ValueError, match="models"):
        C.GalaxyMixture([])
    with pytest.raises(ValueError, match="counts"):
        C.GalaxyMixture([a, b], counts=[1.0])


def test_model_checks_parameters():
    with pytest.raises(ValueError, match="A_SN1"):
        C.GalaxyModel([0.3, 0.8, 10.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="redshift"):
        C.GalaxyModel(FID, redshift=-1.0)
    with pytest.raises(ValueError, match="log_mtot"):
        C.GalaxyModel(FID).log_prob([np.nan], [9.0])


# --------------------------------------------------------------------------- files
def test_seeds_are_reproducible():
    a, b = C.simulate_catalog(seed=[1, 2, 33]), C.simulate_catalog(seed=[1, 2, 33])
    c = C.simulate_catalog(seed=[1, 3, 33])
    assert np.array_equal(a["total_mass"], b["total_mass"]) and np.array_equal(a["position"], b["position"])
    assert not np.array_equal(a["total_mass"][:100], c["total_mass"][:100])


def test_write_and_load_subfind_layout(tmp_path):
    params = np.array([FID, [0.3, 0.8, 2.0, 1.0, 1.0, 1.0]])
    paths = C.write_catalogs(tmp_path, params, snapshots=[32, 33], seed=5)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "CV_0/groups_032.hdf5", "CV_0/groups_033.hdf5", "CV_1/groups_032.hdf5", "CV_1/groups_033.hdf5"]
    # the CAMELS reader sees the Subfind layout
    cat = data.load_subfind(paths[1])
    direct = C.GalaxyModel(FID, 0.0).sample(np.random.default_rng([5, zlib.crc32(b"CV"), 0, 33]))
    np.testing.assert_allclose(cat["total_mass"], direct["total_mass"], rtol=1e-12)
    np.testing.assert_allclose(cat["stellar_mass"], direct["stellar_mass"], rtol=1e-12)
    assert cat["redshift"] == 0.0 and cat["box_size"] == pytest.approx(25.0)
    assert np.all((cat["position"] >= 0) & (cat["position"] < 25.0))
    with h5py.File(paths[2], "r") as f:
        np.testing.assert_allclose(f["Header"].attrs["cosmonb_params"], params[1])
        assert f["Subhalo/SubhaloMassType"].shape[1] == 6
    # load_galaxies: every subhalo is either a galaxy or counted as left out
    gal = C.load_galaxies(tmp_path, snapshots=[32, 33], verbose=False)
    n_gal = sum(int((data.load_subfind(p)["stellar_mass"] > 0).sum()) for p in paths)
    assert len(gal["log_mtot"]) == n_gal
    assert gal["n_subhalos"] == n_gal + gal["n_dropped"]
    assert set(np.unique(gal["snapshot"])) == {32, 33}
    np.testing.assert_allclose(np.unique(gal["redshift"]), [0.0, 0.05])
    np.testing.assert_allclose(gal["params"][gal["sim"] == 1][0], params[1])
    # files are kept unless overwrite
    mtime = paths[0].stat().st_mtime_ns
    C.write_catalogs(tmp_path, params, snapshots=[32, 33], seed=5)
    assert paths[0].stat().st_mtime_ns == mtime
    # a stellar-mass cut is reported, not silent
    cut = C.load_galaxies(tmp_path, snapshots=[33], min_stellar_mass=1e9, verbose=False)
    full = C.load_galaxies(tmp_path, snapshots=[33], verbose=False)
    assert np.all(cut["log_mstar"] >= 9.0)
    assert cut["n_dropped"] - full["n_dropped"] == len(full["log_mstar"]) - len(cut["log_mstar"]) > 0


def test_cv_catalogs_are_fiducial_boxes_of_the_sims_size(tmp_path):
    assert C.BOX_SIZE == sims.BOX_SIZE == C.GalaxyModel(FID).box_size
    paths = C.write_cv_catalogs(tmp_path / "cv", 2, snapshots=[33], seed=3)
    direct = C.write_catalogs(tmp_path / "direct", np.tile(FID, (2, 1)), snapshots=[33], seed=3)
    for a, b in zip(paths, direct):
        with h5py.File(a, "r") as f:
            np.testing.assert_allclose(f["Header"].attrs["cosmonb_params"], FID)
        np.testing.assert_array_equal(data.load_subfind(a)["stellar_mass"], data.load_subfind(b)["stellar_mass"])


def test_load_galaxies_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        C.load_galaxies(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="CV_"):
        C.load_galaxies(tmp_path)
    (tmp_path / "CV_0").mkdir()
    data.write_subfind(tmp_path / "CV_0" / "groups_033.hdf5", [0.0, 0.0], [1e11, 1e12],
                       [[1, 1, 1], [2, 2, 2]], redshift=0.0)
    with pytest.raises(ValueError, match="no galaxies"):
        C.load_galaxies(tmp_path, snapshots=[33], verbose=False)
    with pytest.raises(FileNotFoundError, match="snapshot 32"):
        C.load_galaxies(tmp_path, snapshots=[32], verbose=False)
    with pytest.raises(ValueError, match="snapshots"):
        C.load_galaxies(tmp_path, snapshots=[12], verbose=False)


def test_log_masses_refuses_bad_rows():
    x, y = C.log_masses([1e12, 1e11], [1e10, 1e9])
    np.testing.assert_allclose(x, [12.0, 11.0])
    with pytest.raises(ValueError, match="empty"):
        C.log_masses([], [])
    with pytest.raises(ValueError, match=r"stellar_mass.*2 of 3 values are <= 0"):
        C.log_masses([1e12, 1e11, 1e10], [1e9, 0.0, -1.0])
    with pytest.raises(ValueError, match=r"total_mass.*NaN"):
        C.log_masses([np.nan, 1e11], [1e9, 1e9])
    with pytest.raises(ValueError, match="same length"):
        C.log_masses([1e12, 1e11], [1e9])


def test_inject_outliers():
    rng = np.random.default_rng(0)
    x, y = rng.normal(11.5, 0.5, 500), rng.normal(9.5, 0.5, 500)
    x2, y2, bad = C.inject_outliers(x, y, 25, shift=(0.5, 1.0), seed=1)
    assert len(x2) == len(x) and bad.sum() == 25
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2[~bad], y[~bad])
    d = np.abs(y2[bad] - y[bad])
    assert np.all((d >= 0.5) & (d <= 1.0))
    assert (y2[bad] > y[bad]).any() and (y2[bad] < y[bad]).any()
    with pytest.raises(ValueError, match="n_outliers"):
        C.inject_outliers(x, y, 0)
    with pytest.raises(ValueError, match="empty"):
        C.inject_outliers([], [], 1)
    with pytest.raises(ValueError, match="log_mstar"):
        C.inject_outliers(x, y[:10], 3)


# --------------------------------------------------------------------------- splits
def test_split_simulations_never_overlaps_and_keeps_every_simulation():
    """Issue 8: split_simulations(range(10), 0.9, 0.9) put simulation 1 in train and test."""
    assert C.split_simulations(range(27)) == {k: list(v) for k, v in C.CV_SPLIT.items()}
    rng = np.random.default_rng(0)
    for n in range(3, 60):
        ids = rng.choice(1000, size=n, replace=False)
        for val, test in [(0.11, 0.15), (0.01, 0.01), (0.3, 0.3), (0.49, 0.49), (0.05, 0.9),
                          tuple(rng.uniform(0.01, 0.6, 2))]:
            try:
                split = C.split_simulations(ids, val, test)
            except ValueError as err:  # allowed only when the fractions leave nothing to train on
                assert "leave none to train on" in str(err) or "sum below 1" in str(err)
                assert val + test >= 1 or (val + test) * n > n - 2
                continue
            parts = [set(split[k]) for k in ("train", "val", "test")]
            assert all(parts), (n, val, test, split)
            assert sum(map(len, parts)) == n and set.union(*parts) == set(ids.tolist())


@pytest.mark.parametrize("kwargs, match", [
    ({"val_fraction": 0.9, "test_fraction": 0.9}, r"val_fraction, test_fraction: expected a sum below 1"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, r"expected a sum below 1"),
    ({"val_fraction": 0.0}, r"val_fraction: expected a fraction in \(0, 1\)"),
    ({"test_fraction": 1.0}, r"test_fraction: expected a fraction in \(0, 1\)"),
    ({"test_fraction": -0.1}, r"test_fraction: expected a fraction in \(0, 1\)"),
    ({"val_fraction": np.nan}, r"val_fraction: expected finite values"),
])
def test_split_simulations_checks_its_fractions(kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.split_simulations(range(10), **kwargs)


def test_split_simulations_checks_its_ids():
    with pytest.raises(ValueError, match=r"simulations: expected simulation ids"):
        C.split_simulations([0, 1.5, 2, 3])
    with pytest.raises(ValueError, match=r"simulations: 4 simulations leave none to train on"):
        C.split_simulations(range(4), 0.4, 0.4)
