"""HIGlow's bad-input errors (issue 11) and the physical-units wrapper recipes.glow.HIGlow.

Each bad input gets a clear error naming the argument: a map of the wrong size for the
model, parameters outside the prior (physical units, or scaled units outside [0, 1]), a
temperature <= 0, and a checkpoint whose sha256 or config does not match its manifest.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from cosmonb import checkpoints, sims
from cosmonb.models.glow import ConditionalGlow, higlow_posterior
from cosmonb.recipes.glow import (HIGlow, exact_bits_per_dim, glow_data, glow_split, glow_split_index, load_higlow,
                                  prior_grid, train_glow_recipe)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A quick-preset HIGlow (16 x 16 maps) trained for 3 steps and saved with its manifest."""
    out = tmp_path_factory.mktemp("higlow")
    train_glow_recipe("quick", out=out, max_steps=3, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def glow(saved):
    return HIGlow.load(saved)


@pytest.fixture(scope="module")
def held_out():
    maps, params, _ = glow_split("quick", "test")
    return maps, params


# --------------------------------------------------------------------------- wrong map size
def test_a_map_of_the_wrong_size_is_refused(glow, held_out):
    big = sims.simulate([sims.FIDUCIAL], "HI", n_pix=32)
    message = r"maps: this HIGlow models 1 x 16 x 16 maps; got shape \(1, 1, 32, 32\)"
    with pytest.raises(ValueError, match=message):
        glow.log_prob(big, [0.3, 0.8])
    with pytest.raises(ValueError, match=r"map_: this HIGlow models 1 x 16 x 16 maps; got shape \(32, 32\)"):
        glow.posterior(big[0, 0], 10)
    with pytest.raises(ValueError, match="block-average"):
        glow.bits_per_dim(big[0], [0.3, 0.8])
    with pytest.raises(ValueError, match="positive, finite maps in physical units"):
        glow.log_prob(np.zeros((1, 1, 16, 16)), [0.3, 0.8])
    with pytest.raises(ValueError, match="map_: expected one map, got 2"):
        glow.posterior(held_out[0][:2], 10)
    # the network itself (model units)
    with pytest.raises(ValueError, match=r"x: expected maps of shape \(B, 1, 16, 16\), got \(1, 1, 32, 32\)"):
        higlow_posterior(glow.model, torch.randn(1, 1, 32, 32), np.full((4, 2), 0.5))


# --------------------------------------------------------------------------- parameters outside the prior
@pytest.mark.parametrize("theta, which", [([0.6, 0.8], "Omega_m = 0.6"), ([0.3, 0.55], "sigma_8 = 0.55"),
                                          ([[0.3, 0.8], [0.05, 0.8]], "Omega_m = 0.05")])
def test_physical_parameters_outside_the_prior_are_refused(glow, held_out, theta, which):
    with pytest.raises(ValueError, match=rf"theta: {which} is outside the prior \[.*\] the model was trained on"):
        glow.sample(theta, n=len(np.atleast_2d(theta)))
    with pytest.raises(ValueError, match=rf"theta: {which} is outside the prior"):
        glow.log_prob(held_out[0][:len(np.atleast_2d(theta))], theta)


def test_the_prior_edges_are_inside(glow):
    assert glow.sample([[0.1, 0.6], [0.5, 1.0]], n=2, seed=0).shape == (2, 1, 16, 16)
    assert np.allclose(glow.scale([[0.1, 0.6], [0.5, 1.0]]), [[0, 0], [1, 1]])
    assert np.allclose(glow.unscale(glow.scale([0.3, 0.8])), [0.3, 0.8])


def test_scaled_parameters_outside_the_unit_box_are_refused(glow):
    model = glow.model
    with pytest.raises(ValueError, match=r"cond: expected parameters scaled to \[0, 1\] over the prior .*"
                                         r"got values in \[0.3, 1.8\]"):
        model.sample(2, torch.tensor([[0.3, 1.8]]))
    with pytest.raises(ValueError, match=r"cond: expected parameters scaled to \[0, 1\].*physical units"):
        model.sample(1, torch.tensor([[1.3, 0.5]]))
    x = torch.randn(1, 1, 16, 16)
    with pytest.raises(ValueError, match=r"theta_samples: expected parameters scaled to \[0, 1\].*\[-0.2, 0.9\]"):
        higlow_posterior(model, x, np.array([[0.5, 0.9], [-0.2, 0.5]]))
    with pytest.raises(ValueError, match="theta_samples: expected finite"):
        higlow_posterior(model, x, np.array([[0.5, np.nan]]))


def test_physical_units_inside_the_unit_box_need_the_wrapper(glow):
    # (0.3, 0.8) happens to lie in [0, 1]: the model takes it as scaled units (Omega_m = 0.22, sigma_8 = 0.92);
    # the wrapper is the safe door, and says which units it wants
    assert glow.model.sample(1, torch.tensor([0.3, 0.8])).shape == (1, 1, 16, 16)
    assert np.allclose(glow.unscale([0.3, 0.8]), [0.22, 0.92])


# --------------------------------------------------------------------------- temperature
@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan"), True])
def test_a_temperature_that_is_not_positive_is_refused(glow, temperature):
    match = "temperature: expected a number > 0" if temperature in (0.0, -0.5) else "temperature: expected a finite"
    with pytest.raises(ValueError, match=match):
        glow.sample([0.3, 0.8], temperature=temperature)
    with pytest.raises(ValueError, match=match):
        glow.model.sample(1, torch.tensor([0.5, 0.5]), temperature=temperature)


# --------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_whose_sha256_does_not_match_is_refused(saved, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(saved, folder)
    path = folder / "higlow.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoints.PretrainedError, match="sha256 mismatch for pretrained checkpoint 'higlow'"):
        HIGlow.load(folder)
    (folder / "higlow.pt").unlink()
    with pytest.raises(checkpoints.PretrainedMissingError, match="not found"):
        load_higlow(folder)


def test_a_checkpoint_whose_config_does_not_match_is_refused(saved, tmp_path):
    folder = tmp_path / "edited"
    shutil.copytree(saved, folder)
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    manifest["higlow"]["config"]["model"]["hidden"] = 16  # the manifest says one model, the file holds another
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(checkpoints.PretrainedError, match=r"config mismatch for .*higlow.pt: MANIFEST.json records "
                                                          r"a different config \(differs in \['model'\]\)"):
        load_higlow(folder)
    # a config the caller requires
    with pytest.raises(checkpoints.PretrainedError, match="config mismatch for .*: expected n_pix = 64, the checkpoint "
                                                          "has 16"):
        HIGlow.load(saved, expect={"n_pix": 64})
    assert HIGlow.load(saved, expect={"n_pix": 16, "levels": 2}).n_pix == 16


def test_a_normaliser_that_does_not_fit_the_model_is_refused(saved, tmp_path):
    model, ckpt = load_higlow(saved)
    bad = dict(ckpt["normaliser"], mean=[5.0, 5.0], std=[1.0, 1.0])  # two channels for a one-channel model
    checkpoints.save_model("higlow", model, metrics={}, command="test", seconds=0.0, normaliser=bad,
                           extra={"extra": ckpt["config"]["extra"]}, directory=tmp_path)
    with pytest.raises(checkpoints.PretrainedError, match=r"normaliser: made for 2 channel\(s\) and 2 parameters, but "
                                                          r"the model has 1 and 2"):
        load_higlow(tmp_path)


# --------------------------------------------------------------------------- the wrapper's answers
def test_wrapper_densities_equal_the_networks_on_the_dataset_items(saved, glow):
    sets = glow_data("quick")
    assert sets.normaliser["mean"] == glow.normaliser["mean"]
    idx = sets.splits["test"][:4]  # the quick preset's test split: one simulation of 4 maps
    items = [sets.test[i] for i in range(4)]
    with torch.no_grad():
        direct = glow.model.log_prob(torch.stack([x for x, _ in items]), torch.stack([u for _, u in items]))
    wrapped = glow.log_prob(sets.maps[idx], sets.params[idx, :2])
    assert np.allclose(wrapped, direct.double().numpy(), rtol=1e-5, atol=1e-3)
    assert np.allclose(glow.bits_per_dim(sets.maps[idx], sets.params[idx, :2]),
                       -wrapped / (glow.model.dim * math.log(2)))


def test_grid_posterior_is_eq2_on_the_grid_of_prior_samples(glow, held_out):
    x = held_out[0][0]
    post = glow.posterior(x, 12)
    g = prior_grid(12)
    u = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    raw = higlow_posterior(glow.model, glow.to_model_units(x), u)
    assert np.allclose(post.mean, glow.unscale(raw.mmse))  # the grid posterior's mean is the paper's MMSE
    assert np.allclose(post.x, 0.1 + 0.4 * g) and np.allclose(post.y, 0.6 + 0.4 * g)
    assert abs(post.prob.sum() - 1) < 1e-9 and np.allclose(post.prob.ravel(), raw.weights)


def test_exact_bits_per_dim_is_the_change_of_variables(glow, held_out):
    maps, params = held_out[0][:4], held_out[1][:4]
    ln_px = sims.multifield_log_likelihood(maps, params, ("HI",))
    z = glow.to_model_units(maps).double().numpy()
    # x = 10^(mean + std z): ln|dx/dz| = ln x + ln ln 10 + ln std, summed over the pixels
    jac = np.log(maps.astype(np.float64)).sum((1, 2, 3)) + z[0].size * (math.log(math.log(10)) + math.log(glow.std[0]))
    assert np.allclose(exact_bits_per_dim(glow, maps, params), -(ln_px + jac) / (z[0].size * math.log(2)))
    # a finite-difference check of d x / d z at one pixel
    h = 1e-6
    x0 = 10 ** (glow.mean[0] + glow.std[0] * z[0, 0, 3, 5])
    x1 = 10 ** (glow.mean[0] + glow.std[0] * (z[0, 0, 3, 5] + h))
    assert abs((x1 - x0) / h / (x0 * math.log(10) * glow.std[0]) - 1) < 1e-4
    with pytest.raises(ValueError, match=r"maps: expected HI maps \(N, 1, H, W\)"):
        exact_bits_per_dim(glow, maps[:, 0], params)


def test_glow_split_makes_the_same_maps_as_the_whole_set():
    full = glow_data("quick")
    for split in ("train", "test"):
        maps, params, index = glow_split("quick", split, select=[0, 3])
        assert np.array_equal(index, full.splits[split][[0, 3]])
        assert np.array_equal(maps, full.maps[index]) and np.array_equal(params, full.params[index])
    assert {k: list(v) for k, v in glow_split_index("quick").items()} == {k: list(v) for k, v in full.splits.items()}
    with pytest.raises(ValueError, match="split: expected one of"):
        glow_split("quick", "validation")


def test_simulate_with_indices_reproduces_rows_of_a_larger_set():
    params, _ = sims.lh_set(4, 3, seed=1)
    whole = sims.simulate(params, ["HI", "Mcdm"], n_pix=16, seed=2)
    rows = np.array([10, 1, 5])
    assert np.array_equal(sims.simulate(params[rows], ["HI", "Mcdm"], n_pix=16, seed=2, indices=rows), whole[rows])
    with pytest.raises(ValueError, match="indices: expected 3 non-negative integers"):
        sims.simulate(params[rows], "HI", n_pix=16, indices=[1, 2])


def test_maps_the_inverse_flow_overflows_are_never_returned(saved):
    glow = HIGlow.load(saved)
    with torch.no_grad():  # the top prior's scale exp(400): every sampled latent overflows float32
        glow.model.top.net.bias[glow.model.top.net.bias.numel() // 2:] = 400.0
    with pytest.raises(FloatingPointError, match=r"sample: 3 of 3 maps came out non-finite or zero .*redraw=True"):
        glow.sample([0.3, 0.8], n=3, seed=0)
    with pytest.raises(FloatingPointError, match="stayed non-finite or zero after 10 redraws"):
        glow.sample([0.3, 0.8], n=2, seed=0, redraw=True)
    fine = HIGlow.load(saved)
    assert np.isfinite(fine.sample([0.3, 0.8], n=4, seed=0, redraw=True)).all() and fine.redrawn == 0


def _bench_higlow():
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("bench_higlow", ROOT / "bench" / "higlow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_throughput_times_a_checkout_and_refuses_a_folder_that_is_not_one(tmp_path):
    bench = _bench_higlow()
    with pytest.raises(FileNotFoundError, match="is not a checkout of .*HI-generation"):
        bench.reference_throughput(tmp_path)
    # a stand-in with the reference's interface: CondGlow(**config), forward(x, cond) -> (latents, log p)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "__init__.py").write_text("")
    (tmp_path / "modules" / "models.py").write_text(
        "import torch\n"
        "class CondGlow(torch.nn.Module):\n"
        "    def __init__(self, **config):\n"
        "        super().__init__()\n"
        "        self.config = config\n"
        "        self.w = torch.nn.Parameter(torch.zeros(1))\n"
        "    def forward(self, x, cond):\n"
        "        return [x], -((x * (1 + self.w)) ** 2).sum((1, 2, 3)) / 2 + cond.sum(1)\n")
    out = bench.reference_throughput(tmp_path, threads=1, steps=2, warmup=1, profile=False)
    assert out["params"] == 1 and out["model"] == bench.REFERENCE_CONFIG and out["images_per_second"] > 0
    assert bench.REFERENCE_CONFIG["n_blocks"] == 6 and bench.REFERENCE_CONFIG["n_flows"] == 20
    assert bench.REFERENCE_CONFIG["hidden_width"] == 16  # the paper's size, as bench.throughput's paper preset
