"""Fast checks of the learning machinery behind PPO/DQN: the Plackett-Luce log-probability, the scorer's
public item features and projection cache, and the lean PPO rollout (stored cosine features)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import random_world

from recgym.agents import EnvSpec, make_agent
from recgym.agents.scorer import COS_KEY, CandidateScorer, cosine_features, masked_logits, pl_log_prob
from recgym.envs.sb3 import RankingSB3VecEnv


def _pl_reference(logits: torch.Tensor, slate: torch.Tensor) -> torch.Tensor:
    out = []
    for row, s in zip(logits, slate, strict=True):
        lp, left = 0.0, torch.isfinite(row).clone()
        for a in s.tolist():
            lp = lp + row[a] - torch.logsumexp(row[left], 0)
            left[a] = False
        out.append(lp)
    return torch.stack(out)


def test_pl_log_prob_matches_sequential_reference_and_sums_to_one() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 12, generator=g) * 3
    logits[:, :3] = float("-inf")
    slate = torch.stack([torch.randperm(9, generator=g)[:4] + 3 for _ in range(32)])
    assert torch.allclose(pl_log_prob(logits, slate), _pl_reference(logits, slate), atol=1e-5)
    # all ordered K=2 slates of a 4-item row sum to probability one
    row = torch.randn(1, 4, generator=g)
    slates = torch.tensor(list(itertools.permutations(range(4), 2)))
    total = pl_log_prob(row.expand(len(slates), 4), slates).exp().sum()
    assert abs(float(total) - 1.0) < 1e-5
    # every unmasked candidate in the slate: finite value and gradient
    x = logits[:4].clone().requires_grad_(True)
    full = torch.stack([torch.randperm(9, generator=g) + 3 for _ in range(4)])
    v = pl_log_prob(x, full)
    v.sum().backward()
    assert torch.isfinite(v).all() and torch.isfinite(x.grad).all()


def _obs(m: int, d: int, b: int = 3, n: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "profile": torch.randn(b, d, generator=g), "history": torch.randn(b, d, generator=g),
        "context": torch.rand(b, 4, generator=g), "candidates": torch.randint(0, m, (b, n), generator=g),
        "mask": torch.ones(b, n, dtype=torch.int8),
    }


def test_scorer_reads_item_features_and_stays_equivariant() -> None:
    m, d = 50, 8
    emb = np.random.default_rng(0).normal(size=(m, d)).astype(np.float32)
    feats = np.random.default_rng(1).random((m, 2)).astype(np.float32)
    torch.manual_seed(0)
    net = CandidateScorer(emb, hidden=8, item_features=feats)
    obs = _obs(m, d)
    with torch.no_grad():
        s, _ = net(obs)
        perm = torch.randperm(7)
        sp, _ = net({**obs, "candidates": obs["candidates"][:, perm], "mask": obs["mask"][:, perm]})
        assert torch.allclose(s[:, perm], sp, atol=1e-6)
        feats2 = feats.copy()
        feats2[:, 0] = 1.0 - feats2[:, 0]
        other = CandidateScorer(emb, hidden=8, item_features=feats2)
        other.load_state_dict(net.state_dict())
        assert not torch.allclose(other(obs)[0], s)
    with pytest.raises(ValueError, match="item_features"):
        CandidateScorer(emb, item_features=feats[:10])


def test_projection_cache_follows_weight_updates() -> None:
    m, d = 40, 8
    emb = np.random.default_rng(0).normal(size=(m, d)).astype(np.float32)
    net = CandidateScorer(emb, hidden=8, item_features=np.zeros((m, 2), np.float32))
    obs = _obs(m, d)
    with torch.no_grad():
        before = net(obs)[0]
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net(obs)[0].sum().backward()
    opt.step()
    with torch.no_grad():
        after = net(obs)[0]
    with torch.enable_grad():
        fresh = net(obs)[0].detach()
    assert not torch.allclose(before, after)
    assert torch.allclose(after, fresh, atol=1e-6)


def test_ppo_spec_carries_item_features_and_rollout_stores_cosines() -> None:
    world = random_world()
    env = RankingSB3VecEnv(8, seed=0, world=world, num_candidates=20, slate_size=3, candidates={"pool_size": 60},
                           action_type="slate", new_items={"slots": 2})
    spec = EnvSpec.from_env(env)
    assert spec.item_features is not None and spec.item_features.shape == (spec.num_items, 2)
    agent = make_agent("ppo", env, seed=0, device="cpu", n_steps=4, batch_size=16, hidden=8)
    assert agent.policy.scorer.num_item_features == 2
    agent.learn(env, 64)
    buf = agent.model.rollout_buffer
    assert COS_KEY in buf.observations  # stored while acting, served to the update epochs
    unit = agent.policy.scorer.item_unit
    o = {k: torch.as_tensor(buf.observations[k]) for k in ("profile", "history", "candidates")}
    cos = cosine_features(unit, o["profile"], o["history"], o["candidates"]).numpy()
    np.testing.assert_allclose(buf.observations[COS_KEY], cos, atol=1e-5)
    obs = env.reset()
    slate = agent.rank(obs, 3)
    assert slate.shape == (8, 3)
    with torch.no_grad():
        logits = masked_logits(agent.policy.scorer(
            {k: torch.as_tensor(v) for k, v in obs.items()})[0], torch.as_tensor(obs["mask"]))
    assert torch.isfinite(logits.gather(1, torch.as_tensor(slate))).all()
