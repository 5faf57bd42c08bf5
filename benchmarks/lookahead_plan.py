"""Cost of one lookahead plan, finished rollouts stepped to the end vs dropped from the batch.

    HF_HUB_OFFLINE=1 python benchmarks/lookahead_plan.py --world movielens-100k
    HF_HUB_OFFLINE=1 python benchmarks/lookahead_plan.py --config experiments/configs/long_term.yaml

Plans the first slate of ``--users`` test users (horizon = the episode length, 2 futures, continuation
trade-off 4, as ``recgym diagnose``) with ``compact_below`` 0 (every rollout stepped until the longest one
ends) and the default, alternating the two ``--repeats`` times in one process (side by side on the same
load), checks that both give the same values and slates, and prints the median seconds of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from recgym.agents import make_agent
from recgym.envs import RankingVectorEnv, make_world
from recgym.experiments.config import load_config
from recgym.experiments.evaluation import cohort_users


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default=None, help="world name (default: the config's, else synthetic)")
    ap.add_argument("--config", default=None, help="experiment YAML whose world and env to use")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    raw = {"name": "bench", "agents": [{"name": "oracle"}], "world": args.world or "synthetic"}
    cfg = load_config(args.config) if args.config else load_config(raw=raw)
    if args.world and args.world != cfg.world:
        cfg = load_config(raw={**cfg.to_dict(), "world": args.world})
    world = make_world(cfg.world, world_config=cfg.world_config, data_dir=args.data_dir or cfg.data_dir,
                       encoder=cfg.encoder, progress=False)
    env_cfg = cfg.env.merged({"action_type": "slate", "info_candidate_relevance": True})
    users = cohort_users(world, "test", args.users, 0)
    env = RankingVectorEnv(len(users), world=world, config=env_cfg)
    obs, _ = env.reset(seed=1, options={"user_indices": users})
    times: dict[float, list[float]] = {0.0: [], 0.75: []}
    plans: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for _ in range(args.repeats):
        for compact in times:
            agent = make_agent("lookahead", env, seed=0, horizon=env_cfg.max_steps, rollouts=2,
                               continuation_tradeoff=4.0, compact_below=compact)
            t = time.perf_counter()
            slate = agent.rank(obs)
            times[compact].append(time.perf_counter() - t)
            plans[compact] = (slate, agent.last_values)
    same = all(np.array_equal(a, b) for a, b in zip(plans[0.0], plans[0.75], strict=True))
    median = {c: statistics.median(v) for c, v in times.items()}
    print(json.dumps({"world": cfg.world, "users": len(users), "horizon": env_cfg.max_steps,
                      "seconds_all_rows": median[0.0], "seconds_compacted": median[0.75],
                      "speedup": median[0.0] / median[0.75], "identical": same,
                      "load_average": os.getloadavg()[0], "threads": args.threads}))


if __name__ == "__main__":
    main()
