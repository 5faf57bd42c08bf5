"""The work of a run, cell by cell: logged data per seed, then one (agent, seed) cell at a time.

A cell = build the agent (seeded with the cell's seed), train it (RL), fit it on the seed's logged data
(offline learners) and evaluate it with :func:`~recgym.experiments.evaluation.evaluate_cell`. A finished
cell leaves ``cells/<agent>__seed<s>.json`` (written last) holding its config hash and the sha256 of its
``.npz``; a resumed run skips cells whose hash matches and whose arrays are intact, so a killed (or
corrupted) evaluation re-runs only the cells it must. A corrupt ``logs/seed<s>.npz`` is collected again.

Every file name here comes from an agent label (validated by the config) and a seed, and is built with
:func:`~recgym.common.io.path_inside`, so it cannot leave its folder of the run.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from recgym.common.errors import CorruptFileError
from recgym.common.io import path_inside, read_json_file, sha256_file
from recgym.experiments.config import ExperimentConfig
from recgym.experiments.evaluation import cohort_users, evaluate_cell, quick_return

__all__ = ["run_cells", "cell_name", "cell_hash", "cell_path", "cell_finished"]


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


def _logs(cfg: ExperimentConfig, world: Any, out: Path, seed: int, notify: Any) -> Any:
    """Logged data of the logging policy for ``seed`` (train cohort), cached in ``logs/seed<s>.npz``."""
    from recgym.agents import LoggedData, collect_logs, make_agent
    from recgym.envs import RankingVectorEnv

    path = path_inside(out / "logs", f"seed{seed}.npz")
    if path.is_file():
        try:
            return LoggedData.load(path)
        except CorruptFileError as exc:
            notify(f"{exc}; collecting the logs of seed {seed} again")
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

    def notify(msg: str) -> None:
        console.print(msg, markup=False, style="yellow")

    for i, spec in enumerate(cfg.agents):
        for s in seeds:
            path = cell_path(out, spec.key, s)
            if path.is_file() and cell_finished(path, cell_hash(run_hash, spec.key, s)):
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
    batched: dict[tuple[int, int], Any] = {}  # (agent index, seed) -> agent trained by train_seed_batch
    for i, spec, seed, path in todo:
        cls = AGENTS[spec.name]
        hp = {**spec.hyperparams, "seed": seed, "device": cfg.device}
        users = cohort_users(world, cfg.evaluation.cohort, cfg.evaluation.users_per_seed, seed)
        trained = None
        curve: list[dict[str, float]] = []
        if seed_batched(spec):
            if (i, seed) not in batched:
                batched.update({(i, s): a for s, a in train_seed_batch(
                    cfg, world, i, spec, [s for j, _, s, _ in todo if j == i]).items()})
            trained = batched.pop((i, seed))
        elif cls.train_action_types is not None:
            trained, curve = _train(cfg, world, out, run_hash, i, spec, seed, hp, progress, notify)
        fit = cls.learns_offline and spec.fit_on_logs is not False and needs_logs
        if fit and seed not in log_cache:
            log_cache[seed] = _logs(cfg, world, out, seed, notify)

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


def seed_batched(spec: Any) -> bool:
    """Whether the cells of agent ``spec`` train their seeds as one batched job (:func:`train_seed_batch`):
    PPO with ``trainer: fast``."""
    return spec.name == "ppo" and spec.hyperparams.get("trainer") == "fast"


def train_seed_batch(cfg: ExperimentConfig, world: Any, i: int, spec: Any, seeds: list[int]) -> dict[int, Any]:
    """Hook of issue 15: train the seeds of agent ``i``'s cells as one batched job
    (:func:`recgym.agents.ppo_fast.train_seeds`; each seed as in a separate run, with the env seed
    ``train_rl`` would give it). Returns ``{seed: trained agent}``.

    Not yet: checkpoints, resume and learning curves (``train_rl`` drives an SB3 model); they come with the
    runner's ``training_state`` contract. Until then a killed run trains these cells again from step 0.
    """
    from recgym.agents import make_agent
    from recgym.agents.ppo_fast import train_seeds
    from recgym.envs.sb3 import RankingSB3VecEnv

    tenv_cfg = cfg.train_env(i)
    envs = [RankingSB3VecEnv(cfg.training.num_envs, world=world, config=tenv_cfg, device=cfg.device,
                             seed=int(np.random.SeedSequence([s, 0]).generate_state(1)[0] % (2**31))) for s in seeds]
    agents = [make_agent(spec.name, envs[0], **{**spec.hyperparams, "seed": s, "device": cfg.device}) for s in seeds]
    train_seeds(agents, envs, cfg.budget(i))
    return dict(zip(seeds, agents, strict=True))


def _train(cfg: ExperimentConfig, world: Any, out: Path, run_hash: str, i: int, spec: Any, seed: int,
           hp: dict[str, Any], progress: Any, notify: Any) -> tuple[Any, list[dict[str, float]]]:
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
        checkpoint_every=cfg.training.checkpoint_every, ckpt_dir=path_inside(out / "checkpoints", name),
        log_path=cell_path(out, spec.key, seed, "curves", ".csv"),
        tb_dir=path_inside(out / "tensorboard", name) if cfg.output.tensorboard else None, cfg_hash=run_hash,
        curve_fn=curve_fn, keep=cfg.training.keep_checkpoints, device=cfg.device,
        wrap_env=None if spec.reward_fairness is None else partial(FairExposureReward, config=spec.reward_fairness),
        on_progress=lambda n: progress.update(task, completed=min(n, budget)), notify=notify,
    )
    progress.update(task, completed=budget)
    return agent, curve
