"""Fast vs SB3 PPO trainer on the default world: held-out (test cohort) return per seed at one budget.

    python benchmarks/fast_vs_sb3_returns.py 600000 0,1,2,3,4     # the issue-15 bar: 600k steps, 5 seeds

The fast agents of all seeds train as one batched job (``train_seeds``); the SB3 agents one by one. Each
agent is evaluated on 512 test-cohort users with evaluation seed ``1000 + seed`` (as tests/test_agents_slow.py).
Prints one JSON line after each phase (the last one is complete), with the 1-minute load averages.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_agents_slow import mean_return  # noqa: E402

from recgym.agents import make_agent  # noqa: E402
from recgym.agents.ppo_fast import train_seeds  # noqa: E402
from recgym.envs.sb3 import RankingSB3VecEnv  # noqa: E402
from recgym.envs.vector import RankingVectorEnv  # noqa: E402


def held_out_return(agent, seed: int) -> float:  # noqa: ANN001
    ev = RankingVectorEnv(512, action_type="slate", cohort="test")
    return mean_return(agent, ev, ev.config.slate_size, seed=1000 + seed)


def main() -> None:
    torch.set_num_threads(1)
    budget, seeds = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",")]
    out = {"budget": budget, "seeds": seeds, "fast": [], "sb3": []}
    envs = [RankingSB3VecEnv(256, seed=s, action_type="slate") for s in seeds]
    fast = [make_agent("ppo", envs[0], seed=s, device="cpu", trainer="fast") for s in seeds]
    t = time.perf_counter()
    train_seeds(fast, envs, budget)
    out["fast_train_s"] = round(time.perf_counter() - t, 1)
    out["fast"] = [held_out_return(a, s) for a, s in zip(fast, seeds, strict=True)]
    print(json.dumps({**out, "load": os.getloadavg()}), flush=True)
    t = time.perf_counter()
    for s in seeds:
        sb3 = make_agent("ppo", envs[0], seed=s, device="cpu")
        sb3.learn(RankingSB3VecEnv(256, seed=s, action_type="slate"), budget)
        out["sb3"].append(held_out_return(sb3, s))
    out["sb3_train_and_eval_s"] = round(time.perf_counter() - t, 1)
    print(json.dumps({**out, "load": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
