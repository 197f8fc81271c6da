"""Every slider callback of cosmonb/widgets.py, called directly with headless widgets.

ipywidgets run without a front end here: setting a slider's ``value`` fires its observers, which
is what a browser's drag does through the kernel (tests/test_browser.py checks the browser half).
Each redraw's figure is captured at ``plt.show`` and compared with the previous one.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cosmonb import stats, widgets  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    """The figures each redraw shows: a list of dicts of what their axes hold, captured at plt.show."""
    figures = []

    def show(*_, **__):
        fig = plt.gcf()
        fig.canvas.draw()
        axes = fig.axes
        figures.append({
            "pixels": np.asarray(fig.canvas.buffer_rgba()).copy(),
            "images": [np.asarray(im.get_array()).copy() for ax in axes for im in ax.images],
            "lines": [[np.asarray(line.get_ydata(), float).copy() for line in ax.lines] for ax in axes],
            "titles": [ax.get_title() for ax in axes],
        })
        plt.close(fig)

    monkeypatch.setattr(plt, "show", show)
    monkeypatch.delenv("COSMONB_HEADLESS", raising=False)
    yield figures
    plt.close("all")


def _controls(box):
    return {s.description: s for s in box.children[0].children}


def test_sliders_callback_redraws_with_each_new_value(shown):
    calls = []

    def panel(axes, a, b):
        calls.append((a, b))
        axes[0].plot([0, 1], [0, a])
        axes[1].plot([0, 1], [b, 0])

    box = widgets.sliders(panel, interactive=True, a=(0.0, 1.0, 0.1, 0.5), b=(1.0, 2.0, 0.5, 1.0))
    controls = _controls(box)
    assert list(controls) == ["a", "b"] and len(shown) == 1 and calls == [(0.5, 1.0)]
    controls["a"].value = 0.9
    assert calls[-1] == (0.9, 1.0) and len(shown) == 2
    assert not np.array_equal(shown[0]["pixels"], shown[1]["pixels"])
    assert shown[1]["lines"][0][0][-1] == pytest.approx(0.9) and shown[1]["lines"][1][0][0] == 1.0
    controls["b"].value = 2.0
    assert calls[-1] == (0.9, 2.0) and shown[2]["lines"][1][0][0] == 2.0
    assert not np.array_equal(shown[1]["pixels"], shown[2]["pixels"])
    # back to the start values: the same figure, pixel for pixel (nothing random, nothing left over)
    controls["a"].value, controls["b"].value = 0.5, 1.0
    assert np.array_equal(shown[0]["pixels"], shown[-1]["pixels"])
    # setting a slider to its current value fires nothing
    n = len(calls)
    controls["a"].value = 0.5
    assert len(calls) == n


def test_sliders_reject_bad_ranges():
    with pytest.raises(ValueError, match="a: expected \\(low, high, step, value\\)"):
        widgets.sliders(lambda axes, a: None, interactive=True, a=(0, 1, 0.1, 2))
    with pytest.raises(ValueError, match="b: expected"):
        widgets.sliders(lambda axes, b: None, interactive=True, b=(0, 1, 0.0, 0.5))
    with pytest.raises(ValueError, match="c: expected"):
        widgets.sliders(lambda axes, c: None, interactive=True, c=(0, 1, 0.1))


@pytest.mark.parametrize("name, value", [("Omega_m", 0.45), ("sigma_8", 0.95)])
def test_parameter_explorer_callback_changes_the_map_and_its_power_spectrum(shown, name, value):
    draw = widgets.simulator_sampler(seed=2, n_pix=16)
    fid = draw(0.3, 0.8)
    reference = (*stats.power_spectrum(fid), "fiducial")
    box = widgets.parameter_explorer(draw, reference, interactive=True)
    controls = _controls(box)
    assert set(controls) == {"Omega_m", "sigma_8"}
    assert (controls["Omega_m"].min, controls["Omega_m"].max, controls["sigma_8"].min, controls["sigma_8"].max) == \
        (0.1, 0.5, 0.6, 1.0)
    first = shown[-1]
    np.testing.assert_allclose(first["images"][0], np.log10(fid))  # the map shown is the sampler's map
    controls[name].value = value
    after = shown[-1]
    assert len(shown) == 2
    # the map: new values everywhere (same seed, so the same structures, rescaled)
    assert after["images"][0].shape == first["images"][0].shape
    assert np.abs(after["images"][0] - first["images"][0]).mean() > 0.01
    expected = draw(*((value, 0.8) if name == "Omega_m" else (0.3, value)))
    np.testing.assert_allclose(after["images"][0], np.log10(expected))
    # P(k): the map's own spectrum moves, the dashed reference stays
    pk_axes = next(i for i, lines in enumerate(first["lines"]) if len(lines) == 2)
    this_before, ref_before = first["lines"][pk_axes]
    this_after, ref_after = after["lines"][pk_axes]
    np.testing.assert_array_equal(ref_before, ref_after)
    np.testing.assert_allclose(this_after, stats.power_spectrum(expected)[1])
    assert np.abs(np.log(this_after / this_before)).max() > 0.05
    # the title names the new value
    assert f"{value:.3f}" in after["titles"][0]


def test_simulator_sampler_callback_is_deterministic_and_responds():
    draw = widgets.simulator_sampler(seed=5, n_pix=16, field="Mgas")
    a, b = draw(0.3, 0.8), draw(0.3, 0.8)
    assert a.shape == (16, 16) and np.array_equal(a, b)
    assert not np.allclose(draw(0.4, 0.8), a) and not np.allclose(draw(0.3, 0.9), a)
    assert not np.allclose(widgets.simulator_sampler(seed=6, n_pix=16, field="Mgas")(0.3, 0.8), a)
