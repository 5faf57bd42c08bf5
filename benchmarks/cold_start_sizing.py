"""Sizing of the cold-start study: new-item metrics (share, CTR, clicks, share clicked, time to first click)
with their 95 % CIs over 5 seeds for the non-RL agents, under a world config and env config.

    HF_HUB_OFFLINE=1 python benchmarks/cold_start_sizing.py A          # the former cold_start.yaml
    HF_HUB_OFFLINE=1 python benchmarks/cold_start_sizing.py C '{"test_user_fraction": 0.5, "cold_user_fraction": 0.4}' \
        '{"max_steps": 50, "new_items": {"per_step": 1.0, "slots": 20, "window": 100}}' 3   # the current one
"""

from __future__ import annotations

import json
import sys

import torch

from recgym.envs import EnvConfig, make_world
from recgym.experiments import evaluate

FORMER = ({}, {"max_steps": 30, "new_items": {"per_step": 0.2, "slots": 10, "window": 100}}, 3)


def main() -> None:
    torch.set_num_threads(1)
    variant = sys.argv[1]
    wc, env, eps = FORMER if variant == "A" else (json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]))
    world = make_world("synthetic", world_config=wc)
    cfg = EnvConfig.model_validate(env)
    n_cold = int((world.population.test & world.population.cold).sum())
    print(variant, wc, env, "episodes", eps, "cold test users", n_cold)
    for name in ["random", "popularity", "lm_similarity", "linucb", "oracle"]:
        r = evaluate(name, cfg, world=world, cohort="cold", seeds=range(5), episodes=eps)

        def f(m: str, seg: str = "new_items", d: int = 3, res=r) -> str:
            ci = res.interval(m, seg)
            return f"{ci.mean:.{d}f}±{ci.half_width:.{d}f}"

        print(f"{name:14s} ret {f('return', 'all', 2)} newshare {f('exposure_share')} newCTR {f('ctr')} "
              f"clicks {f('n_clicks', d=1)} released {f('n_released', d=0)} clicked {f('share_clicked')} "
              f"ttfc {f('time_to_first_click', d=1)}", flush=True)


if __name__ == "__main__":
    main()
