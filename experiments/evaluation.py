"""The evaluation protocol: every agent on the same held-out users, seeds and injected items.

One *cell* is (agent, seed). For a seed ``s`` the users are drawn once from the cohort by
:func:`cohort_users` (independent of the agent), the vector env is reset with ``seed`` derived from ``s``
and ``options={"user_indices": users}``, and every user plays ``episodes_per_user`` full sessions (until
``terminated`` or ``truncated``). New items are released on the env's own clock (``t_global``), reset with
the env, so every agent sees the same release schedule. Online learners (``learns_online``) keep updating
from the feedback during evaluation, as they would in deployment; nothing else learns.

Metrics per segment (``all``, ``warm_users``, ``cold_users``; item segments ``head_items``, ``tail_items``,
``new_items``) come from :class:`~recgym.experiments.metrics.ExposureTracker`, plus per-session figures
computed here: ``return``, ``session_length``, ``satisfaction`` and ``engagement`` (sums over a session).
NDCG@K uses the hidden relevance ``sigmoid(true logit)`` of every unmasked candidate as the gain; the
tracker's ``expected_ctr`` is therefore renamed ``mean_relevance`` (mean hidden relevance of shown items).

Fairness of exposure (:mod:`recgym.experiments.fairness`): a :class:`FairnessTracker` adds up
position-weighted exposure against the candidates' hidden relevance; ``all`` gains ``eoa_unfairness``,
``treatment_gap_*``, ``parity_gap_*`` and the user-side ``user_*_gap_*``; per-group segments
``items:<grouping>=<group>`` and ``users:<attribute>=<group>`` hold the group figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recgym.envs import RankingVectorEnv
from recgym.envs.config import EnvConfig
from recgym.envs.world import World
from recgym.experiments.fairness import FairnessTracker, item_groupings, user_group_metrics, user_groupings
from recgym.experiments.metrics import ExposureTracker

__all__ = ["CellResult", "cohort_users", "evaluate_cell", "quick_return", "SESSION_METRICS"]

SESSION_METRICS = ("return", "session_length", "satisfaction", "engagement")
_SESSION_EXTRA = ("clicks", "impressions", "left")  # per-session sums kept for user-side fairness
USER_SEGMENTS = ("all", "warm_users", "cold_users")


def cohort_users(world: World, cohort: str, n: int | None, seed: int) -> np.ndarray:
    """``(n,)`` int64 user indices of ``cohort`` for ``seed`` (the same for every agent).

    ``test``: held-out users (warm and cold); ``cold`` / ``warm``: held-out users of that kind; ``all``:
    every user. ``n=None`` takes the whole cohort (in index order); else a seeded sample without
    replacement (with replacement if the cohort is smaller than ``n``).
    """
    p = world.population
    masks = {"test": p.test, "cold": p.test & p.cold, "warm": p.test & ~p.cold,
             "all": np.ones(p.num_users, dtype=bool)}
    if cohort not in masks:
        raise ValueError(f"evaluation.cohort: expected one of {sorted(masks)}, received {cohort!r}")
    pool = np.flatnonzero(masks[cohort]).astype(np.int64)
    if pool.size == 0:
        raise ValueError(f"evaluation.cohort: the world {world.name!r} has no {cohort!r} users")
    if n is None:
        return pool
    rng = np.random.default_rng([seed, 7_919])
    return np.sort(rng.choice(pool, size=n, replace=n > pool.size)).astype(np.int64)


@dataclass
class CellResult:
    """Scalar metrics per segment plus the arrays the plots need."""

    metrics: dict[str, dict[str, float]]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _env(world: World, cfg: EnvConfig, n: int, device: str) -> RankingVectorEnv:
    return RankingVectorEnv(n, world=world, config=cfg, device=device)


def _run_episodes(agent: Any, env: RankingVectorEnv, users: np.ndarray, seed: int, episodes: int,
                  tracker: ExposureTracker | None, online: bool,
                  fairness: FairnessTracker | None = None) -> dict[str, np.ndarray]:
    """Play ``episodes`` sessions of each user; return per-session sums ``(episodes * B,)``, users and cold
    flags."""
    k = env.config.slate_size
    cold_all = np.asarray(env.world.population.cold)
    out: dict[str, list[np.ndarray]] = {key: [] for key in (*SESSION_METRICS, *_SESSION_EXTRA, "cold", "user")}
    for ep in range(episodes):
        obs, _ = env.reset(seed=int(seed) * 1000 + ep, options={"user_indices": users})
        b = len(users)
        active = np.ones(b, dtype=bool)
        sums = {key: np.zeros(b) for key in (*SESSION_METRICS, *_SESSION_EXTRA)}
        while active.any():
            t = env.t_global
            slate = agent.rank(obs, k)
            next_obs, reward, term, trunc, info = env.step(slate)
            if online:
                feedback = dict(info)
                feedback["_clicks"] = active.copy()
                agent.update(obs, slate, feedback)
            if tracker is not None:
                cand = np.where(obs["mask"].astype(bool), info["candidate_click_probs"], np.nan)
                rel = np.take_along_axis(cand, slate, axis=1)
                tracker.update(t, info["slate_items"], info["clicks"], rel, info["user_cold"],
                               user_step=np.maximum(info["episode_step"] - 1, 0), candidate_relevance=cand,
                               mask=active)
                if fairness is not None:
                    fairness.update(info["slate_items"], obs["candidates"], cand, mask=active)
            a = active
            sums["return"][a] += reward[a]
            sums["session_length"][a] += 1
            sums["satisfaction"][a] += np.asarray(info["satisfaction"], dtype=np.float64)[a]
            sums["engagement"][a] += np.asarray(info["engagement"], dtype=np.float64).sum(axis=1)[a]
            sums["clicks"][a] += np.asarray(info["clicks"], dtype=np.float64).sum(axis=1)[a]
            sums["impressions"][a] += k
            sums["left"][a] = np.asarray(term, dtype=np.float64)[a]
            active = active & ~(term | trunc)
            obs = next_obs
        for key in (*SESSION_METRICS, *_SESSION_EXTRA):
            out[key].append(sums[key])
        out["cold"].append(cold_all[users])
        out["user"].append(np.asarray(users, dtype=np.int64))
    return {key: np.concatenate(v) for key, v in out.items()}


def evaluate_cell(make_agent: Callable[[RankingVectorEnv], Any], world: World, env_cfg: EnvConfig,
                  users: np.ndarray, seed: int, episodes: int = 1, device: str = "cpu") -> CellResult:
    """Evaluate the agent built by ``make_agent(env)`` on ``users`` with ``seed``; see the module docstring.

    ``make_agent`` receives the evaluation env (the oracle reads its live state); it returns a ready agent.
    """
    env = _env(world, env_cfg, len(users), device)
    agent = make_agent(env)
    cat = world.catalog
    new_ids = np.flatnonzero(cat.is_new).astype(np.int64)
    release = env.core.params.item_release.cpu().numpy()
    released_ever = release[new_ids] < np.iinfo(np.int64).max // 8
    new_ids = new_ids[released_ever]
    tracker = ExposureTracker(
        cat.num_items, tail_mask=~cat.head_mask(), popularity=np.clip(cat.popularity, 1e-12, 1.0),
        new_item_ids=new_ids if len(new_ids) else None,
        new_item_release_steps=release[new_ids] if len(new_ids) else None,
        item_embeddings=cat.embeddings, n_user_steps=env_cfg.max_steps, ndcg_k=env_cfg.slate_size,
    )
    fair = FairnessTracker(cat.num_items)
    sess = _run_episodes(agent, env, users, seed, episodes, tracker, bool(getattr(agent, "learns_online", False)),
                         fair)
    metrics = tracker.result()
    item_fair, item_groups = fair.result(item_groupings(cat))
    user_fair, user_groups = user_group_metrics(
        sess["user"], sess["clicks"], sess["impressions"], sess["satisfaction"], sess["left"] > 0, sess["return"],
        user_groupings(world.population))
    metrics["all"].update(item_fair, **user_fair)
    metrics.update(item_groups)
    metrics.update(user_groups)
    for seg, rows in (("all", slice(None)), ("warm_users", ~sess["cold"]), ("cold_users", sess["cold"])):
        m = metrics.setdefault(seg, {})
        if "expected_ctr" in m:
            m["mean_relevance"] = m.pop("expected_ctr")
        for key in SESSION_METRICS:
            vals = sess[key][rows]
            m[key] = float(vals.mean()) if vals.size else float("nan")
        m["n_sessions"] = float(np.size(sess["return"][rows]))
    curves = tracker.new_item_curves() if len(new_ids) else None
    arrays = {
        "exposure": tracker.exposure_counts, "clicks": tracker.click_counts,
        "ctr_by_decile": tracker.ctr_by_popularity_decile().ctr,
        "cold_user_ctr": tracker.user_ctr_curve("cold_users"), "warm_user_ctr": tracker.user_ctr_curve("warm_users"),
        "fair_exposure": fair.exposure, "fair_merit": fair.merit,
    }
    if curves is not None:
        arrays.update(time_to_first_exposure=curves.time_to_first_exposure,
                      time_to_first_click=curves.time_to_first_click,
                      new_item_share_steps=curves.steps, new_item_share=curves.exposure_share)
    return CellResult(metrics, {k: np.asarray(v) for k, v in arrays.items()})


def quick_return(agent: Any, world: World, env_cfg: EnvConfig, users: np.ndarray, seed: int,
                 device: str = "cpu") -> float:
    """Mean session return of ``agent`` on ``users`` (one session each): a learning-curve point."""
    env = _env(world, env_cfg, len(users), device)
    sess = _run_episodes(agent, env, users, seed, 1, None, online=False)
    return float(sess["return"].mean())
