"""Tests of cosmonb.models.flows: the change of variables, batch norm, training, checkpoints, outliers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmonb.sims import catalogs as C
from cosmonb import checkpoints
from cosmonb.models import flows as F
from cosmonb.recipes.flows import fit_flow, load_flow, save_flow


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
    # the marginal q(x0) is a density of x0 alone: the same at any x1, and it integrates to 1 over x0
    # (it would not without the Jacobian of the standardisation, scale 0.5 here)
    g0 = torch.linspace(11.5 - 15, 11.5 + 15, 60001)
    marg_a, _ = flow.log_prob_parts(torch.stack([g0, torch.full_like(g0, 8.0)], 1))
    marg_b, _ = flow.log_prob_parts(torch.stack([g0, torch.full_like(g0, 10.5)], 1))
    torch.testing.assert_close(marg_a, marg_b, atol=1e-5, rtol=1e-5)
    assert torch.trapezoid(marg_a.double().exp(), g0.double()).item() == pytest.approx(1.0, abs=1e-3)


def test_log_prob_parts_evaluates_in_eval_mode():
    """With batch norm in training mode, the parts still use the running statistics and leave them alone."""
    flow = _scrambled(F.DensityFlow(2, transforms=2, bins=5, hidden=(16,), batch_norm=True))
    x = torch.randn(50, 2) * 0.7
    with torch.no_grad():
        joint = flow.log_prob(x)  # eval mode
    stats = {k: v.clone() for k, v in flow.state_dict().items() if "running" in k}
    flow.train()
    marg, cond = flow.log_prob_parts(x)
    assert flow.training  # the previous mode is restored
    for k, v in flow.state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k]), k  # running statistics untouched
    torch.testing.assert_close(marg + cond, joint, atol=1e-5, rtol=1e-5)
    # each row's result depends on that row alone
    m3, c3 = flow.log_prob_parts(x[:3])
    torch.testing.assert_close(m3, marg[:3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c3, cond[:3], atol=1e-5, rtol=1e-5)


def _chi2_against_density(samples, log_density, lo, hi, bins=30):
    """Chi^2 of a histogram of 1D samples against the counts the density predicts in each bin."""
    hist = torch.histc(samples.double(), bins=bins, min=lo, max=hi)
    fine = torch.linspace(lo, hi, bins * 200 + 1, dtype=torch.float64)
    p = log_density(fine).double().exp()
    mass = torch.stack([torch.trapezoid(p[i * 200:(i + 1) * 200 + 1], fine[i * 200:(i + 1) * 200 + 1])
                        for i in range(bins)])
    expected = len(samples) * mass
    return float(((hist - expected) ** 2 / expected).sum())


def test_samples_follow_the_flow_density():
    """Samples (the inverse map) against exp(log_prob) (the forward map), in data units."""
    flow = _scrambled(F.DensityFlow(1, transforms=3, bins=6, batch_norm=True))
    flow.set_normaliser(torch.tensor([[9.0], [9.8]]))
    s1 = flow.sample(20000, seed=3)
    assert torch.equal(s1, flow.sample(20000, seed=3)) and not torch.equal(s1, flow.sample(20000, seed=4))
    lo, hi = float(torch.quantile(s1, 0.002)), float(torch.quantile(s1, 0.998))
    with torch.no_grad():
        chi2 = _chi2_against_density(s1[:, 0], lambda g: flow.log_prob(g[:, None].float()), lo, hi)
        # the same samples are far from a density that is off by 10% in scale: the check can fail
        wrong = _chi2_against_density(
            s1[:, 0], lambda g: flow.log_prob(((g - 9.4) / 1.1 + 9.4)[:, None].float()) - np.log(1.1), lo, hi)
    assert chi2 < 30 + 6 * np.sqrt(2 * 30), chi2
    assert wrong > 5 * chi2 and wrong > 200, wrong
    # 2D: the first coordinate of the samples follows the flow's marginal q(x0) from log_prob_parts
    flow2 = _scrambled(F.DensityFlow(2, transforms=2, bins=5, hidden=(8,), batch_norm=True), scale=0.15)
    flow2.set_normaliser(torch.tensor([[11.0, 9.0], [12.0, 10.0], [11.5, 9.2]]))
    s2 = flow2.sample(20000, seed=5)
    lo, hi = float(torch.quantile(s2[:, 0], 0.002)), float(torch.quantile(s2[:, 0], 0.998))
    chi2 = _chi2_against_density(
        s2[:, 0], lambda g: flow2.log_prob_parts(torch.stack([g.float(), torch.full_like(g.float(), 9.4)], 1))[0],
        lo, hi)
    assert chi2 < 30 + 6 * np.sqrt(2 * 30), chi2


def test_seeded_sampling_leaves_the_global_rng_alone():
    flow = _scrambled(F.DensityFlow(2, context=1, transforms=1, bins=4, hidden=(8,)))
    state = torch.random.get_rng_state()
    flow.sample(10, c=torch.ones(1, 1), seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ValueError, match="c: expected 1 or 10 rows"):  # fails after seeding
        flow.sample(10, c=torch.ones(3, 1), seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    # the seed alone decides the samples, whatever the global state
    torch.manual_seed(99)
    torch.testing.assert_close(flow.sample(10, c=torch.ones(1, 1), seed=1),
                               flow.sample(10, c=torch.ones(1, 1), seed=1), atol=0, rtol=0)


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
    with pytest.raises(ValueError, match=r"x: is empty \(0 rows\)"):
        fit_flow(flow, np.zeros((0, 2)), epochs=1)
    with pytest.raises(ValueError, match="lr: expected a number > 0"):
        fit_flow(flow, np.ones((4, 2)), epochs=1, lr=-1e-3)
    with pytest.raises(ValueError, match="order='fixed'"):
        F.DensityFlow(2, order="alternate").log_prob_parts(torch.zeros(3, 2))


def test_per_sample_functions_broadcast_one_context_row_across_batches():
    """One context row serves every batch (here 23 rows in batches of 5), as the repeated row does."""
    flow = _scrambled(F.DensityFlow(2, context=1, transforms=2, bins=5, hidden=(16,), batch_norm=True))
    x = torch.randn(23, 2)
    one = np.array([[0.7]])
    many = np.repeat(one, 23, 0)
    flow.train()
    for fn in (F.per_sample_nll, F.per_sample_parts):
        single = fn(flow, x, one, batch_size=5)
        repeated = fn(flow, x, many, batch_size=5)
        whole = fn(flow, x, many)
        for a, b, w in zip(*(r if isinstance(r, tuple) else (r,) for r in (single, repeated, whole))):
            assert a.shape == (23,)
            # float32 through differently batched kernels: a few ulps (8.6e-6 at -4.3 under ATEN_CPU_CAPABILITY=default)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-5)
        assert flow.training  # the previous mode is restored
    # one context per row is sliced with x
    per_row = np.linspace(-1, 1, 23)[:, None]
    np.testing.assert_allclose(F.per_sample_nll(flow, x, per_row, batch_size=5),
                               F.per_sample_nll(flow, x, per_row), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="c: expected 1 or 23 rows, got 3"):
        F.per_sample_nll(flow, x, np.zeros((3, 1)), batch_size=5)


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
    hist = fit_flow(flow, x[:5000], x_val=x[5000:], epochs=40, lr=5e-3, batch_size=256, seed=0)
    assert hist.val_loss[-1] < hist.val_loss[0]
    assert hist.lr[0] == pytest.approx(5e-3) and hist.lr[-1] < 5e-3  # lr reaches Adam; cosine decay
    gap = F.per_sample_nll(flow, x[5000:]).mean() - true_nll(x[5000:]).mean()
    assert abs(gap) < 0.05, gap  # 1000 held-out points: seeds 0-2 give 0.009-0.025
    # a flow that learned nothing is far worse: the test can fail
    untrained = F.DensityFlow(1, transforms=2, bins=8, batch_norm=True)
    untrained.set_normaliser(x[:5000])
    assert F.per_sample_nll(untrained, x[5000:]).mean() - true_nll(x[5000:]).mean() > 0.1


def test_save_and_load_roundtrip(tmp_path):
    flow = _scrambled(F.DensityFlow(2, context=1, transforms=2, bins=5, hidden=(8,), batch_norm=True))
    flow.set_normaliser(torch.randn(50, 2) + 10, torch.randn(50, 1))
    path = save_flow("flows_test", flow, {"nll": 1.0}, "pytest", 0.1, directory=tmp_path,
                       extra_config={"what": "test"})
    back, ckpt = load_flow("flows_test", directory=tmp_path)
    x, c = torch.randn(20, 2) + 10, torch.randn(20, 1)
    torch.testing.assert_close(back.log_prob(x, c), flow.log_prob(x, c))
    assert ckpt["config"]["extra"] == {"what": "test"} and ckpt["metadata"]["metrics"] == {"nll": 1.0}
    path.write_bytes(path.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(checkpoints.PretrainedError, match="sha256"):
        load_flow("flows_test", directory=tmp_path)


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
