r"""Is a posterior calibrated? HPD coverage, simulation-based calibration ranks, and TARP.

Each diagnostic takes a set of (posterior, truth) pairs: truths drawn from the prior,
data simulated at each truth, one :class:`~cosmonb.posteriors.Posterior` per data set.

* **HPD coverage** (:func:`hpd_coverage`): the fraction of truths inside the c-credible
  highest-density region should be c, within the binomial error ``sqrt(c (1 - c) / N)``.
  It uses each posterior's ``credible_mass(truth)``, uniform on [0, 1] when calibrated.
* **SBC** (simulation-based calibration; Talts, Betancourt, Simpson, Vehtari & Gelman 2018,
  arXiv:1804.06788): the rank of each truth among L posterior draws, per parameter, is
  uniform on {0, ..., L} when calibrated (:func:`sbc_ranks`, :func:`sbc_uniformity`).
  A U-shape means overconfident, a hump underconfident, a slope biased.
* **TARP** (tests of accuracy with random points; Lemos, Coogan, Hezaveh & Perreault-Levasseur
  2023, ICML, arXiv:2302.03026): for a random reference point per pair, the fraction f of
  posterior draws closer to the reference than the truth is uniform when calibrated; the
  expected coverage ``ECP(alpha) = P(f < alpha)`` then lies on the diagonal
  (:func:`tarp`). It is sensitive to the joint distribution, not only the marginals.

Written here in a few lines rather than through ``sbi.diagnostics`` (``run_sbc``,
``run_tarp``), which take an sbi ``NeuralPosterior`` and observations rather than posterior
objects; the TARP estimator follows Algorithm 2 of the paper, as sbi's does.

Example:
    >>> rng = np.random.default_rng(0)
    >>> truths = rng.normal(size=(200, 2))
    >>> xs = truths + rng.normal(size=(200, 2))  # x = theta + noise, theta ~ N(0, 1)
    >>> posts = [GaussianPosterior(x / 2, np.eye(2) / 2) for x in xs]  # the exact posteriors
    >>> cov = hpd_coverage(posts, truths, levels=(0.68, 0.95))
    >>> bool(np.all(np.abs(cov["coverage"] - cov["levels"]) < 3 * cov["stderr"]))
    True
"""
from __future__ import annotations

import numpy as np
from scipy import stats as _scipy_stats

from .._checks import as_finite_array, check_size
from ..posteriors import GaussianPosterior, GridPosterior, Posterior  # noqa: F401  (the doctests)

__all__ = ["credible_masses", "fit_temperature", "hpd_coverage", "sbc_ranks", "sbc_uniformity", "tarp"]


def _pairs(posteriors, truths):
    posteriors = list(posteriors)
    if not posteriors or not all(isinstance(p, Posterior) for p in posteriors):
        raise ValueError("posteriors: expected a non-empty sequence of cosmonb Posterior objects")
    t = as_finite_array(truths, "truths")
    if t.ndim == 1:
        t = t[:, None]
    if t.shape != (len(posteriors), posteriors[0].dim):
        raise ValueError(f"truths: expected shape ({len(posteriors)}, {posteriors[0].dim}) (one truth per "
                         f"posterior), got {np.shape(truths)}")
    return posteriors, t


def credible_masses(posteriors, truths) -> np.ndarray:
    """HPD rank of each truth, ``posterior.credible_mass(truth)`` (N,): uniform when calibrated."""
    posteriors, t = _pairs(posteriors, truths)
    return np.array([p.credible_mass(x) for p, x in zip(posteriors, t)])


def hpd_coverage(posteriors, truths, levels=(0.5, 0.68, 0.9, 0.95)) -> dict:
    """Fraction of truths inside each HPD region, with binomial errors.

    Returns ``{"levels", "coverage", "stderr", "n", "masses"}``: ``stderr`` is
    ``sqrt(c (1 - c) / N)`` at the nominal level c, so a calibrated posterior has
    ``|coverage - level|`` below ~2-3 ``stderr``; above the level means underconfident
    (too wide), below overconfident.
    """
    lv = as_finite_array(levels, "levels").ravel()
    if np.any((lv <= 0) | (lv >= 1)):
        raise ValueError(f"levels: expected probabilities in (0, 1), got {lv.tolist()}")
    masses = credible_masses(posteriors, truths)
    n = len(masses)
    coverage = np.array([(masses <= c).mean() for c in lv])
    return {"levels": lv, "coverage": coverage, "stderr": np.sqrt(lv * (1 - lv) / n), "n": n, "masses": masses}


def _tempered_credible_masses(post, truth, temperatures) -> np.ndarray:
    """``post.tempered(T).credible_mass(truth)`` for every T at once: tempering keeps the order of the cells."""
    i, j = np.argmin(np.abs(post.x - truth[0])), np.argmin(np.abs(post.y - truth[1]))
    lp = np.sort(post.log_post.ravel())[::-1]
    above = np.searchsorted(-lp, -post.log_post[i, j], side="left")  # cells strictly denser than the truth's
    w = np.exp((lp[None, :] - lp[0]) / np.asarray(temperatures, dtype=float)[:, None])
    return w[:, :above].sum(1) / w.sum(1)


def fit_temperature(posteriors, truths, levels=(0.68, 0.95), temperatures=None) -> dict:
    """The likelihood temperature T that calibrates grid posteriors on held-out (validation) maps.

    Each :class:`~cosmonb.posteriors.GridPosterior` is tempered, ``p_T ∝ p^(1/T)``
    (:meth:`~cosmonb.posteriors.GridPosterior.tempered`), and T is the value on the
    ``temperatures`` grid (default 1 to 10^4, log-spaced) that minimises
    ``sum_c (coverage_c(T) - c)^2`` over ``levels``. A learned likelihood that is too
    confident (coverage below nominal) gets T > 1; its bias is untouched, so the RMSE of
    the posterior mean barely moves. Fit T on maps that are not the ones you score.

    Returns ``{"temperature", "temperatures", "coverage" (len(T), len(levels)), "levels", "n"}``.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> x = np.linspace(-6, 6, 121)
        >>> truths = rng.normal(size=(150, 2))
        >>> obs = truths + rng.normal(size=(150, 2))  # x = theta + noise; the exact posterior has std 1
        >>> lp = lambda o: -0.5 * ((x[:, None] - o[0]) ** 2 + (x[None, :] - o[1]) ** 2) / 0.5 ** 2  # std 0.5
        >>> fit = fit_temperature([GridPosterior(x, x, lp(o)) for o in obs], truths)
        >>> 2.5 < fit["temperature"] < 6.5  # the true factor is (1 / 0.5)^2 = 4
        True
    """
    posteriors, truths = _pairs(posteriors, truths)  # same count, (N, d) finite truths
    if not all(hasattr(p, "tempered") for p in posteriors):
        raise ValueError("posteriors: expected a non-empty list of GridPosteriors (they can be tempered)")
    temps = np.geomspace(1.0, 1e4, 81) if temperatures is None else as_finite_array(temperatures, "temperatures")
    if temps.ndim != 1 or np.any(temps <= 0):
        raise ValueError("temperatures: expected a 1D array of values > 0")
    lv = as_finite_array(levels, "levels").ravel()
    masses = np.array([_tempered_credible_masses(p, t, temps) for p, t in zip(posteriors, truths)])  # (N, len(T))
    cov = (masses[:, :, None] <= lv[None, None, :]).mean(0)  # (len(T), len(levels))
    best = int(np.argmin(((cov - lv[None]) ** 2).sum(1)))
    return {"temperature": float(temps[best]), "temperatures": temps, "coverage": cov, "levels": lv,
            "n": len(posteriors)}


#: spawn keys of the diagnostics' random streams
_SBC, _TARP_REFERENCES, _TARP_DRAWS = 1, 2, 3


def _stream(seed: int, *key: int) -> np.random.Generator:
    """A generator for ``seed`` and a spawn key: independent of ``default_rng(seed)``.

    (``default_rng([seed, 0])``, used before, draws exactly what ``default_rng(seed)``
    draws, so TARP's reference points could coincide with truths drawn from the same seed.)

    Example:
        >>> bool(_stream(3, 2).random() != np.random.default_rng(3).random())
        True
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def sbc_ranks(posteriors, truths, n_samples: int = 100, seed: int = 0) -> np.ndarray:
    """SBC ranks (N, d): how many of ``n_samples`` posterior draws lie below each truth, per parameter.

    Talts et al. (2018), Algorithm 1: uniform on {0, ..., n_samples} for a calibrated posterior.
    Draw i uses its own stream of ``seed`` (:func:`_stream`), never one that a plain
    ``np.random.default_rng(seed)`` (say, the one that drew the truths) also yields.
    """
    posteriors, t = _pairs(posteriors, truths)
    n_samples = check_size(n_samples, "n_samples")
    ranks = np.empty(t.shape, int)
    for i, (p, x) in enumerate(zip(posteriors, t)):
        draws = p.sample(n_samples, seed=_stream(seed, _SBC, i))
        ranks[i] = (draws < x).sum(0)
    return ranks


def sbc_uniformity(ranks, n_samples: int, n_bins: int | None = None) -> np.ndarray:
    """p-value per parameter (d,) of a chi^2 test that the SBC ranks are uniform on {0..n_samples}.

    Ranks are grouped into ``n_bins`` equal bins (default: about N / 10, at most 20, so that
    each bin expects 10 or more); a small p-value (< 0.01) means miscalibrated.
    """
    r = np.asarray(ranks)
    if r.ndim == 1:
        r = r[:, None]
    n_samples = check_size(n_samples, "n_samples")
    if r.size == 0 or r.min() < 0 or r.max() > n_samples:
        raise ValueError(f"ranks: expected integers in [0, {n_samples}]")
    n_bins = n_bins or int(np.clip(len(r) // 10, 2, 20))
    n_bins = min(n_bins, n_samples + 1)
    # equal-probability bins of the L + 1 rank values
    bin_of = np.floor(np.arange(n_samples + 1) * n_bins / (n_samples + 1)).astype(int)
    expected = np.bincount(bin_of, minlength=n_bins) / (n_samples + 1) * len(r)
    out = []
    for j in range(r.shape[1]):
        observed = np.bincount(bin_of[r[:, j]], minlength=n_bins)
        out.append(_scipy_stats.chisquare(observed, expected).pvalue)
    return np.array(out)


def tarp(posteriors, truths, n_samples: int = 1000, references=None, seed: int = 0,
         n_bins: int = 50) -> dict:
    """TARP expected coverage (Lemos et al. 2023, Algorithm 2) of a set of posteriors.

    Parameters are scaled to the unit box spanned by the truths (as sbi's
    ``z_score_theta``). Per pair i: a reference point r_i (default uniform over that box),
    ``n_samples`` draws, each from its own stream of ``seed`` (:func:`_stream`), and
    ``f_i`` = fraction of draws closer to r_i than the truth (Euclidean). Returns
    ``{"alpha", "ecp", "f", "atc", "ks_pvalue"}``: ``ecp[k]`` = fraction of f below
    ``alpha[k]``; ``atc`` the signed area between the ECP curve and the diagonal (sbi's
    ``check_tarp`` reports the same; near 0 when calibrated); ``ks_pvalue`` a
    Kolmogorov-Smirnov test that f is uniform (small: miscalibrated).
    """
    posteriors, t = _pairs(posteriors, truths)
    n_samples = check_size(n_samples, "n_samples")
    lo, hi = t.min(0), t.max(0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    if references is None:
        refs = _stream(seed, _TARP_REFERENCES).random(t.shape)
    else:
        refs = (as_finite_array(references, "references") - lo) / scale
        if refs.shape != t.shape:
            raise ValueError(f"references: expected shape {t.shape}, got {np.shape(references)}")
    z = (t - lo) / scale
    f = np.empty(len(t))
    for i, p in enumerate(posteriors):
        draws = (p.sample(n_samples, seed=_stream(seed, _TARP_DRAWS, i)) - lo) / scale
        f[i] = np.mean(np.linalg.norm(draws - refs[i], axis=1) < np.linalg.norm(z[i] - refs[i]))
    alpha = np.linspace(0, 1, n_bins + 1)
    ecp = np.array([(f < a).mean() for a in alpha])
    atc = float(np.trapezoid(ecp - alpha, alpha)) if hasattr(np, "trapezoid") else float(np.trapz(ecp - alpha, alpha))
    return {"alpha": alpha, "ecp": ecp, "f": f, "atc": atc,
            "ks_pvalue": float(_scipy_stats.kstest(f, "uniform").pvalue)}
