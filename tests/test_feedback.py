"""The platform's feedback table: exact counts, reset rules, forks, the observation and the scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.agents import LoggedData, collect_logs, load_agent, make_agent
from recgym.agents.scorer import CandidateScorer
from recgym.envs import RankingEnv, RankingVectorEnv
from recgym.envs.feedback import feedback_view

BASE = dict(num_candidates=40, candidates={"pool_size": 120}, new_items={"slots": 3, "per_step": 0.5}, max_steps=15)


def fb(users: int = 0, steps: int = 0) -> dict:
    return {"enabled": True, "warmup_users": users, "warmup_steps": steps}


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_counts_equal_the_shown_and_clicked_totals(small_world, mode):
    env = RankingVectorEnv(24, world=small_world, feedback=fb(), autoreset_mode=mode, **BASE)
    obs, _ = env.reset(seed=1)
    m = small_world.catalog.num_items
    shown, clicked, dwell = np.zeros(m), np.zeros(m), np.zeros(m)
    rng = np.random.default_rng(0)
    for _ in range(80):  # several episodes per slot: autoreset placeholder rows must not count
        obs, _, _, _, info = env.step(rng.random((24, 40)).astype(np.float32))
        parts = [(info, info["_clicks"])]
        if "final_info" in info:
            parts.append((info["final_info"], info["final_info"]["_clicks"]))
        for src, valid in parts:
            items = src["slate_items"][valid]
            np.add.at(shown, items.ravel(), 1)
            np.add.at(clicked, items.ravel(), src["clicks"][valid].ravel())
            np.add.at(dwell, items.ravel(), src["engagement"][valid].ravel())
    table = env.state.item_feedback.numpy()
    np.testing.assert_array_equal(table[:, 0], shown)
    np.testing.assert_array_equal(table[:, 1], clicked)
    np.testing.assert_allclose(table[:, 2], dwell, rtol=1e-5)
    view = env.item_feedback
    assert not view.flags.writeable and view.shape == (m, 3)
    mean = np.divide(dwell, clicked, out=np.zeros(m), where=clicked > 0)
    np.testing.assert_allclose(view[:, 2], mean, rtol=1e-5, atol=1e-6)
    # the observation carries each candidate's row of the table, flattened (N, 3) -> 3N
    np.testing.assert_allclose(obs["item_feedback"].reshape(24, 40, 3), view[obs["candidates"]], rtol=1e-6)


def test_reset_rules_warmup_and_forks(small_world):
    still = RankingVectorEnv(8, world=small_world, feedback=fb(32, 4), **{**BASE, "new_items": {"per_step": 0.0}})
    still.reset(seed=3)
    assert still.state.item_feedback[:, 0].sum() == 32 * 4 * still.config.slate_size  # every warm-up impression
    env = RankingVectorEnv(8, world=small_world, feedback=fb(32, 4), **BASE)
    env.reset(seed=3)
    warm = env.state.item_feedback.clone()
    assert not bool(warm[~env.core.released(0)].any())  # nothing of items released after clock 0
    env.reset(seed=3)
    assert torch.equal(env.state.item_feedback, warm)  # a seeded reset: the same warm table
    env.reset(seed=4)
    assert not torch.equal(env.state.item_feedback, warm)
    env.step(np.zeros((8, 40), np.float32))
    grown = env.state.item_feedback.clone()
    env.reset()  # an unseeded reset (new users in the same run) keeps the table
    assert torch.equal(env.state.item_feedback, grown)
    # forks carry a copy; stepping a fork never touches the original's table
    core, state = env.simulator()
    for fork in (state.clone(), state.repeat(3), state.take([0, 2])):
        assert torch.equal(fork.item_feedback, grown) and fork.item_feedback.data_ptr() != grown.data_ptr()
        core.step(fork, torch.arange(env.config.slate_size).expand(fork.batch_size, -1).contiguous())
        assert fork.item_feedback[:, 0].sum() > grown[:, 0].sum()
    assert torch.equal(state.item_feedback, grown)
    empty = RankingVectorEnv(4, world=small_world, feedback=fb(0, 0), **BASE)
    empty.reset(seed=0)
    assert not bool(empty.state.item_feedback.any())
    assert RankingVectorEnv(4, world=small_world, **BASE).item_feedback is None


def test_single_env_observes_feedback_inside_its_space(small_world):
    env = RankingEnv(small_world, feedback=fb(8, 2), **BASE)
    obs, _ = env.reset(seed=0)
    assert obs["item_feedback"].shape == (3 * 40,) and env.observation_space.contains(obs)
    for _ in range(5):
        obs, *_ = env.step(np.random.default_rng(0).random(40).astype(np.float32))
        assert env.observation_space.contains(obs)


def test_feedback_view_of_rows():
    rows = torch.tensor([[10.0, 2.0, 1.5], [3.0, 0.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(feedback_view(rows).numpy(), [[10, 2, 0.75], [3, 0, 0]])


def test_scorer_reads_the_live_feedback_of_each_observation(small_world):
    env = RankingVectorEnv(4, world=small_world, feedback=fb(8, 2), **BASE)
    obs, _ = env.reset(seed=0)
    scorer = CandidateScorer(env.item_embeddings, hidden=8, context_dim=4, feedback_dim=3)
    batch = {k: torch.as_tensor(v) for k, v in obs.items()}
    base, _ = scorer(batch)
    changed = dict(batch, item_feedback=batch["item_feedback"].clone())
    changed["item_feedback"].view(4, 40, 3)[:, 0] = torch.tensor([500.0, 5.0, 0.05])  # candidate 0: seen, low dwell
    moved, _ = scorer(changed)
    assert not torch.allclose(base[:, 0], moved[:, 0]) and torch.allclose(base[:, 1:], moved[:, 1:])
    with pytest.raises(KeyError, match="item_feedback"):
        scorer({k: v for k, v in batch.items() if k != "item_feedback"})


def test_agents_follow_the_observation_and_round_trip(small_world, tmp_path):
    kw = dict(BASE, feedback=fb(8, 2), sessions={"count": 2, "session_steps": 4})
    env = RankingVectorEnv(6, world=small_world, action_type="slate", slate_size=3, **kw)
    obs, _ = env.reset(seed=0)
    ppo = make_agent("ppo", env)
    assert (ppo.spec.context_dim, ppo.spec.feedback_dim) == (7, 3)
    assert ppo.rank(obs).shape == (6, 3)
    path = ppo.save(tmp_path / "ppo.zip")
    again = load_agent(path)
    np.testing.assert_array_equal(again.rank(obs), ppo.rank(obs))
    other = RankingVectorEnv(6, world=small_world, action_type="slate", slate_size=3, **BASE)
    with pytest.raises(ValueError, match="context length 7 and item_feedback width 3, received 4 and 0"):
        load_agent(path, env=other)
    logs = collect_logs(make_agent("popularity", env), env, 10, seed=0)
    assert logs.item_feedback.shape == (len(logs), 3 * 40) and logs.context.shape[1] == 7
    logs.save(tmp_path / "logs.npz")
    loaded = LoggedData.load(tmp_path / "logs.npz")
    np.testing.assert_array_equal(loaded.item_feedback, logs.item_feedback)
    ctr = make_agent("ctr", env, epochs=1).fit(loaded)
    assert ctr.rank(obs).shape == (6, 3)
    plain = RankingVectorEnv(6, world=small_world, action_type="slate", slate_size=3, **BASE)
    plain_logs = collect_logs(make_agent("popularity", plain), plain, 3, seed=0)
    with pytest.raises(ValueError, match="logs hold none"):
        make_agent("ctr", env, epochs=1).fit(plain_logs)


def test_slateq_trains_on_returning_users_with_the_feedback_table(small_world, tmp_path):
    """SlateQ's scorers follow the env's context length and feedback width like PPO's (it failed at its first
    action on such an env before: the scorers were built for the 4-feature context)."""
    kw = dict(BASE, feedback=fb(8, 2), sessions={"count": 2, "session_steps": 4})
    env = RankingVectorEnv(6, world=small_world, action_type="slate", slate_size=3, **kw)
    obs, _ = env.reset(seed=0)
    agent = make_agent("slateq", env, seed=0, learning_starts=16, batch_size=8)
    agent.learn(env, 96)
    assert agent.num_timesteps >= 96 and agent.rank(obs).shape == (6, 3)
    again = load_agent(agent.save(tmp_path / "slateq.zip"))
    np.testing.assert_array_equal(again.rank(obs), agent.rank(obs))
