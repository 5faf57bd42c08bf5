"""PPO against popularity on the default recgym world, in one file you can read top to bottom.

    python examples/ppo_vs_popularity.py                     # ~5 min on a 2-core CPU (150k env steps)
    python examples/ppo_vs_popularity.py --total-timesteps 20000 --eval-seeds 3   # a quick look
    python examples/ppo_vs_popularity.py --help

What it does, step by step (each step is one block below):
1. build the default synthetic world (items and users encoded by the bundled MiniLM, cached after the first run);
2. make a batched training env (the SB3 adapter over the simulator core) on the *train* users;
3. train PPO (Plackett-Luce slate policy over a shared candidate scorer) for a budget of env steps;
4. evaluate PPO, popularity, random and the myopic oracle with the protocol of ``recgym run`` on the same
   held-out *test* users and seeds (``recgym.experiments.evaluate``);
5. print a table (mean ± 95 % CI over seeds) and the differences the intervals support;
6. write one plot: session return per agent with its confidence interval.

``recgym run experiments/configs/quickstart.yaml`` runs the same comparison with checkpoints, resume, learning
curves and a full report; this script shows the API those are built on.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from recgym.agents import make_agent
from recgym.envs import EnvConfig, make_world
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.experiments import evaluate
from recgym.experiments.plots import metric_label, plot_agent_bars
from recgym.experiments.stats import ci_separated


@dataclass
class Args:
    """Every setting of the experiment; the field help is the ``--help`` text."""

    seed: int = field(default=0, metadata={"help": "seed of the training env and of PPO"})
    world: str = field(default="synthetic", metadata={"help": "world: synthetic, analytic, movielens-100k, ..."})
    total_timesteps: int = field(default=150_000, metadata={"help": "PPO budget in env steps (summed over users)"})
    num_envs: int = field(default=128, metadata={"help": "users simulated in parallel while training"})
    hidden: int = field(default=32, metadata={"help": "width of the candidate scorer"})
    learning_rate: float = field(default=3e-3, metadata={"help": "Adam learning rate"})
    n_steps: int = field(default=16, metadata={"help": "rollout length per env between updates"})
    n_epochs: int = field(default=4, metadata={"help": "PPO epochs per rollout"})
    gamma: float = field(default=0.95, metadata={"help": "discount factor"})
    eval_seeds: int = field(default=5, metadata={"help": "evaluation seeds (replicates)"})
    eval_users: int = field(default=200, metadata={"help": "held-out users per seed"})
    threads: int = field(default=1, metadata={"help": "torch threads (1 is fastest on a small, busy CPU)"})
    out: str = field(default="runs/ppo_vs_popularity", metadata={"help": "folder for the plot"})


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                            help=f"{f.metadata['help']} (default: {f.default})")
    return Args(**vars(parser.parse_args()))


class PrintProgress(BaseCallback):
    """One line about every tenth of the budget: steps done and the recent training episode return."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.every, self.next, self.t0 = max(total // 10, 1), 0, time.perf_counter()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps >= self.next:
            self.next += self.every
            episodes = list(self.model.ep_info_buffer or [])
            ret = sum(e["r"] for e in episodes) / len(episodes) if episodes else float("nan")
            print(f"  {self.num_timesteps:>9,} env steps, training episode return {ret:6.2f}, "
                  f"{time.perf_counter() - self.t0:5.0f} s", flush=True)


if __name__ == "__main__":
    args = parse_args()
    print("settings:", dataclasses.asdict(args))
    torch.set_num_threads(args.threads)  # torch's default threads make small batches slow on a busy 2-core CPU

    # 1. The world: catalogue and population, LM-encoded (cached), with a hidden preference model.
    world = make_world(args.world, progress=True)
    print(f"world {world.name}: {world.catalog.num_items} items, {world.population.num_users} users")

    # 2. The training env: B users of the train cohort stepped together; PPO picks ordered slates.
    env_config = EnvConfig(action_type="slate")  # the default dynamics: 100 candidates, slates of 10
    train_env = VecMonitor(RankingSB3VecEnv(args.num_envs, seed=args.seed, world=world, config=env_config))

    # 3. PPO: make_agent checks the hyper-parameters and the action type before building anything.
    ppo = make_agent("ppo", train_env, seed=args.seed, hidden=args.hidden, learning_rate=args.learning_rate,
                     n_steps=args.n_steps, n_epochs=args.n_epochs, gamma=args.gamma)
    print(f"training PPO for {args.total_timesteps:,} env steps ...")
    ppo.learn(train_env, args.total_timesteps, callback=PrintProgress(args.total_timesteps))

    # 4. Evaluation: the protocol of `recgym run` - held-out users, the same users and env seeds for every
    #    agent, one session each. Popularity learns its click counts online during each seed; the oracle
    #    reads the hidden click model (a reference for one-step clicks, not a bound on the return).
    seeds = list(range(args.eval_seeds))
    results = {}
    for name, agent in (("ppo", ppo), ("popularity", "popularity"), ("random", "random"), ("oracle", "oracle")):
        results[name] = evaluate(agent, env_config, world=world, cohort="test", seeds=seeds, users=args.eval_users)
        print(f"evaluated {name}")

    # 5. The table and the claims the confidence intervals support (no claim where they overlap).
    print()
    print(results["ppo"].table().splitlines()[0])
    print(results["ppo"].table().splitlines()[1])
    for res in results.values():
        print(res.table().splitlines()[2])
    ppo_return = results["ppo"].interval("return")
    for name in ("popularity", "random", "oracle"):
        other = results[name].interval("return")
        if ci_separated(ppo_return, other):
            verb = "beats" if ppo_return.mean > other.mean else "is below"
            print(f"PPO {verb} {name} on return: {ppo_return.mean:.2f} vs {other.mean:.2f} (95 % CIs do not overlap)")
        else:
            print(f"PPO vs {name} on return: {ppo_return.mean:.2f} vs {other.mean:.2f}; the CIs overlap, no claim")

    # 6. One plot: session return per agent with its 95 % CI over seeds.
    rows = [row for res in results.values() for row in res.summary if row["segment"] == "all"]
    path = plot_agent_bars(rows, "return", Path(args.out) / "return.png", ylabel=metric_label("return", "clicks"),
                           title=f"Session return on {world.name} ({len(seeds)} seeds, {args.eval_users} test users)",
                           value_range=(0.0, None))
    print(f"plot: {path}")
