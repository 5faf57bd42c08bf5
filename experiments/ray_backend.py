"""Run the cells of a run (and the trials of a tune) as Ray tasks: ``recgym run CONFIG --backend ray``.

Each (agent, replicate) cell is one Ray task declaring ``num_cpus=1`` (and a share of a GPU when the config's
device is CUDA and the cluster has GPUs). A task runs :func:`~recgym.experiments.cells.execute_cell` - the
very code of the sequential backend, with the same seed tree - in a worker process that builds the world
itself (memoised per worker; from the verified embedding cache), so a cell's evaluation is bit-identical to
the sequential backend's. The cells of a seed-batched agent (PPO ``trainer: fast``) are one task per agent,
which trains their seeds as one batched job and evaluates each (one task per seed when seeds are not
batched: ``training.batch_seeds`` false, or ``auto`` on CPU), so every seed is trained exactly once. Tasks write their cell files,
checkpoints and curves into the run folder themselves; on a multi-node cluster ``--out`` must therefore be a folder every node mounts (NFS or
similar), like ``$RECGYM_CACHE``, ``$RECGYM_DATA`` and the installed recgym.

Faults: a worker process that dies mid-cell (killed, out of memory) has its task retried by Ray (up to
``MAX_RETRIES`` times); the retry resumes training from the cell's last checkpoint. An exception inside a
cell is recorded as a failed cell, as with the sequential backend. ``--resume`` works across backends: both
read and write the same cell files.

Local Ray by default (``ray.init`` starts a private cluster with ``--workers`` CPUs); ``--ray-address``
joins an existing cluster (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the
others). Ray is an optional extra: ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from recgym.common.progress import Progress
from recgym.experiments.cells import (
    Cell,
    RunContext,
    batches_seeds,
    needs_logs,
    plan_cells,
    record_failure,
    seed_batched,
)
from recgym.experiments.config import ExperimentConfig

__all__ = ["require_ray", "start_ray", "ray_session", "run_cells_ray", "task_groups", "RayUnavailableError", "MAX_RETRIES",
           "FAULT_ENV"]

MAX_RETRIES = 2
FAULT_ENV = "RECGYM_FAULT_KILL_CELL"  # "<cell name>:<marker file>": kill the worker once (fault-injection tests)
_FORWARDED_ENV = ("RECGYM_CACHE", "RECGYM_DATA", "HF_HUB_OFFLINE", "HF_HOME", "OMP_NUM_THREADS", FAULT_ENV)
INSTALL_HINT = 'pip install -e ".[ray]"  (or: pip install "ray[default]")'


class RayUnavailableError(RuntimeError):
    """``--backend ray`` without Ray installed, or a cluster that cannot be reached."""


def require_ray() -> ModuleType:
    """The ``ray`` module, or :class:`RayUnavailableError` with the install command."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(f"--backend ray needs Ray, which is not installed; install it with: {INSTALL_HINT}") \
            from None
    return ray


def start_ray(workers: int | None, address: str | None) -> ModuleType:
    """Connect to ``address`` or start a local cluster with ``workers`` CPUs (default: all); returns ``ray``.

    Worker processes get the recgym environment variables of this process (cache, data, offline mode)."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                              "include_dashboard": False, "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise RayUnavailableError(f"--backend ray: cannot start or join {where}: {' '.join(str(exc).split())}") from None
    return ray


@contextlib.contextmanager
def ray_session(workers: int | None, address: str | None) -> Iterator[ModuleType]:
    """:func:`start_ray` for one run or tune: a Ray this call started (a private local cluster, or the
    connection to ``address``) is shut down when the block ends; one already initialised by the caller is
    left as it was."""
    ray = require_ray()
    ours = not ray.is_initialized()
    start_ray(workers, address)
    try:
        yield ray
    finally:
        if ours:
            ray.shutdown()


def _cell_task(cfg_dict: dict[str, Any], out: str, run_hash: str, index: int, seeds: list[int],
               with_logs: bool) -> dict:
    """The cells ``seeds`` of agent ``index`` in a Ray worker (one cell, or a seed-batched agent's cells):
    rebuild the run context (world memoised per worker), run the cells one after the other."""
    import ray
    import torch

    from recgym.envs import make_world
    from recgym.experiments.cells import cell_finished, cell_hash, cell_name, cell_path, execute_cell

    cfg = ExperimentConfig.model_validate(cfg_dict)
    spec = cfg.agents[index]
    cells = [Cell(index, spec, s, cell_path(Path(out), spec.key, s)) for s in seeds]
    # A retried task (its worker died) leaves alone the cells its first attempt finished.
    cells = [c for c in cells if not cell_finished(c.path, cell_hash(run_hash, spec.key, c.seed))]
    for cell in cells:
        _maybe_inject_fault(cell.name)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    world = make_world(cfg.world, world_config=cfg.world_config, data_dir=cfg.data_dir, encoder=cfg.encoder)
    notes: list[str] = []
    ctx = RunContext.create(cfg, world, Path(out), run_hash, Progress(enabled=False), notes.append,
                            batch_seeds={index: [c.seed for c in cells]})
    log_cache: dict = {}
    errors: dict[str, str | None] = {cell_name(spec.key, s): None for s in seeds}
    errors.update({c.name: execute_cell(ctx, c, log_cache, with_logs) for c in cells})
    return {"errors": errors, "notes": notes, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}


def _maybe_inject_fault(name: str) -> None:
    """Fault injection for tests: kill this worker the first time it runs cell ``name`` (marker file)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or ":" not in spec:
        return
    target, marker = spec.split(":", 1)
    if target == name and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(137)


def run_cells_ray(ctx: RunContext, workers: int | None = None, address: str | None = None) -> dict[str, str]:
    """Run every pending cell of ``ctx`` as a Ray task; returns ``{cell name: error}`` of the failed cells.
    Same contract as :func:`~recgym.experiments.cells.run_cells`."""
    with ray_session(workers, address) as ray:
        return _run_cells(ray, ctx)


def task_groups(cfg: ExperimentConfig, todo: list[Cell]) -> list[list[Cell]]:
    """The Ray tasks of the pending cells ``todo``: one per cell, but one per agent for the cells of a
    seed-batched agent when its seeds are batched (:func:`~recgym.experiments.cells.batches_seeds`), so that its
    seeds train as one job once."""
    groups: dict[tuple[int, int], list[Cell]] = {}
    batch = batches_seeds(cfg)
    for c in todo:
        batched = seed_batched(c.spec) and batch
        groups.setdefault((c.index, -1 if batched else c.seed), []).append(c)
    return list(groups.values())


def _run_cells(ray: ModuleType, ctx: RunContext) -> dict[str, str]:
    cfg, out = ctx.cfg, ctx.out
    todo, total = plan_cells(ctx)
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    groups = task_groups(cfg, todo)
    per_gpu = 0.0 if cfg.device == "cpu" or gpus == 0 else min(1.0, gpus / max(len(groups), 1))
    task = ray.remote(num_cpus=1, num_gpus=per_gpu, max_retries=MAX_RETRIES)(_cell_task)
    cfg_dict, with_logs = cfg.to_dict(), needs_logs(todo)
    pending = {task.remote(cfg_dict, str(out), ctx.run_hash, group[0].index, [c.seed for c in group], with_logs): group
               for group in groups}
    failures: dict[str, str] = {}
    nodes: set[str] = set()
    with ctx.progress.task(f"evaluation cells (Ray, {int(ray.cluster_resources().get('CPU', 0))} CPUs)", total,
                           unit="cells", completed=total - len(todo)) as advance:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            group = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - a task that failed beyond its retries (worker deaths)
                err = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
                for cell in group:
                    record_failure(ctx, cell, err)
                result = {"errors": {c.name: err for c in group}, "notes": []}
            for note in result["notes"]:
                ctx.notify(note)
            if "node" in result:  # a task that died beyond its retries reports no node
                nodes.add(result["node"])
            failures.update({name: err for name, err in result["errors"].items() if err is not None})
            advance(len(group))
    if todo:
        ctx.notify(f"Ray: {len(todo)} cells ran on {len(nodes)} node{'s' * (len(nodes) != 1)}")
    return failures
