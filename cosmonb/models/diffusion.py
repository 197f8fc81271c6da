r"""A conditional denoising diffusion model (DDPM) of maps: schedule, loss, samplers and the bound's terms.

Mudur, Cuesta-Lazaro & Finkbeiner (2023) emulate log10 dark-matter maps of
CAMELS with a DDPM (Ho, Jain & Abbeel 2020) conditioned on (Omega_m, sigma_8)
and infer the parameters from the terms of its variational bound.

**Forward process.** With a variance schedule ``beta_1 .. beta_T``,
``alpha_t = 1 - beta_t`` and ``abar_t = prod_{s<=t} alpha_s``,

    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.

Arrays are indexed from 0: index ``i = t - 1`` (``i = 0`` is the first, least
noisy step). Schedules: ``"cosine"`` (Nichol & Dhariwal 2021, non-linear,
``abar(t) = f(t)/f(0)``, ``f(t) = cos^2((t/T + 0.008)/1.008 pi/2)``, beta clipped at
0.999; the default) and ``"linear"`` (Ho et al.: 1e-4 to 0.02, scaled by 1000/T).

**Loss.** ``t`` uniform, ``eps ~ N(0, I)``, the network
(:class:`~cosmonb.models.unet.UNet`) predicts the noise (``prediction="eps"``, the
paper's choice): ``L = E || eps - eps_theta(x_t, t, theta) ||^2`` (mean over pixels).
With ``prediction="v"`` (Salimans & Ho 2022) it predicts
``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` and ``L = E || v - v_theta ||^2``; then
``eps_theta = sqrt(abar_t) v_theta + sqrt(1 - abar_t) x_t`` and
``x0_theta = sqrt(abar_t) x_t - sqrt(1 - abar_t) v_theta``. Why it matters: with eps, the
clean map ``x0_theta = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)`` multiplies the
network's error by ``1/sqrt(abar_t)``, about 2e4 at the last step of the cosine schedule,
so the first sampling steps need an eps error below ~1e-9 to be harmless; with v the
error of ``x0_theta`` is at most the error of ``v_theta``. ``|v - v_theta|^2 =
|eps - eps_theta|^2 / abar_t``: the v loss weights the noisy steps more. Everything
else (the bound, the samplers) uses ``eps_theta`` and ``x0_theta`` as above.

**Reverse process and the bound.** ``p_theta(x_{t-1} | x_t) = N(mu_theta, beta~_t I)``
with the posterior variance ``beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t`` and
``mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)``. The terms of
``-ln p(x_0) <= L_T + sum_{t>=2} L_{t-1} + L_0`` (in nats, summed over the ``D`` pixels):

* ``L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))``; both Gaussians share
  the variance ``beta~_t``, so it is ``|mu~ - mu_theta|^2 / (2 beta~_t)``
  ``= beta_t / (2 alpha_t (1 - abar_{t-1})) |eps - eps_theta|^2`` (index ``i = t - 1 >= 1``);
* ``L_0 = -ln p_theta(x_0 | x_1)``, the decoder (index 0). The data are continuous
  (standardised log10 maps), so the decoder is a Gaussian
  ``N(x_0; mu_theta(x_1, 1), beta_1 I)``: ``mu_theta(x_1, 1)`` is the predicted clean map
  and ``beta_1``, the variance of the one forward step ``q(x_1 | x_0)``, is the
  reverse variance Ho et al. use (the posterior variance is 0 at t = 1). Then
  ``L_0 = |eps - eps_theta|^2 / (2 alpha_1) + D/2 ln(2 pi beta_1)``.

``L_T = KL(q(x_T | x_0) || N(0, I))`` does not depend on ``theta`` and is left out.
:meth:`DDPM.vlb_terms` estimates chosen terms for **one map and many theta at once**,
with the same noise for every theta (common random numbers), so that their
differences measure the parameters, not the noise: the paper's posteriors come
from ``L_0`` on a 50 x 50 grid. ``log_prob(x, cond)`` is ``-L_0`` (one fixed noise
draw, so it is deterministic): ``log_prob_kind = "per_timestep"``.

**Sampling.** Ancestral (all T steps, ``x_{t-1} = mu_theta + sqrt(beta~_t) z``) or
DDIM (Song, Meng & Ermon 2021) on an evenly spaced subset of ``steps`` steps,
``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - s^2) eps_theta + s z`` with
``s = eta sqrt((1 - abar_prev)/(1 - abar_t) (1 - abar_t/abar_prev))``; ``eta = 0`` is
deterministic given the starting noise.

``theta`` here is the condition as the model sees it: the parameters scaled to
[0, 1] over the prior (``cosmonb.recipes.maps.map_sets`` does it and the
checkpoint stores the normaliser).

Example:
    >>> import torch
    >>> model = DDPM(n_pix=8, channels=8, channel_mults=(1, 2), attention_resolutions=(4,), timesteps=50)
    >>> x0, theta = torch.randn(4, 1, 8, 8), torch.rand(4, 2)
    >>> model.loss((x0, theta)).shape, tuple(model.sample(2, theta[:1], seed=0, method="ddim", steps=5).shape)
    (torch.Size([]), (2, 1, 8, 8))
    >>> tuple(model.vlb_terms(x0[0], torch.rand(7, 2), [0, 10], seed=0).shape)
    (7, 2)
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import check_int
from .base import Model, register_model
from .unet import UNet

__all__ = ["DDPM", "SCHEDULES", "PREDICTIONS", "make_betas", "LOG_PROB_SEED"]

#: Names of the variance schedules :func:`make_betas` knows.
SCHEDULES = ("cosine", "linear")
#: What the network outputs: the noise (the paper) or v (see the module docstring).
PREDICTIONS = ("eps", "v")
#: The seed of the one noise draw behind ``DDPM.log_prob`` (deterministic by design).
LOG_PROB_SEED = 0


def make_betas(schedule: str, timesteps: int) -> np.ndarray:
    """The variances ``beta_1 .. beta_T`` (float64, shape ``(T,)``) of a named schedule.

    Example:
        >>> b = make_betas("cosine", 1000)
        >>> b.shape, bool(np.all(np.diff(b) >= 0)), float(b.max())
        ((1000,), True, 0.999)
    """
    timesteps = check_int(timesteps, "timesteps", 1)
    if schedule == "cosine":
        s = 0.008
        f = np.cos((np.arange(timesteps + 1) / timesteps + s) / (1 + s) * np.pi / 2) ** 2
        abar = f / f[0]
        return np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 0.999)
    if schedule == "linear":
        scale = 1000.0 / timesteps
        return np.linspace(1e-4 * scale, min(0.02 * scale, 0.999), timesteps)
    raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module):
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed: expected an integer or None, got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))


@register_model("ddpm")
class DDPM(Model):
    """Conditional DDPM on ``(in_channels, n_pix, n_pix)`` maps (see the module docstring).

    The denoiser is ``self.net``, a :class:`~cosmonb.models.unet.UNet` built from the
    network arguments; the schedule (``betas``, ``alphas_cumprod`` and the derived
    coefficients) is held in buffers rebuilt from ``schedule`` and ``timesteps``
    (not stored in the state_dict). Batches are ``(x0, theta)`` as
    :class:`~cosmonb.data.CMDDataset` gives them, or ``(x0, theta, t, noise)`` with
    fixed step indices (B,) and noise (a deterministic loss, for validation).
    """

    log_prob_kind = "per_timestep"
    can_sample = True

    def __init__(self, in_channels: int = 1, n_pix: int = 64, channels: int = 32,
                 channel_mults: Sequence[int] = (1, 2, 2, 2), attention_resolutions: Sequence[int] = (8,),
                 n_res_blocks: int = 2, cond_dim: int = 2, dropout: float = 0.0, norm_groups: int = 8,
                 timesteps: int = 1000, schedule: str = "cosine", prediction: str = "eps"):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        self.net = UNet(in_channels=in_channels, channels=channels, channel_mults=channel_mults,
                        attention_resolutions=attention_resolutions, n_res_blocks=n_res_blocks, cond_dim=cond_dim,
                        n_pix=n_pix, dropout=dropout, norm_groups=norm_groups)
        self.timesteps = check_int(timesteps, "timesteps", 2)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
        self.schedule = schedule
        betas = make_betas(schedule, self.timesteps)
        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        abar_prev = np.concatenate([[1.0], abar[:-1]])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        weight = np.empty_like(betas)  # L_i = weight_i |eps - eps_theta|^2 + D const_i
        weight[0] = 1.0 / (2.0 * alphas[0])
        weight[1:] = betas[1:] / (2.0 * alphas[1:] * (1.0 - abar_prev[1:]))
        const = np.zeros_like(betas)
        const[0] = 0.5 * math.log(2 * math.pi * betas[0])
        for name, value in {"betas": betas, "alphas": alphas, "alphas_cumprod": abar,
                            "alphas_cumprod_prev": abar_prev, "posterior_variance": post_var,
                            "vlb_weight": weight, "vlb_constant": const}.items():
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32), persistent=False)

    @property
    def config(self) -> dict:
        n = self.net
        return {"in_channels": n.in_channels, "n_pix": n.n_pix, "channels": n.channels,
                "channel_mults": list(n.channel_mults), "attention_resolutions": list(n.attention_resolutions),
                "n_res_blocks": n.n_res_blocks, "cond_dim": n.cond_dim, "dropout": n.dropout,
                "norm_groups": n.norm_groups, "timesteps": self.timesteps, "schedule": self.schedule,
                "prediction": self.prediction}

    # ------------------------------------------------------------------ checks
    @property
    def map_shape(self) -> tuple[int, int, int]:
        return (self.net.in_channels, self.net.n_pix, self.net.n_pix)

    def _check_maps(self, x, name: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.map_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected maps of shape (B, {', '.join(map(str, self.map_shape))}), got {got}")
        return x

    def _check_cond(self, cond, rows: int, name: str, broadcast: bool) -> torch.Tensor | None:
        """``cond`` as a (rows, cond_dim) tensor on the model's device; one row broadcasts if allowed."""
        p = self.net.cond_dim
        if p == 0:
            if cond is not None:
                raise ValueError(f"{name}: this model is unconditional (cond_dim=0); pass None")
            return None
        if cond is None:
            raise ValueError(f"{name}: this model is conditional; expected ({rows}, {p}) parameters scaled to "
                             "[0, 1] over the prior, got None")
        cond = torch.as_tensor(cond, dtype=self.betas.dtype, device=self.betas.device)
        if cond.ndim == 1:
            cond = cond[None]
        ok_rows = (rows, 1) if broadcast else (rows,)
        if cond.ndim != 2 or cond.shape[1] != p or cond.shape[0] not in ok_rows:
            want = f"({rows}, {p})" + (f" or (1, {p})" if broadcast else "")
            raise ValueError(f"{name}: expected parameters of shape {want}, got {tuple(cond.shape)}")
        if not bool(torch.isfinite(cond).all()):
            raise ValueError(f"{name}: expected finite parameters, found NaN/inf")
        return cond.expand(rows, p)

    def _check_steps(self, timesteps, name: str = "timesteps") -> list[int]:
        values = [timesteps] if isinstance(timesteps, numbers.Integral) else list(np.asarray(timesteps).ravel())
        out = []
        for v in values:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or not 0 <= v < self.timesteps:
                raise ValueError(f"{name}: expected step indices in [0, {self.timesteps - 1}] (0 = L_0), got {v!r}")
            out.append(int(v))
        if not out:
            raise ValueError(f"{name}: expected at least one step index, got none")
        return out

    # ------------------------------------------------------------------ the process
    @staticmethod
    def _at(buffer: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return buffer[t][:, None, None, None]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` for step indices ``t`` (B,)."""
        abar = self._at(self.alphas_cumprod, t)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The clean map implied by a noise estimate: ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
        abar = self._at(self.alphas_cumprod, t)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, theta: torch.Tensor | None):
        """``(eps_theta, x0_theta)``: the noise and the clean map the network implies at step indices ``t`` (B,).

        Computed from the network's own output (eps or v), so that neither is divided by a
        small ``sqrt(abar_t)`` needlessly (see the module docstring).
        """
        out = self.net(x_t, t, theta)
        if self.prediction == "eps":
            return out, self.predict_x0(x_t, t, out)
        abar = self._at(self.alphas_cumprod, t)
        return abar.sqrt() * out + (1 - abar).sqrt() * x_t, abar.sqrt() * x_t - (1 - abar).sqrt() * out

    def posterior_mean_variance(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean and variance of ``q(x_{t-1} | x_t, x_0)`` (index ``t >= 1``; at 0 the variance is 0)."""
        beta, abar, abar_prev = (self._at(b, t) for b in (self.betas, self.alphas_cumprod, self.alphas_cumprod_prev))
        mean = (abar_prev.sqrt() * beta * x0 + self._at(self.alphas, t).sqrt() * (1 - abar_prev) * x_t) / (1 - abar)
        return mean, self._at(self.posterior_variance, t)

    def p_mean_variance(self, x_t: torch.Tensor, t: torch.Tensor, theta: torch.Tensor | None):
        """Mean and variance of ``p_theta(x_{t-1} | x_t)`` (variance: ``beta~_t``, or ``beta_1`` at index 0)."""
        eps, _ = self.denoise(x_t, t, theta)
        mean = (x_t - self._at(self.betas, t) / (1 - self._at(self.alphas_cumprod, t)).sqrt() * eps) \
            / self._at(self.alphas, t).sqrt()
        var = torch.where(t == 0, self.betas[0], self.posterior_variance[t])[:, None, None, None]
        return mean, var

    # ------------------------------------------------------------------ training
    def _unpack(self, batch):
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        if not isinstance(batch, (tuple, list)) or len(batch) not in (1, 2, 4):
            raise ValueError("batch: expected (x0, theta) or (x0, theta, t, noise), got "
                             f"{type(batch).__name__} of length {len(batch) if hasattr(batch, '__len__') else '?'}")
        x0 = self._check_maps(batch[0], "batch[0] (x0)")
        theta = self._check_cond(batch[1] if len(batch) > 1 else None, len(x0), "batch[1] (theta)", broadcast=False)
        if len(batch) == 4:
            t, noise = batch[2], batch[3]
            if not isinstance(t, torch.Tensor) or t.shape != (len(x0),) or t.dtype.is_floating_point:
                raise ValueError(f"batch[2] (t): expected integer step indices of shape ({len(x0)},), got {t!r}")
            if int(t.min()) < 0 or int(t.max()) >= self.timesteps:
                raise ValueError(f"batch[2] (t): expected step indices in [0, {self.timesteps - 1}]")
            if not isinstance(noise, torch.Tensor) or noise.shape != x0.shape:
                raise ValueError(f"batch[3] (noise): expected shape {tuple(x0.shape)} like x0, got "
                                 f"{tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__}")
            return x0, theta, t, noise
        return x0, theta, None, None

    def loss(self, batch) -> torch.Tensor:
        """Mean ``|eps - eps_theta(x_t, t, theta)|^2`` (or ``|v - v_theta|^2``) with ``t`` uniform over the T steps (or given)."""
        x0, theta, t, noise = self._unpack(batch)
        if t is None:
            t = torch.randint(0, self.timesteps, (len(x0),), device=x0.device)
            noise = torch.randn_like(x0)
        target = noise
        if self.prediction == "v":
            abar = self._at(self.alphas_cumprod, t)
            target = abar.sqrt() * noise - (1 - abar).sqrt() * x0
        return torch.mean((target - self.net(self.q_sample(x0, t, noise), t, theta)) ** 2)

    # ------------------------------------------------------------------ the bound
    def _terms(self, x0: torch.Tensor, theta: torch.Tensor | None, index: int, noise: torch.Tensor) -> torch.Tensor:
        """``L_index`` (nats) per row of ``x0``, for the noise ``noise`` (broadcast over rows)."""
        t = torch.full((len(x0),), index, dtype=torch.long, device=x0.device)
        x_t = self.q_sample(x0, t, noise)
        sq = ((noise - self.denoise(x_t, t, theta)[0]) ** 2).flatten(1).sum(1)
        return self.vlb_weight[index] * sq + x0[0].numel() * self.vlb_constant[index]

    def vlb_terms(self, x0, theta, timesteps, *, seed: int = 0, n_noise: int = 1,
                  batch_size: int = 256) -> torch.Tensor:
        """Terms ``L_i`` (nats) of the bound for **one map** ``x0`` and **many** ``theta``: shape (M, len(timesteps)).

        ``x0``: one map ``(C, n_pix, n_pix)`` (or ``(1, C, n_pix, n_pix)``);
        ``theta``: ``(M, cond_dim)``; ``timesteps``: step indices (0 = ``L_0``, the
        decoder; ``i >= 1`` the KL term ``L_i``). For each of ``n_noise`` draws and
        each step, one noise map (from ``seed``) makes one ``x_t`` shared by every
        theta (common random numbers); the terms are averaged over the draws. The
        network runs in eval mode without gradients, ``batch_size`` theta at a time.

        Example:
            >>> m = DDPM(n_pix=8, channels=8, channel_mults=(1, 2), attention_resolutions=(), timesteps=20)
            >>> x0, grid = torch.randn(1, 8, 8), torch.rand(5, 2)
            >>> terms = m.vlb_terms(x0, grid, [0, 5], seed=1)
            >>> tuple(terms.shape), torch.equal(terms, m.vlb_terms(x0, grid, [0, 5], seed=1))
            ((5, 2), True)
        """
        if isinstance(x0, torch.Tensor) and x0.ndim == 3:
            x0 = x0[None]
        x0 = self._check_maps(x0, "x0")
        if len(x0) != 1:
            raise ValueError(f"x0: expected one map (C, H, W) or (1, C, H, W), got {len(x0)} maps; loop over maps")
        if not bool(torch.isfinite(x0).all()):
            raise ValueError("x0: expected finite values, found NaN/inf")
        if self.net.cond_dim:
            if theta is None:
                raise ValueError(f"theta: expected (M, {self.net.cond_dim}) parameters scaled to [0, 1], got None")
            theta = torch.as_tensor(theta, dtype=self.betas.dtype)
            theta = self._check_cond(theta, len(theta) if theta.ndim == 2 else 1, "theta", broadcast=False)
            m = len(theta)
        else:
            theta, m = self._check_cond(theta, 1, "theta", broadcast=False), 1
        steps = self._check_steps(timesteps)
        n_noise = check_int(n_noise, "n_noise", 1)
        batch_size = check_int(batch_size, "batch_size", 1)
        device = self.betas.device
        x0 = x0.to(device, self.betas.dtype)
        g = _generator(seed, torch.device("cpu"))
        noise = torch.randn((n_noise, len(steps)) + tuple(x0.shape[1:]), generator=g).to(device, self.betas.dtype)
        out = torch.zeros(m, len(steps), dtype=torch.float64, device=device)
        with torch.no_grad(), _eval_mode(self):
            for d in range(n_noise):
                for j, index in enumerate(steps):
                    for lo in range(0, m, batch_size):
                        hi = min(lo + batch_size, m)
                        rows = x0.expand(hi - lo, *x0.shape[1:])
                        cond = None if theta is None else theta[lo:hi]
                        out[lo:hi, j] += self._terms(rows, cond, index, noise[d, j][None]).double()
        return (out / n_noise).to(self.betas.dtype)

    def log_prob(self, x, cond=None) -> torch.Tensor:
        """``-L_0`` per row (nats): the decoder term with one fixed noise map (``LOG_PROB_SEED``), shared by all rows.

        ``x``: ``(N, C, n_pix, n_pix)``; ``cond``: ``(N, cond_dim)`` or one row. Runs in eval mode.
        """
        x = self._check_maps(x, "x").to(self.betas.device)
        cond = self._check_cond(cond, len(x), "cond", broadcast=True)
        noise = torch.randn((1,) + self.map_shape, generator=_generator(LOG_PROB_SEED, torch.device("cpu")))
        with _eval_mode(self):
            return -self._terms(x, cond, 0, noise.to(x.device, x.dtype))

    # ------------------------------------------------------------------ sampling
    def ddim_steps(self, steps: int) -> list[int]:
        """The ``steps`` step indices DDIM visits, from ``T - 1`` down to 0 (evenly spaced).

        Example:
            >>> DDPM(n_pix=8, channels=8, channel_mults=(1, 2), attention_resolutions=(), timesteps=100).ddim_steps(5)
            [99, 74, 50, 25, 0]
        """
        steps = check_int(steps, "steps", 1)
        if steps > self.timesteps:
            raise ValueError(f"steps: expected at most timesteps={self.timesteps}, got {steps}")
        return sorted({int(round(v)) for v in np.linspace(self.timesteps - 1, 0, steps)}, reverse=True)

    def sample(self, n: int, cond=None, *, seed: int | None = None, steps: int | None = None,
               method: str = "ancestral", eta: float = 0.0, clip_x0: float | None = None,
               progress: bool = False) -> torch.Tensor:
        """``n`` maps ``(n, C, n_pix, n_pix)`` given ``cond`` (``(n, cond_dim)`` or one row, broadcast).

        ``method="ancestral"``: all T steps with variance ``beta~_t`` (``steps`` must be None
        or T). ``method="ddim"``: ``steps`` evenly spaced steps (default 50), ``eta``
        scales the added noise (0: deterministic given the seed). ``seed`` fixes
        every draw without touching the global RNG. ``clip_x0``: clamp the predicted clean
        map to ``[-clip_x0, clip_x0]`` (standardised units) at every step, which keeps an
        untrained model's samples finite (the cosine schedule's last ``abar`` is ~1e-9, so
        ``x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar)`` amplifies any error); None:
        no clamp. Runs in eval mode, without gradients.
        """
        n = check_int(n, "n", 1)
        if method not in ("ancestral", "ddim"):
            raise ValueError(f"method: expected 'ancestral' or 'ddim', got {method!r}")
        if method == "ancestral" and steps not in (None, self.timesteps):
            raise ValueError(f"steps: ancestral sampling runs all {self.timesteps} steps (got steps={steps}); "
                             "use method='ddim' for fewer")
        eta = float(eta)
        if not (math.isfinite(eta) and eta >= 0):
            raise ValueError(f"eta: expected a number >= 0, got {eta}")
        if clip_x0 is not None and not (isinstance(clip_x0, numbers.Real) and clip_x0 > 0):
            raise ValueError(f"clip_x0: expected a number > 0 or None, got {clip_x0!r}")
        cond = self._check_cond(cond, n, "cond", broadcast=True)
        device = self.betas.device
        g = _generator(seed, device)
        x = torch.randn((n,) + self.map_shape, generator=g, device=device, dtype=self.betas.dtype)
        order = list(range(self.timesteps - 1, -1, -1)) if method == "ancestral" else \
            self.ddim_steps(50 if steps is None else steps)
        with torch.no_grad(), _eval_mode(self):
            for k, i in enumerate(tqdm(order, desc="sample", disable=not progress)):
                t = torch.full((n,), i, dtype=torch.long, device=device)
                if method == "ancestral":
                    if clip_x0 is None:
                        mean, var = self.p_mean_variance(x, t, cond)
                    else:  # the same mean written through the (clamped) clean map
                        x0_hat = self.denoise(x, t, cond)[1].clamp(-clip_x0, clip_x0)
                        mean, var = self.posterior_mean_variance(x0_hat, x, t)
                    if i > 0:
                        mean = mean + var.sqrt() * torch.randn(x.shape, generator=g, device=device, dtype=x.dtype)
                    x = mean
                    continue
                eps, x0_hat = self.denoise(x, t, cond)
                abar = self.alphas_cumprod[i]
                abar_prev = self.alphas_cumprod[order[k + 1]] if k + 1 < len(order) else torch.ones((), device=device)
                if clip_x0 is not None:
                    x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
                    eps = (x - abar.sqrt() * x0_hat) / (1 - abar).sqrt()
                sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
                x = abar_prev.sqrt() * x0_hat + (1 - abar_prev - sigma ** 2).clamp_min(0).sqrt() * eps
                if eta > 0 and k + 1 < len(order):
                    x = x + sigma * torch.randn(x.shape, generator=g, device=device, dtype=x.dtype)
        return x
