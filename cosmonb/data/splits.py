"""Splits of map indices that never put one simulation in two sets.

Example:
    >>> train, val, test = split_by_simulation(150, seed=0)
    >>> len(train), len(val), len(test)
    (120, 15, 15)
"""
from __future__ import annotations

import numpy as np

from .._checks import as_finite_array, check_int, check_ndim
from ..constants import MAPS_PER_SIM

__all__ = ["sim_indices", "split_by_simulation"]


def sim_indices(sims, maps_per_sim: int = MAPS_PER_SIM) -> np.ndarray:
    """Map indices of the given simulations: sim ``s`` owns maps ``15 s ... 15 s + 14``.

    Example:
        >>> sim_indices([0, 2], maps_per_sim=3)
        array([0, 1, 2, 6, 7, 8])
    """
    sims = np.atleast_1d(np.asarray(sims))
    if sims.dtype.kind not in "iu":
        raise ValueError(f"sims: expected integer simulation indices, got dtype {sims.dtype}")
    return (sims[:, None] * maps_per_sim + np.arange(maps_per_sim)).ravel()


def split_by_simulation(n_maps: int, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                        maps_per_sim: int = MAPS_PER_SIM):
    """Split map indices ``0..n_maps-1`` into sets that never share a simulation.

    Map ``i`` belongs to simulation ``i // maps_per_sim``; simulations are
    shuffled with ``seed`` and dealt to the sets in proportion to
    ``fractions`` (any number of sets; they must sum to 1). Every set with a
    positive fraction gets at least one simulation when there are enough.
    Returns one sorted int64 index array per fraction.

    Example:
        >>> train, val, test = split_by_simulation(45, (0.6, 0.2, 0.2), seed=1)
        >>> len(train), len(val), len(test)
        (15, 15, 15)
        >>> np.unique(np.concatenate([train, val, test]) // 15).tolist()
        [0, 1, 2]
    """
    n_maps = check_int(n_maps, "n_maps", 1)
    maps_per_sim = check_int(maps_per_sim, "maps_per_sim", 1)
    if n_maps % maps_per_sim:
        raise ValueError(f"n_maps: expected a multiple of maps_per_sim={maps_per_sim}, got {n_maps}")
    frac = as_finite_array(fractions, "fractions")
    check_ndim(frac, "fractions", 1, "a sequence of fractions such as (0.8, 0.1, 0.1)")
    if np.any(frac < 0) or abs(frac.sum() - 1) > 1e-6:
        raise ValueError(f"fractions: expected non-negative fractions summing to 1, got {frac.tolist()}")
    n_sims = n_maps // maps_per_sim
    # largest-remainder allocation, then lift empty positive sets if possible
    raw = frac * n_sims
    counts = np.floor(raw).astype(int)
    for j in np.argsort(-(raw - counts), kind="stable")[: n_sims - counts.sum()]:
        counts[j] += 1
    for j in np.nonzero((frac > 0) & (counts == 0))[0]:
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[j] += 1
    perm = np.random.default_rng(seed).permutation(n_sims)
    out, start = [], 0
    for c in counts:
        sims = np.sort(perm[start:start + c])
        out.append(sim_indices(sims, maps_per_sim).astype(np.int64))
        start += c
    return tuple(out)
