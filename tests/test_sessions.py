"""Returning users: the return model, session flow, the one-session default and the env contract."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from recgym.common.config import ConfigError
from recgym.envs import RankingEnv, RankingVectorEnv
from recgym.envs.config import EnvConfig, SessionsConfig
from recgym.envs.core import RankingCore
from recgym.envs.dynamics import SessionDynamics
from recgym.envs.response import Responses
from recgym.envs.sessions import MultiSessionDynamics, expected_gap, return_probability
from recgym.experiments.retention import RetentionTracker

BASE = dict(num_candidates=40, candidates={"pool_size": 120}, new_items={"slots": 3, "per_step": 0.5})
MULTI = dict(BASE, max_steps=60, sessions={"count": 3, "session_steps": 6}, dynamics={"initial_budget": 6.0})


def _rollout(env: RankingVectorEnv, steps: int, seed: int = 0) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        obs, r, te, tr, info = env.step(rng.random((env.num_envs, env.config.num_candidates)).astype(np.float32))
        out.append((r.copy(), te.copy(), tr.copy(), info["clicks"].copy(), obs["candidates"].copy(),
                    obs["context"].copy(), info["user"].copy()))
    return out


# ----------------------------------------------------------------------------------------- one session
def test_one_session_is_todays_dynamics_bit_for_bit(small_world):
    """sessions: 1 uses SessionDynamics itself; the feedback table changes nothing of the trajectory (it only
    adds an observation key). A retention weight is rejected there (tests/test_reward_terms.py)."""
    plain = RankingVectorEnv(16, world=small_world, **BASE)
    assert type(plain.core.dynamics) is SessionDynamics
    assert plain.single_observation_space["context"].shape == (4,) and "item_feedback" not in plain.single_observation_space.spaces
    other = RankingVectorEnv(16, world=small_world, sessions=1, reward={"weights": {"retention": 0.0}},
                             feedback={"enabled": True, "warmup_users": 8, "warmup_steps": 3}, **BASE)
    assert type(other.core.dynamics) is SessionDynamics
    for a, b in zip(_rollout(plain, 120), _rollout(other, 120), strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_sessions_config_shorthand_and_errors():
    assert EnvConfig.model_validate({"sessions": 4}).sessions.count == 4
    assert EnvConfig().merged({"sessions": 5}).sessions.count == 5
    with pytest.raises(ConfigError, match=r"env\.sessions\.cout: unknown key \(did you mean 'count'"):
        EnvConfig.model_validate({"sessions": {"cout": 3}})
    with pytest.raises(ValueError, match="horizon_days"):
        EnvConfig.model_validate({"sessions": {"count": 2, "horizon_days": 0}})
    with pytest.raises(ValueError, match="sessions.count >= 2"):
        MultiSessionDynamics(SessionDynamics(), SessionsConfig(count=1))


# ----------------------------------------------------------------------------------------- return model
def test_return_model_is_monotone_in_satisfaction_and_disappointment():
    c = SessionsConfig(count=3)
    sat = torch.linspace(-0.5, 0.5, 21)
    p = return_probability(c, sat, torch.zeros(21))
    g = expected_gap(c, sat, torch.zeros(21))
    assert bool((p.diff() >= 0).all()) and bool((p[:10].diff() > 0).all())  # strictly until it saturates at 1
    assert bool((g.diff() < 0).all())
    d = torch.linspace(0, 5, 11)
    assert bool((return_probability(c, torch.zeros(11), d).diff() < 0).all())
    assert bool((expected_gap(c, torch.zeros(11), d).diff() > 0).all())


def test_satisfied_users_return_sooner_on_constructed_sessions(small_world):
    """Sessions with a known satisfaction end together; the sampled gaps match the model: returns rise and
    the mean gap falls with satisfaction, each within sampling error of the closed form."""
    cfg = EnvConfig.model_validate(dict(MULTI, sessions={"count": 3, "session_steps": 4, "horizon_days": 2.0}))
    core = RankingCore(small_world, cfg)
    groups = torch.tensor([-0.2, -0.05, 0.05, 0.15])  # return probabilities ~0.17 .. 0.96: none saturated
    n = 3000
    state = core.init_state(batch_size=n * len(groups), seed=11)
    sat = groups.repeat_interleave(n)
    state.session_steps.fill_(3)  # the next slate is the session's 4th: it ends the session
    state.session_sat.copy_(sat * 3)
    view = core.slate_view(state, torch.arange(cfg.slate_size).expand(len(sat), -1).contiguous())
    resp = Responses(torch.zeros(len(sat), cfg.slate_size, dtype=torch.bool),
                     torch.zeros(len(sat), cfg.slate_size), sat.clone())
    signals = core.dynamics.update(core.params, state, view, resp)
    assert bool(signals["session_end"].all())
    returned = signals["returned"].view(len(groups), n).float()
    gaps = signals["return_gap"].view(len(groups), n)
    mean_gap = torch.stack([gaps[i][returned[i] > 0].mean() for i in range(len(groups))])
    disappointment = torch.relu(-groups)  # this slate's negative satisfaction
    p_model = return_probability(cfg.sessions, groups, disappointment)
    g_model = expected_gap(cfg.sessions, groups, disappointment)
    assert bool((returned.mean(1).diff() > 0).all()) and bool((mean_gap.diff() < 0).all())
    se_p = (p_model * (1 - p_model) / n).sqrt()
    assert bool(((returned.mean(1) - p_model).abs() <= 4 * se_p + 1e-3).all())
    assert bool(((mean_gap - g_model).abs() / g_model < 0.1).all())
    # returning rows start a new session (fresh budget, next index, gap observed), churned ones are terminated
    back = signals["returned"]
    assert bool((state.session[back] == 1).all()) and bool((state.session_steps[back] == 0).all())
    assert bool((state.budget[back] == cfg.dynamics.initial_budget).all())
    assert bool((core.dynamics.leaving(core.params, state) == ~back).all())


# ----------------------------------------------------------------------------------------- episodes
def test_episode_flow_rewards_and_context(small_world):
    w = 2.5
    env = RankingVectorEnv(32, world=small_world, reward={"weights": {"retention": w}}, **MULTI)
    base = RankingVectorEnv(32, world=small_world, **MULTI)
    assert env.single_observation_space["context"].shape == (7,)
    obs, _ = env.reset(seed=3)
    base.reset(seed=3)
    rng = np.random.default_rng(0)
    seen_end = seen_churn = seen_window = 0
    for _ in range(150):
        a = rng.random((32, 40)).astype(np.float32)
        obs, r, te, tr, info = env.step(a)
        _, r0, *_ = base.step(a)
        assert env.single_observation_space.contains({k: v[0] for k, v in obs.items()})
        valid = info["_returned"]
        # the retention reward is w per return, on top of the clicks
        np.testing.assert_allclose(r[valid], r0[valid] + w * info["returned"][valid], rtol=1e-6)
        ends = info["session_end"] & valid
        seen_end += ends.sum()
        assert not (info["returned"] & ~info["session_end"])[valid].any()
        assert (te[valid] == (ends & ~info["returned"])[valid]).all()  # churn ends the episode as terminated
        window = info["returned"] & (info["session_index"] + 1 >= 3) & valid
        assert tr[window].all() and not te[window].any()  # the return after the last session: truncated
        seen_churn += te[valid].sum()
        seen_window += window.sum()
        ret = info["returned"] & valid & ~window
        ctx = obs["context"]
        assert (ctx[ret, 4] > 0).all() and (ctx[ret, 5] > 0).all() and (ctx[ret, 6] == 0).all()  # index, gap, fresh
    assert seen_end > 20 and seen_churn > 0 and seen_window > 0


def test_fork_and_clone_give_identical_session_trajectories(small_world):
    env = RankingVectorEnv(8, world=small_world, **MULTI)
    env.reset(seed=5)
    core, state = env.simulator()
    twin = state.clone()
    forks = state.repeat(3)
    slate = torch.arange(env.config.slate_size).expand(8, -1).contiguous()
    for _ in range(40):
        a = core.step(state, slate)
        b = core.step(twin, slate)
        c = core.step(forks, slate.repeat_interleave(3, 0))
        for x, y in zip(a[:3], b[:3], strict=True):
            assert torch.equal(x, y)
        assert torch.equal(a[0].repeat_interleave(3), c[0])
    assert state.equal(twin)


def test_both_checkers_pass_on_the_multi_session_env(small_world):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kw = dict(MULTI, feedback={"enabled": True, "warmup_users": 8, "warmup_steps": 2}, strict=False)
        env = gym.make("recgym/Ranking-v0", world=small_world, action_type="slate", slate_size=3, **kw)
        gym_check_env(env.unwrapped)
        sb3_check_env(RankingEnv(small_world, action_type="slate", slate_size=3, **kw))


# ----------------------------------------------------------------------------------------- metrics
def test_retention_tracker_on_constructed_steps():
    t = RetentionTracker(count=3)
    t.start(2)
    step = dict(clicks=np.array([[1, 0], [0, 0]]), session_end=np.array([True, True]),
                returned=np.array([True, False]), return_gap=np.array([0.5, 20.0]), session_index=np.array([0, 0]))
    t.update(step, np.array([True, True]), np.array([False, True]))
    step2 = dict(clicks=np.array([[1, 1], [1, 1]]), session_end=np.array([True, False]),
                 returned=np.array([True, False]), return_gap=np.array([3.0, 0.0]), session_index=np.array([1, 0]))
    t.update(step2, np.array([True, False]), np.array([False, False]))
    r = t.result()
    assert r["sessions_per_user"] == pytest.approx((3 + 1) / 2)
    assert r["retention_d1"] == pytest.approx(1 / 3) and r["retention_d7"] == pytest.approx(2 / 3)
    assert r["return_gap"] == pytest.approx(1.75) and r["churn_rate"] == pytest.approx(0.5)
    assert r["lifetime_clicks"] == pytest.approx((3 + 0) / 2)
    np.testing.assert_allclose(t.curve(), [1.0, 0.5, 0.5])
