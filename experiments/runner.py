"""``recgym run``: config -> run folder -> train / fit -> evaluate every (agent, seed) cell -> report.

Run folder layout::

    config.yaml            the resolved config (every default filled in)
    run.json               config sha256, package versions, system info, world fingerprint, cache manifest hash
    world.json             world name, fingerprint and provenance (``World.source``)
    fidelity/              real-data worlds only: the fidelity report card
    logs/seed<s>.npz       logged data of the logging policy (offline learners fit on it)
    checkpoints/<agent>__seed<s>/   RL checkpoints (``latest.json`` = completion marker)
    tensorboard/<agent>__seed<s>/   SB3 TensorBoard logs
    curves/<agent>__seed<s>.csv     learning curve (step, held-out return, training episode return)
    cells/<agent>__seed<s>.json     one evaluation cell (metrics per segment; written last) + .npz arrays
    metrics.json, metrics.csv       per agent x seed x segment, plus mean / CI over seeds
    plots/*.png, report.md

Reliability: an existing run folder is refused without ``--resume`` / ``--overwrite``; ``--resume`` refuses
a changed config (naming the changed keys), continues RL training from the newest valid checkpoint (falling
back past a corrupt one, and saying so) and re-runs only the evaluation cells that are missing, corrupt or
whose config hash differs. A write test and a free-space check run before anything is trained.

Safety guarantees:

* **Ownership.** A new run folder gets ``.recgym-run.json`` (format, run id, name, creation time) before
  anything else. ``--overwrite`` deletes a folder only when it holds a valid marker, and never the current
  working directory or any parent of it, the home directory or a parent of it, a filesystem root or mount
  point, a symbolic link, or a folder with a ``.git`` anywhere inside (a git work tree). A run folder of an
  older recgym (``config.yaml`` without the marker) is refused with the command to remove it by hand;
  ``--resume`` on such a folder (same config) adopts it by writing the marker.
* **One process per folder.** ``.recgym-run.lock`` (an advisory ``flock``) is held for the whole run; a
  second ``recgym run`` on the same folder, or an ``--overwrite`` of a folder in use, is refused.
* **Leftovers.** Temp files of atomic writes interrupted by a kill (``.<name>.<8 chars>.tmp``) are removed
  when a run (re)starts; nothing else is touched.
* **Paths.** Every file name built from the config (agent labels, seeds) is checked to stay inside the run
  folder (labels are validated with the config first).
* **Full disk.** ENOSPC/EDQUOT anywhere in the run ends in :class:`~recgym.common.errors.DiskFullError`: one
  line naming the file, the bytes needed / free and the resume command; atomic writes leave the previous
  file (or none), so nothing half-written is ever loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console

from recgym.common.config import ConfigError
from recgym.common.errors import CorruptFileError, DiskFullError, is_disk_full
from recgym.common.io import (
    atomic_write_json,
    atomic_write_text,
    clean_stale_temp_files,
    read_json_file,
    sha256_bytes,
)
from recgym.common.progress import Progress
from recgym.common.yamlio import load_yaml_file
from recgym.envs.world import World
from recgym.experiments.config import ExperimentConfig, config_diff, config_hash

__all__ = ["RunError", "CellsFailedError", "run_experiment", "prepare_run_dir", "validate_before_folder",
           "RUN_MARKER", "read_run_marker", "RunLock"]

MIN_FREE_BYTES = 200 * 2**20
CONFIG_FILE = "config.yaml"
RUN_MARKER = ".recgym-run.json"
RUN_FORMAT = "recgym-run"
LOCK_FILE = ".recgym-run.lock"


class RunError(RuntimeError):
    """The run cannot start or continue (folder, disk, resume mismatch); the message says what to do."""


class CellsFailedError(RunError):
    """The run finished, but some (agent, seed) cells failed; the report names them and ``--resume`` retries."""


def _set_status(out: Path, status: str, error: str | None = None) -> None:
    """Record the run's status (``running``, ``complete``, ``failed``) in its marker (atomic)."""
    marker = read_run_marker(out)
    if marker is None:
        return
    marker = {k: v for k, v in marker.items() if k != "error"}
    atomic_write_json(out / RUN_MARKER, {**marker, "status": status, **({"error": error} if error else {})})


# ------------------------------------------------------------------------------------------- ownership
def read_run_marker(out: Path) -> dict[str, Any] | None:
    """The run marker of ``out`` when it is valid (a regular file, format ``recgym-run``, a 32-hex run id)."""
    path = Path(out) / RUN_MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        meta = read_json_file(path, what="run marker", max_bytes=1 << 16)
    except CorruptFileError:
        return None
    ok = isinstance(meta, dict) and meta.get("format") == RUN_FORMAT and \
        isinstance(meta.get("run_id"), str) and re.fullmatch(r"[0-9a-f]{32}", meta["run_id"])
    return meta if ok else None


def _write_run_marker(out: Path, name: str) -> None:
    from recgym import __version__

    atomic_write_json(out / RUN_MARKER, {"format": RUN_FORMAT, "version": 1, "run_id": uuid.uuid4().hex,
                                         "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                         "recgym_version": __version__})


def _refuse_to_delete(out: Path) -> str | None:
    """Why ``out`` must never be deleted by ``--overwrite`` whatever it holds, or ``None``."""
    if out.is_symlink():
        return "it is a symbolic link"
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        return "it is the current working directory or a parent of it"
    home = Path.home().resolve()
    if real == home or real in home.parents:
        return "it is your home directory or a parent of it"
    if real.parent == real or os.path.ismount(real):
        return "it is a filesystem root or mount point"
    return None


def _holds_git(out: Path) -> str | None:
    """Why ``out`` is (or holds) a git work tree, or ``None``; symlinked folders are not followed."""
    real = out.resolve()
    for dirpath, dirs, files in os.walk(real, followlinks=False):
        if ".git" in dirs or ".git" in files:
            where = Path(dirpath)
            return "it is a git work tree (holds .git)" if where == real else f"it holds a git work tree ({where})"
    return None


def prepare_run_dir(cfg: ExperimentConfig, out: Path, *, resume: bool, overwrite: bool) -> bool:
    """Create/validate the run folder; returns True when continuing an existing run.

    ``--overwrite`` deletes ``out`` only when it holds a valid recgym run marker and none of the refusals of
    the module docstring applies. The marker is written (with a new run id) before this returns, for new runs
    and for old marker-less runs adopted by ``--resume``.
    """
    if resume and overwrite:
        raise RunError("--resume and --overwrite are exclusive: choose one")
    out = Path(out)
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    existing = out.is_dir() and any(out.iterdir())
    continuing = False
    if existing:
        has_config = (out / CONFIG_FILE).is_file()
        marker = read_run_marker(out)
        if overwrite:
            reason = _refuse_to_delete(out)
            if reason:
                raise RunError(f"--overwrite: refusing to delete {out}: {reason}; choose another --out")
            if marker is None:
                if has_config:
                    raise RunError(
                        f"--overwrite: {out} looks like a run of an older recgym ({CONFIG_FILE} but no {RUN_MARKER} "
                        f"marker); --overwrite deletes only folders recgym marked as its runs. Check it and remove it "
                        f"yourself (rm -r {_quote(out)}), resume it with --resume, or choose another --out")
                raise RunError(f"--overwrite: {out} is not empty and does not hold a recgym run ({RUN_MARKER} "
                               "missing); refusing to delete it")
            reason = _holds_git(out)
            if reason:
                raise RunError(f"--overwrite: refusing to delete {out}: {reason}; choose another --out")
            with RunLock(out, what="--overwrite"):
                shutil.rmtree(out)
        elif resume and not has_config and marker is not None:
            pass  # a marked run stopped before writing its config (e.g. a full disk): start it afresh
        elif resume:
            if not has_config:
                raise RunError(f"--resume: {out} does not hold a recgym run ({CONFIG_FILE} missing)")
            old = _read_run_config(out / CONFIG_FILE)
            changed = config_diff(old, cfg.to_dict())
            if changed:
                raise RunError(f"--resume: the config differs from the run in {out} in: {', '.join(changed[:12])}"
                               f"{' ...' if len(changed) > 12 else ''}; resume with the same config or use --overwrite")
            continuing = True
        elif marker is not None and marker.get("status") == "failed":
            # a failed run must not block its own fix: a plain rerun replaces it (same guards as --overwrite)
            reason = _refuse_to_delete(out) or _holds_git(out)
            if reason:
                raise RunError(f"run folder {out} holds a failed run but cannot be replaced: {reason}; choose another "
                               "--out")
            with RunLock(out, what="replacing a failed run"):
                shutil.rmtree(out)
            _notice(f"replaced the failed run in {out} (it failed with: {str(marker.get('error', '?'))[:200]}); "
                    "pass --resume instead to keep its finished cells")
        elif has_config or marker:
            raise RunError(f"run folder {out} already holds a run; pass --resume to continue it or --overwrite to "
                           "replace it (or --out for a new folder)")
        else:
            raise RunError(f"run folder {out} is not empty and holds no recgym run; choose an empty or new --out")
    preflight(out)
    if read_run_marker(out) is None:
        _write_run_marker(out, cfg.name)
    return continuing


def _notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def _read_run_config(path: Path) -> dict[str, Any]:
    """The resolved config a run wrote, read by recgym's bounded YAML reader (:mod:`recgym.common.yamlio`:
    size, encoding, duplicate keys, tags and alias expansion checked); refused cleanly when corrupt."""
    try:
        old = load_yaml_file(path, str(path))
    except ConfigError as exc:
        raise RunError(f"--resume: {exc}; the run's config is corrupt: restore it or start again with --overwrite") from None
    if not isinstance(old, dict):
        raise RunError(f"--resume: {path}: expected a mapping (the resolved config), received {type(old).__name__}")
    return old


class RunLock:
    """An exclusive advisory lock (``flock``) on ``<run folder>/.recgym-run.lock`` for the life of a run.

    Raises :class:`RunError` at entry when another process holds it. A no-op where ``fcntl`` is missing.
    """

    def __init__(self, out: Path, what: str = "run") -> None:
        self.path = Path(out) / LOCK_FILE
        self.what = what
        self._fh: Any = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self._fh = open(self.path, "a+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            self._fh = None
            raise RunError(f"{self.what}: run folder {self.path.parent} is in use by another recgym process; wait for "
                           "it to finish or choose another --out") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None


def preflight(out: Path) -> None:
    """Create the folder, write and delete a test file, check free space - before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(os.urandom(1 << 20))
        probe.unlink()
    except OSError as exc:
        if out.is_dir():
            (out / ".write-test").unlink(missing_ok=True)
        raise RunError(f"run folder {out}: cannot write ({exc.strerror or exc}); choose another --out") from None
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise RunError(f"run folder {out}: only {free / 2**20:.0f} MiB free, expected at least "
                       f"{MIN_FREE_BYTES / 2**20:.0f} MiB; free space or choose another --out")


def _system_info(threads: int | None) -> dict[str, Any]:
    import torch

    from recgym import __version__

    versions = {"recgym": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                "numpy": np.__version__}
    for mod in ("stable_baselines3", "gymnasium", "transformers"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional detail
            versions[mod] = None
    return {"versions": versions, "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "threads_config": threads,
            "cuda": torch.cuda.is_available()}


def _manifest_hash(world: World) -> str | None:
    """sha256 of the world's provenance (encoder fingerprint, cache manifest keys), when it has one."""
    if not world.source:
        return None
    return sha256_bytes(json.dumps(world.source, sort_keys=True, default=str).encode())


# ------------------------------------------------------------------------------------------- main
def apply_world_defaults(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config with its world's own env settings under the env keys the config sets (cheap: only worlds
    built in milliseconds declare them, e.g. the analytic world), validated again as a whole."""
    if cfg.world != "analytic":
        return cfg
    from recgym.envs import make_world
    from recgym.envs.factory import apply_world_env_defaults

    world = make_world(cfg.world, world_config=cfg.world_config)
    env = apply_world_env_defaults(cfg.env, world)
    if env == cfg.env:
        return cfg
    return ExperimentConfig.model_validate({**cfg.to_dict(), "env": {**env.model_dump(), "action_type": cfg.env.action_type}})


def validate_before_folder(cfg: ExperimentConfig) -> None:
    """Checks that need no folder beyond the config's own validation: a local encoder folder exists (the real
    data is read, and the env sized to the world, by :func:`_fit_env_to_world` right after). A failure here
    leaves no folder behind, so the corrected command runs without ``--overwrite``.

    Raises:
        RunError: naming what is missing and where it was looked for.
    """
    if cfg.encoder not in (None, "hashing") and not (Path(cfg.encoder).expanduser() / "config.json").is_file():
        raise RunError(f"encoder: expected 'hashing' or a local model folder holding config.json, received "
                       f"{cfg.encoder!r} (not found); recgym never downloads a model at run time")


def run_experiment(cfg: ExperimentConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
                   console: Console | None = None, progress: Progress | None = None, backend: str = "sequential",
                   workers: int | None = None, ray_address: str | None = None,
                   on_curve: Callable[..., None] | None = None,
                   reraise: tuple[type[BaseException], ...] = ()) -> dict[str, Any]:
    """Run the whole job; returns the summary dict written into ``metrics.json``.

    Flow (one way): the validated config -> checks that need no folder (:func:`validate_before_folder`) ->
    the run folder -> world -> cells (train / fit / evaluate) -> metrics, plots, report. A run that raises is
    marked ``failed`` in its marker (a plain rerun may replace it); cells that fail are recorded and the run
    goes on, then :class:`CellsFailedError` is raised after the report is written.

    ``backend``: ``"sequential"`` (cells one after the other in this process) or ``"ray"`` (each cell a Ray
    task; ``workers`` CPUs of a local cluster, or the cluster at ``ray_address``); the run folder and
    ``metrics.json`` are the same either way, and ``--resume`` works across backends. ``on_curve(cell, step,
    value)`` receives every learning-curve point and ``reraise`` lists exceptions that stop the run instead of
    failing a cell (``recgym tune`` prunes trials with both; sequential backend only).

    Raises:
        RunError: the folder cannot be used (see :func:`prepare_run_dir`), is in use, or a check failed.
        CellsFailedError: the report is written but some cells failed (``--resume`` retries them).
        DiskFullError: the disk filled up; its message names the file, the space and how to resume.
    """
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 130)
    progress = progress or Progress(console.file, console=console)
    t0 = time.perf_counter()
    out = Path(out)
    if backend not in ("sequential", "ray"):
        raise RunError(f"--backend: expected 'sequential' or 'ray', received {backend!r}")
    if backend == "ray":
        from recgym.experiments.ray_backend import RayUnavailableError, require_ray

        try:
            require_ray()
        except RayUnavailableError as exc:
            raise RunError(str(exc)) from None
    cfg = apply_world_defaults(cfg)
    validate_before_folder(cfg)
    cfg = _fit_env_to_world(cfg)  # before the run folder exists: a config that cannot fit the world fails here
    continuing = prepare_run_dir(cfg, out, resume=resume, overwrite=overwrite)
    with RunLock(out), _disk_full_in_threads_is_reraised():
        _set_status(out, "running")
        try:
            return _run(cfg, out, continuing, console, progress, t0, backend, workers, ray_address,
                        {"on_curve": on_curve, "reraise": tuple(reraise)})
        except CellsFailedError as exc:
            _set_status(out, "failed", str(exc))
            raise
        except DiskFullError as exc:
            exc.advice = exc.advice or f"free space, then continue with --resume (--out {_quote(out)})"
            raise
        except OSError as exc:
            if not is_disk_full(exc):
                _set_status(out, "failed", f"{type(exc).__name__}: {exc}")
                raise
            raise DiskFullError(exc.filename or out, code=exc.errno,
                                advice=f"free space, then continue with --resume (--out {_quote(out)})") from exc
        except Exception as exc:
            _set_status(out, "failed", f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500])
            raise


@contextlib.contextmanager
def _disk_full_in_threads_is_reraised() -> Iterator[None]:
    """Silence the thread traceback of a disk-full error in a writer thread (TensorBoard's event writer):
    its owner re-raises it in the main thread, where it becomes the one-line :class:`DiskFullError`."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and is_disk_full(args.exc_value):
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _run(cfg: ExperimentConfig, out: Path, continuing: bool, console: Console, progress: Progress, t0: float,
         backend: str = "sequential", workers: int | None = None, ray_address: str | None = None,
         hooks: dict[str, Any] | None = None) -> dict[str, Any]:
    import torch

    from recgym.experiments.cells import RunContext, run_cells

    removed = clean_stale_temp_files(out, recursive=True)
    if removed:
        console.print(f"removed {len(removed)} temp file(s) left by an interrupted write: "
                      f"{', '.join(str(p.relative_to(out)) for p in removed[:5])}{' ...' if len(removed) > 5 else ''}",
                      markup=False)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    chash = config_hash(cfg)
    if not continuing:
        atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    console.print(f"[bold]recgym run[/] {cfg.name} -> {out} (config {chash[:12]}{', resuming' if continuing else ''})")

    from recgym.experiments.enrichment import build_world

    tw = time.perf_counter()
    console.print(f"world {cfg.world}: building (first use encodes its texts into the cache) ...")
    world = build_world(cfg, progress=True, console=console)
    fingerprint = world.fingerprint()
    console.print(f"world {cfg.world}: {world.catalog.num_items} items, {world.population.num_users} users "
                  f"({time.perf_counter() - tw:.1f} s)")
    atomic_write_json(out / "world.json", {"name": world.name, "fingerprint": fingerprint, "source": world.source})
    run_info = {"name": cfg.name, "config_sha256": chash, "world_fingerprint": fingerprint,
                "cache_manifest_sha256": _manifest_hash(world), "system": _system_info(cfg.threads),
                "command": sys.argv, "sessions": _previous_sessions(out) if continuing else []}
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_json(out / "run.json", run_info)
    if cfg.is_real_world and not (out / "fidelity" / "fidelity.md").is_file():
        from recgym.envs.factory import make_encoder
        from recgym.envs.worlds.fitted import FitConfig
        from recgym.experiments.fidelity import FidelityConfig, cached_fidelity_report

        console.print("real-data world: fidelity report card (reused from the cache when this world has one) ...")
        fid_cfg = FidelityConfig(fit=FitConfig.model_validate(dict(cfg.world_config)))
        report, hit = cached_fidelity_report(cfg.world, cfg.data_dir, out / "fidelity", make_encoder(cfg.encoder),
                                             config=fid_cfg, progress=True)
        console.print(f"fidelity ({'cached' if hit else 'computed'}): {report['verdict']}")

    def notify(msg: str) -> None:
        progress.print(msg)

    ctx = RunContext.create(cfg, world, out, chash, progress, notify, **(hooks or {}))
    with progress:
        if backend == "ray":
            from recgym.experiments.ray_backend import RayUnavailableError, run_cells_ray

            try:
                failures = run_cells_ray(ctx, workers, ray_address)
            except RayUnavailableError as exc:
                raise RunError(str(exc)) from None
        else:
            failures = run_cells(ctx)

    from recgym.experiments.diagnose import update_planning_gain
    from recgym.experiments.report import write_outputs

    update_planning_gain(cfg, out, world)  # runs listing both oracle and lookahead measure it themselves

    summary = write_outputs(cfg, out, chash, world, console)
    elapsed = time.perf_counter() - t0
    run_info["sessions"].append({"started": started, "wall_time_s": round(elapsed, 1), "resumed": continuing,
                                 "backend": backend, "failed_cells": sorted(failures)})
    run_info["wall_time_s"] = round(sum(x["wall_time_s"] for x in run_info["sessions"]), 1)
    atomic_write_json(out / "run.json", run_info)
    failed = summary["failures"]
    if failed:
        n = sum(len(v) for v in failed.values())
        names = ", ".join(f"{a}__seed{s}" for a, per in failed.items() for s in per)
        raise CellsFailedError(f"{n} of {len(cfg.agents) * len(cfg.evaluation.seeds)} cells failed ({names}); the "
                               f"report ({out / 'report.md'}) lists their errors and leaves them out of the means; "
                               "retry them with --resume (or fix the config and rerun: a failed run is replaced)")
    _set_status(out, "complete")
    console.print(f"done in {elapsed:.0f} s (this session; {run_info['wall_time_s']:.0f} s in all): {out / 'report.md'}")
    return summary


def _previous_sessions(out: Path) -> list[dict[str, Any]]:
    """The sessions recorded by earlier runs of this folder (``run.json``); a run without a session list
    counts as one session of its recorded wall time."""
    try:
        old = read_json_file(out / "run.json", what="run info")
    except (CorruptFileError, FileNotFoundError):
        return []
    if not isinstance(old, dict):
        return []
    sessions = old.get("sessions")
    if isinstance(sessions, list) and all(isinstance(x, dict) and isinstance(x.get("wall_time_s"), (int, float))
                                          for x in sessions):
        return sessions
    if isinstance(old.get("wall_time_s"), (int, float)):
        return [{"started": None, "wall_time_s": old["wall_time_s"], "resumed": False}]
    return []


def _fit_env_to_world(cfg: ExperimentConfig) -> ExperimentConfig:
    """Size the env keys the config leaves unset to the world (cheap: no encoding, no fit); an explicit value
    that cannot fit the world raises a ConfigError here, before any folder or heavy work."""
    from recgym.common.config import ConfigError
    from recgym.envs.factory import adapt_env_config, initial_item_count

    try:
        n_initial = initial_item_count(cfg.world, world_config=cfg.world_config, data_dir=cfg.data_dir)
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:
        raise RunError(f"world {cfg.world!r}: {exc}") from exc
    env = adapt_env_config(cfg.env, n_initial)
    return cfg if env is cfg.env else cfg.model_copy(update={"env": env})
