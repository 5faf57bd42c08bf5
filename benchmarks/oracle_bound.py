"""What the myopic oracle bounds: it maximises each slate's expected clicks, not the session return.

    HF_HUB_OFFLINE=1 python benchmarks/oracle_bound.py --world movielens-100k --max-steps 100

Evaluates the oracle and popularity (plus random and LM-similarity) with the run's protocol
(:func:`recgym.experiments.evaluate`: held-out users, 5 seeds) and prints, per agent, the session return and
what it is made of: clicks per slate (what the oracle maximises, with NDCG@K = 1) times session length
(which depends on the quality of what users click: it refills their time budget). The mean hidden quality
of clicked items is ``quality_threshold + satisfaction / clicks``.
"""

from __future__ import annotations

import argparse
import json

import torch

from recgym.envs import EnvConfig, make_world
from recgym.experiments import evaluate

AGENTS = ("oracle", "popularity", "random", "lm_similarity")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="movielens-100k")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--reward", default="clicks")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    world = make_world(args.world, data_dir=args.data_dir, progress=True)
    cfg = EnvConfig(max_steps=args.max_steps, reward=args.reward)  # reward: the shorthand of {name: ...}
    rows = {}
    print(f"world {args.world}, reward {args.reward}, max_steps {args.max_steps}, {args.users} test users x "
          f"{args.seeds} seeds; mean ± 95 % CI half-width")
    print(f"{'agent':14s} {'return':>15s} {'clicks/slate':>15s} {'slates':>15s} {'quality of clicks':>18s} {'NDCG':>6s}")
    for name in AGENTS:
        r = evaluate(name, cfg, world=world, seeds=range(args.seeds), users=args.users)

        def f(metric: str, digits: int = 2, res=r) -> str:
            ci = res.interval(metric)
            return f"{ci.mean:.{digits}f} ± {ci.half_width:.{digits}f}"

        quality = cfg.response.quality_threshold + r.mean("satisfaction") / max(r.mean("return"), 1e-9) \
            if args.reward == "clicks" else float("nan")
        print(f"{name:14s} {f('return'):>15s} {f('clicks_per_slate', 3):>15s} {f('session_length', 1):>15s} "
              f"{quality:18.3f} {r.mean('ndcg'):6.3f}")
        rows[name] = {m: r.mean(m) for m in ("return", "clicks_per_slate", "session_length", "ndcg")}
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
