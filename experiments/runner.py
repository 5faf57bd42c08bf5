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
a changed config (naming the changed keys), continues RL training from the last complete checkpoint and
re-runs only the evaluation cells that are missing or whose config hash differs. A write test and a
free-space check run before anything is trained.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from recgym.common.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes
from recgym.experiments.config import ExperimentConfig, config_diff, config_hash

__all__ = ["RunError", "run_experiment", "prepare_run_dir"]

MIN_FREE_BYTES = 200 * 2**20
MARKER = "config.yaml"


class RunError(RuntimeError):
    """The run cannot start or continue (folder, disk, resume mismatch); the message says what to do."""


# ------------------------------------------------------------------------------------------- folder
def prepare_run_dir(cfg: ExperimentConfig, out: Path, *, resume: bool, overwrite: bool) -> bool:
    """Create/validate the run folder; returns True when continuing an existing run."""
    if resume and overwrite:
        raise RunError("--resume and --overwrite are exclusive: choose one")
    existing = out.exists() and any(out.iterdir()) if out.is_dir() else out.exists()
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    continuing = False
    if existing:
        is_run = (out / MARKER).is_file()
        if overwrite:
            if not is_run:
                raise RunError(f"--overwrite: {out} is not empty and does not hold a recgym run ({MARKER} missing); "
                               "refusing to delete it")
            shutil.rmtree(out)
        elif resume:
            if not is_run:
                raise RunError(f"--resume: {out} does not hold a recgym run ({MARKER} missing)")
            old = yaml.safe_load((out / MARKER).read_text())
            changed = config_diff(old, cfg.to_dict())
            if changed:
                raise RunError(f"--resume: the config differs from the run in {out} in: {', '.join(changed[:12])}"
                               f"{' ...' if len(changed) > 12 else ''}; resume with the same config or use --overwrite")
            continuing = True
        else:
            raise RunError(f"run folder {out} already holds a run; pass --resume to continue it or --overwrite to "
                           "replace it (or --out for a new folder)")
    preflight(out)
    return continuing


def preflight(out: Path) -> None:
    """Create the folder, write and delete a test file, check free space - before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(os.urandom(1 << 20))
        probe.unlink()
    except OSError as exc:
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
    """Run the whole job; returns the summary dict written into ``metrics.json``."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 130)
    t0 = time.perf_counter()
    out = Path(out)
    continuing = prepare_run_dir(cfg, out, resume=resume, overwrite=overwrite)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    chash = config_hash(cfg)
    resolved = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if not continuing:
        atomic_write_text(out / MARKER, resolved)
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
        from recgym.experiments.fidelity import fidelity_report

        console.print("real-data world: writing the fidelity report card ...")
        fidelity_report(cfg.world, cfg.data_dir, out / "fidelity")

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


def save_cell(path_json: Path, metrics: dict[str, Any], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Arrays first, JSON (the completion marker) last; both atomic."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path_json.with_suffix(".npz"), buf.getvalue())
    atomic_write_json(path_json, {**meta, "metrics": metrics})
