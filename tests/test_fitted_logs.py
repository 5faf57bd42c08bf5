"""Fitted worlds on generated logs: small and large catalogues, implicit quality, distinct cold users, the fit
budget and its determinism, env defaults sized to the world, the split's validation and onboarding rows."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from logdata import make_log
from typer.testing import CliRunner

import recgym  # noqa: F401 - registers the env
from recgym.cli import app
from recgym.common import ConfigError
from recgym.encoders.hashing import HashingEncoder
from recgym.envs.config import EnvConfig
from recgym.envs.core import RankingCore
from recgym.envs.datasets import assert_no_leakage, load_dataset
from recgym.envs.factory import adapt_env_config, world_env_defaults
from recgym.envs.worlds import fitted
from recgym.envs.worlds.fitted import FitConfig, fit_world, platt_scale
from recgym.envs.worlds.fitted_quality import quality_source

FAST = FitConfig(epochs=3, latent_dim=8)


def _fit(folder, tmp_path, cfg=FAST, dim=16):
    return fit_world("log", folder, encoder=HashingEncoder(dim=dim), config=cfg, cache_dir=tmp_path / "cache")


def test_cold_users_without_user_text_are_distinct(tmp_path):
    folder = make_log(tmp_path / "log", n_items=80, n_users=100, per_user=10)
    fw = _fit(folder, tmp_path)
    cold = np.flatnonzero(fw.world.population.cold)
    assert cold.size == 10
    texts = {fw.world.population.texts[u] for u in cold}
    assert len(texts) == cold.size, "every cold user must have a profile of their own"
    emb = fw.world.population.embeddings[cold]
    assert np.linalg.matrix_rank(emb) > 1
    sp = fw.split
    users = fw.data.interactions["user"].to_numpy()
    assert sp.onboarding.size > 0 and set(users[sp.onboarding]) <= set(cold)
    assert np.intersect1d(sp.onboarding, sp.test_eval).size == 0 and np.isin(sp.onboarding, sp.test).all()
    assert np.isin(sp.val, sp.train).all() and sp.val.size > 0
    assert_no_leakage(fw.data, sp, fw.world.population.history)


def test_implicit_logs_get_a_quality_signal_and_sessions_have_dynamics(tmp_path):
    plays = _fit(make_log(tmp_path / "w", n_items=120, n_users=80, weights=True), tmp_path)
    again = _fit(make_log(tmp_path / "r", n_items=120, n_users=80, repeats=True), tmp_path)
    bare = _fit(make_log(tmp_path / "b", n_items=120, n_users=80), tmp_path)
    watched = _fit(make_log(tmp_path / "d", n_items=120, n_users=80, dwell=True), tmp_path)
    for fw, source in ((plays, "weight"), (again, "repeat"), (bare, "continuation"), (watched, "dwell")):
        assert quality_source(fw.data, fw.split) == source and fw.manifest["quality_source"] == source
        q = fw.world.catalog.quality
        assert q.std() > 0.1 and 0.3 < q.mean() < 0.7, source
    core = RankingCore(plays.world, adapt_env_config(EnvConfig(), int((~plays.world.catalog.is_new).sum())))
    state = core.init_state(torch.arange(40), seed=0)
    lengths, sat = np.zeros(40), []
    active = np.ones(40, bool)
    while active.any():
        slate = torch.arange(core.config.slate_size).expand(40, -1).contiguous()
        _, term, trunc, info = core.step(state, slate)
        sat.append(info["satisfaction"].numpy()[active])
        lengths[active] += 1
        active &= ~(term.numpy() | trunc.numpy())
    assert np.concatenate(sat).std() > 0 and len(set(lengths.tolist())) > 1


def test_fit_is_a_work_budget_not_a_clock(tmp_path, monkeypatch):
    folder = make_log(tmp_path / "log", n_items=60, n_users=40)
    data = load_dataset("log", folder)
    ref = fitted.build_fitted_world(data, HashingEncoder(dim=16), FAST, use_cache=False)
    clock = iter(range(0, 10**9, 500))  # every clock read jumps 500 s: a machine 1000x slower
    monkeypatch.setattr(fitted.time, "perf_counter", lambda: float(next(clock)))
    slow = fitted.build_fitted_world(data, HashingEncoder(dim=16), FAST, use_cache=False)
    assert slow.world.fingerprint() == ref.world.fingerprint()
    assert slow.manifest["steps"] == ref.manifest["steps"] and slow.manifest["fit_seconds"] >= 500
    with pytest.raises(ConfigError, match="max_seconds"):
        FitConfig(max_seconds=120)
    capped = fitted.build_fitted_world(data, HashingEncoder(dim=16), FAST.model_copy(update={"max_steps": 2}),
                                       use_cache=False)
    assert capped.manifest["steps"] == 2


def test_platt_scale_recovers_known_parameters():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, 20_000)
    y = (rng.random(x.size) < 1 / (1 + np.exp(-(0.5 * x - 1.0)))).astype(float)
    a, b, g = platt_scale(x, y)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.06) and g == 0.0
    extra = rng.normal(0, 1, x.size)
    y2 = (rng.random(x.size) < 1 / (1 + np.exp(-(0.5 * x + 0.8 * extra - 1.0)))).astype(float)
    a, b, g = platt_scale(x, y2, extra=extra)
    assert (a, b, g) == pytest.approx((0.5, -1.0, 0.8), abs=0.08)
    assert platt_scale(x, np.ones_like(x)) == (1.0, 0.0, 0.0)


def test_env_defaults_adapt_to_the_world_unless_set():
    assert world_env_defaults(1000) == {}
    small = adapt_env_config(EnvConfig(), 95)
    assert (small.candidates.pool_size, small.num_candidates, small.new_items.slots, small.slate_size) == (95, 95, 5, 10)
    kept = adapt_env_config(EnvConfig(num_candidates=40, slate_size=4), 95)
    assert (kept.candidates.pool_size, kept.num_candidates, kept.slate_size) == (95, 40, 4)
    tiny = adapt_env_config(EnvConfig(), 8)
    assert tiny.candidates.pool_size == 8 and tiny.slate_size <= tiny.num_candidates - tiny.new_items.slots
    with pytest.raises(ConfigError, match="pool_size: expected <= the 95 initial items"):
        adapt_env_config(EnvConfig(candidates={"pool_size": 300}), 95)


def _run_config(tmp_path, folder, name):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"""name: {name}
world: log
data_dir: {folder}
encoder: hashing
world_config: {{epochs: 2, latent_dim: 8}}
agents: [{{name: random}}, {{name: popularity}}]
training: {{total_timesteps: 0, logging: {{steps: 3, num_envs: 8}}}}
evaluation: {{users_per_seed: 6, seeds: [0]}}
output: {{plots: false, tensorboard: false}}
""")
    return cfg


@pytest.mark.parametrize("n_items", [100, 20_000])
def test_small_and_large_logs_work_with_defaults(tmp_path, monkeypatch, n_items):
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path / "cache"))
    folder = make_log(tmp_path / "log", n_items=n_items, n_users=60, per_user=10, seed=1)
    env = gym.make("recgym/Ranking-v0", world="log", data_dir=str(folder), encoder="hashing",
                   world_config={"epochs": 2, "latent_dim": 8})
    obs, _ = env.reset(seed=0)
    n_init = int((~env.unwrapped.world.catalog.is_new).sum())
    assert env.unwrapped.config.candidates.pool_size == min(300, n_init) and obs["candidates"].shape[0] <= 100
    env.step(env.action_space.sample())
    env.close()
    runner = CliRunner()
    res = runner.invoke(app, ["fidelity", "--world", "log", "--data-dir", str(folder), "--out", str(tmp_path / "fid"),
                              "--encoder", "hashing"])
    assert res.exit_code == 0, res.output
    bar = json.loads(res.output.strip().splitlines()[-1])
    assert bar and "policy_pass" in bar and "would this simulator rank your policies" in res.output
    res = runner.invoke(app, ["run", str(_run_config(tmp_path, folder, f"log{n_items}")), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "fidelity" / "fidelity.md").is_file()


def test_run_refuses_a_pool_larger_than_the_world_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path / "cache"))
    folder = make_log(tmp_path / "log", n_items=100, n_users=30)
    cfg = _run_config(tmp_path, folder, "bad")
    cfg.write_text(cfg.read_text() + "env: {candidates: {pool_size: 300}}\n")
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "pool_size: expected <= the" in res.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "worlds").exists()


def test_myopic_oracle_bounds_next_slate_clicks_on_a_fitted_world(tmp_path):
    """What the oracle bounds (documented on OracleRecommender): the expected clicks of the next slate."""
    fw = _fit(make_log(tmp_path / "log", n_items=150, n_users=60, ratings=True), tmp_path)
    cfg = adapt_env_config(EnvConfig(), int((~fw.world.catalog.is_new).sum()))
    core = RankingCore(fw.world, cfg)
    state = core.init_state(torch.arange(30), seed=0)
    logits = core.candidate_logits(state)
    masked = torch.where(state.mask, logits, torch.tensor(-torch.inf))
    oracle = torch.argsort(masked, dim=1, descending=True, stable=True)[:, :cfg.slate_size]
    p_oracle = core.choice.click_probs(logits.gather(1, oracle)).sum(1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        keys = torch.where(state.mask, torch.rand(logits.shape, generator=gen), torch.tensor(-1.0))
        other = torch.argsort(keys, dim=1, descending=True)[:, :cfg.slate_size]
        assert (core.choice.click_probs(logits.gather(1, other)).sum(1) <= p_oracle + 1e-6).all()
