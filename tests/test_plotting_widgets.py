"""Figures of cosmonb.plotting and cosmonb.widgets: units on every axis, a colorbar on every map,
and a static slider panel that shows a response (not the fiducial against itself)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cosmonb import plotting, sims, stats, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def map_axes(fig):
    """The axes of ``fig`` that show a map (an image), not counting colorbars."""
    return [ax for ax in fig.axes if ax.images]


def assert_map_has_units_and_colorbar(ax, unit_text):
    im = ax.images[0]
    assert im.colorbar is not None, f"map {ax.get_title()!r} has no colorbar"
    label = im.colorbar.ax.get_ylabel()
    assert unit_text in label, f"colorbar label {label!r} lacks the unit {unit_text!r}"
    for text in (ax.get_xlabel(), ax.get_ylabel()):
        assert "Mpc" in text, f"map axis label {text!r} lacks a position unit"


def test_plot_maps_gives_every_map_a_colorbar_with_units_and_position_axes():
    maps = np.exp(np.random.default_rng(0).normal(size=(5, 16, 16)))
    fig = plotting.plot_maps(maps, ncols=3, unit=plotting.FIELD_UNITS["Mcdm"], name="Mcdm",
                             box_size=sims.BOX_SIZE)
    shown = map_axes(fig)
    assert len(shown) == 5
    for ax in shown:
        assert_map_has_units_and_colorbar(ax, "M_\\odot")
        assert ax.images[0].get_extent() == [0, sims.BOX_SIZE, 0, sims.BOX_SIZE]


def test_plot_maps_into_given_axes_and_colorbar_label_names_log10_and_unit():
    fig, axes = plt.subplots(1, 2)
    plotting.plot_maps(np.full((2, 8, 8), 10.0), axes=axes, unit="G", name="B", box_size=25.0)
    for ax in axes:
        assert ax.images[0].colorbar.ax.get_ylabel() == "log10 B [G]"
    assert plotting.map_label(None, log=False) == "value"


def test_pk_band_axes_carry_units():
    k, pk = stats.power_spectrum(sims.simulate([sims.FIDUCIAL] * 3, "Mcdm", n_pix=16, seed=0)[:, 0])
    _, ax = plt.subplots()
    plotting.plot_pk_band(k, pk, ax=ax)
    assert "Mpc" in ax.get_xlabel() and "Mpc" in ax.get_ylabel()
    _, ax = plt.subplots()
    plotting.plot_pk_band(k, pk, ax=ax, ratio_to=pk.mean(0))
    assert "Mpc" in ax.get_xlabel() and ax.get_ylabel()


def test_draw_panel_map_has_colorbar_and_pk_has_units():
    draw = widgets.simulator_sampler(seed=0, n_pix=16)
    _, axes = plt.subplots(1, 2)
    widgets.draw_panel(draw, 0.3, 0.8, axes=axes)
    assert_map_has_units_and_colorbar(axes[0], "M_\\odot")
    assert "Mpc" in axes[1].get_xlabel() and "Mpc" in axes[1].get_ylabel()


def test_static_panel_shows_the_response_not_the_fiducial_against_itself():
    """The headless slider panel once drew the start values only: its P(k) lay on the fiducial reference."""
    draw = widgets.simulator_sampler(seed=3, n_pix=32)
    fid = draw(0.3, 0.8)
    reference = (*stats.power_spectrum(fid), "fiducial, same seed")
    fig = widgets.static_panel(draw, reference)
    shown = map_axes(fig)
    assert len(shown) == 6  # 2 parameters x (low, start, high)
    for ax in shown:
        assert_map_has_units_and_colorbar(ax, "M_\\odot")
    # the maps at the ends of each slider differ from the start map; all share one colour scale
    images = [np.asarray(ax.images[0].get_array()) for ax in shown]
    start = np.log10(fid)
    assert sum(np.array_equal(im, start) for im in images) == 2  # the middle map of each row
    assert sum(not np.allclose(im, start) for im in images) == 4
    assert len({ax.images[0].get_clim() for ax in shown}) == 1
    # P(k) panels: two changed curves per row, each clearly off the fiducial reference
    pk_axes = [ax for ax in fig.axes if not ax.images and ax.get_lines() and "Mpc" in ax.get_xlabel()]
    assert len(pk_axes) == 2
    for ax in pk_axes:
        assert "Mpc" in ax.get_ylabel()
        ref = [ln for ln in ax.get_lines() if ln.get_label() == "fiducial, same seed"]
        assert len(ref) == 1
        changed = [ln for ln in ax.get_lines() if ln is not ref[0]]
        assert len(changed) == 2
        for ln in changed:
            ratio = np.asarray(ln.get_ydata()) / reference[1]
            assert np.max(np.abs(ratio - 1)) > 0.05, f"{ln.get_label()}: P(k) equals the fiducial"


def test_parameter_explorer_static_mode_draws_the_slider_ends():
    calls = []
    base = widgets.simulator_sampler(seed=1, n_pix=16)

    def draw(om, s8):
        calls.append((om, s8))
        return base(om, s8)

    assert widgets.parameter_explorer(draw, interactive=False) is None
    assert {(0.15, 0.8), (0.45, 0.8), (0.3, 0.65), (0.3, 0.95), (0.3, 0.8)} <= set(calls)
    fig = plt.gcf()
    assert len(map_axes(fig)) == 6
    with pytest.raises(ValueError, match="settings"):
        widgets.static_panel(base, settings=(("A_SN1", 0.5, 2.0),))


def test_plot_pk_comparison_draws_bands_and_z_scores():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosmonb import plotting

    rng = np.random.default_rng(0)
    k = np.geomspace(0.3, 10, 12)
    top, bottom = plotting.plot_pk_comparison(k, rng.lognormal(0, 0.2, (30, 12)), rng.lognormal(0, 0.2, (40, 12)),
                                              k2=True, title="t")
    assert len(top.collections) == 2 and top.get_ylabel() == r"$k^2 P(k)$"
    assert len(bottom.lines[0].get_ydata()) == 12
    plt.close("all")
