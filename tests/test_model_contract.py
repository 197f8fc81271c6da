"""Every registered model through the contract of cosmonb.models.base, at tiny sizes.

A new model joins by registering (``@register_model``) and adding a tiny
``(config, batch)`` maker to ``TINY``; a registered model without one fails
``test_every_registered_model_has_a_tiny_case``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmonb import checkpoints
from cosmonb.models.base import LOG_PROB_KINDS, Model, build_model, registered_models


def _flow_batch(features, context):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, features, generator=g) + 5.0
    return x if not context else (x, torch.randn(32, context, generator=g))


def _imnn_batch():
    from cosmonb.models.imnn import make_simulation_set
    from cosmonb.sims import PowerLawSimulator

    sims = make_simulation_set(PowerLawSimulator(8), [1.0, 0.5], [0.1, 0.1], 12, 4, seed=0)
    return dict(sims, delta=torch.tensor([0.1, 0.1], dtype=torch.float64))


#: name -> (tiny config, batch maker)
TINY = {
    "density_flow": ({"features": 2, "context": 1, "transforms": 2, "bins": 4, "hidden": [8]},
                     lambda: _flow_batch(2, 1)),
    "conditional_maf": ({"features": 2, "context": 2, "transforms": 2, "hidden": [8, 8]},
                        lambda: _flow_batch(2, 2)),
    "imnn": ({"n_params": 2, "in_channels": 1, "widths": [2, 4], "hidden": 8}, _imnn_batch),
    "ddpm": ({"n_pix": 8, "channels": 8, "channel_mults": [1, 2], "attention_resolutions": [4], "n_res_blocks": 1, "timesteps": 20}, lambda: (torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.rand(6, 2, generator=torch.Generator().manual_seed(1)))),
    "glow": ({"n_pix": 8, "levels": 2, "steps": 1, "hidden": 4}, lambda: (torch.randn(6, 1, 8, 8), torch.rand(6, 2))),
    "vdvae": ({"in_channels": 2, "n_pix": 8, "widths": [8, 4], "enc_blocks": [1, 1], "dec_blocks": [1, 2], "z_channels": [2, 1], "bottleneck": 0.5, "kl_warmup_steps": 10}, lambda: torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(0))),
}


def _cond(batch):
    return batch[1][:1] if isinstance(batch, tuple) else None


def _inputs(batch):
    """What the model's outputs are compared on after a reload."""
    return batch[0] if isinstance(batch, tuple) else batch


def test_every_registered_model_has_a_tiny_case():
    assert set(registered_models()) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_contract(name, tmp_path):
    config, make_batch = TINY[name]
    torch.manual_seed(0)
    model = build_model(name, config)
    assert isinstance(model, Model) and model.log_prob_kind in LOG_PROB_KINDS
    assert model.config == build_model(name, model.config).config  # config rebuilds the model
    batch = make_batch()

    # gradients reach every parameter
    loss = model.loss(batch)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"

    # a seeded sample is reproducible and leaves the global stream alone
    if model.can_sample:
        state = torch.get_rng_state()
        a = model.sample(5, _cond(batch), seed=3)
        assert torch.equal(torch.get_rng_state(), state)
        assert torch.equal(a, model.sample(5, _cond(batch), seed=3))
        assert not torch.equal(a, model.sample(5, _cond(batch), seed=4))
    else:
        with pytest.raises(NotImplementedError):
            model.sample(5, seed=0)
    if model.log_prob_kind is None:
        with pytest.raises(NotImplementedError):
            model.log_prob(_inputs(batch))

    # save then load gives identical outputs
    with torch.no_grad():  # change the weights and buffers away from their initial values
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.01 * torch.randn_like(t))
    model.eval()
    checkpoints.save_model(f"contract_{name}", model, metrics={}, command="pytest", seconds=0.0, directory=tmp_path)
    back, ckpt = checkpoints.load_model(f"contract_{name}", directory=tmp_path)
    assert type(back) is type(model) and ckpt["config"]["kind"] == name
    with torch.no_grad():
        if model.log_prob_kind is not None:
            x, c = (batch if isinstance(batch, tuple) else (batch, None))
            assert torch.equal(back.log_prob(x, c), model.log_prob(x, c))
        else:
            assert torch.equal(back.loss(batch), model.loss(batch))
            assert torch.equal(back(batch["fiducial"]), model(batch["fiducial"]))
        if model.can_sample:
            assert torch.equal(back.sample(4, _cond(batch), seed=1), model.sample(4, _cond(batch), seed=1))
    assert np.isfinite(float(back.loss(batch).detach()))
