"""Benchmark of notebook 03 (HIGlow, a conditional Glow for HI maps); writes ``bench/results/higlow.json``.

    python bench/higlow.py                    # score the shipped checkpoint (make bench; ~20-40 min on 2 cores)
    python bench/higlow.py --networks DIR     # a checkpoint made by `python -m cosmonb train higlow --out DIR`
    python bench/higlow.py --quick            # smoke test: 5 maps, a 20 x 20 grid, nothing written
    python bench/higlow.py --throughput       # training images per second of the paper-size model, one JSON line
    python bench/higlow.py --throughput --write   # the same, put into bench/results/higlow.json (rest kept)
    python bench/higlow.py --throughput --reference DIR --write   # beside the paper's code (a checkout in DIR)

It trains nothing: ``python -m cosmonb train higlow --preset cpu --out DIR`` makes the model
(:mod:`cosmonb.recipes.glow`) and ``--out cosmonb/pretrained`` ships it.

Targets (issue 11), all on held-out maps (the test split of ``recipes.glow.glow_data``, the
simulations the checkpoint never saw, made alone with ``recipes.glow.glow_split``):

* ``rmse_ratio_omega_m``, ``rmse_ratio_sigma_8`` <= 1.25: the RMSE of HIGlow's MMSE (eq. 2 on
  a 50 x 50 grid over the prior) over ``--maps`` (>= 100) maps, divided by the RMSE of the
  exact posterior means with the feedback marginalised (``sims.marginal_posterior``, emcee)
  of the same maps. The raw RMSEs are written beside them.
* ``coverage_68`` in [0.60, 0.76], ``coverage_95`` in [0.90, 0.99]: the fraction of truths
  inside HIGlow's highest-density regions over the same maps. Beside them, not in place of them,
  ``tempered``: the same scores for eq. 2 with a likelihood temperature T (``p ∝ L^(1/T)``)
  fitted on ``--calibration-maps`` (50) maps of the validation split, a post-hoc calibration of
  an overconfident learned likelihood (``cosmonb.inference.fit_temperature``).
* ``pk_max_abs_z`` < 3: the largest |z| over the k bins up to Nyquist of the mean P(k) of 500
  generated maps against 500 simulated ones, parameters drawn from the prior (fixed
  parameters (0.3, 0.8) reported beside it, with the mean and scatter ratios).
* ``bits_per_dim`` on all test maps, against ``exact_bits_per_dim``: the simulator's exact
  density of the model's variable z given all six parameters (the entropy floor).
* ``posterior_seconds`` < 30: one map on the 50 x 50 grid on this CPU (median over the maps).
* ``images_per_second`` (``--throughput``): training steps (forward, backward, Adam, as the
  trainer runs them) of the paper's model (6 x 20 steps, width 16) at batch 8 on 64^2 maps
  with 2 torch threads, after warm-up; one step profiled with torch.profiler (top ops in the
  JSON). With ``--reference DIR`` (a checkout of the paper's repository, friedmanroy/HI-generation)
  its ``CondGlow`` at the same size is timed beside ours, in turn, in the same process:
  ``reference_implementation`` in the JSON (target: ours at least as fast).
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
from _machine import (checkpoint_summary, notebook_quick_time, time_training_steps, update_results,  # noqa: E402
                      write_results)
from cosmonb import sims, stats  # noqa: E402
from cosmonb.inference.diagnostics import fit_temperature, hpd_coverage  # noqa: E402
from cosmonb.models.glow import ConditionalGlow  # noqa: E402
from cosmonb.recipes.glow import (GLOW_NAME, PRESETS, HIGlow, exact_bits_per_dim, glow_split,  # noqa: E402
                                  glow_split_index)

TARGETS = {"rmse_ratio_omega_m": ("<=", 1.25), "rmse_ratio_sigma_8": ("<=", 1.25),
           "coverage_68": ("in", (0.60, 0.76)), "coverage_95": ("in", (0.90, 0.99)),
           "pk_max_abs_z": ("<", 3.0), "posterior_seconds": ("<", 30.0),
           "checkpoint_mb": ("<=", 5.0), "notebook_quick_seconds": ("<", 90.0)}
PAPER_RMSE = {"omega_m": 0.058, "sigma_8": 0.065}
#: The paper's code. Not a package and not to be copied here: ``--reference DIR`` times a checkout of it.
REFERENCE_REPOSITORY = "https://github.com/friedmanroy/HI-generation"
#: Its HIGlow as ``condHI_train.py`` builds it (``params``: 1 channel, affine coupling, learned priors,
#: 2 conditions), at the paper's size: 6 blocks x 20 flows, width 16 (the script itself has width 32).
REFERENCE_CONFIG = {"n_channels": 1, "cond_features": 2, "n_blocks": 6, "n_flows": 20, "hidden_width": 16,
                    "affine": True, "learn_priors": True}
#: What the JSON says when no checkout was given.
REFERENCE_NOT_RUN = {"repository": REFERENCE_REPOSITORY, "side_by_side": False,
                     "why": "not given: pass --reference DIR (a checkout of the repository) to time it beside ours"}


# --------------------------------------------------------------------------- throughput
def throughput(threads: int = 2, batch: int = 8, warmup: int = 3, steps: int = 10, profile: bool = True,
               seed: int = 0) -> dict:
    """Training images per second of the paper-size HIGlow (forward, backward, Adam) and a profile of one step."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    spec = PRESETS["paper"]["model"]
    model = ConditionalGlow(**spec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # what cosmonb.train's default optimiser builds
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, spec["in_channels"], spec["n_pix"], spec["n_pix"], generator=g)
    theta = torch.rand(batch, spec["cond_dim"], generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.loss((x, theta))
        loss.backward()
        opt.step()

    out = time_training_steps(step, model, batch=batch, steps=steps, warmup=warmup, profile=profile)
    out.update({"threads": threads, "model": spec, "optimizer": "torch.optim.Adam(lr=1e-3)"})
    return out


def reference_throughput(checkout, threads: int = 2, batch: int = 8, warmup: int = 3, steps: int = 10,
                         profile: bool = True, seed: int = 0) -> dict:
    """The same timing of the paper's own ``CondGlow`` (``modules/models.py`` of a checkout of its repository).

    Built with :data:`REFERENCE_CONFIG`; as ``condHI_train.py`` does, one forward pass without
    gradients sizes its learned priors before Adam is made; its loss is the script's,
    ``-mean(log p) / (C H W)``. Same batch, threads, optimiser and timer as :func:`throughput`.
    """
    checkout = Path(checkout).resolve()
    if not (checkout / "modules" / "models.py").is_file():
        raise FileNotFoundError(f"--reference: {checkout} is not a checkout of {REFERENCE_REPOSITORY} "
                                "(no modules/models.py)")
    sys.path.insert(0, str(checkout))
    try:
        from modules.models import CondGlow
    finally:
        sys.path.remove(str(checkout))
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = CondGlow(**REFERENCE_CONFIG)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, 64, 64, generator=g)
    theta = torch.rand(batch, 2, generator=g)
    with torch.no_grad():
        model(x, theta)  # sizes the learned priors (condHI_train.py does this before making the optimiser)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        _, log_p = model(x, theta)
        loss = -log_p.mean() / x[0].numel()
        loss.backward()
        opt.step()

    out = time_training_steps(step, model, batch=batch, steps=steps, warmup=warmup, profile=profile)
    out.update({"threads": threads, "model": REFERENCE_CONFIG, "optimizer": "torch.optim.Adam(lr=1e-3)"})
    return out


def side_by_side(checkout, threads: int = 2, rounds: int = 3, **kw) -> dict:
    """Ours and the reference timed in turn, ``rounds`` times each (the median of each kept), in one process."""
    ours, ref = [], []
    for r in range(rounds):
        ours.append(throughput(threads=threads, profile=r == 0, **kw))
        ref.append(reference_throughput(checkout, threads=threads, profile=r == 0, **kw))
    med = lambda runs: float(np.median([t["images_per_second"] for t in runs]))  # noqa: E731
    return {"ours": {**ours[0], "images_per_second": med(ours), "rounds": [t["images_per_second"] for t in ours]},
            "reference": {**ref[0], "images_per_second": med(ref), "rounds": [t["images_per_second"] for t in ref],
                          "repository": REFERENCE_REPOSITORY, "checkout": str(checkout)},
            "speedup": med(ours) / med(ref), "side_by_side": True}


def measure_throughput(checkout, threads: int, quick: bool, profile: bool = True) -> tuple[dict, dict]:
    """``(ours, reference_implementation)``: :func:`side_by_side` with a checkout, else ours alone."""
    sizes = {"steps": 3 if quick else 10, "warmup": 1 if quick else 3}
    if checkout is None:
        return throughput(threads=threads, profile=profile, **sizes), REFERENCE_NOT_RUN
    both = side_by_side(checkout, threads=threads, rounds=1 if quick else 3, **sizes)
    return both["ours"], {k: v for k, v in both.items() if k != "ours"}


# --------------------------------------------------------------------------- generator
def pk_scores(glow: HIGlow, n_maps: int, seed: int) -> dict:
    """P(k) of ``n_maps`` generated against ``n_maps`` simulated maps: from the prior, and at (0.3, 0.8)."""
    n_pix = glow.n_pix
    k, _ = stats.power_spectrum_bins(n_pix, sims.BOX_SIZE)
    upto = k <= math.pi * n_pix / sims.BOX_SIZE
    prior = sims.sample_prior(n_maps, seed=seed + 101, latin_hypercube=True)
    fixed = sims.sample_prior(n_maps, seed=seed + 103)
    fixed[:, :2] = (0.3, 0.8)
    out = {"n_maps": n_maps, "n_bins": int(upto.sum()), "k_max": float(k[upto][-1])}
    for key, params, gen_seed in (("prior", prior, seed + 102), ("fixed", fixed, seed + 104)):
        sim = sims.simulate(params, "HI", n_pix=n_pix, seed=seed + (101 if key == "prior" else 103))
        gen = glow.sample(params[:, :2], n=n_maps, seed=gen_seed, redraw=True)
        redrawn = glow.redrawn
        z_gen, z_sim = (glow.to_model_units(m).abs().amax(dim=(1, 2, 3)).numpy() for m in (gen, sim))
        pg, ps = (stats.power_spectrum(m[:, 0])[1][:, upto] for m in (gen, sim))
        z = stats.pk_z_scores(pg, ps)
        mean_ratio = pg.mean(0) / ps.mean(0)
        scatter_ratio = pg.std(0, ddof=1) / ps.std(0, ddof=1)
        out[key] = {"max_abs_z": float(np.abs(z).max()), "mean_z2": float(np.mean(z ** 2)), "z": z.tolist(),
                    "mean_ratio_range": [float(mean_ratio.min()), float(mean_ratio.max())],
                    "scatter_ratio_range": [float(scatter_ratio.min()), float(scatter_ratio.max())],
                    "redrawn_non_finite": redrawn, "wild_fraction": float(np.mean(z_gen > z_sim.max()))}
    return out


# --------------------------------------------------------------------------- posteriors
def posteriors(glow: HIGlow, maps, params, n_grid: int, exact_steps: int, seed: int, log=print) -> dict:
    """HIGlow's grid posterior and the exact marginal posterior of each map; RMSEs, coverage, timings."""
    glow_posts, exact_posts, seconds = [], [], []
    t_start = time.perf_counter()
    for i, x in enumerate(maps):
        t = time.perf_counter()
        glow_posts.append(glow.posterior(x, n_grid))
        seconds.append(time.perf_counter() - t)
        exact_posts.append(sims.marginal_posterior(x, ("HI",), n_steps=exact_steps, burn=int(0.3 * exact_steps),
                                                   seed=seed + i))
        if (i + 1) % 10 == 0 or i + 1 == len(maps):
            log(f"  posteriors {i + 1}/{len(maps)} ({time.perf_counter() - t_start:.0f} s)")
    truth = params[:, :2]
    mmse = np.array([p.mean for p in glow_posts])
    exact_mean = np.array([p.mean for p in exact_posts])
    rmse = np.sqrt(((mmse - truth) ** 2).mean(0))
    rmse_exact = np.sqrt(((exact_mean - truth) ** 2).mean(0))
    cov = hpd_coverage(glow_posts, truth, levels=(0.68, 0.95))
    cov_exact = hpd_coverage(exact_posts, truth, levels=(0.68, 0.95))
    return {
        "n_maps": len(maps), "grid": n_grid, "exact_mcmc": {"walkers": 32, "steps": exact_steps,
                                                           "burn": int(0.3 * exact_steps)},
        "rmse_omega_m": float(rmse[0]), "rmse_sigma_8": float(rmse[1]),
        "rmse_exact_omega_m": float(rmse_exact[0]), "rmse_exact_sigma_8": float(rmse_exact[1]),
        "rmse_ratio_omega_m": float(rmse[0] / rmse_exact[0]), "rmse_ratio_sigma_8": float(rmse[1] / rmse_exact[1]),
        "rmse_prior": 0.4 / math.sqrt(12), "rmse_paper_omega_m": PAPER_RMSE["omega_m"],
        "rmse_paper_sigma_8": PAPER_RMSE["sigma_8"],
        "coverage_68": float(cov["coverage"][0]), "coverage_95": float(cov["coverage"][1]),
        "coverage_stderr": cov["stderr"].tolist(),
        "exact_coverage_68": float(cov_exact["coverage"][0]), "exact_coverage_95": float(cov_exact["coverage"][1]),
        "posterior_std_median": np.median([p.std for p in glow_posts], 0).tolist(),
        "exact_posterior_std_median": np.median([p.std for p in exact_posts], 0).tolist(),
        "ess_median": float(np.median([p.raw.ess for p in glow_posts])),
        "posterior_seconds": float(np.median(seconds)), "posterior_seconds_max": float(np.max(seconds)),
        "mmse": mmse.tolist(), "exact_mean": exact_mean.tolist(), "truth": truth.tolist(),
        "_grid_posteriors": glow_posts,  # for the tempered scores; not written
    }


def tempered_scores(glow: HIGlow, val_maps, val_params, post: dict, n_grid: int, log=print) -> dict:
    """Eq. 2 with a likelihood temperature fitted on validation maps, scored on the test maps.

    ``post`` is :func:`posteriors`' result on the test maps. T is chosen on the validation
    split (:func:`cosmonb.inference.fit_temperature`: 68% and 95% HPD coverage nominal), never
    on the maps it is scored on; tempering widens the posterior by about sqrt(T) and leaves
    its bias, so the RMSE of the posterior mean barely moves.
    """
    t0 = time.perf_counter()
    val_posts = [glow.posterior(x, n_grid) for x in val_maps]
    fit = fit_temperature(val_posts, val_params[:, :2])
    temp = fit["temperature"]
    truth = np.asarray(post["truth"])
    hot = [p.tempered(temp) for p in post["_grid_posteriors"]]
    cov = hpd_coverage(hot, truth, levels=(0.68, 0.95))
    rmse = np.sqrt(((np.array([p.mean for p in hot]) - truth) ** 2).mean(0))
    rmse_exact = np.array([post["rmse_exact_omega_m"], post["rmse_exact_sigma_8"]])
    k = int(np.argmin(np.abs(fit["temperatures"] - temp)))
    out = {"likelihood_temperature": temp, "validation_maps": len(val_maps),
           "validation_coverage": fit["coverage"][k].tolist(),
           "coverage_68": float(cov["coverage"][0]), "coverage_95": float(cov["coverage"][1]),
           "rmse_omega_m": float(rmse[0]), "rmse_sigma_8": float(rmse[1]),
           "rmse_ratio_omega_m": float(rmse[0] / rmse_exact[0]), "rmse_ratio_sigma_8": float(rmse[1] / rmse_exact[1]),
           "posterior_std_median": np.median([p.std for p in hot], 0).tolist(), "seconds": time.perf_counter() - t0}
    log(f"tempered (T = {temp:.1f} from {len(val_maps)} validation maps): coverage 68% {out['coverage_68']:.2f}, "
        f"95% {out['coverage_95']:.2f}; RMSE ratio {out['rmse_ratio_omega_m']:.2f}, {out['rmse_ratio_sigma_8']:.2f}")
    return out


# --------------------------------------------------------------------------- main
def _passes(value, rule) -> bool:
    op, target = rule
    if op == "in":
        return bool(target[0] <= value <= target[1])
    return bool(value <= target) if op == "<=" else bool(value < target)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default=None,
                    help="folder of higlow.pt + MANIFEST.json from `python -m cosmonb train higlow --out DIR` "
                         "(default: the shipped cosmonb/pretrained)")
    ap.add_argument("--quick", action="store_true", help="smoke test: few maps, small grid, nothing written")
    ap.add_argument("--throughput", action="store_true",
                    help="only the training throughput of the paper-size model: print one JSON line")
    ap.add_argument("--maps", type=int, default=100, help="held-out maps for the posterior targets (>= 100)")
    ap.add_argument("--grid", type=int, default=50, help="grid points per parameter of HIGlow's posterior")
    ap.add_argument("--exact-steps", type=int, default=1000, help="emcee steps of the exact marginal posterior")
    ap.add_argument("--pk-maps", type=int, default=500, help="generated and simulated maps for P(k)")
    ap.add_argument("--calibration-maps", type=int, default=50,
                    help="validation maps that fit the likelihood temperature of the tempered scores (0: skip)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--reference", default=None, metavar="DIR",
                    help="a checkout of friedmanroy/HI-generation: time its CondGlow beside ours (same size, batch, "
                         "threads and loop; 3 rounds each, in turn)")
    ap.add_argument("--write", action="store_true",
                    help="with --throughput: put the measurement into bench/results/higlow.json (the rest kept)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.throughput:
        t, reference = measure_throughput(args.reference, args.threads, args.quick, profile=args.write)
        reference = reference if args.reference else None
        line = {"images_per_second": round(t["images_per_second"], 3), "params": t["params"]}
        if reference:
            line["reference"] = {"images_per_second": round(reference["reference"]["images_per_second"], 3),
                                 "params": reference["reference"]["params"]}
        print(json.dumps(line))
        if args.write:  # into the written results, e.g. after a full run whose throughput stage shared the CPU
            def put(result):
                result["throughput"], result["images_per_second"] = t, t["images_per_second"]
                if reference:
                    result["reference_implementation"] = reference
                result["pass"] = {k: _passes(result[k], rule) for k, rule in TARGETS.items() if k in result}
            update_results("higlow", put, "throughput re-measured by `python bench/higlow.py --throughput --write`"
                           + (" --reference DIR" if reference else ""))
        return t
    if args.quick:
        args.maps, args.grid, args.exact_steps, args.pk_maps = min(args.maps, 5), min(args.grid, 20), 400, 100
        args.calibration_maps = min(args.calibration_maps, 5)
    elif args.maps < 100:
        ap.error("--maps: the targets are measured on at least 100 held-out maps")
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, args.threads))
    cosmonb.seed_everything(args.seed)
    log = print

    glow = HIGlow.load(args.networks)
    ckpt = glow.checkpoint
    extra = ckpt["config"]["extra"]
    preset, data_seed = extra["preset"], extra.get("trainer", {}).get("seed", 0)
    result = {"networks": args.networks or "shipped (cosmonb/pretrained)", "quick": args.quick,
              "targets": {k: [op, list(v) if isinstance(v, tuple) else v] for k, (op, v) in TARGETS.items()},
              "checkpoint": checkpoint_summary(ckpt, GLOW_NAME, args.networks, preset, glow.model.config),
              "threads": torch.get_num_threads()}
    result["checkpoint_mb"] = result["checkpoint"]["bytes"] / 1e6

    # held-out maps: the test split, spread over its simulations
    test_index = glow_split_index(preset, seed=data_seed)["test"]
    t0 = time.perf_counter()
    maps, params, index = glow_split(preset, "test", seed=data_seed)
    per_sim = PRESETS[preset]["data"]["maps_per_sim"]
    result["data"] = {"preset": preset, "test_maps": len(index), "test_simulations": len(np.unique(index // per_sim)),
                      "seconds": time.perf_counter() - t0}
    assert np.array_equal(index, test_index)

    # bits per dimension on every test map, against the exact floor
    t0 = time.perf_counter()
    chunks = np.array_split(np.arange(len(maps)), max(1, len(maps) // 64))
    bpd = np.concatenate([glow.bits_per_dim(maps[c], params[c, :2]) for c in chunks])
    bpd_exact = exact_bits_per_dim(glow, maps, params)
    result.update(bits_per_dim=float(bpd.mean()), bits_per_dim_stderr=float(bpd.std(ddof=1) / math.sqrt(len(bpd))),
                  exact_bits_per_dim=float(bpd_exact.mean()), bits_per_dim_excess=float((bpd - bpd_exact).mean()),
                  bits_per_dim_maps=len(bpd), bits_per_dim_seconds=time.perf_counter() - t0)
    log(f"bits/dim {result['bits_per_dim']:.4f} (exact floor {result['exact_bits_per_dim']:.4f}) on {len(bpd)} maps")

    # P(k)
    t0 = time.perf_counter()
    result["pk"] = pk_scores(glow, args.pk_maps, args.seed)
    result["pk_max_abs_z"] = result["pk"]["prior"]["max_abs_z"]
    result["pk_max_abs_z_fixed"] = result["pk"]["fixed"]["max_abs_z"]
    result["pk"]["seconds"] = time.perf_counter() - t0
    log(f"P(k): max |z| {result['pk_max_abs_z']:.2f} (prior), {result['pk_max_abs_z_fixed']:.2f} (fixed)")

    # posteriors of held-out maps
    pick = np.linspace(0, len(maps) - 1, min(args.maps, len(maps))).astype(int)
    post = posteriors(glow, maps[pick], params[pick], args.grid, args.exact_steps, args.seed, log=log)
    post["map_index"] = index[pick].tolist()
    if args.calibration_maps:
        val_maps, val_params, val_index = glow_split(preset, "val", seed=data_seed)
        vpick = np.linspace(0, len(val_maps) - 1, min(args.calibration_maps, len(val_maps))).astype(int)
        result["tempered"] = tempered_scores(glow, val_maps[vpick], val_params[vpick], post, args.grid, log=log)
        result["tempered"]["validation_map_index"] = val_index[vpick].tolist()
    post.pop("_grid_posteriors")
    result["posteriors"] = post
    for key in ("rmse_omega_m", "rmse_sigma_8", "rmse_exact_omega_m", "rmse_exact_sigma_8", "rmse_ratio_omega_m",
                "rmse_ratio_sigma_8", "coverage_68", "coverage_95", "exact_coverage_68", "exact_coverage_95",
                "posterior_seconds"):
        result[key] = post[key]
    if args.grid != 50:
        result["posterior_seconds_note"] = f"measured on a {args.grid} x {args.grid} grid, not 50 x 50"

    # training throughput of the paper-size model, beside the paper's code when --reference gives a checkout
    result["throughput"], result["reference_implementation"] = measure_throughput(args.reference, 2, args.quick)
    result["images_per_second"] = result["throughput"]["images_per_second"]

    result.update(notebook_quick_time("03_higlow.ipynb"))  # as `python -m cosmonb run --quick` recorded it

    result["pass"] = {k: _passes(result[k], rule) for k, rule in TARGETS.items() if k in result}
    result["total_seconds"] = time.perf_counter() - t_start
    if args.quick:
        summary = {k: result[k] for k in ("bits_per_dim", "exact_bits_per_dim", "pk_max_abs_z", "rmse_omega_m",
                                          "rmse_sigma_8", "rmse_ratio_omega_m", "rmse_ratio_sigma_8", "coverage_68",
                                          "coverage_95", "posterior_seconds", "images_per_second", "checkpoint_mb",
                                          "total_seconds")}
        print(json.dumps({"quick": True, "written": False, **summary, "pass": result["pass"]}, indent=2))
    else:
        write_results("higlow", result)
    return result


if __name__ == "__main__":
    main()
