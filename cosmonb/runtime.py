"""Runtime helpers every notebook uses: device, seeds, quick mode, headline records.

The imports/config cell of every notebook (GUIDE section 2) is

    >>> from cosmonb.runtime import device, seed_everything   # also cosmonb.device, ...
    >>> dev = device()                 # cuda, then mps, then cpu
    >>> rng = seed_everything(1234)    # python, numpy, torch in one call

and its last cells call ``cosmonb.record(name, value)`` for each headline
number. When the environment variable ``COSMONB_RECORDS`` names a JSON file,
``record`` merges the number into it (atomically, under a lock), so the
notebook runner and the tests read the numbers back with ``read_records``.

Environment variables:

* ``COSMONB_DEVICE``: force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
* ``COSMONB_QUICK``: ``1``/``true``/``yes`` turns on quick (smoke-test) mode.
* ``COSMONB_RECORDS``: path of the JSON file ``record`` merges into.
* ``COSMONB_HEADLESS``: ``1`` when no front end renders widgets (papermill, nbval):
  notebooks then draw static figures instead of sliders (``cosmonb.widgets.headless``).

``atomic_write`` is the one way the package writes files (GUIDE section 3):
a temporary file in the same folder, flushed, then ``os.replace``-d over the
target, so a killed process never leaves a half-written file behind (and the
next write to the same target removes the temporary file a killed writer left).

``machine_info`` describes the machine (CPU model, torch's CPU capability,
threads, versions) for checkpoint manifests and benchmark results.
"""
from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

__all__ = [
    "device",
    "seed_everything",
    "is_quick",
    "record",
    "read_records",
    "RECORDS",
    "atomic_write",
    "check_seed",
    "atomic_path",
    "machine_info",
]

#: Every headline number recorded in this process, ``name -> value``.
RECORDS: dict[str, Any] = {}

#: ``record`` accepts at most this many numbers in one list/dict value.
MAX_RECORD_ITEMS = 1000

_TRUE = {"1", "true", "yes"}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


# --------------------------------------------------------------------------- device
def _check_device(dev: torch.device, what: str) -> torch.device:
    """Raise ValueError if ``dev`` is not usable on this machine."""
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what}: asked for {str(dev)!r} but torch.cuda.is_available() is False")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{what}: asked for {str(dev)!r} but only "
                             f"{torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{what}: asked for 'mps' but torch.backends.mps.is_available() is False")
    elif dev.type != "cpu":
        raise ValueError(f"{what}: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got {str(dev)!r}")
    return dev


def _parse_device(spec, what: str) -> torch.device | None:
    """Turn ``spec`` (str, torch.device or None/'auto') into a torch.device or None."""
    if spec is None:
        return None
    if isinstance(spec, torch.device):
        return _check_device(spec, what)
    if not isinstance(spec, str):
        raise ValueError(f"{what}: expected a device name such as 'cpu' or 'cuda', "
                         f"got {type(spec).__name__}")
    spec = spec.strip().lower()
    if spec in ("", "auto"):
        return None
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{what}: {spec!r} is not a device name "
                         "(expected 'cpu', 'cuda', 'cuda:N' or 'mps')") from err
    return _check_device(dev, what)


def device(prefer=None) -> torch.device:
    """The device to compute on: cuda if available, then mps, then cpu.

    ``prefer`` (``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'mps'``, a
    ``torch.device``, or ``None``/``'auto'``) overrides the choice; otherwise
    the environment variable ``COSMONB_DEVICE`` does, if set. Asking for a
    device that is not available raises ValueError (never a silent fallback).

    Example:
        >>> device("cpu")
        device(type='cpu')
        >>> device().type in ("cuda", "mps", "cpu")
        True
    """
    return select_device(prefer, "prefer")


def select_device(prefer, what: str) -> torch.device:
    """``device(prefer)`` with errors naming the caller's argument ``what``."""
    dev = _parse_device(prefer, what)
    if dev is None:
        dev = _parse_device(os.environ.get("COSMONB_DEVICE"), "COSMONB_DEVICE (environment variable)")
    if dev is not None:
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------- seeds
def check_seed(seed, name: str = "seed") -> int:
    """The package's one seed check: an integer in [0, 2**32), else a ValueError naming ``name``.

    Example:
        >>> check_seed(7)
        7
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"{name}: expected an integer in [0, 2**32), got {seed}")
    return seed


def seed_everything(seed: int, *, deterministic: bool = False) -> np.random.Generator:
    """Seed python's ``random``, numpy's global RNG and torch (cpu and cuda).

    Returns ``numpy.random.default_rng(seed)``, the generator to pass to
    every ``cosmonb`` function that takes ``rng``. With ``deterministic=True``
    cuDNN is also put in deterministic mode (slower, reproducible on GPU).

    Example:
        >>> rng = seed_everything(0)
        >>> a = (rng.random(), float(torch.rand(1)))
        >>> rng = seed_everything(0)
        >>> a == (rng.random(), float(torch.rand(1)))
        True
    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return np.random.default_rng(seed)


def is_quick() -> bool:
    """True when the environment variable ``COSMONB_QUICK`` is 1/true/yes.

    Notebooks default their ``QUICK`` parameter to this, so test runs that
    cannot inject papermill parameters (nbval) still get quick mode.

    Example:
        >>> import os
        >>> os.environ["COSMONB_QUICK"] = "yes"; is_quick()
        True
        >>> del os.environ["COSMONB_QUICK"]; is_quick()
        False
    """
    return os.environ.get("COSMONB_QUICK", "").strip().lower() in _TRUE


# --------------------------------------------------------------------------- machine
def _cpu_model(cpuinfo="/proc/cpuinfo") -> str:
    """The CPU model: /proc/cpuinfo's "model name" (Linux), else ``platform.processor()``."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    name = line.split(":", 1)[1].strip()
                    if name:
                        return name
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_capability() -> str:
    """``torch.backends.cpu.get_cpu_capability()`` (e.g. 'AVX2', 'AVX512', 'DEFAULT').

    It follows the ``ATEN_CPU_CAPABILITY`` environment variable, so it tells
    which floating-point kernels actually ran, not only what the CPU offers.
    """
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if get is None:  # torch < 2.0
        return "unknown"
    try:
        return str(get())
    except Exception:  # noqa: BLE001 - a description must never fail a save
        return "unknown"


def machine_info() -> dict:
    """What ran a computation: CPU model and torch's CPU capability, threads, versions.

    The one description of the machine for checkpoint manifests
    (``cosmonb.checkpoints.save_pretrained``) and benchmark results
    (``bench/_machine.py``). Results of learned-quality tests move with the
    floating-point path (CPU capability, thread count), so both are recorded.
    Keys: ``cpu`` (``/proc/cpuinfo`` "model name", else ``platform.processor()``),
    ``cpu_capability`` (``torch.backends.cpu.get_cpu_capability()``, which follows
    ``ATEN_CPU_CAPABILITY``), ``cpu_count``, ``torch_threads``, ``platform``,
    ``machine``, ``python``, ``numpy``, ``torch``.

    Example:
        >>> info = machine_info()
        >>> {"cpu", "cpu_capability", "torch_threads", "torch"} <= set(info)
        True
        >>> info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        True
    """
    return {"cpu": _cpu_model(), "cpu_capability": _cpu_capability(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "machine": platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__, "torch": str(torch.__version__)}


# --------------------------------------------------------------------------- atomic files
#: A temporary file of a killed writer with no PID in its name is removed once it is this old.
ORPHAN_AGE_SECONDS = 3600.0
_RAND = r"[A-Za-z0-9_]{8}"  # the random part tempfile.mkstemp puts in a name


def _pid_alive(pid: int) -> bool:
    """True unless process ``pid`` certainly does not exist on this machine."""
    if pid <= 0:
        return True
    if pid == os.getpid():
        return True  # another thread of this process may be writing
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (owned by someone else), or we cannot tell: keep the file
    return True


def _remove_orphans(path: Path) -> list[Path]:
    """Remove temporary files that killed writers of ``path`` left behind; return them.

    ``atomic_write`` names its temporary file ``.<name>.<pid>.<random>.tmp``.
    One is an orphan when its writer's process no longer exists (``os.kill(pid, 0)``
    fails with ProcessLookupError); a live writer's file (another process, or
    this one) is never touched. Files in the older ``.<name>.<random>.tmp``
    form, which carry no PID, are removed once untouched for ``ORPHAN_AGE_SECONDS``.
    """
    prefix = f".{path.name}."
    with_pid = re.compile(rf"^(\d+)\.{_RAND}$")
    legacy = re.compile(rf"^{_RAND}$")
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir()
                      if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    now = time.time()
    for tmp in candidates:
        middle = tmp.name[len(prefix):-len(".tmp")]
        m = with_pid.match(middle)
        try:
            if m:
                orphan = not _pid_alive(int(m.group(1)))
            elif legacy.match(middle):
                orphan = now - tmp.stat().st_mtime > ORPHAN_AGE_SECONDS
            else:
                continue
            if orphan and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # vanished meanwhile (its writer finished) or not ours to delete
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success ``os.replace`` it over ``path``.

    For writers that need a file name rather than a file object (``h5py.File``,
    ``np.save`` to a name); :func:`atomic_write` is this plus ``open``. The data
    are fsync-ed before the rename. If the block raises, ``path`` keeps its old
    content and the temporary file is removed. If the process is killed
    (SIGKILL, power loss) ``path`` also keeps its old content, and the
    temporary file left behind, ``.<name>.<pid>.<random>.tmp``, is removed by
    the next ``atomic_path``/``atomic_write`` to the same ``path`` once process
    ``<pid>`` no longer exists; a concurrent writer's live file is left alone.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
        >>> with atomic_path(p) as tmp, open(tmp, "wb") as f:  # np.save(tmp) would add '.npy'
        ...     np.save(f, np.arange(3))
        >>> np.load(p).tolist()
        [0, 1, 2]
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: expected a file path, got {type(path).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:  # durable before the rename
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success ``os.replace`` it over ``path``.

    If the block raises, ``path`` keeps its old content and the temporary
    file is removed. If the process is killed (SIGKILL, power loss) ``path``
    also keeps its old content; the temporary file it leaves behind,
    ``.<name>.<pid>.<random>.tmp``, is removed by the next ``atomic_write``
    to the same ``path`` once process ``<pid>`` no longer exists (a
    concurrent writer's live file is left alone; see :func:`atomic_path`).
    ``mode`` is ``'wb'`` or ``'w'`` (UTF-8).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_write(p, "w") as f:
        ...     _ = f.write("hello")
        >>> p.read_text()
        'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f


@contextlib.contextmanager
def _file_lock(path) -> Iterator[None]:
    """Inter-process lock for a read-modify-write of ``path`` (no-op where fcntl is missing).

    Locks the folder holding ``path`` (flock on the directory), so no stray
    ``.lock`` files appear next to shipped files or in the temp folder.
    """
    try:
        import fcntl
    except ImportError:  # Windows: best effort, no lock
        yield
        return
    folder = Path(path).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_json(path: Path, what: str) -> dict:
    """Read a JSON object, raising ValueError naming ``path`` if it is corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{what}: cannot read {path}: {err}") from err
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what}: {path} is not valid JSON ({err}); "
                         "fix or delete the file") from err
    if not isinstance(data, dict):
        raise ValueError(f"{what}: {path} should hold a JSON object, found {type(data).__name__}")
    return data


def update_json(path, updates: dict, what: str) -> dict:
    """Merge ``updates`` into the JSON object at ``path`` atomically; return the result."""
    path = Path(path)
    with _file_lock(path):
        data = read_json(path, what) if path.exists() else {}
        data.update(updates)
        with atomic_write(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, allow_nan=False)
            f.write("\n")
    return data


# --------------------------------------------------------------------------- records
def _clean_number(x, what: str):
    """Return ``x`` as a finite python int/float, or raise ValueError naming ``what``."""
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"{what}: expected a number, got a tensor of shape {tuple(x.shape)}")
        x = x.detach().cpu().item()
    elif isinstance(x, np.ndarray) and x.ndim == 0:
        x = x.item()
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise ValueError(f"{what}: expected a finite int or float, got {type(x).__name__}")
    if isinstance(x, numbers.Integral):
        return int(x)
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{what}: expected a finite number, got {x}")
    return x


def clean_record_value(value, what: str, depth: int = 0, count: list | None = None):
    """Validate a record value: a number, or a small (nested) list/dict of numbers."""
    count = [0] if count is None else count
    if depth > 2:
        raise ValueError(f"{what}: nested too deeply (at most a dict of lists)")
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim >= 1:
        value = value.tolist()
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{what}: dict keys must be strings, got {k!r}")
            out[k] = clean_record_value(v, f"{what}[{k!r}]", depth + 1, count)
        return out
    if isinstance(value, (list, tuple)):
        return [clean_record_value(v, f"{what}[{i}]", depth + 1, count) for i, v in enumerate(value)]
    count[0] += 1
    if count[0] > MAX_RECORD_ITEMS:
        raise ValueError(f"{what.split('[')[0]}: at most {MAX_RECORD_ITEMS} numbers per record")
    return _clean_number(value, what)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def record(name: str, value):
    """Record a notebook's headline number (GUIDE section 2, step 10).

    ``name`` is identifier-like (letters, digits, ``_``; dots allowed between
    parts, e.g. ``'glow.rmse_omega_m'``). ``value`` is a finite int/float
    (numpy scalars and one-element tensors are fine) or a small list/dict of
    them. The value is kept in ``cosmonb.runtime.RECORDS``, printed as
    ``[cosmonb.record] name = value``, and, when the environment variable
    ``COSMONB_RECORDS`` names a JSON file, merged into that file atomically.
    Returns the cleaned value.

    Example:
        >>> record("demo_rmse", 0.0581)
        [cosmonb.record] demo_rmse = 0.0581
        0.0581
        >>> record("demo_r2", {"omega_m": 0.93, "sigma_8": 0.64})
        [cosmonb.record] demo_r2 = {omega_m: 0.93, sigma_8: 0.64}
        {'omega_m': 0.93, 'sigma_8': 0.64}
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"name: expected an identifier-like string such as 'rmse_omega_m', got {name!r}")
    clean = clean_record_value(value, "value")
    RECORDS[name] = clean
    print(f"[cosmonb.record] {name} = {_fmt(clean)}")
    target = os.environ.get("COSMONB_RECORDS", "").strip()
    if target:
        update_json(target, {name: clean}, "COSMONB_RECORDS")
    return clean


def read_records(path=None) -> dict:
    """Read back recorded headline numbers.

    ``path``: the JSON file ``record`` merged into; ``None`` means the file
    named by ``COSMONB_RECORDS`` or, if that is unset, this process's
    in-memory records. A missing or corrupt file raises (never an empty dict
    that could pass for "nothing recorded").

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "records.json")
        >>> os.environ["COSMONB_RECORDS"] = p
        >>> _ = record("demo_value", 3)
        [cosmonb.record] demo_value = 3
        >>> read_records(p)
        {'demo_value': 3}
        >>> del os.environ["COSMONB_RECORDS"]
    """
    if path is None:
        env = os.environ.get("COSMONB_RECORDS", "").strip()
        if not env:
            return dict(RECORDS)
        path = env
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: expected a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no records file at {path} (did the notebook call cosmonb.record "
                                "with COSMONB_RECORDS set to this file?)")
    return read_json(path, "path")


def run_notebook(path, output, *, quick: bool = True, parameters: dict | None = None,
                 timeout: int | None = None) -> tuple[dict, float]:
    """Execute a notebook headless with papermill and collect what it gave :func:`record`.

    Runs ``path`` into ``output`` (the executed copy, with figures), in its own folder,
    with ``QUICK`` injected and ``COSMONB_QUICK`` / ``COSMONB_RECORDS`` /
    ``COSMONB_HEADLESS`` set for the kernel (restored afterwards). The records go to
    ``<output stem>.records.json`` beside ``output``. Returns ``(records, seconds)``; a failing cell raises papermill's
    ``PapermillExecutionError`` (the records written up to then stay on disk).

    Usage (it starts a Jupyter kernel, so it is exercised by the notebook tests, not as a doctest)::

        records, seconds = run_notebook("notebooks/00_fields_and_power_spectra.ipynb", "build/00.ipynb")
    """
    import time

    import papermill as pm

    if parameters and "QUICK" in parameters:
        raise ValueError("parameters: pass quick=True/False rather than QUICK (it also sets COSMONB_QUICK)")
    path, output = Path(path), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    records_file = output.with_name(output.stem + ".records.json")
    records_file.unlink(missing_ok=True)
    saved = {k: os.environ.get(k) for k in ("COSMONB_QUICK", "COSMONB_RECORDS", "COSMONB_HEADLESS")}
    os.environ.update(COSMONB_QUICK="1" if quick else "0", COSMONB_RECORDS=str(records_file),
                      COSMONB_HEADLESS="1")  # no front end: static figures instead of live widgets
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(output), parameters={"QUICK": bool(quick), **(parameters or {})},
                            cwd=str(path.parent), kernel_name="python3", progress_bar=False,
                            execution_timeout=timeout)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    return (read_records(records_file) if records_file.exists() else {}), seconds
