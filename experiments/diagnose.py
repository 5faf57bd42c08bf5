"""Does planning pay in this world? ``recgym diagnose``: the planning gain with a confidence interval.

On the evaluation protocol of ``recgym run`` (the same cohort, users and seeds: :func:`cohort_users`, and the
same per-seed env resets) it evaluates

* ``random`` — uniformly random slates (the floor);
* ``oracle`` — the myopic oracle: the top-K hidden click logits (the best next slate for clicks);
* ``quality_oracle`` — the quality-aware heuristic of :mod:`recgym.agents.lookahead` at every trade-off of
  ``heuristic_tradeoffs``; the best one (highest mean return, chosen on these seeds) is reported as
  ``quality`` and is the lookahead's continuation policy (unless ``lookahead.continuation_tradeoff`` is set);
* ``lookahead`` — the lookahead oracle (MPC on forked states with the true model);

and writes ``planning_gain = lookahead / myopic - 1``: paired per seed (``return_lookahead(s) /
return_oracle(s) - 1``), then the mean and Student-t interval over seeds. A gain whose interval excludes 0
says a policy that plans beats the best myopic one in this world; one whose interval holds 0 says the world
does not reward planning (so an RL-vs-supervised comparison in it cannot show RL's long-term advantage).
A discount / horizon sweep of the lookahead (on ``sweep_seeds``) shows how far ahead value lies.

Output ``planning_gain.json`` (format ``recgym-planning-gain`` version 1), read by ``recgym run`` reports
from the run folder (or its ``diagnose/``)::

    {"format": "recgym-planning-gain", "version": 1,
     "gain": g, "low": lo, "high": hi, "confidence": 0.95,      # relative gain lookahead / myopic - 1
     "planning_gain": g, "planning_gain_ci": [lo, hi],          # the same, as named by the issue
     "absolute_gain": {"mean", "low", "high"},                  # lookahead - myopic, in return units
     "world": name, "world_fingerprint": fp, "method": "...",   # how it was measured
     "returns": {policy: {"mean", "low", "high", "per_seed": [...]}},
     "seeds": [...], "users_per_seed": n, "cohort": c, "sweep": [{"horizon", "gamma", "mean", "low", "high"}],
     "settings": {...}, "env": {...}}

A run whose agents include both ``oracle`` and ``lookahead`` writes the same file from its own cells
(:func:`planning_gain_from_cells`, method "run cells"), unless the folder already holds one from this tool.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recgym.experiments.stats import mean_ci

__all__ = ["DiagnoseSettings", "run_diagnose", "planning_gain_from_cells", "update_planning_gain", "write_planning_gain",
           "read_planning_gain", "planning_gain_lines", "PLANNING_GAIN_FILE", "FORMAT"]

PLANNING_GAIN_FILE = "planning_gain.json"
FORMAT = "recgym-planning-gain"


@dataclass
class DiagnoseSettings:
    """What ``recgym diagnose`` evaluates (defaults sized for a 2-core CPU in minutes)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    users_per_seed: int | None = 64
    cohort: str = "test"
    confidence: float = 0.95
    heuristic_tradeoffs: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0, 8.0])
    # No "horizon": rollouts run to the episode's end (env max_steps). A truncated horizon values clicks now
    # over the budget they cost later: on the default world H = 10 planned worse than its own base policy.
    lookahead: dict[str, Any] = field(default_factory=lambda: {"rollouts": 2})
    horizons: list[int] = field(default_factory=lambda: [1, 5])
    gammas: list[float] = field(default_factory=lambda: [0.9])
    sweep_seeds: int = 2
    device: str = "cpu"


def _evaluate(name: str, hp: Mapping[str, Any], world: Any, env_cfg: Any, users: np.ndarray, seed: int,
              device: str) -> dict[str, float]:
    from recgym.agents import make_agent
    from recgym.experiments.evaluation import evaluate_cell

    result = evaluate_cell(lambda env: make_agent(name, env, seed=seed, **hp), world, env_cfg, users, seed, 1, device)
    return {k: float(v) for k, v in result.metrics["all"].items()}


def _summary(values: Sequence[float], confidence: float) -> dict[str, Any]:
    vals = [float(v) for v in values]
    if len(vals) < 2:
        m = float(np.mean(vals)) if vals else float("nan")
        return {"mean": m, "low": float("nan"), "high": float("nan"), "per_seed": vals}
    ci = mean_ci(vals, confidence)
    return {"mean": ci.mean, "low": ci.low, "high": ci.high, "per_seed": vals}


def _gain(look: Sequence[float], myopic: Sequence[float], confidence: float) -> dict[str, Any]:
    rel = [lk / my - 1.0 if my != 0 else float("nan") for lk, my in zip(look, myopic, strict=True)]
    return {"relative": _summary(rel, confidence), "absolute": _summary(np.subtract(look, myopic), confidence)}


def run_diagnose(world: Any, env_cfg: Any, settings: DiagnoseSettings | None = None,
                 notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate the policies of the module docstring and return the ``planning_gain.json`` object."""
    from recgym.experiments.evaluation import cohort_users

    s = settings or DiagnoseSettings()
    say = notify or (lambda _msg: None)
    env_cfg = env_cfg.merged({"action_type": "slate", "info_candidate_relevance": True})
    t0 = time.perf_counter()
    per_seed: dict[str, list[dict[str, float]]] = {}

    def run(label: str, name: str, hp: Mapping[str, Any], seeds: Sequence[int]) -> list[dict[str, float]]:
        out = []
        for seed in seeds:
            users = cohort_users(world, s.cohort, s.users_per_seed, seed)
            t = time.perf_counter()
            out.append(_evaluate(name, hp, world, env_cfg, users, seed, s.device))
            say(f"{label} seed {seed}: return {out[-1]['return']:.3f} ({time.perf_counter() - t:.1f} s)")
        return out

    per_seed["random"] = run("random", "random", {}, s.seeds)
    per_seed["oracle"] = run("oracle", "oracle", {}, s.seeds)
    heuristic = {t: run(f"quality_oracle[{t:g}]", "quality_oracle", {"tradeoff": t}, s.seeds)
                 for t in s.heuristic_tradeoffs}
    best_t = max(heuristic, key=lambda t: float(np.mean([m["return"] for m in heuristic[t]])))
    per_seed["quality"] = heuristic[best_t]
    look_hp = {"continuation_tradeoff": best_t, "horizon": env_cfg.max_steps, **s.lookahead}
    per_seed["lookahead"] = run("lookahead", "lookahead", look_hp, s.seeds)

    def returns(rows: list[dict[str, float]]) -> list[float]:
        return [r["return"] for r in rows]

    gain = _gain(returns(per_seed["lookahead"]), returns(per_seed["oracle"]), s.confidence)
    sweep = []
    sweep_seeds = s.seeds[: s.sweep_seeds]
    h_main = int(look_hp["horizon"])
    g_main = float(look_hp.get("gamma", 1.0))
    if sweep_seeds:
        for h in s.horizons:
            for g in s.gammas:
                hp = {**look_hp, "horizon": h, "gamma": g}
                rows = run(f"lookahead[H={h}, gamma={g:g}]", "lookahead", hp, sweep_seeds)
                sweep.append({"horizon": h, "gamma": g, "seeds": list(sweep_seeds),
                              **_summary(returns(rows), s.confidence)})
        sweep.append({"horizon": h_main, "gamma": g_main, "seeds": list(sweep_seeds),
                      **_summary(returns(per_seed["lookahead"])[: len(sweep_seeds)], s.confidence)})
        sweep.sort(key=lambda r: (r["horizon"], r["gamma"]))
    rel, ab = gain["relative"], gain["absolute"]
    return {
        "format": FORMAT, "version": 1,
        "gain": rel["mean"], "low": rel["low"], "high": rel["high"], "confidence": s.confidence,
        "planning_gain": rel["mean"], "planning_gain_ci": [rel["low"], rel["high"]],
        "planning_gain_per_seed": rel["per_seed"],
        "absolute_gain": {k: ab[k] for k in ("mean", "low", "high")},
        "world": world.name, "world_fingerprint": world.fingerprint(),
        "method": (f"lookahead oracle (MPC, horizon {h_main}, {look_hp.get('rollouts', 4)} rollouts, "
                   f"continuation trade-off {best_t:g}) vs myopic oracle, paired over {len(s.seeds)} seeds"),
        "returns": {
            "random": _summary(returns(per_seed["random"]), s.confidence),
            "oracle": _summary(returns(per_seed["oracle"]), s.confidence),
            "quality": {**_summary(returns(per_seed["quality"]), s.confidence), "tradeoff": best_t},
            "lookahead": _summary(returns(per_seed["lookahead"]), s.confidence),
            **{f"quality_oracle[{t:g}]": _summary(returns(v), s.confidence) for t, v in heuristic.items()},
        },
        "metrics": {k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in per_seed.items()},
        "seeds": list(s.seeds), "users_per_seed": s.users_per_seed, "cohort": s.cohort, "sweep": sweep,
        "settings": asdict(s), "env": env_cfg.model_dump(), "wall_time_s": round(time.perf_counter() - t0, 1),
    }


# --------------------------------------------------------------------------------------- files and reports
def write_planning_gain(path: Path, data: Mapping[str, Any]) -> Path:
    """Write the object atomically (non-finite numbers as null)."""
    from recgym.common.io import atomic_write_json

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, Mapping):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    atomic_write_json(Path(path), clean(dict(data)))
    return Path(path)


def read_planning_gain(out: Path, fingerprint: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """``(data, where)`` of the run folder's planning-gain file (``planning_gain.json`` or
    ``diagnose/planning_gain.json``) when it is readable, finite and of this world; else ``(None, why)``."""
    import json

    for rel in (PLANNING_GAIN_FILE, f"diagnose/{PLANNING_GAIN_FILE}"):
        path = Path(out) / rel
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            gain, low, high = (float(data[k]) for k in ("gain", "low", "high"))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            return None, f"not measured ({rel} is unreadable: {type(exc).__name__})"
        if fingerprint is not None and data.get("world_fingerprint") not in (None, fingerprint):
            return None, f"not measured for this world ({rel} belongs to another world)"
        if not all(math.isfinite(v) for v in (gain, low, high)):
            return None, f"not measured ({rel} holds non-finite values)"
        return {**data, "gain": gain, "low": low, "high": high}, rel
    return None, "not measured"


def planning_gain_from_cells(cfg: Any, out: Path, world: Any) -> dict[str, Any] | None:
    """The planning gain from a run's own cells when its agents include the myopic ``oracle`` and the
    ``lookahead`` oracle (same users and seeds by the protocol); ``None`` otherwise."""
    from recgym.common.io import read_json_file
    from recgym.experiments.cells import cell_path

    keys = {s.name: s.key for s in cfg.agents}
    if "oracle" not in keys or "lookahead" not in keys:
        return None
    ev = cfg.evaluation
    rows: dict[str, list[float]] = {"oracle": [], "lookahead": []}
    for name in rows:
        for seed in ev.seeds:
            cell = read_json_file(cell_path(out, keys[name], seed), what="evaluation cell")
            rows[name].append(float(cell["metrics"]["all"]["return"]))
    gain = _gain(rows["lookahead"], rows["oracle"], ev.confidence)
    rel, ab = gain["relative"], gain["absolute"]
    spec = next(s for s in cfg.agents if s.name == "lookahead")
    return {
        "format": FORMAT, "version": 1, "gain": rel["mean"], "low": rel["low"], "high": rel["high"],
        "confidence": ev.confidence, "planning_gain": rel["mean"], "planning_gain_ci": [rel["low"], rel["high"]],
        "planning_gain_per_seed": rel["per_seed"], "absolute_gain": {k: ab[k] for k in ("mean", "low", "high")},
        "world": world.name, "world_fingerprint": world.fingerprint(),
        "method": (f"run cells: `{keys['lookahead']}` (lookahead oracle, {spec.hyperparams or 'defaults'}) vs "
                   f"`{keys['oracle']}` (myopic oracle), paired over {len(ev.seeds)} seeds"),
        "returns": {"oracle": _summary(rows["oracle"], ev.confidence),
                    "lookahead": _summary(rows["lookahead"], ev.confidence)},
        "seeds": list(ev.seeds), "users_per_seed": ev.users_per_seed, "cohort": ev.cohort, "sweep": [],
    }


def update_planning_gain(cfg: Any, out: Path, world: Any) -> Path | None:
    """Write the run's own planning gain (:func:`planning_gain_from_cells`) into ``out/planning_gain.json``,
    unless the folder holds one written by ``recgym diagnose`` for this world (which it never overwrites)."""
    data, _ = read_planning_gain(out, world.fingerprint())
    if data is not None and not str(data.get("method", "")).startswith("run cells"):
        return None
    pg = planning_gain_from_cells(cfg, out, world)
    return None if pg is None else write_planning_gain(Path(out) / PLANNING_GAIN_FILE, pg)


def planning_gain_lines(out: Path, fingerprint: str, has_rl_comparison: bool) -> list[str]:
    """Report lines: the world's planning gain (or "not measured") and, when an RL agent is compared with
    others, the caveat a gain whose interval holds 0 (or an unmeasured one) puts on that comparison."""
    data, where = read_planning_gain(out, fingerprint)
    lines = ["## Does planning pay in this world?", ""]
    if data is None:
        lines += [f"Planning gain: {where}. Measure it with `recgym diagnose --world <world> <config> --out "
                  f"<run folder>` (or list both `oracle` and `lookahead` among the agents), then `--resume` the run "
                  "to refresh this report.", ""]
        if has_rl_comparison:
            lines += ["> **Caution:** without the planning gain, an RL agent that does not beat the myopic oracle may "
                      "be limited by the world (nothing to gain from planning) or by learning; the RL-vs-others "
                      "comparisons below cannot tell which.", ""]
        return lines
    conf = float(data.get("confidence", 0.95))
    ab = data.get("absolute_gain") or {}
    verdict = ("planning pays: the lookahead oracle earns more than the myopic oracle" if data["low"] > 0 else
               "planning does not pay here: the lookahead oracle earns less than the myopic oracle"
               if data["high"] < 0 else "the interval holds 0: no gain from planning is established")
    extra = (f"; {ab['mean']:+.3g} return [{ab['low']:+.3g}, {ab['high']:+.3g}]"
             if all(isinstance(ab.get(k), (int, float)) for k in ("mean", "low", "high")) else "")
    lines += [f"Planning gain (lookahead / myopic − 1): **{data['gain']:+.1%}** ({conf:.0%} CI "
              f"[{data['low']:+.1%}, {data['high']:+.1%}]{extra}; {data.get('method', 'method not stated')}; "
              f"`{where}`): {verdict}.", ""]
    if has_rl_comparison and data["low"] <= 0:
        lines += ["> **Caution:** this world's planning-gain interval holds 0 (or lies below it): a planning "
                  "policy does not earn more than the myopic oracle here, so the RL-vs-supervised comparisons "
                  "below say nothing about RL's ability to optimise the long term.", ""]
    return lines
