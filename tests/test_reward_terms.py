"""Reward terms: each term's value on a constructed step, the long-tail terms against the ``tail_share``
metric's mask in the running core, and a retention weight without returning users rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.common.config import ConfigError
from recgym.envs import RankingVectorEnv
from recgym.envs.config import EnvConfig, RewardWeights
from recgym.envs.response import Responses, WeightedReward, make_reward
from recgym.experiments.metrics import tail_share

BASE = dict(num_candidates=40, candidates={"pool_size": 120}, new_items={"slots": 3, "per_step": 0.5})


def _step() -> Responses:
    """Two users, K = 3: user 0 clicks positions 0 (tail) and 2 (head); user 1 clicks nothing."""
    return Responses(clicks=torch.tensor([[True, False, True], [False, False, False]]),
                     engagement=torch.tensor([[2.0, 0.0, 0.5], [0.0, 0.0, 0.0]]),
                     satisfaction=torch.tensor([0.3, 0.0]),
                     slate_tail=torch.tensor([[True, True, False], [False, True, True]]))


@pytest.mark.parametrize("term, expected", [
    ("clicks", [2.0, 0.0]),
    ("engagement", [2.5, 0.0]),
    ("satisfaction", [0.3, 0.0]),
    ("tail_exposure", [2 / 3, 2 / 3]),  # share of the slate in the long tail, clicked or not
    ("tail_clicks", [1.0, 0.0]),  # clicks on long-tail items only
])
def test_each_term_on_a_constructed_step(term, expected):
    weights = dict.fromkeys(WeightedReward.TERMS, 0.0) | {term: 1.0}
    r = WeightedReward(**weights)(_step())
    assert r.dtype == torch.float32 and r.shape == (2,)
    torch.testing.assert_close(r, torch.tensor(expected))
    weights[term] = 2.5
    torch.testing.assert_close(WeightedReward(**weights)(_step()), 2.5 * torch.tensor(expected))


def test_terms_add_up_and_every_reward_name_takes_the_tail_weights():
    r = WeightedReward(clicks=1.0, engagement=0.5, satisfaction=2.0, tail_exposure=3.0, tail_clicks=4.0)(_step())
    torch.testing.assert_close(r, torch.tensor([2 + 1.25 + 0.6 + 2 + 4, 2.0]))
    w = RewardWeights(tail_exposure=3.0, tail_clicks=4.0)
    for name, base in (("clicks", [2.0, 0.0]), ("engagement", [2.5, 0.0]), ("satisfaction", [0.3, 0.0]),
                       ("mix", [2 + 0.5 * 2.5 + 0.3, 0.0])):
        torch.testing.assert_close(make_reward(name, w)(_step()), torch.tensor(base) + torch.tensor([6.0, 2.0]))
    assert make_reward("clicks").w == (1.0, 0.0, 0.0, 0.0, 0.0)  # tail terms off by default


def test_tail_terms_need_the_slate_tail():
    bare = Responses(clicks=torch.ones(1, 2, dtype=torch.bool), engagement=torch.ones(1, 2),
                     satisfaction=torch.zeros(1))
    torch.testing.assert_close(WeightedReward()(bare), torch.tensor([2.0]))  # no tail weight: not needed
    with pytest.raises(ValueError, match=r"tail_exposure / tail_clicks terms need responses\.slate_tail"):
        WeightedReward(tail_clicks=1.0)(bare)


def _paired(world, term: str, steps: int = 40):
    """Rewards with and without the term (same seed and actions), the slates, clicks and validity."""
    env = RankingVectorEnv(16, world=world, reward={"weights": {term: 1.0}}, **BASE)
    base = RankingVectorEnv(16, world=world, **BASE)
    env.reset(seed=5)
    base.reset(seed=5)
    rng = np.random.default_rng(1)
    out = []
    for _ in range(steps):
        a = rng.random((16, 40)).astype(np.float32)
        _, r, _, _, info = env.step(a)
        _, r0, _, _, info0 = base.step(a)
        np.testing.assert_array_equal(info["slate_items"], info0["slate_items"])  # the term changes no trajectory
        out.append((r - r0, info["slate_items"], info["clicks"], info["_slate_items"]))
    return out


def test_tail_exposure_reward_is_the_tail_share_metric(small_world):
    """The reward's tail is the metric's (``~catalog.head_mask()``, as the evaluation passes it): per step the
    term is the slate's tail share, and summed over steps it is the impressions' ``tail_share``."""
    tail = ~small_world.catalog.head_mask()
    exposure, total, n_steps = np.zeros(len(tail)), 0.0, 0
    for extra, items, _, valid in _paired(small_world, "tail_exposure"):
        np.testing.assert_allclose(extra[valid], tail[items[valid]].mean(axis=1), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(extra[~valid], 0.0)  # placeholder rows of an autoreset earn nothing
        np.add.at(exposure, items[valid].ravel(), 1.0)
        total += float(extra[valid].sum())
        n_steps += int(valid.sum())
    assert 0.0 < total / n_steps < 1.0  # both head and tail items were shown
    assert total / n_steps == pytest.approx(tail_share(exposure, tail), rel=1e-6)


def test_tail_clicks_reward_counts_clicks_on_tail_items(small_world):
    tail = ~small_world.catalog.head_mask()
    clicked = 0.0
    for extra, items, clicks, valid in _paired(small_world, "tail_clicks"):
        expected = (clicks & tail[items]).sum(axis=1).astype(np.float32)
        np.testing.assert_allclose(extra[valid], expected[valid], rtol=1e-6, atol=1e-6)
        clicked += float(expected[valid].sum())
    assert clicked > 0  # the check saw tail clicks


def test_retention_weight_needs_returning_users():
    with pytest.raises(ConfigError, match=r"env\.reward\.weights\.retention: expected 0 with one session .*"
                                          r"sessions\.count=1.*received retention=5\.0"):
        EnvConfig(reward={"weights": {"retention": 5.0}})
    with pytest.raises(ConfigError, match=r"sessions\.count=1"):
        EnvConfig(sessions={"count": 3}, reward={"weights": {"retention": 5.0}}).merged({"sessions": 1})
    assert EnvConfig(sessions=3, reward={"weights": {"retention": 5.0}}).reward.weights.retention == 5.0
    with pytest.raises(ConfigError, match=r"env\.reward\.weights\.tail_exposur: unknown key.*'tail_exposure'"):
        EnvConfig(reward={"weights": {"tail_exposur": 1.0}})


def test_lookahead_expected_reward_includes_the_tail_terms(small_world):
    """The lookahead oracle plans on expected rewards: the tail terms enter as the slate's tail share and the
    click probabilities on tail items."""
    from recgym.agents.lookahead import _ExpectedReward
    from recgym.envs.core import RankingCore

    cfg = EnvConfig(**BASE)
    plain = _ExpectedReward(RankingCore(small_world, cfg))
    tailed = _ExpectedReward(RankingCore(small_world, cfg.merged({"reward": {"weights": {"tail_exposure": 2.0,
                                                                                           "tail_clicks": 3.0}}})))
    core = RankingCore(small_world, cfg)
    state = core.init_state(batch_size=6, seed=2)
    slate = torch.arange(10).repeat(6, 1)
    _, _, _, info = core.step(state, slate)
    tail = (~info["item_head"]).float()
    expected = plain(info) + 2.0 * tail.mean(dim=1) + 3.0 * (info["click_probs"] * tail).sum(dim=1)
    torch.testing.assert_close(tailed(info), expected)
