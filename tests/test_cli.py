"""``python -m cosmonb info | run | train`` (cosmonb/cli.py): the command a workshop's first cell runs.

Training runs in-process (``cli.main``) with tiny step counts, except ``info`` and the
torchrun test, which start processes; the whole file takes well under 90 s on 2 CPUs.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmonb import checkpoints, cli, data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    monkeypatch.delenv("COSMONB_DEVICE", raising=False)
    monkeypatch.setenv(cli.OUT_ENV, str(tmp_path / "default_out"))  # never the user's folder
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # train sets 1 thread for the flows


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("COSMONB_DEVICE", None)
    return env


def _loads(name, out, steps=None):
    model, ckpt = checkpoints.load_model(name, directory=out)
    assert name in checkpoints.read_manifest(out)
    if steps is not None:
        assert ckpt["metadata"]["metrics"]["steps"] == steps
    return model, ckpt


# --------------------------------------------------------------------------- info
def test_info_prints_versions_device_and_checkpoints():
    proc = subprocess.run([sys.executable, "-m", "cosmonb", "info"], env=_env(), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"torch          {torch.__version__}" in out and f"numpy          {np.__version__}" in out
    for word in ("zuko", "emcee", "device: cpu", "CPU capability:", "threads:", "DATA_ROOT",
                 str(checkpoints.PRETRAINED_DIR), cli.OUT_ENV):
        assert word in out, word
    for name in checkpoints.read_manifest():
        assert any(line.split()[:1] == [name] and "loads (" in line for line in out.splitlines()), name


def test_info_reports_a_missing_package(monkeypatch, capsys):
    monkeypatch.setattr(cli, "PACKAGES", ("torch", "surely-not-a-package-xyz"))
    assert cli.main(["info", "--no-load"]) == 0
    out = capsys.readouterr().out
    assert "surely-not-a-package-xyz not installed" in " ".join(out.split())


# --------------------------------------------------------------------------- train: flows
def test_train_flow_quick_then_resume(tmp_path, capsys):
    out = tmp_path / "runs"
    assert cli.main(["train", "flow", "--preset", "quick", "--out", str(out), "--max-steps", "2"]) == 0
    for name in cli.FAMILIES["flow"]:
        model, ckpt = _loads(name, out, steps=2)
        assert ckpt["config"]["extra"]["preset"] == "quick"
        assert torch.isfinite(model.sample(5, None if name != "flows_cond" else torch.zeros(1, 1), seed=0)).all()
    entry = checkpoints.read_manifest(out)["flows_2d"]
    assert entry["command"].startswith("python -m cosmonb train flow --preset quick")
    before = _loads("flows_2d", out)[0].state_dict()
    # --resume continues the saved run (trainer state in <out>/<name>.state.pt) up to the new cap
    assert cli.main(["train", "flows_2d", "--preset", "quick", "--out", str(out), "--max-steps", "4", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    model, ckpt = _loads("flows_2d", out, steps=4)
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    state = torch.load(out / "flows_2d.state.pt", weights_only=False)
    assert state["step"] == 4 and state["history"]["resumed_at"] == [2]
    # the notebooks' loader reads it too
    from cosmonb.recipes.flows import load_flow

    assert type(load_flow("flows_2d", out)[0]).__name__ == "DensityFlow"


def test_train_flow_under_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "cosmonb", "train", "flows_2d", "--preset", "quick", "--out", str(out),
           "--max-steps", "2"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    model, ckpt = _loads("flows_2d", out, steps=2)
    assert ckpt["metadata"]["metrics"]["world_size"] == 2
    assert proc.stdout.count("-> ") == 1  # rank 0 alone saved (and logged)
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST.json", "flows_2d.pt", "flows_2d.state.pt"]


def _write_camels_like(root: Path, n_sims=3, n_sub=1500):
    """Small Subfind files as CAMELS stores them (float32, 1e10 Msun/h, kpc/h, no cosmonb header)."""
    rng = np.random.default_rng(0)
    for i in range(n_sims):
        for snap in (30, 31, 32, 33):
            mt = 10 ** rng.uniform(10.0, 13.5, n_sub)
            ms = np.where(rng.random(n_sub) < 0.4, 0.0, mt * 10 ** rng.normal(-2.0, 0.3, n_sub))
            name = "fof_subhalo_tab" if i == 0 else "groups"  # the old and the new file names
            data.write_subfind(root / f"CV_{i}" / f"{name}_{snap:03d}.hdf5", ms, mt, rng.uniform(0, 25, (n_sub, 3)),
                               group_mass=mt[: n_sub // 2], redshift=data.SNAPSHOT_REDSHIFTS[snap],
                               dtype=np.float32)


def test_train_flow_on_subfind_files(tmp_path, capsys):
    root, out = tmp_path / "camels", tmp_path / "runs"
    _write_camels_like(root)
    assert cli.main(["train", "flow", "--preset", "quick", "--data-root", str(root), "--out", str(out),
                     "--max-steps", "2"]) == 0
    text = capsys.readouterr().out
    assert "skipping flows_cond" in text and f"Subfind catalogs in {root}" in text
    for name in ("flows_1d", "flows_2d"):
        _, ckpt = _loads(name, out, steps=2)
        assert ckpt["config"]["extra"]["data"] == f"Subfind catalogs in {root}"
        assert ckpt["config"]["extra"]["split"] == {"train": [0], "val": [1], "test": [2]}
    assert not (out / "flows_cond.pt").exists()


# --------------------------------------------------------------------------- train: IMNN
def test_train_imnn_quick(tmp_path):
    out = tmp_path / "imnn"
    assert cli.main(["train", "imnn_grf", "--preset", "quick", "--max-steps", "3", "--out", str(out)]) == 0
    from cosmonb.recipes.imnn import load_imnn

    comp, ckpt = load_imnn("imnn_grf", out)
    assert ckpt["metadata"]["metrics"]["epochs"] == 3
    assert ckpt["config"]["train"]["preset"] == "quick"
    assert np.isfinite(ckpt["metadata"]["metrics"]["saturation"])
    # --resume continues the network in --out; --max-steps caps all its steps, as for the flows
    assert cli.main(["train", "imnn_grf", "--preset", "quick", "--max-steps", "5", "--out", str(out), "--resume"]) == 0
    comp, ckpt = load_imnn("imnn_grf", out)
    assert ckpt["metadata"]["metrics"]["epochs"] == 5 and ckpt["config"]["train"]["resumed"]


def test_train_imnn_refit_starts_from_the_lognormal_network_in_out(tmp_path, capsys):
    """The refit fine-tunes the imnn_lognormal found in --out at its estimate of the benchmark's map."""
    from cosmonb.recipes.imnn import load_imnn, refit_fiducial

    out = tmp_path / "imnn"
    assert cli.main(["train", "imnn_lognormal", "--preset", "quick", "--max-steps", "2", "--out", str(out)]) == 0
    assert cli.main(["train", "imnn_lognormal_refit", "--preset", "quick", "--max-steps", "2", "--out", str(out)]) == 0
    assert f"refitting imnn_lognormal from {out}" in capsys.readouterr().out
    base, _ = load_imnn("imnn_lognormal", out)
    refit, ckpt = load_imnn("imnn_lognormal_refit", out)
    np.testing.assert_allclose(refit.theta_fid, refit_fiducial(base), atol=1e-12)
    assert not np.allclose(refit.theta_fid, base.theta_fid)
    assert ckpt["metadata"]["metrics"]["epochs"] == 2


@pytest.mark.parametrize("model", sorted(cli.MAP_MODELS))
def test_train_map_model_quick_leaves_a_loadable_checkpoint(model, tmp_path):
    out = tmp_path / model
    assert cli.main(["train", model, "--preset", "quick", "--max-steps", "2", "--out", str(out)]) == 0
    loaded, ckpt = checkpoints.load_model(model, directory=out)
    assert ckpt["config"]["kind"] == {"ddpm": "ddpm", "higlow": "glow", "vdvae": "vdvae"}[model]
    assert torch.load(out / f"{model}.state.pt", weights_only=False)["step"] == 2
    assert cli.main(["train", model, "--preset", "quick", "--max-steps", "3", "--out", str(out), "--resume"]) == 0
    assert torch.load(out / f"{model}.state.pt", weights_only=False)["step"] == 3


@pytest.fixture(scope="module")
def cmd_root(tmp_path_factory):
    """16 simulations x 15 maps of 32^2 in the exact CMD formats (data.write_cmd), all four fields."""
    from cosmonb import sims

    root = tmp_path_factory.mktemp("cmd")
    params, _ = sims.lh_set(16, 15, seed=4)
    maps = sims.simulate(params, sims.FIELDS, n_pix=32, seed=4)
    data.write_cmd(root, {f: maps[:, c] for c, f in enumerate(sims.FIELDS)}, params[::15])
    return root


@pytest.mark.parametrize("model", sorted(cli.MAP_MODELS))
def test_train_map_model_on_cmd_files(model, cmd_root, tmp_path, capsys):
    out = tmp_path / model
    assert cli.main(["train", model, "--preset", "quick", "--max-steps", "2", "--out", str(out),
                     "--data-root", str(cmd_root)]) == 0
    assert f"CMD files in {cmd_root}" in capsys.readouterr().out
    checkpoints.load_model(model, directory=out)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, message", [
    (["train", "glow"], "invalid choice: 'glow'"),
    (["train", "flow", "--preset", "huge"], "invalid choice: 'huge'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_unknown_model_preset_or_command(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    assert err.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "flow", "--data-root", "{tmp}/nowhere"], "--data-root: folder"),
    (["train", "flows_2d", "--resume", "--out", "{tmp}/empty"], "--resume: no training state"),
    (["train", "imnn_grf", "--resume", "--out", "{tmp}/empty"], "--resume: no checkpoint"),
    (["train", "imnn", "--data-root", "{tmp}"], "--data-root: the IMNNs train on fresh simulations"),
    (["train", "flow", "--max-steps", "0", "--out", "{tmp}/o"], "--max-steps: expected an integer >= 1"),
])
def test_bad_input_is_a_clear_error(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err, err


def test_data_root_env_missing_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "gone"))
    assert cli.main(["train", "flows_1d", "--out", str(tmp_path / "o")]) == 2
    assert "DATA_ROOT (environment variable)" in capsys.readouterr().err


def test_flows_cond_on_real_catalogs_needs_a_sn1(tmp_path, capsys):
    root = tmp_path / "camels"
    _write_camels_like(root, n_sims=3, n_sub=50)
    assert cli.main(["train", "flows_cond", "--data-root", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "flows_cond is conditioned on A_SN1" in capsys.readouterr().err


def test_run_help_and_runner_is_one_implementation():
    import cosmonb.notebooks_runner as runner

    import runpy

    spec = runpy.run_path(str(ROOT / "scripts" / "run_notebooks.py"))  # not __main__: defines, does not run
    assert spec["main"] is runner.main and spec["record_times"] is runner.record_times
    assert "-m cosmonb run" in (ROOT / "Makefile").read_text()
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--quick", "--no-record", "x.ipynb"])
    assert args.quick and args.no_record and args.notebooks == ["x.ipynb"] and args.func is cli.cmd_run
