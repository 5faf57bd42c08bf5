"""The work of a run, cell by cell: logged data per seed, then one (agent, seed) cell at a time.

A cell = build the agent (seeded with the cell's seed), train it (RL), fit it on the seed's logged data
(offline learners) and evaluate it with :func:`~recgym.experiments.evaluation.evaluate_cell`. A finished
cell leaves ``cells/<agent>__seed<s>.json`` (written last) holding its config hash; a resumed run skips
cells whose hash matches, so a killed evaluation re-runs only unfinished cells.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from recgym.experiments.config import ExperimentConfig
from recgym.experiments.evaluation import cohort_users, evaluate_cell, quick_return

__all__ = ["run_cells", "cell_name", "cell_hash"]


def cell_name(label: str, seed: int) -> str:
    return f"{label}__seed{seed}"


def cell_hash(run_hash: str, label: str, seed: int) -> str:
    return hashlib.sha256(f"{run_hash}|{label}|{seed}".encode()).hexdigest()


def _logs(cfg: ExperimentConfig, world: Any, out: Path, seed: int) -> Any:
    """Logged data of the logging policy for ``seed`` (train cohort), cached in ``logs/seed<s>.npz``."""
    from recgym.agents import LoggedData, collect_logs, make_agent
    from recgym.envs import RankingVectorEnv

    path = out / "logs" / f"seed{seed}.npz"
    if path.is_file():
        return LoggedData.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lg = cfg.training.logging
    env_cfg = cfg.env.model_copy(update={"cohort": "train", "action_type": "slate"})
    env = RankingVectorEnv(lg.num_envs, world=world, config=env_cfg, device=cfg.device)
    logger = make_agent(lg.policy, env, seed=seed, device=cfg.device)
    return collect_logs(logger, env, lg.steps, epsilon=lg.epsilon, seed=seed, path=path)


def run_cells(cfg: ExperimentConfig, world: Any, out: Path, run_hash: str, progress: Any, console: Any) -> None:
    from recgym.agents import AGENTS, make_agent
    from recgym.agents.rerank import FairReranker

    eval_cfg = cfg.eval_env()
    seeds = cfg.evaluation.seeds
    cells_dir = out / "cells"
    cells_dir.mkdir(exist_ok=True)
    todo = []
    for i, spec in enumerate(cfg.agents):
        for s in seeds:
            path = cells_dir / f"{cell_name(spec.key, s)}.json"
            if path.is_file() and json.loads(path.read_text()).get("cell_hash") == cell_hash(run_hash, spec.key, s):
                continue
            todo.append((i, spec, s, path))
    done = len(cfg.agents) * len(seeds) - len(todo)
    if done:
        console.print(f"resume: {done} finished evaluation cells skipped, {len(todo)} to run")
    task = progress.add_task("evaluation cells", total=len(cfg.agents) * len(seeds), completed=done)
    needs_logs = any(
        (AGENTS[spec.name].learns_offline and spec.fit_on_logs is not False) for _, spec, _, _ in todo
    )
    log_cache: dict[int, Any] = {}
    for i, spec, seed, path in todo:
        cls = AGENTS[spec.name]
        hp = {**spec.hyperparams, "seed": seed, "device": cfg.device}
        users = cohort_users(world, cfg.evaluation.cohort, cfg.evaluation.users_per_seed, seed)
        trained = None
        curve: list[dict[str, float]] = []
        if cls.train_action_types is not None:
            trained, curve = _train(cfg, world, out, run_hash, i, spec, seed, hp, progress)
        fit = cls.learns_offline and spec.fit_on_logs is not False and needs_logs
        if fit and seed not in log_cache:
            log_cache[seed] = _logs(cfg, world, out, seed)

        def build(env: Any, cls=cls, trained=trained, fit=fit, seed=seed, hp=hp, name=spec.name,
                  rerank=spec.rerank) -> Any:
            agent = trained
            if agent is None:
                agent = make_agent(name, env, **hp)
                if fit:
                    agent.fit(log_cache[seed])
            return agent if rerank is None else FairReranker(agent, rerank)

        result = evaluate_cell(build, world, eval_cfg, users, seed, cfg.evaluation.episodes_per_user, cfg.device)
        arrays = dict(result.arrays)
        if curve:
            arrays["curve_step"] = np.array([r["step"] for r in curve])
            arrays["curve_return"] = np.array([r["eval_return"] for r in curve])
        from recgym.experiments.runner import save_cell

        save_cell(path, result.metrics, arrays, {"agent": spec.key, "name": spec.name, "seed": seed,
                                                 "cell_hash": cell_hash(run_hash, spec.key, seed),
                                                 "n_users": len(users)})
        progress.advance(task)


def _train(cfg: ExperimentConfig, world: Any, out: Path, run_hash: str, i: int, spec: Any, seed: int,
           hp: dict[str, Any], progress: Any) -> tuple[Any, list[dict[str, float]]]:
    from recgym.agents import make_agent
    from recgym.envs.fairness import FairExposureReward
    from recgym.envs.sb3 import RankingSB3VecEnv
    from recgym.experiments.training import train_rl

    tenv_cfg = cfg.train_env(i)
    probe = RankingSB3VecEnv(1, seed=seed, world=world, config=tenv_cfg, device=cfg.device)
    agent = make_agent(spec.name, probe, **hp)
    budget = cfg.budget(i)
    name = cell_name(spec.key, seed)
    curve_users = cohort_users(world, cfg.evaluation.cohort, cfg.training.curve_users, 10_000)  # same users for all seeds
    eval_cfg = cfg.eval_env()

    def curve_fn(a: Any) -> float:
        return quick_return(a, world, eval_cfg, curve_users, 10_000 + seed, cfg.device)

    task = progress.add_task(f"train {name}", total=max(budget, 1))
    curve = train_rl(
        agent, world=world, train_env_cfg=tenv_cfg, budget=budget, num_envs=cfg.training.num_envs, seed=seed,
        checkpoint_every=cfg.training.checkpoint_every, ckpt_dir=out / "checkpoints" / name,
        log_path=out / "curves" / f"{name}.csv",
        tb_dir=(out / "tensorboard" / name) if cfg.output.tensorboard else None, cfg_hash=run_hash,
        curve_fn=curve_fn, keep=cfg.training.keep_checkpoints, device=cfg.device,
        wrap_env=None if spec.reward_fairness is None else partial(FairExposureReward, config=spec.reward_fairness),
        on_progress=lambda n: progress.update(task, completed=min(n, budget)),
    )
    progress.update(task, completed=budget)
    return agent, curve
