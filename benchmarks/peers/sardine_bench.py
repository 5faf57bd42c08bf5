"""SARDINE's slate environment stepped with random slates; run inside a SARDINE venv.

    python -m venv /tmp/peer-sardine && /tmp/peer-sardine/bin/pip install sardine-rec
    /tmp/peer-sardine/bin/python benchmarks/peers/sardine_bench.py                 # its default: 1,000 items
    /tmp/peer-sardine/bin/python benchmarks/peers/sardine_bench.py --items 100     # recgym's 100 candidates

SARDINE has no candidate stage: the slate is drawn from the whole catalogue, so ``--items`` plays the role
of recgym's candidates. Prints one JSON line: steps/s of each timed window (one user; resets included).
``--serve``: the protocol of ``_protocol.py`` (``compare.py`` interleaves it with recgym).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import sardine  # noqa: F401 - registers the ids
from _protocol import parser, run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--env", default="sardine/SlateTopK-Bored-v0")
    p.add_argument("--items", type=int, default=None, help="num_items (default: the env's own, 1,000)")
    a = p.parse_args()
    kwargs = {"slate_size": a.slate_size} | ({"num_items": a.items} if a.items else {})
    env = gym.make(a.env, **kwargs).unwrapped  # no wrappers: the simulator's own step
    n_items = env.num_items
    rng = np.random.default_rng(a.seed)
    slates = [rng.permutation(n_items)[: a.slate_size] for _ in range(64)]
    env.reset(seed=a.seed)

    def step(i: int) -> None:
        _, _, term, trunc, _ = env.step(slates[i % len(slates)])
        if term or trunc:
            env.reset()

    run(step, {"peer": "sardine", "env": a.env, "items": n_items, "slate_size": a.slate_size},
        steps=a.steps, repeats=a.repeats, serve=a.serve)


if __name__ == "__main__":
    main()
