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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from recgym.common.config import ConfigError
from recgym.common.errors import CorruptFileError, DiskFullError, is_disk_full
from recgym.common.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    clean_stale_temp_files,
    read_json_file,
    sha256_bytes,
)
from recgym.common.yamlio import load_yaml_file
from recgym.experiments.config import ExperimentConfig, config_diff, config_hash

__all__ = ["RunError", "run_experiment", "prepare_run_dir", "RUN_MARKER", "read_run_marker", "RunLock"]

MIN_FREE_BYTES = 200 * 2**20
CONFIG_FILE = "config.yaml"
RUN_MARKER = ".recgym-run.json"
RUN_FORMAT = "recgym-run"
LOCK_FILE = ".recgym-run.lock"


class RunError(RuntimeError):
    """The run cannot start or continue (folder, disk, resume mismatch); the message says what to do."""


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
        elif has_config or marker:
            raise RunError(f"run folder {out} already holds a run; pass --resume to continue it or --overwrite to "
                           "replace it (or --out for a new folder)")
        else:
            raise RunError(f"run folder {out} is not empty and holds no recgym run; choose an empty or new --out")
    preflight(out)
    if read_run_marker(out) is None:
        _write_run_marker(out, cfg.name)
    return continuing


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


def _manifest_hash(world: Any) -> str | None:
    """sha256 of the world's provenance (encoder fingerprint, cache manifest keys), when it has one."""
    if not world.source:
        return None
    return sha256_bytes(json.dumps(world.source, sort_keys=True, default=str).encode())


# ------------------------------------------------------------------------------------------- main
def run_experiment(cfg: ExperimentConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
                   console: Any = None) -> dict[str, Any]:
    """Run the whole job; returns the summary dict written into ``metrics.json``.

    Raises:
        RunError: the folder cannot be used (see :func:`prepare_run_dir`) or is in use by another process.
        DiskFullError: the disk filled up; its message names the file, the space and how to resume.
    """
    from rich.console import Console

    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 130)
    t0 = time.perf_counter()
    out = Path(out)
    cfg = _fit_env_to_world(cfg)  # before the run folder exists: a config that cannot fit the world fails here
    continuing = prepare_run_dir(cfg, out, resume=resume, overwrite=overwrite)
    with RunLock(out), _disk_full_in_threads_is_reraised():
        try:
            return _run(cfg, out, continuing, console, t0)
        except DiskFullError as exc:
            exc.advice = exc.advice or f"free space, then continue with --resume (--out {_quote(out)})"
            raise
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise DiskFullError(exc.filename or out, code=exc.errno,
                                advice=f"free space, then continue with --resume (--out {_quote(out)})") from exc


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


def _run(cfg: ExperimentConfig, out: Path, continuing: bool, console: Any, t0: float) -> dict[str, Any]:
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
                "command": sys.argv}
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

    from recgym.experiments.cells import run_cells

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        run_cells(cfg, world, out, chash, progress, console)

    from recgym.experiments.report import write_outputs

    summary = write_outputs(cfg, out, chash, world, console)
    elapsed = time.perf_counter() - t0
    run_info["wall_time_s"] = round(elapsed, 1)
    atomic_write_json(out / "run.json", run_info)
    console.print(f"done in {elapsed:.0f} s: {out / 'report.md'}")
    return summary


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


def save_cell(path_json: Path, metrics: dict[str, Any], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Arrays first, JSON (the completion marker, with the arrays' sha256) last; both atomic."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(path_json.with_suffix(".npz"), data)
    atomic_write_json(path_json, {**meta, "npz_sha256": sha256_bytes(data), "metrics": metrics})
