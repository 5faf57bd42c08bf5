"""RecSim's interest-evolution environment stepped with random slates; run inside a RecSim venv.

    python -m venv /tmp/peer-recsim && /tmp/peer-recsim/bin/pip install recsim-no-tf six
    /tmp/peer-recsim/bin/python benchmarks/peers/recsim_bench.py --candidates 100 --slate-size 10

Prints one JSON line: steps/s of each timed window (one user-step = one slate to one user; RecSim's env is a
single user). Only the stepping loop is timed (resets included, as in recgym's figures). ``--serve``: the
protocol of ``_protocol.py`` (``compare.py`` interleaves it with recgym).
"""

from __future__ import annotations

import numpy as np
from _protocol import parser, run
from recsim.environments import interest_evolution


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--candidates", type=int, default=100)
    a = p.parse_args()
    env = interest_evolution.create_environment({"num_candidates": a.candidates, "slate_size": a.slate_size,
                                                  "resample_documents": True, "seed": a.seed})
    rng = np.random.default_rng(a.seed)
    slates = [rng.permutation(a.candidates)[: a.slate_size] for _ in range(64)]
    env.reset()

    def step(i: int) -> None:
        _, _, done, _ = env.step(slates[i % len(slates)])
        if done:
            env.reset()

    run(step, {"peer": "recsim", "env": "interest_evolution", "candidates": a.candidates, "slate_size": a.slate_size},
        steps=a.steps, repeats=a.repeats, serve=a.serve)


if __name__ == "__main__":
    main()
