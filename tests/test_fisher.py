"""Tests of cosmonb.fisher: analytic Fisher matrices against Monte Carlo, brute force and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from cosmonb import fisher as fi
from cosmonb import sims
from cosmonb import inference
from cosmonb.sims import PowerLawSimulator


# --------------------------------------------------------------------------- n normal draws
def test_normal_fisher_matches_monte_carlo_score_covariance():
    rng = np.random.default_rng(0)
    n, mu, sigma = 20, 1.0, 2.0
    x = rng.normal(mu, sigma, size=(20000, n))
    score = np.stack([(x - mu).sum(1) / sigma**2,
                      -n / sigma + ((x - mu) ** 2).sum(1) / sigma**3], 1)
    mc = fi.monte_carlo_fisher(score)
    exact = fi.normal_fisher(n, mu, sigma)
    assert np.allclose(np.diag(mc), np.diag(exact), rtol=0.04)
    assert abs(mc[0, 1]) < 0.05 * np.sqrt(exact[0, 0] * exact[1, 1])


def test_cramer_rao_bound_reached_by_mle_of_normal_draws():
    rng = np.random.default_rng(1)
    n, sigma = 200, 1.5
    x = rng.normal(0.0, sigma, size=(5000, n))
    mle = np.stack([x.mean(1), x.std(1)], 1)  # the MLEs of mu and sigma
    bound = fi.cramer_rao(fi.normal_fisher(n, 0.0, sigma))
    assert np.allclose(mle.std(0), bound["marginal_std"], rtol=0.05)
    assert np.allclose(bound["marginal_std"], [sigma / np.sqrt(n), sigma / np.sqrt(2 * n)])


def test_cramer_rao_marginal_exceeds_conditional_for_correlated_fisher():
    cr = fi.cramer_rao([[2.0, 1.5], [1.5, 2.0]])
    assert np.all(cr["marginal_std"] > cr["conditional_std"])
    assert cr["correlation"][0, 1] < 0


# --------------------------------------------------------------------------- power-law GRF
def test_power_law_modes_cover_every_nonzero_mode():
    k, counts = fi.power_law_modes(16, 25.0)
    assert counts.sum() == 16**2 - 1
    assert np.isclose(k[0], 2 * np.pi / 25.0)


def test_power_law_fisher_matches_monte_carlo_of_exact_score():
    n, a, b = 16, 1.0, 0.5
    maps = PowerLawSimulator(n)(np.tile([a, b], (3000, 1)), seed=5)
    score = fi.power_law_score(maps, a, b)
    assert np.all(np.abs(score.mean(0)) < 4 * score.std(0) / np.sqrt(len(score)))
    mc = fi.monte_carlo_fisher(score)
    exact = fi.power_law_fisher(a, b, n)
    assert np.allclose(mc, exact, rtol=0.08)
    assert abs(np.linalg.det(mc) / np.linalg.det(exact) - 1) < 0.12


def test_power_law_likelihood_matches_brute_force_gaussian():
    n, box, a, b = 4, 25.0, 0.7, 0.9
    field = PowerLawSimulator(n, box)([[a, b]], seed=2)[0, 0].astype(float)
    k_unique, inverse, _ = sims.fourier_grid(n, box)
    s = np.where(inverse == 0, 0.0, n**2 * a * np.where(inverse == 0, 1.0, k_unique[inverse]) ** -b / box**2)
    # circulant pixel covariance C_xy = 1/n^2 sum_k S_k exp(i k.(x - y)); DC eigenvalue 0
    cov = np.real(np.fft.ifft2(s)).ravel()
    idx = np.arange(n * n)
    dx = (idx[:, None] // n - idx[None, :] // n) % n
    dy = (idx[:, None] % n - idx[None, :] % n) % n
    c = cov.reshape(n, n)[dx, dy]
    eig, vec = np.linalg.eigh(c)
    keep = eig > 1e-10 * eig.max()
    assert keep.sum() == n * n - 1
    proj = vec[:, keep].T @ field.ravel()
    brute = -0.5 * (proj**2 / eig[keep]).sum() - 0.5 * np.log(eig[keep]).sum() - 0.5 * keep.sum() * np.log(2 * np.pi)
    assert np.isclose(fi.power_law_log_likelihood(field, a, b, box), brute, rtol=1e-8)


def test_power_law_score_is_gradient_of_log_likelihood():
    field = PowerLawSimulator(16)([[1.0, 0.5]], seed=3)[0, 0]
    h = 1e-5
    ll = lambda a, b: float(fi.power_law_log_likelihood(field, a, b))
    fd = [(ll(0.9 + h, 0.6) - ll(0.9 - h, 0.6)) / (2 * h), (ll(0.9, 0.6 + h) - ll(0.9, 0.6 - h)) / (2 * h)]
    assert np.allclose(fi.power_law_score(field, 0.9, 0.6), fd, rtol=1e-5, atol=1e-4)


def test_power_law_posterior_covers_truth_and_is_near_fisher_width():
    theta = np.array([1.0, 0.5])
    field = PowerLawSimulator(32)([theta], seed=11)[0, 0]
    post = inference.power_law_posterior(field, (0.5, 1.6), (0.0, 1.0), n_grid=120)
    cr = fi.cramer_rao(fi.power_law_fisher(*theta, n_pix=32))
    assert post.contains(theta, 0.99)
    assert np.allclose(post.std, cr["marginal_std"], rtol=0.3)


# --------------------------------------------------------------------------- Gaussian summaries
def _linear_gaussian_sets(rng, n_s=2000, n_d=200, delta=0.1):
    """Summaries t = M theta + noise with noise covariance L L^T: F = M^T C^-1 M exactly."""
    m = np.array([[2.0, 0.5], [0.3, 1.0]])
    chol = np.array([[1.0, 0.0], [0.4, 0.5]])
    theta = np.array([0.2, -0.1])
    fid = theta @ m.T + rng.normal(size=(n_s, 2)) @ chol.T
    noise = rng.normal(size=(n_d, 2)) @ chol.T
    steps = np.array([delta, delta])
    plus = np.stack([(theta + steps[i] * np.eye(2)[i]) @ m.T + noise for i in range(2)])
    minus = np.stack([(theta - steps[i] * np.eye(2)[i]) @ m.T + noise for i in range(2)])
    return fid, plus, minus, steps, theta, m, chol @ chol.T


def test_summary_statistics_recovers_linear_gaussian_fisher():
    fid, plus, minus, steps, theta, m, cov = _linear_gaussian_sets(np.random.default_rng(3))
    stats = fi.summary_statistics(fid, plus, minus, steps, theta)
    assert np.allclose(stats.dmu_dtheta, m, atol=1e-12)  # seed matching: the noise cancels exactly
    exact = m.T @ np.linalg.solve(cov, m)
    assert np.allclose(stats.fisher, exact, rtol=0.05, atol=0.1)


def test_score_compression_is_unbiased_with_fisher_covariance():
    rng = np.random.default_rng(4)
    fid, plus, minus, steps, theta, m, cov = _linear_gaussian_sets(rng)
    stats = fi.summary_statistics(fid, plus, minus, steps, theta)
    truth = np.array([0.5, 0.3])
    t = truth @ m.T + rng.normal(size=(4000, 2)) @ np.linalg.cholesky(cov).T
    est = stats.estimate(t)
    assert np.allclose(est.mean(0), truth, atol=0.03)
    assert np.allclose(np.cov(est, rowvar=False), np.linalg.inv(m.T @ np.linalg.solve(cov, m)), rtol=0.1, atol=0.01)
    # round trip through a checkpoint-style dict
    again = fi.SummaryStatistics.from_dict(stats.to_dict())
    assert np.allclose(again.estimate(t[:5]), est[:5])


# --------------------------------------------------------------------------- bad input
def test_bad_finite_difference_step_raises():
    fid, plus, minus, steps, theta, *_ = _linear_gaussian_sets(np.random.default_rng(5))
    for bad in ([0.0, 0.1], [-0.1, 0.1]):
        with pytest.raises(ValueError, match="delta: finite-difference steps must be > 0"):
            fi.summary_statistics(fid, plus, minus, bad, theta)


def test_too_few_simulations_for_covariance_raises():
    fid, plus, minus, steps, theta, *_ = _linear_gaussian_sets(np.random.default_rng(6))
    with pytest.raises(ValueError, match="too few to estimate a 2 x 2 covariance; use at least 4"):
        fi.summary_statistics(fid[:3], plus, minus, steps, theta)
    with pytest.raises(ValueError, match="too few"):
        fi.monte_carlo_fisher(fid[:2])


def test_singular_covariance_raises():
    fid, plus, minus, steps, theta, *_ = _linear_gaussian_sets(np.random.default_rng(7))
    dup = np.stack([fid[:, 0], 2 * fid[:, 0]], 1)  # second summary a copy of the first
    with pytest.raises(ValueError, match="covariance is singular.*drop or combine"):
        fi.summary_statistics(dup, plus, minus, steps, theta)
    with pytest.raises(ValueError, match="singular"):
        fi.gaussian_fisher(np.eye(2), [[1.0, 1.0], [1.0, 1.0]])


def test_other_bad_inputs_raise():
    with pytest.raises(ValueError, match="sigma"):
        fi.normal_fisher(5, 0.0, -1.0)
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        fi.normal_fisher(0)
    with pytest.raises(ValueError, match="amplitude"):
        fi.power_law_fisher(-1.0, 0.5, 16)
    with pytest.raises(ValueError, match="fields"):
        fi.power_law_log_likelihood(np.zeros((3, 4, 5)), 1.0, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        fi.power_law_score(np.full((8, 8), np.nan), 1.0, 0.5)
