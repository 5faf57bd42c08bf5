"""The work of a run, cell by cell: logged data per replicate, then one (agent, replicate) cell at a time.

A cell = build the agent (seeded from the run's :class:`~recgym.experiments.seeds.SeedTree`), train it (RL,
on its training env: no probe env), fit it on the replicate's logged data (offline learners) and evaluate it
with :func:`~recgym.experiments.evaluation.evaluate_cell` on the run's reused evaluation env. A finished cell
leaves ``cells/<agent>__seed<s>.json`` (written last) holding its config hash and the sha256 of its ``.npz``;
a resumed run skips cells whose hash matches and whose arrays are intact, so a killed (or corrupted)
evaluation re-runs only the cells it must. A corrupt ``logs/seed<s>.npz`` is collected again.

A cell that raises leaves ``cells/<agent>__seed<s>.failed.json`` (error, traceback tail, cell hash) instead,
and the run goes on with the other cells: the report names failed cells and leaves them out of the means
(never averaged away silently); ``--resume`` runs them again. A full disk or an interrupt still stops the run.

Every file name here comes from an agent label (validated by the config) and a seed, and is built with
:func:`~recgym.common.io.path_inside`, so it cannot leave its folder of the run.
"""

from __future__ import annotations

import hashlib
import io
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from recgym.agents.base import AGENTS, Recommender, make_agent
from recgym.agents.logging import LoggedData, collect_logs
from recgym.agents.rerank import FairReranker
from recgym.common.errors import CorruptFileError, DiskFullError, is_disk_full
from recgym.common.io import (
    atomic_write_bytes,
    atomic_write_json,
    path_inside,
    read_json_file,
    sha256_bytes,
    sha256_file,
)
from recgym.common.progress import Progress
from recgym.envs import RankingVectorEnv
from recgym.envs.fairness import FairExposureReward
from recgym.envs.world import World
from recgym.experiments.config import AgentSpec, ExperimentConfig
from recgym.experiments.evaluation import EnvPool, cohort_users, evaluate_cell, quick_return
from recgym.experiments.seeds import SeedTree

__all__ = ["run_cells", "execute_cell", "pending_cells", "needs_logs", "cell_name", "cell_hash", "cell_path",
           "cell_finished", "cell_failure", "record_failure", "plan_cells", "save_cell", "Cell", "RunContext"]

Notify = Callable[[str], None]


def cell_name(label: str, seed: int) -> str:
    return f"{label}__seed{seed}"


def cell_hash(run_hash: str, label: str, seed: int) -> str:
    return hashlib.sha256(f"{run_hash}|{label}|{seed}".encode()).hexdigest()


def cell_path(out: Path, label: str, seed: int, folder: str = "cells", suffix: str = ".json") -> Path:
    """``out/<folder>/<label>__seed<s><suffix>``, checked to stay inside ``out/<folder>``."""
    return path_inside(out / folder, f"{cell_name(label, seed)}{suffix}")


def cell_finished(path: Path, expected_hash: str) -> bool:
    """A cell counts as finished when its JSON reads, its hash matches and its ``.npz`` has the recorded sha256."""
    try:
        meta = read_json_file(path, what="evaluation cell")
    except (CorruptFileError, FileNotFoundError):
        return False
    if not isinstance(meta, dict) or meta.get("cell_hash") != expected_hash or not isinstance(meta.get("metrics"), dict):
        return False
    npz = path.with_suffix(".npz")
    try:
        return npz.is_file() and sha256_file(npz) == meta.get("npz_sha256")
    except OSError:
        return False


def cell_failure(out: Path, label: str, seed: int) -> str | None:
    """The error of a failed cell (``<cell>.failed.json``), or ``None`` when it did not fail."""
    path = cell_path(out, label, seed, suffix=".failed.json")
    if not path.is_file():
        return None
    try:
        meta = read_json_file(path, what="failed cell")
    except CorruptFileError as exc:
        return f"failed (its record is unreadable: {exc})"
    return str(meta.get("error", "failed")) if isinstance(meta, dict) else "failed"


def save_cell(path_json: Path, metrics: dict[str, Any], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Arrays first, JSON (the completion marker, with the arrays' sha256) last; both atomic. A failure record
    of the same cell is removed once the cell has succeeded."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(path_json.with_suffix(".npz"), data)
    atomic_write_json(path_json, {**meta, "npz_sha256": sha256_bytes(data), "metrics": metrics})
    path_json.with_suffix(".failed.json").unlink(missing_ok=True)


@dataclass(frozen=True)
class Cell:
    """One (agent, replicate) unit of work."""

    index: int  # position of the agent in ``cfg.agents``
    spec: AgentSpec
    seed: int  # replicate id (an entry of ``evaluation.seeds``)
    path: Path  # its ``cells/<label>__seed<s>.json``

    @property
    def name(self) -> str:
        return cell_name(self.spec.key, self.seed)


@dataclass
class RunContext:
    """What every cell of a run shares: config, world, folder, hashes, seeds, the reused evaluation envs."""

    cfg: ExperimentConfig
    world: World
    out: Path
    run_hash: str
    seeds: SeedTree
    envs: EnvPool
    progress: Progress
    notify: Notify
    on_curve: Callable[[Cell, int, float], None] | None = None  # each learning-curve point (tuning: pruning)
    reraise: tuple[type[BaseException], ...] = ()  # exceptions that stop the run instead of failing a cell
    # Seed-batched cells (PPO trainer 'fast'): (agent index, seed) -> (trained agent, curve) or the batch's error,
    # and the seeds each agent's batch trains (set by the Ray backend; else the agent's pending seeds).
    batched: dict[tuple[int, int], Any] = field(default_factory=dict)
    batch_seeds: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def create(cls, cfg: ExperimentConfig, world: World, out: Path, run_hash: str, progress: Progress,
               notify: Notify, **extra: Any) -> RunContext:
        return cls(cfg, world, out, run_hash, SeedTree(cfg.seed), EnvPool(world, cfg.eval_env(), cfg.device),
                   progress, notify, **extra)

    def agent_seed(self, seed: int) -> int:
        return self.seeds.seed("agent", seed)


def pending_cells(cfg: ExperimentConfig, out: Path, run_hash: str) -> list[Cell]:
    """The cells of ``cfg`` still to run (missing, corrupt, failed or of another config)."""
    todo = []
    for i, spec in enumerate(cfg.agents):
        for s in cfg.evaluation.seeds:
            path = cell_path(out, spec.key, s)
            if not cell_finished(path, cell_hash(run_hash, spec.key, s)):
                todo.append(Cell(i, spec, s, path))
    return todo


def _logs(ctx: RunContext, seed: int) -> LoggedData:
    """Logged data of the logging policy for replicate ``seed`` (train cohort), cached in ``logs/seed<s>.npz``."""
    cfg = ctx.cfg
    path = path_inside(ctx.out / "logs", f"seed{seed}.npz")
    if path.is_file():
        try:
            return LoggedData.load(path)
        except CorruptFileError as exc:
            ctx.notify(f"{exc}; collecting the logs of seed {seed} again")
    path.parent.mkdir(parents=True, exist_ok=True)
    lg = cfg.training.logging
    env_cfg = cfg.env.model_copy(update={"cohort": "train", "action_type": "slate"})
    env = RankingVectorEnv(lg.num_envs, world=ctx.world, config=env_cfg, device=cfg.device)
    logger = make_agent(lg.policy, env, seed=ctx.seeds.seed("logs", seed, "policy"), device=cfg.device)
    return collect_logs(logger, env, lg.steps, epsilon=lg.epsilon, seed=ctx.seeds.seed("logs", seed), path=path)


def needs_logs(cells: list[Cell]) -> bool:
    """Whether any of ``cells`` fits an offline learner on logged data."""
    return any(AGENTS[c.spec.name].learns_offline and c.spec.fit_on_logs is not False for c in cells)


def execute_cell(ctx: RunContext, cell: Cell, log_cache: dict[int, LoggedData], with_logs: bool) -> str | None:
    """Run one cell; returns ``None`` on success, else its error (recorded in ``<cell>.failed.json``).

    A full disk, an interrupt, running out of memory and the exceptions in ``ctx.reraise`` (a tuning trial
    pruned) stop the run instead of being recorded.
    """
    try:
        _run_cell(ctx, cell, log_cache, with_logs)
        return None
    except (KeyboardInterrupt, DiskFullError, MemoryError, *ctx.reraise):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, reported, retried by --resume
        if is_disk_full(exc):  # the disk, not the cell: stop the run (it resumes once space is freed)
            raise
        err = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        record_failure(ctx, cell, err, traceback.format_exc().splitlines()[-12:])
        return err


def record_failure(ctx: RunContext, cell: Cell, error: str, trace: list[str] | None = None) -> None:
    """Write ``<cell>.failed.json`` (error, traceback tail, cell hash) and say so."""
    atomic_write_json(cell.path.with_suffix(".failed.json"), {
        "agent": cell.spec.key, "seed": cell.seed, "error": error,
        "cell_hash": cell_hash(ctx.run_hash, cell.spec.key, cell.seed), "traceback": trace or []})
    ctx.notify(f"cell {cell.name} failed: {error[:300]} (recorded; the run goes on)")


def plan_cells(ctx: RunContext) -> tuple[list[Cell], int]:
    """The pending cells of the run and the total count; says how many a resume skips."""
    cfg = ctx.cfg
    (ctx.out / "cells").mkdir(exist_ok=True)
    todo = pending_cells(cfg, ctx.out, ctx.run_hash)
    total = len(cfg.agents) * len(cfg.evaluation.seeds)
    if total - len(todo):
        ctx.notify(f"resume: {total - len(todo)} finished evaluation cells skipped, {len(todo)} to run")
    return todo, total


def run_cells(ctx: RunContext) -> dict[str, str]:
    """Run every pending cell in this process, one after the other; returns ``{cell name: error}`` of the
    cells that failed in this call (the Ray backend, :mod:`recgym.experiments.ray_backend`, runs the same
    :func:`execute_cell` in worker processes)."""
    todo, total = plan_cells(ctx)
    with_logs = needs_logs(todo)
    log_cache: dict[int, LoggedData] = {}
    failures: dict[str, str] = {}
    with ctx.progress.task("evaluation cells", total, unit="cells", completed=total - len(todo)) as advance:
        for cell in todo:
            err = execute_cell(ctx, cell, log_cache, with_logs)
            if err is not None:
                failures[cell.name] = err
            advance(1)
    return failures


def _run_cell(ctx: RunContext, cell: Cell, log_cache: dict[int, LoggedData], with_logs: bool) -> None:
    cfg, spec, seed = ctx.cfg, cell.spec, cell.seed
    cls = AGENTS[spec.name]
    hp = {**spec.hyperparams, "seed": ctx.agent_seed(seed), "device": cfg.device}
    users = cohort_users(ctx.world, cfg.evaluation.cohort, cfg.evaluation.users_per_seed,
                         ctx.seeds.seed("eval", seed, "users"))
    trained: Recommender | None = None
    curve: list[dict[str, float]] = []
    if seed_batched(spec):
        trained, curve = _batched_result(ctx, cell)
    elif cls.train_action_types is not None:
        trained, curve = train_cell(ctx, cell, hp)
    fit = cls.learns_offline and spec.fit_on_logs is not False and with_logs
    if fit and seed not in log_cache:
        log_cache[seed] = _logs(ctx, seed)

    def build(env: RankingVectorEnv) -> Recommender:
        agent = trained
        if agent is None:
            agent = make_agent(spec.name, env, **hp)
            if fit:
                agent.fit(log_cache[seed])
        return agent if spec.rerank is None else FairReranker(agent, spec.rerank)

    result = evaluate_cell(build, ctx.world, ctx.envs.cfg, users, ctx.seeds.seed("eval", seed, "env"),
                           cfg.evaluation.episodes_per_user, cfg.device, envs=ctx.envs)
    arrays = dict(result.arrays)
    if curve:
        arrays["curve_step"] = np.array([r["step"] for r in curve])
        arrays["curve_return"] = np.array([r["eval_return"] for r in curve])
    save_cell(cell.path, result.metrics, arrays, {"agent": spec.key, "name": spec.name, "seed": seed,
                                                  "cell_hash": cell_hash(ctx.run_hash, spec.key, seed),
                                                  "n_users": len(users)})


def train_cell(ctx: RunContext, cell: Cell, hyperparams: dict[str, Any]) -> tuple[Recommender, list[dict[str, float]]]:
    """Train the RL agent of a cell with checkpoints, curve, TensorBoard and progress; returns ``(agent, curve)``."""
    from recgym.experiments.training import train_agent  # torch + SB3: only when a cell trains

    cfg, spec, out = ctx.cfg, cell.spec, ctx.out
    budget = cfg.budget(cell.index)
    with ctx.progress.task(f"train {cell.name}", budget, unit="env steps") as bar:
        return train_agent(
            lambda env: make_agent(spec.name, env, **hyperparams), world=ctx.world,
            train_env_cfg=cfg.train_env(cell.index), budget=budget, num_envs=cfg.training.num_envs,
            seed=ctx.seeds.seed("train", cell.seed), checkpoint_every=cfg.training.checkpoint_every,
            ckpt_dir=path_inside(out / "checkpoints", cell.name),
            log_path=cell_path(out, spec.key, cell.seed, "curves", ".csv"),
            tb_dir=path_inside(out / "tensorboard", cell.name) if cfg.output.tensorboard else None,
            cfg_hash=ctx.run_hash, curve_fn=curve_function(ctx, cell), keep=cfg.training.keep_checkpoints,
            device=cfg.device, on_progress=lambda n: bar.update(min(n, budget)), notify=ctx.notify,
            wrap_env=None if spec.reward_fairness is None else partial(FairExposureReward, config=spec.reward_fairness))


def curve_function(ctx: RunContext, cell: Cell) -> Callable[[Recommender], float]:
    """The learning-curve point of a cell: mean held-out return of the same ``curve_users`` users for every
    replicate (a fixed seed), on the run's reused evaluation env; passed on to ``ctx.on_curve``."""
    cfg = ctx.cfg
    users = cohort_users(ctx.world, cfg.evaluation.cohort, cfg.training.curve_users, ctx.seeds.seed("curve", "users"))
    env_seed = ctx.seeds.seed("curve", cell.seed, "env")

    def point(agent: Recommender) -> float:
        value = quick_return(agent, ctx.world, ctx.envs.cfg, users, env_seed, cfg.device, envs=ctx.envs)
        if ctx.on_curve is not None:
            ctx.on_curve(cell, int(getattr(agent, "num_timesteps", 0)), value)
        return value

    return point


def seed_batched(spec: AgentSpec) -> bool:
    """Whether the cells of agent ``spec`` train through :func:`recgym.experiments.seed_batch.train_seed_batch`
    (PPO with ``trainer: fast``; its seeds as one batched job unless ``training.batch_seeds`` is false)."""
    return spec.name == "ppo" and spec.hyperparams.get("trainer") == "fast"


def batches_seeds(cfg: ExperimentConfig) -> bool:
    """Whether seed-batched agents train their seeds as one job: ``training.batch_seeds``, where ``"auto"`` means
    on CUDA only. On CPU (measured: 5 batched seeds take 5.8x one seed's time, i.e. more than 5 separate runs)
    one job per seed loses nothing and lets the Ray backend run seeds in parallel. The same answer on every
    backend for one config and machine, so sequential and Ray runs group seeds alike (identical records)."""
    choice = cfg.training.batch_seeds
    if choice == "auto":
        from recgym.common.device import resolve_device  # torch: only when a run trains

        return resolve_device(cfg.device).type == "cuda"
    return bool(choice)


def batch_of(ctx: RunContext, cell: Cell) -> list[int]:
    """The seeds trained with ``cell``'s: those the scheduler gave (Ray), else the agent's pending seeds, or the
    cell's own seed alone when seeds are not batched (:func:`batches_seeds`)."""
    if cell.index in ctx.batch_seeds:
        return ctx.batch_seeds[cell.index]
    if not batches_seeds(ctx.cfg):
        return [cell.seed]
    return [c.seed for c in pending_cells(ctx.cfg, ctx.out, ctx.run_hash) if c.index == cell.index]


def _batched_result(ctx: RunContext, cell: Cell) -> tuple[Recommender, list[dict[str, float]]]:
    """The trained agent and curve of a seed-batched cell; the first cell of a batch trains all its seeds
    (a failed batch fails each of its cells with the same error, without training again)."""
    # torch + SB3: only when a cell trains
    from recgym.experiments.seed_batch import SeedCell, train_seed_batch

    key = (cell.index, cell.seed)
    if key not in ctx.batched:
        seeds = batch_of(ctx, cell)
        if cell.seed not in seeds:
            seeds = [*seeds, cell.seed]
        try:
            spec = cell.spec
            cells = [SeedCell(s, cell_name(spec.key, s), cell_path(ctx.out, spec.key, s, "curves", ".csv"),
                              curve_function(ctx, Cell(cell.index, spec, s, cell_path(ctx.out, spec.key, s))))
                     for s in seeds]
            ctx.batched.update({(cell.index, s): r for s, r in train_seed_batch(ctx, cell.index, cells).items()})
        except (KeyboardInterrupt, DiskFullError, MemoryError, *ctx.reraise):
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised for every cell of the batch (execute_cell records it)
            if is_disk_full(exc):
                raise
            ctx.batched.update({(cell.index, s): exc for s in seeds})
    result = ctx.batched.pop(key)
    if isinstance(result, BaseException):
        raise result
    return result
