"""Bars of issue 11 (``pytest -m slow tests/test_longterm_slow.py``); figures in benchmarks/RESULTS.md.

* Planning gain (``recgym diagnose --json``, 5 seeds, 95 % CI) on the default world, long_term.yaml's world,
  ml-100k and ml-latest-small: the lookahead oracle never loses to the myopic oracle beyond its CI (it bounds
  it from above), and on long_term's world - where clickbait costs returns - planning pays (CI above 0).
* long_term.yaml's world: PPO beats the myopic oracle by more than the 95 % CIs over 5 seeds (its interval
  lies above the oracle's), and the lookahead oracle's mean is at least PPO's. SlateQ (>= myopic within CI) is
  checked in the same run once the ``slateq`` agent is registered (its branch lands separately).

CPU budgets (torch threads = 1, 2-core machine): each diagnose is a few minutes on a quiet machine (ml-latest-
small the longest); the long_term run trains PPO for 150k env steps (trainer fast, seeds batched) and evaluates the whole
200-user test cohort x 5 seeds per agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recgym.agents import AGENTS
from recgym.experiments.config import load_config
from recgym.experiments.runner import run_experiment
from recgym.experiments.stats import summarise

pytestmark = pytest.mark.slow

LONG_TERM = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "long_term.yaml"


def diagnose(tmp_path: Path, *args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "recgym", "diagnose", *args, "--json", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=3600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--world", "synthetic"], ["--world", "movielens-100k"],
                                  ["--world", "ml-latest-small"]], ids=["default", "ml-100k", "ml-latest-small"])
def test_lookahead_bounds_the_myopic_oracle(tmp_path: Path, args: list[str]) -> None:
    res = diagnose(tmp_path, *args)
    lo, hi = res["planning_gain_ci"]
    assert hi >= 0.0, res  # the lookahead is never significantly worse than the myopic oracle
    assert res["returns"]["oracle"]["mean"] > res["returns"]["random"]["mean"]


def test_planning_pays_on_the_long_term_world(tmp_path: Path) -> None:
    res = diagnose(tmp_path, str(LONG_TERM))
    assert res["planning_gain_ci"][0] > 0.0, res


def test_ppo_beats_the_myopic_oracle_on_the_long_term_world(tmp_path: Path) -> None:
    cfg = load_config(LONG_TERM)
    keep = {"ppo", "oracle", "lookahead", "slateq"}
    raw = cfg.to_dict()
    raw["agents"] = [a for a in raw["agents"] if a["name"] in keep]
    if "slateq" in AGENTS and not any(a["name"] == "slateq" for a in raw["agents"]):
        raw["agents"].append({"name": "slateq"})
    summary = run_experiment(load_config(raw=raw), tmp_path / "run")
    rows = summarise([r for r in summary["records"] if r["segment"] == "all"], ["agent"], "return")
    ret = {r["agent"]: r for r in rows}
    ppo, oracle, look = ret["ppo"], ret["oracle"], ret["lookahead"]
    assert ppo["low"] > oracle["high"], (ppo, oracle)
    assert look["mean"] >= ppo["mean"], (look, ppo)
    if "slateq" in ret:
        assert ret["slateq"]["high"] >= oracle["low"], (ret["slateq"], oracle)
        assert look["mean"] >= ret["slateq"]["mean"]
    pg = json.loads((tmp_path / "run" / "planning_gain.json").read_text())
    assert pg["low"] > 0.0, pg
