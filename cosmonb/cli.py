"""The ``cosmonb`` command: ``python -m cosmonb info | run | train``.

    python -m cosmonb info                       # versions, device, where data and checkpoints are looked for
    python -m cosmonb run [--quick] [NB ...]     # execute the notebooks into build/ (what `make run` does)
    python -m cosmonb train flow --preset quick --out runs/   # retrain shipped models into a folder

``train MODEL``: ``flow`` (= ``flows_1d``, ``flows_2d``, ``flows_cond``, the galaxy
flows of notebook 02), ``imnn`` (= ``imnn_grf``, ``imnn_lognormal``, ``imnn_lognormal_refit``,
the IMNNs of notebook 01), one of those names, or a map model (:data:`MAP_MODELS`: ``higlow``, ``vdvae``, ``ddpm`` of notebooks
03-05, on CMD maps with ``--data-root``). Presets (``cosmonb/recipes/``):
``quick`` (seconds), ``cpu`` (what was shipped), ``paper`` (the paper's sizes where they
differ). Each model leaves ``<out>/<name>.pt`` and an entry in ``<out>/MANIFEST.json``,
which ``checkpoints.load_model(name, directory=out)`` loads. The flows and the map models
train with :class:`cosmonb.train.Trainer` and run unchanged under ``torchrun`` (DDP; rank 0
writes).
"""
from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser", "default_out_dir", "MODELS", "PRESETS", "OUT_ENV"]

#: ``train`` targets: a family name -> the shipped checkpoints it trains.
FAMILIES = {"flow": ("flows_1d", "flows_2d", "flows_cond"),
            "imnn": ("imnn_grf", "imnn_lognormal", "imnn_lognormal_refit")}
#: The map models (notebooks 03-05): name -> (module of cosmonb.recipes, its training function), each
#: called as ``fn(preset, out=..., data_root=..., resume=..., max_steps=..., seed=..., progress=..., command=...)``.
MAP_MODELS = {"higlow": ("glow", "train_glow_recipe"), "vdvae": ("vdvae", "train_vdvae_recipe"),
              "ddpm": ("diffusion", "train_ddpm_recipe")}
MODELS = tuple(FAMILIES) + FAMILIES["flow"] + FAMILIES["imnn"] + tuple(MAP_MODELS)
#: ``paper_256``: the DDPM's second stage (256^2, started from the 64^2 ``paper`` weights).
PRESETS = ("quick", "cpu", "paper", "paper_256")
#: Environment variable naming the default ``--out`` folder of ``train``.
OUT_ENV = "COSMONB_CHECKPOINTS"
#: Packages ``info`` reports (missing optional ones print "not installed").
PACKAGES = ("torch", "numpy", "scipy", "zuko", "emcee", "scikit-learn", "h5py", "matplotlib", "ipywidgets",
            "tqdm", "papermill", "nbval", "jupyterlab", "colossus", "Pylians", "powerbox")


class CommandError(Exception):
    """Bad input to the command: printed as ``cosmonb <command>: error: ...`` (exit status 2)."""


def default_out_dir() -> Path:
    """Where ``train`` writes without ``--out``: ``$COSMONB_CHECKPOINTS``, else ``~/.cache/cosmonb/checkpoints``.

    Never the package's shipped ``pretrained/`` folder unless ``--out`` names it.
    """
    env = os.environ.get(OUT_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "cosmonb" / "checkpoints"


# --------------------------------------------------------------------------- info
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _guess_kind(config) -> str | None:
    if not isinstance(config, dict):
        return None
    if config.get("kind"):
        return config["kind"]
    if "features" in config:
        return "density_flow"
    if "simulator" in config and isinstance(config.get("model"), dict):
        return "imnn"
    return None


def _checkpoint_lines(directory, load: bool) -> list[str]:
    from . import checkpoints

    try:
        manifest = checkpoints.read_manifest(directory)
    except Exception as err:  # noqa: BLE001 - info reports, never fails
        return [f"    MANIFEST.json unreadable: {type(err).__name__}: {err}"]
    if not manifest:
        return ["    (no checkpoints)"]
    lines = []
    for name, entry in sorted(manifest.items()):
        size = entry.get("size_bytes", 0) / 1e3 if isinstance(entry, dict) else 0
        if not load:
            lines.append(f"    {name:22s} {size:7.0f} kB")
            continue
        try:
            model, _ = checkpoints.load_model(name, directory, kind=_guess_kind(entry.get("config")))
            status = f"loads ({type(model).__name__})"
        except Exception as err:  # noqa: BLE001
            status = f"FAILS: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
        lines.append(f"    {name:22s} {size:7.0f} kB  {status}")
    return lines


def cmd_info(args) -> int:
    t0 = time.perf_counter()
    import platform

    print(f"cosmonb {_version('cosmonb') if _version('cosmonb') != 'not installed' else ''}".rstrip()
          + f" at {Path(__file__).resolve().parent}")
    print(f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    print("packages:")
    for dist in PACKAGES:
        print(f"    {dist:14s} {_version(dist)}")
    import torch

    from . import checkpoints, runtime

    try:
        dev = str(runtime.device())
    except Exception as err:  # noqa: BLE001 - e.g. a bad COSMONB_DEVICE
        dev = f"unavailable ({err})"
    print(f"device: {dev}  (cosmonb.device(); COSMONB_DEVICE={os.environ.get('COSMONB_DEVICE', '') or 'unset'}; "
          f"cuda available: {torch.cuda.is_available()}"
          + (f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
          + ")")
    print(f"torch CPU capability: {runtime.machine_info()['cpu_capability']}  (torch.backends.cpu.get_cpu_capability())")
    print(f"threads: torch {torch.get_num_threads()}, CPUs {os.cpu_count()}")
    data_root = os.environ.get("DATA_ROOT", "").strip()
    if data_root:
        state = "exists" if Path(data_root).expanduser().is_dir() else "MISSING"
        print(f"data: DATA_ROOT={data_root} ({state}): real CAMELS files (CMD maps, Subfind CV_<i>/ folders)")
    else:
        print("data: DATA_ROOT unset: the notebooks and `train` use the built-in simulators "
              "(set DATA_ROOT, or pass --data-root, for real CAMELS files)")
    print(f"shipped checkpoints: {checkpoints.PRETRAINED_DIR} (no environment override)")
    lines = _checkpoint_lines(None, load=not args.no_load)
    print("\n".join(lines))
    out = default_out_dir()
    print(f"`cosmonb train` writes to: {out} (${OUT_ENV} or ~/.cache/cosmonb/checkpoints; --out overrides)"
          + ("" if out.is_dir() else " (not created yet)"))
    if out.is_dir() and (out / checkpoints.MANIFEST_NAME).is_file():
        print("\n".join(_checkpoint_lines(out, load=False)))
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


# --------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from . import notebooks_runner

    return notebooks_runner.run(args)


# --------------------------------------------------------------------------- train
def _data_root(args):
    root = args.data_root if args.data_root is not None else (os.environ.get("DATA_ROOT", "").strip() or None)
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.is_dir():
        where = "--data-root" if args.data_root is not None else "DATA_ROOT (environment variable)"
        raise CommandError(f"{where}: folder {path} does not exist (expected CAMELS Subfind catalogs "
                           "<root>/CV_<i>/groups_0XX.hdf5 for the flows, CMD maps "
                           "<root>/Maps_<field>_IllustrisTNG_LH_z=0.00.npy for the map models)")
    return path


def cmd_train(args) -> int:
    from .train import distributed

    names = FAMILIES.get(args.model, (args.model,))
    is_imnn = args.model in FAMILIES["imnn"] + ("imnn",)
    data_root = _data_root(args)
    if is_imnn and args.data_root is not None:
        raise CommandError("--data-root: the IMNNs train on fresh simulations at every step (notebook 01); "
                           "there is no data to read")
    if args.max_steps is not None and args.max_steps < 1:
        raise CommandError(f"--max-steps: expected an integer >= 1, got {args.max_steps}")
    out = Path(args.out).expanduser() if args.out is not None else default_out_dir()
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out: {out} is a file; expected a folder")
    command = "python -m cosmonb " + " ".join(args.argv)
    launched = distributed.is_launched()
    if is_imnn and launched:
        if int(os.environ.get("RANK", "0")) != 0:
            print(f"[cosmonb train] rank {os.environ.get('RANK')}: the IMNN trains in one process (rank 0); "
                  "this process has nothing to do")
            return 0
        print("[cosmonb train] under torchrun the IMNN trains on rank 0 alone (fresh simulations every step, "
              "no data to shard); the other processes exit")
    elif launched:
        distributed.setup()
    main_rank = distributed.is_main()
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    import tempfile

    workdir = tempfile.TemporaryDirectory(prefix="cosmonb_train_")  # built-in catalogs, shared by the flows
    try:
        import torch

        if not is_imnn and args.model not in MAP_MODELS:
            threads = 1 if args.threads is None else args.threads
            if threads:
                torch.set_num_threads(threads)
        if args.model in MAP_MODELS:
            import importlib

            module, function = MAP_MODELS[args.model]
            train_fn = getattr(importlib.import_module(f"cosmonb.recipes.{module}"), function)
            if args.threads:
                torch.set_num_threads(args.threads)
            if args.resume and not (out / f"{args.model}.state.pt").is_file() and args.preset != "paper_256":
                raise CommandError(f"--resume: no training state {out / (args.model + '.state.pt')} to continue "
                                   "from; train without --resume first (into the same --out)")
            train_fn(args.preset, out=out, data_root=data_root, resume=args.resume, max_steps=args.max_steps,
                     seed=args.seed, progress=args.progress, command=command)
            names = ()
        elif args.preset == "paper_256":
            raise CommandError("--preset paper_256: only the ddpm has this stage (256^2 from the 64^2 weights)")
        for name in names:
            if is_imnn:
                from .recipes.imnn import train_imnn_recipe

                train_imnn_recipe(name, args.preset, out=out, resume=args.resume, max_steps=args.max_steps,
                                  seed=args.seed, progress=args.progress, command=command)
                continue
            from .recipes.flows import train_flow_recipe

            if name == "flows_cond" and args.model == "flow" and data_root is not None \
                    and not any(data_root.glob("ASN1_*")):
                if main_rank:
                    print(f"[cosmonb train] skipping flows_cond: it needs {data_root}/ASN1_<i>/ catalogs that "
                          "record A_SN1 (real CAMELS CV catalogs all have A_SN1 = 1)")
                continue
            if args.resume and not (out / f"{name}.state.pt").is_file():
                raise CommandError(f"--resume: no training state {out / (name + '.state.pt')} to continue from; "
                                   "train without --resume first (into the same --out)")
            train_flow_recipe(name, args.preset, out=out, data_root=data_root, resume=args.resume,
                              max_steps=args.max_steps, seed=args.seed, progress=args.progress, command=command,
                              workdir=workdir.name)
    finally:
        workdir.cleanup()
        distributed.cleanup()
    if main_rank:
        print(f"[cosmonb train] done: load with cosmonb.checkpoints.load_model(name, directory={str(out)!r})")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from . import notebooks_runner

    parser = argparse.ArgumentParser(prog="python -m cosmonb", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{info,run,train}")
    sub.required = True
    info = sub.add_parser("info", help="versions, device, CPU capability, where data and checkpoints are looked for")
    info.add_argument("--no-load", action="store_true", help="list the shipped checkpoints without loading them")
    info.set_defaults(func=cmd_info)
    run = sub.add_parser("run", help="execute the notebooks headless into build/ (what `make run` does)",
                         description=notebooks_runner.DESCRIPTION)
    notebooks_runner.add_arguments(run)
    run.set_defaults(func=cmd_run)
    train = sub.add_parser(
        "train", help="retrain a shipped model into a folder", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a shipped model and write <out>/<name>.pt plus its MANIFEST.json entry.",
        epilog="models: flow = flows_1d, flows_2d, flows_cond (notebook 02; with --data-root, flows_cond needs "
               "ASN1_<i>/ catalogs that record A_SN1, else it is skipped); imnn = imnn_grf, imnn_lognormal "
               "(notebook 01); map models: " + ", ".join(MAP_MODELS) + " (notebooks 03-05; --data-root: CMD maps)."
               "\npresets: quick (seconds), cpu (what was shipped), paper (the paper's sizes where "
               "they differ; see cosmonb/recipes/), paper_256 (ddpm only).\ntorchrun: `python -m torch.distributed.run --nproc_per_node=2 "
               "-m cosmonb train flow ...` trains the flows with DDP (gloo on CPU, nccl on GPU; rank 0 writes); "
               "the IMNNs run on rank 0 alone (fresh simulations each step), the other ranks exit.")
    train.add_argument("model", choices=MODELS, help="what to train: " + ", ".join(MODELS))
    train.add_argument("--preset", choices=PRESETS, default="quick", help="quick, cpu, paper or paper_256 (default quick)")
    train.add_argument("--data-root", default=None,
                       help="real CAMELS Subfind catalogs <DIR>/CV_<i>/groups_0XX.hdf5 for the flows "
                            "(default: $DATA_ROOT, else the built-in catalog simulator)")
    train.add_argument("--out", default=None, help=f"folder for <name>.pt and MANIFEST.json (default ${OUT_ENV} "
                                                   "or ~/.cache/cosmonb/checkpoints)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--max-steps", type=int, default=None, help="cap the optimiser steps")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads per process (default: 1 for the flows, the fastest for these small "
                            "networks; torch's default for the map models; 0 keeps torch's default)")
    train.add_argument("--progress", action="store_true", help="show progress bars")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    """Entry point of ``python -m cosmonb``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except CommandError as err:
        print(f"python -m cosmonb {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m cosmonb {args.command}: error: {err}", file=sys.stderr)
        return 2
