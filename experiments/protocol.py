"""Evaluate any agent from Python with the protocol of ``recgym run``: :func:`evaluate`.

    from recgym.experiments import evaluate
    result = evaluate(agent, env)                    # held-out users, 5 seeds, one session each
    result.mean("return"), result.interval("ctr", "cold_users")
    print(result.table())

Each seed is one cell of :func:`~recgym.experiments.evaluation.evaluate_cell` - the very function the runner
calls - on the same users (:func:`~recgym.experiments.evaluation.cohort_users`), the same env seeds and the
same new-item release schedule, so the metrics are those a run writes into ``metrics.json`` for that agent.
Nothing here touches the env you pass: a fresh evaluation env is built over its world and config (slate
actions, hidden relevance in ``info`` for NDCG), and autoreset, batching and feedback are handled inside.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recgym.agents.base import EnvSpec, Recommender, make_agent
from recgym.common.progress import progress_bar
from recgym.envs.config import EnvConfig
from recgym.envs.factory import apply_world_env_defaults, make_env_config, make_world
from recgym.envs.world import World
from recgym.experiments.evaluation import COHORTS, EnvPool, cohort_users, evaluate_cell, evaluation_env_config
from recgym.experiments.seeds import SeedTree
from recgym.experiments.stats import MeanCI, summarise

__all__ = ["evaluate", "EvaluationResult", "AgentFactory"]

AgentFactory = Callable[[Any, int], Recommender]
"""``(evaluation env, agent seed) -> agent``: builds the agent of one replicate on the evaluation env."""

TABLE_METRICS = ("return", "ctr", "ndcg", "session_length", "coverage", "gini", "tail_share")


@dataclass
class EvaluationResult:
    """Metrics of one agent over seeds, as a run reports them.

    ``records``: one dict per (seed, segment) - ``{"agent", "seed", "segment", <metric>: value, ...}``;
    ``summary``: one dict per (segment, metric) - ``{"agent", "segment", "metric", "n", "mean", "low",
    "high", "half_width"}`` (Student-t interval over seeds at ``confidence``); ``arrays``: per seed, the arrays
    the plots use (exposure and click counts per item, CTR by popularity decile, cold-start curves).
    """

    agent: str
    seeds: list[int]
    cohort: str
    confidence: float
    users: dict[int, np.ndarray]
    records: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    arrays: dict[int, dict[str, np.ndarray]] = field(repr=False, default_factory=dict)

    def interval(self, metric: str, segment: str = "all") -> MeanCI:
        """Mean and confidence interval over seeds of ``metric`` in ``segment``."""
        for r in self.summary:
            if r["metric"] == metric and r["segment"] == segment:
                return MeanCI(r["mean"], r["low"], r["high"], r["half_width"])
        if any(r["segment"] == segment and metric in r for r in self.records):  # measured, no seed had data
            nan = float("nan")
            return MeanCI(nan, nan, nan, nan)
        known = sorted({r["metric"] for r in self.summary if r["segment"] == segment})
        segments = sorted({r["segment"] for r in self.summary})
        raise KeyError(f"metric {metric!r} in segment {segment!r}: not measured; metrics of that segment: {known}; "
                       f"segments: {segments}")

    def mean(self, metric: str, segment: str = "all") -> float:
        """Mean over seeds of ``metric`` in ``segment`` (``nan`` when no seed had data, e.g. no cold users)."""
        return self.interval(metric, segment).mean

    def per_seed(self, metric: str, segment: str = "all") -> dict[int, float]:
        """``{seed: value}`` of ``metric`` in ``segment``."""
        return {r["seed"]: r[metric] for r in self.records if r["segment"] == segment and metric in r}

    def table(self, metrics: Sequence[str] = TABLE_METRICS, segment: str = "all") -> str:
        """A one-row Markdown table: mean ± CI half-width of ``metrics``."""
        cells = []
        for m in metrics:
            try:
                ci = self.interval(m, segment)
            except KeyError:
                cells.append("n/a")
                continue
            half = f" ± {ci.half_width:.3f}" if math.isfinite(ci.half_width) else " (n=1)"
            cells.append("n/a" if not math.isfinite(ci.mean) else f"{ci.mean:.3f}{half}")
        return ("| agent | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
                f"| {self.agent} | " + " | ".join(cells) + " |\n")


def _env_parts(env: Any) -> tuple[World, EnvConfig, str]:
    """World, config and device of a recgym env (any shell, or a wrapper of one)."""
    base = env
    for _ in range(16):
        if isinstance(getattr(base, "world", None), World) and isinstance(getattr(base, "config", None), EnvConfig):
            core = getattr(base, "core", None)
            return base.world, base.config, str(core.device) if core is not None else "cpu"
        nxt = getattr(base, "venv", None) or getattr(base, "env", None) or getattr(base, "unwrapped", None)
        if nxt is None or nxt is base:
            break
        base = nxt
    raise TypeError(f"env_or_config: expected a recgym env (RankingEnv, RankingVectorEnv, RankingSB3VecEnv or a "
                    f"wrapper), an EnvConfig, a mapping of EnvConfig fields or None, received {type(env).__name__}")


def _resolve(env_or_config: Any, world: str | World | None) -> tuple[World, EnvConfig, str | None]:
    if env_or_config is None or isinstance(env_or_config, (EnvConfig, Mapping)):
        cfg = make_env_config(env_or_config, {})
        w = make_world(world if world is not None else "synthetic")
        given = env_or_config.model_dump(exclude_unset=True) if isinstance(env_or_config, EnvConfig) \
            else dict(env_or_config or {})
        return w, apply_world_env_defaults(cfg, w, given), None  # the world's own settings under yours
    w, cfg, device = _env_parts(env_or_config)
    if world is not None and make_world(world) is not w:
        raise ValueError("world: an env was passed, which has its own world; pass world= only with a config")
    return w, cfg, device


def _factory(agent: Recommender | str | AgentFactory, hyperparams: Mapping[str, Any], device: str,
             spec_check: Callable[[Recommender], None]) -> tuple[AgentFactory, str]:
    """``(factory(env, seed), label)`` for an agent instance, a registered name or a factory."""
    if isinstance(agent, str):
        from recgym.agents.base import AGENTS

        cls = AGENTS.get(agent)
        if cls is not None and cls.learns_offline and not cls.learns_online:
            raise ValueError(f"agent {agent!r} learns from logs: build it, fit it (agent.fit(logged)) and pass the "
                             "agent itself")
        return (lambda env, seed: make_agent(agent, env, seed=seed, device=device, **hyperparams)), agent
    if hyperparams:
        raise ValueError("hyperparams: only used with an agent name (the agent instance already has its config)")
    if isinstance(agent, Recommender):
        spec_check(agent)
        if agent.env_bound:  # reads its env's live state: rebuild it on the evaluation env, same config
            return (lambda env, seed: type(agent)(EnvSpec.from_env(env), agent.config)), agent.name
        if agent.learns_online:  # each seed starts from the agent as given; the caller's agent is not changed
            return (lambda env, seed: copy.deepcopy(agent, {id(agent.spec): agent.spec})), agent.name
        return (lambda env, seed: agent), agent.name
    if callable(agent):
        return agent, getattr(agent, "__name__", "agent")
    raise TypeError(f"agent: expected a Recommender, a registered agent name or a callable (env, seed) -> agent, "
                    f"received {type(agent).__name__}")


def evaluate(agent: Recommender | str | AgentFactory, env_or_config: Any = None, *,
             world: str | World | None = None, cohort: str = "test", seeds: Sequence[int] = (0, 1, 2, 3, 4),
             episodes: int = 1, users: int | None = None, label: str | None = None,
             hyperparams: Mapping[str, Any] | None = None, device: str | None = None,
             confidence: float = 0.95, root_seed: int = 0, progress: bool | None = None) -> EvaluationResult:
    """Evaluate ``agent`` with the protocol of ``recgym run``; returns an :class:`EvaluationResult`.

    Args:
        agent: a built agent (``make_agent(...)``, trained or fitted), a registered name (built per seed with
            that seed, like the runner; not for offline learners, which need logs), or a factory
            ``(env, seed) -> agent``. An online learner (popularity, LinUCB) keeps learning during each seed, as
            in deployment, from a copy: every seed starts from the agent as given and yours is not changed.
            An env-bound agent (the oracle) is rebuilt on the evaluation env with its config.
        env_or_config: a recgym env (its world and config are used; the env itself is not stepped), an
            :class:`~recgym.envs.config.EnvConfig` or a mapping of its fields, or ``None`` (defaults).
        world: with a config (or ``None``): a world name or :class:`~recgym.envs.world.World` (default
            ``"synthetic"``).
        cohort: ``test`` (held-out users, warm and cold), ``cold``, ``warm`` or ``all``.
        seeds: evaluation seeds (distinct, non-negative): each draws its users and seeds its env.
        episodes: sessions per user.
        users: users per seed (``None`` = the whole cohort).
        label: the name in ``records`` (default: the agent's name).
        hyperparams: with an agent name: its typed hyper-parameters.
        device: ``"cpu"``, ``"cuda"``...; default: the env's device (with a config: ``"cpu"``).
        confidence: level of the intervals over seeds.
        root_seed: root of the seed tree (a run's ``seed``); ``seeds`` are replicate ids under it, so
            ``evaluate(..., seeds=cfg.evaluation.seeds, root_seed=cfg.seed)`` replays the run's evaluation.
        progress: progress over the seeds on stderr: ``None`` (default) a bar on a terminal only, ``True`` also
            periodic lines in logs, ``False`` silent.

    Raises:
        ValueError: bad cohort, seeds or episodes; an agent built for another item table or candidate count.
    """
    if cohort not in COHORTS:
        raise ValueError(f"cohort: expected one of {list(COHORTS)}, received {cohort!r}")
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected distinct non-negative ints, received {seeds}")
    if episodes < 1 or (users is not None and users < 1):
        raise ValueError(f"episodes / users: expected >= 1, received episodes={episodes}, users={users}")
    w, cfg, env_device = _resolve(env_or_config, world)
    device = device or env_device or "cpu"
    eval_cfg = evaluation_env_config(cfg)
    table_hash = EnvSpec(w.catalog.embeddings, eval_cfg.num_candidates, eval_cfg.slate_size, "slate").table_hash

    def spec_check(a: Recommender) -> None:
        if a.spec.table_hash != table_hash or a.spec.num_candidates != eval_cfg.num_candidates:
            raise ValueError(
                f"agent {a.name!r} was built for another env: item table {a.spec.table_hash} with "
                f"N={a.spec.num_candidates} candidates; this evaluation's world {w.name!r} has item table "
                f"{table_hash} and N={eval_cfg.num_candidates}")

    build, name = _factory(agent, dict(hyperparams or {}), device, spec_check)
    name = label or name
    tree = SeedTree(root_seed)
    envs = EnvPool(w, eval_cfg, device)
    records: list[dict[str, Any]] = []
    arrays: dict[int, dict[str, np.ndarray]] = {}
    cohort_of: dict[int, np.ndarray] = {}
    with progress_bar(len(seeds), f"evaluate {name} ({cohort} users)", unit="seeds", enabled=progress) as bar:
        for seed in seeds:
            chosen = cohort_users(w, cohort, users, tree.seed("eval", seed, "users"))
            result = evaluate_cell(lambda env, s=tree.seed("agent", seed): build(env, s), w, eval_cfg, chosen,
                                   tree.seed("eval", seed, "env"), episodes, device, envs=envs)
            for seg, metrics in result.metrics.items():
                records.append({"agent": name, "seed": seed, "segment": seg, **metrics})
            arrays[seed], cohort_of[seed] = result.arrays, chosen
            bar(1)
    names = list(dict.fromkeys(k for r in records for k in r if k not in ("agent", "seed", "segment")))
    summary = summarise(records, by=["agent", "segment"], metric=names, confidence=confidence, nan_policy="omit",
                        skip_missing=True, replicate_key="seed")
    return EvaluationResult(name, seeds, cohort, confidence, cohort_of, records, summary, arrays)
