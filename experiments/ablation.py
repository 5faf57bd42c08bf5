"""Compare two runs of one experiment that differ in one switch (an ablation): ``recgym compare A B``.

Both runs must evaluate the same agents on the same seeds (the runner gives every agent the same users,
seeds and release schedule per seed, and the two arms share them when only the ablated switch differs),
so the comparison is *paired by seed*: for each (agent, segment, metric) the per-seed difference
``B - A`` gets a mean and a Student-t confidence interval; a difference is claimed only when that
interval excludes 0. The per-arm means ± CIs are shown beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recgym.experiments.stats import mean_ci

__all__ = ["DEFAULT_METRICS", "compare_runs", "comparison_markdown"]

DEFAULT_METRICS = (
    ("cold_users", "ctr"), ("cold_users", "ndcg"), ("warm_users", "ctr"), ("new_items", "ctr"),
    ("new_items", "exposure_share"), ("tail_items", "ctr"), ("tail_items", "exposure_share"), ("all", "return"),
    ("all", "ndcg"),
)


def _records(run: Path) -> tuple[dict[tuple[str, int, str], dict[str, float]], dict[str, Any]]:
    path = Path(run) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"compare: expected a finished run folder with metrics.json, {run} has none")
    data = json.loads(path.read_text())
    recs = {(r["agent"], int(r["seed"]), r["segment"]): r for r in data["records"]}
    return recs, data


def compare_runs(run_a: Path, run_b: Path, metrics: Sequence[tuple[str, str]] = DEFAULT_METRICS,
                 confidence: float = 0.95) -> list[dict[str, Any]]:
    """Rows ``{agent, segment, metric, a, a_hw, b, b_hw, diff, diff_low, diff_high, n, separated}``.

    Raises ``ValueError`` when the runs share no agent or their seeds differ."""
    ra, da = _records(run_a)
    rb, db = _records(run_b)
    if list(da["seeds"]) != list(db["seeds"]):
        raise ValueError(f"compare: expected the same seeds in both runs, received {da['seeds']} and {db['seeds']}")
    agents = [a for a in da["agents"] if a in db["agents"]]
    if not agents:
        raise ValueError(f"compare: the runs share no agent ({da['agents']} vs {db['agents']})")
    rows = []
    for agent in agents:
        for seg, metric in metrics:
            va, vb = [], []
            for s in da["seeds"]:
                xa = ra.get((agent, int(s), seg), {}).get(metric)
                xb = rb.get((agent, int(s), seg), {}).get(metric)
                va.append(np.nan if xa is None else float(xa))
                vb.append(np.nan if xb is None else float(xb))
            a, b = np.array(va), np.array(vb)
            ok = np.isfinite(a) & np.isfinite(b)
            if ok.sum() == 0:
                continue
            ca, cb, cd = (mean_ci(x[ok], confidence) for x in (a, b, b - a))
            rows.append({"agent": agent, "segment": seg, "metric": metric, "a": ca.mean, "a_hw": ca.half_width,
                         "b": cb.mean, "b_hw": cb.half_width, "diff": cd.mean, "diff_low": cd.low,
                         "diff_high": cd.high, "n": int(ok.sum()), "separated": bool(cd.low > 0 or cd.high < 0)})
    return rows


def _f(x: float, hw: float | None = None) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.4f}" if hw is None else (f"{x:.4f} ± {hw:.4f}" if math.isfinite(hw) else f"{x:.4f}")


def comparison_markdown(rows: Sequence[dict[str, Any]], label_a: str = "A", label_b: str = "B",
                        confidence: float = 0.95) -> str:
    """A markdown table of :func:`compare_runs` rows; ``*`` marks differences whose paired CI excludes 0."""
    out = [f"| agent | segment | metric | {label_a} | {label_b} | {label_b} − {label_a} (paired {confidence:.0%} CI) |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        diff = f"{r['diff']:+.4f} [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]{' *' if r['separated'] else ''}"
        out.append(f"| {r['agent']} | {r['segment']} | {r['metric']} | {_f(r['a'], r['a_hw'])} | "
                   f"{_f(r['b'], r['b_hw'])} | {diff} |")
    return "\n".join(out) + "\n"
