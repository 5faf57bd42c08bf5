"""Exact resume (issue 17 item 3): the training env's state and the learner state go into checkpoints, so
training split by a resume - in process or by SIGKILL through the CLI - equals training never interrupted."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.agents import make_agent
from recgym.common.io import sha256_bytes
from recgym.envs import make_world
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.experiments.config import load_config
from recgym.experiments.resume import learner_state, load_learner_state
from recgym.experiments.training import find_resume_checkpoint, train_rl

REPO = Path(__file__).resolve().parents[1]
SETS = ["world=analytic", "world_config={n_items: 60, n_users: 16}", "env.num_candidates=20", "env.slate_size=3",
        "env.new_items.slots=0", "env.candidates.pool_size=40", "env.max_steps=5", "evaluation.cohort=all"]
AGENTS = {"ppo": ({}, {"n_steps": 8}),
          "dqn": ({"action_type": "item", "slate_size": 1},
                  {"learning_starts": 32, "buffer_size": 400, "batch_size": 16, "target_update_interval": 64})}


def _same(a, b) -> bool:
    """Nested dicts/lists of tensors and plain values, bit for bit."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


def _train(tmp: Path, name: str, budget: int, world, cfg) -> tuple[list[dict], dict]:
    env_over, hyper = AGENTS[name]
    env_cfg = cfg.train_env(0).merged(env_over)
    probe = RankingSB3VecEnv(1, seed=0, world=world, config=env_cfg)
    agent = make_agent(name, probe, seed=0, **hyper)
    curve = train_rl(agent, world=world, train_env_cfg=env_cfg, budget=budget, num_envs=8, seed=3,
                     checkpoint_every=64, ckpt_dir=tmp / "ck", log_path=tmp / "curve.csv", tb_dir=None,
                     cfg_hash="h", curve_fn=lambda a: 0.0)
    return curve, {k: v.clone() for k, v in agent.model.policy.state_dict().items()}


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_training_split_by_a_resume_equals_uninterrupted_training(tmp_path, name):
    cfg = load_config(raw={"name": "t", "agents": [{"name": "ppo"}]}, overrides=SETS)
    world = make_world("analytic", world_config=cfg.world_config)
    whole_curve, whole = _train(tmp_path / "whole", name, 256, world, cfg)
    _train(tmp_path / "split", name, 128, world, cfg)  # stops after step 128 (a checkpoint), like a killed run
    split_curve, split = _train(tmp_path / "split", name, 256, world, cfg)  # resumes from it
    assert [r["step"] for r in split_curve] == [0, 64, 128, 192, 256]
    # train_ep_return / train_ep_length come from the episode statistics, so they pin the env trajectories too.
    assert json.dumps(split_curve) == json.dumps(whole_curve)
    assert whole.keys() == split.keys()
    assert all(torch.equal(whole[k], split[k]) for k in whole), [k for k in whole if not torch.equal(whole[k], split[k])]


def test_training_without_the_env_state_diverges(tmp_path, monkeypatch):
    """The test above can fail: drop the env state from the checkpoints and the resumed run diverges."""
    cfg = load_config(raw={"name": "t", "agents": [{"name": "ppo"}]}, overrides=SETS)
    world = make_world("analytic", world_config=cfg.world_config)
    _, whole = _train(tmp_path / "whole", "ppo", 256, world, cfg)
    monkeypatch.setattr(RankingSB3VecEnv, "load_state_dict", lambda self, state: None)
    _train(tmp_path / "split", "ppo", 128, world, cfg)
    _, split = _train(tmp_path / "split", "ppo", 256, world, cfg)
    assert not all(torch.equal(whole[k], split[k]) for k in whole)


def _resign(ck: Path, step: int, edit) -> None:
    """Edit a checkpoint's payload and re-sign it (valid manifest), as a careless tool or an old version would."""
    name = f"step_{step:010d}.pt"
    payload = torch.load(io.BytesIO((ck / name).read_bytes()), weights_only=True)
    edit(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    (ck / name).write_bytes(data)
    for m in (ck / f"step_{step:010d}.json", ck / "latest.json"):
        meta = json.loads(m.read_text())
        m.write_text(json.dumps({**meta, "size": len(data), "sha256": sha256_bytes(data)}))


def _train_notes(tmp: Path, budget: int, notes: list[str]) -> list[dict]:
    cfg = load_config(raw={"name": "t", "agents": [{"name": "ppo"}]}, overrides=SETS)
    world = make_world("analytic", world_config=cfg.world_config)
    env_over, hyper = AGENTS["dqn"]
    env_cfg = cfg.train_env(0).merged(env_over)
    agent = make_agent("dqn", RankingSB3VecEnv(1, seed=0, world=world, config=env_cfg), seed=0, **hyper)
    return train_rl(agent, world=world, train_env_cfg=env_cfg, budget=budget, num_envs=8, seed=3,
                    checkpoint_every=64, ckpt_dir=tmp / "ck", log_path=tmp / "curve.csv", tb_dir=None,
                    cfg_hash="h", curve_fn=lambda a: 0.0, notify=notes.append)


def test_checkpoint_without_env_and_learner_state_resumes_approximately_and_says_so(tmp_path):
    _train_notes(tmp_path, 128, [])
    _resign(tmp_path / "ck", 128, lambda p: (p.pop("sim"), p.pop("learner")))  # as written before exact resume
    notes: list[str] = []
    curve = _train_notes(tmp_path, 192, notes)
    assert [r["step"] for r in curve] == [0, 64, 128, 192]
    assert any("written before exact resume" in n and "empty replay buffer" in n for n in notes), notes


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda p: p.pop("sim"), r"fields 'sim' and 'learner': expected both \(exact resume\) or neither"),
    (lambda p: p["learner"].update(counters={"_n_calls": -3}), r"field 'learner\.counters': expected a dict of non-neg"),
    (lambda p: p["learner"]["replay"].update(pos="7"), r"field 'learner\.replay': expected a dict with int 'pos'"),
])
def test_malformed_exact_resume_fields_are_named_and_the_checkpoint_skipped(tmp_path, edit, expected):
    _train_notes(tmp_path, 128, [])
    _resign(tmp_path / "ck", 128, edit)
    notes: list[str] = []
    assert find_resume_checkpoint(tmp_path / "ck", "h", notes.append)["step"] == 64
    assert re.search(expected, notes[0]), notes[0]


def _venv(world, cfg, n: int = 4) -> RankingSB3VecEnv:
    return RankingSB3VecEnv(n, seed=11, world=world, config=cfg.train_env(0))


def test_vector_env_state_round_trips_through_a_weights_only_file():
    cfg = load_config(raw={"name": "t", "agents": [{"name": "ppo"}]}, overrides=SETS)
    world = make_world("analytic", world_config=cfg.world_config)
    rng = np.random.default_rng(0)

    def act(obs):  # three random allowed candidates per user
        return np.stack([rng.permutation(np.flatnonzero(m))[:3] for m in obs["mask"]])

    a = _venv(world, cfg)
    obs = a.reset()
    for _ in range(7):
        obs, *_ = a.step(act(obs))
    saved = _roundtrip(a.state_dict())
    b = _venv(world, cfg)
    b.load_state_dict(saved)  # before any reset
    for _ in range(12):  # crosses episode ends (max_steps 5): resets continue the restored streams
        action = act(obs)
        obs, ra, da, _ = a.step(action)
        ob, rb, db, _ = b.step(action)
        assert all(np.array_equal(obs[k], ob[k]) for k in obs) and np.array_equal(ra, rb) and np.array_equal(da, db)
    assert a.state.equal(b.state)


def test_vector_env_state_that_does_not_fit_is_refused_and_changes_nothing():
    cfg = load_config(raw={"name": "t", "agents": [{"name": "ppo"}]}, overrides=SETS)
    world = make_world("analytic", world_config=cfg.world_config)
    a = _venv(world, cfg, 4)
    a.reset()
    b = _venv(world, cfg, 6)
    b.reset()
    before = b.state.clone()
    with pytest.raises(ValueError, match=r"field 'sim\.user': expected torch\.int64 \(6,\), received torch\.int64 \(4,\)"):
        b.load_state_dict(a.state_dict())
    bad = a.state_dict()
    del bad["sim"]["batched.budget"]
    with pytest.raises(ValueError, match=r"field 'sim': expected the fields .*budget"):
        a.load_state_dict(bad)
    with pytest.raises(ValueError, match="expected a mapping with 'sim' and 'pending_reset'"):
        a.load_state_dict({"sim": {}})
    assert b.state.equal(before)


def test_learner_state_that_does_not_fit_names_the_field_and_changes_nothing():
    cfg = load_config(raw={"name": "t", "agents": [{"name": "ppo"}]}, overrides=SETS)
    world = make_world("analytic", world_config=cfg.world_config)
    env_cfg = cfg.train_env(0).merged(AGENTS["dqn"][0])
    venv = RankingSB3VecEnv(4, seed=0, world=world, config=env_cfg)
    agent = make_agent("dqn", venv, seed=0, **AGENTS["dqn"][1])
    agent.learn(venv, 64)
    state = _roundtrip(learner_state(agent.model))
    assert state["replay"]["pos"] == 16 and len(state["replay"]["rewards"]) == 16
    obs = state["replay"]["observations"]
    key = next(iter(obs))
    obs[key] = obs[key][:, :1]
    pos = agent.model.replay_buffer.pos
    with pytest.raises(ValueError, match=rf"field 'learner\.replay\.observations\.{key}': expected"):
        load_learner_state(agent.model, state)
    assert agent.model.replay_buffer.pos == pos
    state = _roundtrip(learner_state(agent.model))
    state["counters"] = {"_n_calls": -1}
    with pytest.raises(ValueError, match=r"field 'learner\.counters': expected a dict of non-negative ints"):
        load_learner_state(agent.model, state)


# ------------------------------------------------------------------------------------ through the CLI
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
CLI_SETS = [*SETS, "env.max_steps=6", "training.num_envs=8", "training.total_timesteps=1024",
            "training.checkpoint_every=128", "training.curve_users=8", "training.logging.steps=10",
            "training.logging.num_envs=8", "evaluation.seeds=[0]", "evaluation.users_per_seed=8",
            "evaluation.episodes_per_user=1"]
CONFIG = """name: exact
agents:
  - name: ppo
    hyperparams: {n_steps: 8}
  - name: dqn
    env: {action_type: item, slate_size: 1}
    hyperparams: {learning_starts: 64, buffer_size: 2000, batch_size: 16, target_update_interval: 64}
"""


def _cli(cfg: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "recgym", "run", str(cfg), "--out", str(out), *extra,
            *[x for s in CLI_SETS for x in ("--set", s)]]


def _kill_after_a_checkpoint(cmd: list[str], marker: Path) -> int:
    """Start ``cmd``, SIGKILL it as soon as ``marker`` (a latest.json) exists; the step it names."""
    proc = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not marker.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert marker.is_file(), err[-2000:]
    return json.loads(marker.read_text())["step"]


@pytest.mark.slow  # ~150 s on the loaded 2-core machine (five CLI processes); the in-process tests above run by default
def test_run_sigkilled_mid_training_and_resumed_gives_identical_metrics(tmp_path):
    cfg = tmp_path / "exact.yaml"
    cfg.write_text(CONFIG)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    res = subprocess.run(_cli(cfg, whole), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    # Killed in PPO's training, resumed, killed again in DQN's (replay buffer in flight), resumed to the end.
    ppo_at = _kill_after_a_checkpoint(_cli(cfg, cut), cut / "checkpoints" / "ppo__seed0" / "latest.json")
    dqn_at = _kill_after_a_checkpoint(_cli(cfg, cut, "--resume"), cut / "checkpoints" / "dqn__seed0" / "latest.json")
    assert 0 < ppo_at < 1024 and 0 < dqn_at < 1024, (ppo_at, dqn_at)
    assert not (cut / "metrics.json").exists()
    res = subprocess.run(_cli(cfg, cut, "--resume"), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    for agent in ("ppo", "dqn"):
        assert (cut / "curves" / f"{agent}__seed0.csv").read_text() == (whole / "curves" / f"{agent}__seed0.csv").read_text()
        final = [torch.load(run / "checkpoints" / f"{agent}__seed0" / "step_0000001024.pt", weights_only=True)
                 for run in (whole, cut)]
        for state in final:
            del state["learner"]["ep_info"]["t"]  # wall-clock seconds since the monitor started
        for part in ("policy", "optimizer", "sim", "learner"):  # the weights pin it down beyond what metrics show
            assert _same(final[0][part], final[1][part]), (agent, part)
    assert json.loads((cut / "metrics.json").read_text()) == json.loads((whole / "metrics.json").read_text())
