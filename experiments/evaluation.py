"""The evaluation protocol: every agent on the same held-out users, seeds and injected items.

One *cell* is (agent, replicate). For a replicate the users are drawn once from the cohort by
:func:`cohort_users` (independent of the agent; its seed comes from the run's
:class:`~recgym.experiments.seeds.SeedTree`), the vector env is reset with a seed derived from the cell's
evaluation seed and ``options={"user_indices": users}``, and every user plays ``episodes_per_user`` full sessions (until
``terminated`` or ``truncated``). New items are released on the env's own clock (``t_global``), reset with
the env, so every agent sees the same release schedule. Online learners (``learns_online``) keep updating
from the feedback during evaluation, as they would in deployment; nothing else learns.

Metrics per segment (``all``, ``warm_users``, ``cold_users``; item segments ``head_items``, ``tail_items``,
``new_items``) come from :class:`~recgym.experiments.exposure.ExposureTracker`, plus per-session figures
computed here: ``return``, ``session_length``, ``satisfaction`` and ``engagement`` (sums over an episode:
one session, or every session of a returning user), and with returning users (``env.sessions.count > 1``)
the retention metrics of :mod:`~recgym.experiments.retention` in the ``all`` segment.
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
from typing import TYPE_CHECKING, Any

import numpy as np

from recgym.envs import RankingVectorEnv
from recgym.envs.config import EnvConfig
from recgym.envs.world import World
from recgym.experiments.exposure import ExposureTracker
from recgym.experiments.fairness import FairnessTracker, item_groupings, user_group_metrics, user_groupings
from recgym.experiments.retention import RetentionTracker

if TYPE_CHECKING:
    from recgym.agents.base import Recommender

__all__ = ["CellResult", "COHORTS", "EnvPool", "cohort_users", "episode_seed", "evaluate_cell",
           "evaluation_env_config", "quick_return", "SESSION_METRICS"]

SESSION_METRICS = ("return", "session_length", "satisfaction", "engagement")
_SESSION_EXTRA = ("clicks", "impressions", "left")  # per-session sums kept for user-side fairness
USER_SEGMENTS = ("all", "warm_users", "cold_users")
COHORTS = ("test", "cold", "warm", "all")


def evaluation_env_config(cfg: EnvConfig) -> EnvConfig:
    """The evaluation env of ``cfg``: slate actions (agents rank positions) and the hidden relevance of every
    candidate in ``info`` (for NDCG); every other setting as given."""
    return EnvConfig.model_validate({**cfg.model_dump(), "action_type": "slate", "info_candidate_relevance": True})


def cohort_users(world: World, cohort: str, n: int | None, seed: int) -> np.ndarray:
    """``(n,)`` int64 user indices of ``cohort`` for ``seed`` (the same for every agent).

    ``test``: held-out users (warm and cold); ``cold`` / ``warm``: held-out users of that kind; ``all``:
    every user. ``n=None`` takes the whole cohort (in index order); else a seeded sample without
    replacement (with replacement if the cohort is smaller than ``n``).
    """
    p = world.population
    masks = {"test": p.test, "cold": p.test & p.cold, "warm": p.test & ~p.cold,
             "all": np.ones(p.num_users, dtype=bool)}
    if cohort not in masks:  # same keys as COHORTS
        raise ValueError(f"evaluation.cohort: expected one of {sorted(masks)}, received {cohort!r}")
    pool = np.flatnonzero(masks[cohort]).astype(np.int64)
    if pool.size == 0:
        raise ValueError(f"evaluation.cohort: the world {world.name!r} has no {cohort!r} users")
    if n is None:
        return pool
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=n, replace=n > pool.size)).astype(np.int64)


@dataclass
class CellResult:
    """Scalar metrics per segment plus the arrays the plots need."""

    metrics: dict[str, dict[str, float]]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class EnvPool:
    """Evaluation envs of one world and config, one per batch size, built once and reused: ``reset(seed=...)``
    re-seeds the core and restarts its clock, so a reused env replays exactly what a fresh one would."""

    def __init__(self, world: World, cfg: EnvConfig, device: str = "cpu") -> None:
        self.world, self.cfg, self.device = world, cfg, device
        self._envs: dict[int, RankingVectorEnv] = {}

    def get(self, n: int) -> RankingVectorEnv:
        if n not in self._envs:
            self._envs[n] = RankingVectorEnv(n, world=self.world, config=self.cfg, device=self.device)
        return self._envs[n]


def episode_seed(seed: int, episode: int) -> int:
    """Env reset seed of ``episode`` of a cell whose evaluation seed is ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1, np.uint32)[0] >> 1)


def _run_episodes(agent: Recommender, env: RankingVectorEnv, users: np.ndarray, seed: int, episodes: int,
                  tracker: ExposureTracker | None, online: bool,
                  fairness: FairnessTracker | None = None,
                  retention: RetentionTracker | None = None) -> dict[str, np.ndarray]:
    """Play ``episodes`` episodes of each user (one session, or every session of a returning user); return
    per-episode sums ``(episodes * B,)``, users and cold flags."""
    k = env.config.slate_size
    cold_all = np.asarray(env.world.population.cold)
    out: dict[str, list[np.ndarray]] = {key: [] for key in (*SESSION_METRICS, *_SESSION_EXTRA, "cold", "user")}
    for ep in range(episodes):
        obs, _ = env.reset(seed=episode_seed(seed, ep), options={"user_indices": users})
        b = len(users)
        active = np.ones(b, dtype=bool)
        sums = {key: np.zeros(b) for key in (*SESSION_METRICS, *_SESSION_EXTRA)}
        if retention is not None:
            retention.start(b)
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
            if retention is not None:
                retention.update(info, active, term)
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
                  users: np.ndarray, seed: int, episodes: int = 1, device: str = "cpu",
                  envs: EnvPool | None = None) -> CellResult:
    """Evaluate the agent built by ``make_agent(env)`` on ``users`` with ``seed``; see the module docstring.

    ``make_agent`` receives the evaluation env (the oracle reads its live state); it returns a ready agent.
    ``envs``: reuse its env for ``len(users)`` users (same world and ``env_cfg``) instead of building one.
    """
    env = (envs or EnvPool(world, env_cfg, device)).get(len(users))
    agent = make_agent(env)
    cat = world.catalog
    new_ids = np.flatnonzero(cat.is_new).astype(np.int64)
    release = env.core.params.item_release.cpu().numpy()
    tracker = ExposureTracker(
        cat.num_items, tail_mask=~cat.head_mask(), popularity=np.clip(cat.popularity, 1e-12, 1.0),
        new_item_ids=new_ids if len(new_ids) else None,
        new_item_release_steps=release[new_ids] if len(new_ids) else None,
        item_embeddings=cat.embeddings, n_user_steps=env_cfg.max_steps, ndcg_k=env_cfg.slate_size,
    )
    fair = FairnessTracker(cat.num_items)
    retention = RetentionTracker(env_cfg.sessions.count) if env_cfg.sessions.count > 1 else None
    sess = _run_episodes(agent, env, users, seed, episodes, tracker, bool(getattr(agent, "learns_online", False)),
                         fair, retention)
    metrics = tracker.result()
    item_fair, item_groups = fair.result(item_groupings(cat))
    user_fair, user_groups = user_group_metrics(
        sess["user"], sess["clicks"], sess["impressions"], sess["satisfaction"], sess["left"] > 0, sess["return"],
        user_groupings(world.population))
    metrics["all"].update(item_fair, **user_fair)
    if retention is not None:
        metrics["all"].update(retention.result())
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
    if retention is not None:
        arrays["retention_curve"] = retention.curve()
    if curves is not None:
        arrays.update(time_to_first_exposure=curves.time_to_first_exposure,
                      time_to_first_click=curves.time_to_first_click,
                      new_item_share_steps=curves.steps, new_item_share=curves.exposure_share)
    return CellResult(metrics, {k: np.asarray(v) for k, v in arrays.items()})


def quick_return(agent: Recommender, world: World, env_cfg: EnvConfig, users: np.ndarray, seed: int,
                 device: str = "cpu", envs: EnvPool | None = None) -> float:
    """Mean session return of ``agent`` on ``users`` (one session each): a learning-curve point."""
    env = (envs or EnvPool(world, env_cfg, device)).get(len(users))
    sess = _run_episodes(agent, env, users, seed, 1, None, online=False)
    return float(sess["return"].mean())
