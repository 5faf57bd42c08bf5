"""Learning bars and compile parity of the fast PPO trainer (``pytest -m slow tests/test_ppo_fast_slow.py``).

Budgets as in ``tests/test_agents_slow.py`` (the SB3 agent's bars): analytic world 100k env steps per seed
(the three seeds trained as one batched job); default world 600k env steps per seed over five seeds for both
trainers (the SB3 half alone takes ~10 min on a quiet 2-core machine); compile parity ~2 min of compilation.
"""

from __future__ import annotations

import pytest
import torch
from test_agents_slow import mean_return

from recgym.agents import make_agent
from recgym.agents.ppo_fast import FastPPOTrainer, native_env, ppo_loss, train_seeds
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.envs.vector import RankingVectorEnv
from recgym.envs.worlds.analytic import analytic_config, analytic_optimal_return, make_analytic_world

pytestmark = pytest.mark.slow


def test_fast_ppo_reaches_90pct_of_optimal_on_analytic_world_three_seeds_batched() -> None:
    world = make_analytic_world()
    cfg = analytic_config(world, slate_size=3, max_steps=20, action_type="slate")
    seeds = [0, 1, 2]
    envs = [RankingSB3VecEnv(64, seed=s, world=world, config=cfg) for s in seeds]
    agents = [make_agent("ppo", envs[0], seed=s, device="cpu", hidden=32, n_epochs=4, trainer="fast") for s in seeds]
    train_seeds(agents, envs, 100_000)
    opt = float(analytic_optimal_return(world, cfg).mean())
    got = [mean_return(a, RankingVectorEnv(512, world=world, config=cfg), 3, seed=100 + s)
           for a, s in zip(agents, seeds, strict=True)]
    assert all(g >= 0.9 * opt for g in got), (got, opt)


def test_fast_ppo_return_within_sb3_ci_on_default_world() -> None:
    """Same budget (600k env steps x 256 users), same config, five seeds each: the fast trainer's mean return
    on the held-out test cohort lies within the 95 % CI of the SB3 agent's."""
    from recgym.experiments.stats import mean_ci

    seeds = list(range(5))
    returns: dict[str, list[float]] = {"sb3": [], "fast": []}
    envs = [RankingSB3VecEnv(256, seed=s, action_type="slate") for s in seeds]
    fast = [make_agent("ppo", envs[0], seed=s, device="cpu", trainer="fast") for s in seeds]
    train_seeds(fast, envs, 600_000)
    for s, agent in zip(seeds, fast, strict=True):
        sb3 = make_agent("ppo", envs[s], seed=s, device="cpu")
        sb3.learn(RankingSB3VecEnv(256, seed=s, action_type="slate"), 600_000)
        for name, a in (("sb3", sb3), ("fast", agent)):
            ev = RankingVectorEnv(512, action_type="slate", cohort="test")
            returns[name].append(mean_return(a, ev, ev.config.slate_size, seed=1000 + s))
    ci = {n: mean_ci(v) for n, v in returns.items()}
    print({n: (round(c.mean, 3), round(c.half_width, 3)) for n, c in ci.items()})
    assert ci["sb3"].low <= ci["fast"].mean <= ci["sb3"].high, ci


def test_compiled_loss_equals_eager() -> None:
    env = RankingSB3VecEnv(32, seed=0, action_type="slate")
    agent = make_agent("ppo", env, seed=0, device="cpu", n_steps=4, batch_size=64)
    venv = native_env(env)
    trainer = FastPPOTrainer(venv.core, venv.state, [agent.policy.scorer], agent.config, [0])
    batch = next(trainer.minibatches(trainer.rollout().flat()))
    out = []
    for fn in (ppo_loss, torch.compile(ppo_loss)):
        trainer.optimizer.zero_grad()
        loss, _ = fn(trainer.scorer, batch, 0.2, 0.01, 0.5)
        loss.sum().backward()
        out.append((loss.detach(), [p.grad.clone() for p in trainer.scorer.parameters()]))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-4, atol=1e-6)
    for g1, g0 in zip(out[1][1], out[0][1], strict=True):
        torch.testing.assert_close(g1, g0, rtol=1e-3, atol=1e-5)
