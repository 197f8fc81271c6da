"""The map data of the generative notebooks (03 HIGlow, 04 VDVAE, 05 DDPM), built-in or real CAMELS.

:func:`map_sets` gives one LH set of 2D maps split by simulation into training,
validation and test :class:`~cosmonb.data.CMDDataset` objects. Every item is
``(x, theta)``: ``x = (log10(map) - mean_c) / std_c`` per channel ``c``
(statistics of the training set), ``theta`` the first ``n_params`` CAMELS
parameters scaled to [0, 1] over the LH prior,

    u_i = (theta_i - low_i) / (high_i - low_i).

* Built-in (default): ``sims.lh_set`` + ``sims.simulate`` (a Latin hypercube of
  ``n_sims`` simulations with ``maps_per_sim`` maps each, exactly as CMD
  numbers them: map i belongs to simulation i // maps_per_sim).
* Real CAMELS: ``data_root`` (or ``$DATA_ROOT``) holding CMD's
  ``Maps_{field}_{suite}_LH_z=0.00.npy`` and ``params_LH_{suite}.txt``, read with
  :func:`cosmonb.data.load_cmd` and block-averaged to ``n_pix``.

:class:`AugmentedBatches` feeds the :class:`~cosmonb.train.Trainer`: ``epoch -> batches``
with the symmetries of the periodic square (8 rotations and flips, optionally random
periodic rolls) drawn from ``(seed, epoch)`` alone, so a run resumed mid-epoch sees the
same batches, and any number of processes the same global batch.

Example:
    >>> sets = map_sets(("HI",), n_pix=16, n_sims=10, maps_per_sim=2)
    >>> x, u = sets.train[0]
    >>> tuple(x.shape), tuple(u.shape), sets.source
    ((1, 16, 16), (2,), 'built-in simulator (cosmonb.sims), 10 simulations x 2 maps')
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import data, sims
from .._checks import check_int
from ..constants import MAPS_PER_SIM, PRIOR_HIGH, PRIOR_LOW

__all__ = ["MapSets", "map_sets", "map_split_index", "map_split", "exact_bits_per_dim", "resolve_data_root",
           "AugmentedBatches", "fixed_batches", "dihedral"]


@dataclass
class MapSets:
    """Training, validation and test sets of one map collection (see :func:`map_sets`).

    ``maps`` (N, C, H, W) in physical units and ``params`` (N, 6) are the whole
    collection; ``splits`` maps "train"/"val"/"test" to map indices;
    ``normaliser`` is the training set's (store it in a checkpoint).
    """

    train: data.CMDDataset
    val: data.CMDDataset
    test: data.CMDDataset
    maps: np.ndarray
    params: np.ndarray
    splits: dict
    fields: tuple
    source: str

    @property
    def normaliser(self) -> dict:
        return self.train.normaliser


def resolve_data_root(data_root=None):
    """``data_root``, else ``$DATA_ROOT``, else None (the built-in simulator); a missing folder raises."""
    root = data_root if data_root is not None else (os.environ.get("DATA_ROOT", "").strip() or None)
    if root is None:
        return None
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} is not a folder (from "
                                f"{'data_root' if data_root is not None else 'DATA_ROOT'}); unset it to use "
                                f"the built-in simulator")
    return root


def map_sets(fields, n_pix: int = 64, *, n_sims: int = 1000, maps_per_sim: int = 15, n_params: int = 2,
             data_root=None, suite: str = "IllustrisTNG", fractions=(0.8, 0.1, 0.1), seed: int = 0,
             augment: bool = False, roll: bool = False, progress: bool = False) -> MapSets:
    """Split LH maps of ``fields`` by simulation into normalised training / validation / test sets.

    ``augment`` (the 8 symmetries of the square) and ``roll`` (random periodic
    shifts) make the training set draw them per item, from a stream the trainer's
    state does not hold; training recipes leave them off and use
    :class:`AugmentedBatches`, whose draws depend on ``(seed, epoch)`` only. ``n_params`` keeps the first
    parameters as the condition (2: Omega_m and sigma_8; 6: all of them).
    ``maps_per_sim`` sizes the built-in set; CMD files always hold 15 per simulation.
    """
    fields = (fields,) if isinstance(fields, str) else tuple(fields)
    n_sims = check_int(n_sims, "n_sims", 1)
    maps_per_sim = check_int(maps_per_sim, "maps_per_sim", 1)
    n_params = check_int(n_params, "n_params", 1)
    if n_params > 6:
        raise ValueError(f"n_params: CAMELS has 6 parameters, got {n_params}")
    root = resolve_data_root(data_root)
    if root is None:
        params, _ = sims.lh_set(n_sims, maps_per_sim, seed=seed)
        maps = sims.simulate(params, fields, n_pix=n_pix, seed=seed, progress=progress)
        source = f"built-in simulator (cosmonb.sims), {n_sims} simulations x {maps_per_sim} maps"
    else:
        maps_per_sim = MAPS_PER_SIM  # CMD files hold 15 maps per simulation, whatever the preset's built-in size
        maps, params = data.load_cmd(root, list(fields), suite=suite, set="LH", n_pix=n_pix,
                                     sims=np.arange(n_sims), progress=progress)
        source = f"CMD files in {root} ({suite} LH, {n_sims} simulations)"
    train_idx, val_idx, test_idx = data.split_by_simulation(len(maps), fractions, seed=seed,
                                                            maps_per_sim=maps_per_sim)
    cond = np.ascontiguousarray(params[:, :n_params])
    prior = (PRIOR_LOW[:n_params], PRIOR_HIGH[:n_params])
    train = data.CMDDataset(maps, cond, train_idx, param_range=prior, augment=augment, roll=roll, seed=seed)
    val = data.CMDDataset.like(train, maps, cond, val_idx)
    test = data.CMDDataset.like(train, maps, cond, test_idx)
    return MapSets(train, val, test, maps, params, {"train": train_idx, "val": val_idx, "test": test_idx},
                   fields, source)


def map_split_index(n_sims: int, maps_per_sim: int, fractions=(0.8, 0.1, 0.1), *, seed: int = 0) -> dict:
    """``{"train", "val", "test"} -> map indices`` of :func:`map_sets`' split by simulation, without any maps.

    Example:
        >>> {k: len(v) for k, v in map_split_index(400, 15).items()}
        {'train': 4800, 'val': 600, 'test': 600}
    """
    n_sims = check_int(n_sims, "n_sims", 1)
    maps_per_sim = check_int(maps_per_sim, "maps_per_sim", 1)
    parts = data.split_by_simulation(n_sims * maps_per_sim, fractions, seed=seed, maps_per_sim=maps_per_sim)
    return dict(zip(("train", "val", "test"), parts))


def map_split(fields, n_pix: int, split: str = "test", *, n_sims: int, maps_per_sim: int,
              fractions=(0.8, 0.1, 0.1), seed: int = 0, data_root=None, select=None):
    """The maps of one split of :func:`map_sets` without making the others: ``(maps, params, index)``.

    ``maps`` (n, C, H, W) in physical units, ``params`` (n, 6) and ``index`` (n,) their
    positions in the whole LH set: the maps ``map_sets(fields, n_pix, n_sims=..., maps_per_sim=...,
    fractions=..., seed=seed)`` puts in ``split``. ``select`` picks positions within the split
    (default all). With the built-in simulator only those maps are simulated
    (``sims.simulate(..., indices=)``), so a notebook gets a few held-out maps in a second; CMD
    files (``data_root``) are read with the whole set's 15 maps per simulation.

    Example:
        >>> maps, params, index = map_split(("HI",), 16, "test", n_sims=10, maps_per_sim=2)
        >>> full = map_sets(("HI",), 16, n_sims=10, maps_per_sim=2)
        >>> bool(np.array_equal(index, full.splits["test"])), bool(np.array_equal(maps, full.maps[index]))
        (True, True)
    """
    fields = (fields,) if isinstance(fields, str) else tuple(fields)
    names = ("train", "val", "test")
    if split not in names:
        raise ValueError(f"split: expected one of {names}, got {split!r}")
    root = resolve_data_root(data_root)
    per_sim = maps_per_sim if root is None else MAPS_PER_SIM
    index = map_split_index(n_sims, per_sim, fractions, seed=seed)[split]
    if select is not None:
        select = np.asarray(select, dtype=np.int64)
        if select.ndim != 1 or np.any(select < 0) or np.any(select >= len(index)):
            raise ValueError(f"select: expected positions in 0..{len(index) - 1} of the {split} split, got "
                             f"{select if select.size < 8 else select.shape}")
        index = index[select]
    if root is not None:
        sets = map_sets(fields, n_pix, n_sims=n_sims, n_params=6, data_root=root, fractions=fractions, seed=seed)
        return np.asarray(sets.maps[index]), sets.params[index], index
    params, _ = sims.lh_set(n_sims, maps_per_sim, seed=seed)
    maps = sims.simulate(params[index], fields, n_pix=n_pix, seed=seed, indices=index)
    return maps, params[index], index


def exact_bits_per_dim(maps, params, fields, normaliser: dict) -> np.ndarray:
    r"""The simulator's exact bits per dimension of maps in a model's standardised units, given all six parameters.

    A map model that works on ``x_c = (log10(X_c + o) - mean_c) / std_c`` (the normaliser of
    :func:`map_sets`, offset ``o``) has its density over ``x``; the simulator knows
    ``ln p(X | theta_6)`` (:func:`cosmonb.sims.multifield_log_likelihood`). Pixel by pixel
    ``X = 10^(mean_c + std_c x) - o``, so ``dX/dx = (X + o) ln(10) std_c`` and

        ln p(x | theta_6) = ln p(X | theta_6) + sum_{c, pixels} ln((X + o) ln(10) std_c),

    returned per map as ``-ln p(x | theta_6) / (D ln 2)`` with ``D = C H W``. No model of the
    maps can beat it on average (a model that does not know the parameters pays, on top, the
    information the map carries about them).

    Example:
        >>> maps = sims.simulate(np.tile(sims.FIDUCIAL, (2, 1)), ("Mgas", "HI"), n_pix=16, seed=1)
        >>> norm = data.compute_normaliser(maps, np.tile(sims.FIDUCIAL, (2, 1)))
        >>> exact_bits_per_dim(maps, np.tile(sims.FIDUCIAL, (2, 1)), ("Mgas", "HI"), norm).shape
        (2,)
    """
    fields = (fields,) if isinstance(fields, str) else tuple(fields)
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[1] != len(fields):
        raise ValueError(f"maps: expected (N, {len(fields)}, H, W) maps of {fields}, got shape {arr.shape}")
    if not isinstance(normaliser, dict) or not normaliser.get("log10") or "std" not in normaliser:
        raise ValueError("normaliser: expected a log10 + standardisation normaliser (map_sets(...).normaliser)")
    std = np.asarray(normaliser["std"], dtype=np.float64)
    if std.shape != (len(fields),):
        raise ValueError(f"normaliser: has {std.size} channel(s), the maps {len(fields)}")
    offset = float(normaliser.get("log10_offset", 0.0))
    ln_px = sims.multifield_log_likelihood(arr, params, fields)
    jac = np.log((arr + offset) * math.log(10.0) * std[None, :, None, None]).sum(axis=(1, 2, 3))
    return -(ln_px + jac) / (arr[0].size * math.log(2.0))


# --------------------------------------------------------------------------- batches
def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry ``k`` (0-7) of the square on the last two axes: ``k % 4`` quarter turns, then a flip if ``k >= 4``.

    Example:
        >>> x = torch.arange(4.0).reshape(1, 2, 2)
        >>> [dihedral(x, k)[0, 0].tolist() for k in (0, 1, 4)]
        [[0.0, 1.0], [1.0, 3.0], [1.0, 0.0]]
    """
    if not 0 <= int(k) < 8:
        raise ValueError(f"k: expected a symmetry index in 0..7, got {k}")
    x = torch.rot90(x, int(k) % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


class AugmentedBatches:
    """Training batches ``epoch -> iterator of (x, theta)``, a function of ``(seed, epoch)`` alone.

    Each epoch draws, from ``np.random.default_rng([seed, epoch])``, a permutation of the
    dataset's items ``(x, theta)`` and, per item, one of the 8 symmetries of the square
    (``symmetries=True``) and a periodic shift ``(dy, dx)`` (``roll=True``). The permutation is
    cut into global batches of ``batch_size`` (the last incomplete one dropped); process
    ``rank`` of ``world_size`` takes the ``rank``-th contiguous share of each. Nothing depends on the
    global RNG or on earlier calls, so a resumed :class:`~cosmonb.train.Trainer` sees the
    same batches, and 1 or N processes the same global batch. ``len()`` is the number of
    batches per epoch.

    Example:
        >>> items = [(torch.full((1, 4, 4), float(i)), torch.tensor([i / 10])) for i in range(10)]
        >>> batches = AugmentedBatches(items, 4, seed=1, roll=True)
        >>> x, theta = next(iter(batches(0)))
        >>> len(batches), tuple(x.shape), torch.equal(x, next(iter(batches(0)))[0])
        (2, (4, 1, 4, 4), True)
    """

    def __init__(self, dataset, batch_size: int, *, seed: int = 0, symmetries: bool = True, roll: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.dataset = dataset
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.world = check_int(world_size, "world_size", 1)
        self.rank = check_int(rank, "rank", 0)
        if self.rank >= self.world:
            raise ValueError(f"rank: expected 0 <= rank < world_size={self.world}, got {rank}")
        if self.batch_size % self.world:
            raise ValueError(f"batch_size: the global batch ({batch_size}) must divide among {world_size} processes")
        self.seed, self.symmetries, self.roll = int(seed), bool(symmetries), bool(roll)
        if len(self) < 1:
            raise ValueError(f"dataset: {len(dataset)} maps are fewer than one batch of {batch_size}")

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def __call__(self, epoch: int = 0):
        n = len(self.dataset)
        rng = np.random.default_rng([self.seed, int(epoch)])
        order, symmetry, shift = rng.permutation(n), rng.integers(0, 8, size=n), rng.random((n, 2))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            xs, thetas = [], []
            per = self.batch_size // self.world
            for j in range(start + self.rank * per, start + (self.rank + 1) * per):
                x, theta = self.dataset[int(order[j])]
                if self.symmetries:
                    x = dihedral(x, int(symmetry[j]))
                if self.roll:
                    dy, dx = (shift[j] * np.array(x.shape[-2:])).astype(int)
                    x = torch.roll(x, (int(dy), int(dx)), dims=(-2, -1))
                xs.append(x)
                thetas.append(theta)
            yield torch.stack(xs), torch.stack(thetas)


def fixed_batches(dataset, batch_size: int, rank: int = 0, world_size: int = 1) -> list:
    """The items of ``dataset`` in order, as a list of ``(x, theta)`` batches (rows ``rank::world_size``).

    Validation and test sets: the same batches every time, no augmentation.

    Example:
        >>> items = [(torch.zeros(1, 2, 2), torch.tensor([float(i)])) for i in range(5)]
        >>> [tuple(t.flatten().tolist()) for _, t in fixed_batches(items, 2)]
        [(0.0, 1.0), (2.0, 3.0), (4.0,)]
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    items = [dataset[i] for i in range(rank, len(dataset), world_size)]
    return [(torch.stack([x for x, _ in items[i:i + batch_size]]), torch.stack([t for _, t in items[i:i + batch_size]]))
            for i in range(0, len(items), batch_size)]
