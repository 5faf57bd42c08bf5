"""The runner's one-way flow: checks before any folder, failed cells recorded and reported (never averaged
away), a failed run replaced by a plain rerun, resume wall times, and reports that explain themselves."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from recgym.agents import AGENTS
from recgym.experiments.config import load_config
from recgym.experiments.runner import CellsFailedError, RunError, read_run_marker, run_experiment

BASE = {"name": "flow", "world": "analytic", "world_config": {"n_items": 40, "n_users": 12},
        "env": {"num_candidates": 20, "slate_size": 3, "new_items": {"slots": 0}, "candidates": {"pool_size": 40},
                "max_steps": 5},
        "agents": [{"name": "random"}, {"name": "popularity", "fit_on_logs": False}, {"name": "oracle"}],
        "evaluation": {"cohort": "all", "users_per_seed": 6, "seeds": [0, 1]},
        "output": {"plots": False, "tensorboard": False}}


def _run(out: Path, raw: dict | None = None, **kw):
    return run_experiment(load_config(raw=raw or BASE), out, console=Console(file=io.StringIO()), **kw)


def test_missing_data_fails_before_any_folder_and_the_fix_runs(tmp_path):
    raw = {**BASE, "world": "movielens-100k", "data_dir": str(tmp_path / "nowhere"), "world_config": {}}
    with pytest.raises(RunError, match="nowhere"):
        _run(tmp_path / "run", raw)
    assert not (tmp_path / "run").exists()  # nothing to --overwrite: the corrected command just runs
    _run(tmp_path / "run")
    assert read_run_marker(tmp_path / "run")["status"] == "complete"


def test_missing_encoder_folder_fails_before_any_folder(tmp_path):
    with pytest.raises(RunError, match="encoder: expected 'hashing' or a local model folder"):
        _run(tmp_path / "run", {**BASE, "encoder": str(tmp_path / "no-model")})
    assert not (tmp_path / "run").exists()


def test_a_failed_cell_is_recorded_reported_and_the_run_replaced_by_a_plain_rerun(tmp_path, monkeypatch):
    cls = AGENTS["popularity"]
    real = cls.update

    def broken(self, obs, slate, feedback):
        if self.config.seed == _agent_seed(1):
            raise RuntimeError("update exploded")
        return real(self, obs, slate, feedback)

    monkeypatch.setattr(cls, "update", broken)
    out = tmp_path / "run"
    with pytest.raises(CellsFailedError, match=r"1 of 6 cells failed \(popularity__seed1\)"):
        _run(out)
    marker = read_run_marker(out)
    assert marker["status"] == "failed" and "cells failed" in marker["error"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["failed_cells"] == [{"agent": "popularity", "seed": 1, "error": "RuntimeError: update exploded"}]
    pop = [r for r in metrics["summary"] if r["agent"] == "popularity" and r["metric"] == "return"
           and r["segment"] == "all"]
    assert pop[0]["n"] == 1  # one seed left, and it says so
    report = (out / "report.md").read_text()
    assert "1 of 6 cells failed" in report and "## Failed cells" in report
    assert "| `popularity` | 1 | RuntimeError: update exploded |" in report
    assert "`popularity`: 1 of 2 seeds" in report
    # the fix: a plain rerun replaces the failed run (no --overwrite needed)
    monkeypatch.setattr(cls, "update", real)
    _run(out)
    assert read_run_marker(out)["status"] == "complete"
    assert not list((out / "cells").glob("*.failed.json"))
    assert json.loads((out / "metrics.json").read_text())["failed_cells"] == []


def _agent_seed(replicate: int) -> int:
    from recgym.experiments.seeds import SeedTree

    return SeedTree(0).seed("agent", replicate)


def test_resume_keeps_the_original_wall_time_and_adds_its_own(tmp_path):
    out = tmp_path / "run"
    _run(out)
    first = json.loads((out / "run.json").read_text())
    assert len(first["sessions"]) == 1 and first["wall_time_s"] == first["sessions"][0]["wall_time_s"]
    _run(out, resume=True)
    second = json.loads((out / "run.json").read_text())
    assert [s["resumed"] for s in second["sessions"]] == [False, True]
    assert second["sessions"][0] == first["sessions"][0]
    assert second["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in second["sessions"]), abs=0.11)


def test_report_explains_itself(tmp_path):
    raw = {**BASE, "env": {**BASE["env"], "reward": {"name": "mix", "weights": {"clicks": 1.0, "engagement": 0.25,
                                                                                 "satisfaction": 2.0}}},
           "agents": [*BASE["agents"], {"name": "linucb", "hyperparams": {"alpha": 0.5}}]}
    out = tmp_path / "run"
    _run(out, raw)
    report = (out / "report.md").read_text()
    assert "`reward: mix` — per slate, reward = 1 × clicks + 0.25 × engagement + 2 × satisfaction" in report
    assert "| `linucb` | linucb | online, during evaluation |" in report and "alpha=0.5" in report
    assert "ridge=1" in report  # defaults filled in
    assert "Planning gain: not measured" in report
    assert "## What the oracle bounds" in report and "does not bound the session return" in report
    assert "not even one-step optimal for this reward" in report
    # a planning-gain file of this world is shown; one of another world is not
    fp = json.loads((out / "world.json").read_text())["fingerprint"]
    (out / "planning_gain.json").write_text(json.dumps({"gain": 1.5, "low": 0.4, "high": 2.6, "confidence": 0.95,
                                                        "world_fingerprint": fp, "method": "rollouts"}))
    _run(out, raw, resume=True)
    assert "Planning gain (lookahead / myopic − 1): **+150.0%** (95% CI [+40.0%, +260.0%]; rollouts" in \
        (out / "report.md").read_text()
    (out / "planning_gain.json").write_text(json.dumps({"gain": 1.5, "low": 0.4, "high": 2.6,
                                                        "world_fingerprint": "other"}))
    _run(out, raw, resume=True)
    assert "not measured for this world" in (out / "report.md").read_text()


def test_a_run_on_the_analytic_world_needs_no_env_settings(tmp_path):
    raw = {k: v for k, v in BASE.items() if k not in ("env", "world_config")}
    _run(tmp_path / "run", raw)
    written = (tmp_path / "run" / "config.yaml").read_text()
    assert "pool_size: 20" in written and "mask_window: 0" in written  # the world's own settings, recorded
