"""Subfind HDF5 group catalogs (CAMELS ``groups_0XX.hdf5`` / ``fof_subhalo_tab_0XX.hdf5``).

:func:`load_subfind` and :func:`write_subfind` convert units at the boundary:
masses in Msun/h and positions in Mpc/h on the Python side, 1e10 Msun/h and kpc/h
in the file, as Subfind stores them.

Example:
    >>> SNAPSHOT_REDSHIFTS[33], SNAPSHOT_ALIASES[90]
    (0.0, 33)
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .._checks import as_finite_array, check_int, check_ndim
from ..runtime import atomic_path  # temp file named by PID; a killed writer's orphan goes at the next write
from .files import CorruptFileError

__all__ = ["SNAPSHOT_REDSHIFTS", "SNAPSHOT_ALIASES", "SUBFIND_MASS_UNIT", "KPC_PER_MPC", "SUBFIND_HINT", "snapshot_path", "load_subfind", "write_subfind"]


#: Redshifts of the Subfind snapshots used by the galaxy notebooks: the 34-snapshot numbering of
#: the original IllustrisTNG/SIMBA releases (030-033), and 090, z = 0 in the uniform 91-snapshot
#: numbering of the 2024 reorganisation (camels.readthedocs.io, "Simulations" / "SUBFIND
#: catalogs": "where 33 used to be the z=0 snapshot, now it is 90 uniformly for all suites").
#: The new numbers of z = 0.05-0.15 are not listed there, so they are not guessed here.
SNAPSHOT_REDSHIFTS = {30: 0.15, 31: 0.10, 32: 0.05, 33: 0.00, 90: 0.00}


#: the same z = 0 catalog under its old and its new number
SNAPSHOT_ALIASES = {33: 90, 90: 33}


#: Subfind stores masses in 1e10 Msun/h and lengths in kpc/h.
SUBFIND_MASS_UNIT = 1e10


KPC_PER_MPC = 1e3


SUBFIND_HINT = (
    "CAMELS distributes Subfind catalogs under FOF_Subfind/<suite>/<set>/<set>_<n>/ "
    "of the CAMELS data release (https://camels.readthedocs.io, e.g. via Globus "
    "or the Flatiron binder).")


def snapshot_path(root, snap: int) -> Path:
    """Path of the Subfind catalog of snapshot ``snap`` in one simulation folder.

    Looks for the current name ``groups_0XX.hdf5``, then the old
    ``fof_subhalo_tab_0XX.hdf5``; for z = 0 under either number, 033 (old) or 090
    (the 2024 renumbering, SNAPSHOT_ALIASES). SNAPSHOT_REDSHIFTS gives the redshifts.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = open(os.path.join(tmp.name, "fof_subhalo_tab_033.hdf5"), "w")
        >>> snapshot_path(tmp.name, 33).name
        'fof_subhalo_tab_033.hdf5'
        >>> tmp.cleanup()
    """
    snap = check_int(snap, "snap", 0)
    root = Path(root)
    names = [f"groups_{snap:03d}.hdf5", f"fof_subhalo_tab_{snap:03d}.hdf5"]
    if snap in SNAPSHOT_ALIASES:
        alias = SNAPSHOT_ALIASES[snap]
        names += [f"groups_{alias:03d}.hdf5", f"fof_subhalo_tab_{alias:03d}.hdf5"]
    for name in names:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"Subfind catalog of snapshot {snap} not found: expected "
                            f"'{names[0]}' or '{names[1]}' in {root}. {SUBFIND_HINT}")


def _header_count(f, *keys):
    """The first of ``keys`` found in the Header attributes, as an int; None if none is."""
    header = f.get("Header")
    if header is None:
        return None
    for k in keys:
        if k in header.attrs:
            return int(np.asarray(header.attrs[k]).ravel()[0])
    return None


def load_subfind(path, galaxies_only: bool = False) -> dict:
    """Read a Subfind HDF5 catalog into physical units (Msun/h, Mpc/h).

    Returns a dict of arrays, one entry per subhalo unless noted:

    * ``stellar_mass``: ``SubhaloMassType[:, 4]`` in Msun/h
    * ``total_mass``: ``SubhaloMass`` in Msun/h
    * ``mass_type``: ``SubhaloMassType`` (N, 6) in Msun/h
    * ``position``: ``SubhaloPos`` converted from kpc/h to **Mpc/h**, (N, 3)
    * ``group_mass``, ``group_m200c``: ``Group/GroupMass`` and
      ``Group/Group_M_Crit200`` in Msun/h (one per FoF group)
    * ``redshift``, ``box_size`` (Mpc/h): from the header when present, else NaN
    * ``n_dropped``: subhalos removed by ``galaxies_only`` (0 otherwise)

    ``galaxies_only=True`` keeps subhalos with stellar mass > 0 (the CAMELS
    definition of a galaxy); how many were dropped is in ``n_dropped``.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> fname = os.path.join(tmp.name, "groups_033.hdf5")
        >>> write_subfind(fname, stellar_mass=[1e9, 0.0], total_mass=[1e12, 1e10],
        ...               position=[[1, 2, 3], [4, 5, 6]])
        >>> cat = load_subfind(fname, galaxies_only=True)
        >>> cat["stellar_mass"].tolist(), cat["position"][0].tolist(), cat["n_dropped"]
        ([1000000000.0], [1.0, 2.0, 3.0], 1)
        >>> tmp.cleanup()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Subfind catalog not found: expected '{path.name}' in "
                                f"{path.parent}. {SUBFIND_HINT}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CorruptFileError(f"cannot read Subfind catalog {path} as HDF5 ({err}); "
                               f"the file may be truncated") from err

    def read(name, ncols, count):
        if name in f:
            try:
                arr = np.asarray(f[name][...], dtype=np.float64)
            except OSError as err:
                raise CorruptFileError(f"Subfind catalog {path}: cannot read {name} ({err})") from err
        elif count == 0:  # Subfind omits the datasets of empty tables
            arr = np.zeros((0, ncols) if ncols else (0,))
        else:
            raise ValueError(f"Subfind catalog {path}: missing dataset '{name}' "
                             f"(expected the Subfind layout Subhalo/..., Group/...)")
        want = (arr.shape[0], ncols) if ncols else (arr.shape[0],)
        if arr.shape != want:
            raise ValueError(f"Subfind catalog {path}: {name} has shape {arr.shape}, expected "
                             f"{'(N, %d)' % ncols if ncols else '(N,)'}")
        return arr

    with f:
        # a catalog split over files counts this file's part in *_ThisFile, the whole in *_Total
        n_sub = _header_count(f, "Nsubhalos_ThisFile", "Nsubgroups_ThisFile",
                              "Nsubhalos_Total", "Nsubgroups_Total")
        n_grp = _header_count(f, "Ngroups_ThisFile", "Ngroups_Total")
        mass = read("Subhalo/SubhaloMass", 0, n_sub)
        mtype = read("Subhalo/SubhaloMassType", 6, n_sub)
        pos = read("Subhalo/SubhaloPos", 3, n_sub)
        gmass = read("Group/GroupMass", 0, n_grp)
        gm200 = read("Group/Group_M_Crit200", 0, n_grp)
        header = f["Header"].attrs if "Header" in f else {}
        redshift = float(np.asarray(header["Redshift"]).ravel()[0]) if "Redshift" in header else np.nan
        box = (float(np.asarray(header["BoxSize"]).ravel()[0]) / KPC_PER_MPC
               if "BoxSize" in header else np.nan)
    if not (len(mass) == len(mtype) == len(pos)):
        raise ValueError(f"Subfind catalog {path}: SubhaloMass, SubhaloMassType and SubhaloPos "
                         f"have different lengths {len(mass)}, {len(mtype)}, {len(pos)}")
    if len(gmass) != len(gm200):
        raise ValueError(f"Subfind catalog {path}: Group/GroupMass and Group/Group_M_Crit200 have "
                         f"different lengths {len(gmass)}, {len(gm200)}")
    for what, count, n in (("subhalos", n_sub, len(mass)), ("groups", n_grp, len(gmass))):
        if count is not None and count != n:
            raise ValueError(f"Subfind catalog {path}: the Header counts {count} {what}, but the "
                             f"{'Subhalo' if what == 'subhalos' else 'Group'}/ datasets hold {n}; "
                             "the file is inconsistent (truncated or mixed from two catalogs)")
    for name, arr in (("SubhaloMass", mass), ("SubhaloMassType", mtype), ("SubhaloPos", pos),
                      ("GroupMass", gmass), ("Group_M_Crit200", gm200)):
        as_finite_array(arr, f"Subfind catalog {path}: {name}")
    for name, arr in (("SubhaloMass", mass), ("SubhaloMassType", mtype),
                      ("GroupMass", gmass), ("Group_M_Crit200", gm200)):
        neg = int(np.count_nonzero(arr < 0))
        if neg:
            raise ValueError(f"Subfind catalog {path}: {name} has {neg} negative masses "
                             f"(min {arr.min():.4g} x 1e10 Msun/h); masses must be >= 0")

    out = {
        "stellar_mass": mtype[:, 4] * SUBFIND_MASS_UNIT,
        "total_mass": mass * SUBFIND_MASS_UNIT,
        "mass_type": mtype * SUBFIND_MASS_UNIT,
        "position": pos / KPC_PER_MPC,
    }
    n_dropped = 0
    if galaxies_only:
        keep = out["stellar_mass"] > 0
        n_dropped = int(np.count_nonzero(~keep))
        out = {k: v[keep] for k, v in out.items()}
    out["group_mass"] = gmass * SUBFIND_MASS_UNIT
    out["group_m200c"] = gm200 * SUBFIND_MASS_UNIT
    out["redshift"] = redshift
    out["box_size"] = box
    out["n_dropped"] = n_dropped
    return out


def write_subfind(path, stellar_mass, total_mass, position, group_mass=None,
                  group_m200c=None, *, redshift: float | None = None,
                  box_size: float = 25.0, mass_type=None, attrs: dict | None = None,
                  dtype=np.float64) -> None:
    """Write a catalog in the Subfind HDF5 layout that :func:`load_subfind` (and CAMELS code) reads.

    Inputs are in the units load_subfind returns: masses in Msun/h, positions
    and ``box_size`` in Mpc/h; they are stored as Subfind does (1e10 Msun/h,
    kpc/h). Without ``mass_type`` the (N, 6) ``SubhaloMassType`` gets the stellar
    mass in column 4 and the rest of the total mass in column 1 (dark matter),
    so it sums to ``SubhaloMass``. ``attrs`` go to the ``Header`` (e.g. the
    simulator's seed and parameters). The file is written atomically.
    ``dtype=np.float32`` stores what CAMELS stores; the float64 default makes a
    write/read round trip exact.

    Example:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> fname = os.path.join(tmp.name, "groups_033.hdf5")
        >>> write_subfind(fname, [1e9], [1e12], [[1.0, 2.0, 3.0]], group_mass=[2e12], redshift=0.0)
        >>> h5py.File(fname, "r")["Subhalo/SubhaloPos"][0].tolist()
        [1000.0, 2000.0, 3000.0]
        >>> tmp.cleanup()
    """
    ms = as_finite_array(stellar_mass, "stellar_mass")
    mt = as_finite_array(total_mass, "total_mass")
    pos = as_finite_array(position, "position")
    check_ndim(ms, "stellar_mass", 1, "a 1D array of stellar masses (Msun/h)")
    check_ndim(mt, "total_mass", 1, "a 1D array of total masses (Msun/h)")
    if pos.shape != (len(ms), 3):
        raise ValueError(f"position: expected shape ({len(ms)}, 3) in Mpc/h, got {pos.shape}")
    if mt.shape != ms.shape:
        raise ValueError(f"total_mass: expected shape {ms.shape} like stellar_mass, got {mt.shape}")
    if np.any(ms < 0) or np.any(mt < 0):
        raise ValueError("stellar_mass, total_mass: expected masses >= 0 (Msun/h)")
    if mass_type is None:
        if np.any(mt < ms):
            raise ValueError("total_mass: expected total_mass >= stellar_mass for every subhalo")
        mtype = np.zeros((len(ms), 6))
        mtype[:, 4] = ms
        mtype[:, 1] = mt - ms
    else:
        mtype = as_finite_array(mass_type, "mass_type")
        if mtype.shape != (len(ms), 6):
            raise ValueError(f"mass_type: expected shape ({len(ms)}, 6) in Msun/h, got {mtype.shape}")
    groups = {}
    for name, arr in (("GroupMass", group_mass), ("Group_M_Crit200", group_m200c)):
        arr = np.zeros(0) if arr is None else as_finite_array(arr, name)
        check_ndim(arr, name, 1, "a 1D array of group masses (Msun/h)")
        groups[name] = arr
    if group_mass is not None and group_m200c is None:
        groups["Group_M_Crit200"] = np.zeros_like(groups["GroupMass"])
    if group_m200c is not None and group_mass is None:
        groups["GroupMass"] = np.zeros_like(groups["Group_M_Crit200"])
    if len(groups["GroupMass"]) != len(groups["Group_M_Crit200"]):
        raise ValueError("group_mass, group_m200c: expected the same length")
    box_size = float(as_finite_array(box_size, "box_size"))

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            hdr = f.create_group("Header")
            hdr.attrs["BoxSize"] = box_size * KPC_PER_MPC
            if redshift is not None:
                hdr.attrs["Redshift"] = float(redshift)
                hdr.attrs["Time"] = 1.0 / (1.0 + float(redshift))
            hdr.attrs["Nsubhalos_Total"] = len(ms)
            hdr.attrs["Ngroups_Total"] = len(groups["GroupMass"])
            hdr.attrs["cosmonb_units_note"] = "masses 1e10 Msun/h, lengths kpc/h (Subfind units)"
            for k, v in (attrs or {}).items():
                hdr.attrs[k] = v
            sub = f.create_group("Subhalo")
            sub["SubhaloMass"] = (mt / SUBFIND_MASS_UNIT).astype(dtype)
            sub["SubhaloMassType"] = (mtype / SUBFIND_MASS_UNIT).astype(dtype)
            sub["SubhaloPos"] = (pos * KPC_PER_MPC).astype(dtype)
            grp = f.create_group("Group")
            for name, arr in groups.items():
                grp[name] = (arr / SUBFIND_MASS_UNIT).astype(dtype)
