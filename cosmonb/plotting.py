"""Figures every notebook reuses: map grids, P(k) bands, posterior contours.

Example:
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> fig = plot_maps(np.ones((2, 1, 8, 8)) + np.arange(64).reshape(8, 8), titles=["a", "b"],
    ...                 unit=FIELD_UNITS["Mcdm"], box_size=25.0)
    >>> len(fig.axes)  # two maps, two colorbars
    4
"""
from __future__ import annotations

import numpy as np

FIELD_CMAPS = {"Mcdm": "magma", "Mgas": "viridis", "HI": "cividis", "B": "plasma",
               "Mtot": "magma", "Mstar": "inferno", "T": "hot"}

#: Units of the CMD fields (GUIDE section 6): projected masses per area, B in gauss, T in kelvin.
SURFACE_DENSITY_UNIT = r"$(M_\odot/h)/(h^{-1}{\rm Mpc})^2$"
FIELD_UNITS = {"Mcdm": SURFACE_DENSITY_UNIT, "Mgas": SURFACE_DENSITY_UNIT, "HI": SURFACE_DENSITY_UNIT,
               "Mstar": SURFACE_DENSITY_UNIT, "Mtot": SURFACE_DENSITY_UNIT, "B": "G", "T": "K"}
#: Axis labels shared by every figure.
K_LABEL = r"$k$ [$h\,{\rm Mpc}^{-1}$]"
PK_LABEL = r"$P(k)$ [$(h^{-1}{\rm Mpc})^2$]"
POSITION_UNIT = r"$h^{-1}{\rm Mpc}$"


def map_label(unit=None, log=True, name=None):
    """Colorbar label of a map: ``log10 name [unit]``; e.g. ``map_label(FIELD_UNITS["B"], name="B")``."""
    what = " ".join(x for x in ("log10" if log else "", name or "") if x) or "value"
    return f"{what} [{unit}]" if unit else what


def show_map(ax, image, box_size=None, unit=None, log=True, name=None, colorbar=True, **imshow):
    """One map on ``ax`` (``image`` already in log10 when ``log``): position axes in Mpc/h when
    ``box_size`` is given (ticks off otherwise) and a colorbar labelled with ``unit``; returns the image."""
    extent = None if box_size is None else (0, box_size, 0, box_size)
    im = ax.imshow(image, origin="lower", extent=extent, **imshow)
    if box_size is None:
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.set_xlabel(f"x [{POSITION_UNIT}]", fontsize=8)
        ax.set_ylabel(f"y [{POSITION_UNIT}]", fontsize=8)
        ax.tick_params(labelsize=7)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label(map_label(unit, log, name), fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return im


def plot_maps(maps, titles=None, log=True, cmap="magma", ncols=None, axes=None, colorbar=True,
              vmin=None, vmax=None, unit=None, box_size=None, name=None):
    """Show maps (N, H, W) or (N, 1, H, W) in a grid, in log10 by default; returns the figure.

    Every map gets its own colorbar (labelled ``log10 name [unit]``, e.g. ``unit=FIELD_UNITS["Mcdm"]``)
    unless ``colorbar=False``; with ``box_size`` (Mpc/h) the axes show positions in Mpc/h.
    """
    import matplotlib.pyplot as plt

    maps = np.asarray(maps)
    if maps.ndim == 4:
        maps = maps[:, 0]
    if maps.ndim == 2:
        maps = maps[None]
    if log and np.any(maps <= 0):
        raise ValueError("maps: log=True needs positive maps")
    data = np.log10(maps) if log else maps
    n = len(data)
    ncols = ncols or min(n, 5)
    nrows = int(np.ceil(n / ncols))
    own_figure = axes is None
    if own_figure:
        size = (4.4, 3.7) if box_size is not None else (3.4, 3.0)
        fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    axes = np.asarray(axes).ravel()
    fig = axes[0].figure
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        show_map(ax, data[i], box_size=box_size, unit=unit, log=log, name=name, colorbar=colorbar,
                 cmap=cmap, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    if own_figure:
        fig.tight_layout()
    return fig


def plot_pk_band(k, pk, ax=None, label=None, color=None, ratio_to=None, quantiles=(16, 84)):
    """Mean P(k) of a set (N, n_bins) with a 16-84% band, log-log; optionally as a ratio."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    pk = np.atleast_2d(pk)
    if ratio_to is not None:
        pk = pk / ratio_to
    mean = pk.mean(0)
    (line,) = ax.plot(k, mean, color=color, label=label)
    if len(pk) > 1:
        lo, hi = np.percentile(pk, quantiles, axis=0)
        ax.fill_between(k, lo, hi, color=line.get_color(), alpha=0.25, lw=0)
    log_k_axis(ax)
    if ratio_to is None:
        ax.set_yscale("log")
        ax.set_ylabel(PK_LABEL)
    else:
        ax.set_ylabel("P(k) ratio")
    ax.set_xlabel(K_LABEL)
    return ax


def plot_pk_comparison(k, pk_generated, pk_true, axes=None, labels=("generated", "simulated"), k2=False,
                       title=None):
    """Two panels: the mean P(k) (or k^2 P(k)) with 16-84% bands of two sets, and the per-bin z-scores
    of their means (``stats.pk_z_scores``) with the +-3 lines. Returns the two axes."""
    import matplotlib.pyplot as plt

    from .stats import pk_z_scores

    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(5.2, 4.8), sharex=True, gridspec_kw={"height_ratios": (2.2, 1)})
    top, bottom = axes
    weight = k**2 if k2 else 1.0
    for pk, label, color in ((pk_true, labels[1], "k"), (pk_generated, labels[0], "C1")):
        plot_pk_band(k, np.atleast_2d(pk) * weight, ax=top, label=f"{label} ({len(np.atleast_2d(pk))})",
                     color=color)
    if k2:
        top.set_ylabel(r"$k^2 P(k)$")
    top.set_xlabel("")
    top.legend(fontsize=8)
    if title:
        top.set_title(title, fontsize=10)
    z = pk_z_scores(pk_generated, pk_true)
    bottom.plot(k, z, "o-", ms=3, color="C1")
    for level in (-3, 0, 3):
        bottom.axhline(level, color="0.5", lw=0.8, ls="-" if level == 0 else "--")
    bottom.set_ylabel("z of the mean")
    log_k_axis(bottom)
    bottom.set_xlabel(K_LABEL)
    return top, bottom


def log_k_axis(ax):
    """A log k axis labelled at 1, 2, 5 x 10^n only: readable even when k spans just a decade or so
    (matplotlib's default then labels every minor tick, and the labels overlap). Call it after any
    ``loglog`` / ``set_xscale``, which reset the tick formatters."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    return ax


def fisher_ellipse(ax, mean, cov, n_sigma=(1, 2), **kwargs):
    """Draw the n-sigma ellipses of a 2D Gaussian (68% / 95% of the mass for n = 1.52 / 2.45)."""
    from scipy.stats import chi2

    vals, vecs = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(t), np.sin(t)])
    for i, n in enumerate(n_sigma):
        scale = np.sqrt(chi2.ppf({1: 0.68, 2: 0.95}.get(n, 0.68), 2))
        pts = vecs @ (np.sqrt(vals)[:, None] * circle) * scale + np.asarray(mean)[:, None]
        ax.plot(pts[0], pts[1], **({"label": kwargs.pop("label")} if i == 0 and "label" in kwargs else {}),
                **kwargs)
    return ax
