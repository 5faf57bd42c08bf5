"""The planning-gain diagnostic and the oracles that plan: analytic world (nothing to plan), a constructed
clickbait world (planning pays), the lookahead's contract, the report lines and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from recgym.agents import make_agent
from recgym.envs import RankingVectorEnv
from recgym.envs.config import EnvConfig
from recgym.envs.world import Catalog, Population, PreferenceParams, World
from recgym.envs.worlds.analytic import analytic_config, make_analytic_world
from recgym.experiments.diagnose import (
    DiagnoseSettings,
    planning_gain_lines,
    read_planning_gain,
    run_diagnose,
    write_planning_gain,
)

SMALL = dict(users_per_seed=8, heuristic_tradeoffs=[0.0, 2.0], lookahead={"horizon": 4, "rollouts": 2},
             sweep_seeds=0)


def clickbait_world(n_items: int = 40, n_users: int = 8) -> World:
    """Every user likes every item alike; half the items are clickbait (appeal 2, quality 0), half good
    (appeal 0.5, quality 1). A click on clickbait costs the time budget, one on a good item refills it."""
    rng = np.random.default_rng(0)
    d, k = 16, 4
    emb = rng.normal(size=(n_items, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    bait = np.arange(n_items) % 2 == 0
    catalog = Catalog(
        item_ids=np.arange(n_items), titles=[f"item {i}" for i in range(n_items)],
        texts=[f"item {i}" for i in range(n_items)], embeddings=emb, genres=(np.arange(n_items) % 4).astype(np.int64),
        genre_names=("a", "b", "c", "d"), popularity=np.full(n_items, 1.0 / n_items, np.float32),
        quality=np.where(bait, 0.0, 1.0).astype(np.float32), appeal=np.where(bait, 2.0, 0.5).astype(np.float32),
        latent=np.zeros((n_items, k), np.float32), is_new=np.zeros(n_items, bool),
    )
    users = rng.normal(size=(n_users, d)).astype(np.float32)
    population = Population(
        user_ids=np.arange(n_users), texts=[f"user {u}" for u in range(n_users)],
        embeddings=users / np.linalg.norm(users, axis=1, keepdims=True), latent=np.zeros((n_users, k), np.float32),
        bias=np.zeros(n_users, np.float32), history=np.full((n_users, 1), -1, np.int64), cold=np.ones(n_users, bool),
        test=np.ones(n_users, bool),
    )
    pref = PreferenceParams(affinity_scale=1.0, popularity_weight=0.0, appeal_weight=1.0, bias=-1.5)
    return World(name="clickbait", catalog=catalog, population=population, preference=pref,
                 source={"generator": "test clickbait world"})


def clickbait_config(world: World) -> EnvConfig:
    m = world.catalog.num_items
    return EnvConfig.model_validate(dict(
        num_candidates=m, slate_size=2, max_steps=25, cohort="all", action_type="slate",
        new_items={"per_step": 0.0, "slots": 0},
        candidates={"pool_size": m, "mask_window": 0, "mix": {"nearest": 0.0, "popular": 0.0, "random": 1.0}},
        dynamics={"initial_budget": 4.0, "step_cost": 1.0, "budget_gain": 3.0, "interest_drift": 0.0,
                  "item_fatigue_weight": 0.0, "genre_fatigue_weight": 0.0, "exposure_fatigue": 0.0},
    ))


def test_analytic_world_has_no_planning_gain():
    world = make_analytic_world()
    cfg = analytic_config(world, action_type="slate")
    res = run_diagnose(world, cfg, DiagnoseSettings(seeds=[0, 1, 2], cohort="all", **SMALL))
    r = res["returns"]
    assert r["lookahead"]["mean"] >= r["oracle"]["mean"] - 1e-9
    assert res["low"] <= 0.0 <= res["high"]
    assert r["oracle"]["mean"] > r["random"]["mean"]


def test_lookahead_plans_to_the_episode_end_by_default():
    world = make_analytic_world()
    cfg = analytic_config(world, action_type="slate")
    res = run_diagnose(world, cfg, DiagnoseSettings(seeds=[0], cohort="all", users_per_seed=2, heuristic_tradeoffs=[0.0],
                                                    lookahead={"rollouts": 1}, sweep_seeds=0))
    assert f"horizon {cfg.max_steps}," in res["method"], res["method"]


def test_planning_pays_where_clickbait_drains_the_budget():
    world = clickbait_world(n_users=32)
    settings = DiagnoseSettings(seeds=[0, 1, 2, 3, 4], cohort="all", **{**SMALL, "users_per_seed": 32,
                                                                  "lookahead": {"horizon": 8, "rollouts": 2}})
    res = run_diagnose(world, clickbait_config(world), settings)
    r = res["returns"]
    assert res["low"] > 0.0, res  # the whole interval above 0: the lookahead beats the myopic oracle
    assert r["lookahead"]["mean"] > r["oracle"]["mean"] and r["quality"]["mean"] > r["oracle"]["mean"]
    assert res["planning_gain"] == pytest.approx(np.mean(res["planning_gain_per_seed"]))
    assert res["metrics"]["lookahead"]["session_length"] > res["metrics"]["oracle"]["session_length"]


def test_lookahead_forks_never_touch_the_live_state(small_world):
    env = RankingVectorEnv(4, world=small_world, action_type="slate", slate_size=3, num_candidates=40,
                           candidates={"pool_size": 120}, sessions={"count": 2, "session_steps": 5},
                           feedback={"enabled": True, "warmup_users": 4, "warmup_steps": 2})
    obs, _ = env.reset(seed=0)
    agent = make_agent("lookahead", env, horizon=3, rollouts=2, tradeoffs=[0.0, 4.0])
    before = env.state.clone()
    slate = agent.rank(obs)
    assert env.state.equal(before)
    assert slate.shape == (4, 3) and agent.last_values.shape == (4, 4)  # continuation, myopic, 2 trade-offs
    mask = obs["mask"].astype(bool)
    assert np.take_along_axis(mask, slate, 1).all() and all(len(set(row)) == 3 for row in slate)
    now, *_ = env.step(slate)
    with pytest.raises(ValueError, match="not the one its env currently shows"):
        agent.rank(obs)
    assert make_agent("quality_oracle", env).rank(now).shape == (4, 3)


def _lookahead_plan(env, obs, **hp):
    """The lookahead's slate and candidate values on ``obs``, and the batch size of every simulated step."""
    sizes = []
    step = env.core.step

    def counting_step(state, slate, *args, **kwargs):
        sizes.append(len(slate))
        return step(state, slate, *args, **kwargs)

    env.core.step = counting_step
    try:
        agent = make_agent("lookahead", env, rollouts=3, tradeoffs=[0.0, 4.0], **hp)
        slate = agent.rank(obs)
    finally:
        del env.core.step
    return slate, agent.last_values, sizes


@pytest.mark.parametrize("continuation", ["same", "base"])
@pytest.mark.parametrize("world_kind", ["clickbait", "returning"])
def test_finished_rollouts_leave_the_batch_without_changing_values(small_world, world_kind, continuation):
    """Rollouts whose user left (or whose session ended) are dropped from the simulated batch: the survivors'
    futures are bit-identical, so the values and the plan equal those of stepping every row to the end."""
    if world_kind == "clickbait":
        world = clickbait_world()
        env = RankingVectorEnv(8, world=world, config=clickbait_config(world))
        horizon = 25
    else:  # returning users with the feedback table (shared state), rollouts stop at the session's end
        env = RankingVectorEnv(6, world=small_world, action_type="slate", slate_size=3, num_candidates=40,
                               candidates={"pool_size": 120}, max_steps=24, dynamics={"initial_budget": 3.0},
                               sessions={"count": 3, "session_steps": 8},
                               feedback={"enabled": True, "warmup_users": 4, "warmup_steps": 2})
        horizon = 24
    obs, _ = env.reset(seed=3)
    full, full_values, full_sizes = _lookahead_plan(env, obs, horizon=horizon, compact_below=0.0,
                                                    continuation=continuation)
    for compact in (0.75, 1.0):
        slate, values, sizes = _lookahead_plan(env, obs, horizon=horizon, compact_below=compact,
                                               continuation=continuation)
        np.testing.assert_array_equal(values, full_values)
        np.testing.assert_array_equal(slate, full)
        assert sum(sizes) < sum(full_sizes) and sizes[-1] < sizes[0]  # rows did leave the batch
    assert len(set(full_sizes)) == 1  # compact_below=0: every row stepped to the end


def test_oracles_need_a_live_env(small_world, tmp_path):
    env = RankingVectorEnv(2, world=small_world, num_candidates=40, candidates={"pool_size": 120})
    agent = make_agent("lookahead", env)
    path = agent.save(tmp_path / "la.zip")
    from recgym.agents import load_agent

    with pytest.raises(Exception, match="needs a live env"):
        load_agent(path)


def test_report_lines_and_file(tmp_path):
    base = {"format": "recgym-planning-gain", "version": 1, "confidence": 0.95, "world_fingerprint": "fp",
            "method": "test", "absolute_gain": {"mean": 1.0, "low": 0.5, "high": 1.5}}
    write_planning_gain(tmp_path / "planning_gain.json", {**base, "gain": 0.2, "low": 0.1, "high": 0.3})
    text = "\n".join(planning_gain_lines(tmp_path, "fp", True))
    assert "+20.0%" in text and "planning pays" in text and "Caution" not in text
    write_planning_gain(tmp_path / "planning_gain.json", {**base, "gain": 0.02, "low": -0.01, "high": 0.05})
    text = "\n".join(planning_gain_lines(tmp_path, "fp", True))
    assert "interval holds 0" in text and "Caution" in text and "say nothing about RL" in text
    assert read_planning_gain(tmp_path, "other")[0] is None
    write_planning_gain(tmp_path / "planning_gain.json", {**base, "gain": float("nan"), "low": 0.0, "high": 1.0})
    assert read_planning_gain(tmp_path, "fp")[0] is None  # NaN is written as null: unreadable, not guessed
    (tmp_path / "planning_gain.json").unlink()
    text = "\n".join(planning_gain_lines(tmp_path, "fp", True))
    assert "not measured" in text and "Caution" in text


def test_cli_diagnose_json_last_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "recgym", "diagnose", "--world", "analytic", "--json", "--users", "4", "--seed", "0",
         "--seed", "1", "--horizon", "2", "--rollouts", "1", "--sweep-seeds", "1", "--sweep-horizon", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    assert len(out.stdout.strip().splitlines()) == 1  # stdout: the JSON object alone
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(last) >= {"planning_gain", "planning_gain_ci", "returns"}
    # A long diagnose is not silent with --json: its per-policy progress goes to stderr.
    assert "oracle seed 1: return" in out.stderr and "lookahead seed 0: return" in out.stderr
    assert {"random", "oracle", "quality", "lookahead"} <= set(last["returns"])
    saved = json.loads((tmp_path / "planning_gain.json").read_text())
    assert saved["format"] == "recgym-planning-gain" and saved["sweep"] and saved["world"] == "analytic"
    assert torch.isfinite(torch.tensor(saved["returns"]["oracle"]["mean"]))


def test_switch_needs_a_bonferroni_t_test_over_the_futures():
    from recgym.agents.lookahead import LookaheadConfig, _switch_threshold

    two = LookaheadConfig(rollouts=2)  # one degree of freedom: a 1-SE rule would switch on noise
    assert _switch_threshold(two, 8) == pytest.approx(44.56, abs=0.01)
    assert _switch_threshold(LookaheadConfig(rollouts=8), 8) == pytest.approx(3.24, abs=0.01)
    assert _switch_threshold(LookaheadConfig(rollouts=1, switch_margin=0.5), 8) == 0.5  # no SE to test with
    assert _switch_threshold(LookaheadConfig(rollouts=8, switch_confidence=0, switch_margin=2.0), 8) == 2.0
