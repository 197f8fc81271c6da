"""Maps and parameters as a torch Dataset, with the symmetries of the periodic square as augmentation."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import as_finite_array, check_ndim
from .transforms import compute_normaliser, denormalise_maps, denormalise_params, normalise_maps, normalise_params

__all__ = ["CMDDataset"]


def _dihedral(x, k):
    """Symmetry ``k`` in 0..7 of the square on the last two axes: rot90^(k % 4), then a flip if k >= 4."""
    y = np.rot90(x, k % 4, axes=(-2, -1))
    if k >= 4:
        y = y[..., ::-1]
    return np.ascontiguousarray(y)


class CMDDataset(Dataset):
    """Maps + parameters as a torch Dataset of ``(x (C, H, W), theta (P,))`` float32 tensors.

    ``maps`` is ``(N, C, H, W)`` (numpy, memmap or the lazy :class:`CMDMaps`);
    ``params`` is ``(N, P)`` in physical units; ``indices`` picks this set's
    maps (from :func:`split_by_simulation`) without copying. Each item is
    ``normalise_maps(maps[i])`` (log10, then per-channel standardisation) and
    ``normalise_params(params[i])``.

    Without a ``normaliser`` the statistics are computed on this dataset (so
    build the training set first) and kept in ``.normaliser``, a plain dict to
    store in a checkpoint; pass it to the validation / test sets, or use
    :meth:`like`. ``augment=True`` applies one of the 8 symmetries of the square
    (rotations by 90 degrees and flips), drawn from a generator seeded with
    ``seed`` (and the DataLoader worker's seed inside workers); ``roll=True``
    also shifts the map periodically by a random (dy, dx), which the periodic
    simulation box allows. For DataLoader
    workers started with "spawn" (macOS, Windows) pass the lazy ``CMDMaps``,
    which pickles by file name, rather than a raw ``np.memmap``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> maps = rng.lognormal(size=(45, 2, 8, 8)).astype(np.float32)
        >>> params = np.repeat(rng.uniform(0.1, 0.9, (3, 6)), 15, axis=0)
        >>> from cosmonb.data import split_by_simulation
        >>> tr, va, te = split_by_simulation(45, (0.4, 0.3, 0.3))
        >>> train = CMDDataset(maps, params, tr, augment=True)
        >>> val = CMDDataset.like(train, maps, params, va)
        >>> x, theta = train[0]
        >>> x.shape, theta.shape, x.dtype
        (torch.Size([2, 8, 8]), torch.Size([6]), torch.float32)
    """

    def __init__(self, maps, params, indices=None, *, log10: bool = True,
                 log10_offset: float = 0.0, standardise: bool = True,
                 param_norm: str | None = "minmax", param_range=None,
                 normaliser: dict | None = None, augment: bool = False, roll: bool = False,
                 seed: int = 0):
        shape = getattr(maps, "shape", None)
        if shape is None:
            maps = np.asarray(maps)
            shape = maps.shape
        if len(shape) != 4:
            raise ValueError(f"maps: expected a (N, C, H, W) array (use maps[:, None] for a "
                             f"single field), got shape {tuple(shape)}")
        params = as_finite_array(params, "params")
        if params.ndim == 1:
            params = params[:, None]
        check_ndim(params, "params", 2, "a (N, n_params) array")
        if len(params) != shape[0]:
            raise ValueError(f"params: expected {shape[0]} rows (one per map), got {len(params)}")
        if indices is None:
            indices = np.arange(shape[0])
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise ValueError("indices: expected a 1D array of integer map indices")
        if indices.size and (indices.min() < 0 or indices.max() >= shape[0]):
            raise ValueError(f"indices: expected values in [0, {shape[0] - 1}]")
        self.maps, self.params, self.indices = maps, params, indices.astype(np.int64)
        if normaliser is None:
            normaliser = compute_normaliser(maps, params, self.indices, log10=log10,
                                            log10_offset=log10_offset, standardise=standardise,
                                            param_norm=param_norm, param_range=param_range)
        else:
            normaliser = dict(normaliser)
            if len(normaliser["mean"]) != shape[1]:
                raise ValueError(f"normaliser: made for {len(normaliser['mean'])} channel(s), "
                                 f"maps have {shape[1]}")
            if len(normaliser["param_shift"]) != params.shape[1]:
                raise ValueError(f"normaliser: made for {len(normaliser['param_shift'])} "
                                 f"parameters, params have {params.shape[1]}")
        self.normaliser = normaliser
        self.augment = bool(augment)
        self.roll = bool(roll)
        self.seed = seed
        self._rng = None
        self._rng_key = None

    @classmethod
    def like(cls, other: "CMDDataset", maps, params, indices=None, *,
             augment: bool = False, roll: bool = False, seed: int = 0) -> "CMDDataset":
        """A dataset on other maps with ``other``'s normaliser (validation / test sets).

        Example:
            >>> maps = np.ones((15, 1, 4, 4)) + np.arange(15)[:, None, None, None]
            >>> train = CMDDataset(maps, np.ones((15, 6)), np.arange(10))
            >>> CMDDataset.like(train, maps, np.ones((15, 6)), np.arange(10, 15)).normaliser == train.normaliser
            True
        """
        return cls(maps, params, indices, normaliser=other.normaliser, augment=augment, roll=roll, seed=seed)

    def __len__(self):
        return len(self.indices)

    def _generator(self):
        info = torch.utils.data.get_worker_info()
        key = None if info is None else (info.id, info.seed)
        if self._rng is None or key != self._rng_key:
            entropy = [int(self.seed)] + ([] if info is None else [int(info.seed) % 2**63])
            self._rng, self._rng_key = np.random.default_rng(entropy), key
        return self._rng

    def __getitem__(self, i):
        j = int(self.indices[i])
        try:
            x = normalise_maps(np.asarray(self.maps[j], dtype=np.float64), self.normaliser)
        except ValueError as err:
            raise ValueError(f"maps[{j}]: {err}") from err
        if self.augment:
            x = _dihedral(x, int(self._generator().integers(8)))
        if self.roll:
            shift = self._generator().integers(0, x.shape[-2:])
            x = np.roll(x, (int(shift[0]), int(shift[1])), axis=(-2, -1))
        theta = normalise_params(self.params[j], self.normaliser)
        return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                torch.from_numpy(np.asarray(theta, dtype=np.float32)))

    def denormalise_params(self, u):
        """Normalised parameters back to physical units (see :func:`denormalise_params`)."""
        return denormalise_params(u, self.normaliser)

    def denormalise_maps(self, z):
        """Normalised maps back to physical units (see :func:`denormalise_maps`)."""
        return denormalise_maps(z, self.normaliser)
