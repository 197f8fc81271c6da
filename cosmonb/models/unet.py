r"""The conditional U-Net denoiser of notebook 05: eps_theta(x_t, t, theta) on periodic maps.

The network of Ho, Jain & Abbeel (2020) as Mudur, Cuesta-Lazaro & Finkbeiner
(2023) used it on CAMELS dark-matter maps:

* the step ``t`` enters through a sinusoidal embedding,
  ``e_{2i} = sin(t w_i)``, ``e_{2i+1} = cos(t w_i)``, ``w_i = 10000^(-i / (d/2))``,
  then an MLP to the embedding width ``4 * channels``;
* the condition ``theta`` (Omega_m and sigma_8 scaled to [0, 1] over the prior)
  passes through its own MLP to the same width and is **added** to the time
  embedding, so every ResNet block sees ``emb = MLP_t(e(t)) + MLP_theta(theta)``;
* a ResNet block is ``h = conv(SiLU(GN(x))); h += Linear(SiLU(emb)); h = conv(dropout(SiLU(GN(h))));
  return h + skip(x)`` with GroupNorm ``GN`` and 3x3 convolutions;
* ``len(channel_mults)`` levels, each with ``n_res_blocks`` ResNet blocks at width
  ``channels * mult`` (self-attention after each block at the resolutions listed in
  ``attention_resolutions``), then a stride-2 convolution down; a middle
  block-attention-block; the way up mirrors it with ``n_res_blocks + 1`` blocks per
  level fed by skip connections, and nearest-neighbour upsampling + conv.

Every convolution pads **circularly** (``padding_mode="circular"``): the maps are
periodic boxes, so the network sees no edges, and it commutes with periodic
shifts by multiples of its total downsampling factor ``2^(levels - 1)``
(:attr:`UNet.shift_period`): ``net(roll(x, s)) = roll(net(x), s)``.

Example:
    >>> import torch
    >>> net = UNet(in_channels=1, channels=8, channel_mults=(1, 2), attention_resolutions=(4,), n_pix=8)
    >>> x, t, theta = torch.randn(3, 1, 8, 8), torch.tensor([0, 10, 999]), torch.rand(3, 2)
    >>> tuple(net(x, t, theta).shape), net.shift_period
    ((3, 1, 8, 8), 2)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_float, check_int

__all__ = ["UNet", "ResBlock", "SelfAttention", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of the steps ``t`` (B,): sines then cosines of ``t w_i``.

    Example:
        >>> timestep_embedding(torch.tensor([0, 5]), 4).shape
        torch.Size([2, 4])
    """
    if dim % 2:
        raise ValueError(f"dim: expected an even embedding size, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, padding_mode="circular")


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, plus the embedding, GroupNorm-SiLU-dropout-conv, plus a (1x1) skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = _conv3x3(c_in, c_out)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(c_out, c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Single-head self-attention over all pixels, with a residual: ``x + proj(softmax(q k^T / sqrt(c)) v)``."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class _Level(nn.Module):
    """ResNet blocks of one level, each optionally followed by self-attention."""

    def __init__(self, blocks: Sequence[ResBlock], attention: bool, groups: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attn = nn.ModuleList([SelfAttention(b.conv2.out_channels, groups) if attention else nn.Identity()
                                   for b in blocks])


class UNet(nn.Module):
    """The conditional U-Net ``eps_theta(x_t, t, theta)`` (see the module docstring).

    Args:
        in_channels: channels of the maps (1 for log10 Mcdm); the output has as many.
        channels: width of the first level (also the size of the sinusoidal embedding).
        channel_mults: width multiplier per level; ``len`` is the number of levels
            (the paper: 4 levels).
        attention_resolutions: map sizes (pixels per side) at which self-attention
            follows each ResNet block; they must be sizes the network passes through
            (``n_pix / 2^level``). The middle block always has attention.
        n_res_blocks: ResNet blocks per level on the way down (the paper: 2).
        cond_dim: size of ``theta`` (0: unconditional).
        n_pix: side of the maps (a multiple of ``2^(levels - 1)``).
        dropout: dropout rate inside the ResNet blocks.
        norm_groups: GroupNorm groups (every width must be a multiple of it).
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, channel_mults: Sequence[int] = (1, 2, 2, 2),
                 attention_resolutions: Sequence[int] = (8,), n_res_blocks: int = 2, cond_dim: int = 2,
                 n_pix: int = 64, dropout: float = 0.0, norm_groups: int = 8):
        super().__init__()
        in_channels = check_int(in_channels, "in_channels", 1)
        channels = check_int(channels, "channels", 2)
        if channels % 2:
            raise ValueError(f"channels: expected an even width (it is also the sinusoidal embedding size), "
                             f"got {channels}")
        mults = [check_int(m, f"channel_mults[{i}]", 1) for i, m in enumerate(channel_mults)]
        if not mults:
            raise ValueError("channel_mults: expected at least one level, got an empty sequence")
        n_res_blocks = check_int(n_res_blocks, "n_res_blocks", 1)
        cond_dim = check_int(cond_dim, "cond_dim", 0)
        n_pix = check_int(n_pix, "n_pix", 1)
        dropout = check_float(dropout, "dropout", positive=False)
        if dropout >= 1:
            raise ValueError(f"dropout: expected a rate in [0, 1), got {dropout}")
        norm_groups = check_int(norm_groups, "norm_groups", 1)
        period = 2 ** (len(mults) - 1)
        if n_pix % period:
            raise ValueError(f"n_pix: {len(mults)} levels halve the map {len(mults) - 1} times, so n_pix must be a "
                             f"multiple of {period}; got {n_pix}")
        sizes = [n_pix // 2 ** i for i in range(len(mults))]
        attn = [check_int(r, f"attention_resolutions[{i}]", 1) for i, r in enumerate(attention_resolutions)]
        unknown = sorted(set(attn) - set(sizes))
        if unknown:
            raise ValueError(f"attention_resolutions: {unknown} are not map sizes of this network; "
                             f"expected values among {sizes} (n_pix={n_pix}, {len(mults)} levels)")
        widths = [channels * m for m in mults]
        bad = [w for w in widths if w % norm_groups]
        if bad:
            raise ValueError(f"norm_groups: every level width must be a multiple of it; widths {widths} "
                             f"and norm_groups={norm_groups}")
        self.in_channels, self.channels, self.channel_mults = in_channels, channels, mults
        self.attention_resolutions, self.n_res_blocks, self.cond_dim = sorted(set(attn)), n_res_blocks, cond_dim
        self.n_pix, self.dropout, self.norm_groups = n_pix, dropout, norm_groups
        self.shift_period = period

        emb = 4 * channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cond_mlp = (nn.Sequential(nn.Linear(cond_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
                         if cond_dim else None)
        g = norm_groups
        self.stem = _conv3x3(in_channels, channels)
        skips, c = [channels], channels
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, width in enumerate(widths):
            blocks = []
            for _ in range(n_res_blocks):
                blocks.append(ResBlock(c, width, emb, g, dropout))
                c = width
                skips.append(c)
            self.down.append(_Level(blocks, sizes[level] in self.attention_resolutions, g))
            if level < len(widths) - 1:
                self.downsample.append(_conv3x3(c, c, stride=2))
                skips.append(c)
        self.mid1, self.mid_attn, self.mid2 = ResBlock(c, c, emb, g, dropout), SelfAttention(c, g), \
            ResBlock(c, c, emb, g, dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = []
            for _ in range(n_res_blocks + 1):
                blocks.append(ResBlock(c + skips.pop(), widths[level], emb, g, dropout))
                c = widths[level]
            self.up.append(_Level(blocks, sizes[level] in self.attention_resolutions, g))
            if level > 0:
                self.upsample.append(_conv3x3(c, c))
        self.out_norm = nn.GroupNorm(g, c)
        self.out_conv = _conv3x3(c, in_channels)

    def embedding(self, t: torch.Tensor, theta: torch.Tensor | None) -> torch.Tensor:
        """``MLP_t(sinusoid(t)) + MLP_theta(theta)``: what every ResNet block receives."""
        emb = self.time_mlp(timestep_embedding(t, self.channels).to(self.stem.weight.dtype))
        if self.cond_mlp is not None:
            emb = emb + self.cond_mlp(theta)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted noise, shaped like ``x`` ``(B, in_channels, n_pix, n_pix)``; ``t`` (B,) step indices."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-1] % self.shift_period \
                or x.shape[-2] % self.shift_period:
            raise ValueError(f"x: expected maps (B, {self.in_channels}, H, W) with H and W multiples of "
                             f"{self.shift_period}, got shape {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t: expected one step per map, shape ({x.shape[0]},), got {tuple(t.shape)}")
        if self.cond_dim:
            if theta is None or theta.shape != (x.shape[0], self.cond_dim):
                got = None if theta is None else tuple(theta.shape)
                raise ValueError(f"theta: expected shape ({x.shape[0]}, {self.cond_dim}), got {got}")
        emb = self.embedding(t, theta)
        h = self.stem(x)
        hs = [h]
        for level, stage in enumerate(self.down):
            for block, attn in zip(stage.blocks, stage.attn):
                h = attn(block(h, emb))
                hs.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, stage in enumerate(self.up):
            for block, attn in zip(stage.blocks, stage.attn):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))
