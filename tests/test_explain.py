"""Explanations: the attribution names the planted history item; the ledger reproduces the env's history."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_world

from recgym.agents import RandomRecommender, make_agent
from recgym.agents.base import EnvSpec
from recgym.agents.baselines import LMSimilarityRecommender
from recgym.agents.explain import ExplainContext, HistoryLedger, explain_agent, history_from_catalogue
from recgym.agents.supervised import CTRRecommender
from recgym.envs.vector import RankingVectorEnv
from recgym.experiments.explain import profile_aspects

D, M = 64, 40
PLANTED, CAND = 7, 39  # item 39 is a near copy of item 7 (the planted history item)


def _case(seed: int = 0) -> tuple[EnvSpec, dict[str, np.ndarray], ExplainContext]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(M, D)).astype(np.float32)
    emb[CAND] = emb[PLANTED] + 0.2 * rng.normal(size=D).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    spec = EnvSpec(emb, num_candidates=5, slate_size=2, action_type="slate",
                   item_features=np.zeros((M, 2), np.float32))
    hist = np.array([[2, 11, PLANTED, 20, -1]])
    w = np.array([[0.25, 0.25, 0.25, 0.25, 0.0]])
    h = (emb[hist[0, :4]] * 0.25).sum(0)
    profile = rng.normal(size=D).astype(np.float32)
    obs = {"profile": (profile / np.linalg.norm(profile))[None], "history": h[None].astype(np.float32),
           "context": np.zeros((1, 4), np.float32), "candidates": np.array([[30, CAND, 31, 32, 33]]),
           "mask": np.ones((1, 5), np.int8)}
    names = [f"title {i}" for i in range(M)]
    return spec, obs, ExplainContext(hist, w, item_names=names)


def test_lm_similarity_attribution_names_the_planted_history_item() -> None:
    spec, obs, ctx = _case()
    agent = LMSimilarityRecommender(spec)
    slate = np.array([[1, 0]])
    exp = agent.explain(obs, slate, ctx, top=None)[0]
    first = exp.items[0]
    assert first.item == CAND and exp.history_source == "ledger"
    hist = [e for e in first.evidence if e.kind == "history"]
    assert hist[0].item == PLANTED and hist[0].name == f"title {PLANTED} [{PLANTED}]" and not hist[0].approximate
    assert sum(e.weight for e in first.evidence) == pytest.approx(first.score, abs=1e-5)  # exact decomposition
    assert first.score == pytest.approx(agent.score(obs)[0, 1], abs=1e-5)


def test_scorer_gradient_x_input_names_the_planted_history_item() -> None:
    spec, obs, ctx = _case(1)
    agent = CTRRecommender(spec)
    net = agent.net
    with torch.no_grad():  # a scorer whose score is relu(cos(history, item)): the history term must win
        for p in net.parameters():
            p.zero_()
        net.inter.weight[0, 1] = 1.0
        net.out.weight[0, 0] = 1.0
    exp = agent.explain(obs, np.array([[1, 0]]), ctx)[0]
    assert exp.method.startswith("gradient x input")
    top = exp.items[0].evidence[0]
    assert top.kind == "history" and top.item == PLANTED
    # cos is scale-invariant, so grad . h = 0: the other history items get the (negative) rest - they pull
    # the history away from the item; none of them pushes the score up as the planted item does.
    others = [e.weight for e in exp.items[0].evidence if e.kind == "history" and e.item != PLANTED]
    assert top.weight > 0 and max(others) < 0.2 * top.weight


def test_without_a_ledger_history_items_are_approximate_catalogue_neighbours() -> None:
    spec, obs, ctx = _case()
    agent = LMSimilarityRecommender(spec)
    exp = agent.explain(obs, np.array([[1, 0]]), ExplainContext(item_names=ctx.item_names))[0]
    assert exp.history_source.startswith("catalogue (approximate")
    hist = [e for e in exp.items[0].evidence if e.kind == "history"]
    assert hist and all(e.approximate for e in hist)
    ids, w, resid = history_from_catalogue(obs["history"][0], spec.item_embeddings)
    assert resid < 1e-3 and {2, 11, PLANTED, 20} <= set(ids.tolist())  # h is exactly a sum of 4 items
    # A ledger that does not add up to the observed history is not trusted.
    bad = ExplainContext(np.array([[1, 2]]), np.array([[0.5, 0.5]]))
    assert agent.explain(obs, np.array([[1, 0]]), bad)[0].history_source.startswith("catalogue")


def test_ledger_reproduces_the_env_history_vector() -> None:
    world = random_world(n_items=120, n_users=20, dim=16, n_new=10)
    env = RankingVectorEnv(4, world=world, num_candidates=20, slate_size=4, candidates={"pool_size": 40}, max_steps=30,
                           new_items={"slots": 2}, action_type="slate", dynamics={"initial_budget": 100.0})
    users = np.array([0, 5, 11, 17])  # 0 and 5 are cold
    ledger = HistoryLedger(world.population.history, env.config.observation.history_ema)
    ledger.start(users)
    obs, _ = env.reset(seed=0, options={"user_indices": users})
    agent = make_agent("lm_similarity", env)
    emb = world.catalog.embeddings.astype(np.float64)
    clicks = 0
    for _ in range(12):
        ids, w = ledger.arrays()
        recon = np.where(ids[..., None] >= 0, emb[np.maximum(ids, 0)] * w[..., None], 0).sum(1)
        assert np.abs(recon - obs["history"]).max() < 1e-4
        slate = agent.rank(obs, 4)
        obs, _, term, trunc, info = env.step(slate)
        assert not (term | trunc).any()
        ledger.observe(info["slate_items"], info["clicks"])
        clicks += int(info["clicks"].sum())
    assert clicks > 0  # the check covered EMA updates, not only the prior history


def test_agents_without_attribution_say_so() -> None:
    spec, obs, _ = _case()
    with pytest.raises(NotImplementedError, match="supported: lm_similarity, ppo, dqn, ctr"):
        explain_agent(RandomRecommender(spec), obs, np.array([[0, 1]]))


def test_profile_aspects_split_fields_and_sentences() -> None:
    text = ("User age: 39; gender: female. Likes manga adaptations and food and cuisine. Dislikes history. "
            "Recently watched: Dr. Strange; Zoe's Kitchen.")
    asp = dict(profile_aspects(text))
    assert set(asp) == {"age: 39", "gender: female", "Likes manga adaptations and food and cuisine.",
                        "Dislikes history.", "Recently watched: Dr. Strange; Zoe's Kitchen."}
    assert asp["age: 39"].startswith("User gender: female. Likes manga")
    assert asp["Dislikes history."] == ("User age: 39; gender: female. Likes manga adaptations and food and "
                                        "cuisine. Recently watched: Dr. Strange; Zoe's Kitchen.")
    assert profile_aspects("Likes jazz.") == [("Likes jazz.", "A user with no stated profile.")]
