"""Training throughput of the RL agents (env-steps/s including policy updates).

    python -m recgym.benchmarks.train --agent ppo --total-steps 100000 --num-envs 256 --threads 1
    python -m recgym.benchmarks.train --trainer fast --seeds 5     # PPO, 5 seeds as one batched job

Prints a human-readable summary, then one JSON line (the last line) with ``env_steps_per_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import TYPE_CHECKING, Any

import torch

from recgym.agents import make_agent
from recgym.common.progress import Progress
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.experiments.training import ProgressCallback

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from recgym.envs.world import World

__all__ = ["run_train_benchmark"]

_ACTION_TYPE = {"ppo": "slate", "dqn": "item"}


def run_train_benchmark(
    agent: str = "ppo",
    total_steps: int = 100_000,
    num_envs: int = 256,
    device: str = "auto",
    seed: int = 0,
    world: str | World = "synthetic",
    threads: int | None = None,
    progress: Progress | None = None,
    trainer: str = "sb3",
    seeds: int = 1,
    **hyperparams: Any,
) -> dict[str, Any]:
    """Train ``agent`` for ``total_steps`` env steps on ``num_envs`` users and time it.

    One warm-up rollout+update (``n_steps * num_envs`` steps for PPO) runs first and is not timed.
    ``threads`` sets ``torch.set_num_threads`` (None: leave as is). Returns a dict with
    ``env_steps_per_s`` (steps / wall seconds of ``learn``, updates included), ``update_s`` (time in the
    gradient updates), ``rollout_s`` (the rest: acting + env) and the settings. ``progress`` (default:
    silent) advances at each rollout end (a callback that only reads a counter).

    ``trainer``: PPO's ``"sb3"`` or ``"fast"`` trainer. ``seeds`` > 1 (fast trainer only): ``seeds`` agents
    (seeds ``seed .. seed + seeds - 1``, each on its own env of ``num_envs`` users) trained as one batched
    job; ``env_steps_per_s`` then counts the steps of all seeds.
    """
    if agent not in _ACTION_TYPE:
        raise ValueError(f"agent: expected one of {sorted(_ACTION_TYPE)}, received {agent!r}")
    if trainer not in ("sb3", "fast") or (trainer == "fast" and agent != "ppo"):
        raise ValueError(f"trainer: expected 'sb3', or 'fast' with agent 'ppo', received {trainer!r} for {agent!r}")
    if seeds < 1 or (seeds > 1 and trainer != "fast"):
        raise ValueError(f"seeds: expected 1, or more with trainer 'fast', received {seeds} with {trainer!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    if trainer == "fast":
        return _bench_fast(total_steps, num_envs, device, seed, world, seeds, hyperparams)
    t0 = time.perf_counter()
    kwargs = {"slate_size": 1} if agent == "dqn" else {}
    env = RankingSB3VecEnv(num_envs, seed=seed, world=world, action_type=_ACTION_TYPE[agent], **kwargs)
    build_s = time.perf_counter() - t0
    rec = make_agent(agent, env, seed=seed, device=device, **hyperparams)
    warm = rec.config.n_steps * num_envs if agent == "ppo" else max(rec.config.learning_starts, num_envs) + num_envs
    rec.learn(env, warm)
    start_steps = rec.num_timesteps
    update_s = _time_updates(rec.model)
    progress = progress or Progress(enabled=False)
    with progress, progress.task(f"bench train {agent}", total_steps, unit="env steps") as bar:
        t1 = time.perf_counter()
        rec.learn(env, total_steps, callback=ProgressCallback(lambda n: bar.update(n - start_steps)))
        wall = time.perf_counter() - t1
    steps = rec.num_timesteps - start_steps
    return {
        "agent": agent, "world": world if isinstance(world, str) else getattr(world, "name", "world"),
        "env_steps": steps, "wall_s": round(wall, 3), "env_steps_per_s": round(steps / wall, 1),
        "update_s": round(update_s[0], 3), "rollout_s": round(wall - update_s[0], 3),
        "num_envs": num_envs, "device": str(rec.device), "torch_threads": torch.get_num_threads(),
        "env_build_s": round(build_s, 2), "config": rec.config.model_dump(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "seed": seed, "trainer": "sb3", "seeds": 1,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _bench_fast(total_steps: int, num_envs: int, device: str, seed: int, world: Any, seeds: int,
                hyperparams: dict[str, Any]) -> dict[str, Any]:
    """The fast PPO trainer: one agent (``learn``) or ``seeds`` agents (``train_seeds``), one untimed rollout
    + update first."""
    from recgym.agents.ppo_fast import train_seeds
    from recgym.envs.factory import make_world

    t0 = time.perf_counter()
    world_obj = make_world(world) if isinstance(world, str) else world
    envs = [RankingSB3VecEnv(num_envs, seed=seed + i, world=world_obj, action_type="slate", device=device)
            for i in range(seeds)]
    build_s = time.perf_counter() - t0
    recs = [make_agent("ppo", envs[0], seed=seed + i, device=device, trainer="fast", **hyperparams)
            for i in range(seeds)]
    warm = recs[0].config.n_steps * num_envs

    def run(steps: int) -> None:
        if seeds == 1:
            recs[0].learn(envs[0], steps)
        else:
            train_seeds(recs, envs, steps)

    run(warm)
    start = recs[0].num_timesteps
    timings0 = dict(recs[0].fast_trainer.timings) if seeds == 1 else {}
    t1 = time.perf_counter()
    run(total_steps)
    wall = time.perf_counter() - t1
    steps = (recs[0].num_timesteps - start) * seeds
    split = ({k: round(v - timings0[k], 3) for k, v in recs[0].fast_trainer.timings.items()} if seeds == 1
             else {"update_s": None, "rollout_s": None})
    return {**split,
        "agent": "ppo", "trainer": "fast", "seeds": seeds,
        "world": world if isinstance(world, str) else getattr(world, "name", "world"),
        "env_steps": steps, "wall_s": round(wall, 3), "env_steps_per_s": round(steps / wall, 1),
        "num_envs": num_envs, "device": str(envs[0].venv.core.device), "torch_threads": torch.get_num_threads(),
        "env_build_s": round(build_s, 2), "config": recs[0].config.model_dump(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "seed": seed,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _time_updates(model: BaseAlgorithm) -> list[float]:
    """Wrap ``model.train`` (the gradient updates) to accumulate its wall time in the returned 1-list."""
    acc = [0.0]
    train = model.train

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return train(*args, **kwargs)
        finally:
            acc[0] += time.perf_counter() - t

    model.train = timed
    return acc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default="ppo", choices=sorted(_ACTION_TYPE))
    p.add_argument("--total-steps", type=int, default=100_000)
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--world", default="synthetic")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (shared machines: 1 or 2)")
    p.add_argument("--trainer", default="sb3", choices=("sb3", "fast"))
    p.add_argument("--seeds", type=int, default=1, help="fast trainer: seeds trained as one batched job")
    p.add_argument("--compile", action="store_true", help="fast trainer: torch.compile (compiled in the warm-up)")
    a = p.parse_args()
    extra = {"compile": True} if a.compile else {}
    res = run_train_benchmark(a.agent, a.total_steps, a.num_envs, a.device, a.seed, a.world, a.threads,
                              progress=Progress(), trainer=a.trainer, seeds=a.seeds, **extra)
    print(f"{res['agent']} on {res['world']}: {res['env_steps']} env-steps in {res['wall_s']} s "
          f"= {res['env_steps_per_s']:.0f} env-steps/s (B={res['num_envs']}, device={res['device']}, "
          f"threads={res['torch_threads']}, trainer={res['trainer']}, seeds={res['seeds']})")
    print(json.dumps(res, sort_keys=True))


if __name__ == "__main__":
    main()
