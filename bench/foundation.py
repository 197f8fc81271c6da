"""Foundation benchmarks -> bench/results/foundation.json.

* pk_speedup_vs_pylians: Pylians ``Pk_plane`` looped over 1000 64x64 maps, divided by
  cosmonb's batched ``power_spectrum`` on the same maps (best of 3 each; target >= 1).
* lh_sim_seconds: wall time to simulate an LH-sized set, 15,000 multifield maps
  (Mcdm, Mgas, HI, B) of 64x64 (target < 60 s on 2 cores).
* exact_sigma_omega_m, exact_sigma_sigma_8 (simulator v2: keyed by map size, 64 and 256):
  median marginal standard deviations of the exact dark-matter posterior over LH maps
  (200 at 64^2, 60 at 256^2; sims.exact_posterior's zoomed grid), with coverages in exact_widths_v2;
  fisher_*_at_fiducial: the Fisher forecast of one 64^2 map at (0.3, 0.8).
* neighbour_correlation_log_mcdm (64, 128, 256), pixel_scatter_dex_64_vs_block_averaged_256,
  max_channel_spearman (log channels at fixed parameters), r2_ceiling_gas (R^2 of the exact
  posterior mean from Mgas, HI, B over 200 LH maps of 64^2, printed beside the VDVAE probe).

Run: python bench/foundation.py   (or make bench)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import write_results  # noqa: E402

from cosmonb import sims, stats  # noqa: E402


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


def fisher_at_fiducial():
    """The Fisher forecast of one 64^2 Mcdm map at (0.3, 0.8): sigmas and correlation."""
    inv = np.linalg.inv(sims.fisher_matrix(0.3, 0.8, n_pix=64))
    return {"fisher_sigma_at_fiducial": [round(float(np.sqrt(inv[i, i])), 5) for i in range(2)],
            "fisher_correlation_at_fiducial": round(float(inv[0, 1] / np.sqrt(inv[0, 0] * inv[1, 1])), 4)}


def neighbour_correlations(n_maps=16):
    """Neighbour-pixel correlation of ln Mcdm at 64, 128, 256 (fiducial), and the pixel scatter of
    simulate(n_pix=64) against 256^2 maps block-averaged to 64^2 (dex)."""
    out = {}
    for n in (64, 128, 256):
        y = np.log(sims.simulate(np.tile(sims.FIDUCIAL, (n_maps, 1)), "Mcdm", n_pix=n, seed=4)[:, 0])
        out[str(n)] = round(float(np.mean([np.corrcoef(m[:, :-1].ravel(), m[:, 1:].ravel())[0, 1]
                                           for m in y])), 4)
    m64 = sims.simulate(np.tile(sims.FIDUCIAL, (n_maps, 1)), "Mcdm", n_pix=64, seed=5)[:, 0]
    m256 = sims.simulate(np.tile(sims.FIDUCIAL, (n_maps, 1)), "Mcdm", n_pix=256, seed=5)[:, 0]
    block = m256.reshape(n_maps, 64, 4, 64, 4).mean((2, 4))
    return {"neighbour_correlation_log_mcdm": out,
            "pixel_scatter_dex_64_vs_block_averaged_256": [round(float(np.log10(m64).std()), 4),
                                                           round(float(np.log10(block).std()), 4)]}


def channel_spearman(n_maps=8):
    from scipy.stats import spearmanr

    maps = sims.simulate(np.tile(sims.FIDUCIAL, (n_maps, 1)), sims.FIELDS, n_pix=64, seed=6)
    logs = np.log(maps).transpose(1, 0, 2, 3).reshape(len(sims.FIELDS), -1)
    rho = spearmanr(logs.T).correlation
    off = rho[~np.eye(len(rho), dtype=bool)]
    return {"max_channel_spearman": round(float(off.max()), 4),
            "channel_spearman_matrix": np.round(rho, 3).tolist()}


def exact_widths_v2(n_pix, n_maps=200, n_grid=100):
    """Median widths and coverage of sims.exact_posterior (zoomed grid) over LH maps."""
    params, _ = sims.lh_set(n_sims=n_maps, seed=3)
    truth = params[:: sims.MAPS_PER_SIM]
    maps = sims.simulate(truth, "Mcdm", n_pix=n_pix, seed=3)[:, 0]
    stds, ranks = [], []
    start = time.perf_counter()
    for i in range(n_maps):
        post = sims.exact_posterior(maps[i], n_grid=n_grid)
        stds.append(post.std)
        ranks.append(post.credible_mass(truth[i, :2]))
    seconds = (time.perf_counter() - start) / n_maps
    stds, ranks = np.array(stds), np.array(ranks)
    return {"omega_m": round(float(np.median(stds[:, 0])), 5), "sigma_8": round(float(np.median(stds[:, 1])), 5),
            "coverage_68": round(float(np.mean(ranks <= 0.68)), 3),
            "coverage_95": round(float(np.mean(ranks <= 0.95)), 3), "n_maps": n_maps,
            "binomial_sigma_68": round(float(np.sqrt(0.68 * 0.32 / n_maps)), 3),
            "first_pass_grid": n_grid, "seconds_per_map": round(seconds, 2)}


VDVAE_PROBE_R2 = {"omega_m": 0.93, "sigma_8": 0.64, "a_sn1": 0.72, "a_agn1": -0.01, "a_sn2": 0.85, "a_agn2": 0.20}


def ceiling_gas(n_maps=200, n_pix=64):
    params, _ = sims.lh_set(n_sims=n_maps, seed=7)
    truth = params[:: sims.MAPS_PER_SIM]
    fields = ["Mgas", "HI", "B"]
    maps = sims.simulate(truth, fields, n_pix=n_pix, seed=7)
    start = time.perf_counter()
    r2 = sims.information_ceiling(maps, truth, fields, seed=7)
    seconds = time.perf_counter() - start
    print("R^2 ceiling (Mgas, HI, B; %d maps of %d^2) beside the VDVAE paper's linear probe:" % (n_maps, n_pix))
    for key in sims.PARAM_KEYS:
        print(f"  {key:8s} ceiling {r2[key]:6.3f}   VDVAE probe {VDVAE_PROBE_R2[key]:5.2f}")
    return {"r2_ceiling_gas": {k: round(v, 4) for k, v in r2.items()}, "r2_ceiling_gas_n_maps": n_maps,
            "r2_ceiling_gas_n_pix": n_pix, "r2_ceiling_seconds": round(seconds, 1),
            "vdvae_linear_probe_r2": VDVAE_PROBE_R2}


def one_p_responses(n_maps=30, n_pix=128):
    """|ln P_hi / P_lo| of each channel's map P(k), k <= 10 h/Mpc, across each 1P parameter's range.

    The 1P set's two ends for one parameter, the others at the fiducial; n_maps maps each
    with the same seeds at both ends (so cosmic variance cancels), stats.power_spectrum of
    the maps themselves (not their logs), averaged over the bins at k <= 10 h/Mpc.
    """
    out = {}
    for field in ("Mcdm", "Mgas", "HI", "B"):
        row = {}
        for j, key in enumerate(sims.PARAM_KEYS):
            ends = np.tile(sims.FIDUCIAL, (2, 1))
            ends[:, j] = sims.PRIOR_LOW[j], sims.PRIOR_HIGH[j]
            spectra = []
            for end in ends:
                maps = sims.simulate(np.tile(end, (n_maps, 1)), field, n_pix=n_pix, seed=11)[:, 0]
                k, pk = stats.power_spectrum(maps)
                spectra.append(pk.mean(0))
            low_k = k <= 10
            row[key] = round(float(np.mean(np.abs(np.log(spectra[1][low_k] / spectra[0][low_k])))), 3)
        out[field] = row
    print("1P response |ln P_hi/P_lo| at k <= 10 h/Mpc:")
    for field, row in out.items():
        print(f"  {field:5s}", "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return {"one_p_response_k_le_10": out}


if __name__ == "__main__":
    if sys.argv[1:] in (["--one-p"], ["--widths"]):  # one part alone, merged into the existing results
        from cosmonb import runtime

        if sys.argv[1] == "--one-p":
            part = one_p_responses()
        else:
            widths = {n: exact_widths_v2(n, n_maps=200 if n == 64 else 60) for n in (64, 256)}
            part = {"exact_sigma_omega_m": {str(n): w["omega_m"] for n, w in widths.items()},
                    "exact_sigma_sigma_8": {str(n): w["sigma_8"] for n, w in widths.items()},
                    "exact_widths_v2": {str(n): w for n, w in widths.items()}}
        runtime.update_json(Path(__file__).resolve().parent / "results" / "foundation.json", part, "foundation results")
        raise SystemExit
    results = {}
    results.update(pk_speed())
    results.update(lh_speed())
    results.update(fisher_at_fiducial())
    # simulator v2 targets (issue 9)
    results.update(neighbour_correlations())
    results.update(channel_spearman())
    widths = {n: exact_widths_v2(n, n_maps=200 if n == 64 else 60) for n in (64, 256)}
    results["exact_sigma_omega_m"] = {str(n): w["omega_m"] for n, w in widths.items()}
    results["exact_sigma_sigma_8"] = {str(n): w["sigma_8"] for n, w in widths.items()}
    results["exact_widths_v2"] = {str(n): w for n, w in widths.items()}
    results.update(ceiling_gas())
    results.update(one_p_responses())
    results["targets"] = {"pk_speedup_vs_pylians": ">= 1", "lh_sim_seconds": "< 60",
                          "neighbour_correlation_log_mcdm": ">= 0.8 at 64, within 0.05 of it at 128, 256",
                          "max_channel_spearman": "<= 0.97",
                          "exact_sigma_omega_m": "< exact_sigma_sigma_8 (64 and 256)",
                          "r2_ceiling_gas": "omega_m >= 0.8, a_sn1 >= 0.5, a_agn1 <= 0.3"}
    write_results("foundation", results)
