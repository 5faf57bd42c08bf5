"""Fast contract tests of recgym.agents (random world and analytic world; no encoder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_world

from recgym.agents import (
    AGENTS,
    ColdItemError,
    IncompatibleEnvError,
    LoggedData,
    WrongEnvError,
    check_compatible,
    collect_logs,
    load_agent,
    make_agent,
    slate_to_action,
)
from recgym.common.config import ConfigError
from recgym.envs.ranking import RankingEnv
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.envs.vector import RankingVectorEnv
from recgym.envs.worlds.analytic import analytic_config, make_analytic_world

WORLD = random_world(n_items=120, n_users=20, dim=16, n_new=10)
ENV_KW = {"num_candidates": 20, "slate_size": 3, "candidates": {"pool_size": 40}, "max_steps": 8,
          "new_items": {"slots": 2}}
OFFLINE = ("ctr", "mf")


def _valid(slate: np.ndarray, mask: np.ndarray, k: int) -> None:
    assert slate.dtype == np.int64 and slate.shape == (mask.shape[0], k)
    for row, m in zip(slate, mask, strict=True):
        assert len(set(row.tolist())) == k
        assert m[row].all()


@pytest.fixture(scope="module")
def logged() -> LoggedData:
    venv = RankingVectorEnv(8, world=WORLD, **ENV_KW)
    return collect_logs(make_agent("popularity", venv), venv, 30, epsilon=0.3, seed=0)


def _agent(name: str, env, logged: LoggedData):
    agent = make_agent(name, env, seed=1, device="cpu") if name not in ("ppo", "dqn", "slateq") else None
    if name in ("ppo", "slateq"):
        agent = make_agent(name, RankingVectorEnv(2, world=WORLD, **{**ENV_KW, "action_type": "slate"}), device="cpu")
    if name == "dqn":
        kw = {**ENV_KW, "action_type": "item", "slate_size": 1}
        agent = make_agent(name, RankingVectorEnv(2, world=WORLD, **kw), device="cpu")
    if name in OFFLINE:
        agent.fit(logged)
    return agent


# Oracles read the live state of the env they were built on: each env gets its own.
ENV_BOUND = {"oracle"} | {n for n, cls in AGENTS.items() if getattr(cls, "env_bound", False)}


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_agent_ranks_valid_slates_single_and_vector(name: str, logged: LoggedData) -> None:
    single = RankingEnv(world=WORLD, action_type="slate", **{k: v for k, v in ENV_KW.items()})
    obs, _ = single.reset(seed=0)
    agent = _agent(name, single, logged)
    if name in ENV_BOUND:
        agent = make_agent(name, single)
    slate = agent.rank(obs, 3)
    _valid(slate, obs["mask"][None], 3)
    single.step(slate[0])  # strict env accepts it
    venv = RankingVectorEnv(4, world=WORLD, **ENV_KW)
    vobs, _ = venv.reset(seed=1)
    agent = make_agent(name, venv) if name in ENV_BOUND else agent
    for _ in range(3):
        s = agent.rank(vobs, 3)
        _valid(s, vobs["mask"], 3)
        nxt, _, _, _, info = venv.step(slate_to_action(s, "scores", 20))
        agent.update(vobs, s, info)
        vobs = nxt


@pytest.mark.parametrize("name", sorted(set(AGENTS) - ENV_BOUND))
def test_save_load_round_trip_identical_rankings(name: str, logged: LoggedData, tmp_path) -> None:
    venv = RankingVectorEnv(4, world=WORLD, **ENV_KW)
    obs, _ = venv.reset(seed=3)
    agent = _agent(name, venv, logged)
    path = agent.save(tmp_path / f"{name}.pt")
    other = load_agent(path)
    if name == "random":  # same RNG state -> same draws
        assert np.array_equal(agent.rank(obs, 3), other.rank(obs, 3))
        return
    assert np.array_equal(agent.rank(obs, 3), other.rank(obs, 3))
    assert other.config == agent.config


def test_online_updates_change_popularity_and_linucb() -> None:
    """Through the public contract: updates with clicks must change the scores of a fixed observation
    (LinUCB's state is non-zero before any update, so a state check alone would pass with no update)."""
    venv = RankingVectorEnv(8, world=WORLD, **ENV_KW)
    for name in ("popularity", "linucb"):
        agent = make_agent(name, venv, seed=0, **({"tie_noise": 0.0} if name == "popularity" else {}))
        obs, _ = venv.reset(seed=0)
        probe = {k: v.copy() for k, v in obs.items()}
        before = agent.score(probe)
        clicks = 0.0
        for _ in range(5):
            s = agent.rank(obs, 3)
            nxt, _, _, _, info = venv.step(slate_to_action(s, "scores", 20))
            agent.update(obs, s, info)
            clicks += float(info["clicks"].sum())
            obs = nxt
        assert clicks > 0, "the test needs at least one click to be meaningful"
        after = agent.score(probe)
        assert not np.allclose(before, after), name
        if name == "popularity":
            assert agent.clicks.sum() == pytest.approx(clicks)  # every click counted once


def test_oracle_beats_every_agent_one_step_ctr_on_analytic_world(logged: LoggedData) -> None:
    world = make_analytic_world()
    cfg = analytic_config(world, slate_size=3, max_steps=1)
    venv = RankingVectorEnv(64, world=world, config=cfg)
    log = collect_logs(make_agent("random", venv), venv, 10, epsilon=1.0, seed=0)
    ctrs = {}
    for name in sorted(AGENTS):
        if AGENTS[name].train_action_types is not None:  # RL agents: untrained here
            continue
        agent = make_agent(name, venv, seed=0)
        if name in OFFLINE:
            agent.fit(log)
        obs, _ = venv.reset(seed=7)
        _, _, _, _, info = venv.step(slate_to_action(agent.rank(obs, 3), "scores", cfg.num_candidates))
        ctrs[name] = float(info["click_probs"].sum(1).mean())  # expected clicks of the slate
    assert all(ctrs["oracle"] >= v - 1e-6 for v in ctrs.values()), ctrs


def test_mf_handles_and_refuses_cold_items(logged: LoggedData) -> None:
    venv = RankingVectorEnv(8, world=WORLD, **ENV_KW)
    obs, _ = venv.reset(seed=5)
    mf = make_agent("mf", venv, seed=0, epochs=2)
    with pytest.raises(RuntimeError, match="fit"):
        mf.rank(obs, 3)
    mf.fit(logged)
    warm = mf.item_warm[obs["candidates"]]
    assert (~warm).any(), "test needs some cold candidates"
    slate = mf.rank(obs, 3)
    _valid(slate, obs["mask"], 3)
    assert mf.cold_stats["cold_candidates"] > 0 and 0 < mf.cold_candidate_fraction < 1
    # a cold item is never ranked above a warm one
    for row, s in zip(np.arange(8), slate, strict=True):
        allowed_warm = (warm[row] & obs["mask"][row].astype(bool)).sum()
        if allowed_warm >= 3:
            assert warm[row][s].all()
    strict = make_agent("mf", venv, seed=0, epochs=2, cold_policy="error").fit(logged)
    with pytest.raises(ColdItemError, match="never appeared in the training log"):
        strict.rank(obs, 3)


@pytest.mark.parametrize(
    ("name", "action_type", "hint"), [("ppo", "scores", "action_type='slate'"), ("dqn", "slate", "action_type='item'")]
)
def test_incompatible_action_space_fails_before_training(name: str, action_type: str, hint: str) -> None:
    with pytest.raises(IncompatibleEnvError, match=hint):
        check_compatible(name, action_type, 3)
    env = RankingSB3VecEnv(2, seed=0, world=WORLD, **{**ENV_KW, "action_type": action_type})
    with pytest.raises(IncompatibleEnvError, match=hint):
        make_agent(name, env)
    ok = RankingSB3VecEnv(2, seed=0, world=WORLD, **{**ENV_KW, "action_type": "item", "slate_size": 1})
    agent = make_agent(name, ok, device="cpu")
    with pytest.raises(IncompatibleEnvError, match=hint):
        agent.learn(env, 10)
    assert agent.num_timesteps == 0


def test_unknown_agent_and_hyperparameter_suggest() -> None:
    venv = RankingVectorEnv(2, world=WORLD, **ENV_KW)
    with pytest.raises(ConfigError, match="did you mean 'popularity'"):
        make_agent("popularty", venv)
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        make_agent("linucb", venv, alpah=1.0)


def _ppo_run(seed: int) -> np.ndarray:
    world = make_analytic_world()
    cfg = analytic_config(world, slate_size=3, max_steps=5, action_type="slate")
    env = RankingSB3VecEnv(8, seed=seed, world=world, config=cfg)
    agent = make_agent("ppo", env, seed=seed, device="cpu", n_steps=8, batch_size=32)
    agent.learn(env, 128)
    obs = RankingVectorEnv(4, world=world, config=cfg).reset(seed=0)[0]
    return agent.score(obs)


def test_ppo_deterministic_on_cpu_for_a_fixed_seed() -> None:
    state = torch.random.get_rng_state()
    a, b = _ppo_run(0), _ppo_run(0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, _ppo_run(1))
    assert torch.equal(state, torch.random.get_rng_state()), "library code must not touch the global torch RNG"


def test_logged_data_round_trip_and_validation(logged: LoggedData, tmp_path) -> None:
    path = logged.save(tmp_path / "log.npz")
    back = LoggedData.load(path)
    for key in ("user", "slate", "clicks", "propensity", "candidates"):
        assert np.array_equal(getattr(back, key), getattr(logged, key))
    assert back.meta["logging_agent"] == "popularity" and back.meta["epsilon"] == 0.3
    assert ((logged.propensity > 0) & (logged.propensity <= 1)).all()
    with pytest.raises(ValueError, match="slate_items"):
        LoggedData(**{**{k: getattr(logged, k) for k in ("user", "profile", "history", "context", "candidates", "mask",
                                                         "slate", "clicks", "propensity", "reward")},
                      "slate_items": logged.slate_items + 1})


def test_oracle_refuses_an_observation_of_another_env() -> None:
    """Built on one env, used on another of the same size: it used to rank by the wrong env's logits (as badly
    as random, silently). It must fail, naming the fix; a stale observation of its own env fails too."""
    own = RankingVectorEnv(4, world=WORLD, **ENV_KW)
    other = RankingVectorEnv(4, world=WORLD, **ENV_KW)
    own_obs, _ = own.reset(seed=0)
    other_obs, _ = other.reset(seed=1)
    oracle = make_agent("oracle", own)
    _valid(oracle.rank(own_obs, 3), own_obs["mask"], 3)
    with pytest.raises(WrongEnvError, match="make_agent\\('oracle', env\\)"):
        oracle.rank(other_obs, 3)
    own.step(slate_to_action(oracle.rank(own_obs, 3), "scores", 20))
    with pytest.raises(WrongEnvError):
        oracle.rank(own_obs, 3)  # the observation before the step: the env has moved on
    single = RankingEnv(world=WORLD, action_type="slate", **ENV_KW)
    single_obs, _ = single.reset(seed=0)
    with pytest.raises(WrongEnvError):
        make_agent("oracle", single).rank(own_obs, 3)
