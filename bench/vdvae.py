"""Benchmark of notebook 04 (a very deep VAE of Mgas, HI, B maps); writes ``bench/results/vdvae.json``.

    python bench/vdvae.py                    # score the shipped checkpoint (make bench; ~20-30 min on 2 cores)
    python bench/vdvae.py --networks DIR     # a checkpoint made by `python -m cosmonb train vdvae --out DIR`
    python bench/vdvae.py --quick            # smoke test: few maps, short chains, nothing written
    python bench/vdvae.py --throughput       # training images per second of the cpu preset, one JSON line

It trains nothing: ``python -m cosmonb train vdvae --preset cpu --out DIR`` makes the model
(:mod:`cosmonb.recipes.vdvae`) and ``--out cosmonb/pretrained`` ships it.

Targets (issue 12), all on held-out maps (the test split of the recipe, simulations the
checkpoint never saw, made alone with ``recipes.vdvae.vdvae_split``):

* ``r2``: the linear probe's R^2 per parameter (one dense layer, 200 epochs of Adam at 0.0025,
  trained on the codes of every training map), on every test map, for the hierarchy code
  (``VDVAE.encode(x, "hierarchy")``: every latent group at its posterior mean, pixel mean and
  std per channel); ``r2_top_latent`` the same for the paper's code (the top latent), with its
  own ``r2_fraction_top_latent_*``; ``r2_subset`` on the
  ``--ceiling-maps`` (>= 100) maps whose ``r2_ceiling`` is computed: the R^2 of the exact
  six-parameter posterior mean (``sims.information_ceiling``, emcee), with bootstrap errors.
* ``r2_fraction_omega_m`` = r2_subset / ceiling >= 0.9; ``r2_fraction_a_sn1``, ``r2_fraction_a_sn2`` >= 0.8.
* ``pk_agree_kmax``: per channel, the largest k up to which the mean auto-P(k) of ``--pk-maps``
  generated maps stays inside the real test maps' mean +- 1 sigma; target >= 4 h/Mpc for every
  channel (the paper's reach); the cross-spectra are reported the same way.
* ``elbo_bits_per_dim`` (negative ELBO) on every test map, against ``exact_bits_per_dim``
  (``recipes.maps.exact_bits_per_dim``: the simulator's exact density given all six parameters).
* ``images_per_second`` (``--throughput``): training steps (forward, backward, Adam) of the cpu
  preset at batch 8 with 2 torch threads after warm-up, and a torch.profiler top-ops list of one step.
* the checkpoint <= 5 MB with its MANIFEST entry; the notebook's quick-mode time < 90 s (read
  from ``bench/results/notebooks.json``, where ``python -m cosmonb run --quick`` records it).

A miss is written as a miss (``pass``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cosmonb  # noqa: E402
from _machine import checkpoint_summary, notebook_quick_time, time_training_steps, write_results  # noqa: E402
from cosmonb import sims  # noqa: E402
from cosmonb.models.vdvae import VDVAE  # noqa: E402
from cosmonb.recipes.maps import exact_bits_per_dim  # noqa: E402
from cosmonb.recipes.vdvae import (FIELDS, NAME, PAPER_R2, PRESETS, VDVAEMaps, linear_probe, r2_score,  # noqa: E402
                                   spectra, spectra_agreement, vdvae_split, vdvae_split_index)

KEYS = list(sims.PARAM_KEYS)
TARGETS = {"r2_fraction_omega_m": (">=", 0.9), "r2_fraction_a_sn1": (">=", 0.8), "r2_fraction_a_sn2": (">=", 0.8),
           "pk_agree_kmax_min_auto": (">=", 4.0), "checkpoint_mb": ("<=", 5.0), "notebook_quick_seconds": ("<", 90.0)}


def _passes(value, rule) -> bool:
    op, target = rule
    return {"<": value < target, "<=": value <= target, ">=": value >= target}[op]


# --------------------------------------------------------------------------- throughput
def throughput(threads: int = 2, batch: int = 8, warmup: int = 3, steps: int = 10, profile: bool = True,
               seed: int = 0, preset: str = "cpu") -> dict:
    """Training images per second of the ``preset`` VDVAE (forward, backward, Adam) and a profile of one step."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    spec = PRESETS[preset]["model"]
    model = VDVAE(**spec).train()
    opt = torch.optim.Adam(model.parameters(), lr=PRESETS[preset]["train"]["lr"])
    x = torch.randn(batch, spec["in_channels"], spec["n_pix"], spec["n_pix"],
                    generator=torch.Generator().manual_seed(seed))

    def step():
        opt.zero_grad(set_to_none=True)
        model.loss(x).backward()
        opt.step()

    out = time_training_steps(step, model, batch=batch, steps=steps, warmup=warmup, profile=profile)
    out.update({"threads": threads, "preset": preset, "model": spec, "optimizer": "torch.optim.Adam"})
    return out


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--networks", default=None, help="folder with vdvae.pt + MANIFEST.json (default: the shipped one)")
    ap.add_argument("--quick", action="store_true", help="few maps, short chains; prints, writes nothing")
    ap.add_argument("--throughput", action="store_true", help="print one JSON line of training throughput and exit")
    ap.add_argument("--ceiling-maps", type=int, default=100, help="test maps whose information ceiling is computed")
    ap.add_argument("--ceiling-steps", type=int, default=600, help="emcee steps per map (32 walkers, a third burnt)")
    ap.add_argument("--pk-maps", type=int, default=500, help="generated and real maps for the spectra")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.throughput:
        out = throughput(threads=2, batch=8)
        print(json.dumps({"images_per_second": out["images_per_second"], "params": out["params"],
                          "profile_top_ops": out["profile_top_ops"][:8]}))
        return out
    if args.quick:
        args.ceiling_maps, args.ceiling_steps, args.pk_maps = min(args.ceiling_maps, 4), 300, min(args.pk_maps, 50)
    elif args.ceiling_maps < 100:
        ap.error("--ceiling-maps: the targets are measured on at least 100 test maps")
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, args.threads))
    cosmonb.seed_everything(args.seed)
    log = print

    vae = VDVAEMaps.load(args.networks)
    ckpt = vae.checkpoint
    preset, data_seed = ckpt["config"]["preset"], ckpt["config"].get("trainer", {}).get("seed", 0)
    result = {"networks": args.networks or "shipped (cosmonb/pretrained)", "quick": args.quick,
              "targets": {k: list(v) for k, v in TARGETS.items()},
              "checkpoint": checkpoint_summary(ckpt, NAME, args.networks, preset, vae.model.config),
              "threads": torch.get_num_threads(), "paper_r2": {k: PAPER_R2[n] for k, n in zip(KEYS, PAPER_R2)}}
    result["checkpoint_mb"] = result["checkpoint"]["bytes"] / 1e6

    # maps: every training map (probe fit) and every test map (quick: a spread of them)
    index = vdvae_split_index(preset, seed=data_seed)
    per_sim = PRESETS[preset]["data"]["maps_per_sim"]
    pick = (lambda n, m: np.linspace(0, n - 1, m).astype(int)) if args.quick else (lambda n, m: None)
    t0 = time.perf_counter()
    train_maps, train_params, train_idx = vdvae_split(preset, "train", seed=data_seed,
                                                      select=pick(len(index["train"]), 400))
    test_maps, test_params, test_idx = vdvae_split(preset, "test", seed=data_seed, select=pick(len(index["test"]), 120))
    shared = set(train_idx // per_sim) & set(test_idx // per_sim)
    if shared:
        raise RuntimeError(f"simulations {sorted(shared)[:5]} are in both splits")
    result["data"] = {"preset": preset, "train_maps": len(train_idx), "test_maps": len(test_idx),
                      "test_simulations": len(np.unique(test_idx // per_sim)), "seconds": time.perf_counter() - t0}

    # bits per dimension on the test maps, against the exact entropy
    t0 = time.perf_counter()
    bpd = vae.bits_per_dim(test_maps, seed=args.seed)
    bpd_exact = exact_bits_per_dim(test_maps, test_params, FIELDS, vae.normaliser)
    result.update(elbo_bits_per_dim=float(bpd.mean()), elbo_bits_per_dim_stderr=float(bpd.std(ddof=1) / math.sqrt(len(bpd))),
                  exact_bits_per_dim=float(bpd_exact.mean()), elbo_excess_bits_per_dim=float((bpd - bpd_exact).mean()),
                  bits_per_dim_maps=len(bpd), bits_per_dim_seconds=time.perf_counter() - t0)
    log(f"negative ELBO {result['elbo_bits_per_dim']:.4f} bits/dim (exact {result['exact_bits_per_dim']:.4f})")

    # the linear probe, and the information ceiling of a subset of the same test maps
    t0 = time.perf_counter()
    probe = PRESETS[preset]["probe"]
    # the headline code reads every latent group (VDVAE.encode "hierarchy"); the paper's code, the top latent, beside it
    top_train, codes_train = vae.encode(train_maps, code=("top", "hierarchy"))
    top_test, codes_test = vae.encode(test_maps, code=("top", "hierarchy"))
    r2, pred = linear_probe(codes_train, train_params, codes_test, test_params, epochs=probe["epochs"], lr=probe["lr"],
                            seed=args.seed, return_predictions=True)
    r2_top, pred_top = linear_probe(top_train, train_params, top_test, test_params, epochs=probe["epochs"],
                                    lr=probe["lr"], seed=args.seed, return_predictions=True)
    result["code"] = {"r2": f"hierarchy: every latent group's posterior mean, pixel mean and std per channel "
                            f"({vae.hierarchy_code_length} numbers)",
                      "r2_top_latent": f"the paper's code: the top latent's posterior mean ({vae.code_length} numbers)"}
    result["r2"] = dict(zip(KEYS, r2.tolist()))
    result["r2_top_latent"] = dict(zip(KEYS, r2_top.tolist()))
    result["probe_seconds"] = time.perf_counter() - t0
    sub = np.linspace(0, len(test_maps) - 1, min(args.ceiling_maps, len(test_maps))).astype(int)
    t0 = time.perf_counter()
    ceiling, means = sims.information_ceiling(test_maps[sub], test_params[sub], FIELDS, n_walkers=32,
                                              n_steps=args.ceiling_steps, burn=args.ceiling_steps // 3, seed=args.seed,
                                              return_means=True)
    ceiling = np.array([ceiling[k] for k in KEYS])
    r2_sub = r2_score(test_params[sub], pred[sub])
    boot = np.random.default_rng(args.seed)
    draws = [d for d in (boot.integers(0, len(sub), len(sub)) for _ in range(1000)) if len(np.unique(d)) > 2]
    frac_boot = np.array([r2_score(test_params[sub][d], pred[sub][d]) / r2_score(test_params[sub][d], means[d])
                          for d in draws])
    result.update(r2_subset=dict(zip(KEYS, r2_sub.tolist())), r2_ceiling=dict(zip(KEYS, ceiling.tolist())),
                  r2_ceiling_err=dict(zip(KEYS, np.std([r2_score(test_params[sub][d], means[d]) for d in draws],
                                                       0).tolist())),
                  ceiling_maps=len(sub), ceiling_map_index=test_idx[sub].tolist(),
                  ceiling_seconds_per_map=(time.perf_counter() - t0) / len(sub))
    r2_top_sub = r2_score(test_params[sub], pred_top[sub])
    result["r2_top_latent_subset"] = dict(zip(KEYS, r2_top_sub.tolist()))
    for i, key in enumerate(KEYS):
        result[f"r2_fraction_{key}"] = float(r2_sub[i] / ceiling[i])
        result[f"r2_fraction_top_latent_{key}"] = float(r2_top_sub[i] / ceiling[i])
        result[f"r2_fraction_{key}_16_84"] = np.percentile(frac_boot[:, i], [16, 84]).tolist()
    log("R^2 probe on the top latent / hierarchy (all test) / hierarchy (subset) / ceiling: " + ", ".join(
        f"{k} {t:.2f}/{a:.2f}/{b:.2f}/{c:.2f}" for k, t, a, b, c in zip(KEYS, r2_top, r2, r2_sub, ceiling)))

    # spectra: generated against real test maps
    t0 = time.perf_counter()
    n_pk = min(args.pk_maps, len(test_maps))
    real = test_maps[np.linspace(0, len(test_maps) - 1, n_pk).astype(int)]
    k, pk_real = spectra(real)
    _, pk_gen = spectra(vae.sample(n_pk, seed=args.seed + 2))
    _, pk_noisy = spectra(vae.sample(n_pk, seed=args.seed + 2, noise=True))
    names = {f"auto {c}": f"auto_{f}" for c, f in enumerate(FIELDS)}
    names.update({f"cross {c}-{d}": f"cross_{FIELDS[c]}_{FIELDS[d]}" for c in range(3) for d in range(c + 1, 3)})
    agree = spectra_agreement(k, pk_gen, pk_real)
    agree_noisy = spectra_agreement(k, pk_noisy, pk_real)
    result["pk_agree_kmax"] = {names[n]: v for n, v in agree.items()}
    result["pk_agree_kmax_with_pixel_noise"] = {names[n]: v for n, v in agree_noisy.items()}
    result["pk_agree_kmax_min_auto"] = min(v for n, v in agree.items() if n.startswith("auto"))
    result["pk_mean_ratio"] = {names[n]: (pk_gen[n].mean(0) / pk_real[n].mean(0)).tolist() for n in pk_real}
    result["pk"] = {"k": k.tolist(), "n_maps": n_pk, "k_nyquist": float(k[-1]), "seconds": time.perf_counter() - t0}
    log("P(k) agreement up to k [h/Mpc]: " + ", ".join(f"{names[n]} {v:.2f}" for n, v in agree.items()))

    result["throughput"] = throughput(threads=2, steps=2 if args.quick else 10, warmup=1 if args.quick else 3)
    result["images_per_second"] = result["throughput"]["images_per_second"]

    result.update(notebook_quick_time("04_vdvae_latents.ipynb"))  # as `python -m cosmonb run --quick` recorded it

    result["pass"] = {k: _passes(result[k], rule) for k, rule in TARGETS.items() if k in result}
    result["total_seconds"] = time.perf_counter() - t_start
    if args.quick:
        summary = {k: result[k] for k in ("r2", "r2_top_latent", "r2_ceiling", "elbo_bits_per_dim", "exact_bits_per_dim",
                                          "pk_agree_kmax", "images_per_second", "checkpoint_mb", "total_seconds")}
        summary.update({k: result[k] for k in result if k.startswith("r2_fraction_") and not k.endswith("_84")})
        print(json.dumps({"quick": True, "written": False, **summary, "pass": result["pass"]}, indent=2))
    else:
        write_results("vdvae", result)
    return result


if __name__ == "__main__":
    main()
