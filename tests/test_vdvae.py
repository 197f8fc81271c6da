"""The VDVAE (cosmonb.models.vdvae), the trainer's gradient-skip guard and the VDVAE recipe."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cosmonb import checkpoints
from cosmonb.models.vdvae import VDVAE, gaussian_kl, gaussian_log_likelihood
from cosmonb.recipes import vdvae as recipe
from cosmonb.train import TrainConfig, Trainer

TINY = dict(in_channels=2, n_pix=16, widths=[8, 6, 4], enc_blocks=[1, 2, 1], dec_blocks=[2, 1, 2],
            z_channels=[2, 3, 1], bottleneck=0.5)


def _maps(n=4, c=2, n_pix=16, seed=0):
    return torch.randn(n, c, n_pix, n_pix, generator=torch.Generator().manual_seed(seed))


def test_shapes_at_every_stage():
    torch.manual_seed(0)
    model = VDVAE(**TINY)
    x = _maps()
    acts = model.encoder_activations(x)
    assert [tuple(a.shape) for a in acts] == [(4, 8, 16, 16), (4, 6, 8, 8), (4, 4, 4, 4)]
    # top-down order: lowest resolution first, dec_blocks[s] latents at stage s
    assert model.latent_shapes == [(1, 4, 4), (1, 4, 4), (3, 8, 8), (2, 16, 16), (2, 16, 16)]
    out = model(x, seed=0)
    assert out.mean.shape == x.shape and out.log_scale.shape == x.shape and out.kl.shape == (4, 5)
    assert model.sample(3, seed=0).shape == (3, 2, 16, 16)
    assert model.reconstruct(x).shape == x.shape
    # per-channel likelihood scale: one learned number per channel, the same at every pixel
    chan = VDVAE(**TINY, likelihood_scale="channel")
    log_scale = chan(x, seed=0).log_scale
    assert log_scale.shape == x.shape and torch.equal(log_scale, log_scale[:1, :, :1, :1].expand_as(log_scale))


def test_encode_returns_the_documented_code_length():
    model = VDVAE(**TINY)
    assert model.code_length == 1 * 4 * 4
    codes = model.encode(_maps())
    assert codes.shape == (4, 16)
    # the code is the top latent's posterior mean: deterministic, one row per map
    assert torch.equal(codes, model.encode(_maps()))
    assert torch.allclose(model.encode(_maps()[:1]), codes[:1], atol=1e-6)
    # the presets keep the paper's length-256 code
    for name in ("cpu", "paper"):
        cfg = recipe.PRESETS[name]["model"]
        stages = len(cfg["widths"])
        assert cfg["z_channels"][-1] * (cfg["n_pix"] // 2 ** (stages - 1)) ** 2 == 256


def test_hierarchy_code_summarises_every_latent_at_its_posterior_mean():
    torch.manual_seed(0)
    model = VDVAE(**TINY).eval()
    for p in model.parameters():  # non-trivial priors and posteriors (some last convolutions start at zero)
        p.data.add_(0.05 * torch.randn_like(p))
    x = _maps()
    codes = model.encode(x, "hierarchy")
    assert model.hierarchy_code_length == 2 * (1 + 1 + 3 + 2 + 2) and codes.shape == (4, model.hierarchy_code_length)
    # by hand: walk the top-down path with z = mu_q; each group gives its channels' pixel means, then stds
    acts = model.encoder_activations(x)
    h, expect = model.top_state.expand(4, -1, -1, -1), []
    with torch.no_grad():
        for s in reversed(range(model.stages)):
            for block in model.dec_stages[s]:
                mu_q, _ = block.posterior_params(h, acts[s])
                expect.append(torch.cat([mu_q.mean((2, 3)), mu_q.std((2, 3))], 1))
                h, _ = block(h, acts[s], use_mean=True)
            if s > 0:
                h = model.up[s - 1](torch.nn.functional.interpolate(h, scale_factor=2, mode="nearest"))
    assert torch.allclose(codes, torch.cat(expect, 1), atol=1e-6)
    # the top group's pixel mean is the top code's mean over its pixels; the code depends on each map only
    assert torch.allclose(codes[:, :1], model.encode(x).mean(1, keepdim=True), atol=1e-6)
    assert torch.allclose(model.encode(x[:1], "hierarchy"), codes[:1], atol=1e-5)
    # both codes from one pass are the codes asked for one at a time
    top, hier = model.encode(x, ("top", "hierarchy"))
    assert torch.allclose(top, model.encode(x), atol=1e-6) and torch.equal(hier, codes)
    with pytest.raises(ValueError, match="code: expected 'top' or 'hierarchy'"):
        model.encode(x, "bottom")


def test_gaussian_kl_is_analytic_nonnegative_and_zero_for_equal_gaussians():
    g = torch.Generator().manual_seed(1)
    mq, lq, mp, lp = (torch.randn(1000, generator=g) for _ in range(4))
    kl = gaussian_kl(mq, lq, mp, lp)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, lq.exp()),
                                            torch.distributions.Normal(mp, lp.exp()))
    assert torch.allclose(kl, ref, atol=1e-5)
    assert (kl >= 0).all() and kl.max() > 0.1
    assert torch.equal(gaussian_kl(mq, lq, mq, lq), torch.zeros_like(mq))


def test_model_kl_is_nonnegative_and_zero_when_posterior_equals_prior():
    torch.manual_seed(0)
    model = VDVAE(**TINY)
    with torch.no_grad():
        for t in model.state_dict().values():  # away from the zero-initialised prior
            if t.is_floating_point():
                t.add_(0.05 * torch.randn_like(t))
    recon, kl = model.elbo(_maps(), seed=0)
    assert kl.shape == (4, 5) and (kl >= 0).all() and kl.sum() > 0
    # make every posterior return the prior's (mu, ln s): the KL of every block vanishes
    for stage in model.dec_stages:
        for block in stage:
            block.posterior_params = lambda h, act, block=block: block.prior_params(h)[:2]
    _, kl = model.elbo(_maps(), seed=0)
    assert torch.allclose(kl, torch.zeros_like(kl), atol=1e-5)


def test_gaussian_likelihood_matches_torch_normal():
    g = torch.Generator().manual_seed(2)
    x, mean, log_scale = (torch.randn(3, 2, 5, 5, generator=g) for _ in range(3))
    ref = torch.distributions.Normal(mean, log_scale.exp()).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(gaussian_log_likelihood(x, mean, log_scale), ref, atol=1e-4)
    # the model's reconstruction term is this likelihood at its own output
    model = VDVAE(**TINY)
    x = _maps()
    out = model(x, seed=5)
    recon, kl = model.elbo(x, seed=5)
    ref = torch.distributions.Normal(out.mean, out.log_scale.exp()).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(recon, ref, rtol=1e-5, atol=1e-3)
    assert torch.allclose(model.log_prob(x, seed=5), recon - kl.sum(1))
    dims = 2 * 16 * 16
    model.eval()  # eval loss: KL weight 1, seed 0
    with torch.no_grad():
        assert math.isclose(float(model.loss(x)), float(-model.log_prob(x, seed=0).mean() / dims), rel_tol=1e-6)


def test_kl_warmup_counts_training_batches():
    model = VDVAE(**TINY, kl_warmup_steps=4)
    x = _maps()
    assert model.kl_weight == 0.25
    model.loss(x)
    model.loss((x, torch.zeros(4, 6)))  # (x, theta) batches: theta ignored
    assert int(model.train_batches) == 2 and model.kl_weight == 0.75
    with torch.no_grad():
        model.loss(x)  # no gradient: not a training batch
    model.eval()
    model.loss(x)
    assert int(model.train_batches) == 2
    assert "train_batches" in model.state_dict()  # travels with the weights: a resumed run continues the warm-up


def test_a_few_training_steps_lower_the_negative_elbo():
    torch.manual_seed(0)
    model = VDVAE(**TINY)
    # smooth, correlated two-channel maps
    base = torch.nn.functional.avg_pool2d(_maps(8, 1, 32, seed=3), 2) * 2
    x = torch.cat([base, 0.8 * base + 0.2 * _maps(8, 1, 16, seed=4)], 1)
    model.eval()
    with torch.no_grad():
        before = float(model.loss(x))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(25):
        opt.zero_grad()
        model.loss(x).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(model.loss(x))
    assert after < before - 0.3, (before, after)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_pix=18), r"n_pix: 3 stages halve the maps 2 times, so n_pix must be divisible by 2\^2 = 4, got 18"),
    (dict(enc_blocks=[1, 1]), "enc_blocks: expected 3 entries"),
    (dict(z_channels=[2, 0, 1]), r"z_channels\[1\]: expected an integer >= 1"),
    (dict(bottleneck=1.5), "bottleneck: expected a ratio in"),
    (dict(likelihood_scale="mixture"), "likelihood_scale: expected one of"),
    (dict(widths=[]), "widths: expected a non-empty list"),
])
def test_bad_configs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VDVAE(**{**TINY, **kwargs})


def test_bad_inputs_raise_clear_errors():
    model = VDVAE(**TINY)
    with pytest.raises(ValueError, match=r"x: expected maps of shape \(N, 2, 16, 16\), got \(4, 3, 16, 16\)"):
        model.encode(torch.zeros(4, 3, 16, 16))
    with pytest.raises(ValueError, match=r"expected maps of shape \(N, 2, 16, 16\), got \(2, 16, 16\)"):
        model.loss(torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match="finite"):
        model.log_prob(torch.full((1, 2, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="cond: the VDVAE is unconditional"):
        model.sample(2, torch.zeros(2, 6), seed=0)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, seed=0, temperature=-1.0)


def test_sampling_temperature_zero_is_deterministic():
    model = VDVAE(**TINY)
    assert torch.equal(model.sample(2, seed=0, temperature=0.0), model.sample(2, seed=1, temperature=0.0))
    assert not torch.equal(model.sample(2, seed=0), model.sample(2, seed=1))


# --------------------------------------------------------------------------- the trainer's gradient skip
class _Scaled(nn.Module):
    """A linear model whose loss is multiplied by ``scale`` (an artificially huge gradient)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.w = nn.Parameter(torch.ones(3))

    def loss(self, batch):
        return self.scale * ((batch @ self.w) ** 2).mean()


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # no update at all: torch warns
def test_gradient_skip_leaves_the_weights_and_counts_the_steps():
    batches = [torch.ones(4, 3)] * 3
    huge = _Scaled(1e6)
    result = Trainer(huge, TrainConfig(max_steps=3, batch_size=4, lr=0.1, skip_grad_norm=100.0,
                                       progress=False)).fit(batches)
    assert result["steps"] == 3 and result["skipped_steps"] == 3
    assert torch.equal(huge.w.detach(), torch.ones(3))
    tame = _Scaled(1.0)  # gradient norm 6 sqrt(3) ~ 10 < 100: every update is applied
    result = Trainer(tame, TrainConfig(max_steps=3, batch_size=4, lr=0.1, skip_grad_norm=100.0, clip_grad=1.0,
                                       progress=False)).fit(batches)
    assert result["skipped_steps"] == 0 and not torch.equal(tame.w.detach(), torch.ones(3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(skip_grad_norm=0.0), "skip_grad_norm: expected a number > 0"),
    (dict(momentum=0.9), "momentum: only sgd and rmsprop"),
    (dict(momentum=-0.1, optimizer="rmsprop"), "momentum: expected a number >= 0"),
])
def test_train_config_checks_the_new_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(max_steps=1, **kwargs)


def test_rmsprop_gets_its_momentum():
    trainer = Trainer(_Scaled(1.0), TrainConfig(max_steps=1, batch_size=4, optimizer="rmsprop", lr=1e-3,
                                                momentum=0.9, weight_decay=1e-4, progress=False))
    trainer.fit([torch.ones(4, 3)])
    group = trainer.opt.param_groups[0]
    assert isinstance(trainer.opt, torch.optim.RMSprop) and group["momentum"] == 0.9
    assert group["weight_decay"] == 1e-4


# --------------------------------------------------------------------------- recipe
def test_linear_probe_recovers_linear_parameters_and_not_noise():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(300, 8))
    theta = np.stack([codes @ rng.normal(size=8), rng.normal(size=300)], 1)  # linear; pure noise
    r2 = recipe.linear_probe(codes[:200], theta[:200], codes[200:], theta[200:])
    assert r2.shape == (2,) and r2[0] > 0.99 and r2[1] < 0.1
    with pytest.raises(ValueError, match="codes and theta: expected as many rows"):
        recipe.linear_probe(codes[:10], theta[:9], codes, theta)
    with pytest.raises(ValueError, match="codes_test, theta_test: expected 8 code"):
        recipe.linear_probe(codes, theta, codes[:, :3], theta)


def test_quick_recipe_trains_saves_and_loads(tmp_path):
    path = recipe.train_vdvae_recipe("quick", out=tmp_path, max_steps=3, log=lambda *a: None)
    model, ckpt = checkpoints.load_model("vdvae", directory=tmp_path)
    assert path == tmp_path / "vdvae.pt" and isinstance(model, VDVAE) and ckpt["config"]["kind"] == "vdvae"
    metrics = ckpt["metadata"]["metrics"]
    assert metrics["steps"] == 3 and math.isfinite(metrics["val_neg_elbo_per_dim"])
    # one mean loss per (started) epoch, so 18,000 steps fit in a record of at most 1,000 numbers
    assert len(metrics["train_loss"]) == math.ceil(metrics["epochs"])
    assert set(metrics["probe_r2"]) == set(metrics["probe_r2_hierarchy"]) == set(recipe.PAPER_R2)
    assert ckpt["normaliser"] is not None and len(ckpt["normaliser"]["mean"]) == 3
    assert ckpt["config"]["fields"] == list(recipe.FIELDS)
    assert model.encode(torch.zeros(2, 3, 16, 16)).shape == (2, model.code_length)


def test_quick_recipe_resumes_exactly(tmp_path):
    quiet = dict(log=lambda *a: None)
    straight, split = tmp_path / "straight", tmp_path / "split"
    # 3 steps per epoch: the "kill" after 2 steps falls mid-epoch, and the short run's extra
    # validation pass at step 2 must not change what follows
    recipe.train_vdvae_recipe("quick", out=straight, max_steps=4, **quiet)
    recipe.train_vdvae_recipe("quick", out=split, max_steps=2, **quiet)
    state = torch.load(split / "vdvae.state.pt", weights_only=False)
    assert state["step"] == 2 and state["batches_done"] == 2
    recipe.train_vdvae_recipe("quick", out=split, max_steps=4, resume=True, **quiet)
    assert torch.load(split / "vdvae.state.pt", weights_only=False)["history"]["resumed_at"] == [2]
    a, _ = checkpoints.load_model("vdvae", directory=straight)
    b, _ = checkpoints.load_model("vdvae", directory=split)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name
    assert int(b.train_batches) == 4
    with pytest.raises(FileNotFoundError, match="resume: no training state"):
        recipe.train_vdvae_recipe("quick", out=tmp_path / "empty", resume=True, **quiet)
    with pytest.raises(ValueError, match="preset: expected one of"):
        recipe.train_vdvae_recipe("huge", out=tmp_path)


# --------------------------------------------------------------------------- notebook 04's helpers and bad input
@pytest.fixture(scope="module")
def quick_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("vdvae_quick")
    recipe.train_vdvae_recipe("quick", out=out, max_steps=2, log=lambda *a: None)
    return out


def test_bad_batches_name_the_channels_and_the_nan_maps():
    model = VDVAE(**TINY)
    with pytest.raises(ValueError, match=r"got \(4, 3, 16, 16\): 3 channel\(s\), but the model was built for 2"):
        model.loss(_maps(4, c=3))
    x = _maps(5)
    x[3, 1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"x: expected finite values, found NaN/inf in map\(s\) \[3\] of the batch of 5"):
        model.loss(x)
    with pytest.raises(ValueError, match=r"8 x 8 pixels, but the model was built for 16 x 16"):
        model.encode(_maps(2, n_pix=8))


def test_physical_maps_are_checked_before_the_network(quick_checkpoint):
    vae = recipe.VDVAEMaps.load(quick_checkpoint)
    maps, _, _ = recipe.vdvae_split("quick", "test", select=[0, 1, 2])
    assert vae.encode(maps).shape == (3, vae.code_length)
    with pytest.raises(ValueError, match=r"maps: .* 2 channel\(s\), expected 3 \(Mgas, HI, B\)"):
        vae.encode(maps[:, :2])
    bad = maps.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"maps: expected finite values, found NaN/inf in map\(s\) \[1\] of 3"):
        vae.reconstruct(bad)
    bad = maps.copy()
    bad[2, 2, 3, 3] = 0.0
    with pytest.raises(ValueError, match="maps: expected positive pixels"):
        vae.bits_per_dim(bad)


def test_a_checkpoint_that_does_not_match_is_refused(quick_checkpoint):
    vae = recipe.VDVAEMaps.load(quick_checkpoint, code_length=64, config={"n_pix": 16, "widths": [8, 8, 8]})
    assert vae.code_length == 64
    with pytest.raises(ValueError, match=r"code_length: expected 256, but the checkpoint .* has a top latent of "
                                         r"4 x 4 x 4 = 64"):
        recipe.VDVAEMaps.load(quick_checkpoint, code_length=256)
    with pytest.raises(ValueError, match=r"config: the checkpoint .* does not match: n_pix expected 64, checkpoint has 16"):
        recipe.VDVAEMaps.load(quick_checkpoint, config={"n_pix": 64})
    with pytest.raises(ValueError, match=r"config: unknown VDVAE setting\(s\) \['latent'\]"):
        recipe.VDVAEMaps.load(quick_checkpoint, config={"latent": 256})
    # weights saved under a config they do not fit (the top latent grown): a clear error, not a silent load
    other = {**vae.model.config, "z_channels": [2, 2, 8]}
    bad_dir = quick_checkpoint / "mismatch"
    checkpoints.save_pretrained("vdvae", {"kind": "vdvae", "model": other, "fields": list(recipe.FIELDS)},
                                vae.model.state_dict(), vae.normaliser, {}, "test", 0.0, directory=bad_dir)
    with pytest.raises(checkpoints.PretrainedError, match="does not fit VDVAE"):
        recipe.VDVAEMaps.load(bad_dir)
    with pytest.raises(ValueError, match="normaliser: expected per-channel statistics of 3 channels"):
        recipe.VDVAEMaps(vae.model, {"mean": [0.0], "std": [1.0], "log10": True})


def test_split_maps_alone_equal_the_recipes_sets_and_never_share_a_simulation():
    from cosmonb.recipes.maps import map_sets

    spec = recipe.PRESETS["quick"]["data"]
    full = map_sets(recipe.FIELDS, spec["n_pix"], n_sims=spec["n_sims"], maps_per_sim=spec["maps_per_sim"], n_params=6,
                    fractions=spec["fractions"])
    for split in ("train", "test"):
        maps, params, index = recipe.vdvae_split("quick", split)
        assert np.array_equal(index, full.splits[split]) and np.array_equal(maps, full.maps[index])
        assert np.array_equal(params, full.params[index])
    per = spec["maps_per_sim"]
    idx = recipe.vdvae_split_index("quick")
    assert not set(idx["train"] // per) & set(idx["test"] // per)
    with pytest.raises(ValueError, match="select: expected positions in 0.."):
        recipe.vdvae_split("quick", "test", select=[10_000])


def test_exact_bits_per_dim_follows_the_change_of_variables():
    from cosmonb import sims
    from cosmonb.recipes.maps import exact_bits_per_dim

    params = sims.sample_prior(3, seed=2)
    maps = sims.simulate(params, recipe.FIELDS, n_pix=16, seed=2)
    norm = {"log10": True, "log10_offset": 0.0, "mean": [10.0, 5.0, -8.0], "std": [0.5, 0.9, 0.4]}
    bpd = exact_bits_per_dim(maps, params, recipe.FIELDS, norm)
    # by hand: ln p(x) = ln p(X) + sum ln(X ln 10 s_c), in bits per dimension
    ln_px = sims.multifield_log_likelihood(maps, params, recipe.FIELDS)
    jac = np.log(maps.astype(np.float64) * math.log(10) * np.array(norm["std"])[None, :, None, None]).sum((1, 2, 3))
    assert np.allclose(bpd, -(ln_px + jac) / (3 * 16 * 16 * math.log(2)))
    # the shift does not enter; doubling every std lowers the density of x by exactly one bit per dimension
    shifted = exact_bits_per_dim(maps, params, recipe.FIELDS, {**norm, "mean": [0.0, 0.0, 0.0]})
    wider = exact_bits_per_dim(maps, params, recipe.FIELDS, {**norm, "std": [2 * s for s in norm["std"]]})
    assert np.allclose(shifted, bpd) and np.allclose(bpd - wider, 1.0)
    # the true parameters make the maps more probable than wrong ones
    wrong = params.copy()
    wrong[:, 2] = np.where(params[:, 2] > 1, 0.3, 3.5)
    assert np.all(exact_bits_per_dim(maps, wrong, recipe.FIELDS, norm) > bpd)
    with pytest.raises(ValueError, match=r"maps: expected \(N, 3, H, W\) maps"):
        exact_bits_per_dim(maps[:, :2], params, recipe.FIELDS, norm)


def test_spectra_agreement_sees_lost_small_scale_power():
    from cosmonb import sims

    maps = sims.simulate(sims.sample_prior(40, seed=3), recipe.FIELDS, n_pix=32, seed=3)
    k, real = recipe.spectra(maps)
    assert k[-1] <= math.pi * 32 / sims.BOX_SIZE + 1e-9 and set(real) == {"auto 0", "auto 1", "auto 2", "cross 0-1",
                                                                          "cross 0-2", "cross 1-2"}
    assert recipe.spectra_agreement(k, real, real) == {n: k[-1] for n in real}
    # a blurred copy (a 3x3 periodic box filter) loses power towards the pixel scale, not at the largest scales
    blurred = sum(np.roll(np.roll(maps, i, -1), j, -2) for i in (-1, 0, 1) for j in (-1, 0, 1)) / 9
    _, gen = recipe.spectra(blurred)
    agree = recipe.spectra_agreement(k, gen, real)
    assert all(agree[n] >= k[0] for n in agree)  # the largest scales agree
    assert agree["auto 1"] < k[-1] and agree["auto 2"] < k[-1]  # HI and B lose power before Nyquist
