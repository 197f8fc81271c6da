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
from .plotting import FIELD_UNITS, K_LABEL, PK_LABEL, log_k_axis, show_map


def simulator_sampler(seed=0, n_pix=sims.N_PIX, field="Mcdm", astro=(1.0, 1.0, 1.0, 1.0)):
    """draw(omega_m, sigma_8) -> one simulated map with a fixed seed (same noise, new parameters)."""
    def draw(omega_m, sigma_8):
        params = np.array([[omega_m, sigma_8, *astro]])
        return sims.simulate(params, field, n_pix=n_pix, seed=seed)[0, 0]
    return draw


def draw_panel(draw, omega_m, sigma_8, reference=None, axes=None, box_size=sims.BOX_SIZE,
               vmin=None, vmax=None, field="Mcdm"):
    """One redraw: the map (log10, with a colorbar in ``field``'s units) and its P(k) beside
    ``reference`` = (k, pk, label)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    m = np.asarray(draw(omega_m, sigma_8))
    show_map(axes[0], np.log10(m), box_size=box_size, unit=FIELD_UNITS.get(field), name=field,
             cmap="magma", vmin=vmin, vmax=vmax)
    axes[0].set_title(rf"$\Omega_m$ = {omega_m:.3f}, $\sigma_8$ = {sigma_8:.3f}")
    k, pk = stats.power_spectrum(m, box_size)
    axes[1].loglog(k, pk, label="this map")
    if reference is not None:
        axes[1].loglog(reference[0], reference[1], "k--", label=reference[2])
    log_k_axis(axes[1])
    axes[1].set_xlabel(K_LABEL)
    axes[1].set_ylabel(PK_LABEL)
    axes[1].legend()
    return axes


def static_panel(draw, reference=None, omega_m=0.3, sigma_8=0.8, box_size=sims.BOX_SIZE,
                 vmin=None, vmax=None, field="Mcdm",
                 settings=(("Omega_m", 0.15, 0.45), ("sigma_8", 0.65, 0.95))):
    """What the sliders would show, for a page without live widgets: one row per parameter in
    ``settings`` = ((name, low, high), ...), each with the map at the low value, the map at
    (omega_m, sigma_8), the map at the high value, all on one colour scale, and their P(k)
    against ``reference`` = (k, pk, label) (default: the P(k) of the map at (omega_m, sigma_8)).

    Returns the figure; ``draw`` is called for each changed value and, last, for the start values.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> fig = static_panel(simulator_sampler(seed=0, n_pix=16))
        >>> len(fig.axes)  # 2 rows x (3 maps with colorbars + 1 P(k))
        14
    """
    import matplotlib.pyplot as plt

    start = {"Omega_m": omega_m, "sigma_8": sigma_8}
    for name, low, high in settings:
        if name not in start:
            raise ValueError(f"settings: expected parameter names 'Omega_m' or 'sigma_8', got {name!r}")
    changed = {}
    for name, low, high in settings:
        for value in (low, high):
            values = dict(start, **{name: value})
            changed[(name, value)] = np.asarray(draw(values["Omega_m"], values["sigma_8"]))
    fiducial = np.asarray(draw(omega_m, sigma_8))
    logs = [np.log10(m) for m in (*changed.values(), fiducial)]
    if vmin is None or vmax is None:
        lo, hi = np.percentile(np.concatenate([x.ravel() for x in logs]), [0.5, 99.5])
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    k_fid, pk_fid = stats.power_spectrum(fiducial, box_size)
    if reference is None:
        reference = (k_fid, pk_fid, rf"$\Omega_m$ = {omega_m:.2f}, $\sigma_8$ = {sigma_8:.2f}")
    symbol = {"Omega_m": r"\Omega_m", "sigma_8": r"\sigma_8"}
    fig, axes = plt.subplots(len(settings), 4, figsize=(17, 3.9 * len(settings)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1, 1.25]})
    for row, (name, low, high) in zip(axes, settings):
        maps = [(low, changed[(name, low)]), (start[name], fiducial), (high, changed[(name, high)])]
        for ax, (value, m), colour in zip(row[:3], maps, ("C0", "k", "C3")):
            show_map(ax, np.log10(m), box_size=box_size, unit=FIELD_UNITS.get(field), name=field,
                     cmap="magma", vmin=vmin, vmax=vmax)
            ax.set_title(rf"${symbol[name]}$ = {value:.2f}" + (" (start)" if m is fiducial else ""),
                         fontsize=10, color=colour)
        for value, colour in ((low, "C0"), (high, "C3")):
            k, pk = stats.power_spectrum(changed[(name, value)], box_size)
            row[3].loglog(k, pk, color=colour, label=rf"${symbol[name]}$ = {value:.2f}")
        row[3].loglog(reference[0], reference[1], "k--", label=reference[2])
        log_k_axis(row[3])
        row[3].set_xlabel(K_LABEL)
        row[3].set_ylabel(PK_LABEL)
        row[3].set_title(f"P(k) as {name} moves", fontsize=10)
        row[3].legend(fontsize=8)
    fig.suptitle("static panel (no live widgets here): each slider at the ends of its range, same seed",
                 fontsize=11)
    fig.tight_layout()
    return fig


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
    ``interactive=False`` (the default when :func:`headless`) it shows :func:`static_panel`
    instead, the map at each slider's low and high end beside the start values, and returns None.
    """
    import matplotlib.pyplot as plt

    if interactive is None:
        interactive = not headless()
    if not interactive:
        static_panel(draw, reference, omega_m, sigma_8, vmin=vmin, vmax=vmax)
        plt.show()
        return None

    def panel(axes, Omega_m, sigma_8):
        draw_panel(draw, Omega_m, sigma_8, reference, axes, vmin=vmin, vmax=vmax)

    return sliders(panel, interactive=True, figsize=(10, 3.8), Omega_m=(0.1, 0.5, 0.01, omega_m),
                   sigma_8=(0.6, 1.0, 0.01, sigma_8))
