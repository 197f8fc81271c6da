"""Notebook 00 under papermill in quick mode: it runs, and its recorded numbers make sense."""

import re

import nbformat
import numpy as np
import pytest

from conftest import NOTEBOOKS, execute_notebook

NAME = "00_fields_and_power_spectra.ipynb"


@pytest.mark.notebook
def test_notebook_00_runs_in_quick_mode_and_records_its_numbers(notebook_run):
    records, _ = notebook_run(NAME)  # run times are measured by `make run` (bench/results/notebooks.json), not here
    # the exact posterior of one 64x64 map is informative, Omega_m better than sigma_8 (as in the DDPM paper on
    # CMD; simulator v2, quick mode: 0.028 and 0.074), and the two strongly anti-correlated (-0.98) but not one line
    assert 0.01 < records["exact_sigma_omega_m"] < 0.06
    assert 0.03 < records["exact_sigma_sigma_8"] < 0.15
    assert records["exact_sigma_omega_m"] < records["exact_sigma_sigma_8"]
    assert -0.999 < records["exact_correlation"] < -0.9
    # calibration of the exact posterior over the LH maps, recorded with its binomial standard error
    # (60 maps in quick mode: 0.060 at 68%, 0.028 at 95%); quick mode gives 0.75 (+1.2 se) and 0.90 (-1.8 se)
    n = records["exact_coverage_n_maps"]
    for level in (68, 95):
        p = level / 100
        se = records[f"exact_coverage_{level}_stderr"]
        assert se == pytest.approx(np.sqrt(p * (1 - p) / n))
        assert abs(records[f"exact_coverage_{level}"] - p) < 3.5 * se
    # measured spectra against the exact theory
    assert records["pk_log_field_max_deviation"] < 0.2
    # channels are cross-correlated (each channel is a filter of the dark-matter log field plus its own noise)
    assert records["channel_correlation_mcdm_mgas"] > 0.5
    # the text of section 5: the supernova parameters move the gas most, A_SN1 by far and more than Omega_m; the two
    # AGN parameters least, by about a tenth, hundreds of times less than A_SN1 (quick mode: A_SN1 36, Omega_m 6.4,
    # A_SN2 4.2, sigma_8 1.5, A_AGN1 0.13, A_AGN2 0.11); if a new simulator changes that, the text must change too
    gas = {name: records[f"gas_response_{name}"] for name in ("Omega_m", "sigma_8", "A_SN1", "A_AGN1", "A_SN2", "A_AGN2")}
    assert max(gas, key=gas.get) == "A_SN1" and gas["A_SN1"] > gas["Omega_m"]
    assert max(gas["A_AGN1"], gas["A_AGN2"]) < min(gas[n] for n in ("Omega_m", "sigma_8", "A_SN1", "A_SN2"))
    assert max(gas["A_AGN1"], gas["A_AGN2"]) < 0.3
    assert gas["A_SN1"] > 100 * gas["A_AGN1"]
    # section 3's text: the pixel variance of Mcdm/rho - 1 is well above 1 (4.4), and its heavy tail is
    # measured: the largest map's share of the set's mean P(k), and the mean without it
    assert records["pixel_variance_delta_theory"] > 2
    assert 0 < records["pk_largest_map_share"] < 1
    assert records["pk_excess_without_largest_map"] < records["pk_excess_over_theory"]
    # section 9, toy against CAMELS: coherent pixel-scale structure (quick mode 0.84), Omega_m the better-measured
    # parameter (sigma_8 2.7 times wider), and nothing beyond the two-point function (a phase-scrambled map has the
    # same likelihood, to rounding)
    assert records["toy_neighbour_correlation_log_mcdm"] > 0.7
    assert records["toy_sigma_8_over_omega_m_width"] == pytest.approx(
        records["exact_sigma_sigma_8"] / records["exact_sigma_omega_m"])
    assert records["toy_sigma_8_over_omega_m_width"] > 1.5
    assert records["toy_phase_scramble_max_dll"] < 1e-6


@pytest.mark.notebook
def test_notebook_00_fails_fast_on_a_data_root_without_cmd_files(tmp_path):
    """An empty DATA_ROOT used to fail only in the last cell, after the whole notebook had run."""
    from papermill.exceptions import PapermillExecutionError

    empty = tmp_path / "no_cmd_files_here"
    empty.mkdir()
    with pytest.raises(PapermillExecutionError) as info:
        execute_notebook(NAME, tmp_path, parameters={"DATA_ROOT": str(empty)})
    err = info.value
    assert err.ename == "FileNotFoundError"
    assert "DATA_ROOT" in err.evalue and "Maps_Mcdm_IllustrisTNG_LH_z=0.00.npy" in err.evalue
    assert "params_LH_IllustrisTNG.txt" in err.evalue
    # the check runs in the cell right after the parameters cell (papermill injects one cell after it)
    nb = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    params_cell = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert err.cell_index <= params_cell + 2, f"DATA_ROOT failed only in cell {err.cell_index}"


def _text(nb):
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_notebook_00_text_matches_what_its_output_shows():
    nb = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    text = _text(nb)
    # statements that its own output contradicted (issue 8)
    assert "variance of a few" not in text  # it is about 23
    # simulator v1's statements: A_AGN1 moved the gas more than Omega_m; a toy non-linear boost; S^g = S ln(1+s^2)/s^2
    assert "*more* than $\\Omega_m$ does" not in text
    assert "non-linear boost" not in text and "k_{\\rm nl}" not in text and "\\ln(1+s^2)/s^2$ (the linear shape" not in text
    assert "## 9. Toy against CAMELS" in text
    assert "below the cosmic variance" not in text
    # section cross-references point at the section that holds the claim
    headings = {int(m.group(1)): m.group(2) for m in re.finditer(r"^## (\d+)\. (.*)$", text, re.M)}
    for m in re.finditer(r"\(section (\d+)\)", text):
        assert int(m.group(1)) in headings, f"reference to a missing section: {m.group(0)}"
    exact = re.findall(r"likelihood of a dark-matter map is exact\*\* \(section (\d+)\)", text)
    assert exact and all("likelihood" in headings[int(n)] for n in exact)
    assert "mean density: section 7" in text


def test_notebook_00_exercise_solutions_are_working_code():
    """Exercise 1's solution was a comment; every solution with code must run in the notebook's namespace."""
    from cosmonb import sims, stats

    nb = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    text = _text(nb)
    exercises = text[text.index("## Exercises"):text.index("## Summary")]
    blocks = re.findall(r"<details>.*?</details>", exercises, re.S)
    assert len(blocks) == 3
    code = [re.findall(r"```python\n(.*?)```", b, re.S) for b in blocks]
    assert code[0], "Exercise 1's solution has no code"
    # the names the solutions use from earlier cells, at the notebook's 64 px (at 32 px the AGN scales are unresolved)
    one_p, _ = sims.one_p_set(n_values=5, maps_per_sim=1)
    ref = sims.simulate(np.tile(sims.FIDUCIAL, (2, 1)), "Mgas", n_pix=64, seed=3)[:, 0]
    p_ref = stats.power_spectrum(ref)[1].mean(0)
    rows = [stats.power_spectrum(sims.simulate(np.tile(r, (2, 1)), "Mgas", n_pix=64, seed=3)[:, 0])[1].mean(0) / p_ref
            for r in one_p]
    ns = {"np": np, "sims": sims, "stats": stats, "N_PIX": 64, "SEED": 0,
          "pk_1p": {"Mgas": np.array(rows).reshape(6, 5, -1)}}
    for block in code:
        for src in block:
            exec(compile(src, NAME + " solution", "exec"), ns)
    # Exercise 1's answer: without the mean term the Omega_m error nearly doubles (1.8x) and the degeneracy tightens
    cov_all, cov_spec = (np.linalg.inv(ns[k]) for k in ("fisher_all", "fisher_spectrum"))
    assert 1.5 < np.sqrt(cov_spec[0, 0] / cov_all[0, 0]) < 2.3
    assert cov_spec[0, 1] / np.sqrt(cov_spec[0, 0] * cov_spec[1, 1]) < -0.9
    # Exercise 3's answer: here, as in CAMELS, A_AGN1 stays below the one-map scatter in every k bin (a quarter of
    # it at most), while A_SN1 exceeds it many times
    j = sims.PARAM_NAMES.index("A_AGN1")
    signal = np.abs(ns["pk_1p"]["Mgas"][j, [0, -1]] - 1).max(0)
    assert (signal / ns["one_map_scatter"]).max() < 0.4
    j = sims.PARAM_NAMES.index("A_SN1")
    signal = np.abs(ns["pk_1p"]["Mgas"][j, [0, -1]] - 1).max(0)
    assert (signal / ns["one_map_scatter"]).max() > 5


def test_every_notebook_has_a_parameters_cell_defining_every_injected_name():
    """The harness injects QUICK (and may inject these); each notebook must define them all."""
    injected = {"QUICK", "SEED", "TRAIN", "DATA_ROOT"}
    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
        defined = {line.split("=")[0].strip() for line in tagged[0].source.splitlines()
                   if "=" in line and not line.lstrip().startswith("#")}
        missing = injected - defined
        assert not missing, f"{path.name}: parameters cell does not define {sorted(missing)}"
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not outputs, f"{path.name}: commit notebooks with outputs stripped"
