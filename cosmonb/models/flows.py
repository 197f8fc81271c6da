r"""Normalizing flows for galaxy catalogs (notebook 02), built from zuko's spline transforms.

A normalizing flow maps data ``x`` to a standard normal ``z = T(x)`` through an
invertible, differentiable ``T``; the change of variables gives the density

    ln q(x) = ln N(T(x); 0, I) + ln |det dT/dx|,

and a composition ``T = T_K o ... o T_1`` adds the log-det-Jacobians of its
layers. Each layer here is a monotonic rational-quadratic spline (Durkan et al.
2019, "Neural Spline Flows"), from :mod:`zuko`: ``bins`` bins on ``[-bound,
bound]`` (identity outside), whose knots are learned directly (1D) or predicted
by a masked network from the preceding features (autoregressive, Papamakarios et
al. 2017). Optional batch normalisation layers (Dinh et al. 2017) sit before each
spline, as in the 1D flow of the CAMELS galaxy-catalog flows project.

:class:`DensityFlow` wraps a zuko flow with the data standardisation (stored as
buffers, so a checkpoint carries it) and works in data units: ``log_prob`` is
the density of ``x`` itself (per dex for log-masses), directly comparable with
the true density of :mod:`cosmonb.sims.catalogs`.

Example:
    >>> import torch
    >>> flow = DensityFlow(features=2, transforms=2, bins=4, hidden=(16,))
    >>> x = torch.randn(64, 2) * 0.3 + torch.tensor([11.0, 9.0])
    >>> flow.set_normaliser(x)
    >>> flow.log_prob(x).shape, flow.sample(5).shape
    (torch.Size([64]), torch.Size([5, 2]))
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
import zuko
from torch import nn
from torch.distributions import Transform, constraints
from zuko.lazy import Flow, LazyTransform, UnconditionalDistribution
from zuko.transforms import DependentTransform, MonotonicRQSTransform

from .base import Model, register_model, seeded_rng

__all__ = [
    "BatchNormTransform", "DensityFlow", "ConditionalMAF", "nll_loss", "make_batches",
    "per_sample_nll", "per_sample_parts", "recall_at_fpr", "spline_knots", "check_rows", "PRESETS",
]

# Training and checkpoint helpers (``fit_flow``, ``save_flow``, ``load_flow``) live in
# :mod:`cosmonb.recipes.flows`: models do not import ``train`` or ``checkpoints``.

#: The shipped flows of notebook 02: model config and training settings. The
#: notebook (TRAIN=True) and :mod:`cosmonb.recipes.flows` both use them.
PRESETS = {
    # 1D on log10 M_star: batch norm + element-wise spline layers (as in the project's SimpleSpline)
    "flows_1d": {"model": {"features": 1, "transforms": 4, "bins": 16, "batch_norm": True, "bound": 8.0},
                 "train": {"epochs": 30, "lr": 3e-3, "batch_size": 512}},
    # 2D on (log10 M_total, log10 M_star): 3 autoregressive spline layers, M_total first
    "flows_2d": {"model": {"features": 2, "transforms": 3, "bins": 16, "hidden": [64, 64],
                           "bound": 8.0, "order": "fixed"},
                 "train": {"epochs": 40, "lr": 3e-3, "batch_size": 512}},
    # the same, conditioned on log10 A_SN1
    "flows_cond": {"model": {"features": 2, "context": 1, "transforms": 3, "bins": 16, "hidden": [64, 64],
                             "bound": 8.0, "order": "fixed"},
                   "train": {"epochs": 40, "lr": 3e-3, "batch_size": 512}},
}


# --------------------------------------------------------------------------- batch norm
class _BatchNorm(Transform):
    """Element-wise ``y = (x - mu) / sqrt(var + eps) * exp(log_gamma) + beta`` (one flow layer)."""

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, module: "BatchNormTransform"):
        super().__init__()
        self.module = module

    def _stats(self, x):
        m = self.module
        if m.training:
            flat = x.reshape(-1, x.shape[-1])
            if flat.shape[0] < 2:
                raise ValueError("x: batch normalisation in training mode needs batches of >= 2 rows")
            mean, var = flat.mean(0), flat.var(0, unbiased=False)
            with torch.no_grad():
                m.running_mean.lerp_(mean.detach(), m.momentum)
                m.running_var.lerp_(var.detach(), m.momentum)
            return mean, var
        return m.running_mean, m.running_var

    def call_and_ladj(self, x):
        m = self.module
        mean, var = self._stats(x)
        scale = torch.exp(m.log_gamma) / torch.sqrt(var + m.eps)
        y = (x - mean) * scale + m.beta
        return y, torch.log(scale).expand(x.shape)

    def _call(self, x):
        return self.call_and_ladj(x)[0]

    def _inverse(self, y):
        m = self.module
        scale = torch.exp(m.log_gamma) / torch.sqrt(m.running_var + m.eps)
        return (y - m.beta) / scale + m.running_mean

    def log_abs_det_jacobian(self, x, y):
        return self.call_and_ladj(x)[1]


class BatchNormTransform(LazyTransform):
    r"""Batch normalisation as an invertible flow layer (Dinh et al. 2017, RealNVP, sec. 3.7).

    ``y = (x - mu) / sqrt(sigma^2 + eps) exp(log_gamma) + beta``, with ``mu,
    sigma^2`` the batch statistics in training mode and their running averages
    in eval mode (and always for the inverse, i.e. sampling). The
    log-det-Jacobian is ``sum(log_gamma - 0.5 ln(sigma^2 + eps))``. It composes
    with zuko's lazy transforms.

    Example:
        >>> bn = BatchNormTransform(2)
        >>> x = torch.randn(100, 2) * 3 + 1
        >>> y, ladj = bn().call_and_ladj(x)
        >>> round(float(y.detach().std(0, unbiased=False).mean()), 3), ladj.shape
        (1.0, torch.Size([100]))
    """

    def __init__(self, features: int, momentum: float = 0.05, eps: float = 1e-5):
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self.momentum, self.eps = float(momentum), float(eps)

    def forward(self, c=None) -> Transform:
        return DependentTransform(_BatchNorm(self), 1)


# --------------------------------------------------------------------------- the flow
def check_rows(x, name, features, dtype=torch.float32, device=None):
    """x as a finite float tensor of shape (N, features); ValueError naming ``name`` otherwise."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: expected numbers, got {type(x).__name__}") from err
    x = x.to(dtype=dtype, device=device)
    if x.ndim == 1 and features == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != features:
        raise ValueError(f"{name}: expected shape (N, {features}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: is empty (0 rows)")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise ValueError(f"{name}: {bad} row(s) have NaN/inf values")
    return x


def condition_rows(c, name, context, n=None, device=None):
    """Check a flow's conditioning ``c`` against its ``context`` width; expand one row to ``n``.

    ``context == 0`` (unconditional) wants ``c is None`` and returns None; otherwise ``c``
    must be finite of shape (1 or n, context) (:func:`check_rows`).
    """
    if context == 0:
        if c is not None:
            raise ValueError(f"{name}: this flow is unconditional (context=0); pass {name}=None")
        return None
    if c is None:
        raise ValueError(f"{name}: this flow is conditional; pass {name} of shape (N, {context})")
    c = check_rows(c, name, context, device=device)
    if n is not None and c.shape[0] not in (1, n):
        raise ValueError(f"{name}: expected 1 or {n} rows, got {c.shape[0]}")
    return c.expand(n, -1) if n is not None and c.shape[0] == 1 and n > 1 else c


@register_model("density_flow")
class DensityFlow(Model):
    r"""A (conditional) neural spline flow in data units: standardise, then zuko splines.

    ``ln q(x | c) = ln q_std((x - shift) / scale | c_std) - sum(ln scale)``.

    Arguments:
        features: dimension of x (1: log M_star; 2: log M_total, log M_star).
        context: dimension of the conditioning variable c (0: unconditional).
        transforms: number of spline layers.
        bins: spline bins per layer.
        hidden: hidden widths of each layer's (masked) network (unused for an
            unconditional 1D flow, whose knots are free parameters).
        batch_norm: put a :class:`BatchNormTransform` before each spline.
        bound: the splines act on ``[-bound, bound]`` in standardised units.
        order: ``"fixed"``: every layer is autoregressive in the same order
            (feature 0 first), so ``q(x) = q(x_0) q(x_1 | x_0)`` and
            :meth:`log_prob_parts` gives both factors exactly; ``"alternate"``:
            zuko's MAF default, reversing the order each layer.

    Example:
        >>> flow = DensityFlow(1, transforms=2, bins=4, batch_norm=True)
        >>> flow.config["batch_norm"], sum(p.numel() for p in flow.parameters())
        (True, 26)
        >>> flow.log_prob_kind, flow.loss(torch.randn(8, 1)).shape
        ('exact', torch.Size([]))
    """

    log_prob_kind = "exact"

    def __init__(self, features: int, context: int = 0, transforms: int = 3, bins: int = 8,
                 hidden=(64, 64), batch_norm: bool = False, bound: float = 5.0,
                 order: str = "fixed"):
        super().__init__()
        for name, v, low in (("features", features, 1), ("context", context, 0),
                             ("transforms", transforms, 1), ("bins", bins, 2)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {v!r}")
        if order not in ("fixed", "alternate"):
            raise ValueError(f"order: expected 'fixed' or 'alternate', got {order!r}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden: expected positive layer widths, got {hidden}")
        if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
            raise ValueError(f"bound: expected a number > 0, got {bound!r}")
        self.features, self.context = int(features), int(context)
        self._config = {"features": self.features, "context": self.context,
                        "transforms": int(transforms), "bins": int(bins), "hidden": list(hidden),
                        "batch_norm": bool(batch_norm), "bound": float(bound), "order": order}
        univariate = partial(MonotonicRQSTransform, bound=float(bound))
        shapes = [(bins,), (bins,), (bins - 1,)]
        layers = []
        for i in range(transforms):
            if batch_norm:
                layers.append(BatchNormTransform(self.features))
            perm = torch.arange(self.features)
            if order == "alternate" and i % 2 == 1:
                perm = perm.flip(0)
            layers.append(zuko.flows.MaskedAutoregressiveTransform(
                features=self.features, context=self.context, order=perm,
                univariate=univariate, shapes=shapes, hidden_features=hidden))
        base = UnconditionalDistribution(zuko.distributions.DiagNormal, torch.zeros(self.features),
                                         torch.ones(self.features), buffer=True)
        self.flow = Flow(layers, base)
        self.register_buffer("x_shift", torch.zeros(self.features))
        self.register_buffer("x_scale", torch.ones(self.features))
        self.register_buffer("c_shift", torch.zeros(self.context))
        self.register_buffer("c_scale", torch.ones(self.context))

    @property
    def config(self) -> dict:
        """The keyword arguments that rebuild this flow (``DensityFlow(**config)``)."""
        return dict(self._config)

    def set_normaliser(self, x, c=None) -> None:
        """Standardise with the mean and std of the training data ``x`` (and ``c``)."""
        x = check_rows(x, "x", self.features)
        self.x_shift.copy_(x.mean(0))
        self.x_scale.copy_(x.std(0).clamp_min(1e-6))
        if self.context:
            c = check_rows(c, "c", self.context)
            self.c_shift.copy_(c.mean(0))
            self.c_scale.copy_(c.std(0).clamp_min(1e-6))

    def normaliser(self) -> dict:
        """The standardisation as a dict of tensors (also in the state_dict)."""
        return {k: getattr(self, k).detach().cpu().clone()
                for k in ("x_shift", "x_scale", "c_shift", "c_scale")}

    def _context(self, c, n=None):
        c = condition_rows(c, "c", self.context, n, device=self.x_shift.device)
        if c is None:
            return None
        return (c - self.c_shift) / self.c_scale

    def loss(self, batch) -> torch.Tensor:
        """Mean negative log-likelihood of a batch: ``x``, ``(x,)`` or ``(x, c)``."""
        x, c = _split_batch(batch)
        return -self.log_prob(x, c).mean()

    def log_prob(self, x, cond=None, *, c=None) -> torch.Tensor:
        """ln q(x | c) per row, in data units (nats per unit volume of x), shape (N,) (``c``: alias of ``cond``)."""
        c = _alias(cond, c)
        x = check_rows(x, "x", self.features, device=self.x_shift.device)
        cs = self._context(c, len(x))
        u = (x - self.x_shift) / self.x_scale
        return self.flow(cs).log_prob(u) - torch.log(self.x_scale).sum()

    def log_prob_parts(self, x, c=None):
        """``(ln q(x_0 | c), ln q(x_1.. | x_0, c))`` for a ``order="fixed"`` flow, in eval mode.

        Every layer transforms feature 0 using nothing but feature 0, so
        ``z_0 = T_0(x_0)`` and ``ln q(x_0) = ln N(z_0) + ln |dz_0/dx_0|``; the
        conditional is the joint minus that marginal. One forward pass gives
        ``z`` and the joint (as :meth:`log_prob`); gradients give ``dz_0/dx_0``.
        The flow is evaluated in eval mode (batch norm uses its running
        statistics, so each row's result depends on that row alone) and its
        previous mode is restored; the results are detached.
        """
        if self._config["order"] != "fixed" or self.features < 2:
            raise ValueError("log_prob_parts: needs a flow with features >= 2 and order='fixed'")
        x = check_rows(x, "x", self.features, device=self.x_shift.device)
        cs = self._context(c, len(x))
        was_training = self.training
        self.eval()
        try:
            with torch.enable_grad():
                u = ((x - self.x_shift) / self.x_scale).detach().requires_grad_(True)
                dist = self.flow(cs)
                # what dist.log_prob(u) computes (zuko's NormalizingFlow), keeping z for the marginal
                z, ladj = dist.transform.call_and_ladj(u)
                joint = dist.base.log_prob(z) + ladj
                (dz0,) = torch.autograd.grad(z[:, 0].sum(), u)
        finally:
            self.train(was_training)
        log_scale = torch.log(self.x_scale)
        joint = joint.detach() - log_scale.sum()
        z0, dz0 = z[:, 0].detach(), dz0[:, 0].detach()
        log_marg = -0.5 * z0**2 - 0.5 * math.log(2 * math.pi) + torch.log(dz0.abs()) - log_scale[0]
        return log_marg, joint - log_marg

    @torch.no_grad()
    def sample(self, n: int, cond=None, *, seed: int | None = None, c=None) -> torch.Tensor:
        """n samples (n, features) in data units; ``cond`` (alias ``c``) of shape (1, C) or (n, C)."""
        c = _alias(cond, c)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: expected a positive integer, got {n!r}")
        was_training = self.training
        self.eval()
        try:
            with seeded_rng(seed, self.x_shift.device):
                cs = self._context(c, int(n))
                shape = () if cs is not None else (int(n),)
                u = self.flow(cs).sample(shape)
        finally:
            self.train(was_training)
        return u * self.x_scale + self.x_shift

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._config.items())


# --------------------------------------------------------------------------- training
def nll_loss(model: DensityFlow, batch) -> torch.Tensor:
    """``model.loss(batch)``: the mean negative log-likelihood (kept as a ``loss_fn`` for ``fit``)."""
    return model.loss(batch)


def _split_batch(batch):
    """``x``, ``(x,)`` or ``(x, c)`` -> ``(x, c or None)``."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1]
        raise ValueError(f"batch: expected x, (x,) or (x, c), got a sequence of {len(batch)} items")
    return batch, None


def _alias(cond, c):
    """The conditioning variable passed as ``cond`` or by its old name ``c`` (not both)."""
    if cond is not None and c is not None:
        raise ValueError("cond, c: pass the conditioning variable once (c is an alias of cond)")
    return cond if cond is not None else c


def make_batches(x, c=None, batch_size: int = 512, seed: int = 0, shuffle: bool = True):
    """A callable ``epoch -> list of batches`` (``x`` or ``(x, c)`` tensors).

    With ``shuffle`` the order is a permutation drawn from ``(seed, epoch)``, so a
    resumed run sees the same batches. The last short batch is kept (no row
    is ever dropped), merged into the previous one if it has fewer than 2 rows
    (batch norm needs 2).

    Example:
        >>> batches = make_batches(torch.arange(10.0)[:, None], batch_size=4)
        >>> [len(b) for b in batches(1)]
        [4, 4, 2]
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    c = None if c is None else torch.as_tensor(c, dtype=torch.float32)
    if len(x) == 0:
        raise ValueError("x: no training rows")
    if c is not None and len(c) != len(x):
        raise ValueError(f"c: expected {len(x)} rows like x, got {len(c)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise ValueError(f"batch_size: expected an integer >= 2, got {batch_size!r}")
    n = len(x)
    edges = list(range(0, n, batch_size)) + [n]
    if len(edges) > 2 and edges[-1] - edges[-2] < 2:
        edges.pop(-2)

    def batches(epoch: int = 0):
        if shuffle:
            gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
            idx = torch.randperm(n, generator=gen)
        else:
            idx = torch.arange(n)
        out = []
        for a, b in zip(edges[:-1], edges[1:]):
            sel = idx[a:b]
            out.append(x[sel] if c is None else (x[sel], c[sel]))
        return out

    return batches


# --------------------------------------------------------------------------- evaluation
def _batched(model: DensityFlow, fn, x, c, batch_size: int):
    """Evaluate ``fn(x_batch, c_batch) -> tensor or tuple of tensors`` in batches, in eval mode.

    ``c`` is one row (broadcast to every batch) or one row per row of ``x``
    (sliced with it). Returns a tuple of float64 numpy arrays, one per output;
    the model's previous mode is restored.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    x = check_rows(x, "x", model.features)
    if c is not None and model.context:  # (an unconditional model refuses c itself)
        c = check_rows(c, "c", model.context)
        if len(c) not in (1, len(x)):
            raise ValueError(f"c: expected 1 or {len(x)} rows, got {len(c)}")
    per_row = c is not None and len(c) == len(x)
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for a in range(0, len(x), batch_size):
                res = fn(x[a:a + batch_size], c[a:a + batch_size] if per_row else c)
                res = res if isinstance(res, tuple) else (res,)
                out.append([r.double().cpu() for r in res])
    finally:
        model.train(was)
    return tuple(torch.cat(col).numpy() for col in zip(*out))


def per_sample_nll(model: DensityFlow, x, c=None, batch_size: int = 16384) -> np.ndarray:
    """-ln q(x_i | c_i) for every row, float64 numpy (model in eval mode, batched).

    ``c``: one row per row of ``x``, or a single row used for all of them.

    Example:
        >>> flow = DensityFlow(1, transforms=1, bins=4)
        >>> per_sample_nll(flow, np.zeros((3, 1))).shape
        (3,)
    """
    (nll,) = _batched(model, lambda xb, cb: -model.log_prob(xb, cb), x, c, batch_size)
    return nll


def per_sample_parts(model: DensityFlow, x, c=None, batch_size: int = 16384):
    """``(ln q(x_0 | c), ln q(x_1 | x_0, c))`` per row as float64 numpy, batched (eval mode).

    See :meth:`DensityFlow.log_prob_parts`. For (log M_total, log M_star) the second
    part is the flow's conditional density of stellar mass at fixed halo mass.
    ``c``: one row per row of ``x``, or a single row used for all of them.

    Example:
        >>> marg, cond = per_sample_parts(DensityFlow(2, transforms=1, bins=4, hidden=(8,)), np.zeros((5, 2)))
        >>> marg.shape, cond.shape
        ((5,), (5,))
    """
    return _batched(model, model.log_prob_parts, x, c, batch_size)


def recall_at_fpr(score_inliers, score_outliers, fpr: float = 0.05):
    """Recall of outliers when flagging the lowest scores, at false-positive rate ``fpr``.

    The threshold is the ``fpr`` quantile of the inliers' scores (e.g. their
    log-likelihoods): a galaxy is flagged when its score is below it. Returns
    ``(recall, threshold)``.

    Example:
        >>> recall_at_fpr(np.arange(100.0), np.array([-1.0, 2.0, 50.0]), fpr=0.05)
        (0.6666666666666666, 4.95)
    """
    s_in = np.asarray(score_inliers, dtype=float)
    s_out = np.asarray(score_outliers, dtype=float)
    for name, s in (("score_inliers", s_in), ("score_outliers", s_out)):
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"{name}: expected a non-empty 1D array of scores")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name}: has NaN/inf scores")
    if not 0 < fpr < 1:
        raise ValueError(f"fpr: expected a rate in (0, 1), got {fpr}")
    threshold = float(np.quantile(s_in, fpr))
    return float(np.mean(s_out < threshold)), threshold


def spline_knots(model: DensityFlow, layer: int = 0, feature: int = 0, c=None):
    """Knots of one spline layer of a flow whose first feature's spline is unconditional.

    Returns ``(x_knots, y_knots, derivatives)`` in standardised units (K + 1
    each), for feature ``feature`` of spline layer ``layer`` (counting spline
    layers only); for feature > 0 or a conditional flow, pass ``c`` / the
    preceding features are taken as 0.

    Example:
        >>> xk, yk, dk = spline_knots(DensityFlow(1, transforms=1, bins=5))
        >>> xk.shape, round(float(xk[0]), 4), round(float(xk[-1]), 4)
        ((6,), -5.0, 5.0)
    """
    splines = [t for t in model.flow.transform.transforms if not isinstance(t, BatchNormTransform)]
    if not 0 <= layer < len(splines):
        raise ValueError(f"layer: expected 0 <= layer < {len(splines)}, got {layer}")
    if not 0 <= feature < model.features:
        raise ValueError(f"feature: expected 0 <= feature < {model.features}, got {feature}")
    cs = model._context(c, 1)
    with torch.no_grad():
        t = splines[layer](cs)
        if isinstance(t, DependentTransform):  # element-wise (1D)
            rqs = t.base
        else:  # autoregressive: evaluate its hyper network at x = 0
            rqs = t.meta(torch.zeros(1, model.features)).base
        h = rqs.horizontal.reshape(-1, rqs.horizontal.shape[-1])[feature]
        v = rqs.vertical.reshape(-1, rqs.vertical.shape[-1])[feature]
        d = rqs.derivatives.reshape(-1, rqs.derivatives.shape[-1])[feature]
    return h.detach().cpu().numpy(), v.detach().cpu().numpy(), d.detach().cpu().numpy()




# --------------------------------------------------------------------------- zuko's MAF
@register_model("conditional_maf")
class ConditionalMAF(Model):
    r"""A masked autoregressive flow (zuko's ``MAF``, affine layers) on standardised data.

    ``ln q(x | c)`` exactly, by the change of variables through ``transforms``
    affine autoregressive layers (Papamakarios et al. 2017). No
    standardisation is built in: DELFI (:mod:`cosmonb.inference.delfi`) feeds it
    standardised parameters and summaries. ``loss`` is the mean negative
    log-likelihood of a batch ``x`` or ``(x, c)``.

    Example:
        >>> maf = ConditionalMAF(features=2, context=2, transforms=2, hidden=(8, 8))
        >>> x, c = torch.randn(5, 2), torch.randn(5, 2)
        >>> maf.log_prob(x, c).shape, maf.sample(3, c[:1], seed=0).shape
        (torch.Size([5]), torch.Size([3, 2]))
    """

    log_prob_kind = "exact"

    def __init__(self, features: int, context: int = 0, transforms: int = 3, hidden=(64, 64)):
        super().__init__()
        for name, v, low in (("features", features, 1), ("context", context, 0), ("transforms", transforms, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {v!r}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden: expected positive layer widths, got {hidden}")
        self.features, self.context = int(features), int(context)
        self._config = {"features": self.features, "context": self.context, "transforms": int(transforms),
                        "hidden": list(hidden)}
        self.flow = zuko.flows.MAF(features=self.features, context=self.context, transforms=int(transforms),
                                   hidden_features=hidden)

    @property
    def config(self) -> dict:
        return dict(self._config)

    def _cond(self, cond, n):
        return condition_rows(cond, "cond", self.context, n)

    def log_prob(self, x, cond=None) -> torch.Tensor:
        """ln q(x | cond) per row, shape (N,)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ValueError(f"x: expected shape (N, {self.features}), got {tuple(x.shape)}")
        return self.flow(self._cond(cond, len(x))).log_prob(x)

    def loss(self, batch) -> torch.Tensor:
        """Mean negative log-likelihood of ``x`` or ``(x, c)``."""
        x, c = _split_batch(batch)
        return -self.log_prob(x, c).mean()

    @torch.no_grad()
    def sample(self, n: int, cond=None, *, seed: int | None = None) -> torch.Tensor:
        """``n`` samples (n, features); ``cond`` of shape (1, C) or (n, C)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: expected a positive integer, got {n!r}")
        with seeded_rng(seed, next(self.parameters()).device):
            c = self._cond(cond, int(n))
            return self.flow(c).sample(() if c is not None else (int(n),))
