"""Tests of the DDPM (cosmonb.models.diffusion), its U-Net (cosmonb.models.unet) and its recipe."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmonb import sims
from cosmonb.models.diffusion import DDPM, make_betas
from cosmonb.models.unet import UNet

TINY = dict(n_pix=8, channels=8, channel_mults=(1, 2), attention_resolutions=(4,), n_res_blocks=1, timesteps=20)


def _model(**kw) -> DDPM:
    torch.manual_seed(0)
    return DDPM(**{**TINY, **kw}).eval()


def _maps(n: int, n_pix: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, n_pix, n_pix, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- schedule and forward process
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_is_monotone_and_in_range(schedule):
    model = DDPM(**{**TINY, "timesteps": 1000, "schedule": schedule})
    betas, abar = model.betas.double(), model.alphas_cumprod.double()
    assert betas.shape == abar.shape == (1000,)
    assert bool((betas > 0).all() and (betas < 1).all())
    assert bool((torch.diff(betas) >= 0).all())
    assert bool((abar > 0).all() and (abar < 1).all())
    assert bool((torch.diff(abar) < 0).all())
    # derived from the config, not stored: a checkpoint cannot carry a stale schedule
    assert "betas" not in model.state_dict() and "alphas_cumprod" not in model.state_dict()


def test_cosine_schedule_is_non_linear():
    betas = make_betas("cosine", 1000)
    second = np.diff(betas[:900], 2)  # away from the clipping at the end
    assert np.abs(second).max() > 1e-7 and betas[0] < 1e-4 < betas[500]
    with pytest.raises(ValueError, match="schedule: expected one of"):
        make_betas("quadratic", 10)


def test_q_sample_marginal_mean_and_variance():
    model = DDPM(**{**TINY, "timesteps": 100})
    n, index = 4000, 37
    x0 = torch.full((n, 1, 8, 8), 2.0)
    t = torch.full((n,), index)
    x_t = model.q_sample(x0, t, torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    abar = float(model.alphas_cumprod[index])
    mean, var = float(x_t.mean()), float(x_t.var())
    # 256,000 draws: standard errors ~2e-3 on the mean, ~3e-3 on the variance
    assert abs(mean - 2.0 * abar ** 0.5) < 0.01
    assert abs(var - (1 - abar)) < 0.015


# --------------------------------------------------------------------------- the denoiser
def test_unet_is_equivariant_to_periodic_rolls_by_the_downsampling_factor():
    torch.manual_seed(0)
    net = UNet(channels=8, channel_mults=(1, 2, 2), attention_resolutions=(8,), n_pix=16).eval()
    assert net.shift_period == 4
    x, t, theta = torch.randn(2, 1, 16, 16), torch.tensor([3, 500]), torch.rand(2, 2)
    with torch.no_grad():
        y = net(x, t, theta)
        for shift in [(4, 0), (0, 8), (12, 4)]:
            rolled = net(torch.roll(x, shift, dims=(-2, -1)), t, theta)
            assert torch.allclose(rolled, torch.roll(y, shift, dims=(-2, -1)), atol=1e-5)
        # a shift by one pixel is not a symmetry of the strided convolutions: the test can fail
        off = net(torch.roll(x, (1, 0), dims=(-2, -1)), t, theta)
        assert not torch.allclose(off, torch.roll(y, (1, 0), dims=(-2, -1)), atol=1e-3)


def test_conditioning_and_time_change_the_output():
    torch.manual_seed(0)
    net = UNet(channels=8, channel_mults=(1, 2), attention_resolutions=(), n_pix=8).eval()
    x, t = torch.randn(1, 1, 8, 8), torch.tensor([10])
    with torch.no_grad():
        a = net(x, t, torch.tensor([[0.2, 0.3]]))
        b = net(x, t, torch.tensor([[0.8, 0.6]]))
        c = net(x, torch.tensor([900]), torch.tensor([[0.2, 0.3]]))
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3
    model = _model()
    s1 = model.sample(2, torch.tensor([[0.2, 0.3]]), seed=0, method="ddim", steps=4)
    s2 = model.sample(2, torch.tensor([[0.8, 0.6]]), seed=0, method="ddim", steps=4)
    assert (s1 - s2).abs().max() > 1e-3


# --------------------------------------------------------------------------- loss
def test_loss_with_fixed_steps_and_noise_is_the_epsilon_mse():
    model = _model()
    x0, theta = _maps(4), torch.rand(4, 2)
    t, noise = torch.tensor([0, 5, 10, 19]), _maps(4, seed=1)
    with torch.no_grad():
        expected = torch.mean((noise - model.net(model.q_sample(x0, t, noise), t, theta)) ** 2)
        assert torch.equal(model.loss((x0, theta, t, noise)), expected)
        assert torch.equal(model.loss((x0, theta, t, noise)), model.loss((x0, theta, t, noise)))


def test_v_prediction_loss_noise_and_clean_map():
    model = _model(prediction="v")
    assert model.config["prediction"] == "v" and DDPM(**model.config).prediction == "v"
    x0, theta = _maps(4), torch.rand(4, 2)
    t, noise = torch.tensor([0, 5, 10, 19]), _maps(4, seed=1)
    abar = model.alphas_cumprod[t][:, None, None, None]
    v = abar.sqrt() * noise - (1 - abar).sqrt() * x0
    with torch.no_grad():
        x_t = model.q_sample(x0, t, noise)
        v_hat = model.net(x_t, t, theta)
        assert torch.allclose(model.loss((x0, theta, t, noise)), torch.mean((v - v_hat) ** 2))
        eps_hat, x0_hat = model.denoise(x_t, t, theta)
    # the implied noise and clean map make x_t again, and |v - v_hat|^2 = |eps - eps_hat|^2 / abar
    assert torch.allclose(abar.sqrt() * x0_hat + (1 - abar).sqrt() * eps_hat, x_t, atol=1e-5)
    per_map = lambda a: (a ** 2).flatten(1).sum(1)  # noqa: E731
    assert torch.allclose(per_map(v - v_hat), per_map(noise - eps_hat) / abar.flatten(), rtol=1e-3)


class _Oracle(torch.nn.Module):
    """A stand-in network that returns a fixed output."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, t, cond):
        return self.out


def test_v_prediction_keeps_the_clean_map_exact_where_eps_amplifies_errors(monkeypatch):
    # at the last step of the 1000-step cosine schedule abar ~ 2e-9: an oracle eps network off by
    # 1e-4 (a tiny error) puts the clean map off by ~2 (1e-4 / sqrt(abar)); an oracle v network off
    # by the same 1e-4 puts it off by 1e-4
    big = dict(TINY, timesteps=1000)
    x0, noise = _maps(2), _maps(2, seed=1)
    t = torch.full((2,), 999)
    errors = {}
    for prediction in ("eps", "v"):
        model = _model(**big, prediction=prediction)
        abar = model.alphas_cumprod[t][:, None, None, None]
        truth = noise if prediction == "eps" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
        monkeypatch.setattr(model, "net", _Oracle(truth + 1e-4))
        _, x0_hat = model.denoise(model.q_sample(x0, t, noise), t, None)
        errors[prediction] = float((x0_hat - x0).abs().max())
    assert float(model.alphas_cumprod[-1]) < 1e-8
    assert errors["v"] < 3e-4 and errors["eps"] > 1.0, errors


# --------------------------------------------------------------------------- samplers
def test_ddim_is_deterministic_given_the_seed_and_takes_fewer_steps():
    model = _model()
    cond = torch.tensor([[0.5, 0.5]])
    assert model.ddim_steps(4) == [19, 13, 6, 0]
    a = model.sample(3, cond, seed=7, method="ddim", steps=4)
    assert a.shape == (3, 1, 8, 8) and bool(torch.isfinite(a).all())
    assert torch.equal(a, model.sample(3, cond, seed=7, method="ddim", steps=4))
    assert not torch.equal(a, model.sample(3, cond, seed=8, method="ddim", steps=4))
    assert not torch.equal(a, model.sample(3, cond, seed=7, method="ddim", steps=10))
    # eta > 0 adds noise along the way
    assert not torch.allclose(a, model.sample(3, cond, seed=7, method="ddim", steps=4, eta=1.0))
    assert model.sample(2, cond, seed=0, method="ddim", steps=1).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddim_with_every_step_and_eta_one_is_ancestral_sampling(prediction):
    # sigma^2 = (1 - abar_prev)/(1 - abar) (1 - abar/abar_prev) is the posterior variance, and the
    # DDIM update with it is the posterior mean: the same draws give the same maps
    model = _model(prediction=prediction)
    cond = torch.tensor([[0.3, 0.7]])
    anc = model.sample(2, cond, seed=3)
    ddim = model.sample(2, cond, seed=3, method="ddim", steps=model.timesteps, eta=1.0)
    assert torch.allclose(anc, ddim, atol=1e-4)


# --------------------------------------------------------------------------- the variational bound
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_kl_term_equals_torch_distributions(prediction):
    model = _model(prediction=prediction).double()
    x0, theta = _maps(1).double(), torch.tensor([[0.4, 0.6]])
    index = 7
    noise = torch.randn((1, 1, 1, 8, 8), generator=torch.Generator().manual_seed(5))[0].double()
    t = torch.tensor([index])
    x_t = model.q_sample(x0, t, noise)
    mean_q, var_q = model.posterior_mean_variance(x0, x_t, t)
    with torch.no_grad():
        mean_p, var_p = model.p_mean_variance(x_t, t, theta.double())
    assert torch.allclose(var_q, var_p)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean_q, var_q.sqrt()),
                                           torch.distributions.Normal(mean_p, var_p.sqrt())).sum()
    term = model.vlb_terms(x0[0], theta, [index], seed=5)[0, 0]
    assert float(kl) > 0
    assert torch.allclose(term.double(), kl, rtol=1e-4)

    # L_0: the Gaussian decoder N(x0; mu_theta(x_1, 1), beta_1)
    t0 = torch.tensor([0])
    x_1 = model.q_sample(x0, t0, noise)
    with torch.no_grad():
        mean0, var0 = model.p_mean_variance(x_1, t0, theta.double())
    nll = -torch.distributions.Normal(mean0, var0.sqrt()).log_prob(x0).sum()
    assert torch.allclose(var0.flatten()[0], model.betas[0])
    assert torch.allclose(model.vlb_terms(x0[0], theta, [0], seed=5)[0, 0].double(), nll, rtol=1e-4)


def test_vlb_terms_batched_over_theta_equal_the_per_theta_loop():
    model = _model()
    x0, grid = _maps(1)[0], torch.rand(7, 2, generator=torch.Generator().manual_seed(2))
    steps = [0, 3, 12]
    batched = model.vlb_terms(x0, grid, steps, seed=4, n_noise=2, batch_size=3)
    assert batched.shape == (7, 3)
    loop = torch.cat([model.vlb_terms(x0, grid[i:i + 1], steps, seed=4, n_noise=2) for i in range(7)])
    assert torch.allclose(batched, loop, rtol=1e-5, atol=1e-4)
    # the same theta twice gives the same terms (common random numbers); another seed other terms
    twice = model.vlb_terms(x0, grid[[1, 1]], steps, seed=4, n_noise=2)
    assert torch.equal(twice[0], twice[1])
    assert not torch.allclose(batched, model.vlb_terms(x0, grid, steps, seed=5, n_noise=2))


def test_log_prob_is_minus_l0_and_deterministic():
    model = _model()
    x, cond = _maps(3), torch.rand(3, 2)
    lp = model.log_prob(x, cond)
    assert lp.shape == (3,) and torch.equal(lp, model.log_prob(x, cond))
    for i in range(3):
        l0 = model.vlb_terms(x[i], cond[i:i + 1], [0], seed=0)[0, 0]
        assert torch.allclose(-lp[i], l0, rtol=1e-5)
    # one row of cond broadcasts
    assert torch.allclose(model.log_prob(x, cond[:1]), model.log_prob(x, cond[:1].expand(3, 2)))


# --------------------------------------------------------------------------- errors
def test_bad_input_raises_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match=r"batch\[0\] \(x0\): expected maps of shape \(B, 1, 8, 8\), got \(4, 1, 16, 16\)"):
        model.loss((_maps(4, 16), torch.rand(4, 2)))
    with pytest.raises(ValueError, match=r"batch\[1\] \(theta\): expected parameters of shape \(4, 2\), got \(4, 3\)"):
        model.loss((_maps(4), torch.rand(4, 3)))
    with pytest.raises(ValueError, match=r"cond: expected parameters of shape \(5, 2\) or \(1, 2\), got \(3, 2\)"):
        model.sample(5, torch.rand(3, 2), seed=0)
    with pytest.raises(ValueError, match="this model is conditional"):
        model.sample(2, None, seed=0)
    with pytest.raises(ValueError, match=r"prediction: expected one of \(.eps., .v.\), got .x0."):
        DDPM(**TINY, prediction="x0")
    with pytest.raises(ValueError, match=r"timesteps: expected step indices in \[0, 19\]"):
        model.vlb_terms(_maps(1)[0], torch.rand(2, 2), [20])
    with pytest.raises(ValueError, match="x0: expected one map"):
        model.vlb_terms(_maps(2), torch.rand(2, 2), [0])
    with pytest.raises(ValueError, match="steps: ancestral sampling runs all 20 steps"):
        model.sample(2, torch.rand(1, 2), seed=0, steps=5)
    with pytest.raises(ValueError, match="steps: expected at most timesteps=20"):
        model.sample(2, torch.rand(1, 2), seed=0, method="ddim", steps=50)
    with pytest.raises(ValueError, match="cond: expected finite parameters"):
        model.log_prob(_maps(1), torch.tensor([[float("nan"), 0.5]]))
    with pytest.raises(ValueError, match="n_pix: 2 levels halve the map 1 times, so n_pix must be a multiple of 2"):
        DDPM(**{**TINY, "n_pix": 9})
    with pytest.raises(ValueError, match=r"attention_resolutions: \[16\] are not map sizes"):
        DDPM(**{**TINY, "attention_resolutions": (16,)})
    with pytest.raises(ValueError, match="norm_groups: every level width must be a multiple"):
        DDPM(**{**TINY, "channels": 6})
    with pytest.raises(ValueError, match="schedule: expected one of"):
        DDPM(**{**TINY, "schedule": "sigmoid"})


# --------------------------------------------------------------------------- the recipe
def _fast_quick(monkeypatch, **score):
    """The quick preset, scored every 4 steps on tiny samples (keeps the recipe tests short)."""
    from cosmonb.recipes import diffusion as recipe

    score = {"every": 4, "n_sims": 1, "n_generated": 3, "ddim_steps": 3, **score}
    spec = dict(recipe.PRESETS["quick"], score=score)
    monkeypatch.setitem(recipe.PRESETS, "quick", spec)
    return recipe


def test_recipe_quick_trains_saves_and_loads(tmp_path, monkeypatch):
    from cosmonb import checkpoints

    recipe = _fast_quick(monkeypatch)
    path = recipe.train_ddpm_recipe("quick", out=tmp_path, max_steps=8, log=lambda *a: None)
    assert path == tmp_path / "ddpm.pt" and (tmp_path / "ddpm.state.pt").is_file()
    model, ckpt = checkpoints.load_model("ddpm", directory=tmp_path)
    assert isinstance(model, DDPM) and model.net.n_pix == 16
    metrics = ckpt["metadata"]["metrics"]
    assert metrics["steps"] == 8 and metrics["pk_chi2_steps"] == [4, 8]
    assert metrics["val_steps"] == [8] and np.isfinite(metrics["val_eps_mse"])
    assert ckpt["normaliser"]["param_shift"] == pytest.approx([0.1, 0.6])
    assert ckpt["config"]["ema_decay"] == 0.9 and ckpt["config"]["preset"] == "quick"
    # the shipped weights are the selected EMA weights: not the raw weights of the last step
    state = torch.load(tmp_path / "ddpm.state.pt", weights_only=False)
    raw = state["model"]
    assert any(not torch.equal(raw[k], v) for k, v in model.state_dict().items())
    # the validation metric is deterministic: the shipped model reproduces it
    val = recipe.validation_batches(_quick_val_set(recipe), model.timesteps, 8)
    with torch.no_grad():
        mse = np.average([float(model.loss(b)) for b in val], weights=[len(b[0]) for b in val])
    assert mse == pytest.approx(metrics["val_eps_mse"], rel=1e-6)
    assert model.sample(2, torch.tensor([[0.5, 0.5]]), seed=0, method="ddim", steps=3).shape == (2, 1, 16, 16)


def _quick_val_set(recipe):
    d = recipe.PRESETS["quick"]["data"]
    return recipe.map_sets(("Mcdm",), d["n_pix"], n_sims=d["n_sims"], maps_per_sim=d["maps_per_sim"],
                           n_params=2, seed=0, augment=False).val


def test_recipe_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    from cosmonb import checkpoints

    recipe = _fast_quick(monkeypatch)
    quiet = dict(log=lambda *a: None)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    recipe.train_ddpm_recipe("quick", out=straight, max_steps=8, **quiet)
    recipe.train_ddpm_recipe("quick", out=killed, max_steps=4, **quiet)  # "killed" after 4 steps
    assert torch.load(killed / "ddpm.state.pt", weights_only=False)["step"] == 4
    # 4 steps of 8 maps are 32 of the 192 items of the 8-fold orbit: the resume is mid-epoch
    recipe.train_ddpm_recipe("quick", out=killed, max_steps=8, resume=True, **quiet)
    a, ca = checkpoints.load_model("ddpm", directory=straight)
    b, cb = checkpoints.load_model("ddpm", directory=killed)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    ma, mb = ca["metadata"]["metrics"], cb["metadata"]["metrics"]
    assert ma["pk_chi2_history"] == mb["pk_chi2_history"] and ma["val_eps_mse"] == mb["val_eps_mse"]
    sa = torch.load(straight / "ddpm.state.pt", weights_only=False)["model"]
    sb = torch.load(killed / "ddpm.state.pt", weights_only=False)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.load(killed / "ddpm.state.pt", weights_only=False)["history"]["resumed_at"] == [4]
    with pytest.raises(FileNotFoundError, match="no training state"):
        recipe.train_ddpm_recipe("quick", out=tmp_path / "empty", resume=True, **quiet)


def test_recipe_init_from_a_lower_resolution_checkpoint(tmp_path, monkeypatch):
    from cosmonb import checkpoints

    recipe = _fast_quick(monkeypatch, every=None)
    quiet = dict(log=lambda *a: None)
    recipe.train_ddpm_recipe("quick", out=tmp_path, max_steps=2, **quiet)
    low, _ = checkpoints.load_model("ddpm", directory=tmp_path)
    # a second stage at twice the resolution, attention at the same level of the network
    quick = recipe.PRESETS["quick"]
    stage2 = dict(quick, name="ddpm_32", init_from="ddpm", data=dict(quick["data"], n_pix=32),
                  model=dict(quick["model"], n_pix=32, attention_resolutions=[16]),
                  train=dict(quick["train"], lr=1e-12))
    monkeypatch.setitem(recipe.PRESETS, "quick_32", stage2)
    recipe.train_ddpm_recipe("quick_32", out=tmp_path, max_steps=1, **quiet)
    high, ckpt = checkpoints.load_model("ddpm_32", directory=tmp_path)
    assert high.net.n_pix == 32 and ckpt["config"]["init_from"].endswith("ddpm.pt")
    # lr ~ 0: the second stage still holds (up to the EMA of equal weights) the first stage's weights
    for k, v in low.state_dict().items():
        assert torch.allclose(v, high.state_dict()[k], atol=1e-6), k
    bad = dict(stage2, name="ddpm_bad", model=dict(stage2["model"], channels=16, norm_groups=4))
    monkeypatch.setitem(recipe.PRESETS, "quick_bad", bad)
    with pytest.raises(ValueError, match="init_from: ddpm .* does not fit this preset's network"):
        recipe.train_ddpm_recipe("quick_bad", out=tmp_path, max_steps=1, **quiet)



def test_pk_chi2_prefers_the_right_spectrum():
    from cosmonb.recipes.diffusion import pk_chi2

    rng = np.random.default_rng(0)
    true = np.exp(0.5 * rng.normal(size=(15, 16, 16)))
    same = np.exp(0.5 * rng.normal(size=(30, 16, 16)))
    other = np.exp(1.5 * rng.normal(size=(30, 16, 16)))
    assert pk_chi2(same, true) < 2 < pk_chi2(other, true)
    assert pk_chi2(same[:, None], true[:, None]) == pytest.approx(pk_chi2(same, true))
    with pytest.raises(ValueError, match="generated, simulated: expected maps"):
        pk_chi2(same[:, :8], true)


# --------------------------------------------------------------------------- the emulator of notebook 05
@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    from cosmonb.recipes.diffusion import DiffusionEmulator, train_ddpm_recipe

    out = tmp_path_factory.mktemp("ddpm_emulator")
    train_ddpm_recipe("quick", out=out, max_steps=2, log=lambda *a: None)
    return DiffusionEmulator.load(out)


def test_emulator_bad_input_raises_clear_errors(emulator):
    n = emulator.n_pix
    good = sims.simulate([[0.3, 0.8, 1, 1, 1, 1]], "Mcdm", n_pix=n, seed=0)[0, 0]
    # a map of the wrong size
    with pytest.raises(ValueError, match=rf"maps: expected Mcdm maps of {n} x {n} pixels .* got shape \(1, 32, 32\)"):
        emulator.vlb_posteriors(np.ones((32, 32)), [0.3, 0.8], n_grid=3)
    with pytest.raises(ValueError, match="maps: expected finite, positive"):
        emulator.to_model_units(-good)
    # parameters outside the prior
    with pytest.raises(ValueError, match=r"theta: expected Omega_m in \[0.1, 0.5\] \(the prior\), got 0.6"):
        emulator.sample([0.6, 0.8], n=1, steps=2)
    with pytest.raises(ValueError, match=r"theta: expected sigma_8 in \[0.6, 1\] \(the prior\), got 0.55"):
        emulator.sample([[0.3, 0.8], [0.3, 0.55]], n=2, steps=2)
    with pytest.raises(ValueError, match=r"centre: expected Omega_m in \[0.1, 0.5\]"):
        emulator.vlb_posteriors(good, [0.05, 0.8], n_grid=3)
    with pytest.raises(ValueError, match="theta: expected finite parameters"):
        emulator.sample([np.nan, 0.8])
    # sampler step counts the 1000-step schedule cannot take
    with pytest.raises(ValueError, match="steps: the cosine schedule has 1000 steps, so DDIM takes an integer from "
                                         "1 to 1000, got 1001"):
        emulator.sample([0.3, 0.8], steps=1001)
    with pytest.raises(ValueError, match="DDIM takes an integer from 1 to 1000, got 0"):
        emulator.sample([0.3, 0.8], steps=0)
    with pytest.raises(ValueError, match="DDIM takes an integer from 1 to 1000, got 2.5"):
        emulator.sample([0.3, 0.8], steps=2.5)
    with pytest.raises(ValueError, match="steps: ancestral sampling runs all 1000 steps of the schedule, got 50"):
        emulator.sample([0.3, 0.8], method="ancestral", steps=50)


def test_emulator_round_trips_units_and_grid_posteriors(emulator):
    from cosmonb.recipes.diffusion import hpd_area

    n = emulator.n_pix
    maps = sims.simulate(np.tile([0.3, 0.8, 1, 1, 1, 1], (2, 1)), "Mcdm", n_pix=n, seed=1)[:, 0]
    z = emulator.to_model_units(maps)
    assert tuple(z.shape) == (2, 1, n, n)
    np.testing.assert_allclose(emulator.to_physical(z), maps, rtol=1e-5)
    # the paper's grid: +-0.1 around the centre, clipped to the prior
    gx, gy = emulator.grid([0.15, 0.95], n_grid=11)
    assert (gx[0], gx[-1]) == pytest.approx((0.1, 0.25)) and (gy[0], gy[-1]) == pytest.approx((0.85, 1.0))
    posts = emulator.vlb_posteriors(maps[0], [0.3, 0.8], (0, 5), n_grid=5, seed=3)
    again = emulator.vlb_posteriors(maps[0], [0.3, 0.8], (0, 5), n_grid=5, seed=3)
    assert sorted(posts) == [0, 5] and np.array_equal(posts[0].log_post, again[0].log_post)  # common random numbers
    # log-posterior = -L_0 of DDPM.vlb_terms on the same grid
    u = emulator.to_unit(np.stack(np.meshgrid(posts[0].x, posts[0].y, indexing="ij"), -1).reshape(-1, 2))
    terms = emulator.model.vlb_terms(z[0], u, [0], seed=3)[:, 0].double().numpy()
    np.testing.assert_allclose(posts[0].log_post.ravel(), -terms, rtol=1e-6)
    assert 0 < hpd_area(posts[0]) <= 0.2 * 0.2 + 1e-12
    g = emulator.sample([0.3, 0.8], n=3, seed=0, steps=3)
    assert g.shape == (3, n, n) and np.all(g > 0)
    assert np.array_equal(g, emulator.sample([0.3, 0.8], n=3, seed=0, steps=3))


def test_hpd_area_of_a_gaussian_is_the_ellipse():
    from cosmonb.posteriors import GridPosterior
    from cosmonb.recipes.diffusion import hpd_area

    x, y = np.linspace(-0.5, 0.5, 401), np.linspace(-1.0, 1.0, 401)
    sx, sy = 0.05, 0.1
    post = GridPosterior(x, y, -0.5 * ((x[:, None] / sx) ** 2 + (y[None, :] / sy) ** 2))
    for mass in (0.68, 0.95):
        ellipse = np.pi * sx * sy * (-2 * np.log(1 - mass))  # a 2-dof Gaussian's region holding `mass`
        assert hpd_area(post, mass) == pytest.approx(ellipse, rel=0.02)
