"""Benchmark of notebook 01: IMNN Fisher saturation, ABC and DELFI against exact posteriors.

Measures the three IMNNs of notebook 01 (a Gaussian-field network, a lognormal-field
network at (0.3, 0.8), and its refit at the score estimate of the observed map): their
Fisher saturation on large independent test sets, then ABC and DELFI on the observed
maps against the exact posteriors; writes ``bench/results/imnn.json``. It trains nothing:
``python -m cosmonb train imnn --preset cpu --out DIR`` makes the networks
(:mod:`cosmonb.recipes.imnn`), and ``--out cosmonb/pretrained`` ships them.

    python bench/imnn.py                    # the shipped networks (make bench)
    python bench/imnn.py --networks DIR     # networks trained into DIR by `python -m cosmonb train imnn`
    python bench/imnn.py --quick            # smoke test of this script (small test sets, nothing written)

Saturation = det F_IMNN / det F_exact at the fiducial point, on N_TEST_SIMS fresh
simulations. The headline is the *paired* estimate det F_IMNN / det F_score, where
F_score is the Fisher matrix of the exact score (the optimal compressor) measured on
the same simulations, so that the covariance noise common to both cancels; the plain
ratio is reported beside it (``imnn.measure_saturation``).

The observed maps, seeds, ABC and DELFI sizes are the defaults of the notebook's parameters
cell; only the saturation uses 10x more test simulations than the notebook (N_TEST_SIMS),
so the notebook's saturations scatter about these by the notebook's larger errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cosmonb  # noqa: E402
from _machine import write_results  # noqa: E402
from cosmonb import inference, sims  # noqa: E402
from cosmonb.inference import BoxPrior, Delfi, abc_rejection, compare_to_exact  # noqa: E402
from cosmonb.models import imnn  # noqa: E402
from cosmonb.recipes.imnn import PRESETS, REFIT_TARGET, load_imnn, refit_fiducial  # noqa: E402
from cosmonb.sims import make_simulator  # noqa: E402

# the notebook's defaults (parameters cell)
SEED = 0
THETA_TARGET_GRF = np.array([0.8, 0.65])
THETA_TARGET_LN = np.array(REFIT_TARGET["theta"])  # the refit network was refitted for this map
TARGET_SEED = REFIT_TARGET["seed"]
N_TEST_SIMS = 40000  # fiducial simulations for F_IMNN (and N_TEST_SIMS // 4 derivative pairs per parameter)
N_ABC, ABC_EPSILON = 20000, 0.5
DELFI_ROUNDS, DELFI_SIMS_PER_ROUND, DELFI_EPOCHS = 4, 500, 300
N_GRID = 120


def network(name, directory):
    """The network ``name`` from ``directory`` (None: the shipped ones) -> ``(compressor, train_seconds)``.

    This script only measures: ``python -m cosmonb train imnn --preset cpu --out DIR`` trains the three
    networks (``cosmonb.recipes.imnn``), ``--networks DIR`` measures them.
    """
    comp, ckpt = load_imnn(name, directory)
    return comp, ckpt["metadata"]["metrics"]["train_seconds"]


def saturation(model, sim, theta, delta, seed):
    """(statistics on N_TEST_SIMS fresh simulations, saturation numbers: paired headline, plain, errors)."""
    r = imnn.measure_saturation(model, sim, theta, delta, sim.fisher(theta), n_s=N_TEST_SIMS,
                                n_d=N_TEST_SIMS // 4, seed=seed, exact_score=sim.score)
    numbers = {"paired": r["saturation_paired"], "paired_stderr": r["stderr_paired"],
               "unpaired": r["saturation"], "unpaired_stderr": r["stderr"],
               "exact_score_saturation": r["score_saturation"]}
    print(f"  saturation at {np.round(theta, 4)}: {numbers}", flush=True)
    return r["stats"], numbers


def clean(d):
    return {k: v for k, v in d.items() if k != "std_ratio"}


def infer(comp, sim, prior, target, exact, seed, names, with_abc):
    """Fisher Gaussian, (ABC,) and DELFI for one observed map, compared with the exact posterior."""
    theta_hat = comp([target])[0]
    stats = comp.stats
    sc = lambda th, s, idx: comp(sim(th, s, idx))
    out = {"theta_hat": theta_hat.tolist(), "exact_mean": exact.mean.tolist(), "exact_std": exact.std.tolist(),
           "gaussian_vs_exact": clean(compare_to_exact((theta_hat, np.linalg.inv(stats.fisher)), exact))}
    if with_abc:
        abc = abc_rejection(sc, prior, theta_hat, stats.fisher, n_sims=N_ABC, epsilon=ABC_EPSILON, seed=seed)
        out.update(abc_simulations=abc.n_sims, abc_accepted=abc.n_accepted, abc_epsilon_fisher_metric=abc.epsilon,
                   abc_vs_exact=clean(compare_to_exact(abc.samples, exact)), abc_seconds=abc.seconds)
    delfi = Delfi(prior, sc, scale=np.sqrt(np.diag(np.linalg.inv(stats.fisher))), n_grid=N_GRID,
                  epochs=DELFI_EPOCHS, seed=seed + 1, names=names)
    posts = delfi.run(theta_hat, rounds=DELFI_ROUNDS, sims_per_round=DELFI_SIMS_PER_ROUND)
    out.update(delfi_simulations=delfi.n_sims, delfi_vs_exact=clean(compare_to_exact(posts[-1], exact)),
               delfi_vs_exact_per_round=[clean(compare_to_exact(p, exact)) for p in posts],
               delfi_seconds=delfi.seconds)
    print(f"  {names}: { {k: v for k, v in out.items() if 'vs_exact' in k and 'round' not in k} }", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default=None,
                        help="folder of networks trained by `python -m cosmonb train imnn --out DIR` "
                             "(default: the shipped cosmonb/pretrained/)")
    parser.add_argument("--quick", action="store_true", help="small test sets and sizes: a smoke test, nothing written")
    args = parser.parse_args(argv)
    global N_TEST_SIMS, N_ABC, DELFI_ROUNDS, DELFI_SIMS_PER_ROUND, DELFI_EPOCHS, N_GRID
    if args.quick:
        N_TEST_SIMS, N_ABC, DELFI_ROUNDS, DELFI_SIMS_PER_ROUND, DELFI_EPOCHS, N_GRID = 2000, 4000, 2, 250, 120, 80
    cosmonb.seed_everything(SEED)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t_all = time.perf_counter()
    out = {"command": " ".join(["python", "bench/imnn.py"] + (sys.argv[1:] if argv is None else argv)),
           "networks": args.networks or "shipped (cosmonb/pretrained)", "test_sims": {"fiducial": N_TEST_SIMS, "derivative_pairs_per_param": N_TEST_SIMS // 4},
           "sizes": {}}
    train_seconds = {}  # per network, all its stages

    # ------------------------------------------------------------------ Part A: Gaussian fields
    pre = PRESETS["grf"]
    sim = make_simulator(pre["simulator"])
    theta_fid, delta, prior = np.array(pre["theta_fid"]), np.array(pre["delta"]), BoxPrior(**pre["prior"])
    out["sizes"]["grf"] = {k: pre[k] for k in ("simulator", "theta_fid", "delta", "prior", "model")}
    out["sizes"]["grf"].update(train=pre["full"], polish=pre["polish"])
    print("[grf]", flush=True)
    comp, train_seconds["grf"] = network("imnn_grf", args.networks)
    stats, out["fisher_saturation_grf_detail"] = saturation(comp.model, sim, theta_fid, delta, SEED + 123_456)
    out["fisher_saturation_grf"] = out["fisher_saturation_grf_detail"]["paired"]
    comp = imnn.IMNNCompressor(comp.model, stats)  # the notebook's compressor: statistics from these simulations
    target = sim([THETA_TARGET_GRF], seed=TARGET_SEED)[0]
    exact = inference.power_law_posterior(target[0], (prior.low[0], prior.high[0]), (prior.low[1], prior.high[1]),
                                       n_grid=N_GRID)
    grf = infer(comp, sim, prior, target, exact, SEED + 1, ("A", "B"), with_abc=True)
    out["grf_target"] = {"truth": THETA_TARGET_GRF.tolist(), **{k: grf.pop(k) for k in
                                                                ("theta_hat", "exact_mean", "exact_std")}}
    out["grf_gaussian_vs_exact"] = grf.pop("gaussian_vs_exact")
    out.update(grf)

    # ------------------------------------------------------------------ Part B: lognormal fields
    pre = PRESETS["lognormal"]
    sim = make_simulator(pre["simulator"])
    theta_fid, delta, prior = np.array(pre["theta_fid"]), np.array(pre["delta"]), BoxPrior(**pre["prior"])
    out["sizes"]["lognormal"] = {k: pre[k] for k in ("simulator", "theta_fid", "delta", "prior", "model")}
    out["sizes"]["lognormal"].update(train=pre["full"], polish=pre["polish"], refit=pre["refit"])
    print("[lognormal]", flush=True)
    comp, train_seconds["lognormal"] = network("imnn_lognormal", args.networks)
    stats, out["fisher_saturation_lognormal_detail"] = saturation(comp.model, sim, theta_fid, delta, SEED + 123_457)
    out["fisher_saturation_lognormal"] = out["fisher_saturation_lognormal_detail"]["paired"]
    comp = imnn.IMNNCompressor(comp.model, stats)
    target = sim([THETA_TARGET_LN], seed=TARGET_SEED)[0]
    exact = sims.exact_posterior(np.exp(target[0].astype(float)), n_grid=N_GRID, zoom=False)  # DELFI's grid
    theta_hat = refit_fiducial(comp, sim)  # what `python -m cosmonb train imnn_lognormal_refit` refits at
    print(f"[lognormal refit at {theta_hat.round(4)}]", flush=True)
    refit, train_seconds["lognormal_refit"] = network("imnn_lognormal_refit", args.networks)
    gap = refit.theta_fid - theta_hat
    if np.sqrt(gap @ sim.fisher(theta_fid) @ gap) > 0.5:
        raise SystemExit(f"the refit network is at {refit.theta_fid}, the estimate is {theta_hat}: retrain it with "
                         "`python -m cosmonb train imnn_lognormal_refit --preset cpu`")
    theta_refit = refit.theta_fid
    _, out["fisher_saturation_lognormal_fiducial_net_at_estimate"] = saturation(comp.model, sim, theta_refit, delta,
                                                                                SEED + 123_458)
    stats, out["fisher_saturation_lognormal_refit"] = saturation(refit.model, sim, theta_refit, delta,
                                                                 SEED + 123_458)
    ln = infer(imnn.IMNNCompressor(refit.model, stats), sim, prior, target, exact, SEED + 3,
               ("Omega_m", "sigma_8"), with_abc=False)
    out["lognormal_target"] = {"truth": THETA_TARGET_LN.tolist(), "theta_hat_fiducial_net": theta_hat.tolist(),
                               "theta_hat_refit_net": ln.pop("theta_hat"), "exact_mean": ln.pop("exact_mean"),
                               "exact_std": ln.pop("exact_std")}
    out["lognormal_gaussian_vs_exact"] = ln.pop("gaussian_vs_exact")
    out.update({k.replace("delfi_", "delfi_lognormal_"): v for k, v in ln.items()})

    out["train_seconds"] = float(sum(train_seconds.values()))
    out["train_seconds_per_network"] = train_seconds
    out["bench_seconds"] = time.perf_counter() - t_all
    out["targets"] = {"fisher_saturation_grf": ">= 0.95", "fisher_saturation_lognormal": ">= 0.90",
                      "delfi_simulations": "<= 2000",
                      "measures": "fisher_saturation_* = det F_IMNN / det F_exact, paired with the exact score on "
                                  "the same simulations (detail: paired and unpaired with jackknife errors); "
                                  "mean_offset_sigma = Mahalanobis offset of the means in exact-posterior sigmas; "
                                  "area_ratio = sqrt(det Cov / det Cov_exact), the ratio of 68% ellipse areas; "
                                  "hpd68_area_ratio = ratio of the 68% HPD region areas on the grid; "
                                  "kl = KL(exact || DELFI) on the grid, nats"}
    out["meets_targets"] = {"fisher_saturation_grf": out["fisher_saturation_grf"] >= 0.95,
                            "fisher_saturation_lognormal": out["fisher_saturation_lognormal"] >= 0.90,
                            "delfi_simulations": out["delfi_simulations"] <= 2000}
    if args.quick:  # a smoke test: nothing written
        print(json.dumps(out, indent=2))
    else:
        write_results("imnn", out)


if __name__ == "__main__":
    main()
