"""Notebooks 00 and 02 end to end on files in the exact CAMELS formats (DATA_ROOT).

Readers who have CAMELS point DATA_ROOT at it; these tests write small files in the
same formats (CMD maps and parameter table with ``data.write_cmd``, Subfind catalogs
with ``sims.catalogs.write_cv_catalogs``) and run the notebooks on them in quick mode.
(Notebook 01 uses only its own simulators and refuses a DATA_ROOT; the map models'
training command is tested on CMD files in tests/test_cli.py.)
"""
from __future__ import annotations

import json

import numpy as np

from cosmonb import data, sims
from cosmonb.sims import catalogs
from conftest import execute_notebook


def _outputs(path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                     for o in c.get("outputs", []))


def test_notebook_00_reads_cmd_files(tmp_path):
    root = tmp_path / "cmd"
    params, _ = sims.lh_set(3, 15, seed=11)
    maps = sims.simulate(params, ("Mcdm", "Mgas"), n_pix=256, seed=11)
    data.write_cmd(root, {"Mcdm": maps[:, 0], "Mgas": maps[:, 1]}, params[::15])
    records, _ = execute_notebook("00_fields_and_power_spectra.ipynb", tmp_path, parameters={"DATA_ROOT": str(root)})
    text = _outputs(tmp_path / "00_fields_and_power_spectra.ipynb")
    assert "DATA_ROOT: found" in text and "maps (45, 2, 64, 64)" in text
    assert np.isfinite(records["exact_sigma_omega_m"])


def test_notebook_02_trains_on_subfind_catalogs(tmp_path):
    root = tmp_path / "subfind"
    catalogs.write_cv_catalogs(root, 8, seed=5)
    records, _ = execute_notebook("02_galaxy_flows.ipynb", tmp_path, parameters={"DATA_ROOT": str(root)})
    text = _outputs(tmp_path / "02_galaxy_flows.ipynb")
    assert "flows are retrained on your catalogs" in text
    assert records and all(np.isfinite(v) for v in records.values() if isinstance(v, float))
