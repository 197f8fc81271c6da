"""cosmonb.inference.methods: the methods of notebook 06 and the scorer of its table.

The scorer is checked on posteriors whose answers are known (exact Gaussian posteriors of
x = theta + noise, too narrow, shifted); each method on a few small maps, with small
trainings, for the contract (a Posterior over the prior, clear errors, a skip reason
when a checkpoint is missing) and for calibration where a small run can show it.
"""
import numpy as np
import pytest

from cosmonb import sims
from cosmonb.inference import methods as M
from cosmonb.posteriors import GaussianPosterior, GridPosterior, SamplePosterior


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(n=300, seed=0, shrink=1.0, shift=0.0):
    """Exact posteriors of x ~ N(theta, s^2 I) under a Gaussian prior theta ~ N(m, tau^2 I), and variants.

    Conjugate, so the posterior N((tau^2 x + s^2 m) / (tau^2 + s^2), tau^2 s^2 / (tau^2 + s^2) I) is exact
    everywhere. (A uniform prior with an untruncated N(x, s^2) "posterior" is not: near the prior's
    edges it is miscalibrated, and TARP saw it, p < 0.01 in 14 of 20 runs.)
    """
    rng = np.random.default_rng([seed, 1234])
    m, tau, s = np.array([0.3, 0.8]), np.array([0.1, 0.1]), np.array([0.02, 0.04])
    truths = m + tau * rng.normal(size=(n, 2))
    xs = truths + s * rng.normal(size=(n, 2))
    var = tau ** 2 * s ** 2 / (tau ** 2 + s ** 2)
    means = (tau ** 2 * xs + s ** 2 * m) / (tau ** 2 + s ** 2)
    exact = [GaussianPosterior(mu, np.diag(var)) for mu in means]
    other = [GaussianPosterior(mu + shift * np.sqrt(var), np.diag(shrink ** 2 * var)) for mu in means]
    return truths, exact, other


def test_exact_posteriors_score_as_calibrated_and_ratio_one():
    truths, exact, _ = _toy()
    row = M.score_methods({"exact": exact}, truths, exact)["exact"]
    # toy seeds 0-9 (no torch in this path, so threads and ATEN_CPU_CAPABILITY do not matter): TARP p
    # 0.14-0.94, SBC p >= 0.027, coverage within 1.98 standard errors of nominal; the bounds below are
    # 0.01 (TARP_MIN_PVALUE), 0.001 and 3
    assert row["rmse_ratio"] == 1.0 and row["width_ratio"] == 1.0
    se68, se95 = row["coverage_stderr"]
    assert abs(row["coverage_68"] - 0.68) < 3 * se68
    assert abs(row["coverage_95"] - 0.95) < 3 * se95
    assert row["tarp_ok"] and min(row["sbc_pvalue"]) > 0.001
    assert row["n_maps"] == len(truths)


def test_overconfident_and_biased_posteriors_are_caught():
    truths, exact, narrow = _toy(shrink=0.5)
    _, _, biased = _toy(shift=2.0)
    table = M.score_methods({"narrow": narrow, "biased": biased}, truths, exact,
                            seconds_per_map={"narrow": 0.5}, simulations={"narrow": 100})
    narrow_row, biased_row = table["narrow"], table["biased"]
    assert narrow_row["coverage_68"] < 0.45 and narrow_row["coverage_95"] < 0.75  # nominal 0.68, 0.95
    assert narrow_row["width_ratio"] == pytest.approx(0.25, rel=1e-6)  # area ~ sqrt(det cov)
    assert narrow_row["rmse_ratio"] == pytest.approx(1.0)  # the same means
    assert narrow_row["seconds_per_map"] == 0.5 and narrow_row["simulations"] == 100
    assert "seconds_per_map" not in biased_row
    assert biased_row["rmse_ratio"] > 1.5 and biased_row["coverage_68"] < 0.4
    assert not biased_row["tarp_ok"]


def test_score_methods_rejects_mismatched_inputs():
    truths, exact, _ = _toy(n=20)
    with pytest.raises(ValueError, match="expected 20 posteriors"):
        M.score_methods({"a": exact[:10]}, truths, exact)
    with pytest.raises(ValueError, match="Posterior objects"):
        M.score_methods({"a": [None] * 20}, truths, exact)
    with pytest.raises(ValueError, match="truths"):
        M.score_methods({"a": exact}, truths[:, 0], exact)


def test_hpd_area_agrees_across_posterior_types():
    x = np.linspace(-5, 5, 201)
    grid = GridPosterior(x, 2 * x, -0.5 * (x[:, None] ** 2 + x[None, :] ** 2))  # std (1, 2)
    gauss = GaussianPosterior([0, 0], np.diag([1.0, 4.0]))
    samples = SamplePosterior(gauss.sample(4000, seed=1))
    a = M.hpd_area(gauss)
    assert M.hpd_area(grid) == pytest.approx(a, rel=0.03)
    assert M.hpd_area(samples) == pytest.approx(a, rel=0.15)
    with pytest.raises(ValueError, match="mass"):
        M.hpd_area(gauss, 1.2)


def test_truth_beyond_a_grid_lies_in_no_region():
    x = np.linspace(0.2, 0.4, 21)
    post = GridPosterior(x, x + 0.5, -0.5 * ((x[:, None] - 0.3) ** 2 + (x[None, :] - 0.3) ** 2) / 0.02 ** 2)
    assert M.truth_credible_mass(post, [0.3, 0.8]) < 0.05
    assert M.truth_credible_mass(post, [0.45, 0.8]) == 1.0  # nearest cell would be an edge cell
    assert post.credible_mass([0.45, 0.8]) < 1.0


def test_add_noise_keeps_the_mean_and_rejects_bad_levels():
    maps = sims.simulate([sims.FIDUCIAL], "Mcdm", n_pix=32, seed=1)
    noisy = M.add_noise(maps, 0.3, seed=2)
    assert noisy.shape == maps.shape and np.all(noisy > 0)
    assert noisy.mean() == pytest.approx(maps.mean(), rel=0.05)
    assert np.array_equal(noisy, M.add_noise(maps, 0.3, seed=2))
    with pytest.raises(ValueError, match="level"):
        M.add_noise(maps, -1.0)


def test_exact_and_power_spectrum_methods_on_small_maps():
    params = M.held_out_params(12, seed=5)
    maps = M.simulate_maps(params, "Mcdm", 16, seed=5)
    exact = M.ExactMethod(n_pix=16, n_grid=40)
    ps = M.PowerSpectrumMethod(n_pix=16, n_sims=600, n_fid=200, n_grid=40)
    e_posts, p_posts = exact.posteriors(maps), ps.posteriors(maps)
    assert len(exact.seconds) == 12 and ps.simulations == 800
    assert all(isinstance(p, GridPosterior) for p in e_posts + p_posts)
    # the emulated mean of ln P(k) matches simulations at the fiducial point within their scatter
    fid = ps.summaries(sims.simulate(np.tile(sims.FIDUCIAL, (300, 1)), "Mcdm", n_pix=16, seed=99)[:, 0])
    err = (ps.mean(sims.FIDUCIAL[:2])[0] - fid.mean(0)) / (fid.std(0) / np.sqrt(len(fid)))
    assert np.all(np.abs(err) < 5), err
    row = M.score_methods({"power_spectrum": p_posts}, params, e_posts)["power_spectrum"]
    # P(k) of the overdensity drops the mean density: never better than exact, in expectation clearly wider
    assert row["width_ratio"] > 1.5
    with pytest.raises(ValueError, match="expected one map of shape"):
        ps.posterior(maps[:2])
    with pytest.raises(ValueError, match="positive"):
        exact.posterior(-maps[0])


def test_fit_npe_learns_a_simple_posterior():
    rng = np.random.default_rng(0)
    theta = rng.uniform(M.PRIOR.low, M.PRIOR.high, size=(2000, 2))
    x = theta + np.array([0.02, 0.03]) * rng.normal(size=theta.shape)
    log_q = M.fit_npe(theta, x, seed=0, max_epochs=200)
    post = M.prior_grid_posterior(lambda g: log_q(g, [0.3, 0.8]), 50)
    assert np.all(np.abs(post.mean - [0.3, 0.8]) < [0.015, 0.02])
    assert np.all(post.std < [0.05, 0.07]) and np.all(post.std > [0.008, 0.012])


def test_imnn_methods_share_simulations_and_return_grid_posteriors():
    both = M.IMNNMethods(n_sims=300, n_grid=30, epochs=30, seed=3)
    assert both.delfi.simulations == both.npe.simulations == 300
    m = M.simulate_maps(M.held_out_params(2, seed=8), "Mcdm", 32, seed=8)
    for method in (both.delfi, both.npe):
        post = method.posterior(m[0])
        assert isinstance(post, GridPosterior) and post.x.size == 30
        assert post.x[0] == pytest.approx(0.1) and post.y[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="32, 32"):
        both.delfi.posterior(m[0, :, :16, :16])


def test_cnn_method_returns_gaussian_posteriors():
    cnn = M.CNNMethod(n_pix=16, n_sims=200, epochs=2, width=4)
    post = cnn.posterior(M.simulate_maps(M.held_out_params(1), "Mcdm", 16)[0])
    assert isinstance(post, GaussianPosterior) and post.mean.shape == (2,) and np.all(post.std > 0)
    assert cnn.simulations == 200 and cnn.train_seconds > 0


@pytest.mark.parametrize("cls", [M.HIGlowMethod, M.DDPMMethod, M.VDVAENPEMethod])
def test_a_missing_checkpoint_is_a_clear_skip_reason(cls, tmp_path):
    with pytest.raises(M.MethodUnavailable, match="did not load") as err:
        cls(directory=tmp_path)
    assert str(tmp_path) in str(err.value)


def test_generative_methods_on_tiny_checkpoints(tmp_path):
    from cosmonb.recipes.diffusion import train_ddpm_recipe
    from cosmonb.recipes.vdvae import train_vdvae_recipe

    quiet = dict(log=lambda *a: None)
    train_ddpm_recipe("quick", out=tmp_path / "ddpm", max_steps=2, **quiet)
    train_vdvae_recipe("quick", out=tmp_path / "vdvae", max_steps=1, **quiet)
    ddpm = M.DDPMMethod(n_grid=5, directory=tmp_path / "ddpm")
    params = M.held_out_params(2, seed=4)
    post = ddpm.posterior(M.simulate_maps(params, "Mcdm", ddpm.n_pix)[0])
    assert isinstance(post, GridPosterior) and post.x[0] == pytest.approx(0.1) and post.x[-1] == pytest.approx(0.5)
    assert ddpm.reference == "exact_ddpm" and ddpm.simulations > 0
    vae = M.VDVAENPEMethod(n_sims=300, n_components=4, n_grid=20, directory=tmp_path / "vdvae")
    gas = M.simulate_maps(params, vae.fields, vae.n_pix)
    post = vae.posterior(gas[0])
    assert isinstance(post, GridPosterior) and vae.reference == "exact_marginalised_gas"
    with pytest.raises(ValueError, match="expected one map"):
        vae.posterior(gas[0, :2])


def test_higlow_method_on_the_shipped_checkpoint():
    glow = M.HIGlowMethod(n_grid=8)
    hi = M.simulate_maps(M.held_out_params(1, seed=6), "HI", glow.n_pix, seed=6)
    post = glow.posterior(hi[0])
    assert isinstance(post, GridPosterior) and post.x.size == 8
    assert glow.simulations > 1000 and glow.reference == "exact_marginalised_hi"


def test_simulate_outside_prior_only_when_asked():
    p = np.array([[0.3, 0.8, 8.0, 1.0, 4.0, 1.0]])
    with pytest.raises(ValueError, match="A_SN1"):
        sims.simulate(p, "HI", n_pix=16)
    beyond = sims.simulate(p, "HI", n_pix=16, outside_prior=True)
    inside = sims.simulate(np.array([[0.3, 0.8, 4.0, 1.0, 2.0, 1.0]]), "HI", n_pix=16)
    assert beyond.shape == inside.shape and np.all(beyond > 0) and not np.allclose(beyond, inside)
    with pytest.raises(ValueError, match="positive feedback"):
        sims.simulate(np.array([[0.3, 0.8, -1.0, 1.0, 1.0, 1.0]]), "HI", n_pix=16, outside_prior=True)
    with pytest.raises(ValueError, match="Omega_m"):  # the cosmology stays inside the prior
        sims.simulate(np.array([[0.7, 0.8, 1.0, 1.0, 1.0, 1.0]]), "HI", n_pix=16, outside_prior=True)
    # the exact likelihood itself stays on the prior: the marginalised posterior of such a map is misspecified
    with pytest.raises(ValueError, match="A_SN1"):
        sims.multifield_log_likelihood(beyond.astype(float), p, ("HI",))


def test_as_grid_tabulates_every_kind_of_posterior():
    like = M.prior_grid_posterior(lambda g: np.zeros(len(g)), 60)
    gauss = GaussianPosterior([0.3, 0.8], np.diag([0.02, 0.03]) ** 2)
    for post in (gauss, SamplePosterior(gauss.sample(3000, seed=0))):
        g = M.as_grid(post, like)
        assert np.allclose(g.mean, [0.3, 0.8], atol=0.005) and np.allclose(g.std, [0.02, 0.03], rtol=0.15)
