r"""HIGlow: a Glow conditioned on cosmological parameters (Friedman & Hassan 2022; Kingma & Dhariwal 2018).

A normalizing flow maps a map ``x`` (C, H, W) to a latent ``eps`` of the same
size through an invertible ``T(x; theta)`` and scores it by the change of variables

    ln q(x | theta) = ln N(eps; 0, I) + ln |det dT/dx|,    eps = T(x; theta).

The flow has ``levels`` blocks. Each block squeezes 2x2 pixels into channels,
applies ``steps`` flow steps, and (except the last) factors out half of the
channels. One step is

1. the conditional affine **injector** (HIGlow's replacement for actnorm):
   ``y = exp(g_s(theta)) * x + g_t(theta)``, one scale and shift per channel from a
   one-hidden-layer MLP of theta; ``ln |det| = H W sum_c g_s(theta)_c``;
2. an invertible **1x1 convolution**, LU-parametrised: ``W = P L (U + diag(s))``
   with ``P`` a fixed permutation, ``L`` unit lower triangular, ``U`` strictly
   upper triangular and ``s = sign * exp(log|s|)`` (sign fixed), so
   ``ln |det| = H W sum ln|s|``;
3. the conditional affine **coupling**: ``x = (x_a, x_b)``,
   ``y_b = sigma * x_b + mu`` with ``(mu, sigma) = NN(x_a, theta)``, where theta
   enters as one constant channel per parameter and ``sigma = 2 sigmoid(.)``
   lies in (0, 2) (bounded for stability, 1 at zero).

The factored-out half ``z`` of each block gets a learned conditional Gaussian
prior ``N(mu, exp(2 ln s))`` with ``(mu, ln s)`` a convolution of the kept half
and theta (as in Glow); the last block's latent a per-channel Gaussian from
theta. The model folds these into the flow, ``eps = (z - mu) / s``, so every
latent it returns is standard normal and ``temperature`` scales it. The last
layers of the injector, coupling and prior networks start at zero, so each is
the identity (and each prior standard normal) at initialisation; only the 1x1
convolutions start as random rotations. ``learned_prior=False`` uses a standard
normal for the factored-out parts instead. Convolutions pad circularly (the
CAMELS maps are periodic).

The maps are continuous standardised log-fields, so ``log_prob`` is a
density in nats per map with no 8-bit dequantisation; ``bits_per_dim`` is
``-log_prob / (D ln 2)`` with ``D = C H W`` (it can be negative), and ``loss``
the mean negative log-likelihood per dimension, whose scale does not depend on
the map size. The paper: 64 x 64 HI maps of the CAMELS LH set, conditioned on
(Omega_m, sigma_8), 6 blocks of 20 steps, hidden width 16.
:func:`higlow_posterior` turns a trained model into the paper's posterior (its
eq. 2) on prior samples.

Example:
    >>> _ = torch.manual_seed(0)
    >>> glow = ConditionalGlow(in_channels=1, n_pix=8, levels=2, steps=2, hidden=8)
    >>> x, theta = torch.randn(3, 1, 8, 8), torch.rand(3, 2)
    >>> zs, logdet = glow(x, theta)
    >>> [tuple(z.shape) for z in zs], logdet.shape
    ([(3, 2, 4, 4), (3, 8, 2, 2)], torch.Size([3]))
    >>> torch.allclose(glow.inverse(zs, theta), x, atol=1e-5), glow.log_prob(x, theta).shape
    (True, torch.Size([3]))
    >>> glow.sample(2, theta[:1], seed=0, temperature=0.7).shape
    torch.Size([2, 1, 8, 8])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float, check_int
from .base import Model, register_model, seeded_rng

__all__ = ["ConditionalGlow", "ConditionalInjector", "InvertibleConv1x1", "ConditionalCoupling",
           "squeeze2d", "unsqueeze2d", "HIGlowPosterior", "higlow_posterior"]


# --------------------------------------------------------------------------- building blocks
def squeeze2d(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block of pixels becomes 4 channels (volume-preserving)."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"x: squeeze needs an even height and width, got {h} x {w}")
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze2d(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze2d`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    b, c, h, w = x.shape
    if c % 4:
        raise ValueError(f"x: unsqueeze needs a multiple of 4 channels, got {c}")
    x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, 2 * h, 2 * w)


def _zero_init(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="circular")


def _with_cond_channels(x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """``x`` with one constant channel per parameter appended (theta broadcast over the pixels)."""
    b, _, h, w = x.shape
    return torch.cat([x, cond[:, :, None, None].expand(b, cond.shape[1], h, w)], dim=1)


class ConditionalInjector(nn.Module):
    """``y = exp(g_s(theta)) * x + g_t(theta)`` per channel; identity at initialisation (last layer zero).

    ``forward(x, cond) -> (y, logdet)``, ``inverse(y, cond) -> x``.
    """

    def __init__(self, channels: int, cond_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cond_dim, hidden), nn.ReLU(), _zero_init(nn.Linear(hidden, 2 * channels)))

    def _scale_shift(self, cond):
        log_s, t = self.net(cond).chunk(2, dim=1)
        return log_s[:, :, None, None], t[:, :, None, None]

    def forward(self, x, cond):
        log_s, t = self._scale_shift(cond)
        return x * log_s.exp() + t, log_s.sum((1, 2, 3)) * (x.shape[2] * x.shape[3])

    def inverse(self, y, cond):
        log_s, t = self._scale_shift(cond)
        return (y - t) * (-log_s).exp()


class InvertibleConv1x1(nn.Module):
    """An invertible 1x1 convolution ``W = P L (U + diag(sign exp(log_s)))``, started at a random rotation.

    ``P`` (a row permutation) and ``sign`` are fixed buffers; ``L`` (unit lower),
    ``U`` (strictly upper) and ``log_s`` are learned. ``ln |det W| = sum log_s``
    per pixel. ``forward(x) -> (y, logdet)``, ``inverse(y) -> x``.
    """

    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.argmax(dim=1))  # (P A)[i] = A[perm[i]]
        self.register_buffer("sign", torch.sign(s).float())
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(s.abs().log().float())

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.log_s.shape[0], dtype=self.log_s.dtype, device=self.log_s.device)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * self.log_s.exp())
        return (lower @ upper)[self.perm]

    def forward(self, x):
        y = F.conv2d(x, self.weight()[:, :, None, None])
        return y, self.log_s.sum().expand(x.shape[0]) * (x.shape[2] * x.shape[3])

    def inverse(self, y):
        return F.conv2d(y, torch.linalg.inv(self.weight())[:, :, None, None])


class ConditionalCoupling(nn.Module):
    """Affine coupling ``y_b = 2 sigmoid(r) * x_b + mu``, ``(mu, r) = NN(x_a, theta)``; identity at initialisation.

    NN: a 3x3 convolution to ``hidden`` channels, ReLU, and a zero-initialised 3x3
    convolution; theta enters as one constant input channel per parameter.
    """

    def __init__(self, channels: int, cond_dim: int, hidden: int):
        super().__init__()
        if channels < 2:
            raise ValueError(f"channels: a coupling splits channels in two, so needs >= 2, got {channels}")
        self.n_a = channels // 2
        n_b = channels - self.n_a
        self.net = nn.Sequential(_conv3x3(self.n_a + cond_dim, hidden), nn.ReLU(),
                                 _zero_init(_conv3x3(hidden, 2 * n_b)))

    def _scale_shift(self, x_a, cond):
        shift, raw = self.net(_with_cond_channels(x_a, cond)).chunk(2, dim=1)
        return F.logsigmoid(raw) + math.log(2.0), shift

    def forward(self, x, cond):
        x_a, x_b = x[:, :self.n_a], x[:, self.n_a:]
        log_scale, shift = self._scale_shift(x_a, cond)
        return torch.cat([x_a, x_b * log_scale.exp() + shift], dim=1), log_scale.sum((1, 2, 3))

    def inverse(self, y, cond):
        y_a, y_b = y[:, :self.n_a], y[:, self.n_a:]
        log_scale, shift = self._scale_shift(y_a, cond)
        return torch.cat([y_a, (y_b - shift) * (-log_scale).exp()], dim=1)


class _FlowStep(nn.Module):
    def __init__(self, channels: int, cond_dim: int, hidden: int):
        super().__init__()
        self.injector = ConditionalInjector(channels, cond_dim, hidden)
        self.conv = InvertibleConv1x1(channels)
        self.coupling = ConditionalCoupling(channels, cond_dim, hidden)

    def forward(self, x, cond):
        x, ld1 = self.injector(x, cond)
        x, ld2 = self.conv(x)
        x, ld3 = self.coupling(x, cond)
        return x, ld1 + ld2 + ld3

    def inverse(self, y, cond):
        return self.injector.inverse(self.conv.inverse(self.coupling.inverse(y, cond)), cond)


class _SplitPrior(nn.Module):
    """``eps = (z - mu) exp(-ln s)``, ``(mu, ln s) = conv(kept, theta)`` (zero at init: N(0, I))."""

    def __init__(self, kept: int, out: int, cond_dim: int):
        super().__init__()
        self.net = _zero_init(_conv3x3(kept + cond_dim, 2 * out))

    def forward(self, kept, z, cond):
        mu, log_s = self.net(_with_cond_channels(kept, cond)).chunk(2, dim=1)
        return (z - mu) * (-log_s).exp(), -log_s.sum((1, 2, 3))

    def inverse(self, kept, eps, cond):
        mu, log_s = self.net(_with_cond_channels(kept, cond)).chunk(2, dim=1)
        return eps * log_s.exp() + mu


class _TopPrior(nn.Module):
    """The last block's latent: a per-channel Gaussian whose mean and log-scale are linear in theta."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.net = _zero_init(nn.Linear(cond_dim, 2 * channels))

    def forward(self, z, cond):
        mu, log_s = (t[:, :, None, None] for t in self.net(cond).chunk(2, dim=1))
        return (z - mu) * (-log_s).exp(), -log_s.sum((1, 2, 3)) * (z.shape[2] * z.shape[3])

    def inverse(self, eps, cond):
        mu, log_s = (t[:, :, None, None] for t in self.net(cond).chunk(2, dim=1))
        return eps * log_s.exp() + mu


# --------------------------------------------------------------------------- the model
@register_model("glow")
class ConditionalGlow(Model):
    """Multi-scale conditional Glow (HIGlow) on (B, ``in_channels``, ``n_pix``, ``n_pix``) maps.

    ``levels`` blocks of ``steps`` flow steps (see the module docstring); the
    condition has ``cond_dim`` parameters (HIGlow: Omega_m and sigma_8, scaled
    to [0, 1] over the prior by the data set). ``n_pix`` must be a multiple of
    ``2**levels``; fewer levels than ``log2(n_pix)`` are fine (the last latent is
    then larger than 1 x 1). ``learned_prior``: a learned conditional Gaussian
    on each factored-out half (True) or a standard normal (False).

    ``forward(x, cond) -> (latents, logdet)``: one standard-normal latent per
    block, ``logdet = ln |det dT/dx|`` per map; ``inverse(latents, cond)`` takes
    that list or the flat ``(B, D)`` vector (:meth:`flatten_latents`).
    """

    log_prob_kind = "exact"
    can_sample = True

    def __init__(self, in_channels: int = 1, n_pix: int = 64, cond_dim: int = 2, levels: int = 6, steps: int = 20,
                 hidden: int = 16, learned_prior: bool = True):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.n_pix = check_int(n_pix, "n_pix", 2)
        self.cond_dim = check_int(cond_dim, "cond_dim", 1)
        self.levels = check_int(levels, "levels", 1)
        self.steps = check_int(steps, "steps", 1)
        self.hidden = check_int(hidden, "hidden", 1)
        if not isinstance(learned_prior, bool):
            raise ValueError(f"learned_prior: expected True or False, got {learned_prior!r}")
        self.learned_prior = learned_prior
        if n_pix % 2 ** levels:
            raise ValueError(f"n_pix: each of the {levels} levels halves the map, so n_pix must be a multiple of "
                             f"2**levels = {2 ** levels}; got {n_pix} (use fewer levels or another n_pix)")
        self.blocks = nn.ModuleList()
        self.priors = nn.ModuleList()
        self.latent_shapes: list[tuple[int, int, int]] = []
        channels, size = in_channels, n_pix
        for level in range(levels):
            channels, size = 4 * channels, size // 2
            self.blocks.append(nn.ModuleList(_FlowStep(channels, cond_dim, hidden) for _ in range(steps)))
            if level < levels - 1:
                kept = channels // 2
                out = channels - kept
                self.priors.append(_SplitPrior(kept, out, cond_dim) if learned_prior else nn.Identity())
                self.latent_shapes.append((out, size, size))
                channels = kept
            else:
                self.top = _TopPrior(channels, cond_dim)
                self.latent_shapes.append((channels, size, size))
        self.dim = in_channels * n_pix * n_pix

    @property
    def config(self) -> dict:
        return {"in_channels": self.in_channels, "n_pix": self.n_pix, "cond_dim": self.cond_dim,
                "levels": self.levels, "steps": self.steps, "hidden": self.hidden,
                "learned_prior": self.learned_prior}

    # ------------------------------------------------------------------ checks
    def _like(self) -> torch.Tensor:
        return self.top.net.weight

    def _check_maps(self, x, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a torch tensor of maps, got {type(x).__name__}")
        want = (self.in_channels, self.n_pix, self.n_pix)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"{name}: expected maps of shape (B, {want[0]}, {want[1]}, {want[2]}), "
                             f"got {tuple(x.shape)}")
        return x.to(self._like())

    def _condition(self, cond, n: int) -> torch.Tensor:
        """``cond`` as an (n, cond_dim) tensor: one row (or a vector) is broadcast to n rows."""
        if cond is None:
            raise ValueError(f"cond: this Glow is conditional; pass (n, {self.cond_dim}) parameters "
                             f"(or one row to share), got None")
        cond = torch.as_tensor(cond).to(self._like())
        if cond.ndim == 1:
            cond = cond[None]
        if cond.ndim != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"cond: expected ({n}, {self.cond_dim}) or (1, {self.cond_dim}) parameters, "
                             f"got shape {tuple(cond.shape)}")
        if cond.shape[0] == 1 and n != 1:
            cond = cond.expand(n, self.cond_dim)
        if cond.shape[0] != n:
            raise ValueError(f"cond: expected {n} rows (one per map) or 1 to share, got {cond.shape[0]}")
        if not torch.isfinite(cond).all():
            raise ValueError("cond: expected finite parameters, found NaN/inf")
        return cond

    @staticmethod
    def _check_unit_box(theta: torch.Tensor, name: str) -> None:
        """The condition of sampling and of the posterior: parameters scaled to [0, 1] over the prior."""
        lo, hi = float(theta.min()), float(theta.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{name}: expected parameters scaled to [0, 1] over the prior (the units the model was "
                             f"trained on), got values in [{lo:.4g}, {hi:.4g}]: outside the prior, or physical "
                             "units (scale them with cosmonb.data.normalise_params, or use recipes.glow.HIGlow)")

    # ------------------------------------------------------------------ latents
    def flatten_latents(self, latents) -> torch.Tensor:
        """The per-block latents as one (B, D) vector (the order :meth:`unflatten_latents` undoes)."""
        return torch.cat([z.reshape(z.shape[0], -1) for z in latents], dim=1)

    def unflatten_latents(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """A (B, D) vector back to the list of per-block latents."""
        if flat.ndim != 2 or flat.shape[1] != self.dim:
            raise ValueError(f"latents: expected a (B, {self.dim}) vector or a list of {self.levels} tensors, "
                             f"got shape {tuple(flat.shape)}")
        sizes = [c * h * w for c, h, w in self.latent_shapes]
        return [z.reshape(flat.shape[0], *shape) for z, shape in zip(flat.split(sizes, dim=1), self.latent_shapes)]

    def _check_latents(self, latents) -> list[torch.Tensor]:
        if isinstance(latents, torch.Tensor):
            return self.unflatten_latents(latents.to(self._like()))
        latents = list(latents)
        shapes = [tuple(z.shape[1:]) for z in latents]
        if shapes != self.latent_shapes or len({z.shape[0] for z in latents}) != 1:
            raise ValueError(f"latents: expected {self.levels} tensors of shapes (B, *s) for s in "
                             f"{self.latent_shapes}, got shapes {[tuple(z.shape) for z in latents]}")
        return [z.to(self._like()) for z in latents]

    # ------------------------------------------------------------------ the flow
    def forward(self, x, cond) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(latents, logdet)``: ``eps = T(x; cond)`` per block and ``ln |det dT/dx|`` per map."""
        h = self._check_maps(x)
        cond = self._condition(cond, h.shape[0])
        logdet = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
        latents = []
        for level, block in enumerate(self.blocks):
            h = squeeze2d(h)
            for step in block:
                h, ld = step(h, cond)
                logdet = logdet + ld
            if level < self.levels - 1:
                kept = h.shape[1] // 2
                h, z = h[:, :kept], h[:, kept:]
                if self.learned_prior:
                    z, ld = self.priors[level](h, z, cond)
                    logdet = logdet + ld
                latents.append(z)
            else:
                z, ld = self.top(h, cond)
                latents.append(z)
                logdet = logdet + ld
        return latents, logdet

    def inverse(self, latents, cond) -> torch.Tensor:
        """Maps ``x = T^{-1}(eps; cond)`` from the per-block latents (list) or their (B, D) flattening."""
        latents = self._check_latents(latents)
        cond = self._condition(cond, latents[0].shape[0])
        h = self.top.inverse(latents[-1], cond)
        for level in reversed(range(self.levels)):
            if level < self.levels - 1:
                z = latents[level]
                if self.learned_prior:
                    z = self.priors[level].inverse(h, z, cond)
                h = torch.cat([h, z], dim=1)
            for step in reversed(self.blocks[level]):
                h = step.inverse(h, cond)
            h = unsqueeze2d(h)
        return h

    def log_prob(self, x, cond=None) -> torch.Tensor:
        """``ln q(x | cond)`` in nats per map (a continuous density: no dequantisation)."""
        latents, logdet = self(x, cond)
        eps = self.flatten_latents(latents)
        return -0.5 * (eps ** 2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) + logdet

    def bits_per_dim(self, x, cond=None) -> torch.Tensor:
        """``-ln q(x | cond) / (D ln 2)`` per map, D = C H W (can be negative for a continuous density)."""
        return -self.log_prob(x, cond) / (self.dim * math.log(2.0))

    def loss(self, batch) -> torch.Tensor:
        """Mean negative log-likelihood per dimension (nats) of a batch ``(x, theta)``."""
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"batch: expected (x, theta) as CMDDataset gives it, got {type(batch).__name__}")
        x, theta = batch
        return -self.log_prob(x, theta).mean() / self.dim

    @torch.no_grad()
    def sample(self, n: int, cond=None, *, seed: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` maps drawn at ``cond`` (one row, shared, or n rows); latents ``eps ~ N(0, temperature^2 I)``."""
        n = check_int(n, "n", 1)
        temperature = check_float(temperature, "temperature", positive=True)
        cond = self._condition(cond, n)
        self._check_unit_box(cond, "cond")
        like = self._like()
        with seeded_rng(seed, like.device):
            eps = torch.randn(n, self.dim, dtype=like.dtype, device=like.device)
        return self.inverse(eps * temperature, cond)


# --------------------------------------------------------------------------- posteriors
@dataclass
class HIGlowPosterior:
    """The posterior of one map on prior samples (:func:`higlow_posterior`).

    ``theta`` (N, P) the samples, ``log_weights`` (N,) normalised
    (``logsumexp = 0``), ``mmse`` (P,) the weighted mean, ``std`` (P,) the
    weighted standard deviation, ``ess`` the effective sample size
    ``1 / sum w_i^2`` (few effective samples: draw more prior samples).
    """

    theta: np.ndarray
    log_weights: np.ndarray
    mmse: np.ndarray
    std: np.ndarray
    ess: float

    @property
    def weights(self) -> np.ndarray:
        return np.exp(self.log_weights)


@torch.no_grad()
def higlow_posterior(model: ConditionalGlow, x, theta_samples, *, chunk_size: int = 256) -> HIGlowPosterior:
    r"""HIGlow's posterior (their eq. 2) of one map on samples of a uniform prior.

    ``p(theta | x) \propto q(x | theta) p(theta)``; with ``theta_i`` drawn from the
    (uniform) prior, the weights are ``w_i = q(x | theta_i) / sum_j q(x | theta_j)``
    and the MMSE estimate is ``sum_i w_i theta_i``. ``theta_samples`` (N, P) are in
    the units the model was conditioned on (the recipes' parameters scaled to
    [0, 1] over the prior: convert with :func:`cosmonb.data.normalise_params`).
    The map ``x`` (C, H, W) or (1, C, H, W) is repeated ``chunk_size`` times per pass.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> glow = ConditionalGlow(n_pix=8, levels=2, steps=1, hidden=4)
        >>> post = higlow_posterior(glow, torch.randn(1, 8, 8), torch.rand(100, 2), chunk_size=32)
        >>> post.log_weights.shape, round(float(post.weights.sum()), 6), post.mmse.shape
        ((100,), 1.0, (2,))
    """
    if not isinstance(model, ConditionalGlow):
        raise ValueError(f"model: expected a ConditionalGlow, got {type(model).__name__}")
    chunk_size = check_int(chunk_size, "chunk_size", 1)
    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x: expected one map (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    x = model._check_maps(x)
    theta = torch.as_tensor(np.asarray(theta_samples, dtype=np.float64))
    if theta.ndim != 2 or theta.shape[1] != model.cond_dim or len(theta) == 0:
        raise ValueError(f"theta_samples: expected (N, {model.cond_dim}) prior samples, got shape "
                         f"{tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError("theta_samples: expected finite prior samples, found NaN/inf")
    model._check_unit_box(theta, "theta_samples")
    log_q = torch.cat([model.log_prob(x.expand(len(t), -1, -1, -1), t).double().cpu()
                       for t in theta.split(chunk_size)])
    log_w = log_q - torch.logsumexp(log_q, 0)
    w = log_w.exp()
    mean = (w[:, None] * theta).sum(0)
    std = (w[:, None] * (theta - mean) ** 2).sum(0).sqrt()
    return HIGlowPosterior(theta.numpy(), log_w.numpy(), mean.numpy(), std.numpy(), float(1.0 / (w ** 2).sum()))
