"""``recgym.experiments.evaluate``: the run's protocol from Python - same metrics as ``recgym run``, clear
errors, the caller's agent left untouched, and the README's snippet runs as printed."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import random_world
from rich.console import Console

from recgym.agents import make_agent
from recgym.envs import RankingVectorEnv, make_world
from recgym.experiments import EvaluationResult, evaluate
from recgym.experiments.config import load_config
from recgym.experiments.runner import run_experiment

REPO = Path(__file__).resolve().parents[1]
WORLD = random_world(n_items=120, n_users=24, dim=16, n_new=10)
ENV_KW = {"num_candidates": 20, "slate_size": 3, "candidates": {"pool_size": 40}, "max_steps": 6,
          "new_items": {"slots": 2}}


def _same(a: float | None, b: float) -> bool:
    a = float("nan") if a is None else float(a)
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12)


def test_evaluate_gives_the_metrics_of_a_run(tmp_path):
    raw = {"name": "same", "world": "analytic", "world_config": {"n_items": 40, "n_users": 12},
           "env": {"num_candidates": 20, "slate_size": 3, "new_items": {"slots": 0}, "candidates": {"pool_size": 40},
                   "max_steps": 5},
           "agents": [{"name": "random"}, {"name": "popularity", "fit_on_logs": False}, {"name": "oracle"}],
           "evaluation": {"cohort": "all", "users_per_seed": 6, "seeds": [0, 3]},
           "output": {"plots": False, "tensorboard": False}}
    cfg = load_config(raw=raw)
    run_experiment(cfg, tmp_path / "run", console=Console(file=io.StringIO()))
    records = json.loads((tmp_path / "run" / "metrics.json").read_text())["records"]
    for name in ("random", "popularity", "oracle"):
        world = make_world(cfg.world, world_config=cfg.world_config)
        res = evaluate(name, cfg.env, world=world, cohort="all", seeds=[0, 3], users=6)
        assert isinstance(res, EvaluationResult)
        ran = {(r["seed"], r["segment"]): r for r in records if r["agent"] == name}
        got = {(r["seed"], r["segment"]): r for r in res.records}
        assert set(ran) == set(got)
        for key, r in got.items():
            metrics = set(r) - {"agent", "seed", "segment"}
            assert metrics == set(ran[key]) - {"agent", "seed", "segment"}
            bad = [m for m in metrics if not _same(ran[key][m], r[m])]
            assert not bad, (name, key, bad)


def test_evaluate_an_agent_instance_from_an_env(capsys):
    env = RankingVectorEnv(4, world=WORLD, **ENV_KW)
    popularity = make_agent("popularity", env, seed=0)
    res = evaluate(popularity, env, seeds=[0, 1, 2], users=8, progress=True)
    progress = capsys.readouterr().err.splitlines()  # off a terminal: a line per seed, then the time
    assert progress[0] == "evaluate popularity (test users): 0/3 seeds (0%), 0s elapsed"
    assert progress[-1].startswith("evaluate popularity (test users): done, 3 seeds in ")
    assert res.agent == "popularity" and res.seeds == [0, 1, 2] and len(res.users[0]) == 8
    assert popularity.clicks.sum() == 0  # evaluated copies learnt; the caller's agent is untouched
    ci = res.interval("return")
    assert ci.low <= ci.mean <= ci.high and math.isfinite(ci.half_width)
    assert set(res.per_seed("ctr")) == {0, 1, 2}
    assert "| popularity |" in res.table()
    # the oracle built on this env is rebuilt on the evaluation env (it reads live state): NDCG is exactly 1
    oracle = evaluate(make_agent("oracle", env), env, seeds=[0, 1], users=8)
    assert oracle.mean("ndcg") == pytest.approx(1.0)
    assert oracle.mean("return") > res.mean("return")
    assert math.isnan(res.mean("ctr", "cold_users"))  # no cold user in the test cohort of this world: no data


def test_evaluate_refuses_what_it_cannot_evaluate():
    env = RankingVectorEnv(4, world=WORLD, **ENV_KW)
    with pytest.raises(ValueError, match="cohort: expected one of"):
        evaluate("random", env, cohort="tests")
    with pytest.raises(ValueError, match="distinct non-negative"):
        evaluate("random", env, seeds=[1, 1])
    with pytest.raises(ValueError, match="learns from logs"):
        evaluate("ctr", env)
    other = RankingVectorEnv(4, world=random_world(n_items=120, n_users=24, dim=16, n_new=10, seed=5), **ENV_KW)
    with pytest.raises(ValueError, match="built for another env"):
        evaluate(make_agent("popularity", other), env)
    with pytest.raises(TypeError, match="expected a recgym env"):
        evaluate("random", object())


def _readme_snippet(name: str) -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert found, f"README: no python block after <!-- snippet: {name} -->"
    return found.group(1)


@pytest.mark.smoke
def test_readme_evaluate_snippet_runs_as_printed(capsys):
    namespace: dict = {}
    exec(compile(_readme_snippet("evaluate"), "README.md", "exec"), namespace)  # noqa: S102 - our README
    result = namespace["result"]
    assert isinstance(result, EvaluationResult)
    assert np.isfinite(result.mean("return")) and "| popularity |" in capsys.readouterr().out
