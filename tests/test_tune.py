"""``recgym tune``: the search space schema, a study with its outputs, pruning fed by learning curves,
multi-objective reward weights with a Pareto front, the Ray backend, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recgym.common.config import ConfigError
from recgym.experiments.config import load_config

REPO = Path(__file__).resolve().parents[1]
BASE = {"name": "tt", "world": "analytic", "world_config": {"n_items": 40, "n_users": 12},
        "agents": [{"name": "linucb"}, {"name": "ppo", "hyperparams": {"n_steps": 8}}],
        "training": {"total_timesteps": 256, "num_envs": 8, "checkpoint_every": 64, "curve_users": 4},
        "evaluation": {"cohort": "all", "users_per_seed": 6, "seeds": [0, 1, 2, 3, 4]}}
LINUCB_SPACE = {"alpha": {"type": "float", "low": 0.01, "high": 3.0, "log": True},
                "pca_dim": {"type": "int", "low": 2, "high": 8}}


def _optuna():
    if os.environ.get("RECGYM_REQUIRE_EXTRAS"):  # CI installs the extras: a missing Optuna is a failure there
        import optuna
        return optuna
    return pytest.importorskip("optuna", reason="the tune extra is not installed (pip install -e '.[tune]')")


def _cfg(tune: dict, **extra):
    return load_config(raw={**BASE, **extra, "tune": tune})


@pytest.mark.parametrize("tune, message", [
    ({"space": {"alpha": {"type": "float", "low": 2, "high": 1}}}, r"tune\.space\.alpha: .*low < high"),
    ({"space": {"alpha": {"typ": "float"}}}, r"unknown key 'typ'.*did you mean 'type'"),
    ({"spaces": {}}, r"tune\.spaces: unknown key.*did you mean 'space'"),
    ({"space": {"alpha": {"type": "float", "low": 0, "high": 1, "log": True}}}, r"log-scale parameter needs low > 0"),
    ({"space": {"hidden": {"type": "categorical"}}}, r"needs a non-empty 'choices'"),
    ({}, r"expected a search space"),
    ({"reward_weights": {"clickz": {"type": "float", "low": 0, "high": 1}}}, r"unknown reward term.*'clicks'"),
    ({"reward_weights": {"clicks": {"type": "float", "low": 0, "high": 1}}}, r"'return' changes meaning"),
    ({"space": LINUCB_SPACE, "objectives": ["ctr", "gini"], "directions": ["maximize"]}, r"one per objective"),
])
def test_search_space_schema_errors(tune, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(tune)


def test_best_config_runs_the_tuned_agent_next_to_the_configured_one():
    from recgym.experiments.tune import best_run_config

    cfg = _cfg({"agent": "ppo", "space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}},
               agents=[{"name": "ppo", "hyperparams": {"n_steps": 8}}, {"name": "ppo", "label": "ppo_tuned"}])
    final, peer = best_run_config(cfg, 0, {"learning_rate": 0.002})
    run = load_config(raw=final)
    assert peer == ["ppo", "ppo_tuned1"] and [a.key for a in run.agents] == ["ppo", "ppo_tuned1", "ppo_tuned"]
    assert run.agents[0].hyperparams == {"n_steps": 8}  # the configured agent as it was
    assert run.agents[1].hyperparams == {"n_steps": 8, "learning_rate": 0.002} and run.tune is None
    assert run.evaluation.seeds == cfg.evaluation.seeds and run.env == cfg.env
    # reward weights change every agent's reward: the tuned agent replaces the configured one
    mo = _cfg({"agent": "ppo", "objectives": ["ctr"],
               "reward_weights": {"satisfaction": {"type": "float", "low": 0.0, "high": 3.0}}})
    final, peer = best_run_config(mo, 1, {"reward.satisfaction": 2.0})
    run = load_config(raw=final)
    assert peer is None and [a.key for a in run.agents] == ["linucb", "ppo"]
    assert run.env.reward.name == "mix" and run.env.reward.weights.satisfaction == 2.0


@pytest.mark.parametrize("name", ["tune_ppo", "tune_reward_mix", "tune_reward_mix_sessions"])
def test_shipped_tune_configs_search_their_agent(name):
    from recgym.experiments.tune import _tuned_index, check_space

    cfg = load_config(REPO / "experiments" / "configs" / f"{name}.yaml")
    check_space(cfg, _tuned_index(cfg, None))
    assert cfg.tune.trials >= 20 and cfg.agents[_tuned_index(cfg, None)].name == "ppo"


def test_space_must_name_hyper_parameters_of_the_tuned_agent(tmp_path):
    _optuna()
    from recgym.experiments.tune import TuneError, run_tune

    cfg = _cfg({"agent": "linucb", "space": {"alfa": {"type": "float", "low": 0.1, "high": 1}}})
    with pytest.raises(TuneError, match=r"tune\.space\.alfa: not a hyper-parameter of agent 'linucb'.*'alpha'"):
        run_tune(cfg, tmp_path / "t")
    cfg = _cfg({"agent": "linucb", "space": LINUCB_SPACE})
    with pytest.raises(TuneError, match=r"--agent: expected one of \['linucb', 'ppo'\], received 'ppp'.*'ppo'"):
        run_tune(cfg, tmp_path / "t", agent="ppp")
    cfg = _cfg({"agent": "linucb", "objectives": ["ctr"],
                "reward_weights": {"satisfaction": {"type": "float", "low": 0, "high": 1}}})
    with pytest.raises(TuneError, match="does not train on the reward"):
        run_tune(cfg, tmp_path / "t")
    assert not (tmp_path / "t").exists()


@pytest.mark.smoke
def test_tune_writes_best_config_plots_and_report(tmp_path):
    _optuna()
    from recgym.experiments.tune import run_tune

    out = tmp_path / "t"
    summary = run_tune(_cfg({"agent": "linucb", "trials": 4, "seeds": [0, 1], "startup_trials": 2,
                             "space": LINUCB_SPACE}), out, notify=lambda m: None)
    assert summary["complete"] == 4 and summary["defaults"]["params"]["alpha"] == 1.0  # trial 0 = the config's
    best = load_config(out / "best_config.yaml")
    assert [a.key for a in best.agents] == ["linucb", "linucb_tuned", "ppo"]  # the tuned one next to the configured
    assert best.agents[1].hyperparams == summary["best"][0]["params"] and best.evaluation.seeds == [0, 1, 2, 3, 4]
    assert best.agents[0].hyperparams == {} and summary["best_config_compares"] == ["linucb", "linucb_tuned"]
    for png in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 10_000
    assert "recgym run" in (out / "tune.md").read_text()


@pytest.mark.smoke
def test_ppo_trials_feed_the_pruner_and_reward_weights_give_a_pareto_front(tmp_path):
    optuna = _optuna()
    from recgym.experiments.tune import run_tune

    out = tmp_path / "ppo"
    run_tune(_cfg({"agent": "ppo", "trials": 3, "startup_trials": 1,
                   "space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}),
             out, notify=lambda m: None)
    study = optuna.load_study(study_name=json.loads((out / "tune.json").read_text())["study"],
                              storage=f"sqlite:///{out / 'study.db'}")
    assert all(t.intermediate_values for t in study.trials)  # learning-curve points reached the pruner
    assert not any(0 in t.intermediate_values for t in study.trials)  # never the untrained policy's point
    out = tmp_path / "mo"
    summary = run_tune(_cfg({"agent": "ppo", "trials": 3, "objectives": ["ctr", "satisfaction"],
                             "reward_weights": {"satisfaction": {"type": "float", "low": 0.0, "high": 3.0}}}),
                       out, notify=lambda m: None)
    assert summary["best"] and all(len(b["values"]) == 2 for b in summary["best"])
    assert (out / "plots" / "pareto_front.png").is_file() and "Pareto front" in (out / "tune.md").read_text()
    tuned = load_config(out / "best_config.yaml")
    assert tuned.env.reward.name == "mix"


@pytest.mark.smoke
def test_tune_on_ray(tmp_path):
    _optuna()
    ray = pytest.importorskip("ray") if not os.environ.get("RECGYM_REQUIRE_EXTRAS") else __import__("ray")
    from recgym.experiments.tune import run_tune

    try:
        summary = run_tune(_cfg({"agent": "linucb", "trials": 4, "space": LINUCB_SPACE}), tmp_path / "t",
                           backend="ray", workers=2, notify=lambda m: None)
        assert not ray.is_initialized()  # the private cluster the tune started stopped with it
    finally:
        ray.shutdown()
    assert summary["complete"] == 4


@pytest.mark.smoke
def test_a_killed_tune_resumes_without_repeating_finished_trials(tmp_path):
    optuna = _optuna()
    cfg = tmp_path / "t.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({**BASE, "tune": {"agent": "linucb", "trials": 6, "space": LINUCB_SPACE}}))
    out = tmp_path / "t"
    cmd = [sys.executable, "-m", "recgym", "tune", str(cfg), "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finished() -> list:
        # Open the study only once a trial has started: opening it while the tune still creates the database
        # schema races with that creation (SQLite + Optuna's alembic stamp) and can fail the tune itself.
        if not (out / "tune.json").is_file() or not any((out / "trials").glob("*")):
            return []
        from sqlalchemy.exc import SQLAlchemyError

        try:
            study = optuna.load_study(study_name=json.loads((out / "tune.json").read_text())["study"],
                                      storage=f"sqlite:///{out / 'study.db'}")
        except (KeyError, ValueError, SQLAlchemyError):  # the tune may still be creating the database
            return []
        return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]

    deadline = time.time() + 300
    while len(finished()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.params, t.values, t.datetime_complete) for t in finished()}
    assert 2 <= len(before) < 6, f"killed after {len(before)} trials: {proc.stderr.read()[-2000:]}"
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    after = {t.number: (t.params, t.values, t.datetime_complete) for t in finished()}
    assert len(after) == 6
    assert all(after[n] == before[n] for n in before)  # finished trials kept as they were, never re-run
    assert f"resume: {len(before)} finished trial(s) kept" in res.stderr


def test_reward_mix_study_takes_the_retention_and_tail_terms(tmp_path):
    from recgym.experiments.tune import TuneError, check_space, run_tune, trial_config

    with pytest.raises(ConfigError, match=r"tune\.reward_weights\.tail_exposur: unknown reward term.*'tail_exposure'"):
        _cfg({"objectives": ["ctr"], "reward_weights": {"tail_exposur": {"type": "float", "low": 0, "high": 1}}})
    space = {"retention": {"type": "float", "low": 0.0, "high": 5.0},
             "tail_exposure": {"type": "float", "low": 0.0, "high": 2.0},
             "tail_clicks": {"type": "float", "low": 0.0, "high": 2.0}}
    one = _cfg({"agent": "ppo", "objectives": ["ctr", "tail_share"], "reward_weights": space})
    with pytest.raises(TuneError, match=r"tune\.reward_weights\.retention: expected a world of returning users.*received env\.sessions\.count=1"):
        run_tune(one, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    cfg = _cfg({"agent": "ppo", "objectives": ["ctr", "retention_d7", "tail_share"], "reward_weights": space},
               env={"sessions": {"count": 3, "session_steps": 4}})
    check_space(cfg, 1)
    run = trial_config(cfg, 1, {"reward.retention": 2.0, "reward.tail_exposure": 1.5, "reward.tail_clicks": 0.5})
    w = run.env.reward.weights
    assert run.env.reward.name == "mix" and (w.retention, w.tail_exposure, w.tail_clicks) == (2.0, 1.5, 0.5)


@pytest.mark.smoke
def test_reward_mix_study_with_retention_and_four_objectives(tmp_path):
    """A returning-users world: the searched weights reach the trials, the front is tabled with one column per
    objective and weight, and four objectives are drawn as one Pareto projection per pair."""
    _optuna()
    from recgym.experiments.tune import run_tune

    objectives = ["ctr", "satisfaction", "retention_d7", "tail_share"]
    cfg = _cfg({"agent": "ppo", "trials": 2, "objectives": objectives,
                "reward_weights": {"retention": {"type": "float", "low": 0.0, "high": 5.0},
                                   "tail_exposure": {"type": "float", "low": 0.0, "high": 2.0}}},
               env={"sessions": {"count": 2, "session_steps": 3}})
    out = tmp_path / "mo"
    summary = run_tune(cfg, out, notify=lambda m: None)
    assert summary["complete"] == 2 and all(len(b["values"]) == 4 for b in summary["best"])
    assert summary["defaults"]["params"] == {"reward.retention": 0.0, "reward.tail_exposure": 0.0}
    md = (out / "tune.md").read_text()
    assert "| trial | ctr | satisfaction | retention_d7 | tail_share | reward.retention | reward.tail_exposure |" in md
    pairs = [f"pareto_front_{a}_vs_{b}" for i, a in enumerate(objectives) for b in objectives[i + 1:]]
    for key in pairs:
        assert (out / "plots" / f"{key}.png").stat().st_size > 5_000, key
    assert not (out / "plots" / "pareto_front.png").exists()
    tuned = load_config(out / "best_config.yaml").env.reward.weights
    assert (tuned.retention, tuned.tail_exposure) == tuple(summary["best"][0]["params"][f"reward.{k}"]
                                                           for k in ("retention", "tail_exposure"))
