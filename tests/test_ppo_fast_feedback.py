"""The fast PPO trainer on long_term's kind of world: returning users and the observed feedback table (issue 11).

The scorer's feedback input (``feedback.*``) is trained by the fast trainer exactly as by SB3's (same scores,
values and gradients), and seed-batched training keeps one feedback table per seed: each seed's observations,
rewards and table are those of the seed trained alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_world

from recgym.agents import make_agent
from recgym.agents._stacked import StackedScorer
from recgym.agents.ppo_fast import FastPPOTrainer, _concat_states, native_env, ppo_loss, train_seeds
from recgym.agents.scorer import FEEDBACK_KEY, CandidateScorer
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.envs.state import SimState

WORLD = random_world(n_items=120, n_users=20, dim=16, n_new=10)
ENV_KW = {"num_candidates": 20, "slate_size": 3, "candidates": {"pool_size": 40}, "max_steps": 8,
          "new_items": {"slots": 2}, "action_type": "slate",
          "sessions": {"count": 2, "session_steps": 4}, "reward": {"name": "clicks", "weights": {"retention": 2.0}},
          "feedback": {"enabled": True, "warmup_users": 8, "warmup_steps": 2}}
HP = {"n_steps": 4, "batch_size": 64, "n_epochs": 1, "hidden": 8, "device": "cpu"}


def _env(users: int = 16, seed: int = 0) -> RankingSB3VecEnv:
    env = RankingSB3VecEnv(users, seed=seed, world=WORLD, **ENV_KW)
    env.reset()
    return env


def _trainer(agent, env) -> FastPPOTrainer:  # noqa: ANN001
    venv = native_env(env)
    return FastPPOTrainer(venv.core, venv.state, [agent.policy.scorer], agent.config, [agent.config.seed])


def test_stacked_scorer_with_feedback_input_matches_candidate_scorer_values_and_gradients() -> None:
    env = _env()
    agent = make_agent("ppo", env, **HP)
    ref = agent.policy.scorer
    assert ref.feedback is not None and ENV_KW["sessions"]["count"] > 1
    with torch.no_grad():  # non-zero feedback weights, so that a wrong feedback path shows in the scores
        ref.feedback.weight.normal_(0.0, 1.0)
        ref.feedback.bias.normal_(0.0, 0.5)
    trainer = _trainer(agent, env)
    obs = trainer.collector.observe()
    assert obs[FEEDBACK_KEY].shape == (1, 16, 3 * 20) and float(obs[FEEDBACK_KEY].abs().sum()) > 0
    flat = {k: v[0] for k, v in obs.items()}
    ref_scores, ref_value = ref(flat)
    scores, value = trainer.scorer(obs)
    torch.testing.assert_close(scores[0], ref_scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value[0], ref_value, rtol=1e-5, atol=1e-5)
    # without the feedback part the scores differ: the input is used, not ignored
    no_fb = {k: (torch.zeros_like(v) if k == FEEDBACK_KEY else v) for k, v in obs.items()}
    assert not torch.allclose(trainer.scorer(no_fb)[0], scores)

    weights = torch.linspace(-1.0, 1.0, scores.shape[-1])
    ((ref_scores * weights).sum() + ref_value.pow(2).sum()).backward()
    ((scores[0] * weights).sum() + value[0].pow(2).sum()).backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(trainer.scorer.p(name).grad[0], p.grad, rtol=1e-4, atol=1e-5, msg=name)
    assert float(trainer.scorer.p("feedback.weight").grad.abs().sum()) > 0
    assert set(trainer.scorer.scorer_state(0)) == set(ref.state_dict())


def test_seed_batched_rollout_keeps_one_feedback_table_per_seed() -> None:
    """Rows of seeds 3 and 7 in one state: each seed's observed feedback, slates, rewards, table and first
    update's gradients equal those of the seed trained alone (a shared table would mix the seeds' impressions)."""
    seeds = [3, 7]
    agents = [make_agent("ppo", _env(), seed=s, **HP) for s in seeds]
    separate = []
    for a, s in zip(agents, seeds, strict=True):
        env = _env(seed=100 + s)
        tr = _trainer(a, env)
        r = tr.rollout()
        batch = next(tr.minibatches(r.flat()))
        ppo_loss(tr.scorer, batch, 0.2, 0.01, 0.5)[0].sum().backward()
        grads = {n: tr.scorer.p(n).grad[0].clone() for n in tr.scorer.param_names}
        separate.append((r, grads, native_env(env).state.item_feedback.clone()))
    envs = [_env(seed=100 + s) for s in seeds]
    venvs = [native_env(e) for e in envs]
    assert not torch.equal(venvs[0].state.item_feedback, venvs[1].state.item_feedback)  # warm-ups differ by seed
    state = _concat_states([v.state for v in venvs])
    assert state.item_feedback.shape == (2 * venvs[0].state.item_feedback.shape[0], 3)
    tr = FastPPOTrainer(venvs[0].core, state, [a.policy.scorer for a in agents], agents[0].config, seeds)
    r = tr.rollout()
    batch = next(tr.minibatches(r.flat()))
    ppo_loss(tr.scorer, batch, 0.2, 0.01, 0.5)[0].sum().backward()
    m = venvs[0].state.item_feedback.shape[0]
    for i, (r1, g1, table) in enumerate(separate):
        torch.testing.assert_close(r.obs[FEEDBACK_KEY][:, i], r1.obs[FEEDBACK_KEY][:, 0])
        assert torch.equal(r.slate[:, i], r1.slate[:, 0])
        torch.testing.assert_close(r.reward[:, i], r1.reward[:, 0])
        assert torch.equal(state.item_feedback[i * m : (i + 1) * m], table)
        for name, g in g1.items():
            torch.testing.assert_close(tr.scorer.p(name).grad[i], g, rtol=1e-4, atol=1e-6, msg=f"{seeds[i]} {name}")


def test_train_seeds_on_a_feedback_world_moves_each_envs_own_table() -> None:
    envs = [_env(seed=s) for s in (0, 1)]
    agents = [make_agent("ppo", envs[0], seed=s, trainer="fast", **HP) for s in (0, 1)]
    before = [native_env(e).state.item_feedback.clone() for e in envs]
    train_seeds(agents, envs, 128)
    for e, b in zip(envs, before, strict=True):
        after = native_env(e).state.item_feedback
        shown = float(after[:, 0].sum() - b[:, 0].sum())
        assert shown == 128 * ENV_KW["slate_size"]  # this env's 128 slates, not both envs' 256
    obs = {k: v.numpy() for k, v in native_env(envs[0]).core.observe(native_env(envs[0]).state).items()}
    assert np.isfinite(agents[0].score(obs)).all()


def test_other_shared_fields_and_unknown_scorer_parameters_are_refused() -> None:
    def st() -> SimState:
        return SimState({"user": torch.zeros(2, dtype=torch.int64)}, {"clock_table": torch.zeros(3)})

    with pytest.raises(ValueError, match=r"shared fields \['clock_table'\].*training\.batch_seeds: false"):
        _concat_states([st(), st()])
    sc = CandidateScorer(np.ones((4, 3), np.float32), hidden=4)
    sc.extra = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"extra\.bias, extra\.weight.*trainer='sb3'"):
        StackedScorer.from_scorers([sc])
