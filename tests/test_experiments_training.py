"""RL training guard rails (in process, analytic world): NaN stops the run and keeps the last good checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recgym.agents import make_agent
from recgym.envs import make_world
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.experiments.config import load_config
from recgym.experiments.evaluation import cohort_users, evaluate_cell
from recgym.experiments.training import NaNLossError, train_rl

SETS = ["world=analytic", "world_config={n_items: 60, n_users: 16}", "env.num_candidates=20", "env.slate_size=3",
        "env.new_items.slots=0", "env.candidates.pool_size=40", "env.max_steps=5", "evaluation.cohort=all"]


def _setup():
    cfg = load_config(raw={"name": "t", "agents": [{"name": "ppo", "hyperparams": {"n_steps": 8}}]}, overrides=SETS)
    world = make_world("analytic", world_config=cfg.world_config)
    probe = RankingSB3VecEnv(1, seed=0, world=world, config=cfg.train_env(0))
    return cfg, world, make_agent("ppo", probe, seed=0, n_steps=8)


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg, world, agent = _setup()
    kw = dict(world=world, train_env_cfg=cfg.train_env(0), budget=512, num_envs=8, seed=0, checkpoint_every=64,
              ckpt_dir=tmp_path / "ck", log_path=tmp_path / "curve.csv", tb_dir=None, cfg_hash="h",
              curve_fn=lambda a: 0.0)
    real_learn = type(agent).learn
    calls = {"n": 0}

    def poisoned(self, env, total, callback=None, progress_bar=False):
        out = real_learn(self, env, total, callback=callback, progress_bar=progress_bar)
        calls["n"] += 1
        if calls["n"] == 3:  # the 2nd training chunk (1st call builds the model with 0 steps)
            with torch.no_grad():
                next(self.model.policy.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(type(agent), "learn", poisoned)
    with pytest.raises(NaNLossError, match=r"NaN/inf after step 128.*last good checkpoint \(step 64\)"):
        train_rl(agent, **kw)
    latest = json.loads((tmp_path / "ck" / "latest.json").read_text())
    assert latest["step"] == 64 and (tmp_path / "ck" / latest["file"]).is_file()


def test_same_users_and_release_schedule_for_every_agent():
    cfg, world, _ = _setup()
    users = cohort_users(world, "all", 6, seed=3)
    assert np.array_equal(users, cohort_users(world, "all", 6, seed=3))
    res = {name: evaluate_cell(lambda env, n=name: make_agent(n, env, seed=0), world, cfg.eval_env(), users, 3)
           for name in ("random", "oracle")}
    for r in res.values():
        assert r.metrics["all"]["n_sessions"] == 6
        assert 0 <= r.metrics["all"]["ctr"] <= 1
    assert res["oracle"].metrics["all"]["ndcg"] == pytest.approx(1.0)
    assert res["random"].metrics["all"]["ndcg"] < 1.0
