"""Foundation benchmarks -> bench/results/foundation.json.

* pk_speedup_vs_pylians: Pylians ``Pk_plane`` looped over 1000 64x64 maps, divided by
  cosmonb's batched ``power_spectrum`` on the same maps (best of 3 each; target >= 1).
* lh_sim_seconds: wall time to simulate an LH-sized set, 15,000 multifield maps
  (Mcdm, Mgas, HI, B) of 64x64 (target < 60 s on 2 cores).
* exact_sigma_omega_m, exact_sigma_sigma_8, exact_correlation: median marginal standard
  deviations and correlation of the exact posterior over 200 LH maps of the dark-matter
  channel (one map per simulation, 200 x 200 grid over the prior), with the coverage
  of the 68% / 95% regions.

Run: python bench/foundation.py   (or make bench)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import write_results  # noqa: E402

from cosmonb import cosmology, sims, stats  # noqa: E402
from cosmonb.inference import GridPosterior  # noqa: E402


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def pk_speed():
    params, _ = sims.lh_set(n_sims=67, seed=1)
    maps = sims.simulate(params[:1000], "Mcdm", seed=1)[:, 0]
    ours = best_of(lambda: stats.power_spectrum(maps, 25.0))
    try:
        import Pk_library as PKL
    except ImportError:
        return {"pk_cosmonb_seconds": ours, "pk_pylians_seconds": None, "pk_speedup_vs_pylians": None}

    def pylians():
        for m in maps:
            delta = (m / m.mean() - 1).astype(np.float32)
            PKL.Pk_plane(delta, 25.0, "None", 1, False)

    theirs = best_of(pylians)
    # the same numbers, or the speed comparison means nothing
    k, pk = stats.power_spectrum(maps[:3], 25.0)
    ref = PKL.Pk_plane((maps[0] / maps[0].mean() - 1).astype(np.float32), 25.0, "None", 1, False)
    assert np.allclose(ref.Pk, pk[0], rtol=1e-3), "cosmonb and Pylians disagree"
    return {"pk_cosmonb_seconds": round(ours, 4), "pk_pylians_seconds": round(theirs, 4),
            "pk_speedup_vs_pylians": round(theirs / ours, 2), "pk_n_maps": len(maps)}


def lh_speed():
    params, _ = sims.lh_set(n_sims=1000, seed=2)
    start = time.perf_counter()
    maps = sims.simulate(params, sims.FIELDS, n_pix=64, seed=2)
    seconds = time.perf_counter() - start
    assert maps.shape == (15000, 4, 64, 64) and np.all(np.isfinite(maps))
    return {"lh_sim_seconds": round(seconds, 2), "lh_maps": int(maps.shape[0]), "lh_channels": list(sims.FIELDS)}


def exact_widths(n_maps=200, n_grid=200):
    params, _ = sims.lh_set(n_sims=n_maps, seed=3)
    truth = params[:: sims.MAPS_PER_SIM]
    maps = sims.simulate(truth, "Mcdm", n_pix=64, seed=3)[:, 0]
    om = np.linspace(*cosmology.OMEGA_M_RANGE, n_grid)
    s8 = np.linspace(*cosmology.SIGMA_8_RANGE, n_grid)
    start = time.perf_counter()
    ll = sims.log_likelihood(maps, om[:, None], s8[None, :])
    seconds = time.perf_counter() - start
    posts = [GridPosterior(om, s8, ll[i]) for i in range(n_maps)]
    stds = np.array([p.std for p in posts])
    ranks = np.array([p.credible_mass(t[:2]) for p, t in zip(posts, truth)])
    fisher = np.linalg.inv(sims.fisher_matrix(0.3, 0.8, n_pix=64))
    return {
        "exact_sigma_omega_m": round(float(np.median(stds[:, 0])), 5),
        "exact_sigma_sigma_8": round(float(np.median(stds[:, 1])), 5),
        "exact_correlation": round(float(np.median([p.corr for p in posts])), 4),
        "exact_coverage_68": round(float(np.mean(ranks <= 0.68)), 4),
        "exact_coverage_95": round(float(np.mean(ranks <= 0.95)), 4),
        "exact_n_maps": n_maps, "exact_grid": n_grid,
        "exact_likelihood_grid_seconds": round(seconds, 2),
        "fisher_sigma_at_fiducial": [round(float(np.sqrt(fisher[i, i])), 5) for i in range(2)],
        "fisher_correlation_at_fiducial": round(float(fisher[0, 1] / np.sqrt(fisher[0, 0] * fisher[1, 1])), 4),
    }


if __name__ == "__main__":
    results = {}
    results.update(pk_speed())
    results.update(lh_speed())
    results.update(exact_widths())
    results["targets"] = {"pk_speedup_vs_pylians": ">= 1", "lh_sim_seconds": "< 60"}
    write_results("foundation", results)
