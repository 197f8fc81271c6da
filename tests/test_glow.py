"""HIGlow (cosmonb.models.glow) and its recipe (cosmonb.recipes.glow)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cosmonb import checkpoints
from cosmonb.models.glow import (ConditionalCoupling, ConditionalGlow, ConditionalInjector, InvertibleConv1x1,
                                 higlow_posterior, squeeze2d, unsqueeze2d)
from cosmonb.recipes.glow import PRESETS, glow_data, train_glow_recipe


def _perturbed(model: ConditionalGlow, scale: float = 0.1, seed: int = 0) -> ConditionalGlow:
    """The model with every parameter moved off its initial value (so no layer is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _tiny(dtype=torch.float64, **kw) -> ConditionalGlow:
    torch.manual_seed(0)
    cfg = {"in_channels": 1, "n_pix": 8, "levels": 2, "steps": 2, "hidden": 6, **kw}
    return _perturbed(ConditionalGlow(**cfg).to(dtype))


# --------------------------------------------------------------------------- invertibility
def test_squeeze_round_trip_and_layout():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).reshape(2, 3, 4, 6)
    s = squeeze2d(x)
    assert s.shape == (2, 12, 2, 3)
    assert torch.equal(s[0, :4, 0, 0], torch.tensor([x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1]]))
    assert torch.equal(unsqueeze2d(s), x)


@pytest.mark.parametrize("kw", [{}, {"learned_prior": False}, {"levels": 3}, {"levels": 1, "in_channels": 2}])
def test_inverse_of_forward_float64(kw):
    model = _tiny(**kw)
    x = torch.randn(5, model.in_channels, 8, 8, dtype=torch.float64)
    theta = torch.rand(5, 2, dtype=torch.float64)
    latents, _ = model(x, theta)
    assert torch.allclose(model.inverse(latents, theta), x, atol=1e-10, rtol=0)
    flat = model.flatten_latents(latents)
    assert flat.shape == (5, model.dim)
    assert torch.allclose(model.inverse(flat, theta), x, atol=1e-10, rtol=0)


def test_inverse_of_forward_float32_at_16x16():
    torch.manual_seed(1)
    model = _perturbed(ConditionalGlow(n_pix=16, levels=3, steps=3, hidden=8), 0.05)
    x, theta = torch.randn(4, 1, 16, 16), torch.rand(4, 2)
    latents, _ = model(x, theta)
    assert (model.inverse(latents, theta) - x).abs().max() < 1e-5


# --------------------------------------------------------------------------- change of variables
def _flat_map(model, theta):
    def f(x_flat):
        x = x_flat.reshape(1, model.in_channels, model.n_pix, model.n_pix)
        return model.flatten_latents(model(x, theta)[0])[0]
    return f


@pytest.mark.parametrize("kw", [{"levels": 2}, {"levels": 1, "learned_prior": False}, {"levels": 2, "steps": 3}])
def test_logdet_equals_numerical_jacobian(kw):
    torch.manual_seed(0)
    model = _perturbed(ConditionalGlow(in_channels=1, n_pix=4, hidden=5, **{"steps": 2, **kw}).double(), 0.1)
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    theta = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(_flat_map(model, theta), x.reshape(-1))
    sign, logabsdet = torch.linalg.slogdet(jac)
    latents, logdet = model(x, theta)
    assert abs(float(logdet[0].detach() - logabsdet)) < 1e-8
    assert abs(float(logabsdet)) > 1e-2  # the perturbed flow is not volume-preserving: the test can tell
    # the full model's density is the change of variables with a standard-normal latent
    eps = model.flatten_latents(latents)[0]
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum() + logabsdet
    assert abs(float(model.log_prob(x, theta)[0].detach() - expected.detach())) < 1e-8


def test_log_prob_bits_per_dim_and_loss_agree():
    model = _tiny()
    x, theta = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.rand(6, 2, dtype=torch.float64)
    lp = model.log_prob(x, theta)
    assert torch.allclose(model.bits_per_dim(x, theta), -lp / (64 * math.log(2)))
    assert torch.allclose(model.loss((x, theta)), -lp.mean() / 64)
    # the condition matters: another theta, another density
    assert not torch.allclose(model.log_prob(x, theta.flip(0)), lp)


def test_untrained_model_is_a_rotation_and_standard_normal():
    """At initialisation only the 1x1 convolutions act (orthogonal): log q(x) = log N(x; 0, I)."""
    torch.manual_seed(0)
    model = ConditionalGlow(n_pix=8, levels=3, steps=2, hidden=4).double()
    x, theta = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.rand(3, 2, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(model.log_prob(x, theta), expected, atol=1e-10)


# --------------------------------------------------------------------------- identity at initialisation
def test_injector_and_coupling_are_the_identity_at_init():
    torch.manual_seed(0)
    x, cond = torch.randn(3, 4, 5, 5), torch.rand(3, 2)
    for layer in (ConditionalInjector(4, 2, 16), ConditionalCoupling(4, 2, 16)):
        y, logdet = layer(x, cond)
        assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(3))
        _perturbed(layer)  # once trained, no longer the identity, and still inverted exactly
        y, logdet = layer(x, cond)
        assert (y - x).abs().max() > 1e-2 and logdet.abs().max() > 1e-3
        assert torch.allclose(layer.inverse(y, cond), x, atol=1e-5)


def test_invertible_conv_is_lu_parametrised_and_starts_orthogonal():
    torch.manual_seed(0)
    conv = InvertibleConv1x1(6)
    w = conv.weight().double()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-5)
    _perturbed(conv, 0.3)
    w = conv.weight().double()
    assert abs(float(torch.linalg.slogdet(w.detach())[1] - conv.log_s.detach().double().sum())) < 1e-5
    x = torch.randn(2, 6, 3, 3)
    y, logdet = conv(x)
    assert torch.allclose(logdet, conv.log_s.sum().expand(2) * 9)
    assert torch.allclose(conv.inverse(y), x, atol=1e-5)


# --------------------------------------------------------------------------- sampling
def test_temperature_scales_the_latent():
    model = _tiny()
    theta = torch.tensor([[0.2, 0.6]], dtype=torch.float64)
    full = model.sample(4, theta, seed=5)
    cold = model.sample(4, theta, seed=5, temperature=0.5)
    z_full = model.flatten_latents(model(full, theta)[0])
    z_cold = model.flatten_latents(model(cold, theta)[0])
    assert torch.allclose(z_cold, 0.5 * z_full, atol=1e-9)
    assert not torch.allclose(cold, 0.5 * full)  # the maps themselves are not simply scaled
    assert model.sample(3, theta.expand(3, 2), seed=5).shape == (3, 1, 8, 8)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    ({"n_pix": 24, "levels": 4}, "multiple of 2\\*\\*levels = 16"),
    ({"n_pix": 8, "levels": 0}, "levels: expected an integer >= 1"),
    ({"hidden": 2.5}, "hidden: expected an integer"),
    ({"learned_prior": "yes"}, "learned_prior: expected True or False"),
])
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConditionalGlow(**kwargs)


def test_bad_inputs_raise_clear_errors():
    model = ConditionalGlow(n_pix=8, levels=2, steps=1, hidden=4)
    x, theta = torch.randn(3, 1, 8, 8), torch.rand(3, 2)
    with pytest.raises(ValueError, match=r"x: expected maps of shape \(B, 1, 8, 8\), got \(3, 1, 16, 16\)"):
        model.log_prob(torch.randn(3, 1, 16, 16), theta)
    with pytest.raises(ValueError, match=r"x: expected maps of shape"):
        model.log_prob(torch.randn(1, 8, 8), theta)
    with pytest.raises(ValueError, match=r"cond: expected \(3, 2\) or \(1, 2\) parameters, got shape \(3, 3\)"):
        model.log_prob(x, torch.rand(3, 3))
    with pytest.raises(ValueError, match="cond: expected 3 rows"):
        model.log_prob(x, torch.rand(2, 2))
    with pytest.raises(ValueError, match="cond: this Glow is conditional"):
        model.sample(2)
    with pytest.raises(ValueError, match="cond: expected finite"):
        model.log_prob(x, torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="latents: expected a \\(B, 64\\) vector"):
        model.inverse(torch.randn(2, 63), theta[:1])
    with pytest.raises(ValueError, match="latents: expected 2 tensors"):
        model.inverse([torch.randn(2, 2, 4, 4)], theta[:1])
    with pytest.raises(ValueError, match="batch: expected \\(x, theta\\)"):
        model.loss(x)
    with pytest.raises(ValueError, match="temperature: expected a number > 0"):
        model.sample(2, theta[:1], temperature=0.0)


# --------------------------------------------------------------------------- posterior
def test_higlow_posterior_weights_and_mmse():
    model = _tiny(dtype=torch.float32)
    x = torch.randn(1, 8, 8)
    theta = torch.rand(50, 2)
    post = higlow_posterior(model, x, theta, chunk_size=7)
    with torch.no_grad():
        log_q = model.log_prob(x[None].expand(50, -1, -1, -1), theta).double().numpy()
    w = np.exp(log_q - log_q.max())
    w /= w.sum()
    assert np.allclose(post.weights, w, atol=1e-6)
    assert np.allclose(post.mmse, w @ theta.double().numpy(), atol=1e-6)
    assert abs(np.logaddexp.reduce(post.log_weights)) < 1e-9
    assert 1 <= post.ess < 50  # the condition matters: the weights are not uniform
    again = higlow_posterior(model, x[None], theta, chunk_size=1000)  # chunking does not change the answer
    assert np.allclose(again.log_weights, post.log_weights, atol=1e-5)


def test_higlow_posterior_of_a_condition_blind_model_is_the_prior():
    torch.manual_seed(0)
    model = ConditionalGlow(n_pix=8, levels=2, steps=1, hidden=4)  # at init: q(x | theta) ignores theta
    theta = np.random.default_rng(0).uniform(size=(40, 2))
    post = higlow_posterior(model, torch.randn(1, 1, 8, 8), theta)
    assert np.allclose(post.log_weights, -np.log(40), atol=1e-5)
    assert np.allclose(post.mmse, theta.mean(0)) and abs(post.ess - 40) < 1e-3
    with pytest.raises(ValueError, match="theta_samples: expected \\(N, 2\\)"):
        higlow_posterior(model, torch.randn(1, 8, 8), np.ones((5, 3)))
    with pytest.raises(ValueError, match="x: expected one map"):
        higlow_posterior(model, torch.randn(2, 1, 8, 8), theta)


# --------------------------------------------------------------------------- recipe
def test_presets_match_the_paper_and_fit_their_maps():
    paper = PRESETS["paper"]
    assert paper["model"]["levels"] == 6 and paper["model"]["steps"] == 20 and paper["model"]["hidden"] == 16
    assert paper["data"] == {"n_pix": 64, "n_sims": 1000, "maps_per_sim": 15}
    for preset in PRESETS.values():
        ConditionalGlow(**preset["model"])  # the sizes are consistent
        assert preset["model"]["n_pix"] == preset["data"]["n_pix"]


def test_quick_recipe_trains_and_loads(tmp_path):
    path = train_glow_recipe("quick", out=tmp_path, max_steps=6, log=lambda *_: None)
    assert path == tmp_path / "higlow.pt" and (tmp_path / "higlow.state.pt").is_file()
    model, ckpt = checkpoints.load_model("higlow", directory=tmp_path)
    assert isinstance(model, ConditionalGlow) and ckpt["config"]["kind"] == "glow"
    metrics = ckpt["metadata"]["metrics"]
    assert metrics["steps"] == 6 and np.isfinite(metrics["val_bits_per_dim"])
    assert set(ckpt["normaliser"]) >= {"mean", "std", "param_shift", "param_scale"}
    sets = glow_data("quick")
    x, theta = sets.val[0]
    assert abs(float(model.bits_per_dim(x[None], theta[None])[0].detach())) < 10
    with pytest.raises(FileNotFoundError, match="resume: no training state"):
        train_glow_recipe("quick", out=tmp_path / "empty", resume=True)
    with pytest.raises(ValueError, match="preset: expected one of"):
        train_glow_recipe("huge", out=tmp_path)


def test_killed_run_resumed_equals_a_straight_run(tmp_path):
    quiet = {"log": lambda *_: None}
    train_glow_recipe("quick", out=tmp_path / "a", max_steps=7, **quiet)
    train_glow_recipe("quick", out=tmp_path / "a", max_steps=14, resume=True, **quiet)
    train_glow_recipe("quick", out=tmp_path / "b", max_steps=14, **quiet)
    a, ca = checkpoints.load_model("higlow", directory=tmp_path / "a")
    b, cb = checkpoints.load_model("higlow", directory=tmp_path / "b")
    assert ca["metadata"]["metrics"]["steps"] == 14
    for (name, u), v in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(u, v), name
    state = torch.load(tmp_path / "a" / "higlow.state.pt", weights_only=False)
    assert state["history"]["resumed_at"] == [7]
