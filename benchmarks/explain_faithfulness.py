"""Deletion check of the explanations of a finished run (see recgym.experiments.explain.deletion_check).

    python benchmarks/explain_faithfulness.py RUN_DIR [--agent LABEL ...] [--users 100]

Prints one JSON line per agent: the mean score drop when the top-attributed history item is removed from
the history vector vs when a random other history item is removed (warm evaluation users, first slate).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from recgym.agents.explain import SCORER_ACCESSORS
from recgym.envs import RankingVectorEnv
from recgym.experiments.evaluation import cohort_users
from recgym.experiments.explain import deletion_check, load_run, load_run_agent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--agent", action="append", default=None)
    ap.add_argument("--users", type=int, default=100)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg, world, chash = load_run(a.run_dir)
    seed = cfg.evaluation.seeds[0]
    users = cohort_users(world, "warm", None, seed)[: a.users]
    labels = a.agent or [s.key for s in cfg.agents
                         if s.rerank is None and (s.name == "lm_similarity" or s.name in SCORER_ACCESSORS)]
    env = RankingVectorEnv(1, world=world, config=cfg.eval_env(), device=cfg.device)
    for label in labels:
        agent = load_run_agent(cfg, world, chash, a.run_dir, label, seed, env)
        res = deletion_check(agent, world, cfg, np.asarray(users), seed)
        print(json.dumps({"agent": label, **{k: round(v, 5) if isinstance(v, float) else v for k, v in res.items()}}))


if __name__ == "__main__":
    main()
