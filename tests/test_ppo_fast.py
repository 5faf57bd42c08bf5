"""The fast (on-device) PPO trainer: SB3 loss/gradient/GAE equality, seed batching, save/load, CUDA parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_world

from recgym.agents import load_agent, make_agent
from recgym.agents._stacked import StackedScorer
from recgym.agents.ppo_fast import (
    FastPPOTrainer,
    StackedAdam,
    clip_grad_norm_per_seed,
    native_env,
    ppo_loss,
    train_seeds,
)
from recgym.agents.scorer import COS_KEY, CandidateScorer
from recgym.envs.sb3 import RankingSB3VecEnv

WORLD = random_world(n_items=120, n_users=20, dim=16, n_new=10)
ENV_KW = {"num_candidates": 20, "slate_size": 3, "candidates": {"pool_size": 40}, "max_steps": 5,
          "new_items": {"slots": 2}, "action_type": "slate"}
HP = {"n_steps": 4, "batch_size": 64, "n_epochs": 1, "hidden": 8, "device": "cpu"}


def _env(users: int = 16, seed: int = 0, device: str = "cpu") -> RankingSB3VecEnv:
    env = RankingSB3VecEnv(users, seed=seed, world=WORLD, device=device, **ENV_KW)
    env.reset()
    return env


def _trainer(agent, env) -> FastPPOTrainer:  # noqa: ANN001
    venv = native_env(env)
    return FastPPOTrainer(venv.core, venv.state, [agent.policy.scorer], agent.config, [agent.config.seed])


def _grads(scorer: StackedScorer, seed: int = 0) -> dict[str, torch.Tensor]:
    return {name: scorer.p(name).grad[seed].clone() for name in scorer.scorer_state(0)}


def test_stacked_scorer_matches_candidate_scorer() -> None:
    env = _env()
    agent = make_agent("ppo", env, **HP)
    obs = native_env(env).core.observe(native_env(env).state)
    ref_scores, ref_value = agent.policy.scorer(obs)
    trainer = _trainer(agent, env)
    stacked_obs = trainer.collector.observe()
    scores, value = trainer.scorer(stacked_obs)
    torch.testing.assert_close(scores[0], ref_scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value[0], ref_value, rtol=1e-5, atol=1e-5)


def test_fast_loss_gradients_and_gae_equal_sb3() -> None:
    """Same parameters, same rollout -> SB3's GAE, loss and clipped gradients (one full-batch minibatch)."""
    env = _env()
    agent = make_agent("ppo", env, **HP)
    trainer = _trainer(agent, _env(seed=1))
    rollout = trainer.rollout()
    assert rollout.episode_start.sum() > 0 and rollout.reward.abs().sum() > 0
    agent.learn(env, 0)  # builds the SB3 model from the agent's weights
    model = agent.model
    buf = model.rollout_buffer
    buf.reset()
    model.policy.set_training_mode(False)
    for t in range(HP["n_steps"]):
        obs = {k: rollout.obs[k][t, 0].numpy() for k in ("profile", "history", "context", "candidates", "mask")}
        buf.add(obs, rollout.slate[t, 0].numpy(), rollout.reward[t, 0].numpy(), rollout.episode_start[t, 0].numpy(),
                rollout.value[t, 0], rollout.log_prob[t, 0], extras={COS_KEY: rollout.obs[COS_KEY][t, 0].numpy()})
    with torch.no_grad():
        last_value = trainer.scorer(trainer.collector.observe())[1][0]
    buf.compute_returns_and_advantage(last_value, trainer.collector.last_done[0].numpy())
    torch.testing.assert_close(torch.as_tensor(buf.advantages), rollout.advantages[:, 0], rtol=1e-5, atol=1e-5)
    # the SB3 policy's log-probs of the stored slates equal the fast trainer's (same weights, same obs)
    model.train()
    sb3_loss = model.logger.name_to_value["train/loss"]
    sb3_grads = {k: p.grad.clone() for k, p in model.policy.scorer.named_parameters()}

    flat = rollout.flat()
    loss, stats = ppo_loss(trainer.scorer, flat, 0.2, agent.config.ent_coef, agent.config.vf_coef)
    loss.sum().backward()
    clip_grad_norm_per_seed(list(trainer.scorer.parameters()), agent.config.max_grad_norm)
    assert float(loss[0].detach()) == pytest.approx(sb3_loss, rel=1e-5, abs=1e-6)
    fast = _grads(trainer.scorer)
    assert set(fast) == set(sb3_grads)
    for name, g in sb3_grads.items():
        torch.testing.assert_close(fast[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert float(stats["approx_kl"][0]) == pytest.approx(0.0, abs=1e-6)  # old log-probs = current policy


def test_seed_batched_first_update_equals_separate_runs() -> None:
    seeds = [3, 7, 11]
    agents = [make_agent("ppo", _env(), seed=s, **HP) for s in seeds]
    separate = []
    for a, s in zip(agents, seeds, strict=True):
        tr = _trainer(a, _env(seed=100 + s))
        r = tr.rollout()
        batch = next(tr.minibatches(r.flat()))
        ppo_loss(tr.scorer, batch, 0.2, 0.01, 0.5)[0].sum().backward()
        separate.append((r, _grads(tr.scorer)))
    envs = [_env(seed=100 + s) for s in seeds]
    from recgym.agents.ppo_fast import _concat_states

    venvs = [native_env(e) for e in envs]
    state = _concat_states([v.state for v in venvs])
    tr = FastPPOTrainer(venvs[0].core, state, [a.policy.scorer for a in agents], agents[0].config, seeds)
    r = tr.rollout()
    batch = next(tr.minibatches(r.flat()))
    ppo_loss(tr.scorer, batch, 0.2, 0.01, 0.5)[0].sum().backward()
    for i, (r1, g1) in enumerate(separate):
        assert torch.equal(r.slate[:, i], r1.slate[:, 0])  # same env and policy draws per seed
        torch.testing.assert_close(r.reward[:, i], r1.reward[:, 0])
        g = _grads(tr.scorer, i)
        for name in g1:
            torch.testing.assert_close(g[name], g1[name], rtol=1e-4, atol=1e-6, msg=f"seed {seeds[i]} {name}")


def test_train_seeds_moves_agents_and_envs() -> None:
    envs = [_env(seed=s) for s in (0, 1)]
    agents = [make_agent("ppo", envs[0], seed=s, trainer="fast", **HP) for s in (0, 1)]
    before = [{k: v.clone() for k, v in a.policy.scorer.state_dict().items()} for a in agents]
    t0 = native_env(envs[0]).state.t
    train_seeds(agents, envs, 128)
    for a, b in zip(agents, before, strict=True):
        assert a.num_timesteps == 128
        assert any(not torch.equal(v, b[k]) for k, v in a.policy.scorer.state_dict().items())
    assert native_env(envs[1]).state.t == t0 + 8
    with pytest.raises(ValueError, match="differ in 'seed' only"):
        train_seeds([agents[0], make_agent("ppo", envs[0], seed=2, **{**HP, "hidden": 4})], envs, 64)


def test_stacked_adam_matches_torch_adam() -> None:
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(2, 5, 3, generator=gen)
    mine = torch.nn.Parameter(w0.clone())
    ref = [torch.nn.Parameter(w0[i].clone()) for i in range(2)]
    opt = StackedAdam([mine], lr=1e-2)
    ropt = [torch.optim.Adam([p], lr=1e-2, eps=1e-5) for p in ref]
    for step in range(4):
        g = torch.randn(2, 5, 3, generator=gen)
        mine.grad = g.clone()
        active = torch.tensor([True, step != 2])  # seed 1 sits out step 2 (target_kl stop)
        opt.step(active)
        for i in range(2):
            if bool(active[i]):
                ref[i].grad = g[i].clone()
                ropt[i].step()
    for i in range(2):
        torch.testing.assert_close(mine.detach()[i], ref[i].detach(), rtol=1e-5, atol=1e-6)


def test_fast_agent_trains_saves_and_loads(tmp_path) -> None:  # noqa: ANN001
    env = _env()
    agent = make_agent("ppo", env, trainer="fast", target_kl=0.05, **HP)
    seen = []
    agent.learn(env, 200, callback=seen.append)
    assert agent.num_timesteps == 256 and seen == [64, 128, 192, 256]
    obs = native_env(env).core.observe(native_env(env).state)
    obs = {k: v.numpy() for k, v in obs.items()}
    path = agent.save(tmp_path / "fast.agent")
    loaded = load_agent(path, env)
    assert loaded.config.trainer == "fast" and loaded.num_timesteps == 256
    np.testing.assert_array_equal(loaded.rank(obs, 3), agent.rank(obs, 3))
    np.testing.assert_allclose(loaded.score(obs), agent.score(obs), rtol=1e-6)
    loaded.learn(env, 64)  # a loaded agent continues training
    assert loaded.num_timesteps == 320
    with pytest.raises(TypeError, match="callback"):
        agent.learn(env, 64, callback=object())


def test_fast_training_state_round_trip() -> None:
    env = _env()
    a = make_agent("ppo", env, trainer="fast", **HP)
    a.learn(env, 64)
    st = a.fast_trainer.training_state()
    b = make_agent("ppo", _env(), trainer="fast", **HP)
    b.learn(_env(), 0)
    b.fast_trainer.load_training_state(st)
    for x, y in zip(a.fast_trainer.optimizer.exp_avg, b.fast_trainer.optimizer.exp_avg, strict=True):
        torch.testing.assert_close(x, y)
    assert torch.equal(a.fast_trainer.samplers[0].get_state(), b.fast_trainer.samplers[0].get_state())


def test_stacked_scorer_rejects_scorer_without_value_head() -> None:
    sc = CandidateScorer(np.ones((4, 3), np.float32), hidden=4, value_head=False)
    with pytest.raises(ValueError, match="value head"):
        StackedScorer.from_scorers([sc])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_cuda_fast_loss_and_gradients_match_cpu() -> None:
    """CPU-vs-CUDA parity of the fast trainer: same weights, same rollout batch -> same loss and gradients."""
    env = _env()
    agent = make_agent("ppo", env, **HP)
    cpu = _trainer(agent, _env(seed=1))
    rollout = cpu.rollout()
    flat = rollout.flat()
    env_cuda = _env(seed=1, device="cuda")
    gpu = FastPPOTrainer(native_env(env_cuda).core, native_env(env_cuda).state, [agent.policy.scorer], agent.config,
                         [0])
    for tr, batch in ((cpu, flat), (gpu, {k: v.cuda() for k, v in flat.items()})):
        ppo_loss(tr.scorer, batch, 0.2, 0.01, 0.5)[0].sum().backward()
    g_cpu, g_gpu = _grads(cpu.scorer), _grads(gpu.scorer)
    for name in g_cpu:
        torch.testing.assert_close(g_gpu[name].cpu(), g_cpu[name], rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.gpu
@needs_cuda
def test_cuda_fast_training_runs_end_to_end() -> None:
    env = _env(64, device="cuda")
    agent = make_agent("ppo", env, trainer="fast", **{**HP, "device": "cuda"})
    agent.learn(env, 1024)
    assert agent.fast_trainer.device.type == "cuda" and agent.num_timesteps == 1024
    assert all(torch.isfinite(p).all() for p in agent.policy.scorer.parameters())


def test_cosine_cache_equals_cosine_features_and_falls_back() -> None:
    from recgym.agents._rollout import CosineCache
    from recgym.agents.scorer import cosine_features

    venv = native_env(_env())
    unit = torch.nn.functional.normalize(torch.as_tensor(np.array(venv.item_embeddings)), dim=1)
    obs = venv.core.observe(venv.state)
    obs["history"][0] = 0.0  # a zero history gives cosine 0, as in cosine_features
    ref = cosine_features(unit, obs["profile"], obs["history"], obs["candidates"])
    cache = CosineCache(venv.core, unit)
    assert cache.table is not None
    torch.testing.assert_close(cache(venv.state, obs), ref, rtol=1e-5, atol=1e-6)
    obs["profile"] = obs["profile"] * 0.5 + 0.1  # not the world's profile rows: full product
    torch.testing.assert_close(cache(venv.state, obs),
                               cosine_features(unit, obs["profile"], obs["history"], obs["candidates"]))
    assert CosineCache(venv.core, unit, max_entries=10).table is None


def test_fast_training_resumes_exactly_from_its_state() -> None:
    """Weights + trainer state (optimiser, generators, rollout position) + env state -> the continued run is
    bit-identical to the uninterrupted one (what a checkpoint needs)."""
    env_a = _env()
    a = make_agent("ppo", env_a, trainer="fast", **HP)
    a.learn(env_a, 128)
    snap_env = native_env(env_a).state.clone()
    snap = ({k: v.clone() for k, v in a.policy.scorer.state_dict().items()}, a.fast_trainer.training_state(),
            a.num_timesteps)
    a.learn(env_a, 128)

    env_b = _env(seed=5)  # another stream: everything comes from the snapshot
    b = make_agent("ppo", env_b, trainer="fast", **HP)
    b.policy.scorer.load_state_dict(snap[0])
    b.num_timesteps = snap[2]
    own = native_env(env_b).state
    for name, v in (*snap_env.batched(), *snap_env.shared()):
        getattr(own, name).copy_(v)
    own.t = snap_env.t
    b.learn(env_b, 0)
    b.fast_trainer.load_training_state(snap[1])
    b.learn(env_b, 128)
    for k, v in a.policy.scorer.state_dict().items():
        assert torch.equal(v, b.policy.scorer.state_dict()[k]), k


def test_bench_train_fast_and_batched_seeds_report_env_steps_per_s() -> None:
    from recgym.benchmarks.train import run_train_benchmark

    for seeds in (1, 2):
        res = run_train_benchmark("ppo", 128, 16, "cpu", 0, WORLD, trainer="fast", seeds=seeds, n_steps=4,
                                  batch_size=32, hidden=8)
        assert res["trainer"] == "fast" and res["seeds"] == seeds and res["env_steps"] == 128 * seeds
        assert res["env_steps_per_s"] > 0 and "load_avg_1m" in res
    with pytest.raises(ValueError, match="trainer"):
        run_train_benchmark("dqn", 128, 16, "cpu", 0, WORLD, trainer="fast")
    with pytest.raises(ValueError, match="seeds"):
        run_train_benchmark("ppo", 128, 16, "cpu", 0, WORLD, trainer="sb3", seeds=2)


def test_rollout_matches_sb3_vecenv_steps_and_time_limit_bootstrap() -> None:
    """The fast rollout's env steps, same-step resets and time-limit bootstrap equal SB3's over the SB3 VecEnv:
    stepping the adapter with the rollout's slates gives the same rewards + gamma * V(terminal obs)."""
    kw = {**ENV_KW, "max_steps": 3}
    env_fast = RankingSB3VecEnv(16, seed=1, world=WORLD, **kw)
    env_fast.reset()
    env_ref = RankingSB3VecEnv(16, seed=1, world=WORLD, **kw)
    obs = env_ref.reset()
    agent = make_agent("ppo", env_fast, **{**HP, "n_steps": 7})
    trainer = _trainer(agent, env_fast)
    rollout = trainer.rollout()
    gamma = agent.config.gamma
    truncations = 0
    for t in range(7):
        np.testing.assert_array_equal(obs["candidates"], rollout.obs["candidates"][t, 0].numpy())
        obs, reward, dones, infos = env_ref.step(rollout.slate[t, 0].numpy())
        for i in np.flatnonzero(dones):
            if infos[i]["TimeLimit.truncated"]:
                truncations += 1
                term = {k: torch.as_tensor(v[None]) for k, v in infos[i]["terminal_observation"].items()}
                with torch.no_grad():
                    reward[i] += gamma * float(agent.policy.predict_values(term))
        np.testing.assert_allclose(rollout.reward[t, 0].numpy(), reward, rtol=1e-5, atol=1e-5)
        if t + 1 < 7:
            np.testing.assert_array_equal(rollout.episode_start[t + 1, 0].numpy(), dones.astype(np.float32))
    assert truncations > 0
