"""Training throughput of the RL agents (env-steps/s including policy updates).

    python -m recgym.benchmarks.train --agent ppo --total-steps 100000 --num-envs 256 --threads 1

Prints a human-readable summary, then one JSON line (the last line) with ``env_steps_per_s``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import torch

from recgym.agents import make_agent
from recgym.envs.sb3 import RankingSB3VecEnv

__all__ = ["run_train_benchmark"]

_ACTION_TYPE = {"ppo": "slate", "dqn": "item"}


def run_train_benchmark(
    agent: str = "ppo",
    total_steps: int = 100_000,
    num_envs: int = 256,
    device: str = "auto",
    seed: int = 0,
    world: Any = "synthetic",
    threads: int | None = None,
    **hyperparams: Any,
) -> dict[str, Any]:
    """Train ``agent`` for ``total_steps`` env steps on ``num_envs`` users and time it.

    One warm-up rollout+update (``n_steps * num_envs`` steps for PPO) runs first and is not timed.
    ``threads`` sets ``torch.set_num_threads`` (None: leave as is). Returns a dict with
    ``env_steps_per_s`` (steps / wall seconds of ``learn``, updates included), ``update_s`` (time in the
    gradient updates), ``rollout_s`` (the rest: acting + env) and the settings.
    """
    if agent not in _ACTION_TYPE:
        raise ValueError(f"agent: expected one of {sorted(_ACTION_TYPE)}, received {agent!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    kwargs = {"slate_size": 1} if agent == "dqn" else {}
    env = RankingSB3VecEnv(num_envs, seed=seed, world=world, action_type=_ACTION_TYPE[agent], **kwargs)
    build_s = time.perf_counter() - t0
    rec = make_agent(agent, env, seed=seed, device=device, **hyperparams)
    warm = rec.config.n_steps * num_envs if agent == "ppo" else max(rec.config.learning_starts, num_envs) + num_envs
    rec.learn(env, warm)
    start_steps = rec.num_timesteps
    update_s = _time_updates(rec.model)
    t1 = time.perf_counter()
    rec.learn(env, total_steps)
    wall = time.perf_counter() - t1
    steps = rec.num_timesteps - start_steps
    return {
        "agent": agent, "world": world if isinstance(world, str) else getattr(world, "name", "world"),
        "env_steps": steps, "wall_s": round(wall, 3), "env_steps_per_s": round(steps / wall, 1),
        "update_s": round(update_s[0], 3), "rollout_s": round(wall - update_s[0], 3),
        "num_envs": num_envs, "device": str(rec.device), "torch_threads": torch.get_num_threads(),
        "env_build_s": round(build_s, 2), "config": rec.config.model_dump(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "seed": seed,
    }


def _time_updates(model: Any) -> list[float]:
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
    a = p.parse_args()
    res = run_train_benchmark(a.agent, a.total_steps, a.num_envs, a.device, a.seed, a.world, a.threads)
    print(f"{res['agent']} on {res['world']}: {res['env_steps']} env-steps in {res['wall_s']} s "
          f"= {res['env_steps_per_s']:.0f} env-steps/s (B={res['num_envs']}, device={res['device']}, "
          f"threads={res['torch_threads']}; updates {res['update_s']} s, rollouts {res['rollout_s']} s)")
    print(json.dumps(res, sort_keys=True))


if __name__ == "__main__":
    main()
