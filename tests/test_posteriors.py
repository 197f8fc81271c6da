"""The Posterior interface (GridPosterior, SamplePosterior, GaussianPosterior) and the calibration
diagnostics (HPD coverage, SBC, TARP) on a Gaussian toy whose exact posterior is known."""
import numpy as np
import pytest

from cosmonb.inference import (GaussianPosterior, GridPosterior, Posterior, SamplePosterior, fit_temperature,
                               hpd_coverage, sample_grid_posterior, sbc_ranks, sbc_uniformity, tarp)

N_PAIRS = 200


def toy(width_factor, n=N_PAIRS, seed=0):
    """theta ~ N(0, I_2), x = theta + N(0, I_2): the exact posterior is N(x / 2, I / 2).
    ``width_factor`` < 1 makes it overconfident, > 1 underconfident."""
    rng = np.random.default_rng(seed)
    truths = rng.normal(size=(n, 2))
    xs = truths + rng.normal(size=(n, 2))
    return [GaussianPosterior(x / 2, width_factor**2 * np.eye(2) / 2) for x in xs], truths


def grid_gaussian(mean=(0.0, 0.0), std=(1.0, 0.5)):
    x = np.linspace(-6, 6, 241)
    lp = -0.5 * ((x[:, None] - mean[0]) ** 2 / std[0] ** 2 + (x[None, :] - mean[1]) ** 2 / std[1] ** 2)
    return GridPosterior(x, x, lp)


def test_every_posterior_implements_the_interface():
    rng = np.random.default_rng(1)
    posts = [grid_gaussian(), SamplePosterior(rng.normal(size=(5000, 2)) * [1.0, 0.5]),
             GaussianPosterior([0.0, 0.0], np.diag([1.0, 0.25]))]
    for post in posts:
        assert isinstance(post, Posterior) and post.dim == 2
        draws = post.sample(4000, seed=3)
        assert draws.shape == (4000, 2)
        np.testing.assert_array_equal(draws, post.sample(4000, seed=3))  # seeded
        np.testing.assert_allclose(draws.std(0), [1.0, 0.5], rtol=0.06)
        np.testing.assert_allclose(post.std, [1.0, 0.5], rtol=0.05)
        assert post.cov.shape == (2, 2) and post.mean.shape == (2,)
        assert post.credible_mass([0.0, 0.0]) < 0.1 and post.credible_mass([3.0, 1.5]) > 0.9
        assert post.contains([0.1, 0.0], 0.68) and not post.contains([3.0, 1.5], 0.95)
    with pytest.raises(NotImplementedError):
        posts[1].log_prob([0.0, 0.0])


def test_log_prob_of_grid_and_gaussian_agree_and_normalise():
    grid, gauss = grid_gaussian(), GaussianPosterior([0.0, 0.0], np.diag([1.0, 0.25]))
    pts = np.array([[0.0, 0.0], [0.5, -0.3], [1.2, 0.4]])
    np.testing.assert_allclose(grid.log_prob(pts), gauss.log_prob(pts), atol=5e-3)
    assert grid.log_prob([10.0, 0.0]) == -np.inf  # off the grid
    assert gauss.log_prob([0.0, 0.0]) == pytest.approx(-np.log(2 * np.pi * 0.5))


def test_grid_sample_is_sample_grid_posterior():
    post = grid_gaussian(mean=(0.3, -0.2))
    np.testing.assert_array_equal(post.sample(500, seed=np.random.default_rng(4)),
                                  sample_grid_posterior(post, 500, np.random.default_rng(4)))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="cov"):
        GaussianPosterior([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="theta"):
        GaussianPosterior([0.0, 0.0], np.eye(2)).log_prob([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="truths"):
        hpd_coverage(toy(1.0, n=10)[0], np.zeros((9, 2)))
    with pytest.raises(ValueError, match="seed"):
        grid_gaussian().sample(3, seed=-1)


def test_calibrated_toy_passes_coverage_sbc_and_tarp():
    posts, truths = toy(1.0)
    cov = hpd_coverage(posts, truths)
    assert np.all(np.abs(cov["coverage"] - cov["levels"]) < 3 * cov["stderr"])
    ranks = sbc_ranks(posts, truths, n_samples=99, seed=0)
    assert ranks.shape == (N_PAIRS, 2) and np.all(sbc_uniformity(ranks, 99) > 0.01)
    res = tarp(posts, truths, n_samples=500)
    assert res["ks_pvalue"] > 0.01 and abs(res["atc"]) < 0.05
    assert np.max(np.abs(res["ecp"] - res["alpha"])) < 0.12


def test_overconfident_toy_fails_coverage_sbc_and_tarp():
    posts, truths = toy(0.5)
    cov = hpd_coverage(posts, truths)
    assert np.all(cov["coverage"] < cov["levels"] - 3 * cov["stderr"])  # too few truths inside
    assert np.all(sbc_uniformity(sbc_ranks(posts, truths, n_samples=99), 99) < 0.01)
    assert tarp(posts, truths, n_samples=500)["ks_pvalue"] < 0.01


def test_underconfident_toy_covers_too_much():
    posts, truths = toy(2.0)
    cov = hpd_coverage(posts, truths, levels=(0.5, 0.68))
    assert np.all(cov["coverage"] > cov["levels"] + 3 * cov["stderr"])


def grid_toy(width_factor, n=N_PAIRS, seed=0):
    """The toy's posteriors on a grid, each std scaled by ``width_factor``."""
    posts, truths = toy(width_factor, n, seed)
    x = np.linspace(-5, 5, 81)
    return [GridPosterior(x, x, -0.5 * ((x[:, None] - p.mean[0]) ** 2 + (x[None, :] - p.mean[1]) ** 2)
                          / p.cov[0, 0]) for p in posts], truths


def test_tempering_widens_a_grid_posterior_by_sqrt_t_and_keeps_its_mode():
    post = grid_gaussian(mean=(0.3, -0.2), std=(0.4, 0.2))
    hot = post.tempered(9.0)
    np.testing.assert_allclose(hot.std, 3 * post.std, rtol=0.02)
    np.testing.assert_allclose(hot.map_estimate, post.map_estimate)
    for bad in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="temperature"):
            post.tempered(bad)


def test_fit_temperature_undoes_overconfidence_and_leaves_calibrated_posteriors_alone():
    # posteriors half as wide as exact need T = 4: seeds 0-9 give 3.55-3.98 on this grid of temperatures (bounds
    # 2.5-6.5), and the calibrated toy 1.0, the grid's lower end (bound 1.8); 200 pairs each, binomial error 0.033
    temps = np.geomspace(1.0, 100.0, 41)
    for seed in range(2):
        narrow, truths = grid_toy(0.5, seed=seed)
        fit = fit_temperature(narrow, truths, temperatures=temps)
        assert 2.5 < fit["temperature"] < 6.5 and fit["coverage"].shape == (41, 2)
        assert fit_temperature(*grid_toy(1.0, seed=seed), temperatures=temps)["temperature"] < 1.8
    # the shortcut (tempering keeps the order of the cells) equals tempering each posterior
    hot = [p.tempered(fit["temperature"]) for p in narrow]
    k = int(np.argmin(np.abs(temps - fit["temperature"])))
    np.testing.assert_allclose(fit["coverage"][k], hpd_coverage(hot, truths, (0.68, 0.95))["coverage"])
    with pytest.raises(ValueError, match="GridPosteriors"):
        fit_temperature(toy(0.5)[0], truths)
