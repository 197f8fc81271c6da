r"""Training the VDVAE of notebook 04 (:mod:`cosmonb.models.vdvae`) and probing its latent codes.

Andrianomena & Hassan trained a very deep VAE (Child 2020) on CAMELS CMD
IllustrisTNG maps of Mgas, HI and B at z = 0 (three channels, 256^2) and
asked what its latent codes know: a linear probe (one dense layer, no
activation, 200 epochs of Adam at lr 0.0025) from the length-256 code to the
six parameters reached R^2 = 0.93, 0.64, 0.72, -0.01, 0.85, 0.20 for
Omega_m, sigma_8, A_SN1, A_AGN1, A_SN2, A_AGN2.

:func:`train_vdvae_recipe` builds the maps with :func:`cosmonb.recipes.maps.map_sets`
(built-in simulator, or CMD files under ``data_root`` / ``$DATA_ROOT``), trains
with :class:`cosmonb.train.Trainer` (checkpointing its state to
``out/vdvae.state.pt`` so ``resume=True`` continues a killed run exactly),
measures the negative ELBO per dimension on the validation and test maps,
probes the codes (:func:`encode_dataset`, :func:`linear_probe`) and saves
the model with :func:`cosmonb.checkpoints.save_model`.

The training maps are augmented with the 8 symmetries of the square, drawn per
epoch from ``(seed, epoch)`` (:class:`~cosmonb.recipes.maps.AugmentedBatches`), so a resumed run sees the
same batches as one never stopped, whatever the number of processes.

Example:
    >>> codes = np.random.default_rng(0).normal(size=(200, 5))
    >>> theta = codes[:, :2] @ np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> r2 = linear_probe(codes[:150], theta[:150], codes[150:], theta[150:])
    >>> bool((r2 > 0.98).all())
    True
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import checkpoints, data, stats
from .._checks import as_finite_array, check_float, check_int
from ..constants import BOX_SIZE, PARAM_NAMES
from ..models.base import seeded_rng
from ..models.vdvae import VDVAE
from ..runtime import seed_everything
from .maps import AugmentedBatches, fixed_batches, map_sets, map_split, map_split_index

__all__ = ["NAME", "FIELDS", "N_PARAMS", "PRESETS", "PAPER_R2", "train_vdvae_recipe",
           "encode_dataset", "negative_elbo_per_dim", "linear_probe", "r2_score", "vdvae_split_index",
           "vdvae_split", "VDVAEMaps", "spectra", "spectra_agreement"]

#: The checkpoint's name.
NAME = "vdvae"
#: The channels, as in the paper: gas mass, neutral hydrogen, magnetic fields.
FIELDS = ("Mgas", "HI", "B")
#: The probe regresses all six CAMELS parameters.
N_PARAMS = 6
#: The paper's linear-probe R^2 on its test maps, in CAMELS order.
PAPER_R2 = dict(zip(PARAM_NAMES, (0.93, 0.64, 0.72, -0.01, 0.85, 0.20)))

#: Presets: ``model`` (VDVAE arguments), ``train`` (TrainConfig settings, ``epochs``
#: converted to steps), ``data`` (map_sets settings), ``probe`` (linear_probe settings).
#:
#: * ``quick``: seconds on one core (16^2 maps, 3 stages of width 8, 16 simulations x
#:   2 maps, 2 epochs); what the tests run. Trains nothing useful.
#: * ``cpu``: 64^2 maps of 400 simulations x 15 (4,800 training maps), 4 stages
#:   (64, 32, 16, 8) so that the top latent is 8 x 8 x 4 = 256 numbers, the paper's
#:   code length; widths 16 at 64^2 and 32 below, bottleneck 1/4, one block per
#:   stage at full resolution and two below (about 48k weights, a 0.2 MB file).
#:   The full-resolution stage dominates the cost, hence its narrow width and single
#:   block. Measured 0.55-0.95 s per step of 16 maps on one thread of a shared
#:   2-core machine (4,800 maps: 300 steps per epoch), so 60 epochs (18,000 steps)
#:   take about 3 hours on 2 CPU cores. Adam at 5e-4 instead of the paper's RMSprop
#:   at 2e-5: the paper's rate needs its ~1M steps; a KL warm-up over 2,000 batches
#:   keeps the top latents from collapsing early. The gradient norm of this loss (per
#:   dimension) grows as the Gaussian likelihood sharpens: 0.4-0.9 in the first steps,
#:   127-141 on every batch at step 5,000. A first run skipped above 100, as the
#:   quick preset does, and froze: 2,639 of its first 5,500 updates were skipped, all
#:   of them after step 5,000. So the cpu preset clips at 20 and skips only above
#:   2,000, some 15 times the norm of an ordinary step.
#: * ``paper``: the paper's run, for a GPU: 256^2 maps of all 1,000 LH simulations
#:   split by simulation in the paper's proportions 13 : 1 : 1 (13,000 / 1,000 / 1,000
#:   maps; the paper's counts are not whole simulations, so ours are 12,990 / 1,005 /
#:   1,005), 6 stages (256 ... 8) with residual blocks (3, 3, 2, 2, 2, 2) in the
#:   encoder and in the decoder (per stage from full resolution), an 8 x 8 x 4 top
#:   latent (code length 256), RMSprop (lr 2e-5, momentum 0.9, weight decay 1e-4),
#:   batch 4, 300 epochs. The paper's widths are not in our notes: width 128 with
#:   bottleneck 1/4 and 16 latent channels per lower stage follow Child (2020), as
#:   do the clip (200) and skip (400) thresholds (his ImageNet-32 run).
PRESETS = {
    "quick": {
        "model": {"in_channels": 3, "n_pix": 16, "widths": [8, 8, 8], "enc_blocks": [1, 1, 1],
                  "dec_blocks": [1, 1, 1], "z_channels": [2, 2, 4], "bottleneck": 0.5, "kl_warmup_steps": 4},
        "train": {"epochs": 2, "batch_size": 8, "optimizer": "adam", "lr": 2e-3, "momentum": 0.0,
                  "weight_decay": 0.0, "warmup_steps": 0, "clip_grad": 20.0, "skip_grad_norm": 100.0,
                  "checkpoint_every_steps": 2, "checkpoint_every_minutes": None},
        "data": {"n_pix": 16, "n_sims": 16, "maps_per_sim": 2, "fractions": (0.75, 0.125, 0.125)},
        "probe": {"epochs": 50, "lr": 0.0025},
    },
    "cpu": {
        "model": {"in_channels": 3, "n_pix": 64, "widths": [16, 32, 32, 32], "enc_blocks": [1, 2, 2, 2],
                  "dec_blocks": [1, 2, 2, 2], "z_channels": [4, 4, 4, 4], "bottleneck": 0.25,
                  "kl_warmup_steps": 2000},
        "train": {"epochs": 60, "batch_size": 16, "optimizer": "adam", "lr": 5e-4, "momentum": 0.0,
                  "weight_decay": 0.0, "warmup_steps": 100, "clip_grad": 20.0, "skip_grad_norm": 2000.0,
                  "checkpoint_every_steps": 500, "checkpoint_every_minutes": 10.0},
        "data": {"n_pix": 64, "n_sims": 400, "maps_per_sim": 15, "fractions": (0.8, 0.1, 0.1)},
        "probe": {"epochs": 200, "lr": 0.0025},
    },
    "paper": {
        "model": {"in_channels": 3, "n_pix": 256, "widths": [128] * 6, "enc_blocks": [3, 3, 2, 2, 2, 2],
                  "dec_blocks": [3, 3, 2, 2, 2, 2], "z_channels": [16, 16, 16, 16, 16, 4], "bottleneck": 0.25,
                  "kl_warmup_steps": 0},
        "train": {"epochs": 300, "batch_size": 4, "optimizer": "rmsprop", "lr": 2e-5, "momentum": 0.9,
                  "weight_decay": 1e-4, "warmup_steps": 0, "clip_grad": 200.0, "skip_grad_norm": 400.0,
                  "checkpoint_every_steps": 5000, "checkpoint_every_minutes": 30.0},
        "data": {"n_pix": 256, "n_sims": 1000, "maps_per_sim": 15, "fractions": (13 / 15, 1 / 15, 1 / 15)},
        "probe": {"epochs": 200, "lr": 0.0025},
    },
}


@torch.no_grad()
def encode_dataset(model: VDVAE, dataset, batch_size: int = 64, code="top") -> tuple:
    """``(codes (N, L), theta (N, P))`` of every map of ``dataset``, in order; ``code`` as in
    :meth:`VDVAE.encode` (``"top"``: L = code_length; ``"hierarchy"``: L = hierarchy_code_length).
    A tuple of code names gives ``(codes_1, ..., theta)`` from one pass over the maps.

    ``dataset`` yields ``(x, u)`` like :class:`cosmonb.data.CMDDataset`; the
    parameters come back in physical units when it can denormalise them
    (``dataset.denormalise_params``), as given otherwise. The model runs in
    eval mode on its own device.
    """
    if not isinstance(model, VDVAE):
        raise ValueError(f"model: expected a VDVAE, got {type(model).__name__}")
    batch_size = check_int(batch_size, "batch_size", 1)
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one map, got an empty dataset")
    device = model.top_state.device
    was = model.training
    model.eval()
    names = (code,) if isinstance(code, str) else tuple(code)
    codes, params = [[] for _ in names], []
    try:
        for x, u in fixed_batches(dataset, batch_size):
            for store, c in zip(codes, model.encode(x.to(device), names)):
                store.append(c.cpu().numpy())
            params.append(u.numpy())
    finally:
        model.train(was)
    theta = np.concatenate(params).astype(np.float64)
    if callable(getattr(dataset, "denormalise_params", None)):
        theta = np.asarray(dataset.denormalise_params(theta), dtype=np.float64)
    return (*[np.concatenate(c) for c in codes], theta)


@torch.no_grad()
def negative_elbo_per_dim(model: VDVAE, dataset, batch_size: int = 64) -> float:
    """Mean negative ELBO per dimension (nats) over the maps of ``dataset``: ``model.loss`` in eval mode
    (KL weight 1, seeded latent draws), weighted by batch size."""
    if not isinstance(model, VDVAE):
        raise ValueError(f"model: expected a VDVAE, got {type(model).__name__}")
    device = model.top_state.device
    was = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, _ in fixed_batches(dataset, check_int(batch_size, "batch_size", 1)):
            total += float(model.loss(x.to(device))) * len(x)
            count += len(x)
    finally:
        model.train(was)
    if count == 0:
        raise ValueError("dataset: expected at least one map, got an empty dataset")
    return total / count


# --------------------------------------------------------------------------- the probe
def r2_score(y_true, y_pred) -> np.ndarray:
    """Coefficient of determination per column: ``1 - sum (y - y_hat)^2 / sum (y - mean y)^2``."""
    y_true, y_pred = as_finite_array(y_true, "y_true"), as_finite_array(y_pred, "y_pred")
    if y_true.shape != y_pred.shape or y_true.ndim != 2 or len(y_true) < 2:
        raise ValueError(f"y_true, y_pred: expected two (N >= 2, P) arrays of one shape, got {y_true.shape} "
                         f"and {y_pred.shape}")
    total = ((y_true - y_true.mean(0)) ** 2).sum(0)
    if np.any(total == 0):
        raise ValueError("y_true: a column is constant, so its R^2 is undefined")
    return 1.0 - ((y_true - y_pred) ** 2).sum(0) / total


def linear_probe(codes_train, theta_train, codes_test, theta_test, epochs: int = 200, lr: float = 0.0025,
                 seed: int = 0, batch_size: int = 64, return_predictions: bool = False):
    """R^2 per parameter on the test set of a linear map from codes to parameters (the paper's probe).

    One ``nn.Linear`` layer, no activation, trained for ``epochs`` passes of
    mini-batches of ``batch_size`` with Adam at ``lr`` on the mean squared
    error of the standardised parameters (codes and parameters standardised
    with the training set's mean and std). Seeded: the global random stream is
    left untouched. ``return_predictions=True`` returns ``(r2, predictions on codes_test)``.
    """
    names = ("codes_train", "theta_train", "codes_test", "theta_test")
    arrays = [as_finite_array(a, n) for a, n in zip((codes_train, theta_train, codes_test, theta_test), names)]
    for i, (a, n) in enumerate(zip(arrays, names)):
        if a.ndim == 1 and n.startswith("theta"):
            arrays[i] = a = a[:, None]
        if a.ndim != 2:
            raise ValueError(f"{n}: expected a 2D array (rows, features), got shape {a.shape}")
    c_tr, t_tr, c_te, t_te = arrays
    if len(c_tr) != len(t_tr) or len(c_te) != len(t_te):
        raise ValueError(f"codes and theta: expected as many rows, got {len(c_tr)} / {len(t_tr)} (train) and "
                         f"{len(c_te)} / {len(t_te)} (test)")
    if c_tr.shape[1] != c_te.shape[1] or t_tr.shape[1] != t_te.shape[1]:
        raise ValueError(f"codes_test, theta_test: expected {c_tr.shape[1]} code and {t_tr.shape[1]} parameter "
                         f"columns like the training set, got {c_te.shape[1]} and {t_te.shape[1]}")
    if len(c_tr) < 2:
        raise ValueError(f"codes_train: expected at least 2 rows, got {len(c_tr)}")
    epochs, batch_size = check_int(epochs, "epochs", 1), check_int(batch_size, "batch_size", 1)
    lr = check_float(lr, "lr", positive=True)
    c_mean, c_std = c_tr.mean(0), c_tr.std(0) + 1e-8
    t_mean, t_std = t_tr.mean(0), t_tr.std(0) + 1e-8
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    x, y = as_t((c_tr - c_mean) / c_std), as_t((t_tr - t_mean) / t_std)
    with seeded_rng(seed):
        layer = nn.Linear(x.shape[1], y.shape[1])
        opt = torch.optim.Adam(layer.parameters(), lr=lr)
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for start in range(0, len(x), batch_size):
                rows = order[start:start + batch_size]
                opt.zero_grad()
                nn.functional.mse_loss(layer(x[rows]), y[rows]).backward()
                opt.step()
    with torch.no_grad():
        pred = layer(as_t((c_te - c_mean) / c_std)).double().numpy() * t_std + t_mean
    r2 = r2_score(t_te, pred)
    return (r2, pred) if return_predictions else r2


# --------------------------------------------------------------------------- the shipped model's data
def _preset_data(preset: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    return PRESETS[preset]["data"]


def vdvae_split_index(preset: str = "quick", *, seed: int = 0, data_root=None) -> dict:
    """``{"train", "val", "test"} -> map indices`` of the split :func:`train_vdvae_recipe` trains on (by simulation).

    Example:
        >>> {k: len(v) for k, v in vdvae_split_index("cpu").items()}
        {'train': 4800, 'val': 600, 'test': 600}
    """
    d = _preset_data(preset)
    per_sim = d["maps_per_sim"] if data_root is None else 15
    return map_split_index(d["n_sims"], per_sim, d["fractions"], seed=seed)


def vdvae_split(preset: str = "quick", split: str = "test", data_root=None, *, seed: int = 0, select=None):
    """The maps of one split of the recipe's data alone: ``(maps (n, 3, H, W) physical, params (n, 6), index)``.

    Bit for bit the maps :func:`train_vdvae_recipe` put in ``split`` (see
    :func:`cosmonb.recipes.maps.map_split`); ``select`` picks positions within the split.
    """
    d = _preset_data(preset)
    return map_split(FIELDS, d["n_pix"], split, n_sims=d["n_sims"], maps_per_sim=d["maps_per_sim"],
                     fractions=d["fractions"], seed=seed, data_root=data_root, select=select)


class VDVAEMaps:
    """A trained VDVAE with its data normaliser: physical (Mgas, HI, B) maps in, physical maps out.

    ``VDVAEMaps.load(directory)`` loads ``vdvae.pt`` (sha256-checked against its
    ``MANIFEST.json``; the shipped one in ``cosmonb/pretrained`` by default) and
    refuses a checkpoint that does not match what the caller expects:
    ``code_length`` (the length of the latent code) or any ``config`` entries (e.g.
    ``{"n_pix": 64}``). Maps are checked before they reach the network: the
    number of channels, the size, NaN/inf (naming the maps) and positive pixels
    (the model works on ``log10``).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = train_vdvae_recipe("quick", out=d, max_steps=1, log=lambda *a: None)
        >>> vae = VDVAEMaps.load(d, code_length=64)
        >>> maps, _, _ = vdvae_split("quick", "test", select=[0, 1])
        >>> vae.encode(maps).shape, vae.sample(2, seed=0).shape
        ((2, 64), (2, 3, 16, 16))
    """

    def __init__(self, model: VDVAE, normaliser: dict, fields=FIELDS, checkpoint: dict | None = None):
        if not isinstance(model, VDVAE):
            raise ValueError(f"model: expected a VDVAE, got {type(model).__name__}")
        fields = tuple(fields)
        if not isinstance(normaliser, dict) or len(normaliser.get("mean", ())) != model.in_channels:
            got = len(normaliser.get("mean", ())) if isinstance(normaliser, dict) else type(normaliser).__name__
            raise ValueError(f"normaliser: expected per-channel statistics of {model.in_channels} channels "
                             f"(the model's in_channels), got {got}")
        if len(fields) != model.in_channels:
            raise ValueError(f"fields: the model has {model.in_channels} channels, got {len(fields)} fields {fields}")
        self.model, self.normaliser, self.fields, self.checkpoint = model.eval(), normaliser, fields, checkpoint

    @classmethod
    def load(cls, directory=None, *, code_length: int | None = None, config: dict | None = None) -> "VDVAEMaps":
        model, ckpt = checkpoints.load_model(NAME, directory, kind="vdvae")
        where = ckpt["metadata"].get("path", NAME)
        if code_length is not None and check_int(code_length, "code_length", 1) != model.code_length:
            c, h, w = model.latent_shapes[0]
            raise ValueError(f"code_length: expected {code_length}, but the checkpoint {where} has a top latent of "
                             f"{c} x {h} x {w} = {model.code_length}; load it without code_length or retrain")
        if config is not None:
            if not isinstance(config, dict):
                raise ValueError(f"config: expected a dict of VDVAE settings, got {type(config).__name__}")
            have = model.config
            unknown = sorted(set(config) - set(have))
            if unknown:
                raise ValueError(f"config: unknown VDVAE setting(s) {unknown}; expected some of {sorted(have)}")
            differ = {k: (v, have[k]) for k, v in config.items()
                      if (list(v) if isinstance(v, tuple) else v) != have[k]}
            if differ:
                raise ValueError("config: the checkpoint " + str(where) + " does not match: " + "; ".join(
                    f"{k} expected {want!r}, checkpoint has {got!r}" for k, (want, got) in differ.items()))
        fields = ckpt["config"].get("fields", list(FIELDS))
        if ckpt.get("normaliser") is None:
            raise checkpoints.PretrainedError(f"checkpoint {where} has no normaliser; it cannot take physical maps")
        return cls(model, ckpt["normaliser"], fields, ckpt)

    # ------------------------------------------------------------------ units
    @property
    def n_pix(self) -> int:
        return self.model.n_pix

    @property
    def code_length(self) -> int:
        return self.model.code_length

    def check_physical(self, maps, name: str = "maps") -> np.ndarray:
        """``maps`` as a (N, C, n_pix, n_pix) float64 array of positive finite pixels, else a ValueError."""
        arr = np.asarray(maps.detach().cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float64)
        if arr.ndim == 3:
            arr = arr[None]
        want = (len(self.fields), self.n_pix, self.n_pix)
        if arr.ndim != 4 or arr.shape[1:] != want or len(arr) == 0:
            why = (f": {arr.shape[1]} channel(s), expected {len(self.fields)} ({', '.join(self.fields)})"
                   if arr.ndim == 4 and arr.shape[1] != want[0] else "")
            raise ValueError(f"{name}: expected maps of shape (N, {want[0]}, {want[1]}, {want[2]}) of "
                             f"{self.fields}, got {arr.shape}{why}")
        finite = np.isfinite(arr).reshape(len(arr), -1).all(1)
        if not finite.all():
            raise ValueError(f"{name}: expected finite values, found NaN/inf in map(s) "
                             f"{np.flatnonzero(~finite)[:10].tolist()} of {len(arr)}")
        if np.any(arr + self.normaliser.get("log10_offset", 0.0) <= 0):
            raise ValueError(f"{name}: expected positive pixels (the model works on log10 of the maps)")
        return arr

    def to_model_units(self, maps) -> torch.Tensor:
        """Physical maps -> the model's standardised log10 maps, a float32 tensor on the model's device."""
        x = data.normalise_maps(self.check_physical(maps), self.normaliser)
        return torch.as_tensor(x, dtype=torch.float32, device=self.model.top_state.device)

    def to_physical(self, x: torch.Tensor) -> np.ndarray:
        """The model's standardised log10 maps -> physical maps (float64 numpy)."""
        return np.asarray(data.denormalise_maps(x.detach().cpu().double().numpy(), self.normaliser))

    # ------------------------------------------------------------------ the model, in physical units
    def _batches(self, maps, batch_size):
        arr = self.check_physical(maps)
        for start in range(0, len(arr), batch_size):
            yield self.to_model_units(arr[start:start + batch_size])

    @torch.no_grad()
    def encode(self, maps, batch_size: int = 64, code="top"):
        """Latent codes of physical maps: ``"top"``, the posterior mean of the top latent (N, code_length),
        the paper's code; ``"hierarchy"``, each latent group's posterior mean summarised per channel by its
        pixel mean and standard deviation (N, hierarchy_code_length); a tuple of names gives a tuple of
        codes from one pass. See :meth:`VDVAE.encode`."""
        if isinstance(code, str):
            return self.encode(maps, batch_size, (code,))[0]
        parts = [[c.cpu().numpy() for c in self.model.encode(x, code)] for x in self._batches(maps, batch_size)]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(code)))

    @property
    def hierarchy_code_length(self) -> int:
        """Length of the ``"hierarchy"`` code."""
        return self.model.hierarchy_code_length

    @torch.no_grad()
    def reconstruct(self, maps, batch_size: int = 64) -> np.ndarray:
        """Reconstructions (every latent at its posterior mean; the likelihood's mean), physical units."""
        return np.concatenate([self.to_physical(self.model.reconstruct(x)) for x in self._batches(maps, batch_size)])

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0, temperature: float = 1.0, noise: bool = False,
               batch_size: int = 64) -> np.ndarray:
        """``n`` new maps in physical units (``noise``: add the likelihood's per-pixel noise)."""
        n, batch_size = check_int(n, "n", 1), check_int(batch_size, "batch_size", 1)
        out = [self.to_physical(self.model.sample(min(batch_size, n - a), seed=seed + a, temperature=temperature,
                                                  noise=noise)) for a in range(0, n, batch_size)]
        return np.concatenate(out)

    @torch.no_grad()
    def elbo_terms(self, maps, batch_size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(recon (N,), kl (N, n_blocks))`` in nats of the model's variable (one seeded latent draw)."""
        recon, kl = [], []
        for i, x in enumerate(self._batches(maps, batch_size)):
            r, k = self.model.elbo(x, seed=seed + i)
            recon.append(r.cpu().double().numpy())
            kl.append(k.cpu().double().numpy())
        return np.concatenate(recon), np.concatenate(kl)

    def bits_per_dim(self, maps, batch_size: int = 64, seed: int = 0) -> np.ndarray:
        """The negative ELBO per map in bits per dimension of the model's variable (a bound on -log2 p / D)."""
        recon, kl = self.elbo_terms(maps, batch_size, seed)
        dims = self.model.in_channels * self.n_pix ** 2
        return -(recon - kl.sum(1)) / (dims * math.log(2.0))


def spectra(maps, box_size: float = BOX_SIZE) -> tuple[np.ndarray, dict]:
    """``(k, {name: P (N, n_k)})``: the auto-spectrum of every channel and the cross-spectrum of every pair.

    ``maps`` (N, C, H, W) physical; names ``"auto c"`` and ``"cross c-d"`` by channel index. Only the
    bins up to the Nyquist frequency ``pi H / box_size`` are kept (the corner modes beyond it
    are anisotropic).
    """
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim != 4:
        raise ValueError(f"maps: expected (N, C, H, W) maps, got shape {arr.shape}")
    upto = stats.power_spectrum_bins(arr.shape[-1], box_size)[0] <= math.pi * arr.shape[-1] / box_size
    out = {}
    k = None
    for c in range(arr.shape[1]):
        k, out[f"auto {c}"] = stats.power_spectrum(arr[:, c], box_size)
    for c in range(arr.shape[1]):
        for d in range(c + 1, arr.shape[1]):
            k, out[f"cross {c}-{d}"] = stats.cross_power_spectrum(arr[:, c], arr[:, d], box_size)
    return k[upto], {name: pk[:, upto] for name, pk in out.items()}


def spectra_agreement(k, generated: dict, real: dict, k_max: float | None = None) -> dict:
    """``{name: k up to which the generated mean spectrum stays inside the real mean +- 1 sigma}``
    (:func:`cosmonb.stats.pk_agree_kmax`), on the bins up to ``k_max`` (default all)."""
    k = np.asarray(k, dtype=np.float64)
    upto = np.ones(len(k), bool) if k_max is None else k <= k_max
    return {name: stats.pk_agree_kmax(k[upto], generated[name][:, upto], real[name][:, upto]) for name in real}


# --------------------------------------------------------------------------- the recipe
def train_vdvae_recipe(preset: str = "quick", *, out, data_root=None, resume: bool = False,
                       max_steps: int | None = None, seed: int = 0, progress: bool = False, device=None,
                       command: str | None = None, log=print) -> Path:
    """Train the VDVAE with ``preset`` and save it to ``out`` (a folder); returns the checkpoint's path.

    ``out/vdvae.pt`` (with its ``MANIFEST.json`` entry) loads with
    ``checkpoints.load_model("vdvae", directory=out)``; its normaliser is the
    training maps' (log10 + per-channel standardisation, parameters scaled over
    the prior). ``out/vdvae.state.pt`` holds the trainer's state, written every
    ``checkpoint_every_steps`` steps and/or ``checkpoint_every_minutes``;
    ``resume=True`` continues it (bit for bit on CPU). ``max_steps`` caps the
    optimiser steps (the preset's epochs otherwise). Metrics: the negative
    ELBO per dimension (nats) on the validation and test maps, the linear
    probe's R^2 per parameter on the test maps (top-latent and hierarchy codes), skipped steps. Under
    ``torchrun`` every process runs this; only rank 0 writes.
    """
    from ..train import TrainConfig, Trainer, distributed

    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    if max_steps is not None:
        max_steps = check_int(max_steps, "max_steps", 1)
    out = Path(out)
    state = out / f"{NAME}.state.pt"
    if resume and not state.is_file():
        raise FileNotFoundError(f"resume: no training state {state} to continue from; train without resume "
                                "first (into the same out)")
    spec = PRESETS[preset]
    tr, dset = spec["train"], spec["data"]
    if distributed.is_launched():  # under torchrun: join the group now, so that only rank 0 logs and writes
        device = distributed.setup(device)
    main = distributed.is_main()
    sets = map_sets(FIELDS, dset["n_pix"], n_sims=dset["n_sims"], maps_per_sim=dset["maps_per_sim"],
                    n_params=N_PARAMS, data_root=data_root, fractions=dset["fractions"], seed=seed, augment=False)
    bs = int(tr["batch_size"])
    per_epoch = len(sets.train) // bs
    if per_epoch < 1:
        raise ValueError(f"data: {len(sets.train)} training maps are fewer than one batch of {bs}")
    total = int(tr["epochs"]) * per_epoch if max_steps is None else max_steps
    config = TrainConfig(max_steps=total, batch_size=bs, lr=float(tr["lr"]), optimizer=tr["optimizer"],
                         momentum=float(tr["momentum"]), weight_decay=float(tr["weight_decay"]),
                         warmup_steps=int(tr["warmup_steps"]), clip_grad=tr["clip_grad"],
                         skip_grad_norm=tr["skip_grad_norm"], checkpoint_every_steps=tr["checkpoint_every_steps"],
                         checkpoint_every_minutes=tr["checkpoint_every_minutes"], eval_every=per_epoch, seed=seed,
                         progress=bool(progress and main))
    seed_everything(seed)
    model = VDVAE(**spec["model"])
    if not resume and main:
        state.unlink(missing_ok=True)  # a fresh run replaces an earlier run's state
    distributed.barrier()
    world, rank = distributed.world_size(), distributed.rank()
    train_data = AugmentedBatches(sets.train, bs, seed=seed, rank=rank, world_size=world)
    val_data = fixed_batches(sets.val, bs, rank, world)
    if main:
        log(f"[cosmonb train] {NAME} ({preset}): {len(sets.train)} training maps {FIELDS} at {dset['n_pix']}^2 "
            f"from {sets.source}; {total} steps of {bs} on {world} process(es)")
    trainer = Trainer(model, config, checkpoint=state, device=device)
    t0 = time.perf_counter()
    result = trainer.fit(train_data, val_data)
    seconds = float(result["seconds"])
    path = out / f"{NAME}.pt"
    if main:
        vae = distributed.unwrap(trainer.model).eval()
        test_loss = negative_elbo_per_dim(vae, sets.test, bs)
        probe = spec["probe"]
        r2 = {}
        *codes_tr, theta_tr = encode_dataset(vae, sets.train, bs, ("top", "hierarchy"))  # both codes, one pass
        *codes_te, theta_te = encode_dataset(vae, sets.test, bs, ("top", "hierarchy"))
        for code, c_tr, c_te in zip(("top", "hierarchy"), codes_tr, codes_te):
            r2[code] = linear_probe(c_tr, theta_tr, c_te, theta_te, epochs=probe["epochs"], lr=probe["lr"], seed=seed)
        metrics = {"steps": int(result["steps"]), "epochs": round(result["steps"] / per_epoch, 3),
                   # the mean loss of each epoch (a record holds at most 1,000 numbers: 18,000 steps would not fit)
                   "train_loss": [float(np.mean(result["train_loss"][i:i + per_epoch]))
                                  for i in range(0, len(result["train_loss"]), per_epoch)],
                   "val_loss": [float(v) for v in result["val_loss"]],
                   "val_neg_elbo_per_dim": float(result["val_loss"][-1]) if result["val_loss"] else math.nan,
                   "test_neg_elbo_per_dim": float(test_loss),
                   "probe_r2": {name: float(v) for name, v in zip(PARAM_NAMES, r2["top"])},
                   "probe_r2_hierarchy": {name: float(v) for name, v in zip(PARAM_NAMES, r2["hierarchy"])},
                   "skipped_steps": int(result["skipped_steps"]), "world_size": int(result["world_size"])}
        extra = {"preset": preset, "fields": list(FIELDS), "data": sets.source,
                 "data_settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dset.items()},
                 "split_sizes": {k: int(len(v)) for k, v in sets.splits.items()}, "trainer": config.to_dict()}
        cmd = command or f"train_vdvae_recipe({preset!r}, max_steps={max_steps}, seed={seed})"
        vae = vae.to("cpu")
        checkpoints.save_model(NAME, vae, metrics=metrics, command=cmd, seconds=seconds,
                               normaliser=sets.normaliser, extra=extra, directory=out)
        log(f"[cosmonb train] {NAME}: {result['steps']} steps ({result['stop_reason'] or 'stopped'}, "
            f"{metrics['skipped_steps']} skipped) in {time.perf_counter() - t0:.1f} s; negative ELBO per dim: "
            f"val {metrics['val_neg_elbo_per_dim']:.4f}, test {test_loss:.4f}; probe R^2 (top latent, hierarchy) "
            + ", ".join(f"{k} {v:.2f}/{metrics['probe_r2_hierarchy'][k]:.2f}" for k, v in metrics["probe_r2"].items())
            + f" -> {path}")
    distributed.barrier()
    return path
