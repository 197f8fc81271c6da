"""Tests of cosmonb.data on small files written in the exact CAMELS formats."""
from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest
import torch

from cosmonb import data
from cosmonb.data import (CMD_FIELDS, MAPS_PER_SIM, PARAM_NAMES, SNAPSHOT_REDSHIFTS,
                          CMDDataset, CMDMaps, CorruptFileError, cached, denormalise_maps,
                          denormalise_params, load_cache, load_cmd, load_subfind,
                          read_cache_attrs, read_params, save_cache, snapshot_path,
                          split_by_simulation, write_subfind)

N_SIMS, NPIX = 3, 32
TABLE = np.array([[0.30, 0.80, 1.00, 1.00, 1.00, 1.00],
                  [0.15, 0.65, 3.10, 0.40, 0.70, 1.80],
                  [0.45, 0.95, 0.30, 2.50, 1.90, 0.55]])


def _maps(seed, n_sims=N_SIMS, npix=NPIX):
    rng = np.random.default_rng(seed)
    return rng.lognormal(10.0, 1.0, size=(n_sims * MAPS_PER_SIM, npix, npix)).astype(np.float32)


def _write_params(path, table, style="plain"):
    lines = []
    if style == "hash_header":
        lines.append("# " + " ".join(PARAM_NAMES))
    if style == "text_header":
        lines.append(" ".join(PARAM_NAMES) + " seed")
    for i, row in enumerate(table):
        vals = " ".join(f"{v:.6f}" for v in row)
        if style in ("seed", "text_header"):
            vals += f" {1000 + 17 * i}"
        if style == "name_seed":
            vals = f"LH_{i} {vals} {1000 + i}"
        lines.append(vals)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def cmd_root(tmp_path):
    fields = {"Mcdm": _maps(1), "HI": _maps(2)}
    for name, arr in fields.items():
        np.save(tmp_path / f"Maps_{name}_IllustrisTNG_LH_z=0.00.npy", arr)
    _write_params(tmp_path / "params_LH_IllustrisTNG.txt", TABLE)
    return tmp_path, fields


# ---------------------------------------------------------------- CMD maps

def test_constants():
    assert PARAM_NAMES == ("Omega_m", "sigma_8", "A_SN1", "A_AGN1", "A_SN2", "A_AGN2")
    assert len(CMD_FIELDS) == 13 and "B" in CMD_FIELDS and MAPS_PER_SIM == 15
    # issue 9: 090 is z = 0 in the 2024 numbering (CAMELS docs), beside the old 030-033
    assert SNAPSHOT_REDSHIFTS == {30: 0.15, 31: 0.10, 32: 0.05, 33: 0.00, 90: 0.00}


def test_load_cmd_values_and_param_rows(cmd_root):
    root, fields = cmd_root
    maps, params = load_cmd(root, "Mcdm")
    assert maps.shape == (45, 1, NPIX, NPIX) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps[:, 0], fields["Mcdm"])
    assert params.shape == (45, 6)
    for i in range(45):
        np.testing.assert_allclose(params[i], TABLE[i // 15])


def test_load_cmd_stacks_fields_as_channels(cmd_root):
    root, fields = cmd_root
    maps, _ = load_cmd(root, ["HI", "Mcdm"])
    assert maps.shape == (45, 2, NPIX, NPIX)
    np.testing.assert_array_equal(maps[:, 0], fields["HI"])
    np.testing.assert_array_equal(maps[:, 1], fields["Mcdm"])


@pytest.mark.parametrize("style", ["plain", "hash_header", "text_header", "seed", "name_seed"])
def test_read_params_formats(tmp_path, style):
    fname = tmp_path / "params_LH_IllustrisTNG.txt"
    _write_params(fname, TABLE, style)
    np.testing.assert_allclose(read_params(fname), TABLE, atol=1e-6)


def test_read_params_rejects_index_column(tmp_path):
    fname = tmp_path / "params.txt"
    fname.write_text("".join(f"{i} " + " ".join(map(str, r)) + "\n" for i, r in enumerate(TABLE, 5)))
    with pytest.raises(ValueError, match="Omega_m"):
        read_params(fname)


def test_sims_reads_only_those_simulations(cmd_root):
    root, fields = cmd_root
    bad = fields["HI"].copy()
    bad[3, 5, 5] = np.nan  # simulation 0 is broken
    np.save(root / "Maps_HI_IllustrisTNG_LH_z=0.00.npy", bad)
    maps, params = load_cmd(root, ["Mcdm", "HI"], sims=[2, 1])
    assert maps.shape == (30, 2, NPIX, NPIX)
    np.testing.assert_array_equal(maps[:15, 1], bad[30:45])
    np.testing.assert_array_equal(maps[15:, 1], bad[15:30])
    np.testing.assert_allclose(params[:15], np.repeat(TABLE[[2]], 15, axis=0))
    with pytest.raises(ValueError, match=r"NaN.*map\(s\) \[3\]"):
        load_cmd(root, "HI")
    with pytest.raises(ValueError, match="sims"):
        load_cmd(root, "HI", sims=[3])


def test_lazy_is_memory_mapped(cmd_root):
    root, fields = cmd_root
    maps, params = load_cmd(root, ["Mcdm", "HI"], lazy=True, n_pix=16)
    assert isinstance(maps, CMDMaps) and maps.shape == (45, 2, 16, 16)
    assert all(isinstance(a, np.memmap) for a in maps._arrays)
    full, _ = load_cmd(root, ["Mcdm", "HI"], n_pix=16)
    np.testing.assert_array_equal(maps[7], full[7])
    np.testing.assert_array_equal(maps[[40, 2]], full[[40, 2]])
    np.testing.assert_array_equal(maps[10:20, 1], full[10:20, 1])
    np.testing.assert_array_equal(np.asarray(maps), full)
    # pickled by file name (DataLoader workers), not by content
    blob = pickle.dumps(maps)
    assert len(blob) < 10_000
    np.testing.assert_array_equal(pickle.loads(blob)[3], full[3])


def test_block_average_equals_reshape_mean(cmd_root, monkeypatch):
    root, fields = cmd_root
    monkeypatch.setattr(data.files, "CHUNK_BYTES", 5 * NPIX * NPIX * 4)  # force several chunks
    maps, _ = load_cmd(root, "HI", n_pix=8)
    direct = fields["HI"].astype(np.float64).reshape(45, 8, 4, 8, 4).mean(axis=(2, 4))
    assert maps.shape == (45, 1, 8, 8)
    np.testing.assert_allclose(maps[:, 0], direct, rtol=1e-6)
    with pytest.raises(ValueError, match="n_pix"):
        load_cmd(root, "HI", n_pix=12)


def test_full_size_256_to_64(tmp_path):
    arr = _maps(5, n_sims=1, npix=256)
    np.save(tmp_path / "Maps_Mgas_IllustrisTNG_CV_z=0.00.npy", arr)
    _write_params(tmp_path / "params_CV_IllustrisTNG.txt", TABLE[:1], "seed")
    maps, params = load_cmd(tmp_path, "Mgas", set="CV", n_pix=64)
    direct = arr.astype(np.float64).reshape(15, 64, 4, 64, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(maps[:, 0], direct, rtol=1e-6)
    assert params.shape == (15, 6)


def test_missing_files_name_the_file(cmd_root):
    root, _ = cmd_root
    with pytest.raises(FileNotFoundError) as err:
        load_cmd(root, "HI", suite="SIMBA")
    msg = str(err.value)
    assert "Maps_HI_SIMBA_LH_z=0.00.npy" in msg
    assert "camels-multifield-dataset.readthedocs.io" in msg and "CMD/2D_maps/data" in msg
    assert "Maps_HI_IllustrisTNG_LH_z=0.00.npy" in msg  # lists what is there
    os.remove(root / "params_LH_IllustrisTNG.txt")
    with pytest.raises(FileNotFoundError, match="params_LH_IllustrisTNG.txt"):
        load_cmd(root, "HI")


def test_bad_fields(cmd_root):
    root, _ = cmd_root
    with pytest.raises(ValueError, match="unknown CMD field 'Hi'"):
        load_cmd(root, "Hi")
    with pytest.raises(ValueError, match="'B' exists only"):
        load_cmd(root, ["HI", "B"], suite="SIMBA")


def test_mismatched_counts_and_shapes(tmp_path):
    _write_params(tmp_path / "params_LH_IllustrisTNG.txt", TABLE)
    np.save(tmp_path / "Maps_HI_IllustrisTNG_LH_z=0.00.npy", _maps(0)[:40])
    with pytest.raises(ValueError, match="not a multiple of 15"):
        load_cmd(tmp_path, "HI")
    np.save(tmp_path / "Maps_HI_IllustrisTNG_LH_z=0.00.npy", _maps(0)[:30])
    with pytest.raises(ValueError, match="3 rows"):
        load_cmd(tmp_path, "HI")
    np.save(tmp_path / "Maps_HI_IllustrisTNG_LH_z=0.00.npy", _maps(0))
    np.save(tmp_path / "Maps_T_IllustrisTNG_LH_z=0.00.npy", _maps(0, npix=16))
    with pytest.raises(ValueError, match="differ in shape"):
        load_cmd(tmp_path, ["HI", "T"])
    np.save(tmp_path / "Maps_T_IllustrisTNG_LH_z=0.00.npy", np.ones((45, 4), np.float32))
    with pytest.raises(ValueError, match="n_maps, H, W"):
        load_cmd(tmp_path, "T")


def test_nan_params(cmd_root):
    root, _ = cmd_root
    table = TABLE.copy()
    table[1, 2] = np.nan
    _write_params(root / "params_LH_IllustrisTNG.txt", table)
    with pytest.raises(ValueError, match="NaN"):
        load_cmd(root, "HI")


def test_truncated_npy(cmd_root):
    root, _ = cmd_root
    fname = root / "Maps_HI_IllustrisTNG_LH_z=0.00.npy"
    fname.write_bytes(fname.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match="Maps_HI"):
        load_cmd(root, "HI")


# ---------------------------------------------------------------- Subfind

def _write_camels_subfind(path, n_sub=5):
    rng = np.random.default_rng(3)
    mtype = rng.uniform(0.0, 10.0, size=(n_sub, 6)).astype(np.float32)
    mtype[1, 4] = 0.0  # a dark subhalo
    mtype[3, 4] = 0.0
    with h5py.File(path, "w") as f:
        hdr = f.create_group("Header")
        hdr.attrs["BoxSize"] = 25000.0
        hdr.attrs["Redshift"] = 0.05
        hdr.attrs["Nsubgroups_Total"] = n_sub
        hdr.attrs["Ngroups_Total"] = 2
        f["Subhalo/SubhaloMassType"] = mtype
        f["Subhalo/SubhaloMass"] = mtype.sum(axis=1)
        f["Subhalo/SubhaloPos"] = rng.uniform(0, 25000, size=(n_sub, 3)).astype(np.float32)
        f["Group/GroupMass"] = np.array([30.0, 12.0], np.float32)
        f["Group/Group_M_Crit200"] = np.array([25.0, 10.0], np.float32)
    return mtype


def test_load_subfind_units(tmp_path):
    fname = tmp_path / "fof_subhalo_tab_032.hdf5"
    mtype = _write_camels_subfind(fname)
    with h5py.File(fname) as f:
        pos_kpc = f["Subhalo/SubhaloPos"][...]
    cat = load_subfind(fname)
    np.testing.assert_allclose(cat["stellar_mass"], mtype[:, 4].astype(float) * 1e10, rtol=1e-6)
    np.testing.assert_allclose(cat["total_mass"], mtype.sum(axis=1) * 1e10, rtol=1e-6)
    np.testing.assert_allclose(cat["position"], pos_kpc / 1e3, rtol=1e-6)
    assert cat["position"].max() <= 25.0
    np.testing.assert_allclose(cat["group_mass"], [3e11, 1.2e11], rtol=1e-6)
    np.testing.assert_allclose(cat["group_m200c"], [2.5e11, 1e11], rtol=1e-6)
    assert cat["redshift"] == pytest.approx(0.05) and cat["box_size"] == 25.0
    assert cat["n_dropped"] == 0 and len(cat["stellar_mass"]) == 5

    gal = load_subfind(fname, galaxies_only=True)
    assert gal["n_dropped"] == 2 and len(gal["stellar_mass"]) == 3
    assert np.all(gal["stellar_mass"] > 0) and gal["position"].shape == (3, 3)
    assert len(gal["group_mass"]) == 2  # group tables are not filtered


def test_load_subfind_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="groups_033.hdf5"):
        load_subfind(tmp_path / "groups_033.hdf5")
    bad = tmp_path / "groups_030.hdf5"
    bad.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(CorruptFileError, match="groups_030"):
        load_subfind(bad)
    with h5py.File(tmp_path / "groups_031.hdf5", "w") as f:
        f["Subhalo/SubhaloMass"] = np.ones(3)
    with pytest.raises(ValueError, match="SubhaloMassType"):
        load_subfind(tmp_path / "groups_031.hdf5")
    with h5py.File(tmp_path / "groups_032.hdf5", "w") as f:  # empty catalog, as Subfind writes it
        f.create_group("Header").attrs.update({"Nsubhalos_Total": 0, "Ngroups_Total": 0})
    assert len(load_subfind(tmp_path / "groups_032.hdf5")["stellar_mass"]) == 0


def test_snapshot_path(tmp_path):
    (tmp_path / "fof_subhalo_tab_030.hdf5").touch()
    (tmp_path / "groups_033.hdf5").touch()
    (tmp_path / "fof_subhalo_tab_033.hdf5").touch()
    assert snapshot_path(tmp_path, 30).name == "fof_subhalo_tab_030.hdf5"
    assert snapshot_path(tmp_path, 33).name == "groups_033.hdf5"
    with pytest.raises(FileNotFoundError, match="groups_031.hdf5.*fof_subhalo_tab_031.hdf5"):
        snapshot_path(tmp_path, 31)


def test_write_subfind_round_trip(tmp_path):
    fname = tmp_path / "groups_033.hdf5"
    ms = np.array([2e9, 0.0, 5e10])
    mt = np.array([1e12, 3e10, 4e12])
    pos = np.array([[1.0, 2.0, 3.0], [24.0, 0.5, 7.0], [12.5, 12.5, 12.5]])
    write_subfind(fname, ms, mt, pos, group_mass=[5e12], group_m200c=[4e12], redshift=0.0,
                  attrs={"seed": 7})
    assert os.listdir(tmp_path) == ["groups_033.hdf5"]
    with h5py.File(fname) as f:  # stored in Subfind units
        np.testing.assert_allclose(f["Subhalo/SubhaloMass"][...], mt / 1e10)
        np.testing.assert_allclose(f["Subhalo/SubhaloMassType"][:, 4], ms / 1e10)
        np.testing.assert_allclose(f["Subhalo/SubhaloMassType"][...].sum(axis=1), mt / 1e10)
        np.testing.assert_allclose(f["Subhalo/SubhaloPos"][...], pos * 1e3)
        assert f["Header"].attrs["seed"] == 7
    cat = load_subfind(fname, galaxies_only=True)
    np.testing.assert_allclose(cat["stellar_mass"], ms[[0, 2]])
    np.testing.assert_allclose(cat["total_mass"], mt[[0, 2]])
    np.testing.assert_allclose(cat["position"], pos[[0, 2]])
    assert cat["n_dropped"] == 1 and cat["group_m200c"].tolist() == [4e12]
    with pytest.raises(ValueError, match="total_mass"):
        write_subfind(fname, [2.0], [1.0], [[0, 0, 0]])
    with pytest.raises(ValueError, match="position"):
        write_subfind(fname, [1.0], [2.0], [[0, 0]])


# ---------------------------------------------------------------- splits

def test_split_by_simulation():
    train, val, test = split_by_simulation(1500, seed=3)
    assert (len(train), len(val), len(test)) == (1200, 150, 150)
    allidx = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(allidx), np.arange(1500))
    sims = [set(s // 15) for s in (train, val, test)]
    assert not (sims[0] & sims[1] or sims[0] & sims[2] or sims[1] & sims[2])
    for s in (train, val, test):  # whole simulations only
        counts = np.bincount(s // 15)
        assert set(counts[counts > 0]) == {15}
    again = split_by_simulation(1500, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val, test)))
    assert not np.array_equal(split_by_simulation(1500, seed=4)[1], val)
    assert [len(s) for s in split_by_simulation(45)] == [15, 15, 15]  # tiny sets still non-empty
    with pytest.raises(ValueError, match="multiple"):
        split_by_simulation(40)
    with pytest.raises(ValueError, match="fractions"):
        split_by_simulation(45, (0.5, 0.2, 0.2))


# ---------------------------------------------------------------- Dataset

@pytest.fixture
def set_arrays():
    rng = np.random.default_rng(7)
    maps = rng.lognormal(np.array([3.0, 8.0])[:, None, None], 0.7, size=(90, 2, 8, 8)).astype(np.float32)
    params = np.repeat(rng.uniform(0.2, 0.9, size=(6, 6)), 15, axis=0)
    return maps, params


def _stack(ds):
    xs, ts = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs).double().numpy(), torch.stack(ts).double().numpy()


def test_dataset_standardises_on_train(set_arrays):
    maps, params = set_arrays
    tr, va, te = split_by_simulation(90, (4 / 6, 1 / 6, 1 / 6), seed=0)
    train = CMDDataset(maps, params, tr)
    x, theta = _stack(train)
    assert x.shape == (len(tr), 2, 8, 8) and theta.shape == (len(tr), 6)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-5)
    np.testing.assert_allclose(theta.min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(theta.max(axis=0), 1, atol=1e-6)
    # validation reuses the training normaliser; the dict survives a checkpoint
    val = CMDDataset.like(train, maps, params, va)
    assert val.normaliser == train.normaliser
    blob = pickle.dumps(train.normaliser)
    reloaded = CMDDataset(maps, params, va, normaliser=pickle.loads(blob))
    np.testing.assert_array_equal(reloaded[0][0], val[0][0])
    xv, tv = val[3]
    expect = (np.log10(maps[va[3]].astype(np.float64)) -
              np.array(train.normaliser["mean"])[:, None, None]) / \
        np.array(train.normaliser["std"])[:, None, None]
    np.testing.assert_allclose(xv.numpy(), expect, rtol=1e-5, atol=1e-5)
    # round trips back to physical units
    np.testing.assert_allclose(train.denormalise_params(tv.double()).numpy(), params[va[3]],
                               rtol=1e-6)
    np.testing.assert_allclose(denormalise_maps(xv, train.normaliser).numpy(), maps[va[3]],
                               rtol=1e-4)
    np.testing.assert_allclose(denormalise_params(theta, train.normaliser), params[tr], rtol=1e-6)


def test_dataset_options_and_errors(set_arrays):
    maps, params = set_arrays
    ds = CMDDataset(maps, params, log10=False, param_norm="standard")
    x, theta = _stack(ds)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(theta.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(theta.std(axis=0), 1, atol=1e-5)
    ds = CMDDataset(maps, params, param_range=([0.1] * 6, [1.1] * 6))
    np.testing.assert_allclose(ds[0][1].numpy(), params[0] - 0.1, rtol=1e-5)
    bad = maps.copy()
    bad[5, 1, 0, 0] = 0.0
    with pytest.raises(ValueError, match="positive pixels"):
        CMDDataset(bad, params)
    assert CMDDataset(bad, params, log10_offset=1.0)[5][0].shape == (2, 8, 8)
    ok = CMDDataset(maps, params, np.arange(5))
    with pytest.raises(ValueError, match=r"maps\[5\].*positive"):
        CMDDataset.like(ok, bad, params)[5]
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        CMDDataset(maps[:, 0], params)
    with pytest.raises(ValueError, match="params"):
        CMDDataset(maps, params[:10])
    with pytest.raises(ValueError, match="channel"):
        CMDDataset(maps[:, :1], params, normaliser=ok.normaliser)


def test_augmentation_covers_the_8_symmetries(set_arrays):
    maps, params = set_arrays
    plain = CMDDataset(maps, params, standardise=False, log10=False)
    aug = CMDDataset(maps, params, standardise=False, log10=False, augment=True, seed=11)
    x0 = plain[4][0].numpy()
    candidates = [np.rot90(x0, k, axes=(1, 2)) for k in range(4)]
    candidates += [c[..., ::-1] for c in candidates]
    assert len({c.tobytes() for c in candidates}) == 8
    seen = set()
    for _ in range(200):
        x, theta = aug[4]
        x = x.numpy()
        np.testing.assert_array_equal(np.sort(x, axis=None), np.sort(x0, axis=None))
        match = [k for k, c in enumerate(candidates) if np.array_equal(c, x)]
        assert len(match) == 1
        seen.add(match[0])
        np.testing.assert_array_equal(theta.numpy(), plain[4][1].numpy())
    assert seen == set(range(8))
    a = CMDDataset(maps, params, augment=True, seed=5)
    b = CMDDataset(maps, params, augment=True, seed=5)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(10))


def test_dataset_on_lazy_maps_and_dataloader(cmd_root):
    root, _ = cmd_root
    maps, params = load_cmd(root, ["Mcdm", "HI"], n_pix=16, lazy=True)
    tr, va, te = split_by_simulation(len(maps))
    train = CMDDataset(maps, params, tr, augment=True)
    eager = CMDDataset(np.asarray(maps), params, tr)
    assert train.normaliser["mean"] == pytest.approx(eager.normaliser["mean"])
    x, theta = next(iter(torch.utils.data.DataLoader(train, batch_size=4, shuffle=True)))
    assert x.shape == (4, 2, 16, 16) and x.dtype == torch.float32 and theta.shape == (4, 6)


# ---------------------------------------------------------------- cache

def test_cache_round_trip(tmp_path):
    fname = tmp_path / "sub" / "set.h5"
    maps = np.random.default_rng(0).normal(size=(6, 2, 4, 4)).astype(np.float32)
    params = np.arange(36.0).reshape(6, 6)
    save_cache(fname, maps, params, {"seed": 3, "n_pix": 4, "set": "LH", "fields": ("Mcdm", "HI")})
    assert os.listdir(fname.parent) == ["set.h5"]
    m, p, attrs = load_cache(fname, return_attrs=True)
    np.testing.assert_array_equal(m, maps)
    np.testing.assert_array_equal(p, params)
    assert m.dtype == np.float32
    assert attrs == {"seed": 3, "n_pix": 4, "set": "LH", "fields": ["Mcdm", "HI"]}
    assert read_cache_attrs(fname) == attrs


class _FailingMaps:
    """A maps-like object whose second chunk cannot be produced."""
    shape, dtype = (10, 1, 4, 4), np.dtype(np.float32)

    def __getitem__(self, key):
        if key.start and key.start >= 2:
            raise RuntimeError("simulated crash while writing")
        return np.ones((2, 1, 4, 4), np.float32)


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    fname = tmp_path / "set.h5"
    save_cache(fname, np.zeros((2, 1, 4, 4)), np.zeros((2, 6)), {"seed": 0})
    before = fname.read_bytes()
    monkeypatch.setattr(data.files, "CHUNK_BYTES", 2 * 16 * 4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_cache(fname, _FailingMaps(), np.zeros((10, 6)), {"seed": 1})
    assert fname.read_bytes() == before and os.listdir(tmp_path) == ["set.h5"]
    nan_maps = np.ones((4, 1, 4, 4))
    nan_maps[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_cache(fname, nan_maps, np.zeros((4, 6)))
    assert fname.read_bytes() == before and os.listdir(tmp_path) == ["set.h5"]


def test_cached_makes_once_and_regenerates(tmp_path):
    fname = tmp_path / "lh.h5"
    calls = []

    def make(value=1.0):
        calls.append(value)
        return np.full((15, 1, 4, 4), value, np.float32), np.full((15, 6), 0.5)

    m1, p1 = cached(fname, make, seed=0, n_pix=4)
    m2, p2 = cached(fname, make, seed=0, n_pix=4)
    assert calls == [1.0]
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(p1, p2)
    with pytest.warns(UserWarning, match="different settings"):
        m3, _ = cached(fname, lambda: make(2.0), seed=1, n_pix=4)
    assert calls == [1.0, 2.0] and m3[0, 0, 0, 0] == 2.0
    assert read_cache_attrs(fname) == {"seed": 1, "n_pix": 4}

    before = fname.read_bytes()

    def crash():
        raise RuntimeError("simulator died")

    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="simulator died"):
        cached(fname, crash, seed=2, n_pix=4)
    assert fname.read_bytes() == before and os.listdir(tmp_path) == ["lh.h5"]


def test_corrupt_cache(tmp_path):
    fname = tmp_path / "set.h5"
    save_cache(fname, np.ones((30, 1, 16, 16)), np.zeros((30, 6)), {"seed": 0})
    fname.write_bytes(fname.read_bytes()[: fname.stat().st_size // 2])  # truncated
    with pytest.raises(CorruptFileError, match="set.h5"):
        load_cache(fname)
    with pytest.warns(UserWarning, match="corrupt"):
        maps, _ = cached(fname, lambda: (np.zeros((15, 1, 2, 2)), np.zeros((15, 6))), seed=0)
    assert maps.shape == (15, 1, 2, 2)
    fname.write_bytes(b"garbage")
    with pytest.raises(CorruptFileError, match="corrupt"):
        load_cache(fname)


# ---------------------------------------------------------------- issue 8: silent wrong results

def test_read_params_rejects_swapped_omega_m_and_sigma_8(tmp_path):
    """Issue 8: a table with sigma_8 before Omega_m was read as if it were in CAMELS order."""
    fname = tmp_path / "params_LH_IllustrisTNG.txt"
    _write_params(fname, TABLE[:, [1, 0, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match=r"column 0 \(Omega_m\).*outside the CAMELS prior"
                                         r".*first two columns look swapped"):
        read_params(fname)
    np.save(tmp_path / "Maps_HI_IllustrisTNG_LH_z=0.00.npy", _maps(0))
    with pytest.raises(ValueError, match="swapped"):
        load_cmd(tmp_path, "HI")


def test_read_params_rejects_one_row_outside_the_prior(tmp_path):
    fname = tmp_path / "params_LH_IllustrisTNG.txt"
    table = TABLE.copy()
    table[2, 1] = 1.3
    _write_params(fname, table)
    with pytest.raises(ValueError, match=r"column 1 \(sigma_8\) has 1 of 3 values outside .* row 2") as err:
        read_params(fname)
    assert "swapped" not in str(err.value)
    # the prior's own edges are fine
    table[2, :2] = [0.5, 0.6]
    _write_params(fname, table)
    np.testing.assert_allclose(read_params(fname), table, atol=1e-6)


def test_load_cmd_empty_npy_names_the_file(cmd_root):
    """Issue 8: a 0-byte .npy raised a raw EOFError."""
    root, _ = cmd_root
    (root / "Maps_HI_IllustrisTNG_LH_z=0.00.npy").write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"Maps_HI_IllustrisTNG_LH_z=0.00.npy is empty \(0 bytes\)"):
        load_cmd(root, "HI")
    (root / "Maps_HI_IllustrisTNG_LH_z=0.00.npy").write_bytes(b"\x93NUMPY")  # cut in the header
    with pytest.raises(CorruptFileError, match=r"Maps_HI_IllustrisTNG_LH_z=0.00.npy"):
        load_cmd(root, "HI")


@pytest.mark.parametrize("key, value, match", [
    ("Nsubgroups_Total", 7, r"Header counts 7 subhalos, but the Subhalo/ datasets hold 5"),
    ("Ngroups_Total", 3, r"Header counts 3 groups, but the Group/ datasets hold 2"),
])
def test_load_subfind_rejects_a_header_count_that_differs_from_the_data(tmp_path, key, value, match):
    """Issue 8: a header count different from the data length was accepted."""
    fname = tmp_path / "groups_033.hdf5"
    _write_camels_subfind(fname)
    with h5py.File(fname, "r+") as f:
        f["Header"].attrs[key] = value
    with pytest.raises(ValueError, match=match):
        load_subfind(fname)


@pytest.mark.parametrize("name", ["Subhalo/SubhaloMass", "Subhalo/SubhaloMassType",
                                  "Group/GroupMass", "Group/Group_M_Crit200"])
def test_load_subfind_rejects_negative_masses(tmp_path, name):
    """Issue 8: negative masses were accepted (and later became NaN logs or wrong histograms)."""
    fname = tmp_path / "groups_033.hdf5"
    _write_camels_subfind(fname)
    with h5py.File(fname, "r+") as f:
        values = f[name][...]
        values.flat[1] = -2.0
        f[name][...] = values
    with pytest.raises(ValueError, match=rf"{name.split('/')[1]} has 1 negative masses"):
        load_subfind(fname)


def test_split_by_simulation_never_overlaps():
    for n_sims in range(1, 40):
        for seed in range(3):
            for fractions in [(0.8, 0.1, 0.1), (0.5, 0.5), (0.34, 0.33, 0.33), (0.9, 0.05, 0.05)]:
                sets = split_by_simulation(n_sims * 3, fractions, seed=seed, maps_per_sim=3)
                together = np.concatenate(sets)
                assert len(np.unique(together)) == len(together) == n_sims * 3
                sims_of = [set((s // 3).tolist()) for s in sets]
                assert all(not (a & b) for i, a in enumerate(sims_of) for b in sims_of[i + 1:])


def test_snapshot_path_finds_z0_under_the_2024_number_and_the_old_one(tmp_path):
    """CAMELS docs (2024 reorganisation): the z = 0 snapshot 033 is now 090, groups_090.hdf5."""
    from cosmonb import data

    (tmp_path / "groups_090.hdf5").write_bytes(b"")
    assert data.snapshot_path(tmp_path, 90).name == "groups_090.hdf5"
    assert data.snapshot_path(tmp_path, 33).name == "groups_090.hdf5"
    assert data.SNAPSHOT_REDSHIFTS[90] == 0.0


def test_cmd_dataset_roll_is_a_periodic_shift_of_the_same_map():
    rng = np.random.default_rng(0)
    maps = rng.lognormal(size=(15, 1, 8, 8)).astype(np.float32)
    plain = CMDDataset(maps, np.ones((15, 6)))
    rolled = CMDDataset.like(plain, maps, np.ones((15, 6)), roll=True, seed=3)
    x, y = plain[2][0].numpy(), rolled[2][0].numpy()
    shifts = [(a, b) for a in range(8) for b in range(8) if np.array_equal(np.roll(x, (a, b), (-2, -1)), y)]
    assert len(shifts) == 1
    assert any(not np.array_equal(plain[i][0].numpy(), rolled[i][0].numpy()) for i in range(15))


def test_map_sets_split_by_simulation_and_scale_parameters_over_the_prior():
    from cosmonb.recipes.maps import map_sets

    sets = map_sets(("Mcdm", "HI"), n_pix=8, n_sims=10, maps_per_sim=3, n_params=2, fractions=(0.6, 0.2, 0.2))
    sim = {k: set((v // 3).tolist()) for k, v in sets.splits.items()}
    assert not (sim["train"] & sim["val"]) and not (sim["train"] & sim["test"]) and not (sim["val"] & sim["test"])
    x, u = sets.train[0]
    assert tuple(x.shape) == (2, 8, 8) and tuple(u.shape) == (2,)
    j = sets.splits["train"][0]
    np.testing.assert_allclose(u.numpy(), (sets.params[j, :2] - [0.1, 0.6]) / [0.4, 0.4], atol=1e-6)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        map_sets("HI", n_pix=8, n_sims=2, data_root="/nonexistent/camels")


def test_map_sets_read_real_cmd_files_through_data_root(tmp_path):
    """The generative recipes' data path on files in the exact CMD formats (written by data.write_cmd)."""
    from cosmonb import sims
    from cosmonb.data import write_cmd
    from cosmonb.recipes.maps import map_sets

    params, _ = sims.lh_set(4, 15, seed=9)
    maps = sims.simulate(params, ("HI", "Mgas"), n_pix=16, seed=9)
    write_cmd(tmp_path, {"HI": maps[:, 0], "Mgas": maps[:, 1]}, params[::15])
    sets = map_sets(("Mgas", "HI"), n_pix=8, n_sims=4, n_params=6, data_root=tmp_path, fractions=(0.5, 0.25, 0.25))
    assert sets.source.startswith("CMD files in") and sets.maps.shape == (60, 2, 8, 8)
    block = maps[:, ::-1].reshape(60, 2, 8, 2, 8, 2).mean(axis=(3, 5))  # channels in the order asked for
    np.testing.assert_allclose(sets.maps, block, rtol=1e-5)
    np.testing.assert_allclose(sets.params, params, atol=1e-6)
    x, u = sets.test[0]
    assert tuple(x.shape) == (2, 8, 8) and tuple(u.shape) == (6,)
    assert len(map_sets("HI", n_pix=8, n_sims=4, maps_per_sim=5, data_root=tmp_path).maps) == 60  # CMD: 15 per sim
    with pytest.raises(ValueError, match="expected \\(60, n, n\\)"):
        write_cmd(tmp_path, {"HI": maps[:10, 0]}, params[::15])


def test_augmented_batches_depend_on_seed_and_epoch_only_shard_by_rank_and_move_pixels_only():
    from cosmonb.recipes.maps import AugmentedBatches, dihedral, fixed_batches

    torch = pytest.importorskip("torch")
    maps = torch.randn(12, 1, 6, 6)
    items = [(maps[i], torch.tensor([float(i)])) for i in range(12)]
    batches = AugmentedBatches(items, 4, seed=3, roll=True)
    first = list(batches(0))
    assert len(first) == len(batches) == 3
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, batches(0)))  # a function of (seed, epoch)
    assert not torch.equal(first[0][0], next(iter(batches(1)))[0])
    assert sorted(float(t) for _, th in first for t in th) == [float(i) for i in range(12)]  # a permutation
    # each item is one of the 8 symmetries of its map, periodically shifted: same pixel values, moved
    orbit = lambda m: [torch.roll(dihedral(m, k), (dy, dx), (-2, -1)) for k in range(8) for dy in range(6)
                       for dx in range(6)]
    for x, th in first:
        for xi, ti in zip(x, th):
            assert any(torch.equal(xi, o) for o in orbit(maps[int(ti)]))
    assert any(not torch.equal(xi, maps[int(ti)]) for x, th in first for xi, ti in zip(x, th))
    # two processes split every global batch into contiguous halves
    halves = [list(AugmentedBatches(items, 4, seed=3, roll=True, rank=r, world_size=2)(0)) for r in (0, 1)]
    for whole, a, b in zip(first, *halves):
        assert torch.equal(torch.cat([a[0], b[0]]), whole[0]) and torch.equal(torch.cat([a[1], b[1]]), whole[1])
    plain = next(iter(AugmentedBatches(items, 4, seed=3, symmetries=False)(0)))
    assert all(torch.equal(xi, maps[int(ti)]) for xi, ti in zip(*plain))
    assert [len(b[0]) for b in fixed_batches(items, 5)] == [5, 5, 2]
    with pytest.raises(ValueError, match="must divide"):
        AugmentedBatches(items, 3, world_size=2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        AugmentedBatches(items[:2], 4)
