"""Fairness of exposure: closed-form values on constructed exposure tables, the re-rankers, the reward term."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import random_world

from recgym.agents import make_agent
from recgym.agents.rerank import FairReranker, RerankConfig, fair_min_protected
from recgym.common.config import ConfigError
from recgym.envs.config import EnvConfig
from recgym.envs.fairness import FairExposureReward, FairRewardConfig, protected_items
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.envs.vector import RankingVectorEnv
from recgym.experiments.config import load_config
from recgym.experiments.evaluation import cohort_users, evaluate_cell
from recgym.experiments.fairness import (
    FairnessTracker,
    Grouping,
    equity_of_attention,
    exposure_gaps,
    item_groupings,
    parse_demographics,
    position_weights,
    total_variation,
    user_group_metrics,
    user_groupings,
)

V1 = 1 / math.log2(3)  # attention of the second position


def test_position_weights_and_total_variation() -> None:
    assert np.allclose(position_weights(3), [1.0, V1, 0.5])
    assert total_variation([1, 1], [1, 0]) == pytest.approx(0.5)
    assert total_variation([2, 0, 2], [1, 0, 1]) == 0.0
    assert math.isnan(total_variation([0, 0], [1, 1]))
    with pytest.raises(ValueError, match="same length"):
        total_variation([1, 2], [1, 2, 3])


def test_tracker_closed_form_exposure_merit_and_equity_of_attention() -> None:
    # Two rankings over 4 items; K = 2, N = 3 (nan = masked candidate).
    slates = np.array([[0, 1], [2, 0]])
    cands = np.array([[0, 1, 2], [0, 2, 3]])
    rel = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, np.nan]])
    t = FairnessTracker(4)
    t.update(slates, cands, rel)
    assert np.allclose(t.exposure, [1 + V1, V1, 1, 0])
    assert np.allclose(t.merit, [0.6, 0.3, 0.8, 0])
    assert np.allclose(t.opportunities, [2, 1, 2, 0])
    share = np.array([1, V1]) / (1 + V1)
    attention = np.array([share[0] + share[1], share[1], share[0], 0])
    relevance = np.array([0.5 + 0.1 / 0.7, 0.3, 0.2 + 0.6 / 0.7, 0])
    assert np.allclose(t.attention, attention) and np.allclose(t.relevance, relevance)
    groups = {"g": Grouping(np.array([0, 0, 1, -1]), ("a", "b"))}
    scalars, per = t.result(groups)
    assert scalars["eoa_unfairness"] == pytest.approx(np.abs(attention - relevance).sum() / 2)
    exp_a, exp_b = 1 + 2 * V1, 1.0
    mer_a, mer_b = 0.9, 0.8
    tv = 0.5 * (abs(exp_a / (exp_a + exp_b) - mer_a / 1.7) + abs(exp_b / (exp_a + exp_b) - mer_b / 1.7))
    assert scalars["treatment_gap_g"] == pytest.approx(tv)
    assert scalars["parity_gap_g"] == pytest.approx(0.5 * (abs(exp_a / (exp_a + exp_b) - 3 / 5)
                                                           + abs(exp_b / (exp_a + exp_b) - 2 / 5)))
    assert per["items:g=a"]["exposure_merit_ratio"] == pytest.approx((exp_a / (exp_a + exp_b)) / (mer_a / 1.7))
    assert per["items:g=b"]["n_items"] == 1


def test_proportional_exposure_is_fair_and_all_on_one_item_is_not() -> None:
    # Exposure exactly proportional to merit: treatment gap 0; equity of attention reached when each ranking
    # gives all attention to its only relevant candidate.
    e, m = np.array([2.0, 1.0, 0.0]), np.array([4.0, 2.0, 0.0])
    s, per = exposure_gaps(e, m, np.ones(3), Grouping(np.arange(3), ("x", "y", "z")))
    assert s["treatment_gap"] == 0.0 and per["x"]["exposure_merit_ratio"] == pytest.approx(1.0)
    t = FairnessTracker(3)
    t.update(np.array([[0]]), np.array([[0, 1]]), np.array([[1.0, 0.0]]))
    assert t.result({})[0]["eoa_unfairness"] == 0.0
    t.update(np.array([[1]]), np.array([[0, 1]]), np.array([[1.0, 0.0]]))  # all attention on a zero-merit item
    assert t.result({})[0]["eoa_unfairness"] == pytest.approx((0 + 2) / 2)
    assert equity_of_attention([0, 0], [0, 0], 0) != equity_of_attention([0, 0], [0, 0], 0)  # nan


def test_tracker_rejects_bad_input_and_honours_the_row_mask() -> None:
    t = FairnessTracker(5)
    with pytest.raises(ValueError, match="among the row's unmasked candidates"):
        t.update(np.array([[3]]), np.array([[0, 1]]), np.array([[0.2, 0.1]]))
    with pytest.raises(ValueError, match="among the row's unmasked candidates"):  # shown but masked (nan)
        t.update(np.array([[1]]), np.array([[0, 1]]), np.array([[0.2, np.nan]]))
    with pytest.raises(ValueError, match="item ids in"):
        t.update(np.array([[7]]), np.array([[7, 1]]), np.array([[0.2, 0.1]]))
    t.update(np.array([[0], [1]]), np.array([[0, 1], [0, 1]]), np.array([[0.5, 0.5], [0.5, 0.5]]),
             mask=np.array([True, False]))
    assert t.n_rankings == 1 and t.exposure[1] == 0
    with pytest.raises(ValueError, match="groups of length"):
        t.result({"bad": Grouping(np.zeros(3, dtype=np.int64), ("a",))})


def test_item_groupings_deciles_exclude_new_items() -> None:
    pop = np.array([0.05, 0.3, 0.1, 0.25, 0.2, 0.1])
    cat = SimpleNamespace(popularity=pop, is_new=np.array([0, 0, 0, 0, 0, 1], bool),
                          genres=np.array([0, 1, 1, 0, 2, 2]), genre_names=("a", "b", "c"))
    g = item_groupings(cat, n_bins=5)
    assert g["popularity"].groups.tolist() == [0, 4, 1, 3, 2, -1]
    assert g["new"].groups.tolist() == [0, 0, 0, 0, 0, 1] and g["genre"].labels == ("a", "b", "c")


def test_demographics_parsed_and_grouped() -> None:
    assert parse_demographics("User age: 34; gender: female. Likes x.") == {"age": "34", "gender": "female"}
    assert parse_demographics("Likes drama. User age: 3.") == {}
    assert parse_demographics("A user with no stated profile.") == {}
    ages = [18, 22, 25, 31, 40, 44, 52, 60, 67, 70]
    jobs = ["a", "a", "a", "b", "b", "c", "d", "e", "f", "g"]
    texts = [f"User age: {a}; id: u{i}; job: {j}." for i, (a, j) in enumerate(zip(ages, jobs, strict=True))]
    texts[-1] = "Likes music."  # no demographics: in no group
    pop = SimpleNamespace(texts=texts, cold=np.array([1, 0] * 5, bool))
    g = user_groupings(pop, max_levels=4, max_distinct=8, n_quantiles=2)
    assert set(g) == {"cold", "age", "job"}  # 'id' has 9 distinct non-numeric values > max_distinct: skipped
    assert g["age"].groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, -1]  # cut at 40, the median of 9 known ages
    assert g["age"].labels == ("[18, 40)", "[40, 67]")
    assert g["job"].labels == ("a", "b", "c", "other") and g["job"].groups.tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 3, -1]
    assert g["cold"].labels == ("warm", "cold") and g["cold"].groups.tolist() == [1, 0] * 5


def test_user_group_metrics_closed_form() -> None:
    grouping = {"cold": Grouping(np.array([0, 1, 1]), ("warm", "cold"))}
    users = np.array([0, 0, 1, 2])  # user 0 (warm) has two sessions
    clicks, imps = np.array([2, 4, 1, 0]), np.array([10, 10, 10, 10])
    sat, left, ret = np.array([1.0, 3.0, -1.0, 0.0]), np.array([False, True, True, True]), np.array([2, 4, 1, 0.0])
    scalars, per = user_group_metrics(users, clicks, imps, sat, left, ret, grouping, min_sessions=1)
    assert per["users:cold=warm"] == {"ctr": 0.3, "satisfaction": 2.0, "retention": 0.5, "return": 3.0, "n_sessions": 2}
    assert per["users:cold=cold"]["ctr"] == pytest.approx(0.05) and per["users:cold=cold"]["retention"] == 0.0
    assert scalars["user_ctr_gap_cold"] == pytest.approx(0.25)
    assert scalars["user_satisfaction_gap_cold"] == pytest.approx(2.5)
    assert scalars["user_retention_gap_cold"] == pytest.approx(0.5)
    assert math.isnan(user_group_metrics(users, clicks, imps, sat, left, ret, grouping, min_sessions=3)[0]
                      ["user_ctr_gap_cold"])  # the cold group has too few sessions: no gap claimed


# ------------------------------------------------------------------------------------------- re-rankers
WORLD = random_world(n_items=120, n_users=20, dim=16, n_new=10)
ENV_KW = {"num_candidates": 20, "slate_size": 4, "candidates": {"pool_size": 40}, "max_steps": 8, "new_items": {"slots": 2},
          "action_type": "slate"}


def test_fair_min_protected_table() -> None:
    # Binomial(n, 0.5) 10 %-quantiles: the FA*IR table of Zehlike et al. for p = 0.5, alpha = 0.1.
    assert fair_min_protected(10, 0.5, 0.1).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    assert fair_min_protected(5, 0.0, 0.1).tolist() == [0] * 5


def test_exposure_reranker_lambda_zero_is_base_and_exposure_spreads() -> None:
    venv = RankingVectorEnv(6, world=WORLD, **ENV_KW)
    obs, _ = venv.reset(seed=0)
    base = make_agent("lm_similarity", venv)
    same = FairReranker(base, RerankConfig(lam=0.0))
    assert np.array_equal(same.rank(obs, 4), base.rank(obs, 4))
    fair = FairReranker(base, RerankConfig(lam=2.0))
    assert np.array_equal(fair.rank(obs, 4), base.rank(obs, 4))  # no exposure yet: the base ranking
    # Exposure learnt from feedback: the base's top items are penalised afterwards.
    slate = fair.rank(obs, 4)
    items = np.take_along_axis(obs["candidates"], slate, axis=1)
    fair.update(obs, slate, {"slate_items": items, "clicks": np.zeros_like(items, bool),
                             "_clicks": np.array([True] * 5 + [False])})
    assert fair.exposure.sum() == pytest.approx(5 * position_weights(4).sum())
    assert fair.exposure[items[5]].sum() == 0 or set(items[5]) & set(items[:5].ravel())
    again = np.take_along_axis(obs["candidates"], fair.rank(obs, 4), axis=1)
    assert not np.array_equal(again, items)
    m = obs["mask"].astype(bool)
    assert all(m[r][fair.rank(obs, 4)[r]].all() for r in range(6))


def test_fair_reranker_meets_the_prefix_constraint() -> None:
    venv = RankingVectorEnv(16, world=WORLD, **{**ENV_KW, "slate_size": 6})
    obs, _ = venv.reset(seed=1)
    base = make_agent("popularity", venv)
    base.clicks[:] = np.asarray(venv.item_features)[:, 0] * 100  # favour the head strongly
    rr = FairReranker(base, RerankConfig(method="fair", protected="tail", p=0.7, alpha=0.1))
    slate = rr.rank(obs, 6)
    prot = rr.protected[np.take_along_axis(obs["candidates"], slate, axis=1)]
    need = fair_min_protected(6, 0.7, 0.1)
    avail = (rr.protected[obs["candidates"]] & obs["mask"].astype(bool)).sum(1)
    for row in range(16):
        assert (np.cumsum(prot[row]) >= np.minimum(need, avail[row])).all()
        assert len(set(slate[row])) == 6 and obs["mask"][row][slate[row]].all()
    base_slate = base.rank(obs, 6)
    assert prot.sum() > rr.protected[np.take_along_axis(obs["candidates"], base_slate, axis=1)].sum()
    p0 = FairReranker(base, RerankConfig(method="fair", p=0.0))
    assert np.array_equal(p0.rank(obs, 6), base_slate)


def test_reward_fairness_term_closed_form() -> None:
    cfg = EnvConfig(**ENV_KW)
    plain = RankingSB3VecEnv(4, seed=3, world=WORLD, config=cfg)
    shaped = FairExposureReward(RankingSB3VecEnv(4, seed=3, world=WORLD, config=cfg), FairRewardConfig(weight=2.0))
    o1, o2 = plain.reset(), shaped.reset()
    assert np.array_equal(o1["candidates"], o2["candidates"])
    slate = np.tile(np.arange(4), (4, 1))
    r1, r2 = plain.step(slate)[1], shaped.step(slate)[1]
    items = o1["candidates"][:, :4]
    prot = protected_items(plain.item_features, "tail")
    v = position_weights(4)
    expected = 2.0 * ((prot[items] * v).sum(1) / v.sum() - prot.mean())
    assert np.allclose(r2 - r1, expected, atol=1e-5)
    with pytest.raises(TypeError, match="integer slate"):
        shaped.step(np.zeros((4, 20), np.float32))


def test_rerank_and_reward_fairness_in_configs() -> None:
    base = {"name": "x", "agents": [{"name": "lm_similarity", "rerank": {"method": "exposure", "lamb": 1}}]}
    with pytest.raises(ConfigError, match=r"agents\[0\]\.rerank\.lamb: unknown key.*did you mean 'lam'"):
        load_config(raw=base)
    with pytest.raises(ConfigError, match="reward_fairness.*RL agents only"):
        load_config(raw={"name": "x", "agents": [{"name": "popularity", "reward_fairness": {"weight": 1}}]})
    cfg = load_config("long_tail.yaml")
    assert sum(a.rerank is not None for a in cfg.agents) >= 5
    assert any(a.reward_fairness is not None for a in cfg.agents)


def test_evaluation_reports_fairness_segments() -> None:
    cfg = EnvConfig(**{**ENV_KW, "info_candidate_relevance": True})
    users = cohort_users(WORLD, "all", None, 0)  # 20 users, 5 cold: both groups reach min_sessions
    res = evaluate_cell(lambda env: FairReranker(make_agent("lm_similarity", env), RerankConfig(lam=1.0)),
                        WORLD, cfg, users, 0)
    m = res.metrics
    assert 0 <= m["all"]["eoa_unfairness"] <= 2
    for g in ("popularity", "genre", "new"):
        assert 0 <= m["all"][f"treatment_gap_{g}"] <= 1
    assert "items:popularity=d0" in m and "users:cold=warm" in m
    assert math.isfinite(m["all"]["user_ctr_gap_cold"])
    assert res.arrays["fair_exposure"].shape == (WORLD.catalog.num_items,)
    total = sum(m[f"items:genre={g}"]["exposure_share"] for g in WORLD.catalog.genre_names
                if math.isfinite(m[f"items:genre={g}"]["exposure_share"]))
    assert total == pytest.approx(1.0)
