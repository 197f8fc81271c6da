"""Figures every notebook reuses: map grids, P(k) bands, posterior contours.

Example:
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> fig = plot_maps(np.ones((2, 1, 8, 8)) + np.arange(64).reshape(8, 8), titles=["a", "b"])
"""
from __future__ import annotations

import numpy as np

FIELD_CMAPS = {"Mcdm": "magma", "Mgas": "viridis", "HI": "cividis", "B": "plasma",
               "Mtot": "magma", "Mstar": "inferno", "T": "hot"}


def plot_maps(maps, titles=None, log=True, cmap="magma", ncols=None, axes=None, colorbar=True,
              vmin=None, vmax=None):
    """Show maps (N, H, W) or (N, 1, H, W) in a grid, in log10 by default; returns the figure."""
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
    if axes is None:
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 3 * nrows), squeeze=False)
    axes = np.asarray(axes).ravel()
    fig = axes[0].figure
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        im = ax.imshow(data[i], cmap=cmap, origin="lower", vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
        if colorbar:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03,
                         label="log10" if log and i % ncols == ncols - 1 else None)
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
        ax.set_ylabel(r"$P(k)$ [$(h^{-1}{\rm Mpc})^2$]")
    ax.set_xlabel(r"$k$ [$h\,{\rm Mpc}^{-1}$]")
    return ax


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
