"""Grid posteriors, plotting helpers and the slider widget."""
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from cosmonb import plotting, sims, widgets  # noqa: E402
from cosmonb.inference import GridPosterior  # noqa: E402


def gaussian_posterior(rho=0.6, sx=0.5, sy=1.0, n=241):
    x = np.linspace(-6 * sx, 6 * sx, n)
    y = np.linspace(-6 * sy, 6 * sy, n)
    cov = np.array([[sx**2, rho * sx * sy], [rho * sx * sy, sy**2]])
    inv = np.linalg.inv(cov)
    X, Y = np.meshgrid(x, y, indexing="ij")
    lp = -0.5 * (inv[0, 0] * X**2 + 2 * inv[0, 1] * X * Y + inv[1, 1] * Y**2)
    return GridPosterior(x, y, lp + 1234.0)  # an additive constant must not matter


def test_moments_and_hpd_regions_of_a_gaussian():
    post = gaussian_posterior()
    np.testing.assert_allclose(post.std, [0.5, 1.0], rtol=1e-3)
    assert post.corr == pytest.approx(0.6, abs=1e-3)
    np.testing.assert_allclose(post.mean, 0, atol=1e-9)
    # a point at Mahalanobis radius r sits on the boundary of the 1 - exp(-r^2/2) region
    r = 1.5
    point = np.array([r * 0.5, 0.0]) * np.sqrt(1 - 0.6**2)  # x-axis point with Mahalanobis r
    assert post.credible_mass(point) == pytest.approx(1 - np.exp(-r**2 / 2), abs=0.01)
    assert post.contains([0, 0], 0.05) and not post.contains([1.5, -3.0], 0.95)
    assert np.trapezoid(post.marginal(0), post.x) == pytest.approx(1, abs=1e-3)


def test_grid_posterior_rejects_bad_input():
    with pytest.raises(ValueError, match="log_post"):
        GridPosterior([0, 1], [0, 1, 2], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="log_post"):
        GridPosterior([0, 1], [0, 1], np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="mass"):
        gaussian_posterior().level(1.5)


def test_plots_draw_something():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    gaussian_posterior().plot(ax, truth=[0, 0], label="g")
    plotting.fisher_ellipse(ax, [0, 0], np.eye(2), color="r")
    assert len(ax.lines) >= 3
    fig = plotting.plot_maps(np.exp(np.random.default_rng(0).normal(size=(3, 8, 8))))
    assert len(fig.axes) >= 3
    with pytest.raises(ValueError, match="positive"):
        plotting.plot_maps(-np.ones((1, 4, 4)))
    plt.close("all")


def test_parameter_explorer_redraws_with_the_sampler():
    calls = []
    base = widgets.simulator_sampler(seed=1, n_pix=16)

    def draw(om, s8):
        calls.append((om, s8))
        return base(om, s8)

    box = widgets.parameter_explorer(draw, interactive=True)
    sliders = box.children[0].children
    assert [s.description for s in sliders] == ["Omega_m", "sigma_8"]
    sliders[0].value = 0.42
    assert calls[0] == (0.3, 0.8) and calls[-1] == (0.42, 0.8)
    # fixed seed: the same parameters redraw the same map
    assert np.array_equal(base(0.3, 0.8), sims.simulate([sims.FIDUCIAL], "Mcdm", n_pix=16, seed=1)[0, 0])
    # headless: one static panel, no live widget
    assert widgets.parameter_explorer(draw, interactive=False) is None
    assert calls[-1] == (0.3, 0.8)


def test_headless_follows_cosmonb_headless_not_quick_mode(monkeypatch):
    monkeypatch.delenv("COSMONB_HEADLESS", raising=False)
    monkeypatch.setenv("COSMONB_QUICK", "1")
    assert not widgets.headless()  # quick mode in JupyterLab keeps its sliders
    monkeypatch.setenv("COSMONB_HEADLESS", "1")
    assert widgets.headless()
    monkeypatch.setenv("COSMONB_HEADLESS", "0")
    assert not widgets.headless()


@pytest.mark.parametrize("x, y, match", [
    ([0.0, 1.0], [0.0, 1.0, 2.0], r"x: expected a grid of at least 3 points, got 2"),
    ([0.0, 1.0, 2.0], [0.0], r"y: expected a grid of at least 3 points, got 1"),
    ([0.0, 2.0, 1.0], [0.0, 1.0, 2.0], r"x: expected a strictly increasing grid"),
    ([0.0, 1.0, 2.0], [2.0, 1.0, 0.0], r"y: expected a strictly increasing grid"),
    ([0.0, 1.0, 1.0], [0.0, 1.0, 2.0], r"x: expected a strictly increasing grid"),
    ([[0.0, 1.0, 2.0]], [0.0, 1.0, 2.0], r"x: expected a 1D grid"),
])
def test_grid_posterior_rejects_short_or_unsorted_grids(x, y, match):
    """Issue 8: 2-point and decreasing grids gave posteriors with wrong moments, silently."""
    shape = (np.size(x), np.size(y))
    with pytest.raises(ValueError, match=match):
        GridPosterior(x, y, np.zeros(shape))


@pytest.mark.parametrize("point", [[np.nan, 0.0], [0.0, np.inf], [0.0, 0.0, 0.0], 0.5])
def test_credible_mass_rejects_nan_inf_and_wrong_shapes(point):
    """Issue 8: credible_mass(nan) returned 0.0, i.e. 'at the very centre of the posterior'."""
    post = gaussian_posterior(n=61)
    with pytest.raises(ValueError, match=r"point: expected"):
        post.credible_mass(point)
    with pytest.raises(ValueError, match=r"point: expected"):
        post.contains(point, 0.68)


def test_warn_if_unresolved_flags_edges_and_single_cells_only():
    from cosmonb.inference import PosteriorGridWarning

    x = np.linspace(0.0, 1.0, 41)
    X, Y = np.meshgrid(x, x, indexing="ij")
    resolved = GridPosterior(x, x, -0.5 * ((X - 0.5) ** 2 + (Y - 0.5) ** 2) / 0.1**2)
    near_edge = GridPosterior(x, x, -0.5 * ((X - 0.02) ** 2 + (Y - 0.5) ** 2) / 0.05**2)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not resolved.warn_if_unresolved() and not near_edge.warn_if_unresolved()
    pinned = GridPosterior(x, x, -1e4 * X - 0.5 * (Y - 0.5) ** 2 / 0.1**2, names=("a", "b"))
    with pytest.warns(PosteriorGridWarning, match=r"mass of a sits on the edge of the grid, a = 0"):
        assert pinned.warn_if_unresolved("test")
    needle = GridPosterior(x, x, -0.5 * ((X - 0.5) ** 2 + (Y - 0.5) ** 2) / 1e-3**2)
    with pytest.warns(PosteriorGridWarning, match=r"sits at one grid value, x = 0.5"):
        assert needle.warn_if_unresolved()
