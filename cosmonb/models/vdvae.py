r"""A very deep VAE (Child 2020) for multifield maps, as Andrianomena & Hassan trained it on CAMELS CMD.

A hierarchy of Gaussian latents ``z_1, ..., z_L`` lives at every resolution of
the map, from the lowest (``z_1``, the code) to the full one. The generative
model and the approximate posterior share one top-down path:

    p(z) = prod_i p(z_i | z_<i),        q(z | x) = prod_i q(z_i | x, z_<i),

and the evidence lower bound (ELBO) is

    ln p(x) >= E_q[ln p(x | z)] - sum_i E_q[KL(q(z_i | x, z_<i) || p(z_i | z_<i))].

**Encoder** (bottom-up): an input convolution, then per stage ``s`` (resolution
``n_pix / 2^s``) ``enc_blocks[s]`` bottlenecked residual blocks (GELU; a 1x1
convolution down to ``bottleneck * width``, two 3x3, a 1x1 back, added to the
input); the activation at every resolution is kept; average pooling halves
the resolution between stages.

**Decoder** (top-down), from a learned state at the lowest resolution; each
block ``i``, given the state ``h`` and the encoder activation ``a`` at its
resolution:

    (mu_p, ln s_p, h_p) = prior(h),          (mu_q, ln s_q) = posterior([h, a]),
    h <- h + h_p,   z ~ N(mu_q, s_q^2),     h <- out(h + proj(z)),

with the analytic KL of two diagonal Gaussians per block,

    KL = sum [ln(s_p / s_q) + (s_q^2 + (mu_q - mu_p)^2) / (2 s_p^2) - 1/2]  >= 0.

Sampling runs the same path with ``z ~ N(mu_p, (T s_p)^2)`` (temperature
``T``). Nearest-neighbour upsampling doubles the resolution between stages.
All 3x3 convolutions pad circularly (the maps are periodic).

**Likelihood**: standardised log-fields are continuous, so ``p(x | z)`` is a
per-pixel Gaussian ``N(x; mu(z), s(z)^2)`` with a learned log-scale per pixel
(``likelihood_scale="pixel"``, a second output map) or per channel
(``"channel"``), floored softly at ``ln s = MIN_LOG_SCALE``; not the 8-bit
discretised logistic mixture of Child's images.

**Training loss**: the negative ELBO per dimension ``D = C n_pix^2`` with a
KL warm-up weight,

    loss = -(ln p(x | z) - beta KL) / D,    beta = min(1, (t + 1) / kl_warmup_steps),

where ``t`` counts the training batches seen (a buffer, so a resumed run
continues the warm-up exactly). In eval mode ``beta = 1`` and the noise is
seeded (``seed=0``), so a validation loss is reproducible and leaves the
global random stream untouched. ``log_prob`` is the ELBO per map (a bound:
``log_prob_kind = "bound"``). ``encode`` gives the posterior mean of the top
(lowest-resolution) latent, flattened: the paper's latent code (length 256
for its 8 x 8 x 4 top latent). The model is unconditional: a batch is the maps
``x`` or ``(x, theta)`` with ``theta`` ignored.

The paper's guard against exploding updates, skipping an optimiser step when
the gradient norm exceeds a threshold, is the trainer's
``TrainConfig(skip_grad_norm=...)``.

Example:
    >>> model = VDVAE(in_channels=2, n_pix=16, widths=[8, 8], enc_blocks=[1, 1], dec_blocks=[1, 2],
    ...               z_channels=[2, 1])
    >>> x = torch.randn(3, 2, 16, 16)
    >>> recon, kl = model.elbo(x, seed=0)
    >>> tuple(recon.shape), tuple(kl.shape), model.code_length, tuple(model.encode(x).shape)
    ((3,), (3, 3), 64, (3, 64))
    >>> tuple(model.sample(2, seed=0).shape), bool((kl >= 0).all())
    ((2, 2, 16, 16), True)
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_float, check_int
from .base import Model, register_model, seeded_rng

__all__ = ["VDVAE", "VDVAEOutput", "BottleneckBlock", "TopDownBlock", "gaussian_kl", "gaussian_log_likelihood",
           "soft_floor", "MIN_LOG_SCALE", "LIKELIHOOD_SCALES"]

#: Soft floor of the likelihood's log-scale (s >= ~1e-3 of a standardised field).
MIN_LOG_SCALE = math.log(1e-3)
#: Values of ``VDVAE(likelihood_scale=...)``.
LIKELIHOOD_SCALES = ("pixel", "channel")


# --------------------------------------------------------------------------- math
def gaussian_kl(mu_q: torch.Tensor, log_sigma_q: torch.Tensor, mu_p: torch.Tensor,
                log_sigma_p: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mu_q, s_q^2) || N(mu_p, s_p^2)) with ``log_sigma = ln s``.

        KL = ln(s_p / s_q) + (s_q^2 + (mu_q - mu_p)^2) / (2 s_p^2) - 1/2

    Example:
        >>> m, s = torch.tensor([0.5]), torch.tensor([-0.2])
        >>> float(gaussian_kl(m, s, m, s))
        0.0
    """
    return (log_sigma_p - log_sigma_q
            + 0.5 * (torch.exp(2 * (log_sigma_q - log_sigma_p)) + ((mu_q - mu_p) * torch.exp(-log_sigma_p)) ** 2)
            - 0.5)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """``sum ln N(x; mean, exp(log_scale)^2)`` over every axis but the first: one number per map.

    Example:
        >>> x = torch.zeros(2, 1, 2, 2)
        >>> torch.allclose(gaussian_log_likelihood(x, x, x), torch.full((2,), -2 * math.log(2 * math.pi)))
        True
    """
    z = (x - mean) * torch.exp(-log_scale)
    return (-0.5 * z ** 2 - log_scale - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def soft_floor(raw: torch.Tensor, floor: float = MIN_LOG_SCALE) -> torch.Tensor:
    """``floor + softplus(raw - floor)``: about ``raw`` above the floor, never below it."""
    return floor + F.softplus(raw - floor)


# --------------------------------------------------------------------------- blocks
def _conv(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, padding_mode="circular" if kernel > 1 else "zeros")


class BottleneckBlock(nn.Module):
    """GELU then 1x1 (to ``mid``), 3x3, 3x3, 1x1 (to ``c_out``) convolutions; ``+ x`` if ``residual``.

    ``final_scale`` multiplies the last convolution's initial weights (0 zeroes
    it, so the block starts as the identity, or as zero if not residual).
    """

    def __init__(self, c_in: int, mid: int, c_out: int, *, residual: bool, final_scale: float = 1.0):
        super().__init__()
        if residual and c_in != c_out:
            raise ValueError(f"c_out: a residual block keeps the width ({c_in}), got {c_out}")
        self.residual = residual
        self.convs = nn.ModuleList([_conv(c_in, mid, 1), _conv(mid, mid, 3), _conv(mid, mid, 3),
                                    _conv(mid, c_out, 1)])
        with torch.no_grad():
            self.convs[-1].weight.mul_(final_scale)
            if final_scale == 0:
                self.convs[-1].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = conv(F.gelu(h))
        return x + h if self.residual else h


class TopDownBlock(nn.Module):
    """One decoder block: prior p(z | h), posterior q(z | x, h), latent projection, output residual block.

    The prior's last convolution starts at zero, so at initialisation
    ``p(z) = N(0, 1)`` and the prior adds nothing to the state.
    """

    def __init__(self, width: int, mid: int, z_channels: int, scale: float):
        super().__init__()
        self.z_channels = z_channels
        self.posterior = BottleneckBlock(2 * width, mid, 2 * z_channels, residual=False)
        self.prior = BottleneckBlock(width, mid, 2 * z_channels + width, residual=False, final_scale=0.0)
        self.z_proj = nn.Conv2d(z_channels, width, 1)
        with torch.no_grad():
            self.z_proj.weight.mul_(scale)
        self.out = BottleneckBlock(width, mid, width, residual=True, final_scale=scale)

    def prior_params(self, h: torch.Tensor):
        """``(mu_p, ln s_p, h_p)`` of the prior given the top-down state ``h``."""
        feats = self.prior(h)
        k = self.z_channels
        return feats[:, :k], feats[:, k:2 * k], feats[:, 2 * k:]

    def posterior_params(self, h: torch.Tensor, act: torch.Tensor):
        """``(mu_q, ln s_q)`` given the state ``h`` and the encoder activation ``act`` at this resolution."""
        return self.posterior(torch.cat([h, act], 1)).chunk(2, dim=1)

    def forward(self, h: torch.Tensor, act: torch.Tensor | None, *, use_mean: bool = False,
                temperature: float = 1.0, latents: list | None = None):
        """``(new state, KL per map)``: posterior path if ``act`` is given (KL None otherwise).
        ``latents``, a list, receives this block's ``z``."""
        mu_p, ls_p, h_p = self.prior_params(h)
        if act is not None:
            mu_q, ls_q = self.posterior_params(h, act)
            z = mu_q if use_mean else mu_q + torch.exp(ls_q) * torch.randn_like(mu_q)
            kl = gaussian_kl(mu_q, ls_q, mu_p, ls_p).flatten(1).sum(1)
        else:
            z = mu_p if (use_mean or temperature == 0) else mu_p + temperature * torch.exp(ls_p) * torch.randn_like(mu_p)
            kl = None
        if latents is not None:
            latents.append(z)
        h = self.out(h + h_p + self.z_proj(z))
        return h, kl


class VDVAEOutput(NamedTuple):
    """What :meth:`VDVAE.forward` returns: the likelihood's ``mean`` and ``log_scale`` (N, C, H, W) and
    ``kl`` (N, n_blocks) per top-down block, lowest resolution first."""

    mean: torch.Tensor
    log_scale: torch.Tensor
    kl: torch.Tensor


# --------------------------------------------------------------------------- the model
def _int_list(values, name: str, length: int | None, minimum: int) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not len(values):
        raise ValueError(f"{name}: expected a non-empty list of integers (one per stage), got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name}: expected {length} entries (one per stage, as widths), got {len(values)}")
    return [check_int(v, f"{name}[{i}]", minimum) for i, v in enumerate(values)]


@register_model("vdvae")
class VDVAE(Model):
    """A very deep VAE of ``in_channels`` x ``n_pix`` x ``n_pix`` maps (see the module docstring).

    ``widths[s]``, ``enc_blocks[s]``, ``dec_blocks[s]`` and ``z_channels[s]``
    describe stage ``s`` at resolution ``n_pix / 2^s`` (so ``n_pix`` must be
    divisible by ``2^(stages - 1)``); ``bottleneck`` is the ratio of a residual
    block's inner width to its width; ``kl_warmup_steps`` the training batches
    over which the KL weight rises to 1 (0: no warm-up);
    ``likelihood_scale`` "pixel" or "channel".
    """

    log_prob_kind = "bound"
    can_sample = True

    def __init__(self, in_channels: int = 3, n_pix: int = 64, widths: Sequence[int] = (32, 32, 32, 32),
                 enc_blocks: Sequence[int] = (2, 2, 2, 2), dec_blocks: Sequence[int] = (2, 2, 2, 2),
                 z_channels: Sequence[int] = (4, 4, 4, 4), bottleneck: float = 0.25, kl_warmup_steps: int = 0,
                 likelihood_scale: str = "pixel"):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.n_pix = check_int(n_pix, "n_pix", 1)
        self.widths = _int_list(widths, "widths", None, 1)
        stages = len(self.widths)
        self.enc_blocks = _int_list(enc_blocks, "enc_blocks", stages, 1)
        self.dec_blocks = _int_list(dec_blocks, "dec_blocks", stages, 1)
        self.z_channels = _int_list(z_channels, "z_channels", stages, 1)
        if self.n_pix % 2 ** (stages - 1):
            raise ValueError(f"n_pix: {stages} stages halve the maps {stages - 1} times, so n_pix must be "
                             f"divisible by 2^{stages - 1} = {2 ** (stages - 1)}, got {self.n_pix}")
        self.bottleneck = check_float(bottleneck, "bottleneck", positive=True)
        if self.bottleneck > 1:
            raise ValueError(f"bottleneck: expected a ratio in (0, 1], got {self.bottleneck}")
        self.kl_warmup_steps = check_int(kl_warmup_steps, "kl_warmup_steps", 0)
        if likelihood_scale not in LIKELIHOOD_SCALES:
            raise ValueError(f"likelihood_scale: expected one of {LIKELIHOOD_SCALES}, got {likelihood_scale!r}")
        self.likelihood_scale = likelihood_scale

        mids = [max(1, round(w * self.bottleneck)) for w in self.widths]
        enc_scale = math.sqrt(1.0 / sum(self.enc_blocks))
        dec_scale = math.sqrt(1.0 / sum(self.dec_blocks))
        # encoder: stage s works at n_pix / 2^s
        self.stem = _conv(self.in_channels, self.widths[0], 3)
        self.enc_stages = nn.ModuleList([
            nn.Sequential(*[BottleneckBlock(w, m, w, residual=True, final_scale=enc_scale) for _ in range(n)])
            for w, m, n in zip(self.widths, mids, self.enc_blocks)])
        self.down = nn.ModuleList([
            nn.Identity() if a == b else nn.Conv2d(a, b, 1) for a, b in zip(self.widths[:-1], self.widths[1:])])
        # decoder: top-down, lowest resolution first
        low = self.n_pix // 2 ** (stages - 1)
        self.top_state = nn.Parameter(torch.zeros(1, self.widths[-1], low, low))
        self.dec_stages = nn.ModuleList([
            nn.ModuleList([TopDownBlock(w, m, k, dec_scale) for _ in range(n)])
            for w, m, k, n in zip(self.widths, mids, self.z_channels, self.dec_blocks)])
        self.up = nn.ModuleList([
            nn.Identity() if a == b else nn.Conv2d(b, a, 1) for a, b in zip(self.widths[:-1], self.widths[1:])])
        per_pixel = likelihood_scale == "pixel"
        self.head = nn.Conv2d(self.widths[0], self.in_channels * (2 if per_pixel else 1), 1)
        self.channel_log_scale = None if per_pixel else nn.Parameter(torch.zeros(1, self.in_channels, 1, 1))
        #: training batches seen by ``loss`` (drives the KL warm-up; saved with the weights)
        self.register_buffer("train_batches", torch.zeros((), dtype=torch.long))

    @property
    def config(self) -> dict:
        return {"in_channels": self.in_channels, "n_pix": self.n_pix, "widths": list(self.widths),
                "enc_blocks": list(self.enc_blocks), "dec_blocks": list(self.dec_blocks),
                "z_channels": list(self.z_channels), "bottleneck": self.bottleneck,
                "kl_warmup_steps": self.kl_warmup_steps, "likelihood_scale": self.likelihood_scale}

    # ------------------------------------------------------------------ sizes
    @property
    def stages(self) -> int:
        return len(self.widths)

    @property
    def n_blocks(self) -> int:
        """Number of top-down blocks (latent layers)."""
        return sum(self.dec_blocks)

    def resolution(self, stage: int) -> int:
        """Side length of the maps at ``stage`` (0: full resolution)."""
        return self.n_pix // 2 ** stage

    @property
    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """``(channels, side, side)`` of every latent, in top-down order (lowest resolution first)."""
        return [(self.z_channels[s], self.resolution(s), self.resolution(s))
                for s in reversed(range(self.stages)) for _ in range(self.dec_blocks[s])]

    @property
    def code_length(self) -> int:
        """Length of :meth:`encode`'s ``"top"`` code: the size of the top latent."""
        c, h, w = self.latent_shapes[0]
        return c * h * w

    @property
    def hierarchy_code_length(self) -> int:
        """Length of :meth:`encode`'s ``"hierarchy"`` code: 2 numbers per channel of every latent."""
        return 2 * sum(c for c, _, _ in self.latent_shapes)

    @property
    def kl_weight(self) -> float:
        """beta = min(1, (t + 1) / kl_warmup_steps) at the current batch count t (1 without warm-up)."""
        if self.kl_warmup_steps == 0:
            return 1.0
        return min(1.0, (int(self.train_batches) + 1) / self.kl_warmup_steps)

    # ------------------------------------------------------------------ checks
    def check_maps(self, x, name: str = "x") -> torch.Tensor:
        """``x`` as a (N, in_channels, n_pix, n_pix) float tensor of finite values, else a ValueError."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a torch tensor of maps (N, {self.in_channels}, {self.n_pix}, "
                             f"{self.n_pix}), got {type(x).__name__}")
        want = (self.in_channels, self.n_pix, self.n_pix)
        if x.ndim != 4 or tuple(x.shape[1:]) != want or x.shape[0] < 1:
            why = ""
            if x.ndim == 4 and x.shape[1] != self.in_channels:
                why = f": {x.shape[1]} channel(s), but the model was built for {self.in_channels}"
            elif x.ndim == 4 and tuple(x.shape[2:]) != want[1:]:
                why = f": {x.shape[2]} x {x.shape[3]} pixels, but the model was built for {want[1]} x {want[2]}"
            raise ValueError(f"{name}: expected maps of shape (N, {want[0]}, {want[1]}, {want[2]}), "
                             f"got {tuple(x.shape)}{why}")
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected floating-point maps, got {x.dtype}")
        finite = torch.isfinite(x).flatten(1).all(1)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite).flatten().tolist()
            raise ValueError(f"{name}: expected finite values, found NaN/inf in map(s) {bad[:10]}"
                             f"{' ...' if len(bad) > 10 else ''} of the batch of {len(x)}")
        return x

    @staticmethod
    def _unconditional(cond) -> None:
        if cond is not None:
            raise ValueError("cond: the VDVAE is unconditional; pass cond=None")

    def _maps_of(self, batch) -> torch.Tensor:
        if isinstance(batch, (tuple, list)):
            if not 1 <= len(batch) <= 2:
                raise ValueError(f"batch: expected maps x or (x, theta), got a {type(batch).__name__} of "
                                 f"{len(batch)} items")
            batch = batch[0]
        return batch  # checked by encoder_activations

    # ------------------------------------------------------------------ passes
    def encoder_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's activation at every stage: entry ``s`` is (N, widths[s], n_pix/2^s, n_pix/2^s)."""
        h = self.stem(self.check_maps(x))
        acts = []
        for s, blocks in enumerate(self.enc_stages):
            h = blocks(h)
            acts.append(h)
            if s + 1 < self.stages:
                h = self.down[s](F.avg_pool2d(h, 2))
        return acts

    def _top_down(self, n: int, acts: list[torch.Tensor] | None, *, use_mean: bool = False,
                  temperature: float = 1.0, latents: list | None = None):
        h = self.top_state.expand(n, -1, -1, -1)
        kls = []
        for s in reversed(range(self.stages)):
            for block in self.dec_stages[s]:
                h, kl = block(h, None if acts is None else acts[s], use_mean=use_mean, temperature=temperature,
                              latents=latents)
                kls.append(kl)
            if s > 0:
                h = self.up[s - 1](F.interpolate(h, scale_factor=2, mode="nearest"))
        return h, kls

    def _likelihood(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(F.gelu(h))
        if self.channel_log_scale is None:
            mean, raw = out.chunk(2, dim=1)
        else:
            mean, raw = out, self.channel_log_scale.expand_as(out)
        return mean, soft_floor(raw)

    def forward(self, x: torch.Tensor, *, seed: int | None = None, use_mean: bool = False) -> VDVAEOutput:
        """The posterior pass: latents drawn from q(z | x) (``seed`` for reproducible draws; ``use_mean``
        takes the posterior means), returning the likelihood's parameters and the KL per block."""
        with seeded_rng(seed, getattr(x, "device", None)):
            acts = self.encoder_activations(x)
            h, kls = self._top_down(len(x), acts, use_mean=use_mean)
        mean, log_scale = self._likelihood(h)
        return VDVAEOutput(mean, log_scale, torch.stack(kls, 1))

    def elbo(self, x: torch.Tensor, *, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(recon (N,), kl (N, n_blocks))``: ln p(x | z) with z ~ q(z | x) (one draw), and the KL per block.

        ELBO = recon - kl.sum(1), in nats per map; ``seed`` makes the draw
        reproducible without touching the global random stream.
        """
        out = self(x, seed=seed)
        return gaussian_log_likelihood(x, out.mean, out.log_scale), out.kl

    def log_prob(self, x, cond=None, *, seed: int | None = 0) -> torch.Tensor:
        """The ELBO per map (a lower bound on ln p(x)), one seeded draw (``seed=None``: fresh noise)."""
        self._unconditional(cond)
        recon, kl = self.elbo(x, seed=seed)
        return recon - kl.sum(1)

    def loss(self, batch) -> torch.Tensor:
        """Negative ELBO per dimension, the KL weighted by beta (training) or 1 (eval mode, seeded noise)."""
        x = self._maps_of(batch)
        dims = self.in_channels * self.n_pix ** 2
        if self.training:
            beta = self.kl_weight
            recon, kl = self.elbo(x)
            if torch.is_grad_enabled():
                self.train_batches += 1
        else:
            beta = 1.0
            recon, kl = self.elbo(x, seed=0)
        return -(recon - beta * kl.sum(1)).mean() / dims

    @torch.no_grad()
    def encode(self, x: torch.Tensor, code="top"):
        """The latent code of each map.

        * ``"top"`` (the paper's code): the posterior mean of the top
          (lowest-resolution) latent, flattened, (N, code_length).
        * ``"hierarchy"``: every latent at its posterior mean, top to bottom
          (``z_i = mu_q(x, z_<i)``), summarised per channel by its spatial
          mean and standard deviation, (N, hierarchy_code_length). A VDVAE
          spreads what it knows over all resolutions; this code reads them all.

        A tuple of names gives a tuple of codes from one pass.

        >>> vae = VDVAE(n_pix=16, widths=(8, 8), enc_blocks=(1, 1), dec_blocks=(1, 1), z_channels=(2, 2))
        >>> [tuple(c.shape) for c in vae.encode(torch.zeros(2, 3, 16, 16), ("top", "hierarchy"))]
        [(2, 128), (2, 8)]
        """
        names = (code,) if isinstance(code, str) else tuple(code)
        if not names or any(c not in ("top", "hierarchy") for c in names):
            raise ValueError(f"code: expected 'top' or 'hierarchy' (or a tuple of them), got {code!r}")
        acts = self.encoder_activations(x)
        if "hierarchy" in names:
            latents: list[torch.Tensor] = []
            self._top_down(len(x), acts, use_mean=True, latents=latents)
            codes = {"top": latents[0].flatten(1),
                     "hierarchy": torch.cat([torch.cat([z.mean((2, 3)), z.std((2, 3))], 1) for z in latents], 1)}
        else:
            h = self.top_state.expand(len(x), -1, -1, -1)
            codes = {"top": self.dec_stages[-1][0].posterior_params(h, acts[-1])[0].flatten(1)}
        return codes[code] if isinstance(code, str) else tuple(codes[c] for c in names)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean with every latent at its posterior mean (deterministic), like ``x``."""
        return self(x, use_mean=True).mean

    @torch.no_grad()
    def sample(self, n: int, cond=None, *, seed: int | None = None, temperature: float = 1.0,
               noise: bool = False) -> torch.Tensor:
        """``n`` maps (N, C, n_pix, n_pix): latents from the prior at ``temperature``, then the likelihood's
        mean (the smooth map; ``noise=True`` adds the likelihood's per-pixel noise, a draw of p(x | z))."""
        self._unconditional(cond)
        n = check_int(n, "n", 1)
        temperature = check_float(temperature, "temperature", positive=False)
        device = self.top_state.device
        with seeded_rng(seed, device):
            h, _ = self._top_down(n, None, temperature=temperature)
            mean, log_scale = self._likelihood(h)
            if noise:
                mean = mean + torch.exp(log_scale) * torch.randn_like(mean)
        return mean
