"""Tests of cosmonb.models.flows: the change of variables, batch norm, training, checkpoints, outliers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmonb import catalogs as C
from cosmonb import checkpoints
from cosmonb.models import flows as F


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These flows are tiny: one thread is fastest and robust on a shared machine (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seeded():
    """Each test builds its flows from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


def _scrambled(flow, seed=0, scale=0.3):
    """Give a freshly built flow random (non-identity) weights, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in flow.named_parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
        for m in flow.modules():
            if isinstance(m, F.BatchNormTransform):
                m.running_mean.normal_(0.0, 0.3, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return flow.eval()


# --------------------------------------------------------------------------- densities
@pytest.mark.parametrize("batch_norm", [False, True])
def test_1d_density_integrates_to_one(batch_norm):
    flow = _scrambled(F.DensityFlow(1, transforms=3, bins=6, batch_norm=batch_norm))
    flow.set_normaliser(torch.tensor([[9.0], [9.8]]))  # shift 9.4, scale ~0.57: the Jacobian must count it
    x = torch.linspace(9.4 - 15, 9.4 + 15, 60001)[:, None]
    with torch.no_grad():
        p = torch.exp(flow.log_prob(x)).double()
    assert torch.trapezoid(p, x[:, 0].double()).item() == pytest.approx(1.0, abs=1e-3)


def test_2d_density_integrates_to_one_and_factorises():
    flow = _scrambled(F.DensityFlow(2, transforms=3, bins=6, hidden=(16, 16), batch_norm=True), scale=0.15)
    flow.set_normaliser(torch.tensor([[11.0, 9.0], [12.0, 10.0], [11.5, 9.2]]))
    g0 = torch.linspace(11.5 - 6, 11.5 + 6, 601)
    g1 = torch.linspace(9.4 - 6, 9.4 + 6, 601)
    X, Y = torch.meshgrid(g0, g1, indexing="ij")
    xy = torch.stack([X.ravel(), Y.ravel()], 1)
    with torch.no_grad():
        p = torch.exp(flow.log_prob(xy)).double().reshape(601, 601)
    d0, d1 = float(g0[1] - g0[0]), float(g1[1] - g1[0])
    assert (p.sum() * d0 * d1).item() == pytest.approx(1.0, abs=5e-3)
    # log_prob_parts: q(x0) is the joint integrated over x1, and q(x1 | x0) integrates to 1
    g1 = torch.linspace(9.4 - 12, 9.4 + 12, 60001)
    for x0 in (10.7, 11.5, 12.3):
        pts = torch.stack([torch.full_like(g1, x0), g1], 1)
        with torch.no_grad():
            joint = flow.log_prob(pts).double()
        marg, cond = flow.log_prob_parts(pts)
        numeric = torch.log(torch.trapezoid(joint.exp(), g1.double()))
        assert float(marg[0]) == pytest.approx(float(numeric), abs=2e-3)
        assert torch.trapezoid(cond.double().exp(), g1.double()).item() == pytest.approx(1.0, abs=2e-3)
        torch.testing.assert_close(marg + cond, joint.float(), atol=1e-4, rtol=1e-4)


def test_sampling_inverts_the_flow():
    flow = _scrambled(F.DensityFlow(2, transforms=2, bins=5, hidden=(8,), batch_norm=True))
    s1 = flow.sample(200, seed=3)
    s2 = flow.sample(200, seed=3)
    assert torch.equal(s1, s2)
    u = (s1 - flow.x_shift) / flow.x_scale
    with torch.no_grad():
        dist = flow.flow(None)
        back = dist.transform.inv(dist.transform(u))
    torch.testing.assert_close(back, u, atol=1e-4, rtol=1e-4)


def test_batch_norm_layer():
    bn = F.BatchNormTransform(2)
    x = torch.randn(500, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([1.0, -2.0])
    bn.train()
    y, ladj = bn().call_and_ladj(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    expected = -0.5 * torch.log(x.var(0, unbiased=False) + bn.eps).sum()
    torch.testing.assert_close(ladj, expected.expand(500))
    # running statistics moved towards the batch's, and eval mode uses them
    assert torch.all(bn.running_mean != 0)
    bn.eval()
    with torch.no_grad():
        bn.log_gamma.fill_(0.3)
        t = bn()
        y = t(x)
        torch.testing.assert_close(t.inv(y), x, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="2 rows"):
        bn.train()
        bn()(torch.randn(1, 2))


def test_conditional_flow_uses_its_context():
    flow = _scrambled(F.DensityFlow(2, context=1, transforms=2, bins=5, hidden=(16,)))
    x = torch.randn(10, 2)
    a = flow.log_prob(x, torch.zeros(10, 1))
    b = flow.log_prob(x, torch.ones(1, 1))  # one context row broadcasts
    assert a.shape == b.shape == (10,) and not torch.allclose(a, b)
    assert flow.sample(7, c=torch.ones(1, 1)).shape == (7, 2)
    with pytest.raises(ValueError, match="conditional"):
        flow.log_prob(x)
    with pytest.raises(ValueError, match="c: expected 1 or 10 rows"):
        flow.log_prob(x, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="unconditional"):
        F.DensityFlow(1).log_prob(torch.zeros(2, 1), torch.zeros(2, 1))


def test_bad_input_is_refused():
    flow = F.DensityFlow(2, transforms=1, bins=4, hidden=(8,))
    with pytest.raises(ValueError, match="NaN"):
        flow.log_prob(torch.tensor([[1.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        flow.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="empty"):
        flow.log_prob(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="order"):
        F.DensityFlow(2, order="random")
    with pytest.raises(ValueError, match="transforms"):
        F.DensityFlow(2, transforms=0)
    with pytest.raises(ValueError, match="x"):
        F.fit_flow(flow, np.zeros((0, 2)), epochs=1)
    with pytest.raises(ValueError, match="order='fixed'"):
        F.DensityFlow(2, order="alternate").log_prob_parts(torch.zeros(3, 2))


# --------------------------------------------------------------------------- training
def test_make_batches_cover_every_row_once():
    x = torch.arange(1001.0)[:, None]
    batches = F.make_batches(x, batch_size=100, seed=4)
    e1, e2 = batches(1), batches(2)
    assert len(e1) == 10 and len(e1[-1]) == 101  # the last single row is merged, never dropped
    assert torch.equal(torch.cat(e1).sort(0).values, x)
    assert not torch.equal(torch.cat(e1), torch.cat(e2))
    assert torch.equal(torch.cat(batches(1)), torch.cat(e1))


def test_fit_learns_a_known_density():
    """A 1D flow with batch norm learns a two-component mixture close to its true NLL."""
    rng = np.random.default_rng(0)
    n = 6000
    comp = rng.random(n) < 0.3
    x = np.where(comp, rng.normal(8.5, 0.2, n), rng.normal(9.6, 0.4, n))[:, None]

    def true_nll(v):
        v = v[:, 0]
        p = 0.3 * np.exp(-0.5 * ((v - 8.5) / 0.2) ** 2) / (0.2 * np.sqrt(2 * np.pi)) \
            + 0.7 * np.exp(-0.5 * ((v - 9.6) / 0.4) ** 2) / (0.4 * np.sqrt(2 * np.pi))
        return -np.log(p)

    flow = F.DensityFlow(1, transforms=2, bins=8, batch_norm=True)
    hist = F.fit_flow(flow, x[:5000], x_val=x[5000:], epochs=40, lr=5e-3, batch_size=256, seed=0)
    assert hist.val_loss[-1] < hist.val_loss[0]
    gap = F.per_sample_nll(flow, x[5000:]).mean() - true_nll(x[5000:]).mean()
    assert abs(gap) < 0.05, gap  # 1000 held-out points: seeds 0-2 give 0.009-0.025
    # a flow that learned nothing is far worse: the test can fail
    untrained = F.DensityFlow(1, transforms=2, bins=8, batch_norm=True)
    untrained.set_normaliser(x[:5000])
    assert F.per_sample_nll(untrained, x[5000:]).mean() - true_nll(x[5000:]).mean() > 0.1


def test_save_and_load_roundtrip(tmp_path):
    flow = _scrambled(F.DensityFlow(2, context=1, transforms=2, bins=5, hidden=(8,), batch_norm=True))
    flow.set_normaliser(torch.randn(50, 2) + 10, torch.randn(50, 1))
    path = F.save_flow("flows_test", flow, {"nll": 1.0}, "pytest", 0.1, directory=tmp_path,
                       extra_config={"what": "test"})
    back, ckpt = F.load_flow("flows_test", directory=tmp_path)
    x, c = torch.randn(20, 2) + 10, torch.randn(20, 1)
    torch.testing.assert_close(back.log_prob(x, c), flow.log_prob(x, c))
    assert ckpt["config"]["extra"] == {"what": "test"} and ckpt["metadata"]["metrics"] == {"nll": 1.0}
    path.write_bytes(path.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(checkpoints.PretrainedError, match="sha256"):
        F.load_flow("flows_test", directory=tmp_path)


# --------------------------------------------------------------------------- outliers
def test_recall_at_fpr():
    inl = np.random.default_rng(0).normal(size=10000)
    recall, thr = F.recall_at_fpr(inl, np.array([-5.0, -4.0, 0.0, 3.0]), fpr=0.05)
    assert thr == pytest.approx(-1.645, abs=0.05) and recall == 0.5
    assert np.mean(inl < thr) == pytest.approx(0.05, abs=1e-3)
    with pytest.raises(ValueError, match="score_outliers"):
        F.recall_at_fpr(inl, np.array([np.nan]))
    with pytest.raises(ValueError, match="fpr"):
        F.recall_at_fpr(inl, inl, fpr=1.5)


def test_true_density_finds_injected_outliers():
    """The exact conditional density separates galaxies moved off the relation (the ceiling)."""
    model = C.GalaxyModel(redshift=0.0)
    cat = model.sample(11)
    gal = cat["stellar_mass"] > 0
    x, y = C.log_masses(cat["total_mass"][gal], cat["stellar_mass"][gal])
    x2, y2, bad = C.inject_outliers(x, y, 100, shift=(0.5, 1.0), seed=0)
    score = model.log_prob_conditional(y2, x2)
    recall, _ = F.recall_at_fpr(score[~bad], score[bad])
    assert recall > 0.8
