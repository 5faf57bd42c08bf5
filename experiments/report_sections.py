"""Sections that make a report explain itself: what was compared (budgets and hyper-parameters per agent),
what was optimised (the reward with its weights), whether planning pays in this world, what the oracle
bounds, and which cells failed.

Every function returns Markdown lines; none reads more than the run folder and the config.

Planning gain (``planning_gain.json``): the long-term-value diagnostic (``recgym diagnose``) will write, into
the run folder (or ``diagnose/`` in it), a JSON object ``{"gain": float, "low": float, "high": float,
"confidence": float, "world_fingerprint": str, "method": str}``: how much more return a planning policy earns
than the myopic one in this world, with its interval. The report shows it when the file is present and
belongs to this world, says "not measured" otherwise, and never guesses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from recgym.experiments.config import ExperimentConfig

__all__ = ["agents_section", "reward_section", "oracle_section", "failures_section",
           "agent_ref"]

RowLookup = Any  # (agent, metric, segment) -> summary row or None


def agent_ref(label: str) -> str:
    """An agent as the report writes it: in code font, so an agent ``ctr`` never reads as the metric CTR."""
    return f"`{label}`"


def _value(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in x.items()) + "}"
    return str(x)


def agents_section(cfg: ExperimentConfig) -> list[str]:
    """Per agent: what it is, how it learns, its training budget and every hyper-parameter (defaults filled)."""
    from recgym.agents import AGENTS

    lines = ["## Agents, budgets and hyper-parameters", "",
             "| agent | kind | learns | budget | hyper-parameters (defaults filled in) |", "|---|---|---|---|---|"]
    for i, spec in enumerate(cfg.agents):
        cls = AGENTS[spec.name]
        config = cls.Config(**spec.hyperparams).model_dump(exclude={"seed", "device"})
        hp = ", ".join(f"{k}={_value(v)}" for k, v in config.items()) or "none"
        if cls.train_action_types is not None:
            tenv = cfg.train_env(i)
            learns = "RL on the train cohort"
            budget = (f"{cfg.budget(i):,} env steps × {cfg.training.num_envs} users in parallel "
                      f"(action_type={tenv.action_type}, K={tenv.slate_size})")
        elif cls.learns_offline and spec.fit_on_logs is not False:
            lg = cfg.training.logging
            learns = "fit on logs" + (", then online" if cls.learns_online else "")
            budget = (f"{lg.steps} logged slates × {lg.num_envs} users of `{lg.policy}` "
                      f"(epsilon {lg.epsilon}) per seed")
        elif cls.learns_online:
            learns, budget = "online, during evaluation", "the evaluation sessions"
        elif cls.env_bound:
            learns, budget = "nothing (reads the hidden state)", "-"
        else:
            learns, budget = "nothing", "-"
        name = spec.name if spec.key == spec.name else f"{spec.name} as {spec.key}"
        lines.append(f"| {agent_ref(spec.key)} | {name} | {learns} | {budget} | {hp} |")
    return lines + [""]


def reward_section(cfg: ExperimentConfig) -> list[str]:
    """The reward the agents were trained and scored on, with its weights and the response definitions."""
    env = cfg.env
    w = env.reward.weights
    weights = {"clicks": (1.0, 0.0, 0.0), "engagement": (0.0, 1.0, 0.0), "satisfaction": (0.0, 0.0, 1.0),
               "mix": (w.clicks, w.engagement, w.satisfaction)}[env.reward.name]
    terms = [f"{c:g} × {n}" for c, n in zip(weights, ("clicks", "engagement", "satisfaction"), strict=True) if c]
    return ["## Reward", "",
            f"`reward: {env.reward.name}` — per slate, reward = {' + '.join(terms)}; the session return is its sum over "
            f"the session (at most {env.max_steps} slates; the user leaves earlier when the time budget runs out).",
            "",
            f"- clicks: number of items clicked in the slate (choice model `{env.choice.model}`).",
            f"- engagement: dwell of clicked items = {env.response.dwell_scale:g} × hidden quality × log-normal noise "
            f"(sd {env.response.dwell_noise:g}).",
            f"- satisfaction: Σ over clicked items of (hidden quality − {env.response.quality_threshold:g}).",
            f"- time budget: starts at {env.dynamics.initial_budget:g}, −{env.dynamics.step_cost:g} per slate, "
            f"+{env.dynamics.budget_gain:g} × satisfaction: clicks on good items keep users longer, clickbait drives "
            "them away.", ""]


def oracle_section(oracle: str, agents: Sequence[str], row: RowLookup, reward: str,
                   fmt: Any) -> list[str]:
    """What the myopic oracle bounds, and - from this run's numbers - why an agent beats its return when one
    does (more slates per session, not more clicks per slate)."""
    from recgym.agents import ORACLE_BOUND

    lines = ["## What the oracle bounds", "", ORACLE_BOUND, ""]
    if reward != "clicks":
        lines += [f"This run's reward is `{reward}`, not clicks: the oracle ranks by click probability only, so it "
                  "is not even one-step optimal for this reward.", ""]
    ro = row(oracle, "return")
    if ro is None or not math.isfinite(ro["mean"]):
        return lines
    above = []
    for a in agents:
        r = row(a, "return")
        if a == oracle or r is None or not math.isfinite(r["mean"]) or r["mean"] <= ro["mean"]:
            continue
        parts = []
        for metric, what in (("clicks_per_slate", "clicks per slate"), ("session_length", "slates per session")):
            ra, rb = row(a, metric), row(oracle, metric)
            if ra is not None and rb is not None:
                parts.append(f"{what} {fmt(ra)} vs {fmt(rb)}")
        sep = "the CIs do not overlap" if r["low"] > ro["high"] else "the CIs overlap"
        above.append(f"- {agent_ref(a)}'s return ({fmt(r)}) is above the oracle's ({fmt(ro)}; {sep}): "
                     + "; ".join(parts) + ".")
    if above:
        lines += ["Agents whose mean return is above the myopic oracle's (expected where the return depends on "
                  "session length):", "", *above, ""]
    return lines


def failures_section(failures: Mapping[str, Mapping[int, str]], seeds: Sequence[int]) -> list[str]:
    """Cells (agent × seed) that failed: named with their error, and how many seeds each mean rests on."""
    if not failures:
        return []
    lines = ["## Failed cells", "",
             "These agent × seed cells raised an error; they are **left out** of the means and intervals above "
             "(each agent's `n` says how many seeds its numbers rest on). `recgym run CONFIG --resume` runs them "
             "again.", "", "| agent | seed | error |", "|---|---|---|"]
    for agent, per_seed in failures.items():
        for seed, err in sorted(per_seed.items()):
            lines.append(f"| {agent_ref(agent)} | {seed} | {err.splitlines()[0][:300]} |")
    lines.append("")
    for agent, per_seed in failures.items():
        ok = len(seeds) - len(per_seed)
        lines.append(f"- {agent_ref(agent)}: {ok} of {len(seeds)} seeds" + (" — no result" if ok == 0 else ""))
    return lines + [""]
