"""Omega_m / sigma_8 sliders wired to a map sampler and a P(k) plot.

``parameter_explorer(draw)`` shows a map drawn by ``draw(omega_m, sigma_8)`` (any
sampler: the simulator, a flow, a diffusion model) beside its P(k) against a
reference spectrum; moving a slider redraws both with the sampler's fixed seed.

Example:
    >>> from cosmonb import sims
    >>> draw = simulator_sampler(seed=0, n_pix=32)
    >>> draw(0.3, 0.8).shape
    (32, 32)
"""
from __future__ import annotations

import os

import numpy as np

from . import sims, stats
from .plotting import log_k_axis


def simulator_sampler(seed=0, n_pix=sims.N_PIX, field="Mcdm", astro=(1.0, 1.0, 1.0, 1.0)):
    """draw(omega_m, sigma_8) -> one simulated map with a fixed seed (same noise, new parameters)."""
    def draw(omega_m, sigma_8):
        params = np.array([[omega_m, sigma_8, *astro]])
        return sims.simulate(params, field, n_pix=n_pix, seed=seed)[0, 0]
    return draw


def draw_panel(draw, omega_m, sigma_8, reference=None, axes=None, box_size=sims.BOX_SIZE,
               vmin=None, vmax=None):
    """One redraw: the map (log10) and its P(k) beside ``reference`` = (k, pk, label)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    m = np.asarray(draw(omega_m, sigma_8))
    axes[0].imshow(np.log10(m), origin="lower", cmap="magma", vmin=vmin, vmax=vmax)
    axes[0].set_title(rf"$\Omega_m$ = {omega_m:.3f}, $\sigma_8$ = {sigma_8:.3f}")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    k, pk = stats.power_spectrum(m, box_size)
    axes[1].loglog(k, pk, label="this map")
    if reference is not None:
        axes[1].loglog(reference[0], reference[1], "k--", label=reference[2])
    log_k_axis(axes[1])
    axes[1].set_xlabel(r"$k$ [$h$/Mpc]")
    axes[1].set_ylabel(r"$P(k)$")
    axes[1].legend()
    return axes


def headless() -> bool:
    """True when no notebook front end will render widgets: ``COSMONB_HEADLESS=1``.

    ``cosmonb.runtime.run_notebook`` (the tests, ``make run``) and ``make test``'s nbval
    run set it. Widgets with live comms can stall a headless kernel
    (jupyter/nbclient#312), so notebooks draw a static panel there instead. Quick mode
    alone does not turn the sliders off: a reader may run quick mode in JupyterLab.
    """
    return os.environ.get("COSMONB_HEADLESS", "0").strip().lower() in ("1", "true", "yes")


def sliders(panel, interactive=None, figsize=(9, 3.8), ncols=2, **ranges):
    """Float sliders that redraw ``panel(axes, **values)`` whenever one moves.

    ``ranges``: ``name=(low, high, step, value)`` per slider, in call order. Returns the
    ipywidgets container (display it as a cell's last expression). With
    ``interactive=False`` (the default when :func:`headless`, e.g. under papermill)
    it draws the panel once at the initial values as a plain figure and returns None.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> seen = []
        >>> sliders(lambda axes, a, b: seen.append((a, b)), interactive=False, a=(0, 1, 0.1, 0.5), b=(1, 2, 0.5, 1))
        >>> seen
        [(0.5, 1)]
    """
    import matplotlib.pyplot as plt

    for name, spec in ranges.items():
        if len(spec) != 4 or not spec[0] <= spec[3] <= spec[1] or spec[2] <= 0:
            raise ValueError(f"{name}: expected (low, high, step, value) with low <= value <= high, got {spec}")
    if interactive is None:
        interactive = not headless()

    def draw(values):
        _, axes = plt.subplots(1, ncols, figsize=figsize)
        panel(axes, **values)
        plt.show()

    if not interactive:
        draw({name: spec[3] for name, spec in ranges.items()})
        return None
    import ipywidgets as w

    controls = {name: w.FloatSlider(value=v, min=lo, max=hi, step=st, description=name, continuous_update=False)
                for name, (lo, hi, st, v) in ranges.items()}
    out = w.Output()

    def redraw(_=None):
        with out:
            out.clear_output(wait=True)
            draw({name: c.value for name, c in controls.items()})

    for c in controls.values():
        c.observe(redraw, "value")
    redraw()
    return w.VBox([w.HBox(list(controls.values())), out])


def parameter_explorer(draw, reference=None, omega_m=0.3, sigma_8=0.8, vmin=None, vmax=None,
                       interactive=None):
    """Sliders for Omega_m in [0.1, 0.5] and sigma_8 in [0.6, 1.0] that redraw ``draw_panel``.

    Returns the ipywidgets container (display it as a cell's last expression). With
    ``interactive=False`` (the default when :func:`headless`) it draws the initial panel as a
    plain figure and returns None.
    """
    def panel(axes, Omega_m, sigma_8):
        draw_panel(draw, Omega_m, sigma_8, reference, axes, vmin=vmin, vmax=vmax)

    return sliders(panel, interactive=interactive, Omega_m=(0.1, 0.5, 0.01, omega_m),
                   sigma_8=(0.6, 1.0, 0.01, sigma_8))
