"""The analytic world: a small world whose optimal slate and return are known in closed form.

Dynamics are switched off (:func:`analytic_config`): no interest drift, no fatigue, a budget that never
runs out, every item a candidate (``N = M``) and nothing masked, so each step is the same one-step problem.
For every choice model recgym ships, the expected number of clicks of a slate increases with each slot's
logit and (PBM) is largest with logits sorted by position, so the optimal slate is the top-K items by the
hidden logit, sorted descending, and the optimal expected return is ``max_steps * E[clicks | top-K]``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from recgym.common.config import Seed, StrictModel
from recgym.envs.choice import make_choice_model
from recgym.envs.config import EnvConfig
from recgym.envs.world import Catalog, Population, PreferenceParams, World

__all__ = ["AnalyticWorldConfig", "make_analytic_world", "analytic_config", "analytic_optimal_return", "analytic_logits"]


class AnalyticWorldConfig(StrictModel):
    """``world_config`` of the analytic world: the arguments of :func:`make_analytic_world`."""

    config_path: ClassVar[str] = "world_config"
    n_items: int = Field(20, ge=2, le=100_000)
    n_users: int = Field(4, ge=1, le=1_000_000)
    seed: Seed = 0


def make_analytic_world(n_items: int = 20, n_users: int = 4, seed: int = 0) -> World:
    """``n_users`` user types, each liking a different block of items. Observable vectors: 16-d.

    Item embedding = normalised [latent (8) | appeal one-hot-ish features]; profile embedding = normalised
    [latent | zeros], so a policy can learn the hidden logit from what it observes.
    """
    rng = np.random.default_rng(seed)
    k, d = 8, 16
    item_latent = rng.normal(size=(n_items, k)).astype(np.float32)
    item_latent /= np.linalg.norm(item_latent, axis=1, keepdims=True)
    user_latent = rng.normal(size=(n_users, k)).astype(np.float32)
    user_latent /= np.linalg.norm(user_latent, axis=1, keepdims=True)
    appeal = rng.normal(0.0, 0.5, n_items).astype(np.float32)
    item_emb = np.concatenate([item_latent, np.tile(appeal[:, None], (1, d - k)) / np.sqrt(d - k)], axis=1)
    item_emb = (item_emb / np.linalg.norm(item_emb, axis=1, keepdims=True)).astype(np.float32)
    user_emb = np.concatenate([user_latent, np.zeros((n_users, d - k), np.float32)], axis=1)
    names = tuple(f"g{g}" for g in range(4))
    catalog = Catalog(
        item_ids=np.arange(n_items), titles=[f"item {i}" for i in range(n_items)],
        texts=[f"analytic item {i}" for i in range(n_items)], embeddings=item_emb,
        genres=(np.arange(n_items) % len(names)).astype(np.int64), genre_names=names,
        popularity=np.full(n_items, 1.0 / n_items, np.float32), quality=np.ones(n_items, np.float32),
        appeal=appeal, latent=item_latent, is_new=np.zeros(n_items, bool),
    )
    population = Population(
        user_ids=np.arange(n_users), texts=[f"analytic user {u}" for u in range(n_users)],
        embeddings=user_emb.astype(np.float32), latent=user_latent, bias=np.zeros(n_users, np.float32),
        history=np.full((n_users, 1), -1, np.int64), cold=np.ones(n_users, bool), test=np.zeros(n_users, bool),
    )
    pref = PreferenceParams(affinity_scale=3.0, popularity_weight=0.0, appeal_weight=1.0, bias=-2.0)
    return World(name="analytic", catalog=catalog, population=population, preference=pref, source={"generator": "analytic"})


def analytic_config(world: World, *, slate_size: int = 3, max_steps: int = 20, **overrides: object) -> EnvConfig:
    """An :class:`EnvConfig` with the dynamics off and every item a candidate."""
    m = world.catalog.num_items
    base = dict(
        num_candidates=m, slate_size=slate_size, max_steps=max_steps, cohort="all",
        new_items={"per_step": 0.0, "slots": 0},
        candidates={"pool_size": m, "mask_window": 0, "mix": {"nearest": 0.0, "popular": 0.0, "random": 1.0}},
        dynamics={"interest_drift": 0.0, "item_fatigue_weight": 0.0, "genre_fatigue_weight": 0.0,
                  "exposure_fatigue": 0.0, "step_cost": 0.0, "budget_gain": 0.0},
    )
    return EnvConfig.model_validate(base).merged(overrides)


def analytic_logits(world: World) -> np.ndarray:
    """``(U, M)`` float32 hidden click logits (state-independent in the analytic world)."""
    c, p, pref = world.catalog, world.population, world.preference
    static = pref.popularity_weight * np.log(c.popularity * c.num_items) + pref.appeal_weight * c.appeal + pref.bias
    return (pref.affinity_scale * p.latent @ c.latent.T + static + p.bias[:, None]).astype(np.float32)


def analytic_optimal_return(world: World, config: EnvConfig) -> np.ndarray:
    """``(U,)`` optimal expected episode return (reward ``clicks``) of each user: top-K slate every step."""
    if config.reward.name != "clicks":
        raise ValueError(f"analytic_optimal_return: expected reward 'clicks', received {config.reward.name!r}")
    logits = torch.as_tensor(analytic_logits(world))
    top = torch.sort(logits, dim=1, descending=True).values[:, : config.slate_size]
    c = config.choice
    choice = make_choice_model(c.model, no_click_logit=c.no_click_logit, pbm_eta=c.pbm_eta)
    return (choice.click_probs(top).sum(1) * config.max_steps).numpy()
