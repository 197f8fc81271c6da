r"""Information maximising neural networks (IMNN; Charnock, Lavaux & Wandelt 2018).

An IMNN is a network f_w that compresses a field d to n_params summaries
t = f_w(d) and is trained so that the summaries keep as much Fisher
information about the parameters as possible. Treating the summaries as
Gaussian with a mean that depends on theta and a fixed covariance, their
Fisher matrix at a fiducial point is

    F = (d mu / d theta)^T C^-1 (d mu / d theta),

with ``mu`` and ``C`` the mean and covariance of t over n_s simulations at
theta_fid, and ``d mu / d theta_i`` from n_d **seed-matched** finite
differences: pairs of simulations at theta_fid +- delta_i e_i with the same
random seed, so that the noise cancels in the difference,

    d mu / d theta_i = 1/n_d sum_j [f(d_j(theta + delta_i)) - f(d_j(theta - delta_i))] / (2 delta_i).

The loss is

    L = -ln det F + r(Lambda_2) Lambda_2,
    Lambda_2 = ||C - I||_F + ||C^-1 - I||_F,
    r(Lambda_2) = lambda Lambda_2 / (Lambda_2 + exp(-alpha Lambda_2)),
    alpha = -ln(eps (lambda - 1) + eps^2 / (1 + eps)) / eps.

det F is unchanged by any invertible linear map of the summaries, so the
regulariser only fixes their scale (C -> I, which also makes the covariance
close to parameter independent); its strength r switches off smoothly once
C is within about eps of the identity (the IMNN paper's coupling, as in the
``imnn`` package; defaults lambda = 10, eps = 0.1). With fresh simulations at
every step and n_s = 200-300, the sample covariance alone scatters by
Lambda_2 ~ 0.3 around the identity, so the presets of notebook 01 use a
gentler lambda = 2 (measured: lambda = 10 reached a saturation of 0.83 where
lambda = 2 reached 0.94 in the same 500 epochs).

No compressor can beat the Fisher information of the data, so
``det F_IMNN / det F_exact <= 1``: the ratio is the network's **saturation**.

The compressor (:class:`IMNN`) is a small CNN with circular padding (the
fields are periodic). At every resolution level it averages its feature maps,
and their squares, over the whole map (first and second moments, global
pooling), so that statistics of all scales, from the pixel to the box, reach
the head, an MLP that outputs the n_params summaries. A data-dependent
initialisation (:meth:`IMNN.initialise`, like ActNorm in Glow) standardises
inputs and pooled features and whitens the outputs, so that C ~ I from the
first step and the optimiser works on ln det F at once.

``IMNN.loss(batch)`` is this loss on one simulation set (a dict with
``fiducial``, ``plus``, ``minus`` maps and the steps ``delta``); ``lam`` and
``eps`` are part of the network's config. The IMNN is a compressor, not a
generative model: it has no ``sample`` (``can_sample = False``) and no
``log_prob`` (``log_prob_kind = None``).

Training (:func:`cosmonb.recipes.imnn.train_imnn`) runs through ``cosmonb.train.fit``: every epoch
draws a fresh set of fiducial and derivative simulations (simulations on the
fly, so the network cannot overfit a fixed training set); a fixed validation
set gives the Fisher matrix whose determinant is tracked and used for early
stopping. :func:`summary_statistics_of` measures mu, C, d mu / d theta and F on
a large independent set, and :class:`IMNNCompressor` turns summaries into
score-compressed (quasi maximum-likelihood) parameter estimates,

    theta_hat = theta_fid + F^-1 (d mu)^T C^-1 (t - mu)  (Alsing & Wandelt 2018).

Example:
    >>> import torch
    >>> net = IMNN(n_params=2, widths=(4, 8), hidden=16)
    >>> net(torch.randn(5, 1, 16, 16)).shape
    torch.Size([5, 2])

References: T. Charnock, G. Lavaux & B. D. Wandelt, "Automatic physical inference
with information maximizing neural networks", Phys. Rev. D 97, 083004 (2018);
J. Alsing & B. Wandelt, MNRAS 476, L60 (2018); T. L. Makinen, T. Charnock,
J. Alsing & B. D. Wandelt, "Lossless, scalable implicit likelihood inference for
cosmological fields", JCAP 11 (2021) 049.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..fisher import MAX_CONDITION, SummaryStatistics, check_step, summary_statistics
from .._checks import check_int
from .base import Model, register_model

__all__ = ["IMNN", "imnn_loss", "regularisation_rate", "make_simulation_set", "measure_saturation",
           "summary_statistics_of", "summaries_of_set", "exact_scores_of_set", "stream_seed", "IMNNCompressor"]

# Training and checkpoint helpers (``train_imnn``, ``save_imnn``, ``load_imnn``, ...) live in
# :mod:`cosmonb.recipes.imnn`: models do not import ``train`` or ``checkpoints``.

_ACTIVATIONS = {"silu": nn.SiLU, "leaky_relu": lambda: nn.LeakyReLU(0.1), "softplus": nn.Softplus,
                "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh}


# --------------------------------------------------------------------------- network
@register_model("imnn")
class IMNN(Model):
    """CNN compressor: periodic maps (N, C, n, n) -> n_params summaries (N, n_params).

    Architecture: for each width w_l in ``widths`` (resolution n / 2^l):
    ``convs_per_level`` 3x3 convolutions with circular padding (the fields are
    periodic), each followed by the activation; then the global average over the
    map of every feature map and (``moments=True``) the log of the average of its
    square -- first and second moments, so that a power spectrum, a second
    moment, is easy to represent -- then a 2x2 average pooling to the next
    level. The input's own moments are kept too. The pooled features of every
    level (``2 (in_channels + sum(widths))`` numbers) are standardised by
    ``feature_shift`` / ``feature_scale`` and go through an MLP with two hidden
    layers of ``hidden`` units to the n_params outputs.

    Buffers (saved with the weights): the input standardisation
    ``(x - shift) / scale`` and the feature standardisation, both set by the
    data-dependent :meth:`initialise` (or :meth:`set_normalisation`).

    Example:
        >>> import torch
        >>> net = IMNN(n_params=2, in_channels=1, widths=(4, 8), hidden=16)
        >>> net.set_normalisation([1.0], [2.0])
        >>> net(torch.ones(3, 1, 8, 8)).shape
        torch.Size([3, 2])
    """

    log_prob_kind = None
    can_sample = False

    def __init__(self, n_params: int = 2, in_channels: int = 1, widths=(8, 16, 16, 16, 16),
                 hidden: int = 64, activation: str = "silu", convs_per_level: int = 2,
                 moments: bool = True, linear_skip: bool = True, lam: float = 10.0, eps: float = 0.1):
        super().__init__()
        regularisation_rate(lam, eps)  # checks lam > 1, eps > 0
        for name, value in (("n_params", n_params), ("in_channels", in_channels), ("hidden", hidden),
                            ("convs_per_level", convs_per_level)):
            check_int(value, name, 1)
        widths = tuple(int(w) for w in widths)
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths: expected a non-empty list of positive channel counts, got {widths}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self._config = {"n_params": int(n_params), "in_channels": int(in_channels), "widths": list(widths),
                        "hidden": int(hidden), "activation": activation,
                        "convs_per_level": int(convs_per_level), "moments": bool(moments),
                        "linear_skip": bool(linear_skip), "lam": float(lam), "eps": float(eps)}
        #: det F etc. (detached) of the last ``loss`` call: ``{"fisher", "cov", "dmu", "lambda2", "r"}``
        self.last_info: dict | None = None
        act = _ACTIVATIONS[activation]
        blocks, c = [], in_channels
        for w in widths:
            layers = []
            for _ in range(convs_per_level):
                layers += [nn.Conv2d(c, w, 3, padding=1, padding_mode="circular"), act()]
                c = w
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.moments = bool(moments)
        n_feat = (in_channels + sum(widths)) * (2 if moments else 1)
        self.head = nn.Sequential(nn.Linear(n_feat, hidden), act(), nn.Linear(hidden, hidden), act(),
                                  nn.Linear(hidden, n_params))
        # a linear read-out of the features beside the MLP: initialise() starts it as the score compression
        self.skip = nn.Linear(n_feat, n_params, bias=False) if linear_skip else None
        self.register_buffer("shift", torch.zeros(in_channels))
        self.register_buffer("scale", torch.ones(in_channels))
        self.register_buffer("feature_shift", torch.zeros(n_feat))
        self.register_buffer("feature_scale", torch.ones(n_feat))

    @property
    def config(self) -> dict:
        """The keyword arguments that rebuild this network (``IMNN(**config)``)."""
        return dict(self._config, widths=list(self._config["widths"]))

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """Networks saved before the linear skip existed had none: ``linear_skip`` defaults to False there."""
        return {"linear_skip": False, **config}

    def set_regulariser(self, lam: float | None = None, eps: float | None = None) -> None:
        """Change the regulariser's lambda and eps of :meth:`loss` (kept in ``config``)."""
        lam = self._config["lam"] if lam is None else float(lam)
        eps = self._config["eps"] if eps is None else float(eps)
        regularisation_rate(lam, eps)
        self._config.update(lam=lam, eps=eps)

    def loss(self, batch) -> torch.Tensor:
        """The IMNN loss -ln det F + r Lambda_2 (:func:`imnn_loss`) on one simulation set.

        ``batch``: a dict with ``fiducial`` (n_s, C, n, n), ``plus``, ``minus``
        (P, n_d, C, n, n) seed-matched maps (:func:`make_simulation_set`) and
        ``delta`` (P,), their steps. The pieces (F, C, ...) of the call are kept
        in ``self.last_info``.
        """
        if not isinstance(batch, dict) or not {"fiducial", "plus", "minus", "delta"} <= set(batch):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError("batch: expected a dict with 'fiducial', 'plus', 'minus' (make_simulation_set) and "
                             f"'delta' (the steps), got {got}")
        fid, plus, minus = summaries_of_set(self, batch)
        delta = torch.as_tensor(batch["delta"]).to(fid.device)
        loss, self.last_info = imnn_loss(fid, plus, minus, delta, lam=self._config["lam"], eps=self._config["eps"])
        return loss

    @property
    def min_size(self) -> int:
        """Smallest map side the network accepts (it halves the map len(widths) - 1 times)."""
        return 2 ** (len(self.blocks) - 1)

    def set_normalisation(self, shift, scale) -> None:
        """Per-channel input standardisation (x - shift) / scale."""
        shift = torch.as_tensor(np.asarray(shift, float), dtype=torch.float32).reshape(-1)
        scale = torch.as_tensor(np.asarray(scale, float), dtype=torch.float32).reshape(-1)
        c = self._config["in_channels"]
        if shift.numel() != c or scale.numel() != c:
            raise ValueError(f"shift, scale: expected {c} values (one per channel)")
        if not bool(torch.isfinite(shift).all()) or not bool((scale > 0).all()):
            raise ValueError("shift, scale: expected finite shifts and positive scales")
        self.shift.copy_(shift)
        self.scale.copy_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self._config["in_channels"]:
            raise ValueError(f"x: expected maps (N, {self._config['in_channels']}, n, n), got {tuple(x.shape)}")
        if x.shape[-1] < self.min_size or x.shape[-1] % self.min_size:
            raise ValueError(f"x: the map side ({x.shape[-1]}) must be a multiple of {self.min_size}")
        z = (self.features(x) - self.feature_shift) / self.feature_scale
        return self.head(z) if self.skip is None else self.head(z) + self.skip(z)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled multi-scale features (N, n_features) before standardisation and the head."""
        h = (x - self.shift[None, :, None, None]) / self.scale[None, :, None, None]
        pooled = self._pool(h)
        for i, block in enumerate(self.blocks):
            h = block(h)
            pooled += self._pool(h)
            if i < len(self.blocks) - 1:
                h = F.avg_pool2d(h, 2)
        return torch.cat(pooled, 1)

    @torch.no_grad()
    def initialise(self, x: torch.Tensor, plus: torch.Tensor | None = None, minus: torch.Tensor | None = None,
                   delta=None) -> None:
        """Data-dependent initialisation on fiducial maps x (N, C, n, n), N >> n_params.

        Sets the input standardisation to the per-channel mean and standard
        deviation of x, the feature standardisation to the mean and standard
        deviation of the pooled features, and sets the last layer so that the
        summaries of x have mean 0 and covariance I (like ActNorm in Glow: the
        regulariser then starts near its minimum and the optimiser works on
        ln det F from the first step).

        Given seed-matched derivative maps ``plus``, ``minus`` (P, n_d, C, n, n) at
        theta_fid +- ``delta``, the last layer also starts as the best *linear*
        read-out of the last hidden layer h: the score compression (MOPED)

            t = (d mu_h / d theta)^T C_h^-1 (h - mu_h),

        which keeps all the Fisher information that a linear map of h can keep
        (whitened afterwards; det F does not change under an invertible linear map).
        A random last layer keeps only a random 2D projection of h, whose
        determinant is often near 0; from there noisy early steps threw short runs
        about (saturation swinging between 0 and 0.4 from step to step).
        """
        if x.ndim != 4 or len(x) < 10 * self._config["n_params"]:
            raise ValueError(f"x: expected at least {10 * self._config['n_params']} fiducial maps (N, C, n, n) "
                             f"to initialise from, got shape {tuple(x.shape)}")
        if (plus is None) != (minus is None) or (plus is not None and delta is None):
            raise ValueError("plus, minus, delta: pass all three (derivative maps and their steps) or none")
        self.set_normalisation(x.double().mean((0, 2, 3)).numpy(), x.double().std((0, 2, 3)).numpy())
        feat = self.features(x)
        self.feature_shift.copy_(feat.mean(0))
        self.feature_scale.copy_(feat.std(0).clamp_min(1e-6))
        last = self.head[-1]
        if plus is not None:
            p, n_d = plus.shape[:2]
            if p != self._config["n_params"] or minus.shape != plus.shape or plus.shape[2:] != x.shape[1:]:
                raise ValueError(f"plus, minus: expected ({self._config['n_params']}, n_d, "
                                 f"{', '.join(map(str, x.shape[1:]))}) each, got {tuple(plus.shape)}, "
                                 f"{tuple(minus.shape)}")
            step = torch.as_tensor(check_step(np.asarray(delta, float), p), dtype=torch.float64)
            # the read-out's input: the standardised features (skip) or the last hidden layer
            pre = (lambda z: z) if self.skip is not None else self.head[:-1]

            def h_of(features):
                return pre((features - self.feature_shift) / self.feature_scale).double()

            h = h_of(feat)  # the fiducial features computed above
            dh = (h_of(self.features(plus.flatten(0, 1))) - h_of(self.features(minus.flatten(0, 1)))
                  ).reshape(p, n_d, -1).mean(1)
            dmu = dh / (2 * step[:, None])  # (P, H)
            cov = torch.cov(h.T)
            # ridge: a tenth of the mean variance. Without it C^-1 leans on fine cancellations between
            # features that the first optimiser steps undo (measured: 1e-3 lost the start in a step or two)
            ridge = 0.1 * cov.diagonal().mean().clamp_min(1e-12)
            w = torch.linalg.solve(cov + ridge * torch.eye(len(cov), dtype=cov.dtype), dmu.T).T  # (P, H)
            if self.skip is not None:  # the MLP starts silent and learns what is non-linear on top
                self.skip.weight.copy_(w.float())
                last.weight.zero_()
            else:
                last.weight.copy_(w.float())
            last.bias.zero_()
        out = self(x).double()
        chol = torch.linalg.cholesky(torch.cov(out.T))
        inv = torch.linalg.inv(chol)
        last.weight.copy_((inv @ last.weight.double()).float())
        last.bias.copy_((inv @ (last.bias.double() - out.mean(0))).float())
        if self.skip is not None:
            self.skip.weight.copy_((inv @ self.skip.weight.double()).float())

    def _pool(self, h):
        """Global average of the feature maps and (with ``moments``) the log of their mean square."""
        out = [h.mean((-2, -1))]
        if self.moments:
            out.append(torch.log(h.square().mean((-2, -1)) + 1e-6))
        return out


# --------------------------------------------------------------------------- loss
def regularisation_rate(lam: float = 10.0, eps: float = 0.1) -> float:
    """alpha = -ln(eps (lambda - 1) + eps^2 / (1 + eps)) / eps, the IMNN regulariser's rate.

    Example:
        >>> round(regularisation_rate(10.0, 0.1), 4)
        0.9531
    """
    if not (lam > 1 and eps > 0):
        raise ValueError(f"lam, eps: expected lambda > 1 and eps > 0, got {lam}, {eps}")
    return -math.log(eps * (lam - 1.0) + eps**2 / (1.0 + eps)) / eps


def _fisher_pieces(fiducial: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor, delta: torch.Tensor):
    """(F, C, C^-1, dmu) in float64 from summaries (n_s, S), (P, n_d, S), (P, n_d, S)."""
    t = fiducial.double()
    n_s, n_sum = t.shape
    if n_s <= n_sum + 1:
        raise ValueError(f"fiducial: {n_s} simulations are too few for a {n_sum} x {n_sum} covariance; "
                         f"use at least {n_sum + 2} (in practice hundreds)")
    centred = t - t.mean(0)
    cov = centred.T @ centred / (n_s - 1)
    dmu = ((plus.double() - minus.double()).mean(1) / (2 * delta.double()[:, None])).T  # (S, P)
    eig = torch.linalg.eigvalsh(cov.detach())
    if not bool(eig[0] > eig[-1] / MAX_CONDITION) or not bool(eig[-1] > 0):
        raise ValueError("summaries: their covariance is singular (some outputs are constant or "
                         "duplicates); reinitialise the network or use more simulations")
    cinv = torch.linalg.inv(cov)
    fisher = dmu.T @ cinv @ dmu
    return fisher, cov, cinv, dmu


def imnn_loss(fiducial: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor, delta, *,
              lam: float = 10.0, eps: float = 0.1):
    """The IMNN loss -ln det F + r Lambda_2 and its pieces.

    ``fiducial`` (n_s, S) summaries at theta_fid; ``plus``, ``minus`` (P, n_d, S)
    summaries of seed-matched simulations at theta_fid +- delta_i e_i; ``delta``
    (P,) steps > 0. Returns ``(loss, info)`` with ``info`` holding detached
    ``fisher``, ``cov``, ``dmu``, ``lambda2``, ``r`` (float64 tensors).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> fid = torch.randn(400, 2, generator=g)
        >>> eps = torch.randn(2, 100, 2, generator=g)
        >>> shift = torch.eye(2)[:, None, :] * 0.1
        >>> loss, info = imnn_loss(fid, eps + shift, eps - shift, torch.tensor([0.1, 0.1]))
        >>> torch.allclose(info["dmu"], torch.eye(2, dtype=torch.float64))
        True
    """
    delta = torch.as_tensor(check_step(np.asarray(delta.cpu() if torch.is_tensor(delta) else delta, float),
                                       plus.shape[0]), device=fiducial.device)
    fisher, cov, cinv, dmu = _fisher_pieces(fiducial, plus, minus, delta)
    sign, logdet = torch.linalg.slogdet(fisher)
    if not bool(sign > 0):
        raise ValueError("summaries: their Fisher matrix is singular (det F <= 0): the outputs do not "
                         "respond to every parameter; check delta and the derivative simulations")
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    lambda2 = torch.linalg.norm(cov - eye) + torch.linalg.norm(cinv - eye)
    alpha = regularisation_rate(lam, eps)
    r = lam * lambda2 / (lambda2 + torch.exp(-alpha * lambda2))
    loss = -logdet + r * lambda2
    info = {"fisher": fisher.detach(), "cov": cov.detach(), "dmu": dmu.detach(),
            "lambda2": lambda2.detach(), "r": r.detach()}
    return loss.float(), info


# --------------------------------------------------------------------------- simulations
def make_simulation_set(simulator, theta_fid, delta, n_s: int, n_d: int, seed: int) -> dict:
    """Fiducial and seed-matched derivative simulations for one IMNN step.

    ``simulator(theta (N, P), seed, indices) -> maps (N, C, n, n)``. Returns a dict
    of float32 tensors: ``fiducial`` (n_s, C, n, n) at theta_fid (streams (seed, 0..n_s-1)),
    ``plus`` and ``minus`` (P, n_d, C, n, n) at theta_fid +- delta_i e_i, all sharing the
    streams (seed, n_s .. n_s + n_d - 1): the seed matching. ``delta`` > 0.

    Example:
        >>> from cosmonb.sims import PowerLawSimulator
        >>> s = make_simulation_set(PowerLawSimulator(16), [1.0, 0.5], [0.1, 0.1], 20, 5, seed=0)
        >>> tuple(s["fiducial"].shape), tuple(s["plus"].shape)
        ((20, 1, 16, 16), (2, 5, 1, 16, 16))
    """
    theta = np.asarray(theta_fid, float).ravel()
    step = check_step(delta, len(theta))
    check_int(n_s, "n_s", 3)
    check_int(n_d, "n_d", 1)
    fid = simulator(np.tile(theta, (n_s, 1)), seed, np.arange(n_s))
    idx = np.arange(n_s, n_s + n_d)
    plus, minus = [], []
    for i in range(len(theta)):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += step[i]
        tm[i] -= step[i]
        plus.append(simulator(np.tile(tp, (n_d, 1)), seed, idx))
        minus.append(simulator(np.tile(tm, (n_d, 1)), seed, idx))
    as_t = lambda a: torch.as_tensor(np.asarray(a, np.float32))
    return {"fiducial": as_t(fid), "plus": as_t(np.stack(plus)), "minus": as_t(np.stack(minus))}


def summaries_of_set(model, batch, chunk: int | None = None):
    """Run the model on a simulation set -> (fiducial (n_s, S), plus, minus (P, n_d, S))."""
    fid, plus, minus = batch["fiducial"], batch["plus"], batch["minus"]
    p, n_d = plus.shape[:2]
    x = torch.cat([fid, plus.flatten(0, 1), minus.flatten(0, 1)])
    if chunk is None:
        out = model(x)
    else:
        out = torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    n_s = len(fid)
    return out[:n_s], out[n_s:n_s + p * n_d].reshape(p, n_d, -1), out[n_s + p * n_d:].reshape(p, n_d, -1)


def exact_scores_of_set(exact_score, batch, theta):
    """exact_score(maps, theta) on a simulation set -> (fiducial (n_s, P), plus, minus (P, n_d, P)) arrays."""
    fid, plus, minus = batch["fiducial"], batch["plus"], batch["minus"]
    maps = torch.cat([fid, plus.flatten(0, 1), minus.flatten(0, 1)]).cpu().numpy()
    scores = np.asarray(exact_score(maps, theta), float)  # one call: the score's set-up is shared
    n_s, shape = len(fid), plus.shape[:2] + (-1,)
    return (scores[:n_s], scores[n_s:n_s + plus.shape[0] * plus.shape[1]].reshape(shape),
            scores[n_s + plus.shape[0] * plus.shape[1]:].reshape(shape))


@torch.no_grad()
def summary_statistics_of(model, batch, theta_fid, delta, chunk: int = 500) -> SummaryStatistics:
    """Mean, covariance, d mu / d theta and Fisher matrix of the model's summaries on a simulation set.

    ``batch`` as :func:`make_simulation_set` returns. Use a large set that the
    network was not trained on: this is the honest F_IMNN.
    """
    model.eval()
    dev = next(model.parameters()).device
    batch = {k: v.to(dev) for k, v in batch.items()}
    fid, plus, minus = summaries_of_set(model, batch, chunk)
    return summary_statistics(fid.double().cpu().numpy(), plus.double().cpu().numpy(),
                              minus.double().cpu().numpy(), delta, theta_fid)


@torch.no_grad()
def measure_saturation(model, simulator, theta_fid, delta, reference_fisher, *, n_s: int, n_d: int,
                       seed: int, n_batches: int = 10, exact_score=None) -> dict:
    """det F_IMNN / det F_reference on fresh simulations, with a jackknife standard error.

    The simulations (n_s fiducial, n_d seed-matched pairs per parameter) are made
    in ``n_batches`` batches (bounded memory); F_IMNN uses all of them, and the
    standard error comes from leaving one batch out at a time. det F scatters
    like det C^-1, by about sqrt(2 n_summaries / n_s) (3% for n_s = 4000), so a
    saturation to 1% needs tens of thousands of fiducial simulations.

    ``exact_score(maps, theta) -> (N, P)`` (e.g. ``simulator.score``), when the
    exact score is known, adds a **paired** estimate: the exact score is the
    optimal compressor, so ``det F_IMNN / det F_score`` measured *on the same
    simulations* estimates the same ratio while the sampling noise of the
    covariances, common to both, cancels (a control variate): a few times
    smaller error for the same simulations.

    Returns ``{"saturation", "stderr", "n_s", "n_d", "stats"}`` (``stats`` the
    :class:`~cosmonb.fisher.SummaryStatistics` of all simulations), plus
    ``saturation_paired``, ``stderr_paired`` and ``score_saturation`` (det F_score /
    det F_reference, 1 up to noise) with ``exact_score``.
    """
    check_int(n_batches, "n_batches (for the jackknife)", 2)
    theta = np.asarray(theta_fid, float).ravel()
    step = check_step(delta, len(theta))
    ref = float(np.linalg.det(np.asarray(reference_fisher, float)))
    if not ref > 0:
        raise ValueError("reference_fisher: expected a positive-definite matrix")
    model.eval()
    dev = next(model.parameters()).device
    parts, score_parts = [], []
    for b in range(n_batches):
        batch = make_simulation_set(simulator, theta, step, max(n_s // n_batches, 3), max(n_d // n_batches, 1),
                                    seed=stream_seed(seed, b))
        out = summaries_of_set(model, {k: v.to(dev) for k, v in batch.items()}, chunk=1000)
        parts.append([o.double().cpu().numpy() for o in out])
        if exact_score is not None:
            score_parts.append(exact_scores_of_set(exact_score, batch, theta))

    def det_fisher(chunks, idx):
        cat = [np.concatenate([chunks[i][0] for i in idx]), np.concatenate([chunks[i][1] for i in idx], 1),
               np.concatenate([chunks[i][2] for i in idx], 1)]
        return summary_statistics(*cat, step, theta)

    def jackknife(values):
        return float(np.sqrt((n_batches - 1) / n_batches * ((values - values.mean()) ** 2).sum()))

    everything = range(n_batches)
    leave_out = [[j for j in everything if j != i] for i in everything]
    full = det_fisher(parts, everything)
    loo = np.array([det_fisher(parts, idx).det_fisher for idx in leave_out])
    result = {"saturation": full.det_fisher / ref, "stderr": jackknife(loo / ref), "n_s": full.n_sims,
              "n_d": full.n_derivative_sims, "stats": full}
    if exact_score is not None:
        best = det_fisher(score_parts, everything).det_fisher
        loo_best = np.array([det_fisher(score_parts, idx).det_fisher for idx in leave_out])
        result.update(saturation_paired=full.det_fisher / best, stderr_paired=jackknife(loo / loo_best),
                      score_saturation=best / ref)
    return result


def stream_seed(seed: int, k: int) -> int:
    """A distinct non-negative stream id for (seed, k)."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


# --------------------------------------------------------------------------- compression
class IMNNCompressor:
    """A trained IMNN plus its fiducial statistics: maps -> summaries -> score estimates.

    ``compressor.summaries(maps)`` (N, P) network outputs; ``compressor(maps)`` or
    ``compressor.estimate(maps)`` the quasi maximum-likelihood estimates
    theta_fid + F^-1 dmu^T C^-1 (t - mu); ``compressor.fisher`` the IMNN Fisher matrix.
    """

    def __init__(self, model: IMNN, stats: SummaryStatistics, chunk: int = 1000):
        self.model, self.stats, self.chunk = model, stats, int(chunk)

    @property
    def fisher(self) -> np.ndarray:
        return self.stats.fisher

    @property
    def theta_fid(self) -> np.ndarray:
        return self.stats.theta_fid

    @torch.no_grad()
    def summaries(self, maps) -> np.ndarray:
        self.model.eval()
        dev = next(self.model.parameters()).device
        x = torch.as_tensor(np.asarray(maps, np.float32))
        if x.ndim == 3:
            x = x[:, None]
        out = [self.model(x[i:i + self.chunk].to(dev)).double().cpu() for i in range(0, len(x), self.chunk)]
        return torch.cat(out).numpy()

    def estimate(self, maps) -> np.ndarray:
        return self.stats.estimate(self.summaries(maps))

    __call__ = estimate
