"""environment.yml, binder/environment.yml and the Binder hooks, checked without a conda solver.

This machine (and CI) reach PyPI but no conda channel, so neither file can be solved here with
conda or micromamba. What can be checked is checked: both files parse, list every runtime
dependency of pyproject.toml (conda or pip name) with the same or a stricter lower bound, install a
CPU-only torch pinned to the version the Makefile installs, and keep JupyterLab 4 with ipywidgets 8
(whose widget manager is a prebuilt JupyterLab extension: no ``jupyter lab build``). binder/start
caps the threads and execs its arguments; binder/postBuild installs the package and checks it.
"""
import os
import re
import stat
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ENV_FILES = ["environment.yml", "binder/environment.yml"]
#: pyproject names whose conda-forge package has another name (none today; the table is the place)
CONDA_NAMES: dict = {}
REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(?:(==|>=|=)\s*([0-9][^\s,;#]*))?")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:3])


def _runtime_dependencies() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {}
    for req in project["dependencies"]:
        m = REQ.match(req)
        deps[_norm(m[1])] = _version(m[3]) if m[3] else ()
    return deps


def _listed(path: str) -> tuple[dict, list, dict]:
    """({normalised name: (operator, version)}, pip option lines, the parsed file) of one env file."""
    env = yaml.safe_load((ROOT / path).read_text())
    assert isinstance(env, dict) and env.get("name") and isinstance(env.get("dependencies"), list), path
    listed, options = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{path}: unexpected entry {dep}"
            for line in dep["pip"]:
                if line.startswith("-"):
                    options.append(line)
                    continue
                m = REQ.match(line)
                listed[_norm(m[1])] = (m[2], _version(m[3]) if m[3] else (), "pip", line)
        else:
            name = dep.split("::")[-1]
            m = REQ.match(name)
            listed[_norm(m[1])] = (m[2], _version(m[3]) if m[3] else (), "conda", dep)
    return listed, options, env


def _makefile_torch() -> tuple:
    m = re.search(r"^TORCH\s*\?=\s*torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert m, "Makefile: expected TORCH ?= torch==X.Y.Z"
    return _version(m[1])


@pytest.mark.parametrize("path", ENV_FILES)
def test_environment_lists_every_runtime_dependency(path):
    listed, _, env = _listed(path)
    assert "conda-forge" in env["channels"] and "pytorch" not in env["channels"], env["channels"]
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert python == ["python=3.11"]
    missing, too_low = [], []
    for name, minimum in _runtime_dependencies().items():
        entry = listed.get(_norm(CONDA_NAMES.get(name, name)))
        if entry is None:
            missing.append(name)
        elif minimum and entry[1] and entry[1] < minimum:
            too_low.append(f"{entry[3]} (pyproject: >= {'.'.join(map(str, minimum))})")
        elif minimum and not entry[1] and name in ("jupyterlab", "ipywidgets", "torch"):
            too_low.append(f"{entry[3]} (needs a version)")
    assert not missing, f"{path} does not list {missing} (pyproject.toml's runtime dependencies)"
    assert not too_low, f"{path}: lower bounds below pyproject.toml's: {too_low}"


@pytest.mark.parametrize("path", ENV_FILES)
def test_environment_pins_a_cpu_torch_and_jupyterlab4_with_widgets8(path):
    listed, options, env = _listed(path)
    torch = listed["torch"]
    assert torch[2] == "pip" and torch[0] == "==" and torch[3].endswith("+cpu"), torch
    assert torch[1] == _makefile_torch(), f"{path} pins {torch[3]}; the Makefile installs {_makefile_torch()}"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options
    flat = " ".join(str(d) for d in env["dependencies"])
    for gpu in ("pytorch-cuda", "cudatoolkit", "cuda-", "pytorch::", "cu12", "cu11"):
        assert gpu not in flat, f"{path}: {gpu} (the environment is CPU only)"
    assert listed["jupyterlab"][1] >= (4,) and listed["ipywidgets"][1] >= (8,)
    assert "jupyterlab-widgets" in listed  # the prebuilt JupyterLab 4 extension of ipywidgets 8


def test_local_environment_installs_the_package_and_binder_installs_it_in_postbuild():
    _, options, _ = _listed("environment.yml")
    assert '-e ".[dev]"' in options
    _, options, _ = _listed("binder/environment.yml")
    assert not any(o.startswith("-e") for o in options)  # binder/postBuild installs it, from the repository
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post and "python -m cosmonb info" in post
    assert "@jupyter-widgets/jupyterlab-manager" in post and "lab build" not in post.replace("`jupyter lab build`", "")


@pytest.mark.parametrize("hook", ["postBuild", "start"])
def test_binder_hooks_are_executable_bash(hook):
    path = ROOT / "binder" / hook
    assert path.stat().st_mode & stat.S_IXUSR, f"binder/{hook} must be executable (git update-index --chmod=+x)"
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_binder_start_caps_threads_and_execs_its_arguments():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_THREADS")}
    out = subprocess.run([str(ROOT / "binder" / "start"), sys.executable, "-c",
                          "import os; print(os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'], "
                          "os.environ['OPENBLAS_NUM_THREADS'])"],
                         env=env, capture_output=True, text=True, check=True, timeout=30).stdout.split()
    assert len(set(out)) == 1 and 1 <= int(out[0]) <= 4, out
    # a value set by the user wins
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([str(ROOT / "binder" / "start"), "printenv", "OMP_NUM_THREADS"], env=env,
                         capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert out == "1"
    assert (ROOT / "binder" / "start").read_text().rstrip().endswith('exec "$@"')
