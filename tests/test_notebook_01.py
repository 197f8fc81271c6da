"""Notebook 01 under papermill in quick mode: it runs fast, loads the shipped IMNNs, and its numbers hold."""

import nbformat
import pytest

from conftest import NOTEBOOKS

NAME = "01_imnn_abc_delfi.ipynb"


@pytest.mark.notebook
def test_notebook_01_runs_in_quick_mode_and_records_its_numbers(notebook_run):
    records, seconds = notebook_run(NAME)
    # target: < 60 s in quick mode; the margin is for a loaded test machine
    assert seconds < 90, f"quick mode took {seconds:.0f} s"

    # Fisher matrices against Monte Carlo (1000 simulations: a few per cent of noise)
    for ratio in records["normal_fisher_mc_over_analytic"] + records["normal_mle_std_over_cramer_rao"]:
        assert 0.85 < ratio < 1.15
    assert 0.85 < records["grf_fisher_mc_over_analytic"] < 1.15

    # the shipped IMNNs on 1000 fresh fiducial simulations, paired with the exact score on the same
    # simulations (about 1.5% noise; unpaired about 5%); bench/imnn.py measures the targets on 40,000
    assert 0.91 < records["fisher_saturation_grf"] < 1.05
    assert 0.86 < records["fisher_saturation_lognormal"] < 1.05
    assert 0.86 < records["fisher_saturation_lognormal_refit"] < 1.05
    for name in ("fisher_saturation_grf_unpaired", "fisher_saturation_lognormal_unpaired"):
        assert 0.75 < records[name] < 1.2
    # quick mode also trains an IMNN for 60 steps (5 s): it learns much, not everything (0.5-0.8 over seeds)
    assert 0.25 < records["quick_train_saturation_grf"] < 1.0

    # score estimate of the observed field: close to the exact posterior
    assert records["grf_gaussian_vs_exact"]["mean_offset_sigma"] < 1.0
    assert 0.6 < records["grf_gaussian_vs_exact"]["area_ratio"] < 1.6

    # ABC: 20,000 prior draws (a few seconds), a few dozen accepted; noisy but right
    assert records["abc_simulations"] == 20000
    assert records["abc_accepted"] >= 20
    assert records["abc_vs_exact"]["mean_offset_sigma"] < 1.0
    assert 0.4 < records["abc_vs_exact"]["area_ratio"] < 2.5

    # DELFI: 2 rounds of 250 simulations reach the exact posterior
    assert records["delfi_simulations"] == 500
    assert records["delfi_vs_exact"]["mean_offset_sigma"] < 0.6
    assert 0.6 < records["delfi_vs_exact"]["area_ratio"] < 1.6
    assert records["delfi_vs_exact"]["kl"] < 0.3
    assert records["delfi_lognormal_simulations"] == 500
    assert records["delfi_lognormal_vs_exact"]["mean_offset_sigma"] < 0.6
    assert 0.6 < records["delfi_lognormal_vs_exact"]["area_ratio"] < 1.6


def test_notebook_01_template():
    nb = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    # the parameters cell and stripped outputs: test_notebook_00 checks every notebook
    assert "cosmonb.device()" in text and "cosmonb.seed_everything(SEED)" in text
    assert "imnn.load_imnn" in text and "<details>" in text and "widgets.sliders(" in text
    for cited in ("Charnock, G. Lavaux & B. D. Wandelt", "Makinen", "Alsing, T. Charnock, S. Feeney"):
        assert cited in text
    assert all(c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
